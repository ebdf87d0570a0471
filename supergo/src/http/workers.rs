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
//! Every queued job has a free worker of its own unless all `MAX_WORKERS` are busy: `free`
//! counts the waiting workers no queued job has claimed yet, and `dispatch` claims one (or
//! starts one) for each job. Counting the workers that *are* waiting is not enough: a worker
//! counted as waiting may be about to take the job queued just before, so the next job would
//! queue behind a handler that blocks (an `update` that waits for a removed program to
//! drain), and a `GET /status` sent meanwhile would wait that long too.
//!
//! The worker owns the connection while it answers: a handler that must answer from
//! elsewhere (the new image of an upgrade in place) can later be given the stream to take;
//! the poll loop only needs to hear that the connection left.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
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
    /// Workers waiting for a job, less the queued jobs that have claimed one of them;
    /// negative when jobs wait for a busy worker (all `MAX_WORKERS` busy, or a thread
    /// could not be started). Always: workers waiting = `free` + jobs queued.
    free: AtomicIsize,
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
            free: AtomicIsize::new(0),
            alive: AtomicUsize::new(0),
        });
        spawn_worker(&shared)?;
        Ok(Pool { shared })
    }

    /// Queues a job for a free worker, or starts one for it when none is free and there is
    /// room.
    pub fn dispatch(&self, job: Job) {
        let shared = &self.shared;
        // Never fails: `shared` holds a receiver as long as the pool exists.
        let _ = shared.jobs.send(job);
        // Claim a free worker; when there was none, the job is now one a new worker takes.
        if shared.free.fetch_sub(1, Ordering::SeqCst) > 0 {
            return;
        }
        if shared.alive.load(Ordering::SeqCst) < MAX_WORKERS {
            if let Err(e) = spawn_worker(shared) {
                // The job waits for a worker that is busy now: late, but answered.
                crate::warn!("control API: cannot start another worker thread: {e}");
            }
        }
    }
}

/// Starts a worker, counted as free: it takes the job that had no worker, if there is one.
fn spawn_worker(shared: &Arc<Shared>) -> std::io::Result<()> {
    shared.alive.fetch_add(1, Ordering::SeqCst);
    shared.free.fetch_add(1, Ordering::SeqCst);
    let mine = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("control worker".into())
        .stack_size(WORKER_STACK)
        .spawn(move || work(&mine));
    if spawned.is_err() {
        shared.free.fetch_sub(1, Ordering::SeqCst);
        shared.alive.fetch_sub(1, Ordering::SeqCst);
    }
    spawned.map(drop)
}

fn work(shared: &Shared) {
    loop {
        match shared.queue.recv_timeout(WORKER_IDLE_EXIT) {
            Ok(job) => {
                answer(shared, job);
                // Free again (or, when `free` was negative, the taker of a job that waited).
                shared.free.fetch_add(1, Ordering::SeqCst);
            }
            Err(RecvTimeoutError::Timeout) => {
                // Leave only as a free worker no job has claimed (one that a job claimed
                // meanwhile takes it on the next turn), and never as the last one.
                let unclaimed = shared
                    .free
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                        (n > 0).then(|| n - 1)
                    });
                if unclaimed.is_err() {
                    continue;
                }
                let leave = shared
                    .alive
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                        (n > 1).then(|| n - 1)
                    });
                if leave.is_ok() {
                    return;
                }
                shared.free.fetch_add(1, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::parse_head;
    use std::io::Read;
    use std::net::TcpListener;

    /// A job for `target` on a real connection, and the client's end to read the answer on.
    fn job(target: &str) -> (Job, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
        let client =
            TcpStream::connect(listener.local_addr().expect("its address")).expect("connect to it");
        let (stream, peer) = listener.accept().expect("accept the connection");
        let head =
            parse_head(format!("GET {target} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes())
                .unwrap_or_else(|reply| panic!("a request head: {}", reply.message));
        let conn = Conn {
            stream,
            peer,
            born: Instant::now(),
            pending: Vec::new(),
        };
        (Job::Answer(conn, head), client)
    }

    /// The whole answer on `client` (closed after it), or what went wrong.
    fn answered(mut client: TcpStream) -> String {
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        let mut answer = String::new();
        match client.read_to_string(&mut answer) {
            Ok(_) => answer,
            Err(e) => format!("no answer: {e} (got {answer:?})"),
        }
    }

    /// Two jobs dispatched back to back to a pool whose one worker waits: the second gets a
    /// worker of its own while the first one's handler blocks. (Counting waiting workers
    /// left it queued behind the first whenever the worker had not yet woken for it.)
    #[test]
    fn a_job_behind_a_blocking_one_is_answered_at_once() {
        for _ in 0..5 {
            let (release, released) = crossbeam_channel::bounded::<()>(0);
            let handler: Arc<Handler> = Arc::new(move |request, _| {
                if request.target == "/block" {
                    let _ = released.recv();
                }
                Reply::ok("answered", serde_json::Value::Null)
            });
            let (back, _back) = crossbeam_channel::unbounded();
            let (waker, _woken) = UnixStream::pair().expect("a socket pair");
            waker.set_nonblocking(true).expect("non-blocking");
            let pool = Pool::start(handler, back, waker).expect("the pool starts");
            // One job first, so that the one worker is surely waiting for the next.
            let (warm_up, client) = job("/quick");
            pool.dispatch(warm_up);
            assert!(answered(client).starts_with("HTTP/1.1 200"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while pool.shared.free.load(Ordering::SeqCst) != 1 {
                assert!(Instant::now() < deadline, "the worker never waited again");
                std::thread::yield_now();
            }
            let (blocking, _blocked) = job("/block");
            let (quick, client) = job("/quick");
            pool.dispatch(blocking);
            pool.dispatch(quick);
            let answer = answered(client);
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "the second job answered while the first blocks: {answer:?}"
            );
            release.send(()).expect("the blocked handler is waiting");
        }
    }
}
