//! Unit tests of the shim, over FFI.
//!
//! The environment is process-wide, so tests that set variables hold `ENV_LOCK` (through
//! [`Env`]). Tests that need fds at 3, 4 or that install signal handlers would disturb the
//! test process (fd 3 may be the harness's, a SIGTERM handler outlives the test): they run in
//! a child, this same test binary re-executed on one `#[ignore]`d `child_*` test, with the
//! fds placed by `support::place_fds`. A child test does nothing unless `CHILD_MARK` is set.

use super::*;
use crate::support::{self, fcntl, raise, FD_CLOEXEC, F_GETFD, SIGINT, SIGTERM};
use std::ffi::{CString, OsString};
use std::mem::ManuallyDrop;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

// Linux errno values (the shim is Linux-only).
const EBADF: c_int = 9;
const ENOENT: c_int = 2;
const ENXIO: c_int = 6;
const EINVAL: c_int = 22;
const EAFNOSUPPORT: c_int = 97;

const CHILD_MARK: &str = "SHIM_C_TEST_CHILD";
const VARS: [&str; 4] = [
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
];

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Holds the environment for one test: clears the protocol variables, restores them on drop.
struct Env {
    saved: Vec<(&'static str, Option<OsString>)>,
    _lock: MutexGuard<'static, ()>,
}

impl Env {
    fn new() -> Env {
        // A test that panicked while holding the lock poisoned it; the environment is put
        // back by Drop anyway, so go on.
        let lock = ENV_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let saved = VARS.iter().map(|&k| (k, std::env::var_os(k))).collect();
        for k in VARS {
            std::env::remove_var(k);
        }
        Env { saved, _lock: lock }
    }

    fn set(&self, key: &str, value: &str) {
        std::env::set_var(key, value);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (k, v) in &self.saved {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
}

fn pid() -> String {
    std::process::id().to_string()
}

fn listen_fds(unset: bool) -> c_int {
    // SAFETY: no pointers; the caller holds ENV_LOCK or is a single-threaded child.
    unsafe { supergo_listen_fds(c_int::from(unset)) }
}

fn by_name(name: &str) -> c_int {
    let name = CString::new(name).expect("test names have no NUL");
    // SAFETY: a valid C string for the duration of the call.
    unsafe { supergo_listen_fd_by_name(name.as_ptr()) }
}

fn notify(state: &str) -> c_int {
    let state = CString::new(state).expect("test states have no NUL");
    // SAFETY: a valid C string for the duration of the call.
    unsafe { supergo_notify(state.as_ptr()) }
}

fn cloexec(fd: RawFd) -> bool {
    // SAFETY: F_GETFD takes no argument.
    let flags = unsafe { fcntl(fd, F_GETFD) };
    flags >= 0 && flags & FD_CLOEXEC != 0
}

/// Runs the `#[ignore]`d test `name` in a child process with `fds` placed and `closed` closed,
/// no protocol variable but `env`, and fails with its output unless it passed.
fn run_child(name: &str, fds: &[(RawFd, RawFd)], closed: &[RawFd], env: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        &format!("tests::{name}"),
        "--exact",
        "--ignored",
        "--test-threads=1",
        "--nocapture",
    ])
    .env(CHILD_MARK, "1");
    for k in VARS {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    support::place_fds(&mut cmd, fds, closed);
    let out = cmd.output().expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child test {name} failed ({}), fds {fds:?}, closed {closed:?}, env {env:?}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True in the child started by `run_child`; a child test returns early otherwise (a plain
/// `cargo test -- --ignored` must not run it in the test process).
fn in_child() -> bool {
    std::env::var_os(CHILD_MARK).is_some()
}

fn local_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind a listener on 127.0.0.1")
}

fn port_of_fd(fd: RawFd) -> u16 {
    // SAFETY: fd is a listening TCP socket owned by the process; ManuallyDrop keeps it open.
    let l = ManuallyDrop::new(unsafe { TcpListener::from_raw_fd(fd) });
    l.local_addr().expect("getsockname").port()
}

// ---- LISTEN_FDS / LISTEN_PID in the test process (no fd is touched) ----

#[test]
fn listen_fds_is_0_when_listen_pid_is_another_process() {
    let env = Env::new();
    env.set("LISTEN_FDS", "1");
    env.set("LISTEN_PID", "1");
    assert_eq!(listen_fds(false), 0);
}

#[test]
fn listen_fds_is_0_without_listen_pid() {
    let env = Env::new();
    env.set("LISTEN_FDS", "1");
    assert_eq!(listen_fds(false), 0);
}

#[test]
fn listen_fds_is_0_when_listen_fds_is_0() {
    let env = Env::new();
    env.set("LISTEN_FDS", "0");
    env.set("LISTEN_PID", &pid());
    assert_eq!(listen_fds(false), 0);
}

#[test]
fn listen_fds_rejects_malformed_listen_pid() {
    let env = Env::new();
    env.set("LISTEN_FDS", "1");
    for bad in ["", "12x", " 12", "+12", "-12", "0", "99999999999999999999"] {
        env.set("LISTEN_PID", bad);
        assert_eq!(listen_fds(false), -EINVAL, "LISTEN_PID={bad:?}");
    }
}

#[test]
fn listen_fds_rejects_malformed_listen_fds() {
    let env = Env::new();
    env.set("LISTEN_PID", &pid());
    for bad in ["", "-1", "1x", " 1", "+1", "2147483647"] {
        env.set("LISTEN_FDS", bad);
        assert_eq!(listen_fds(false), -EINVAL, "LISTEN_FDS={bad:?}");
    }
}

#[test]
fn listen_fds_unsets_the_environment_when_asked() {
    let env = Env::new();
    env.set("LISTEN_FDS", "1");
    env.set("LISTEN_PID", "1");
    env.set("LISTEN_FDNAMES", "web");
    assert_eq!(listen_fds(false), 0);
    assert!(
        std::env::var_os("LISTEN_FDS").is_some(),
        "kept with unset_environment = 0"
    );
    assert_eq!(listen_fds(true), 0);
    for k in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        assert_eq!(std::env::var_os(k), None, "{k} still set");
    }
}

#[test]
fn listen_fd_by_name_is_enxio_when_nothing_was_passed() {
    let env = Env::new();
    env.set("LISTEN_FDS", "0");
    env.set("LISTEN_PID", &pid());
    assert_eq!(by_name("web"), -ENXIO);
}

#[test]
fn listen_fd_by_name_rejects_null_and_empty_names() {
    let _env = Env::new();
    // SAFETY: NULL is a documented input.
    assert_eq!(
        unsafe { supergo_listen_fd_by_name(std::ptr::null()) },
        -EINVAL
    );
    assert_eq!(by_name(""), -EINVAL);
}

// ---- listeners at fd 3, 4 … in a child process ----

#[test]
fn listen_fds_counts_passed_listeners_with_matching_pid() {
    let (web, admin) = (local_listener(), local_listener());
    let ports = format!(
        "{}:{}",
        port_of_fd(web.as_raw_fd()),
        port_of_fd(admin.as_raw_fd())
    );
    run_child(
        "child_passed_listeners",
        &[(web.as_raw_fd(), 3), (admin.as_raw_fd(), 4)],
        &[],
        &[
            ("LISTEN_FDS", "2"),
            ("LISTEN_FDNAMES", "web:admin"),
            ("EXPECT_PORTS", &ports),
        ],
    );
}

#[test]
#[ignore = "runs in a child process started by listen_fds_counts_passed_listeners_with_matching_pid"]
fn child_passed_listeners() {
    if !in_child() {
        return;
    }
    std::env::set_var("LISTEN_PID", pid());
    assert_eq!(listen_fds(false), 2);
    assert!(cloexec(3) && cloexec(4), "FD_CLOEXEC set on the passed fds");
    let ports = format!("{}:{}", port_of_fd(3), port_of_fd(4));
    assert_eq!(
        std::env::var("EXPECT_PORTS").ok(),
        Some(ports),
        "fd 3, 4 are the parent's listeners"
    );

    assert_eq!(by_name("web"), 3);
    assert_eq!(by_name("admin"), 4);
    assert_eq!(by_name("api"), -ENOENT);

    assert_eq!(listen_fds(true), 2);
    assert_eq!(std::env::var_os("LISTEN_FDS"), None);
    assert_eq!(std::env::var_os("LISTEN_PID"), None);
    assert_eq!(std::env::var_os("LISTEN_FDNAMES"), None);
    // Without variables, only the original supergo's fd-3 rule is left, with systemd's
    // default name.
    assert_eq!(listen_fds(false), 1);
    assert_eq!(by_name("web"), -ENOENT);
    assert_eq!(by_name("unknown"), 3);
}

#[test]
fn listen_fd_by_name_rejects_malformed_listen_fdnames() {
    let (a, b) = (local_listener(), local_listener());
    run_child(
        "child_malformed_names",
        &[(a.as_raw_fd(), 3), (b.as_raw_fd(), 4)],
        &[],
        &[("LISTEN_FDS", "2")],
    );
}

#[test]
#[ignore = "runs in a child process started by listen_fd_by_name_rejects_malformed_listen_fdnames"]
fn child_malformed_names() {
    if !in_child() {
        return;
    }
    std::env::set_var("LISTEN_PID", pid());
    let long = "x".repeat(256);
    for bad in [
        "web",
        "web:admin:more",
        "web:",
        ":admin",
        "web:ad\u{1}min",
        "web:ädmin",
        &format!("web:{long}"),
    ] {
        std::env::set_var("LISTEN_FDNAMES", bad);
        assert_eq!(by_name("web"), -EINVAL, "LISTEN_FDNAMES={bad:?}");
    }
    let longest = "y".repeat(255);
    std::env::set_var("LISTEN_FDNAMES", format!("a b:{longest}"));
    assert_eq!(by_name("a b"), 3, "a space is printable ASCII");
    assert_eq!(by_name(&longest), 4, "255 characters is the limit");
}

#[test]
fn listen_fds_reports_a_passed_fd_that_is_not_open() {
    let web = local_listener();
    run_child(
        "child_missing_fd",
        &[(web.as_raw_fd(), 3)],
        &[4],
        &[("LISTEN_FDS", "2")],
    );
}

#[test]
#[ignore = "runs in a child process started by listen_fds_reports_a_passed_fd_that_is_not_open"]
fn child_missing_fd() {
    if !in_child() {
        return;
    }
    std::env::set_var("LISTEN_PID", pid());
    assert_eq!(listen_fds(false), -EBADF);
}

#[test]
fn listen_fds_takes_a_listener_at_fd_3_without_variables() {
    let l = local_listener();
    run_child(
        "child_fd3_without_variables",
        &[(l.as_raw_fd(), 3)],
        &[],
        &[],
    );
}

#[test]
#[ignore = "runs in a child process started by listen_fds_takes_a_listener_at_fd_3_without_variables"]
fn child_fd3_without_variables() {
    if !in_child() {
        return;
    }
    assert!(!cloexec(3), "placed without FD_CLOEXEC");
    assert_eq!(listen_fds(false), 1);
    assert!(cloexec(3), "FD_CLOEXEC set by supergo_listen_fds");
}

#[test]
fn listen_fds_ignores_fd_3_when_it_is_not_a_listener() {
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    run_child(
        "child_no_listener_at_fd3",
        &[(udp.as_raw_fd(), 3)],
        &[],
        &[],
    );
    run_child("child_no_listener_at_fd3", &[], &[3], &[]);
}

#[test]
#[ignore = "runs in a child process started by listen_fds_ignores_fd_3_when_it_is_not_a_listener"]
fn child_no_listener_at_fd3() {
    if !in_child() {
        return;
    }
    assert_eq!(listen_fds(false), 0);
    assert_eq!(by_name("unknown"), -ENXIO);
}

// ---- NOTIFY_SOCKET ----

fn temp_socket_path() -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("shim-c-test-{}-{n}.sock", std::process::id()))
}

fn receive(sock: &UnixDatagram) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a datagram within 5 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn notify_sends_one_datagram_to_a_socket_path() {
    let env = Env::new();
    let path = temp_socket_path();
    let sock = UnixDatagram::bind(&path).expect("bind a unix datagram socket");
    env.set("NOTIFY_SOCKET", path.to_str().expect("temp path is UTF-8"));
    let sent = notify("READY=1\nSTATUS=serving");
    let got = receive(&sock);
    let _ = std::fs::remove_file(&path);
    assert_eq!(sent, 1);
    assert_eq!(got, "READY=1\nSTATUS=serving");
}

#[test]
fn notify_ready_sends_ready_1() {
    let env = Env::new();
    let path = temp_socket_path();
    let sock = UnixDatagram::bind(&path).expect("bind a unix datagram socket");
    env.set("NOTIFY_SOCKET", path.to_str().expect("temp path is UTF-8"));
    // SAFETY: no arguments.
    let sent = unsafe { supergo_notify_ready() };
    let got = receive(&sock);
    let _ = std::fs::remove_file(&path);
    assert_eq!(sent, 1);
    assert_eq!(got, "READY=1");
}

#[test]
fn notify_sends_to_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;

    let env = Env::new();
    let name = format!("shim-c-test-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind an abstract unix datagram socket");
    env.set("NOTIFY_SOCKET", &format!("@{name}"));
    assert_eq!(notify("READY=1"), 1);
    assert_eq!(receive(&sock), "READY=1");
}

#[test]
fn notify_is_0_when_notify_socket_is_unset_or_empty() {
    let env = Env::new();
    assert_eq!(notify("READY=1"), 0);
    env.set("NOTIFY_SOCKET", "");
    assert_eq!(notify("READY=1"), 0);
}

#[test]
fn notify_rejects_bad_notify_socket() {
    let env = Env::new();
    env.set("NOTIFY_SOCKET", "relative/path");
    assert_eq!(notify("READY=1"), -EAFNOSUPPORT);
    env.set("NOTIFY_SOCKET", &format!("/{}", "x".repeat(200)));
    assert_eq!(notify("READY=1"), -EINVAL);
    env.set("NOTIFY_SOCKET", "/nonexistent/shim-c/notify.sock");
    assert_eq!(notify("READY=1"), -ENOENT);
    // SAFETY: NULL is a documented input.
    assert_eq!(unsafe { supergo_notify(std::ptr::null()) }, -EINVAL);
}

// ---- draining, in a child process (the handlers stay installed) ----

#[test]
fn drain_fd_turns_readable_on_sigterm() {
    run_child("child_drain_sigterm", &[], &[], &[]);
}

#[test]
#[ignore = "runs in a child process started by drain_fd_turns_readable_on_sigterm"]
fn child_drain_sigterm() {
    if !in_child() {
        return;
    }
    // SAFETY: no arguments; this child test is the only thread calling into the shim.
    let fd = unsafe { supergo_drain_fd() };
    assert!(fd >= 0, "supergo_drain_fd: {fd}");
    assert!(cloexec(fd), "the drain pipe is O_CLOEXEC");
    // SAFETY: as above.
    assert_eq!(
        unsafe { supergo_drain_fd() },
        fd,
        "a second call returns the same fd"
    );
    assert!(!support::readable(fd, 0));
    // SAFETY: as above.
    assert_eq!(unsafe { supergo_drain_requested() }, 0);

    // SAFETY: our handler is installed; raise runs it before returning.
    assert_eq!(unsafe { raise(SIGTERM) }, 0);
    assert!(support::readable(fd, 1000), "readable after SIGTERM");
    // SAFETY: as above.
    assert_eq!(unsafe { supergo_drain_requested() }, SIGTERM);
}

#[test]
fn drain_fd_turns_readable_on_sigint() {
    run_child("child_drain_sigint", &[], &[], &[]);
}

#[test]
#[ignore = "runs in a child process started by drain_fd_turns_readable_on_sigint"]
fn child_drain_sigint() {
    if !in_child() {
        return;
    }
    // SAFETY: no arguments; this child test is the only thread calling into the shim.
    let fd = unsafe { supergo_drain_fd() };
    assert!(fd >= 0, "supergo_drain_fd: {fd}");
    // SAFETY: our handler is installed; raise runs it before returning.
    assert_eq!(unsafe { raise(SIGINT) }, 0);
    assert!(support::readable(fd, 1000), "readable after SIGINT");
    // SAFETY: as above.
    assert_eq!(unsafe { supergo_drain_requested() }, SIGINT);
}
