//! Is a recorded process still the one supergo recorded, and may it be adopted? And taking a
//! listening socket back from the process that holds it.
//!
//! A recorded pid is trusted only when /proc says, for that pid: alive, the recorded start
//! time (so not a newer process given the same pid), and `SUPERGO_PROGRAM` set to the
//! recorded program (so not a process a tampered or stale state file names). Anything else is
//! left alone: supergo never signals a process it cannot prove it started. A process proven
//! by pid and start time whose environment or fds supergo may not read (no ptrace access)
//! cannot be adopted: it is stopped.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::unistd::Pid;

use super::pidfd::{pidfd_getfd, pidfd_open};
use super::plan::Found;
use super::procfs;
use super::table::ProcessEntry;

/// What became of a recorded process.
pub enum Verdict {
    /// Still running, and this program's: `Found`, with the reason it cannot be adopted,
    /// if any (no pidfd: the kernel is too old).
    Ours(Found, Option<String>),
    /// It exited (its pid may name another process now).
    Gone(String),
    /// Running, but not provably this program's process: left alone.
    NotOurs(String),
}

/// Checks the recorded process `entry` of `program`.
pub fn check(entry: &ProcessEntry, program: &str) -> Verdict {
    let pid = Pid::from_raw(entry.pid);
    let what = format!("pid {pid} (generation {})", entry.generation);
    let stat = match procfs::stat(pid) {
        Ok(stat) if stat.is_alive() => stat,
        _ => return Verdict::Gone(format!("{what} exited while supergo was down")),
    };
    if stat.start_time != entry.start_ticks {
        return Verdict::Gone(format!(
            "{what} exited while supergo was down: pid {pid} now belongs to another process \
             (started at tick {}, not {}), which is not adopted",
            stat.start_time, entry.start_ticks
        ));
    }
    // Its environment is readable only with ptrace access: without it, the pid and start
    // time (from a state file only supergo's user can write) say it is the process
    // recorded, but it cannot be adopted either (its sockets need the same access).
    let mut why_not = None;
    match procfs::environ_var(pid, "SUPERGO_PROGRAM") {
        Ok(Some(value)) if value == program => {}
        Ok(Some(value)) => {
            return Verdict::NotOurs(format!(
                "{what} runs with SUPERGO_PROGRAM={value:?}, not {program:?}: not adopted, left alone"
            ))
        }
        Ok(None) => {
            return Verdict::NotOurs(format!(
                "{what} has no SUPERGO_PROGRAM in its environment: not one of supergo's processes; not adopted, left alone"
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            why_not = Some(format!(
                "pid {pid} cannot be adopted: no permission to read /proc/{pid}/environ ({e}): \
                 supergo lacks ptrace access to it, which taking its sockets back needs too"
            ));
        }
        Err(e) => return Verdict::Gone(format!("{what}: /proc/{pid}/environ: {e}: it exited")),
    }
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => Some(fd),
        Err(e) => {
            why_not.get_or_insert(format!(
                "pid {pid} cannot be adopted: {e}; without a pidfd its listening sockets cannot be taken back"
            ));
            None
        }
    };
    // The pidfd was opened after the checks: make sure it holds the process checked.
    if pidfd.is_some() && !procfs::is_same_process(pid, entry.start_ticks) {
        return Verdict::Gone(format!("{what} exited while supergo was starting"));
    }
    let found = Found {
        pid,
        generation: entry.generation,
        start_ticks: entry.start_ticks,
        role: entry.role,
        stop_signal: entry.stop_signal,
        stop_timeout: entry.stop_timeout,
        stop_as_group: entry.stop_as_group,
        pidfd,
    };
    Verdict::Ours(found, why_not)
}

/// True when fd 1 or 2 of `pid` is a pipe: supergo gives a child either a log pipe or
/// /dev/null, so a pipe is the old supergo's, which nobody reads any more.
pub fn writes_to_pipe(pid: Pid) -> bool {
    [1, 2].iter().any(|fd| {
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .is_ok_and(|link| link.to_string_lossy().starts_with("pipe:"))
    })
}

/// What came of looking for a socket in one process.
pub enum Taking {
    /// The socket, taken back (a new fd in supergo, close-on-exec).
    Taken(OwnedFd),
    /// The process does not hold it.
    NotHeld,
    /// The process holds it, but it could not be taken: the exact reason.
    Failed(String),
}

/// Takes the socket with `inode` back from `found`, through its pidfd.
pub fn take_socket(found: &Found, inode: u64, addr: &str) -> Taking {
    let pid = found.pid;
    let fd = match procfs::find_socket_fd(pid, inode) {
        Ok(Some(fd)) => fd,
        Ok(None) => return Taking::NotHeld,
        Err(e) => {
            return Taking::Failed(format!(
                "cannot look through /proc/{pid}/fd for its listening socket of {addr}: {e} (that, and taking the socket back, need ptrace access to the process)"
            ))
        }
    };
    let Some(pidfd) = &found.pidfd else {
        return Taking::Failed(format!(
            "it holds the socket of {addr} (its fd {fd}), which cannot be taken back without a pidfd"
        ));
    };
    let socket = match pidfd_getfd(pidfd.as_fd(), fd) {
        Ok(socket) => socket,
        Err(e) => {
            return Taking::Failed(format!(
                "cannot take back its listening socket for {addr} (its fd {fd}): {e}"
            ))
        }
    };
    // The process may have closed that fd and opened another at its number meanwhile.
    match procfs::socket_inode(socket.as_fd()) {
        Ok(found) if found == inode => Taking::Taken(socket),
        _ => Taking::NotHeld,
    }
}

/// How long ago a process with `start_ticks` (field 22 of /proc/PID/stat: clock ticks after
/// boot) started, by /proc/uptime (the same clock, suspend included). None when /proc or
/// sysconf does not say.
pub fn age(start_ticks: u64) -> Option<Duration> {
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)? as f64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Duration::from_secs_f64(
        (uptime - start_ticks as f64 / per_second).max(0.0),
    ))
}
