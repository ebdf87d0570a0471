//! A worker's state written for an upgrade in place: each part writes its own keys into the
//! program's section `[program NAME]`, and its lists as child sections:
//!
//! - lifecycle: `state`, `failures`, `backoff_until`, `stop_requested`, `shutting_down`;
//! - generations: `generation` (the counter), `stillborn`, and one `[.process PID]` per
//!   process (`role=serving|draining`, pid, generation, stop policy, start time, readiness
//!   deadline, and once asked to stop: since when, why, the SIGKILL deadline);
//! - resources: `[.config]` (`config_state`), `listen_error`, `notify_fd`, and the log pipes
//!   in `[.outputs]` (the pipe ids, which the log hub's own section names too, and the write
//!   ends the worker keeps for new children);
//! - record: the counters and last outcomes;
//! - adoption (`adopted_handover`): the status note of an adopted serving process, and with
//!   each adopted process its start time (`adopted_ticks`), by which the new image knows it
//!   is not its child and checks its pid before it watches it again;
//! - `end_reported`: an `essential` program's end was told to the core already (`ended`).
//!
//! Times are written twice: CLOCK_MONOTONIC nanoseconds (the timers: that clock runs on
//! across the exec) and unix nanoseconds beside them (`KEY_wall`, what status shows), so a
//! process's `start_time` is the same before and after. A handoff in progress and the
//! waiters are never written: a worker with either refuses the upgrade (`freeze`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::config_state;
use super::process::Process;
use super::stamp::Stamp;
use super::worker::Worker;
use crate::handover::monotonic;
use crate::handover::StateWriter;
use crate::reaper::ExitStatus;

impl Worker {
    /// Writes `[program NAME]` and its children.
    pub(super) fn serialize(&self, w: &mut StateWriter) {
        w.section("program", self.name());
        let life = &self.life;
        w.write_str("state", &format!("{:?}", life.state))
            .write_u64("failures", u64::from(life.failures))
            .write_bool("stop_requested", life.stop_requested)
            .write_bool("shutting_down", life.shutting_down);
        if let Some(until) = &life.backoff_until {
            write_stamp(w, "backoff_until", until);
        }
        w.write_u64("generation", self.gens.last);
        w.write_u64("stillborn_count", self.gens.stillborn.len() as u64);
        for pid in &self.gens.stillborn {
            w.write_i64("stillborn", i64::from(pid.as_raw()));
        }
        let record = &self.record;
        w.write_u64("stop_time_wall", wall_nanos(record.stop_time))
            .write_u64("restarts", record.restarts)
            .write_u64("handoffs", record.handoffs)
            .write_u64("failed_handoffs", record.failed_handoffs);
        if let Some(ms) = record.last_handoff_ms {
            w.write_str("last_handoff_ms", &ms.to_string());
        }
        for (key, value) in [
            ("last_exit", &record.last_exit),
            ("error", &record.error),
            ("status_text", &record.status_text),
            ("listen_error", &self.resources.listen_error),
        ] {
            if let Some(value) = value {
                w.write_str(key, value);
            }
        }
        w.write_bool("end_reported", self.end_reported);
        self.serialize_adoption(w);
        if let Some(notify) = &self.resources.notify {
            w.write_fd("notify_fd", notify.fd());
        }
        config_state::write(w, &self.resources.config);
        if let Some(outputs) = &self.resources.outputs {
            w.child("outputs", "");
            let settings = &outputs.settings;
            if let Some(path) = &settings.stdout_file {
                w.write_path("stdout_file", path);
            }
            if let Some(path) = &settings.stderr_file {
                w.write_path("stderr_file", path);
            }
            w.write_bool("redirect_stderr", settings.redirect_stderr)
                .write_u64("max_bytes", settings.max_bytes)
                .write_u64("backups", u64::from(settings.backups));
            for (stream, pipe) in outputs.pipes() {
                if let Some(pipe) = pipe {
                    w.write_u64(&format!("{stream}_pipe"), pipe.id());
                    w.write_fd(&format!("{stream}_fd"), pipe.write_end());
                }
            }
        }
        if let Some(process) = &self.gens.current {
            write_process(w, process, "serving");
        }
        for process in &self.gens.draining {
            write_process(w, process, "draining");
        }
    }
}

fn write_process(w: &mut StateWriter, p: &Process, role: &str) {
    w.child("process", &p.pid.to_string())
        .write_str("role", role)
        .write_i64("pid", i64::from(p.pid.as_raw()))
        .write_u64("generation", p.generation)
        .write_str("stop_signal", p.policy.signal.as_str())
        .write_duration("stop_timeout", p.policy.timeout)
        .write_bool("stop_as_group", p.policy.as_group)
        .write_bool("ready", p.ready);
    write_stamp(w, "started", &p.started);
    write_stamp(w, "ready_deadline", &p.ready_deadline);
    if let Some(stop) = &p.stop {
        write_stamp(w, "stop_since", &stop.since);
        w.write_str("stop_reason", stop.reason.as_str());
        if let Some(kill_at) = &stop.kill_at {
            write_stamp(w, "kill_at", kill_at);
        }
    }
    if let Some(status) = &p.leader_exit {
        w.write_str("leader_exit", &exit_status(status));
    }
    if let Some(ticks) = p.adopted {
        w.write_u64("adopted_ticks", ticks);
    }
}

/// `KEY` as CLOCK_MONOTONIC nanoseconds (past or future), `KEY_wall` as unix nanoseconds.
fn write_stamp(w: &mut StateWriter, key: &str, stamp: &Stamp) {
    w.write_u64(key, mono_nanos(stamp.mono));
    w.write_u64(&format!("{key}_wall"), wall_nanos(stamp.wall));
}

/// `at` on CLOCK_MONOTONIC, the clock `Instant` reads, which runs on across an exec.
pub(super) fn mono_nanos(at: Instant) -> u64 {
    let (now, now_ns) = (Instant::now(), monotonic::now_nanos());
    let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if at >= now {
        now_ns.saturating_add(nanos(at - now))
    } else {
        now_ns.saturating_sub(nanos(now - at))
    }
}

pub(super) fn wall_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `code:N` or `signal:N` (`signal:N:core` when it dumped core).
pub(super) fn exit_status(status: &ExitStatus) -> String {
    match status {
        ExitStatus::Code(code) => format!("code:{code}"),
        ExitStatus::Signal(signal, false) => format!("signal:{}", *signal as i32),
        ExitStatus::Signal(signal, true) => format!("signal:{}:core", *signal as i32),
        ExitStatus::Unknown => "unknown".to_string(),
    }
}
