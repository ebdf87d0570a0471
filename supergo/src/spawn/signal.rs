//! Signals to children, through their pidfds: the registry of live children's pidfds (by
//! pid) and [`signal_child`].
//!
//! Why pidfds: a pid names a process only until its parent reaps it; after that the kernel
//! may give the number to any new process. A stop that races with an exit (the worker sends
//! SIGKILL at the deadline while the reaper has just reaped the child) would, by pid, kill
//! whatever process got the number. A pidfd names one process for good: once that process
//! is gone, signalling it fails with ESRCH.
//!
//! The reaper registers each child's pidfd when it registers the pid (`register_child`) and
//! drops it when it reaps the pid (`forget_child`), both under its own lock, so the registry
//! holds exactly the children not reaped yet, and no pidfd outlives its process.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// `PIDFD_SIGNAL_PROCESS_GROUP` (Linux 6.9, `<linux/pidfd.h>`): signal the process group
/// the pidfd's process leads, not just the process.
const PIDFD_SIGNAL_PROCESS_GROUP: libc::c_uint = 1 << 2;

/// Set once the kernel refused PIDFD_SIGNAL_PROCESS_GROUP (Linux < 6.9).
static NO_GROUP_FLAG: AtomicBool = AtomicBool::new(false);

/// Children not reaped yet → their pidfd (None: the kernel gave none, Linux < 5.2).
static LIVE: Mutex<BTreeMap<libc::pid_t, Option<Arc<OwnedFd>>>> = Mutex::new(BTreeMap::new());

fn live() -> std::sync::MutexGuard<'static, BTreeMap<libc::pid_t, Option<Arc<OwnedFd>>>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records a new child (called by the reaper as it registers the pid).
pub fn register_child(pid: Pid, pidfd: Option<OwnedFd>) {
    live().insert(pid.as_raw(), pidfd.map(Arc::new));
}

/// Forgets a reaped child and closes its pidfd (once no `signal_child` still uses it).
pub fn forget_child(pid: Pid) {
    live().remove(&pid.as_raw());
}

/// Sends `signal` to a child: to its whole process group (its pgid is its pid, after
/// `setsid`) when `as_group`, else to the process alone. A process that is already gone is
/// not an error; a child already reaped is never signalled by its pid alone.
pub fn signal_child(pid: Pid, signal: Signal, as_group: bool) {
    let entry = live().get(&pid.as_raw()).cloned();
    let result = match (entry, as_group) {
        (Some(Some(pidfd)), false) => pidfd_send_signal(pidfd.as_fd(), signal, 0),
        (Some(Some(pidfd)), true) if !NO_GROUP_FLAG.load(Ordering::Relaxed) => {
            match pidfd_send_signal(pidfd.as_fd(), signal, PIDFD_SIGNAL_PROCESS_GROUP) {
                Err(Errno::EINVAL) => {
                    if !NO_GROUP_FLAG.swap(true, Ordering::Relaxed) {
                        crate::info!(
                            "this kernel has no PIDFD_SIGNAL_PROCESS_GROUP (Linux < 6.9): \
                             process groups are signalled with killpg"
                        );
                    }
                    killpg(pid, signal)
                }
                other => other,
            }
        }
        // Group signals by number. Safe here because a pgid in use cannot be reused: the
        // kernel frees a pid number only once no process, process group or session uses
        // it. Either the leader is registered (not reaped, so the number is still its), or
        // it was reaped and its group still runs (a stop in progress: `kill_rest_of_group`,
        // or SIGKILL at the deadline after a leader that exited first), whose members keep
        // the number taken; once the group is empty, killpg finds no one (ESRCH). The one
        // way to hit another group: this group empties and the number is reused by a new
        // group leader in the microseconds between the caller's decision and this call.
        (Some(_), true) | (None, true) => killpg(pid, signal),
        // No pidfd from this kernel (Linux < 5.2), but not reaped: the pid is still its.
        (Some(None), false) => kill(pid, signal),
        // Reaped already: its pid may belong to someone else now. Nothing to signal.
        (None, false) => Ok(()),
    };
    if let Err(e) = result {
        if e != Errno::ESRCH {
            crate::warn!("cannot send {signal} to pid {pid}: {}", e.desc());
        }
    }
}

/// pidfd_send_signal(2), which nix does not wrap: `libc::syscall`. Also what adoption
/// signals a process through that is not supergo's child (`adopt::pidfd`).
pub fn pidfd_send_signal(
    pidfd: BorrowedFd<'_>,
    signal: Signal,
    flags: libc::c_uint,
) -> nix::Result<()> {
    // SAFETY: a raw system call on an open pidfd; a NULL siginfo makes the kernel fill it
    // as kill(2) would.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            flags,
        )
    };
    Errno::result(ret).map(drop)
}
