//! Everything a spawn needs that allocates or can fail, done before the clone: argv and envp
//! as C strings (with a fixed-width `LISTEN_PID=` slot the child fills in), the executable
//! resolved against PATH or the program's directory, stdin, the identity and rlimit plan
//! (`identity.rs`). The child then only reads and writes what is built here.
//!
//! Nothing here takes a lock shared with other programs: a slow user look-up (NSS over the
//! network) or a slow `stat` of the executable delays only the program being spawned.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::libc;
use nix::sys::resource::Resource;
use nix::sys::stat::Mode;

use super::environ;
use super::error::{cstring, fail, SpawnError};
use super::identity::{lookup_identity, rlimit_plan, Identity};
use crate::config::ProgramConfig;
use crate::listener::Listener;

/// Digits reserved for the pid in `LISTEN_PID=`: more than any Linux pid (at most 2^22).
pub(super) const PID_SLOT_DIGITS: usize = 20;

/// What to start, for one generation of one program.
pub struct SpawnRequest<'a> {
    pub config: &'a ProgramConfig,
    pub listeners: &'a [Arc<Listener>],
    pub generation: u64,
    /// `NOTIFY_SOCKET` for this process (ready = "notify").
    pub notify_socket: Option<&'a Path>,
    /// The child's fd 1 and fd 2 (log pipes, or /dev/null).
    pub stdio: (OwnedFd, OwnedFd),
}

/// Everything the child needs, allocated before the clone.
pub struct Prepared {
    pub(super) program: String,
    pub(super) executable: CString,
    pub(super) directory: CString,
    pub(super) argv: Vec<CString>,
    pub(super) argv_ptrs: Vec<*const libc::c_char>,
    /// The entries this spawn sets, NUL-terminated, in one buffer (see `environ`; the
    /// inherited ones are shared); kept as bytes so the child can write its pid into the
    /// `LISTEN_PID=` entry without allocating.
    pub(super) envp: Vec<u8>,
    pub(super) envp_ptrs: Vec<*const libc::c_char>,
    /// Where the `LISTEN_PID=` entry starts in `envp`.
    pub(super) listen_pid_slot: Option<usize>,
    pub(super) stdin: File,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
    pub(super) listener_fds: Vec<RawFd>,
    /// Keeps the listeners open at least until the clone is done.
    pub(super) _listeners: Vec<Arc<Listener>>,
    pub(super) umask: Option<Mode>,
    pub(super) rlimits: Vec<(Resource, u64)>,
    pub(super) identity: Option<Identity>,
    /// The executable is a path through `/proc/self/fd` or `/dev/fd`, so names one of
    /// supergo's own fds (an upgrade's pre-flight runs the new binary as `/proc/self/fd/N`):
    /// the child resolves it at its `execve`, so it needs a copy of supergo's whole fd table,
    /// not the fd slots alone (`fd_slots.rs`).
    pub(super) needs_whole_fd_table: bool,
    /// Test hook (debug builds only): the child sleeps before its `chdir`, standing in for
    /// a directory on a hung network mount. See [`test_hook`].
    #[cfg(debug_assertions)]
    pub(super) hang_before_chdir: bool,
}

/// Builds everything the child will need. Fails with a message naming the program and what
/// is wrong (executable not found, log file not writable, unknown user, …).
pub fn prepare(req: SpawnRequest<'_>) -> Result<Prepared, SpawnError> {
    let config = req.config;
    let name = &config.name;
    let argv0 = config
        .argv
        .first()
        .ok_or_else(|| fail(format!("{name}: empty command")))?;
    let identity = lookup_identity(config)?;
    let env = environ::build(&req, identity.as_ref().map(|(_, user)| user)).map_err(|key| {
        fail(format!(
            "{name}: environment variable {key} contains a NUL byte"
        ))
    })?;
    let path_var = match env.path {
        Some(path) => path,
        None => environ::supergo_path().unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin")),
    };
    let executable = resolve_executable(argv0, &config.directory, path_var)
        .map_err(|why| fail(format!("{name}: cannot execute {argv0}: {why}")))?;

    let (stdout, stderr) = req.stdio;
    let stdin =
        File::open("/dev/null").map_err(|e| fail(format!("{name}: cannot open /dev/null: {e}")))?;

    let argv = config
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes(), name, "an argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let environ::Environ {
        bytes: envp,
        pointers: envp_ptrs,
        listen_pid: listen_pid_slot,
        ..
    } = env;

    let mut prepared = Prepared {
        program: name.clone(),
        executable: cstring(
            executable.as_os_str().as_bytes(),
            name,
            "the executable path",
        )?,
        directory: cstring(
            config.directory.as_os_str().as_bytes(),
            name,
            "the directory",
        )?,
        argv,
        argv_ptrs: Vec::new(),
        // `envp_ptrs` point into `envp`: moving a vector does not move its buffer.
        envp,
        envp_ptrs,
        listen_pid_slot,
        stdin,
        stdout,
        stderr,
        listener_fds: req.listeners.iter().map(|l| l.raw_fd()).collect(),
        _listeners: req.listeners.to_vec(),
        umask: config
            .umask
            .map(|m| Mode::from_bits_truncate(m as libc::mode_t)),
        rlimits: rlimit_plan(config)?,
        identity: identity.map(|(id, _)| id),
        needs_whole_fd_table: names_own_fd(&executable),
        #[cfg(debug_assertions)]
        hang_before_chdir: test_hook::hang_dir() == Some(config.directory.as_path()),
    };
    // Of its exact size: a push after `collect` would double it.
    let mut argv_ptrs = Vec::with_capacity(prepared.argv.len() + 1);
    argv_ptrs.extend(prepared.argv.iter().map(|a| a.as_ptr()));
    argv_ptrs.push(std::ptr::null());
    prepared.argv_ptrs = argv_ptrs;
    Ok(prepared)
}

/// A first word without `/` is looked up in PATH; a relative path is taken from the
/// program's directory (the original supergo's `./server` keeps working).
fn resolve_executable(argv0: &str, directory: &Path, path_var: &OsStr) -> Result<PathBuf, String> {
    if argv0.contains('/') {
        let path = directory.join(argv0);
        let shown = lexically_normal(&path);
        return match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Err(format!("{} is a directory", shown.display())),
            Ok(_) => Ok(path),
            Err(e) => Err(format!("{}: {}", shown.display(), io_reason(&e))),
        };
    }
    std::env::split_paths(path_var)
        .map(|dir| {
            if dir.is_relative() {
                directory.join(dir).join(argv0)
            } else {
                dir.join(argv0)
            }
        })
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| format!("not found in PATH ({})", path_var.to_string_lossy()))
}

/// True for a path that names an fd of the process that opens it (see
/// `Prepared::needs_whole_fd_table`).
fn names_own_fd(path: &Path) -> bool {
    ["/proc/self/fd/", "/proc/thread-self/fd/", "/dev/fd/"]
        .iter()
        .any(|dir| path.starts_with(dir))
}

/// `path` without `.` and `a/..` components, for messages only: with symlinks the lexical
/// form may name another file, so it is never what gets executed.
pub(super) fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// A test hook, compiled into debug builds only (the integration tests run those): a child
/// whose program `directory` is the one named by `SUPERGO_TEST_HANG_BEFORE_CHDIR` sleeps for
/// an hour just before its `chdir`, as a `chdir` into a hung NFS or FUSE mount would block,
/// so that the tests can show that one hung exec freezes nobody else. Read once, by
/// supergo (never in the child); release builds have no such variable.
#[cfg(debug_assertions)]
mod test_hook {
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    pub(super) fn hang_dir() -> Option<&'static Path> {
        static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
        DIR.get_or_init(|| std::env::var_os("SUPERGO_TEST_HANG_BEFORE_CHDIR").map(PathBuf::from))
            .as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_and_path_lookups() {
        let dir = Path::new("/");
        assert_eq!(
            resolve_executable("sh", dir, OsStr::new("/nonexistent:/bin:/usr/bin")).unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert!(
            resolve_executable("no-such-binary-xyz", dir, OsStr::new("/bin"))
                .unwrap_err()
                .contains("not found in PATH")
        );
        assert!(
            resolve_executable("./missing", Path::new("/tmp"), OsStr::new("/bin"))
                .unwrap_err()
                .contains("No such file")
        );
    }

    #[test]
    fn a_path_through_an_fd_of_supergo_needs_its_whole_table() {
        assert!(names_own_fd(Path::new("/proc/self/fd/426")));
        assert!(names_own_fd(Path::new("/dev/fd/7")));
        assert!(!names_own_fd(Path::new("/usr/bin/supergo")));
        assert!(!names_own_fd(Path::new("/proc/selfish/fd/3")));
    }
}
