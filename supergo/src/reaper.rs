//! The only place that reaps children, and the routing of each exit to its program.
//!
//! A worker forks through `Reaper::spawn`, which holds the route table's lock across the
//! fork and the registration of the new pid. The reaper takes the same lock before it routes
//! an exit, so even a child that dies before `fork` returns in the parent is routed to its
//! worker: an instantly failing child is never lost.
//!
//! Nothing else in supergo calls `waitpid`, and nothing uses `std::process::Command` for
//! children (it reaps on its own and cannot set `LISTEN_PID`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use crossbeam_channel::Sender;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::spawn::{self, Prepared, SpawnError};

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(Signal, bool),
}

impl ExitStatus {
    /// True for a clean `exit(code)` with `code` in `expected`.
    pub fn is_expected(&self, expected: &[i32]) -> bool {
        matches!(self, ExitStatus::Code(code) if expected.contains(code))
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exited with status {code}"),
            ExitStatus::Signal(sig, core) => {
                write!(f, "killed by signal {} ({sig})", *sig as i32)?;
                if *core {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
        }
    }
}

/// One reaped child.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    pub pid: Pid,
    pub status: ExitStatus,
    pub at: Instant,
}

/// The pid → worker routes.
#[derive(Default)]
pub struct Reaper {
    routes: Mutex<HashMap<Pid, Sender<Exit>>>,
}

impl Reaper {
    pub fn new() -> Reaper {
        Reaper::default()
    }

    /// Forks the prepared child, registers its pid for `route` and waits for its `execve`.
    pub fn spawn(&self, prepared: &mut Prepared, route: &Sender<Exit>) -> Result<Pid, SpawnError> {
        let forked = {
            let mut routes = self
                .routes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // The lock is held across fork and registration: the reaper may reap this pid
            // at any moment, but it cannot look up the route before it exists.
            let forked = spawn::fork(prepared)?;
            routes.insert(forked.pid, route.clone());
            forked
        };
        forked.wait_exec(prepared)
    }

    /// Reaps every child that has exited and routes each exit. Called on SIGCHLD.
    pub fn reap(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.route(pid, ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, core)) => {
                    self.route(pid, ExitStatus::Signal(sig, core))
                }
                Ok(WaitStatus::StillAlive) => return,
                // Stopped/continued children are not exits.
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                // ECHILD: no children at all, nothing left to reap.
                Err(_) => return,
            }
        }
    }

    fn route(&self, pid: Pid, status: ExitStatus) {
        let exit = Exit {
            pid,
            status,
            at: Instant::now(),
        };
        let route = self
            .routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&pid);
        match route {
            // A worker that is gone no longer cares; nothing to do.
            Some(route) => {
                let _ = route.send(exit);
            }
            None => crate::warn!("reaped pid {pid} that no program owns ({status})"),
        }
    }
}
