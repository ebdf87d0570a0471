//! Spawning under stress (issue 12, items 5, 6 and 9), on the real supergo:
//! - a child hung before its exec (a test hook delays its `chdir`, standing in for a hung
//!   NFS/FUSE mount) freezes nobody else: other exits are reaped, other programs restart
//!   and start, status answers;
//! - a child that switches user makes no setxid broadcast to supergo's threads (strace);
//! - stop and SIGKILL reach the process and its group through its pidfd (strace), and
//!   supergo keeps no pidfd or other fd of children it has reaped.
//!
//! Tests that need strace or root say so loudly when they cannot run, and fail under
//! `CI=true` (CI runs as root and installs strace).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::util::{
    descendants, fail, pid_alive, pid_of, poll_until, proc_stat, supergo_bin, wait_pid_gone,
    Supergo, TIMEOUT,
};

// ---------------------------------------------------------------------------------------------
// A supergo with an extra environment, or under strace

/// supergo started by this module rather than by `Supergo::spawn`, which cannot run it under
/// a wrapper that stays its parent (strace) nor add the test hook's variable to such a run.
/// `sg` still gives the directory, config and API; dropping this kills the daemon, and
/// registers everything it started with `sg`, whose own drop then kills those.
struct Daemon<'a> {
    sg: &'a Supergo,
    /// supergo itself, or strace with supergo as its child.
    root: Child,
    wrapped: bool,
}

impl<'a> Daemon<'a> {
    /// `WRAPPER… supergo --config … --listen …` as the harness sets it up
    /// (`Supergo::daemon_command`: output to `supergo.out`/`supergo.err`, so `sg.log()`
    /// works; a process group of its own), with `env` added.
    fn start(sg: &'a Supergo, wrapper: &[&OsStr], env: &[(&str, &Path)]) -> Daemon<'a> {
        let mut cmd = sg.daemon_command(wrapper);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let root = cmd
            .spawn()
            .unwrap_or_else(|e| fail(format!("cannot start {cmd:?}: {e}")));
        let mut daemon = Daemon {
            sg,
            root,
            wrapped: !wrapper.is_empty(),
        };
        daemon.wait_ready();
        daemon
    }

    fn root_pid(&self) -> i32 {
        i32::try_from(self.root.id()).expect("a pid fits in pid_t")
    }

    /// supergo's pid: the root, or the root's child when the root is strace.
    fn supergo_pid(&self) -> i32 {
        poll_until(TIMEOUT, "supergo to run under its wrapper", || {
            self.supergo_pid_now()
        })
    }

    /// `supergo_pid` without waiting (None: the wrapper has not started it yet).
    fn supergo_pid_now(&self) -> Option<i32> {
        let root = self.root_pid();
        if !self.wrapped {
            return Some(root);
        }
        descendants(root)
            .into_iter()
            .find(|p| p.ppid == root)
            .map(|p| p.pid)
    }

    fn wait_ready(&mut self) {
        poll_until(TIMEOUT, "supergo's control API to answer", || {
            if let Ok(Some(status)) = self.root.try_wait() {
                fail(format!("supergo exited ({status}) before answering"));
            }
            self.sg.request("GET", "/status").ok().map(drop)
        });
    }

    /// Asks supergo to stop everything and exit (SIGTERM), and waits for the root (strace
    /// exits after its tracee, having written all of its trace).
    fn stop(&mut self) {
        let supergo = self.supergo_pid();
        self.register_descendants();
        kill(Pid::from_raw(supergo), Signal::SIGTERM).expect("SIGTERM to supergo");
        let root = &mut self.root;
        poll_until(TIMEOUT * 2, "supergo (and its wrapper) to exit", || {
            root.try_wait().expect("waitpid on the root")
        });
    }

    fn register_descendants(&self) {
        for p in descendants(self.root_pid()) {
            self.sg.register(p.pid);
        }
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if let Ok(None) = self.root.try_wait() {
            // Stopped first, so that it starts nothing while its children are collected.
            if let Some(supergo) = self.supergo_pid_now() {
                let _ = kill(Pid::from_raw(supergo), Signal::SIGSTOP);
            }
            self.register_descendants();
            // The root leads the group that holds it and supergo (not supergo's children:
            // each has a session of its own, and the `sg` registered them).
            let _ = killpg(Pid::from_raw(self.root_pid()), Signal::SIGKILL);
            let _ = self.root.wait();
        }
    }
}

fn exe_of(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The targets of `pid`'s open fds (`pipe:[…]`, `socket:[…]`, `anon_inode:[pidfd]`, …).
fn fd_targets(pid: i32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .map(|t| t.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Pidfds show as `anon_inode:[pidfd]`, or `pidfd:[…]` since Linux 6.9 (pidfs).
fn pidfds_of(pid: i32) -> usize {
    fd_targets(pid)
        .iter()
        .filter(|t| *t == "anon_inode:[pidfd]" || t.starts_with("pidfd:"))
        .count()
}

fn non_socket_fds_of(pid: i32) -> usize {
    fd_targets(pid)
        .iter()
        // Not the state file, which its writer thread holds open for a moment after each
        // change of the process table (issue 15): under its temp name while it writes, under
        // the final name once renamed, until it closes it.
        .filter(|t| !t.starts_with("socket:"))
        .filter(|t| !t.contains(".state"))
        .count()
}

/// True when strace can be used; else says loudly why the test cannot run (a failure under
/// `CI=true`: CI installs strace).
fn strace_available(test: &str) -> bool {
    let found = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let reason = format!(
            "SKIPPED {test}: it needs strace (Debian: apt-get install strace; .ci/run installs it)"
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason}, and CI=true: CI must run it");
        }
        eprintln!("\n*** {reason} ***\n");
    }
    found
}

fn strace_args<'a>(trace: &'a Path, syscalls: &'a str) -> Vec<&'a OsStr> {
    vec![
        OsStr::new("strace"),
        OsStr::new("-f"),
        OsStr::new("-o"),
        trace.as_os_str(),
        OsStr::new("-e"),
        OsStr::new(syscalls),
    ]
}

fn read_trace(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| fail(format!("read {}: {e}", path.display())))
}

// ---------------------------------------------------------------------------------------------
// Item 5: one hung exec freezes nothing else

/// The config of the hung-exec tests: `crasher` (priority 1, so it runs before the hang
/// begins), `hung`, whose child hangs before its `chdir` (the test hook), and `later`,
/// started by hand.
const HUNG_CONFIG: &str = r#"
[program.crasher]
command = "{probe} sleep"
start_secs = 0.2
priority = 1

[program.hung]
command = "{probe} sleep"
directory = "{dir}/hung"
priority = 2

[program.later]
command = "{probe} sleep"
start_secs = 0.2
autostart = false
"#;

/// Starts supergo with the hook on `{dir}/hung`; the pid of `crasher` and of the child that
/// hangs before its exec.
fn start_with_a_hung_exec(sg: &Supergo) -> (Daemon<'_>, i32, i32) {
    fs::create_dir(sg.path("hung")).expect("create the hung program's directory");
    sg.write_config(HUNG_CONFIG);
    let hook_dir = sg.path("hung");
    let daemon = Daemon::start(
        sg,
        &[],
        &[("SUPERGO_TEST_HANG_BEFORE_CHDIR", hook_dir.as_path())],
    );
    let crasher = sg.running_pid("crasher");
    let hung = poll_until(TIMEOUT, "a child of supergo hung before its exec", || {
        hung_child(&daemon)
    });
    (daemon, crasher, hung)
}

/// A child of supergo that has not exec'd yet: it still runs supergo's binary.
fn hung_child(daemon: &Daemon<'_>) -> Option<i32> {
    let supergo = daemon.supergo_pid();
    let exe = fs::canonicalize(supergo_bin()).expect("the supergo binary");
    descendants(supergo)
        .into_iter()
        .find(|p| p.ppid == supergo && exe_of(p.pid).as_deref() == Some(exe.as_path()))
        .map(|p| p.pid)
}

fn assert_still_hung(daemon: &Daemon<'_>, hung: i32) {
    assert_eq!(
        hung_child(daemon),
        Some(hung),
        "the hung child must still be hanging, or the test showed nothing:\n{}",
        daemon.sg.dump()
    );
}

fn assert_status_answers(sg: &Supergo) {
    let out = sg.ctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && ["crasher", "hung", "later"]
                .iter()
                .all(|n| text.contains(n)),
        "supergoctl status must answer ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    sg.api_ok("GET", "/status");
}

#[test]
fn a_hung_exec_does_not_stop_other_exits_from_being_reaped() {
    let sg = Supergo::new("hung_exec_reaps");
    let (daemon, crasher, hung) = start_with_a_hung_exec(&sg);
    kill(Pid::from_raw(crasher), Signal::SIGKILL).expect("SIGKILL to crasher");
    // The worker logs the exit it was routed: `crasher[PID]: killed by signal 9 …`, or
    // `… pid PID killed by signal 9 … after start` for a process younger than a second.
    poll_until(TIMEOUT, "supergo to log crasher's exit", || {
        sg.log()
            .lines()
            .any(|l| l.contains(&crasher.to_string()) && l.contains("killed by signal 9"))
            .then_some(())
    });
    assert_status_answers(&sg);
    assert_still_hung(&daemon, hung);
}

#[test]
fn a_hung_exec_does_not_stop_other_programs_from_restarting_or_starting() {
    let sg = Supergo::new("hung_exec_spawns");
    let (daemon, crasher, hung) = start_with_a_hung_exec(&sg);
    kill(Pid::from_raw(crasher), Signal::SIGKILL).expect("SIGKILL to crasher");
    let restarted = poll_until(TIMEOUT, "crasher to run again with a new pid", || {
        let status = sg.status("crasher");
        let pid = status["pid"].as_i64().and_then(|p| i32::try_from(p).ok());
        (status["state"] == "Running" && pid.is_some_and(|p| p > 0 && p != crasher))
            .then_some(status)
    });
    let out = sg.ctl(&["start", "later"]);
    assert!(
        out.status.success(),
        "start later: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    sg.running_pid("later");
    assert_status_answers(&sg);
    assert_still_hung(&daemon, hung);
    assert!(pid_alive(pid_of(&restarted)));
}

// ---------------------------------------------------------------------------------------------
// Item 6: no setxid broadcast from the child

#[test]
fn switching_user_in_the_child_signals_none_of_supergos_threads() {
    let test = "switching_user_in_the_child_signals_none_of_supergos_threads";
    if !strace_available(test) {
        return;
    }
    let Some((user, _)) = crate::settings::test_account(test) else {
        return;
    };
    let sg = Supergo::new("setxid");
    sg.write_config(&format!(
        r#"
[program.web]
command = "sleep 1000"
directory = "/"
start_secs = 0.2
user = "{}"
"#,
        user.name
    ));
    let trace = sg.path("strace.txt");
    let syscalls = "trace=clone,clone3,vfork,execve,setgroups,setresgid,setresuid,setgid,\
                    setuid,setregid,setreuid,tgkill,tkill,rt_tgsigqueueinfo";
    let mut daemon = Daemon::start(&sg, &strace_args(&trace, syscalls), &[]);
    let child = sg.running_pid("web");
    daemon.stop();
    let text = read_trace(&trace);
    let mine: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(child.to_string().as_str()))
        .collect();
    let exec = mine
        .iter()
        .position(|l| l.contains("execve(") && l.contains("sleep"))
        .unwrap_or_else(|| fail(format!("no execve of pid {child} in the trace:\n{text}")));
    let before_exec = &mine[..exec];
    let show = || before_exec.join("\n");
    assert!(
        !before_exec
            .iter()
            .any(|l| l.contains("tgkill(") || l.contains("tkill(") || l.contains("SIGRT_1")),
        "the child signalled threads before its exec (glibc's setxid broadcast):\n{}",
        show()
    );
    assert!(
        !text.contains("--- SIGRT_1"),
        "a thread received SIGRT_1 (setxid) during the spawn:\n{text}"
    );
    for call in ["setgroups(", "setresgid(", "setresuid("] {
        assert!(
            before_exec.iter().any(|l| l.contains(call)),
            "the child switches user with {call}…) before its exec:\n{}",
            show()
        );
    }
    assert!(
        !before_exec
            .iter()
            .any(|l| l.contains("setuid(") || l.contains("setgid(")),
        "glibc's setuid/setgid wrappers are not used:\n{}",
        show()
    );
}

// ---------------------------------------------------------------------------------------------
// Item 9: signals through pidfds, and no pidfd leaks

/// Runs `config` (one program, `web`) under strace tracing the signal calls; stops `web`
/// `check_before` finds what else runs (from web's pid), `check_after` checks the stop.
/// The trace and web's pid; None when strace is missing (said loudly).
fn stop_under_strace(
    test: &str,
    config: &str,
    check_before: impl FnOnce(&Supergo, i32) -> Vec<i32>,
    check_after: impl FnOnce(&Supergo, i32, &[i32]),
) -> Option<(String, i32)> {
    if !strace_available(test) {
        return None;
    }
    let sg = Supergo::new(test);
    sg.write_config(config);
    let trace = sg.path("strace.txt");
    let mut daemon = Daemon::start(
        &sg,
        &strace_args(&trace, "trace=pidfd_send_signal,kill,tgkill,tkill"),
        &[],
    );
    let leader = sg.running_pid("web");
    let others = check_before(&sg, leader);
    sg.api_ok("POST", "/stop/web");
    check_after(&sg, leader, &others);
    daemon.stop();
    Some((read_trace(&trace), leader))
}

/// The grandchild that `probe spawn-grandchild` reported in `web.json`: what else runs.
fn reported_grandchild(sg: &Supergo, _leader: i32) -> Vec<i32> {
    let report = sg.read_report("web.json");
    let grandchild = report["grandchild"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or_else(|| fail(format!("no grandchild in {report}")));
    vec![grandchild]
}

/// The signal calls of the trace that name `signal` (`SIGTERM`, `SIGKILL`).
fn calls_with<'t>(trace: &'t str, call: &str, signal: &str) -> Vec<&'t str> {
    trace
        .lines()
        .filter(|l| l.contains(&format!("{call}(")) && l.contains(signal))
        .collect()
}

fn is_group_flag(line: &str) -> bool {
    line.contains("PIDFD_SIGNAL_PROCESS_GROUP") || line.contains("0x4")
}

/// No `kill(PID, SIG)` or `kill(-PID, SIG)` aimed at `pid`.
fn assert_no_kill_by_pid(trace: &str, pid: i32, signal: &str) {
    let by_pid: Vec<&str> = calls_with(trace, "kill", signal)
        .into_iter()
        .filter(|l| l.contains(&format!("kill({pid}, ")) || l.contains(&format!("kill(-{pid}, ")))
        .collect();
    assert!(
        by_pid.is_empty(),
        "{signal} went by pid, not through the pidfd: {by_pid:#?}"
    );
}

#[test]
fn stop_reaches_the_process_group_through_its_pidfd() {
    let config = r#"
[program.web]
command = "{probe} spawn-grandchild sleep"
start_secs = 0.2
environment = { PROBE_REPORT = "{dir}/web.json" }
"#;
    let Some((trace, leader)) = stop_under_strace(
        "pidfd_stop_group",
        config,
        reported_grandchild,
        |_, leader, others| {
            wait_pid_gone(leader, TIMEOUT);
            wait_pid_gone(others[0], TIMEOUT);
        },
    ) else {
        return;
    };
    let terms = calls_with(&trace, "pidfd_send_signal", "SIGTERM");
    assert!(
        terms.iter().any(|l| is_group_flag(l)),
        "SIGTERM to the group through the pidfd (PIDFD_SIGNAL_PROCESS_GROUP):\n{trace}"
    );
    assert_no_kill_by_pid(&trace, leader, "SIGTERM");
}

#[test]
fn sigkill_at_the_stop_deadline_reaches_the_group_through_its_pidfd() {
    // Leader and background child both ignore SIGTERM (ignored dispositions survive fork
    // and exec): only the SIGKILL to the group at `stop_timeout` ends them.
    let config = r#"
[program.web]
command = "sh -c 'trap \"\" TERM; sleep 1000 & exec sleep 1000'"
start_secs = 0.2
stop_timeout = 0.5
"#;
    let Some((trace, leader)) = stop_under_strace(
        "pidfd_kill_group",
        config,
        |_, leader| {
            poll_until(TIMEOUT, "the background sleep to start", || {
                let group: Vec<i32> = descendants(leader).into_iter().map(|p| p.pid).collect();
                (!group.is_empty()).then_some(group)
            })
        },
        |_, leader, others| {
            wait_pid_gone(leader, TIMEOUT);
            for pid in others {
                wait_pid_gone(*pid, TIMEOUT);
            }
        },
    ) else {
        return;
    };
    let kills = calls_with(&trace, "pidfd_send_signal", "SIGKILL");
    assert!(
        kills.iter().any(|l| is_group_flag(l)),
        "SIGKILL to the group through the pidfd at the deadline:\n{trace}"
    );
    assert_no_kill_by_pid(&trace, leader, "SIGKILL");
}

#[test]
fn stop_as_group_false_signals_the_process_alone_through_its_pidfd() {
    let config = r#"
[program.web]
command = "{probe} spawn-grandchild sleep"
start_secs = 0.2
stop_as_group = false
environment = { PROBE_REPORT = "{dir}/web.json" }
"#;
    let Some((trace, leader)) = stop_under_strace(
        "pidfd_stop_alone",
        config,
        reported_grandchild,
        |sg, leader, others| {
            sg.wait_state("web", "Stopped", TIMEOUT);
            wait_pid_gone(leader, TIMEOUT);
            assert!(
                pid_alive(others[0]),
                "the grandchild must not get the stop signal"
            );
            // strace exits only once every process it follows has.
            kill(Pid::from_raw(others[0]), Signal::SIGKILL).expect("SIGKILL the grandchild");
        },
    ) else {
        return;
    };
    let terms = calls_with(&trace, "pidfd_send_signal", "SIGTERM");
    assert!(
        !terms.is_empty() && terms.iter().all(|l| l.contains("SIGTERM, NULL, 0")),
        "SIGTERM to the process alone through the pidfd (flags 0):\n{trace}"
    );
    assert_no_kill_by_pid(&trace, leader, "SIGTERM");
}

#[test]
fn restarts_leave_no_pidfd_and_no_fd_behind() {
    let sg = Supergo::start(
        "pidfd_no_leak",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.1
"#,
    );
    let supergo = sg.pid();
    sg.running_pid("web");
    let baseline = non_socket_fds_of(supergo);
    assert_eq!(
        pidfds_of(supergo),
        1,
        "one pidfd for the one child: {:?}",
        fd_targets(supergo)
    );
    for _ in 0..25 {
        sg.api_ok("POST", "/restart/web");
    }
    let status = poll_until(TIMEOUT, "the last drain to end", || {
        let status = sg.status("web");
        (status["state"] == "Running" && status["draining"].as_array().is_none_or(Vec::is_empty))
            .then_some(status)
    });
    poll_until(TIMEOUT, "supergo's fds to return to their baseline", || {
        (pidfds_of(supergo) == 1 && non_socket_fds_of(supergo) == baseline).then_some(())
    });
    assert!(pid_alive(pid_of(&status)));
}

#[test]
fn children_failing_at_exec_leave_no_pidfd_behind() {
    let sg = Supergo::new("pidfd_exec_failure");
    // Exists and is executable, so the failure happens at the child's execve (ENOENT: no
    // interpreter); the child exits at once, often before its pid is registered.
    let script = sg.write_file("bad.sh", "#!/nonexistent/interpreter\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod bad.sh");
    sg.write_config(
        r#"
[program.bad]
command = "{dir}/bad.sh"
max_retry = 3
backoff_secs = 0.05
"#,
    );
    sg.spawn(&[]);
    sg.wait_ready();
    let status = sg.wait_state("bad", "Fatal", TIMEOUT);
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("interpreter")),
        "{status}"
    );
    poll_until(TIMEOUT, "supergo to close every pidfd", || {
        (pidfds_of(sg.pid()) == 0).then_some(())
    });
    let zombies: Vec<i32> = descendants(sg.pid())
        .into_iter()
        .filter(|p| proc_stat(p.pid).is_some_and(|s| s.state == 'Z'))
        .map(|p| p.pid)
        .collect();
    assert!(zombies.is_empty(), "unreaped children: {zombies:?}");
    let log = sg.log();
    assert!(
        !log.contains("no program owns"),
        "every exit reached its program:\n{log}"
    );
}
