//! What is due at a moment: a starting process's readiness deadline (ready, or a failed start
//! for `ready = "notify"`), a handoff's (complete, or roll back), a backoff's next try, the
//! SIGKILL of a drain that overran `stop_timeout`, and the end of drains whose group emptied;
//! the same for helpers outside the program's groups being stopped (`escaped`).

use std::time::Instant;

use super::fixed::secs;
use super::process::StopReason;
use super::worker::Worker;
use crate::config::ReadyMode;

impl Worker {
    pub(super) fn on_timers(&mut self, now: Instant) {
        let notify = self.resources.config.ready == ReadyMode::Notify;
        if self
            .gens
            .current
            .as_ref()
            .is_some_and(|p| !p.ready && now >= p.ready_deadline.mono)
        {
            if notify {
                let process = self.gens.current.take().expect("checked just above");
                let message = format!(
                    "pid {} did not send READY=1 within ready_timeout ({} s)",
                    process.pid,
                    secs(self.resources.config.ready_timeout, 1)
                );
                self.begin_stop(process, StopReason::Rollback);
                self.on_start_failure(message);
            } else {
                self.mark_current_ready();
            }
        }
        if let Some(h) = &self.gens.handoff {
            if now >= h.process.ready_deadline.mono {
                let handoff_notify = self
                    .resources
                    .incoming
                    .as_ref()
                    .map(|r| r.config.ready == ReadyMode::Notify)
                    .unwrap_or(notify);
                if handoff_notify {
                    let timeout =
                        (h.process.ready_deadline.mono).duration_since(h.process.started.mono);
                    let timeout = secs(timeout, 1);
                    self.roll_back(
                        format!("did not send READY=1 within ready_timeout ({timeout} s)"),
                        true,
                    );
                } else {
                    self.complete_handoff();
                }
            }
        }
        if self.life.backoff_due(now) {
            self.record.restarts += 1;
            self.launch();
        }
        self.gens.kill_overdue(now, &self.resources.config.name);
        self.end_emptied_group_drains(now);
        self.tend_escaped(now);
    }
}
