//! What start-up adoption decided for each program, as handed to its worker: the process it
//! adopts as the serving one (if any) and why it must be replaced at once, the processes it
//! stops, the process whose exit it waits for before starting afresh, and what to tell the
//! operator. Plain data plus the pidfds; the decisions are `startup`'s, the acting the
//! worker's (`program::adopted`).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::table::Role;
use crate::listener::Listener;

/// A recorded process found running: the same process (pid and start time), with
/// `SUPERGO_PROGRAM` naming its program.
#[derive(Debug)]
pub struct Found {
    pub pid: Pid,
    pub generation: u64,
    pub start_ticks: u64,
    pub role: Role,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub stop_as_group: bool,
    /// Its pidfd; `None` when the kernel gave none (it is then watched through /proc and
    /// signalled by pid, its start time checked just before).
    pub pidfd: Option<OwnedFd>,
}

/// One program's part of the adoption.
#[derive(Debug, Default)]
pub struct AdoptedProgram {
    pub name: String,
    /// The newest generation the dead supergo started: the next one continues from it.
    pub generation: u64,
    /// The dead supergo's pid (for the log and the status note).
    pub previous_pid: i32,
    /// Adopted as the serving process: its listening sockets were taken back.
    pub serving: Option<Found>,
    /// Why the adopted serving process is replaced at once (a handoff to a new generation).
    pub replace: Option<String>,
    /// Stopped (drained): not ready when supergo died, already draining, or not adoptable.
    pub stop: Vec<Found>,
    /// A stopped process that still holds a listening socket supergo could not take back:
    /// the program starts afresh once it has exited (binding sooner would fail).
    pub start_after: Option<Pid>,
    /// What went wrong, word for word, for the status and the log.
    pub error: Option<String>,
}

impl AdoptedProgram {
    /// True when the program still has to be started the normal way (no process adopted,
    /// none to wait for).
    pub fn needs_start(&self) -> bool {
        self.serving.is_none() && self.start_after.is_none()
    }

    /// Every process in it (the serving one first).
    pub fn processes(&self) -> impl Iterator<Item = &Found> {
        self.serving.iter().chain(&self.stop)
    }
}

/// The whole adoption: per program of the config, the programs no longer in it whose
/// processes must be stopped, and the listening sockets taken back (held here until the
/// programs' workers hold them: the listener pool keeps only weak references).
#[derive(Debug, Default)]
pub struct Adoption {
    pub programs: BTreeMap<String, AdoptedProgram>,
    pub removed: Vec<AdoptedProgram>,
    pub held: Vec<Arc<Listener>>,
}

impl Adoption {
    /// Takes the part of program `name`, if any.
    pub fn take(&mut self, name: &str) -> Option<AdoptedProgram> {
        self.programs.remove(name)
    }
}
