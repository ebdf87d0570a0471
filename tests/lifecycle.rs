//! The life of a program outside restarts: crash → restart, crash loop → Fatal, stop with
//! SIGKILL after `stop_timeout`, process groups, supergo's own shutdown, and the failures an
//! operator must be told about (command not found, port in use).

use std::net::TcpListener;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{pid_alive, pid_of, try_poll_until, wait_pid_gone, Supergo, TIMEOUT};

#[test]
fn crashed_process_is_restarted() {
    let sg = Supergo::start(
        "lifecycle_crash_restart",
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
"#,
    );
    let first = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill the child");
    let status = crate::util::poll_until(TIMEOUT, "a new process to be Running", || {
        let s = sg.status("web");
        (s["state"] == "Running" && pid_of(&s) != first).then_some(s)
    });
    assert_eq!(status["restarts"], 1, "{status}");
    assert_eq!(
        status["last_exit"], "killed by signal 9 (SIGKILL)",
        "{status}"
    );
}

#[test]
fn crash_loop_ends_fatal_after_max_retry() {
    let sg = Supergo::start(
        "lifecycle_crash_loop",
        r#"
[program.bad]
command = "{probe} exit 1"
start_secs = 0.5
max_retry = 2
backoff_secs = 0.05
"#,
    );
    let status = sg.wait_state("bad", "Fatal", TIMEOUT);
    let log = sg.log();
    assert_eq!(
        log.matches("started generation").count(),
        3,
        "one start and max_retry retries:\n{log}"
    );
    assert!(log.contains("giving up after 3 failed start(s)"), "{log}");
    assert!(
        status["error"]
            .as_str()
            .unwrap_or_default()
            .contains("exited with status 1"),
        "{status}"
    );
    // Fatal stays Fatal: no further attempt.
    assert!(try_poll_until(Duration::from_millis(500), || sg
        .log()
        .contains("generation 4")
        .then_some(()))
    .is_none());
}

#[test]
fn child_ignoring_sigterm_is_killed_after_stop_timeout() {
    let sg = Supergo::start(
        "lifecycle_kill_after_timeout",
        r#"
[program.stubborn]
command = "{probe} ignore-term"
start_secs = 0.2
stop_timeout = 0.5
"#,
    );
    let pid = pid_of(&sg.wait_state("stubborn", "Running", TIMEOUT));
    let (http, body) = sg.api("POST", "/stop/stubborn");
    assert_eq!(http, 200, "stop: {body}");
    assert!(!pid_alive(pid), "the process is gone when stop answers");
    let log = sg.log();
    assert!(
        log.contains(&format!("stubborn[{pid}]: still running")) && log.contains("sending SIGKILL"),
        "{log}"
    );
    assert_eq!(sg.status("stubborn")["state"], "Stopped");
}

#[test]
fn grandchild_dies_with_its_group() {
    let sg = Supergo::start(
        "lifecycle_grandchild",
        r#"
[program.family]
command = "{probe} spawn-grandchild serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 2
environment = { PROBE_REPORT = "{dir}/family.json" }
"#,
    );
    sg.wait_state("family", "Running", TIMEOUT);
    let report = sg.read_report("family.json");
    let child = report["pid"].as_i64().expect("pid") as i32;
    let grandchild = report["grandchild"].as_i64().expect("grandchild pid") as i32;
    assert!(pid_alive(grandchild));
    let (http, body) = sg.api("POST", "/stop/family");
    assert_eq!(http, 200, "stop: {body}");
    wait_pid_gone(child, TIMEOUT);
    wait_pid_gone(grandchild, TIMEOUT);
}

#[test]
fn sigterm_to_supergo_stops_every_program_and_exits_0() {
    let sg = Supergo::start(
        "lifecycle_shutdown",
        r#"
[program.a]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 2

[program.b]
command = "{probe} spawn-grandchild sleep"
start_secs = 0.2
stop_timeout = 2
environment = { PROBE_REPORT = "{dir}/b.json" }
"#,
    );
    let a = pid_of(&sg.wait_state("a", "Running", TIMEOUT));
    let b = pid_of(&sg.wait_state("b", "Running", TIMEOUT));
    let grandchild = sg.read_report("b.json")["grandchild"]
        .as_i64()
        .expect("grandchild") as i32;
    sg.signal(Signal::SIGTERM);
    let status = sg.wait_exit(TIMEOUT);
    assert!(
        status.success(),
        "supergo exits 0 after stopping everything: {status:?}"
    );
    for pid in [a, b, grandchild] {
        assert!(!pid_alive(pid), "pid {pid} outlived supergo");
    }
    assert!(sg.log().contains("every program is stopped; supergo exits"));
}

#[test]
fn command_not_found_is_reported_and_not_retried_in_a_hot_loop() {
    let sg = Supergo::start(
        "lifecycle_command_not_found",
        r#"
[program.typo]
command = "no-such-command-xyz --flag"
max_retry = 2
backoff_secs = 0.1
"#,
    );
    let status = sg.wait_state("typo", "Fatal", TIMEOUT);
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot execute no-such-command-xyz: not found in PATH"),
        "{status}"
    );
    let log = sg.log();
    assert_eq!(
        log.matches("cannot execute no-such-command-xyz").count(),
        3,
        "3 attempts, then Fatal:\n{log}"
    );
    assert!(
        log.contains("retrying in 0.1 s") && log.contains("retrying in 0.2 s"),
        "backoff grows:\n{log}"
    );
}

#[test]
fn missing_relative_command_names_the_path() {
    let sg = Supergo::start(
        "lifecycle_missing_relative",
        r#"
[program.web]
directory = "{dir}"
command = "./server"
max_retry = 0
"#,
    );
    let status = sg.wait_state("web", "Fatal", TIMEOUT);
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot execute ./server") && error.contains("No such file or directory"),
        "{status}"
    );
    assert!(
        error.contains(&format!("{}/server", sg.dir.display())),
        "names the full path: {status}"
    );
}

#[test]
fn command_that_is_not_executable_fails_with_the_reason() {
    let sg = Supergo::new("lifecycle_not_executable");
    sg.write_file("script.sh", "echo hi\n");
    sg.write_config(
        r#"
[program.script]
directory = "{dir}"
command = "./script.sh"
max_retry = 0
"#,
    );
    sg.spawn(&[]);
    sg.wait_ready();
    let status = sg.wait_state("script", "Fatal", TIMEOUT);
    assert!(
        status["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Permission denied"),
        "{status}"
    );
}

#[test]
fn port_in_use_makes_only_that_program_fatal() {
    let sg = Supergo::new("lifecycle_port_in_use");
    let taken = TcpListener::bind(("127.0.0.1", sg.port)).expect("take the port first");
    sg.write_config(
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2

[program.other]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port2}"]
start_secs = 0.2
"#,
    );
    sg.spawn(&[]);
    sg.wait_ready();
    let web = sg.wait_state("web", "Fatal", TIMEOUT);
    let error = web["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("cannot listen on 127.0.0.1:{}", sg.port)),
        "{web}"
    );
    assert!(error.contains("in use"), "says why: {web}");
    sg.wait_state("other", "Running", TIMEOUT);
    // Once the port is free, `start` binds it and runs the program.
    drop(taken);
    let (http, body) = sg.api("POST", "/start/web");
    assert_eq!(http, 200, "start after the port was freed: {body}");
    sg.wait_state("web", "Running", TIMEOUT);
}

#[test]
fn stopped_program_stays_stopped() {
    let sg = Supergo::start(
        "lifecycle_stays_stopped",
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
"#,
    );
    let pid = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    let (http, body) = sg.api("POST", "/stop/web");
    assert_eq!(http, 200, "stop: {body}");
    assert!(!pid_alive(pid));
    let restarted = try_poll_until(Duration::from_millis(700), || {
        (sg.status("web")["state"] != "Stopped").then_some(())
    });
    assert!(
        restarted.is_none(),
        "a stopped program must not come back by itself"
    );
    let (http, _) = sg.api("POST", "/stop/web");
    assert_eq!(http, 200, "stopping a stopped program is not an error");
}
