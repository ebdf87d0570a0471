//! Upgrade in place, the core's side (issue 14): who asks (`POST /upgrade`, with the
//! connection that asked, or SIGUSR2), one upgrade at a time, the pre-flight, and the
//! answers. The exec itself is `upgrade_exec`; the new image's side is `restore`.
//!
//! The steps, each answering whoever asked on every path:
//! 1. asked: refused at once (409) while another upgrade runs, before the initial start has
//!    sent every program its first start, or while a program no longer in the config still
//!    drains; the binary is resolved and opened (`Target`), then checked by
//!    `preflight` on a thread of its own, so the core keeps answering meanwhile;
//! 2. checked: a refusal of the pre-flight is the answer (nothing changed); otherwise the
//!    connection that asked becomes the core's (`Reply::taken`: the control API lets go of
//!    it) and `upgrade_exec` freezes everything and execs;
//! 3. the new image answers that connection (`restore`); should the exec fail or a program be
//!    busy, the core answers it here and supergo carries on as before.
//!
//! What reaches the core about an upgrade (`Ask`, `Checked`) is in `upgrade_messages`; the
//! core's bookkeeping (`Upgrades`: the tools, the upgrade in progress, the counters) in
//! `upgrade_state`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::core::Supervisor;
use super::deadline;
use super::request::CoreMessage;
// `requests` names `Ask` through here, as it did when `Ask` was defined in this file.
pub(super) use super::upgrade_messages::Ask;
use super::upgrade_messages::Checked;
use super::upgrade_state::{Pending, Tools, Upgrades};
use crate::handover::exec::Target;
use crate::info;
use crate::reply::Reply;

/// Sends an upgrade request to the core and waits for the answer (for the control threads):
/// `Reply::taken` once the core has the connection (and then answers it itself).
pub fn ask_upgrade(
    core: &Sender<CoreMessage>,
    binary: Option<PathBuf>,
    client: Option<TcpStream>,
) -> Reply {
    let (tx, rx) = bounded(1);
    let ask = Ask {
        binary,
        client,
        reply: Some(tx),
        taken: false,
        by: "POST /upgrade",
        at: Instant::now(),
    };
    if core.send(CoreMessage::Upgrade(ask)).is_err() {
        return Reply::error(500, "supergo is shutting down");
    }
    match rx.recv_timeout(deadline::ask_within()) {
        Ok(reply) => reply,
        Err(RecvTimeoutError::Disconnected) => Reply::error(500, "supergo is shutting down"),
        Err(RecvTimeoutError::Timeout) => Reply::error(
            500,
            "no answer to the upgrade in time: see supergo's log and `supergoctl status`",
        ),
    }
}

impl Supervisor {
    /// Makes upgrades possible (`main` calls it once the control API serves).
    pub fn enable_upgrades(&mut self, tools: Tools, done: u64, failed: u64) {
        self.upgrades = Upgrades {
            tools: Some(tools),
            pending: None,
            done,
            failed,
        };
    }

    pub(super) fn upgrade_asked(&mut self, ask: Ask) {
        let refusal = self.refusal();
        let target = refusal.map_or_else(
            || {
                let tools = self.upgrades.tools.as_ref().expect("refusal() checked it");
                Target::resolve(ask.binary.as_deref(), &tools.self_exe)
                    .map_err(|e| Reply::error(400, format!("{e}; nothing changed")))
            },
            Err,
        );
        let target = match target {
            Ok(target) => target,
            Err(reply) => {
                self.upgrades.failed += 1;
                return ask.answer(reply);
            }
        };
        info!(
            "upgrade asked ({}): checking {} with --check-upgrade",
            ask.by,
            target.path.display()
        );
        let tools = self.upgrades.tools.as_ref().expect("refusal() checked it");
        super::preflight::start(
            self.ctx.clone(),
            target.exec_path(),
            target.path.clone(),
            self.config.path.clone(),
            tools.core.clone(),
        );
        self.upgrades.pending = Some(Pending { ask, target });
    }

    /// Why no upgrade can start now, if it cannot.
    fn refusal(&mut self) -> Option<Reply> {
        if self.upgrades.tools.is_none() {
            return Some(Reply::error(
                500,
                "this supergo cannot upgrade in place (it could not open its own binary at start)",
            ));
        }
        if let Some(p) = &self.upgrades.pending {
            return Some(Reply::error(
                409,
                format!(
                    "an upgrade is already in progress (to {}, asked {:.1} s ago by {}); wait for its outcome",
                    p.target.path.display(),
                    p.ask.at.elapsed().as_secs_f64(),
                    p.ask.by
                ),
            ));
        }
        if !self.initial_start_sent.load(Ordering::SeqCst) {
            return Some(Reply::error(
                409,
                "upgrade refused: supergo's initial start is in progress (programs of a later priority are still to be started); nothing changed, ask again in a moment",
            ));
        }
        self.retiring.retain(|h| !h.thread.is_finished());
        let removed: Vec<String> = self
            .retiring
            .iter()
            .map(|h| h.config().name.clone())
            .collect();
        if !removed.is_empty() {
            return Some(Reply::error(
                409,
                format!(
                    "upgrade refused: {} no longer in the config (removed by update, or left by a supergo that died) and still stopping; nothing changed, ask again once it is gone",
                    removed.join(", ")
                ),
            ));
        }
        None
    }

    /// The pre-flight's answer. True when supergo must shut down (a stop signal came while
    /// it prepared the exec).
    pub(super) fn preflight_done(
        &mut self,
        checked: Checked,
        inbox: &Receiver<CoreMessage>,
    ) -> bool {
        let Some(pending) = self.upgrades.pending.take() else {
            return false; // Cancelled meanwhile (shutdown).
        };
        match checked.0 {
            Err(e) => {
                self.upgrades.failed += 1;
                pending
                    .ask
                    .answer(Reply::error(500, format!("{e}; nothing changed")));
                false
            }
            Ok(answer) => self.hand_over(pending, answer, inbox),
        }
    }

    /// Answers the upgrade in progress, if any, with why it will not happen.
    pub(super) fn cancel_upgrade(&mut self, why: &str) {
        if let Some(pending) = self.upgrades.pending.take() {
            self.upgrades.failed += 1;
            pending.ask.answer(Reply::error(
                409,
                format!("upgrade cancelled: {why}; nothing changed"),
            ));
        }
    }

    /// `GET /metrics`'s lines about upgrades.
    pub(super) fn upgrade_metrics(&self) -> String {
        format!(
            "# HELP supergo_upgrades_total upgrades in place done since supergo was first started\n\
             # TYPE supergo_upgrades_total counter\n\
             supergo_upgrades_total {}\n\
             # HELP supergo_upgrade_failures_total upgrades in place refused or failed (nothing changed)\n\
             # TYPE supergo_upgrade_failures_total counter\n\
             supergo_upgrade_failures_total {}\n",
            self.upgrades.done, self.upgrades.failed
        )
    }
}
