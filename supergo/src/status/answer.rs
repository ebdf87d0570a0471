//! `GET /status` as JSON, written straight into a buffer: each program's published
//! snapshot is serialized while its lock is held (never copied), with its uptime as of now
//! and its output counters from the log thread's index.
//!
//! Why not `serde_json::Value`: with 1000 programs, building a `Value` tree per program,
//! copying it into the envelope and rendering that took ~8 ms and left megabytes of freed
//! heap behind; this takes a fraction of a millisecond and allocates nothing but the buffer
//! (which the caller reuses). The entry has exactly the fields of `ProgramStatus`, in its
//! order (a test compares the two), so every client sees what it saw before.

use serde::ser::{Serialize, SerializeSeq, SerializeStruct, Serializer};

use super::{unix_now, ProgramStatus, SharedStatus};
use crate::logs::{OutputIndex, ProgramOutputs};
use crate::reply::Envelope;

/// Appends the whole answer (the envelope of DESIGN.md, its `data` one entry per program,
/// in the order given) to `buffer`.
pub fn write(buffer: &mut Vec<u8>, statuses: &[&SharedStatus], outputs: &OutputIndex) {
    let message = format!("{} program(s)", statuses.len());
    let envelope = Envelope {
        status: 0,
        message: &message,
        data: Entries {
            statuses,
            outputs,
            now: unix_now(),
        },
    };
    // Serializing into a Vec fails only when a Serialize impl fails, and these do not.
    serde_json::to_writer(buffer, &envelope).expect("status entries always serialize");
}

struct Entries<'a> {
    statuses: &'a [&'a SharedStatus],
    outputs: &'a OutputIndex,
    now: f64,
}

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.statuses.len()))?;
        for shared in self.statuses {
            // Held for this entry only: a worker publishing meanwhile waits microseconds.
            let status = shared.lock().unwrap_or_else(|p| p.into_inner());
            seq.serialize_element(&Entry {
                output: self.outputs.of(&status.name),
                uptime_secs: status.uptime_at(self.now),
                status: &status,
            })?;
        }
        seq.end()
    }
}

/// One program as `GET /status` shows it: what its worker published, the uptime as of
/// now, and the counters of its output streams.
pub struct Entry<'a> {
    pub status: &'a ProgramStatus,
    pub uptime_secs: f64,
    pub output: ProgramOutputs<'a>,
}

impl Serialize for Entry<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.status;
        let mut s = serializer.serialize_struct("ProgramStatus", 19)?;
        s.serialize_field("name", &p.name)?;
        s.serialize_field("state", &p.state)?;
        s.serialize_field("pid", &p.pid)?;
        s.serialize_field("generation", &p.generation)?;
        s.serialize_field("start_time", &p.start_time)?;
        s.serialize_field("stop_time", &p.stop_time)?;
        s.serialize_field("uptime_secs", &self.uptime_secs)?;
        s.serialize_field("listeners", &p.listeners)?;
        s.serialize_field("draining", &p.draining)?;
        s.serialize_field("handoff", &p.handoff)?;
        s.serialize_field("restarts", &p.restarts)?;
        s.serialize_field("handoffs", &p.handoffs)?;
        s.serialize_field("failed_handoffs", &p.failed_handoffs)?;
        s.serialize_field("last_handoff_ms", &p.last_handoff_ms)?;
        s.serialize_field("last_exit", &p.last_exit)?;
        s.serialize_field("error", &p.error)?;
        s.serialize_field("status_text", &p.status_text)?;
        s.serialize_field("adopted", &p.adopted)?;
        s.serialize_field("output", &self.output)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Draining, Handoff, State};
    use super::*;
    use crate::logs::LogHub;
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
        let direct = serde_json::to_value(Entry {
            status: &p,
            uptime_secs: 12.5,
            output: index.of("web"),
        })
        .expect("serializable");
        let mut derived = p.clone();
        derived.uptime_secs = 12.5;
        let derived = serde_json::to_value(&derived).expect("serializable");
        assert_eq!(direct, derived);
        // In `ProgramStatus`'s order too (what a client printing the raw answer sees).
        let direct = serde_json::to_string(&Entry {
            status: &p,
            uptime_secs: 12.5,
            output: index.of("web"),
        })
        .expect("serializable");
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
