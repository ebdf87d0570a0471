//! What the kernel says about a process: CPU ticks, RSS, threads, open fds, children.
//!
//! `/proc/PID/stat` fields 14 and 15 (`utime`, `stime`) are the process's own CPU time in clock
//! ticks, all threads included and waited-for children excluded (those are `cutime`/`cstime`),
//! so the CPU a supervisor spends is not inflated by the work of the programs it runs.

use std::fs;

/// A process's own user + system CPU time, in clock ticks.
pub fn cpu_ticks(pid: i32) -> Result<u64, String> {
    let text = read(pid, "stat")?;
    let stat = parse_stat(&text).ok_or_else(|| format!("/proc/{pid}/stat: cannot parse"))?;
    Ok(stat.utime + stat.stime)
}

/// When the process started, in clock ticks after boot.
pub fn start_ticks(pid: i32) -> Result<u64, String> {
    let text = read(pid, "stat")?;
    let stat = parse_stat(&text).ok_or_else(|| format!("/proc/{pid}/stat: cannot parse"))?;
    Ok(stat.starttime)
}

/// Clock ticks per second (`CLK_TCK`), for turning ticks into time.
pub fn ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 100,
    }
}

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: i32) -> Result<u64, String> {
    status_field(pid, "VmRSS")
}

/// Number of threads.
pub fn threads(pid: i32) -> Result<u64, String> {
    status_field(pid, "Threads")
}

/// Number of open file descriptors.
pub fn fd_count(pid: i32) -> Result<usize, String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))
}

/// Whether the process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    read(pid, "stat")
        .ok()
        .and_then(|t| parse_stat(&t))
        .is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// One entry of `/proc/PID/stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub utime: u64,
    pub stime: u64,
    /// When the process started, in clock ticks after boot (field 22).
    pub starttime: u64,
}

/// Parses `/proc/PID/stat`. `comm` may hold spaces and parentheses, so the fields after it are
/// found from the **last** `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    Some(Stat {
        pid,
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgrp: rest.get(2)?.parse().ok()?,
        utime: rest.get(11)?.parse().ok()?,
        stime: rest.get(12)?.parse().ok()?,
        starttime: rest.get(19)?.parse().ok()?,
    })
}

/// Every process whose parent is `parent` (a scan of /proc; processes that vanish meanwhile are
/// skipped).
pub fn children(parent: i32) -> Vec<Stat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| parse_stat(&read(pid, "stat").ok()?))
        .filter(|s| s.ppid == parent)
        .collect()
}

/// Children of `parent` that are zombies (exited, not yet reaped).
pub fn zombie_children(parent: i32) -> usize {
    children(parent).iter().filter(|s| s.state == 'Z').count()
}

/// Children of `parent` that are alive.
pub fn live_children(parent: i32) -> usize {
    children(parent)
        .iter()
        .filter(|s| s.state != 'Z' && s.state != 'X')
        .count()
}

fn status_field(pid: i32, key: &str) -> Result<u64, String> {
    let text = read(pid, "status")?;
    parse_status_field(&text, key).ok_or_else(|| format!("/proc/{pid}/status: no {key}"))
}

/// The number in a `Key:   123 kB` line of `/proc/PID/status`.
pub fn parse_status_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if k != key {
            return None;
        }
        v.split_whitespace().next()?.parse().ok()
    })
}

fn read(pid: i32, file: &str) -> Result<String, String> {
    fs::read_to_string(format!("/proc/{pid}/{file}"))
        .map_err(|e| format!("/proc/{pid}/{file}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let text =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 3 0 123 456 789";
        let s = parse_stat(text).expect("parses");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "a (b) c");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgrp, 4242);
        assert_eq!((s.utime, s.stime), (17, 5));
        assert_eq!(s.starttime, 123);
    }

    #[test]
    fn parses_status_fields() {
        let text = "Name:\tsupergo\nVmRSS:\t    2345 kB\nThreads:\t9\n";
        assert_eq!(parse_status_field(text, "VmRSS"), Some(2345));
        assert_eq!(parse_status_field(text, "Threads"), Some(9));
        assert_eq!(parse_status_field(text, "VmSwap"), None);
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id() as i32;
        assert!(rss_kib(me).is_ok_and(|k| k > 0));
        assert!(threads(me).is_ok_and(|t| t >= 1));
        assert!(cpu_ticks(me).is_ok());
        assert!(fd_count(me).is_ok_and(|n| n >= 3));
        assert!(alive(me));
    }
}
