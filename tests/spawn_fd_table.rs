//! Spawning with fd slots (issue 17): a child shares supergo's fd table (CLONE_FILES) and its
//! first system call takes a private copy of the few low "slots" its spawn leased, instead of
//! a copy of supergo's whole table (`supergo/src/spawn/fd_slots.rs`). On the real supergo,
//! with 50+ programs so that supergo holds hundreds of fds:
//! - every child sees exactly fds 0, 1, 2 and its own listeners, each in its place, even
//!   when dozens of spawns lease slots at once;
//! - a program's output reaches its log whole and its exit is seen; the pipes whose EOF
//!   supergo waits for (each spawn's exec-error pipe, an upgrade's pre-flight output) end;
//! - a child hung before its exec holds only its own fds and stops no other start;
//! - supergo's own fds do not grow across many restarts (every slot gets its placeholder
//!   back), nor across an upgrade in place (the new image reserves the same slots, beside the
//!   fds it inherited);
//! - when a child cannot take a private table, programs start the old way, saying so once.

use std::collections::BTreeMap;
use std::fs;

use serde_json::Value;

use crate::util::{
    descendants, fail, make_fifo, pid_alive, pid_of, poll_until, release_fifo, try_poll_until,
    Supergo, TIMEOUT,
};

/// Programs beside the one under test: enough that supergo holds hundreds of fds (each has a
/// unix listener, a log pipe, a log file, a pidfd).
const FILLERS: usize = 52;

/// `FILLERS` programs `f00`…, each with a unix listener at `{dir}/s/fNN.sock`, its stdout in
/// `{dir}/logs/fNN.out`, and a probe report at `{dir}/reports/fNN.json`.
fn fillers() -> String {
    (0..FILLERS)
        .map(|i| {
            format!(
                r#"
[program.f{i:02}]
command = "{{probe}} sleep"
listen_addrs = ["unix:{{dir}}/s/f{i:02}.sock"]
stdout_file = "{{dir}}/logs/f{i:02}.out"
start_secs = 0.2
stop_timeout = 2
environment = {{ PROBE_REPORT = "{{dir}}/reports/f{i:02}-{{gen}}.json" }}
"#
            )
        })
        .collect()
}

/// A test dir with the directories the fillers need, and `config` + the fillers written.
fn with_fillers(name: &str, config: &str) -> Supergo {
    let sg = Supergo::new(name);
    for dir in ["s", "logs", "reports"] {
        fs::create_dir_all(sg.path(dir)).expect("create a directory of the test dir");
    }
    sg.write_config(&format!("{config}{}", fillers()));
    sg
}

/// Waits until every program but those in `except` is Running.
fn wait_all_running(sg: &Supergo, except: &[&str]) {
    let mut last = Vec::new();
    let done = try_poll_until(TIMEOUT * 6, || {
        last = sg
            .programs()
            .into_iter()
            .filter(|p| !except.contains(&p["name"].as_str().unwrap_or("")))
            .filter(|p| p["state"] != "Running")
            .map(|p| format!("{}: {}", p["name"], p["state"]))
            .collect();
        last.is_empty().then_some(())
    });
    if done.is_none() {
        fail(format!(
            "not every program is Running: {last:?}\n{}",
            sg.dump()
        ));
    }
}

/// The targets of `pid`'s open fds, by fd number.
fn fd_targets(pid: i32) -> BTreeMap<i32, String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| {
                    let fd = e.file_name().to_str()?.parse().ok()?;
                    let target = fs::read_link(e.path()).ok()?;
                    Some((fd, target.to_string_lossy().into_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// supergo's fds, without the state file (its writer holds it for a moment after each change
/// of the process table, under its temp name or its final one).
fn supergo_fds(sg: &Supergo) -> BTreeMap<i32, String> {
    let mut fds = fd_targets(sg.pid());
    fds.retain(|_, target| !target.contains(".state"));
    fds
}

fn count_devnull(fds: &BTreeMap<i32, String>) -> usize {
    fds.values().filter(|t| *t == "/dev/null").count()
}

/// The fd numbers a probe report lists.
fn fds(report: &Value) -> Vec<i64> {
    report["fds"]
        .as_array()
        .expect("fds in the report")
        .iter()
        .filter_map(Value::as_i64)
        .collect()
}

/// Every filler's report of generation `gen` shows exactly 0, 1, 2 and its own socket at 3.
fn assert_fillers_see_their_own_fds(sg: &Supergo, gen: u32) {
    for i in 0..FILLERS {
        let report = sg.read_report(&format!("reports/f{i:02}-{gen}.json"));
        assert_eq!(
            fds(&report),
            vec![0, 1, 2, 3],
            "f{i:02}: exactly stdio and its listener: {report}"
        );
        let sock = sg.path(&format!("s/f{i:02}.sock"));
        assert_eq!(
            report["fd_info"]["3"]["addr"],
            format!("unix:{}", sock.display()),
            "f{i:02}: fd 3 is its own listener, not another program's: {report}"
        );
        assert_eq!(report["fd_info"]["3"]["listening"], true, "{report}");
        assert!(
            report["fd_info"]["1"]["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("pipe:")),
            "f{i:02}: stdout is its log pipe: {report}"
        );
        assert_eq!(report["fd_info"]["0"]["target"], "/dev/null", "{report}");
    }
}

#[test]
fn a_child_among_many_programs_sees_exactly_its_own_fds() {
    let sg = with_fillers(
        "fd_table_exact",
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}", "127.0.0.1:{port2}"]
stdout_file = "{dir}/logs/web.out"
start_secs = 0.2
environment = { PROBE_REPORT = "{dir}/web-{gen}.json" }
"#,
    );
    sg.spawn(&[]);
    sg.wait_ready();
    wait_all_running(&sg, &[]);
    let held = supergo_fds(&sg).len();
    assert!(
        held > 3 * FILLERS,
        "the premise: supergo holds hundreds of fds, it holds {held}"
    );
    let report = sg.read_report("web-1.json");
    assert_eq!(
        fds(&report),
        vec![0, 1, 2, 3, 4],
        "exactly stdio and two listeners: {report}"
    );
    for (fd, port) in [("3", sg.port), ("4", sg.port2)] {
        let info = &report["fd_info"][fd];
        assert_eq!(info["listening"], true, "fd {fd}: {info}");
        assert_eq!(info["addr"], format!("127.0.0.1:{port}"), "fd {fd}: {info}");
    }
    assert_eq!(report["fd_info"]["0"]["target"], "/dev/null");
    assert_eq!(
        report["fd_info"]["2"]["target"], "/dev/null",
        "stderr discarded"
    );
    assert_fillers_see_their_own_fds(&sg, 1);
}

#[test]
fn output_reaches_the_log_whole_and_the_exit_is_seen_among_many_programs() {
    let sg = with_fillers(
        "fd_table_output",
        r#"
[program.talker]
command = "sh -c 'i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; read line < {dir}/go; exit 0'"
stdout_file = "{dir}/logs/talker.out"
start_secs = 0.2
auto_restart = false
"#,
    );
    make_fifo(&sg.path("go"));
    sg.spawn(&[]);
    sg.wait_ready();
    wait_all_running(&sg, &[]);
    release_fifo(&sg.path("go"), "talker");
    sg.wait_state("talker", "Exited", TIMEOUT);
    let log = sg.path("logs/talker.out");
    let text = poll_until(TIMEOUT, "talker's 2000 lines in its log", || {
        let text = fs::read_to_string(&log).ok()?;
        text.contains("line 1999\n").then_some(text)
    });
    let expected: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    assert_eq!(text, expected, "every line, in order, once");
}

/// A program whose child hangs before its exec (the test hook), started with the fillers
/// (same priority, so its hang begins while they spawn), with `env` added to supergo's.
fn a_hung_exec_among_many_programs(name: &str, env: &[(&str, &str)]) {
    let sg = with_fillers(
        name,
        r#"
[program.hung]
command = "{probe} sleep"
directory = "{dir}/hung"
stdout_file = "{dir}/logs/hung.out"
"#,
    );
    fs::create_dir(sg.path("hung")).expect("create the hung program's directory");
    let hook = sg.path("hung").display().to_string();
    let mut env = env.to_vec();
    env.push(("SUPERGO_TEST_HANG_BEFORE_CHDIR", &hook));
    sg.spawn_with_env(&[], &env);
    sg.wait_ready();
    let supergo = sg.pid();
    let exe = fs::read_link(format!("/proc/{supergo}/exe")).expect("supergo's exe");
    // Every other program is running first: then the only child still running supergo's
    // binary (not exec'd) is the hung one, not a filler caught on its way to its exec.
    wait_all_running(&sg, &["hung"]);
    let hung = poll_until(TIMEOUT, "a child of supergo hung before its exec", || {
        descendants(supergo).into_iter().find(|p| {
            p.ppid == supergo
                && fs::read_link(format!("/proc/{}/exe", p.pid)).ok().as_ref() == Some(&exe)
        })
    });
    sg.register(hung.pid);
    assert_fillers_see_their_own_fds(&sg, 1);

    // What it holds: supergo's 0, 1, 2 and its own fds (stdin, stdout, stderr, the
    // exec-error pipe), none of the hundreds of fds supergo holds, and so none of another
    // program's pipe ends (whose spawns would otherwise wait for their EOF as long as it
    // hangs) or listeners.
    let held = fd_targets(hung.pid);
    let supergo_held = supergo_fds(&sg).len();
    assert!(
        held.len() <= 7,
        "the hung child holds {} fds (supergo holds {supergo_held}): {held:?}",
        held.len()
    );
    assert!(
        !held.values().any(|t| t.starts_with("socket:")),
        "no listener of another program: {held:?}"
    );

    // A restart still works beside it.
    let (http, body) = sg.api("POST", "/restart/f07");
    assert_eq!(http, 200, "restart f07 beside the hung exec: {body}");
    let report = sg.read_report("reports/f07-2.json");
    assert_eq!(fds(&report), vec![0, 1, 2, 3], "{report}");
    assert!(
        pid_alive(hung.pid) && fs::read_link(format!("/proc/{}/exe", hung.pid)).ok() == Some(exe),
        "the hung child must still be hanging, or the test showed nothing"
    );
}

#[test]
fn a_hung_exec_holds_only_its_own_fds_and_stops_no_other_start() {
    a_hung_exec_among_many_programs("fd_table_hung", &[]);
}

/// The same with a copied table (the fallback): the child closes what is not its own before
/// anything can block.
#[test]
fn a_hung_exec_with_a_copied_table_holds_only_its_own_fds_too() {
    a_hung_exec_among_many_programs(
        "fd_table_hung_copied",
        &[("SUPERGO_TEST_REFUSE_FD_TABLE", "1")],
    );
}

#[test]
fn supergos_fds_do_not_grow_across_many_restarts() {
    let sg = with_fillers(
        "fd_table_restarts",
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
stdout_file = "{dir}/logs/web.out"
start_secs = 0.1
stop_timeout = 2
"#,
    );
    sg.spawn(&[]);
    sg.wait_ready();
    wait_all_running(&sg, &[]);
    let before = supergo_fds(&sg);
    for round in 0..30 {
        let (http, body) = sg.api("POST", "/restart/web");
        assert_eq!(http, 200, "restart {round}: {body}\n{}", sg.dump());
    }
    // The last old generation may still be draining, and a control connection just
    // answered may not be closed yet.
    let mut now = BTreeMap::new();
    let settled = try_poll_until(TIMEOUT, || {
        now = supergo_fds(&sg);
        (now.len() <= before.len() && count_devnull(&now) == count_devnull(&before)).then_some(())
    });
    assert!(
        settled.is_some(),
        "supergo held {} fds ({} on /dev/null: the slots' placeholders and the like) before 30 \
         restarts, {} ({} on /dev/null) after:\nbefore {before:?}\nafter {now:?}",
        before.len(),
        count_devnull(&before),
        now.len(),
        count_devnull(&now)
    );
    let web = sg.wait_state("web", "Running", TIMEOUT);
    assert_eq!(web["generation"], 31, "{web}");
}

#[test]
fn an_upgrade_in_place_with_many_programs_reserves_the_same_slots_again() {
    let sg = with_fillers(
        "fd_table_upgrade",
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 2
environment = { PROBE_REPORT = "{dir}/web-{gen}.json" }
"#,
    );
    sg.spawn(&[]);
    sg.wait_ready();
    wait_all_running(&sg, &[]);
    let before = supergo_fds(&sg);
    // The pre-flight's output pipes must reach EOF (the check child exits) for this to
    // answer: no slot may keep a copy of their write ends.
    let (http, body) = sg.api("POST", "/upgrade");
    assert_eq!(http, 200, "upgrade: {body}\n{}", sg.dump());
    let mut after = BTreeMap::new();
    let settled = try_poll_until(TIMEOUT, || {
        after = supergo_fds(&sg);
        (after.len() <= before.len() && count_devnull(&after) == count_devnull(&before))
            .then_some(())
    });
    assert!(
        settled.is_some(),
        "the new image holds what the old one held: before {before:?}\nafter {after:?}"
    );
    // The new image spawns: every filler's next generation, and web's, sees exactly its fds.
    let (http, body) = sg.api("POST", "/restart/all");
    assert_eq!(
        http,
        200,
        "restart all after the upgrade: {body}\n{}",
        sg.dump()
    );
    wait_all_running(&sg, &[]);
    assert_fillers_see_their_own_fds(&sg, 2);
    let report = sg.read_report("web-2.json");
    assert_eq!(fds(&report), vec![0, 1, 2, 3], "{report}");
    assert_eq!(
        report["fd_info"]["3"]["addr"],
        format!("127.0.0.1:{}", sg.port),
        "{report}"
    );
    let web = sg.status("web");
    assert_eq!(pid_of(&web), report["pid"].as_i64().unwrap_or(-1) as i32);
}

#[test]
fn when_children_cannot_take_a_private_table_programs_start_the_old_way() {
    let sg = with_fillers("fd_table_refused", "");
    sg.spawn_with_env(&[], &[("SUPERGO_TEST_REFUSE_FD_TABLE", "1")]);
    sg.wait_ready();
    wait_all_running(&sg, &[]);
    assert_fillers_see_their_own_fds(&sg, 1);
    let log = sg.log();
    assert_eq!(
        log.matches("could not take a private fd table").count(),
        1,
        "said once, whatever the number of programs:\n{log}"
    );
    for i in 0..FILLERS {
        let status = sg.status(&format!("f{i:02}"));
        assert_eq!(status["generation"], 1, "started once: {status}");
    }
    // Every refused child exited at once: none is left, running supergo's binary.
    let supergo = sg.pid();
    let exe = fs::read_link(format!("/proc/{supergo}/exe")).expect("supergo's exe");
    let leftovers: Vec<i32> = descendants(supergo)
        .into_iter()
        .filter(|p| fs::read_link(format!("/proc/{}/exe", p.pid)).ok().as_ref() == Some(&exe))
        .map(|p| p.pid)
        .collect();
    assert!(
        leftovers.is_empty(),
        "children that never exec'd: {leftovers:?}"
    );
}
