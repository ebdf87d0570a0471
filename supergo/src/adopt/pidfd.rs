//! Pidfds: a handle on one process that a reused pid can never redirect. Adoption opens one
//! per recorded process, takes its listening sockets back through it (`pidfd_getfd`: the same
//! socket, so its accept queue is never interrupted), signals it through it, and sees its
//! exit as the pidfd turning readable. (An adopted process is not supergo's child: its exit
//! status is not available to supergo, only the fact that it ended.)
//!
//! nix 0.30 has none of these calls, so they go through `libc::syscall`: pidfd_open (Linux
//! 5.3), pidfd_getfd (5.6), and pidfd_send_signal (5.1) through `spawn`'s, which signals
//! supergo's own children. glibc has wrappers only since 2.36.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::procfs;
use crate::spawn;

/// A pidfd for `pid` (close-on-exec, as the kernel always makes it).
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(explain(io::Error::last_os_error(), "pidfd_open", "5.3"));
    }
    // SAFETY: a fresh fd the kernel just returned, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A duplicate, in this process, of fd `target` of the process `pidfd` names; it has
/// FD_CLOEXEC set (the kernel sets it). It needs ptrace access to that process.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes a pidfd, an fd number and flags (0), and returns a new fd
    // or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if fd < 0 {
        return Err(explain(io::Error::last_os_error(), "pidfd_getfd", "5.6"));
    }
    // SAFETY: as in `pidfd_open`.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process `pidfd` names (never to a newer process with its pid).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: Signal) -> io::Result<()> {
    spawn::pidfd_send_signal(pidfd, signal, 0)
        .map_err(|errno| explain(io::Error::from(errno), "pidfd_send_signal", "5.1"))
}

/// True once the process `pidfd` names has exited (its pidfd polls readable).
pub fn has_exited(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    wait_exit(pidfd, Duration::ZERO)
}

/// Waits at most `timeout` for the process `pidfd` names to exit; true when it has.
pub fn wait_exit(pidfd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // PollTimeout holds at most i32::MAX ms (~24 days): longer waits loop.
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) if left.is_zero() => return Ok(false),
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What went wrong, said so that an operator can act on it.
fn explain(err: io::Error, call: &str, since: &str) -> io::Error {
    let hint = match err.raw_os_error() {
        Some(libc::ENOSYS) => {
            format!(" (this kernel has no {call}: it needs Linux {since} or later)")
        }
        Some(libc::EPERM) if call == "pidfd_getfd" => {
            let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
                .map(|s| format!(", kernel.yama.ptrace_scope = {}", s.trim()))
                .unwrap_or_default();
            format!(
                " (taking an fd from another process needs ptrace access to it: the same user, and \
                 with ptrace_scope 1 or more also CAP_SYS_PTRACE or being its ancestor{scope})"
            )
        }
        _ => String::new(),
    };
    io::Error::new(err.kind(), format!("{call}: {err}{hint}"))
}

/// A recorded process, and the listening socket it holds, taken back.
#[derive(Debug)]
pub struct Taken {
    pub pidfd: OwnedFd,
    pub socket: OwnedFd,
    /// The process's fd number for it.
    pub fd_in_process: RawFd,
}

/// Takes back the listening socket with `inode` from `pid`, the process recorded with
/// `start_time`: opens its pidfd, checks that it is still that process (the pidfd is
/// opened first, so a process checked is the process held), finds the fd that is the
/// socket, and duplicates it here. The error names the pid, the inode and the cause.
pub fn take_socket(pid: Pid, start_time: u64, inode: u64) -> Result<Taken, String> {
    let pidfd = pidfd_open(pid).map_err(|e| format!("pid {pid}: {e}"))?;
    if !procfs::is_same_process(pid, start_time) {
        return Err(format!(
            "pid {pid} is no longer the process recorded (it exited, or its pid was reused)"
        ));
    }
    let fd_in_process = procfs::find_socket_fd(pid, inode)
        .map_err(|e| format!("pid {pid}: cannot list its fds in /proc/{pid}/fd: {e}"))?
        .ok_or_else(|| format!("pid {pid} no longer holds socket inode {inode}"))?;
    let socket = pidfd_getfd(std::os::fd::AsFd::as_fd(&pidfd), fd_in_process).map_err(|e| {
        format!("pid {pid}: cannot take its fd {fd_in_process} (socket inode {inode}): {e}")
    })?;
    // The process may have closed that fd and opened another at the same number meanwhile.
    match procfs::socket_inode(std::os::fd::AsFd::as_fd(&socket)) {
        Ok(found) if found == inode => Ok(Taken { pidfd, socket, fd_in_process }),
        Ok(found) => Err(format!("pid {pid}: its fd {fd_in_process} changed from socket inode {inode} to {found} while it was taken")),
        Err(e) => Err(format!("pid {pid}: its fd {fd_in_process} is no longer socket inode {inode}: {e}")),
    }
}
