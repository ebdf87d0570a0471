//! One worker thread per program: the state machine over its processes.
//!
//! A worker owns its program's config, its listeners, the serving process, a new generation
//! being started by a restart (the *handoff*), and every process asked to stop that has not
//! exited yet (*draining*). It is driven by `select!` over its command channel, its exit
//! channel (fed by the reaper), its readiness channel (`ready = "notify"`) and one deadline.
//!
//! A restart is one transaction: start generation k+1 on the same listeners while k keeps
//! serving; once k+1 is ready, ask k to stop (it drains); if k+1 exits or misses its
//! readiness deadline first, stop it and keep k. A failed restart never takes the service
//! down.
//!
//! Policy for exits of the serving process:
//! - an exit before the process was ready is a *failed start*: retried after a backoff that
//!   doubles from `backoff_secs` up to `backoff_max_secs`; after `max_retry` retries in a row
//!   the program is `Fatal`. (Failed starts are retried whatever `auto_restart` says, as
//!   supervisord does: a half-deployed binary is worth another try.)
//! - an exit after it was ready follows `auto_restart`; a restart then is immediate, since
//!   the process had proved it can start. Becoming ready resets the failure count.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{at, never, select, unbounded, Receiver, Sender};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::json;

use crate::config::{AutoRestart, ProgramConfig, ReadyMode};
use crate::listener::{Listener, ListenerPool};
use crate::logs::{LogHub, LogPipe, LogTarget};
use crate::notify::{Notification, NotifySocket};
use crate::reaper::{Exit, ExitStatus, Reaper};
use crate::reply::{Replier, Reply};
use crate::spawn::{self, SpawnRequest};
use crate::status::{self, Draining, Handoff as HandoffStatus, ProgramStatus, SharedStatus, State};
use crate::{error, info, warn};

/// What the core asks of a worker.
pub enum Command {
    Start(Option<Replier>),
    Stop(Option<Replier>),
    /// Restart; the reply comes when the handoff succeeded or failed.
    Restart(Option<Replier>),
    /// `update` changed this program: hand over to a process of the new config.
    Replace {
        config: Arc<ProgramConfig>,
        listeners: Result<Vec<Arc<Listener>>, String>,
        reply: Option<Replier>,
    },
    /// Stop everything and end the worker (supergo exits, or `update` removed the program).
    Shutdown(Option<Replier>),
}

/// What a worker shares with the rest of supergo.
pub struct Context {
    pub reaper: Arc<Reaper>,
    pub pool: Arc<ListenerPool>,
    pub logs: Arc<LogHub>,
}

/// The core's side of a worker.
/// A program's effective config: the one its serving process runs with. The worker updates
/// it when a handoff to a new config succeeds, so a failed `update` leaves the old one here
/// and a later `reread` still shows the change.
pub type SharedConfig = Arc<Mutex<Arc<ProgramConfig>>>;

pub struct ProgramHandle {
    pub config: SharedConfig,
    pub commands: Sender<Command>,
    pub status: SharedStatus,
    pub thread: JoinHandle<()>,
}

impl ProgramHandle {
    /// The effective config (see `SharedConfig`).
    pub fn config(&self) -> Arc<ProgramConfig> {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Starts the worker thread of one program. `listeners` is the outcome of binding its
/// addresses: an error makes the program `Fatal` with that error in its status.
pub fn launch(
    config: Arc<ProgramConfig>,
    listeners: Result<Vec<Arc<Listener>>, String>,
    ctx: Arc<Context>,
) -> std::io::Result<ProgramHandle> {
    let (commands_tx, commands_rx) = unbounded();
    let status: SharedStatus = Arc::new(Mutex::new(ProgramStatus::new(&config.name)));
    let shared_config: SharedConfig = Arc::new(Mutex::new(config.clone()));
    let worker = Worker::new(
        config.clone(),
        shared_config.clone(),
        listeners,
        ctx,
        commands_rx,
        status.clone(),
    );
    let thread = std::thread::Builder::new()
        .name(format!("program {}", config.name))
        // Workers keep little on their stack; a small stack keeps 1000 programs cheap.
        .stack_size(128 * 1024)
        .spawn(move || worker.run())?;
    Ok(ProgramHandle {
        config: shared_config,
        commands: commands_tx,
        status,
        thread,
    })
}

/// How a process is stopped: taken from the config it was started with, so an `update`
/// that changes `stop_signal` never sends the new signal to an old binary.
#[derive(Clone, Copy)]
struct StopPolicy {
    signal: Signal,
    timeout: Duration,
    as_group: bool,
}

/// One process of this program.
struct Process {
    pid: Pid,
    policy: StopPolicy,
    /// Set when the leader exited while the rest of its process group still ran (a stopping
    /// `sh -c '…'` whose server drains): the drain ends when the group is empty.
    leader_exit: Option<(ExitStatus, Instant)>,
    generation: u64,
    started: Instant,
    started_wall: SystemTime,
    /// `uptime`: when it counts as ready; `notify`: when it has failed to become ready.
    ready_deadline: Instant,
    ready: bool,
    stop: Option<StopInfo>,
}

struct StopInfo {
    since: Instant,
    since_wall: SystemTime,
    /// When SIGKILL is due; `None` once sent.
    kill_at: Option<Instant>,
    kill_at_wall: SystemTime,
    reason: &'static str,
}

/// A new generation started by a restart or an update, not ready yet.
struct Handoff {
    process: Process,
    old_pid: Pid,
    requested: Instant,
    waiters: Vec<Replier>,
    /// The config and listeners it runs with when `update` brought them; adopted only when
    /// the handoff succeeds.
    replacement: Option<(Arc<ProgramConfig>, Vec<Arc<Listener>>)>,
}

/// Someone waiting for the serving process to become ready.
enum Waiter {
    Start(Replier),
    /// A restart that had to stop the old process first (or whose old process died).
    Restart {
        reply: Replier,
        old_pid: Pid,
        requested: Instant,
    },
}

/// The pipes a program's output goes through, for the log settings they were made for.
/// Every generation shares them; a config with other log settings gets new ones (the old
/// pipes keep being drained while old processes still write into them).
struct Outputs {
    settings: (
        Option<std::path::PathBuf>,
        Option<std::path::PathBuf>,
        bool,
        u64,
        u32,
    ),
    stdout: Option<LogPipe>,
    stderr: Option<LogPipe>,
}

impl Outputs {
    fn settings_of(
        c: &ProgramConfig,
    ) -> (
        Option<std::path::PathBuf>,
        Option<std::path::PathBuf>,
        bool,
        u64,
        u32,
    ) {
        (
            c.stdout_file.clone(),
            c.stderr_file.clone(),
            c.redirect_stderr,
            c.log_max_bytes,
            c.log_backups,
        )
    }

    fn open(logs: &LogHub, c: &ProgramConfig) -> Result<Outputs, String> {
        let pipe =
            |stream: &str, path: &Option<std::path::PathBuf>| -> Result<Option<LogPipe>, String> {
                let Some(path) = path else { return Ok(None) };
                let target = LogTarget {
                    path: path.clone(),
                    max_bytes: c.log_max_bytes,
                    backups: c.log_backups,
                };
                logs.open(&c.name, stream, target).map(Some).map_err(|e| {
                    format!(
                        "{}: cannot create the {stream} pipe for {}: {e}",
                        c.name,
                        path.display()
                    )
                })
            };
        let stdout = pipe("stdout", &c.stdout_file)?;
        let stderr = if c.redirect_stderr {
            None
        } else {
            pipe("stderr", &c.stderr_file)?
        };
        Ok(Outputs {
            settings: Outputs::settings_of(c),
            stdout,
            stderr,
        })
    }

    /// fd 1 and fd 2 for a new child: pipe write ends, or /dev/null for a discarded stream.
    fn stdio(
        &self,
        c: &ProgramConfig,
    ) -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd), String> {
        let end = |pipe: &Option<LogPipe>| -> Result<std::os::fd::OwnedFd, String> {
            match pipe {
                Some(p) => p.try_clone_write_end(),
                None => std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .map(Into::into),
            }
            .map_err(|e| format!("{}: cannot set up its output: {e}", c.name))
        };
        let stdout = end(&self.stdout)?;
        let stderr = if c.redirect_stderr {
            end(&self.stdout)?
        } else {
            end(&self.stderr)?
        };
        Ok((stdout, stderr))
    }
}

/// A `stop_before_restart` restart: the old process is stopping; start once it is gone.
struct RestartAfterStop {
    old_pid: Pid,
    requested: Instant,
    waiters: Vec<Replier>,
}

struct Worker {
    config: Arc<ProgramConfig>,
    shared_config: SharedConfig,
    listeners: Vec<Arc<Listener>>,
    listen_error: Option<String>,
    ctx: Arc<Context>,
    commands: Receiver<Command>,
    exits_tx: Sender<Exit>,
    exits: Receiver<Exit>,
    notify: Option<NotifySocket>,
    outputs: Option<Outputs>,
    status: SharedStatus,

    state: State,
    generation: u64,
    current: Option<Process>,
    handoff: Option<Handoff>,
    stopping: Vec<Process>,
    /// Pids that failed before `execve`: their exits arrive later and mean nothing.
    stillborn: Vec<Pid>,
    failures: u32,
    backoff_until: Option<Instant>,
    waiters: Vec<Waiter>,
    stop_waiters: Vec<Replier>,
    stop_requested: bool,
    restart_after_stop: Option<RestartAfterStop>,
    shutting_down: bool,

    stop_time: SystemTime,
    restarts: u64,
    handoffs: u64,
    failed_handoffs: u64,
    last_handoff_ms: Option<f64>,
    last_exit: Option<String>,
    error: Option<String>,
    status_text: Option<String>,
    /// Answers decided during this turn of the loop; sent only after the status is
    /// published, so a client that gets "restarted" and then reads /status sees the new
    /// state, never the one before.
    outbox: Vec<(Replier, Reply)>,
    /// When a notification from a foreign process was last logged.
    foreign_warned: Option<Instant>,
}

impl Worker {
    fn new(
        config: Arc<ProgramConfig>,
        shared_config: SharedConfig,
        listeners: Result<Vec<Arc<Listener>>, String>,
        ctx: Arc<Context>,
        commands: Receiver<Command>,
        status: SharedStatus,
    ) -> Worker {
        let (exits_tx, exits) = unbounded();
        let (listeners, listen_error) = match listeners {
            Ok(l) => (l, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let mut worker = Worker {
            config,
            shared_config,
            listeners,
            listen_error: listen_error.clone(),
            ctx,
            commands,
            exits_tx,
            exits,
            notify: None,
            outputs: None,
            status,
            state: State::Stopped,
            generation: 0,
            current: None,
            handoff: None,
            stopping: Vec::new(),
            stillborn: Vec::new(),
            failures: 0,
            backoff_until: None,
            waiters: Vec::new(),
            stop_waiters: Vec::new(),
            stop_requested: false,
            restart_after_stop: None,
            shutting_down: false,
            stop_time: SystemTime::UNIX_EPOCH,
            restarts: 0,
            handoffs: 0,
            failed_handoffs: 0,
            last_handoff_ms: None,
            last_exit: None,
            error: None,
            status_text: None,
            outbox: Vec::new(),
            foreign_warned: None,
        };
        if let Some(e) = listen_error {
            error!("{}: {e}", worker.name());
            worker.state = State::Fatal;
            worker.error = Some(e);
        }
        worker.publish();
        worker
    }

    /// Queues an answer (see `outbox`).
    fn answer(&mut self, to: Option<Replier>, reply: Reply) {
        if let Some(to) = to {
            self.outbox.push((to, reply));
        }
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn run(mut self) {
        loop {
            let timer = match self.next_deadline() {
                Some(deadline) => at(deadline),
                None => never(),
            };
            let notifications = match &self.notify {
                Some(n) => n.receiver().clone(),
                None => never(),
            };
            select! {
                recv(self.commands) -> command => match command {
                    Ok(command) => self.on_command(command),
                    // The core is gone (supergo is exiting abnormally): stop the children
                    // rather than orphan them.
                    Err(_) => {
                        self.shutting_down = true;
                        self.request_stop();
                    }
                },
                recv(self.exits) -> exit => {
                    if let Ok(exit) = exit {
                        self.on_exit(exit);
                    }
                }
                recv(notifications) -> note => {
                    if let Ok(note) = note {
                        self.on_notification(note);
                    }
                }
                recv(timer) -> _ => {}
            }
            self.on_timers(Instant::now());
            self.check_stopped();
            self.publish();
            for (to, reply) in self.outbox.drain(..) {
                // The client may have hung up; nothing to do about it.
                let _ = to.send(reply);
            }
            if self.shutting_down && self.state == State::Stopped {
                return;
            }
        }
    }

    // ----- commands -------------------------------------------------------------------

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Start(reply) => self.on_start(reply),
            Command::Stop(reply) => self.on_stop(reply),
            Command::Restart(reply) => self.on_restart(reply),
            Command::Replace {
                config,
                listeners,
                reply,
            } => self.on_replace(config, listeners, reply),
            Command::Shutdown(reply) => {
                self.shutting_down = true;
                if let Some(r) = reply {
                    self.stop_waiters.push(r);
                }
                self.request_stop();
            }
        }
    }

    fn on_start(&mut self, reply: Option<Replier>) {
        match self.state {
            State::Running => self.answer(
                reply,
                Reply::ok(
                    format!(
                        "{} is already running (pid {})",
                        self.name(),
                        self.current_pid()
                    ),
                    self.result_data(),
                ),
            ),
            State::Starting => {
                if let Some(r) = reply {
                    self.waiters.push(Waiter::Start(r));
                }
            }
            State::Stopping => self.answer(
                reply,
                Reply::error(
                    409,
                    format!(
                        "{} is stopping; start it again once it has stopped",
                        self.name()
                    ),
                ),
            ),
            State::Stopped | State::Exited | State::Fatal | State::Backoff => {
                if let Some(r) = reply {
                    self.waiters.push(Waiter::Start(r));
                }
                self.failures = 0;
                self.backoff_until = None;
                self.launch();
            }
        }
    }

    fn on_stop(&mut self, reply: Option<Replier>) {
        if !self.has_processes()
            && matches!(
                self.state,
                State::Stopped | State::Exited | State::Fatal | State::Backoff
            )
        {
            let was = self.state;
            self.backoff_until = None;
            if was == State::Backoff {
                self.state = State::Stopped;
                self.stop_time = SystemTime::now();
            }
            self.answer(
                reply,
                Reply::ok(
                    format!("{} is not running ({was:?})", self.name()),
                    self.result_data(),
                ),
            );
            return;
        }
        if let Some(r) = reply {
            self.stop_waiters.push(r);
        }
        self.request_stop();
    }

    fn on_restart(&mut self, reply: Option<Replier>) {
        if let Some(handoff) = &self.handoff {
            let message = format!(
                "{}: a restart is already in progress (new pid {} started {:.1} s ago); wait for its outcome",
                self.name(),
                handoff.process.pid,
                handoff.requested.elapsed().as_secs_f64()
            );
            return self.answer(reply, Reply::error(409, message));
        }
        if self.restart_after_stop.is_some() {
            let message = format!(
                "{}: a restart is already in progress (stopping the old process first)",
                self.name()
            );
            return self.answer(reply, Reply::error(409, message));
        }
        match self.state {
            State::Running => {
                if self.config.stop_before_restart {
                    self.restart_stop_first(reply);
                } else {
                    self.start_handoff(None, reply);
                }
            }
            State::Starting => {
                let message = format!(
                    "{} is still starting (pid {}); restart it once it is running",
                    self.name(),
                    self.current_pid()
                );
                self.answer(reply, Reply::error(409, message));
            }
            State::Stopping => self.answer(
                reply,
                Reply::error(
                    409,
                    format!("{} is stopping; start it once it has stopped", self.name()),
                ),
            ),
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
                return self.answer(reply, Reply::error(500, message));
            }
        };
        if self.handoff.is_some() || self.restart_after_stop.is_some() {
            let message = format!(
                "{}: a restart is in progress; run update again once it is done",
                self.name()
            );
            return self.answer(reply, Reply::error(409, message));
        }
        match self.state {
            State::Running if !config.stop_before_restart => {
                self.start_handoff(Some((config, listeners)), reply)
            }
            State::Running => {
                self.adopt(config, listeners);
                self.restart_stop_first(reply);
            }
            State::Stopped => {
                self.adopt(config, listeners);
                let message = format!(
                    "{}: new config taken; the program stays stopped",
                    self.name()
                );
                self.answer(reply, Reply::ok(message, self.result_data()));
            }
            State::Exited | State::Fatal | State::Backoff | State::Starting => {
                if let Some(process) = self.current.take() {
                    self.begin_stop(process, "replaced");
                }
                self.adopt(config, listeners);
                self.listen_error = None;
                self.backoff_until = None;
                if self.config.autostart {
                    // Not through on_start: in Starting it would only queue the reply, and
                    // nothing would start the new config's process.
                    if let Some(r) = reply {
                        self.waiters.push(Waiter::Start(r));
                    }
                    self.failures = 0;
                    self.launch();
                } else {
                    self.state = State::Stopped;
                    self.answer(
                        reply,
                        Reply::ok(
                            format!("{}: new config taken", self.name()),
                            self.result_data(),
                        ),
                    );
                }
            }
            State::Stopping => self.answer(
                reply,
                Reply::error(
                    409,
                    format!(
                        "{} is stopping; run update again once it has stopped",
                        self.name()
                    ),
                ),
            ),
        }
    }

    /// Takes a new config and its listeners (the old listeners are released: a socket no
    /// other holder keeps is closed).
    fn adopt(&mut self, config: Arc<ProgramConfig>, listeners: Vec<Arc<Listener>>) {
        self.set_config(config);
        self.listeners = listeners;
        self.notify = None;
    }

    fn set_config(&mut self, config: Arc<ProgramConfig>) {
        *self.shared_config.lock().unwrap_or_else(|p| p.into_inner()) = config.clone();
        self.config = config;
    }

    // ----- starting -------------------------------------------------------------------

    /// Starts a process as the serving one (initial start, crash restart, backoff retry).
    fn launch(&mut self) {
        if let Some(e) = self.listen_error.clone() {
            match self
                .ctx
                .pool
                .acquire_all(&self.config.listen_addrs, self.config.socket_mode)
            {
                Ok(listeners) => {
                    self.listeners = listeners;
                    self.listen_error = None;
                }
                Err(again) => {
                    let message = format!("{}: {again}", self.name());
                    error!("{message} (was: {e})");
                    self.state = State::Fatal;
                    self.error = Some(again);
                    self.answer_waiters(Err(message));
                    return;
                }
            }
        }
        let config = self.config.clone();
        let listeners = self.listeners.clone();
        match self.spawn_process(&config, &listeners) {
            Ok(process) => {
                self.current = Some(process);
                self.state = State::Starting;
                self.stop_requested = false;
                if self.config.ready == ReadyMode::Uptime && self.config.start_secs.is_zero() {
                    self.mark_current_ready();
                }
            }
            Err(message) => self.on_start_failure(message),
        }
    }

    fn spawn_process(
        &mut self,
        config: &ProgramConfig,
        listeners: &[Arc<Listener>],
    ) -> Result<Process, String> {
        if config.ready == ReadyMode::Notify && self.notify.is_none() {
            self.notify =
                Some(NotifySocket::bind(&config.name).map_err(|e| {
                    format!("{}: cannot create its NOTIFY_SOCKET: {e}", config.name)
                })?);
        }
        // One spawn at a time (forks are serialized by the reaper anyway): only one set of
        // spawn buffers exists at once, instead of one per program when 1000 start together.
        let _spawning = SPAWNING.lock().unwrap_or_else(|p| p.into_inner());
        let settings = Outputs::settings_of(config);
        if self.outputs.as_ref().is_none_or(|o| o.settings != settings) {
            self.outputs = Some(Outputs::open(&self.ctx.logs, config)?);
        }
        let stdio = self
            .outputs
            .as_ref()
            .expect("opened just above")
            .stdio(config)?;
        let generation = self.generation + 1;
        let notify_path = self.notify.as_ref().map(|n| n.path().to_path_buf());
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
            .spawn(&mut prepared, &self.exits_tx)
            .map_err(|e| {
                if let Some(pid) = e.pid {
                    self.stillborn.push(pid);
                }
                without_name(&config.name, e.message)
            })?;
        self.generation = generation;
        let now = Instant::now();
        let ready_in = match config.ready {
            ReadyMode::Uptime => config.start_secs,
            ReadyMode::Notify => config.ready_timeout,
        };
        info!(
            "{}[{pid}]: started generation {generation} ({})",
            config.name,
            config.argv.join(" ")
        );
        Ok(Process {
            pid,
            policy: StopPolicy {
                signal: config.stop_signal,
                timeout: config.stop_timeout,
                as_group: config.stop_as_group,
            },
            leader_exit: None,
            generation,
            started: now,
            started_wall: SystemTime::now(),
            ready_deadline: now.checked_add(ready_in).unwrap_or(now + FAR_FUTURE),
            ready: false,
            stop: None,
        })
    }

    fn mark_current_ready(&mut self) {
        let Some(process) = self.current.as_mut() else {
            return;
        };
        process.ready = true;
        let pid = process.pid;
        let took = process.started.elapsed();
        self.state = State::Running;
        // Ready this fast proves little: the count resets once the process has run MIN_RUN
        // (see on_current_exit), or now if it already has.
        if took >= MIN_RUN {
            self.failures = 0;
        }
        self.error = None;
        info!(
            "{}[{pid}]: running (ready after {} ms)",
            self.name(),
            took.as_millis()
        );
        self.answer_waiters(Ok(pid));
    }

    /// Answers everyone waiting for the serving process: `Ok(pid)` when it became ready.
    fn answer_waiters(&mut self, outcome: Result<Pid, String>) {
        let name = self.name().to_string();
        for waiter in std::mem::take(&mut self.waiters) {
            match (&outcome, waiter) {
                (Ok(pid), Waiter::Start(r)) => {
                    self.answer(
                        Some(r),
                        Reply::ok(format!("{name}: started, pid {pid}"), self.result_data()),
                    );
                }
                (
                    Ok(pid),
                    Waiter::Restart {
                        reply,
                        old_pid,
                        requested,
                    },
                ) => {
                    let ms = requested.elapsed().as_secs_f64() * 1000.0;
                    self.answer(Some(reply), Reply::ok(
                        format!("{name}: restarted, pid {old_pid} -> {pid} (ready in {ms:.0} ms)"),
                        json!({"name": name, "old_pid": old_pid.as_raw(), "new_pid": pid.as_raw(), "handoff_ms": ms}),
                    ));
                }
                (Err(message), Waiter::Start(r) | Waiter::Restart { reply: r, .. }) => {
                    self.answer(
                        Some(r),
                        Reply::error(500, message.clone()).with_data(self.result_data()),
                    );
                }
            }
        }
    }

    fn on_start_failure(&mut self, message: String) {
        self.error = Some(message.clone());
        if self.stop_requested || self.shutting_down {
            self.answer_waiters(Err(format!("{}: {message}", self.name())));
            return;
        }
        self.decide_after_failure(&message);
        // After the decision, so the answer's `state` says Backoff or Fatal.
        self.answer_waiters(Err(format!("{}: {message}", self.name())));
    }

    /// Backoff, or Fatal once `max_retry` retries in a row have failed.
    fn decide_after_failure(&mut self, message: &str) {
        self.failures += 1;
        if self.failures > self.config.max_retry {
            error!(
                "{}: giving up after {} failed start(s) in a row (max_retry = {}): {message}; state Fatal — fix it, then `supergoctl start {}`",
                self.name(),
                self.failures,
                self.config.max_retry,
                self.name()
            );
            self.state = State::Fatal;
            self.stop_time = SystemTime::now();
            return;
        }
        let delay = self.backoff_delay();
        warn!(
            "{}: {message}; retrying in {:.1} s (retry {} of {})",
            self.name(),
            delay.as_secs_f64(),
            self.failures,
            self.config.max_retry
        );
        self.state = State::Backoff;
        self.backoff_until = Some(Instant::now() + delay);
    }

    /// `backoff_secs`, doubling with each failure in a row, capped at `backoff_max_secs`.
    fn backoff_delay(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(30);
        let delay = self.config.backoff.as_secs_f64() * f64::from(1u32 << doublings);
        Duration::from_secs_f64(delay.min(self.config.backoff_max.as_secs_f64()))
    }

    // ----- restart --------------------------------------------------------------------

    fn start_handoff(
        &mut self,
        replacement: Option<(Arc<ProgramConfig>, Vec<Arc<Listener>>)>,
        reply: Option<Replier>,
    ) {
        let old_pid = self.current_pid_raw();
        // The handoff time counts from the request, spawn included.
        let requested = Instant::now();
        let (config, listeners) = match &replacement {
            Some((c, l)) => (c.clone(), l.clone()),
            None => (self.config.clone(), self.listeners.clone()),
        };
        if replacement.is_some() && config.ready != self.config.ready {
            self.notify = None;
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
                self.handoff = Some(Handoff {
                    process,
                    old_pid,
                    requested,
                    waiters: reply.into_iter().collect(),
                    replacement,
                });
                if ready_now {
                    self.complete_handoff();
                }
            }
            Err(message) => {
                self.failed_handoffs += 1;
                let message = format!(
                    "{}: restart failed: {message}; pid {old_pid} keeps serving",
                    self.name()
                );
                error!("{message}");
                self.answer(
                    reply,
                    Reply::error(500, message).with_data(self.result_data()),
                );
            }
        }
    }

    fn complete_handoff(&mut self) {
        let Some(mut handoff) = self.handoff.take() else {
            return;
        };
        handoff.process.ready = true;
        let new_pid = handoff.process.pid;
        let took = handoff.requested.elapsed();
        let ms = took.as_secs_f64() * 1000.0;
        if let Some((config, listeners)) = handoff.replacement.take() {
            // The notify socket stays: the new process was given it.
            self.set_config(config);
            self.listeners = listeners;
        }
        let old = self.current.replace(handoff.process);
        if let Some(old) = old {
            self.begin_stop(old, "handoff");
        }
        self.state = State::Running;
        self.failures = 0;
        self.error = None;
        self.handoffs += 1;
        self.last_handoff_ms = Some(ms);
        info!(
            "{}: handoff done: pid {} -> {new_pid} in {ms:.0} ms; pid {} is draining (SIGKILL after {:.1} s)",
            self.name(),
            handoff.old_pid,
            handoff.old_pid,
            self.config.stop_timeout.as_secs_f64()
        );
        let data = json!({
            "name": self.name(),
            "old_pid": handoff.old_pid.as_raw(),
            "new_pid": new_pid.as_raw(),
            "handoff_ms": ms,
        });
        for waiter in handoff.waiters {
            let message = format!(
                "{}: restarted, pid {} -> {new_pid} (ready in {ms:.0} ms)",
                self.name(),
                handoff.old_pid
            );
            self.answer(Some(waiter), Reply::ok(message, data.clone()));
        }
    }

    /// The new generation failed: stop it (if still alive) and keep the old one serving.
    fn roll_back(&mut self, why: String, still_alive: bool) {
        let Some(handoff) = self.handoff.take() else {
            return;
        };
        self.failed_handoffs += 1;
        let pid = handoff.process.pid;
        let message = format!(
            "{}: restart failed: new pid {pid} (generation {}) {why}; pid {} keeps serving",
            self.name(),
            handoff.process.generation,
            handoff.old_pid
        );
        error!("{message}");
        self.error = Some(message.clone());
        if still_alive {
            self.begin_stop(handoff.process, "rollback");
        }
        for waiter in handoff.waiters {
            self.answer(
                Some(waiter),
                Reply::error(500, message.clone()).with_data(self.result_data()),
            );
        }
    }

    fn restart_stop_first(&mut self, reply: Option<Replier>) {
        let Some(old) = self.current.take() else {
            return self.on_start(reply);
        };
        let old_pid = old.pid;
        info!(
            "{}: restarting (stop_before_restart): stopping pid {old_pid} first",
            self.name()
        );
        self.begin_stop(old, "restart");
        self.state = State::Stopping;
        self.restart_after_stop = Some(RestartAfterStop {
            old_pid,
            requested: Instant::now(),
            waiters: reply.into_iter().collect(),
        });
    }

    // ----- stopping -------------------------------------------------------------------

    fn request_stop(&mut self) {
        self.stop_requested = true;
        self.backoff_until = None;
        let name = self.name().to_string();
        for waiter in std::mem::take(&mut self.waiters) {
            let (Waiter::Start(r) | Waiter::Restart { reply: r, .. }) = waiter;
            self.answer(
                Some(r),
                Reply::error(
                    409,
                    format!("{name}: start cancelled: the program was stopped"),
                ),
            );
        }
        if let Some(pending) = self.restart_after_stop.take() {
            for r in pending.waiters {
                self.answer(
                    Some(r),
                    Reply::error(
                        409,
                        format!("{name}: restart cancelled: the program was stopped"),
                    ),
                );
            }
        }
        if let Some(handoff) = self.handoff.take() {
            for r in handoff.waiters {
                self.answer(
                    Some(r),
                    Reply::error(
                        409,
                        format!("{name}: restart cancelled: the program was stopped"),
                    ),
                );
            }
            self.begin_stop(handoff.process, "stop");
        }
        if let Some(process) = self.current.take() {
            self.begin_stop(process, "stop");
        }
        self.state = State::Stopping;
    }

    /// Sends the stop signal and starts the SIGKILL clock.
    fn begin_stop(&mut self, mut process: Process, reason: &'static str) {
        let now = Instant::now();
        let StopPolicy {
            signal,
            timeout,
            as_group,
        } = process.policy;
        info!(
            "{}[{}]: sending SIG{} ({reason}); SIGKILL in {:.1} s if still running",
            self.name(),
            process.pid,
            signal.as_str().trim_start_matches("SIG"),
            timeout.as_secs_f64()
        );
        spawn::signal_child(process.pid, signal, as_group);
        process.stop = Some(StopInfo {
            since: now,
            since_wall: SystemTime::now(),
            kill_at: Some(now.checked_add(timeout).unwrap_or(now + FAR_FUTURE)),
            kill_at_wall: SystemTime::now()
                .checked_add(timeout)
                .unwrap_or(SystemTime::now() + FAR_FUTURE),
            reason,
        });
        self.stopping.push(process);
    }

    /// Ends a stop once nothing is left running.
    fn check_stopped(&mut self) {
        if !self.stop_requested || self.has_processes() {
            return;
        }
        self.stop_requested = false;
        self.state = State::Stopped;
        self.stop_time = SystemTime::now();
        info!("{}: stopped", self.name());
        let data = self.result_data();
        for r in std::mem::take(&mut self.stop_waiters) {
            self.answer(
                Some(r),
                Reply::ok(format!("{}: stopped", self.name()), data.clone()),
            );
        }
    }

    fn has_processes(&self) -> bool {
        self.current.is_some() || self.handoff.is_some() || !self.stopping.is_empty()
    }

    // ----- exits ----------------------------------------------------------------------

    fn on_exit(&mut self, exit: Exit) {
        if self.current.as_ref().is_some_and(|p| p.pid == exit.pid) {
            let process = self.current.take().expect("checked just above");
            // A crash: whatever the process left in its group must not outlive it (nor
            // keep its listeners or log pipes).
            kill_rest_of_group(&process);
            return self.on_current_exit(process, exit.status);
        }
        if let Some(handoff) = self.handoff.as_ref().filter(|h| h.process.pid == exit.pid) {
            kill_rest_of_group(&handoff.process);
            let why = format!("{} before it was ready", exit.status);
            return self.roll_back(why, false);
        }
        if let Some(index) = self.stopping.iter().position(|p| p.pid == exit.pid) {
            let process = &mut self.stopping[index];
            // A stopping group leader (say `sh -c 'server'`) may exit at once while the rest
            // of its group still drains: the drain ends when the group is empty, or at the
            // SIGKILL deadline, never earlier.
            if process.policy.as_group && group_alive(process.pid) {
                info!(
                    "{}[{}]: {}; the rest of its process group is still running, waiting for it",
                    self.config.name, process.pid, exit.status
                );
                process.leader_exit = Some((exit.status, exit.at));
                return;
            }
            let process = self.stopping.remove(index);
            self.on_stopped_exit(process, exit.status, exit.at);
            return;
        }
        self.stillborn.retain(|pid| *pid != exit.pid);
    }

    fn on_current_exit(&mut self, process: Process, status: ExitStatus) {
        let pid = process.pid;
        self.last_exit = Some(status.to_string());
        self.stop_time = SystemTime::now();
        if !process.ready {
            let uptime = process.started.elapsed().as_secs_f64();
            return self.on_start_failure(format!(
                "pid {pid} {status} {uptime:.2} s after start, before it was ready"
            ));
        }
        // The serving process died during a handoff: the new one becomes the serving
        // process as soon as it is ready.
        if let Some(handoff) = self.handoff.take() {
            warn!(
                "{}[{pid}]: {status} during a restart; pid {} takes over once ready",
                self.name(),
                handoff.process.pid
            );
            self.current = Some(handoff.process);
            self.state = State::Starting;
            for reply in handoff.waiters {
                self.waiters.push(Waiter::Restart {
                    reply,
                    old_pid: pid,
                    requested: handoff.requested,
                });
            }
            if let Some((config, listeners)) = handoff.replacement {
                // Not `adopt`: the new process was given this notify socket.
                self.set_config(config);
                self.listeners = listeners;
            }
            return;
        }
        let restart = match self.config.auto_restart {
            AutoRestart::Always => true,
            AutoRestart::Never => false,
            AutoRestart::Unexpected => !status.is_expected(&self.config.exit_codes),
        };
        if !restart {
            info!(
                "{}[{pid}]: {status}; not restarted (auto_restart = {:?})",
                self.name(),
                self.config.auto_restart
            );
            self.state = State::Exited;
            return;
        }
        let ran = process.started.elapsed();
        if ran >= MIN_RUN.max(self.config.start_secs) {
            self.failures = 0;
        } else {
            return self.on_start_failure(format!(
                "pid {pid} {status} {:.2} s after start, right after it became ready",
                ran.as_secs_f64()
            ));
        }
        warn!(
            "{}[{pid}]: {status} unexpectedly; starting it again",
            self.name()
        );
        self.restarts += 1;
        self.launch();
    }

    fn on_stopped_exit(&mut self, process: Process, status: ExitStatus, at: Instant) {
        let Some(stop) = &process.stop else { return };
        let took = at.duration_since(stop.since).as_secs_f64();
        let how = if stop.kill_at.is_none() {
            "killed at the deadline"
        } else {
            "exited"
        };
        info!(
            "{}[{}]: {} after {took:.2} s: {how} ({}), generation {}",
            self.name(),
            process.pid,
            if stop.reason == "handoff" {
                "drained"
            } else {
                "stopped"
            },
            status,
            process.generation
        );
        if self
            .restart_after_stop
            .as_ref()
            .is_some_and(|r| r.old_pid == process.pid)
        {
            let pending = self.restart_after_stop.take().expect("checked just above");
            if self.stop_requested {
                return;
            }
            for reply in pending.waiters {
                self.waiters.push(Waiter::Restart {
                    reply,
                    old_pid: pending.old_pid,
                    requested: pending.requested,
                });
            }
            self.failures = 0;
            self.launch();
        }
    }

    // ----- readiness ------------------------------------------------------------------

    fn on_notification(&mut self, note: Notification) {
        let is_handoff = self
            .handoff
            .as_ref()
            .is_some_and(|h| note.from_process(h.process.pid));
        let is_current = self
            .current
            .as_ref()
            .is_some_and(|p| note.from_process(p.pid));
        if !is_handoff && !is_current {
            // Anyone can send to the socket: say it, but not for every datagram of a flood.
            if self
                .foreign_warned
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
            {
                warn!(
                    "{}: ignoring a notification from pid {}, which is not its newest process (further ones are not logged for 10 s)",
                    self.name(),
                    note.pid
                );
                self.foreign_warned = Some(Instant::now());
            }
            return;
        }
        if let Some(text) = note.status {
            self.status_text = Some(text);
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
        } else if self.current.as_ref().is_some_and(|p| !p.ready) {
            self.mark_current_ready();
        }
    }

    // ----- time -----------------------------------------------------------------------

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines = Vec::new();
        if let Some(p) = self.current.as_ref().filter(|p| !p.ready) {
            deadlines.push(p.ready_deadline);
        }
        if let Some(h) = &self.handoff {
            deadlines.push(h.process.ready_deadline);
        }
        deadlines.extend(self.backoff_until);
        deadlines.extend(
            self.stopping
                .iter()
                .filter_map(|p| p.stop.as_ref().and_then(|s| s.kill_at)),
        );
        // A group whose leader has exited sends no SIGCHLD when its last member goes (they
        // are not our children): look again shortly. Only while such a drain lasts.
        if self.stopping.iter().any(|p| p.leader_exit.is_some()) {
            deadlines.push(Instant::now() + GROUP_POLL);
        }
        deadlines.into_iter().min()
    }

    fn on_timers(&mut self, now: Instant) {
        let notify = self.config.ready == ReadyMode::Notify;
        if self
            .current
            .as_ref()
            .is_some_and(|p| !p.ready && now >= p.ready_deadline)
        {
            if notify {
                let process = self.current.take().expect("checked just above");
                let message = format!(
                    "pid {} did not send READY=1 within ready_timeout ({:.1} s)",
                    process.pid,
                    self.config.ready_timeout.as_secs_f64()
                );
                self.begin_stop(process, "rollback");
                self.on_start_failure(message);
            } else {
                self.mark_current_ready();
            }
        }
        if let Some(h) = &self.handoff {
            if now >= h.process.ready_deadline {
                let handoff_notify = h
                    .replacement
                    .as_ref()
                    .map(|(c, _)| c.ready == ReadyMode::Notify)
                    .unwrap_or(notify);
                if handoff_notify {
                    let timeout = h
                        .process
                        .ready_deadline
                        .duration_since(h.process.started)
                        .as_secs_f64();
                    self.roll_back(
                        format!("did not send READY=1 within ready_timeout ({timeout:.1} s)"),
                        true,
                    );
                } else {
                    self.complete_handoff();
                }
            }
        }
        if self.backoff_until.is_some_and(|t| now >= t) {
            self.backoff_until = None;
            self.restarts += 1;
            self.launch();
        }
        let name = self.config.name.clone();
        for process in &mut self.stopping {
            let Some(stop) = process.stop.as_mut() else {
                continue;
            };
            if stop.kill_at.is_some_and(|t| now >= t) {
                warn!(
                    "{name}[{}]: still running {:.1} s after the stop signal: sending SIGKILL",
                    process.pid,
                    stop.since.elapsed().as_secs_f64()
                );
                spawn::signal_child(process.pid, Signal::SIGKILL, process.policy.as_group);
                stop.kill_at = None;
            }
        }
        while let Some(index) = self
            .stopping
            .iter()
            .position(|p| p.leader_exit.is_some() && !group_alive(p.pid))
        {
            let process = self.stopping.remove(index);
            let (status, _) = process.leader_exit.expect("filtered just above");
            self.on_stopped_exit(process, status, now);
        }
    }

    // ----- status ---------------------------------------------------------------------

    fn current_pid(&self) -> i32 {
        self.current_pid_raw().as_raw()
    }

    fn current_pid_raw(&self) -> Pid {
        self.current
            .as_ref()
            .map(|p| p.pid)
            .unwrap_or(Pid::from_raw(0))
    }

    fn result_data(&self) -> serde_json::Value {
        json!({ "name": self.name(), "state": self.state, "pid": self.current_pid() })
    }

    fn publish(&self) {
        let shown = self.current.as_ref().or_else(|| {
            self.stopping
                .iter()
                .find(|p| p.stop.as_ref().is_some_and(|s| s.reason == "stop"))
        });
        let mut status = ProgramStatus::new(self.name());
        status.state = self.state;
        if let Some(p) = shown {
            status.pid = p.pid.as_raw();
            status.generation = p.generation;
            status.start_time = status::unix_seconds(p.started_wall) as u64;
        } else {
            status.generation = self.generation;
        }
        status.stop_time = status::unix_seconds(self.stop_time) as u64;
        status.listeners = self.listeners.iter().map(|l| l.local_addr()).collect();
        if status.listeners.is_empty() {
            status.listeners = self
                .config
                .listen_addrs
                .iter()
                .map(|a| a.to_string())
                .collect();
        }
        status.draining = self
            .stopping
            .iter()
            .filter(|p| shown.is_none_or(|s| s.pid != p.pid))
            .filter_map(|p| {
                p.stop.as_ref().map(|s| Draining {
                    pid: p.pid.as_raw(),
                    generation: p.generation,
                    since: status::unix_seconds(s.since_wall),
                    kill_at: if s.kill_at.is_some() {
                        status::unix_seconds(s.kill_at_wall)
                    } else {
                        0.0
                    },
                    reason: s.reason,
                })
            })
            .collect();
        status.handoff = self.handoff.as_ref().map(|h| HandoffStatus {
            pid: h.process.pid.as_raw(),
            generation: h.process.generation,
            since: status::unix_seconds(h.process.started_wall),
        });
        status.restarts = self.restarts;
        status.handoffs = self.handoffs;
        status.failed_handoffs = self.failed_handoffs;
        status.last_handoff_ms = self.last_handoff_ms;
        status.last_exit = self.last_exit.clone();
        status.error = self.error.clone();
        status.status_text = self.status_text.clone();
        *self
            .status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = status;
    }
}

/// Spawn errors name their program ("web: cannot execute …") for callers that log them
/// alone; the worker prefixes the name itself, once.
fn without_name(name: &str, message: String) -> String {
    match message.strip_prefix(&format!("{name}: ")) {
        Some(rest) => rest.to_string(),
        None => message,
    }
}

/// Serializes spawns (see `spawn_process`).
static SPAWNING: Mutex<()> = Mutex::new(());

/// How often a stopping process group whose leader has exited is checked for emptiness.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// Stands in for "never" where a configured duration would overflow an `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// An exit of a process that had been running shorter than this, which would be restarted,
/// counts as a failed start (backoff, `max_retry`): a program that dies right after it
/// became ready must not be forked again in a hot loop.
const MIN_RUN: Duration = Duration::from_secs(1);

/// True while any process of the group `pgid` exists.
fn group_alive(pgid: Pid) -> bool {
    !matches!(
        nix::sys::signal::killpg(pgid, None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// SIGKILL to what a process left in its group (when it was started `stop_as_group`).
fn kill_rest_of_group(process: &Process) {
    if process.policy.as_group {
        spawn::signal_child(process.pid, Signal::SIGKILL, true);
    }
}
