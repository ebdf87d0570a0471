//! What reaches the core (`CoreMessage`): a control request with the channel for its answer,
//! one of supergo's own signals, or a worker's news that an essential program ended; and
//! `ask`, the control threads' side of a request.
//!
//! `ask` waits for the answer until a last-resort deadline (see `deadline`): every path in
//! the core and the workers answers, but should one ever fail to, the client hears which
//! request went unanswered instead of waiting until supergo exits.

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};

use super::deadline;
use super::upgrade_messages::{Ask, Checked};
use crate::reply::{Replier, Reply};

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
    /// `POST /upgrade`: re-execute supergo from `binary` (default: where it was started
    /// from). The control API sends it as `CoreMessage::Upgrade`, with its connection.
    Upgrade {
        binary: Option<std::path::PathBuf>,
    },
}

impl Request {
    /// What the request asks, for messages: "the restart of web".
    pub fn describe(&self) -> String {
        match self {
            Request::Status => "the status request".to_string(),
            Request::Metrics => "the metrics request".to_string(),
            Request::Reread => "the reread".to_string(),
            Request::Update => "the update".to_string(),
            Request::Start(name) => format!("the start of {name}"),
            Request::Stop(name) => format!("the stop of {name}"),
            Request::Restart { name, .. } => format!("the restart of {name}"),
            Request::Log { name, .. } => format!("the log request for {name}"),
            Request::Upgrade { .. } => "the upgrade".to_string(),
        }
    }

    /// True for the requests that only read (and may be answered while supergo stops).
    pub fn only_reads(&self) -> bool {
        matches!(
            self,
            Request::Status | Request::Metrics | Request::Reread | Request::Log { .. }
        )
    }
}

/// What reaches the core.
pub enum CoreMessage {
    Control(Request, Replier),
    /// One of supergo's own signals (TERM, INT, QUIT, HUP, USR1, USR2), as a number.
    Signal(i32),
    /// From a worker: its `essential` program ended for good (see `essential`).
    Ended(crate::essential::Ended),
    /// An upgrade in place asked for (see `upgrade`).
    Upgrade(Ask),
    /// The pre-flight of the upgrade in progress is done.
    Preflight(Checked),
}

/// Sends `request` to the core and waits for the answer (for the control threads).
pub fn ask(core: &Sender<CoreMessage>, request: Request) -> Reply {
    let (tx, rx) = bounded(1);
    let what = request.describe();
    if core.send(CoreMessage::Control(request, tx)).is_err() {
        return Reply::error(500, "supergo is shutting down");
    }
    let within = deadline::ask_within();
    match rx.recv_timeout(within) {
        Ok(reply) => reply,
        Err(RecvTimeoutError::Disconnected) => Reply::error(500, "supergo is shutting down"),
        Err(RecvTimeoutError::Timeout) => Reply::error(
            500,
            format!(
                "no answer to {what} within {:.0} s (the longest any program's stop and start may take, plus a margin): \
                 supergo may still be working on it; see `supergoctl status`",
                within.as_secs_f64()
            ),
        ),
    }
}
