//! `GET /status` as JSON, written straight into a buffer: each program's published
//! snapshot is serialized while its lock is held (never copied), with its uptime as of now
//! and its output counters from the log thread's index.
//!
//! Why not `serde_json::Value`: with 1000 programs, building a `Value` tree per program,
//! copying it into the envelope and rendering that took ~8 ms and left megabytes of freed
//! heap behind. Here nothing is allocated but the buffer (which the caller reuses), and an
//! entry's keys, which never need escaping, are copied as bytes: serde's struct
//! serialization escapes each key again for every program (nineteen per entry), which was
//! a third of the time. The values go through serde_json as before. The entry has exactly
//! the fields of `ProgramStatus`, in its order (a test compares the two), so every client
//! sees what it saw before.

use std::io::Write;

use serde::Serialize;

use crate::logs::{OutputIndex, ProgramOutputs};
use crate::status::{unix_now, ProgramStatus, SharedStatus};

/// Appends the whole answer (the envelope of DESIGN.md, its `data` one entry per program,
/// in the order given) to `buffer`.
pub fn write(buffer: &mut Vec<u8>, statuses: &[&SharedStatus], outputs: &OutputIndex) {
    let now = unix_now();
    let _ = write!(
        buffer,
        r#"{{"status":0,"message":"{} program(s)","data":["#,
        statuses.len()
    );
    for (i, shared) in statuses.iter().enumerate() {
        if i > 0 {
            buffer.push(b',');
        }
        // Held for this entry only: a worker publishing meanwhile waits microseconds.
        let status = shared.lock().unwrap_or_else(|p| p.into_inner());
        Entry {
            output: outputs.of(&status.name),
            uptime_secs: status.uptime_at(now),
            status: &status,
        }
        .write(buffer);
    }
    buffer.extend_from_slice(b"]}");
}

/// One program as `GET /status` shows it: what its worker published, the uptime as of
/// now, and the counters of its output streams.
pub struct Entry<'a> {
    pub status: &'a ProgramStatus,
    pub uptime_secs: f64,
    pub output: ProgramOutputs<'a>,
}

impl Entry<'_> {
    /// Appends the entry as a JSON object.
    pub fn write(&self, out: &mut Vec<u8>) {
        let p = self.status;
        value(out, b"{\"name\":", &p.name);
        value(out, b",\"state\":", &p.state);
        value(out, b",\"pid\":", &p.pid);
        value(out, b",\"generation\":", &p.generation);
        value(out, b",\"start_time\":", &p.start_time);
        value(out, b",\"stop_time\":", &p.stop_time);
        value(out, b",\"uptime_secs\":", &self.uptime_secs);
        value(out, b",\"listeners\":", &p.listeners);
        value(out, b",\"draining\":", &p.draining);
        value(out, b",\"handoff\":", &p.handoff);
        value(out, b",\"restarts\":", &p.restarts);
        value(out, b",\"handoffs\":", &p.handoffs);
        value(out, b",\"failed_handoffs\":", &p.failed_handoffs);
        value(out, b",\"last_handoff_ms\":", &p.last_handoff_ms);
        value(out, b",\"last_exit\":", &p.last_exit);
        value(out, b",\"error\":", &p.error);
        value(out, b",\"status_text\":", &p.status_text);
        value(out, b",\"adopted\":", &p.adopted);
        value(out, b",\"output\":", &self.output);
        out.push(b'}');
    }
}

/// Appends `key` (already JSON: separator, quoted name, colon) and `value`.
fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, key: &[u8], value: &T) {
    out.extend_from_slice(key);
    // Serializing into a Vec fails only when a Serialize impl fails, and these do not
    // (plain data; a non-finite float is written as null).
    serde_json::to_writer(&mut *out, value).expect("status values always serialize");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogHub;
    use crate::status::{Draining, Handoff, State};
    use std::sync::{Arc, Mutex};

    fn busy_status() -> ProgramStatus {
        let mut p = ProgramStatus::new("web");
        p.state = State::Running;
        p.pid = 42;
        p.generation = 3;
        p.start_time = 1_700_000_000;
        p.listeners = vec!["127.0.0.1:4041".into()];
        p.draining.push(Draining {
            pid: 41,
            generation: 2,
            since: 1.5,
            kill_at: 11.5,
            reason: "handoff",
        });
        p.handoff = Some(Handoff {
            pid: 43,
            generation: 4,
            since: 2.0,
        });
        p.last_handoff_ms = Some(3.5);
        p.last_exit = Some("exit status 1".into());
        p.status_text = Some("serving".into());
        p.adopted = Some("adopted".into());
        p
    }

    /// The entry written directly is the derived serialization of `ProgramStatus`, field
    /// for field: a field added to one and not the other fails here.
    #[test]
    fn entry_is_the_program_status_field_for_field() {
        let hub = LogHub::start().expect("log thread");
        let index = hub.output_index();
        let p = busy_status();
        let mut direct = Vec::new();
        Entry {
            status: &p,
            uptime_secs: 12.5,
            output: index.of("web"),
        }
        .write(&mut direct);
        let direct: serde_json::Value = serde_json::from_slice(&direct).expect("JSON");
        let mut derived = p.clone();
        derived.uptime_secs = 12.5;
        let derived = serde_json::to_value(&derived).expect("serializable");
        assert_eq!(direct, derived);
        // In `ProgramStatus`'s order too (what a client printing the raw answer sees).
        let mut direct = Vec::new();
        Entry {
            status: &p,
            uptime_secs: 12.5,
            output: index.of("web"),
        }
        .write(&mut direct);
        let direct = String::from_utf8(direct).expect("UTF-8");
        assert!(direct.starts_with(r#"{"name":"web","state":"Running","pid":42"#));
    }

    #[test]
    fn writes_the_envelope_with_every_program() {
        let hub = LogHub::start().expect("log thread");
        let a: SharedStatus = Arc::new(Mutex::new(busy_status()));
        let b: SharedStatus = Arc::new(Mutex::new(ProgramStatus::new("db")));
        let mut buffer = Vec::new();
        write(&mut buffer, &[&a, &b], &hub.output_index());
        let answer: serde_json::Value = serde_json::from_slice(&buffer).expect("JSON");
        assert_eq!(answer["status"], 0);
        assert_eq!(answer["message"], "2 program(s)");
        let data = answer["data"].as_array().expect("a list");
        assert_eq!(data[0]["name"], "web");
        assert!(data[0]["uptime_secs"].as_f64().expect("a number") > 0.0);
        assert_eq!(data[1]["name"], "db");
        assert_eq!(data[1]["uptime_secs"], 0.0);
        assert_eq!(data[1]["output"], serde_json::json!([]));
    }
}
