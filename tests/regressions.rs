//! Defects found in review, each pinned by the behaviour DESIGN.md promises.

use std::time::Duration;

use crate::util::{connections_of, pid_alive, pid_of, poll_until, HeldRequest, Supergo, TIMEOUT};

#[test]
fn update_while_starting_answers_and_runs_the_new_config() {
    let sg = Supergo::start(
        "regress_update_while_starting",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 30
"#,
    );
    let first = pid_of(&sg.wait_state("web", "Starting", TIMEOUT));
    sg.write_config(
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
"#,
    );
    let (http, body) = sg.api("POST", "/update");
    assert_eq!(http, 200, "update of a starting program: {body}");
    let status = sg.wait_state("web", "Running", TIMEOUT);
    assert_ne!(pid_of(&status), first, "a process of the new config runs");
    poll_until(TIMEOUT, "the first process to be stopped", || {
        (!pid_alive(first)).then_some(())
    });
}

#[test]
fn drain_behind_a_shell_wrapper_is_not_cut_short() {
    // `sh -c '…; true'` keeps sh as the group leader: it dies of SIGTERM at once while the
    // server behind it still finishes its request. The drain lasts until the group is empty.
    let sg = Supergo::start(
        "regress_drain_behind_shell",
        r#"
[program.web]
command = "sh -c '{hello} --fd 3; true'"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.3
stop_timeout = 10
"#,
    );
    sg.wait_state("web", "Running", TIMEOUT);
    // Held in flight until supergo has shown that it waits for the group (see `HeldRequest`).
    let held = HeldRequest::start(&sg.app_addr(), "/sleep?ms=10");
    // The request must be in the old server (sh's child) before the restart begins.
    poll_until(TIMEOUT, "a connection in the old server", || {
        crate::util::descendants(sg.pid())
            .iter()
            .any(|p| connections_of(p.pid, sg.port) >= 1)
            .then_some(())
    });
    let (http, body) = sg.api("POST", "/restart/web");
    assert_eq!(http, 200, "restart: {body}");
    sg.wait_log("the rest of its process group is still running", TIMEOUT);
    assert_eq!(
        held.finish(),
        Ok((200, "slept 10 ms".to_string())),
        "the in-flight request survived the handoff"
    );
}

#[test]
fn crash_right_after_ready_backs_off_and_ends_fatal() {
    let sg = Supergo::start(
        "regress_crash_after_ready",
        r#"
[program.flappy]
command = "false"
start_secs = 0
max_retry = 2
backoff_secs = 0.05
"#,
    );
    let status = sg.wait_state("flappy", "Fatal", TIMEOUT);
    let log = sg.log();
    assert_eq!(
        log.matches("started generation").count(),
        3,
        "one start and max_retry retries, not a fork loop:\n{log}"
    );
    assert!(status["error"]
        .as_str()
        .unwrap_or_default()
        .contains("right after it became ready"));
}

#[test]
fn stop_signal_change_by_update_is_not_sent_to_the_old_process() {
    // The old generation was started with stop_signal = TERM: it must get TERM, even when
    // the new config says USR2 (whose default action would kill it mid-request).
    let sg = Supergo::start(
        "regress_stop_signal_of_old",
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 5
"#,
    );
    let old = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    sg.write_config(
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 5
stop_signal = "USR2"
"#,
    );
    let (http, body) = sg.api("POST", "/update");
    assert_eq!(http, 200, "update: {body}");
    // The drain line is written once supergo has reaped the old process.
    let log = sg.wait_log(&format!("web[{old}]: drained"), Duration::from_secs(10));
    assert!(
        log.contains(&format!("web[{old}]: sending SIGTERM (handoff)")),
        "the old process got its own stop signal:\n{log}"
    );
    assert!(
        log.contains("exited with status 0"),
        "and drained cleanly:\n{log}"
    );
}

#[test]
fn removed_program_stays_in_status_while_it_drains() {
    let sg = Supergo::start(
        "regress_removed_draining_visible",
        r#"
[program.web]
command = "{hello}"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 10

[program.other]
command = "{probe} sleep"
start_secs = 0.2
"#,
    );
    let pid = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    // Held in flight until the test has seen the drain (see `HeldRequest`).
    let held = HeldRequest::start(&sg.app_addr(), "/sleep?ms=10");
    held.wait_accepted(pid, sg.port);
    sg.write_config(
        r#"
[program.other]
command = "{probe} sleep"
start_secs = 0.2
"#,
    );
    // update answers once the removed program has stopped: ask in the background, and look
    // at /status while its process still finishes the held request.
    let control = sg.control.clone();
    let update = std::thread::spawn(move || {
        crate::util::http_request(&control, "POST", "/update", &[], Duration::from_secs(30))
    });
    let seen = poll_until(TIMEOUT, "the removed program to show as stopping", || {
        sg.find_status("web").filter(|s| s["state"] == "Stopping")
    });
    assert!(pid_alive(pid), "seen while its process drains: {seen}");
    assert_eq!(
        held.finish(),
        Ok((200, "slept 10 ms".to_string())),
        "the drain finished the request"
    );
    let answer = update
        .join()
        .expect("the update thread")
        .expect("update answered");
    assert_eq!(answer.status, 200, "update: {}", answer.body);
    poll_until(TIMEOUT, "the removed program to leave /status", || {
        sg.find_status("web").is_none().then_some(())
    });
}
