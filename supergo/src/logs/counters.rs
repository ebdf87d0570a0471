//! The output counters of every program's pipes, indexed by program for one read of the
//! status (`GET /status`, `GET /metrics`).
//!
//! Why an index: with 1000 programs (1000 to 2000 pipes) a status read that scans every pipe
//! for every program compares millions of names per request (it was 18 % of a `GET /status`
//! profile). The hub keeps its pipes sorted by program and stream (`Shared::register`), and
//! a read walks them alongside the programs, which come in name order too: a lookup is a
//! comparison or two, a binary search only out of order. The counters are read (relaxed
//! atomics, as the log thread updates them) when serialized, without copying names or paths.

use std::cell::Cell;
use std::cmp::Ordering as Order;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use serde::ser::{Serialize, SerializeSeq, SerializeStruct, Serializer};

use super::PipeInfo;
use crate::status::OutputStatus;

/// The hub's pipes, by id, sorted by program, then stream, then id.
pub(super) type Pipes = Vec<(u64, Arc<PipeInfo>)>;

/// Where `info` goes in `pipes` to keep them sorted.
pub(super) fn position(pipes: &Pipes, id: u64, info: &PipeInfo) -> usize {
    pipes.partition_point(|(other_id, other)| {
        (&other.program, &other.stream, *other_id) < (&info.program, &info.stream, id)
    })
}

/// Every open pipe's counters for one read: the hub's list, locked while the read lasts
/// (opening or closing a pipe waits that long: a fraction of a millisecond).
pub struct OutputIndex<'a> {
    pipes: MutexGuard<'a, Pipes>,
    /// Where the last lookup ended: the next program in name order starts there.
    cursor: Cell<usize>,
}

impl<'a> OutputIndex<'a> {
    pub(super) fn new(pipes: MutexGuard<'a, Pipes>) -> OutputIndex<'a> {
        OutputIndex {
            pipes,
            cursor: Cell::new(0),
        }
    }

    /// The pipes of `program` ("stderr" before "stdout", as they sort).
    pub fn of(&self, program: &str) -> ProgramOutputs<'_> {
        let pipes = &self.pipes[..];
        let at = self.cursor.get().min(pipes.len());
        let run = |start: usize| {
            pipes[start..]
                .iter()
                .take_while(|(_, p)| p.program == program)
                .count()
        };
        let mut start = at;
        let mut len = run(at);
        // None at the cursor: in name order, this program has no pipes when the cursor sits
        // between smaller and greater names; else look it up.
        let cmp_at = |i: usize| pipes[i].1.program.as_str().cmp(program);
        if len == 0
            && !((at == pipes.len() || cmp_at(at) == Order::Greater)
                && (at == 0 || cmp_at(at - 1) == Order::Less))
        {
            start = pipes.partition_point(|(_, p)| p.program.as_str() < program);
            len = run(start);
        }
        self.cursor.set(start + len);
        ProgramOutputs(&pipes[start..start + len])
    }
}

/// One program's pipes: serialized as a list of `OutputStatus`, or copied into one.
#[derive(Clone, Copy)]
pub struct ProgramOutputs<'a>(&'a [(u64, Arc<PipeInfo>)]);

impl ProgramOutputs<'_> {
    pub fn to_vec(self) -> Vec<OutputStatus> {
        self.0
            .iter()
            .map(|(_, p)| OutputStatus {
                stream: p.stream.clone(),
                path: p.path.display().to_string(),
                bytes_written: p.written.load(Ordering::Relaxed),
                bytes_dropped: p.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Serialize for ProgramOutputs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (_, pipe) in self.0 {
            seq.serialize_element(&Counters(pipe))?;
        }
        seq.end()
    }
}

/// One pipe, with the fields (and their order) of `OutputStatus`.
struct Counters<'a>(&'a PipeInfo);

impl Serialize for Counters<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let pipe = self.0;
        let mut s = serializer.serialize_struct("OutputStatus", 4)?;
        s.serialize_field("stream", &pipe.stream)?;
        // As `OutputStatus::path`: a path that is not UTF-8 is shown lossily.
        s.serialize_field("path", &Lossy(&pipe.path))?;
        s.serialize_field("bytes_written", &pipe.written.load(Ordering::Relaxed))?;
        s.serialize_field("bytes_dropped", &pipe.dropped.load(Ordering::Relaxed))?;
        s.end()
    }
}

struct Lossy<'a>(&'a std::path::Path);

impl Serialize for Lossy<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.to_str() {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(&self.0.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn pipe(program: &str, stream: &str, written: u64) -> Arc<PipeInfo> {
        Arc::new(PipeInfo {
            program: program.into(),
            stream: stream.into(),
            path: std::path::PathBuf::from(format!("/var/log/{program}.{stream}")).into(),
            written: AtomicU64::new(written),
            dropped: AtomicU64::new(1),
        })
    }

    #[test]
    fn finds_each_programs_pipes_in_any_order_and_serializes_them_as_output_status() {
        let mut pipes = Pipes::new();
        for (id, (program, stream, written)) in [
            ("web", "stdout", 5),
            ("api", "stdout", 1),
            ("web", "stderr", 7),
            ("webx", "stdout", 9),
        ]
        .into_iter()
        .enumerate()
        {
            let info = pipe(program, stream, written);
            pipes.insert(position(&pipes, id as u64, &info), (id as u64, info));
        }
        let pipes = std::sync::Mutex::new(pipes);
        let index = OutputIndex::new(pipes.lock().expect("not poisoned"));
        let streams = |program: &str| -> Vec<(String, u64)> {
            let outputs = index.of(program).to_vec();
            outputs
                .into_iter()
                .map(|o| (o.stream, o.bytes_written))
                .collect()
        };
        let web = vec![("stderr".to_string(), 7), ("stdout".to_string(), 5)];
        // In name order (the cursor), then out of order (binary search), and again.
        for _ in 0..2 {
            assert_eq!(streams("a"), []);
            assert_eq!(streams("api"), [("stdout".to_string(), 1)]);
            assert_eq!(streams("db"), []);
            assert_eq!(streams("web"), web);
            assert_eq!(streams("webx"), [("stdout".to_string(), 9)]);
            assert_eq!(streams("zzz"), []);
        }
        assert_eq!(streams("web"), web);
        assert_eq!(streams("api").len(), 1);
        assert_eq!(streams("webx").len(), 1);
        let direct = serde_json::to_value(index.of("web")).expect("serializable");
        let copied = serde_json::to_value(index.of("web").to_vec()).expect("serializable");
        assert_eq!(direct, copied);
        assert_eq!(direct[0]["path"], "/var/log/web.stderr");
    }
}
