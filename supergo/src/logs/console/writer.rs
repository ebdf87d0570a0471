//! The writer thread of one of supergo's streams: takes what the log thread queued and
//! writes it to fd 1 or 2, in slices of whole records, crediting each program's counters.
//!
//! It is the only thread that may block on the stream; the log thread never does. Slices
//! (`SLICE`, 64 KiB of whole records) rather than the whole queue in one `write`: room is given
//! back to the log thread as each slice lands, so that a slow but live reader is not taken
//! for a gone one.

use std::io::{self, Write};
#[cfg(test)]
use std::os::fd::AsFd;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd;

use super::{Share, Shared, Stream};
use crate::logs::reason;

/// Bytes per `write`: whole shares (see `Queue::push`) up to this size; a single longer
/// record goes alone.
pub(super) const SLICE: usize = 64 * 1024;

/// Kept capacity of the writer's buffers between bursts; larger ones are freed.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Where the records go.
pub(super) enum Output {
    /// supergo's own fd 1 or 2.
    Own(Stream),
    /// Another fd (tests: a pipe they read, or stop reading).
    #[cfg(test)]
    Fd(OwnedFd),
}

impl Output {
    /// Writes `bytes` whole. For supergo's stderr, under std's lock of it, which supergo's own
    /// log (`log::write`) takes for each line too.
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Own(Stream::Stdout) => {
                // Nothing in the daemon prints to stdout, but if something did, it would hold
                // this lock for its line, and its buffered bytes go first.
                let mut lock = io::stdout().lock();
                lock.flush()?;
                write_fd(stdio_fd(1), bytes)
            }
            Output::Own(Stream::Stderr) => {
                let _lock = io::stderr().lock();
                write_fd(stdio_fd(2), bytes)
            }
            #[cfg(test)]
            Output::Fd(fd) => write_fd(fd.as_fd(), bytes),
        }
    }
}

fn stdio_fd(fd: i32) -> BorrowedFd<'static> {
    // SAFETY: fd 1 and 2 stay open for the life of the process (supergo never closes them);
    // a write to one its parent closed fails with EBADF, which is handled like any error.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// `write` until done. EAGAIN (a stream given to supergo in non-blocking mode) waits for
/// room with `poll` instead of failing; EINTR retries.
fn write_fd(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match unistd::write(fd, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(super) fn run(shared: Arc<Shared>, output: Output, wake: Option<OwnedFd>) {
    let mut batch: Vec<u8> = Vec::new();
    let mut shares: Vec<Share> = Vec::new();
    // Since the last write that worked, a write failed (logged once per episode).
    let mut failing = false;
    loop {
        {
            let mut queue = shared.queue();
            while (queue.pending.is_empty() || queue.held) && !queue.closing {
                queue = shared
                    .changed
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if queue.pending.is_empty() {
                queue.finished = true;
                drop(queue);
                shared.changed.notify_all();
                return;
            }
            std::mem::swap(&mut queue.pending, &mut batch);
            std::mem::swap(&mut queue.shares, &mut shares);
            queue.in_flight = batch.len();
        }
        let mut done = 0;
        let mut next = 0;
        while next < shares.len() {
            let last = slice_end(&shares, next, done);
            let end = shares[last].end;
            let result = output.write_all(&batch[done..end]);
            let written = result.is_ok();
            match result {
                Ok(()) if failing => {
                    failing = false;
                    crate::info!(
                        "writing children's output to supergo's {} again",
                        shared.stream.name()
                    );
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    crate::error!(
                        "cannot write children's output to supergo's {}: {}; it is dropped \
                         and counted (bytes_dropped in GET /status) until a write works again",
                        shared.stream.name(),
                        reason(&e)
                    );
                }
                Err(_) => {}
            }
            credit(&shares[next..=last], written);
            give_back(&shared, end - done, wake.as_ref());
            done = end;
            next = last + 1;
        }
        debug_assert_eq!(done, batch.len(), "every queued byte belongs to a share");
        batch.clear();
        shares.clear();
        if batch.capacity() > KEEP_CAPACITY {
            batch = Vec::new();
        }
    }
}

/// The last share of the slice that starts with `shares[first]` (at byte `start`): as many
/// whole shares as fit in `SLICE`, at least one. Slices end at share ends, so each share
/// is credited exactly by the outcome of the one write that carried it.
fn slice_end(shares: &[Share], first: usize, start: usize) -> usize {
    let mut last = first;
    while shares
        .get(last + 1)
        .is_some_and(|next| next.end - start <= SLICE)
    {
        last += 1;
    }
    last
}

/// Credits `shares`, just written (or not), to their programs' counters.
fn credit(shares: &[Share], written: bool) {
    for share in shares {
        if let Some(info) = &share.info {
            let counter = if written {
                &info.written
            } else {
                &info.dropped
            };
            counter.fetch_add(share.payload, Ordering::Relaxed);
        }
    }
}

/// Frees `n` bytes of the queue's budget and wakes whoever waits for room.
fn give_back(shared: &Shared, n: usize, wake: Option<&OwnedFd>) {
    let mut queue = shared.queue();
    queue.in_flight = queue.in_flight.saturating_sub(n);
    queue.progress += n as u64;
    let pump_waiting = std::mem::take(&mut queue.pump_waiting);
    drop(queue);
    shared.changed.notify_all();
    if pump_waiting {
        if let Some(wake) = wake {
            // Non-blocking: a full wake pipe already means a wake-up is coming.
            let _ = unistd::write(wake, &[1]);
        }
    }
}
