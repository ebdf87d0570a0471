//! The only place that reaps children, and the routing of each exit to its program.
//!
//! A worker starts a child through [`Reaper::spawn`]. No lock is held across the clone (a
//! CLONE_VFORK clone returns only once the child has exec'd, which a hung mount can delay
//! forever): the pid is registered after the clone returns, under a lock held for the
//! registration only. An exit reaped before its pid is registered (a child that failed at
//! once) waits in the parking (`parking.rs`) and is delivered at the registration, so an
//! instantly failing child is never lost and a hung one freezes no one but its program.
//!
//! The same lock covers the child's pidfd (`spawn::register_child` / `forget_child`): it is
//! registered with the pid and closed when the pid is reaped.
//!
//! Nothing else in supergo calls `waitpid`, and nothing uses `std::process::Command` for
//! children (it reaps on its own and cannot set `LISTEN_PID`).

mod parking;

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crossbeam_channel::Sender;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::spawn::{self, Prepared, SpawnError};
use parking::Parking;

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

/// The pid → worker routes, and the exits waiting for theirs.
#[derive(Default)]
pub struct Reaper {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    routes: HashMap<Pid, Sender<Exit>>,
    parking: Parking,
}

impl Reaper {
    pub fn new() -> Reaper {
        Reaper::default()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts the prepared child, registers its pid (and pidfd) for `route` and waits for
    /// its `execve`.
    pub fn spawn(&self, prepared: &mut Prepared, route: &Sender<Exit>) -> Result<Pid, SpawnError> {
        let since = Instant::now();
        // No lock here: see the module docs.
        let mut cloned = spawn::clone_child(prepared)?;
        self.register(cloned.pid, cloned.pidfd.take(), route, since);
        cloned.wait_exec(prepared)
    }

    /// Registers a child handed over by an upgrade in place (still supergo's child, not
    /// reaped: its pid cannot have been reused), with a pidfd opened again now. Called before
    /// the new image's first reap, so an exit during the exec is routed like any other.
    pub fn adopt(&self, pid: Pid, route: &Sender<Exit>) {
        // A zombie has a pidfd too; without one (Linux < 5.3) signals go by pid, which is
        // safe while the child is not reaped.
        let pidfd = crate::adopt::pidfd::pidfd_open(pid).ok();
        let mut table = self.table();
        table.routes.insert(pid, route.clone());
        spawn::register_child(pid, pidfd);
    }

    /// Registers `pid` for `route`, or hands it its exit at once when the reaper was first.
    fn register(&self, pid: Pid, pidfd: Option<OwnedFd>, route: &Sender<Exit>, since: Instant) {
        let (parked, expired) = {
            let mut table = self.table();
            let expired = table.parking.expire(Instant::now());
            // A parked exit of this pid is this child's only if the child has exited: the
            // pidfd says so (an orphan of the same pid reaped meanwhile is not it).
            let exited = pidfd.as_ref().is_none_or(has_exited);
            let parked = if exited {
                table.parking.claim(pid, since)
            } else {
                None
            };
            if parked.is_none() {
                table.routes.insert(pid, route.clone());
                spawn::register_child(pid, pidfd);
            }
            (parked, expired)
        };
        if let Some(exit) = parked {
            let _ = route.send(exit);
        }
        log_unclaimed(expired);
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
        let (route, expired) = {
            let mut table = self.table();
            let route = table.routes.remove(&pid);
            if route.is_some() {
                // Reaped: its pid is free for reuse, so its pidfd goes too.
                spawn::forget_child(pid);
            } else {
                table.parking.park(exit);
            }
            (route, table.parking.expire(exit.at))
        };
        // A worker that is gone no longer cares; nothing to do.
        if let Some(route) = route {
            let _ = route.send(exit);
        }
        log_unclaimed(expired);
    }
}

/// True once the pidfd's process has exited (a pidfd polls readable then).
fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

fn log_unclaimed(expired: Vec<Exit>) {
    for exit in expired {
        crate::warn!(
            "reaped pid {} that no program owns ({})",
            exit.pid,
            exit.status
        );
    }
}
