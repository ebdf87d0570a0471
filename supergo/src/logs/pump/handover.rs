//! The log thread's side of an upgrade in place (see `logs::handover`): on `Freeze`, it
//! holds the consoles (after they wrote what they could), writes `[logs]` and waits; it
//! reads no pipe until released, and an exec ends it there.

use std::sync::atomic::Ordering;

use super::{Pump, Sink};
use crate::handover::StateWriter;
use crate::logs::console::Stream;
use crate::logs::handover::{Freeze, SECTION};

impl Pump {
    pub(super) fn freeze(&mut self, order: Freeze) {
        let mut w = StateWriter::new();
        w.section(SECTION, "");
        let mut held = [Vec::new(), Vec::new()];
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some(console) = &self.consoles[stream.index()] {
                held[stream.index()] = console.hold();
                w.write_bytes(&format!("console_{}", stream.name()), &held[stream.index()]);
            }
        }
        for pipe in &self.pipes {
            let target = match &pipe.sink {
                Sink::File(path) => self.files.get(path).map(|f| f.target()),
                Sink::Console(_) => None,
            };
            let info = &pipe.info;
            let (partial, cut) = pipe.lines.carried();
            w.child("pipe", &pipe.id.to_string())
                .write_u64("id", pipe.id)
                .write_str("program", &info.program)
                .write_str("stream", &info.stream)
                .write_path("path", &info.path)
                .write_u64("max_bytes", target.as_ref().map_or(0, |t| t.max_bytes))
                .write_u64(
                    "backups",
                    target.as_ref().map_or(0, |t| u64::from(t.backups)),
                )
                .write_fd("read_fd", std::os::fd::AsFd::as_fd(&pipe.read))
                .write_u64("written", info.written.load(Ordering::Relaxed))
                .write_u64("dropped", info.dropped.load(Ordering::Relaxed))
                .write_bool("removed", pipe.removed)
                .write_bytes("partial", partial)
                .write_bool("cut", cut);
        }
        if order.answer.send(w).is_ok() {
            // Nothing is read until the release; the exec ends this thread here.
            let _ = order.release.recv();
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some(console) = &self.consoles[stream.index()] {
                console.release(std::mem::take(&mut held[stream.index()]));
            }
        }
    }

    /// Queues records carried over by an upgrade in place on supergo's `stream`.
    pub(super) fn preload(&mut self, stream: Stream, records: &[u8]) {
        self.console(stream).preload(records);
    }
}
