//! How a worker is wired to the rest of supergo: the commands the core sends it, and what
//! every worker shares (the reaper, the listener pool, the log hub, the core's inbox).
//! Channels and shared handles only: nothing here is state to serialize; an upgrade rebuilds
//! the wiring. The order and the answer of a freeze (`Freeze`, `Frozen`) travel with
//! `Command::Freeze`, so they are here too; what a worker does on a freeze is `freeze`.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::config::ProgramConfig;
use crate::handover::StateWriter;
use crate::listener::{Listener, ListenerPool};
use crate::logs::LogHub;
use crate::reaper::{Exit, Reaper};
use crate::reply::Replier;
use crate::supervisor::CoreMessage;

/// What a worker is told: the core's requests, and the exits of its processes (the reaper's
/// and `adopt::watch`'s, through `reaper::ExitRoute`). One channel for both: a second
/// channel per program cost its body and, after the first exit, a block of its own; and the
/// worker sees each exit in order with the commands sent around it.
///
/// Kept small (the big ones are boxed): crossbeam's unbounded channel allocates its slots 31
/// at a time, and the first block stays for as long as the worker lives; at 56 bytes a
/// command, that block was 2 KB per program.
pub enum Command {
    Start(Option<Replier>),
    Stop(Option<Replier>),
    /// Restart; the reply comes when the handoff succeeded or failed.
    Restart(Option<Replier>),
    /// `update` changed this program: hand over to a process of the new config.
    Replace(Box<Replace>),
    /// Stop everything and end the worker (supergo exits, or `update` removed the program).
    Shutdown(Option<Replier>),
    /// An upgrade in place: write the state, then wait (see `freeze`).
    Freeze(Box<Freeze>),
    /// One of the worker's processes ended.
    Exited(Box<Exit>),
    /// The core dropped its handle of the worker without a shutdown (supergo is exiting
    /// abnormally): the worker stops the children rather than orphan them. (The worker
    /// holds a sender of its own channel, for its exits, so it never sees the channel
    /// disconnect; `ProgramHandle`'s drop sends this instead.)
    Abandoned,
}

const _: () = assert!(std::mem::size_of::<Command>() <= 24, "keep Command small");

/// `Command::Replace`: the new config, its listeners (or why they could not be bound), and
/// who waits for the outcome.
pub struct Replace {
    pub config: Arc<ProgramConfig>,
    pub listeners: Result<Vec<Arc<Listener>>, String>,
    pub reply: Option<Replier>,
}

/// What a worker shares with the rest of supergo.
pub struct Context {
    pub reaper: Arc<Reaper>,
    pub pool: Arc<ListenerPool>,
    pub logs: Arc<LogHub>,
    /// The core's inbox, for what a worker tells the core unasked: an `essential` program
    /// ended for good (`ended`).
    pub core: Sender<CoreMessage>,
}

/// The core's order to freeze, with where to answer and what to wait for.
pub struct Freeze {
    pub answer: Sender<Frozen>,
    /// Released (or dropped) when supergo carries on without the exec.
    pub release: Receiver<()>,
}

/// A worker's answer to a freeze.
pub enum Frozen {
    /// It cannot be handed over now; why, naming the program.
    Busy(String),
    /// Its sections of the state.
    Ready(StateWriter),
}
