//! Process settings, the restart policy and the stop settings (DESIGN.md, "Config", the
//! table of program keys), each checked on a real child: what the probe reports about
//! itself, what the kernel says about it (`/proc`), and what supergo logs and reports.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{getgrouplist, Group, Uid, User};
use serde_json::Value;

use crate::util::{fail, pid_alive, probe_bin, wait_pid_gone, Supergo, TIMEOUT};

/// The pid of `name` once it is Running.
fn running_pid(sg: &Supergo, name: &str) -> i64 {
    let status = sg.wait_state(name, "Running", TIMEOUT);
    status["pid"]
        .as_i64()
        .filter(|pid| *pid > 0)
        .unwrap_or_else(|| fail(format!("{name} is Running without a pid: {status}")))
}

fn as_pid(pid: i64) -> i32 {
    i32::try_from(pid).expect("a pid fits in pid_t")
}

/// Starts supergo with `config` after `prepare` made what the config needs (directories
/// that must exist when it loads).
fn start_with(name: &str, config: &str, prepare: impl FnOnce(&Supergo)) -> Supergo {
    let sg = Supergo::new(name);
    prepare(&sg);
    sg.write_config(config);
    sg.spawn(&[]);
    sg.wait_ready();
    sg
}

// ---------------------------------------------------------------------------------------------
// Restart policy

#[test]
fn auto_restart_unexpected_leaves_an_exit_code_listed_in_exit_codes_exited() {
    let sg = Supergo::start(
        "settings_exit_code_expected",
        r#"
[program.job]
command = "sh -c 'sleep 1; exit 3'"
start_secs = 0.2
auto_restart = "unexpected"
exit_codes = [0, 3]
"#,
    );
    running_pid(&sg, "job");
    let status = sg.wait_state("job", "Exited", TIMEOUT);
    assert_eq!(status["last_exit"], "exited with status 3", "{status}");
    assert_eq!(
        status["restarts"], 0,
        "an expected exit is not restarted: {status}"
    );
}

#[test]
fn auto_restart_unexpected_restarts_an_exit_code_not_in_exit_codes() {
    let sg = Supergo::start(
        "settings_exit_code_unexpected",
        r#"
[program.job]
command = "sh -c 'sleep 1; exit 4'"
start_secs = 0.2
auto_restart = "unexpected"
exit_codes = [0, 3]
"#,
    );
    let first = running_pid(&sg, "job");
    let status = crate::util::poll_until(TIMEOUT, "job to be restarted after exit 4", || {
        let status = sg.status("job");
        (status["restarts"].as_u64() >= Some(1)).then_some(status)
    });
    assert_eq!(status["last_exit"], "exited with status 4", "{status}");
    let second = running_pid(&sg, "job");
    assert_ne!(second, first, "a new process runs");
}

#[test]
fn auto_restart_false_leaves_the_program_exited() {
    let sg = Supergo::start(
        "settings_auto_restart_false",
        r#"
[program.job]
command = "{probe} crash-after 1000"
start_secs = 0.2
auto_restart = false
"#,
    );
    running_pid(&sg, "job");
    let status = sg.wait_state("job", "Exited", TIMEOUT);
    assert_eq!(status["last_exit"], "exited with status 3", "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
}

/// Seconds since midnight UTC of a supergo log line (`2026-11-24T05:30:00.123Z …`).
fn log_time(line: &str) -> f64 {
    let clock = line
        .get(11..23)
        .unwrap_or_else(|| fail(format!("no timestamp in the log line {line:?}")));
    let parts: Vec<f64> = clock
        .split(':')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| fail(format!("bad timestamp in {line:?}")))
        })
        .collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[test]
fn crash_loop_backs_off_with_doubling_delays_then_goes_fatal() {
    let sg = Supergo::start(
        "settings_crash_loop_backoff",
        r#"
[program.crashy]
command = "{probe} exit 1"
# Every exit is a failed start, even when a loaded box is slow to run the probe.
start_secs = 5
max_retry = 3
backoff_secs = 0.2
"#,
    );
    sg.wait_state("crashy", "Backoff", TIMEOUT);
    let status = sg.wait_state("crashy", "Fatal", TIMEOUT);
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("exited with status 1")),
        "the error says why: {status}"
    );

    let log = sg.log();
    let lines: Vec<&str> = log.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("crashy[") && lines[i].contains("started generation"))
        .collect();
    assert_eq!(
        starts.len(),
        4,
        "a first start and max_retry = 3 retries:\n{log}"
    );
    let retries: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("crashy: ") && lines[i].contains("retrying in"))
        .collect();
    assert_eq!(retries.len(), 3, "three backoffs:\n{log}");
    assert!(
        log.contains("giving up after 4 failed start(s)"),
        "the log says it gave up:\n{log}"
    );
    for (n, (&retry, expected)) in retries.iter().zip([0.2, 0.4, 0.8]).enumerate() {
        let announced = format!("retrying in {expected:.1} s");
        assert!(
            lines[retry].contains(&announced),
            "backoff {}: {announced:?} in {:?}",
            n + 1,
            lines[retry]
        );
        let next_start = starts
            .iter()
            .copied()
            .find(|&s| s > retry)
            .unwrap_or_else(|| fail(format!("no start after backoff {}:\n{log}", n + 1)));
        let mut waited = log_time(lines[next_start]) - log_time(lines[retry]);
        if waited < 0.0 {
            waited += 86_400.0; // across midnight
        }
        // A policy check, not a benchmark: never early, and late by less than half a
        // second even on a loaded 2-core box (the steps are 0.2 s apart).
        assert!(
            waited >= expected - 0.02 && waited <= expected + 0.45,
            "backoff {} took {waited:.3} s, expected about {expected} s:\n{log}",
            n + 1
        );
    }
}

#[test]
fn start_takes_a_program_out_of_fatal() {
    let sg = Supergo::start(
        "settings_start_after_fatal",
        r#"
[program.web]
command = "sh -c 'test -e {dir}/fixed || exit 1; exec {probe} notify sleep'"
# Ready at READY=1, so an exit before it is a failed start however slow the box.
ready = "notify"
ready_timeout = 10
max_retry = 1
backoff_secs = 0.1
"#,
    );
    sg.wait_state("web", "Fatal", TIMEOUT);
    fs::write(sg.path("fixed"), "").expect("create the file the command needs");
    let (http, body) = sg.api("POST", "/start/web");
    assert_eq!(http, 200, "start after Fatal: {body}");
    let status = sg.wait_state("web", "Running", TIMEOUT);
    assert_eq!(body["data"]["pid"], status["pid"], "{body}");
}

// ---------------------------------------------------------------------------------------------
// Stopping

#[test]
fn stop_signal_is_the_signal_a_stop_sends_with_or_without_the_sig_prefix() {
    let signals = [
        ("TERM", 15),
        ("INT", 2),
        ("QUIT", 3),
        ("HUP", 1),
        ("USR1", 10),
        ("USR2", 12),
    ];
    let mut config = String::new();
    let mut expected = Vec::new();
    for (name, number) in signals {
        for spelling in [name.to_string(), format!("SIG{name}")] {
            let program = spelling.to_lowercase();
            // No core file for QUIT.
            config.push_str(&format!(
                r#"
[program.{program}]
command = "{{probe}} sleep"
start_secs = 0.2
stop_signal = "{spelling}"
stop_timeout = 5
rlimits = {{ core = 0 }}
"#
            ));
            expected.push((program, spelling, name, number));
        }
    }
    let sg = Supergo::start("settings_stop_signals", &config);
    let pids: BTreeMap<String, i64> = expected
        .iter()
        .map(|(program, ..)| (program.clone(), running_pid(&sg, program)))
        .collect();
    let (http, body) = sg.api("POST", "/stop/all");
    assert_eq!(http, 200, "stop all: {body}");
    let log = sg.log();
    for (program, spelling, name, number) in &expected {
        let pid = pids[program];
        let stopped = format!("{program}[{pid}]: stopped after");
        let line = log
            .lines()
            .find(|l| l.contains(&stopped))
            .unwrap_or_else(|| fail(format!("no {stopped:?} line in the log:\n{log}")));
        let killed = format!("killed by signal {number} (SIG{name})");
        assert!(
            line.contains(&killed),
            "stop_signal = {spelling:?}: the probe (default dispositions) must be {killed}: {line}"
        );
    }
}

#[test]
fn stop_as_group_false_signals_only_the_main_process() {
    let sg = Supergo::start(
        "settings_stop_as_group_false",
        r#"
[program.web]
command = "{probe} spawn-grandchild sleep"
start_secs = 0.2
stop_timeout = 2
stop_as_group = false
environment = { PROBE_REPORT = "{dir}/web.json" }
"#,
    );
    let pid = running_pid(&sg, "web");
    let report = sg.read_report("web.json");
    let grandchild = report["grandchild"]
        .as_i64()
        .unwrap_or_else(|| fail(format!("no grandchild in the report: {report}")));
    let (http, body) = sg.api("POST", "/stop/web");
    assert_eq!(http, 200, "stop: {body}");
    wait_pid_gone(as_pid(pid), TIMEOUT);
    assert!(
        pid_alive(as_pid(grandchild)),
        "with stop_as_group = false the grandchild {grandchild} (same group) gets no signal"
    );
}

#[test]
fn stop_as_group_true_stops_the_grandchildren_too() {
    let sg = Supergo::start(
        "settings_stop_as_group_true",
        r#"
[program.web]
command = "{probe} spawn-grandchild sleep"
start_secs = 0.2
stop_timeout = 2
environment = { PROBE_REPORT = "{dir}/web.json" }
"#,
    );
    running_pid(&sg, "web");
    let report = sg.read_report("web.json");
    let grandchild = report["grandchild"]
        .as_i64()
        .unwrap_or_else(|| fail(format!("no grandchild in the report: {report}")));
    let (http, body) = sg.api("POST", "/stop/web");
    assert_eq!(http, 200, "stop: {body}");
    wait_pid_gone(as_pid(grandchild), TIMEOUT);
}

// ---------------------------------------------------------------------------------------------
// Identity

const TEST_USER: &str = "supergo-test";
const TEST_GROUP: &str = "supergo-test-extra";

/// The test user (a member of `TEST_GROUP` too) and that group, created when missing. `None`
/// when the tests do not run as root, after saying so loudly; under `CI=true` that is a
/// failure instead, since CI runs as root and must run these tests.
pub(crate) fn test_account(test: &str) -> Option<(User, Group)> {
    if !Uid::effective().is_root() {
        let reason = format!(
            "SKIPPED {test}: it needs root to switch users (running as uid {})",
            Uid::effective()
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason}, and CI=true: CI must run the tests as root");
        }
        eprintln!("\n*** {reason} ***\n");
        return None;
    }
    static CREATE: Mutex<()> = Mutex::new(());
    let _one_at_a_time = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    let run = |args: &[&str]| {
        // Another test run may create the same account at the same moment: the outcome is
        // checked by looking the account up, not by the exit status.
        let _ = Command::new(args[0]).args(&args[1..]).status();
    };
    if Group::from_name(TEST_GROUP).ok().flatten().is_none() {
        run(&["groupadd", "--system", TEST_GROUP]);
    }
    if User::from_name(TEST_USER).ok().flatten().is_none() {
        run(&[
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/home/supergo-test",
            "--shell",
            "/usr/sbin/nologin",
            TEST_USER,
        ]);
    }
    let user = User::from_name(TEST_USER)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("cannot create the user {TEST_USER} with useradd"));
    let group = Group::from_name(TEST_GROUP)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("cannot create the group {TEST_GROUP} with groupadd"));
    if !group.mem.iter().any(|m| m == TEST_USER) {
        run(&["usermod", "--append", "--groups", TEST_GROUP, TEST_USER]);
    }
    let group = Group::from_name(TEST_GROUP)
        .ok()
        .flatten()
        .expect("the group still exists");
    assert!(
        group.mem.iter().any(|m| m == TEST_USER),
        "cannot add {TEST_USER} to {TEST_GROUP} with usermod"
    );
    Some((user, group))
}

/// Makes the test dir usable by another user: a copy of the probe it may execute (the
/// target dir may be private), and a `reports` dir it may write.
fn share_with_other_users(sg: &Supergo) {
    let open = |path: &Path, mode: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|err| panic!("chmod {mode:o} {}: {err}", path.display()));
    };
    if let Some(parent) = sg.dir.parent() {
        let mode = fs::metadata(parent)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        if mode & 0o005 != 0o005 {
            open(parent, (mode & 0o7777) | 0o755);
        }
    }
    open(&sg.dir, 0o755);
    fs::copy(probe_bin(), sg.path("probe")).expect("copy the probe into the test dir");
    open(&sg.path("probe"), 0o755);
    fs::create_dir(sg.path("reports")).expect("create the reports dir");
    open(&sg.path("reports"), 0o777);
}

fn report_groups(report: &Value) -> Vec<u32> {
    let mut groups: Vec<u32> = report["groups"]
        .as_array()
        .unwrap_or_else(|| fail(format!("no groups in the report: {report}")))
        .iter()
        .filter_map(|g| g.as_u64().and_then(|g| u32::try_from(g).ok()))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

#[test]
fn user_runs_the_child_as_that_user_with_its_groups_and_home() {
    let test = "user_runs_the_child_as_that_user_with_its_groups_and_home";
    let Some((user, group)) = test_account(test) else {
        return;
    };
    let sg = start_with(
        "settings_user",
        &format!(
            r#"
[program.web]
command = "{{dir}}/probe sleep"
directory = "/"
start_secs = 0.2
user = "{TEST_USER}"
environment = {{ PROBE_REPORT = "{{dir}}/reports/web.json" }}
"#
        ),
        share_with_other_users,
    );
    running_pid(&sg, "web");
    let report = sg.read_report("reports/web.json");
    assert_eq!(report["uid"], user.uid.as_raw(), "{report}");
    assert_eq!(report["euid"], user.uid.as_raw(), "{report}");
    assert_eq!(
        report["gid"],
        user.gid.as_raw(),
        "the user's primary group: {report}"
    );
    assert_eq!(report["egid"], user.gid.as_raw(), "{report}");
    let name = std::ffi::CString::new(TEST_USER).expect("a C string");
    let mut expected: Vec<u32> = getgrouplist(&name, user.gid)
        .expect("getgrouplist")
        .iter()
        .map(|g| g.as_raw())
        .collect();
    expected.sort_unstable();
    expected.dedup();
    assert!(
        expected.contains(&group.gid.as_raw()),
        "the test user is in {TEST_GROUP}"
    );
    assert_eq!(
        report_groups(&report),
        expected,
        "exactly the user's groups (none of supergo's): {report}"
    );
    let env = &report["env"];
    assert_eq!(env["HOME"], user.dir.display().to_string(), "{report}");
    assert_eq!(env["USER"], TEST_USER, "{report}");
    assert_eq!(env["LOGNAME"], TEST_USER, "{report}");
}

#[test]
fn group_replaces_the_primary_group_of_the_user() {
    let test = "group_replaces_the_primary_group_of_the_user";
    let Some((user, group)) = test_account(test) else {
        return;
    };
    assert_ne!(user.gid, group.gid, "the test needs two different groups");
    let sg = start_with(
        "settings_group",
        &format!(
            r#"
[program.web]
command = "{{dir}}/probe sleep"
directory = "/"
start_secs = 0.2
user = "{TEST_USER}"
group = "{TEST_GROUP}"
environment = {{ PROBE_REPORT = "{{dir}}/reports/web.json" }}
"#
        ),
        share_with_other_users,
    );
    running_pid(&sg, "web");
    let report = sg.read_report("reports/web.json");
    assert_eq!(report["uid"], user.uid.as_raw(), "{report}");
    assert_eq!(
        report["gid"],
        group.gid.as_raw(),
        "group = {TEST_GROUP}: {report}"
    );
    assert_eq!(report["egid"], group.gid.as_raw(), "{report}");
    assert!(
        report_groups(&report).contains(&group.gid.as_raw()),
        "{report}"
    );
    assert!(
        !report_groups(&report).contains(&0),
        "none of root's groups: {report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Environment, umask, rlimits, directory

#[test]
fn environment_adds_variables_to_supergos_environment() {
    let sg = Supergo::start(
        "settings_environment",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
environment = { PROBE_REPORT = "{dir}/web.json", GREETING = "hello world", PORT = 8080 }
"#,
    );
    running_pid(&sg, "web");
    let report = sg.read_report("web.json");
    let env = &report["env"];
    assert_eq!(env["GREETING"], "hello world", "{report}");
    assert_eq!(
        env["PORT"], "8080",
        "a number is taken as its text: {report}"
    );
    let path = std::env::var("PATH").expect("the tests run with a PATH");
    assert_eq!(
        env["PATH"], path,
        "supergo's own environment is kept: {report}"
    );
}

/// The names of the variables in a report.
fn env_names(report: &Value) -> Vec<String> {
    report["env"]
        .as_object()
        .unwrap_or_else(|| fail(format!("no env in the report: {report}")))
        .keys()
        .cloned()
        .collect()
}

#[test]
fn clear_env_starts_the_child_with_only_its_own_variables() {
    let sg = Supergo::start(
        "settings_clear_env",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
clear_env = true
environment = { PROBE_REPORT = "{dir}/web.json", ONLY = "1" }
"#,
    );
    running_pid(&sg, "web");
    let report = sg.read_report("web.json");
    assert_eq!(
        env_names(&report),
        [
            "ONLY",
            "PROBE_REPORT",
            "SUPERGO_GENERATION",
            "SUPERGO_PROGRAM"
        ],
        "nothing of supergo's environment, PATH included: {report}"
    );
}

#[test]
fn clear_env_keeps_a_path_set_in_environment() {
    let sg = Supergo::start(
        "settings_clear_env_path",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
clear_env = true
environment = { PROBE_REPORT = "{dir}/web.json", PATH = "/usr/bin:/bin" }
"#,
    );
    running_pid(&sg, "web");
    let report = sg.read_report("web.json");
    assert_eq!(report["env"]["PATH"], "/usr/bin:/bin", "{report}");
}

#[test]
fn umask_is_the_childs_umask() {
    let sg = Supergo::start(
        "settings_umask",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
umask = "0077"
environment = { PROBE_REPORT = "{dir}/web.json" }
"#,
    );
    running_pid(&sg, "web");
    let report = sg.read_report("web.json");
    assert_eq!(report["umask"], "0077", "{report}");
}

#[test]
fn rlimits_nofile_is_the_childs_open_files_limit() {
    let sg = Supergo::start(
        "settings_rlimits",
        r#"
[program.web]
command = "{probe} sleep"
start_secs = 0.2
rlimits = { nofile = 1234 }
"#,
    );
    let pid = running_pid(&sg, "web");
    let limits = fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_else(|err| fail(format!("read /proc/{pid}/limits: {err}")));
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| {
            fail(format!(
                "no `Max open files` in /proc/{pid}/limits:\n{limits}"
            ))
        });
    let numbers: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    assert_eq!(
        numbers.get(..2),
        Some(&["1234", "1234"][..]),
        "soft and hard limit: {line:?}"
    );
}

#[test]
fn directory_is_the_childs_working_directory() {
    let sg = start_with(
        "settings_directory",
        r#"
[program.web]
command = "{probe} sleep"
directory = "{dir}/work"
start_secs = 0.2
environment = { PROBE_REPORT = "{dir}/web.json" }
"#,
        |sg| fs::create_dir(sg.path("work")).expect("create the work dir"),
    );
    running_pid(&sg, "web");
    let report = sg.read_report("web.json");
    assert_eq!(
        report["cwd"],
        sg.path("work").display().to_string(),
        "{report}"
    );
}

#[test]
fn relative_directory_is_taken_from_the_file_that_holds_it() {
    let sg = start_with(
        "settings_relative_directory",
        r#"
[include]
files = "conf.d/*.toml"
"#,
        |sg| {
            fs::create_dir_all(sg.path("conf.d/work")).expect("create conf.d/work");
            sg.write_file(
                "conf.d/web.toml",
                r#"
[program.web]
command = "{probe} sleep"
directory = "work"
start_secs = 0.2
environment = { PROBE_REPORT = "{dir}/web.json" }
"#,
            );
        },
    );
    running_pid(&sg, "web");
    let report = sg.read_report("web.json");
    assert_eq!(
        report["cwd"],
        sg.path("conf.d/work").display().to_string(),
        "relative to conf.d/web.toml, not to supergo's cwd: {report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Priority

/// Three programs whose priority order (b, c, a) is neither their order in the file nor
/// their alphabetical order.
const PRIORITIES: &str = r#"
[program.a]
command = "{probe} sleep"
start_secs = 0.2
stop_timeout = 2
priority = 30

[program.b]
command = "{probe} sleep"
start_secs = 0.2
stop_timeout = 2
priority = 10

[program.c]
command = "{probe} sleep"
start_secs = 0.2
stop_timeout = 2
priority = 20
"#;

/// The programs in the order of the log lines that say `NAME[PID]: <what>`.
fn log_order(log: &str, pids: &BTreeMap<&str, i64>, what: &str) -> Vec<String> {
    let mut found: Vec<(usize, String)> = pids
        .iter()
        .map(|(name, pid)| {
            let needle = format!("{name}[{pid}]: {what}");
            let at = log
                .find(&needle)
                .unwrap_or_else(|| fail(format!("no {needle:?} in the log:\n{log}")));
            (at, name.to_string())
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, name)| name).collect()
}

#[test]
fn priority_starts_programs_in_ascending_order() {
    let sg = Supergo::start("settings_priority_start", PRIORITIES);
    let pids: BTreeMap<&str, i64> = ["a", "b", "c"]
        .into_iter()
        .map(|name| (name, running_pid(&sg, name)))
        .collect();
    assert_eq!(
        log_order(&sg.log(), &pids, "started generation 1"),
        ["b", "c", "a"],
        "priority 10, 20, 30"
    );
}

#[test]
fn priority_stops_programs_in_descending_order_at_shutdown() {
    let sg = Supergo::start("settings_priority_stop", PRIORITIES);
    let pids: BTreeMap<&str, i64> = ["a", "b", "c"]
        .into_iter()
        .map(|name| (name, running_pid(&sg, name)))
        .collect();
    sg.signal(Signal::SIGTERM);
    let exit = sg.wait_exit(TIMEOUT + Duration::from_secs(5));
    assert!(exit.success(), "supergo exits 0 after a SIGTERM: {exit}");
    assert_eq!(
        log_order(&sg.log(), &pids, "stopped after"),
        ["a", "c", "b"],
        "priority 30, 20, 10"
    );
}
