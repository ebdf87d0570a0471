//! supergo as a container's entrypoint and as a systemd service (issue 16).
//!
//! - As PID 1 of a new pid namespace (`unshare --pid --fork --mount-proc`, which needs root:
//!   CI runs as root; elsewhere these tests print a loud SKIPPED line, and fail under
//!   `CI=true`): orphans are reaped and no zombie remains; SIGTERM makes supergo exit 0.
//!   The namespace's processes are watched from outside, through the host's /proc (their
//!   host pids; `NSpid` in /proc/PID/status maps one to the other).
//! - Not PID 1: supergo is the child subreaper of its programs' descendants, so an orphan
//!   comes back to supergo (and is reaped by it) instead of going to init.
//! - Under systemd: supergo gets a `NOTIFY_SOCKET` of the test's own (an abstract datagram
//!   socket) and must say `READY=1` once the initial start is done, `RELOADING=1` … `READY=1`
//!   around an update, and `STOPPING=1` at shutdown.
//!
//! - PID 1 duties: every signal a container runtime sends is handled (TERM, INT, QUIT stop
//!   every program and supergo exits 0; HUP updates; USR1 reopens the log files).
//!
//! The exit statuses of an `essential` program are tested in `exit_status`; the helpers that
//! leave their program's process group, in `escaped_helpers`.
//!
//! supergo is launched here (`Supergo::daemon_command`) rather than by `Supergo::spawn`,
//! which cannot wrap it in `unshare --fork` (whose child supergo is); the harness's `Supergo`
//! still owns the directory, the ports and the cleanup of every process registered with it. Inside a namespace, the pids supergo
//! reports are the namespace's: these tests never pass them to the harness (`programs()`,
//! `wait_state()` would register them as host pids), and read `/status` themselves.

use std::ffi::OsStr;
use std::fs;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::service_manager::{field, ServiceManager};
use crate::util::{
    descendants, fail, http_request, make_fifo, poll_until, proc_stat, release_fifo,
    try_poll_until, Supergo, TIMEOUT,
};

// ---------------------------------------------------------------------------------------------
// Launching supergo (maybe as PID 1 of a pid namespace, maybe with a NOTIFY_SOCKET)

/// Whether supergo can be started as PID 1 of a new pid namespace here; why not, if not.
fn pid_namespaces() -> &'static Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE.get_or_init(|| {
        let out = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "true"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `unshare`: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`unshare --pid --fork --mount-proc true` failed ({}): {} (it needs root)",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    })
}

/// True when the test can run as PID 1. Otherwise: fails under `CI=true` (CI runs as root
/// and must run it), and elsewhere says loudly that it was skipped.
fn can_run_as_pid_1(test: &str) -> bool {
    match pid_namespaces() {
        Ok(()) => true,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => fail(format!(
            "{test}: CI=true, but supergo cannot run as PID 1 here: {why}"
        )),
        Err(why) => {
            eprintln!(
                "\n************************************************************\n\
                 SKIPPED {test}: {why}\n\
                 ************************************************************\n"
            );
            false
        }
    }
}

/// One supergo started by this module. Dropping it kills supergo (in a namespace that kills
/// every process of the namespace), registers what it leaves behind with `sg`, whose own
/// `Drop` then kills those and removes the test directory.
struct Launched {
    /// supergo itself, or `unshare` around it.
    wrapper: Child,
    /// supergo's pid as the host sees it.
    pid: i32,
    start_time: u64,
    sg: Supergo,
}

impl Launched {
    /// Starts supergo on `sg`'s config (already written), as PID 1 of a new pid namespace
    /// when `as_pid_1`, with `env` added to its environment; waits until its API answers.
    fn start(sg: Supergo, as_pid_1: bool, env: &[(&str, &str)]) -> Launched {
        let unshare = ["unshare", "--pid", "--fork", "--mount-proc"].map(OsStr::new);
        let mut cmd = sg.daemon_command(if as_pid_1 { &unshare } else { &[] });
        cmd.envs(env.iter().copied());
        let wrapper = cmd
            .spawn()
            .unwrap_or_else(|e| fail(format!("cannot start {cmd:?}: {e}")));
        let wrapper_pid = i32::try_from(wrapper.id()).expect("a pid fits in pid_t");
        let pid = if as_pid_1 {
            // unshare --fork: supergo is unshare's only child.
            poll_until(TIMEOUT, "unshare to fork supergo", || {
                descendants(wrapper_pid)
                    .into_iter()
                    .find(|p| p.ppid == wrapper_pid)
                    .map(|p| p.pid)
            })
        } else {
            wrapper_pid
        };
        let start_time = proc_stat(pid).map_or(0, |s| s.start_time);
        let mut launched = Launched {
            wrapper,
            pid,
            start_time,
            sg,
        };
        launched.wait_api();
        launched
    }

    fn wait_api(&mut self) {
        let control = self.sg.control.clone();
        let wrapper = &mut self.wrapper;
        poll_until(TIMEOUT, "supergo's control API to answer", || {
            if let Ok(Some(status)) = wrapper.try_wait() {
                fail(format!("supergo exited ({status}) before its API answered"));
            }
            http_request(&control, "GET", "/status", &[], Duration::from_secs(1))
                .ok()
                .map(drop)
        });
    }

    /// True while supergo is the process that was started (not reaped, pid not reused).
    fn alive(&self) -> bool {
        proc_stat(self.pid).is_some_and(|s| s.start_time == self.start_time)
    }

    fn signal(&self, signal: Signal) {
        self.register_descendants();
        kill(Pid::from_raw(self.pid), signal)
            .unwrap_or_else(|e| fail(format!("kill(supergo {}, {signal}): {e}", self.pid)));
    }

    /// How supergo (through unshare, which passes its status on) exited.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.register_descendants();
        let wrapper = &mut self.wrapper;
        poll_until(timeout, "supergo to exit", || {
            wrapper.try_wait().expect("waitpid on our own child")
        })
    }

    /// Host pids of supergo's descendants, for the harness to kill at the end. Only outside
    /// a namespace is that needed, but host pids are right in both cases.
    fn register_descendants(&self) {
        if self.alive() {
            for p in descendants(self.pid) {
                self.sg.register(p.pid);
            }
        }
    }

    /// Program `name`'s entry in `/status`, read without registering its (namespace) pids.
    fn program(&self, name: &str) -> Option<Value> {
        let (_, body) = self.sg.api("GET", "/status");
        let list = match &body["data"] {
            Value::Array(list) => list.clone(),
            Value::Object(map) => map.values().cloned().collect(),
            _ => Vec::new(),
        };
        list.into_iter().find(|p| p["name"].as_str() == Some(name))
    }

    fn state(&self, name: &str) -> String {
        self.program(name)
            .and_then(|p| p["state"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn wait_state(&self, name: &str, state: &str) {
        poll_until(TIMEOUT, &format!("{name} to be {state}"), || {
            (self.state(name) == state).then_some(())
        });
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if self.alive() {
            // Frozen first, so it cannot start a replacement while its children are
            // collected; SIGKILL to a namespace's PID 1 kills the whole namespace.
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGSTOP);
            self.register_descendants();
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Orphans

/// A program that leaves a helper behind, as a daemonizing program does: a subshell starts
/// the helper and exits, so the helper is orphaned while the program runs on. The helper
/// waits on the fifo `release`, so it lives exactly until the test lets it go; its pid (as
/// the program sees it, so the namespace's pid as PID 1) lands in `orphan.pid`.
const DAEMONIZER: &str = r#"
[program.daemonizer]
command = "sh {dir}/daemonize.sh"
start_secs = 0.2
"#;

const DAEMONIZE_SH: &str = r#"
( sh -c 'read line < "$1"' helper {dir}/release &
  echo $! > {dir}/orphan.pid.tmp && mv {dir}/orphan.pid.tmp {dir}/orphan.pid )
exec {probe} sleep
"#;

/// The last pid of `NSpid` in /proc/PID/status: `pid` as its own pid namespace sees it.
fn namespace_pid(pid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// Runs the daemonizer under supergo until its helper has been orphaned, reparented to
/// supergo, released and has exited; returns supergo, still running, once no zombie is left
/// under it.
fn orphan_is_reaped(test: &str, as_pid_1: bool) -> Launched {
    let sg = Supergo::new(test);
    sg.write_config(DAEMONIZER);
    sg.write_file("daemonize.sh", DAEMONIZE_SH);
    let release = sg.path("release");
    make_fifo(&release);
    let supergo = Launched::start(sg, as_pid_1, &[]);
    let orphan_file = supergo.sg.path("orphan.pid");
    let seen_pid: i32 = poll_until(TIMEOUT, "the program to write orphan.pid", || {
        fs::read_to_string(&orphan_file).ok()?.trim().parse().ok()
    });
    // Its host pid: the descendant of supergo that its own namespace calls `seen_pid`.
    let orphan = poll_until(TIMEOUT, "the helper among supergo's descendants", || {
        descendants(supergo.pid)
            .into_iter()
            .find(|p| namespace_pid(p.pid) == Some(seen_pid))
    });
    supergo.sg.register(orphan.pid);
    let who = if as_pid_1 { "PID 1" } else { "subreaper" };
    poll_until(
        TIMEOUT,
        &format!(
            "the orphaned helper {} to be reparented to supergo ({who})",
            orphan.pid
        ),
        || {
            let now = proc_stat(orphan.pid)?;
            (now.start_time == orphan.start_time && now.ppid == supergo.pid).then_some(())
        },
    );
    // Let it go: it reads a line and exits, and only supergo can reap it.
    release_fifo(&release, "the helper");
    let reaped = try_poll_until(TIMEOUT, || {
        proc_stat(orphan.pid)
            .is_none_or(|now| now.start_time != orphan.start_time)
            .then_some(())
    });
    if reaped.is_none() {
        let state = proc_stat(orphan.pid).map(|s| s.state);
        fail(format!(
            "the orphan {} was not reaped by supergo (state {state:?}; Z = a zombie)",
            orphan.pid
        ));
    }
    poll_until(TIMEOUT, "no zombie left under supergo", || {
        let zombies: Vec<i32> = descendants(supergo.pid)
            .into_iter()
            .filter(|p| p.state == 'Z')
            .map(|p| p.pid)
            .collect();
        zombies.is_empty().then_some(())
    });
    // The program itself was left alone.
    supergo.wait_state("daemonizer", "Running");
    supergo
}

#[test]
fn as_pid_1_supergo_reaps_orphans_and_leaves_no_zombie() {
    let test = "as_pid_1_supergo_reaps_orphans_and_leaves_no_zombie";
    if !can_run_as_pid_1(test) {
        return;
    }
    orphan_is_reaped(test, true);
}

#[test]
fn not_pid_1_supergo_is_the_subreaper_of_its_programs_orphans() {
    orphan_is_reaped(
        "not_pid_1_supergo_is_the_subreaper_of_its_programs_orphans",
        false,
    );
}

/// Orphans are routine for a subreaper (or PID 1): reaped quietly, with no log line each (as
/// supergo once wrote "reaped pid N that no program owns" for every one).
#[test]
fn orphans_are_reaped_without_a_log_line_each() {
    let supergo = orphan_is_reaped("orphans_are_reaped_without_a_log_line_each", false);
    let log = supergo.sg.log();
    assert!(
        !log.contains("no program owns"),
        "an orphan of a program was reaped with a log line: {}",
        supergo.sg.dump()
    );
}

#[test]
fn as_pid_1_supergo_exits_0_on_sigterm() {
    let test = "as_pid_1_supergo_exits_0_on_sigterm";
    if !can_run_as_pid_1(test) {
        return;
    }
    let sg = Supergo::new(test);
    sg.write_config(
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2

[program.worker]
command = "{probe} sleep"
start_secs = 0.2
"#,
    );
    let app = sg.app_addr();
    let mut supergo = Launched::start(sg, true, &[]);
    supergo.wait_state("web", "Running");
    supergo.wait_state("worker", "Running");
    let (status, body) = http_request(&app, "GET", "/", &[], TIMEOUT)
        .map(|r| (r.status, r.body))
        .unwrap_or_else(|e| fail(format!("the program in the namespace does not answer: {e}")));
    assert_eq!(status, 200, "{body}");
    let children: Vec<i32> = descendants(supergo.pid).iter().map(|p| p.pid).collect();
    assert!(!children.is_empty());

    supergo.signal(Signal::SIGTERM);
    let exit = supergo.wait_exit(TIMEOUT * 3);
    assert_eq!(
        exit.code(),
        Some(0),
        "supergo as PID 1 must exit 0 on SIGTERM, got {exit}: {}",
        supergo.sg.dump()
    );
    assert!(
        supergo.sg.log().contains("every program is stopped"),
        "it stopped its programs before exiting: {}",
        supergo.sg.dump()
    );
    for pid in children {
        assert!(
            proc_stat(pid).is_none(),
            "pid {pid} outlived supergo: {}",
            supergo.sg.dump()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// systemd's notify protocol, with a NOTIFY_SOCKET of the test's own

impl ServiceManager {
    /// supergo on `sg`'s config (not as PID 1), with this manager as its `NOTIFY_SOCKET`.
    fn launch(&self, sg: Supergo) -> Launched {
        Launched::start(sg, false, &[("NOTIFY_SOCKET", &self.target)])
    }
}

#[test]
fn systemd_notify_stopping_at_shutdown_and_no_child_inherits_the_socket() {
    let mut manager = ServiceManager::bind();
    let sg = Supergo::new("systemd_notify_stopping_at_shutdown");
    sg.write_config(
        r#"
[program.worker]
command = "{probe} sleep"
start_secs = 0.2
environment = { PROBE_REPORT = "{dir}/worker.json" }
"#,
    );
    let mut supergo = manager.launch(sg);
    let report = supergo.sg.read_report("worker.json");
    assert!(
        report["env"].get("NOTIFY_SOCKET").is_none(),
        "a child inherited supergo's own NOTIFY_SOCKET: {}",
        report["env"]
    );
    supergo.wait_state("worker", "Running");
    supergo.signal(Signal::SIGTERM);
    let exit = supergo.wait_exit(TIMEOUT * 3);
    assert_eq!(exit.code(), Some(0), "{}", supergo.sg.dump());
    let stopping = manager.wait_for("STOPPING=1", 0, TIMEOUT);
    assert_eq!(manager.count("STOPPING=1"), 1, "{:?}", manager.seen);
    assert!(
        manager.seen[stopping..]
            .iter()
            .all(|m| !m.lines().any(|l| l == "READY=1")),
        "nothing said READY=1 after STOPPING=1: {:?}",
        manager.seen
    );
}

/// `READY=1`, with a one-line `STATUS=`, once the initial start is done, and only then.
#[test]
fn systemd_notify_ready_once_every_autostart_program_is_running_or_fatal() {
    let mut manager = ServiceManager::bind();
    let sg = Supergo::new("systemd_notify_ready_after_start");
    sg.write_config(
        r#"
[program.db]
command = "{probe} sleep"
priority = 1
start_secs = 0.5

[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
priority = 2
start_secs = 1

[program.broken]
command = "{probe} exit 3"
priority = 2
max_retry = 0

[program.manual]
command = "{probe} sleep"
autostart = false
"#,
    );
    let supergo = manager.launch(sg);
    let ready = manager.wait_for("READY=1", 0, TIMEOUT * 2);
    // Read at once: READY=1 said too early would find `web` still Starting.
    for (name, state) in [("db", "Running"), ("web", "Running"), ("broken", "Fatal")] {
        assert_eq!(
            supergo.state(name),
            state,
            "{name} when READY=1 arrived; datagrams {:?}: {}",
            manager.seen,
            supergo.sg.dump()
        );
    }
    assert_eq!(supergo.state("manual"), "Stopped");
    let status = field(&manager.seen[ready], "STATUS").unwrap_or_else(|| {
        fail(format!(
            "READY=1 came without a STATUS= line: {:?}",
            manager.seen
        ))
    });
    assert!(
        status.contains("program") && !status.contains('\n'),
        "a one-line summary of the programs: {status:?}"
    );
    assert_eq!(manager.count("READY=1"), 1, "{:?}", manager.seen);
    assert_eq!(manager.count("STOPPING=1"), 0, "{:?}", manager.seen);
}

/// `RELOADING=1` when an update begins (POST /update, SIGHUP) and `READY=1` when it is done;
/// after the initial `READY=1`, which this test waits for first.
#[test]
fn systemd_notify_reloading_then_ready_around_an_update() {
    let mut manager = ServiceManager::bind();
    let sg = Supergo::new("systemd_notify_reloading_around_update");
    let first = r#"
[program.worker]
command = "{probe} sleep"
start_secs = 0.2
"#;
    sg.write_config(first);
    let supergo = manager.launch(sg);
    let ready = manager.wait_for("READY=1", 0, TIMEOUT * 2);

    // An update through the API (what `supergoctl update`, the unit's ExecReload, sends).
    supergo.sg.write_config(&format!(
        "{first}\n[program.added]\ncommand = \"{{probe}} sleep\"\nstart_secs = 0.2\n"
    ));
    supergo.sg.api_ok("POST", "/update");
    let reloading = manager.wait_for("RELOADING=1", ready + 1, TIMEOUT);
    let usec =
        field(&manager.seen[reloading], "MONOTONIC_USEC").and_then(|v| v.parse::<u64>().ok());
    assert!(
        usec.is_some_and(|u| u > 0),
        "RELOADING=1 carries MONOTONIC_USEC: {:?}",
        manager.seen[reloading]
    );
    let reloaded = manager.wait_for("READY=1", reloading + 1, TIMEOUT);
    assert_eq!(supergo.state("added"), "Running", "{}", supergo.sg.dump());

    // SIGHUP (the unit's ExecReload when it is `kill -HUP $MAINPID`) says the same.
    supergo.signal(Signal::SIGHUP);
    let again = manager.wait_for("RELOADING=1", reloaded + 1, TIMEOUT);
    manager.wait_for("READY=1", again + 1, TIMEOUT);
    assert_eq!(manager.count("STOPPING=1"), 0, "{:?}", manager.seen);
}

// ---------------------------------------------------------------------------------------------
// PID 1 duties: every signal a container runtime sends

/// As PID 1 (where a signal without a handler is dropped, not fatal): HUP applies the config
/// file (`update`), USR1 reopens the log files, and INT and QUIT, like TERM (tested above),
/// stop every program and make supergo exit 0.
#[test]
fn as_pid_1_hup_updates_usr1_reopens_logs_and_int_or_quit_exit_0() {
    let test = "as_pid_1_hup_updates_usr1_reopens_logs_and_int_or_quit_exit_0";
    if !can_run_as_pid_1(test) {
        return;
    }
    let first = r#"
[program.worker]
command = "{probe} sleep"
start_secs = 0.2
stdout_file = "{dir}/worker.out"
"#;
    for stop in [Signal::SIGINT, Signal::SIGQUIT] {
        let sg = Supergo::new(&format!("as_pid_1_signals_{stop}"));
        sg.write_config(first);
        let mut supergo = Launched::start(sg, true, &[]);
        supergo.wait_state("worker", "Running");

        // HUP = update: a program added to the file starts.
        supergo.sg.write_config(&format!(
            "{first}\n[program.added]\ncommand = \"{{probe}} sleep\"\nstart_secs = 0.2\n"
        ));
        supergo.signal(Signal::SIGHUP);
        supergo.wait_state("added", "Running");

        // USR1 = reopen the log files: one moved away (as logrotate does) is made again.
        let out = supergo.sg.path("worker.out");
        poll_until(TIMEOUT, "worker.out to exist", || {
            out.exists().then_some(())
        });
        fs::rename(&out, supergo.sg.path("worker.out.1"))
            .unwrap_or_else(|e| fail(format!("rename worker.out: {e}")));
        supergo.signal(Signal::SIGUSR1);
        poll_until(TIMEOUT, "supergo to reopen worker.out at its path", || {
            out.exists().then_some(())
        });

        let children: Vec<i32> = descendants(supergo.pid).iter().map(|p| p.pid).collect();
        supergo.signal(stop);
        let exit = supergo.wait_exit(TIMEOUT * 3);
        assert_eq!(
            exit.code(),
            Some(0),
            "supergo as PID 1 must exit 0 on {stop}, got {exit}: {}",
            supergo.sg.dump()
        );
        for pid in children {
            assert!(
                proc_stat(pid).is_none(),
                "pid {pid} outlived supergo after {stop}: {}",
                supergo.sg.dump()
            );
        }
    }
}
