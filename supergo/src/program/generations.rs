//! The processes of one program, by role: the serving process (*current*), a new generation
//! that a restart started beside it (*handoff*), the old process of a `stop_before_restart`
//! restart (*stop first*), and every process asked to stop that has not exited (*draining*),
//! each with its SIGKILL deadline. Also the generation counter, and the pids that died before
//! `execve` (*stillborn*) whose exits will arrive and mean nothing.
//!
//! All plain data, and all of it would be serialized by an upgrade or an adoption: the
//! processes (see `process`), the handoff's old pid and request time, and `last`, so that the
//! next process gets the next `SUPERGO_GENERATION`. Which config a handoff hands over to
//! lives with the resources (`resources::Replacement`); who waits for it, with the waiters.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::fixed::secs;
use super::process::{Process, StopReason};
use super::push_one;
use super::stamp::Stamp;
use crate::reaper::ExitStatus;
use crate::{spawn, warn};

/// How often a stopping process group whose leader has exited is checked for emptiness.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// A new generation started by a restart or an update, not ready yet.
#[derive(Clone, Debug)]
pub(super) struct Handoff {
    pub process: Process,
    /// The serving process it replaces once ready.
    pub old_pid: Pid,
    /// When the restart was asked for: the handoff time counts from here, spawn included.
    pub requested: Stamp,
}

/// A `stop_before_restart` restart: the old process is stopping; start once it is gone.
#[derive(Clone, Copy, Debug)]
pub(super) struct StopFirst {
    pub old_pid: Pid,
    pub requested: Stamp,
}

/// Whose exit an exit is.
pub(super) enum Owner {
    Current,
    Handoff,
    Draining(usize),
    Unknown,
}

#[derive(Default)]
pub(super) struct Generations {
    /// The generation of the newest process started (`SUPERGO_GENERATION`); 0 before any.
    pub last: u64,
    pub current: Option<Process>,
    /// Boxed: a restart's while, and it is the biggest part of a worker's state.
    pub handoff: Option<Box<Handoff>>,
    pub stop_first: Option<StopFirst>,
    pub draining: Vec<Process>,
    /// Pids that failed before `execve`: their exits arrive later and mean nothing.
    pub stillborn: Vec<Pid>,
}

impl Generations {
    pub fn owner_of(&self, pid: Pid) -> Owner {
        if self.current.as_ref().is_some_and(|p| p.pid == pid) {
            Owner::Current
        } else if self.handoff.as_ref().is_some_and(|h| h.process.pid == pid) {
            Owner::Handoff
        } else if let Some(index) = self.draining.iter().position(|p| p.pid == pid) {
            Owner::Draining(index)
        } else {
            Owner::Unknown
        }
    }

    pub fn has_processes(&self) -> bool {
        self.current.is_some() || self.handoff.is_some() || !self.draining.is_empty()
    }

    /// The serving (or starting) process's pid; 0 when there is none.
    pub fn current_pid(&self) -> Pid {
        self.current
            .as_ref()
            .map(|p| p.pid)
            .unwrap_or(Pid::from_raw(0))
    }

    /// Sends the stop signal and keeps the process among the draining until it exits.
    pub fn begin_stop(&mut self, mut process: Process, reason: StopReason, name: &str) {
        process.ask_to_stop(reason, name);
        push_one(&mut self.draining, process);
    }

    /// The draining process at `index`, whose drain is over. The list's room goes with the
    /// last one.
    pub fn take_draining(&mut self, index: usize) -> Process {
        let process = self.draining.remove(index);
        if self.draining.is_empty() {
            self.draining = Vec::new();
        }
        process
    }

    /// The earliest readiness or SIGKILL deadline, or the next look at a group whose leader
    /// has exited.
    pub fn next_deadline(&self) -> Option<Instant> {
        let starting = self.current.as_ref().filter(|p| !p.ready);
        let handoff = self.handoff.as_ref().map(|h| &h.process);
        let kills = (self.draining.iter())
            .filter_map(|p| p.stop.as_ref().and_then(|s| s.kill_at))
            .map(|kill_at| kill_at.mono);
        // A group whose leader has exited sends no SIGCHLD when its last member goes (they
        // are not our children): look again shortly. Only while such a drain lasts.
        let group_poll = (self.draining.iter().any(|p| p.leader_exit.is_some()))
            .then(|| Instant::now() + GROUP_POLL);
        // Every turn of the loop asks: no allocation.
        (starting.into_iter().chain(handoff))
            .map(|p| p.ready_deadline.mono)
            .chain(kills)
            .chain(group_poll)
            .min()
    }

    /// SIGKILL to every draining process whose deadline has passed.
    pub fn kill_overdue(&mut self, now: Instant, name: &str) {
        for process in &mut self.draining {
            let Some(stop) = process.stop.as_mut() else {
                continue;
            };
            if stop.kill_at.is_some_and(|t| now >= t.mono) {
                warn!(
                    "{name}[{}]: still running {} s after the stop signal: sending SIGKILL",
                    process.pid,
                    secs(stop.since.elapsed(), 1)
                );
                spawn::signal_child(process.pid, Signal::SIGKILL, process.policy.as_group);
                stop.kill_at = None;
            }
        }
    }

    /// A draining process whose leader exited earlier and whose group is now empty: its
    /// drain is over, with the leader's exit status.
    pub fn take_emptied_group(&mut self) -> Option<(Process, ExitStatus)> {
        let index = self
            .draining
            .iter()
            .position(|p| p.leader_exit.is_some() && !p.group_alive())?;
        let process = self.take_draining(index);
        let status = process.leader_exit.expect("filtered just above");
        Some((process, status))
    }

    /// The process status shows as the program's: the serving one, else one being stopped
    /// by `stop` (so a stopping program still shows its pid).
    pub fn shown(&self) -> Option<&Process> {
        self.current.as_ref().or_else(|| {
            self.draining.iter().find(|p| {
                p.stop
                    .as_ref()
                    .is_some_and(|s| s.reason == StopReason::Stop)
            })
        })
    }
}
