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
//! the connection that asked, and one log line of what was taken over.
//!
//! The programs run with the configs the state carries (`program::config_state`), not the
//! file's: what ran goes on exactly as it was, and `reread` shows what the file changes.
//!
//! Test switch (debug builds only): `SUPERGO_TEST_FAIL_RESTORE=PATH` makes the image whose
//! binary is PATH refuse every state it is handed (not a fallback's), to test the fallback.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::unbounded;
use serde_json::json;

use super::core::Supervisor;
use super::deadline;
use super::upgrade::{Tools, Upgrades};
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
use crate::{error, info, signals, warn};

/// What `[supergo]` and the listeners' sections say.
struct Core {
    control: HandedFd,
    client: Option<HandedFd>,
    from_version: String,
    upgrades: u64,
    failed: u64,
    asked_at: u64,
    listeners: Vec<(ListenAddr, HandedFd)>,
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
