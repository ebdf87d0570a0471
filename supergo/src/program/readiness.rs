//! `ready = "notify"`: what the program's processes send to its `NOTIFY_SOCKET`. `READY=1`
//! from the handoff's process completes the handoff; from a starting serving process, it is
//! running. `STATUS=` text is kept for status; anything from another process is ignored.

use std::time::{Duration, Instant};

use super::worker::Worker;
use crate::notify::Notification;
use crate::{info, warn};

/// How long after a logged foreign notification further ones are not logged.
const FOREIGN_QUIET: Duration = Duration::from_secs(10);

impl Worker {
    pub(super) fn on_notification(&mut self, note: Notification) {
        let is_handoff = self
            .gens
            .handoff
            .as_ref()
            .is_some_and(|h| note.from_process(h.process.pid));
        let is_current = self
            .gens
            .current
            .as_ref()
            .is_some_and(|p| note.from_process(p.pid));
        if !is_handoff && !is_current {
            // Anyone can send to the socket: say it, but not for every datagram of a flood.
            if self
                .resources
                .foreign_warned
                .is_none_or(|t| t.elapsed() >= FOREIGN_QUIET)
            {
                warn!(
                    "{}: ignoring a notification from pid {}, which is not its newest process (further ones are not logged for 10 s)",
                    self.name(),
                    note.pid
                );
                self.resources.foreign_warned = Some(Instant::now());
            }
            return;
        }
        if let Some(text) = note.status {
            self.record.status_text = Some(text);
        }
        if note.stopping {
            info!(
                "{}[{}]: the process says it is stopping (STOPPING=1)",
                self.name(),
                note.pid
            );
        }
        if !note.ready {
            return;
        }
        if is_handoff {
            self.complete_handoff();
        } else if self.gens.current.as_ref().is_some_and(|p| !p.ready) {
            self.mark_current_ready();
        }
    }
}
