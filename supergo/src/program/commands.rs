//! The core's commands (start, stop, restart, replace, shutdown): what each does in each
//! state, or the answer that says why it is refused. (Exits come on the same channel and go
//! to `exits`.)

use std::sync::Arc;
use std::time::SystemTime;

use super::fixed::secs;
use super::process::StopReason;
use super::resources::Replacement;
use super::waiters::Waiter;
use super::wiring::{Command, Replace};
use super::worker::Worker;
use crate::config::ProgramConfig;
use crate::listener::Listener;
use crate::reaper::ExitStatus;
use crate::reply::{Replier, Reply};
use crate::status::State;
use crate::warn;

impl Worker {
    /// Acts on `command`; the serving process's exit status when it was that exit (see
    /// `report_if_ended`). Inlined into the loop: one frame less on the way to a spawn (see
    /// `spawn_process`).
    #[inline(always)]
    pub(super) fn on_command(&mut self, command: Command) -> Option<ExitStatus> {
        match command {
            Command::Exited(exit) => {
                let serving_exit = self.serving_exit(&exit);
                self.on_exit(*exit);
                return serving_exit;
            }
            Command::Abandoned => {
                self.life.shutting_down = true;
                self.request_stop();
            }
            Command::Start(reply) => self.on_start(reply),
            Command::Stop(reply) => self.on_stop(reply),
            Command::Restart(reply) => self.on_restart(reply),
            Command::Replace(replace) => {
                let Replace {
                    config,
                    listeners,
                    reply,
                } = *replace;
                self.on_replace(config, listeners, reply)
            }
            Command::Shutdown(reply) => {
                self.life.shutting_down = true;
                self.waiters.add_stop(reply);
                self.request_stop();
            }
            Command::Freeze(order) => self.on_freeze(*order),
        }
        None
    }

    pub(super) fn on_start(&mut self, reply: Option<Replier>) {
        match self.life.state {
            State::Running => {
                let message = format!(
                    "{} is already running (pid {})",
                    self.name(),
                    self.gens.current_pid()
                );
                let data = self.result_data();
                self.waiters.answer(reply, Reply::ok(message, data));
            }
            State::Starting => self.waiters.add_ready(reply.map(Waiter::Start)),
            State::Stopping => {
                let message = format!(
                    "{} is stopping; start it again once it has stopped",
                    self.name()
                );
                self.waiters.answer(reply, Reply::error(409, message));
            }
            State::Stopped | State::Exited | State::Fatal | State::Backoff => {
                self.waiters.add_ready(reply.map(Waiter::Start));
                self.life.fresh_start();
                self.launch();
            }
        }
    }

    fn on_stop(&mut self, reply: Option<Replier>) {
        if !self.gens.has_processes() && self.life.is_idle() {
            let was = self.life.state;
            self.life.backoff_until = None;
            if was == State::Backoff {
                self.life.state = State::Stopped;
                self.record.stop_time = SystemTime::now();
            }
            let message = format!("{} is not running ({was:?})", self.name());
            let data = self.result_data();
            self.waiters.answer(reply, Reply::ok(message, data));
            return;
        }
        self.waiters.add_stop(reply);
        self.request_stop();
    }

    fn on_restart(&mut self, reply: Option<Replier>) {
        if let Some(handoff) = &self.gens.handoff {
            let message = format!(
                "{}: a restart is already in progress (new pid {} started {} s ago); wait for its outcome",
                self.name(),
                handoff.process.pid,
                secs(handoff.requested.elapsed(), 1)
            );
            return self.waiters.answer(reply, Reply::error(409, message));
        }
        if self.gens.stop_first.is_some() {
            let message = format!(
                "{}: a restart is already in progress (stopping the old process first)",
                self.name()
            );
            return self.waiters.answer(reply, Reply::error(409, message));
        }
        match self.life.state {
            State::Running => {
                if self.resources.config.stop_before_restart {
                    self.restart_stop_first(reply);
                } else {
                    self.start_handoff(None, reply);
                }
            }
            State::Starting => {
                let message = format!(
                    "{} is still starting (pid {}); restart it once it is running",
                    self.name(),
                    self.gens.current_pid()
                );
                self.waiters.answer(reply, Reply::error(409, message));
            }
            State::Stopping => {
                let message = format!("{} is stopping; start it once it has stopped", self.name());
                self.waiters.answer(reply, Reply::error(409, message));
            }
            State::Stopped | State::Exited | State::Fatal | State::Backoff => self.on_start(reply),
        }
    }

    fn on_replace(
        &mut self,
        config: Arc<ProgramConfig>,
        listeners: Result<Vec<Arc<Listener>>, String>,
        reply: Option<Replier>,
    ) {
        let listeners = match listeners {
            Ok(l) => l,
            Err(e) => {
                let message = format!(
                    "{}: cannot apply the new config: {e}; the old config stays",
                    self.name()
                );
                warn!("{message}");
                return self.waiters.answer(reply, Reply::error(500, message));
            }
        };
        if self.gens.handoff.is_some() || self.gens.stop_first.is_some() {
            let message = format!(
                "{}: a restart is in progress; run update again once it is done",
                self.name()
            );
            return self.waiters.answer(reply, Reply::error(409, message));
        }
        match self.life.state {
            State::Running if !config.stop_before_restart => {
                self.start_handoff(Some(Replacement { config, listeners }), reply)
            }
            State::Running => {
                self.resources.adopt(config, listeners);
                self.restart_stop_first(reply);
            }
            State::Stopped => {
                self.resources.adopt(config, listeners);
                let message = format!(
                    "{}: new config taken; the program stays stopped",
                    self.name()
                );
                let data = self.result_data();
                self.waiters.answer(reply, Reply::ok(message, data));
            }
            State::Exited | State::Fatal | State::Backoff | State::Starting => {
                self.replace_idle_or_starting(config, listeners, reply)
            }
            State::Stopping => {
                let message = format!(
                    "{} is stopping; run update again once it has stopped",
                    self.name()
                );
                self.waiters.answer(reply, Reply::error(409, message));
            }
        }
    }

    /// A new config for a program that does not serve: the starting process (if any) gives
    /// way, and the new config starts at once, or, with `autostart = false`, stays stopped.
    fn replace_idle_or_starting(
        &mut self,
        config: Arc<ProgramConfig>,
        listeners: Vec<Arc<Listener>>,
        reply: Option<Replier>,
    ) {
        if let Some(process) = self.gens.current.take() {
            self.begin_stop(process, StopReason::Replaced);
        }
        self.resources.adopt(config, listeners);
        self.resources.listen_error = None;
        self.life.backoff_until = None;
        if self.resources.config.autostart {
            // Not through on_start: in Starting it would only queue the reply, and nothing
            // would start the new config's process. Whoever waited for the replaced process
            // now waits for this one.
            self.waiters.add_ready(reply.map(Waiter::Start));
            self.life.failures = 0;
            self.launch();
        } else {
            self.life.state = State::Stopped;
            // Nothing will start: whoever waited for the replaced process (a `start`, the
            // priority starter) must hear it now, not when supergo exits.
            let cancelled = format!(
                "{}: start cancelled: update took a new config with autostart = false; the program stays stopped",
                self.name()
            );
            self.waiters.cancel_ready(&cancelled);
            let message = format!("{}: new config taken", self.name());
            let data = self.result_data();
            self.waiters.answer(reply, Reply::ok(message, data));
        }
    }
}
