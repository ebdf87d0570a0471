//! Every request that waits gets an answer on every path (issue 12, item 4): a `start` that
//! waits for a program still Starting, the priority starter that waits for a group before
//! starting the next, and requests that arrive while supergo shuts down. Before, an `update`
//! that set `autostart = false` on a Starting program left the first two waiting until
//! supergo exited, and the third waited for the whole shutdown.

use std::thread;

use nix::sys::signal::Signal;

use crate::util::{fail, http_request, poll_until, Supergo, TIMEOUT};

/// A program that stays Starting for as long as a test lasts (`start_secs = 300`), with the
/// `autostart` given, and the rest of the config after it.
fn slow(autostart: bool, rest: &str) -> String {
    format!(
        r#"
[program.slow]
command = "{{probe}} sleep"
autostart = {autostart}
start_secs = 300
stop_timeout = 2
priority = 10
{rest}"#
    )
}

/// `POST /update` that must succeed.
fn update_ok(sg: &Supergo) {
    let (http, body) = sg.api("POST", "/update");
    if http != 200 || body["status"] != 0 {
        fail(format!("POST /update: HTTP {http}: {body}"));
    }
}

#[test]
fn start_waiting_for_a_starting_program_is_answered_when_update_sets_autostart_false() {
    let sg = Supergo::start("waiters_start_autostart_false", &slow(false, ""));
    thread::scope(|scope| {
        let start = scope.spawn(|| sg.ctl(&["start", "slow"]));
        // The start request made it Starting, so its answer is now waited for.
        sg.wait_state("slow", "Starting", TIMEOUT);
        sg.write_config(&slow(false, "").replace("start_secs = 300", "start_secs = 299"));
        update_ok(&sg);
        poll_until(TIMEOUT, "`supergoctl start slow` to be answered", || {
            start.is_finished().then_some(())
        });
        let output = start.join().expect("the supergoctl thread");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "a start that will not happen is a failure: {output:?}"
        );
        assert!(
            stderr.contains("slow: start cancelled")
                && stderr.contains("autostart = false")
                && stderr.contains("stays stopped"),
            "the answer says why the start did not happen: {stderr}"
        );
    });
    sg.wait_state("slow", "Stopped", TIMEOUT);
}

#[test]
fn later_priorities_start_when_update_sets_autostart_false_on_a_starting_program() {
    let later = r#"
[program.later]
command = "{probe} sleep"
start_secs = 0.2
stop_timeout = 2
priority = 20
"#;
    let sg = Supergo::start("waiters_priority_autostart_false", &slow(true, later));
    // The starter waits for `slow` (priority 10) before it starts `later` (priority 20).
    sg.wait_state("slow", "Starting", TIMEOUT);
    assert_eq!(sg.status("later")["state"], "Stopped", "{}", sg.dump());
    sg.write_config(&slow(false, later));
    update_ok(&sg);
    sg.wait_state("slow", "Stopped", TIMEOUT);
    sg.wait_state("later", "Running", TIMEOUT);
}

#[test]
fn requests_during_shutdown_are_answered_while_programs_stop() {
    let sg = Supergo::start(
        "waiters_requests_during_shutdown",
        r#"
[program.stubborn]
command = "{probe} ignore-term"
start_secs = 0.2
stop_timeout = 60
"#,
    );
    sg.wait_state("stubborn", "Running", TIMEOUT);
    sg.signal(Signal::SIGTERM);
    sg.wait_log("sending SIGTERM (stop)", TIMEOUT);

    // `stubborn` ignores SIGTERM: supergo stops it for 60 s, and answers meanwhile.
    let status = http_request(&sg.control, "GET", "/status", &[], TIMEOUT)
        .unwrap_or_else(|e| fail(format!("GET /status during the shutdown: {e}")));
    assert_eq!(status.status, 200, "{}", status.body);
    let body: serde_json::Value = serde_json::from_str(&status.body)
        .unwrap_or_else(|e| fail(format!("GET /status: not JSON ({e}): {}", status.body)));
    assert_eq!(body["data"][0]["state"], "Stopping", "{body}");

    let restart = http_request(&sg.control, "POST", "/restart/stubborn", &[], TIMEOUT)
        .unwrap_or_else(|e| fail(format!("POST /restart/stubborn during the shutdown: {e}")));
    assert_eq!(restart.status, 409, "{}", restart.body);
    assert!(
        restart
            .body
            .contains("the restart of stubborn is refused: supergo is shutting down"),
        "the refusal says why: {}",
        restart.body
    );
    assert!(
        sg.try_exit_status().is_none(),
        "supergo still waits for stubborn"
    );
}
