//! A worker in this process, with a real child: what needs no supergo binary around it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::{launch, Command, Context};
use crate::adopt::procfs;
use crate::listener::ListenerPool;
use crate::logs::LogHub;
use crate::reaper::Reaper;

/// Polls `done` every 10 ms until it holds or `within` has passed.
fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

#[test]
fn a_worker_whose_handle_is_dropped_stops_its_process() {
    let (core, _core_inbox) = unbounded();
    let ctx = Arc::new(Context {
        reaper: Arc::new(Reaper::new()),
        pool: Arc::new(ListenerPool::new()),
        logs: LogHub::start().expect("the log thread starts"),
        core,
    });
    let dir = std::env::temp_dir();
    let mut config = crate::config::program_defaults("abandoned", &dir).expect("defaults");
    config.argv = vec!["/bin/sleep".into(), "1000".into()];
    let handle = launch(Arc::new(config), Ok(Vec::new()), ctx).expect("the worker starts");
    let _ = handle.commands.send(Command::Start(None));
    let status = handle.status.clone();
    let pid = || status.lock().unwrap_or_else(|p| p.into_inner()).pid;
    assert!(
        wait_for(Duration::from_secs(10), || pid() != 0),
        "no process started"
    );
    let pid = Pid::from_raw(pid());

    // The core lets go of the worker without a shutdown: the worker stops its process (the
    // exit is never routed here, no signals thread reaps: the process stays a zombie, unless
    // another test's child wait took it).
    drop(handle);
    let stopped = wait_for(Duration::from_secs(10), || {
        !procfs::stat(pid).is_ok_and(|s| s.is_alive())
    });
    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    if !stopped {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
    assert!(
        stopped,
        "pid {pid} still runs after its worker was abandoned"
    );
}
