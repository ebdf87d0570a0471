//! Starting a child: `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` + `execve` (what
//! posix_spawn does), with everything allocated before the clone, and signals to children
//! through their pidfds.
//!
//! The parts, in the order a spawn goes through them:
//! - [`prepare`] (`prepare.rs`, `identity.rs`, `environ.rs`): everything that allocates or
//!   can fail: argv, envp, the resolved executable, opened stdio targets, uid/gid/groups looked up by name
//!   (outside any lock: a slow NSS look-up delays only its own program), the rlimit plan;
//! - [`clone_child`] (`clone.rs`, `stack.rs`): the clone itself, on a stack of its own with a
//!   guard page, with every signal blocked, and the exec-error pipe and pidfd it returns;
//!   with fd slots leased (`fd_slots.rs`), the fds the child reads are duplicated into low
//!   "slots" first and the child shares supergo's fd table (CLONE_FILES) instead of getting a
//!   copy of all of it, which cost ~40% of a spawn with 1000 programs;
//! - the child between clone and exec (`child.rs`): raw system calls only. First (step 0),
//!   with CLONE_FILES, `close_range(limit, ~0U, CLOSE_RANGE_UNSHARE)`: a private table
//!   holding only the slots (on failure it exits at once, touching nothing, and the parent
//!   clones again with a copied table); then, in either table, every fd above stderr that is
//!   not its own is closed (all O_CLOEXEC: early, what the exec would do), so that a child
//!   hung before its exec holds no other spawn's pipe ends. Then, in this order:
//!   1. every catchable signal back to SIG_DFL (Rust ignores SIGPIPE, and signal-hook's
//!      handlers must never run in the child), real-time signals too, then an empty mask;
//!   2. `setsid()`: its own session and process group, so stop and kill reach grandchildren;
//!   3. `chdir`, `umask`;
//!   4. stdin from /dev/null, stdout/stderr to the targets opened before (log pipes);
//!   5. listeners to fd 3, 4, …: first every listener is duplicated above `3 + n` (so that no
//!      `dup2` can overwrite a listener not yet moved), then each is `dup2`ed to `3 + i` and
//!      its FD_CLOEXEC cleared explicitly (`dup2(fd, fd)` is a no-op that would leave it set);
//!   6. `setrlimit` (after the fd moves, so a low `nofile` cannot break them), then
//!      `setgroups` → `setresgid` → `setresuid` (groups and gid first, while root allows it),
//!      through `syscall(2)`: glibc's wrappers would broadcast to supergo's threads;
//!   7. the child's pid written in place into the `LISTEN_PID=` slot reserved in envp;
//!   8. `execve`; on failure the step and errno go to the exec-error pipe and `_exit(127)`
//!      (126 when the file exists but cannot be executed, as shells and tini do);
//! - [`Cloned::wait_exec`] (`report.rs`): the parent reads the exec-error pipe (O_CLOEXEC,
//!   kept above fd 3 + n): EOF means the exec happened; a step and errno become a message
//!   that names the program and what failed;
//! - [`signal_child`] (`signal.rs`): stop and kill go through the pidfd the clone returned,
//!   so a pid the kernel has reused for another process never receives them;
//! - [`SpawnError`] (`error.rs`): the reason a spawn failed, which every step above gives.
//!
//! Deviations: from DESIGN.md's "fork", for speed (a fork copies every mapping, one stack
//! per program thread: ~4 ms with 1000 programs, against ~0.4 ms); from systemd, none in
//! what the child sees. `LISTEN_*` variables are omitted entirely when a program has no
//! listeners, as systemd does.

mod child;
mod clone;
mod environ;
mod error;
mod fd_slots;
mod identity;
mod prepare;
mod report;
mod signal;
mod slot_queue;
mod stack;

use std::os::fd::{BorrowedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

pub use clone::{clone_child, Cloned};
pub use error::SpawnError;
pub use fd_slots::reserve as reserve_fd_slots;
pub use prepare::{prepare, Prepared, SpawnRequest};
pub use signal::{forget_child, pidfd_send_signal, register_child, signal_child};

/// Marks every fd supergo inherited (above stderr) close-on-exec. supergo opens its own fds
/// with O_CLOEXEC, but fds its launcher leaked (a CI runner, a shell script) would otherwise
/// reach every child, which must see exactly 0, 1, 2 and its listeners. Call once at start,
/// before any other thread exists.
pub fn close_inherited_fds_on_exec() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| *fd > 2) {
        // SAFETY: borrowed for one fcntl; an fd that closed meanwhile (the directory
        // listing's own) just answers EBADF.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = fcntl(borrowed, FcntlArg::F_GETFD) {
            let flags = FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC;
            let _ = fcntl(borrowed, FcntlArg::F_SETFD(flags));
        }
    }
}
