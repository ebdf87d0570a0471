//! The requests that wait for an outcome, and the answers to send.
//!
//! Four kinds of wait, each answered on every path (see each field); the rule that keeps it
//! so: whatever takes away the thing a waiter waits for answers that waiter in the same step.
//!
//! Answers decided during one turn of the worker's loop go to the `outbox` and are sent only
//! after the status is published, so a client that gets "restarted" and then reads /status
//! sees the new state, never the one before.
//!
//! Never serialized: these are reply channels to clients of this process. An upgrade in place
//! answers them (or waits until there are none) before it execs.

use std::time::Instant;

use nix::unistd::Pid;
use serde_json::{json, Value};

use super::fixed::fixed;
use super::push_one;
use crate::reply::{Replier, Reply};

/// Someone waiting for the serving process to become ready.
pub(super) enum Waiter {
    Start(Replier),
    /// A restart that had to stop the old process first (or whose old process died).
    Restart {
        reply: Replier,
        old_pid: Pid,
        requested: Instant,
    },
}

#[derive(Default)]
pub(super) struct Waiters {
    /// For the serving process to be ready: answered when it is, when it fails, when a stop
    /// cancels the start, or when a new config with `autostart = false` replaces it.
    pub ready: Vec<Waiter>,
    /// For the handoff in progress: answered when it completes, rolls back or is stopped.
    pub handoff: Vec<Replier>,
    /// For a `stop_before_restart` restart's old process to be gone: moved to `ready` when it
    /// is, answered when a stop cancels the restart.
    pub stop_first: Vec<Replier>,
    /// For a stop (or shutdown) to end: answered once no process is left.
    pub stop: Vec<Replier>,
    outbox: Vec<(Replier, Reply)>,
}

impl Waiters {
    /// Waits for the serving process to be ready (nobody when `None`).
    pub fn add_ready(&mut self, waiter: Option<Waiter>) {
        waiter
            .into_iter()
            .for_each(|w| push_one(&mut self.ready, w));
    }

    /// Waits for the handoff in progress.
    pub fn add_handoff(&mut self, reply: Option<Replier>) {
        reply
            .into_iter()
            .for_each(|r| push_one(&mut self.handoff, r));
    }

    /// Waits for a `stop_before_restart` restart's old process to be gone.
    pub fn add_stop_first(&mut self, reply: Option<Replier>) {
        reply
            .into_iter()
            .for_each(|r| push_one(&mut self.stop_first, r));
    }

    /// Waits for a stop to end.
    pub fn add_stop(&mut self, reply: Option<Replier>) {
        reply.into_iter().for_each(|r| push_one(&mut self.stop, r));
    }

    /// Queues an answer (see the module docs).
    pub fn answer(&mut self, to: Option<Replier>, reply: Reply) {
        if let Some(to) = to {
            push_one(&mut self.outbox, (to, reply));
        }
    }

    /// Queues the same answer to each of `to`.
    pub fn answer_each(&mut self, to: Vec<Replier>, reply: &Reply) {
        for r in to {
            self.outbox.push((r, reply.clone()));
        }
    }

    /// Answers everyone waiting for the serving process: `Ok(pid)` when it became ready, or
    /// the error that ended the start. `data` is the program's `{name, state, pid}` now.
    pub fn answer_ready(&mut self, name: &str, outcome: Result<Pid, String>, data: Value) {
        for waiter in std::mem::take(&mut self.ready) {
            let reply = match (&outcome, waiter) {
                (Ok(pid), Waiter::Start(r)) => (
                    r,
                    Reply::ok(format!("{name}: started, pid {pid}"), data.clone()),
                ),
                (
                    Ok(pid),
                    Waiter::Restart {
                        reply,
                        old_pid,
                        requested,
                    },
                ) => {
                    let ms = requested.elapsed().as_secs_f64() * 1000.0;
                    (
                        reply,
                        Reply::ok(
                            format!(
                                "{name}: restarted, pid {old_pid} -> {pid} (ready in {} ms)",
                                fixed(ms, 0)
                            ),
                            json!({"name": name, "old_pid": old_pid.as_raw(), "new_pid": pid.as_raw(), "handoff_ms": ms}),
                        ),
                    )
                }
                (Err(message), Waiter::Start(r) | Waiter::Restart { reply: r, .. }) => (
                    r,
                    Reply::error(500, message.clone()).with_data(data.clone()),
                ),
            };
            self.outbox.push(reply);
        }
    }

    /// Answers everyone waiting for the serving process with a 409 that says why the start
    /// will not happen.
    pub fn cancel_ready(&mut self, message: &str) {
        for waiter in std::mem::take(&mut self.ready) {
            let (Waiter::Start(r) | Waiter::Restart { reply: r, .. }) = waiter;
            self.outbox.push((r, Reply::error(409, message)));
        }
    }

    /// Sends the answers decided so far. The client may have hung up; nothing to do then.
    pub fn flush(&mut self) {
        // Taken, not drained: answers are rare, and a vector kept at its grown capacity
        // would hold ~400 bytes per program for good.
        for (to, reply) in std::mem::take(&mut self.outbox) {
            let _ = to.send(reply);
        }
    }
}
