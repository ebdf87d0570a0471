//! supergo's exit status says how it ended (issue 16, items 3 and 4): 0 after a stop signal
//! (tested in `container`), 1 when it cannot start, and with `essential = true` the status of
//! the essential program once it has ended for good: its exit code, 128 + the signal that
//! killed it, 1 when it never started; the other programs are stopped first, in priority
//! order (highest `priority` first).

use std::net::TcpListener;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::{fail, make_fifo, pid_alive, release_fifo, Supergo, TIMEOUT};

/// Long enough for supergo to stop a few programs (each stops at once on SIGTERM).
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// The position of `needle` in `log`, or a failure that shows the test directory.
fn position(log: &str, needle: &str) -> usize {
    log.find(needle)
        .unwrap_or_else(|| fail(format!("{needle:?} is not in supergo's log")))
}

#[test]
fn essential_exit_status_7_passes_through_and_the_others_stop_in_priority_order() {
    let sg = Supergo::new("essential_exit_status_7_passes_through");
    sg.write_config(
        r#"
[program.db]
command = "{probe} sleep"
priority = 1
start_secs = 0.2

[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
priority = 2
start_secs = 0.2

[program.main]
command = "sh -c 'read line < {dir}/go; exit 7'"
priority = 3
start_secs = 0.2
auto_restart = false
essential = true
"#,
    );
    let go = sg.path("go");
    make_fifo(&go);
    sg.spawn(&[]);
    sg.wait_ready();
    let db = sg.running_pid("db");
    let web = sg.running_pid("web");
    sg.wait_state("main", "Running", TIMEOUT);

    // Let main end: it reads a line and exits 7.
    release_fifo(&go, "main");

    let exit = sg.wait_exit(EXIT_WITHIN);
    assert_eq!(
        exit.code(),
        Some(7),
        "supergo must exit with the essential program's status: {exit}: {}",
        sg.dump()
    );
    for (name, pid) in [("db", db), ("web", web)] {
        assert!(
            !pid_alive(pid),
            "{name} (pid {pid}) outlived supergo: {}",
            sg.dump()
        );
    }
    let log = sg.log();
    let why = position(
        &log,
        "main is essential and has ended for good (exited with status 7)",
    );
    let web_stopped = position(&log, "web: stopped");
    let db_stopped = position(&log, "db: stopped");
    assert!(
        why < web_stopped && web_stopped < db_stopped,
        "the reason first, then web (priority 2) stopped before db (priority 1): {}",
        sg.dump()
    );
}

#[test]
fn essential_killed_by_a_signal_exits_128_plus_its_number() {
    let sg = Supergo::start(
        "essential_killed_by_a_signal",
        r#"
[program.main]
command = "{probe} sleep"
start_secs = 0.2
auto_restart = false
essential = true

[program.side]
command = "{probe} sleep"
start_secs = 0.2
"#,
    );
    let main = sg.running_pid("main");
    let side = sg.running_pid("side");
    kill(Pid::from_raw(main), Signal::SIGKILL).unwrap_or_else(|e| fail(format!("kill: {e}")));
    let exit = sg.wait_exit(EXIT_WITHIN);
    assert_eq!(exit.code(), Some(128 + 9), "{exit}: {}", sg.dump());
    assert!(!pid_alive(side), "side outlived supergo: {}", sg.dump());
    position(
        &sg.log(),
        "main is essential and has ended for good (killed by signal 9",
    );
}

#[test]
fn an_essential_program_that_never_starts_makes_supergo_exit_1() {
    let sg = Supergo::new("an_essential_program_that_never_starts");
    sg.write_config(
        r#"
[program.side]
command = "{probe} sleep"
priority = 1
start_secs = 0.2

[program.main]
command = "{dir}/no-such-binary"
priority = 2
max_retry = 0
essential = true
"#,
    );
    sg.spawn(&[]);
    // It may be over before the API could be asked anything.
    let exit = sg.wait_exit(EXIT_WITHIN);
    assert_eq!(exit.code(), Some(1), "{exit}: {}", sg.dump());
    let log = sg.log();
    position(&log, "cannot execute");
    position(
        &log,
        "main is essential and has ended for good (never started",
    );
    position(&log, "side: stopped");
}

#[test]
fn an_essential_program_going_fatal_passes_its_last_exit_status() {
    let sg = Supergo::new("an_essential_program_going_fatal");
    sg.write_config(
        r#"
[program.main]
command = "{probe} exit 5"
max_retry = 1
backoff_secs = 0.1
essential = true
"#,
    );
    sg.spawn(&[]);
    let exit = sg.wait_exit(EXIT_WITHIN);
    assert_eq!(exit.code(), Some(5), "{exit}: {}", sg.dump());
    let log = sg.log();
    // A failed start that is retried is no end: only the give-up is.
    let retried = position(&log, "retrying in");
    let gave_up = position(&log, "giving up after 2 failed start(s)");
    let why = position(
        &log,
        "main is essential and has ended for good (exited with status 5)",
    );
    assert!(retried < gave_up && gave_up < why, "{}", sg.dump());
}

#[test]
fn supergo_exits_1_when_it_cannot_start() {
    let sg = Supergo::new("supergo_exits_1_when_it_cannot_start");
    sg.write_config(
        r#"
[program.main]
command = "{probe} sleep"
essential = true
"#,
    );
    // The control address is taken.
    let _taken = TcpListener::bind(&sg.control)
        .unwrap_or_else(|e| fail(format!("bind {}: {e}", sg.control)));
    sg.spawn(&[]);
    let exit = sg.wait_exit(TIMEOUT);
    assert_eq!(exit.code(), Some(1), "{exit}: {}", sg.dump());
    position(&sg.log(), &format!("cannot listen on {}", sg.control));
}
