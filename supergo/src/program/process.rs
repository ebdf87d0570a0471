//! One process of a program, as plain data: its pid and generation, how it is stopped, when
//! it started and by when it must be ready, and, once asked to stop, since when, why, and
//! when it gets SIGKILL. Also the signals sent to it.
//!
//! Every field would be serialized as is by an upgrade or an adoption: numbers, flags, an
//! exit status, a `StopReason` by name and `Stamp`s by their wall-clock half. A child of
//! supergo's keeps its pid across an upgrade's exec (not reaped, so not reused); an adopted
//! process (not supergo's child) travels with its start time (`adopted`), by which the new
//! image checks that the pid is still that process before it watches it again.

use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::fixed::secs;
use super::stamp::Stamp;
use crate::config::{ProgramConfig, ReadyMode};
use crate::info;
use crate::reaper::ExitStatus;
use crate::spawn;

/// How a process is stopped: taken from the config it was started with, so an `update`
/// that changes `stop_signal` never sends the new signal to an old binary.
#[derive(Clone, Copy, Debug)]
pub(super) struct StopPolicy {
    pub signal: Signal,
    pub timeout: Duration,
    pub as_group: bool,
}

impl StopPolicy {
    pub fn of(config: &ProgramConfig) -> StopPolicy {
        StopPolicy {
            signal: config.stop_signal,
            timeout: config.stop_timeout,
            as_group: config.stop_as_group,
        }
    }
}

/// Why a process was asked to stop (shown in status as `draining[].reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StopReason {
    /// An old generation after a successful restart: it drains.
    Handoff,
    /// A new generation that failed to become ready.
    Rollback,
    /// `stop`, `shutdown` or removal by `update`.
    Stop,
    /// A `stop_before_restart` restart: stopped before its successor starts.
    Restart,
    /// A process of the old config that an `update` replaced while it was not serving.
    Replaced,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Handoff => "handoff",
            StopReason::Rollback => "rollback",
            StopReason::Stop => "stop",
            StopReason::Restart => "restart",
            StopReason::Replaced => "replaced",
        }
    }
}

/// A process that has been asked to stop.
#[derive(Clone, Copy, Debug)]
pub(super) struct StopInfo {
    pub since: Stamp,
    /// When SIGKILL is due; `None` once sent.
    pub kill_at: Option<Stamp>,
    pub reason: StopReason,
}

/// One process of this program.
#[derive(Clone, Debug)]
pub(super) struct Process {
    pub pid: Pid,
    pub generation: u64,
    pub policy: StopPolicy,
    pub started: Stamp,
    /// `uptime`: when it counts as ready; `notify`: when it has failed to become ready.
    pub ready_deadline: Stamp,
    pub ready: bool,
    /// Boxed: only a process asked to stop has it, and it would triple the size of every
    /// other (the serving process is part of each worker).
    pub stop: Option<Box<StopInfo>>,
    /// Set when the leader exited while the rest of its process group still ran (a stopping
    /// `sh -c '…'` whose server drains): the drain ends when the group is empty.
    pub leader_exit: Option<ExitStatus>,
    /// Set for a process adopted after a crash (issue 15): not supergo's child, watched
    /// through its pidfd, its exit status unknown. Its start time as the kernel records it
    /// (field 22 of /proc/PID/stat), which names it even after its pid is reused.
    pub adopted: Option<u64>,
}

impl Process {
    /// A process just started from `config`.
    pub fn new(pid: Pid, generation: u64, config: &ProgramConfig) -> Process {
        let started = Stamp::now();
        Process {
            pid,
            generation,
            policy: StopPolicy::of(config),
            started,
            ready_deadline: started.after(ready_within(config)),
            ready: false,
            stop: None,
            leader_exit: None,
            adopted: None,
        }
    }

    /// Sends the stop signal and starts the SIGKILL clock.
    pub fn ask_to_stop(&mut self, reason: StopReason, name: &str) {
        let StopPolicy {
            signal,
            timeout,
            as_group,
        } = self.policy;
        let since = Stamp::now();
        info!(
            "{name}[{}]: sending SIG{} ({}); SIGKILL in {} s if still running",
            self.pid,
            signal.as_str().trim_start_matches("SIG"),
            reason.as_str(),
            secs(timeout, 1)
        );
        spawn::signal_child(self.pid, signal, as_group);
        self.stop = Some(Box::new(StopInfo {
            since,
            kill_at: Some(since.after(timeout)),
            reason,
        }));
    }

    /// SIGKILL to what the process left in its group (when it was started `stop_as_group`).
    pub fn kill_rest_of_group(&self) {
        if self.policy.as_group {
            spawn::signal_child(self.pid, Signal::SIGKILL, true);
        }
    }

    /// True while any process of the group this process leads exists.
    pub fn group_alive(&self) -> bool {
        if matches!(
            nix::sys::signal::killpg(self.pid, None),
            Err(nix::errno::Errno::ESRCH)
        ) {
            return false;
        }
        // An adopted leader is not supergo's child: once it exits it stays a zombie until
        // its parent (init) reaps it, and killpg counts a zombie. Then only a live member
        // counts. (A child of supergo's is reaped before its exit is routed: no zombie.)
        let leader_is_zombie = crate::adopt::procfs::stat(self.pid).is_ok_and(|s| !s.is_alive());
        !leader_is_zombie || crate::adopt::procfs::group_has_live_member(self.pid.as_raw())
    }
}

/// How long a new process of `config` may take to become ready: `start_secs` of uptime, or
/// `ready_timeout` to send `READY=1`.
pub fn ready_within(config: &ProgramConfig) -> Duration {
    match config.ready {
        ReadyMode::Uptime => config.start_secs,
        ReadyMode::Notify => config.ready_timeout,
    }
}
