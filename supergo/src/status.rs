//! The status a worker publishes after every transition, read by the control API without
//! waiting on the (possibly busy) worker (`supervisor::status_answer` writes them as
//! `GET /status`).

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The states of DESIGN.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum State {
    Stopped,
    Starting,
    Running,
    Backoff,
    Stopping,
    Exited,
    Fatal,
}

/// An old generation asked to stop, finishing its in-flight work.
#[derive(Clone, Debug, Serialize)]
pub struct Draining {
    pub pid: i32,
    pub generation: u64,
    /// Unix seconds when it was asked to stop.
    pub since: f64,
    /// Unix seconds when it gets SIGKILL if still alive (0 once it has been sent).
    pub kill_at: f64,
    /// Why it is stopping: "handoff", "rollback", "stop".
    pub reason: &'static str,
}

/// A new generation being started by a restart, not ready yet.
#[derive(Clone, Debug, Serialize)]
pub struct Handoff {
    pub pid: i32,
    pub generation: u64,
    pub since: f64,
}

/// One output stream of a program, as the log thread counts it (none for a discarded one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputStatus {
    /// "stdout" or "stderr" (the pipe: with `redirect_stderr`, stdout carries both).
    pub stream: String,
    /// The log file, or "/dev/stdout" / "/dev/stderr" for supergo's own stream.
    pub path: String,
    /// The child's bytes written (supergo's prefixes not counted).
    pub bytes_written: u64,
    /// The child's bytes read but not written: a log file that cannot be written, or
    /// supergo's own stdout/stderr not being read (its buffer full for more than a second).
    pub bytes_dropped: u64,
}

/// One program as the control API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramStatus {
    pub name: String,
    pub state: State,
    /// The serving (or starting) process; 0 when none.
    pub pid: i32,
    pub generation: u64,
    /// Unix seconds; 0 when never started / never stopped.
    pub start_time: u64,
    pub stop_time: u64,
    pub uptime_secs: f64,
    pub listeners: Vec<String>,
    pub draining: Vec<Draining>,
    pub handoff: Option<Handoff>,
    /// Times the program was started again after an exit (crash restarts, not handoffs).
    pub restarts: u64,
    pub handoffs: u64,
    pub failed_handoffs: u64,
    pub last_handoff_ms: Option<f64>,
    pub last_exit: Option<String>,
    pub error: Option<String>,
    /// The child's last `STATUS=` (ready = "notify").
    pub status_text: Option<String>,
    /// Set while the serving process is one supergo adopted after its predecessor died
    /// (not its child: its exit status will not be known); says from which supergo.
    pub adopted: Option<String>,
    /// Counters of its output streams; filled from the log thread when read
    /// (`LogHub::fill_output`), empty in what the worker publishes.
    pub output: Vec<OutputStatus>,
}

impl ProgramStatus {
    pub fn new(name: &str) -> ProgramStatus {
        ProgramStatus {
            name: name.to_string(),
            state: State::Stopped,
            pid: 0,
            generation: 0,
            start_time: 0,
            stop_time: 0,
            uptime_secs: 0.0,
            listeners: Vec::new(),
            draining: Vec::new(),
            handoff: None,
            restarts: 0,
            handoffs: 0,
            failed_handoffs: 0,
            last_handoff_ms: None,
            last_exit: None,
            error: None,
            status_text: None,
            adopted: None,
            output: Vec::new(),
        }
    }

    /// The snapshot as of now: `uptime_secs` is computed when read, not when published.
    pub fn at_now(&self) -> ProgramStatus {
        let mut status = self.clone();
        status.uptime_secs = self.uptime_at(unix_now());
        status
    }

    /// `uptime_secs` at `now` (unix seconds): 0 without a process.
    pub fn uptime_at(&self, now: f64) -> f64 {
        if self.pid != 0 && self.start_time != 0 {
            (now - self.start_time as f64).max(0.0)
        } else {
            self.uptime_secs
        }
    }
}

/// The shared, published snapshot of one program.
pub type SharedStatus = Arc<Mutex<ProgramStatus>>;

pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn unix_now() -> f64 {
    unix_seconds(SystemTime::now())
}
