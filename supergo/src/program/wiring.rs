//! How a worker is wired to the rest of supergo: the commands the core sends it, and what
//! every worker shares (the reaper, the listener pool, the log hub, the core's inbox).
//! Channels and shared handles only: nothing here is state to serialize; an upgrade rebuilds
//! the wiring.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::config::ProgramConfig;
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
    Freeze(super::freeze::Freeze),
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
