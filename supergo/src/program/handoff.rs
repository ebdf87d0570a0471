//! A restart as one transaction: start generation k+1 beside k, hand over once it is ready
//! (k drains), or roll back when it fails (k keeps serving). Also the `stop_before_restart`
//! restart, which stops k first.
//!
//! A handoff lives in three parts that come and go together: its process (`gens.handoff`),
//! the new config it may bring (`resources.incoming`) and its waiters (`waiters.handoff`);
//! `take_handoff` takes all three at once.

use serde_json::json;

use super::fixed::{fixed, secs};
use super::generations::{Handoff, StopFirst};
use super::process::StopReason;
use super::resources::Replacement;
use super::stamp::Stamp;
use super::worker::Worker;
use crate::config::ReadyMode;
use crate::reply::{Replier, Reply};
use crate::status::State;
use crate::{error, info};

impl Worker {
    pub(super) fn start_handoff(
        &mut self,
        replacement: Option<Replacement>,
        reply: Option<Replier>,
    ) {
        let old_pid = self.gens.current_pid();
        // The handoff time counts from the request, spawn included.
        let requested = Stamp::now();
        let (config, listeners) = match &replacement {
            Some(r) => (r.config.clone(), r.listeners.clone()),
            None => (
                self.resources.config.clone(),
                self.resources.listeners.clone(),
            ),
        };
        if replacement.is_some() && config.ready != self.resources.config.ready {
            self.resources.notify = None;
        }
        match self.spawn_process(&config, &listeners) {
            Ok(process) => {
                info!(
                    "{}: restarting: pid {} (generation {}) starts beside pid {old_pid}, which keeps serving until it is ready",
                    self.name(),
                    process.pid,
                    process.generation
                );
                let ready_now = config.ready == ReadyMode::Uptime && config.start_secs.is_zero();
                self.gens.handoff = Some(Box::new(Handoff {
                    process,
                    old_pid,
                    requested,
                }));
                self.resources.incoming = replacement;
                self.waiters.add_handoff(reply);
                if ready_now {
                    self.complete_handoff();
                }
            }
            Err(message) => {
                self.record.failed_handoffs += 1;
                let message = format!(
                    "{}: restart failed: {message}; pid {old_pid} keeps serving",
                    self.name()
                );
                error!("{message}");
                let data = self.result_data();
                self.waiters
                    .answer(reply, Reply::error(500, message).with_data(data));
            }
        }
    }

    /// The handoff in progress, the config it brings, and who waits for it: taken together,
    /// so that none outlives the others.
    pub(super) fn take_handoff(&mut self) -> Option<(Handoff, Option<Replacement>, Vec<Replier>)> {
        let handoff = *self.gens.handoff.take()?;
        let replacement = self.resources.incoming.take();
        let waiters = std::mem::take(&mut self.waiters.handoff);
        Some((handoff, replacement, waiters))
    }

    pub(super) fn complete_handoff(&mut self) {
        let Some((mut handoff, replacement, waiters)) = self.take_handoff() else {
            return;
        };
        handoff.process.ready = true;
        let new_pid = handoff.process.pid;
        let ms = handoff.requested.elapsed().as_secs_f64() * 1000.0;
        if let Some(replacement) = replacement {
            self.resources.take_over(replacement);
        }
        if let Some(old) = self.gens.current.replace(handoff.process) {
            self.begin_stop(old, StopReason::Handoff);
        }
        self.life.state = State::Running;
        self.life.failures = 0;
        self.record.error = None;
        self.record.handoffs += 1;
        self.record.last_handoff_ms = Some(ms);
        let old_pid = handoff.old_pid;
        info!(
            "{}: handoff done: pid {old_pid} -> {new_pid} in {} ms; pid {old_pid} is draining (SIGKILL after {} s)",
            self.name(),
            fixed(ms, 0),
            secs(self.resources.config.stop_timeout, 1)
        );
        let data = json!({
            "name": self.name(),
            "old_pid": old_pid.as_raw(),
            "new_pid": new_pid.as_raw(),
            "handoff_ms": ms,
        });
        let message = format!(
            "{}: restarted, pid {old_pid} -> {new_pid} (ready in {} ms)",
            self.name(),
            fixed(ms, 0)
        );
        self.waiters.answer_each(waiters, &Reply::ok(message, data));
    }

    /// The new generation failed: stop it (if still alive) and keep the old one serving.
    pub(super) fn roll_back(&mut self, why: String, still_alive: bool) {
        let Some((handoff, _replacement, waiters)) = self.take_handoff() else {
            return;
        };
        self.record.failed_handoffs += 1;
        let message = format!(
            "{}: restart failed: new pid {} (generation {}) {why}; pid {} keeps serving",
            self.name(),
            handoff.process.pid,
            handoff.process.generation,
            handoff.old_pid
        );
        error!("{message}");
        self.record.error = Some(message.clone());
        if still_alive {
            self.begin_stop(handoff.process, StopReason::Rollback);
        }
        let data = self.result_data();
        self.waiters
            .answer_each(waiters, &Reply::error(500, message).with_data(data));
    }

    pub(super) fn restart_stop_first(&mut self, reply: Option<Replier>) {
        let Some(old) = self.gens.current.take() else {
            return self.on_start(reply);
        };
        let old_pid = old.pid;
        info!(
            "{}: restarting (stop_before_restart): stopping pid {old_pid} first",
            self.name()
        );
        self.begin_stop(old, StopReason::Restart);
        self.life.state = State::Stopping;
        self.gens.stop_first = Some(StopFirst {
            old_pid,
            requested: Stamp::now(),
        });
        self.waiters.add_stop_first(reply);
    }
}
