//! The new image of an upgrade in place: take over from the image before, or go back to it.
//!
//! `main` calls `run` when `Inherited::take` found a state, with every signal still blocked.
//! Everything is read first (the config, which the pre-flight proved loads; `[supergo]`, the
//! listeners, the log hub, every program): any error until then, or the test switch below,
//! makes this image `fall_back` to the old binary with the same state, and the children never
//! notice. Then the commit, and the rebuild, in this order: the log thread with its pipes,
//! the listener pool with the same sockets, each worker with its processes registered with
//! the reaper; only then the signals thread, whose first reap routes the exits that happened
//! during the exec (and which handles a SIGTERM that waited meanwhile); then the control API
//! on the same listening socket, which accepts what queued meanwhile; last, the answer to
//! the connection that asked, and one log line of what was taken over. Around them, what the
//! old image's threads kept up and that died with it: the state file of issue 15 is
//! installed again once every worker has reported, and supergo's service manager hears
//! `READY=1` (or, before the initial one, the wait for the initial start goes on).
//!
//! The programs run with the configs the state carries (`program::config_state`), not the
//! file's: what ran goes on exactly as it was, and `reread` shows what the file changes.
//!
//! Test switch (debug builds only): `SUPERGO_TEST_FAIL_RESTORE=PATH` makes the image whose
//! binary is PATH refuse every state it is handed (not a fallback's), to test the fallback.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crossbeam_channel::unbounded;
use serde_json::json;

use super::core::Supervisor;
use super::deadline;
use super::service_manager;
use super::upgrade_state::{Tools, Upgrades};
use crate::adopt::state_file::StateFile;
use crate::config::{self, Config, DEFAULT_LISTEN};
use crate::control::Control;
use crate::handover::exec::SelfExe;
use crate::handover::inherit::Inherited;
use crate::handover::{monotonic, HandedFd, State, StateError};
use crate::listener::{ListenAddr, Listener, ListenerPool};
use crate::logs::{LogHub, RestoredLogs};
use crate::program::{Context, RestoredProgram};
use crate::reaper::Reaper;
use crate::reply::Reply;
use crate::{adopt, error, info, manager_notify, signals, warn};

/// What `[supergo]` and the listeners' sections say.
struct Core {
    control: HandedFd,
    client: Option<HandedFd>,
    from_version: String,
    upgrades: u64,
    failed: u64,
    asked_at: u64,
    listeners: Vec<(ListenAddr, HandedFd)>,
    /// The state file of issue 15 (its directory, the control address it is for).
    state_file: Option<(PathBuf, String)>,
    /// Where supergo was in its service manager's sequence (`manager_notify::restored`).
    manager_phase: String,
}

/// Takes over from the image before (see the module docs). Returns supergo's exit status when
/// it stops (as `Supervisor::run`), or an error when it can neither take over nor go back.
pub fn run(
    inherited: Inherited,
    config_path: &Path,
    listen: Option<String>,
    self_exe: Option<SelfExe>,
) -> Result<u8, String> {
    let fallback = inherited.fallback_reason().map(str::to_string);
    if let Some(reason) = test_failure(&inherited) {
        return Err(back(inherited, &reason));
    }
    let config = match config::load(config_path) {
        Ok(config) => config,
        Err(e) => return Err(back(inherited, &format!("cannot load the config: {e}"))),
    };
    let state = match inherited.state() {
        Ok(state) => state,
        Err(e) => return Err(back(inherited, &format!("cannot read the state: {e}"))),
    };
    let read = read_core(&state).and_then(|core| {
        let logs = RestoredLogs::read(&state)?;
        let programs = (state.sections("program").iter())
            .map(RestoredProgram::read)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((core, logs, programs))
    });
    let (core, logs, programs) = match read {
        Ok(read) => read,
        Err(e) => return Err(back(inherited, &format!("cannot read the state: {e}"))),
    };
    let skipped = state.skipped();
    if !skipped.is_empty() {
        warn!(
            "upgrade: this supergo skipped what it does not know in the state: {}",
            skipped.join("; ")
        );
    }
    let committed = inherited.commit(&state);

    let (sockets, pipes) = (core.listeners.len(), logs.pipes());
    let hub = LogHub::start_restored(logs, &committed)
        .map_err(|e| format!("cannot start the log thread: {e}"))?;
    let pool = Arc::new(ListenerPool::new());
    let mut held: Vec<Arc<Listener>> = Vec::new();
    for (addr, fd) in core.listeners {
        // The old image wrote each address once; a second one could only be a corrupt
        // state, and the state is committed by now: keep the first, say so.
        match pool.insert(Listener::from_fd(addr, fd.into_owned(&committed))) {
            Ok(listener) => held.push(listener),
            Err(e) => warn!("upgrade: {e}"),
        }
    }
    let (core_tx, core_rx) = unbounded();
    let ctx = Arc::new(Context {
        reaper: Arc::new(Reaper::new()),
        pool,
        logs: hub.clone(),
        core: core_tx.clone(),
    });
    let (mut kept, mut draining) = (0, 0);
    let mut handles = BTreeMap::new();
    for program in programs {
        let (serving, old) = program.process_counts();
        let name = program.name.clone();
        match program.launch(&committed, ctx.clone()) {
            Ok(handle) => {
                kept += serving;
                draining += old;
                handles.insert(name, handle);
            }
            Err(e) => error!(
                "{name}: cannot start its worker thread: {e}; its processes run on unsupervised"
            ),
        }
    }
    // The workers hold the listeners they use; one nobody uses closes here.
    drop(held);
    // Every worker has reported its processes: the state file is kept current again.
    if let Some((dir, control)) = &core.state_file {
        adopt::record::install(StateFile::new(dir, control), control);
    }
    let (signals, _) = signals::start(ctx.reaper.clone(), core_tx.clone())
        .map_err(|e| format!("cannot install signal handling: {e}"))?;
    let listen = listen
        .or_else(|| config.daemon.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let control = Control {
        listener: TcpListener::from(core.control.into_owned(&committed)),
        listen,
        core: core_tx.clone(),
        token: config.daemon.token.clone(),
    }
    .start()
    .map_err(|e| format!("cannot start the control API threads: {e}"))?;

    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("supergo"));
    let version = env!("CARGO_PKG_VERSION");
    let n = handles.len();
    let took_ms = monotonic::now_nanos().saturating_sub(core.asked_at) as f64 / 1e6;
    let (done, failed) = match &fallback {
        None => (core.upgrades + 1, core.failed),
        Some(_) => (core.upgrades, core.failed + 1),
    };
    let reply = match &fallback {
        None => {
            info!(
                "upgrade: {} ({version}), {n} program(s), {sockets} socket(s), {draining} draining process(es) handed over ({pipes} log pipe(s))",
                exe.display()
            );
            Reply::ok(
                format!(
                    "upgraded: supergo {} -> {version} (pid {} kept), {n} program(s) kept, 0 restarted, in {took_ms:.0} ms",
                    core.from_version,
                    std::process::id()
                ),
                json!({"from": core.from_version, "to": version, "pid": std::process::id(),
                       "programs": n, "serving": kept, "draining": draining, "sockets": sockets, "ms": took_ms}),
            )
        }
        Some(reason) => {
            error!(
                "upgrade failed: the new binary could not take over ({reason}); back on {} ({version}), {n} program(s) kept",
                exe.display()
            );
            Reply::error(
                500,
                format!(
                    "upgrade failed: the new binary could not take over ({reason}); supergo {version} went back to its own binary (pid {} kept), {n} program(s) kept, 0 restarted, in {took_ms:.0} ms",
                    std::process::id()
                ),
            )
        }
    };
    let mut supervisor = Supervisor::restored(config, ctx, handles);
    supervisor.tell_manager(&core.manager_phase);
    if let Some(self_exe) = self_exe {
        let tools = Tools {
            self_exe,
            signals,
            control,
            core: core_tx,
        };
        supervisor.enable_upgrades(tools, done, failed);
    }
    if let Some(client) = core.client {
        let client = std::net::TcpStream::from(client.into_owned(&committed));
        if let Err(e) = crate::http::answer_taken(&client, &reply) {
            warn!("upgrade: cannot answer the client that asked for it: {e}");
        }
    }
    let status = supervisor.run(core_rx);
    adopt::record::finish();
    hub.shutdown();
    Ok(status)
}

impl Supervisor {
    /// The core of a new image, over workers already running.
    fn restored(
        config: Config,
        ctx: Arc<Context>,
        programs: BTreeMap<String, crate::program::ProgramHandle>,
    ) -> Supervisor {
        let running: Vec<_> = programs.values().map(|h| h.config()).collect();
        deadline::cover(deadline::answers_within(
            running
                .iter()
                .map(|c| c.as_ref())
                .chain(config.programs.values().map(Arc::as_ref)),
        ));
        Supervisor {
            config,
            programs,
            retiring: Vec::new(),
            ctx,
            upgrades: Upgrades::default(),
            // The image before did it (an upgrade is refused until then).
            initial_start_sent: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Supervisor {
    /// Goes on with the service manager's sequence where the image before left it: `READY=1`
    /// (ending the `RELOADING=1` it said before the exec) with the programs' states now, or,
    /// when the initial `READY=1` was not said yet, the wait for the initial start (in a
    /// thread, as at a fresh start).
    fn tell_manager(&self, phase: &str) {
        if manager_notify::restored(phase) {
            manager_notify::reloaded(&service_manager::summary(
                self.programs.values().map(|h| &h.status),
            ));
            return;
        }
        let watched = service_manager::watch(self.programs.values());
        let spawned = std::thread::Builder::new()
            .name("initial start".into())
            .spawn(move || service_manager::after_initial_start(watched));
        if let Err(e) = spawned {
            error!("cannot start a thread to wait for the initial start: {e}; the service manager is told READY=1 now");
            manager_notify::ready("the initial start may still be in progress");
        }
    }
}

/// Re-executes the old binary (see `Inherited::fall_back`); returns only when that is
/// impossible, with why.
fn back(inherited: Inherited, reason: &str) -> String {
    let reason = format!("supergo {} {reason}", env!("CARGO_PKG_VERSION"));
    error!("upgrade: {reason}; going back to the binary before");
    inherited.fall_back(&reason).0
}

fn read_core(state: &State) -> Result<Core, StateError> {
    let s = state.section("supergo").ok_or_else(|| StateError {
        line: None,
        message: "no [supergo] section".into(),
    })?;
    let control = s
        .fd("control_fd")?
        .ok_or_else(|| s.error("no control_fd"))?;
    let mut listeners = Vec::new();
    for l in state.sections("listener") {
        let addr = l.string_or("addr", "")?;
        let addr = ListenAddr::parse(&addr, Path::new("/"))
            .map_err(|e| l.error(format!("addr {addr:?}: {e}")))?;
        let fd = l.fd("fd")?.ok_or_else(|| l.error("no fd"))?;
        listeners.push((addr, fd));
    }
    let _ = (s.str("asked_by")?, s.path("binary")?);
    Ok(Core {
        control,
        client: s.fd("client_fd")?,
        from_version: s.string_or("from_version", "?")?,
        upgrades: s.u64_or("upgrades", 0)?,
        failed: s.u64_or("failed_upgrades", 0)?,
        asked_at: s.u64_or("asked_at", monotonic::now_nanos())?,
        listeners,
        state_file: s
            .path("state_dir")?
            .zip(s.str("state_control")?.map(str::to_string)),
        manager_phase: s.string_or("manager_phase", "ready")?,
    })
}

/// The test switch (see the module docs): why this image refuses the state, if it must.
fn test_failure(inherited: &Inherited) -> Option<String> {
    if !cfg!(debug_assertions) || inherited.fallback_reason().is_some() {
        return None;
    }
    let named = std::env::var_os("SUPERGO_TEST_FAIL_RESTORE")?;
    let named = std::fs::canonicalize(named).ok()?;
    let me = std::fs::read_link("/proc/self/exe").ok()?;
    (named == me)
        .then(|| "refuses the state: told so by SUPERGO_TEST_FAIL_RESTORE (a test)".to_string())
}
