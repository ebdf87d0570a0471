//! Real processes, started as supergo starts a program (a process group of its own, with
//! `SUPERGO_PROGRAM` set), some of which leave the group with `setsid`. The test process
//! plays supergo: the descendants searched are its own.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::killpg;

use super::*;

/// A program name no other test (nor another run) uses.
fn unique_name() -> String {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "desc-test-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::SeqCst)
    )
}

/// `sh -c script` as the leader of a process group of its own, with `SUPERGO_PROGRAM=name`;
/// killed with every process it started (by group and by the pids it printed) when dropped.
struct Program {
    child: Child,
    lines: BufReader<ChildStdout>,
    printed: Vec<i32>,
}

impl Program {
    fn start(name: &str, script: &str) -> Program {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env(PROGRAM_VARIABLE, name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start sh");
        let stdout = child.stdout.take().expect("a piped stdout");
        Program {
            child,
            lines: BufReader::new(stdout),
            printed: Vec::new(),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits in pid_t"))
    }

    /// The next pid the script printed (`echo $!`).
    fn next_pid(&mut self) -> i32 {
        let mut line = String::new();
        self.lines.read_line(&mut line).expect("read from sh");
        let pid = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("sh printed {line:?}, not a pid"));
        self.printed.push(pid);
        pid
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = killpg(self.pid(), Signal::SIGKILL);
        for pid in &self.printed {
            // Our own descendants, or orphans we saw start a moment ago: the tests end before
            // a pid could be reused.
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 10 ms for at most 10 s.
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `pid` runs `sleep`: past its last `execve`, so its environment is final
/// (a forked shell shows its parent's until it execs, and nothing in the middle of one).
fn wait_exec_sleep(pid: i32) {
    poll(&format!("pid {pid} to exec sleep"), || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "sleep").then_some(())
    });
}

fn pids(found: &[Escaped]) -> Vec<i32> {
    let mut pids: Vec<i32> = found.iter().map(|e| e.pid().as_raw()).collect();
    pids.sort_unstable();
    pids
}

#[test]
fn finds_a_setsid_descendant_and_leaves_the_group_alone() {
    let name = unique_name();
    // One helper stays in the group, one leaves it; sh waits for both.
    let mut program = Program::start(
        &name,
        "sleep 300 & echo $!; setsid sleep 300 & echo $!; wait",
    );
    let in_group = program.next_pid();
    let escaped = program.next_pid();
    let groups = [program.pid()];
    // `$!` is printed right after the fork: wait until the helper has called setsid.
    let found = poll("the setsid'd helper to be found", || {
        let found = find_escaped(&name, &groups);
        (pids(&found) == [escaped]).then_some(found)
    });
    assert!(!pids(&found).contains(&in_group));
    assert!(!pids(&found).contains(&program.pid().as_raw()));

    let helper = &found[0];
    assert!(!helper.has_exited());
    helper.signal(Signal::SIGTERM).expect("signal the helper");
    poll("the helper to exit after SIGTERM", || {
        helper.has_exited().then_some(())
    });
    // The process in the group was not touched.
    assert_eq!(kill(Pid::from_raw(in_group), None), Ok(()));
    assert!(read_stat(in_group).is_some_and(|s| s.state != 'Z'));
}

#[test]
fn without_groups_to_skip_the_program_itself_is_found() {
    // The worker passes the groups it signals; whatever is outside them is returned, the
    // program's own process too when its group is not passed (stop_as_group = false).
    let name = unique_name();
    let program = Program::start(&name, "exec sleep 300");
    let found = poll("the program's process to be found", || {
        let found = find_escaped(&name, &[]);
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(pids(&found), [program.pid().as_raw()]);
    assert!(find_escaped(&name, &[program.pid()]).is_empty());
}

#[test]
fn processes_of_another_program_are_not_found() {
    let name = unique_name();
    let other = unique_name();
    let mut program = Program::start(&other, "setsid sleep 300 & echo $!; wait");
    let escaped = program.next_pid();
    // Found under its own name (so it did escape), never under another.
    poll("the other program's helper to be found", || {
        (pids(&find_escaped(&other, &[program.pid()])) == [escaped]).then_some(())
    });
    assert!(find_escaped(&name, &[]).is_empty());
}

#[test]
fn a_program_run_by_another_program_is_not_claimed() {
    // A supergo run as program `inner` starts children that carry their own names, maybe
    // the name of one of ours: they are the inner supergo's, not ours.
    let name = unique_name();
    let inner = unique_name();
    let script = format!("{PROGRAM_VARIABLE}={name} setsid sleep 300 & echo $!; exec sleep 300");
    let mut program = Program::start(&inner, &script);
    let nested = program.next_pid();
    wait_exec_sleep(nested);
    assert_eq!(
        read_stat(nested).map(|s| s.pgid),
        Some(nested),
        "it left the group"
    );
    assert!(runs_for(nested, &name), "the helper carries our name");
    assert!(
        find_escaped(&name, &[]).is_empty(),
        "a process under another program's process is not ours"
    );
}

#[test]
fn an_orphan_outside_our_tree_is_not_claimed() {
    // Another supergo's program of the same name: its helper descends from that supergo (or,
    // orphaned, from init), not from us. Here: sh exits, and its helper is reparented away
    // from the test process, which is no subreaper.
    let name = unique_name();
    let mut program = Program::start(&name, "setsid sleep 300 & echo $!");
    let orphan = program.next_pid();
    let _ = program.child.wait();
    poll("the helper to be orphaned", || {
        let parent = read_stat(orphan)?.ppid;
        (parent != program.pid().as_raw()).then_some(())
    });
    wait_exec_sleep(orphan);
    assert!(runs_for(orphan, &name));
    assert!(find_escaped(&name, &[]).is_empty());
}

#[test]
fn a_process_that_is_gone_cannot_be_signalled() {
    let name = unique_name();
    let mut program = Program::start(&name, "setsid sleep 300 & echo $!; wait");
    let escaped = program.next_pid();
    let found = poll("the helper to be found", || {
        let found = find_escaped(&name, &[program.pid()]);
        (pids(&found) == [escaped]).then_some(found)
    });
    kill(Pid::from_raw(escaped), Signal::SIGKILL).expect("kill the helper");
    // sh's `wait` reaps it: the pid is free, and the pinned process must not be confused
    // with whatever gets that pid later.
    poll("the helper to be reaped by sh", || {
        read_stat(escaped).is_none().then_some(())
    });
    assert!(found[0].has_exited());
    assert_eq!(found[0].signal(Signal::SIGTERM), Err(Errno::ESRCH));
}
