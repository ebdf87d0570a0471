//! Nothing the bench starts may outlive it: daemons, their children, temp dirs.
//!
//! - Every daemon (supergo, supervisord, circusd) is started in a process group of its own
//!   and registered here; [`Daemon`]'s `Drop` sends SIGTERM to the group (the daemon stops its
//!   programs), waits, then SIGKILLs the group.
//! - The bench is a *child subreaper* (`PR_SET_CHILD_SUBREAPER`): a program whose supervisor
//!   died (or that a supervisor left behind) is re-parented to the bench rather than to init,
//!   so [`sweep_orphans`] finds it among our children and kills it. supergo puts each child in
//!   a session of its own, so the daemon's process group alone would not reach them.
//! - The release profile is `panic = "abort"`, so `Drop` does not run on a panic: a panic
//!   hook, and a thread that watches for SIGINT/SIGTERM/SIGHUP, run [`emergency_cleanup`].
//! - Temp dirs are registered too and removed by their guard or by the emergency cleanup.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::procfs;

/// Process groups of live daemons.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// Temp dirs not yet removed.
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The signal that asked the bench to stop (0: none yet).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: nix::libc::c_int) {
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// Once, first thing in `main`: subreaper, panic hook, signal watcher.
pub fn install() -> Result<(), String> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("cannot become a child subreaper (prctl): {e}"))?;
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("bench: panic: cleaning up every process and temp dir before exiting");
        emergency_cleanup();
        default_hook(info);
    }));
    // Not a blocked mask and `sigwait`: a blocked mask is inherited by every process the
    // bench spawns (std's Command keeps it), and a daemon started with SIGTERM blocked never
    // sees it. A handler instead: it is reset to the default action by `execve`, and only
    // stores the signal; a thread looks at it every 50 ms.
    let handler = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &handler) }
            .map_err(|e| format!("cannot handle {signal}: {e}"))?;
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| loop {
            let signal = RECEIVED.load(Ordering::SeqCst);
            if signal != 0 {
                let name = Signal::try_from(signal)
                    .map(|s| s.as_str())
                    .unwrap_or("signal");
                eprintln!("bench: {name}: cleaning up every process and temp dir, then exiting");
                emergency_cleanup();
                std::process::exit(130);
            }
            std::thread::sleep(Duration::from_millis(50));
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// Kills every registered daemon group and every orphan, removes every temp dir.
pub fn emergency_cleanup() {
    let groups: Vec<i32> = GROUPS
        .lock()
        .map(|g| g.iter().copied().collect())
        .unwrap_or_default();
    for &g in &groups {
        let _ = killpg(Pid::from_raw(g), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && groups.iter().any(|&g| procfs::alive(g)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &g in &groups {
        let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
    }
    sweep_orphans();
    let dirs: Vec<PathBuf> = DIRS.lock().map(|d| d.clone()).unwrap_or_default();
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Kills and reaps every process re-parented to the bench (see the module docs), with its
/// process group. Daemons and [`Tracked`] children are left to their owners, so a `Child` the
/// bench still holds is never reaped behind its back.
pub fn sweep_orphans() {
    let me = std::process::id() as i32;
    for _round in 0..20 {
        let orphans: Vec<procfs::Stat> = procfs::children(me)
            .into_iter()
            .filter(|s| !GROUPS.lock().map(|g| g.contains(&s.pid)).unwrap_or(false))
            .filter(|s| !is_tracked(s.pid))
            .collect();
        if orphans.is_empty() {
            return;
        }
        for s in &orphans {
            if s.state != 'Z' {
                // Its own group first (supergo's children lead one), then the pid itself.
                if s.pgrp == s.pid {
                    let _ = killpg(Pid::from_raw(s.pid), Signal::SIGKILL);
                }
                let _ = kill(Pid::from_raw(s.pid), Signal::SIGKILL);
            }
        }
        for s in &orphans {
            let _ = waitpid(Pid::from_raw(s.pid), Some(WaitPidFlag::WNOHANG));
        }
        std::thread::sleep(Duration::from_millis(20));
        for s in &orphans {
            let _ = waitpid(Pid::from_raw(s.pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// Pids of children the bench spawned itself and still holds a `Child` for.
static TRACKED: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn is_tracked(pid: i32) -> bool {
    TRACKED.lock().map(|t| t.contains(&pid)).unwrap_or(false)
}

/// A short-lived helper process the bench waits for itself (a CLI command, a standalone
/// child): registered so that [`sweep_orphans`] leaves it to its owner.
pub struct Tracked(pub Child);

impl Tracked {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Tracked> {
        // Holding the lock across spawn: a sweep cannot see the new pid untracked.
        let mut tracked = TRACKED.lock().unwrap_or_else(|p| p.into_inner());
        let child = cmd.spawn()?;
        tracked.insert(child.id() as i32);
        Ok(Tracked(child))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
        if let Ok(mut t) = TRACKED.lock() {
            t.remove(&(self.0.id() as i32));
        }
    }
}

/// A daemon in a process group of its own, stopped (and its group killed) on drop.
pub struct Daemon {
    pub name: String,
    child: Child,
    stopped: bool,
}

impl Daemon {
    /// Spawns `cmd` as the leader of a new process group, stdin from /dev/null, stdout and
    /// stderr appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Daemon, String> {
        use std::os::unix::process::CommandExt;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let mut groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        groups.insert(child.id() as i32);
        Ok(Daemon {
            name: name.to_string(),
            child,
            stopped: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether it is still running (reaps it if it exited).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL to the group; then sweeps orphans. Returns how
    /// long the daemon took to exit after SIGTERM (`None`: it had to be killed).
    pub fn stop(&mut self, grace: Duration) -> Option<Duration> {
        if self.stopped {
            return None;
        }
        self.stopped = true;
        let pid = self.pid();
        let t = Instant::now();
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let mut exited = None;
        while t.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = Some(t.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        if exited.is_none() {
            eprintln!(
                "bench: {} (pid {pid}) did not exit within {:.0} s of SIGTERM: killed",
                self.name,
                grace.as_secs_f64()
            );
            let _ = self.child.wait();
        }
        if let Ok(mut g) = GROUPS.lock() {
            g.remove(&pid);
        }
        sweep_orphans();
        exited
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

static DIR_SEQ: AtomicU32 = AtomicU32::new(0);

/// A temp dir removed on drop (or by the emergency cleanup).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> Result<TempDir, String> {
        let n = DIR_SEQ.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("supergo-bench-{}-{n}-{label}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Ok(mut d) = DIRS.lock() {
            d.push(path.clone());
        }
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // BENCH_KEEP_DIRS=1 keeps them, for reading a daemon's log after a surprise.
        if std::env::var_os("BENCH_KEEP_DIRS").is_some() {
            eprintln!("bench: keeping {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
        if let Ok(mut d) = DIRS.lock() {
            d.retain(|p| p != &self.path);
        }
    }
}

/// A command that ran to its end (or was killed at its timeout).
#[derive(Debug)]
pub struct Finished {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// From spawn to exit.
    pub took: Duration,
    pub timed_out: bool,
}

impl Finished {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// `stdout` and `stderr` in one line, for error messages.
    pub fn output(&self) -> String {
        format!("{} {}", self.stdout.trim(), self.stderr.trim())
            .trim()
            .replace('\n', " / ")
    }
}

/// Runs a command to its end, killing it at `timeout`; its output is read by two threads so
/// that a large answer (a 1000-program status) never blocks it on a full pipe. The time is
/// taken by a thread blocked in `wait`, so it is exact, not a polling interval.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Finished, String> {
    use std::io::Read;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{:?}", cmd.get_program());
    let t = Instant::now();
    let mut child = {
        let mut tracked = TRACKED.lock().unwrap_or_else(|p| p.into_inner());
        let child = cmd.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
        tracked.insert(child.id() as i32);
        child
    };
    let pid = child.id() as i32;
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .map(|pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let mut bytes = Vec::new();
                let _ = p.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            text
        })
    })
    .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send((status, Instant::now()));
    });
    let mut timed_out = false;
    let (status, ended) = match rx.recv_timeout(timeout) {
        Ok(done) => done,
        Err(_) => {
            timed_out = true;
            // Not reaped yet (the waiter has not returned), so the pid is still ours.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            rx.recv()
                .unwrap_or((Err(std::io::Error::other("lost")), Instant::now()))
        }
    };
    let _ = waiter.join();
    if let Ok(mut tracked) = TRACKED.lock() {
        tracked.remove(&pid);
    }
    let mut texts = readers.into_iter().map(|r| r.join().unwrap_or_default());
    Ok(Finished {
        status: status.ok(),
        stdout: texts.next().unwrap_or_default(),
        stderr: texts.next().unwrap_or_default(),
        took: ended - t,
        timed_out,
    })
}
