//! A program's processes that left its process group, and supergo as the subreaper that keeps
//! them within reach.
//!
//! supergo stops a program by signalling its process group (spawn makes each process the
//! leader of a session and group of its own). A descendant that calls `setsid` — a helper
//! that daemonizes, `setsid cmd &` in a script — leaves that group and would outlive its
//! program. Two things bring it back:
//! - [`become_subreaper`]: when supergo is not PID 1 (PID 1 already inherits every orphan),
//!   it sets `PR_SET_CHILD_SUBREAPER`, so an orphaned descendant is reparented to supergo
//!   instead of to init: it stays in supergo's tree, and its exit is reaped by supergo;
//! - [`find_escaped`]: at a program's stop, every process that descends from supergo, carries
//!   `SUPERGO_PROGRAM=<name>` in its environment (spawn sets it; descendants inherit it) and is
//!   in none of the process groups the worker signals anyway.
//!
//! Whose a process is: the variable alone does not say, since another supergo on the same
//! machine may run a program of the same name. A candidate counts only when it descends from
//! this supergo, and the ancestor right under supergo (the program's own process, or the
//! candidate itself once it was orphaned and reparented) carries the same name. So a supergo
//! run as a program of this one never lends us its children, whatever their names.
//!
//! Pid reuse: a process found is pinned with a pidfd (`pidfd_open`, Linux 5.3), and its start
//! time is checked again after the pidfd exists; signals then go through the pidfd, which
//! never reaches a later process that got the same pid. Without pidfds (older kernels) a
//! signal goes by pid after the start time is checked again, which leaves a small window.
//!
//! Limits: a process that clears or rewrites its environment, or whose `/proc/PID/environ`
//! supergo may not read (a set-uid program), is not found; neither is one that was orphaned
//! while supergo could not be its subreaper.

mod snapshot;

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;
use std::time::Instant;

use nix::errno::Errno;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The variable spawn sets in every child's environment.
const PROGRAM_VARIABLE: &str = "SUPERGO_PROGRAM";

/// Makes supergo the parent of its programs' orphaned descendants (see the module docs).
/// PID 1 is that already. A failure is one warning: everything else works without it.
pub fn become_subreaper() {
    if std::process::id() == 1 {
        return;
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        crate::warn!(
            "cannot become a child subreaper (prctl PR_SET_CHILD_SUBREAPER: {}): a program's \
             descendants that leave its process group (setsid) will not be stopped with it",
            e.desc()
        );
    }
}

/// A process of a program outside its process group, pinned (see the module docs).
#[derive(Debug)]
pub struct Escaped {
    pid: Pid,
    start_time: u64,
    /// `None` on a kernel without `pidfd_open`.
    pidfd: Option<OwnedFd>,
}

impl Escaped {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends `signal` to this process, and to no other. `Err(ESRCH)` once it is gone.
    pub fn signal(&self, signal: Signal) -> Result<(), Errno> {
        match &self.pidfd {
            Some(pidfd) => pidfd_send_signal(pidfd, signal as libc::c_int),
            None if self.same_process() => kill(self.pid, signal),
            None => Err(Errno::ESRCH),
        }
    }

    /// True once the process has exited (a zombie counts: it runs no more).
    pub fn has_exited(&self) -> bool {
        match &self.pidfd {
            // A pidfd turns readable when its process exits.
            Some(pidfd) => {
                let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
                matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            }
            None => read_stat(self.pid.as_raw()).is_none_or(|stat| {
                stat.start_time != self.start_time || stat.state == 'Z' || stat.state == 'X'
            }),
        }
    }

    fn same_process(&self) -> bool {
        read_stat(self.pid.as_raw()).is_some_and(|stat| stat.start_time == self.start_time)
    }
}

/// Every process of `program` that escaped its process groups `groups` (those the worker
/// signals itself), among supergo's descendants. The order is unspecified.
///
/// Passing the groups of *every* program's processes (not only this one's) costs nothing in
/// what is found, since a process in another program's group is not this program's, and
/// spares reading the environment of each of those processes.
///
/// The process table is shared with the callers of the same moment (see `snapshot`): at a
/// shutdown, every program asks at once.
pub fn find_escaped(program: &str, groups: &[Pid]) -> Vec<Escaped> {
    find_escaped_from(program, groups, &[])
}

/// [`find_escaped`], also among the descendants of `adopted`: processes of the program that
/// supergo adopted after a crash (issue 15). They are not supergo's descendants, nor are
/// their helpers; each was proven the program's own at its adoption (pid, start time and
/// `SUPERGO_PROGRAM`), so what descends from it and carries the program's name is the
/// program's too. (A helper orphaned while no supergo was its subreaper went to init and
/// is out of reach: nothing ties it to this supergo any more.)
pub fn find_escaped_from(program: &str, groups: &[Pid], adopted: &[Pid]) -> Vec<Escaped> {
    static SHARED: OnceLock<snapshot::Shared> = OnceLock::new();
    let table = SHARED
        .get_or_init(snapshot::Shared::default)
        .since(Instant::now());
    let mut roots = vec![Pid::this()];
    roots.extend_from_slice(adopted);
    find_under(&table, &roots, program, groups)
}

/// [`find_escaped`] among the descendants of `roots`, in `table`.
fn find_under(
    table: &HashMap<i32, Stat>,
    roots: &[Pid],
    program: &str,
    groups: &[Pid],
) -> Vec<Escaped> {
    let roots: Vec<i32> = roots.iter().map(|root| root.as_raw()).collect();
    // A set: the worker passes the groups of every program, a thousand with as many programs.
    let groups: HashSet<i32> = groups.iter().map(|group| group.as_raw()).collect();
    let mut found = Vec::new();
    for stat in table.values() {
        if roots.contains(&stat.pid) || stat.state == 'Z' || groups.contains(&stat.pgid) {
            continue;
        }
        let top = roots
            .iter()
            .find_map(|root| top_under(*root, stat.pid, table));
        let Some(top) = top else {
            continue; // not in supergo's tree, nor under an adopted process
        };
        if !runs_for(stat.pid, program) || (top != stat.pid && !runs_for(top, program)) {
            continue;
        }
        if let Some(escaped) = pin(stat) {
            found.push(escaped);
        }
    }
    found
}

/// The ancestor of `pid` whose parent is `root` (`pid` itself when `root` is its parent), or
/// `None` when `pid` does not descend from `root`.
fn top_under(root: i32, pid: i32, table: &HashMap<i32, Stat>) -> Option<i32> {
    let mut current = pid;
    // Bounded: a table read while processes come and go may hold a cycle of reused pids.
    for _ in 0..=table.len() {
        let parent = table.get(&current)?.ppid;
        if parent == root {
            return Some(current);
        }
        if parent <= 1 {
            return None;
        }
        current = parent;
    }
    None
}

/// True when the environment of `pid` holds `SUPERGO_PROGRAM=program`.
fn runs_for(pid: i32, program: &str) -> bool {
    let wanted = format!("{PROGRAM_VARIABLE}={program}");
    // A process in the middle of `execve` shows an empty environment for a moment (the new
    // image's is not in place yet), so an empty one is read again a few times before it is
    // believed. A process that really has none costs a few milliseconds, once per stop.
    for _ in 0..EMPTY_ENVIRON_READS {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            return false; // gone, or not ours to read
        };
        if !environ.is_empty() {
            return environ
                .split(|&b| b == 0)
                .any(|entry| entry == wanted.as_bytes());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}

/// How often an empty `/proc/PID/environ` is read before it is taken as empty.
const EMPTY_ENVIRON_READS: usize = 5;

/// A pidfd for the process `stat` describes, if it still is that process once the pidfd
/// exists.
fn pin(stat: &Stat) -> Option<Escaped> {
    let pid = Pid::from_raw(stat.pid);
    let pidfd = pidfd_open(pid);
    // Checked after the pidfd was opened: if the start time still matches, the pidfd refers
    // to the process that was matched, not to a newer holder of its pid.
    let now = read_stat(stat.pid)?;
    if now.start_time != stat.start_time {
        return None;
    }
    Some(Escaped {
        pid,
        start_time: stat.start_time,
        pidfd,
    })
}

/// A pidfd of `pid` (O_CLOEXEC, as every pidfd is); `None` on a kernel before 5.3 or when the
/// process is gone. nix has no pidfd calls, hence `libc::syscall`.
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just gave us this fd, and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// nix has no pidfd calls, hence `libc::syscall`.
fn pidfd_send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> Result<(), Errno> {
    // SAFETY: a pidfd we own, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// The fields of `/proc/PID/stat` this module needs.
#[derive(Clone, Copy, Debug)]
struct Stat {
    pid: i32,
    state: char,
    ppid: i32,
    pgid: i32,
    /// Clock ticks after boot: with the pid, it names one process even after pid reuse.
    start_time: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself hold spaces and ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3 (state): field N is fields[N - 3].
    Some(Stat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Every process (not thread) of this pid namespace, by pid.
fn process_table() -> HashMap<i32, Stat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .map(|stat| (stat.pid, stat))
        .collect()
}

#[cfg(test)]
mod tests;
