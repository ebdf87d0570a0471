//! The reader: one thread that accepts connections and reads every request, head and body,
//! with one `poll` over all of them. An idle or half-sent connection costs an fd and a few
//! bytes here, never a thread; complete requests go to the workers.
//!
//! Each turn: poll; read what arrived (a request that is complete goes to a worker); close
//! connections past their deadline; take back connections the workers are done with; then
//! accept at most `ACCEPT_BATCH` new ones, making room in the budget (`table`) by dropping
//! the connection that has waited longest. A connection's request usually arrives with it
//! (the listener defers accepts until data has come), so it is read at once, before any
//! later arrival could push it out.
//!
//! Nothing here blocks but `poll`: sockets are non-blocking, and answers are written by the
//! workers (except a 503 to a connection there is no room for, written once, never waited on).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use std::sync::Arc;

use super::assemble::Verdict;
use super::gate::Gate;
use super::origin::LocalOnly;
use super::response::render;
use super::table::Table;
use super::workers::{Back, Conn, Job, Pool};
use super::READ_TIMEOUT;
use crate::reply::Reply;

/// New connections accepted per turn at most, so that the requests of those already in are
/// read between bursts of arrivals.
const ACCEPT_BATCH: usize = 32;
/// How long accepting pauses when `accept` fails for want of fds or memory: the failed
/// connection stays queued, and retrying at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// How often at most a failing `accept` or `poll` is logged.
const FAILURE_REPORT_EVERY: Duration = Duration::from_secs(60);
/// Bytes read from a connection at a time (at most `MAX_HEAD` + this is buffered for one).
const READ_CHUNK: usize = 16 * 1024;

pub struct Reader {
    listener: TcpListener,
    policy: LocalOnly,
    pool: Pool,
    back: Receiver<Back>,
    /// The workers write a byte here after each message on `back`.
    wake: UnixStream,
    table: Table,
    accept_paused_until: Option<Instant>,
    last_failure_report: Option<Instant>,
    scratch: Vec<u8>,
    /// Paused by an upgrade in place (see `gate`).
    gate: Arc<Gate>,
}

impl Reader {
    pub fn new(
        listener: TcpListener,
        policy: LocalOnly,
        pool: Pool,
        back: Receiver<Back>,
        wake: UnixStream,
        gate: Arc<Gate>,
    ) -> Reader {
        Reader {
            listener,
            policy,
            pool,
            back,
            wake,
            table: Table::new(),
            accept_paused_until: None,
            last_failure_report: None,
            scratch: vec![0; READ_CHUNK],
            gate,
        }
    }

    /// Serves until the process exits.
    pub fn run(mut self) {
        loop {
            self.turn();
        }
    }

    fn turn(&mut self) {
        let now = Instant::now();
        let accepting =
            !self.gate.paused() && self.accept_paused_until.is_none_or(|until| now >= until);
        let deadline = self.next_deadline(accepting);
        let (woken, acceptable, readable) = {
            let mut fds = Vec::with_capacity(2 + self.table.waiting.len());
            fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
            let listen = if accepting {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            };
            fds.push(PollFd::new(self.listener.as_fd(), listen));
            for w in &self.table.waiting {
                fds.push(PollFd::new(w.stream.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout_until(deadline)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    // ENOMEM, most likely: say so, and try again a little later.
                    self.report_failure(format_args!("poll failed: {e}"));
                    std::thread::sleep(ACCEPT_PAUSE);
                    return;
                }
            }
            let ready = |fd: &PollFd| fd.any().unwrap_or(false);
            let readable: Vec<usize> = (fds[2..].iter().enumerate())
                .filter(|(_, fd)| ready(fd))
                .map(|(i, _)| i)
                .collect();
            (ready(&fds[0]), accepting && ready(&fds[1]), readable)
        };
        // From the highest index down: closing or handing over one swaps the last into
        // its place, which has been seen to already.
        for &i in readable.iter().rev() {
            self.read(i);
        }
        self.expire(Instant::now());
        if woken {
            self.drain_wake();
        }
        self.take_back();
        if acceptable {
            self.accept_some();
        }
        if self.gate.paused() {
            self.quiesce();
        }
    }

    /// Paused: closes the connections idle between requests, and says so once none is left
    /// (requests being read or answered finish first).
    fn quiesce(&mut self) {
        for i in (0..self.table.waiting.len()).rev() {
            if self.table.waiting[i].request.is_idle() {
                self.table.close(i);
            }
        }
        if self.table.waiting.is_empty() && self.table.busy() == 0 {
            self.gate.now_quiet();
        }
    }

    /// The earliest deadline of a waiting connection or of the accept pause.
    fn next_deadline(&self, accepting: bool) -> Option<Instant> {
        let waiting = (self.table.waiting.iter())
            .map(|w| w.since + READ_TIMEOUT)
            .min();
        let pause = self.accept_paused_until.filter(|_| !accepting);
        waiting.into_iter().chain(pause).min()
    }

    /// Reads what waiting connection `i` sent; hands its request over once complete.
    fn read(&mut self, i: usize) {
        let w = &mut self.table.waiting[i];
        let verdict = match (&w.stream).read(&mut self.scratch) {
            // The client closed (or reset): nothing to answer.
            Ok(0) => return self.table.close(i),
            Ok(n) => w.request.feed(&self.scratch[..n], &self.policy),
            Err(e) if is_transient(&e) => None,
            Err(_) => return self.table.close(i),
        };
        if let Some(verdict) = verdict {
            self.dispatch(i, verdict);
        }
    }

    fn dispatch(&mut self, i: usize, verdict: Verdict) {
        let w = self.table.hand_to_worker(i);
        let conn = Conn {
            stream: w.stream,
            peer: w.peer,
            born: w.born,
            pending: w.request.into_pending(),
        };
        self.pool.dispatch(match verdict {
            Verdict::Answer(head) => Job::Answer(conn, head),
            Verdict::Refuse(reply, head_only) => Job::Refuse(conn, reply, head_only),
        });
    }

    /// Closes the connections whose request has not come in time: an idle keep-alive
    /// connection, or a slow or stalled one. (Lifetimes are ended by the workers, with a
    /// `Connection: close` answer: closing an idle connection at an arbitrary moment would
    /// race with the request its client may be sending.)
    fn expire(&mut self, now: Instant) {
        for i in (0..self.table.waiting.len()).rev() {
            if now >= self.table.waiting[i].since + READ_TIMEOUT {
                self.table.close(i);
            }
        }
    }

    fn drain_wake(&mut self) {
        let mut buf = [0u8; 256];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Takes the workers' news: connections closed, or given back for their next request.
    fn take_back(&mut self) {
        while let Ok(back) = self.back.try_recv() {
            match back {
                Back::Closed(peer) => self.table.closed_by_worker(peer),
                Back::KeepAlive(conn) => {
                    let Conn {
                        stream,
                        peer,
                        born,
                        pending,
                    } = conn;
                    self.table.give_back(stream, peer, born, pending);
                    // A pipelined request may be there whole already: no read will come.
                    let i = self.table.waiting.len() - 1;
                    if let Some(verdict) = self.table.waiting[i].request.feed(&[], &self.policy) {
                        self.dispatch(i, verdict);
                    }
                }
            }
        }
    }

    fn accept_some(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient(&e) || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays queued.
                    self.report_failure(format_args!("cannot accept a connection: {e}; retrying"));
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        if let Err(why) = self.table.make_room(peer) {
            // Written once into an empty send buffer, never waited on.
            let _ = (&stream).write(&render(&Reply::error(503, why), false, false));
            return;
        }
        self.table.add(stream, peer, Instant::now());
        // Its request has most likely come with it: read it now, before the next arrivals.
        self.read(self.table.waiting.len() - 1);
    }

    fn report_failure(&mut self, what: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if (self.last_failure_report).is_none_or(|at| now >= at + FAILURE_REPORT_EVERY) {
            crate::warn!("control API: {what}");
            self.last_failure_report = Some(now);
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// A poll timeout that ends at `deadline` (rounded up to a whole millisecond, so that a wait
/// below one does not spin); none without a deadline.
fn timeout_until(deadline: Option<Instant>) -> PollTimeout {
    let Some(deadline) = deadline else {
        return PollTimeout::NONE;
    };
    let ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .saturating_add(1);
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}
