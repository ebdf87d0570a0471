//! The worker: its parts, its wiring, and the loop that dispatches each event (a command, an
//! exit, a notification, a deadline) to the transition that handles it, then publishes the
//! status and sends the answers decided during the turn.
//!
//! The transitions are `impl Worker` blocks beside this file, one concern each; they keep the
//! parts consistent with each other (a handoff's process, its new config and its waiters
//! come and go together). This file only holds the parts together and turns the loop.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{at, never, select, unbounded, Receiver, Sender};
use serde_json::json;

use super::adoption;
use super::escaped_helpers::EscapedHelpers;
use super::generations::Generations;
use super::lifecycle::Lifecycle;
use super::record::{self, Record};
use super::resources::{Resources, SharedConfig};
use super::waiters::Waiters;
use super::wiring::{Command, Context};
use crate::config::ProgramConfig;
use crate::error;
use crate::listener::Listener;
use crate::reaper::ExitRoute;
use crate::status::{SharedStatus, State};

pub(super) struct Worker {
    // Wiring: channels and shared handles, rebuilt (never serialized) by an upgrade.
    pub ctx: Arc<Context>,
    pub commands: Receiver<Command>,
    /// The sending side of `commands`: the core's handle gets a clone, and the exits of this
    /// worker's pids come back through it (`exit_route`).
    pub commands_tx: Sender<Command>,
    pub status: SharedStatus,

    // The state, in parts (see the module docs of each).
    pub resources: Resources,
    pub life: Lifecycle,
    pub gens: Generations,
    pub waiters: Waiters,
    pub record: Record,

    // Issue 16 (see each file's docs).
    /// Helpers outside the program's process groups being stopped (`escaped`; not
    /// serialized: a worker stopping them refuses an upgrade).
    pub escaped: EscapedHelpers,
    /// An essential program's end was told to the core (`ended`; serialized).
    pub end_reported: bool,
    /// The state file's view of this worker, and what adoption left it (issue 15).
    pub adoption: adoption::Part,
    /// The config and listeners (by address in memory) whose addresses the published
    /// status shows (`publish`).
    shown_listeners: Vec<usize>,
}

impl Worker {
    /// A worker on the heap: its thread runs it through a pointer, so that the ~1 KB of
    /// parts is not copied into each frame from the thread's start to its loop (three copies
    /// took a stack page per worker: 4 MiB with 1000 programs).
    pub fn new(
        config: Arc<ProgramConfig>,
        shared_config: SharedConfig,
        listeners: Result<Vec<Arc<Listener>>, String>,
        ctx: Arc<Context>,
        status: SharedStatus,
    ) -> Box<Worker> {
        let (commands_tx, commands) = unbounded();
        let resources = Resources::new(config, shared_config, listeners);
        let listen_error = resources.listen_error.clone();
        let mut worker = Box::new(Worker {
            ctx,
            commands,
            commands_tx,
            status,
            resources,
            life: Lifecycle::new(),
            gens: Generations::default(),
            waiters: Waiters::default(),
            record: Record::default(),
            escaped: EscapedHelpers::default(),
            end_reported: false,
            adoption: adoption::Part::new(),
            shown_listeners: Vec::new(),
        });
        if let Some(e) = listen_error {
            error!("{}: {e}", worker.name());
            worker.life.state = State::Fatal;
            worker.record.error = Some(e);
        }
        worker.publish();
        worker
    }

    pub fn name(&self) -> &str {
        self.resources.name()
    }

    /// Where the reaper (or the watch of adopted processes) sends the exits of this worker's
    /// pids: its own commands channel.
    pub fn exit_route(&self) -> ExitRoute {
        ExitRoute::Worker(self.commands_tx.clone())
    }

    /// Starts the worker's thread (a new program, an adopted one, one restored by an upgrade).
    pub fn start(self: Box<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("program {}", self.name()))
            // Workers keep little on their stack; a small stack keeps 1000 programs cheap.
            .stack_size(128 * 1024)
            .spawn(move || self.run())
    }

    pub fn run(mut self: Box<Self>) {
        // A program that could not bind its listeners is Fatal before its first turn.
        self.report_if_ended(None);
        loop {
            let timer = match self.next_deadline() {
                Some(deadline) => at(deadline),
                None => never(),
            };
            let notifications = match &self.resources.notify {
                Some(n) => n.receiver().clone(),
                None => never(),
            };
            let mut serving_exit = None;
            select! {
                // Never disconnected: the worker holds a sender itself (`commands_tx`).
                recv(self.commands) -> command => {
                    if let Ok(command) = command {
                        serving_exit = self.on_command(command);
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
            self.report_if_ended(serving_exit);
            self.publish();
            self.waiters.flush();
            if self.life.shutting_down && self.life.state == State::Stopped {
                return;
            }
        }
    }

    /// The earliest moment something is due: a readiness or SIGKILL deadline, a retry, a
    /// look at the escaped helpers being stopped.
    fn next_deadline(&self) -> Option<Instant> {
        let backoff = self.life.backoff_until.map(|t| t.mono);
        self.gens
            .next_deadline()
            .into_iter()
            .chain(backoff)
            .chain(self.escaped.next_deadline())
            .min()
    }

    /// The `data` of an answer: the program's name, state and serving pid now.
    pub fn result_data(&self) -> serde_json::Value {
        json!({
            "name": self.name(),
            "state": self.life.state,
            "pid": self.gens.current_pid().as_raw(),
        })
    }

    /// Updates the shared status in place (see `record::publish_into`), and the state
    /// file's view.
    pub(super) fn publish(&mut self) {
        // What the shown addresses come from: the listeners, or the config's addresses
        // when none could be bound; compared by identity, without allocating. (A new config
        // or listener is made while the worker still holds the one it replaces, so it never
        // reuses the address of the one shown.)
        let config = Arc::as_ptr(&self.resources.config) as usize;
        let sources = || {
            std::iter::once(config).chain(
                self.resources
                    .listeners
                    .iter()
                    .map(|l| Arc::as_ptr(l) as usize),
            )
        };
        let listeners_changed = !sources().eq(self.shown_listeners.iter().copied());
        {
            let mut status = self
                .status
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            record::publish_into(
                &mut status,
                &self.resources.config,
                &self.resources.listeners,
                listeners_changed,
                self.life.state,
                &self.gens,
                &self.record,
            );
            self.annotate(&mut status);
        }
        if listeners_changed {
            self.shown_listeners = sources().collect();
        }
        self.record_table();
    }
}
