//! The one thread that reads every notify socket: it `poll`s them all (and a wake pipe for
//! new ones), and hands each readable socket to its `Reader`.
//!
//! Why one thread: a reader thread per `ready = "notify"` program cost a thread's stack
//! pages and bookkeeping (~10 KiB) per program, as much again as its worker. Notifications
//! are a few datagrams per process start, so one thread keeps up with every program.
//!
//! What stays as it was with a thread per socket:
//! - each socket's datagrams are read one after the other, in order, so `BARRIER=1` still
//!   means "every earlier datagram has been read and its sender identified";
//! - a socket is read without blocking, at most `PER_TURN` datagrams per turn, so a flood
//!   on one socket delays the others by a turn, never starves them;
//! - dropping a `NotifySocket` ends its reading: the drop's `shutdown(SHUT_RD)` makes the
//!   socket readable, the reader sees its `closing` flag and leaves the set (closing the fd
//!   when it holds the last reference), and the worker's channel disconnects.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd;

use super::datagram::Buffers;
use super::reader::{Reader, Turn};

/// Datagrams read from one socket before the others get their turn.
const PER_TURN: usize = 16;

/// The way to the thread: readers to add, and the write end of its wake pipe.
struct Poller {
    incoming: Mutex<Vec<Reader>>,
    /// O_NONBLOCK: a full pipe already holds a wake-up.
    wake: OwnedFd,
}

/// Set once the thread runs. A start that failed (no thread could be made just then) is
/// not kept: the next program's socket tries again, as each socket's own thread used to.
static POLLER: OnceLock<Poller> = OnceLock::new();
/// Held while the thread is being started, so that only one is.
static STARTING: Mutex<()> = Mutex::new(());

/// Starts reading `reader`'s socket (the thread starts with the first one).
pub(super) fn watch(reader: Reader) -> Result<(), String> {
    let poller = poller()?;
    poller
        .incoming
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(reader);
    // EAGAIN (full pipe) is fine: a wake-up is pending already.
    let _ = unistd::write(&poller.wake, &[1]);
    Ok(())
}

/// The running thread's way in, starting it if needed.
fn poller() -> Result<&'static Poller, String> {
    if let Some(poller) = POLLER.get() {
        return Ok(poller);
    }
    let _one = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(poller) = POLLER.get() {
        return Ok(poller);
    }
    let poller = start()?;
    Ok(POLLER.get_or_init(|| poller))
}

fn start() -> Result<Poller, String> {
    // CLOEXEC in the same call, so no child spawned meanwhile inherits either end.
    let (read, write) = unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| format!("cannot create the notify reader's wake pipe: {}", e.desc()))?;
    std::thread::Builder::new()
        .name("notify".into())
        .stack_size(64 * 1024)
        .spawn(move || run(read))
        .map_err(|e| format!("cannot start the notify reader thread: {e}"))?;
    Ok(Poller {
        incoming: Mutex::new(Vec::new()),
        wake: write,
    })
}

fn run(wake: OwnedFd) {
    let mut readers: Vec<Reader> = Vec::new();
    let mut buffers = Buffers::new();
    let mut ready: Vec<bool> = Vec::new();
    loop {
        // None only on the first turn, which may run before `start` returned: `watch` wakes
        // the thread after each reader it adds, so none waits for a later turn.
        if let Some(poller) = POLLER.get() {
            readers.append(&mut poller.incoming.lock().unwrap_or_else(|p| p.into_inner()));
        }
        {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(readers.len() + 1);
            fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
            fds.extend(
                readers
                    .iter()
                    .map(|r| PollFd::new(r.socket().as_fd(), PollFlags::POLLIN)),
            );
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                // EINVAL (more fds than RLIMIT_NOFILE) or ENOMEM: nothing sensible to wait
                // on; try again shortly rather than spin.
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
            ready.clear();
            ready.extend(
                fds.iter()
                    .map(|fd| fd.revents().is_some_and(|r| !r.is_empty())),
            );
        }
        if ready.first() == Some(&true) {
            let mut sink = [0u8; 64];
            while matches!(unistd::read(&wake, &mut sink), Ok(n) if n > 0) {}
        }
        let mut index = 0;
        readers.retain_mut(|reader| {
            index += 1;
            !ready.get(index).copied().unwrap_or(false)
                || reader.read(&mut buffers, PER_TURN) == Turn::Keep
        });
    }
}
