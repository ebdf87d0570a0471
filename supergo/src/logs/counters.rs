//! The output counters of every program's pipes, indexed by program for one read of the
//! status (`GET /status`, `GET /metrics`).
//!
//! Why an index: with 1000 programs (2000 pipes) a status read that scans every pipe for
//! every program compares 2 million names per request (it was 18 % of a `GET /status`
//! profile). Here the pipes are sorted once per read and each program's are found by
//! binary search; the counters are read (relaxed atomics, as the log thread updates them)
//! when serialized, without copying names or paths.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeSeq, SerializeStruct, Serializer};

use super::PipeInfo;
use crate::status::OutputStatus;

/// Every open pipe's counters as of one read, sorted by program, then stream.
pub struct OutputIndex {
    pipes: Vec<Arc<PipeInfo>>,
}

impl OutputIndex {
    pub(super) fn new(mut pipes: Vec<Arc<PipeInfo>>) -> OutputIndex {
        pipes.sort_by(|a, b| (&a.program, &a.stream).cmp(&(&b.program, &b.stream)));
        OutputIndex { pipes }
    }

    /// The pipes of `program` ("stderr" before "stdout", as they sort).
    pub fn of(&self, program: &str) -> ProgramOutputs<'_> {
        let start = self.pipes.partition_point(|p| p.program.as_str() < program);
        let rest = &self.pipes[start..];
        let len = rest.partition_point(|p| p.program == program);
        ProgramOutputs(&rest[..len])
    }
}

/// One program's pipes: serialized as a list of `OutputStatus`, or copied into one.
#[derive(Clone, Copy)]
pub struct ProgramOutputs<'a>(&'a [Arc<PipeInfo>]);

impl ProgramOutputs<'_> {
    pub fn to_vec(self) -> Vec<OutputStatus> {
        self.0
            .iter()
            .map(|p| OutputStatus {
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
        for pipe in self.0 {
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
            path: format!("/var/log/{program}.{stream}").into(),
            written: AtomicU64::new(written),
            dropped: AtomicU64::new(1),
        })
    }

    #[test]
    fn finds_each_programs_pipes_and_serializes_them_as_output_status() {
        let index = OutputIndex::new(vec![
            pipe("web", "stdout", 5),
            pipe("api", "stdout", 1),
            pipe("web", "stderr", 7),
            pipe("webx", "stdout", 9),
        ]);
        let web = index.of("web").to_vec();
        assert_eq!(
            web.iter().map(|o| (o.stream.as_str(), o.bytes_written)).collect::<Vec<_>>(),
            [("stderr", 7), ("stdout", 5)]
        );
        assert!(index.of("db").to_vec().is_empty());
        assert!(index.of("zzz").to_vec().is_empty());
        assert_eq!(index.of("api").to_vec().len(), 1);
        let direct = serde_json::to_value(index.of("web")).expect("serializable");
        let copied = serde_json::to_value(web).expect("serializable");
        assert_eq!(direct, copied);
    }
}
