//! Stopping: a stop (or shutdown) cancels whatever was starting, asks every process to stop
//! (and the helpers that left the program's process groups: `escaped`), and ends, with its
//! answers, once no process is left.

use std::time::SystemTime;

use super::process::{Process, StopReason};
use super::worker::Worker;
use crate::info;
use crate::reply::Reply;
use crate::status::State;

impl Worker {
    pub(super) fn request_stop(&mut self) {
        // Before any stop signal (see `escaped`).
        let helpers = self.find_escaped();
        self.life.stop_requested = true;
        self.life.backoff_until = None;
        let name = self.name().to_string();
        self.waiters
            .cancel_ready(&format!("{name}: start cancelled: the program was stopped"));
        let cancelled = Reply::error(
            409,
            format!("{name}: restart cancelled: the program was stopped"),
        );
        if self.gens.stop_first.take().is_some() {
            let waiters = std::mem::take(&mut self.waiters.stop_first);
            self.waiters.answer_each(waiters, &cancelled);
        }
        if let Some((handoff, _replacement, waiters)) = self.take_handoff() {
            self.waiters.answer_each(waiters, &cancelled);
            self.begin_stop(handoff.process, StopReason::Stop);
        }
        if let Some(process) = self.gens.current.take() {
            self.begin_stop(process, StopReason::Stop);
        }
        self.stop_escaped(helpers);
        self.life.state = State::Stopping;
    }

    /// Sends the stop signal and starts the SIGKILL clock.
    pub(super) fn begin_stop(&mut self, process: Process, reason: StopReason) {
        self.gens
            .begin_stop(process, reason, &self.resources.config.name);
    }

    /// Ends a stop once nothing is left running (helpers outside the program's groups too).
    pub(super) fn check_stopped(&mut self) {
        if !self.life.stop_requested || self.gens.has_processes() || self.escaped.running() {
            return;
        }
        self.life.stop_requested = false;
        self.life.state = State::Stopped;
        self.record.stop_time = SystemTime::now();
        info!("{}: stopped", self.name());
        let data = self.result_data();
        let waiters = std::mem::take(&mut self.waiters.stop);
        let reply = Reply::ok(format!("{}: stopped", self.name()), data);
        self.waiters.answer_each(waiters, &reply);
    }
}
