//! The log hub across an upgrade in place.
//!
//! The old image freezes the log thread (`LogHub::freeze`): it stops reading, lets the
//! consoles write what they queued, and writes `[logs]`: per pipe (`[.pipe ID]`) its program,
//! stream and target, its read end (an fd the new image inherits: what the children write
//! meanwhile waits in the pipe), its counters, whether supergo's write end is already closed
//! (`removed`: only old processes still write into it), and the partial line it holds; and
//! per console the records still queued. No byte read from a pipe is left behind: a partial
//! line travels as it is and is completed by the bytes that follow it in the pipe.
//!
//! The new image reads that (`RestoredLogs::read`, before the commit), starts the log thread
//! with every pipe registered again under its id and the consoles' records queued first
//! (`LogHub::start_restored`), and each worker takes back its pipes' write ends by id
//! (`LogHub::adopt_pipe`), which it gives to the children it starts from then on.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::console::Stream;
use super::{Command, LogHub, LogPipe, LogTarget, PipeInfo, Registration};
use crate::handover::inherit::Committed;
use crate::handover::{HandedFd, State, StateError, StateWriter};

/// The section the log hub writes.
pub const SECTION: &str = "logs";

/// How long `freeze` waits for the log thread (a slow disk may hold it up).
const FREEZE_WAIT: Duration = Duration::from_secs(5);

/// What a pipe brings from the image before.
#[derive(Debug, Default)]
pub(super) struct Carried {
    pub partial: Vec<u8>,
    pub cut: bool,
    pub removed: bool,
}

/// The core's order to the log thread.
pub(super) struct Freeze {
    pub answer: Sender<StateWriter>,
    pub release: Receiver<()>,
}

impl LogHub {
    /// Freezes the log thread and returns its section of the state, with the sender that
    /// releases it (dropping it releases it too) should the exec not happen.
    pub fn freeze(&self) -> Result<(StateWriter, Sender<()>), String> {
        let (answer, answered) = bounded(1);
        let (release_tx, release) = bounded(1);
        if !self
            .shared
            .send(Command::Freeze(Freeze { answer, release }))
        {
            return Err("the log thread has stopped".into());
        }
        match answered.recv_timeout(FREEZE_WAIT) {
            Ok(writer) => Ok((writer, release_tx)),
            Err(_) => Err(format!(
                "the log thread did not answer within {} s (a slow disk?)",
                FREEZE_WAIT.as_secs()
            )),
        }
    }

    /// Starts the log thread with the pipes and records of the image before.
    pub fn start_restored(
        restored: RestoredLogs,
        committed: &Committed,
    ) -> io::Result<Arc<LogHub>> {
        let hub = LogHub::start()?;
        for (stream, records) in restored.consoles {
            hub.shared.send(Command::Preload(stream, records));
        }
        let mut next_id = 1;
        for pipe in restored.pipes {
            next_id = next_id.max(pipe.id + 1);
            let info = Arc::new(PipeInfo {
                program: pipe.program,
                stream: pipe.stream,
                path: Arc::from(pipe.target.path.as_path()),
                written: AtomicU64::new(pipe.written),
                dropped: AtomicU64::new(pipe.dropped),
            });
            if !pipe.carried.removed {
                hub.shared.register(pipe.id, info.clone());
            }
            hub.shared.send(Command::Add(Registration {
                id: pipe.id,
                read: pipe.read.into_owned(committed),
                target: pipe.target,
                info,
                carried: pipe.carried,
            }));
        }
        hub.shared.next_id.store(next_id, Ordering::Relaxed);
        Ok(hub)
    }

    /// The pipe `id` of the image before, with its write end back (`None`, closing it, when
    /// no such pipe was handed over).
    pub fn adopt_pipe(&self, id: u64, write: OwnedFd) -> Option<LogPipe> {
        let known = self.shared.pipes().iter().any(|(pipe, _)| *pipe == id);
        known.then(|| LogPipe {
            id,
            write,
            shared: self.shared.clone(),
        })
    }
}

/// The log hub's section, read; fds not owned yet.
#[derive(Debug, Default)]
pub struct RestoredLogs {
    pipes: Vec<RestoredPipe>,
    consoles: Vec<(Stream, Vec<u8>)>,
}

#[derive(Debug)]
struct RestoredPipe {
    id: u64,
    program: String,
    stream: String,
    target: LogTarget,
    read: HandedFd,
    written: u64,
    dropped: u64,
    carried: Carried,
}

impl RestoredLogs {
    pub fn read(state: &State) -> Result<RestoredLogs, StateError> {
        let Some(s) = state.section(SECTION) else {
            return Ok(RestoredLogs::default());
        };
        let mut restored = RestoredLogs::default();
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some(records) = s.bytes(&format!("console_{}", stream.name()))? {
                restored.consoles.push((stream, records.to_vec()));
            }
        }
        for p in s.children("pipe") {
            let read = p.fd("read_fd")?.ok_or_else(|| p.error("no read_fd"))?;
            restored.pipes.push(RestoredPipe {
                id: p.u64_or("id", 0)?,
                program: p.string_or("program", "")?,
                stream: p.string_or("stream", "stdout")?,
                target: LogTarget {
                    path: p
                        .path("path")?
                        .unwrap_or_else(|| PathBuf::from("/dev/null")),
                    max_bytes: p.u64_or("max_bytes", 0)?,
                    backups: p.u32_or("backups", 0)?,
                },
                read,
                written: p.u64_or("written", 0)?,
                dropped: p.u64_or("dropped", 0)?,
                carried: Carried {
                    partial: p.bytes("partial")?.unwrap_or_default().to_vec(),
                    cut: p.bool_or("cut", false)?,
                    removed: p.bool_or("removed", false)?,
                },
            });
        }
        Ok(restored)
    }

    /// Pipes handed over.
    pub fn pipes(&self) -> usize {
        self.pipes.len()
    }
}
