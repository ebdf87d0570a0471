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
use crate::reaper::Reaper;
use crate::reply::Replier;
use crate::supervisor::CoreMessage;

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
    /// An upgrade in place: write the state, then wait (see `freeze`).
    Freeze(Freeze),
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
