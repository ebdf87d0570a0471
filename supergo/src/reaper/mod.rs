//! The only place that reaps children, and the routing of each exit to its program.
//!
//! A worker starts a child through [`Reaper::spawn`]. No lock is held across the clone (a
//! CLONE_VFORK clone returns only once the child has exec'd, which a hung mount can delay
//! forever): the pid is registered after the clone returns, under a lock held for the
//! registration only. An exit reaped before its pid is registered (a child that failed at
//! once) waits in the parking (`parking.rs`) and is delivered at the registration, so an
//! instantly failing child is never lost and a hung one freezes no one but its program.
//!
//! Orphans: supergo, as PID 1 or as its programs' child subreaper, also reaps every
//! descendant whose parent exited (a daemonizing helper, a script's background job). Their
//! exits are routine and go quietly, with no log line each. While no clone is in flight, an
//! exit of an unregistered pid can only be an orphan's, and is dropped at once; while one is,
//! it is parked, and dropped when the last clone in flight is registered (or by the
//! parking's own bounds, should a clone hang).
//!
//! The same lock covers the child's pidfd (`spawn::register_child` / `forget_child`): it is
//! registered with the pid and closed when the pid is reaped.
//!
//! Nothing else in supergo calls `waitpid`, and nothing uses `std::process::Command` for
//! children (it reaps on its own and cannot set `LISTEN_PID`).
//!
//! An exit goes where its pid's [`ExitRoute`] says: a worker's commands channel (so that a
//! program has one channel, and its exits come in order with the core's commands), or a
//! channel of exits alone (the upgrade's pre-flight check, which is no worker).

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

use crate::program::Command;
use crate::spawn::{self, Prepared, SpawnError};
use parking::Parking;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(Signal, bool),
    /// An adopted process ended: it is not supergo's child, so how is not known
    /// (`adopt::watch`).
    Unknown,
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
            ExitStatus::Unknown => f.write_str(
                "exited with an unknown status (it was adopted: not supergo's child, its exit status goes to its parent)",
            ),
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

/// Where the exits of a pid go (see the module docs).
#[derive(Clone)]
pub enum ExitRoute {
    /// A worker's commands channel: the exit comes as `Command::Exited`.
    Worker(Sender<Command>),
    /// A channel of exits alone.
    Exits(Sender<Exit>),
}

impl ExitRoute {
    /// Sends `exit`; false when nobody listens any more (a worker that is gone no longer
    /// cares).
    pub fn send(&self, exit: Exit) -> bool {
        match self {
            // Boxed: a command stays small (see `Command`), and exits are rare.
            ExitRoute::Worker(commands) => commands.send(Command::Exited(Box::new(exit))).is_ok(),
            ExitRoute::Exits(exits) => exits.send(exit).is_ok(),
        }
    }
}

impl From<&Sender<Exit>> for ExitRoute {
    fn from(exits: &Sender<Exit>) -> ExitRoute {
        ExitRoute::Exits(exits.clone())
    }
}

/// The pid → worker routes, and the exits waiting for theirs.
#[derive(Default)]
pub struct Reaper {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    routes: HashMap<Pid, ExitRoute>,
    parking: Parking,
    /// Clones begun and not registered yet (see the module docs on orphans).
    clones_in_flight: usize,
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
    pub fn spawn(
        &self,
        prepared: &mut Prepared,
        route: impl Into<ExitRoute>,
    ) -> Result<Pid, SpawnError> {
        let route = route.into();
        let since = Instant::now();
        self.table().clones_in_flight += 1;
        // No lock here: see the module docs.
        let mut cloned = match spawn::clone_child(prepared) {
            Ok(cloned) => cloned,
            Err(e) => {
                self.clone_done();
                return Err(e);
            }
        };
        self.register(cloned.pid, cloned.pidfd.take(), route, since);
        self.clone_done();
        cloned.wait_exec(prepared)
    }

    /// A clone has been registered (or failed): once none is in flight, every parked exit is
    /// an orphan's (each clone claimed its own at its registration).
    fn clone_done(&self) {
        let mut table = self.table();
        table.clones_in_flight = table.clones_in_flight.saturating_sub(1);
        if table.clones_in_flight == 0 {
            table.parking.clear();
        }
    }

    /// Registers a child handed over by an upgrade in place (still supergo's child, not
    /// reaped: its pid cannot have been reused), with a pidfd opened again now. Called before
    /// the new image's first reap, so an exit during the exec is routed like any other.
    pub fn adopt(&self, pid: Pid, route: ExitRoute) {
        // A zombie has a pidfd too; without one (Linux < 5.3) signals go by pid, which is
        // safe while the child is not reaped.
        let pidfd = crate::adopt::pidfd::pidfd_open(pid).ok();
        let mut table = self.table();
        table.routes.insert(pid, route);
        spawn::register_child(pid, pidfd);
    }

    /// Registers `pid` for `route`, or hands it its exit at once when the reaper was first.
    fn register(&self, pid: Pid, pidfd: Option<OwnedFd>, route: ExitRoute, since: Instant) {
        let parked = {
            let mut table = self.table();
            table.parking.expire(Instant::now());
            // A parked exit of this pid is this child's only if the child has exited: the
            // pidfd says so (an orphan of the same pid reaped meanwhile is not it).
            let exited = pidfd.as_ref().is_none_or(has_exited);
            let parked = if exited {
                table.parking.claim(pid, since)
            } else {
                None
            };
            match parked {
                Some(exit) => Some((route, exit)),
                None => {
                    table.routes.insert(pid, route);
                    spawn::register_child(pid, pidfd);
                    None
                }
            }
        };
        // Sent outside the lock.
        if let Some((route, exit)) = parked {
            route.send(exit);
        }
    }

    /// Every pid registered now: the live processes of every program (their process groups
    /// are the ones the workers signal themselves).
    pub fn registered_pids(&self) -> Vec<Pid> {
        self.table().routes.keys().copied().collect()
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
        let route = {
            let mut table = self.table();
            let route = table.routes.remove(&pid);
            if route.is_some() {
                // Reaped: its pid is free for reuse, so its pidfd goes too.
                spawn::forget_child(pid);
            } else if table.clones_in_flight > 0 {
                // Maybe a spawn's child reaped before its registration (or an orphan).
                table.parking.park(exit);
            }
            // Else an orphan's exit: dropped quietly (see the module docs).
            table.parking.expire(exit.at);
            route
        };
        // A worker that is gone no longer cares; nothing to do.
        if let Some(route) = route {
            route.send(exit);
        }
    }
}

/// True once the pidfd's process has exited (a pidfd polls readable then).
fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}
