//! The core thread: owner of the program table and of the loaded config.
//!
//! It answers control requests, runs reread/update and shutdown. It never blocks on a
//! worker: a request whose answer must wait (start, stop, restart, update) hands its reply
//! channel to the worker(s), and when several answers must be gathered (`all`, `update`) a
//! short-lived collector thread gathers them. Status is read from the snapshots workers
//! publish, never by asking a busy worker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::{json, Value};

use crate::config::{self, Config, ProgramConfig};
use crate::listener::Listener;
use crate::program::{self, Command, Context, ProgramHandle};
use crate::reply::{Replier, Reply};
use crate::{error, info, warn};

/// A request from the control API (or from a signal).
#[derive(Debug, Clone)]
pub enum Request {
    Status,
    Metrics,
    Reread,
    Update,
    Start(String),
    Stop(String),
    Restart {
        name: String,
        wait: bool,
    },
    Log {
        name: String,
        stream: String,
        bytes: u64,
        offset: Option<u64>,
    },
}

/// What reaches the core.
pub enum CoreMessage {
    Control(Request, Replier),
    /// One of supergo's own signals (TERM, INT, QUIT, HUP, USR1), as a number.
    Signal(i32),
}

/// The most of a log file one `/log` request returns.
const MAX_LOG_BYTES: u64 = 1 << 20;

pub struct Supervisor {
    config: Config,
    programs: BTreeMap<String, ProgramHandle>,
    /// Programs removed by `update` that may still be draining.
    retiring: Vec<ProgramHandle>,
    ctx: Arc<Context>,
}

impl Supervisor {
    /// Creates a worker for every program and starts those with `autostart`, in priority
    /// order.
    pub fn new(config: Config, ctx: Arc<Context>) -> Supervisor {
        let mut supervisor = Supervisor {
            config: config.clone(),
            programs: BTreeMap::new(),
            retiring: Vec::new(),
            ctx,
        };
        let mut groups: BTreeMap<i32, Vec<Sender<Command>>> = BTreeMap::new();
        for program in config.start_order() {
            let (priority, autostart) = (program.priority, program.autostart);
            supervisor.add_program(program.clone(), None, false);
            if let Some(handle) = supervisor.programs.get(&program.name) {
                if autostart
                    && handle
                        .status
                        .lock()
                        .map(|s| s.error.is_none())
                        .unwrap_or(false)
                {
                    groups
                        .entry(priority)
                        .or_default()
                        .push(handle.commands.clone());
                }
            }
        }
        start_by_priority(groups);
        supervisor
    }

    /// Binds the program's listeners (an error makes it Fatal, the others run), starts its
    /// worker and, with `autostart` and `start_now`, the program.
    fn add_program(&mut self, program: ProgramConfig, reply: Option<Replier>, start_now: bool) {
        let name = program.name.clone();
        let autostart = program.autostart;
        let listeners = self.acquire_listeners(&program);
        let listen_failed = listeners.is_err();
        match program::launch(Arc::new(program), listeners, self.ctx.clone()) {
            Ok(handle) => {
                if !start_now {
                    // The caller starts it (in priority order).
                } else if autostart && !listen_failed {
                    let _ = handle.commands.send(Command::Start(reply));
                } else if let Some(r) = reply {
                    let status = handle
                        .status
                        .lock()
                        .map(|s| s.error.clone())
                        .unwrap_or(None);
                    let reply = match status {
                        Some(e) => Reply::error(500, format!("{name}: {e}")),
                        None => {
                            Reply::ok(format!("{name}: added (autostart = false)"), Value::Null)
                        }
                    };
                    let _ = r.send(reply);
                }
                self.programs.insert(name, handle);
            }
            Err(e) => {
                error!("{name}: cannot start its worker thread: {e}");
                crate::reply::send(
                    reply,
                    Reply::error(500, format!("{name}: cannot start its worker thread: {e}")),
                );
            }
        }
    }

    fn acquire_listeners(&self, program: &ProgramConfig) -> Result<Vec<Arc<Listener>>, String> {
        self.ctx
            .pool
            .acquire_all(&program.listen_addrs, program.socket_mode)
    }

    /// Serves requests until a shutdown signal; then stops every program and returns.
    pub fn run(mut self, inbox: Receiver<CoreMessage>) {
        for message in inbox.iter() {
            match message {
                CoreMessage::Control(request, reply) => self.handle(request, reply),
                CoreMessage::Signal(signal) => {
                    if self.on_signal(signal) {
                        break;
                    }
                }
            }
        }
        self.shutdown();
    }

    /// Returns true when supergo must shut down.
    fn on_signal(&mut self, signal: i32) -> bool {
        use signal_hook::consts::*;
        match signal {
            SIGTERM | SIGINT | SIGQUIT => {
                info!(
                    "received {}: stopping every program, then exiting",
                    signal_name(signal)
                );
                true
            }
            SIGHUP => {
                info!("received SIGHUP: reloading the config (as `supergoctl update`)");
                let (tx, rx) = bounded(1);
                self.update(tx);
                // Log the outcome without blocking the core.
                std::thread::spawn(move || {
                    if let Ok(reply) = rx.recv() {
                        if reply.is_ok() {
                            info!("SIGHUP update: {}", reply.message);
                        } else {
                            error!("SIGHUP update failed: {}", reply.message);
                        }
                    }
                });
                false
            }
            SIGUSR1 => {
                info!("received SIGUSR1: reopening every log file");
                let logs = self.ctx.logs.clone();
                // reopen_all waits for the log thread, which a slow disk can hold up.
                std::thread::spawn(move || logs.reopen_all());
                false
            }
            other => {
                warn!("ignoring unexpected signal {other}");
                false
            }
        }
    }

    fn handle(&mut self, request: Request, reply: Replier) {
        match request {
            Request::Status => {
                let data: Vec<Value> = self
                    .snapshots()
                    .into_iter()
                    .map(|status| serde_json::to_value(status).unwrap_or(Value::Null))
                    .collect();
                let _ = reply.send(Reply::ok(
                    format!("{} program(s)", data.len()),
                    Value::Array(data),
                ));
            }
            Request::Metrics => {
                let _ = reply.send(Reply::text(crate::metrics::render(&self.snapshots())));
            }
            Request::Reread => {
                let _ = reply.send(match self.reread() {
                    Ok((diff, _)) => {
                        let message = format!(
                            "{} to add, {} to remove, {} changed",
                            diff.inserts.len(),
                            diff.deletes.len(),
                            diff.updates.len()
                        );
                        Reply::ok(message, diff.to_json())
                    }
                    Err(e) => Reply::error(400, e),
                });
            }
            Request::Update => self.update(reply),
            Request::Start(name) => {
                self.for_each(&name, "start", reply, |r| Command::Start(Some(r)))
            }
            Request::Stop(name) => self.for_each(&name, "stop", reply, |r| Command::Stop(Some(r))),
            Request::Restart { name, wait: true } => {
                self.for_each(&name, "restart", reply, |r| Command::Restart(Some(r)))
            }
            Request::Restart { name, wait: false } => {
                let names = match self.resolve(&name) {
                    Ok(names) => names,
                    Err(r) => return drop(reply.send(r)),
                };
                for n in &names {
                    if let Some(h) = self.programs.get(n) {
                        let _ = h.commands.send(Command::Restart(None));
                    }
                }
                let _ = reply.send(Reply::ok(
                    format!("restart of {} started", names.join(", ")),
                    json!(names),
                ));
            }
            Request::Log {
                name,
                stream,
                bytes,
                offset,
            } => {
                let _ = reply.send(self.log_tail(&name, &stream, bytes, offset));
            }
        }
    }

    /// Every program's published status, as of now, by name.
    /// Programs removed by `update` whose processes still drain come last, so that their
    /// draining processes stay visible until they are gone.
    fn snapshots(&self) -> Vec<crate::status::ProgramStatus> {
        let retiring = self.retiring.iter().filter(|h| !h.thread.is_finished());
        self.programs
            .values()
            .chain(retiring)
            .map(|h| {
                h.status
                    .lock()
                    .map(|s| s.at_now())
                    .unwrap_or_else(|p| p.into_inner().at_now())
            })
            .collect()
    }

    /// The program names a request targets: one, or every one for `all`.
    fn resolve(&self, name: &str) -> Result<Vec<String>, Reply> {
        if name == "all" {
            return Ok(self.programs.keys().cloned().collect());
        }
        if self.programs.contains_key(name) {
            Ok(vec![name.to_string()])
        } else {
            Err(Reply::error(
                404,
                format!("no program named `{name}` (see `supergoctl status`)"),
            ))
        }
    }

    /// Sends a command to one program (its worker answers `reply` directly), or to every
    /// program for `all` (a collector thread gathers the answers).
    fn for_each(
        &mut self,
        name: &str,
        verb: &str,
        reply: Replier,
        command: impl Fn(Replier) -> Command,
    ) {
        let names = match self.resolve(name) {
            Ok(names) => names,
            Err(r) => return drop(reply.send(r)),
        };
        if name != "all" {
            if let Some(h) = self.programs.get(&names[0]) {
                let _ = h.commands.send(command(reply));
            }
            return;
        }
        let mut pending = Vec::new();
        for n in names {
            let (tx, rx) = bounded(1);
            if let Some(h) = self.programs.get(&n) {
                let _ = h.commands.send(command(tx));
                pending.push((n, "", rx));
            }
        }
        let verb = verb.to_string();
        collect(pending, reply, move |ok, total| {
            format!("{verb} all: {ok} of {total} succeeded")
        });
    }

    fn reread(&self) -> Result<(Diff, Config), String> {
        let new = config::load(&self.config.path).map_err(|e| e.to_string())?;
        for warning in &new.warnings {
            warn!("{warning}");
        }
        let running: BTreeMap<String, Arc<ProgramConfig>> = self
            .programs
            .iter()
            .map(|(name, h)| (name.clone(), h.config()))
            .collect();
        Ok((Diff::between(&running, &new), new))
    }

    /// Applies the config file: starts added programs, stops removed ones, hands changed
    /// ones over to a process of their new config. Untouched programs are left alone. A
    /// config that does not load changes nothing.
    fn update(&mut self, reply: Replier) {
        let (diff, new) = match self.reread() {
            Ok(x) => x,
            Err(e) => {
                error!("update refused, nothing changed: {e}");
                let _ = reply.send(Reply::error(400, format!("{e} (nothing was changed)")));
                return;
            }
        };
        if new.daemon != self.config.daemon {
            warn!("the [supergo] section changed; it takes effect when supergo itself restarts");
        }
        let mut pending = Vec::new();
        for name in &diff.deletes {
            if let Some(handle) = self.programs.remove(name) {
                info!("{name}: removed from the config: stopping it");
                let (tx, rx) = bounded(1);
                let _ = handle.commands.send(Command::Shutdown(Some(tx)));
                self.retiring.push(handle);
                pending.push((name.clone(), "removed", rx));
            }
        }
        for name in &diff.updates {
            let (Some(handle), Some(program)) =
                (self.programs.get_mut(name), new.programs.get(name))
            else {
                continue;
            };
            info!("{name}: config changed: replacing it through a handoff");
            let listeners = self
                .ctx
                .pool
                .acquire_all(&program.listen_addrs, program.socket_mode);
            let program = Arc::new(program.clone());
            let (tx, rx) = bounded(1);
            let _ = handle.commands.send(Command::Replace {
                config: program,
                listeners,
                reply: Some(tx),
            });
            pending.push((name.clone(), "changed", rx));
        }
        let mut inserts: Vec<&ProgramConfig> = diff
            .inserts
            .iter()
            .filter_map(|n| new.programs.get(n))
            .collect();
        inserts.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
        for program in inserts {
            info!("{}: added to the config", program.name);
            let (tx, rx) = bounded(1);
            self.add_program(program.clone(), Some(tx), true);
            pending.push((program.name.clone(), "added", rx));
        }
        self.config = new;
        self.retiring.retain(|h| !h.thread.is_finished());
        if pending.is_empty() {
            let _ = reply.send(Reply::ok("nothing changed", json!([])));
            return;
        }
        collect(pending, reply, |ok, total| {
            format!("update: {ok} of {total} program change(s) succeeded")
        });
    }

    fn log_tail(&self, name: &str, stream: &str, bytes: u64, offset: Option<u64>) -> Reply {
        let Some(handle) = self.programs.get(name) else {
            return Reply::error(404, format!("no program named `{name}`"));
        };
        let config = handle.config();
        let path = match stream {
            "stdout" => config.stdout_file.clone(),
            "stderr" if config.redirect_stderr => config.stdout_file.clone(),
            "stderr" => config.stderr_file.clone(),
            other => {
                return Reply::error(
                    400,
                    format!("unknown stream `{other}`: use stdout or stderr"),
                )
            }
        };
        let Some(path) = path else {
            return Reply::error(
                404,
                format!("{name}: its {stream} is discarded (no {stream}_file in its config)"),
            );
        };
        match crate::logs::tail(&path, bytes.min(MAX_LOG_BYTES), offset) {
            Ok((text, end)) => Reply::ok(
                format!("{name} {stream}"),
                json!({ "text": text, "offset": end }),
            ),
            Err(e) => Reply::error(500, format!("{name}: cannot read {}: {e}", path.display())),
        }
    }

    /// Stops every program, highest `priority` first, and waits for them.
    fn shutdown(self) {
        let mut groups: BTreeMap<i32, Vec<&ProgramHandle>> = BTreeMap::new();
        for handle in self.programs.values() {
            groups
                .entry(handle.config().priority)
                .or_default()
                .push(handle);
        }
        for handle in &self.retiring {
            groups
                .entry(handle.config().priority)
                .or_default()
                .push(handle);
        }
        for (_, handles) in groups.into_iter().rev() {
            let mut waits = Vec::new();
            for handle in handles {
                let (tx, rx) = bounded(1);
                if handle.commands.send(Command::Shutdown(Some(tx))).is_ok() {
                    // A worker always ends within stop_timeout (then SIGKILL); the margin
                    // covers a process stuck in the kernel, which SIGKILL cannot end.
                    waits.push((
                        handle.config().name.clone(),
                        handle.config().stop_timeout + Duration::from_secs(5),
                        rx,
                    ));
                }
            }
            for (name, timeout, rx) in waits {
                if rx.recv_timeout(timeout).is_err() {
                    error!(
                        "{name}: did not stop within its stop_timeout plus 5 s; exiting without it"
                    );
                }
            }
        }
        info!("every program is stopped; supergo exits");
    }
}

/// Starts programs in ascending `priority`, in a thread of its own: every program of one
/// priority at once, and the next priority once each of them is running or has failed its
/// first start (so a database at priority 100 serves before the web tier at 999 starts).
fn start_by_priority(groups: BTreeMap<i32, Vec<Sender<Command>>>) {
    let spawned = std::thread::Builder::new()
        .name("starter".into())
        .spawn(move || {
            for (_, group) in groups {
                let waits: Vec<Receiver<Reply>> = group
                    .into_iter()
                    .filter_map(|commands| {
                        let (tx, rx) = bounded(1);
                        commands.send(Command::Start(Some(tx))).ok().map(|()| rx)
                    })
                    .collect();
                for rx in waits {
                    let _ = rx.recv();
                }
            }
        });
    if let Err(e) = spawned {
        error!("cannot start the starter thread: {e}");
    }
}

/// Waits (in a thread of its own) for every `(name, action, reply)` and answers `reply`
/// with one entry per program.
fn collect(
    pending: Vec<(String, &'static str, Receiver<Reply>)>,
    reply: Replier,
    summary: impl FnOnce(usize, usize) -> String + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("collector".into())
        .spawn(move || {
            let total = pending.len();
            let mut entries = Vec::new();
            let mut ok = 0;
            for (name, action, rx) in pending {
                let r = rx.recv().unwrap_or_else(|_| {
                    Reply::error(500, format!("{name}: its worker ended without an answer"))
                });
                ok += usize::from(r.is_ok());
                let mut entry = json!({ "name": name, "ok": r.is_ok(), "message": r.message });
                if !action.is_empty() {
                    entry["action"] = json!(action);
                }
                if let Value::Object(data) = &r.data {
                    for (k, v) in data {
                        if k != "name" {
                            entry[k] = v.clone();
                        }
                    }
                }
                entries.push(entry);
            }
            let message = summary(ok, total);
            let answer = if ok == total {
                Reply::ok(message, Value::Array(entries))
            } else {
                Reply::error(500, message).with_data(Value::Array(entries))
            };
            let _ = reply.send(answer);
        });
    if let Err(e) = spawned {
        error!("cannot start a collector thread: {e}");
    }
}

/// What `update` would do.
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    pub inserts: Vec<String>,
    pub deletes: Vec<String>,
    pub updates: Vec<String>,
}

impl Diff {
    /// `running`: each program's effective config; `new`: the config file as it is now.
    pub fn between(running: &BTreeMap<String, Arc<ProgramConfig>>, new: &Config) -> Diff {
        let mut diff = Diff::default();
        for (name, program) in &new.programs {
            match running.get(name) {
                None => diff.inserts.push(name.clone()),
                Some(before) if !before.same_as(program) => diff.updates.push(name.clone()),
                Some(_) => {}
            }
        }
        diff.deletes = running
            .keys()
            .filter(|n| !new.programs.contains_key(*n))
            .cloned()
            .collect();
        diff
    }

    fn to_json(&self) -> Value {
        json!({ "inserts": self.inserts, "deletes": self.deletes, "updates": self.updates })
    }
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// Sends `request` to the core and waits for the answer (for the control threads).
pub fn ask(core: &Sender<CoreMessage>, request: Request) -> Reply {
    let (tx, rx) = bounded(1);
    if core.send(CoreMessage::Control(request, tx)).is_err() {
        return Reply::error(500, "supergo is shutting down");
    }
    rx.recv()
        .unwrap_or_else(|_| Reply::error(500, "supergo is shutting down"))
}
