//! A moment on both clocks: the monotonic `Instant` that the worker's timers compare, and
//! the wall-clock time that status shows.
//!
//! Why both: an `Instant` means nothing outside the process that took it, so state handed
//! across an exec (upgrade in place) or read back after a crash (adoption) carries the wall
//! clock, and the new process turns it back into an `Instant` relative to its own `now`.
//! Timers never use the wall clock: it can jump.

use std::time::{Duration, Instant, SystemTime};

use crate::status;

/// Stands in for "never" where a configured duration would overflow a clock.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Serialized as `wall` (unix seconds); `mono` is rebuilt from it on restore.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stamp {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// `duration` after this moment; a duration too long for the clocks means "never".
    pub fn after(&self, duration: Duration) -> Stamp {
        Stamp {
            mono: self
                .mono
                .checked_add(duration)
                .unwrap_or(self.mono + FAR_FUTURE),
            wall: self
                .wall
                .checked_add(duration)
                .unwrap_or(self.wall + FAR_FUTURE),
        }
    }

    /// `duration` from now.
    pub fn from_now(duration: Duration) -> Stamp {
        Stamp::now().after(duration)
    }

    pub fn elapsed(&self) -> Duration {
        self.mono.elapsed()
    }

    pub fn unix_seconds(&self) -> f64 {
        status::unix_seconds(self.wall)
    }
}
