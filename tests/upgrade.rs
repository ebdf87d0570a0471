//! Upgrade in place (issue 14): supergo re-executes itself from a new binary, keeping its pid,
//! and hands over every process, socket, pipe and the client that asked; the children never
//! notice. Real supergo binaries (a copy stands for "the new version"), real children, real
//! load on 127.0.0.1.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::{
    http_get, http_request, notify_socket_of, pid_alive, pid_of, poll_until, supergo_bin,
    wait_pid_gone, HeldRequest, Load, LoadOptions, Supergo, TIMEOUT,
};

const WEB: &str = r#"
[program.web]
command = "{hello}"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 10
"#;

/// A `ready = "notify"` program beside `WEB`.
const NOTIFY: &str = r#"
[program.ready]
command = "{probe} notify serve"
listen_addrs = ["127.0.0.1:{port2}"]
ready = "notify"
ready_timeout = 20
stop_timeout = 5
"#;

/// `POST /upgrade` (optionally `?binary=`); the HTTP status and the envelope.
fn upgrade(sg: &Supergo, binary: Option<&Path>) -> (u16, Value) {
    let path = match binary {
        None => "/upgrade".to_string(),
        Some(b) => format!("/upgrade?binary={}", b.display()),
    };
    sg.api("POST", &path)
}

/// An upgrade that must succeed; its message.
fn upgraded(sg: &Supergo) -> String {
    let (http, body) = upgrade(sg, None);
    assert_eq!(http, 200, "upgrade failed: {body}\n{}", sg.dump());
    let message = body["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.starts_with("upgraded: supergo ")
            && message.contains(&format!("(pid {} kept)", sg.pid())),
        "{message}"
    );
    message
}

/// The inode of the socket at fd `fd` of `pid` (`socket:[N]`).
fn socket_inode(pid: i32, fd: i32) -> String {
    let link = fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/fd/{fd}: {e}"));
    link.display().to_string()
}

fn open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The metric `name`'s value in `GET /metrics`.
fn metric(sg: &Supergo, name: &str) -> f64 {
    let response = sg.request("GET", "/metrics").expect("GET /metrics");
    metric_in(&response.body, name)
        .unwrap_or_else(|| panic!("no {name} (a number) in /metrics:\n{}", response.body))
}

/// The value of the metric `name` in the text of `GET /metrics`.
fn metric_in(metrics: &str, name: &str) -> Option<f64> {
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// A copy of supergo's binary in the test dir: "the new version".
fn copy_of_supergo(sg: &Supergo, name: &str) -> PathBuf {
    let path = sg.path(name);
    fs::copy(supergo_bin(), &path).expect("copy the supergo binary");
    path
}

/// supergo running `WEB` with the test hook `hook` (`SUPERGO_TEST_FAIL_…`) set to a copy of
/// its binary, so that an upgrade to that copy fails where the hook says; the copy.
fn start_with_failing_copy(name: &str, hook: &str) -> (Supergo, PathBuf) {
    let sg = Supergo::new(name);
    sg.write_config(WEB);
    let new = copy_of_supergo(&sg, "supergo-new");
    sg.spawn_with_env(&[], &[(hook, &new.display().to_string())]);
    sg.wait_ready();
    (sg, new)
}

/// The binary supergo runs now (after an exec, the one it exec'd).
fn exe_of(sg: &Supergo) -> PathBuf {
    fs::read_link(format!("/proc/{}/exe", sg.pid())).expect("exe")
}

#[test]
fn several_upgrades_under_load_keep_every_pid_socket_and_request() {
    let sg = Supergo::start("upgrade_under_load", WEB);
    let before = sg.wait_state("web", "Running", TIMEOUT);
    let child = pid_of(&before);
    let inode = socket_inode(child, 3);
    let fds_before = open_fds(sg.pid());
    let load = Load::start(
        &sg.app_addr(),
        LoadOptions {
            threads: 4,
            sleepers: 2,
            sleep_ms: 300,
            ..LoadOptions::default()
        },
    );
    load.wait_ok(20, TIMEOUT);
    for _ in 0..5 {
        upgraded(&sg);
        load.wait_ok(10, TIMEOUT);
    }
    let report = load.stop();
    report.assert_no_failures();
    assert!(report.slow_ok > 0, "slow requests went through: {report}");
    assert_eq!(
        report.pids.len(),
        1,
        "one process answered throughout: {report}"
    );
    let after = sg.status("web");
    assert_eq!(pid_of(&after), child, "the same child");
    assert_eq!(socket_inode(child, 3), inode, "the same listening socket");
    for key in ["start_time", "generation", "state"] {
        assert_eq!(after[key], before[key], "{key} kept across upgrades");
    }
    assert_eq!(metric(&sg, "supergo_upgrades_total"), 5.0);
    assert_eq!(metric(&sg, "supergo_upgrade_failures_total"), 0.0);
    // A control connection just answered may not be closed on supergo's side yet.
    poll_until(
        TIMEOUT,
        "supergo's fds back to their number before the upgrades",
        || (open_fds(sg.pid()) <= fds_before).then_some(()),
    );
    let log = sg.log();
    assert_eq!(
        log.matches("upgrade: ").count(),
        5,
        "the new image logs what it took over:\n{log}"
    );
    assert!(log.contains("1 program(s), 1 socket(s), 0 draining process(es) handed over"));
}

#[test]
fn an_upgrade_while_an_old_generation_drains_hands_the_drain_over() {
    let sg = Supergo::start(
        "upgrade_drain",
        &format!("{WEB}stderr_file = \"/dev/stderr\"\n"),
    );
    let old = sg.running_pid("web");
    // Held in flight until the test has seen the drain cross the upgrade (see
    // `HeldRequest`): a slow request would end the drain on its own clock.
    let held = HeldRequest::start(&sg.app_addr(), "/sleep?ms=10");
    held.wait_accepted(old, sg.port);
    sg.api_ok("POST", "/restart/web");
    let draining = sg.status("web")["draining"].clone();
    assert_eq!(
        draining[0]["pid"], old,
        "the old generation drains: {draining}"
    );
    let output = sg.ctl(&["upgrade"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.starts_with("upgraded: supergo "), "{said}");
    let after = sg.status("web")["draining"].clone();
    assert_eq!(after[0]["pid"], old, "still draining after the upgrade");
    assert_eq!(
        after[0]["kill_at"], draining[0]["kill_at"],
        "same SIGKILL deadline"
    );
    let answer = held.finish().expect("the held request");
    assert_eq!(
        answer,
        (200, "slept 10 ms".to_string()),
        "the request completed"
    );
    wait_pid_gone(old, TIMEOUT);
    sg.wait_log(&format!("web[{old}]: drained after"), TIMEOUT);
    poll_until(TIMEOUT, "the drain to leave the status", || {
        sg.status("web")["draining"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    });
}

#[test]
fn the_control_api_never_refuses_a_connection_during_upgrades() {
    let sg = Arc::new(Supergo::start("upgrade_control_polled", WEB));
    sg.wait_state("web", "Running", TIMEOUT);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let poller = {
        let (sg, stop, ok, failed, errors) = (
            sg.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
            errors.clone(),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match http_request(&sg.control, "GET", "/status", &[], Duration::from_secs(10)) {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                    other => {
                        errors.lock().expect("errors").push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    for _ in 0..5 {
        let seen = ok.load(Ordering::SeqCst);
        upgraded(&sg);
        poll_until(TIMEOUT, "the poller to get answers again", || {
            (ok.load(Ordering::SeqCst) > seen + 3).then_some(())
        });
    }
    stop.store(true, Ordering::SeqCst);
    poller.join().expect("the poller");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "every poll was answered: {:?}",
        errors.lock().expect("errors")
    );
}

#[test]
fn upgrades_to_bin_false_or_a_binary_failing_the_preflight_change_nothing() {
    let sg = Supergo::start("upgrade_refused", WEB);
    let before = sg.wait_state("web", "Running", TIMEOUT);
    let output = sg.ctl(&["upgrade", "--binary", "/bin/false"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("refusing to upgrade to /bin/false") && said.contains("exit status 1"),
        "{said}"
    );
    // The real supergo fails its pre-flight when the config no longer loads.
    let config = fs::read_to_string(&sg.config_path).expect("the config");
    fs::write(
        &sg.config_path,
        format!("{config}\n[program.broken]\nstop_timout = 3\n"),
    )
    .expect("write");
    let (http, body) = upgrade(&sg, None);
    assert_eq!(http, 500, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("--check-upgrade failed") && message.contains("stop_timout"),
        "{message}"
    );
    let missing = sg.ctl(&["upgrade", "--binary", "no/such/supergo"]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    let (mut before, mut after) = (before, sg.status("web"));
    for status in [&mut before, &mut after] {
        status["uptime_secs"] = Value::Null;
    }
    assert_eq!(after, before, "nothing changed");
    assert_eq!(metric(&sg, "supergo_upgrades_total"), 0.0);
    assert_eq!(metric(&sg, "supergo_upgrade_failures_total"), 3.0);
    let exe = exe_of(&sg);
    assert_eq!(exe, supergo_bin().canonicalize().expect("the binary"));
}

#[test]
fn a_new_image_that_cannot_restore_falls_back_to_the_old_binary() {
    let (sg, new) = start_with_failing_copy("upgrade_fallback", "SUPERGO_TEST_FAIL_RESTORE");
    let before = sg.wait_state("web", "Running", TIMEOUT);
    let child = pid_of(&before);
    let output = sg.ctl(&["upgrade", "--binary", &new.display().to_string()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("could not take over")
            && said.contains("SUPERGO_TEST_FAIL_RESTORE")
            && said.contains("went back to its own binary"),
        "{said}"
    );
    let exe = exe_of(&sg);
    assert_eq!(
        exe,
        supergo_bin().canonicalize().expect("the old binary"),
        "back on the old binary"
    );
    let after = sg.status("web");
    assert_eq!(pid_of(&after), child, "the child was never touched");
    assert_eq!(after["start_time"], before["start_time"]);
    assert_eq!(http_get(&sg.app_addr(), "/").expect("serves").0, 200);
    assert_eq!(metric(&sg, "supergo_upgrade_failures_total"), 1.0);
    sg.wait_log("going back to the binary before", TIMEOUT);
    // The old binary upgrades fine afterwards.
    upgraded(&sg);
    assert_eq!(pid_of(&sg.status("web")), child);
}

#[test]
fn an_exec_that_fails_leaves_everything_as_it_was() {
    let (sg, new) = start_with_failing_copy("upgrade_exec_fails", "SUPERGO_TEST_FAIL_EXEC");
    let child = sg.running_pid("web");
    let (http, body) = upgrade(&sg, Some(&new));
    assert_eq!(http, 500, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot execute")
            && message.contains("cannot be handed over")
            && message.contains("carries on as before"),
        "{message}"
    );
    let exe = exe_of(&sg);
    assert_eq!(exe, supergo_bin().canonicalize().expect("the binary"));
    assert_eq!(pid_of(&sg.status("web")), child);
    // Everything was released: restarts (spawn, readiness, reaping the old one) work, and
    // so does the next upgrade.
    sg.api_ok("POST", "/restart/web");
    wait_pid_gone(child, TIMEOUT);
    upgraded(&sg);
    assert_eq!(metric(&sg, "supergo_upgrade_failures_total"), 1.0);
    assert_eq!(metric(&sg, "supergo_upgrades_total"), 1.0);
}

#[test]
fn sigusr2_upgrades_in_place() {
    let sg = Supergo::start("upgrade_sigusr2", WEB);
    let child = sg.running_pid("web");
    sg.signal(Signal::SIGUSR2);
    sg.wait_log("upgrade: ", TIMEOUT);
    poll_until(TIMEOUT, "the upgrade to be counted", || {
        (sg.try_request_metric("supergo_upgrades_total") == Some(1.0)).then_some(())
    });
    assert_eq!(pid_of(&sg.status("web")), child);
    assert!(pid_alive(sg.pid()) && sg.try_exit_status().is_none());
}

#[test]
fn restart_stop_and_update_work_after_an_upgrade() {
    let sg = Supergo::start("upgrade_then_act", &format!("{WEB}{NOTIFY}"));
    let first = sg.running_pid("web");
    let socket = notify_socket_of(sg.running_pid("ready"));
    // Changed on disk before the upgrade: the running config travels, so `reread` still
    // shows the change afterwards and `update` applies it.
    sg.write_config(&format!(
        "{WEB}environment = {{ VERSION = \"2\" }}\n{NOTIFY}"
    ));
    upgraded(&sg);
    // The notify socket was handed over: a new process's READY=1 reaches the new image.
    let body = sg.api_ok("POST", "/restart/ready");
    let renotified = body["data"]["new_pid"].as_i64().expect("a new pid") as i32;
    assert_eq!(
        notify_socket_of(renotified),
        socket,
        "the same NOTIFY_SOCKET"
    );
    let body = sg.api_ok("GET", "/reread");
    assert_eq!(
        body["data"]["updates"],
        serde_json::json!(["web"]),
        "{body}"
    );
    let body = sg.api_ok("POST", "/restart/web");
    let second = body["data"]["new_pid"].as_i64().expect("a new pid") as i32;
    assert_ne!(second, first);
    wait_pid_gone(first, TIMEOUT);
    sg.api_ok("POST", "/update");
    let third = sg.running_pid("web");
    assert_ne!(third, second, "update replaced the process");
    assert_eq!(sg.status("web")["generation"], 3);
    sg.api_ok("POST", "/stop/web");
    wait_pid_gone(third, TIMEOUT);
    sg.api_ok("POST", "/start/web");
    assert_eq!(http_get(&sg.app_addr(), "/").expect("serves").0, 200);
}

#[test]
fn output_written_during_upgrades_is_not_lost() {
    // Lines written in two pieces (so that reads often end mid-line), to a log file and to
    // supergo's own stdout, all through the upgrades, until told to stop.
    let sg = Supergo::start(
        "upgrade_output",
        r#"
[program.talk]
command = "sh -c 'i=0; while [ ! -e {dir}/stop ]; do printf \"out %d\" $i; printf \" end\\n\"; printf \"err %d\\n\" $i >&2; i=$((i+1)); [ $((i % 50)) -eq 0 ] && sleep 0.01; done; echo $i > {dir}/count.tmp; mv {dir}/count.tmp {dir}/count; exec sleep 600'"
start_secs = 0.1
stdout_file = "{dir}/talk.out"
stderr_file = "/dev/stdout"
"#,
    );
    sg.wait_state("talk", "Running", TIMEOUT);
    for _ in 0..4 {
        upgraded(&sg);
    }
    sg.write_file("stop", "");
    let count: usize = poll_until(TIMEOUT, "the child to stop writing", || {
        fs::read_to_string(sg.path("count"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    assert!(count > 0);
    let complete = |text: &str, what: &str, line: &dyn Fn(usize) -> String| {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(what)).collect();
        lines.len() == count && lines.iter().enumerate().all(|(i, l)| *l == line(i))
    };
    poll_until(
        TIMEOUT,
        "every line in the log file and on supergo's stdout, in order, once",
        || {
            let file = fs::read_to_string(sg.path("talk.out")).unwrap_or_default();
            let stdout = sg.stdout();
            (complete(&file, "out ", &|i| format!("out {i} end"))
                && complete(&stdout, "talk | err ", &|i| format!("talk | err {i}")))
            .then_some(())
        },
    );
}

#[test]
fn a_sigterm_right_after_sigusr2_stops_supergo_and_every_program() {
    let sg = Supergo::start("upgrade_then_sigterm", WEB);
    let child = sg.running_pid("web");
    // Whichever image takes it (the old one before it parks its signals, or the new one, to
    // which it is pending across the exec), the SIGTERM is honoured.
    sg.signal(Signal::SIGUSR2);
    sg.signal(Signal::SIGTERM);
    let status = sg.wait_exit(TIMEOUT * 2);
    assert!(
        status.success(),
        "supergo exits 0 after stopping everything: {status:?}"
    );
    wait_pid_gone(child, TIMEOUT);
}

#[test]
fn an_upgrade_is_refused_while_a_restart_runs() {
    let sg = Supergo::start(
        "upgrade_refused_restarting",
        r#"
[program.web]
command = "{hello}"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 2
"#,
    );
    let child = sg.running_pid("web");
    sg.api_ok("POST", "/restart/web?wait=false");
    let (http, body) = upgrade(&sg, None);
    assert_eq!(http, 409, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("web: a restart is in progress"),
        "{message}"
    );
    poll_until(Duration::from_secs(20), "the restart to finish", || {
        let status = sg.status("web");
        (status["handoff"].is_null() && pid_of(&status) != child).then_some(())
    });
}

#[test]
fn a_second_upgrade_while_one_is_checked_is_refused_and_the_core_keeps_answering() {
    let mut sg = Supergo::new("upgrade_second_refused");
    sg.token = Some("s3cret".into());
    let token = sg.write_file("token", "s3cret\n");
    sg.write_config(&format!("[supergo]\ntoken_file = \"{{dir}}/token\"\n{WEB}"));
    sg.spawn(&[]);
    sg.wait_ready();
    let child = sg.running_pid("web");
    // The token file becomes a FIFO: the new binary's pre-flight (which loads the config)
    // blocks on it until the test writes the token.
    fs::remove_file(&token).expect("remove the token file");
    nix::unistd::mkfifo(&token, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let sg = Arc::new(sg);
    let first = {
        let sg = sg.clone();
        thread::spawn(move || upgrade(&sg, None))
    };
    poll_until(TIMEOUT, "the pre-flight to start", || {
        sg.log().contains("upgrade asked").then_some(())
    });
    let (http, body) = upgrade(&sg, None);
    assert_eq!(http, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already in progress"),
        "{body}"
    );
    assert_eq!(
        pid_of(&sg.status("web")),
        child,
        "the core answers while the check runs"
    );
    // The token for the pre-flight (which has the FIFO open and waits), then a plain file
    // again before that reader sees the end: the new image reads the file.
    {
        let mut fifo = fs::OpenOptions::new()
            .write(true)
            .open(&token)
            .expect("open the FIFO");
        std::io::Write::write_all(&mut fifo, b"s3cret\n").expect("write the token");
        sg.write_file("token", "s3cret\n");
    }
    let (http, body) = first.join().expect("the first client");
    assert_eq!(http, 200, "{body}");
    assert_eq!(pid_of(&sg.status("web")), child);
}

impl Supergo {
    /// A metric, or `None` while supergo does not answer (between two images).
    fn try_request_metric(&self, name: &str) -> Option<f64> {
        metric_in(&self.request("GET", "/metrics").ok()?.body, name)
    }
}
