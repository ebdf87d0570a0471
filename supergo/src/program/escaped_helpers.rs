//! The worker's `escaped` part (issue 16): the program's helpers outside its process groups
//! that are being stopped, and their deadlines. What finds them, signals them and gives up
//! on them is `escaped`.
//!
//! Not serialized (pidfds, and a stop in progress): a worker stopping helpers refuses an
//! upgrade in place (`freeze`).

use std::time::{Duration, Instant};

use crate::descendants::Escaped;

/// How often the worker looks whether the helpers being stopped have exited.
const POLL: Duration = Duration::from_millis(50);

/// The helpers being stopped, and their deadlines.
#[derive(Default)]
pub(super) struct EscapedHelpers {
    pub stopping: Vec<Escaped>,
    /// When they get SIGKILL; `None` once sent.
    pub kill_at: Option<Instant>,
    /// When the stop ends without those SIGKILL did not end.
    pub give_up_at: Option<Instant>,
}

impl EscapedHelpers {
    /// True while a helper being stopped may still run.
    pub fn running(&self) -> bool {
        !self.stopping.is_empty()
    }

    /// When the worker must look again: the SIGKILL deadline, or the next poll.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.stopping.is_empty() {
            return None;
        }
        let poll = Instant::now() + POLL;
        Some(self.kill_at.map_or(poll, |kill_at| kill_at.min(poll)))
    }
}
