//! Readiness-gated handoff, rollback and drain visibility (DESIGN.md, "Restart, readiness and
//! rollback"; "Child protocol").
//!
//! With `ready = "notify"` a restart hands over only when the new process sends `READY=1`
//! from its own process group; until then the old one serves. A new process that never gets
//! ready, or exits first, is rolled back and the old one keeps serving. An old process that
//! drains is listed in the status.
//!
//! How the tests control readiness without sleeping: generation 2 and later run a shell that
//! waits for a *gate* file the test creates, then `exec`s the real child (same pid, so the
//! new process is not ready, and does not accept, until the test opens the gate). Where a test
//! must know that supergo has handled a datagram, a small perl child sends `STATUS=` lines:
//! datagrams on one socket arrive in order, so once its last `STATUS=` shows in the status,
//! everything sent before it has been handled.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    fail, http_get, pid_alive, pid_of, poll_until, wait_pid_gone, HeldRequest, HttpResponse, Load,
    LoadOptions, LoadReport, Supergo, TIMEOUT,
};

/// How long a test watches a process that is not ready yet, to see that nothing treats it
/// as ready: several times the `start_secs` (0.2) an uptime readiness would wait.
const NOT_READY_WINDOW: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------------------------------------
// Helpers

/// `command` and `args` that run `script` with `/bin/sh -c`.
fn shell(script: &str) -> String {
    format!("command = \"/bin/sh\"\nargs = [\"-c\", '''{script}''']")
}

/// Shell code that waits until the test creates the file `{dir}/gate`.
const WAIT_FOR_GATE: &str = "while [ ! -e {dir}/gate ]; do sleep 0.01; done";

/// Generation 1 runs `first`; every later generation runs `later`.
fn first_then(first: &str, later: &str) -> String {
    shell(&format!(
        r#"if [ "$SUPERGO_GENERATION" = 1 ]; then exec {first}; fi; exec {later}"#
    ))
}

/// Generation 1 runs `first`; every later generation waits for the gate, then runs `later`
/// (in the same pid: `exec`).
fn first_then_gated(first: &str, later: &str) -> String {
    shell(&format!(
        r#"if [ "$SUPERGO_GENERATION" = 1 ]; then exec {first}; fi; {WAIT_FOR_GATE}; exec {later}"#
    ))
}

/// Lets the gated processes go on.
fn open_gate(sg: &Supergo) {
    let gate = sg.path("gate");
    fs::write(&gate, b"").unwrap_or_else(|err| fail(format!("create {}: {err}", gate.display())));
}

/// A perl child that speaks the notify protocol itself: `notify("KEY=VALUE\n…")` sends one
/// datagram, `wait_for(PATH)` waits until a file exists; after `body` it sleeps until stopped.
/// (perl-base is part of every Debian system; its Socket module handles abstract addresses.)
fn perl_notifier(body: &str) -> String {
    format!(
        r#"use strict;
use warnings;
use Socket;

# NOTIFY_SOCKET names an abstract socket as @name; the kernel wants a leading NUL instead.
my $address = $ENV{{NOTIFY_SOCKET}} or die "notifier: NOTIFY_SOCKET is not set\n";
$address =~ s/^@/\0/;
socket(my $socket, PF_UNIX, SOCK_DGRAM, 0) or die "notifier: socket: $!\n";

sub notify {{
    my ($message) = @_;
    send($socket, $message, 0, pack_sockaddr_un($address))
        or die "notifier: cannot send $message: $!\n";
    print STDERR "notifier: pid $$ sent " . join(' | ', split /\n/, $message) . "\n";
}}

sub wait_for {{
    my ($path) = @_;
    select(undef, undef, undef, 0.01) until -e $path;
}}

{body}

sleep;
"#
    )
}

/// Starts supergo with `files` (name, text) written to the test directory first.
fn start_with_files(name: &str, files: &[(&str, &str)], config: &str) -> Supergo {
    let sg = Supergo::new(name);
    for (file, text) in files {
        sg.write_file(file, text);
    }
    sg.write_config(config);
    sg.spawn(&[]);
    sg.wait_ready();
    sg
}

/// The pid of the new process of a restart in progress, if any.
fn handoff_pid(status: &Value) -> Option<i32> {
    status["handoff"]["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
}

/// Waits until a restart of `name` is in progress: (serving pid, new pid).
fn wait_handoff(sg: &Supergo, name: &str) -> (i32, i32) {
    poll_until(TIMEOUT, &format!("a restart of {name} in progress"), || {
        let status = sg.status(name);
        handoff_pid(&status).map(|new| (pid_of(&status), new))
    })
}

/// The `(HTTP status, JSON body)` of a control API answer received on another thread.
fn json_answer(what: &str, answer: thread::Result<Result<HttpResponse, String>>) -> (u16, Value) {
    let response = match answer {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => fail(format!("{what}: {err}")),
        Err(_) => fail(format!("{what}: the thread asking it panicked")),
    };
    let body = serde_json::from_str(&response.body).unwrap_or_else(|err| {
        fail(format!(
            "{what}: HTTP {} with a body that is not JSON ({err}): {:?}",
            response.status, response.body
        ))
    });
    (response.status, body)
}

/// `GET /` on the program's address: the pid that answered.
fn answering_pid(addr: &str) -> i32 {
    match http_get(addr, "/") {
        Ok((200, body)) => body
            .trim()
            .strip_prefix("pid: ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| fail(format!("GET / on {addr}: {body:?} is not `pid: N`"))),
        Ok((status, body)) => fail(format!("GET / on {addr}: HTTP {status}: {body:?}")),
        Err(err) => fail(format!("GET / on {addr}: {err}")),
    }
}

/// The `NOTIFY_SOCKET` a process was started with, from /proc/PID/environ.
fn notify_socket_of(pid: i32) -> String {
    let environ = fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|err| fail(format!("read /proc/{pid}/environ: {err}")));
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(b"NOTIFY_SOCKET="))
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .unwrap_or_else(|| fail(format!("pid {pid} has no NOTIFY_SOCKET in its environment")))
}

/// Sends one datagram to a `NOTIFY_SOCKET` (`@name`: abstract, else a path) from this process.
fn send_notification(socket: &str, message: &str) {
    let sock = UnixDatagram::unbound().unwrap_or_else(|err| fail(format!("socket: {err}")));
    let sent = match socket.strip_prefix('@') {
        Some(name) => UnixSocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| sock.send_to_addr(message.as_bytes(), &addr)),
        None => sock.send_to(message.as_bytes(), socket),
    };
    if let Err(err) = sent {
        fail(format!("send {message:?} to NOTIFY_SOCKET={socket}: {err}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Readiness-gated handoff

#[test]
fn notify_restart_keeps_the_old_process_serving_until_the_new_one_is_ready() {
    let sg = Supergo::start(
        "notify_restart_waits_for_ready",
        &format!(
            r#"
[program.web]
{}
listen_addrs = ["127.0.0.1:{{port}}"]
ready = "notify"
ready_timeout = 30
# Would end the wait after 0.2 s if readiness were taken from uptime.
start_secs = 0.2
stop_timeout = 10
stderr_file = "{{dir}}/web.err"
"#,
            first_then_gated("{hello}", "{hello}")
        ),
    );
    let addr = sg.app_addr();
    let old = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    let load = Load::start(
        &addr,
        LoadOptions {
            threads: 2,
            sleepers: 1,
            sleep_ms: 300,
            ..LoadOptions::default()
        },
    );
    load.wait_ok(20, TIMEOUT);

    let new = thread::scope(|scope| {
        let restart = scope.spawn(|| sg.request("POST", "/restart/web"));
        let (serving, new) = wait_handoff(&sg, "web");
        assert_eq!(serving, old, "the serving pid changed before the restart");
        // The new process is not ready for a while: the old one answers everything, and
        // the restart waits.
        let waiting = Instant::now();
        while waiting.elapsed() < NOT_READY_WINDOW {
            let pid = answering_pid(&addr);
            if pid != old {
                fail(format!(
                    "pid {pid} answered while new pid {new} was not ready; only the old pid \
                     {old} should serve"
                ));
            }
            if restart.is_finished() {
                fail("the restart answered before the new process sent READY=1");
            }
            let status = sg.status("web");
            if status["state"] != "Running" || pid_of(&status) != old {
                fail(format!(
                    "while new pid {new} is not ready, web should be Running with pid {old}: \
                     {status}"
                ));
            }
            if !pid_alive(old) {
                fail(format!(
                    "old pid {old} was stopped before new pid {new} was ready"
                ));
            }
            thread::sleep(Duration::from_millis(10)); // pacing, not synchronisation
        }
        open_gate(&sg);
        let (http, body) = json_answer("POST /restart/web", restart.join());
        let message = body["message"].as_str().unwrap_or_default();
        if http != 200
            || body["status"] != 0
            || !message.contains(&old.to_string())
            || !message.contains(&new.to_string())
        {
            fail(format!(
                "the restart should succeed and name pids {old} and {new}: HTTP {http}: {body}"
            ));
        }
        new
    });
    poll_until(TIMEOUT, &format!("new pid {new} to answer GET /"), || {
        (answering_pid(&addr) == new).then_some(())
    });
    load.wait_ok(50, TIMEOUT);
    let report = load.stop();
    report.assert_no_failures();
    assert_eq!(
        report.pids,
        BTreeSet::from([old as u32, new as u32]),
        "the load should be answered by the old pid, then the new one: {report}"
    );
    wait_pid_gone(old, TIMEOUT);
}

/// A notify program whose first generation serves and sends READY=1, and whose next ones
/// run `next`; started, Running, and under a light load.
fn start_for_rollback(name: &str, ready_timeout: u32, next: &str) -> (Supergo, String, i32, Load) {
    let sg = Supergo::start(
        name,
        &format!(
            r#"
[program.web]
{}
listen_addrs = ["127.0.0.1:{{port}}"]
ready = "notify"
ready_timeout = {ready_timeout}
stop_timeout = 5
environment = {{ PROBE_REPORT = "{{dir}}/web-{{gen}}.json" }}
stderr_file = "{{dir}}/web.err"
"#,
            first_then("{probe} notify serve", next)
        ),
    );
    let addr = sg.app_addr();
    let old = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    let load = Load::start(
        &addr,
        LoadOptions {
            threads: 2,
            sleepers: 0,
            ..LoadOptions::default()
        },
    );
    load.wait_ok(20, TIMEOUT);
    (sg, addr, old, load)
}

/// After a rolled-back restart: the old pid is Running, answers, and the load saw no failure.
fn assert_old_keeps_serving(sg: &Supergo, addr: &str, old: i32, load: Load) -> LoadReport {
    let status = sg.status("web");
    if status["state"] != "Running" || pid_of(&status) != old {
        fail(format!(
            "after the rollback web should be Running with old pid {old}: {status}"
        ));
    }
    assert_eq!(answering_pid(addr), old, "the old pid should keep serving");
    load.wait_ok(20, TIMEOUT);
    let report = load.stop();
    report.assert_no_failures();
    report
}

#[test]
fn notify_restart_rolls_back_a_new_process_that_never_sends_ready() {
    // Generation 2 serves, but never says READY=1.
    let (sg, addr, old, load) =
        start_for_rollback("notify_rollback_on_ready_timeout", 1, "{probe} serve");
    let (http, body) = sg.api("POST", "/restart/web");
    let new = sg.read_report("web-2.json")["pid"].as_i64().unwrap_or(0) as i32;
    let message = body["message"].as_str().unwrap_or_default();
    if http == 200
        || body["status"] == 0
        || !message.contains(&format!("pid {new}"))
        || !message.contains("READY=1")
        || !message.contains("ready_timeout")
    {
        fail(format!(
            "the restart should fail, naming new pid {new} and why (no READY=1 within \
             ready_timeout): HTTP {http}: {body}"
        ));
    }
    wait_pid_gone(new, TIMEOUT);
    assert_old_keeps_serving(&sg, &addr, old, load);
}

#[test]
fn notify_restart_rolls_back_a_new_process_that_exits_before_ready() {
    // Generation 2 is a bad deploy: it exits with status 7 at once.
    let (sg, addr, old, load) =
        start_for_rollback("notify_rollback_on_early_exit", 30, "{probe} exit 7");
    let (http, body) = sg.api("POST", "/restart/web");
    let new = sg.read_report("web-2.json")["pid"].as_i64().unwrap_or(0) as i32;
    let message = body["message"].as_str().unwrap_or_default();
    if http == 200
        || body["status"] == 0
        || !message.contains(&format!("pid {new}"))
        || !message.contains("status 7")
    {
        fail(format!(
            "the restart should fail, naming new pid {new} and its exit status 7: \
             HTTP {http}: {body}"
        ));
    }
    let status = sg.status("web");
    if handoff_pid(&status).is_some() {
        fail(format!(
            "the restart has failed, yet web's status shows it in progress: {status}"
        ));
    }
    wait_pid_gone(new, TIMEOUT);
    let report = assert_old_keeps_serving(&sg, &addr, old, load);
    assert_eq!(
        report.pids,
        BTreeSet::from([old as u32]),
        "only the old pid can have answered: {report}"
    );
}

#[test]
fn notify_from_outside_the_new_process_group_does_not_make_it_ready() {
    // Generation 1 is ready at once. Generation 2 never sends READY=1: once the gate opens it
    // sends a STATUS= line, which tells the test that everything sent before was handled.
    let notifier = perl_notifier(
        r#"if ($ENV{SUPERGO_GENERATION} eq '1') {
    notify("READY=1");
} else {
    wait_for("{dir}/gate");
    notify("STATUS=still starting");
}"#,
    );
    let sg = start_with_files(
        "notify_from_outsider_ignored",
        &[("notifier.pl", &notifier)],
        r#"
[program.web]
command = "perl {dir}/notifier.pl"
ready = "notify"
ready_timeout = 30
stop_timeout = 5
stderr_file = "{dir}/web.err"
"#,
    );
    let old = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    let (http, body) = sg.api("POST", "/restart/web?wait=false");
    assert_eq!(http, 200, "POST /restart/web?wait=false: {body}");
    let (serving, new) = wait_handoff(&sg, "web");
    assert_eq!(serving, old, "the serving pid changed before the restart");

    // The test process is in neither process's group: its READY=1 must not count.
    let forged = format!("STATUS=forged by pid {}", std::process::id());
    send_notification(&notify_socket_of(new), &format!("READY=1\n{forged}"));
    open_gate(&sg);
    let status = poll_until(
        TIMEOUT,
        "web's status_text to be `still starting` (the new process's own STATUS=)",
        || {
            let status = sg.status("web");
            if status["status_text"] == forged.trim_start_matches("STATUS=") {
                fail(format!(
                    "a notification from pid {} (outside new pid {new}'s group) was taken: \
                     {status}",
                    std::process::id()
                ));
            }
            (status["status_text"] == "still starting").then_some(status)
        },
    );
    if status["state"] != "Running" || pid_of(&status) != old || handoff_pid(&status) != Some(new) {
        fail(format!(
            "the forged READY=1 must leave the restart waiting: web should serve with old pid \
             {old} while new pid {new} is not ready: {status}"
        ));
    }
    assert!(pid_alive(old), "old pid {old} should still be serving");
}

// ---------------------------------------------------------------------------------------------
// One restart at a time; restart all; stop during a handoff; --no-wait

#[test]
fn second_restart_during_a_handoff_is_refused_with_409() {
    let sg = Supergo::start(
        "second_restart_refused",
        &format!(
            r#"
[program.web]
{}
ready = "notify"
ready_timeout = 30
stop_timeout = 5
"#,
            first_then_gated("{probe} notify sleep", "{probe} notify sleep")
        ),
    );
    let old = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    thread::scope(|scope| {
        let first = scope.spawn(|| sg.request("POST", "/restart/web"));
        let (_, new) = wait_handoff(&sg, "web");

        let (http, body) = sg.api("POST", "/restart/web");
        let message = body["message"].as_str().unwrap_or_default();
        if http != 409 || body["status"] == 0 || !message.contains("in progress") {
            fail(format!(
                "a restart while another is in progress should be refused with 409 and say \
                 so: HTTP {http}: {body}"
            ));
        }
        assert!(!first.is_finished(), "the first restart should still wait");

        open_gate(&sg);
        let (http, body) = json_answer("the first POST /restart/web", first.join());
        if http != 200 || body["status"] != 0 {
            fail(format!(
                "the first restart should still succeed: HTTP {http}: {body}"
            ));
        }
        let status = sg.wait_state("web", "Running", TIMEOUT);
        poll_until(TIMEOUT, &format!("web to serve with pid {new}"), || {
            (pid_of(&sg.status("web")) == new).then_some(())
        });
        assert_ne!(pid_of(&status), 0);
        wait_pid_gone(old, TIMEOUT);
    });
}

#[test]
fn restart_all_restarts_every_program_concurrently_and_reports_each() {
    let program = |name: &str| {
        format!(
            "[program.{name}]\n{}\nready = \"notify\"\nready_timeout = 30\nstop_timeout = 5\n",
            first_then_gated("{probe} notify sleep", "{probe} notify sleep")
        )
    };
    let names = ["alpha", "beta", "gamma"];
    let config: String = names.iter().map(|n| program(n) + "\n").collect();
    let sg = Supergo::start("restart_all_concurrently", &config);
    let mut old = BTreeMap::new();
    for name in names {
        old.insert(name, pid_of(&sg.wait_state(name, "Running", TIMEOUT)));
    }
    thread::scope(|scope| {
        let restart = scope.spawn(|| sg.request("POST", "/restart/all"));
        // Every new process waits at the gate: if the restarts ran one after another, only
        // one of them could be in progress now.
        let new: BTreeMap<&str, i32> = poll_until(
            TIMEOUT,
            "a restart of every program in progress at the same time",
            || {
                let programs = sg.programs();
                names
                    .iter()
                    .map(|name| {
                        let status = programs.iter().find(|p| p["name"] == *name)?;
                        Some((*name, handoff_pid(status)?))
                    })
                    .collect()
            },
        );
        open_gate(&sg);
        let (http, body) = json_answer("POST /restart/all", restart.join());
        if http != 200 || body["status"] != 0 {
            fail(format!("restart all should succeed: HTTP {http}: {body}"));
        }
        let entries = body["data"].as_array().cloned().unwrap_or_default();
        let reported: BTreeSet<&str> = entries.iter().filter_map(|e| e["name"].as_str()).collect();
        if reported != BTreeSet::from(names) {
            fail(format!(
                "restart all should report each of {names:?}: {body}"
            ));
        }
        for entry in &entries {
            let name = entry["name"].as_str().unwrap_or_default();
            let message = entry["message"].as_str().unwrap_or_default();
            let (from, to) = (old[name], new[name]);
            if entry["ok"] != true
                || !message.contains(&from.to_string())
                || !message.contains(&to.to_string())
            {
                fail(format!(
                    "{name}: its entry should say it was restarted from pid {from} to pid {to}: \
                     {entry}"
                ));
            }
        }
        for name in names {
            poll_until(
                TIMEOUT,
                &format!("{name} to serve with pid {}", new[name]),
                || {
                    let status = sg.status(name);
                    (status["state"] == "Running" && pid_of(&status) == new[name]).then_some(())
                },
            );
        }
    });
}

#[test]
fn stop_during_a_handoff_stops_the_old_and_the_new_process() {
    let sg = Supergo::start(
        "stop_during_handoff",
        &format!(
            r#"
[program.web]
{}
ready = "notify"
ready_timeout = 30
stop_timeout = 5
"#,
            // Generation 2 never gets ready: the handoff lasts until the stop.
            first_then("{probe} notify sleep", "{probe} sleep")
        ),
    );
    sg.wait_state("web", "Running", TIMEOUT);
    thread::scope(|scope| {
        let restart = scope.spawn(|| sg.request("POST", "/restart/web"));
        let (old, new) = wait_handoff(&sg, "web");

        let (http, body) = sg.api("POST", "/stop/web");
        if http != 200 || body["status"] != 0 {
            fail(format!("stop during a handoff: HTTP {http}: {body}"));
        }
        wait_pid_gone(old, TIMEOUT);
        wait_pid_gone(new, TIMEOUT);
        let status = sg.wait_state("web", "Stopped", TIMEOUT);
        if handoff_pid(&status).is_some()
            || status["draining"].as_array().is_some_and(|d| !d.is_empty())
        {
            fail(format!("a stopped program holds no process: {status}"));
        }
        // The restart waiting on the handoff is told it did not happen.
        let (http, body) = json_answer("POST /restart/web", restart.join());
        if http == 200 || body["status"] == 0 {
            fail(format!(
                "the restart cut short by stop should not report success: HTTP {http}: {body}"
            ));
        }
    });
}

#[test]
fn supergoctl_restart_no_wait_returns_before_the_handoff_is_done() {
    let sg = Supergo::start(
        "ctl_restart_no_wait",
        &format!(
            r#"
[program.web]
{}
ready = "notify"
ready_timeout = 60
stop_timeout = 5
"#,
            first_then_gated("{probe} notify sleep", "{probe} notify sleep")
        ),
    );
    let old = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    // The new process cannot be ready before the gate opens, so a supergoctl that waited for
    // the outcome would not come back here.
    let out = sg.ctl(&["restart", "--no-wait", "web"]);
    if !out.status.success() {
        fail(format!(
            "supergoctl restart --no-wait web: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let (serving, new) = wait_handoff(&sg, "web");
    assert_eq!(
        serving, old,
        "the old pid serves until the new one is ready"
    );
    open_gate(&sg);
    poll_until(TIMEOUT, &format!("web to serve with new pid {new}"), || {
        let status = sg.status("web");
        (status["state"] == "Running" && pid_of(&status) == new && handoff_pid(&status).is_none())
            .then_some(())
    });
    wait_pid_gone(old, TIMEOUT);
}

// ---------------------------------------------------------------------------------------------
// Initial start with notify; STATUS=

#[test]
fn initial_start_with_notify_is_starting_until_ready_then_running() {
    let sg = Supergo::start(
        "initial_start_notify",
        &format!(
            r#"
[program.web]
{}
ready = "notify"
ready_timeout = 30
# Would end Starting after 0.2 s if readiness were taken from uptime.
start_secs = 0.2
stop_timeout = 5
environment = {{ PROBE_REPORT = "{{dir}}/web.json" }}
"#,
            shell(&format!("{WAIT_FOR_GATE}; exec {{probe}} notify sleep"))
        ),
    );
    let pid = poll_until(TIMEOUT, "web's process to be started", || {
        let status = sg.status("web");
        (pid_of(&status) != 0).then(|| pid_of(&status))
    });
    let started = Instant::now();
    while started.elapsed() < NOT_READY_WINDOW {
        let status = sg.status("web");
        if status["state"] != "Starting" || pid_of(&status) != pid {
            fail(format!(
                "pid {pid} has not sent READY=1: web should be Starting with it: {status}"
            ));
        }
        thread::sleep(Duration::from_millis(10)); // pacing, not synchronisation
    }
    open_gate(&sg);
    let status = sg.wait_state("web", "Running", TIMEOUT);
    assert_eq!(
        pid_of(&status),
        pid,
        "the process that became ready: {status}"
    );
    assert_eq!(
        sg.read_report("web.json")["pid"],
        pid,
        "the probe runs in the pid supergo started"
    );
}

#[test]
fn status_text_sent_by_the_child_is_shown_in_status() {
    let notifier = perl_notifier(
        r#"notify("STATUS=warming up");
wait_for("{dir}/gate");
notify("READY=1\nSTATUS=serving requests");"#,
    );
    let sg = start_with_files(
        "status_text_shown",
        &[("notifier.pl", &notifier)],
        r#"
[program.web]
command = "perl {dir}/notifier.pl"
ready = "notify"
ready_timeout = 30
stop_timeout = 5
stderr_file = "{dir}/web.err"
"#,
    );
    poll_until(
        TIMEOUT,
        "web Starting with status_text `warming up`",
        || {
            let status = sg.status("web");
            (status["state"] == "Starting" && status["status_text"] == "warming up").then_some(())
        },
    );
    open_gate(&sg);
    poll_until(
        TIMEOUT,
        "web Running with status_text `serving requests`",
        || {
            let status = sg.status("web");
            (status["state"] == "Running" && status["status_text"] == "serving requests")
                .then_some(())
        },
    );
    let out = sg.ctl(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !table.contains("serving requests") {
        fail(format!(
            "supergoctl status should show the STATUS= text `serving requests`: {}: {table}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Draining

#[test]
fn draining_process_is_listed_in_status_and_supergoctl_status() {
    let sg = Supergo::start(
        "draining_visible",
        r#"
[program.web]
command = "{hello}"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
# The drain must end with the held request, long before SIGKILL.
stop_timeout = 30
stderr_file = "{dir}/web.err"
"#,
    );
    let addr = sg.app_addr();
    let old = pid_of(&sg.wait_state("web", "Running", TIMEOUT));

    // Held in flight by the old process until the test has seen the drain (see
    // `HeldRequest`): a slow request would end the drain on its own clock.
    let held = HeldRequest::start(&addr, "/sleep?ms=10");
    held.wait_accepted(old, sg.port);
    let (http, body) = sg.api("POST", "/restart/web");
    if http != 200 || body["status"] != 0 {
        fail(format!("restart: HTTP {http}: {body}"));
    }
    let drain = poll_until(
        TIMEOUT,
        &format!("old pid {old} in web's `draining`"),
        || {
            let status = sg.status("web");
            let draining = status["draining"].as_array()?;
            draining.iter().find(|d| d["pid"] == old).cloned()
        },
    );
    let since = drain["since"].as_f64().unwrap_or(0.0);
    let kill_at = drain["kill_at"].as_f64().unwrap_or(0.0);
    if drain["generation"] != 1 || since <= 0.0 || kill_at <= since {
        fail(format!(
            "the draining entry should give generation 1, since, and a later kill_at: {drain}"
        ));
    }

    let out = sg.ctl(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let draining_column = table
        .lines()
        .find(|line| line.split_whitespace().next() == Some("web"))
        .and_then(|line| line.split_whitespace().nth(5))
        .unwrap_or_default();
    if !out.status.success() || !draining_column.split(',').any(|p| p == old.to_string()) {
        fail(format!(
            "supergoctl status should list pid {old} under DRAINING: {}: {table}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    let response = held
        .finish()
        .unwrap_or_else(|err| fail(format!("the held request: {err}")));
    if response != (200, "slept 10 ms".to_string()) {
        fail(format!(
            "the held request should complete while pid {old} drains: {response:?}"
        ));
    }
    wait_pid_gone(old, TIMEOUT);
    poll_until(TIMEOUT, "web's `draining` to be empty", || {
        let status = sg.status("web");
        status["draining"]
            .as_array()
            .is_some_and(|d| d.is_empty())
            .then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// What a client sees right after an answer

/// A client that has the restart's answer must not read an older state: a script running
/// `supergoctl restart web && supergoctl status` would otherwise see the old pid and a handoff
/// "in progress" that is already over.
#[test]
fn status_read_after_a_restart_answer_shows_the_new_process() {
    let sg = Supergo::start(
        "status_after_restart_answer",
        r#"
[program.web]
command = "{probe} notify sleep"
ready = "notify"
ready_timeout = 30
stop_timeout = 5
"#,
    );
    sg.wait_state("web", "Running", TIMEOUT);
    for n in 1..=RESTARTS_SEEN_BY_STATUS {
        let (http, body) = sg.api("POST", "/restart/web");
        let new = body["data"]["new_pid"].as_i64().unwrap_or(0);
        if http != 200 || body["status"] != 0 || new == 0 {
            fail(format!("restart {n}: HTTP {http}: {body}"));
        }
        // No polling: the restart has answered, so the handoff is over.
        let status = sg.status("web");
        if status["pid"] != new || status["state"] != "Running" || !status["handoff"].is_null() {
            fail(format!(
                "restart {n} answered {body}, but GET /status right after it shows {status}"
            ));
        }
    }
}

/// Enough restarts to catch an answer sent before the status is published.
const RESTARTS_SEEN_BY_STATUS: usize = 30;
