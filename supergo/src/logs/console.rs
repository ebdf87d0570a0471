//! supergo's own stdout or stderr as a log target: `stdout_file = "/dev/stdout"` (or
//! `"/dev/stderr"`, likewise `stderr_file`), the log of a container or of a systemd unit.
//!
//! Such a path is never opened as a file: it is not one to rotate (supervisord's "Illegal
//! seek", its #1078 and #1224), and reopening it through /proc would not reach a pipe that
//! supergo's parent reads the same way everywhere. Instead the log thread hands records to a
//! **writer thread** of that stream, which writes them to supergo's fd 1 or 2.
//!
//! - **Records**: each line becomes `NAME | TEXT\n`, prefixed with the program's name and
//!   written whole, with exactly one newline: the child's own, or one supergo adds when it has
//!   to write a line that has not ended (the program was silent mid-line for a second, it
//!   exited, supergo is stopping). No pid: every generation of a program writes into one pipe,
//!   so nothing tells which process wrote a line.
//! - **Long lines** are written whole, up to `lines::LINE_MAX` (64 KiB). Docker splits a
//!   line at 16 KiB itself and marks the parts, so that `docker logs` joins them again: our own
//!   marker would only be text in the middle of the line. A line longer than 64 KiB (the line
//!   buffer's bound) is cut into pieces; each piece after the first is written as
//!   `NAME + TEXT\n`, so that `+` says "this continues the line of NAME before it".
//! - **One `write` per batch of whole records**, from one thread per stream, holding std's
//!   lock of that stream (supergo's own log writes whole lines to stderr under the same lock):
//!   two programs' lines, or a program's and supergo's, never mix.
//! - **Bounded, never blocking the children for long**: at most `SOFT_LIMIT` (1 MiB) waits in
//!   supergo per stream. When it is reached, the log thread stops reading the pipes of the
//!   programs writing here, so a slow reader slows the children down instead of losing their
//!   lines. If no room comes within `GRACE` (1 s), the reader is taken to be gone: the log
//!   thread reads again and drops whole lines that do not fit, counting them per program
//!   (`bytes_dropped`, in /status and /metrics), until the queue drains below the limit. The
//!   first record that fits after drops is preceded by a line, in supergo's log format, that
//!   says how many lines and bytes were dropped there.
//! - supergo's own fd 1 or 2 is written in blocking mode as it was given (O_NONBLOCK is a
//!   flag of the open file description, shared with whoever else holds it): only the writer
//!   thread waits on it, never the log thread. A fd that was given non-blocking is waited on
//!   with `poll`. A write error (the reader closed the pipe) drops the batch, counted.

mod handover;
#[cfg(test)]
mod tests;
mod writer;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::PipeInfo;

/// Bytes waiting for a stream at which the log thread stops reading pipes that write to it.
pub(super) const SOFT_LIMIT: usize = 1024 * 1024;

/// Bytes waiting for a stream that are never exceeded: partial lines flushed while the log
/// thread holds back may pass the soft limit, not this one.
pub(super) const HARD_LIMIT: usize = 2 * SOFT_LIMIT;

/// How long the children are held back (their pipes not read) before lines are dropped.
pub(super) const GRACE: Duration = Duration::from_secs(1);

/// At shutdown, how long to wait for the writer when it makes no progress at all.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// One of supergo's own output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The stream a log target names, if it names one of supergo's own: `/dev/stdout` and
    /// `/dev/stderr`, and their other spellings `/dev/fd/1`, `/proc/self/fd/1` (2).
    pub fn of(path: &Path) -> Option<Stream> {
        // Path equality compares components: "/dev//stdout" and "/dev/./stdout" match too.
        let is = |names: [&str; 3]| names.iter().any(|n| path == Path::new(n));
        if is(["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]) {
            Some(Stream::Stdout)
        } else if is(["/dev/stderr", "/dev/fd/2", "/proc/self/fd/2"]) {
            Some(Stream::Stderr)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Who the next bytes of the queue (up to `end`) belong to, so that each program's counters
/// are credited when they are written (or dropped). `None`: supergo's own notice.
struct Share {
    info: Option<Arc<PipeInfo>>,
    /// The child's bytes (without prefix and added newline), what the counters count.
    payload: u64,
    /// End offset of these records in `Queue::pending`.
    end: usize,
}

/// What waits to be written, and the state of the hold-back.
#[derive(Default)]
struct Queue {
    pending: Vec<u8>,
    shares: Vec<Share>,
    /// Bytes the writer has taken and not finished writing.
    in_flight: usize,
    /// Since when the queue has been at the soft limit (reset once it is below).
    full_since: Option<Instant>,
    /// The log thread is holding back and must be woken when room comes.
    pump_waiting: bool,
    /// Dropped since the last notice: (lines, bytes).
    dropped: (u64, u64),
    /// Bytes written or given up so far: what `close` watches for progress.
    progress: u64,
    closing: bool,
    finished: bool,
    /// An upgrade in place holds the writer: it takes nothing more until released
    /// (`handover`).
    held: bool,
}

impl Queue {
    fn queued(&self) -> usize {
        self.pending.len() + self.in_flight
    }

    fn dropping(&self, now: Instant) -> bool {
        self.full_since.is_some_and(|since| now >= since + GRACE)
    }

    /// Appends a record: `name`, the separator, `line`, and a newline if it has none.
    fn push(&mut self, info: Option<&Arc<PipeInfo>>, name: &[u8], sep: &[u8], line: &[u8]) {
        self.pending.extend_from_slice(name);
        self.pending.extend_from_slice(sep);
        self.pending.extend_from_slice(line);
        if line.last() != Some(&b'\n') {
            self.pending.push(b'\n');
        }
        let end = self.pending.len();
        let payload = line.len() as u64;
        // Records of one program in a row share one entry, as long as it stays within a
        // slice: the writer cuts its writes at share ends.
        let start = self.shares.iter().rev().nth(1).map_or(0, |s| s.end);
        match self.shares.last_mut() {
            Some(last) if same(&last.info, info) && end - start <= writer::SLICE => {
                last.payload += payload;
                last.end = end;
            }
            _ => self.shares.push(Share {
                info: info.cloned(),
                payload,
                end,
            }),
        }
    }

    /// Writes the notice of the lines dropped since the last one, if any.
    fn notice(&mut self, stream: Stream) {
        let (lines, bytes) = std::mem::take(&mut self.dropped);
        if lines == 0 {
            return;
        }
        let text = format!(
            "{} WARN  {lines} line(s) ({bytes} bytes) of children's output were dropped here: \
             supergo's {} was not read ({} KiB waited for more than {} s)",
            crate::log::timestamp(SystemTime::now()),
            stream.name(),
            SOFT_LIMIT / 1024,
            GRACE.as_secs()
        );
        self.push(None, b"", b"", text.as_bytes());
    }
}

fn same(a: &Option<Arc<PipeInfo>>, b: Option<&Arc<PipeInfo>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// What the log thread and the writer thread share.
struct Shared {
    stream: Stream,
    queue: Mutex<Queue>,
    /// Signalled when records arrive, when room comes, and when the writer finishes.
    changed: Condvar,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The queue holds plain data that a panic cannot leave half-changed in a harmful
        // way: keep using it.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One of supergo's streams as seen by the log thread.
pub(super) struct Console {
    shared: Arc<Shared>,
}

impl Console {
    /// Starts the writer thread of `stream`. `wake` (a write end of the log thread's wake
    /// pipe) is how the writer tells a held-back log thread that room has come.
    pub fn start(stream: Stream, wake: Option<OwnedFd>) -> Console {
        Console::with_output(stream, writer::Output::Own(stream), wake)
    }

    fn with_output(stream: Stream, output: writer::Output, wake: Option<OwnedFd>) -> Console {
        let shared = Arc::new(Shared {
            stream,
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let started = std::thread::Builder::new()
            .name(format!("logs-{}", stream.name()))
            .spawn(move || writer::run(thread_shared, output, wake));
        if let Err(e) = started {
            // Nothing drains the queue then: after the grace the output is dropped and
            // counted, and the children go on.
            crate::error!(
                "cannot start the thread that writes children's output to supergo's {}: {e}; \
                 that output is dropped",
                stream.name()
            );
        }
        Console { shared }
    }

    /// Whether the log thread may read the pipes that write here: `None` yes, `Some(t)`
    /// no, not before `t` (the queue is full and the grace is running; the writer wakes the
    /// log thread earlier if room comes).
    pub fn admit(&self, now: Instant) -> Option<Instant> {
        let mut queue = self.shared.queue();
        if queue.queued() < SOFT_LIMIT {
            queue.full_since = None;
            return None;
        }
        let until = *queue.full_since.get_or_insert(now) + GRACE;
        if now < until {
            queue.pump_waiting = true;
            Some(until)
        } else {
            None
        }
    }

    /// Queues every line of `chunk` as a record of `info`'s program; drops (and counts)
    /// those that do not fit. `continues`: the first line continues the one written before.
    pub fn write(&self, chunk: &[u8], continues: bool, info: &Arc<PipeInfo>, now: Instant) {
        let mut queue = self.shared.queue();
        let limit = if queue.dropping(now) {
            SOFT_LIMIT
        } else {
            HARD_LIMIT
        };
        let name = info.program.as_bytes();
        for (i, line) in chunk.split_inclusive(|&b| b == b'\n').enumerate() {
            let sep: &[u8] = if i == 0 && continues { b" + " } else { b" | " };
            let record = name.len() + sep.len() + line.len() + 1;
            if queue.queued() + record > limit {
                queue.dropped.0 += 1;
                queue.dropped.1 += line.len() as u64;
                info.dropped.fetch_add(line.len() as u64, Ordering::Relaxed);
                continue;
            }
            queue.notice(self.shared.stream);
            queue.push(Some(info), name, sep, line);
        }
        drop(queue);
        self.shared.changed.notify_all();
    }

    /// Writes what is queued (and the notice of a drop at the very end), then ends the
    /// writer. Waits as long as the writer makes progress, and gives up after `CLOSE_WAIT`
    /// without any: supergo must be able to exit when nobody reads its output.
    pub fn close(&self) {
        let mut queue = self.shared.queue();
        queue.notice(self.shared.stream);
        queue.closing = true;
        self.shared.changed.notify_all();
        let mut seen = queue.progress;
        while !queue.finished {
            let (next, timeout) = self
                .shared
                .changed
                .wait_timeout(queue, CLOSE_WAIT)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            queue = next;
            if timeout.timed_out() && queue.progress == seen {
                return;
            }
            seen = queue.progress;
        }
    }
}
