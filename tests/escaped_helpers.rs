//! Helpers that leave their program's process group (`setsid`, a daemonizing script) are
//! stopped with their program (issue 16, item 2): at `stop` and at supergo's shutdown they
//! get the program's stop signal, then SIGKILL at its `stop_timeout`, and the stop ends only
//! once they are gone; another program's helpers are left alone.
//!
//! Each program here runs `sh app.sh`, which starts a helper with `setsid` (so in a session
//! and process group of its own, out of reach of a signal to the program's group) and then
//! becomes the program's serving process (`exec probe sleep`). The helper writes its pid to a
//! file first. With `orphan`, the helper is started from a subshell that exits at once, so it
//! is orphaned and reparented to supergo, as a daemonizing helper is.

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::{fail, pid_alive, poll_until, proc_stat, Supergo, TIMEOUT};

/// `app.sh` for a program whose helper runs `helper_mode` (a probe mode) and writes its pid
/// to `NAME-helper.pid`; with `orphan`, the helper is orphaned at once.
fn app_script(name: &str, helper_mode: &str, orphan: bool) -> String {
    let helper = format!(
        "setsid sh -c 'echo $$ > {{dir}}/{name}-helper.tmp && mv {{dir}}/{name}-helper.tmp {{dir}}/{name}-helper.pid && exec {{probe}} {helper_mode}' &"
    );
    let start = if orphan {
        format!("( {helper} )")
    } else {
        helper
    };
    format!("{start}\nexec {{probe}} sleep\n")
}

fn program(name: &str, stop_timeout: &str) -> String {
    format!(
        "[program.{name}]\ncommand = \"sh {{dir}}/{name}.sh\"\nstart_secs = 0.2\nstop_timeout = {stop_timeout}\n"
    )
}

/// The helper of program `name` once it runs the probe (past its last exec, so its
/// environment is final): its pid, registered for the cleanup.
fn helper_of(sg: &Supergo, name: &str) -> i32 {
    let file = sg.path(&format!("{name}-helper.pid"));
    let pid: i32 = poll_until(
        TIMEOUT,
        &format!("{name}'s helper to write its pid"),
        || fs::read_to_string(&file).ok()?.trim().parse().ok(),
    );
    sg.register(pid);
    poll_until(
        TIMEOUT,
        &format!("{name}'s helper {pid} to run the probe"),
        || {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "probe").then_some(())
        },
    );
    pid
}

/// The serving pid of program `name` (once Running).
fn serving_pid(sg: &Supergo, name: &str) -> i32 {
    let status: Value = sg.wait_state(name, "Running", TIMEOUT);
    status["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or_else(|| fail(format!("{name} has no pid: {status}")))
}

/// True when `pid` ignores SIGTERM (bit 15 of SigIgn in /proc/PID/status).
fn ignores_sigterm(pid: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (Signal::SIGTERM as u64 - 1)) != 0)
}

#[test]
fn a_setsid_helper_is_stopped_with_its_program_and_another_programs_is_not() {
    let sg = Supergo::new("a_setsid_helper_is_stopped_with_its_program");
    sg.write_file("app.sh", &app_script("app", "sleep", false));
    sg.write_file("other.sh", &app_script("other", "sleep", false));
    sg.write_config(&format!(
        "{}\n{}",
        program("app", "5"),
        program("other", "5")
    ));
    sg.spawn(&[]);
    sg.wait_ready();
    let app = serving_pid(&sg, "app");
    let helper = helper_of(&sg, "app");
    let other_helper = helper_of(&sg, "other");
    serving_pid(&sg, "other");
    let stat = proc_stat(helper).unwrap_or_else(|| fail("the helper is gone"));
    assert!(
        stat.sid == helper && stat.pgid != app,
        "the helper left the program's session and group: {stat:?} (program pid {app})"
    );

    let (http, body) = sg.api("POST", "/stop/app");
    assert_eq!(http, 200, "{body}");
    // The answer comes once the stop is over: the helper too is gone by then.
    assert!(
        !pid_alive(helper),
        "the setsid'd helper {helper} outlived its program's stop: {}",
        sg.dump()
    );
    assert!(
        !pid_alive(app),
        "the program's process {app} outlived its stop"
    );
    let log = sg.log();
    assert!(
        log.contains(&format!(
            "app: pid {helper} left the program's process group"
        )),
        "the log says which process was found outside the group: {}",
        sg.dump()
    );
    assert!(
        pid_alive(other_helper),
        "another program's helper {other_helper} was stopped with app: {}",
        sg.dump()
    );
    assert_eq!(
        sg.status("other")["state"],
        "Running",
        "the other program runs on"
    );
}

#[test]
fn at_shutdown_an_orphaned_helper_that_ignores_sigterm_is_killed_and_supergo_exits_0() {
    let sg = Supergo::new("at_shutdown_an_orphaned_helper_is_killed");
    sg.write_file("app.sh", &app_script("app", "ignore-term", true));
    sg.write_config(&program("app", "1"));
    sg.spawn(&[]);
    sg.wait_ready();
    serving_pid(&sg, "app");
    let helper = helper_of(&sg, "app");
    let supergo = sg.pid();
    poll_until(
        TIMEOUT,
        "the helper to be orphaned and reparented to supergo (its subreaper)",
        || (proc_stat(helper)?.ppid == supergo).then_some(()),
    );
    poll_until(TIMEOUT, "the helper to ignore SIGTERM", || {
        ignores_sigterm(helper).then_some(())
    });

    sg.signal(Signal::SIGTERM);
    let exit = sg.wait_exit(TIMEOUT * 2);
    assert_eq!(exit.code(), Some(0), "{exit}: {}", sg.dump());
    assert!(
        !pid_alive(helper),
        "the helper {helper} outlived supergo's shutdown: {}",
        sg.dump()
    );
    let log = sg.log();
    let killed = format!("app: pid {helper} (outside the program's process group) still running at its stop_timeout: sending SIGKILL");
    assert!(
        log.contains(&killed),
        "{killed:?} is not in the log: {}",
        sg.dump()
    );
    // The stop waited for it: the program counted as stopped only after the SIGKILL.
    let stopped = log
        .find("app: stopped")
        .unwrap_or_else(|| fail("no `app: stopped`"));
    assert!(
        log.find(&killed).is_some_and(|k| k < stopped),
        "the program's stop ended before its helper was gone: {}",
        sg.dump()
    );
}

/// The same at shutdown as at `stop`, for a helper that goes on SIGTERM, with supergo as the
/// helper's parent or not: here its parent, the serving process, still runs when the
/// shutdown begins.
#[test]
fn at_shutdown_a_setsid_helper_is_stopped_with_its_program() {
    let sg = Supergo::new("at_shutdown_a_setsid_helper_is_stopped");
    sg.write_file("app.sh", &app_script("app", "sleep", false));
    sg.write_config(&program("app", "5"));
    sg.spawn(&[]);
    sg.wait_ready();
    serving_pid(&sg, "app");
    let helper = helper_of(&sg, "app");
    sg.signal(Signal::SIGTERM);
    let exit = sg.wait_exit(Duration::from_secs(20));
    assert_eq!(exit.code(), Some(0), "{exit}: {}", sg.dump());
    assert!(
        !pid_alive(helper),
        "the helper {helper} outlived supergo's shutdown: {}",
        sg.dump()
    );
    assert!(
        !sg.log().contains("sending SIGKILL"),
        "a helper that goes on SIGTERM needs no SIGKILL: {}",
        sg.dump()
    );
}
