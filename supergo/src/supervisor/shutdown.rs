//! Shutdown: every program is stopped, highest `priority` first, each priority once the one
//! above it has stopped. Meanwhile the core keeps answering: requests that only read (status,
//! metrics, reread, log) as usual, actions with a refusal that says supergo is stopping, so
//! that no client waits until supergo has exited.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Select};

use super::core::{signal_name, Supervisor};
use super::request::CoreMessage;
use crate::manager_notify;
use crate::program::{Command, ProgramHandle};
use crate::reply::Reply;
use crate::{error, info};

/// Beyond a program's `stop_timeout`: a process stuck in the kernel, which SIGKILL cannot end.
const STUCK_MARGIN: Duration = Duration::from_secs(5);

/// Stands in for "never" where a configured `stop_timeout` would overflow an `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A program asked to stop: its name, when to give up on it, and where its answer comes.
struct Stopping {
    name: String,
    give_up_at: Instant,
    answer: Receiver<Reply>,
}

impl Supervisor {
    /// Stops every program, highest `priority` first, and waits for them.
    pub(super) fn shutdown(mut self, inbox: &Receiver<CoreMessage>) {
        // Before anything stops: a service manager must not take the programs going down
        // for a failure.
        manager_notify::stopping();
        let mut groups: BTreeMap<i32, Vec<&ProgramHandle>> = BTreeMap::new();
        for handle in self.programs.values().chain(&self.retiring) {
            groups
                .entry(handle.config().priority)
                .or_default()
                .push(handle);
        }
        let mut order = Vec::new();
        for (_, handles) in groups.into_iter().rev() {
            let mut group = Vec::new();
            for handle in handles {
                let config = handle.config();
                group.push((
                    config.name.clone(),
                    config.stop_timeout,
                    handle.commands.clone(),
                ));
            }
            order.push(group);
        }
        for group in order {
            let mut stopping = Vec::new();
            for (name, stop_timeout, commands) in group {
                let (tx, rx) = bounded(1);
                if commands.send(Command::Shutdown(Some(tx))).is_ok() {
                    // A worker always ends within stop_timeout (then SIGKILL).
                    let now = Instant::now();
                    let give_up_at = now
                        .checked_add(stop_timeout.saturating_add(STUCK_MARGIN))
                        .unwrap_or(now + FAR_FUTURE);
                    stopping.push(Stopping {
                        name,
                        give_up_at,
                        answer: rx,
                    });
                }
            }
            self.wait_stopped(stopping, inbox);
        }
        info!("every program is stopped; supergo exits");
    }

    /// Waits until each of `stopping` has answered or is given up on, answering the core's
    /// messages meanwhile.
    fn wait_stopped(&mut self, mut stopping: Vec<Stopping>, inbox: &Receiver<CoreMessage>) {
        let mut inbox_open = true;
        while !stopping.is_empty() {
            let mut select = Select::new();
            for s in &stopping {
                select.recv(&s.answer);
            }
            let inbox_index = inbox_open.then(|| select.recv(inbox));
            let next_give_up = stopping
                .iter()
                .map(|s| s.give_up_at)
                .min()
                .expect("not empty");
            let Ok(op) = select.select_deadline(next_give_up) else {
                let now = Instant::now();
                stopping.retain(|s| {
                    let overdue = now >= s.give_up_at;
                    if overdue {
                        error!(
                            "{}: did not stop within its stop_timeout plus 5 s; exiting without it",
                            s.name
                        );
                    }
                    !overdue
                });
                continue;
            };
            let index = op.index();
            if Some(index) == inbox_index {
                match op.recv(inbox) {
                    Ok(message) => self.on_message_while_stopping(message),
                    // No sender is left: nothing more will come.
                    Err(_) => inbox_open = false,
                }
            } else {
                // An answer, or a worker that ended without one: either way it is done.
                let _ = op.recv(&stopping[index].answer);
                stopping.remove(index);
            }
        }
    }

    fn on_message_while_stopping(&mut self, message: CoreMessage) {
        match message {
            CoreMessage::Control(request, reply) if request.only_reads() => {
                self.handle(request, reply)
            }
            CoreMessage::Control(request, reply) => {
                let _ = reply.send(Reply::error(
                    409,
                    format!(
                        "{} is refused: supergo is shutting down and stopping every program",
                        request.describe()
                    ),
                ));
            }
            CoreMessage::Upgrade(ask) => ask.answer(Reply::error(
                409,
                "the upgrade is refused: supergo is shutting down and stopping every program",
            )),
            CoreMessage::Preflight(_) => {}
            CoreMessage::Signal(signal) => info!(
                "received {} while stopping every program: already shutting down",
                signal_name(signal)
            ),
            // A worker said so just before it was asked to stop: it changes nothing now (nor
            // supergo's exit status, decided by what began the shutdown).
            CoreMessage::Ended(ended) => {
                info!("{}: ended while supergo stops every program", ended.program)
            }
        }
    }
}
