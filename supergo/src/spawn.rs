//! Starting a child: `clone(CLONE_VM | CLONE_VFORK)` + `execve` (what posix_spawn does),
//! with everything allocated before the clone.
//!
//! `prepare` does all the work that can fail or allocate (argv, envp, the resolved
//! executable, opened stdio targets, uid/gid/groups looked up by name, the rlimit plan);
//! `fork` starts the child, which makes only async-signal-safe calls, in this order:
//!
//! 1. every catchable signal back to SIG_DFL (Rust ignores SIGPIPE, and signal-hook's
//!    handlers must never run in the child), real-time signals too, then an empty mask;
//! 2. `setsid()`: its own session and process group, so stop and kill reach grandchildren;
//! 3. `chdir`, `umask`;
//! 4. stdin from /dev/null, stdout/stderr to the targets opened before (log pipes);
//! 5. listeners to fd 3, 4, …: first every listener is duplicated above `3 + n` (so that no
//!    `dup2` can overwrite a listener not yet moved), then each is `dup2`ed to `3 + i` and its
//!    FD_CLOEXEC cleared explicitly (`dup2(fd, fd)` is a no-op that would leave it set);
//! 6. `setrlimit` (after the fd moves, so a low `nofile` cannot break them), then
//!    `setgroups` → `setgid` → `setuid` (groups and gid first, while root allows it);
//! 7. the child's pid written in place into the `LISTEN_PID=` slot reserved in envp;
//! 8. `execve`; on failure the step and errno go to the exec-error pipe and `_exit(127)`
//!    (126 when the file exists but cannot be executed, as shells and tini do).
//!
//! The parent reads the exec-error pipe (O_CLOEXEC, kept above fd 3 + n): EOF means the exec
//! happened.
//!
//! Deviations: from DESIGN.md's "fork", for speed (a fork copies every mapping, one stack
//! per program thread: ~4 ms with 1000 programs, against ~0.4 ms); from systemd, none in
//! what the child sees. `LISTEN_*` variables are omitted entirely when a program has no
//! listeners, as systemd does.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::libc;
use nix::sched::CloneFlags;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{
    pthread_sigmask, sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{self, Gid, Group, Pid, Uid, User};

use crate::config::ProgramConfig;
use crate::listener::Listener;

/// The stack a child runs on between clone and exec (it needs little: a few syscalls).
static CHILD_STACK: std::sync::Mutex<[u8; 64 * 1024]> = std::sync::Mutex::new([0; 64 * 1024]);

/// Digits reserved for the pid in `LISTEN_PID=`: more than any Linux pid (at most 2^22).
const PID_SLOT_DIGITS: usize = 20;

/// Variables supergo sets itself; inherited copies (supergo may itself be socket-activated)
/// are removed so that a child never sees a stale value.
const OWN_VARIABLES: [&str; 6] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "SUPERGO_PROGRAM",
    "SUPERGO_GENERATION",
];

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

/// A spawn that could not happen, with an operator-facing reason.
#[derive(Debug, Clone)]
pub struct SpawnError {
    /// Set when a child was forked and then failed before or at `execve`: its exit will
    /// still be reaped and routed; the caller must not take it for a running process.
    pub pid: Option<Pid>,
    pub message: String,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn fail(message: String) -> SpawnError {
    SpawnError { pid: None, message }
}

/// The identity the child takes (supergo running as root).
struct Identity {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    /// False when supergo already runs as that user (not root): no switch to make.
    switch: bool,
}

/// The steps of the child's setup, reported with errno through the exec-error pipe.
#[derive(Clone, Copy)]
#[repr(u32)]
enum Step {
    Signals = 1,
    Session,
    Chdir,
    Rlimit,
    Identity,
    Stdio,
    Listeners,
    Exec,
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
        ]
        .into_iter()
        .find(|s| *s as u32 == n)
    }
}

/// Everything the child needs, allocated before the fork.
pub struct Prepared {
    program: String,
    executable: CString,
    directory: CString,
    argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    /// Each entry NUL-terminated. Kept as byte vectors so the child can write its pid
    /// into the `LISTEN_PID=` entry without allocating.
    envp: Vec<Vec<u8>>,
    envp_ptrs: Vec<*const libc::c_char>,
    listen_pid_slot: Option<usize>,
    stdin: File,
    stdout: OwnedFd,
    stderr: OwnedFd,
    listener_fds: Vec<RawFd>,
    /// Keeps the listeners open at least until the fork is done.
    _listeners: Vec<Arc<Listener>>,
    umask: Option<Mode>,
    rlimits: Vec<(Resource, u64)>,
    identity: Option<Identity>,
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
    let env = build_env(&req, identity.as_ref().map(|(_, user)| user));
    let path_var = env
        .iter()
        .find_map(|(k, v)| (k == "PATH").then(|| v.clone()))
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let executable = resolve_executable(argv0, &config.directory, &path_var)
        .map_err(|why| fail(format!("{name}: cannot execute {argv0}: {why}")))?;

    let (stdout, stderr) = req.stdio;
    let stdin =
        File::open("/dev/null").map_err(|e| fail(format!("{name}: cannot open /dev/null: {e}")))?;

    let argv = config
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes(), name, "an argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut envp = Vec::with_capacity(env.len() + 4);
    for (key, value) in &env {
        let mut entry = key.as_bytes().to_vec();
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        if entry.contains(&0) {
            return Err(fail(format!(
                "{name}: environment variable {} contains a NUL byte",
                key.to_string_lossy()
            )));
        }
        entry.push(0);
        envp.push(entry);
    }
    let mut listen_pid_slot = None;
    if !req.listeners.is_empty() {
        listen_pid_slot = Some(envp.len());
        let mut slot = b"LISTEN_PID=".to_vec();
        slot.extend(std::iter::repeat_n(0u8, PID_SLOT_DIGITS + 1));
        envp.push(slot);
    }

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
        envp,
        envp_ptrs: Vec::new(),
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
    };
    prepared.argv_ptrs = prepared.argv.iter().map(|a| a.as_ptr()).collect();
    prepared.argv_ptrs.push(std::ptr::null());
    prepared.envp_ptrs = prepared
        .envp
        .iter_mut()
        .map(|e| e.as_mut_ptr() as *const libc::c_char)
        .collect();
    prepared.envp_ptrs.push(std::ptr::null());
    Ok(prepared)
}

fn cstring(bytes: &[u8], program: &str, what: &str) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| fail(format!("{program}: {what} contains a NUL byte")))
}

/// The environment: supergo's own (unless `clear_env`), then the user's identity, then
/// `environment`, then the protocol variables.
fn build_env(req: &SpawnRequest<'_>, user: Option<&User>) -> Vec<(OsString, OsString)> {
    let config = req.config;
    let mut env: Vec<(OsString, OsString)> = if config.clear_env {
        Vec::new()
    } else {
        std::env::vars_os()
            .filter(|(k, _)| !OWN_VARIABLES.iter().any(|own| k == OsStr::new(own)))
            .collect()
    };
    let mut set = |key: &str, value: OsString| {
        env.retain(|(k, _)| k != OsStr::new(key));
        env.push((OsString::from(key), value));
    };
    if let Some(user) = user {
        set("HOME", user.dir.clone().into_os_string());
        set("USER", OsString::from(&user.name));
        set("LOGNAME", OsString::from(&user.name));
    }
    for (key, value) in &config.environment {
        set(key, OsString::from(value));
    }
    if !req.listeners.is_empty() {
        set(
            "LISTEN_FDS",
            OsString::from(req.listeners.len().to_string()),
        );
        set(
            "LISTEN_FDNAMES",
            OsString::from(config.listen_names.join(":")),
        );
    }
    if let Some(path) = req.notify_socket {
        set("NOTIFY_SOCKET", path.as_os_str().to_os_string());
    }
    set("SUPERGO_PROGRAM", OsString::from(&config.name));
    set(
        "SUPERGO_GENERATION",
        OsString::from(req.generation.to_string()),
    );
    env
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

/// `path` without `.` and `a/..` components, for messages only: with symlinks the lexical
/// form may name another file, so it is never what gets executed.
fn lexically_normal(path: &Path) -> PathBuf {
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

fn lookup_identity(config: &ProgramConfig) -> Result<Option<(Identity, User)>, SpawnError> {
    let name = &config.name;
    let Some(user_name) = &config.user else {
        if let Some(group_name) = &config.group {
            let group = lookup_group(name, group_name)?;
            let me = User::from_uid(Uid::effective()).ok().flatten();
            if !Uid::effective().is_root() {
                return Err(fail(format!(
                    "{name}: group `{group_name}` requested, but supergo does not run as root and cannot change groups"
                )));
            }
            if let Some(me) = me {
                return Ok(Some((
                    Identity {
                        uid: me.uid,
                        gid: group.gid,
                        groups: vec![group.gid],
                        switch: true,
                    },
                    me,
                )));
            }
        }
        return Ok(None);
    };
    let user = User::from_name(user_name)
        .map_err(|e| {
            fail(format!(
                "{name}: cannot look up user `{user_name}`: {}",
                e.desc()
            ))
        })?
        .ok_or_else(|| fail(format!("{name}: unknown user `{user_name}`")))?;
    if !Uid::effective().is_root() && Uid::effective() != user.uid {
        return Err(fail(format!(
            "{name}: user `{user_name}` requested, but supergo runs as uid {} and only root can switch users",
            Uid::effective()
        )));
    }
    let gid = match &config.group {
        Some(group_name) => lookup_group(name, group_name)?.gid,
        None => user.gid,
    };
    if !Uid::effective().is_root() {
        // Already that user: nothing to switch (setgroups would fail without root), but
        // HOME/USER/LOGNAME are still set from it.
        if gid != Gid::effective() {
            return Err(fail(format!(
                "{name}: group {gid} requested, but supergo runs as gid {} and only root can switch groups",
                Gid::effective()
            )));
        }
        return Ok(Some((
            Identity {
                uid: user.uid,
                gid,
                groups: Vec::new(),
                switch: false,
            },
            user,
        )));
    }
    let c_name = cstring(user_name.as_bytes(), name, "the user name")?;
    let mut groups = unistd::getgrouplist(&c_name, gid).map_err(|e| {
        fail(format!(
            "{name}: cannot list the groups of `{user_name}`: {}",
            e.desc()
        ))
    })?;
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    Ok(Some((
        Identity {
            uid: user.uid,
            gid,
            groups,
            switch: true,
        },
        user,
    )))
}

fn lookup_group(program: &str, group_name: &str) -> Result<Group, SpawnError> {
    Group::from_name(group_name)
        .map_err(|e| {
            fail(format!(
                "{program}: cannot look up group `{group_name}`: {}",
                e.desc()
            ))
        })?
        .ok_or_else(|| fail(format!("{program}: unknown group `{group_name}`")))
}

fn rlimit_plan(config: &ProgramConfig) -> Result<Vec<(Resource, u64)>, SpawnError> {
    config
        .rlimits
        .iter()
        .map(|(key, value)| {
            let resource = match key.as_str() {
                "as" => Resource::RLIMIT_AS,
                "core" => Resource::RLIMIT_CORE,
                "cpu" => Resource::RLIMIT_CPU,
                "data" => Resource::RLIMIT_DATA,
                "fsize" => Resource::RLIMIT_FSIZE,
                "memlock" => Resource::RLIMIT_MEMLOCK,
                "nofile" => Resource::RLIMIT_NOFILE,
                "nproc" => Resource::RLIMIT_NPROC,
                "rss" => Resource::RLIMIT_RSS,
                "stack" => Resource::RLIMIT_STACK,
                "msgqueue" => Resource::RLIMIT_MSGQUEUE,
                "nice" => Resource::RLIMIT_NICE,
                "rtprio" => Resource::RLIMIT_RTPRIO,
                "sigpending" => Resource::RLIMIT_SIGPENDING,
                "locks" => Resource::RLIMIT_LOCKS,
                other => return Err(fail(format!("{}: unknown rlimit `{other}`", config.name))),
            };
            let value = if *value == u64::MAX {
                libc::RLIM_INFINITY
            } else {
                *value
            };
            Ok((resource, value))
        })
        .collect()
}

/// A forked child whose `execve` has not been confirmed yet.
pub struct Forked {
    pub pid: Pid,
    err_read: OwnedFd,
}

/// Forks the prepared child. The caller registers the pid (see `reaper`) and then calls
/// `wait_exec`; the split lets the reaper's lock cover the fork and the registration only,
/// not the wait for `execve`.
pub fn fork(prepared: &mut Prepared) -> Result<Forked, SpawnError> {
    let name = prepared.program.clone();
    // O_CLOEXEC: the write end vanishes at a successful exec, which is how the parent
    // learns that the exec happened (EOF).
    let (err_read, err_write) = unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| {
        fail(format!(
            "{name}: cannot create the exec-error pipe: {}",
            e.desc()
        ))
    })?;
    // The child moves listeners to 3..3+n; a write end below that would be overwritten by a
    // listener, and an exec error would then be written into a socket instead of the pipe.
    let above = 3 + prepared.listener_fds.len() as RawFd;
    let err_write = if err_write.as_raw_fd() < above {
        let fd = fcntl(&err_write, FcntlArg::F_DUPFD_CLOEXEC(above)).map_err(|e| {
            fail(format!(
                "{name}: cannot move the exec-error pipe: {}",
                e.desc()
            ))
        })?;
        // SAFETY: F_DUPFD_CLOEXEC just returned this new fd, owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    } else {
        err_write
    };

    // Block every signal in this thread across the fork: the child starts with them
    // blocked, so no signal-hook handler can run in it before it resets dispositions.
    let mut old_mask = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old_mask),
    )
    .map_err(|e| fail(format!("{name}: cannot block signals: {}", e.desc())))?;
    // clone(CLONE_VM | CLONE_VFORK), as posix_spawn does, rather than fork: fork copies
    // every mapping of supergo, including one stack per worker thread, and costs ~4 ms with
    // 1000 programs against ~0.4 ms for this. The child shares supergo's memory until it
    // execs, while this thread is suspended, so it must not touch anything another thread
    // could: it only makes syscalls and writes into `prepared`, which this (suspended)
    // thread owns. It has its own copy of the fd table, signal handlers, cwd and umask
    // (no CLONE_FILES, CLONE_SIGHAND or CLONE_FS). The stack is allocated here, before.
    // One stack serves every child: clones are serialized by its lock, and each child is
    // done with it (exec'd or exited) before clone returns.
    let mut stack = CHILD_STACK.lock().unwrap_or_else(|p| p.into_inner());
    let err_fd = err_write.as_raw_fd();
    let child = Box::new(|| -> isize { child_after_fork(prepared, err_fd) });
    // SAFETY: see above; SIGCHLD as the exit signal makes the child an ordinary one for
    // waitpid (the reaper).
    let cloned = unsafe {
        nix::sched::clone(
            child,
            &mut stack[..],
            CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK,
            Some(libc::SIGCHLD),
        )
    };
    drop(stack);
    let result = match cloned {
        Ok(pid) => Ok(Forked { pid, err_read }),
        Err(e) => Err(fail(format!(
            "{name}: cannot start a process: {}",
            e.desc()
        ))),
    };
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    result
}

impl Forked {
    /// Waits until the child has exec'd (Ok) or reported why it could not (Err, with the
    /// pid set: its exit is still reaped and routed).
    pub fn wait_exec(self, prepared: &Prepared) -> Result<Pid, SpawnError> {
        let pid = self.pid;
        let mut report = [0u8; 8];
        let mut filled = 0;
        while filled < report.len() {
            match unistd::read(&self.err_read, &mut report[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(SpawnError {
                        pid: Some(pid),
                        message: format!(
                            "{}: cannot read the exec-error pipe of pid {pid}: {}",
                            prepared.program,
                            e.desc()
                        ),
                    })
                }
            }
        }
        if filled == 0 {
            return Ok(pid);
        }
        let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
        let errno = Errno::from_raw(i32::from_ne_bytes([
            report[4], report[5], report[6], report[7],
        ]));
        Err(SpawnError {
            pid: Some(pid),
            message: describe_failure(prepared, Step::from_u32(step), errno),
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
        None => format!("{name}: the child failed before exec: {why}"),
    }
}

/// Runs in the forked child. Async-signal-safe calls only: no allocation, no locks, no
/// logging. Never returns.
fn child_after_fork(p: &mut Prepared, err_fd: RawFd) -> ! {
    let result = setup_child(p);
    let (step, errno) = match result {
        Ok(()) => {
            // SAFETY: pointer arrays are NUL-terminated and point into buffers owned by
            // `p`, which outlives this call.
            unsafe {
                libc::execve(
                    p.executable.as_ptr(),
                    p.argv_ptrs.as_ptr(),
                    p.envp_ptrs.as_ptr(),
                )
            };
            (Step::Exec, Errno::last())
        }
        Err(failure) => failure,
    };
    let mut report = [0u8; 8];
    report[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    report[4..].copy_from_slice(&(errno as i32).to_ne_bytes());
    // SAFETY: err_fd is the write end of the exec-error pipe, open in this process.
    let err = unsafe { BorrowedFd::borrow_raw(err_fd) };
    let _ = unistd::write(err, &report);
    let code = if matches!(step, Step::Exec) && matches!(errno, Errno::EACCES | Errno::ENOEXEC) {
        126
    } else {
        127
    };
    // SAFETY: _exit is async-signal-safe and skips atexit handlers and stdio flushing,
    // which belong to the parent.
    unsafe { libc::_exit(code) }
}

fn setup_child(p: &mut Prepared) -> Result<(), (Step, Errno)> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL cannot violate any handler's invariants.
        unsafe { sigaction(signal, &default) }.map_err(|e| (Step::Signals, e))?;
    }
    // Real-time signals are not in nix's `Signal`; a launcher that spawned supergo with
    // posix_spawn may have left some ignored, and ignored dispositions survive exec. glibc
    // reserves the first two for itself (EINVAL): nothing to reset there.
    for signo in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        // SAFETY: signal(2) with SIG_DFL is async-signal-safe and installs no handler.
        unsafe { libc::signal(signo, libc::SIG_DFL) };
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| (Step::Signals, e))?;

    unistd::setsid().map_err(|e| (Step::Session, e))?;
    unistd::chdir(p.directory.as_c_str()).map_err(|e| (Step::Chdir, e))?;
    if let Some(mask) = p.umask {
        umask(mask);
    }
    unistd::dup2_stdin(p.stdin.as_fd()).map_err(|e| (Step::Stdio, e))?;
    unistd::dup2_stdout(p.stdout.as_fd()).map_err(|e| (Step::Stdio, e))?;
    unistd::dup2_stderr(p.stderr.as_fd()).map_err(|e| (Step::Stdio, e))?;

    pass_listeners(&mut p.listener_fds)?;

    // After the fd moves: a low `nofile` must not stop the child from duplicating the
    // listeners while it still holds supergo's fds. Before dropping root: raising a hard
    // limit needs it. Soft and hard both take the value, as systemd's `LimitNOFILE=N` does.
    for (resource, value) in &p.rlimits {
        setrlimit(*resource, *value, *value).map_err(|e| (Step::Rlimit, e))?;
    }
    if let Some(id) = p.identity.as_ref().filter(|id| id.switch) {
        unistd::setgroups(&id.groups).map_err(|e| (Step::Identity, e))?;
        unistd::setgid(id.gid).map_err(|e| (Step::Identity, e))?;
        unistd::setuid(id.uid).map_err(|e| (Step::Identity, e))?;
    }

    if let Some(index) = p.listen_pid_slot {
        write_pid(&mut p.envp[index], unistd::getpid());
    }
    Ok(())
}

/// Moves the listeners to 3, 4, … (step 5 of the module docs).
fn pass_listeners(fds: &mut [RawFd]) -> Result<(), (Step, Errno)> {
    let above = 3 + fds.len() as RawFd;
    for fd in fds.iter_mut() {
        // SAFETY: the listener fds are open in this process (inherited from the parent).
        let borrowed = unsafe { BorrowedFd::borrow_raw(*fd) };
        // F_DUPFD_CLOEXEC: the temporary copy closes itself at exec.
        *fd =
            fcntl(borrowed, FcntlArg::F_DUPFD_CLOEXEC(above)).map_err(|e| (Step::Listeners, e))?;
    }
    for (i, fd) in fds.iter().enumerate() {
        let target = 3 + i as RawFd;
        // SAFETY: both fds are open; the returned OwnedFd is forgotten because the target
        // must stay open across exec.
        let source = unsafe { BorrowedFd::borrow_raw(*fd) };
        let moved =
            unsafe { unistd::dup2_raw(source, target) }.map_err(|e| (Step::Listeners, e))?;
        fcntl(moved.as_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
            .map_err(|e| (Step::Listeners, e))?;
        std::mem::forget(moved);
    }
    Ok(())
}

/// Writes `LISTEN_PID=<digits>\0` into the reserved slot, without allocating.
fn write_pid(slot: &mut [u8], pid: Pid) {
    let prefix = b"LISTEN_PID=".len();
    let mut digits = [0u8; PID_SLOT_DIGITS];
    let mut n = pid.as_raw().unsigned_abs();
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

/// Sends `signal` to a child: to its whole process group (its pgid is its pid, after
/// `setsid`) when `as_group`, else to the pid alone. A process that is already gone is not
/// an error.
pub fn signal_child(pid: Pid, signal: Signal, as_group: bool) {
    let result = if as_group {
        nix::sys::signal::killpg(pid, signal)
    } else {
        nix::sys::signal::kill(pid, signal)
    };
    if let Err(e) = result {
        if e != Errno::ESRCH {
            crate::warn!("cannot send {signal} to pid {pid}: {}", e.desc());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pid_in_place() {
        let mut slot = b"LISTEN_PID=".to_vec();
        slot.extend(std::iter::repeat_n(0u8, PID_SLOT_DIGITS + 1));
        write_pid(&mut slot, Pid::from_raw(4_194_304));
        assert_eq!(&slot[..19], b"LISTEN_PID=4194304\0");
        write_pid(&mut slot, Pid::from_raw(7));
        assert_eq!(&slot[..13], b"LISTEN_PID=7\0");
    }

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
}
