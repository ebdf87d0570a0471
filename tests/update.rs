//! `reread`, `update` and SIGHUP (DESIGN.md, "Control API"): the diff between the running
//! config and the file, applied without touching what did not change. Added programs start,
//! removed ones stop and their sockets close, changed ones are handed over to a new process
//! on the same sockets, and a config that does not load, or a new command that does not
//! start, leaves everything as it was.

use std::io::ErrorKind;
use std::net::TcpStream;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::{
    fail, hello_bin, http_get, poll_until, wait_pid_gone, Load, LoadOptions, Supergo, TIMEOUT,
};

/// A program that does nothing but stay alive: the one an update must not touch.
const KEEP: &str = r#"
[program.keep]
command = "{probe} sleep"
start_secs = 0.2
stop_timeout = 2
"#;

/// The pid of `name` once it is Running.
fn running_pid(sg: &Supergo, name: &str) -> i64 {
    let status = sg.wait_state(name, "Running", TIMEOUT);
    status["pid"]
        .as_i64()
        .filter(|pid| *pid > 0)
        .unwrap_or_else(|| fail(format!("{name} is Running without a pid: {status}")))
}

/// The names of the programs supergo runs, sorted.
fn program_names(sg: &Supergo) -> Vec<String> {
    let mut names: Vec<String> = sg
        .programs()
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    names.sort();
    names
}

/// `(name, pid)` of every program, sorted by name.
fn program_pids(sg: &Supergo) -> Vec<(String, i64)> {
    let mut pids: Vec<(String, i64)> = sg
        .programs()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["pid"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    pids.sort();
    pids
}

/// `POST /update`: `(HTTP status, body)`.
fn update(sg: &Supergo) -> (u16, Value) {
    sg.api("POST", "/update")
}

/// `POST /update` that must succeed; its body.
fn update_ok(sg: &Supergo) -> Value {
    let (http, body) = update(sg);
    if http != 200 || body["status"] != 0 {
        fail(format!("POST /update: HTTP {http}: {body}"));
    }
    body
}

/// The entry of `name` in the answer of an update.
fn update_entry<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["data"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| {
            fail(format!(
                "the update's answer has no entry for {name}: {body}"
            ))
        })
}

/// The sorted strings of a JSON array.
fn sorted_strings(value: &Value) -> Vec<String> {
    let mut items: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| fail(format!("not an array: {value}")))
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    items.sort();
    items
}

/// The pid that answers `GET /` on `addr` (`pid: N`), if one does.
fn serving_pid(addr: &str) -> Option<i64> {
    let (status, body) = http_get(addr, "/").ok()?;
    (status == 200).then_some(())?;
    body.trim().strip_prefix("pid: ")?.parse().ok()
}

/// Waits until a connection to `addr` is refused: nothing holds a listening socket there.
fn wait_refused(addr: &str) {
    poll_until(
        TIMEOUT,
        &format!("connections to {addr} to be refused"),
        || match TcpStream::connect_timeout(&addr.parse().expect("an address"), TIMEOUT) {
            Err(err) if err.kind() == ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        },
    );
}

/// The 1-based number of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} is not in the config"))
}

#[test]
fn reread_lists_inserts_deletes_and_updates_without_applying_them() {
    let sg = Supergo::start(
        "update_reread_diff",
        r#"
[program.same]
command = "{probe} sleep"
start_secs = 0.2

[program.gone]
command = "{probe} sleep"
start_secs = 0.2

[program.changed]
command = "{probe} sleep"
start_secs = 0.2
"#,
    );
    for name in ["same", "gone", "changed"] {
        running_pid(&sg, name);
    }
    let before = program_pids(&sg);
    sg.write_config(
        r#"
[program.same]
command = "{probe} sleep"
start_secs = 0.2

[program.changed]
command = "{probe} sleep"
start_secs = 0.2
environment = { VERSION = "2" }

[program.new]
command = "{probe} sleep"
start_secs = 0.2
"#,
    );
    let (http, body) = sg.api("GET", "/reread");
    assert_eq!(http, 200, "GET /reread: {body}");
    assert_eq!(body["status"], 0, "GET /reread: {body}");
    let diff = &body["data"];
    assert_eq!(sorted_strings(&diff["inserts"]), ["new"], "inserts: {body}");
    assert_eq!(
        sorted_strings(&diff["deletes"]),
        ["gone"],
        "deletes: {body}"
    );
    assert_eq!(
        sorted_strings(&diff["updates"]),
        ["changed"],
        "updates: {body}"
    );
    assert_eq!(
        program_pids(&sg),
        before,
        "reread must only report, not apply"
    );
}

#[test]
fn update_starts_an_added_program() {
    let sg = Supergo::start("update_adds", KEEP);
    running_pid(&sg, "keep");
    sg.write_config(&format!(
        r#"{KEEP}
[program.added]
command = "{{probe}} sleep"
start_secs = 0.2
environment = {{ PROBE_REPORT = "{{dir}}/added.json" }}
"#
    ));
    let body = update_ok(&sg);
    let entry = update_entry(&body, "added");
    assert_eq!(entry["ok"], true, "{body}");
    let pid = running_pid(&sg, "added");
    let report = sg.read_report("added.json");
    assert_eq!(report["pid"].as_i64(), Some(pid), "the added program runs");
}

#[test]
fn update_stops_a_removed_program_and_closes_its_port() {
    let sg = Supergo::start(
        "update_removes",
        &format!(
            r#"{KEEP}
[program.web]
command = "{{probe}} serve"
listen_addrs = ["127.0.0.1:{{port}}"]
start_secs = 0.2
stop_timeout = 2
"#
        ),
    );
    running_pid(&sg, "keep");
    let web = running_pid(&sg, "web");
    assert_eq!(
        serving_pid(&sg.app_addr()),
        Some(web),
        "web serves before the update"
    );
    sg.write_config(KEEP);
    let body = update_ok(&sg);
    assert_eq!(update_entry(&body, "web")["ok"], true, "{body}");
    wait_pid_gone(i32::try_from(web).expect("a pid"), TIMEOUT);
    assert_eq!(program_names(&sg), ["keep"], "web is no longer a program");
    wait_refused(&sg.app_addr());
}

#[test]
fn update_replaces_a_changed_program_through_a_handoff() {
    let sg = Supergo::start(
        "update_changes",
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 2
environment = { PROBE_REPORT = "{dir}/web-{gen}.json" }
"#,
    );
    let old = running_pid(&sg, "web");
    sg.write_config(
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 2
environment = { PROBE_REPORT = "{dir}/web-{gen}.json", VERSION = "2" }
"#,
    );
    let body = update_ok(&sg);
    let entry = update_entry(&body, "web");
    assert_eq!(entry["ok"], true, "{body}");
    assert_eq!(
        entry["old_pid"].as_i64(),
        Some(old),
        "handed over from the old pid: {body}"
    );
    let new = running_pid(&sg, "web");
    assert_ne!(new, old, "a changed program runs a new process");
    assert_eq!(entry["new_pid"].as_i64(), Some(new), "{body}");
    let report = sg.read_report("web-2.json");
    assert_eq!(report["pid"].as_i64(), Some(new));
    assert_eq!(
        report["env"]["VERSION"], "2",
        "the new process has the new config"
    );
    assert_eq!(
        report["fd_info"]["3"]["addr"],
        format!("127.0.0.1:{}", sg.port),
        "on the same socket"
    );
    assert_eq!(sg.status("web")["handoffs"], 1, "through a handoff");
    wait_pid_gone(i32::try_from(old).expect("a pid"), TIMEOUT);
    assert_eq!(serving_pid(&sg.app_addr()), Some(new));
}

#[test]
fn update_leaves_an_unchanged_program_running_through_every_update() {
    let other = |version: &str| {
        format!(
            r#"{KEEP}
[program.other]
command = "{{probe}} sleep"
start_secs = 0.2
stop_timeout = 2
environment = {{ VERSION = "{version}" }}
"#
        )
    };
    let sg = Supergo::start("update_keeps_unchanged", KEEP);
    let keep = running_pid(&sg, "keep");
    // Added, changed, removed: three updates, none of which concerns `keep`.
    for (step, config) in [
        ("add other", other("1")),
        ("change other", other("2")),
        ("remove other", KEEP.to_string()),
    ] {
        sg.write_config(&config);
        let body = update_ok(&sg);
        assert_eq!(
            update_entry(&body, "other")["ok"],
            true,
            "{step}: the update did its work: {body}"
        );
        assert!(
            body["data"]
                .as_array()
                .is_some_and(|e| e.iter().all(|e| e["name"] != "keep")),
            "{step}: the update must not touch keep: {body}"
        );
        let status = sg.status("keep");
        assert_eq!(status["state"], "Running", "{step}: {status}");
        assert_eq!(
            status["pid"].as_i64(),
            Some(keep),
            "{step}: keep keeps its pid"
        );
        assert_eq!(status["generation"], 1, "{step}: {status}");
    }
    assert_eq!(program_names(&sg), ["keep"]);
}

#[test]
fn update_under_load_changes_the_command_and_adds_an_address_without_failed_requests() {
    hello_bin();
    let config = |extra: &str, addrs: &str| {
        format!(
            r#"
[program.hello]
command = "{{hello}}"
listen_addrs = [{addrs}]
start_secs = 0.3
stop_timeout = 5
{extra}
"#
        )
    };
    let sg = Supergo::start(
        "update_under_load_adds_address",
        &config("", r#""127.0.0.1:{port}""#),
    );
    let old = running_pid(&sg, "hello");
    let added = format!("127.0.0.1:{}", sg.port2);
    let load = Load::start(&sg.app_addr(), LoadOptions::default());
    load.wait_ok(50, TIMEOUT);

    sg.write_config(&config(
        r#"environment = { DEPLOY = "2" }"#,
        r#""127.0.0.1:{port}", "127.0.0.1:{port2}""#,
    ));
    let body = update_ok(&sg);
    let new = update_entry(&body, "hello")["new_pid"]
        .as_i64()
        .unwrap_or_else(|| fail(format!("no new_pid in the update's answer: {body}")));
    assert_ne!(new, old);
    let on_added = poll_until(
        TIMEOUT,
        &format!("the new process to serve {added}"),
        || serving_pid(&added),
    );
    assert_eq!(
        on_added, new,
        "the added address is served by the new process"
    );
    wait_pid_gone(i32::try_from(old).expect("a pid"), TIMEOUT);
    load.wait_ok(50, TIMEOUT);
    let report = load.stop();
    report.assert_no_failures();
    let new_u32 = u32::try_from(new).expect("a pid");
    assert!(
        report.pids.contains(&new_u32),
        "the kept address is served by the new process: {report}"
    );
}

#[test]
fn update_under_load_that_removes_an_address_closes_it_after_the_drain() {
    hello_bin();
    let config = |version: &str, addrs: &str| {
        format!(
            r#"
[program.hello]
command = "{{hello}}"
listen_addrs = [{addrs}]
start_secs = 0.3
stop_timeout = 5
environment = {{ DEPLOY = "{version}" }}
"#
        )
    };
    let sg = Supergo::start(
        "update_under_load_removes_address",
        &config("1", r#""127.0.0.1:{port}", "127.0.0.1:{port2}""#),
    );
    let old = running_pid(&sg, "hello");
    let removed = format!("127.0.0.1:{}", sg.port2);
    assert_eq!(
        serving_pid(&removed),
        Some(old),
        "both addresses served at first"
    );
    let load = Load::start(&sg.app_addr(), LoadOptions::default());
    load.wait_ok(50, TIMEOUT);

    sg.write_config(&config("2", r#""127.0.0.1:{port}""#));
    let body = update_ok(&sg);
    let new = update_entry(&body, "hello")["new_pid"]
        .as_i64()
        .unwrap_or_else(|| fail(format!("no new_pid in the update's answer: {body}")));
    wait_pid_gone(i32::try_from(old).expect("a pid"), TIMEOUT);
    wait_refused(&removed);
    load.wait_ok(50, TIMEOUT);
    let report = load.stop();
    report.assert_no_failures();
    assert!(
        report.pids.contains(&u32::try_from(new).expect("a pid")),
        "the kept address is served by the new process: {report}"
    );
    let listeners = sg.status("hello")["listeners"].clone();
    assert_eq!(
        listeners,
        serde_json::json!([sg.app_addr()]),
        "status lists the kept address only"
    );
}

/// Checks that an update refused for `broken` answers 400 naming `supergo.toml:LINE`, where
/// LINE holds `culprit`, and that no program changed.
fn assert_broken_update_changes_nothing(name: &str, broken: &str, culprit: &str) {
    let sg = Supergo::start(name, KEEP);
    running_pid(&sg, "keep");
    let before = program_pids(&sg);
    sg.write_config(broken);
    let (http, body) = update(&sg);
    assert_eq!(http, 400, "POST /update with a broken config: {body}");
    assert_ne!(body["status"], 0, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    let at = format!("supergo.toml:{}", line_of(broken, culprit));
    assert!(message.contains(&at), "the message names {at}: {message:?}");
    assert_eq!(program_pids(&sg), before, "nothing changed");
    assert_eq!(sg.status("keep")["state"], "Running");
}

#[test]
fn update_with_a_syntax_error_answers_400_with_file_and_line_and_changes_nothing() {
    let broken = format!(
        r#"{KEEP}
[program.added]
command = "{{probe}} sleep"
start_secs = = 0.2
"#
    );
    assert_broken_update_changes_nothing("update_syntax_error", &broken, "= = 0.2");
}

#[test]
fn update_with_an_unknown_key_answers_400_with_file_and_line_and_changes_nothing() {
    let broken = r#"
[program.keep]
command = "{probe} sleep"
start_secs = 0.2
stop_timeout = 2
environment = { VERSION = "2" }

[program.added]
command = "{probe} sleep"
stop_timout = 2
"#;
    assert_broken_update_changes_nothing("update_unknown_key", broken, "stop_timout");
}

#[test]
fn sighup_applies_the_config_like_update_and_logs_the_outcome() {
    let sg = Supergo::start("update_sighup", KEEP);
    let keep = running_pid(&sg, "keep");
    sg.write_config(&format!(
        r#"{KEEP}
[program.added]
command = "{{probe}} sleep"
start_secs = 0.2
"#
    ));
    sg.signal(Signal::SIGHUP);
    running_pid(&sg, "added");
    sg.wait_log("SIGHUP update: ", TIMEOUT);
    assert_eq!(sg.status("keep")["pid"].as_i64(), Some(keep));
}

#[test]
fn sighup_with_a_broken_config_changes_nothing_and_logs_the_error() {
    let sg = Supergo::start("update_sighup_broken", KEEP);
    running_pid(&sg, "keep");
    let before = program_pids(&sg);
    let broken = format!(
        r#"{KEEP}
[program.added]
command = "{{probe}} sleep"
bogus_key = 1
"#
    );
    sg.write_config(&broken);
    sg.signal(Signal::SIGHUP);
    let log = sg.wait_log("SIGHUP update failed", TIMEOUT);
    let at = format!("supergo.toml:{}", line_of(&broken, "bogus_key"));
    let line = log
        .lines()
        .find(|l| l.contains("SIGHUP update failed"))
        .unwrap_or_default();
    assert!(
        line.contains(&at),
        "the logged failure names {at}: {line:?}"
    );
    assert_eq!(program_pids(&sg), before, "nothing changed");
}

/// The config of `web` with `command`. Ready at `READY=1`, so that a new command that
/// exits at once fails its handoff however slow the box is.
fn web_config(command: &str) -> String {
    format!(
        r#"
[program.web]
command = "{command}"
listen_addrs = ["127.0.0.1:{{port}}"]
ready = "notify"
ready_timeout = 10
stop_timeout = 2
backoff_secs = 0.1
environment = {{ PROBE_REPORT = "{{dir}}/web-{{pid}}.json" }}
"#
    )
}

/// Starts `web` serving, then runs an update whose new command exits at once. Returns the
/// daemon and the pid that served before the update.
fn start_then_fail_an_update(name: &str) -> (Supergo, i64) {
    let sg = Supergo::start(name, &web_config("{probe} notify serve"));
    let old = running_pid(&sg, "web");
    sg.write_config(&web_config("{probe} exit 1"));
    let (http, body) = update(&sg);
    assert_ne!(
        http, 200,
        "an update whose new command fails must fail: {body}"
    );
    assert_ne!(body["status"], 0, "{body}");
    assert_eq!(update_entry(&body, "web")["ok"], false, "{body}");
    (sg, old)
}

#[test]
fn update_whose_new_command_fails_keeps_the_old_process_serving() {
    let (sg, old) = start_then_fail_an_update("update_fails_keeps_process");
    let status = sg.status("web");
    assert_eq!(status["state"], "Running", "{status}");
    assert_eq!(
        status["pid"].as_i64(),
        Some(old),
        "the old process serves on: {status}"
    );
    assert_eq!(serving_pid(&sg.app_addr()), Some(old));
}

#[test]
fn update_whose_new_command_fails_keeps_the_old_config_for_later_restarts() {
    let (sg, old) = start_then_fail_an_update("update_fails_keeps_config");
    let (http, body) = sg.api("POST", "/restart/web");
    assert_eq!(http, 200, "a restart with the old config works: {body}");
    let new = body["data"]["new_pid"]
        .as_i64()
        .unwrap_or_else(|| fail(format!("no new_pid in the restart's answer: {body}")));
    assert_ne!(new, old);
    let report = sg.read_report(&format!("web-{new}.json"));
    assert_eq!(
        report["args"].as_array().and_then(|args| args.get(1..)),
        Some(&[Value::from("notify"), Value::from("serve")][..]),
        "the restart runs the old command, not the one that failed: {report}"
    );
    // The old process may take a last connection while it drains: wait for the new one.
    poll_until(TIMEOUT, "the restarted process to serve", || {
        (serving_pid(&sg.app_addr()) == Some(new)).then_some(())
    });
}

#[test]
fn reread_after_a_failed_update_still_lists_the_program_as_changed() {
    let (sg, _old) = start_then_fail_an_update("update_fails_reread");
    let (http, body) = sg.api("GET", "/reread");
    assert_eq!(http, 200, "{body}");
    assert_eq!(
        sorted_strings(&body["data"]["updates"]),
        ["web"],
        "web still runs its old config, so the file still differs from it: {body}"
    );
}
