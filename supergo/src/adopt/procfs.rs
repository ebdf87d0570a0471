//! What the kernel says about a process that supergo may adopt, read from /proc: its start
//! time and process group (`stat`), which of its fds is a given socket (`fd/`), and its
//! `SUPERGO_PROGRAM` (`environ`); and the socket inode of one of supergo's own fds.
//!
//! A pid alone does not name a process: pids are reused. A pid together with its start time
//! (field 22 of /proc/PID/stat, clock ticks after boot) does, within one boot; `boot_id`
//! tells boots apart.

use std::ffi::OsString;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStringExt;

use nix::sys::stat::{fstat, SFlag};
use nix::unistd::Pid;

/// The fields of /proc/PID/stat that adoption uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    /// Field 2, without its parentheses (the kernel's `comm`: at most 15 bytes, any bytes).
    pub comm: String,
    /// Field 3: R, S, D, Z (zombie), T, X, …
    pub state: char,
    pub ppid: i32,
    /// Field 5: the process group.
    pub pgid: i32,
    pub sid: i32,
    /// Field 22: when the process started, in clock ticks after boot.
    pub start_time: u64,
}

impl ProcStat {
    /// Still running: a zombie (Z) or dead (X) process has exited.
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Parses the text of /proc/PID/stat. The comm (field 2) is in parentheses and may itself
/// hold spaces and parentheses (`(a) (b c)`): it ends at the *last* `)` of the line, since
/// no later field can hold one.
pub fn parse_stat(pid: i32, text: &str) -> Result<ProcStat, String> {
    let bad = |what: &str| {
        format!(
            "/proc/{pid}/stat: {what} in {:?}",
            text.chars().take(120).collect::<String>()
        )
    };
    let open = text
        .find('(')
        .ok_or_else(|| bad("no `(` before the command name"))?;
    let close = text
        .rfind(')')
        .ok_or_else(|| bad("no `)` after the command name"))?;
    if close < open {
        return Err(bad("`)` before `(`"));
    }
    let comm = text[open + 1..close].to_string();
    // Field 3 onwards, one space apart: field N is fields[N - 3].
    let fields: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .copied()
            .ok_or_else(|| bad(&format!("no field {n}")))
    };
    let number = |n: usize| -> Result<i64, String> {
        field(n)?
            .parse()
            .map_err(|_| bad(&format!("field {n} is not a number")))
    };
    let state = field(3)?.chars().next().ok_or_else(|| bad("empty state"))?;
    let start_time = field(22)?
        .parse()
        .map_err(|_| bad("field 22 (start time) is not a number"))?;
    let as_pid = |n: usize| {
        number(n)
            .and_then(|v| i32::try_from(v).map_err(|_| bad(&format!("field {n} is out of range"))))
    };
    Ok(ProcStat {
        pid,
        comm,
        state,
        ppid: as_pid(4)?,
        pgid: as_pid(5)?,
        sid: as_pid(6)?,
        start_time,
    })
}

/// /proc/PID/stat, parsed. ENOENT when there is no such process.
pub fn stat(pid: Pid) -> io::Result<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(pid.as_raw(), &text).map_err(io::Error::other)
}

/// The start time the kernel records for `pid` (field 22 of /proc/PID/stat).
pub fn start_time(pid: Pid) -> io::Result<u64> {
    Ok(stat(pid)?.start_time)
}

/// True when `pid` still runs and is the process recorded with `start_time`: not an exited
/// one, and not a newer process that was given the same pid.
pub fn is_same_process(pid: Pid, start_time: u64) -> bool {
    stat(pid).is_ok_and(|stat| stat.is_alive() && stat.start_time == start_time)
}

/// True when a process of the process group `pgid` still runs (a zombie does not count,
/// though `killpg` still finds one). Reads every /proc/PID/stat: for the rare case of an
/// adopted group leader that exited and waits, a zombie, for its parent (init) to reap it.
pub fn group_has_live_member(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true; // cannot tell: assume it runs, the SIGKILL deadline still holds
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| stat(Pid::from_raw(pid)).ok())
        .any(|stat| stat.pgid == pgid && stat.is_alive())
}

/// The inode of the socket `fd` is: what /proc/PID/fd links name as `socket:[INODE]`.
pub fn socket_inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let stat = fstat(fd)?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io::Error::other(format!("fd {fd:?} is not a socket")));
    }
    Ok(stat.st_ino)
}

/// The fd of `pid` that is the socket with `inode`, found through the links in
/// /proc/PID/fd (not assumed to be fd 3: Go's `net.FileListener` dups it, and some children
/// close fd 3). `None` when the process holds no such socket; an error when its fds cannot
/// be listed (no permission, process gone).
pub fn find_socket_fd(pid: Pid, inode: u64) -> io::Result<Option<RawFd>> {
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let link = match std::fs::read_link(entry.path()) {
            Ok(link) => link,
            // An fd closed between the listing and the readlink is simply not it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            // No ptrace access (a non-dumpable process, for one): the directory lists, but
            // no link reads. Not "it holds no such socket".
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", entry.path().display()),
                ))
            }
        };
        if link.as_os_str() == wanted.as_str() {
            if let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                return Ok(Some(fd));
            }
        }
    }
    Ok(None)
}

/// The value of `name` in the environment `pid` was started with (/proc/PID/environ: what
/// execve received; a later `setenv` in the process does not show there).
pub fn environ_var(pid: Pid, name: &str) -> io::Result<Option<OsString>> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ"))?;
    Ok(find_var(&bytes, name))
}

/// `name`'s value in NUL-separated `NAME=value` entries.
pub fn find_var(environ: &[u8], name: &str) -> Option<OsString> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(OsString::from_vec(value.to_vec()))
    })
}

/// This boot's id: a state file from another boot names processes that are all gone.
pub fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}
