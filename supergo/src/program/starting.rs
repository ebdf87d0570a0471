//! Starting a process: spawning it with the program's resources, the moment it becomes
//! ready, and a failed start (backoff or Fatal, by the lifecycle's retry policy).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::SystemTime;

use nix::unistd::Pid;

use super::fixed::secs;
use super::lifecycle::{Verdict, MIN_RUN};
use super::outputs::Outputs;
use super::process::Process;
use super::worker::Worker;
use crate::config::{ProgramConfig, ReadyMode};
use crate::listener::Listener;
use crate::notify::NotifySocket;
use crate::spawn::{self, SpawnRequest};
use crate::status::State;
use crate::{error, info, warn};

impl Worker {
    /// Starts a process as the serving one (initial start, crash restart, backoff retry).
    pub(super) fn launch(&mut self) {
        if let Some(e) = self.resources.listen_error.clone() {
            let config = &self.resources.config;
            match self
                .ctx
                .pool
                .acquire_all(&config.listen_addrs, config.socket_mode)
            {
                Ok(listeners) => {
                    self.resources.listeners = listeners;
                    self.resources.listen_error = None;
                }
                Err(again) => {
                    let message = format!("{}: {again}", self.name());
                    error!("{message} (was: {e})");
                    self.life.state = State::Fatal;
                    self.record.error = Some(again);
                    self.answer_ready(Err(message));
                    return;
                }
            }
        }
        let config = self.resources.config.clone();
        let listeners = self.resources.listeners.clone();
        match self.spawn_process(&config, &listeners) {
            Ok(process) => {
                self.gens.current = Some(process);
                self.life.state = State::Starting;
                self.life.stop_requested = false;
                if config.ready == ReadyMode::Uptime && config.start_secs.is_zero() {
                    self.mark_current_ready();
                }
            }
            Err(message) => self.on_start_failure(message),
        }
    }

    /// Spawns a process of `config` on `listeners`, with the program's notify socket and log
    /// pipes (made first when missing, or when the log settings changed).
    ///
    /// Kept to a small stack frame: it is on the deepest path of a worker's stack (down to
    /// `spawn::prepare` looking the executable up), and a worker's stack costs a page of
    /// memory for each 4 KiB it ever reached; what needs room of its own (the outputs, the
    /// log line) is in functions it calls before and after.
    pub(super) fn spawn_process(
        &mut self,
        config: &ProgramConfig,
        listeners: &[Arc<Listener>],
    ) -> Result<Process, String> {
        let stdio = self.process_stdio(config)?;
        let generation = self.gens.last + 1;
        let notify_path = self
            .resources
            .notify
            .as_ref()
            .map(|n| n.path().to_path_buf());
        let mut prepared = spawn::prepare(SpawnRequest {
            config,
            listeners,
            generation,
            notify_socket: notify_path.as_deref(),
            stdio,
        })
        .map_err(|e| without_name(&config.name, e.message))?;
        let pid = self
            .ctx
            .reaper
            .spawn(&mut prepared, self.exit_route())
            .map_err(|e| {
                if let Some(pid) = e.pid {
                    self.gens.stillborn.push(pid);
                }
                without_name(&config.name, e.message)
            })?;
        self.gens.last = generation;
        Ok(started(pid, generation, config))
    }

    /// fd 1 and fd 2 for a new process of `config`, with the notify socket and log pipes made
    /// first when missing or when the log settings changed.
    #[inline(never)]
    fn process_stdio(&mut self, config: &ProgramConfig) -> Result<(OwnedFd, OwnedFd), String> {
        if config.ready == ReadyMode::Notify && self.resources.notify.is_none() {
            let socket = NotifySocket::bind(&config.name)
                .map_err(|e| format!("{}: cannot create its NOTIFY_SOCKET: {e}", config.name))?;
            self.resources.notify = Some(Box::new(socket));
        }
        if (self.resources.outputs.as_ref()).is_none_or(|o| !o.settings.are_those_of(config)) {
            self.resources.outputs = Some(Outputs::open(&self.ctx.logs, config)?);
        }
        self.resources
            .outputs
            .as_ref()
            .expect("opened just above")
            .stdio(config)
    }

    pub(super) fn mark_current_ready(&mut self) {
        let Some(process) = self.gens.current.as_mut() else {
            return;
        };
        process.ready = true;
        let pid = process.pid;
        let took = process.started.elapsed();
        self.life.state = State::Running;
        // Ready this fast proves little: the count resets once the process has run MIN_RUN
        // (see on_current_exit), or now if it already has.
        if took >= MIN_RUN {
            self.life.failures = 0;
        }
        self.record.error = None;
        info!(
            "{}[{pid}]: running (ready after {} ms)",
            self.name(),
            took.as_millis()
        );
        self.answer_ready(Ok(pid));
    }

    /// Answers everyone waiting for the serving process: `Ok(pid)` when it became ready.
    pub(super) fn answer_ready(&mut self, outcome: Result<Pid, String>) {
        let data = self.result_data();
        let name = self.resources.config.name.clone();
        self.waiters.answer_ready(&name, outcome, data);
    }

    pub(super) fn on_start_failure(&mut self, message: String) {
        self.record.error = Some(message.clone());
        if !self.life.stop_requested && !self.life.shutting_down {
            self.decide_after_failure(&message);
        }
        // After the decision, so the answer's `state` says Backoff or Fatal.
        self.answer_ready(Err(format!("{}: {message}", self.name())));
    }

    /// Backoff, or Fatal once `max_retry` retries in a row have failed.
    fn decide_after_failure(&mut self, message: &str) {
        let config = self.resources.config.clone();
        let name = &config.name;
        match self.life.fail(&config) {
            Verdict::GiveUp => {
                error!(
                    "{name}: giving up after {} failed start(s) in a row (max_retry = {}): {message}; state Fatal — fix it, then `supergoctl start {name}`",
                    self.life.failures,
                    config.max_retry,
                );
                self.record.stop_time = SystemTime::now();
            }
            Verdict::Retry(delay) => warn!(
                "{name}: {message}; retrying in {} s (retry {} of {})",
                secs(delay, 1),
                self.life.failures,
                config.max_retry
            ),
        }
    }
}

/// The new process, logged.
#[inline(never)]
fn started(pid: Pid, generation: u64, config: &ProgramConfig) -> Process {
    info!(
        "{}[{pid}]: started generation {generation} ({})",
        config.name,
        config.argv.join(" ")
    );
    Process::new(pid, generation, config)
}

/// Spawn errors name their program ("web: cannot execute …") for callers that log them
/// alone; the worker prefixes the name itself, once.
fn without_name(name: &str, message: String) -> String {
    match message.strip_prefix(&format!("{name}: ")) {
        Some(rest) => rest.to_string(),
        None => message,
    }
}
