//! The core thread's own state and loop: the program table and the loaded config; control
//! requests answered from published snapshots or handed to the workers; supergo's signals.

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};
use serde_json::{json, Value};

use super::deadline;
use super::gather::{collect, start_by_priority, ToStart};
use super::request::{CoreMessage, Request};
use crate::config::{Config, ProgramConfig};
use crate::listener::Listener;
use crate::program::{self, Command, Context, ProgramHandle};
use crate::reply::{Replier, Reply};
use crate::{error, info, warn};

/// The most of a log file one `/log` request returns.
const MAX_LOG_BYTES: u64 = 1 << 20;

pub struct Supervisor {
    pub(super) config: Config,
    pub(super) programs: BTreeMap<String, ProgramHandle>,
    /// Programs removed by `update` that may still be draining.
    pub(super) retiring: Vec<ProgramHandle>,
    pub(super) ctx: Arc<Context>,
}

impl Supervisor {
    /// Creates a worker for every program and starts those with `autostart`, in priority
    /// order.
    pub fn new(config: Config, ctx: Arc<Context>) -> Supervisor {
        deadline::cover(deadline::answers_within(config.programs.values()));
        let mut supervisor = Supervisor {
            config: config.clone(),
            programs: BTreeMap::new(),
            retiring: Vec::new(),
            ctx,
        };
        let mut groups: BTreeMap<i32, Vec<ToStart>> = BTreeMap::new();
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
                    groups.entry(priority).or_default().push(ToStart {
                        name: program.name.clone(),
                        commands: handle.commands.clone(),
                        within: deadline::first_start_within(program),
                    });
                }
            }
        }
        start_by_priority(groups);
        supervisor
    }

    /// Binds the program's listeners (an error makes it Fatal, the others run), starts its
    /// worker and, with `autostart` and `start_now`, the program.
    pub(super) fn add_program(
        &mut self,
        program: ProgramConfig,
        reply: Option<Replier>,
        start_now: bool,
    ) {
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
        self.shutdown(&inbox);
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
                let spawned = std::thread::Builder::new()
                    .name("sighup update".into())
                    .spawn(move || {
                        if let Ok(reply) = rx.recv() {
                            if reply.is_ok() {
                                info!("SIGHUP update: {}", reply.message);
                            } else {
                                error!("SIGHUP update failed: {}", reply.message);
                            }
                        }
                    });
                if let Err(e) = spawned {
                    error!("SIGHUP update: cannot start a thread to log its outcome: {e} (the update goes on)");
                }
                false
            }
            SIGUSR1 => {
                info!("received SIGUSR1: reopening every log file");
                let logs = self.ctx.logs.clone();
                // reopen_all waits for the log thread, which a slow disk can hold up.
                let spawned = std::thread::Builder::new()
                    .name("reopen logs".into())
                    .spawn(move || logs.reopen_all());
                if let Err(e) = spawned {
                    error!("SIGUSR1: cannot start a thread to reopen the log files: {e}; they were not reopened");
                }
                false
            }
            other => {
                warn!("ignoring unexpected signal {other}");
                false
            }
        }
    }

    pub(super) fn handle(&mut self, request: Request, reply: Replier) {
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
        let mut configs = Vec::new();
        for n in names {
            let (tx, rx) = bounded(1);
            if let Some(h) = self.programs.get(&n) {
                let _ = h.commands.send(command(tx));
                configs.push(h.config());
                pending.push((n, "", rx));
            }
        }
        let within = deadline::answers_within(configs.iter().map(|c| c.as_ref()));
        let verb = verb.to_string();
        collect(pending, reply, within, move |ok, total| {
            format!("{verb} all: {ok} of {total} succeeded")
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
}

pub(super) fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}
