//! `probe`: the test child. It reports exactly what it was given, then behaves as told.
//!
//! At start, before it changes anything about itself, it writes a JSON report to the file named
//! by `PROBE_REPORT` (to `PATH.tmp`, then renamed, so a reader never sees half a file). In that
//! path `{pid}` is replaced by its pid and `{gen}` by `SUPERGO_GENERATION` (`0` when unset), so
//! one config can give every process its own report. The report holds:
//! `pid`, `ppid`, `pgid`, `sid`, `args`, `fds` (sorted numbers from /proc/self/fd), `fd_info`
//! (per fd: `target` of the /proc link, and for sockets `socket`, `listening`, `type`, `addr`),
//! `env` (every variable), `sig_blk`, `sig_ign`, `sig_cgt` (hex masks from /proc/self/status),
//! `umask` (octal string), `cwd`, `uid`, `gid`, `euid`, `egid`, `groups`,
//! `rlimit_nofile` (`{soft, hard}`), and `grandchild` in `spawn-grandchild` mode.
//!
//! It then prints `probe: started pid N` to stdout and one line to stderr, so log-file tests
//! have something to read.
//!
//! Usage: `probe [spawn-grandchild] [hold-pid PATH] [notify [barrier]] [MODE]`, MODE one of:
//! - `serve` (default): accept on fd 3, answer each connection `pid: <pid>\n` (HTTP/1.0 style,
//!   then close); on SIGTERM or SIGINT close the listener, finish the connection in hand, exit 0;
//! - `exit CODE`: exit at once with CODE;
//! - `crash-after MS`: exit 3 after MS milliseconds;
//! - `ignore-term`: ignore SIGTERM and sleep forever (for SIGKILL-after-timeout tests);
//! - `sleep`: sleep forever with default signal dispositions.
//!
//! And before the mode: `spawn-grandchild` forks a grandchild (same process group) that sleeps
//! forever; `notify` sends `READY=1` to `NOTIFY_SOCKET` after `PROBE_READY_DELAY_MS` (default 0).
//! `barrier` (after `notify`) then waits as `sd_notify_barrier` does: it sends `BARRIER=1` with
//! the write end of a pipe and waits (30 s at most) until the receiver has closed it, and says
//! on stderr `barrier released` or why not. `hold-pid PATH` waits until the file PATH exists,
//! reads a pid N from it, creates a child with exactly that pid (`clone3` with `set_tid`; needs
//! CAP_SYS_ADMIN) that sleeps in our process group, and writes `held N` or `error: …` to
//! `PATH.done`: a test can make a pid that belonged to another process reappear in this group.
//!
//! `PROBE_NONDUMPABLE=1` makes it non-dumpable (`PR_SET_DUMPABLE` 0) before the mode starts.
//!
//! Why `#![no_main]`: Rust's runtime sets SIGPIPE to "ignore" before `main`, so a normal Rust
//! program cannot tell whether its parent left SIGPIPE ignored, which is exactly what supergo
//! must not do. With our own C `main` the runtime's start-up is skipped and `SigIgn` is what
//! the parent gave. (std still works: on glibc it gets argv from `.init_array`.)

// `cargo test` builds every bin with libtest's own `main` too; that build has no tests and
// must not carry ours.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::io::IoSlice;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram};
use std::process;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{getrlimit, Resource};
use nix::sys::signal::{sigaction, signal, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::{
    accept4, getsockname, getsockopt, sendmsg, socket, sockopt, AddressFamily, ControlMessage,
    MsgFlags, SockFlag, SockType, SockaddrLike, SockaddrStorage, UnixAddr,
};
use nix::unistd::{
    fork, getegid, geteuid, getgid, getgroups, getpgrp, getpid, getppid, getsid, getuid, pause,
    pipe2, ForkResult,
};
use serde_json::{json, Map, Value};

/// The fd the listener is expected at (systemd's SD_LISTEN_FDS_START).
const LISTEN_FD: RawFd = 3;

static STOP: AtomicBool = AtomicBool::new(false);
static LISTENER_FD: AtomicI32 = AtomicI32::new(-1);
static SPARE_FD: AtomicI32 = AtomicI32::new(-1);

enum Mode {
    Serve,
    Exit(i32),
    CrashAfter(u64),
    IgnoreTerm,
    Sleep,
}

struct Args {
    spawn_grandchild: bool,
    hold_pid: Option<String>,
    notify: bool,
    barrier: bool,
    mode: Mode,
}

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // Everything is read before anything about the process changes.
    let report = observe();
    let pid = process::id();
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("probe: pid {pid}: {err}");
            return 2;
        }
    };
    // From here on a closed pipe must be an error, not a silent death by SIGPIPE.
    // SAFETY: setting a disposition to SIG_IGN installs no handler code.
    if let Err(err) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) } {
        eprintln!("probe: pid {pid}: cannot ignore SIGPIPE: {err}");
    }
    // `PROBE_NONDUMPABLE=1`: like a setuid program, no ptrace access to it without
    // CAP_SYS_PTRACE (its /proc/PID/environ and fds unreadable, pidfd_getfd refused).
    if env::var_os("PROBE_NONDUMPABLE").is_some_and(|v| v == "1") {
        if let Err(err) = nix::sys::prctl::set_dumpable(false) {
            eprintln!("probe: pid {pid}: PR_SET_DUMPABLE 0: {err}");
            return 2;
        }
    }
    if matches!(args.mode, Mode::Serve) {
        // Before the report: a test that sees the report may send SIGTERM at once.
        if let Err(err) = install_stop_handlers() {
            eprintln!("probe: pid {pid}: {err}");
            return 2;
        }
    }
    let mut report = report;
    if args.spawn_grandchild {
        match spawn_grandchild() {
            Ok(grandchild) => {
                report.insert("grandchild".into(), json!(grandchild));
            }
            Err(err) => {
                eprintln!("probe: pid {pid}: cannot fork a grandchild: {err}");
                return 2;
            }
        }
    }

    println!("probe: started pid {pid}");
    eprintln!(
        "probe: pid {pid} started: args [{}], LISTEN_FDS={}, SUPERGO_GENERATION={}",
        env::args().skip(1).collect::<Vec<_>>().join(" "),
        env::var("LISTEN_FDS").unwrap_or_else(|_| "-".into()),
        env::var("SUPERGO_GENERATION").unwrap_or_else(|_| "-".into()),
    );
    if let Err(err) = write_report(Value::Object(report)) {
        eprintln!("probe: pid {pid}: {err}");
        return 2;
    }

    if let Some(path) = &args.hold_pid {
        hold_pid(path);
    }
    if args.notify {
        let sent = notify().and_then(|()| if args.barrier { barrier() } else { Ok(()) });
        if let Err(err) = sent {
            eprintln!("probe: pid {pid}: {err}");
        }
    }
    match args.mode {
        Mode::Serve => match serve() {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("probe: pid {pid}: {err}");
                2
            }
        },
        Mode::Exit(code) => {
            eprintln!("probe: pid {pid}: exiting with {code}");
            code
        }
        Mode::CrashAfter(ms) => {
            thread::sleep(Duration::from_millis(ms));
            eprintln!("probe: pid {pid}: crashing (exit 3) after {ms} ms");
            3
        }
        Mode::IgnoreTerm => {
            // SAFETY: SIG_IGN installs no handler code.
            if let Err(err) = unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) } {
                eprintln!("probe: pid {pid}: cannot ignore SIGTERM: {err}");
                return 2;
            }
            eprintln!("probe: pid {pid}: ignoring SIGTERM, sleeping forever");
            sleep_forever()
        }
        Mode::Sleep => sleep_forever(),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        spawn_grandchild: false,
        hold_pid: None,
        notify: false,
        barrier: false,
        mode: Mode::Serve,
    };
    let mut words = env::args().skip(1);
    let mut mode_seen = false;
    while let Some(word) = words.next() {
        if mode_seen {
            return Err(format!("unexpected `{word}` after the mode"));
        }
        let mut number = |what: &str| -> Result<u64, String> {
            let value = words
                .next()
                .ok_or_else(|| format!("`{word}` needs {what}"))?;
            value
                .parse()
                .map_err(|_| format!("`{word} {value}`: {value} is not {what}"))
        };
        match word.as_str() {
            "spawn-grandchild" => args.spawn_grandchild = true,
            "notify" => args.notify = true,
            "barrier" if args.notify => args.barrier = true,
            "hold-pid" => {
                let path = words.next().ok_or("`hold-pid` needs a file path")?;
                args.hold_pid = Some(path);
            }
            "serve" => mode_seen = true,
            "exit" => {
                let code = number("an exit code")?;
                let code = i32::try_from(code).map_err(|_| format!("exit {code}: too large"))?;
                args.mode = Mode::Exit(code);
                mode_seen = true;
            }
            "crash-after" => {
                args.mode = Mode::CrashAfter(number("milliseconds")?);
                mode_seen = true;
            }
            "ignore-term" => {
                args.mode = Mode::IgnoreTerm;
                mode_seen = true;
            }
            "sleep" => {
                args.mode = Mode::Sleep;
                mode_seen = true;
            }
            other => {
                return Err(format!(
                    "unknown word `{other}`: usage: probe [spawn-grandchild] [hold-pid PATH] \
                     [notify [barrier]] [serve | exit CODE | crash-after MS | ignore-term | sleep]"
                ))
            }
        }
    }
    Ok(args)
}

/// Everything the report holds, read from the kernel as the parent left it.
fn observe() -> Map<String, Value> {
    let mut report = Map::new();
    // Fds first: nothing else has been opened yet.
    let fds = open_fds();
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> Value {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map_or(Value::Null, |value| json!(value.trim()))
    };
    let fd_info: Map<String, Value> = fds
        .iter()
        .map(|&fd| (fd.to_string(), describe_fd(fd)))
        .collect();
    report.insert("pid".into(), json!(getpid().as_raw()));
    report.insert("ppid".into(), json!(getppid().as_raw()));
    report.insert("pgid".into(), json!(getpgrp().as_raw()));
    report.insert(
        "sid".into(),
        getsid(None).map_or(Value::Null, |sid| json!(sid.as_raw())),
    );
    report.insert("args".into(), json!(env::args().collect::<Vec<_>>()));
    report.insert("fds".into(), json!(fds));
    report.insert("fd_info".into(), Value::Object(fd_info));
    let vars: BTreeMap<String, String> = env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    report.insert("env".into(), json!(vars));
    report.insert("sig_blk".into(), field("SigBlk"));
    report.insert("sig_ign".into(), field("SigIgn"));
    report.insert("sig_cgt".into(), field("SigCgt"));
    // /proc's Umask line (Linux 4.7+) reads the mask without the set-and-restore dance of
    // umask(2).
    report.insert("umask".into(), field("Umask"));
    report.insert(
        "cwd".into(),
        env::current_dir().map_or(Value::Null, |cwd| json!(cwd.to_string_lossy())),
    );
    report.insert("uid".into(), json!(getuid().as_raw()));
    report.insert("gid".into(), json!(getgid().as_raw()));
    report.insert("euid".into(), json!(geteuid().as_raw()));
    report.insert("egid".into(), json!(getegid().as_raw()));
    report.insert(
        "groups".into(),
        getgroups().map_or(Value::Null, |groups| {
            json!(groups.iter().map(|g| g.as_raw()).collect::<Vec<_>>())
        }),
    );
    report.insert(
        "rlimit_nofile".into(),
        getrlimit(Resource::RLIMIT_NOFILE).map_or(
            Value::Null,
            |(soft, hard)| json!({"soft": soft, "hard": hard}),
        ),
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    report.insert("time".into(), json!(now.as_secs_f64()));
    report
}

/// The open fds, sorted. Listing /proc/self/fd opens one more fd; it is closed again when the
/// listing is dropped, so an fd that no longer answers F_GETFD afterwards was that one.
fn open_fds() -> Vec<RawFd> {
    let mut listed: Vec<RawFd> = match fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return Vec::new(),
    };
    listed.retain(|&fd| {
        // SAFETY: borrowed only for this call; F_GETFD on a closed fd is EBADF, not UB.
        fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD).is_ok()
    });
    listed.sort_unstable();
    listed
}

fn describe_fd(fd: RawFd) -> Value {
    let target = fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default();
    let socket = target.starts_with("socket:");
    let mut info = json!({ "target": target, "socket": socket });
    if socket {
        // SAFETY: fd is open (just listed); borrowed for these calls only.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        info["listening"] = json!(getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false));
        info["type"] = json!(match getsockopt(&borrowed, sockopt::SockType) {
            Ok(SockType::Stream) => "stream",
            Ok(SockType::Datagram) => "datagram",
            Ok(SockType::SeqPacket) => "seqpacket",
            _ => "other",
        });
        info["addr"] = match getsockname::<SockaddrStorage>(fd) {
            Ok(addr) if addr.family() == Some(AddressFamily::Unix) => json!(format!("unix:{addr}")),
            Ok(addr) => json!(addr.to_string()),
            Err(_) => Value::Null,
        };
    }
    info
}

/// Writes the report where `PROBE_REPORT` says, atomically (tmp file + rename).
fn write_report(report: Value) -> Result<(), String> {
    let Ok(path) = env::var("PROBE_REPORT") else {
        return Ok(());
    };
    let generation = env::var("SUPERGO_GENERATION").unwrap_or_else(|_| "0".into());
    let path = path
        .replace("{pid}", &process::id().to_string())
        .replace("{gen}", &generation);
    let tmp = format!("{path}.tmp");
    let text = serde_json::to_string_pretty(&report)
        .map_err(|err| format!("cannot encode the report: {err}"))?;
    fs::write(&tmp, text).map_err(|err| format!("cannot write the report {tmp}: {err}"))?;
    fs::rename(&tmp, &path).map_err(|err| format!("cannot rename {tmp} to {path}: {err}"))
}

/// Forks a grandchild in our process group that sleeps until killed. It closes the fds above
/// 2 so that, should it outlive us, it cannot keep a listener open and hide a different bug.
fn spawn_grandchild() -> Result<i32, Errno> {
    // SAFETY: single-threaded at this point; the child calls only async-signal-safe functions
    // (close_range, pause, _exit) and never returns into Rust code.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child.as_raw()),
        ForkResult::Child => {
            // SAFETY: raw syscalls, no allocation, no return.
            unsafe {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                loop {
                    libc::pause();
                }
            }
        }
    }
}

/// Sends `READY=1` to `NOTIFY_SOCKET` after `PROBE_READY_DELAY_MS`.
fn notify() -> Result<(), String> {
    let delay = match env::var("PROBE_READY_DELAY_MS") {
        Ok(ms) => ms
            .trim()
            .parse()
            .map_err(|_| format!("PROBE_READY_DELAY_MS={ms:?} is not a number"))?,
        Err(_) => 0,
    };
    let path = env::var_os("NOTIFY_SOCKET").ok_or("notify: NOTIFY_SOCKET is not set")?;
    // In short steps, so a stop during the delay is noticed (serve mode exits 0 then).
    let deadline = Instant::now() + Duration::from_millis(delay);
    while Instant::now() < deadline && !STOP.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(5).min(deadline - Instant::now()));
    }
    if STOP.load(Ordering::SeqCst) {
        return Ok(());
    }
    let sent = (|| -> io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        if let Some(name) = path.as_bytes().strip_prefix(b"@") {
            sock.send_to_addr(b"READY=1", &UnixSocketAddr::from_abstract_name(name)?)?;
        } else {
            sock.send_to(b"READY=1", &path)?;
        }
        Ok(())
    })();
    sent.map_err(|err| format!("cannot send READY=1 to {}: {err}", path.to_string_lossy()))?;
    eprintln!(
        "probe: pid {}: sent READY=1 after {delay} ms",
        process::id()
    );
    Ok(())
}

/// `sd_notify_barrier`: sends `BARRIER=1` with the write end of a pipe, then waits until the
/// receiver has closed it (EOF on the read end), 30 s at most.
fn barrier() -> Result<(), String> {
    let pid = process::id();
    let path = env::var_os("NOTIFY_SOCKET").ok_or("barrier: NOTIFY_SOCKET is not set")?;
    let (read_end, write_end) =
        pipe2(OFlag::O_CLOEXEC).map_err(|err| format!("barrier: pipe: {err}"))?;
    let addr = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => UnixAddr::new_abstract(name),
        None => UnixAddr::new(path.as_bytes()),
    }
    .map_err(|err| format!("barrier: NOTIFY_SOCKET {path:?}: {err}"))?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|err| format!("barrier: socket: {err}"))?;
    sendmsg(
        sock.as_raw_fd(),
        &[IoSlice::new(b"BARRIER=1")],
        &[ControlMessage::ScmRights(&[write_end.as_raw_fd()])],
        MsgFlags::empty(),
        Some(&addr),
    )
    .map_err(|err| format!("barrier: cannot send BARRIER=1: {err}"))?;
    // Only the copy in flight (then the receiver's) may keep the pipe open.
    drop(write_end);
    eprintln!("probe: pid {pid}: sent BARRIER=1, waiting until it is released");
    let started = Instant::now();
    let mut fds = [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::from(30_000u16)) {
            Ok(0) => return Err("barrier: not released within 30 s".into()),
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(format!("barrier: poll: {err}")),
        }
    }
    eprintln!(
        "probe: pid {pid}: barrier released after {} ms",
        started.elapsed().as_millis()
    );
    Ok(())
}

/// The start of `struct clone_args` up to `set_tid_size` (CLONE_ARGS_SIZE_VER1).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
}

/// `hold-pid PATH`: see the module docs. The outcome goes to `PATH.done`.
fn hold_pid(path: &str) {
    let pid = process::id();
    let outcome = (|| -> Result<i32, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let text = loop {
            match fs::read_to_string(path) {
                Ok(text) => break text,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Err(err) => return Err(format!("{path} did not appear within 60 s: {err}")),
            }
        };
        let wanted: libc::pid_t = text
            .trim()
            .parse()
            .map_err(|_| format!("{path} holds {text:?}, not a pid"))?;
        let tids = [wanted];
        let args = CloneArgs {
            exit_signal: libc::SIGCHLD as u64,
            set_tid: tids.as_ptr() as u64,
            set_tid_size: 1,
            ..CloneArgs::default()
        };
        // clone3 is the only way to ask for a pid; nix has no wrapper. Without CLONE_VM it
        // forks: the child gets a copy of this (single-threaded) process.
        // SAFETY: args and tids outlive the call; the child only pauses, never returns.
        let child = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match child {
            0 => loop {
                // SAFETY: pause is async-signal-safe.
                unsafe { libc::pause() };
            },
            n if n < 0 => Err(format!("clone3 with pid {wanted}: {}", Errno::last())),
            n => Ok(n as i32),
        }
    })();
    let line = match &outcome {
        Ok(held) => format!("held {held}\n"),
        Err(err) => format!("error: {err}\n"),
    };
    eprintln!("probe: pid {pid}: hold-pid: {}", line.trim_end());
    let done = format!("{path}.done");
    let tmp = format!("{done}.tmp");
    if let Err(err) = fs::write(&tmp, line).and_then(|()| fs::rename(&tmp, &done)) {
        eprintln!("probe: pid {pid}: hold-pid: cannot write {done}: {err}");
    }
}

/// Stop handler for serve mode. Without SA_RESTART a blocked `accept` fails with EINTR; and
/// the spare socket `dup2`ed over the listener's fd makes an `accept` about to start fail with
/// EINVAL, so a signal between the STOP check and the call cannot be missed. Nothing here
/// touches the shared listening socket itself (no shutdown, no O_NONBLOCK): the next
/// generation keeps accepting on it. Async-signal-safe only: atomics and dup2.
extern "C" fn stop_handler(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    let (listener, spare) = (
        LISTENER_FD.load(Ordering::SeqCst),
        SPARE_FD.load(Ordering::SeqCst),
    );
    if listener >= 0 && spare >= 0 {
        // SAFETY: dup2 is async-signal-safe; both fds stay open until `serve` returns.
        unsafe { libc::dup2(spare, listener) };
    }
}

fn install_stop_handlers() -> Result<(), String> {
    let action = SigAction::new(
        SigHandler::Handler(stop_handler),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler touches atomics and calls dup2 only.
        unsafe { sigaction(sig, &action) }.map_err(|err| format!("cannot catch {sig}: {err}"))?;
    }
    Ok(())
}

/// Accepts on fd 3 and answers `pid: <pid>` to each connection, one at a time.
fn serve() -> Result<(), String> {
    let pid = process::id();
    // SAFETY: borrowed for this check only.
    let borrowed = unsafe { BorrowedFd::borrow_raw(LISTEN_FD) };
    match getsockopt(&borrowed, sockopt::AcceptConn) {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "serve: fd {LISTEN_FD} is a socket but not listening"
            ))
        }
        Err(err) => {
            return Err(format!(
                "serve: fd {LISTEN_FD} is not a listening socket: {err}"
            ))
        }
    }
    let spare = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|err| format!("serve: cannot create a socket: {err}"))?;
    SPARE_FD.store(spare.into_raw_fd(), Ordering::SeqCst);
    LISTENER_FD.store(LISTEN_FD, Ordering::SeqCst);
    let body = format!("pid: {pid}\n");
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    while !STOP.load(Ordering::SeqCst) {
        match accept4(LISTEN_FD, SockFlag::SOCK_CLOEXEC) {
            Ok(fd) => {
                // SAFETY: accept4 just returned this fd.
                let conn = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
                answer(conn, response.as_bytes());
            }
            Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
            Err(_) if STOP.load(Ordering::SeqCst) => break,
            Err(err) => return Err(format!("serve: accept on fd {LISTEN_FD}: {err}")),
        }
    }
    for fd in [LISTEN_FD, SPARE_FD.swap(-1, Ordering::SeqCst)] {
        // SAFETY: our fds, unused from here on.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    eprintln!("probe: pid {pid}: stop signal: listener closed, exiting 0");
    Ok(())
}

/// Reads the request head (so that closing does not reset the connection over unread bytes),
/// then answers and closes. Works for unix stream sockets too: only read/write are used.
fn answer(mut conn: TcpStream, response: &[u8]) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            // A stop signal during the read: finish this connection anyway.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
    let _ = conn.write_all(response);
}

fn sleep_forever() -> ! {
    loop {
        pause();
    }
}
