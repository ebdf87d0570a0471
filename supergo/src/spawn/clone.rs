//! The clone: `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` on a stack of the child's own,
//! with every signal blocked in the cloning thread, returning the child's pid, its pidfd
//! and the parent's end of the exec-error pipe.
//!
//! No lock is held here: a CLONE_VFORK clone returns only once the child has exec'd or
//! exited, which a `chdir` into a hung network mount can put off forever. Only the thread
//! that cloned waits; every other spawn runs beside it, each on its own stack.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::unistd::Pid;

use super::child::{child_main, ChildArgs};
use super::error::{fail, SpawnError};
use super::prepare::Prepared;
use super::report::{self, ExecReport};
use super::stack::ChildStack;

/// A cloned child whose `execve` has not been confirmed yet.
pub struct Cloned {
    pub pid: Pid,
    /// The child's pidfd (None on a kernel older than 5.2, which has no CLONE_PIDFD). The
    /// caller registers it with the pid (`register_child`), so that signals go through it.
    pub pidfd: Option<OwnedFd>,
    report: ExecReport,
}

impl Cloned {
    /// Waits until the child has exec'd (Ok) or reported why it could not (Err, with the
    /// pid set: its exit is still reaped and routed).
    pub fn wait_exec(self, prepared: &Prepared) -> Result<Pid, SpawnError> {
        self.report.wait(self.pid, prepared)
    }
}

/// Set once a clone with CLONE_PIDFD was refused (Linux < 5.2): later clones go without.
static NO_CLONE_PIDFD: AtomicBool = AtomicBool::new(false);

/// Starts the prepared child. The caller registers the pid (see `reaper`) and then calls
/// `wait_exec`.
pub fn clone_child(prepared: &mut Prepared) -> Result<Cloned, SpawnError> {
    let name = prepared.program.clone();
    let (report, err_write) = report::open_pipe(prepared)?;
    let mut stack = ChildStack::new().map_err(|e| {
        fail(format!(
            "{name}: cannot map a stack for the new process: {}",
            e.desc()
        ))
    })?;

    // Block every signal in this thread across the clone: the child starts with them
    // blocked, so no signal-hook handler can run in it before it resets dispositions.
    let mut old_mask = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old_mask),
    )
    .map_err(|e| fail(format!("{name}: cannot block signals: {}", e.desc())))?;
    let mut args = ChildArgs {
        prepared,
        err_fd: err_write.as_raw_fd(),
    };
    let with_pidfd = !NO_CLONE_PIDFD.load(Ordering::Relaxed);
    let mut cloned = clone_raw(&mut stack, &mut args, with_pidfd);
    if with_pidfd && matches!(cloned, Err(Errno::EINVAL)) {
        if !NO_CLONE_PIDFD.swap(true, Ordering::Relaxed) {
            crate::warn!(
                "this kernel refuses CLONE_PIDFD (Linux < 5.2): children are signalled by \
                 pid, which a reused pid could misdirect"
            );
        }
        cloned = clone_raw(&mut stack, &mut args, false);
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    // The child has exec'd or exited (CLONE_VFORK): its stack can go, and so can our copy
    // of the pipe's write end, whose closing lets `wait_exec` read EOF.
    drop(stack);
    drop(err_write);
    match cloned {
        Ok((pid, pidfd)) => Ok(Cloned { pid, pidfd, report }),
        Err(e) => Err(fail(format!(
            "{name}: cannot start a process: {}",
            e.desc()
        ))),
    }
}

/// clone(2) through glibc's wrapper, which runs `child_main` on `stack` in the child.
///
/// Why CLONE_VM | CLONE_VFORK, as posix_spawn does, rather than fork: fork copies every
/// mapping of supergo, including one stack per worker thread, and costs ~4 ms with 1000
/// programs against ~0.4 ms for this. The child shares supergo's memory until it execs,
/// while this thread is suspended, so it must not touch anything another thread could (see
/// `child.rs`). It has its own copy of the fd table, signal handlers, cwd and umask (no
/// CLONE_FILES, CLONE_SIGHAND or CLONE_FS). SIGCHLD as the exit signal makes it an
/// ordinary child for waitpid (the reaper). CLONE_PIDFD: the kernel writes a pidfd (with
/// O_CLOEXEC) into `pidfd`; nix's `clone` has no way to pass that pointer.
fn clone_raw(
    stack: &mut ChildStack,
    args: &mut ChildArgs,
    with_pidfd: bool,
) -> Result<(Pid, Option<OwnedFd>), Errno> {
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    if with_pidfd {
        flags |= libc::CLONE_PIDFD;
    }
    let mut pidfd: libc::c_int = -1;
    // SAFETY: see above. `args` and the `Prepared` it points to outlive the child's use of
    // them (this thread is suspended until the child has exec'd or exited); `stack` is
    // mapped for this child alone and unmapped only after clone returned.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            flags,
            (args as *mut ChildArgs).cast(),
            &mut pidfd as *mut libc::c_int,
        )
    };
    if pid == -1 {
        return Err(Errno::last());
    }
    // A kernel that ignores the flag leaves `pidfd` at -1.
    // SAFETY: a pidfd the kernel just created for us, owned by nobody else.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    Ok((Pid::from_raw(pid), pidfd))
}
