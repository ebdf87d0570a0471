//! A small HTTP/1.1 server for the control API: bounded in every dimension, and not
//! deniable by slow or idle clients.
//!
//! Why not `tiny_http`: in 0.12 a request line with `HTTP/2.0` deadlocks the connection's
//! thread forever, and it has no read timeout, so idle or half-sent requests each hold a
//! thread and fds until the client leaves. The control API needs little of HTTP (no bodies,
//! no chunking, small heads), so a server that does exactly that, with hard limits, is safer.
//!
//! Shape (one job per module):
//! - `poll_loop`: ONE thread accepts and reads every request with one `poll`: an idle or
//!   half-sent connection costs no thread, so a thousand slow clients cannot use up threads;
//! - `table`: the connection budget, `MAX_CONNECTIONS` in all and `MAX_PER_PEER` per client
//!   address. When it is full, the connection that has waited longest for its request is
//!   dropped to make room, so a client that sends a whole request is always read and
//!   answered, whatever a flood of slow connections does;
//! - `assemble` and `parse`: a request from its bytes, strictly (one unsigned
//!   `Content-Length`, no `Transfer-Encoding`);
//! - `origin`: local clients only; a web page's request (cross-site, or DNS rebinding) is
//!   refused with 403;
//! - `workers`: up to `workers::MAX_WORKERS` threads call the handler and write answers;
//! - `response`: the answer on the wire;
//! - `gate`: pausing for an upgrade in place, and answering a connection a handler took.
//!
//! Limits: a request head of at most `MAX_HEAD` bytes and a body of at most `MAX_BODY`
//! bytes (read and dropped) must arrive within `READ_TIMEOUT` of when the server begins
//! waiting for it (so an idle keep-alive connection closes after it too); an answer must be
//! written within `WRITE_TIMEOUT`; a connection is closed after any 4xx or 5xx answer, and
//! its first answer after `MAX_LIFETIME` closes it (so it lives at most that, plus one
//! request's read, answer and write). Anything malformed gets a 4xx answer and the connection is
//! closed.
//!
//! The listener comes in already bound (so it can be one handed over across an exec), and
//! only its non-blocking and defer-accept flags are set here.

mod assemble;
mod gate;
mod origin;
mod parse;
mod poll_loop;
mod response;
mod table;
mod workers;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

pub use gate::{answer_taken, Server};
pub use origin::LocalOnly;

use crate::reply::Reply;

/// Connections held at once, in all. Each costs an fd (supergo shares its fd limit with the
/// listeners and pipes of every program) and at most `MAX_HEAD` bytes of buffer.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections one client address may hold at once: one remote host cannot take the whole
/// budget. (All local clients share 127.0.0.1; for them, the eviction keeps things fair.)
pub const MAX_PER_PEER: usize = 128;
/// The largest request head taken; the control API's are a few hundred bytes.
pub const MAX_HEAD: usize = 16 * 1024;
/// The largest request body taken (and dropped: the control API uses none).
pub const MAX_BODY: u64 = 64 * 1024;
/// A whole request must arrive within this of when the server began waiting for it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole answer must be written within this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection is kept longer, however busy: the first answer after it says
/// `Connection: close`. (An idle connection is closed after `READ_TIMEOUT` anyway.)
pub const MAX_LIFETIME: Duration = Duration::from_secs(30);
/// Stack of the poll loop thread (it parses heads and builds short refusals).
const POLL_STACK: usize = 256 * 1024;

/// One parsed request: what the router needs.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body (at most `MAX_BODY` bytes; `POST /upgrade` may name its binary there).
    pub body: Vec<u8>,
}

/// Answers a request. Called on a worker thread; may block (a restart waits for its
/// handoff), which holds up that worker only. It sees the connection, so that it can take a
/// duplicate of it and answer `Reply::taken` (the upgrade in place: the new image answers).
pub type Handler = dyn Fn(&Request, &TcpStream) -> Reply + Send + Sync;

/// Serves the control API on `listener` (already bound and listening) until the process
/// exits: starts the poll loop thread and the first worker. `local` says which requests come
/// from local clients. An error when a thread cannot be started.
pub fn serve(listener: TcpListener, local: LocalOnly, handler: Arc<Handler>) -> io::Result<Server> {
    listener.set_nonblocking(true)?;
    defer_accept_until_data(&listener);
    // The workers' "I have news" doorbell for the poll loop; both ends CLOEXEC (std).
    let (wake_rx, wake_tx) = UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    wake_tx.set_nonblocking(true)?;
    let server = Server {
        gate: Arc::default(),
        wake: wake_tx.try_clone()?,
        listener: listener.try_clone()?,
    };
    let (back_tx, back_rx) = crossbeam_channel::unbounded();
    let pool = workers::Pool::start(handler, back_tx, wake_tx)?;
    let reader =
        poll_loop::Reader::new(listener, local, pool, back_rx, wake_rx, server.gate.clone());
    std::thread::Builder::new()
        .name("control poll".into())
        .stack_size(POLL_STACK)
        .spawn(move || reader.run())?;
    Ok(server)
}

/// Asks the kernel to queue a connection for `accept` only once its first data has come
/// (TCP_DEFER_ACCEPT, Linux): a client that connects and sends nothing never takes a place
/// in the budget, and one that sends its request at once is read whole the moment it is
/// accepted. An optimisation and a first line of defence only: without it (an error here),
/// the budget still holds.
fn defer_accept_until_data(listener: &TcpListener) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use nix::libc;
        use std::os::fd::AsRawFd;
        // Seconds the kernel holds a silent connection back; later it queues it anyway.
        let secs = libc::c_int::try_from(READ_TIMEOUT.as_secs()).unwrap_or(libc::c_int::MAX);
        // nix has no TCP_DEFER_ACCEPT option, hence libc.
        // SAFETY: `secs` is a valid c_int that outlives the call, and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                std::ptr::from_ref(&secs).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            crate::warn!(
                "control API: cannot set TCP_DEFER_ACCEPT on its listener ({}); serving without it",
                io::Error::last_os_error()
            );
        }
    }
}
