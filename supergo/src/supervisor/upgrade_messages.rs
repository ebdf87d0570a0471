//! What reaches the core about an upgrade in place (issue 14), inside `CoreMessage`: someone
//! asking for one (`Ask`, which also knows how to answer them) and what the pre-flight of the
//! new binary found (`Checked`). Plain messages: `upgrade` acts on them, `preflight` sends
//! `Checked`, `request` carries both.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Instant;

use crate::handover::exec::UpgradeError;
use crate::handover::preflight::Answer;
use crate::reply::{Replier, Reply};
use crate::{error, http};

/// Someone asking for an upgrade.
pub struct Ask {
    pub binary: Option<PathBuf>,
    /// A duplicate of the connection that asked, on which the answer is written once the
    /// control API has let go of it (`taken`).
    pub client: Option<TcpStream>,
    /// The control thread that asked, until it is told `Reply::taken`.
    pub reply: Option<Replier>,
    pub taken: bool,
    /// "POST /upgrade" or "SIGUSR2".
    pub by: &'static str,
    pub at: Instant,
}

impl Ask {
    pub fn by_signal() -> Ask {
        Ask {
            binary: None,
            client: None,
            reply: None,
            taken: false,
            by: "SIGUSR2",
            at: Instant::now(),
        }
    }

    /// Answers whoever asked (and logs a failure: SIGUSR2 has no one to tell).
    pub fn answer(self, reply: Reply) {
        if !reply.is_ok() {
            error!("upgrade ({}) failed: {}", self.by, reply.message);
        }
        if self.taken {
            if let Some(client) = &self.client {
                if let Err(e) = http::answer_taken(client, &reply) {
                    error!("cannot answer the client that asked for the upgrade: {e}");
                }
            }
        } else if let Some(to) = self.reply {
            let _ = to.send(reply);
        }
    }
}

/// What the pre-flight found.
pub struct Checked(pub Result<Answer, UpgradeError>);
