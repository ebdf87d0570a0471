//! The clone: `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`, plus CLONE_FILES when fd slots
//! can be leased (`fd_slots.rs`), on a stack of the child's own, with every signal blocked in
//! the cloning thread, returning the child's pid, its pidfd and the parent's end of the
//! exec-error pipe.
//!
//! No lock is held here: a CLONE_VFORK clone returns only once the child has exec'd or
//! exited, which a `chdir` into a hung network mount can put off forever. Only the thread
//! that cloned waits; every other spawn runs beside it, each on its own stack.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::unistd::Pid;

use super::child::{child_main, ChildArgs, ChildFds, SharedTable};
use super::error::{fail, SpawnError};
use super::fd_slots::{self, Lease};
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
///
/// With fd slots to lease (`fd_slots.rs`), the child shares supergo's fd table (CLONE_FILES)
/// until it takes a private copy of the slots alone; otherwise, or when that fails, the
/// kernel copies supergo's whole table into it, as before.
pub fn clone_child(prepared: &mut Prepared) -> Result<Cloned, SpawnError> {
    let name = prepared.program.clone();
    let mut stack = ChildStack::new().map_err(|e| {
        fail(format!(
            "{name}: cannot map a stack for the new process: {}",
            e.desc()
        ))
    })?;
    // stdin, stdout, stderr, the exec-error pipe's write end, each listener.
    let needed = fd_slots::SLOTS_PER_SPAWN + prepared.listener_fds.len();
    let lease = if prepared.needs_whole_fd_table {
        None
    } else {
        fd_slots::lease(needed)
    };
    if let Some(lease) = lease {
        if let Some(cloned) = clone_sharing(prepared, &mut stack, lease)? {
            return Ok(cloned);
        }
    }
    let (report, err_write) = report::open_pipe(prepared)?;
    let mut fds = ChildFds {
        stdio: [
            prepared.stdin.as_raw_fd(),
            prepared.stdout.as_raw_fd(),
            prepared.stderr.as_raw_fd(),
        ],
        listeners: prepared.listener_fds.clone(),
        err: err_write.as_raw_fd(),
        own: None,
        shared: None,
    };
    if !prepared.needs_whole_fd_table {
        fds.own = Some(ascending(&fds));
    }
    let cloned = clone_blocked(&mut stack, prepared, fds);
    // The child has exec'd or exited (CLONE_VFORK): our copy of the pipe's write end can
    // go, whose closing lets `wait_exec` read EOF.
    drop(err_write);
    let (pid, pidfd) = cloned?;
    Ok(Cloned { pid, pidfd, report })
}

/// The clone with CLONE_FILES, on leased slots: None when it did not happen and the caller
/// should clone the old way (a slot could not be filled, or the child could not take a
/// private table: then `fd_slots::disable` turns slots off for good).
fn clone_sharing(
    prepared: &mut Prepared,
    stack: &mut ChildStack,
    mut lease: Lease,
) -> Result<Option<Cloned>, SpawnError> {
    let (mut report, err_write) = report::open_pipe(prepared)?;
    let n = prepared.listener_fds.len();
    let mut sources = vec![
        prepared.stdin.as_raw_fd(),
        prepared.stdout.as_raw_fd(),
        prepared.stderr.as_raw_fd(),
    ];
    sources.extend(&prepared.listener_fds);
    sources.push(err_write.as_raw_fd());
    // dup3 over an open slot allocates nothing and cannot fail in practice; if it does, the
    // lease's drop puts back what was placed.
    let Ok(slots) = lease.place(&sources) else {
        return Ok(None);
    };
    let mut fds = ChildFds {
        stdio: [slots[0], slots[1], slots[2]],
        listeners: slots[3..3 + n].to_vec(),
        err: slots[3 + n],
        own: None,
        shared: Some(SharedTable {
            limit: lease.limit(),
            #[cfg(debug_assertions)]
            refuse_for_test: fd_slots::refuse_for_test(),
        }),
    };
    fds.own = Some(ascending(&fds));
    let cloned = clone_blocked(stack, prepared, fds);
    // The child has exec'd or exited, with a private table (or none): the placeholders go
    // back into the slots now, on every path, so that supergo holds no extra copy of a log
    // pipe's write end (its reader would never see EOF) nor of our own pipe's write end.
    drop(lease);
    drop(err_write);
    let (pid, pidfd) = cloned?;
    if let Some(errno) = report.unshare_refused() {
        // That child exited without touching supergo's table; its exit is reaped like an
        // orphan's (its pid is registered nowhere).
        fd_slots::disable(&prepared.program, errno);
        drop(pidfd);
        return Ok(None);
    }
    Ok(Some(Cloned { pid, pidfd, report }))
}

/// Every fd the child reads, ascending (allocated here: the child may not).
fn ascending(fds: &ChildFds) -> Vec<RawFd> {
    let mut own: Vec<RawFd> = fds.stdio.to_vec();
    own.extend(&fds.listeners);
    own.push(fds.err);
    own.sort_unstable();
    own
}

/// The clone itself, with every signal blocked in this thread: the child starts with them
/// blocked, so no signal-hook handler can run in it before it resets dispositions.
fn clone_blocked(
    stack: &mut ChildStack,
    prepared: &mut Prepared,
    fds: ChildFds,
) -> Result<(Pid, Option<OwnedFd>), SpawnError> {
    let name = prepared.program.clone();
    let mut old_mask = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old_mask),
    )
    .map_err(|e| fail(format!("{name}: cannot block signals: {}", e.desc())))?;
    let mut args = ChildArgs { prepared, fds };
    let with_pidfd = !NO_CLONE_PIDFD.load(Ordering::Relaxed);
    let mut cloned = clone_raw(stack, &mut args, with_pidfd);
    if with_pidfd && matches!(cloned, Err(Errno::EINVAL)) {
        if !NO_CLONE_PIDFD.swap(true, Ordering::Relaxed) {
            crate::warn!(
                "this kernel refuses CLONE_PIDFD (Linux < 5.2): children are signalled by \
                 pid, which a reused pid could misdirect"
            );
        }
        cloned = clone_raw(stack, &mut args, false);
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    cloned.map_err(|e| fail(format!("{name}: cannot start a process: {}", e.desc())))
}

/// clone(2) through glibc's wrapper, which runs `child_main` on `stack` in the child.
///
/// Why CLONE_VM | CLONE_VFORK, as posix_spawn does, rather than fork: fork copies every
/// mapping of supergo, including one stack per worker thread, and costs ~4 ms with 1000
/// programs against ~0.4 ms for this. The child shares supergo's memory until it execs,
/// while this thread is suspended, so it must not touch anything another thread could (see
/// `child.rs`). It has its own signal handlers, cwd and umask (no CLONE_SIGHAND or
/// CLONE_FS). Its fd table: a copy of supergo's whole table, or with CLONE_FILES (when
/// `args.fds.shared` is set) supergo's own, until its first system call takes a private
/// one holding only the fd slots (`fd_slots.rs`). SIGCHLD as the exit signal makes it an
/// ordinary child for waitpid (the reaper). CLONE_PIDFD: the kernel writes a pidfd (with
/// O_CLOEXEC) into `pidfd`, installed in the cloning process's table (with CLONE_FILES too,
/// that is supergo's); nix's `clone` has no way to pass that pointer.
fn clone_raw(
    stack: &mut ChildStack,
    args: &mut ChildArgs,
    with_pidfd: bool,
) -> Result<(Pid, Option<OwnedFd>), Errno> {
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    if args.fds.shared.is_some() {
        flags |= libc::CLONE_FILES;
    }
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
