//! Carrying a state across `execve`: the upgrade's last step, and the fallback's.
//!
//! The sequence (`upgrade`), after the caller has run the pre-flight and stopped every thread
//! that could spawn a child:
//! 1. the state is finished, naming supergo's own binary (`SelfExe`, opened at start) as
//!    `[handover] exe_fd` so that a new image that cannot restore it can go back;
//! 2. it is written into a sealed memfd (created O_CLOEXEC like every other fd);
//! 3. argv (`[binary, supergo's own arguments…]`) and envp (supergo's environment plus
//!    `SUPERGO_UPGRADE_STATE=<memfd>`, and the `NOTIFY_SOCKET` supergo was started with,
//!    which `manager_notify` removed from its environment) are built;
//! 4. every signal is blocked in this thread. The mask and pending signals survive `execve`,
//!    so a SIGTERM that arrives from here on stays pending, and the new image honours it
//!    once it has installed its handlers and unblocks. That holds only if no other thread
//!    has the signal unblocked at that moment: such a thread would take it into its
//!    handler, whose work dies with the old image. So the caller parks the signals thread
//!    with every signal blocked before calling `upgrade`, and every other thread of supergo
//!    must run with signals blocked (threads inherit the mask of the thread that creates
//!    them);
//! 5. FD_CLOEXEC is cleared on exactly the fds the state names, and the memfd: these and
//!    fds 0-2 are all the new image inherits. (A child spawned by another thread from here on
//!    would inherit them too: hence no spawn may run now.)
//! 6. `execveat(fd, "", AT_EMPTY_PATH)` on the binary opened when it was checked, so the
//!    image checked by the pre-flight is the image run, even if the path changes meanwhile.
//!    It needs an ELF binary: a script run this way cannot find itself (ENOENT).
//! 7. if the exec fails, everything is put back (FD_CLOEXEC, the mask) and supergo carries on
//!    as before: nothing was handed over.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, AtFlags, FcntlArg, FdFlag, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::stat::Mode;
use nix::unistd::{access, execveat, AccessFlags};

use super::writer::StateWriter;

/// The environment variable that tells a new image where its state is: an fd number.
pub const STATE_ENV: &str = "SUPERGO_UPGRADE_STATE";
/// Set by a new image that falls back to the old binary: why it could not restore. The old
/// binary, finding it, must not fall back again.
pub const FALLBACK_ENV: &str = "SUPERGO_UPGRADE_FALLBACK";

/// An upgrade that did not happen, and why; supergo carries on as before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeError(pub String);

impl std::fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UpgradeError {}

/// supergo's own binary, opened at start: after `install new /usr/local/bin/supergo` the path
/// names the new file, but this fd still names the binary that runs.
#[derive(Debug)]
pub struct SelfExe {
    fd: OwnedFd,
    started_from: PathBuf,
}

impl SelfExe {
    /// Opens /proc/self/exe (O_CLOEXEC: no child inherits it) and records the path supergo
    /// was started from (argv[0], found in PATH when it has no `/`). Call it at start.
    pub fn open() -> io::Result<SelfExe> {
        let fd = open(
            "/proc/self/exe",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let cwd = std::env::current_dir()?;
        let argv0 = std::env::args_os().next().unwrap_or_default();
        let path = std::env::var_os("PATH");
        let started_from = started_from(&argv0, &cwd, path.as_deref())
            .or_else(|| std::fs::read_link("/proc/self/exe").ok())
            .ok_or_else(|| io::Error::other("cannot tell which binary supergo was started from"))?;
        Ok(SelfExe { fd, started_from })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path supergo was started from, absolute, not resolved: the default binary of an
    /// upgrade is whatever that path names when the upgrade runs.
    pub fn started_from(&self) -> &Path {
        &self.started_from
    }
}

/// Where `argv0` points: joined to `cwd` when it holds a `/`, else looked up in `path_var`
/// the way the shell found it.
pub fn started_from(argv0: &OsStr, cwd: &Path, path_var: Option<&OsStr>) -> Option<PathBuf> {
    if argv0.is_empty() {
        return None;
    }
    if argv0.as_bytes().contains(&b'/') {
        return Some(cwd.join(argv0));
    }
    std::env::split_paths(path_var?)
        .map(|dir| cwd.join(dir).join(argv0))
        .find(|candidate| candidate.is_file() && access(candidate, AccessFlags::X_OK).is_ok())
}

/// The binary an upgrade runs: checked, and opened, so that what the pre-flight checked is
/// what `execveat` runs.
#[derive(Debug)]
pub struct Target {
    /// As requested (or started from), absolute: the new image's argv[0].
    pub path: PathBuf,
    /// With every symlink resolved now (`/usr/local/bin/supergo` → `/opt/supergo-0.2/…`).
    pub resolved: PathBuf,
    fd: OwnedFd,
}

impl Target {
    /// `requested` (relative to supergo's working directory), or the path supergo was
    /// started from, resolved again now; it must be an executable regular file.
    pub fn resolve(requested: Option<&Path>, self_exe: &SelfExe) -> Result<Target, UpgradeError> {
        let cwd = std::env::current_dir().map_err(|e| {
            UpgradeError(format!("cannot determine supergo's working directory: {e}"))
        })?;
        // Without the `./` of a relative start (`./target/release/supergo`), which would only
        // clutter the log and the answer; `..` is kept, since only the file system knows it.
        let path: PathBuf = (cwd
            .join(requested.unwrap_or(&self_exe.started_from))
            .components())
        .filter(|c| *c != std::path::Component::CurDir)
        .collect();
        let fail =
            |why: String| UpgradeError(format!("cannot upgrade to {}: {why}", path.display()));
        let resolved = std::fs::canonicalize(&path).map_err(|e| fail(e.to_string()))?;
        let meta = std::fs::metadata(&resolved).map_err(|e| fail(e.to_string()))?;
        if !meta.is_file() {
            return Err(fail("not a regular file".into()));
        }
        access(&resolved, AccessFlags::X_OK)
            .map_err(|e| fail(format!("not executable ({})", e.desc())))?;
        let fd = open(&resolved, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| fail(format!("cannot open it: {}", e.desc())))?;
        Ok(Target { path, resolved, fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `/proc/self/fd/N` for the opened binary: a path to run the pre-flight with, naming
    /// the very file that will be executed. (It is resolved by the child before its exec, in
    /// its copy of supergo's fd table, where N is still open.)
    pub fn exec_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// Runs `target` in place of this image, handing it the state `writer` holds plus the old
/// binary for its fallback. Returns only when the exec failed; then nothing has changed.
pub fn upgrade(target: &Target, self_exe: &SelfExe, mut writer: StateWriter) -> UpgradeError {
    writer.handover_exe(self_exe.fd(), self_exe.started_from());
    let state = writer.finish();
    let memfd = match write_memfd(&state.text) {
        Ok(memfd) => memfd,
        Err(e) => return UpgradeError(format!("cannot write the upgrade state into a memfd: {e}")),
    };
    let mut argv = vec![target.path.clone().into_os_string()];
    argv.extend(std::env::args_os().skip(1));
    let err = exec_image(target.fd(), &argv, &memfd, &state.fds, None);
    UpgradeError(format!(
        "cannot execute {}: {err} — supergo carries on as before",
        target.path.display()
    ))
}

/// The state in a memfd: sealed, so the new image reads exactly what was written; O_CLOEXEC
/// until `exec_image` clears it.
pub fn write_memfd(text: &str) -> io::Result<OwnedFd> {
    let memfd = memfd_create(
        c"supergo-state",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    let mut file = std::fs::File::from(memfd);
    io::Write::write_all(&mut file, text.as_bytes())?;
    let memfd = OwnedFd::from(file);
    let seals = SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE
        | SealFlag::F_SEAL_SEAL;
    fcntl(&memfd, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(memfd)
}

/// Steps 3-7 of the module's sequence with `image` as the binary: blocks every signal,
/// clears FD_CLOEXEC on `fds` and `memfd`, and execs. Returns only on failure, after putting
/// FD_CLOEXEC and the signal mask back.
pub(super) fn exec_image(
    image: BorrowedFd<'_>,
    argv: &[OsString],
    memfd: &OwnedFd,
    fds: &[RawFd],
    fallback_reason: Option<&str>,
) -> String {
    let mut env: Vec<OsString> = std::env::vars_os()
        .filter(|(name, _)| {
            name != STATE_ENV && name != FALLBACK_ENV && name != crate::manager_notify::VARIABLE
        })
        .map(|(name, value)| [name, "=".into(), value].into_iter().collect())
        .collect();
    env.push(format!("{STATE_ENV}={}", memfd.as_raw_fd()).into());
    // supergo's own service manager: `manager_notify::init` took the variable out of this
    // image's environment (so that no child inherits it); the next image needs it back, and
    // takes it out again at its start.
    if let Some(target) = crate::manager_notify::target() {
        env.push(format!("{}={target}", crate::manager_notify::VARIABLE).into());
    }
    if let Some(reason) = fallback_reason {
        // The reason travels in one variable: escaped (no control characters), and short.
        let reason: String = super::escape::escape(reason.as_bytes())
            .chars()
            .take(2000)
            .collect();
        env.push(format!("{FALLBACK_ENV}={reason}").into());
    }
    let (argv, env) = match (c_strings(argv), c_strings(&env)) {
        (Ok(argv), Ok(env)) => (argv, env),
        (Err(what), _) | (_, Err(what)) => return format!("{what:?} holds a NUL byte"),
    };
    let mut handed: Vec<RawFd> = fds.to_vec();
    handed.push(memfd.as_raw_fd());

    let mut old_mask = SigSet::empty();
    if let Err(e) = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old_mask),
    ) {
        return format!("cannot block signals for the exec: {}", e.desc());
    }
    let result: Result<(), String> = clear_cloexec(&handed).and_then(|()| {
        let Err(e) = execveat(image, c"", &argv, &env, AtFlags::AT_EMPTY_PATH);
        Err(match e {
            Errno::ENOENT => {
                "No such file or directory (a script, or a binary whose ELF interpreter is \
                 missing, cannot be executed by fd)"
                    .to_string()
            }
            e => e.desc().to_string(),
        })
    });
    // Still here: the exec failed. Put everything back.
    set_cloexec(&handed);
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    result.err().unwrap_or_default()
}

fn c_strings(items: &[OsString]) -> Result<Vec<CString>, OsString> {
    items
        .iter()
        .map(|item| CString::new(item.clone().into_vec()).map_err(|_| item.clone()))
        .collect()
}

/// Clears FD_CLOEXEC on each of `fds`: the ones the new image inherits.
fn clear_cloexec(fds: &[RawFd]) -> Result<(), String> {
    for &fd in fds {
        // SAFETY: borrowed for one fcntl; an fd that is not open answers EBADF.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty()))
            .map_err(|e| format!("fd {fd} cannot be handed over: {}", e.desc()))?;
    }
    Ok(())
}

/// Sets FD_CLOEXEC on each of `fds` (which are open unless the state named a closed one).
fn set_cloexec(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: as in `clear_cloexec`.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_from_joins_a_path_and_searches_path_for_a_name() {
        let cwd = Path::new("/srv/app");
        assert_eq!(
            started_from(OsStr::new("./bin/supergo"), cwd, None),
            Some(PathBuf::from("/srv/app/./bin/supergo"))
        );
        assert_eq!(
            started_from(OsStr::new("/usr/local/bin/supergo"), cwd, None),
            Some(PathBuf::from("/usr/local/bin/supergo"))
        );
        let found = started_from(
            OsStr::new("sh"),
            cwd,
            Some(OsStr::new("/nonexistent:/bin:/usr/bin")),
        );
        assert!(
            matches!(&found, Some(p) if p.ends_with("sh") && p.is_absolute()),
            "{found:?}"
        );
        assert_eq!(
            started_from(
                OsStr::new("no-such-binary-here"),
                cwd,
                Some(OsStr::new("/bin"))
            ),
            None
        );
        assert_eq!(
            started_from(OsStr::new(""), cwd, Some(OsStr::new("/bin"))),
            None
        );
    }

    #[test]
    fn the_binary_is_resolved_now_and_must_be_an_executable_file() {
        let self_exe = SelfExe::open().expect("/proc/self/exe opens");
        // The default: the test binary itself, found from argv[0].
        let target = Target::resolve(None, &self_exe).expect("the running binary is a target");
        let exe = std::fs::read_link("/proc/self/exe").expect("readlink /proc/self/exe");
        assert_eq!(target.resolved, exe);
        assert_eq!(std::fs::read_link(target.exec_path()).expect("its fd"), exe);

        let dir = std::env::temp_dir().join(format!("supergo-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let plain = dir.join("plain");
        std::fs::write(&plain, "not a program").expect("write");
        let err = Target::resolve(Some(&plain), &self_exe).unwrap_err().0;
        assert!(
            err.contains("plain") && err.contains("not executable"),
            "{err}"
        );
        let err = Target::resolve(Some(&dir), &self_exe).unwrap_err().0;
        assert!(err.contains("not a regular file"), "{err}");
        let err = Target::resolve(Some(&dir.join("missing")), &self_exe)
            .unwrap_err()
            .0;
        assert!(
            err.contains("missing") && err.contains("No such file"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_memfd_holds_the_text_and_is_sealed() {
        let memfd = write_memfd("supergo-state 1.0\n").expect("memfd");
        let text = super::super::inherit::read_all(memfd.as_fd()).expect("read back");
        assert_eq!(text, "supergo-state 1.0\n");
        let seals = fcntl(&memfd, FcntlArg::F_GET_SEALS).expect("seals");
        assert_ne!(seals & nix::libc::F_SEAL_WRITE, 0);
        assert_eq!(nix::unistd::write(&memfd, b"x"), Err(Errno::EPERM));
        let flags = fcntl(&memfd, FcntlArg::F_GETFD).expect("flags");
        assert_ne!(
            flags & nix::libc::FD_CLOEXEC,
            0,
            "the memfd is O_CLOEXEC until the exec"
        );
    }

    #[test]
    fn a_failed_exec_puts_fd_flags_and_the_signal_mask_back() {
        let (read, _write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let memfd = write_memfd("x").expect("memfd");
        // A regular file that is not a program: execveat answers ENOEXEC.
        let not_elf = write_memfd("not a program").expect("memfd");
        let err = exec_image(
            not_elf.as_fd(),
            &["x".into()],
            &memfd,
            &[read.as_raw_fd()],
            None,
        );
        assert!(!err.is_empty());
        for fd in [read.as_raw_fd(), memfd.as_raw_fd()] {
            // SAFETY: both are open for the whole test.
            let flags =
                fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD).expect("flags");
            assert_ne!(
                flags & nix::libc::FD_CLOEXEC,
                0,
                "fd {fd} got FD_CLOEXEC back"
            );
        }
        let mut mask = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_SETMASK, None, Some(&mut mask)).expect("mask");
        assert!(
            !mask.contains(nix::sys::signal::SIGTERM),
            "the mask was restored"
        );
        // An fd that is not open cannot be handed over: said, and nothing executed.
        let err = exec_image(not_elf.as_fd(), &["x".into()], &memfd, &[999_999], None);
        assert!(err.contains("fd 999999 cannot be handed over"), "{err}");
    }
}
