//! The exec of an upgrade in place, once the pre-flight said yes. In this order, so that
//! nothing is lost and nothing can change between the state written and the exec:
//! 1. the control API stops accepting (clients wait in the listener's backlog) and finishes
//!    the requests it is answering (at most `QUIET_WITHIN`); the core keeps answering them
//!    meanwhile, refusing actions (409) since they would change what is about to be written;
//! 2. the signals thread parks: nothing is reaped any more (an exit waits as a zombie for
//!    the new image) and every signal stays pending (a SIGTERM is honoured by the new image);
//! 3. every worker freezes and writes its state, or says why it cannot be handed over now
//!    (the policy, `program::freeze`): then the upgrade is refused (409) naming them;
//! 4. the log thread freezes and writes its pipes; the core writes `[supergo]` (the control
//!    listener, the client that asked, the state file of issue 15, and where supergo is in
//!    its service manager's sequence, having told it `RELOADING=1`) and the listeners
//!    (`[listener N]`);
//! 5. `handover::exec::upgrade`: the state goes in a memfd, FD_CLOEXEC is cleared on exactly
//!    the fds it names, and supergo execs the checked binary, keeping its pid.
//!
//! Any refusal or failure on the way releases everything in the reverse order and answers
//! the client here: supergo carries on exactly as before.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Select};
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGUSR2};

use super::core::Supervisor;
use super::request::CoreMessage;
use super::service_manager;
use super::upgrade_state::{Pending, Tools};
use crate::handover::preflight::Answer;
use crate::handover::{monotonic, StateWriter};
use crate::manager_notify;
use crate::program::{Command, Freeze, Frozen};
use crate::reply::Reply;
use crate::{info, warn};

/// How long requests being answered may take to finish before the exec goes ahead.
const QUIET_WITHIN: Duration = Duration::from_secs(2);
/// How long the signals thread and the workers may take to stop.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// Why the exec does not happen.
enum Abort {
    /// Supergo must stop (a stop signal came first).
    Shutdown(i32),
    Refused(Reply),
}

impl Supervisor {
    /// Freezes everything and execs. Returns only when the exec did not happen (answered
    /// here); true when supergo must then shut down.
    pub(super) fn hand_over(
        &mut self,
        mut pending: Pending,
        answer: Answer,
        inbox: &Receiver<CoreMessage>,
    ) -> bool {
        let Some(tools) = self.upgrades.tools.take() else {
            return false;
        };
        // The connection is the core's from here: the control API lets go of its copy, so
        // that it is not one of the requests the pause waits for.
        if let Some(reply) = pending.ask.reply.take() {
            if pending.ask.client.is_some() {
                let _ = reply.send(Reply::taken());
                pending.ask.taken = true;
            } else {
                // No connection to hand over (it could not be duplicated): whoever asked
                // hears now that it goes ahead, since its thread ends with this image.
                let _ = reply.send(Reply::ok(
                    format!(
                        "upgrading in place to {} now; supergo's log and GET /metrics tell the outcome",
                        pending.target.path.display()
                    ),
                    serde_json::Value::Null,
                ));
            }
        }
        let outcome = self.freeze_and_exec(&tools, &pending, &answer, inbox);
        tools.control.resume();
        self.upgrades.tools = Some(tools);
        self.upgrades.failed += 1;
        match outcome {
            Abort::Refused(reply) => {
                pending.ask.answer(reply);
                false
            }
            Abort::Shutdown(signal) => {
                let why = format!(
                    "received {} while preparing the exec: supergo stops instead",
                    super::core::signal_name(signal)
                );
                pending
                    .ask
                    .answer(Reply::error(409, format!("upgrade cancelled: {why}")));
                true
            }
        }
    }

    fn freeze_and_exec(
        &mut self,
        tools: &Tools,
        pending: &Pending,
        answer: &Answer,
        inbox: &Receiver<CoreMessage>,
    ) -> Abort {
        let quiet = tools.control.pause();
        if let Some(abort) = self.answer_until_quiet(&quiet, inbox) {
            return abort;
        }
        if let Err(e) = tools.signals.park(STOP_WITHIN) {
            return refused(500, format!("upgrade failed: {e}; nothing changed"));
        }
        let outcome = self.frozen_exec(tools, pending, answer, inbox);
        tools.signals.release();
        outcome
    }

    /// With the signals thread parked: the stragglers of the inbox, the freeze, the exec.
    fn frozen_exec(
        &mut self,
        tools: &Tools,
        pending: &Pending,
        answer: &Answer,
        inbox: &Receiver<CoreMessage>,
    ) -> Abort {
        while let Ok(message) = inbox.try_recv() {
            if let Some(abort) = self.while_upgrading(message, true) {
                return abort;
            }
        }
        // Dropped (on any return) to release every frozen worker.
        let (release_tx, release) = bounded::<()>(0);
        let states = match self.freeze_workers(&release) {
            Ok(states) => states,
            Err(abort) => return abort,
        };
        let (logs_state, _logs_release) = match self.ctx.logs.freeze() {
            Ok(frozen) => frozen,
            Err(e) => return refused(500, format!("upgrade failed: {e}; nothing changed")),
        };
        let mut w = StateWriter::new();
        let asked_ago = u64::try_from(pending.ask.at.elapsed().as_nanos()).unwrap_or(0);
        w.section("supergo", "")
            .write_fd("control_fd", tools.control.listener().as_fd())
            .write_str("from_version", env!("CARGO_PKG_VERSION"))
            .write_u64("upgrades", self.upgrades.done)
            .write_u64("failed_upgrades", self.upgrades.failed)
            .write_u64("asked_at", monotonic::now_nanos().saturating_sub(asked_ago))
            .write_str("asked_by", pending.ask.by)
            .write_path("binary", &pending.target.path);
        if let (Some(client), true) = (&pending.ask.client, pending.ask.taken) {
            w.write_fd("client_fd", client.as_fd());
        }
        if let Some((dir, control)) = crate::adopt::record::installed() {
            w.write_path("state_dir", &dir)
                .write_str("state_control", &control);
        }
        // From here to the exec nothing else tells the service manager anything.
        let manager = manager_notify::upgrading(&answer.version);
        w.write_str("manager_phase", manager.phase());
        let listeners = self.ctx.pool.open_listeners();
        for (i, listener) in listeners.iter().enumerate() {
            w.section("listener", &i.to_string())
                .write_str("addr", &listener.addr.to_string())
                .write_fd("fd", listener.as_fd());
        }
        w.append(logs_state);
        let draining: usize = self.snapshots().iter().map(|s| s.draining.len()).sum();
        for state in states {
            w.append(state);
        }
        info!(
            "upgrading in place to {} ({}): handing over {} program(s), {} socket(s), {} draining process(es)",
            pending.target.path.display(),
            answer.version,
            self.programs.len(),
            listeners.len(),
            draining
        );
        fail_exec_for_tests(&pending.target.resolved, &mut w);
        let err = crate::handover::exec::upgrade(&pending.target, &tools.self_exe, w);
        // Still here: the exec did not happen, and nothing was handed over.
        manager.failed(&service_manager::summary(
            self.programs.values().map(|h| &h.status),
        ));
        drop(release_tx);
        refused(500, format!("upgrade failed: {err}"))
    }

    /// Sends every worker `Freeze` and gathers their states; `Err` names the busy ones.
    fn freeze_workers(&mut self, release: &Receiver<()>) -> Result<Vec<StateWriter>, Abort> {
        let (answer, answers) = unbounded();
        let mut asked = 0;
        let mut gone = Vec::new();
        for (name, handle) in &self.programs {
            let order = Freeze {
                answer: answer.clone(),
                release: release.clone(),
            };
            if handle
                .commands
                .send(Command::Freeze(Box::new(order)))
                .is_ok()
            {
                asked += 1;
            } else {
                gone.push(name.clone());
            }
        }
        if !gone.is_empty() {
            // Its state cannot be written: the new image would lose the program.
            return Err(refused(
                500,
                format!(
                    "upgrade refused, nothing changed: the worker of {} has ended (see supergo's log)",
                    gone.join(", ")
                ),
            ));
        }
        let deadline = Instant::now() + STOP_WITHIN;
        let (mut states, mut busy) = (Vec::new(), Vec::new());
        for _ in 0..asked {
            match answers.recv_deadline(deadline) {
                Ok(Frozen::Ready(state)) => states.push(state),
                Ok(Frozen::Busy(why)) => busy.push(why),
                Err(_) => {
                    return Err(refused(
                        500,
                        format!(
                            "upgrade failed: {} of {asked} program(s) did not stop within {} s; nothing changed",
                            asked - states.len() - busy.len(),
                            STOP_WITHIN.as_secs()
                        ),
                    ))
                }
            }
        }
        if !busy.is_empty() {
            return Err(refused(
                409,
                format!(
                    "upgrade refused, nothing changed: {}; ask again once that is done",
                    busy.join("; ")
                ),
            ));
        }
        Ok(states)
    }

    /// Answers the inbox until the control API has no request left (or `QUIET_WITHIN`).
    fn answer_until_quiet(
        &mut self,
        quiet: &Receiver<()>,
        inbox: &Receiver<CoreMessage>,
    ) -> Option<Abort> {
        let deadline = Instant::now() + QUIET_WITHIN;
        loop {
            let mut select = Select::new();
            let quiet_index = select.recv(quiet);
            let inbox_index = select.recv(inbox);
            let Ok(op) = select.select_deadline(deadline) else {
                warn!(
                    "upgrade: the control API still answers requests after {} s; going ahead (their connections close at the exec)",
                    QUIET_WITHIN.as_secs()
                );
                return None;
            };
            match op.index() {
                i if i == quiet_index => {
                    let _ = op.recv(quiet);
                    return None;
                }
                i if i == inbox_index => match op.recv(inbox) {
                    Ok(message) => {
                        if let Some(abort) = self.while_upgrading(message, false) {
                            return Some(abort);
                        }
                    }
                    Err(_) => return None,
                },
                _ => {}
            }
        }
    }

    /// A message that reaches the core while it prepares the exec: reads are answered,
    /// actions refused (they would change what is being handed over), a stop signal stops
    /// the upgrade; other signals are handled as usual until the signals thread is `parked`,
    /// then left pending for the new image.
    fn while_upgrading(&mut self, message: CoreMessage, parked: bool) -> Option<Abort> {
        match message {
            CoreMessage::Control(request, reply) if request.only_reads() => {
                self.handle(request, reply);
            }
            CoreMessage::Control(request, reply) => {
                let _ = reply.send(Reply::error(
                    409,
                    format!(
                        "{} is refused: supergo is upgrading itself in place; ask again in a moment",
                        request.describe()
                    ),
                ));
            }
            CoreMessage::Upgrade(ask) => ask.answer(Reply::error(
                409,
                "an upgrade is already in progress (its exec is being prepared)",
            )),
            CoreMessage::Preflight(_) => {}
            CoreMessage::Ended(ended) => {
                // An essential program ended while the exec was being prepared: supergo is
                // about to stop, so the upgrade is refused and the end handled right after,
                // by this image, as if it had come a moment later.
                let message = format!(
                    "upgrade refused: {} has ended (it is essential: supergo stops); nothing changed",
                    ended.program
                );
                let _ = self.ctx.core.send(CoreMessage::Ended(ended));
                return Some(refused(409, message));
            }
            CoreMessage::Signal(signal) if [SIGTERM, SIGINT, SIGQUIT].contains(&signal) => {
                return Some(Abort::Shutdown(signal));
            }
            CoreMessage::Signal(SIGUSR2) => {
                info!("received SIGUSR2 while upgrading in place: already upgrading");
            }
            CoreMessage::Signal(signal) if parked => raise_later(signal),
            CoreMessage::Signal(signal) => {
                self.on_signal(signal);
            }
        }
        None
    }
}

fn refused(http: u16, message: String) -> Abort {
    Abort::Refused(Reply::error(http, message))
}

/// Makes `signal` pending again (every thread blocks it while the signals thread is parked,
/// and that thread takes it again once released): the new image, or this one after a
/// failed exec, handles it.
fn raise_later(signal: i32) {
    if let Ok(signal) = nix::sys::signal::Signal::try_from(signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), signal);
    }
}

/// Test switch (debug builds only): with `SUPERGO_TEST_FAIL_EXEC` naming the target binary,
/// the state names an fd that is closed before the exec, so that the exec fails for real
/// (`exec_image` cannot hand it over) and the way back is taken as after any failed exec.
fn fail_exec_for_tests(target: &std::path::Path, w: &mut StateWriter) {
    if !cfg!(debug_assertions) {
        return;
    }
    let named =
        std::env::var_os("SUPERGO_TEST_FAIL_EXEC").and_then(|p| std::fs::canonicalize(p).ok());
    if named.as_deref() != Some(target) {
        return;
    }
    // A high number, so that no fd opened before the exec (the memfd) takes it again.
    let Ok(file) = std::fs::File::open("/dev/null") else {
        return;
    };
    let Ok(high) = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(900)) else {
        return;
    };
    // SAFETY: a new fd that F_DUPFD_CLOEXEC just returned, owned by nothing else.
    let high = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(high) };
    w.section("test", "").write_fd("closed_fd", high.as_fd());
    // Closed here, as `high` drops: the exec finds it gone.
}
