//! The exec report: how the child tells the parent whether its `execve` happened.
//!
//! The protocol, as Rust's own `std` spawn does it: before the clone the parent opens a pipe
//! with O_CLOEXEC and moves its write end above the listeners' targets (fd 3 + n). The
//! child's copy of the write end closes by itself at a successful `execve`, so the parent
//! reads EOF; a child that fails writes 8 bytes, the [`Step`] it was at and the errno, then
//! exits. The parent turns them into a message that names the program and what failed.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::{self, Pid};

use super::error::{fail, SpawnError};
use super::prepare::{lexically_normal, Prepared};

/// The steps of the child's setup, reported with errno through the exec-error pipe.
#[derive(Clone, Copy)]
#[repr(u32)]
pub(super) enum Step {
    Signals = 1,
    Session,
    Chdir,
    Rlimit,
    Identity,
    Stdio,
    Listeners,
    Exec,
    /// The child's `close_range(CLOSE_RANGE_UNSHARE)` (CLONE_FILES only): the parent then
    /// clones again without CLONE_FILES (`clone.rs`).
    FdTable,
}

impl Step {
    fn from_u32(n: u32) -> Option<Step> {
        [
            Step::Signals,
            Step::Session,
            Step::Chdir,
            Step::Rlimit,
            Step::Identity,
            Step::Stdio,
            Step::Listeners,
            Step::Exec,
            Step::FdTable,
        ]
        .into_iter()
        .find(|s| *s as u32 == n)
    }
}

/// The parent's end of the exec-error pipe.
pub(super) struct ExecReport {
    read: OwnedFd,
    /// Read early by [`ExecReport::unshare_refused`].
    received: Option<Received>,
}

/// What the pipe said.
enum Received {
    /// EOF without a report: the exec happened.
    Exec,
    /// The step (as sent) and errno of a child that failed.
    Failed(u32, Errno),
    Unreadable(Errno),
}

/// Opens the exec-error pipe: the parent's end, and the write end for the child.
pub(super) fn open_pipe(prepared: &Prepared) -> Result<(ExecReport, OwnedFd), SpawnError> {
    let name = &prepared.program;
    // O_CLOEXEC: the write end vanishes at a successful exec, which is how the parent
    // learns that the exec happened (EOF).
    let (read, write) = unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| {
        fail(format!(
            "{name}: cannot create the exec-error pipe: {}",
            e.desc()
        ))
    })?;
    // The child moves listeners to 3..3+n; a write end below that would be overwritten by a
    // listener, and an exec error would then be written into a socket instead of the pipe.
    let above = 3 + prepared.listener_fds.len() as RawFd;
    let write = if write.as_raw_fd() < above {
        let fd = fcntl(&write, FcntlArg::F_DUPFD_CLOEXEC(above)).map_err(|e| {
            fail(format!(
                "{name}: cannot move the exec-error pipe: {}",
                e.desc()
            ))
        })?;
        // SAFETY: F_DUPFD_CLOEXEC just returned this new fd, owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    } else {
        write
    };
    Ok((
        ExecReport {
            read,
            received: None,
        },
        write,
    ))
}

/// The child's side: writes the step and errno (one `write`, 8 bytes: atomic on a pipe).
/// Raw syscalls only (see `child.rs`).
pub(super) fn send(err_fd: RawFd, step: Step, errno: i32) {
    let mut report = [0u8; 8];
    report[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    report[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: err_fd is the write end of the exec-error pipe, open in the child; the
    // buffer is 8 bytes on the child's stack. Nothing to do if it fails: the exit status
    // (127) still says the child did not run.
    unsafe { libc::write(err_fd, report.as_ptr().cast(), report.len()) };
}

impl ExecReport {
    /// Right after a CLONE_FILES clone returned: the errno when the child could not take a
    /// private fd table. That child wrote its report before `_exit`, so before the clone
    /// returned: a report is read only when it is already there (a poll with no wait), and
    /// kept for [`ExecReport::wait`]. Never blocks: the pid is not registered yet.
    pub(super) fn unshare_refused(&mut self) -> Option<Errno> {
        let mut fds = [PollFd::new(self.read.as_fd(), PollFlags::POLLIN)];
        let ready = matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0);
        if !ready {
            return None;
        }
        let received = self.receive();
        let refused = match received {
            Received::Failed(step, errno) if step == Step::FdTable as u32 => Some(errno),
            _ => None,
        };
        self.received = Some(received);
        refused
    }

    /// Reads until a whole report or EOF.
    fn receive(&self) -> Received {
        let mut report = [0u8; 8];
        let mut filled = 0;
        while filled < report.len() {
            match unistd::read(&self.read, &mut report[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Received::Unreadable(e),
            }
        }
        if filled == 0 {
            return Received::Exec;
        }
        let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
        let errno = Errno::from_raw(i32::from_ne_bytes([
            report[4], report[5], report[6], report[7],
        ]));
        Received::Failed(step, errno)
    }

    /// Waits until the child has exec'd (Ok) or reported why it could not (Err, with the
    /// pid set: its exit is still reaped and routed). The child has exec'd or exited by the
    /// time a CLONE_VFORK clone returns, so this does not block for long.
    pub(super) fn wait(mut self, pid: Pid, prepared: &Prepared) -> Result<Pid, SpawnError> {
        let received = match self.received.take() {
            Some(received) => received,
            None => self.receive(),
        };
        let message = match received {
            Received::Exec => return Ok(pid),
            Received::Failed(step, errno) => {
                describe_failure(prepared, Step::from_u32(step), errno)
            }
            Received::Unreadable(e) => format!(
                "{}: cannot read the exec-error pipe of pid {pid}: {}",
                prepared.program,
                e.desc()
            ),
        };
        Err(SpawnError {
            pid: Some(pid),
            message,
        })
    }
}

fn describe_failure(prepared: &Prepared, step: Option<Step>, errno: Errno) -> String {
    let name = &prepared.program;
    let why = errno.desc();
    match step {
        Some(Step::Exec) => {
            let path =
                lexically_normal(Path::new(OsStr::from_bytes(prepared.executable.as_bytes())));
            let hint = if errno == Errno::ENOENT && path.exists() {
                " (the file exists: its #! interpreter or its ELF loader is missing)"
            } else {
                ""
            };
            format!("{name}: cannot execute {}: {why}{hint}", path.display())
        }
        Some(Step::Chdir) => format!(
            "{name}: cannot change directory to {}: {why}",
            prepared.directory.to_string_lossy()
        ),
        Some(Step::Identity) => match &prepared.identity {
            Some(id) => format!(
                "{name}: cannot switch to uid {} gid {} (groups {:?}): {why}",
                id.uid, id.gid, id.groups
            ),
            None => format!("{name}: cannot switch to the configured user/group: {why}"),
        },
        Some(Step::Rlimit) => {
            let wanted: Vec<String> = prepared
                .rlimits
                .iter()
                .map(|(resource, value)| format!("{resource:?}={value}"))
                .collect();
            format!("{name}: cannot set rlimits ({}): {why}", wanted.join(", "))
        }
        Some(Step::Signals) => format!("{name}: cannot reset signal handling: {why}"),
        Some(Step::Session) => format!("{name}: cannot create a session (setsid): {why}"),
        Some(Step::Stdio) => format!("{name}: cannot set up stdin/stdout/stderr: {why}"),
        Some(Step::Listeners) => format!("{name}: cannot pass the listeners at fd 3..: {why}"),
        Some(Step::FdTable) => format!(
            "{name}: cannot take a private fd table (close_range with CLOSE_RANGE_UNSHARE): {why}"
        ),
        None => format!("{name}: the child failed before exec: {why}"),
    }
}
