//! `ready = "notify"`: the `NOTIFY_SOCKET` of a program (systemd's `sd_notify` protocol).
//!
//! Each program that asks for it gets one unix datagram socket in the abstract namespace: no
//! file to clean up, no directory permissions to get wrong for a child running as another
//! user. One thread reads every program's socket (`poller`); each socket's `reader` receives
//! each datagram, works out who sent it, and hands what it said to the program's worker as a
//! [`Notification`].
//!
//! A datagram holds newline-separated `KEY=VALUE` lines; supergo acts on `READY=1`,
//! `STATUS=…` and `STOPPING=1` and ignores the rest (`MAINPID=`, `WATCHDOG=`, …), so
//! children that send several keys in one datagram (gunicorn does) work.
//!
//! Anyone on the machine can send to an abstract socket (its name is listed in
//! /proc/net/unix), so everything here assumes a hostile sender:
//! - **The name** is chosen by the kernel (autobind: `bind` with an empty address picks a free
//!   abstract name), never derived from supergo's pid or the program, so nobody can bind the
//!   names supergo will use next and make every later program fail to start.
//! - **Who sent it** is the kernel's word, read when the datagram is received (`sender`):
//!   `SCM_CREDENTIALS` for the pid and, on Linux 6.5+, `SCM_PIDFD` for a pidfd of that same
//!   process, with which supergo checks that the pid still belonged to the sender when it
//!   looked up the sender's process group. A datagram from a process that has exited by then
//!   is ignored, and said so: its pid may already belong to someone else.
//! - **File descriptors** attached to a datagram are all closed (`datagram` reserves room for
//!   the most the kernel passes in one datagram and closes even what arrives in a truncated
//!   control message). supergo keeps no fd store (`FDSTORE=1` is not supported).
//! - **Floods** cannot fill supergo's log (every refusal is logged at most once per
//!   10 s, with a count of the ones not logged) nor its memory (the queue to the worker is
//!   bounded; see `reader`).
//!
//! `BARRIER=1` (`sd_notify_barrier`, used by `systemd-notify` unless `--no-block`): a datagram
//! of exactly that line carries one fd, the write end of a pipe; the sender waits until it is
//! closed. supergo closes it once every datagram received before it has been read and its
//! sender identified. That is what matters for the usual case, a short-lived helper in the
//! program's process group (`sh -c 'systemd-notify --ready; exec server'`): the helper stays
//! alive until supergo knows it belonged to the group. (systemd closes the fd once the
//! manager has acted on the earlier messages; supergo's worker acts on them just after, in
//! order. Holding the fd until then would let a flood of barriers pin fds in supergo.)
//! A helper that sends `READY=1` and exits without waiting may be gone before supergo reads
//! its datagram; no kernel interface tells the process group of a process that has been
//! reaped, so such a notification is ignored, with a log line that says how to fix the helper.

mod datagram;
mod poller;
mod reader;
mod sender;
mod throttle;

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver};
use nix::sys::socket::{
    bind, getsockname, setsockopt, shutdown, socket, sockopt, AddressFamily, Shutdown, SockFlag,
    SockType, UnixAddr,
};
use nix::unistd::Pid;

use reader::Reader;
use sender::Identity;

/// Notifications waiting for the worker at most; more are dropped (and logged). A program
/// sends a handful; only a flood, or a worker stuck for a long time, reaches this. Checked
/// by the reader (the only sender) on an unbounded channel: a bounded one allocates all its
/// slots up front, 14 KB per program that no one uses (14 MiB with 1000 programs).
const QUEUE_LIMIT: usize = 256;

/// What one datagram said, and who sent it.
#[derive(Clone, Debug)]
pub struct Notification {
    pub pid: Pid,
    /// The sender's process group, read when the datagram was received; with pidfds
    /// (Linux 6.5+) only while the sender provably still held its pid (see `sender`).
    pub pgid: Option<Pid>,
    pub ready: bool,
    pub stopping: bool,
    pub status: Option<String>,
}

impl Notification {
    /// True when it comes from the process `pid` or from a process in its group (its
    /// children, after `setsid` made `pid` the group leader).
    pub fn from_process(&self, pid: Pid) -> bool {
        self.pid == pid || self.pgid == Some(pid)
    }

    fn parse(sender: &Identity, text: &str) -> Notification {
        let mut note = Notification {
            pid: sender.pid,
            pgid: sender.pgid,
            ready: false,
            stopping: false,
            status: None,
        };
        for line in text.lines() {
            match line.split_once('=') {
                Some(("READY", "1")) => note.ready = true,
                Some(("STOPPING", "1")) => note.stopping = true,
                Some(("STATUS", value)) => note.status = Some(value.to_string()),
                _ => {}
            }
        }
        note
    }
}

/// A program's notify socket, read by the notify thread (`poller`).
pub struct NotifySocket {
    path: PathBuf,
    socket: Arc<OwnedFd>,
    /// Set when this socket is dropped: the reader's signal to end (see `Drop`).
    closing: Arc<AtomicBool>,
    receiver: Receiver<Notification>,
}

impl NotifySocket {
    /// A new socket for `program`, read from now on. Every error path closes the socket
    /// (it is an `OwnedFd` from the first line on).
    pub fn bind(program: &str) -> Result<NotifySocket, String> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("cannot create a unix datagram socket: {}", e.desc()))?;
        // Autobind: an address of the family alone makes the kernel pick a free abstract
        // name. A name supergo chose could be bound by someone else first.
        bind(fd.as_raw_fd(), &UnixAddr::new_unnamed())
            .map_err(|e| format!("cannot bind it to a free abstract name: {}", e.desc()))?;
        let name = getsockname::<UnixAddr>(fd.as_raw_fd())
            .map_err(|e| format!("cannot read the name the kernel gave it: {}", e.desc()))?
            .as_abstract()
            .map(<[u8]>::to_vec)
            .ok_or("the kernel gave it no abstract name")?;
        NotifySocket::serve(program, fd, name)
    }

    /// The socket of an upgrade in place, handed over by the image before: its reader starts
    /// again, and datagrams that waited in it during the exec are read now.
    pub fn adopt(program: &str, fd: OwnedFd) -> Result<NotifySocket, String> {
        let name = getsockname::<UnixAddr>(fd.as_raw_fd())
            .map_err(|e| format!("cannot read the name of its socket: {}", e.desc()))?
            .as_abstract()
            .map(<[u8]>::to_vec)
            .ok_or("its socket has no abstract name")?;
        NotifySocket::serve(program, fd, name)
    }

    /// The socket's fd (handed over by an upgrade in place).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self.socket.as_ref())
    }

    /// Asks for the senders' credentials and starts reading the bound socket `fd`.
    fn serve(program: &str, fd: OwnedFd, name: Vec<u8>) -> Result<NotifySocket, String> {
        // SO_PASSCRED: the kernel attaches the sender's real pid/uid/gid to each datagram.
        setsockopt(&fd, sockopt::PassCred, &true)
            .map_err(|e| format!("cannot ask for the senders' credentials: {}", e.desc()))?;
        let pidfds = sender::ask_for_pidfds(&fd);
        let socket = Arc::new(fd);
        let closing = Arc::new(AtomicBool::new(false));
        let (tx, receiver) = unbounded();
        let reader = Reader::new(program, socket.clone(), closing.clone(), tx, pidfds);
        poller::watch(reader)?;
        let mut path = b"@".to_vec();
        path.extend_from_slice(&name);
        Ok(NotifySocket {
            path: PathBuf::from(OsString::from_vec(path)),
            socket,
            closing,
            receiver,
        })
    }

    /// The value of `NOTIFY_SOCKET` (`@…`: abstract).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn receiver(&self) -> &Receiver<Notification> {
        &self.receiver
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        // Wake the reader and tell it to end. shutdown(SHUT_RD) makes the socket readable
        // for the notify thread's poll and every later recvmsg return at once, and every
        // later send fail with EPIPE; the flag tells the reader that the wake-up is the end,
        // which no sender can forge.
        // The fd itself is closed by whichever of the two lets go of it last, so the reader
        // never reads from a number that was closed and reused under it.
        self.closing.store(true, Ordering::SeqCst);
        let _ = shutdown(self.socket.as_raw_fd(), Shutdown::Read);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{sendto, MsgFlags};
    use nix::unistd::getpid;
    use std::time::Duration;

    fn send(notify: &NotifySocket, message: &[u8]) {
        let name = notify.path().to_string_lossy();
        let addr = UnixAddr::new_abstract(name.trim_start_matches('@').as_bytes())
            .expect("abstract address");
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("client socket");
        sendto(fd.as_raw_fd(), message, &addr, MsgFlags::empty()).expect("send");
    }

    #[test]
    fn parses_several_keys_in_one_datagram() {
        let me = Identity {
            pid: getpid(),
            pgid: None,
            exited: false,
        };
        let note = Notification::parse(&me, "READY=1\nSTATUS=serving 4 workers\nMAINPID=1\n");
        assert!(note.ready);
        assert!(!note.stopping);
        assert_eq!(note.status.as_deref(), Some("serving 4 workers"));
    }

    #[test]
    fn receives_with_the_senders_pid_and_group() {
        let notify = NotifySocket::bind("unit-test").expect("bind a notify socket");
        assert!(
            notify.path().to_string_lossy().starts_with('@'),
            "an abstract name: {}",
            notify.path().display()
        );
        send(&notify, b"READY=1");
        let note = notify
            .receiver()
            .recv_timeout(Duration::from_secs(5))
            .expect("a notification");
        assert_eq!(note.pid, getpid());
        assert_eq!(note.pgid, Some(nix::unistd::getpgrp()));
        assert!(note.ready);
    }

    #[test]
    fn every_socket_gets_a_name_of_its_own() {
        let a = NotifySocket::bind("same").expect("bind a notify socket");
        let b = NotifySocket::bind("same").expect("bind a notify socket");
        assert_ne!(a.path(), b.path());
    }

    /// Every socket is read (one thread polls them all), each in its own order.
    #[test]
    fn many_sockets_are_each_read() {
        let sockets: Vec<NotifySocket> = (0..20)
            .map(|i| NotifySocket::bind(&format!("many-{i}")).expect("bind a notify socket"))
            .collect();
        for (i, notify) in sockets.iter().enumerate() {
            send(notify, format!("STATUS=first {i}").as_bytes());
            send(notify, format!("STATUS=second {i}").as_bytes());
        }
        for (i, notify) in sockets.iter().enumerate().rev() {
            for which in ["first", "second"] {
                let note = notify
                    .receiver()
                    .recv_timeout(Duration::from_secs(5))
                    .expect("a notification");
                assert_eq!(note.status, Some(format!("{which} {i}")));
            }
        }
    }

    /// Sockets dropped among others leave the set without disturbing the rest: each
    /// remaining socket is still read, by its own reader (the poller pairs poll results and
    /// readers by position, and the dropped ones leave the middle of the list).
    #[test]
    fn dropping_some_sockets_leaves_the_others_read() {
        let mut sockets: Vec<Option<NotifySocket>> = (0..12)
            .map(|i| Some(NotifySocket::bind(&format!("mixed-{i}")).expect("bind a notify socket")))
            .collect();
        let mut dropped = Vec::new();
        for slot in sockets.iter_mut().skip(1).step_by(3) {
            let notify = slot.take().expect("not dropped yet");
            dropped.push(notify.receiver().clone());
        }
        for receiver in &dropped {
            match receiver.recv_timeout(Duration::from_secs(5)) {
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {}
                other => panic!("a dropped socket's reader should have ended, got {other:?}"),
            }
        }
        for (i, notify) in sockets.iter().enumerate() {
            if let Some(notify) = notify {
                send(notify, format!("STATUS=still {i}").as_bytes());
            }
        }
        for (i, notify) in sockets.iter().enumerate() {
            if let Some(notify) = notify {
                let note = notify
                    .receiver()
                    .recv_timeout(Duration::from_secs(5))
                    .expect("a notification");
                assert_eq!(note.status, Some(format!("still {i}")));
            }
        }
    }

    /// A flood stops at `QUEUE_LIMIT` notifications waiting for the worker; a barrier sent
    /// after it is released once every datagram before it has been read.
    #[test]
    fn a_flood_queues_at_most_the_limit() {
        use nix::sys::socket::{sendmsg, ControlMessage};
        use std::io::IoSlice;
        let notify = NotifySocket::bind("unit-test-flood").expect("bind a notify socket");
        for _ in 0..QUEUE_LIMIT + 20 {
            send(&notify, b"STATUS=flood");
        }
        let (barrier_read, barrier_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe");
        let name = notify.path().to_string_lossy();
        let addr = UnixAddr::new_abstract(name.trim_start_matches('@').as_bytes())
            .expect("abstract address");
        let client = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("client socket");
        let fds = [barrier_write.as_raw_fd()];
        sendmsg(
            client.as_raw_fd(),
            &[IoSlice::new(b"BARRIER=1")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            Some(&addr),
        )
        .expect("send the barrier");
        drop(barrier_write);
        // EOF once the reader has closed the barrier's fd: every datagram before it is read.
        let mut byte = [0u8; 1];
        assert_eq!(nix::unistd::read(&barrier_read, &mut byte), Ok(0));
        assert_eq!(notify.receiver().len(), QUEUE_LIMIT);
    }

    #[test]
    fn dropping_the_socket_ends_its_reader() {
        let notify = NotifySocket::bind("unit-test-drop").expect("bind a notify socket");
        let receiver = notify.receiver().clone();
        drop(notify);
        // The reader owns the only sender: the channel disconnects when the reader has ended.
        match receiver.recv_timeout(Duration::from_secs(5)) {
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {}
            other => panic!("the reader should have ended, got {other:?}"),
        }
    }
}
