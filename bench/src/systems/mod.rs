//! The systems under test behind one trait: supergo, supervisord and circus.
//!
//! Each driver turns the same list of [`Program`]s into its own config, starts its daemon (in
//! a process group of its own, see `cleanup`), and offers the operations the scenarios time:
//! restart one program, read the status through the API and through the CLI, count programs
//! that are running.
//!
//! How a program gets its listener differs, and that is the point of the comparison:
//! - supergo binds it and passes it at fd 3 (`LISTEN_FDS`): the child runs with no argument;
//! - supervisord cannot hold a socket: the child binds it itself (`--listen ADDR`), so a
//!   restart (stop, then start) closes it for a while;
//! - circus binds it (`[socket:NAME]`) and puts the fd on the command line
//!   (`--fd $(circus.sockets.NAME)`); its `restart` is stop-then-start, its `reload` starts the
//!   new process and stops the old one at once, without a readiness wait.

mod circus;
mod supergo;
mod supervisord;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use self::circus::Circus;
pub use self::supergo::Supergo;
pub use self::supervisord::Supervisord;
use crate::setup::{self, Paths};

/// One program, described once for every system.
#[derive(Clone, Debug)]
pub struct Program {
    pub name: String,
    pub exe: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The address it serves; how the listener reaches it depends on the system.
    pub listen: Option<SocketAddr>,
    /// A unix-socket listener the system binds and holds for the program (supergo
    /// `listen_addrs = ["unix:PATH"]`, supervisord `[fcgi-program]` `socket`, circus
    /// `[socket]` with `family = AF_UNIX`); the `footprint`/`scale` realistic shape.
    pub unix_listen: Option<PathBuf>,
    /// Where the program's stdout goes (discarded when `None`).
    pub stdout_file: Option<PathBuf>,
    /// supergo `start_secs`, supervisord `startsecs` (circus has no equivalent).
    pub start_secs: f64,
    /// supergo `ready = "notify"`; the peers have no readiness protocol.
    pub notify: bool,
    pub ready_timeout: f64,
    pub stop_timeout: f64,
    pub backoff_secs: f64,
    pub max_retry: u32,
}

impl Program {
    pub fn new(name: &str, exe: &Path) -> Program {
        Program {
            name: name.to_string(),
            exe: exe.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            listen: None,
            unix_listen: None,
            stdout_file: None,
            start_secs: 1.0,
            notify: false,
            ready_timeout: 10.0,
            stop_timeout: 10.0,
            backoff_secs: 1.0,
            max_retry: 3,
        }
    }
}

/// The systems, and the two restart modes of circus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Supergo,
    Supervisord,
    /// circus with `circusctl restart` (stop, then start).
    CircusRestart,
    /// circus with `circusctl reload` (start new, stop old at once).
    CircusReload,
}

impl Peer {
    pub fn label(self) -> &'static str {
        match self {
            Peer::Supergo => "supergo",
            Peer::Supervisord => "supervisord",
            Peer::CircusRestart => "circus restart",
            Peer::CircusReload => "circus reload",
        }
    }

    /// The label of the system alone (circus once, whatever its restart mode).
    pub fn system(self) -> &'static str {
        match self {
            Peer::CircusRestart | Peer::CircusReload => "circus",
            other => other.label(),
        }
    }
}

/// What a restart command said, and how long it took.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestartOutcome {
    pub ok: bool,
    /// From sending the command to its answer (the whole CLI run for the peers).
    pub took_ms: f64,
    /// supergo's own `handoff_ms` (restart accepted → new process ready).
    pub handoff_ms: Option<f64>,
    pub message: String,
}

/// A running system under test. `Sync`: restarts of several programs run from several
/// threads at once (`restart_many`).
pub trait System: Sync {
    /// The daemon's pid, for /proc.
    fn pid(&self) -> i32;

    /// When the daemon was spawned.
    fn started_at(&self) -> Instant;

    /// Restarts one program the system's way; answers when the command does.
    fn restart(&self, name: &str) -> RestartOutcome;

    /// Restarts `names`, at most `parallel` at once (each its own command, as operators
    /// restarting several services do); the outcomes in the order of `names`.
    fn restart_many(&self, names: &[String], parallel: usize) -> Vec<RestartOutcome> {
        restart_parallel(|name| self.restart(name), names, parallel)
    }

    /// One status query through the system's API (supergo `GET /status`, supervisord XML-RPC
    /// `getAllProcessInfo`): the size of the answer's body in bytes. `None` when the only way
    /// in is the CLI (circus speaks ZeroMQ).
    fn status_api(&self) -> Option<Result<usize, String>>;

    /// `supergoctl status`, `supervisorctl status`, `circusctl status`: the whole command.
    fn status_cli(&mut self) -> Result<(), String>;

    /// How many programs are in the system's running state (supergo `Running`, supervisord
    /// `RUNNING`; circus has no such state: its live child processes).
    fn running(&mut self) -> Result<usize, String>;

    /// Stops the daemon (it stops its programs); the daemon is killed after `grace`.
    fn shutdown(&mut self, grace: Duration);
}

/// Runs `restart` over `names`, at most `parallel` at once; the outcomes in the order of
/// `names`.
pub fn restart_parallel(
    restart: impl Fn(&str) -> RestartOutcome + Sync,
    names: &[String],
    parallel: usize,
) -> Vec<RestartOutcome> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let outcomes = std::sync::Mutex::new(vec![None; names.len()]);
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, names.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(name) = names.get(i) else { return };
                let outcome = restart(name);
                outcomes.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
            });
        }
    });
    outcomes
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| RestartOutcome {
                ok: false,
                took_ms: 0.0,
                handoff_ms: None,
                message: "restart thread ended without an outcome".into(),
            })
        })
        .collect()
}

/// Which peers are installed; a missing one is reported loudly by the caller.
#[derive(Clone, Debug)]
pub struct Installed {
    pub supervisord: Result<(PathBuf, PathBuf), String>,
    pub circus: Result<(PathBuf, PathBuf), String>,
}

impl Installed {
    pub fn detect() -> Installed {
        Installed {
            supervisord: pair("supervisord", "supervisorctl", "pip install supervisor"),
            circus: pair("circusd", "circusctl", "pip install circus"),
        }
    }
}

fn pair(daemon: &str, ctl: &str, how: &str) -> Result<(PathBuf, PathBuf), String> {
    match (python_command(daemon), python_command(ctl)) {
        (Some(d), Some(c)) => Ok((d, c)),
        _ => Err(format!(
            "`{daemon}`/`{ctl}` not found on PATH ({how} to compare against it)"
        )),
    }
}

/// A Python console script on PATH. A pyenv *shim* is replaced by the script it runs
/// (`pyenv which`), so that neither the daemon's pid nor a CLI's time is the shim's bash.
fn python_command(name: &str) -> Option<PathBuf> {
    let found = setup::find_on_path(name)?;
    let is_shim = found
        .parent()
        .and_then(|d| d.file_name())
        .is_some_and(|n| n == "shims");
    if !is_shim {
        return Some(found);
    }
    let pyenv = setup::find_on_path("pyenv")?;
    let mut cmd = std::process::Command::new(pyenv);
    cmd.arg("which").arg(name);
    let done = crate::cleanup::run(&mut cmd, Duration::from_secs(20)).ok()?;
    let real = PathBuf::from(done.stdout.trim());
    (done.success() && real.is_file())
        .then_some(real)
        .or(Some(found))
}

/// Starts `peer` with `programs`, its files in `dir`. Returns once its control interface
/// answers (which, for supervisord, is after its initial spawns).
pub fn launch(
    peer: Peer,
    programs: &[Program],
    dir: &Path,
    paths: &Paths,
    installed: &Installed,
) -> Result<Box<dyn System>, String> {
    Ok(match peer {
        Peer::Supergo => Box::new(Supergo::launch(programs, dir, paths)?),
        Peer::Supervisord => {
            let (d, c) = installed.supervisord.clone()?;
            Box::new(Supervisord::launch(programs, dir, &d, &c)?)
        }
        Peer::CircusRestart | Peer::CircusReload => {
            let (d, c) = installed.circus.clone()?;
            Box::new(Circus::launch(programs, dir, &d, &c, peer)?)
        }
    })
}

/// Polls `f` until it returns `Some`, or fails at `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if t.elapsed() >= timeout {
            return Err(format!(
                "{what}: not done after {:.1} s",
                timeout.as_secs_f64()
            ));
        }
        std::thread::sleep(every);
    }
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}
