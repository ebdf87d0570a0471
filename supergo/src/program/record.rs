//! What a program's status shows beyond its processes: counters (restarts, handoffs, failed
//! handoffs), the last handoff's duration, the last exit, the last error, the child's
//! `STATUS=` text and when it last stopped; and `snapshot`, which builds the published
//! `ProgramStatus` from every part.
//!
//! Plain data, all of it serialized by an upgrade or an adoption, so that counters never go
//! back and an operator's view survives supergo's own restart.

use std::sync::Arc;
use std::time::SystemTime;

use super::generations::Generations;
use crate::config::ProgramConfig;
use crate::listener::Listener;
use crate::status::{self, Draining, Handoff, ProgramStatus, State};

pub(super) struct Record {
    /// When the program last stopped, exited or became Fatal (unix epoch: never).
    pub stop_time: SystemTime,
    /// Times the program was started again after an exit (crash restarts, not handoffs).
    pub restarts: u64,
    pub handoffs: u64,
    pub failed_handoffs: u64,
    pub last_handoff_ms: Option<f64>,
    pub last_exit: Option<String>,
    pub error: Option<String>,
    /// The child's last `STATUS=` (ready = "notify").
    pub status_text: Option<String>,
}

impl Default for Record {
    fn default() -> Record {
        Record {
            stop_time: SystemTime::UNIX_EPOCH,
            restarts: 0,
            handoffs: 0,
            failed_handoffs: 0,
            last_handoff_ms: None,
            last_exit: None,
            error: None,
            status_text: None,
        }
    }
}

/// Updates the published status in place to show the parts as they are now: the process
/// shown as the program's, its draining processes, a handoff in progress, the counters.
/// In place, so that a turn of the worker's loop allocates nothing when little changed: the
/// strings and vectors already there are kept, or reused. `listeners_changed`: the
/// listener addresses are looked up again (a `getsockname` each for TCP).
pub(super) fn publish_into(
    status: &mut ProgramStatus,
    config: &ProgramConfig,
    listeners: &[Arc<Listener>],
    listeners_changed: bool,
    state: State,
    generations: &Generations,
    record: &Record,
) {
    let shown = generations.shown();
    if status.name != config.name {
        status.name.clone_from(&config.name);
    }
    status.state = state;
    match shown {
        Some(p) => {
            status.pid = p.pid.as_raw();
            status.generation = p.generation;
            status.start_time = p.started.unix_seconds() as u64;
        }
        None => {
            status.pid = 0;
            status.generation = generations.last;
            status.start_time = 0;
        }
    }
    status.stop_time = status::unix_seconds(record.stop_time) as u64;
    if listeners_changed {
        status.listeners = listeners.iter().map(|l| l.local_addr()).collect();
        if status.listeners.is_empty() {
            status.listeners = config.listen_addrs.iter().map(|a| a.to_string()).collect();
        }
    }
    status.draining.clear();
    status.draining.extend(
        generations
            .draining
            .iter()
            .filter(|p| shown.is_none_or(|s| s.pid != p.pid))
            .filter_map(|p| {
                p.stop.as_ref().map(|s| Draining {
                    pid: p.pid.as_raw(),
                    generation: p.generation,
                    since: s.since.unix_seconds(),
                    kill_at: s.kill_at.map(|k| k.unix_seconds()).unwrap_or(0.0),
                    reason: s.reason.as_str(),
                })
            }),
    );
    if status.draining.is_empty() {
        // A handoff's old process drained: its slot need not stay.
        status.draining = Vec::new();
    }
    status.handoff = generations.handoff.as_ref().map(|h| Handoff {
        pid: h.process.pid.as_raw(),
        generation: h.process.generation,
        since: h.process.started.unix_seconds(),
    });
    status.restarts = record.restarts;
    status.handoffs = record.handoffs;
    status.failed_handoffs = record.failed_handoffs;
    status.last_handoff_ms = record.last_handoff_ms;
    set_text(&mut status.last_exit, &record.last_exit);
    set_text(&mut status.error, &record.error);
    set_text(&mut status.status_text, &record.status_text);
}

/// `*shown = now.clone()`, without allocating when they are equal already.
pub(super) fn set_text(shown: &mut Option<String>, now: &Option<String>) {
    if shown != now {
        shown.clone_from(now);
    }
}
