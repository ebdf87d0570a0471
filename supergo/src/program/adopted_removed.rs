//! A program no longer in the config that a supergo that died left processes of (issue 15):
//! a worker of its own stops them (drains them, as `update` removes a program) and ends,
//! with the helpers of those processes that left their process groups (issue 16), as a
//! removal stops a program's helpers. Those helpers descend from the adopted processes, not
//! from this supergo, and are found through them before any stop signal (`escaped`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::Pid;

use super::adopted::start;
use super::{Context, ProgramHandle};
use crate::adopt::plan::AdoptedProgram;
use crate::config::{AutoRestart, Origin, ProgramConfig, ReadyMode};
use crate::descendants::find_escaped_from;
use crate::status::State;

/// Starts a worker that stops the processes of a program no longer in the config, and ends.
pub fn launch_removed(
    adopted: AdoptedProgram,
    ctx: Arc<Context>,
) -> std::io::Result<ProgramHandle> {
    let config = Arc::new(removed_config(&adopted));
    start(config, Ok(Vec::new()), ctx, move |worker| {
        worker.life.shutting_down = true;
        worker.life.stop_requested = true;
        let pids: Vec<Pid> = adopted.processes().map(|f| f.pid).collect();
        let mut groups = worker.ctx.reaper.registered_pids();
        groups.extend_from_slice(&pids);
        let helpers = find_escaped_from(&adopted.name, &groups, &pids);
        worker.take_adopted(adopted);
        worker.stop_escaped(helpers);
        worker.life.state = State::Stopping;
    })
}

/// What stands in for the config of a program that is no longer in it: only how its
/// processes are stopped matters (as recorded), and that nothing is ever started.
fn removed_config(adopted: &AdoptedProgram) -> ProgramConfig {
    let first = adopted.processes().next();
    ProgramConfig {
        name: adopted.name.clone(),
        argv: vec!["(no longer in the config)".into()],
        directory: PathBuf::from("/"),
        autostart: false,
        auto_restart: AutoRestart::Never,
        exit_codes: vec![0],
        start_secs: Duration::from_secs(1),
        max_retry: 0,
        backoff: Duration::from_secs(1),
        backoff_max: Duration::from_secs(30),
        listen_addrs: Vec::new(),
        listen_names: Vec::new(),
        socket_mode: 0o660,
        ready: ReadyMode::Uptime,
        ready_timeout: Duration::from_secs(60),
        stop_signal: first.map_or(nix::sys::signal::Signal::SIGTERM, |f| f.stop_signal),
        stop_timeout: first.map_or(Duration::from_secs(10), |f| f.stop_timeout),
        stop_as_group: first.is_none_or(|f| f.stop_as_group),
        stop_before_restart: false,
        essential: false,
        stdout_file: None,
        stderr_file: None,
        redirect_stderr: false,
        log_max_bytes: 50 * 1024 * 1024,
        log_backups: 10,
        user: None,
        group: None,
        umask: None,
        environment: BTreeMap::new(),
        clear_env: false,
        priority: 999,
        rlimits: BTreeMap::new(),
        origin: Origin {
            file: PathBuf::from("(the state file of a supergo that died)"),
            line: 0,
        },
    }
}
