//! The child between clone and exec (steps 0–8 of the module docs of `spawn`).
//!
//! It shares supergo's memory (CLONE_VM) while the thread that cloned it is suspended, so it
//! runs under the rules of a signal handler and more: raw system calls only (libc's plain
//! syscall wrappers, or `syscall(2)` where glibc's wrapper touches process-wide state), no
//! allocation, no locks, no logging. It reads and writes only the [`Prepared`] of the
//! suspended thread, its own stack, and errno (in the suspended thread's TLS, which the child
//! shares and nobody else reads meanwhile). Every failure is reported with its step through
//! the exec-error pipe (`report.rs`).

use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::libc;

use super::identity::Identity;
use super::prepare::{Prepared, PID_SLOT_DIGITS};
use super::report::{self, Step};

// The kernel's calls for 32-bit ids. On 32-bit x86 and ARM the plain numbers are the old
// 16-bit calls, which would truncate uid 70000 to 4464; glibc uses the `32` ones there too.
#[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
use libc::{
    SYS_setgroups as SYS_SETGROUPS, SYS_setresgid as SYS_SETRESGID, SYS_setresuid as SYS_SETRESUID,
};
#[cfg(any(target_arch = "x86", target_arch = "arm"))]
use libc::{
    SYS_setgroups32 as SYS_SETGROUPS, SYS_setresgid32 as SYS_SETRESGID,
    SYS_setresuid32 as SYS_SETRESUID,
};

/// What the cloning thread hands the child (through clone's `arg` pointer).
pub(super) struct ChildArgs {
    pub(super) prepared: *mut Prepared,
    pub(super) fds: ChildFds,
}

/// The fd numbers the child reads from: the ones of the [`Prepared`], or the fd slots the
/// cloning thread duplicated them into (`fd_slots.rs`).
pub(super) struct ChildFds {
    /// The sources of the child's fd 0, 1 and 2.
    pub(super) stdio: [RawFd; 3],
    /// The sources of fd 3, 4, …, in order (moved above `3 + n` by the child, step 5).
    pub(super) listeners: Vec<RawFd>,
    /// The write end of the exec-error pipe.
    pub(super) err: RawFd,
    /// Every fd above, in ascending order: the child closes all others above stderr first
    /// thing (step 0). None when it must keep supergo's fds until its exec
    /// (`Prepared::needs_whole_fd_table`).
    pub(super) own: Option<Vec<RawFd>>,
    /// Set when the child shares supergo's fd table (CLONE_FILES): it must take a private
    /// one before anything else.
    pub(super) shared: Option<SharedTable>,
}

/// A child cloned with CLONE_FILES: every fd it reads sits in a slot below `limit`.
pub(super) struct SharedTable {
    pub(super) limit: RawFd,
    /// Test hook (debug builds only): act as if `close_range` failed. See
    /// `fd_slots::refuse_for_test`.
    #[cfg(debug_assertions)]
    pub(super) refuse_for_test: bool,
}

/// A failed step and its errno.
type Failure = (Step, i32);

/// The child's entry point (clone's `fn`). Never returns: it execs or `_exit`s.
pub(super) extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` of the cloning thread, which stays suspended (and its
    // `Prepared` alive and untouched) until this child has exec'd or exited.
    let args = unsafe { &mut *arg.cast::<ChildArgs>() };
    if let Some(shared) = &args.fds.shared {
        // Step 0, before any other system call: until this succeeds the child shares
        // supergo's fd table, where a dup2 or close would hit supergo's own fds. On failure
        // it touches nothing: the report (a write, which changes no table) and `_exit`; the
        // parent clones again the old way (`clone.rs`).
        if let Err(errno) = take_private_table(shared) {
            report::send(args.fds.err, Step::FdTable, errno);
            // SAFETY: as below; exiting drops this child's reference to the shared table
            // and closes nothing in it.
            unsafe { libc::_exit(127) };
        }
    }
    if let Some(own) = &args.fds.own {
        let end = args.fds.shared.as_ref().map(|shared| shared.limit);
        close_all_but(own, end);
    }
    // SAFETY: as above; nothing else uses the `Prepared` meanwhile.
    let p = unsafe { &mut *args.prepared };
    let (step, errno) = match setup(p, &mut args.fds) {
        Ok(()) => {
            // SAFETY: the pointer arrays are NULL-terminated and point into buffers owned by
            // `p`, which outlives this call.
            unsafe {
                libc::execve(
                    p.executable.as_ptr(),
                    p.argv_ptrs.as_ptr(),
                    p.envp_ptrs.as_ptr(),
                )
            };
            (Step::Exec, Errno::last_raw())
        }
        Err(failure) => failure,
    };
    report::send(args.fds.err, step, errno);
    let code = if matches!(step, Step::Exec) && matches!(errno, libc::EACCES | libc::ENOEXEC) {
        126
    } else {
        127
    };
    // SAFETY: _exit skips atexit handlers and stdio flushing, which belong to supergo.
    unsafe { libc::_exit(code) }
}

/// -1 from a libc call: the failure of `step`, with errno.
fn check(ret: libc::c_int, step: Step) -> Result<libc::c_int, Failure> {
    if ret == -1 {
        Err((step, Errno::last_raw()))
    } else {
        Ok(ret)
    }
}

/// close_range(2) through `syscall(2)`: nix has no wrapper, and glibc's needs glibc 2.34.
fn close_range(first: RawFd, last: libc::c_uint, flags: libc::c_uint) -> libc::c_long {
    // SAFETY: a raw system call on fd numbers.
    unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, last, flags) }
}

/// Step 0 (CLONE_FILES only): a private fd table holding only the fds below `limit` (the
/// kernel copies no more: see `fd_slots.rs`). Until it returns, any dup2 or close would act
/// on supergo's own table.
fn take_private_table(shared: &SharedTable) -> Result<(), i32> {
    #[cfg(debug_assertions)]
    if shared.refuse_for_test {
        return Err(libc::ENOSYS);
    }
    if close_range(shared.limit, libc::c_uint::MAX, libc::CLOSE_RANGE_UNSHARE) == -1 {
        return Err(Errno::last_raw());
    }
    Ok(())
}

/// Step 0, in a table of the child's own: closes every fd above stderr that is not in `own`
/// (ascending), below `end` (the slots' limit: nothing sits above it any more) or to the end
/// of the table. They are all O_CLOEXEC, so this only does before anything can block what
/// the exec would do: a child hung before its exec (a `chdir` into a hung mount) must not
/// hold other spawns' pipe ends, or their exec reports (and log pipes) would never reach EOF
/// and those spawns would hang with it. Errors are ignored: there is none for a valid range
/// (and without close_range, Linux < 5.9, the exec still closes them).
fn close_all_but(own: &[RawFd], end: Option<RawFd>) {
    let last = end.map_or(libc::c_uint::MAX, |end| (end - 1) as libc::c_uint);
    let mut from: RawFd = 3;
    for &fd in own {
        if fd > from {
            close_range(from, (fd - 1) as libc::c_uint, 0);
        }
        from = from.max(fd + 1);
    }
    if from as libc::c_uint <= last {
        close_range(from, last, 0);
    }
}

fn setup(p: &mut Prepared, fds: &mut ChildFds) -> Result<(), Failure> {
    keep_report_above_listeners(fds)?;
    reset_signals()?;
    // SAFETY (every unsafe block below): plain system calls on fds and buffers that the
    // child owns (its copy of the fd table) or that `p` owns.
    check(unsafe { libc::setsid() }, Step::Session)?;
    #[cfg(debug_assertions)]
    if p.hang_before_chdir {
        hang_for_test();
    }
    check(unsafe { libc::chdir(p.directory.as_ptr()) }, Step::Chdir)?;
    if let Some(mask) = p.umask {
        unsafe { libc::umask(mask.bits()) };
    }
    for (target, source) in fds.stdio.into_iter().enumerate() {
        let target = target as RawFd;
        check(unsafe { libc::dup2(source, target) }, Step::Stdio)?;
        // `dup2(fd, fd)` leaves FD_CLOEXEC as it was: clear it, or the child would lose
        // this stream at exec in the (odd) case where its source already sat there.
        check(
            unsafe { libc::fcntl(target, libc::F_SETFD, 0) },
            Step::Stdio,
        )?;
    }
    pass_listeners(&mut fds.listeners)?;
    // After the fd moves: a low `nofile` must not stop the child from duplicating the
    // listeners while it still holds supergo's fds. Before dropping root: raising a hard
    // limit needs it. Soft and hard both take the value, as systemd's `LimitNOFILE=N` does.
    for (resource, value) in &p.rlimits {
        let limit = libc::rlimit {
            rlim_cur: *value as libc::rlim_t,
            rlim_max: *value as libc::rlim_t,
        };
        check(
            unsafe { libc::setrlimit(*resource as _, &limit) },
            Step::Rlimit,
        )?;
    }
    if let Some(id) = p.identity.as_ref().filter(|id| id.switch) {
        switch_identity(id)?;
    }
    if let Some(index) = p.listen_pid_slot {
        write_pid(&mut p.envp[index..], unsafe { libc::getpid() });
    }
    Ok(())
}

/// The exec-error pipe's write end must not sit where a listener goes (3..3+n), or an exec
/// error would be written into a socket. `report::open_pipe` puts it above for a copied
/// table; a slot (CLONE_FILES) may be lower, and is moved here (F_DUPFD_CLOEXEC: the new
/// copy still closes at exec).
fn keep_report_above_listeners(fds: &mut ChildFds) -> Result<(), Failure> {
    let above = 3 + fds.listeners.len() as RawFd;
    if fds.err < above {
        // SAFETY: a raw system call on an fd of this child's own table.
        fds.err = check(
            unsafe { libc::fcntl(fds.err, libc::F_DUPFD_CLOEXEC, above) },
            Step::Listeners,
        )?;
    }
    Ok(())
}

/// Step 1: every signal to SIG_DFL, then an empty mask. The cloning thread blocked every
/// signal, so no handler of supergo's can run before this.
fn reset_signals() -> Result<(), Failure> {
    // SAFETY: all-zero is a valid `sigaction`: SIG_DFL, an empty mask, no flags.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    for signo in 1..=libc::SIGRTMAX() {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours.
        let ret = unsafe { libc::sigaction(signo, &default, std::ptr::null_mut()) };
        // Real-time signals too: a launcher may have left some ignored, and ignored
        // dispositions survive exec. glibc reserves the first two (32 and 33) for itself
        // and answers EINVAL: nothing to reset there.
        if signo < 32 {
            check(ret, Step::Signals)?;
        }
    }
    // SAFETY: a sigset on our stack, filled by sigemptyset before use.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        check(
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()),
            Step::Signals,
        )?;
    }
    Ok(())
}

/// Step 6: groups, then gid, then uid, straight to the kernel.
///
/// Why not `setgroups`/`setgid`/`setuid` (glibc's, or nix's, which call them): POSIX wants
/// all threads of a process to share one identity, so glibc's wrappers run
/// `__nptl_setxid`, which walks the thread list of "this process" under glibc's stack lock
/// and tgkill()s each thread with SIGRT_1 to make it switch too. The thread list it walks
/// is supergo's (this child shares supergo's memory): it would signal supergo's threads
/// (it fails with ESRCH only because they belong to another thread group; musl would reach
/// them), and could wait on a lock a supergo thread holds. The raw calls change this
/// process alone, which is all the child needs; glibc's own posix_spawn does the same.
fn switch_identity(id: &Identity) -> Result<(), Failure> {
    let check_long = |ret: libc::c_long| {
        if ret == -1 {
            Err((Step::Identity, Errno::last_raw()))
        } else {
            Ok(())
        }
    };
    let (uid, gid) = (id.uid.as_raw(), id.gid.as_raw());
    // SAFETY: raw system calls; the group list is a slice of gid_t that `id` owns.
    unsafe {
        check_long(libc::syscall(
            SYS_SETGROUPS,
            id.groups.len(),
            id.groups.as_ptr(),
        ))?;
        check_long(libc::syscall(SYS_SETRESGID, gid, gid, gid))?;
        check_long(libc::syscall(SYS_SETRESUID, uid, uid, uid))?;
    }
    Ok(())
}

/// Step 5: the listeners to 3, 4, … (see the module docs of `spawn`).
fn pass_listeners(fds: &mut [RawFd]) -> Result<(), Failure> {
    let above = 3 + fds.len() as RawFd;
    for fd in fds.iter_mut() {
        // SAFETY: the listener fds are open in this process (its copy of supergo's table).
        // F_DUPFD_CLOEXEC: the temporary copy closes itself at exec.
        *fd = check(
            unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, above) },
            Step::Listeners,
        )?;
    }
    for (i, fd) in fds.iter().enumerate() {
        let target = 3 + i as RawFd;
        // SAFETY: both fds are open; the target must stay open across exec, so its
        // close-on-exec flag is cleared explicitly.
        check(unsafe { libc::dup2(*fd, target) }, Step::Listeners)?;
        check(
            unsafe { libc::fcntl(target, libc::F_SETFD, 0) },
            Step::Listeners,
        )?;
    }
    Ok(())
}

/// Step 7: writes `LISTEN_PID=<digits>\0` into the reserved slot, without allocating.
fn write_pid(slot: &mut [u8], pid: libc::pid_t) {
    let prefix = b"LISTEN_PID=".len();
    let mut digits = [0u8; PID_SLOT_DIGITS];
    let mut n = pid.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
        if n == 0 || len == PID_SLOT_DIGITS {
            break;
        }
    }
    for i in 0..len {
        slot[prefix + i] = digits[len - 1 - i];
    }
    slot[prefix + len] = 0;
}

/// The test hook of `prepare.rs` (debug builds only): an hour's sleep before `chdir`, as a
/// `chdir` into a hung mount would block. A raw `clock_nanosleep`: std's sleep is no
/// syscall wrapper and may not be used here.
#[cfg(debug_assertions)]
fn hang_for_test() {
    let hour = libc::timespec {
        tv_sec: 3600,
        tv_nsec: 0,
    };
    // SAFETY: the timespec is on our stack; no remaining time is asked for.
    unsafe {
        libc::syscall(
            libc::SYS_clock_nanosleep,
            libc::CLOCK_MONOTONIC,
            0,
            &hour as *const libc::timespec,
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pid_in_place() {
        let mut slot = b"LISTEN_PID=".to_vec();
        slot.extend(std::iter::repeat_n(0u8, PID_SLOT_DIGITS + 1));
        write_pid(&mut slot, 4_194_304);
        assert_eq!(&slot[..19], b"LISTEN_PID=4194304\0");
        write_pid(&mut slot, 7);
        assert_eq!(&slot[..13], b"LISTEN_PID=7\0");
    }
}
