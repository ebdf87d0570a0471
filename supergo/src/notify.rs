//! `ready = "notify"`: the `NOTIFY_SOCKET` of a program (systemd's `sd_notify` protocol).
//!
//! Each program that asks for it gets one unix datagram socket in the abstract namespace
//! (`@supergo/<supergo pid>/<program>/<n>`: no file to clean up, no directory permissions to
//! get wrong for a child running as another user). A reader thread receives each datagram
//! with `SCM_CREDENTIALS`, so the worker learns the *kernel-verified* pid of the sender and
//! its process group: a datagram from an old generation, or from any process outside the
//! new generation's group, can never make the new one ready.
//!
//! A datagram holds newline-separated `KEY=VALUE` lines; supergo acts on `READY=1`,
//! `STATUS=…` and `STOPPING=1` and ignores the rest (`MAINPID=`, `WATCHDOG=`, …), so
//! children that send several keys in one datagram (gunicorn does) work.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver};
use nix::errno::Errno;
use nix::sys::socket::{
    bind, recvmsg, sendto, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned,
    MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::unistd::{getpgid, getpid, Pid};

/// Largest datagram read; systemd accepts up to the socket buffer, but a READY line is tiny.
const MAX_DATAGRAM: usize = 4096;

/// Sent by supergo to its own socket to end the reader thread.
const CLOSE_MESSAGE: &[u8] = b"SUPERGO_CLOSE=1";

/// What one datagram said, and who sent it.
#[derive(Clone, Debug)]
pub struct Notification {
    pub pid: Pid,
    /// The sender's process group, read when the datagram arrived.
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

    fn parse(pid: Pid, text: &str) -> Notification {
        let mut note = Notification {
            pid,
            pgid: getpgid(Some(pid)).ok(),
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

/// A program's notify socket and its reader thread.
pub struct NotifySocket {
    path: PathBuf,
    socket: Arc<OwnedFd>,
    receiver: Receiver<Notification>,
}

impl NotifySocket {
    pub fn bind(program: &str) -> Result<NotifySocket, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("supergo/{}/{program}/{n}", getpid());
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| e.desc().to_string())?;
        let addr = UnixAddr::new_abstract(name.as_bytes()).map_err(|e| e.desc().to_string())?;
        bind(fd.as_raw_fd(), &addr).map_err(|e| e.desc().to_string())?;
        // SO_PASSCRED: the kernel attaches the sender's real pid/uid/gid to each datagram.
        setsockopt(&fd, sockopt::PassCred, &true).map_err(|e| e.desc().to_string())?;
        let socket = Arc::new(fd);
        let (tx, receiver) = unbounded();
        let reader_socket = socket.clone();
        std::thread::Builder::new()
            .name(format!("notify {program}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                while let Some(note) = receive(&reader_socket) {
                    if tx.send(note).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start its reader thread: {e}"))?;
        Ok(NotifySocket {
            path: PathBuf::from(format!("@{name}")),
            socket,
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
        // Wake the reader thread with a datagram from supergo itself, which it takes as
        // the signal to end (closing the fd under a blocked recvmsg would not wake it).
        let name = self.path.to_string_lossy();
        if let Ok(addr) = UnixAddr::new_abstract(name.trim_start_matches('@').as_bytes()) {
            if let Ok(fd) = socket(
                AddressFamily::Unix,
                SockType::Datagram,
                SockFlag::SOCK_CLOEXEC,
                None,
            ) {
                let _ = sendto(fd.as_raw_fd(), CLOSE_MESSAGE, &addr, MsgFlags::empty());
            }
        }
        let _ = &self.socket;
    }
}

/// Reads datagrams until one that counts; `None` ends the reader (supergo closed the
/// socket). Anyone on the machine can send to an abstract socket, so nothing a sender does
/// (fds attached, a truncated control message, garbage) may end the reader: such datagrams
/// are dropped and the next one is read.
fn receive(fd: &OwnedFd) -> Option<Notification> {
    let mut buf = [0u8; MAX_DATAGRAM];
    loop {
        // Room for the credentials and for fds a sender may attach (FDSTORE=1), so that the
        // credentials are never the part cut off.
        let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials, [RawFd; 64]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(Errno::EBADF | Errno::ENOTSOCK) => return None,
            // EINTR, ENOBUFS, ENOMEM: try the next datagram.
            Err(_) => continue,
        };
        let len = msg.bytes;
        let mut pid = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::ScmCredentials(cred) => {
                        pid = Some(Pid::from_raw(cred.pid()))
                    }
                    // supergo keeps no fd store: close what was passed.
                    ControlMessageOwned::ScmRights(fds) => {
                        for passed in fds {
                            // SAFETY: the kernel just installed these fds in this process
                            // for us; nothing else refers to them.
                            drop(unsafe { OwnedFd::from_raw_fd(passed) });
                        }
                    }
                    _ => {}
                }
            }
        }
        let Some(pid) = pid else { continue };
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if pid == getpid() && text.as_bytes() == CLOSE_MESSAGE {
            return None;
        }
        return Some(Notification::parse(pid, &text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_several_keys_in_one_datagram() {
        let note = Notification::parse(getpid(), "READY=1\nSTATUS=serving 4 workers\nMAINPID=1\n");
        assert!(note.ready);
        assert!(!note.stopping);
        assert_eq!(note.status.as_deref(), Some("serving 4 workers"));
    }

    #[test]
    fn receives_with_the_senders_pid() {
        let notify = NotifySocket::bind("unit-test").expect("bind a notify socket");
        let name = notify
            .path()
            .to_string_lossy()
            .trim_start_matches('@')
            .to_string();
        let addr = UnixAddr::new_abstract(name.as_bytes()).expect("abstract address");
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("client socket");
        sendto(fd.as_raw_fd(), b"READY=1", &addr, MsgFlags::empty()).expect("send");
        let note = notify
            .receiver()
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("a notification");
        assert_eq!(note.pid, getpid());
        assert!(note.ready);
    }
}
