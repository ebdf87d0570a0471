//! Where a program stands in its life (`State`), and the retry policy: failed starts in a
//! row, the backoff before the next try, `Fatal` once `max_retry` retries have failed, and
//! whether an exit is restarted at all (`auto_restart`).
//!
//! Plain data, all of it serialized by an upgrade or an adoption: `state`, `failures`,
//! `backoff_until` (by its wall-clock time), `stop_requested` and `shutting_down`.

use std::time::{Duration, Instant};

use super::stamp::Stamp;
use crate::config::{AutoRestart, ProgramConfig};
use crate::reaper::ExitStatus;
use crate::status::State;

/// An exit of a process that had been running shorter than this, which would be restarted,
/// counts as a failed start (backoff, `max_retry`): a program that dies right after it
/// became ready must not be forked again in a hot loop.
pub(super) const MIN_RUN: Duration = Duration::from_secs(1);

pub(super) struct Lifecycle {
    pub state: State,
    /// Failed starts in a row; reset once a process has proved itself.
    pub failures: u32,
    /// When the next try is due, in `Backoff`.
    pub backoff_until: Option<Stamp>,
    /// A stop is under way: it ends when no process is left.
    pub stop_requested: bool,
    /// The worker ends once stopped (supergo exits, or `update` removed the program).
    pub shutting_down: bool,
}

/// What a failed start leads to.
pub(super) enum Verdict {
    /// `Backoff`: try again after this delay.
    Retry(Duration),
    /// `Fatal`: `max_retry` retries in a row have failed.
    GiveUp,
}

impl Lifecycle {
    pub fn new() -> Lifecycle {
        Lifecycle {
            state: State::Stopped,
            failures: 0,
            backoff_until: None,
            stop_requested: false,
            shutting_down: false,
        }
    }

    /// No process serves or starts, and none is being stopped by request.
    pub fn is_idle(&self) -> bool {
        matches!(
            self.state,
            State::Stopped | State::Exited | State::Fatal | State::Backoff
        )
    }

    /// A fresh start asked for by an operator: the retry count and any backoff are reset.
    pub fn fresh_start(&mut self) {
        self.failures = 0;
        self.backoff_until = None;
    }

    /// Counts a failed start: `Backoff` with the next delay, or `Fatal` when retries ran out.
    pub fn fail(&mut self, config: &ProgramConfig) -> Verdict {
        self.failures += 1;
        if self.failures > config.max_retry {
            self.state = State::Fatal;
            return Verdict::GiveUp;
        }
        let delay = self.backoff_delay(config);
        self.state = State::Backoff;
        self.backoff_until = Some(Stamp::from_now(delay));
        Verdict::Retry(delay)
    }

    /// `backoff_secs`, doubling with each failure in a row, capped at `backoff_max_secs`.
    fn backoff_delay(&self, config: &ProgramConfig) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(30);
        let delay = config.backoff.as_secs_f64() * f64::from(1u32 << doublings);
        Duration::from_secs_f64(delay.min(config.backoff_max.as_secs_f64()))
    }

    /// True (once) when the backoff has run out and the next try is due.
    pub fn backoff_due(&mut self, now: Instant) -> bool {
        if self.backoff_until.is_some_and(|t| now >= t.mono) {
            self.backoff_until = None;
            return true;
        }
        false
    }
}

/// Whether an exit of a process that was ready is followed by a new one (`auto_restart`).
pub(super) fn restarts_after(config: &ProgramConfig, status: &ExitStatus) -> bool {
    match config.auto_restart {
        AutoRestart::Always => true,
        AutoRestart::Never => false,
        AutoRestart::Unexpected => !status.is_expected(&config.exit_codes),
    }
}
