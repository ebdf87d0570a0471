//! `hello`: the Rust demo child of supergo, and the reference for how a child should behave.
//!
//! It owns the HTTP contract every example child shares (DESIGN.md, "Child protocol"; the
//! same tests run against each, see `shim-c/tests/hello_c.rs` and `HELLO_BIN`): `GET /`
//! answers `pid: <pid>`, `GET /hello?name=X` answers `hello, X` (`Jack` when no name is given),
//! `GET /sleep?ms=N` answers `slept N ms` after N ms, anything else is a 404. HTTP/1.1 with
//! keep-alive and pipelining, a `Content-Length` on every answer, a thread per connection.
//!
//! Where the listeners come from, first match wins:
//! - `--listen ADDR`: binds ADDR itself (manual runs);
//! - `--fd N`: the listening socket at fd N;
//! - `LISTEN_FDS=n` (systemd socket activation, as supergo sets it): fds 3 .. 3+n-1, all
//!   served. `LISTEN_PID`, when set, must be our pid, or the fds were meant for another
//!   process (systemd's `sd_listen_fds` rule);
//! - no `LISTEN_FDS`: fd 3 when it is a listening socket (a launcher that passes fd 3 without
//!   the variables).
//!
//! Each listener is logged as `hello: listening on ADDR` (the real port; `unix:/path` for a unix
//! stream socket, which works as well as TCP).
//!
//! Environment: `NOTIFY_SOCKET` (send `READY=1` once serving; a leading `@` names an abstract
//! socket), `HELLO_START_DELAY_MS` (wait that long before serving: a slow start),
//! `HELLO_EXIT_AT_START=CODE` (exit at once with CODE: a bad deploy).
//!
//! Stopping (SIGTERM or SIGINT): stop accepting, close the listeners, finish every request in
//! flight (a slow `/sleep` included), close idle keep-alive connections, exit 0. Exit status 1
//! when there is no listener or accepting fails, 2 for a bad command line.
//!
//! A listener is shared with supergo and with the other generation (one open file
//! description), so nothing here changes the socket itself: no `shutdown`, no `O_NONBLOCK`,
//! no `SO_RCVTIMEO`; each would change `accept` for the other process too. `stop` shows how
//! the blocked acceptors are woken without that.

use std::env;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram, UnixStream};
use std::os::unix::thread::JoinHandleExt;
use std::process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::libc;
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::{
    accept4, getsockname, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
    SockaddrLike, SockaddrStorage,
};
use nix::unistd::{dup2_raw, Pid};

/// How often an idle connection looks at the stop flag: the longest an idle keep-alive
/// connection delays the exit after SIGTERM.
const IDLE_TICK: Duration = Duration::from_millis(50);
/// An idle keep-alive connection is closed after this long without a request.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);
/// A request head larger than this is refused (and the connection closed).
const MAX_HEAD: usize = 16 * 1024;
/// A request body (read and ignored) larger than this closes the connection.
const MAX_BODY: usize = 1024 * 1024;
/// More `LISTEN_FDS` than this is surely a mistake in the environment.
const MAX_LISTENERS: u32 = 64;

/// Set once a stop signal was taken; read by the acceptors and every connection.
static STOP: AtomicBool = AtomicBool::new(false);
/// Set by an acceptor that failed for good: the process drains and exits 1.
static FAILED: AtomicBool = AtomicBool::new(false);

fn main() {
    match run() {
        Ok(()) if FAILED.load(Ordering::SeqCst) => process::exit(1),
        Ok(()) => process::exit(0),
        Err(err) => {
            eprintln!("hello: {err}");
            process::exit(1);
        }
    }
}

fn run() -> Result<(), String> {
    let pid = process::id();
    if let Some(code) = env::var_os("HELLO_EXIT_AT_START") {
        let code = code.to_string_lossy();
        let code: i32 = code
            .trim()
            .parse()
            .map_err(|_| format!("HELLO_EXIT_AT_START={code:?} is not an exit code"))?;
        eprintln!("hello: pid {pid}: HELLO_EXIT_AT_START={code}: exiting at once");
        process::exit(code);
    }
    let source = parse_args();
    // Blocked before any other thread exists, so every thread inherits the mask: a stop
    // signal stays pending until the main thread takes it with sigwait, in ordinary code
    // where it may log, lock and join. It is never lost, even if it comes right now.
    stop_signals()
        .thread_block()
        .map_err(|err| format!("cannot block SIGTERM and SIGINT: {err}"))?;
    install_wake_handler()?;
    let (listeners, origin) = take_listeners(source)?;
    // Made now, not at stop time, so that retiring the listeners cannot fail then (see `stop`).
    let spare = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|err| format!("cannot create a socket: {err}"))?;
    for listener in &listeners {
        eprintln!("hello: listening on {}", listener.addr);
    }
    eprintln!("hello: pid {pid}: listeners from {origin}");

    if let Some(delay) = env_ms("HELLO_START_DELAY_MS")? {
        eprintln!("hello: pid {pid}: HELLO_START_DELAY_MS={delay}: waiting before serving");
        // Connections arriving meanwhile wait in the kernel's queue.
        if let Some(signal) = wait_stop_signal(Some(Duration::from_millis(delay)))? {
            eprintln!("hello: pid {pid}: {signal} during the start delay: exiting 0");
            return Ok(());
        }
    }

    let active = Arc::new(Active::default());
    let mut acceptors = Vec::new();
    for listener in &listeners {
        let listener = listener.clone();
        let active = Arc::clone(&active);
        let acceptor = thread::Builder::new()
            .name(format!("accept {}", listener.addr))
            .spawn(move || accept_loop(&listener, &active))
            .map_err(|err| format!("cannot start a thread: {err}"))?;
        acceptors.push(acceptor);
    }
    notify_ready();
    eprintln!("hello: pid {pid}: serving");

    let signal = wait_stop_signal(None)?.map_or("stop signal", |s| s.as_str());
    stop(&listeners, &spare, acceptors);
    eprintln!(
        "hello: pid {pid}: {signal}: listener closed, draining {} connection(s)",
        active.count()
    );
    active.wait_idle();
    let status = i32::from(FAILED.load(Ordering::SeqCst));
    eprintln!("hello: pid {pid}: drained, exiting with status {status}");
    Ok(())
}

/// Where the listeners come from (see the module docs).
enum Source {
    Listen(String),
    Fd(RawFd),
    Env,
}

/// Parses the command line; a bad one exits 2 with a usage line.
fn parse_args() -> Source {
    let usage = "usage: hello [--listen HOST:PORT | --fd N]  (default: fd 3.. from LISTEN_FDS)";
    let bad = |why: String| -> ! {
        eprintln!("hello: {why}\n{usage}");
        process::exit(2);
    };
    let mut args = env::args().skip(1);
    let mut source = Source::Env;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next() {
                Some(addr) => source = Source::Listen(addr),
                None => bad("--listen needs an address, as in --listen 127.0.0.1:4041".into()),
            },
            "--fd" => match args.next().map(|fd| (fd.parse(), fd)) {
                Some((Ok(fd), _)) => source = Source::Fd(fd),
                Some((Err(_), fd)) => bad(format!("--fd {fd}: want a file descriptor number")),
                None => bad("--fd needs a number, as in --fd 3".into()),
            },
            "-h" | "--help" => {
                println!("{usage}");
                process::exit(0);
            }
            other => bad(format!("unknown argument `{other}`")),
        }
    }
    source
}

fn env_ms(name: &str) -> Result<Option<u64>, String> {
    match env::var_os(name) {
        None => Ok(None),
        Some(value) => {
            let value = value.to_string_lossy();
            value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("{name}={value:?} is not a number of milliseconds"))
        }
    }
}

/// One listening socket, held as a raw fd: `stop` swaps another socket in under its number.
#[derive(Clone)]
struct Listener {
    fd: RawFd,
    unix: bool,
    addr: String,
}

fn take_listeners(source: Source) -> Result<(Vec<Listener>, String), String> {
    let (fds, origin) = match source {
        Source::Listen(addr) => {
            let listener =
                TcpListener::bind(&addr).map_err(|err| format!("--listen {addr}: {err}"))?;
            (vec![listener.into_raw_fd()], format!("--listen {addr}"))
        }
        Source::Fd(fd) => (vec![fd], format!("--fd {fd}")),
        Source::Env => listen_fds()?,
    };
    let listeners = fds
        .into_iter()
        .map(|fd| Listener::check(fd, &origin))
        .collect::<Result<_, _>>()?;
    Ok((listeners, origin))
}

/// `LISTEN_FDS` and `LISTEN_PID` as `sd_listen_fds` reads them; fd 3 when they are absent.
fn listen_fds() -> Result<(Vec<RawFd>, String), String> {
    let Some(count) = env::var_os("LISTEN_FDS") else {
        return Ok((vec![3], "fd 3 (no LISTEN_FDS)".into()));
    };
    let count = count.to_string_lossy();
    let n: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("no listener: LISTEN_FDS={count:?} is not a number"))?;
    if let Some(listen_pid) = env::var_os("LISTEN_PID") {
        let listen_pid = listen_pid.to_string_lossy();
        if listen_pid.trim() != process::id().to_string() {
            return Err(format!(
                "no listener: LISTEN_PID={listen_pid} is not our pid {}: the fds are meant for another process",
                process::id()
            ));
        }
    }
    if n == 0 || n > MAX_LISTENERS {
        return Err(format!(
            "no listener: LISTEN_FDS={n}: want 1 to {MAX_LISTENERS}"
        ));
    }
    let last = 3 + n as RawFd;
    Ok((
        (3..last).collect(),
        format!("LISTEN_FDS={n} (fds 3..{})", last - 1),
    ))
}

impl Listener {
    fn check(fd: RawFd, origin: &str) -> Result<Listener, String> {
        // SAFETY: only borrowed for these calls; a closed fd gives EBADF, nothing worse.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        match getsockopt(&borrowed, sockopt::AcceptConn) {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "no listener: fd {fd} ({origin}) is a socket but not listening"
                ))
            }
            Err(err) => {
                return Err(format!(
                    "no listener: fd {fd} ({origin}) is not a listening socket ({err}); \
                     pass one at fd 3 with LISTEN_FDS, or use --fd N or --listen HOST:PORT"
                ))
            }
        }
        // sd_listen_fds sets FD_CLOEXEC on what it hands over, so the socket cannot leak into
        // a program this one might run. It is a per-fd flag: other processes are unaffected.
        fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|err| format!("fd {fd}: cannot set FD_CLOEXEC: {err}"))?;
        let local: SockaddrStorage =
            getsockname(fd).map_err(|err| format!("fd {fd}: getsockname: {err}"))?;
        let unix = local.family() == Some(AddressFamily::Unix);
        let addr = if unix {
            format!("unix:{local}")
        } else {
            local.to_string()
        };
        Ok(Listener { fd, unix, addr })
    }

    fn accept(&self) -> Result<Conn, Errno> {
        let fd = accept4(self.fd, SockFlag::SOCK_CLOEXEC)?;
        // SAFETY: accept4 just returned this fd; nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(if self.unix {
            Conn::Unix(UnixStream::from(owned))
        } else {
            Conn::Tcp(TcpStream::from(owned))
        })
    }
}

/// No-op handler for SIGUSR1, which `stop` sends to each acceptor thread. Installed without
/// SA_RESTART so that it makes a blocked `accept` return EINTR (std's `accept` would retry:
/// that is why the acceptors call `accept4` themselves).
extern "C" fn wake(_signal: libc::c_int) {}

fn install_wake_handler() -> Result<(), String> {
    let action = SigAction::new(SigHandler::Handler(wake), SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler does nothing.
    unsafe { sigaction(Signal::SIGUSR1, &action) }
        .map(drop)
        .map_err(|err| format!("cannot install the SIGUSR1 handler: {err}"))
}

fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

/// Takes a pending SIGTERM or SIGINT (they are blocked in every thread), waiting at most
/// `timeout` (None: for ever). Ok(None) when the time ran out.
fn wait_stop_signal(timeout: Option<Duration>) -> Result<Option<Signal>, String> {
    let set = stop_signals();
    let Some(timeout) = timeout else {
        return set
            .wait()
            .map(Some)
            .map_err(|err| format!("sigwait: {err}"));
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: valid set and timespec; no siginfo wanted.
        let r = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
        if r > 0 {
            return Ok(Signal::try_from(r).ok());
        }
        match Errno::last() {
            Errno::EAGAIN => return Ok(None),
            // Another signal (SIGUSR1) was handled meanwhile: wait for the rest of the time.
            Errno::EINTR => continue,
            err => return Err(format!("sigtimedwait: {err}")),
        }
    }
}

/// Stops every acceptor and closes our copies of the listeners, without touching the sockets
/// themselves. For each listener, a socket that is not listening is first `dup2`ed over its fd
/// number: an acceptor about to call `accept` (it checked STOP just before) now fails at once
/// with EINVAL. Then SIGUSR1 goes to each acceptor thread: one blocked in `accept` on the old
/// socket returns EINTR. Either way it sees STOP and ends; one signal is enough, no window is
/// left. The listening sockets live on in supergo and in the next generation.
fn stop(listeners: &[Listener], spare: &OwnedFd, acceptors: Vec<JoinHandle<()>>) {
    STOP.store(true, Ordering::SeqCst);
    for listener in listeners {
        // SAFETY: listener.fd is ours; dup2 closes our copy of the listener and puts the
        // spare under the same number, atomically.
        match unsafe { dup2_raw(spare, listener.fd) } {
            // Kept open until the acceptors are joined, closed just below.
            Ok(fd) => drop(fd.into_raw_fd()),
            Err(err) => eprintln!("hello: dup2 over listener fd {}: {err}", listener.fd),
        }
    }
    for acceptor in &acceptors {
        // SAFETY: the thread is alive until joined below, so its pthread_t is valid.
        unsafe { libc::pthread_kill(acceptor.as_pthread_t(), libc::SIGUSR1) };
    }
    for acceptor in acceptors {
        if acceptor.join().is_err() {
            eprintln!("hello: an acceptor thread panicked");
        }
    }
    for listener in listeners {
        // SAFETY: the acceptors are gone; nothing uses this fd any more.
        drop(unsafe { OwnedFd::from_raw_fd(listener.fd) });
    }
}

fn accept_loop(listener: &Listener, active: &Arc<Active>) {
    while !STOP.load(Ordering::SeqCst) {
        let conn = match listener.accept() {
            Ok(conn) => conn,
            // EINTR: woken by `stop` (or another signal: the loop condition decides).
            Err(Errno::EINTR) => continue,
            // After a stop, EINVAL: the spare sits where the listener was.
            Err(_) if STOP.load(Ordering::SeqCst) => break,
            // The socket is shared with every generation, and some runtimes (Go) make it
            // non-blocking: wait until a connection is there instead of spinning. A stop's
            // SIGUSR1 interrupts the wait; the 100 ms bound covers a signal that lands just
            // before the wait begins.
            Err(Errno::EAGAIN) => {
                // SAFETY: the listener fd stays open while this acceptor runs.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(listener.fd) };
                let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
                continue;
            }
            // accept(2): errors of the new connection, not of the listener.
            Err(
                Errno::ECONNABORTED
                | Errno::EPROTO
                | Errno::EPERM
                | Errno::ENETDOWN
                | Errno::ENOPROTOOPT
                | Errno::EHOSTDOWN
                | Errno::ENONET
                | Errno::EHOSTUNREACH
                | Errno::EOPNOTSUPP
                | Errno::ENETUNREACH,
            ) => continue,
            Err(err @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => {
                // Out of fds or memory: the connection waits in the backlog. Pause rather
                // than spin on a listener that stays readable.
                eprintln!(
                    "hello: accept on {} (fd {}): {err}",
                    listener.addr, listener.fd
                );
                thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(err) => {
                eprintln!(
                    "hello: accept on {} (fd {}): {err}: stopping",
                    listener.addr, listener.fd
                );
                // Drain and exit 1: wake the main thread's sigwait with the stop signal.
                FAILED.store(true, Ordering::SeqCst);
                let _ = kill(Pid::this(), Signal::SIGTERM);
                break;
            }
        };
        let guard = active.enter();
        let spawned = thread::Builder::new().spawn(move || {
            let _guard = guard;
            serve(conn);
        });
        if let Err(err) = spawned {
            // The closure (and the connection in it) is dropped: the client sees a close.
            eprintln!("hello: cannot start a thread for a connection: {err}");
        }
    }
}

/// Connections being served; the exit waits for zero.
#[derive(Default)]
struct Active {
    count: Mutex<usize>,
    idle: Condvar,
}

struct ActiveGuard(Arc<Active>);

impl Active {
    fn enter(self: &Arc<Self>) -> ActiveGuard {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        ActiveGuard(Arc::clone(self))
    }

    fn count(&self) -> usize {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_idle(&self) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count > 0 {
            count = self.idle.wait(count).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for ActiveGuard {
    // Runs on panic too, so a failed connection never blocks the exit.
    fn drop(&mut self) {
        let mut count = self.0.count.lock().unwrap_or_else(|e| e.into_inner());
        *count -= 1;
        if *count == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// An accepted connection, TCP or unix.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(Some(timeout)),
            Conn::Unix(s) => s.set_read_timeout(Some(timeout)),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

/// Serves one connection: requests in a row (keep-alive) until the client closes, asks to
/// close, stays idle too long, or we are stopping and its current answer is sent.
fn serve(mut conn: Conn) {
    // A read timeout on the accepted socket (ours alone, unlike the listener) lets an idle
    // connection notice a stop.
    if let Err(err) = conn.set_read_timeout(IDLE_TICK) {
        eprintln!("hello: connection: cannot set a read timeout: {err}");
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut idle_since = Instant::now();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head_len) = find_head_end(&buf) {
            let request = Request::parse(&buf[..head_len]);
            // A body (GET rarely has one) is read and ignored, so the next request starts
            // at the right byte.
            let body_len = request.as_ref().map_or(0, |r| r.content_length);
            if body_len > MAX_BODY {
                return;
            }
            let started = Instant::now();
            while buf.len() < head_len + body_len {
                match conn.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    // A client that stops sending mid-body must not hold up a drain for ever.
                    Err(err) if is_timeout(&err) && started.elapsed() < KEEP_ALIVE_IDLE => {}
                    Err(_) => return,
                }
            }
            buf.drain(..head_len + body_len);
            let (status, body, keep_alive, http10) = match request {
                Ok(request) => {
                    let (status, body) = route(&request);
                    (status, body, request.keep_alive, request.http10)
                }
                Err(why) => (400, format!("bad request: {why}"), false, false),
            };
            // A draining server answers what it has and then closes, saying so.
            let keep_alive = keep_alive && !STOP.load(Ordering::SeqCst);
            let response = Response {
                status,
                body: &body,
                keep_alive,
                http10,
            };
            if response.write(&mut conn).is_err() || !keep_alive {
                return;
            }
            idle_since = Instant::now();
            continue;
        }
        if buf.len() > MAX_HEAD {
            let response = Response {
                status: 431,
                body: "request head too large",
                keep_alive: false,
                http10: false,
            };
            let _ = response.write(&mut conn);
            return;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if is_timeout(&err) => {
                // Idle between requests: the only moment a connection may be dropped without
                // losing a request. A partly received request is finished even when stopping,
                // unless the client stalls past KEEP_ALIVE_IDLE.
                if (buf.is_empty() && STOP.load(Ordering::SeqCst))
                    || idle_since.elapsed() > KEEP_ALIVE_IDLE
                {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

struct Request {
    method: String,
    path: String,
    query: String,
    content_length: usize,
    keep_alive: bool,
    http10: bool,
}

impl Request {
    fn parse(head: &[u8]) -> Result<Request, String> {
        let head = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default();
        let mut parts = line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("bad request line {line:?}"));
        };
        let http10 = version == "HTTP/1.0";
        if !http10 && version != "HTTP/1.1" {
            return Err(format!("unsupported version {version:?}"));
        }
        // HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 closes it.
        let mut keep_alive = !http10;
        let mut content_length = 0;
        for header in lines.filter(|l| !l.is_empty()) {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| format!("bad header line {header:?}"))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value
                    .parse()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?;
            } else if name.eq_ignore_ascii_case("connection") {
                if value.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err("chunked request bodies are not supported".into());
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Ok(Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            content_length,
            keep_alive,
            http10,
        })
    }

    fn param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| percent_decode(value))
    }
}

fn route(request: &Request) -> (u16, String) {
    if request.method != "GET" {
        return (
            404,
            format!("no route for {} {}", request.method, request.path),
        );
    }
    match request.path.as_str() {
        "/" => (200, format!("pid: {}", process::id())),
        "/hello" => {
            let name = request
                .param("name")
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "Jack".into());
            (200, format!("hello, {name}"))
        }
        "/sleep" => {
            let ms = request.param("ms").unwrap_or_default();
            let Ok(ms) = ms.parse::<u64>() else {
                return (400, format!("/sleep needs ms=<milliseconds>, got {ms:?}"));
            };
            // Logged so a test (or a person) can see the request is in flight before it
            // sends a stop signal.
            eprintln!("hello: pid {}: sleeping {ms} ms", process::id());
            thread::sleep(Duration::from_millis(ms));
            (200, format!("slept {ms} ms"))
        }
        _ => (404, format!("no route for GET {}", request.path)),
    }
}

/// One answer. The `Connection` header is sent only where it changes the default: `close`
/// when we close, `keep-alive` to an HTTP/1.0 client that asked for it.
struct Response<'a> {
    status: u16,
    body: &'a str,
    keep_alive: bool,
    http10: bool,
}

impl Response<'_> {
    fn write(&self, conn: &mut Conn) -> io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let connection = match (self.keep_alive, self.http10) {
            (false, _) => "Connection: close\r\n",
            (true, true) => "Connection: keep-alive\r\n",
            (true, false) => "",
        };
        let response = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{connection}\r\n{}",
            self.status,
            self.body.len(),
            self.body
        );
        conn.write_all(response.as_bytes())?;
        conn.flush()
    }
}

/// `%XX` and `+` decoding of a query value; a malformed escape is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => std::str::from_utf8(&[*hi, *lo])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `READY=1` to `NOTIFY_SOCKET` when it is set. A failure is logged, not fatal: the
/// supervisor then sees no readiness and handles that (a failed restart keeps the old
/// process), which is the honest outcome.
fn notify_ready() {
    let Some(path) = env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| -> io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            let addr = UnixSocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(b"READY=1", &addr)?;
        } else {
            sock.send_to(b"READY=1", &path)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => eprintln!(
            "hello: pid {}: sent READY=1 to {}",
            process::id(),
            path.to_string_lossy()
        ),
        Err(err) => eprintln!(
            "hello: pid {}: cannot send READY=1 to NOTIFY_SOCKET={}: {err}",
            process::id(),
            path.to_string_lossy()
        ),
    }
}
