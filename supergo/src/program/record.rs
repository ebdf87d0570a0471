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

/// The status to publish: the process shown as the program's, its draining processes, a
/// handoff in progress, the counters.
pub(super) fn snapshot(
    config: &ProgramConfig,
    listeners: &[Arc<Listener>],
    state: State,
    generations: &Generations,
    record: &Record,
) -> ProgramStatus {
    let shown = generations.shown();
    let mut status = ProgramStatus::new(&config.name);
    status.state = state;
    if let Some(p) = shown {
        status.pid = p.pid.as_raw();
        status.generation = p.generation;
        status.start_time = p.started.unix_seconds() as u64;
    } else {
        status.generation = generations.last;
    }
    status.stop_time = status::unix_seconds(record.stop_time) as u64;
    status.listeners = listeners.iter().map(|l| l.local_addr()).collect();
    if status.listeners.is_empty() {
        status.listeners = config.listen_addrs.iter().map(|a| a.to_string()).collect();
    }
    status.draining = generations
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
        })
        .collect();
    status.handoff = generations.handoff.as_ref().map(|h| Handoff {
        pid: h.process.pid.as_raw(),
        generation: h.process.generation,
        since: h.process.started.unix_seconds(),
    });
    status.restarts = record.restarts;
    status.handoffs = record.handoffs;
    status.failed_handoffs = record.failed_handoffs;
    status.last_handoff_ms = record.last_handoff_ms;
    status.last_exit = record.last_exit.clone();
    status.error = record.error.clone();
    status.status_text = record.status_text.clone();
    status
}
