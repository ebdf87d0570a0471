//! Children's stdout and stderr: pipes that supergo reads, and the files it appends them to,
//! rotates and reopens.
//!
//! A child's fd 1 and 2 are the write ends of pipes, not the log files themselves, so that
//! supergo can rotate by size (`log_max_bytes`, `log_backups`), reopen files for an external
//! logrotate (SIGUSR1) and serve tails, without the child knowing.
//!
//! What this module owns:
//! - **One log thread** (`pump`) for all programs. It `poll()`s the read end of every pipe
//!   plus a wake pipe; registration, removal, reopen and shutdown come over a channel, each
//!   followed by a byte on the wake pipe. When idle it sleeps in `poll` with no timeout, so
//!   an idle supergo uses no CPU. The only timed wake-up is the one below for a partial line.
//! - **One `LogPipe` per program and stream**, kept across generations: the old and the new
//!   process write into the same pipe during a handoff. `redirect_stderr` is the stdout pipe
//!   given as fd 2 too.
//! - **Lines** (`lines`): complete lines are written whole. A partial line is kept until its
//!   newline arrives, until it reaches 64 KiB (then it is written as is: a line that does not
//!   fit the buffer is the one case a line may be split), or until the pipe has been silent
//!   for a second (so that a prompt, or the last words of a crashed process without a
//!   trailing newline, is neither hidden nor glued to the next generation's first line).
//! - **Files** (`file`), one per path inside the log thread, shared by every pipe that
//!   names it, so stdout and stderr pointing at the same file rotate it together. Opened
//!   append + create, mode 0644, O_CLOEXEC.
//! - **Rotation** at `max_bytes` (0 = never): before a write that would pass it, `file.N-1`
//!   → `file.N` … `file` → `file.1` (keeping `backups` files; with 0 backups the file is
//!   truncated), then a fresh `file`. Writes are cut at line ends only, so a line goes whole
//!   into one file; a single line longer than `max_bytes` gets a file to itself.
//! - **Failures** (disk full, EIO, a directory that is gone): the log thread never stops and
//!   never stops draining the pipes, so a child is never left blocked on a full pipe because
//!   a disk is. The bytes are dropped and counted (`LogHub::stats`), the file is retried at
//!   most once a second, and each failure episode is logged once, naming program and path.
//!
//! - **supergo's own stdout/stderr** (`console`): a target of `/dev/stdout` or `/dev/stderr`
//!   is decided here, not by the caller: it is never opened as a file, and its lines are
//!   written prefixed with the program's name by a writer thread of that stream, with bounded
//!   buffering; see `console` for the record format and the drop policy.
//! - **Counters** per pipe (bytes written, bytes dropped), read when the control API builds
//!   `GET /status` and `GET /metrics` (`LogHub::output_index`, `counters`), not published by
//!   the workers.
//!
//! Dropping a `LogPipe` closes supergo's write end; the log thread keeps reading until every
//! write end is closed (children that still hold one keep being logged), writes what is left,
//! then closes the pipe and, when no pipe names it any more, the file.

mod console;
mod counters;
mod file;
mod handover;
mod lines;
mod pump;
#[cfg(test)]
mod tests;

use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Sender};

pub use counters::{OutputIndex, ProgramOutputs};
pub use handover::RestoredLogs;

use crate::status::ProgramStatus;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd;

/// How long `reopen_all` waits for the log thread (which may be stuck on a slow disk).
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// Where one stream of one program goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    pub path: PathBuf,
    /// Rotate before the file would pass this size; 0 = never rotate.
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.N`); 0 = truncate in place.
    pub backups: u32,
}

/// Counters of one pipe, for status and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogStats {
    pub program: String,
    pub stream: String,
    pub path: PathBuf,
    pub bytes_written: u64,
    /// Read from the pipe but not written, because the file could not be.
    pub bytes_dropped: u64,
}

/// What the log thread knows about a pipe and updates as it goes; shared with `stats`.
struct PipeInfo {
    program: String,
    stream: String,
    /// Shared with the pipe's file in the log thread (one copy of the path per pipe).
    path: Arc<Path>,
    written: AtomicU64,
    dropped: AtomicU64,
}

impl PipeInfo {
    fn stats(&self) -> LogStats {
        LogStats {
            program: self.program.clone(),
            stream: self.stream.clone(),
            path: self.path.to_path_buf(),
            bytes_written: self.written.load(Ordering::Relaxed),
            bytes_dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// A new pipe for the log thread.
struct Registration {
    id: u64,
    read: OwnedFd,
    target: LogTarget,
    info: Arc<PipeInfo>,
    /// What the image before an upgrade in place left of this pipe (nothing for a new one).
    carried: handover::Carried,
}

/// Requests to the log thread, each followed by a byte on the wake pipe.
enum Command {
    Add(Registration),
    /// supergo's write end is closed: finish the pipe once no child holds one either.
    Remove(u64),
    /// Close and reopen every file by path; the sender is told when done.
    Reopen(Sender<()>),
    /// Drain what the pipes hold now, write it, and end the thread.
    Shutdown,
    /// An upgrade in place: write the state, then wait (see `handover`).
    Freeze(handover::Freeze),
    /// Records carried over by an upgrade in place, for one of supergo's own streams.
    Preload(console::Stream, Vec<u8>),
}

/// What `LogHub` and every `LogPipe` share: the way to the log thread, and the counters.
struct Shared {
    commands: Sender<Command>,
    /// Write end of the wake pipe, O_NONBLOCK.
    wake: OwnedFd,
    /// Sorted by program and stream (`register`), for `counters`.
    pipes: Mutex<counters::Pipes>,
    next_id: AtomicU64,
}

impl Shared {
    /// Sends a command and wakes the log thread. False when the thread has ended.
    fn send(&self, command: Command) -> bool {
        let sent = self.commands.send(command).is_ok();
        // Non-blocking: a full wake pipe already guarantees a wake-up (EAGAIN is fine), and
        // a thread that has ended cannot be woken (EPIPE; SIGPIPE is ignored by Rust).
        let _ = unistd::write(&self.wake, &[1]);
        sent
    }

    /// Adds a pipe's counters, in order.
    fn register(&self, id: u64, info: Arc<PipeInfo>) {
        let mut pipes = self.pipes();
        let at = counters::position(&pipes, id, &info);
        pipes.insert(at, (id, info));
    }

    fn pipes(&self) -> MutexGuard<'_, counters::Pipes> {
        // A panic while holding this lock leaves a plain Vec intact: keep using it.
        self.pipes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The log thread and the way to it; shared as `Arc<LogHub>`.
pub struct LogHub {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LogHub {
    /// Starts the one log thread.
    pub fn start() -> io::Result<Arc<LogHub>> {
        // Both ends non-blocking: the log thread drains every pending byte without blocking,
        // and a thread asking for a wake-up never waits on a full pipe. CLOEXEC in the same
        // call, so no child forked by another thread meanwhile inherits it.
        let (wake_read, wake_write) = unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // For the consoles' writer threads, which wake a log thread that holds back.
        let pump_wake_write = wake_write.try_clone()?;
        let (commands, receiver) = unbounded();
        let thread = std::thread::Builder::new()
            .name("logs".to_string())
            .spawn(move || pump::run(receiver, wake_read, pump_wake_write))?;
        Ok(Arc::new(LogHub {
            shared: Arc::new(Shared {
                commands,
                wake: wake_write,
                pipes: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(1),
            }),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// A pipe whose write end children get as fd 1 or 2; everything written to it is
    /// appended to `target`, rotating at `max_bytes`. The same `LogPipe` serves every
    /// generation of a program.
    ///
    /// A file that cannot be opened is not an error here: the program must run even when
    /// its log disk is broken. The log thread reports it, drops the output (counted in
    /// `stats`) and retries.
    pub fn open(&self, program: &str, stream: &str, target: LogTarget) -> io::Result<LogPipe> {
        let (read, write) = log_pipe()?;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(PipeInfo {
            program: program.to_string(),
            stream: stream.to_string(),
            path: Arc::from(target.path.as_path()),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        self.shared.register(id, info.clone());
        let registration = Registration {
            id,
            read,
            target,
            info,
            carried: handover::Carried::default(),
        };
        let pipe = LogPipe {
            id,
            write,
            shared: self.shared.clone(),
        };
        if !self.shared.send(Command::Add(registration)) {
            // `pipe` unregisters its counters as it drops.
            return Err(io::Error::other(format!(
                "{program} {stream}: the log thread has stopped"
            )));
        }
        Ok(pipe)
    }

    /// Closes and reopens every log file by path (SIGUSR1, after an external logrotate
    /// moved them). Returns once done, or after a few seconds if the log thread is held up
    /// by a slow disk (the reopen then still happens, later).
    pub fn reopen_all(&self) {
        let (done, wait) = bounded(1);
        if self.shared.send(Command::Reopen(done)) {
            let _ = wait.recv_timeout(REOPEN_WAIT);
        }
    }

    /// Counters of every open pipe.
    pub fn stats(&self) -> Vec<LogStats> {
        self.shared
            .pipes()
            .iter()
            .map(|(_, info)| info.stats())
            .collect()
    }

    /// Every open pipe's counters, indexed by program, for one read of the status. Opening
    /// or closing a pipe waits until it is dropped.
    pub fn output_index(&self) -> OutputIndex<'_> {
        OutputIndex::new(self.shared.pipes())
    }

    /// Sets each status's `output` to the counters of that program's pipes, for
    /// `GET /metrics`. Counters start at 0 when a pipe is opened: when the program is
    /// added, or when `update` changes where its output goes.
    pub fn fill_output(&self, statuses: &mut [ProgramStatus]) {
        let index = self.output_index();
        for status in statuses {
            status.output = index.of(&status.name).to_vec();
        }
    }

    /// Writes what the pipes hold now and ends the log thread (supergo is exiting and its
    /// children are gone). Later writes into the pipes fail with EPIPE.
    pub fn shutdown(&self) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            self.shared.send(Command::Shutdown);
            if thread.join().is_err() {
                crate::error!("the log thread panicked; children's output may have been lost");
            }
        }
    }
}

impl Drop for LogHub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A pipe of `pipe2(O_CLOEXEC)`: (read end made O_NONBLOCK, blocking write end).
fn log_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    // Not O_NONBLOCK in pipe2: that would make the child's stdout non-blocking too, and
    // most programs treat EAGAIN on stdout as a fatal error. The flag is set on the read
    // end's open file description only, which nobody but the log thread holds.
    let (read, write) = unistd::pipe2(OFlag::O_CLOEXEC)?;
    let flags = OFlag::from_bits_retain(fcntl(&read, FcntlArg::F_GETFL)?);
    fcntl(&read, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok((read, write))
}

/// One program's stdout or stderr pipe; its write end goes to the children.
pub struct LogPipe {
    id: u64,
    write: OwnedFd,
    shared: Arc<Shared>,
}

impl LogPipe {
    /// The pipe's id in the log thread (what an upgrade in place writes to match the write
    /// end with its read end).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The write end, to give to a child (spawn dups it onto fd 1 or 2).
    pub fn write_end(&self) -> BorrowedFd<'_> {
        self.write.as_fd()
    }

    /// A duplicate of the write end, O_CLOEXEC (F_DUPFD_CLOEXEC), for `SpawnRequest::stdio`.
    pub fn try_clone_write_end(&self) -> io::Result<OwnedFd> {
        self.write.try_clone()
    }
}

impl Drop for LogPipe {
    fn drop(&mut self) {
        self.shared.pipes().retain(|(id, _)| *id != self.id);
        // The write end closes right after this (fields drop after `drop`); the log thread
        // finishes the pipe when it reads EOF, i.e. once no child holds a write end either.
        self.shared.send(Command::Remove(self.id));
    }
}

/// The last `bytes` of the file at `path` (from `offset` when given and still inside the
/// file), and the file's size, which the caller passes as the next `offset` to follow it.
/// A file not written yet reads as empty; a file that shrank under the reader (rotated or
/// truncated) is read from its tail again. supergo's own stdout or stderr is no file: an
/// error of kind `Unsupported` says where to read it instead.
pub fn tail(path: &Path, bytes: u64, offset: Option<u64>) -> io::Result<(String, u64)> {
    if let Some(stream) = console::Stream::of(path) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{} is supergo's own {}, which supergo does not keep: read it where supergo's \
                 output goes (`docker logs`, `journalctl -u`, the terminal)",
                path.display(),
                stream.name()
            ),
        ));
    }
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((String::new(), 0)),
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    let from_tail = size.saturating_sub(bytes);
    let start = match offset {
        Some(o) if o <= size => o.max(from_tail),
        _ => from_tail,
    };
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.take(size - start).read_to_end(&mut buf)?;
    Ok((String::from_utf8_lossy(&buf).into_owned(), size))
}

/// `Errno` text for an io error when it has one ("No space left on device").
fn reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}
