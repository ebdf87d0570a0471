//! supergo killed or crashed (issue 15): started again with the same config and control
//! address, it takes its running children back from the state file (`[supergo] state_dir`,
//! inside each test's own directory): the same processes on the same sockets, with no
//! failed request; one that logged through the dead supergo's pipes is replaced; one that
//! died meanwhile starts afresh; a process the state file names but that is not provably
//! the one recorded is left alone; and the new supergo stops them all on SIGTERM.
//!
//! The first supergo is killed with `Supergo::signal`, which registers its children first,
//! so the harness kills them at the end even though the second supergo adopted them.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::{
    pid_alive, pid_of, poll_until, proc_stat, state_file_name, wait_pid_gone, KillOnDrop, Load,
    LoadOptions, Supergo, TIMEOUT,
};

/// A program serving the hello contract, and supergo's state in the test directory.
const WEB: &str = r#"
[supergo]
state_dir = "{dir}/state"

[program.web]
command = "{hello}"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 5
"#;

/// Starts supergo, waits until `web` runs, kills supergo with SIGKILL and waits for it to
/// be gone. The pid of web's process, which keeps running.
fn start_then_kill(sg: &Supergo) -> i32 {
    sg.spawn(&[]);
    sg.wait_ready();
    let pid = sg.running_pid("web");
    kill_supergo(sg, &[pid]);
    assert!(pid_alive(pid), "web's pid {pid} outlives supergo");
    pid
}

/// SIGKILL to supergo, once its state file records each of `serving` as serving (the file
/// lags the table by up to 50 ms), and waits until supergo is gone.
fn kill_supergo(sg: &Supergo, serving: &[i32]) {
    poll_until(
        TIMEOUT,
        "the state file to record the serving processes",
        || {
            let text = std::fs::read_to_string(state_file(sg)).ok()?;
            serving
                .iter()
                .all(|pid| text.contains(&format!("[.process {pid}]\nrole=serving")))
                .then_some(())
        },
    );
    sg.signal(Signal::SIGKILL);
    sg.wait_exit(TIMEOUT);
}

/// The path of the state file of `sg`.
fn state_file(sg: &Supergo) -> std::path::PathBuf {
    sg.path("state").join(state_file_name(&sg.control))
}

/// A state file of `text`, as a supergo that is gone left it (in a directory only its user
/// may write, which supergo insists on).
fn write_state_file(sg: &Supergo, text: &str) {
    let dir = sg.path("state");
    std::fs::create_dir_all(&dir).expect("create the state dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
    std::fs::write(state_file(sg), text).expect("write the state file");
}

/// Waits until `name` runs a process other than `old` (which the new supergo replaced); its
/// status.
fn wait_replaced(sg: &Supergo, name: &str, old: i32) -> Value {
    poll_until(
        TIMEOUT,
        &format!("{name} to run a process other than pid {old}"),
        || {
            let status = sg.status(name);
            (status["state"] == "Running" && pid_of(&status) != old).then_some(status)
        },
    )
}

/// `respawn`, then waits until the control API answers.
fn start_again(sg: &Supergo) {
    sg.respawn();
    sg.wait_ready();
}

fn adopted_note(status: &Value) -> Option<&str> {
    status["adopted"].as_str()
}

#[test]
fn sigkill_under_load_fails_no_request_and_the_child_is_adopted() {
    let sg = Supergo::start("adopt_sigkill_under_load", WEB);
    let pid = sg.running_pid("web");
    let load = Load::start(&sg.app_addr(), LoadOptions::default());
    load.wait_ok(30, TIMEOUT);
    kill_supergo(&sg, &[pid]);
    // The child serves on without any supergo.
    load.wait_ok(30, TIMEOUT);
    start_again(&sg);
    let status = sg.wait_state("web", "Running", TIMEOUT);
    assert_eq!(pid_of(&status), pid, "the same process serves: {status}");
    let note = adopted_note(&status).unwrap_or_else(|| panic!("no `adopted` note: {status}"));
    assert!(note.contains("exit status will not be known"), "{note}");
    assert_eq!(status["generation"], 1, "{status}");
    load.wait_ok(30, TIMEOUT);
    let report = load.stop();
    report.assert_no_failures();
    assert_eq!(
        report.pids.len(),
        1,
        "one process answered throughout: {report}"
    );
    let log = sg.log();
    assert!(
        log.contains(&format!("web[{pid}]: adopted"))
            && log.contains("took back the listening socket"),
        "{log}"
    );
}

#[test]
fn restart_of_an_adopted_program_fails_no_request_and_the_adopted_process_ends() {
    let sg = Supergo::new("adopt_restart");
    sg.write_config(WEB);
    let old = start_then_kill(&sg);
    start_again(&sg);
    assert_eq!(sg.running_pid("web"), old);
    let load = Load::start(&sg.app_addr(), LoadOptions::default());
    load.wait_ok(30, TIMEOUT);
    let body = sg.api_ok("POST", "/restart/web");
    assert_eq!(body["data"]["old_pid"], old, "{body}");
    let new = body["data"]["new_pid"].as_i64().expect("new_pid") as i32;
    sg.register(new);
    // Its exit is seen through its pidfd: the drain ends, and status forgets it.
    wait_pid_gone(old, TIMEOUT);
    let status = poll_until(TIMEOUT, "the adopted process's drain to end", || {
        let status = sg.status("web");
        status["draining"]
            .as_array()
            .is_some_and(|d| d.is_empty())
            .then_some(status)
    });
    assert_eq!(pid_of(&status), new, "{status}");
    assert_eq!(status["generation"], 2, "generations continue: {status}");
    assert_eq!(adopted_note(&status), None, "{status}");
    load.wait_ok(30, TIMEOUT);
    let report = load.stop();
    report.assert_no_failures();
    assert!(report.pids.contains(&(new as u32)), "{report}");
    sg.wait_log(&format!("web[{old}]: drained"), TIMEOUT);
    assert!(sg.log().contains("unknown status"), "{}", sg.log());
}

#[test]
fn a_child_killed_while_supergo_was_down_is_started_afresh() {
    let sg = Supergo::new("adopt_child_died");
    sg.write_config(WEB);
    let old = start_then_kill(&sg);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), Signal::SIGKILL).expect("kill web");
    wait_pid_gone(old, TIMEOUT);
    start_again(&sg);
    let status = sg.wait_state("web", "Running", TIMEOUT);
    let new = pid_of(&status);
    assert_ne!(new, old, "{status}");
    assert_eq!(status["generation"], 2, "generations continue: {status}");
    assert_eq!(adopted_note(&status), None, "{status}");
    crate::util::http_get(&sg.app_addr(), "/").expect("the new process serves");
    assert!(
        sg.log().contains(&format!(
            "pid {old} (generation 1) exited while supergo was down"
        )),
        "{}",
        sg.log()
    );
}

#[test]
fn a_child_that_logged_through_supergo_is_replaced_with_working_logs() {
    let sg = Supergo::new("adopt_logging_child");
    sg.write_config(
        r#"
[supergo]
state_dir = "{dir}/state"

[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 5
stdout_file = "{dir}/web.out"
"#,
    );
    let old = start_then_kill(&sg);
    let log = sg.path("web.out");
    let logged = |pid: i32| {
        let line = format!("probe: started pid {pid}");
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains(&line))
    };
    assert!(logged(old), "the first process logged before supergo died");
    let load = Load::start(
        &sg.app_addr(),
        LoadOptions {
            sleepers: 0,
            ..LoadOptions::default()
        },
    );
    load.wait_ok(30, TIMEOUT);
    start_again(&sg);
    let status = wait_replaced(&sg, "web", old);
    let new = pid_of(&status);
    assert_eq!(status["generation"], 2, "{status}");
    wait_pid_gone(old, TIMEOUT);
    poll_until(TIMEOUT, "the new process's line in web.out", || {
        logged(new).then_some(())
    });
    load.wait_ok(30, TIMEOUT);
    let report = load.stop();
    report.assert_no_failures();
    assert!(
        sg.log().contains("replacing it at once") && sg.log().contains("log pipes"),
        "{}",
        sg.log()
    );
}

/// A process that is not one of supergo's: `sleep`, without `SUPERGO_PROGRAM`.
fn unrelated_sleeper() -> KillOnDrop {
    let child = Command::new("sleep")
        .arg("60")
        .env_remove("SUPERGO_PROGRAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sleep");
    KillOnDrop(child)
}

/// A state file naming `pid` (with `start_ticks`) as the serving process of `program`,
/// written by a supergo that is gone.
fn fake_process(program: &str, pid: i32, start_ticks: u64) -> String {
    format!(
        "\n[program {program}]\ngeneration=1\nconfig_hash=0\n\n[.process {pid}]\nrole=serving\npid={pid}\npgid={pid}\ngeneration=1\nstart_ticks={start_ticks}\npiped=false\n"
    )
}

#[test]
fn a_reused_pid_or_a_foreign_process_is_not_adopted() {
    let sg = Supergo::new("adopt_reused_pid");
    sg.write_config(
        r#"
[supergo]
state_dir = "{dir}/state"

[program.web]
command = "{hello}"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2

[program.api]
command = "{hello}"
listen_addrs = ["127.0.0.1:{port2}"]
start_secs = 0.2
"#,
    );
    // web: a live pid with another start time (its pid was reused); api: the right start
    // time, but the process is not supergo's (no SUPERGO_PROGRAM).
    let reused = unrelated_sleeper();
    let foreign = unrelated_sleeper();
    let ticks = |pid: i32| proc_stat(pid).expect("a live sleeper").start_time;
    // A supergo that is gone: a pid that exited, with a start time no process has.
    let mut gone = Command::new("true").spawn().expect("run true");
    let gone_pid = gone.id();
    gone.wait().expect("wait for true");
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot_id");
    let mut text = format!(
        "supergo-state 1.0 (supergo 0.1.0)\n\n[handover]\npid={gone_pid}\nboot_id={}\nfds=\n\n[supergo]\npid={gone_pid}\nstart_ticks=1\ncontrol={}\n",
        boot_id.trim(),
        sg.control
    );
    text.push_str(&fake_process("web", reused.pid(), ticks(reused.pid()) + 1));
    text.push_str(&fake_process("api", foreign.pid(), ticks(foreign.pid())));
    write_state_file(&sg, &text);

    sg.spawn(&[]);
    sg.wait_ready();
    for (name, sleeper) in [("web", &reused), ("api", &foreign)] {
        let status = sg.wait_state(name, "Running", TIMEOUT);
        assert_ne!(pid_of(&status), sleeper.pid(), "{status}");
        assert_eq!(adopted_note(&status), None, "{status}");
        assert!(
            pid_alive(sleeper.pid()),
            "{name}: the unrelated process was left alone"
        );
    }
    let log = sg.log();
    assert!(
        log.contains(&format!(
            "pid {} now belongs to another process",
            reused.pid()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "pid {} (generation 1) has no SUPERGO_PROGRAM in its environment",
            foreign.pid()
        )),
        "{log}"
    );
}

#[test]
fn a_corrupt_state_file_is_a_warning() {
    let sg = Supergo::new("adopt_corrupt_state");
    sg.write_config(WEB);
    write_state_file(&sg, "supergo-state 1.0\n[program web]\npid 12\n");
    sg.spawn(&[]);
    sg.wait_ready();
    sg.wait_state("web", "Running", TIMEOUT);
    let log = sg.log();
    assert!(
        log.contains("WARN") && log.contains("is corrupt") && log.contains("line 3"),
        "{log}"
    );
    // And it is replaced by a good one.
    poll_until(TIMEOUT, "a state file that names web's process", || {
        let text = std::fs::read_to_string(state_file(&sg)).ok()?;
        text.contains("[program web]").then_some(())
    });
}

#[test]
fn a_second_supergo_on_the_same_address_is_refused_while_the_first_runs() {
    let sg = Supergo::start("adopt_refuse_second", WEB);
    let pid = sg.running_pid("web");
    poll_until(TIMEOUT, "the state file", || {
        state_file(&sg).exists().then_some(())
    });
    let config = sg.config_path.display().to_string();
    let output = sg.run(&["--config", &config, "--listen", &sg.control]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("another supergo (pid {}) is running", sg.pid())),
        "{stderr}"
    );
    assert_eq!(
        pid_of(&sg.status("web")),
        pid,
        "the first supergo's child is untouched"
    );
}

#[test]
fn a_program_removed_from_the_config_meanwhile_is_stopped() {
    let sg = Supergo::new("adopt_removed_program");
    let both = format!(
        "{WEB}\n[program.old]\ncommand = \"{{hello}}\"\nlisten_addrs = [\"127.0.0.1:{{port2}}\"]\nstart_secs = 0.2\n"
    );
    sg.write_config(&both);
    sg.spawn(&[]);
    sg.wait_ready();
    let web = sg.running_pid("web");
    let old = sg.running_pid("old");
    kill_supergo(&sg, &[web, old]);
    sg.write_config(WEB);
    start_again(&sg);
    assert_eq!(sg.running_pid("web"), web);
    wait_pid_gone(old, TIMEOUT);
    sg.wait_log("old: no longer in the config: stopping", TIMEOUT);
    poll_until(TIMEOUT, "old to leave the status", || {
        sg.find_status("old").is_none().then_some(())
    });
}

#[test]
fn sigterm_to_the_adopting_supergo_leaves_no_process_running() {
    let sg = Supergo::new("adopt_sigterm");
    let config = format!(
        "{WEB}\n[program.logger]\ncommand = \"{{probe}} serve\"\nlisten_addrs = [\"127.0.0.1:{{port2}}\"]\nstart_secs = 0.2\nstdout_file = \"{{dir}}/logger.out\"\n"
    );
    sg.write_config(&config);
    sg.spawn(&[]);
    sg.wait_ready();
    let web = sg.running_pid("web");
    let logger = sg.running_pid("logger");
    kill_supergo(&sg, &[web, logger]);
    start_again(&sg);
    assert_eq!(sg.running_pid("web"), web);
    let replaced = pid_of(&wait_replaced(&sg, "logger", logger));
    sg.signal(Signal::SIGTERM);
    let exit = sg.wait_exit(TIMEOUT);
    assert!(
        exit.success(),
        "supergo exits 0 after stopping everything: {exit}"
    );
    for pid in [web, logger, replaced] {
        assert!(
            !pid_alive(pid),
            "pid {pid} still runs after supergo stopped"
        );
    }
    assert!(
        !state_file(&sg).exists(),
        "a clean shutdown removes the state file"
    );
}

#[test]
fn a_process_that_cannot_be_adopted_is_stopped_and_its_program_starts_afresh() {
    let sg = Supergo::new("adopt_not_adoptable");
    sg.write_config(
        r#"
[supergo]
state_dir = "{dir}/state"

[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 5
environment = { PROBE_NONDUMPABLE = "1" }
"#,
    );
    let old = start_then_kill(&sg);
    // A non-dumpable process gives no ptrace access to a process without CAP_SYS_PTRACE:
    // its environment and fds cannot be read, nor its sockets taken. Root has that
    // capability: the new supergo runs without it (dropped from its bounding set, so its
    // exec does not grant it).
    let wrapper: &[&str] = if nix::unistd::geteuid().is_root() {
        &[
            "setpriv",
            "--bounding-set",
            "-sys_ptrace",
            "--inh-caps",
            "-sys_ptrace",
        ]
    } else {
        &[]
    };
    sg.respawn_via(wrapper);
    sg.wait_ready();
    let status = wait_replaced(&sg, "web", old);
    assert_eq!(adopted_note(&status), None, "{status}");
    assert!(
        !pid_alive(old),
        "the process that could not be adopted was stopped"
    );
    crate::util::http_get(&sg.app_addr(), "/").expect("the new process serves");
    let log = sg.log();
    assert!(
        log.contains(&format!("pid {old} cannot be adopted: "))
            && log.contains("need ptrace access to the process")
            && log.contains("stopping it gracefully; the program starts afresh")
            && log.contains(&format!("web[{old}]: sending SIGTERM (stop)")),
        "{log}"
    );
}
