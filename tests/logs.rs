//! Children's output (DESIGN.md, `stdout_file`, `stderr_file`, `redirect_stderr`,
//! `log_max_bytes`, `log_backups`; `GET /log/NAME`; `supergoctl tail`; SIGUSR1): where each
//! stream lands, how files rotate and reopen, and how the tails are served.
//!
//! The probe writes `probe: started pid N` to stdout and `probe: pid N started: …` to stderr
//! when it starts, so each new process puts one known line in each stream.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use nix::sys::signal::Signal;

use crate::util::{
    clean_exec_state, fail, poll_until, supergoctl_bin, KillOnDrop, Supergo, TIMEOUT,
};

/// The pid of `name` once it is Running.
fn running_pid(sg: &Supergo, name: &str) -> i64 {
    let status = sg.wait_state(name, "Running", TIMEOUT);
    status["pid"]
        .as_i64()
        .filter(|pid| *pid > 0)
        .unwrap_or_else(|| fail(format!("{name} is Running without a pid: {status}")))
}

/// What the probe of `pid` writes to stdout, and to stderr.
fn stdout_line(pid: i64) -> String {
    format!("probe: started pid {pid}\n")
}

fn stderr_line(pid: i64) -> String {
    format!("probe: pid {pid} started")
}

/// Waits until the file `relative` (in the test dir) contains `needle`; its text.
fn wait_file_contains(sg: &Supergo, relative: &str, needle: &str) -> String {
    poll_until(TIMEOUT, &format!("{needle:?} in {relative}"), || {
        let text = fs::read_to_string(sg.path(relative)).ok()?;
        text.contains(needle).then_some(text)
    })
}

/// `POST /restart/NAME` that must succeed; the new pid.
fn restart(sg: &Supergo, name: &str) -> i64 {
    let (http, body) = sg.api("POST", &format!("/restart/{name}"));
    if http != 200 {
        fail(format!("POST /restart/{name}: HTTP {http}: {body}"));
    }
    body["data"]["new_pid"]
        .as_i64()
        .unwrap_or_else(|| fail(format!("no new_pid in the restart's answer: {body}")))
}

#[test]
fn stdout_and_stderr_go_to_their_own_files() {
    let sg = Supergo::start(
        "logs_stdout_stderr",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
stdout_file = "{dir}/web.out"
stderr_file = "{dir}/web.err"
"#,
    );
    let pid = running_pid(&sg, "web");
    let out = wait_file_contains(&sg, "web.out", &stdout_line(pid));
    let err = wait_file_contains(&sg, "web.err", &stderr_line(pid));
    assert!(
        !out.contains(&stderr_line(pid)),
        "no stderr in web.out: {out:?}"
    );
    assert!(
        !err.contains(&stdout_line(pid)),
        "no stdout in web.err: {err:?}"
    );
}

#[test]
fn redirect_stderr_writes_stderr_into_the_stdout_file() {
    let sg = Supergo::start(
        "logs_redirect_stderr",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
stdout_file = "{dir}/web.out"
stderr_file = "{dir}/web.err"
redirect_stderr = true
"#,
    );
    let pid = running_pid(&sg, "web");
    wait_file_contains(&sg, "web.out", &stdout_line(pid));
    wait_file_contains(&sg, "web.out", &stderr_line(pid));
    let err = fs::read_to_string(sg.path("web.err")).unwrap_or_default();
    assert!(
        !err.contains(&stderr_line(pid)),
        "with redirect_stderr, stderr_file gets nothing: {err:?}"
    );
}

/// The numbers of the `line NNNNN …` lines of a rotated file, checking that each line is
/// whole; the probe's own start line may close the newest file.
fn numbered_lines(path: &str, text: &str) -> Vec<u32> {
    text.lines()
        .filter(|line| !line.starts_with("probe: started pid "))
        .map(|line| {
            let number = line
                .strip_prefix("line ")
                .and_then(|rest| rest.strip_suffix(" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))
                .and_then(|n| n.parse().ok());
            number.unwrap_or_else(|| fail(format!("{path}: a cut or foreign line {line:?}")))
        })
        .collect()
}

#[test]
fn log_rotates_at_log_max_bytes_and_keeps_log_backups() {
    // 3000 lines of 42 bytes (126 kB) into files of at most 10000 bytes, 3 backups kept.
    let sg = Supergo::start(
        "logs_rotation",
        r#"
[program.chatty]
command = '''sh -c 'i=0; while [ $i -lt 3000 ]; do printf "line %05d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n" $i; i=$((i+1)); done; exec {probe} sleep' '''
start_secs = 0.2
stdout_file = "{dir}/chatty.out"
log_max_bytes = 10000
log_backups = 3
"#,
    );
    let pid = running_pid(&sg, "chatty");
    // The probe's line comes after the 3000 others: once it is there, all of them are.
    wait_file_contains(&sg, "chatty.out", &stdout_line(pid));
    assert!(
        !sg.path("chatty.out.4").exists(),
        "log_backups = 3 keeps chatty.out.1 to .3 only"
    );
    let mut numbers = Vec::new();
    for name in ["chatty.out.3", "chatty.out.2", "chatty.out.1", "chatty.out"] {
        let text = fs::read_to_string(sg.path(name))
            .unwrap_or_else(|err| fail(format!("{name} must exist after rotation: {err}")));
        assert!(
            text.len() <= 10_000,
            "{name} has {} bytes, more than log_max_bytes",
            text.len()
        );
        if name != "chatty.out" {
            assert!(
                text.len() > 10_000 - 42,
                "{name} ({} bytes) was rotated before it was full",
                text.len()
            );
        }
        numbers.extend(numbered_lines(name, &text));
    }
    let last = *numbers.last().expect("some lines");
    assert_eq!(last, 2999, "the newest line is in chatty.out");
    let first = numbers[0];
    let expected: Vec<u32> = (first..=last).collect();
    assert!(
        numbers == expected,
        "the kept files hold consecutive lines, oldest in .3, none lost or repeated"
    );
}

#[test]
fn get_log_returns_the_tail_of_the_requested_stream() {
    let sg = Supergo::start(
        "logs_get_log_stream",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
stdout_file = "{dir}/web.out"
stderr_file = "{dir}/web.err"
"#,
    );
    let pid = running_pid(&sg, "web");
    wait_file_contains(&sg, "web.out", &stdout_line(pid));
    wait_file_contains(&sg, "web.err", &stderr_line(pid));
    for (stream, wanted, unwanted) in [
        ("stdout", stdout_line(pid), stderr_line(pid)),
        ("stderr", stderr_line(pid), stdout_line(pid)),
    ] {
        let (http, body) = sg.api("GET", &format!("/log/web?stream={stream}"));
        assert_eq!(http, 200, "GET /log/web?stream={stream}: {body}");
        let text = body["data"]["text"].as_str().unwrap_or_default();
        assert!(text.contains(&wanted), "{stream}: {body}");
        assert!(!text.contains(&unwanted), "{stream} only: {body}");
    }
}

#[test]
fn get_log_bytes_returns_only_the_last_bytes() {
    let sg = Supergo::start(
        "logs_get_log_bytes",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
stdout_file = "{dir}/web.out"
"#,
    );
    let pid = running_pid(&sg, "web");
    let file = wait_file_contains(&sg, "web.out", &stdout_line(pid));
    let (http, body) = sg.api("GET", "/log/web?stream=stdout&bytes=8");
    assert_eq!(http, 200, "{body}");
    let text = body["data"]["text"].as_str().unwrap_or_default();
    assert!(
        !text.is_empty() && text.len() <= 8 && file.ends_with(text),
        "the last 8 bytes at most of {file:?}: {body}"
    );
}

#[test]
fn get_log_of_a_discarded_stream_is_404() {
    let sg = Supergo::start(
        "logs_get_log_discarded",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
stdout_file = "{dir}/web.out"
"#,
    );
    running_pid(&sg, "web");
    let (http, body) = sg.api("GET", "/log/web?stream=stderr");
    assert_eq!(http, 404, "no stderr_file: {body}");
    assert_ne!(body["status"], 0, "{body}");
}

#[test]
fn supergoctl_tail_prints_the_stderr_of_a_program() {
    let sg = Supergo::start(
        "logs_ctl_tail",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
stdout_file = "{dir}/web.out"
stderr_file = "{dir}/web.err"
"#,
    );
    let pid = running_pid(&sg, "web");
    wait_file_contains(&sg, "web.out", &stdout_line(pid));
    wait_file_contains(&sg, "web.err", &stderr_line(pid));
    let output = sg.ctl(&["tail", "web", "stderr"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "supergoctl tail: {output:?}");
    assert!(
        stdout.contains(&stderr_line(pid)),
        "stderr's line: {stdout:?}"
    );
    assert!(
        !stdout.contains(&stdout_line(pid)),
        "stderr only: {stdout:?}"
    );
}

#[test]
fn supergoctl_tail_follow_prints_new_output() {
    let sg = Supergo::start(
        "logs_ctl_tail_follow",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
stop_timeout = 2
stdout_file = "{dir}/web.out"
"#,
    );
    let first = running_pid(&sg, "web");
    wait_file_contains(&sg, "web.out", &stdout_line(first));

    let mut cmd = Command::new(supergoctl_bin());
    cmd.args(["--url", &sg.control, "tail", "-f", "web"])
        .env_remove("SUPERGO_URL")
        .env_remove("SUPERGO_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: the closure makes raw syscalls only.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, clean_exec_state);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| fail(format!("cannot run {cmd:?}: {err}")));
    let stdout = child.stdout.take().expect("a piped stdout");
    let tail = KillOnDrop(child);
    let printed = Arc::new(Mutex::new(String::new()));
    let reader = {
        let printed = Arc::clone(&printed);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut printed = printed.lock().unwrap_or_else(|e| e.into_inner());
                printed.push_str(&line);
                printed.push('\n');
            }
        })
    };
    let seen = |needle: &str| {
        let printed = printed.lock().unwrap_or_else(|e| e.into_inner());
        printed.contains(needle).then_some(())
    };
    poll_until(
        TIMEOUT,
        "supergoctl tail -f to print the file so far",
        || seen(&stdout_line(first)),
    );
    // New output: the next process's start line.
    let second = restart(&sg, "web");
    poll_until(TIMEOUT, "supergoctl tail -f to print the new line", || {
        seen(&stdout_line(second))
    });
    drop(tail);
    reader.join().expect("the reader thread");
}

#[test]
fn sigusr1_reopens_log_files_at_their_paths() {
    let sg = Supergo::start(
        "logs_sigusr1_reopen",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
stop_timeout = 2
stdout_file = "{dir}/web.out"
"#,
    );
    let first = running_pid(&sg, "web");
    wait_file_contains(&sg, "web.out", &stdout_line(first));
    // What logrotate does: move the file away, then signal.
    fs::rename(sg.path("web.out"), sg.path("web.out.old")).expect("rename web.out");
    sg.signal(Signal::SIGUSR1);
    poll_until(TIMEOUT, "supergo to reopen web.out at its path", || {
        sg.path("web.out").exists().then_some(())
    });
    let second = restart(&sg, "web");
    wait_file_contains(&sg, "web.out", &stdout_line(second));
    let old = fs::read_to_string(sg.path("web.out.old")).expect("read web.out.old");
    assert!(old.contains(&stdout_line(first)), "{old:?}");
    assert!(
        !old.contains(&stdout_line(second)),
        "new output goes to the fresh file, not the moved one: {old:?}"
    );
}
