//! The workers: a small, bounded set of threads that answer complete requests.
//!
//! The poll loop hands each complete (or refused) request over with its connection. A worker
//! calls the handler, which may block (a restart answers once the handoff is decided),
//! writes the answer within `WRITE_TIMEOUT`, and gives the connection back to the poll loop
//! for its next request (keep-alive) or closes it, then tells the poll loop so and wakes it.
//!
//! Workers start on demand, up to `MAX_WORKERS`, and one that has had nothing to do for
//! `WORKER_IDLE_EXIT` ends (one always stays): a quiet supergo keeps one thread here. The
//! queue of jobs needs no bound of its own: each job holds a connection, and connections are
//! bounded by the connection budget (`table`).
//!
//! The worker owns the connection while it answers: a handler that must answer from
//! elsewhere (the new image of an upgrade in place) can later be given the stream to take;
//! the poll loop only needs to hear that the connection left.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::parse::Head;
use super::response::write_reply;
use super::{Handler, MAX_LIFETIME, WRITE_TIMEOUT};
use crate::reply::Reply;

/// At most this many requests are answered at once. A handler may wait on the core (a
/// restart waits for its handoff), so a few, not one; each is a thread, so not hundreds.
pub const MAX_WORKERS: usize = 16;
/// A worker with nothing to do for this long ends, unless it is the last one.
const WORKER_IDLE_EXIT: Duration = Duration::from_secs(60);
/// Answers are built and serialised on this stack (the status of every program as JSON).
const WORKER_STACK: usize = 256 * 1024;

/// A connection out of the poll loop, with what it sent past the current request.
#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// When it was accepted (its lifetime is capped).
    pub born: Instant,
    /// Bytes read past the current request: the start of a pipelined next one.
    pub pending: Vec<u8>,
}

/// What a worker is asked to do.
#[derive(Debug)]
pub enum Job {
    /// Answer a whole request.
    Answer(Conn, Head),
    /// Send this refusal and close. The bool: the request was HEAD (no body in the answer).
    Refuse(Conn, Reply, bool),
}

/// What became of a connection a worker had.
#[derive(Debug)]
pub enum Back {
    /// Answered and still open: wait for its next request.
    KeepAlive(Conn),
    /// Closed (answered with `Connection: close`, failed, or taken elsewhere).
    Closed(SocketAddr),
}

/// The workers' side of the handover.
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    jobs: Sender<Job>,
    queue: Receiver<Job>,
    handler: Arc<Handler>,
    back: Sender<Back>,
    /// Written to (one byte) after each `back` message: the poll loop polls its other end.
    waker: UnixStream,
    idle: AtomicUsize,
    alive: AtomicUsize,
}

impl Pool {
    /// Starts the first worker; the others start when needed.
    pub fn start(
        handler: Arc<Handler>,
        back: Sender<Back>,
        waker: UnixStream,
    ) -> std::io::Result<Pool> {
        let (jobs, queue) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            jobs,
            queue,
            handler,
            back,
            waker,
            idle: AtomicUsize::new(0),
            alive: AtomicUsize::new(0),
        });
        spawn_worker(&shared)?;
        Ok(Pool { shared })
    }

    /// Queues a job, and starts another worker when none is free and there is room.
    pub fn dispatch(&self, job: Job) {
        // Never fails: `shared` holds a receiver as long as the pool exists.
        let _ = self.shared.jobs.send(job);
        let shared = &self.shared;
        if shared.idle.load(Ordering::SeqCst) == 0
            && shared.alive.load(Ordering::SeqCst) < MAX_WORKERS
        {
            if let Err(e) = spawn_worker(shared) {
                // The job waits for a worker that is busy now: late, but answered.
                crate::warn!("control API: cannot start another worker thread: {e}");
            }
        }
    }
}

fn spawn_worker(shared: &Arc<Shared>) -> std::io::Result<()> {
    shared.alive.fetch_add(1, Ordering::SeqCst);
    let mine = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("control worker".into())
        .stack_size(WORKER_STACK)
        .spawn(move || work(&mine));
    if spawned.is_err() {
        shared.alive.fetch_sub(1, Ordering::SeqCst);
    }
    spawned.map(drop)
}

fn work(shared: &Shared) {
    loop {
        shared.idle.fetch_add(1, Ordering::SeqCst);
        let job = shared.queue.recv_timeout(WORKER_IDLE_EXIT);
        shared.idle.fetch_sub(1, Ordering::SeqCst);
        match job {
            Ok(job) => answer(shared, job),
            Err(RecvTimeoutError::Timeout) => {
                let leave = shared
                    .alive
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                        (n > 1).then(|| n - 1)
                    });
                if leave.is_ok() {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn answer(shared: &Shared, job: Job) {
    let (Job::Answer(Conn { peer, .. }, _) | Job::Refuse(Conn { peer, .. }, ..)) = &job;
    let settle = Settle::new(shared, *peer);
    let (conn, reply, keep_alive, head_only) = match job {
        Job::Refuse(conn, reply, head_only) => (conn, reply, false, head_only),
        Job::Answer(conn, head) => {
            let reply = (shared.handler)(&head.request, &conn.stream);
            if reply.taken {
                // The handler took the connection (a duplicate of it) to answer elsewhere:
                // this copy closes without a word, and the poll loop hears it left.
                return;
            }
            // Closed after any refusal or failure: a client answered 401 (or any 4xx) must
            // not keep its slot to try again on. And closed once old enough: no connection
            // lives forever, however busy.
            let keep_alive =
                head.keep_alive && reply.http < 400 && conn.born.elapsed() < MAX_LIFETIME;
            (conn, reply, keep_alive, head.head_only())
        }
    };
    let deadline = Instant::now() + WRITE_TIMEOUT;
    let written = write_reply(&conn.stream, &reply, keep_alive, head_only, deadline);
    reply.recycle();
    if written.is_ok() && keep_alive {
        settle.give_back(conn);
    }
    // Otherwise `conn` is dropped (closed) here, and `settle` says so.
}

/// Tells the poll loop what became of a connection, exactly once: `Closed` unless the
/// connection is given back, even when the handler panics.
struct Settle<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    armed: bool,
}

impl<'a> Settle<'a> {
    fn new(shared: &'a Shared, peer: SocketAddr) -> Settle<'a> {
        Settle {
            shared,
            peer,
            armed: true,
        }
    }

    fn give_back(mut self, conn: Conn) {
        self.armed = false;
        self.send(Back::KeepAlive(conn));
    }

    fn send(&self, back: Back) {
        let _ = self.shared.back.send(back);
        // Non-blocking: when the pipe is full, the poll loop has wake-ups pending already.
        let _ = (&self.shared.waker).write(&[1]);
    }
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.send(Back::Closed(self.peer));
        }
    }
}
