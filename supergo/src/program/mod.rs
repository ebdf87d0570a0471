//! One worker thread per program: the state machine over its processes.
//!
//! A worker owns its program's config, its listeners, the serving process, a new generation
//! being started by a restart (the *handoff*), and every process asked to stop that has not
//! exited yet (*draining*). It is driven by `select!` over its command channel (which the
//! reaper feeds with its exits too), its readiness channel (`ready = "notify"`) and one
//! deadline.
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
//!
//! Every request that waits (start, stop, restart, replace, shutdown) is answered on every
//! path: when its outcome is known, or when something else (a stop, a new config, a
//! shutdown) makes it moot, with a message that says what happened instead.
//!
//! The worker's state is a few parts, each plain data that an upgrade in place or an
//! adoption after a crash can serialize on its own (each part's `//!` says which fields):
//! - `lifecycle`: the state (`Running`, `Backoff`, …), failed starts in a row, the backoff
//!   deadline, whether a stop or a shutdown is under way; the retry policy;
//! - `generations`: the serving process, a handoff in progress, a stop-first restart, the
//!   draining processes with their SIGKILL deadlines, and the generation counter;
//! - `resources`: what processes are given: the config, listeners, `NOTIFY_SOCKET` and the
//!   log pipes (`outputs`);
//! - `record`: counters and last outcomes, and the status snapshot built from all parts;
//! - `waiters`: the requests waiting for an outcome, and the answers to send after the
//!   next publish (channels: never serialized; an upgrade answers them first).
//!
//! Times in these parts are `stamp::Stamp`s: an `Instant` for the timers with the
//! wall-clock time beside it, which is what crosses an exec.
//!
//! The `worker` loop only dispatches; the transitions live beside it, one concern a file:
//! `commands`, `starting`, `handoff`, `stopping`, `exits`, `readiness`, `timers`.
//! `wiring` holds what connects a worker to the rest of supergo (never serialized);
//! `adopted` reports the processes for the state file and takes over what a dead supergo
//! left running (`adopted_removed`: of a program no longer in the config);
//! `adopted_handover` carries an adopted process across an upgrade in place. Their part of
//! the worker is `adoption`.
//!
//! Two concerns of running as a container's entrypoint (issue 16), each in a file of its
//! own: `escaped` stops the program's helpers that left its process groups, with it (its
//! part: `escaped_helpers`); `ended` tells the core when an `essential` program has ended
//! for good.
//!
//! The imports run one way: the parts (and `wiring`) import no transition and not
//! `worker`; `worker` imports only the parts and `wiring`; the transitions import `worker`.
//!
//! An upgrade in place (issue 14): `freeze` (the worker stops and writes its state, or says
//! why it cannot be handed over now), `serialize` (each part's keys), `config_state` (the
//! running config), `restore` (the new image's worker, from the state).

mod adopted;
mod adopted_handover;
mod adopted_removed;
mod adoption;
mod commands;
mod config_state;
mod ended;
mod escaped;
mod escaped_helpers;
mod exits;
mod fixed;
mod freeze;
mod generations;
mod handoff;
mod lifecycle;
mod outputs;
mod process;
mod readiness;
mod record;
mod resources;
mod restore;
mod serialize;
mod stamp;
mod starting;
mod stopping;
#[cfg(test)]
mod tests;
mod timers;
mod waiters;
mod wiring;
mod worker;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use crate::config::ProgramConfig;
use crate::listener::Listener;
use crate::status::{ProgramStatus, SharedStatus};

pub use adopted::launch_adopted;
pub use adopted_removed::launch_removed;
pub use process::ready_within;
pub use resources::SharedConfig;
pub use restore::RestoredProgram;
pub use wiring::{Command, Context, Freeze, Frozen, Replace};

/// Adds `item` to `list`, making room for it alone: a vector's first growth makes room for
/// four, and most of a worker's lists (waiters, draining processes) hold one at a time.
pub(super) fn push_one<T>(list: &mut Vec<T>, item: T) {
    list.reserve_exact(1);
    list.push(item);
}

/// The core's side of a worker.
pub struct ProgramHandle {
    pub config: SharedConfig,
    pub commands: Sender<Command>,
    pub status: SharedStatus,
    pub thread: JoinHandle<()>,
}

impl Drop for ProgramHandle {
    /// Tells the worker that the core let go of it (see `Command::Abandoned`). A worker that
    /// has ended no longer listens: nothing is sent then.
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Abandoned);
    }
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
    let status: SharedStatus = Arc::new(Mutex::new(ProgramStatus::new(&config.name)));
    let shared_config: SharedConfig = Arc::new(Mutex::new(config.clone()));
    let worker = worker::Worker::new(
        config.clone(),
        shared_config.clone(),
        listeners,
        ctx,
        status.clone(),
    );
    let commands = worker.commands_tx.clone();
    let thread = worker.start()?;
    Ok(ProgramHandle {
        config: shared_config,
        commands,
        status,
        thread,
    })
}
