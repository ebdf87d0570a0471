//! Receiving one datagram and everything the kernel attached to it.
//!
//! Every fd that arrives in a control message (`SCM_RIGHTS`, `SCM_PIDFD`) is turned into an
//! `OwnedFd` at once, so it is closed whatever happens next. The control buffer has room for
//! the credentials, the most fds one datagram can carry (`SCM_MAX_FD`, 253) and the pidfd,
//! so no sender can make the kernel cut the part supergo needs. Should a control message be
//! truncated anyway (`MSG_CTRUNC`), the fds it did deliver are still found and closed: the
//! kernel installs only those that fit, and writes exactly that many into the message.
//!
//! Why `libc::recvmsg` and not nix's: nix refuses to walk the control messages of a
//! truncated `recvmsg` (`cmsgs()` fails with ENOBUFS), which leaves the fds the kernel did
//! install open in supergo, one leak per datagram.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::libc;
use nix::unistd::Pid;

use super::sender::SCM_PIDFD;

/// Largest datagram read; systemd reads at most this much too, and a READY line is tiny.
pub(super) const MAX_DATAGRAM: usize = 4096;

/// The most fds the kernel passes in one datagram (`SCM_MAX_FD`, include/net/scm.h).
const SCM_MAX_FD: usize = 253;

/// One datagram as received.
pub(super) struct Datagram {
    /// Its bytes (at most `MAX_DATAGRAM`).
    pub bytes: Vec<u8>,
    /// It was longer than `MAX_DATAGRAM` and was cut (`MSG_TRUNC`).
    pub cut: bool,
    /// The sender's pid (`SCM_CREDENTIALS`).
    pub pid: Option<Pid>,
    /// A pidfd of the sender (`SCM_PIDFD`, Linux 6.5+).
    pub pidfd: Option<OwnedFd>,
    /// Fds the sender attached (`SCM_RIGHTS`); closed when dropped.
    pub fds: Vec<OwnedFd>,
    /// The control data did not fit (`MSG_CTRUNC`): the kernel dropped what did not fit.
    pub control_cut: bool,
}

/// The buffers one reader reuses for every datagram.
pub(super) struct Buffers {
    payload: Vec<u8>,
    /// `u64`s so that the `cmsghdr`s written into it are aligned.
    control: Vec<u64>,
}

impl Buffers {
    pub(super) fn new() -> Buffers {
        Buffers {
            payload: vec![0; MAX_DATAGRAM],
            control: vec![0; control_space().div_ceil(8)],
        }
    }
}

/// Bytes of control data one datagram can bring: credentials, `SCM_MAX_FD` fds, a pidfd.
fn control_space() -> usize {
    let space = |len: usize| {
        // SAFETY: CMSG_SPACE is arithmetic on its argument only.
        unsafe { libc::CMSG_SPACE(len as libc::c_uint) as usize }
    };
    space(std::mem::size_of::<libc::ucred>())
        + space(SCM_MAX_FD * std::mem::size_of::<RawFd>())
        + space(std::mem::size_of::<RawFd>())
}

/// Waits for the next datagram on `socket`.
pub(super) fn receive(socket: &OwnedFd, buffers: &mut Buffers) -> Result<Datagram, Errno> {
    let mut iov = libc::iovec {
        iov_base: buffers.payload.as_mut_ptr().cast(),
        iov_len: buffers.payload.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no iov, no control); filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = buffers.control.as_mut_ptr().cast();
    msg.msg_controllen = (buffers.control.len() * 8) as _;
    // MSG_CMSG_CLOEXEC: the fds the kernel installs are close-on-exec from the start, so a
    // child spawned by another thread meanwhile never inherits them. MSG_DONTWAIT: one
    // thread reads every socket (`poller`), and must never wait on one of them.
    let flags = libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT;
    // SAFETY: msg points at buffers that live (and are not otherwise borrowed) for the call.
    let received = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, flags) };
    if received < 0 {
        return Err(Errno::last());
    }
    let mut datagram = Datagram {
        bytes: buffers.payload[..received as usize].to_vec(),
        cut: msg.msg_flags & libc::MSG_TRUNC != 0,
        pid: None,
        pidfd: None,
        fds: Vec::new(),
        control_cut: msg.msg_flags & libc::MSG_CTRUNC != 0,
    };
    // SAFETY: the kernel wrote msg_controllen bytes of well-formed control messages into the
    // buffer msg_control points to; each one is read within those bytes.
    unsafe { take_control_messages(&msg, &mut datagram) };
    Ok(datagram)
}

/// Moves what the control messages of `msg` hold into `datagram`: every fd becomes an
/// `OwnedFd` before anything else can fail.
///
/// # Safety
/// `msg` must be the header of a successful `recvmsg` whose control buffer is still alive.
unsafe fn take_control_messages(msg: &libc::msghdr, datagram: &mut Datagram) {
    let start = msg.msg_control as usize;
    // msg_controllen is a usize with glibc and a u32 with musl.
    #[allow(clippy::unnecessary_cast)]
    let end = start + msg.msg_controllen as usize;
    let header = std::mem::size_of::<libc::cmsghdr>();
    let mut cmsg = libc::CMSG_FIRSTHDR(msg);
    while !cmsg.is_null() {
        let at = cmsg as usize;
        if at >= end {
            break;
        }
        let data = libc::CMSG_DATA(cmsg) as usize;
        // A truncated message's length may claim more than was written: read only what is
        // inside the buffer.
        let claimed = (*cmsg).cmsg_len as usize;
        let len = claimed.min(end - at).saturating_sub(data - at);
        if claimed < header {
            break;
        }
        let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
        let ints = len / std::mem::size_of::<RawFd>();
        let int_at = |i: usize| (data as *const RawFd).add(i).read_unaligned();
        match (level, kind) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                for i in 0..ints {
                    let fd = int_at(i);
                    if fd >= 0 {
                        // SAFETY: the kernel just installed this fd in supergo for this
                        // datagram; nothing else refers to it.
                        datagram.fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
            }
            (libc::SOL_SOCKET, SCM_PIDFD) if ints >= 1 => {
                // A negative value is the kernel saying it could not make one.
                let fd = int_at(0);
                if fd >= 0 {
                    // SAFETY: as above; a later pidfd (there is never more than one)
                    // replaces and closes the earlier.
                    datagram.pidfd = Some(OwnedFd::from_raw_fd(fd));
                }
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS)
                if len >= std::mem::size_of::<libc::ucred>() =>
            {
                let cred = (data as *const libc::ucred).read_unaligned();
                datagram.pid = Some(Pid::from_raw(cred.pid));
            }
            _ => {}
        }
        cmsg = libc::CMSG_NXTHDR(msg, cmsg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{
        sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage, MsgFlags,
        SockFlag, SockType, UnixAddr,
    };
    use std::io::IoSlice;

    fn pair() -> (OwnedFd, OwnedFd) {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        setsockopt(&b, sockopt::PassCred, &true).expect("SO_PASSCRED");
        (a, b)
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .expect("list fds")
            .count()
    }

    #[test]
    fn receives_bytes_credentials_and_the_attached_fds() {
        let (a, b) = pair();
        let passed: Vec<RawFd> = vec![a.as_raw_fd(); 3];
        sendmsg::<UnixAddr>(
            a.as_raw_fd(),
            &[IoSlice::new(b"READY=1")],
            &[ControlMessage::ScmRights(&passed)],
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        let mut buffers = Buffers::new();
        let datagram = receive(&b, &mut buffers).expect("receive");
        assert_eq!(datagram.bytes, b"READY=1");
        assert_eq!(datagram.pid, Some(nix::unistd::getpid()));
        assert_eq!(datagram.fds.len(), 3);
        assert!(!datagram.cut && !datagram.control_cut);
    }

    #[test]
    fn the_most_fds_a_datagram_can_carry_all_arrive_and_are_closed() {
        let (a, b) = pair();
        let passed: Vec<RawFd> = vec![a.as_raw_fd(); SCM_MAX_FD];
        sendmsg::<UnixAddr>(
            a.as_raw_fd(),
            &[IoSlice::new(b"X=1")],
            &[ControlMessage::ScmRights(&passed)],
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        let before = open_fds();
        let mut buffers = Buffers::new();
        let datagram = receive(&b, &mut buffers).expect("receive");
        assert!(
            !datagram.control_cut,
            "the control buffer holds SCM_MAX_FD fds"
        );
        assert_eq!(datagram.fds.len(), SCM_MAX_FD);
        assert!(datagram.pid.is_some(), "the credentials are never cut off");
        drop(datagram);
        // Other tests run in parallel and open fds too: allow a little.
        assert!(open_fds() < before + 16, "the passed fds were closed");
    }
}
