//! Threads that wait on workers' answers so that the core never does: the priority starter,
//! and the collector of `all` and `update` answers. Each waits until a deadline (see
//! `deadline`) and names any program that did not answer in time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::{json, Value};

use crate::error;
use crate::program::Command;
use crate::reply::{Replier, Reply};

/// A program to start at supergo's start: its name, its worker, and how long its first
/// start may take.
pub struct ToStart {
    pub name: String,
    pub commands: Sender<Command>,
    pub within: Duration,
    /// Its start was sent already, as soon as its worker existed (the first priority's
    /// programs: see `Supervisor::adopting`): the answer comes here.
    pub sent: Option<Receiver<Reply>>,
}

impl ToStart {
    /// Sends the start now, and keeps where its answer will come.
    pub fn send_now(mut self) -> ToStart {
        let (tx, rx) = bounded(1);
        if self.commands.send(Command::Start(Some(tx))).is_ok() {
            self.sent = Some(rx);
        }
        self
    }
}

/// Starts programs in ascending `priority`, in a thread of its own: every program of one
/// priority at once, and the next priority once each of them is running or has failed its
/// first start (so a database at priority 100 serves before the web tier at 999 starts). A
/// program that has not answered by its deadline holds up the next priority no longer.
/// `all_sent` is set once every program has been sent its start (the last priority's too):
/// from then on each start is the worker's own business. `then` runs in the same thread once
/// every priority has had its first start.
pub fn start_by_priority(
    groups: BTreeMap<i32, Vec<ToStart>>,
    all_sent: Arc<AtomicBool>,
    then: impl FnOnce() + Send + 'static,
) {
    let last = groups.keys().next_back().copied();
    let sent_anyway = all_sent.clone();
    if last.is_none() {
        all_sent.store(true, Ordering::SeqCst);
    }
    let spawned = std::thread::Builder::new()
        .name("starter".into())
        .spawn(move || {
            for (priority, group) in groups {
                let started = Instant::now();
                let waits: Vec<(ToStart, Receiver<Reply>)> = group
                    .into_iter()
                    .filter_map(|mut program| {
                        if program.sent.is_none() {
                            program = program.send_now();
                        }
                        let rx = program.sent.take()?;
                        Some((program, rx))
                    })
                    .collect();
                if Some(priority) == last {
                    all_sent.store(true, Ordering::SeqCst);
                }
                for (program, rx) in waits {
                    let received = match started.checked_add(program.within) {
                        Some(deadline) => rx.recv_deadline(deadline).map_err(|e| e.is_timeout()),
                        None => rx.recv().map_err(|_| false),
                    };
                    if matches!(received, Err(true)) {
                        error!(
                            "{} (priority {priority}) has not finished its first start within {:.0} s; \
                             starting the next priorities without waiting for it",
                            program.name,
                            program.within.as_secs_f64()
                        );
                    }
                }
            }
            then();
        });
    if let Err(e) = spawned {
        error!("cannot start the starter thread: {e}; no program is started automatically");
        // Nothing will be sent: nothing to wait for.
        sent_anyway.store(true, Ordering::SeqCst);
    }
}

/// Waits (in a thread of its own) for every `(name, action, reply)`, until `within` from
/// now, and answers `reply` with one entry per program.
pub fn collect(
    pending: Vec<(String, &'static str, Receiver<Reply>)>,
    reply: Replier,
    within: Duration,
    summary: impl FnOnce(usize, usize) -> String + Send + 'static,
) {
    // Kept to answer should the thread not start (the closure, and `reply` in it, is gone).
    let fallback = reply.clone();
    let spawned = std::thread::Builder::new()
        .name("collector".into())
        .spawn(move || {
            let deadline = Instant::now().checked_add(within);
            let total = pending.len();
            let mut entries = Vec::new();
            let mut ok = 0;
            for (name, action, rx) in pending {
                let r = receive(&name, &rx, deadline, within);
                ok += usize::from(r.is_ok());
                let mut entry = json!({ "name": name, "ok": r.is_ok(), "message": r.message });
                if !action.is_empty() {
                    entry["action"] = json!(action);
                }
                if let Value::Object(data) = &r.data {
                    for (k, v) in data {
                        if k != "name" {
                            entry[k] = v.clone();
                        }
                    }
                }
                entries.push(entry);
            }
            let message = summary(ok, total);
            let answer = if ok == total {
                Reply::ok(message, Value::Array(entries))
            } else {
                Reply::error(500, message).with_data(Value::Array(entries))
            };
            let _ = reply.send(answer);
        });
    if let Err(e) = spawned {
        error!("cannot start a collector thread: {e}");
        let _ = fallback.send(Reply::error(
            500,
            format!("cannot start a thread to gather the answers: {e} (the request was passed on; see `supergoctl status`)"),
        ));
    }
}

/// One program's answer, or the error that says it did not come.
fn receive(name: &str, rx: &Receiver<Reply>, deadline: Option<Instant>, within: Duration) -> Reply {
    let received = match deadline {
        Some(deadline) => rx.recv_deadline(deadline).map_err(|e| e.is_timeout()),
        None => rx.recv().map_err(|_| false),
    };
    match received {
        Ok(reply) => reply,
        Err(false) => Reply::error(500, format!("{name}: its worker ended without an answer")),
        Err(true) => Reply::error(
            500,
            format!(
                "{name}: no answer within {:.0} s; it may still be in progress (see `supergoctl status`)",
                within.as_secs_f64()
            ),
        ),
    }
}
