//! Restart (DESIGN.md, "Restart, readiness and rollback"): the new generation starts on the
//! same sockets beside the old one, which stops only once the new one is ready; a new
//! process that fails leaves the old one serving.

use std::time::Duration;

use crate::util::{
    http_get, pid_alive, pid_of, wait_pid_gone, HeldRequest, Load, LoadOptions, Supergo, TIMEOUT,
};

#[test]
fn twenty_restarts_under_load_fail_no_request() {
    let sg = Supergo::start(
        "restart_under_load",
        r#"
[program.web]
command = "{hello}"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 5
"#,
    );
    sg.wait_state("web", "Running", TIMEOUT);
    let load = Load::start(
        &sg.app_addr(),
        LoadOptions {
            threads: 4,
            sleepers: 3,
            sleep_ms: 800,
            ..LoadOptions::default()
        },
    );
    load.wait_ok(20, TIMEOUT);
    for i in 1..=20 {
        let (http, body) = sg.api("POST", "/restart/web");
        assert_eq!(http, 200, "restart {i} failed: {body}");
        assert_eq!(body["status"], 0);
        assert_ne!(body["data"]["old_pid"], body["data"]["new_pid"]);
    }
    // Let requests reach the last generation before stopping the load.
    let before = load.ok();
    load.wait_ok(before + 20, TIMEOUT);
    let report = load.stop();
    report.assert_no_failures();
    assert!(
        report.slow_ok > 0,
        "slow requests completed across handoffs: {report}"
    );
    assert_eq!(
        report.pids.len(),
        21,
        "answers from every generation: {report}"
    );
}

#[test]
fn stop_before_restart_stops_the_old_process_first() {
    let sg = Supergo::start(
        "restart_stop_first",
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 2
stop_before_restart = true
environment = { PROBE_REPORT = "{dir}/web-{gen}.json" }
"#,
    );
    let old = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    let (http, body) = sg.api("POST", "/restart/web");
    assert_eq!(http, 200, "restart: {body}");
    let new = pid_of(&sg.status("web"));
    assert_ne!(old, new);
    assert!(!pid_alive(old), "the old process is gone");
    let log = sg.log();
    let stopped = log
        .find(&format!("web[{old}]: stopped after"))
        .expect("the old one stopped");
    let started = log
        .find(&format!("web[{new}]: started generation 2"))
        .expect("the new one started");
    assert!(
        stopped < started,
        "the old process ended before the new one started:\n{log}"
    );
}

#[test]
fn restart_keeps_old_process_when_new_one_crashes() {
    let sg = Supergo::start(
        "restart_rollback_on_crash",
        r#"
[program.web]
command = "sh -c 'if [ -e {dir}/broken ]; then echo broken >&2; exit 7; fi; exec {probe} serve'"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.5
stop_timeout = 2
"#,
    );
    let old = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    sg.write_file("broken", "the next generation exits at once\n");
    let (http, body) = sg.api("POST", "/restart/web");
    assert_eq!(http, 500, "a failed restart is an error: {body}");
    assert_ne!(body["status"], 0);
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("exited with status 7"),
        "says why: {message}"
    );
    assert!(
        message.contains(&format!("pid {old} keeps serving")),
        "says who serves: {message}"
    );
    let status = sg.status("web");
    assert_eq!(status["state"], "Running");
    assert_eq!(
        pid_of(&status),
        old,
        "the old process is still the serving one"
    );
    let (code, answer) = http_get(&sg.app_addr(), "/").expect("the service still answers");
    assert_eq!((code, answer.trim()), (200, format!("pid: {old}").as_str()));
}

#[test]
fn restart_of_a_stopped_program_starts_it() {
    let sg = Supergo::start(
        "restart_stopped",
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
autostart = false
"#,
    );
    assert_eq!(sg.status("web")["state"], "Stopped");
    let (http, body) = sg.api("POST", "/restart/web");
    assert_eq!(http, 200, "restart: {body}");
    let pid = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    assert!(pid_alive(pid));
}

#[test]
fn old_process_draining_a_slow_request_finishes_it() {
    let sg = Supergo::start(
        "restart_drains_slow_request",
        r#"
[program.web]
command = "{hello}"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 10
"#,
    );
    let old = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    // Held in flight until the test has seen the drain (see `HeldRequest`); it must be in
    // the old process before the restart.
    let held = HeldRequest::start(&sg.app_addr(), "/sleep?ms=10");
    held.wait_accepted(old, sg.port);
    let (http, body) = sg.api("POST", "/restart/web");
    assert_eq!(http, 200, "restart: {body}");
    let status = sg.status("web");
    let draining = status["draining"].as_array().cloned().unwrap_or_default();
    assert!(
        draining
            .iter()
            .any(|d| d["pid"].as_i64() == Some(i64::from(old))),
        "the old process is listed as draining while it finishes: {status}"
    );
    assert_eq!(
        held.finish(),
        Ok((200, "slept 10 ms".to_string())),
        "the in-flight request completed"
    );
    wait_pid_gone(old, Duration::from_secs(5));
}
