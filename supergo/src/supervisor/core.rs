//! The core thread's own state and loop: the program table (a worker per program, and the
//! programs removed by `update` that still drain), the loaded config, adding a program, the
//! loop over the inbox (requests go to `requests`), and supergo's own signals.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};
use serde_json::Value;

use super::deadline;
use super::gather::{start_by_priority, ToStart};
use super::request::CoreMessage;
use super::service_manager;
use super::upgrade_messages::Ask;
use super::upgrade_state::Upgrades;
use crate::adopt::plan::Adoption;
use crate::config::{Config, ProgramConfig};
use crate::listener::Listener;
use crate::program::{self, Command, Context, ProgramHandle};
use crate::reply::{Replier, Reply};
use crate::status::{ProgramStatus, State};
use crate::{error, info, warn};

pub struct Supervisor {
    pub(super) config: Config,
    pub(super) programs: BTreeMap<String, ProgramHandle>,
    /// Programs removed by `update` that may still be draining.
    pub(super) retiring: Vec<ProgramHandle>,
    pub(super) ctx: Arc<Context>,
    /// Upgrades in place: the tools, the one in progress, the counters (`upgrade`).
    pub(super) upgrades: Upgrades,
    /// Set once the priority starter has sent every autostart program its first start:
    /// until then an upgrade is refused (the starter's thread, and the starts it has not
    /// sent yet, would die with the old image). A start sent and not done yet has a waiter,
    /// which refuses the upgrade on its own (`program::freeze`).
    pub(super) initial_start_sent: Arc<AtomicBool>,
}

impl Supervisor {
    /// Creates a worker for every program and starts those with `autostart`, in priority
    /// order.
    pub fn new(config: Config, ctx: Arc<Context>) -> Supervisor {
        Supervisor::adopting(config, ctx, Adoption::default())
    }

    /// `new`, taking over first what a supergo that died left running (`adopt::startup`):
    /// a program whose process was adopted, or that waits for one to exit, is not started.
    pub fn adopting(config: Config, ctx: Arc<Context>, mut adoption: Adoption) -> Supervisor {
        deadline::cover(deadline::answers_within(
            config.programs.values().map(Arc::as_ref),
        ));
        let mut supervisor = Supervisor {
            config: config.clone(),
            programs: BTreeMap::new(),
            retiring: Vec::new(),
            ctx,
            upgrades: Upgrades::default(),
            initial_start_sent: Arc::new(AtomicBool::new(false)),
        };
        let mut groups: BTreeMap<i32, Vec<ToStart>> = BTreeMap::new();
        // The first priority's programs are sent their start as soon as their worker
        // exists, not once all are created: with 1000 programs, binding their listeners and
        // starting their threads takes ~0.1 s of this thread, which the first spawns now
        // share with the second CPU instead of waiting for. Later priorities still wait for
        // the ones before them (the starter).
        let first_priority = config
            .start_order()
            .iter()
            .find(|p| p.autostart)
            .map(|p| p.priority);
        for program in config.start_order() {
            let (priority, mut autostart) = (program.priority, program.autostart);
            // Startable: its listeners were bound (an adopted program's status may also say
            // why its old process was not adopted: that one starts all the same).
            let mut startable: fn(&ProgramStatus) -> bool = |s| s.error.is_none();
            match adoption.take(&program.name) {
                Some(adopted) => {
                    autostart &= adopted.needs_start();
                    startable = |s| s.state != State::Fatal;
                    supervisor.add_adopted(program.clone(), adopted);
                }
                None => supervisor.add_program(program.clone(), None, false),
            }
            if let Some(handle) = supervisor.programs.get(&program.name) {
                if autostart && handle.status.lock().map(|s| startable(&s)).unwrap_or(false) {
                    let to_start = ToStart {
                        name: program.name.clone(),
                        commands: handle.commands.clone(),
                        within: deadline::first_start_within(program),
                        sent: None,
                    };
                    let to_start = if Some(priority) == first_priority {
                        to_start.send_now()
                    } else {
                        to_start
                    };
                    groups.entry(priority).or_default().push(to_start);
                }
            }
        }
        supervisor.retire_removed(std::mem::take(&mut adoption.removed));
        let watched = service_manager::watch(supervisor.programs.values());
        start_by_priority(groups, supervisor.initial_start_sent.clone(), move || {
            service_manager::after_initial_start(watched);
            // The spawns' transient allocations are freed: give the whole free pages back.
            crate::memory::trim();
        });
        supervisor
    }

    /// Binds the program's listeners (an error makes it Fatal, the others run), starts its
    /// worker and, with `autostart` and `start_now`, the program.
    pub(super) fn add_program(
        &mut self,
        program: Arc<ProgramConfig>,
        reply: Option<Replier>,
        start_now: bool,
    ) {
        let name = program.name.clone();
        let autostart = program.autostart;
        let listeners = self.acquire_listeners(&program);
        let listen_failed = listeners.is_err();
        match program::launch(program, listeners, self.ctx.clone()) {
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

    /// Serves requests until a shutdown signal or the end of an `essential` program; then
    /// stops every program and returns supergo's exit status: 0 after a signal, the
    /// essential program's status after its end (see `essential`).
    pub fn run(mut self, inbox: Receiver<CoreMessage>) -> u8 {
        let mut exit_status = 0;
        for message in inbox.iter() {
            match message {
                CoreMessage::Control(request, reply) => self.handle(request, reply),
                CoreMessage::Signal(signal) => {
                    if self.on_signal(signal) {
                        break;
                    }
                }
                CoreMessage::Ended(ended) => {
                    if let Some(status) = self.on_essential_ended(ended) {
                        exit_status = status;
                        break;
                    }
                }
                CoreMessage::Upgrade(ask) => self.upgrade_asked(ask),
                CoreMessage::Preflight(checked) => {
                    if self.preflight_done(checked, &inbox) {
                        break;
                    }
                }
            }
        }
        self.cancel_upgrade("supergo is shutting down");
        self.shutdown(&inbox);
        exit_status
    }

    /// Returns true when supergo must shut down.
    pub(super) fn on_signal(&mut self, signal: i32) -> bool {
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
            SIGUSR2 => {
                info!("received SIGUSR2: upgrading in place (as `supergoctl upgrade`)");
                self.upgrade_asked(Ask::by_signal());
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
}

pub(super) fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}
