//! Tests of the harness and of the children it relies on, without supergo: the probe reports
//! what it was given, the hello example serves and drains, the load generator counts, and
//! `poll_until` fails loudly. When these fail, the supergo tests cannot be trusted.

use std::fs;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::Signal;
use nix::unistd::dup2_raw;

use crate::util::{
    clean_exec_state, hello_bin, http_get, pid_alive, poll_until, probe_bin, read_report, test_dir,
    KillOnDrop, Load, LoadOptions, TIMEOUT,
};

/// Starts `hello --listen 127.0.0.1:0` with its stderr in `DIR/hello.err`; the child and the
/// address from its `hello: listening on ADDR` line.
fn start_hello(dir: &std::path::Path) -> (KillOnDrop, String) {
    let log = dir.join("hello.err");
    let stderr = fs::File::create(&log).expect("create hello.err");
    let child = Command::new(hello_bin())
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("LISTEN_FDS")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start the hello example");
    let child = KillOnDrop(child);
    let addr = poll_until(TIMEOUT, "`hello: listening on ADDR` in hello.err", || {
        let text = fs::read_to_string(&log).ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("hello: listening on "))?;
        Some(line.trim_start_matches("hello: listening on ").to_string())
    });
    (child, addr)
}

#[test]
fn probe_reports_a_listener_passed_at_fd_3() {
    let dir = test_dir("probe_reports_a_listener_passed_at_fd_3");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
    let addr = listener.local_addr().expect("the listener's address");
    let source = listener.as_raw_fd();
    let report_path = dir.join("report.json");

    let mut cmd = Command::new(probe_bin());
    cmd.arg("serve")
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_PID")
        .env_remove("NOTIFY_SOCKET")
        .env("PROBE_REPORT", &report_path)
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("probe.out")).expect("create probe.out"))
        .stderr(fs::File::create(dir.join("probe.err")).expect("create probe.err"));
    // SAFETY: between fork and exec the closure makes async-signal-safe calls only (raw
    // rt_sigaction and close_range, dup2, fcntl) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            clean_exec_state()?;
            let fd = BorrowedFd::borrow_raw(source);
            if source == 3 {
                // dup2 onto itself would keep FD_CLOEXEC: clear it so fd 3 survives exec.
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
            } else {
                // The new fd 3 does not inherit FD_CLOEXEC. Keep it open in the child: it
                // is the listener passed on.
                std::mem::forget(dup2_raw(fd, 3)?);
            }
            Ok(())
        });
    }
    let mut child = KillOnDrop(cmd.spawn().expect("start the probe"));
    let report = read_report(&report_path);

    assert_eq!(report["pid"], child.pid(), "{report:#}");
    assert_eq!(report["ppid"], std::process::id(), "{report:#}");
    let fds: Vec<i64> = report["fds"]
        .as_array()
        .expect("fds is a list")
        .iter()
        .filter_map(|fd| fd.as_i64())
        .collect();
    assert_eq!(fds, [0, 1, 2, 3], "{report:#}");
    let fd3 = &report["fd_info"]["3"];
    assert_eq!(fd3["listening"], true, "{report:#}");
    assert_eq!(fd3["type"], "stream", "{report:#}");
    assert_eq!(fd3["addr"], addr.to_string(), "{report:#}");
    assert_eq!(report["env"]["LISTEN_FDS"], "1", "{report:#}");
    assert!(report["env"].get("LISTEN_PID").is_none(), "{report:#}");
    // std's Command starts children with an empty mask and SIGPIPE back to default, the
    // pre_exec above resets the rest; the probe (no Rust runtime start-up) must show exactly
    // that.
    assert_eq!(report["sig_blk"], "0000000000000000", "{report:#}");
    assert_eq!(report["sig_ign"], "0000000000000000", "{report:#}");
    for key in [
        "pgid",
        "sid",
        "uid",
        "gid",
        "umask",
        "cwd",
        "groups",
        "rlimit_nofile",
    ] {
        assert!(!report[key].is_null(), "no {key} in {report:#}");
    }

    let answer = http_get(&addr.to_string(), "/").expect("the probe answers on fd 3");
    assert_eq!(answer, (200, format!("pid: {}\n", child.pid())));
    let stdout = fs::read_to_string(dir.join("probe.out")).expect("read probe.out");
    assert!(
        stdout.contains(&format!("probe: started pid {}", child.pid())),
        "{stdout}"
    );

    child.signal(Signal::SIGTERM);
    let status = child.wait_exit(TIMEOUT);
    assert_eq!(status.code(), Some(0), "{status}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn hello_example_serves_the_contract_routes() {
    let dir = test_dir("hello_example_serves_the_contract_routes");
    let (mut hello, addr) = start_hello(&dir);
    let cases = [
        ("/", 200, format!("pid: {}", hello.pid())),
        ("/hello", 200, "hello, Jack".to_string()),
        ("/hello?name=Zoe", 200, "hello, Zoe".to_string()),
        (
            "/hello?name=Ada+L%C3%BCbke",
            200,
            "hello, Ada Lübke".to_string(),
        ),
        ("/sleep?ms=20", 200, "slept 20 ms".to_string()),
        (
            "/sleep?ms=x",
            400,
            "/sleep needs ms=<milliseconds>, got \"x\"".to_string(),
        ),
    ];
    for (path, status, body) in cases {
        let answer = http_get(&addr, path).unwrap_or_else(|err| panic!("GET {path}: {err}"));
        assert_eq!(answer, (status, body), "GET {path}");
    }
    for path in ["/nope", "/hello/", "/sleepy"] {
        let (status, _) = http_get(&addr, path).unwrap_or_else(|err| panic!("GET {path}: {err}"));
        assert_eq!(status, 404, "GET {path}");
    }
    hello.signal(Signal::SIGTERM);
    assert_eq!(hello.wait_exit(TIMEOUT).code(), Some(0));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn hello_example_finishes_a_slow_request_on_sigterm() {
    let dir = test_dir("hello_example_finishes_a_slow_request_on_sigterm");
    let (mut hello, addr) = start_hello(&dir);
    let slow = {
        let addr = addr.clone();
        thread::spawn(move || http_get(&addr, "/sleep?ms=400"))
    };
    // The request is in hello's hands once it logs it; then the stop may come.
    poll_until(TIMEOUT, "hello to log the slow request", || {
        let log = fs::read_to_string(dir.join("hello.err")).ok()?;
        log.contains("sleeping 400 ms").then_some(())
    });
    hello.signal(Signal::SIGTERM);
    let answer = slow.join().expect("the client thread");
    assert_eq!(answer, Ok((200, "slept 400 ms".to_string())));
    assert_eq!(hello.wait_exit(TIMEOUT).code(), Some(0));
    assert!(!pid_alive(hello.pid()));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn load_counts_answers_and_the_pids_that_gave_them() {
    let dir = test_dir("load_counts_answers_and_the_pids_that_gave_them");
    let (mut hello, addr) = start_hello(&dir);
    let load = Load::start(
        &addr,
        LoadOptions {
            threads: 2,
            sleepers: 1,
            sleep_ms: 30,
            ..LoadOptions::default()
        },
    );
    load.wait_ok(30, TIMEOUT);
    let report = load.stop();
    report.assert_no_failures();
    assert!(report.ok >= 30, "{report}");
    assert!(report.slow_ok >= 1, "{report}");
    assert_eq!(
        report.pids.iter().copied().collect::<Vec<_>>(),
        [u32::try_from(hello.pid()).expect("pid")],
        "{report}"
    );
    hello.signal(Signal::SIGTERM);
    assert_eq!(hello.wait_exit(TIMEOUT).code(), Some(0));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
#[should_panic(expected = "timed out after 50ms waiting for: the moon to turn blue")]
fn poll_until_panics_with_what_it_waited_for() {
    poll_until(Duration::from_millis(50), "the moon to turn blue", || {
        None::<()>
    });
}
