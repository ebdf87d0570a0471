//! The control API's side of an upgrade in place: the server's handle (`Server`), which
//! pauses accepting and says when no request is being answered any more, and the answer to
//! a connection a handler took (`answer_taken`), which the new image writes.
//!
//! While paused, the listening socket stays open and connections queue in its backlog (the
//! kernel completes their handshakes: a client is never refused), the requests already read
//! are answered, and connections idle between two keep-alive requests are closed (a client
//! opens a new one, which waits in the backlog). Once no connection is left, `pause`'s
//! receiver hears it. The listener itself travels to the new image, which accepts what
//! queued meanwhile.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::response::{render, write_by};
use super::WRITE_TIMEOUT;
use crate::reply::Reply;

/// What the handle and the poll loop share.
#[derive(Default)]
pub(super) struct Gate {
    paused: AtomicBool,
    quiet: Mutex<Option<Sender<()>>>,
}

impl Gate {
    pub(super) fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// The poll loop has no connection left: tell whoever paused it (once).
    pub(super) fn now_quiet(&self) {
        let waiting = self.quiet.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tx) = waiting {
            let _ = tx.send(());
        }
    }
}

/// A running control API server.
pub struct Server {
    pub(super) gate: Arc<Gate>,
    /// Wakes the poll loop (a write end of its doorbell).
    pub(super) wake: UnixStream,
    /// The listening socket (a duplicate of the poll loop's: the same socket).
    pub(super) listener: TcpListener,
}

impl Server {
    /// Stops accepting; the receiver hears once no request is being read or answered.
    pub fn pause(&self) -> Receiver<()> {
        let (tx, rx) = bounded(1);
        *self.gate.quiet.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        self.gate.paused.store(true, Ordering::SeqCst);
        let _ = (&self.wake).write(&[1]);
        rx
    }

    /// Accepts again (the upgrade did not happen).
    pub fn resume(&self) {
        self.gate
            .quiet
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.gate.paused.store(false, Ordering::SeqCst);
        let _ = (&self.wake).write(&[1]);
    }

    /// The listening socket, to hand over.
    pub fn listener(&self) -> &TcpListener {
        &self.listener
    }
}

/// Answers, and closes, a connection that a handler took out of the server (the request
/// for an upgrade in place, answered by the new image).
pub fn answer_taken(stream: &TcpStream, reply: &Reply) -> std::io::Result<()> {
    let bytes = render(reply, false, false);
    write_by(stream, &bytes, Instant::now() + WRITE_TIMEOUT)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}
