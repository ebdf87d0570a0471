//! Test support shared by the unit tests in `src/lib.rs` (included there with `#[path]`) and
//! the integration tests in `tests/`: the few libc calls the tests need, and placing fds at
//! fixed numbers in a child process, as supergo does for fd 3, 4, …
//!
//! The crate has no libc dependency (it would change the workspace's lock file for a handful
//! of calls), so the calls and constants are declared here, with their Linux values: the shim
//! itself is Linux-only (pipe2, SOCK_CLOEXEC, accept4).

#![allow(dead_code)] // each test crate uses a different part

use std::ffi::{c_int, c_ulong};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

pub const SIGINT: c_int = 2;
pub const SIGKILL: c_int = 9;
pub const SIGTERM: c_int = 15;
pub const F_DUPFD: c_int = 0;
pub const F_GETFD: c_int = 1;
pub const FD_CLOEXEC: c_int = 1;

extern "C" {
    pub fn dup2(oldfd: c_int, newfd: c_int) -> c_int;
    pub fn close(fd: c_int) -> c_int;
    pub fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    pub fn kill(pid: c_int, sig: c_int) -> c_int;
    pub fn raise(sig: c_int) -> c_int;
}

/// Most fds a test places in a child.
const MAX_PLACED: usize = 8;

/// Makes the child of `cmd` see `fds[i].0` at fd `fds[i].1` (without FD_CLOEXEC), and closes
/// each fd of `closed` in it. Sources are moved above 64 first, so that placing one cannot
/// overwrite another that happens to sit at a target number.
pub fn place_fds(cmd: &mut Command, fds: &[(RawFd, RawFd)], closed: &[RawFd]) {
    assert!(fds.len() <= MAX_PLACED, "at most {MAX_PLACED} fds");
    // Everything the closure uses is allocated here, before the fork.
    let fds = fds.to_vec();
    let closed = closed.to_vec();
    let hook = move || -> io::Result<()> {
        let mut moved = [-1; MAX_PLACED];
        for (i, &(src, _)) in fds.iter().enumerate() {
            // SAFETY: plain fd syscalls between fork and exec (async-signal-safe).
            moved[i] = unsafe { fcntl(src, F_DUPFD, 64) };
            if moved[i] < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for &fd in &closed {
            // SAFETY: as above; closing an fd that is not open is harmless here.
            unsafe { close(fd) };
        }
        for (i, &(_, dst)) in fds.iter().enumerate() {
            // SAFETY: as above. moved[i] >= 64 differs from dst, so dup2 clears FD_CLOEXEC.
            if unsafe { dup2(moved[i], dst) } < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above.
            unsafe { close(moved[i]) };
        }
        Ok(())
    };
    // SAFETY: the hook makes async-signal-safe calls only and allocates nothing.
    unsafe { cmd.pre_exec(hook) };
}

pub const POLLIN: i16 = 1;

#[repr(C)]
pub struct PollFd {
    pub fd: c_int,
    pub events: i16,
    pub revents: i16,
}

extern "C" {
    pub fn poll(fds: *mut PollFd, nfds: c_ulong, timeout: c_int) -> c_int;
}

/// Whether `fd` is readable within `timeout_ms`.
pub fn readable(fd: RawFd, timeout_ms: c_int) -> bool {
    let mut p = PollFd {
        fd,
        events: POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { poll(&mut p, 1, timeout_ms) };
    r == 1 && p.revents & POLLIN != 0
}
