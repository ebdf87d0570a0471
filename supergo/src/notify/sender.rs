//! Who sent a datagram: its pid, and its process group while that pid provably was its own.
//!
//! `SCM_CREDENTIALS` names the sender's pid as it was at send time. The process group has
//! to be looked up (`getpgid`), and by then the sender may have exited, been reaped, and its
//! pid been given to an unrelated process, whose group would be taken for the sender's.
//! Since Linux 6.5 the kernel can attach a pidfd of the sender (`SO_PASSPIDFD`, delivered as
//! `SCM_PIDFD`): a pidfd refers to one process, never to a later holder of the same pid. So
//! supergo looks the group up first and then asks the pidfd whether its process still exists
//! (a zombie counts: its pid is not free until it is reaped). If it does, the pid was the
//! sender's the whole time and the group is the sender's group. If it does not, the
//! datagram is from a process that is gone, and nothing is inferred from its pid.
//!
//! Without pidfds (older kernels) the group is read right after the datagram arrives, which
//! leaves a small window in which a sender that exited and whose pid was reused at once could
//! be mistaken for the pid's new owner.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;
use nix::unistd::{getpgid, Pid};

/// `SO_PASSPIDFD` (Linux 6.5+); neither nix nor libc's glibc bindings name it yet.
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_PASSPIDFD: libc::c_int = 0x55;
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_PASSPIDFD: libc::c_int = 76;

/// The control message type of the pidfd (`include/linux/socket.h`, all architectures).
pub(super) const SCM_PIDFD: libc::c_int = 0x04;

/// The sender of one datagram, as established when it was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub pid: Pid,
    /// `None` when it could not be established (the sender is gone).
    pub pgid: Option<Pid>,
    /// The sender had exited and been reaped before supergo read the datagram.
    pub exited: bool,
}

/// Asks the kernel to attach a pidfd of the sender to every datagram; false when this kernel
/// cannot (before 6.5), in which case supergo does without (see the module docs).
pub(super) fn ask_for_pidfds(socket: &OwnedFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: a plain setsockopt on an fd we own, with a pointer to a live c_int and its
    // size. nix has no sockopt for SO_PASSPIDFD.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PASSPIDFD,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    done == 0
}

/// The identity of the process `pid` (from `SCM_CREDENTIALS`), checked against its pidfd
/// (from `SCM_PIDFD`) when the kernel gave one.
pub(super) fn identify(pid: Pid, pidfd: Option<&OwnedFd>) -> Identity {
    // First the look-up, then the check: a process that still exists after the look-up held
    // its pid during it.
    let pgid = getpgid(Some(pid));
    let exited = match pidfd {
        Some(pidfd) => !still_exists(pidfd),
        None => pgid == Err(Errno::ESRCH),
    };
    Identity {
        pid,
        pgid: if exited { None } else { pgid.ok() },
        exited,
    }
}

/// True unless the process behind `pidfd` has been reaped.
fn still_exists(pidfd: &OwnedFd) -> bool {
    // Signal 0 checks existence and sends nothing; a pidfd never reaches a later process
    // with the same pid. nix has no pidfd calls, hence libc::syscall.
    // SAFETY: pidfd is a live fd we own; a null siginfo and flags 0 are the documented
    // "like kill(2)" form.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    // EPERM: it exists but is not ours to signal (a child running as another user when
    // supergo is not root). Anything but ESRCH leaves the look-up standing.
    sent == 0 || Errno::last() != Errno::ESRCH
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::waitpid;
    use nix::unistd::{fork, getpgrp, getpid, ForkResult};
    use std::os::fd::FromRawFd;

    fn pidfd_open(pid: Pid) -> OwnedFd {
        // SAFETY: pidfd_open takes a pid and flags; the result is a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        assert!(fd >= 0, "pidfd_open({pid}): {}", Errno::last());
        // SAFETY: just created for us.
        unsafe { OwnedFd::from_raw_fd(fd as i32) }
    }

    #[test]
    fn a_live_sender_is_identified_with_its_group() {
        let me = getpid();
        let pidfd = pidfd_open(me);
        let identity = identify(me, Some(&pidfd));
        assert_eq!(
            identity,
            Identity {
                pid: me,
                pgid: Some(getpgrp()),
                exited: false
            }
        );
    }

    #[test]
    fn a_reaped_sender_is_never_given_the_group_of_its_pid() {
        // SAFETY: the child only calls _exit.
        let child = match unsafe { fork() }.expect("fork") {
            ForkResult::Child => unsafe { libc::_exit(0) },
            ForkResult::Parent { child } => child,
        };
        let pidfd = pidfd_open(child);
        waitpid(child, None).expect("reap the child");
        // Whatever holds that pid now (likely nothing, maybe another process), the pidfd
        // says the sender is gone: no group is inferred. Our own pid stands in for a
        // reused one: it exists and has a group, which must not be taken.
        let identity = identify(getpid(), Some(&pidfd));
        assert!(identity.exited, "{identity:?}");
        assert_eq!(identity.pgid, None);
    }
}
