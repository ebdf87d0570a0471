//! The shared test harness: the real `supergo` daemon in a fresh directory per test, real
//! children (`probe`, the `hello` example, `hello-c`), real sockets, and nothing left running
//! afterwards.
//!
//! What it owns:
//! - finding the binaries: `cargo build --workspace --bins --examples` puts them in the target
//!   dir this test executable runs from (`target/debug/deps/integration-…` → `target/debug`);
//!   `probe` comes from `CARGO_BIN_EXE_probe`;
//! - [`Supergo`]: one daemon with its own temp dir, config, control port and captured
//!   output; its `Drop` kills the daemon's process group, every process descended from it and
//!   every pid the test registered (reports and status answers register theirs), even when
//!   the test panics;
//! - [`poll_until`]: the only way a test waits. It polls every 10 ms and, on timeout, panics
//!   with what it waited for and a dump of the test directory (config, supergo's log, the
//!   children's reports and logs), as ripgrep's `tests/util.rs` dumps a failed command;
//! - a minimal HTTP/1.1 client over `TcpStream` ([`http_get`], [`http_request`]) and a load
//!   generator for restart tests ([`Load`]).
//!
//! Nothing here sleeps to synchronise: every wait is a poll on a condition with a deadline.

// Tests in several files share this module and none uses every helper.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgrp, Pid};
use serde_json::Value;

/// The default deadline for things that should happen "at once" (a state change, a report).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How often `poll_until` looks.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// How much of each file a failure dump shows (the end of it).
const DUMP_TAIL: usize = 16 * 1024;

// ---------------------------------------------------------------------------------------------
// Binaries

/// The cargo target profile dir holding the binaries (`target/debug`), found from this test
/// executable (`target/debug/deps/integration-…`), so it follows `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test executable");
    let deps = exe.parent().expect("the test executable's directory");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("the parent of deps/")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// A binary of the workspace, by its path under the target dir; panics with the command to
/// run when it has not been built.
pub fn built(relative: &str) -> PathBuf {
    let path = target_dir().join(relative);
    assert!(
        path.is_file(),
        "{} does not exist: build the binaries first with \
         `cargo build --workspace --bins --examples` (same CARGO_TARGET_DIR as the tests)",
        path.display()
    );
    path
}

pub fn supergo_bin() -> PathBuf {
    built("supergo")
}

pub fn supergoctl_bin() -> PathBuf {
    built("supergoctl")
}

/// The Rust demo child, `supergo/examples/hello.rs`.
pub fn hello_bin() -> PathBuf {
    built("examples/hello")
}

pub fn hello_c_bin() -> PathBuf {
    built("hello-c")
}

/// The test child (`tests/bin/probe.rs`), built by cargo for this test target.
pub fn probe_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_probe"))
}

// ---------------------------------------------------------------------------------------------
// Test directories and failure dumps

thread_local! {
    /// The directory of the test running on this thread: what a failure dumps.
    static CURRENT_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Creates a fresh, empty directory for one test: unique by test name, our pid and a counter,
/// so parallel tests and parallel runs never share one. It becomes this thread's dump
/// directory. Kept when the test fails; `Supergo` removes its own when the test passes.
pub fn test_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    // Short enough that a unix socket path inside stays under 108 bytes.
    let short: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let dir = std::env::temp_dir()
        .join("supergo-tests")
        .join(format!("{short}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)
        .unwrap_or_else(|err| panic!("cannot create the test dir {}: {err}", dir.display()));
    CURRENT_DIR.with(|current| *current.borrow_mut() = Some(dir.clone()));
    dir
}

/// Everything a failing test should show: each file of this thread's test directory (the
/// config first, then supergo's log, then the rest: reports, children's logs), the end of
/// each if long.
pub fn dump() -> String {
    match CURRENT_DIR.with(|current| current.borrow().clone()) {
        Some(dir) => dump_dir(&dir),
        None => "(no test directory on this thread)".into(),
    }
}

fn dump_dir(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = Vec::new();
    collect_files(dir, &mut files);
    let rank = |p: &PathBuf| match p.file_name().and_then(|n| n.to_str()) {
        Some("supergo.toml") => 0,
        Some("supergo.err") => 1,
        Some("supergo.out") => 2,
        _ => 3,
    };
    files.sort_by_key(|p| (rank(p), p.clone()));
    let mut out = format!("\n========== test dir {} ==========\n", dir.display());
    for file in files {
        let name = file
            .strip_prefix(dir)
            .unwrap_or(&file)
            .display()
            .to_string();
        match fs::read(&file) {
            Ok(bytes) => {
                let skipped = bytes.len().saturating_sub(DUMP_TAIL);
                let text = String::from_utf8_lossy(&bytes[skipped..]);
                let note = if skipped > 0 {
                    format!(" (last {DUMP_TAIL} of {} bytes)", bytes.len())
                } else {
                    String::new()
                };
                out.push_str(&format!("---------- {name}{note} ----------\n{text}"));
                if !text.ends_with('\n') {
                    out.push('\n');
                }
            }
            Err(err) => out.push_str(&format!("---------- {name}: unreadable: {err}\n")),
        }
    }
    out.push_str("==========\n");
    out
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&path, files),
            Ok(t) if t.is_file() => files.push(path),
            _ => {} // sockets, fifos: nothing to show
        }
    }
}

/// Panics with `message` and the dump of this thread's test directory.
pub fn fail(message: impl fmt::Display) -> ! {
    panic!("{message}{}", dump())
}

// ---------------------------------------------------------------------------------------------
// Polling

/// Calls `f` every 10 ms until it returns `Some`, for at most `timeout`; `None` on timeout.
pub fn try_poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL_EVERY);
    }
}

/// Calls `f` every 10 ms until it returns `Some`; after `timeout`, panics with "timed out
/// after …: waiting for `what`" and the dump of the test directory.
pub fn poll_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    try_poll_until(timeout, f)
        .unwrap_or_else(|| fail(format!("timed out after {timeout:?} waiting for: {what}")))
}

// ---------------------------------------------------------------------------------------------
// Ports

/// A TCP port that nothing listens on now, for a listener the test will configure.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`) rather than from a
/// `bind(0)`: an ephemeral port, once dropped, can be handed to any client socket (the load
/// generator opens thousands) before supergo binds it, and that bind then fails. Ports are
/// handed out in turn from a per-process start, and each is checked by binding it on all
/// interfaces (which also fails when it is taken on 127.0.0.1).
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_low.max(10_000 + 1_000));
    let span = high - low;
    let start = (std::process::id().wrapping_mul(7919)) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (low + (start + n) % span) as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    // Every port below the ephemeral range is taken: fall back to the kernel's choice.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port from bind(127.0.0.1:0)")
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// One HTTP answer.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on a new connection with a 10 s deadline: `(status, body)`, or what went wrong
/// ("connect 127.0.0.1:4041: Connection refused").
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    http_request(addr, "GET", path, &[], TIMEOUT).map(|r| (r.status, r.body))
}

/// One request on a new connection (`Connection: close`), all of it within `timeout`.
/// Reads a body by `Content-Length`, chunked, or to EOF.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let deadline = Instant::now() + timeout;
    let target: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|err| format!("resolve {addr}: {err}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|err| format!("connect {addr}: {err}"))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" && method != "HEAD" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|err| format!("set a write timeout: {err}"))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|err| format!("send {method} {path} to {addr}: {err}"))?;
    read_response(&mut stream, deadline).map_err(|err| format!("{method} {path} on {addr}: {err}"))
}

fn read_response(stream: &mut TcpStream, deadline: Instant) -> Result<HttpResponse, String> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if read_more(stream, &mut buf, deadline)? == 0 {
            return Err(if buf.is_empty() {
                "connection closed before any answer".into()
            } else {
                format!(
                    "connection closed inside the answer's head: {:?}",
                    String::from_utf8_lossy(&buf)
                )
            });
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    let mut body = buf.split_off(head_end);
    let chunked = response
        .header("Transfer-Encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length: Option<usize> = response
        .header("Content-Length")
        .map(|v| v.parse().map_err(|_| format!("bad Content-Length {v:?}")))
        .transpose()?;
    if chunked {
        loop {
            if let Some(decoded) = decode_chunked(&body)? {
                body = decoded;
                break;
            }
            if read_more(stream, &mut body, deadline)? == 0 {
                return Err("connection closed inside a chunked body".into());
            }
        }
    } else if let Some(length) = length {
        while body.len() < length {
            if read_more(stream, &mut body, deadline)? == 0 {
                return Err(format!(
                    "connection closed after {} of {length} body bytes",
                    body.len()
                ));
            }
        }
        body.truncate(length);
    } else {
        while read_more(stream, &mut body, deadline)? > 0 {}
    }
    response.body = String::from_utf8_lossy(&body).into_owned();
    Ok(response)
}

/// Reads what is there (0 at EOF), never past `deadline`.
fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("no complete answer before the deadline".into());
    }
    stream
        .set_read_timeout(Some(left))
        .map_err(|err| format!("set a read timeout: {err}"))?;
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err("no complete answer before the deadline".into())
        }
        Err(err) => Err(format!("read: {err}")),
    }
}

/// The decoded body when `raw` holds a whole chunked body; `None` when more is needed.
fn decode_chunked(raw: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_len) = raw[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&raw[at..at + line_len]);
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        at += line_len + 2;
        if size == 0 {
            return Ok(Some(out)); // trailers, if any, are not needed
        }
        if raw.len() < at + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&raw[at..at + size]);
        at += size + 2;
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Whether `pid` is a live process: it exists and is not a zombie (a zombie has exited; only
/// its parent has not reaped it yet).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    proc_stat(pid).is_some_and(|stat| stat.state != 'Z' && stat.state != 'X')
}

/// Waits until `pid` is gone (or a zombie); panics with a dump after `timeout`.
pub fn wait_pid_gone(pid: i32, timeout: Duration) {
    poll_until(timeout, &format!("pid {pid} to exit"), || {
        (!pid_alive(pid)).then_some(())
    });
}

/// The fields of /proc/PID/stat the harness uses.
#[derive(Clone, Copy, Debug)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// Clock ticks after boot: with the pid, it names one process even after pid reuse.
    pub start_time: u64,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3 (state): field N is fields[N - 3].
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        sid: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

fn all_processes() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Every live process descended from `root` (not `root` itself).
pub fn descendants(root: i32) -> Vec<ProcStat> {
    let all = all_processes();
    let mut found: Vec<ProcStat> = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for p in all.iter().filter(|p| p.ppid == parent) {
            if !found.iter().any(|f| f.pid == p.pid) {
                found.push(*p);
                parents.push(p.pid);
            }
        }
    }
    found
}

/// Reads the JSON report a `probe` writes (waits until the file exists; the probe renames a
/// complete file into place, so what exists is whole).
pub fn read_report(path: impl AsRef<Path>) -> Value {
    let path = path.as_ref();
    let text = poll_until(
        TIMEOUT,
        &format!("the probe report {}", path.display()),
        || fs::read_to_string(path).ok(),
    );
    serde_json::from_str(&text)
        .unwrap_or_else(|err| fail(format!("report {} is not JSON: {err}", path.display())))
}

/// A child process that is killed (SIGKILL) and reaped when dropped, for tests that run a
/// child without supergo.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    pub fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("a pid fits in pid_t")
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal)
            .unwrap_or_else(|err| fail(format!("kill({}, {signal}): {err}", self.pid())));
    }

    /// Waits for the exit, at most `timeout` (then panics with a dump).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid();
        let child = &mut self.0;
        poll_until(timeout, &format!("pid {pid} to exit"), || {
            child.try_wait().expect("waitpid on our own child")
        })
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `cmd` to completion with stdout and stderr captured to `DIR/NAME.out` and
/// `DIR/NAME.err` (so a failure dump shows them); kills it and panics after `timeout`.
pub fn run_captured(cmd: &mut Command, dir: &Path, name: &str, timeout: Duration) -> Output {
    let out_path = dir.join(format!("{name}.out"));
    let err_path = dir.join(format!("{name}.err"));
    let create = |path: &Path| {
        File::create(path).unwrap_or_else(|err| panic!("create {}: {err}", path.display()))
    };
    cmd.stdin(Stdio::null())
        .stdout(create(&out_path))
        .stderr(create(&err_path));
    let child = cmd
        .spawn()
        .unwrap_or_else(|err| fail(format!("cannot run {cmd:?}: {err}")));
    let mut child = KillOnDrop(child);
    let status = child.wait_exit(timeout);
    Output {
        status,
        stdout: fs::read(&out_path).unwrap_or_default(),
        stderr: fs::read(&err_path).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// One real supergo daemon with its own directory, config, control port and output files.
///
/// The config is a TOML string with placeholders, expanded by [`Supergo::expand`]:
/// `{dir}` (the test dir), `{probe}`, `{hello}`, `{hello_c}` (binary paths), `{port}`,
/// `{port2}` (free ports for the programs' listeners). Braces of inline tables are left alone,
/// and so is the probe's own `{gen}`/`{pid}` in `PROBE_REPORT`.
///
/// ```ignore
/// let sg = Supergo::start("restart_keeps_serving", r#"
///     [program.web]
///     command = "{probe} serve"
///     listen_addrs = ["127.0.0.1:{port}"]
///     start_secs = 0.2
///     environment = { PROBE_REPORT = "{dir}/web-{gen}.json" }
/// "#);
/// let first = sg.wait_state("web", "Running", TIMEOUT);
/// let report = sg.read_report("web-1.json");
/// assert_eq!(report["env"]["LISTEN_FDS"], "1");
/// ```
pub struct Supergo {
    pub name: String,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    /// The control API address, `127.0.0.1:PORT`.
    pub control: String,
    /// Free ports for the programs' listeners (`{port}`, `{port2}`).
    pub port: u16,
    pub port2: u16,
    /// Sent as `Authorization: Bearer …` by `api`, and as `--token` by `ctl`.
    pub token: Option<String>,
    child: Mutex<Option<Child>>,
    /// Processes to kill at the end.
    registered: Mutex<Vec<Registered>>,
    /// Every daemon pid started (by `spawn` and `respawn`), to find their state files.
    daemons: Mutex<Vec<u32>>,
    runs: AtomicUsize,
}

impl Supergo {
    /// A fresh directory and ports; nothing written, nothing running.
    pub fn new(name: &str) -> Supergo {
        let dir = test_dir(name);
        let control = format!("127.0.0.1:{}", free_port());
        Supergo {
            name: name.to_string(),
            config_path: dir.join("supergo.toml"),
            dir,
            control,
            port: free_port(),
            port2: free_port(),
            token: None,
            child: Mutex::new(None),
            registered: Mutex::new(Vec::new()),
            daemons: Mutex::new(Vec::new()),
            runs: AtomicUsize::new(0),
        }
    }

    /// `new`, write `config`, start the daemon and wait until its control API answers.
    pub fn start(name: &str, config: &str) -> Supergo {
        let sg = Supergo::new(name);
        sg.write_config(config);
        sg.spawn(&[]);
        sg.wait_ready();
        sg
    }

    /// `config` with the placeholders filled in (see the type's docs).
    pub fn expand(&self, text: &str) -> String {
        let mut text = text
            .replace("{dir}", &self.dir.display().to_string())
            .replace("{port}", &self.port.to_string())
            .replace("{port2}", &self.port2.to_string());
        // Looked up only when used, so a test of one child does not need the others built.
        let binaries = [
            ("{probe}", probe_bin as fn() -> PathBuf),
            ("{hello}", hello_bin),
            ("{hello_c}", hello_c_bin),
        ];
        for (placeholder, path) in binaries {
            if text.contains(placeholder) {
                text = text.replace(placeholder, &path().display().to_string());
            }
        }
        text
    }

    /// A path inside the test directory.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// `127.0.0.1:{port}`: where the program under test listens.
    pub fn app_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)writes `supergo.toml`, expanded. Written to a temp file and renamed, so a reread
    /// in progress never sees half a config.
    pub fn write_config(&self, config: &str) {
        self.write_file("supergo.toml", config);
    }

    /// Writes a file of the test dir (an include file, a script), expanded, atomically.
    pub fn write_file(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|err| panic!("create {}: {err}", parent.display()));
        }
        let tmp = path.with_extension("tmp~");
        fs::write(&tmp, self.expand(text))
            .unwrap_or_else(|err| panic!("write {}: {err}", tmp.display()));
        fs::rename(&tmp, &path).unwrap_or_else(|err| panic!("rename to {}: {err}", path.display()));
        path
    }

    /// Starts the daemon: `supergo --config DIR/supergo.toml --listen CONTROL EXTRA…`, in
    /// the test dir, in a process group of its own (so the whole group can be killed), with
    /// output to `supergo.out` and `supergo.err`. Does not wait for it.
    pub fn spawn(&self, extra_args: &[&str]) {
        self.spawn_with_stdout(extra_args, None);
    }

    /// `spawn`, with supergo's stdout going to `stdout` (a pipe the test reads, or stops
    /// reading) instead of `supergo.out` when given. Its stderr (its log) still goes to
    /// `supergo.err`.
    pub fn spawn_with_stdout(&self, extra_args: &[&str], stdout: Option<Stdio>) {
        self.spawn_via(&[], extra_args, stdout, &[]);
    }

    /// `spawn`, with `env` added to supergo's environment (test switches).
    pub fn spawn_with_env(&self, extra_args: &[&str], env: &[(&str, &str)]) {
        self.spawn_via(&[], extra_args, None, env);
    }

    /// `spawn_with_stdout`, with supergo run through `wrapper` (a command that execs its
    /// arguments, such as `setpriv …`), so the daemon's pid is still the one started, and
    /// with `env` added to its environment.
    fn spawn_via(
        &self,
        wrapper: &[&str],
        extra_args: &[&str],
        stdout: Option<Stdio>,
        env: &[(&str, &str)],
    ) {
        let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        assert!(slot.is_none(), "supergo is already started in this test");
        let wrapper: Vec<&std::ffi::OsStr> = wrapper.iter().map(std::ffi::OsStr::new).collect();
        let mut cmd = self.daemon_command(&wrapper);
        cmd.args(extra_args).envs(env.iter().copied());
        if let Some(stdout) = stdout {
            cmd.stdout(stdout);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|err| fail(format!("cannot start {cmd:?}: {err}")));
        self.daemons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id());
        *slot = Some(child);
    }

    /// Starts the daemon again after the first one has exited (and was reaped by
    /// `wait_exit`), with the same directory, config and control address: what an operator
    /// does after supergo died. The first daemon's output files are kept as
    /// `supergo-N.out|err` (for the dump). Processes the first daemon left running stay
    /// registered, so `Drop` kills them even though they are not this daemon's children.
    pub fn respawn(&self) {
        self.respawn_via(&[]);
    }

    /// `respawn`, with supergo run through `wrapper` (see `spawn_via`).
    pub fn respawn_via(&self, wrapper: &[&str]) {
        {
            let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
            let child = slot.as_mut().expect("supergo was started before");
            let exited = child.try_wait().expect("waitpid on supergo");
            assert!(
                exited.is_some(),
                "respawn: the first supergo (pid {}) is still running",
                child.id()
            );
            *slot = None;
        }
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        for stream in ["out", "err"] {
            let from = self.path(&format!("supergo.{stream}"));
            let to = self.path(&format!("supergo-{n}.{stream}"));
            let _ = fs::rename(&from, &to);
        }
        self.spawn_via(wrapper, &[], None, &[]);
    }

    /// Runs supergo to completion with exactly `args` (e.g. `--config F --check`) in the test
    /// dir; its output also lands in `supergo-run-N.out|err` for the dump.
    pub fn run(&self, args: &[&str]) -> Output {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let mut cmd = Command::new(supergo_bin());
        cmd.args(args).current_dir(&self.dir);
        clean_env(&mut cmd);
        run_captured(
            &mut cmd,
            &self.dir,
            &format!("supergo-run-{n}"),
            TIMEOUT * 3,
        )
    }

    /// The daemon's pid (panics when it was not started).
    pub fn pid(&self) -> i32 {
        let slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let child = slot.as_ref().expect("supergo was started");
        i32::try_from(child.id()).expect("a pid fits in pid_t")
    }

    /// `Some(status)` once the daemon has exited (reaps it).
    pub fn try_exit_status(&self) -> Option<ExitStatus> {
        let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let child = slot.as_mut().expect("supergo was started");
        child.try_wait().expect("waitpid on supergo")
    }

    /// Waits until `GET /status` answers; fails at once, with a dump, if the daemon exits.
    pub fn wait_ready(&self) {
        poll_until(
            TIMEOUT,
            "supergo's control API to answer GET /status",
            || {
                if let Some(status) = self.try_exit_status() {
                    fail(format!(
                        "supergo exited ({status}) before answering GET /status"
                    ));
                }
                // A short deadline per try: a daemon that accepts but hangs must not eat the
                // whole wait in one request.
                self.request_within("GET", "/status", Duration::from_secs(1))
                    .ok()
                    .map(drop)
            },
        );
    }

    /// One request to the control API (with the token, if any).
    pub fn request(&self, method: &str, path: &str) -> Result<HttpResponse, String> {
        // Restarts answer only when the handoff is decided: allow for a slow one.
        self.request_within(method, path, Duration::from_secs(60))
    }

    fn request_within(
        &self,
        method: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<HttpResponse, String> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        http_request(&self.control, method, path, &headers, timeout)
    }

    /// `(HTTP status, JSON body)` of a control API call; panics with a dump when supergo does
    /// not answer or the body is not JSON.
    pub fn api(&self, method: &str, path: &str) -> (u16, Value) {
        let response = self
            .request(method, path)
            .unwrap_or_else(|err| fail(format!("{method} {path}: {err}")));
        let json = serde_json::from_str(&response.body).unwrap_or_else(|err| {
            fail(format!(
                "{method} {path}: HTTP {} with a body that is not JSON ({err}): {:?}",
                response.status, response.body
            ))
        });
        (response.status, json)
    }

    /// Every program's status entry (`data` of `GET /status`). Registers their pids.
    pub fn programs(&self) -> Vec<Value> {
        let (http, body) = self.api("GET", "/status");
        if http != 200 {
            fail(format!("GET /status: HTTP {http}: {body}"));
        }
        let programs = match &body["data"] {
            Value::Array(list) => list.clone(),
            Value::Object(map) => map.values().cloned().collect(),
            other => fail(format!(
                "GET /status: `data` is neither a list nor a map: {other}"
            )),
        };
        for program in &programs {
            self.register_status_pids(program);
        }
        programs
    }

    /// The status entry of `name`, if supergo knows the program.
    pub fn find_status(&self, name: &str) -> Option<Value> {
        self.programs()
            .into_iter()
            .find(|p| p["name"].as_str() == Some(name))
    }

    /// The status entry of `name`; panics with a dump when there is none.
    pub fn status(&self, name: &str) -> Value {
        self.find_status(name)
            .unwrap_or_else(|| fail(format!("GET /status has no program {name:?}")))
    }

    /// Waits until program `name` is in `state` ("Running", "Fatal", …); its status entry.
    pub fn wait_state(&self, name: &str, state: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        let found = try_poll_until(timeout, || {
            last = self.find_status(name).unwrap_or(Value::Null);
            (last["state"].as_str() == Some(state)).then(|| last.clone())
        });
        found.unwrap_or_else(|| {
            fail(format!(
                "timed out after {timeout:?} waiting for {name} to be {state}; last status: {last}"
            ))
        })
    }

    fn register_status_pids(&self, program: &Value) {
        let mut pids = vec![program["pid"].as_i64()];
        pids.push(program["handoff"]["pid"].as_i64());
        if let Some(draining) = program["draining"].as_array() {
            pids.extend(draining.iter().map(|d| d["pid"].as_i64()));
        }
        for pid in pids.into_iter().flatten() {
            if let Ok(pid) = i32::try_from(pid) {
                self.register(pid);
            }
        }
    }

    /// Runs the real `supergoctl --url CONTROL ARGS…` (30 s at most); its output is also kept
    /// in `ctl-N.out|err` for the dump.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let mut cmd = Command::new(supergoctl_bin());
        cmd.arg("--url").arg(&self.control);
        if let Some(token) = &self.token {
            cmd.arg("--token").arg(token);
        }
        cmd.args(args).current_dir(&self.dir);
        clean_env(&mut cmd);
        run_captured(
            &mut cmd,
            &self.dir,
            &format!("ctl-{n}"),
            Duration::from_secs(30),
        )
    }

    /// supergo's stderr so far (its log).
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("supergo.err")).unwrap_or_default()
    }

    /// supergo's stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.path("supergo.out")).unwrap_or_default()
    }

    /// Waits until supergo's log contains `pattern`; the log.
    pub fn wait_log(&self, pattern: &str, timeout: Duration) -> String {
        poll_until(timeout, &format!("{pattern:?} in supergo's log"), || {
            let log = self.log();
            log.contains(pattern).then_some(log)
        })
    }

    /// Sends `signal` to the daemon (its pid, not its group).
    pub fn signal(&self, signal: Signal) {
        self.register_descendants();
        kill(Pid::from_raw(self.pid()), signal)
            .unwrap_or_else(|err| fail(format!("kill(supergo {}, {signal}): {err}", self.pid())));
    }

    /// Waits until the daemon exits; its status. The children it leaves behind are
    /// registered first, so `Drop` still kills them.
    pub fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        self.register_descendants();
        poll_until(timeout, "supergo to exit", || self.try_exit_status())
    }

    /// Registers a process to kill when the test ends (children found in reports or status).
    pub fn register(&self, pid: i32) {
        let Some(stat) = proc_stat(pid) else {
            return; // already gone
        };
        let entry = Registered::from(stat);
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if !registered.contains(&entry) {
            registered.push(entry);
        }
    }

    fn register_descendants(&self) {
        let pid = self.pid();
        for p in descendants(pid) {
            self.register(p.pid);
        }
    }

    /// A probe report by path relative to the test dir (or absolute); registers its `pid` and
    /// `grandchild`.
    pub fn read_report(&self, path: &str) -> Value {
        let report = read_report(self.dir.join(path));
        for key in ["pid", "grandchild"] {
            if let Some(pid) = report[key].as_i64().and_then(|p| i32::try_from(p).ok()) {
                self.register(pid);
            }
        }
        report
    }

    /// The dump of this test's directory (what a failure prints).
    pub fn dump(&self) -> String {
        dump_dir(&self.dir)
    }

    /// Kills everything the test started: the daemon's group, every process under it (they
    /// live in process groups of their own: supergo calls setsid for each child) and their
    /// groups, and every registered process. Order matters: the daemon is frozen first so it
    /// cannot start a replacement while its children are collected and killed.
    fn kill_everything(&self) {
        let own_group = getpgrp().as_raw();
        let mut groups: BTreeSet<i32> = BTreeSet::new();
        let mut procs: Vec<Registered> = Vec::new();
        let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = slot.as_mut() {
            let pid = i32::try_from(child.id()).unwrap_or(0);
            // Still running and not reaped, so neither its pid nor its group id can have
            // been reused. Once reaped (the test waited for its exit) both may have been, so
            // its group is not touched then; its children were registered by `wait_exit`.
            if let Ok(None) = child.try_wait() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
                procs.extend(descendants(pid).into_iter().map(Registered::from));
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        procs.extend(
            self.registered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .copied(),
        );
        for p in &procs {
            match proc_stat(p.pid) {
                // The process we saw (a zombie, maybe): kill it, and its group if it leads
                // one, which holds the grandchildren it started.
                Some(now) if now.start_time == p.start_time => {
                    let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
                    if p.leader {
                        groups.insert(p.pid);
                    }
                }
                // Another process under a reused pid: leave it alone.
                Some(_) => {}
                // Gone and reaped. Its group may outlive it (orphaned grandchildren), and a
                // pid is not reused while a group of that id has members, so the group of
                // that id is still the one it led.
                None => {
                    if p.leader {
                        groups.insert(p.pid);
                    }
                }
            }
        }
        for group in groups {
            if group > 1 && group != own_group {
                let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
            }
        }
        if let Some(child) = slot.as_mut() {
            let _ = child.wait();
        }
    }
}

impl Drop for Supergo {
    fn drop(&mut self) {
        self.kill_everything();
        self.remove_default_state_files();
        if thread::panicking() {
            eprintln!("test dir kept: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
        CURRENT_DIR.with(|current| {
            let mut current = current.borrow_mut();
            if current.as_deref() == Some(self.dir.as_path()) {
                *current = None;
            }
        });
    }
}

impl Supergo {
    /// A daemon killed here leaves its state file (and maybe a temp file of a write it was
    /// killed in) in the default state_dir (tests that need one set `state_dir` inside their
    /// own directory): nothing of it runs now. Found by the test's control address (a test
    /// may start its daemon its own way), and by the daemon's pid, whatever address it
    /// served.
    fn remove_default_state_files(&self) {
        let daemons = self.daemons.lock().unwrap_or_else(|e| e.into_inner());
        let own = default_state_file(&self.control);
        let _ = fs::remove_file(&own);
        let Some(dir) = own.parent().map(Path::to_path_buf) else {
            return;
        };
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = daemons.iter().any(|pid| {
                name.ends_with(&format!(".{pid}.tmp"))
                    || (name.ends_with(".state")
                        && fs::read_to_string(entry.path())
                            .is_ok_and(|text| text.contains(&format!("[supergo]\npid={pid}\n"))))
            });
            if ours {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The state file supergo keeps for the control address `control` when no `state_dir` is
/// configured: the library's own choice, so that the harness cleans up where supergo wrote.
pub fn default_state_file(control: &str) -> PathBuf {
    let dir = supergo::adopt::state_file::state_dir(None);
    dir.join(state_file_name(control))
}

/// The name of the state file of the control address `control` (`127.0.0.1_22106.state`),
/// as supergo names it (its unit tests pin the names).
pub fn state_file_name(control: &str) -> String {
    supergo::adopt::state_file::file_name(control)
}

/// A process to kill when the test ends. The start time tells it from a later process that
/// got the same pid; `leader` says it led its process group when it was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Registered {
    pid: i32,
    start_time: u64,
    leader: bool,
}

impl From<ProcStat> for Registered {
    fn from(stat: ProcStat) -> Registered {
        Registered {
            pid: stat.pid,
            start_time: stat.start_time,
            leader: stat.pgid == stat.pid,
        }
    }
}

/// Gives a process the tests start a clean inheritance, whatever ran the tests: every signal
/// at its default action and no stray fds. For `pre_exec`: raw syscalls only, no allocation.
/// Tests then measure supergo, not their environment.
pub fn clean_exec_state() -> std::io::Result<()> {
    reset_signal_dispositions()?;
    cloexec_inherited_fds();
    Ok(())
}

/// Sets every signal but SIGKILL and SIGSTOP (1 to 64) back to its default action.
///
/// Why: cargo starts this test binary with glibc's `posix_spawn`, which leaves glibc's
/// internal signals 32 and 33 *ignored* in the new process, and an ignored signal stays
/// ignored across exec. Without this, every process a test starts would inherit SigIgn bit 32
/// from cargo, and a test of supergo's signal reset would measure cargo instead. glibc's
/// `sigaction` refuses 32 and 33 (EINVAL), hence `rt_sigaction` itself: an all-zero kernel
/// `struct sigaction` is SIG_DFL, no flags, empty mask on every Linux architecture.
pub fn reset_signal_dispositions() -> std::io::Result<()> {
    let default_action = [0u64; 4];
    for signal in 1..=64 {
        if signal == nix::libc::SIGKILL || signal == nix::libc::SIGSTOP {
            continue;
        }
        // SAFETY: a valid, zeroed kernel sigaction; no old action wanted; 8 = sizeof the
        // kernel's sigset_t.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_rt_sigaction,
                signal,
                default_action.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Marks every fd above 2 close-on-exec, so the fds the test runner leaked to us (a shell or
/// job runner's, without FD_CLOEXEC) do not reach supergo and, through it, the children whose
/// fds the tests check. Marked rather than closed: std's exec-error pipe must stay usable
/// until the exec. An fd placed after this (a listener `dup2`ed to 3) is not affected.
pub fn cloexec_inherited_fds() {
    /// `CLOSE_RANGE_CLOEXEC` from linux/close_range.h (Linux 5.11).
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: close_range with CLOEXEC only sets flags.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3u32,
            u32::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        // An older kernel: the same by hand, for any fd number a test runner plausibly uses.
        for fd in 3..4096 {
            // SAFETY: fcntl on any fd number is safe; EBADF for the closed ones.
            unsafe {
                let flags = nix::libc::fcntl(fd, nix::libc::F_GETFD);
                if flags >= 0 {
                    nix::libc::fcntl(fd, nix::libc::F_SETFD, flags | nix::libc::FD_CLOEXEC);
                }
            }
        }
    }
}

/// Removes the variables that would change how supergo, supergoctl or a child behaves, should
/// the test runner's environment hold them.
fn clean_env(cmd: &mut Command) {
    for var in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "SUPERGO_URL",
        "SUPERGO_TOKEN",
        "SUPERGO_PROGRAM",
        "SUPERGO_GENERATION",
        "SUPERGO_UPGRADE_STATE",
        "SUPERGO_UPGRADE_FALLBACK",
        "SUPERGO_TEST_FAIL_RESTORE",
        "SUPERGO_TEST_FAIL_EXEC",
    ] {
        cmd.env_remove(var);
    }
}

// ---------------------------------------------------------------------------------------------
// Load

/// What a [`Load`] does.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Threads sending `GET /` back to back, a new connection each.
    pub threads: usize,
    /// Threads sending `GET /sleep?ms=sleep_ms`: requests in flight during a handoff.
    pub sleepers: usize,
    pub sleep_ms: u64,
    /// Pause between two requests of one thread (keeps a 2-core box responsive).
    pub pause: Duration,
    /// Bounds, so a test that forgets `stop` still ends: requests per thread and total time.
    pub max_requests: u64,
    pub max_time: Duration,
    /// Deadline of one request (the sleep included).
    pub request_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            threads: 4,
            sleepers: 2,
            sleep_ms: 300,
            pause: Duration::from_millis(2),
            max_requests: 200_000,
            max_time: Duration::from_secs(120),
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// What a load run saw.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub ok: u64,
    pub failed: u64,
    /// The first few failures, as "+1.234s GET /: connect 127.0.0.1:4041: Connection refused".
    pub errors: Vec<String>,
    /// Every distinct pid that answered `GET /` (`pid: N`).
    pub pids: BTreeSet<u32>,
    /// Of `ok`, the `/sleep` requests.
    pub slow_ok: u64,
    pub elapsed: Duration,
    pub max_latency: Duration,
}

impl LoadReport {
    /// Panics, with the report and a dump, unless every request succeeded.
    pub fn assert_no_failures(&self) {
        if self.failed > 0 || self.ok == 0 {
            fail(format!("the load saw failures: {self}"));
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ok ({} slow), {} failed in {:.2?}, max latency {:.2?}, pids {:?}",
            self.ok, self.slow_ok, self.failed, self.elapsed, self.max_latency, self.pids
        )?;
        for error in &self.errors {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// Failures kept word for word in a [`LoadReport`].
const KEPT_ERRORS: usize = 10;

#[derive(Default)]
struct LoadShared {
    ok: AtomicU64,
    failed: AtomicU64,
    slow_ok: AtomicU64,
    max_latency_us: AtomicU64,
    errors: Mutex<Vec<String>>,
    pids: Mutex<BTreeSet<u32>>,
}

/// A load generator for restart tests: threads sending requests until `stop`.
///
/// ```ignore
/// let load = Load::start(&sg.app_addr(), LoadOptions::default());
/// load.wait_ok(50, TIMEOUT);
/// sg.api("POST", "/restart/web");
/// let report = load.stop();
/// report.assert_no_failures();
/// assert_eq!(report.pids.len(), 2, "{report}");
/// ```
pub struct Load {
    stop: Arc<AtomicBool>,
    shared: Arc<LoadShared>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Load {
    pub fn start(addr: &str, options: LoadOptions) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(LoadShared::default());
        let started = Instant::now();
        let mut threads = Vec::new();
        // The first `threads` threads ask for `/`, the others for `/sleep`.
        let count = options.threads + options.sleepers;
        for (i, slow) in (0..count).map(|i| (i, i >= options.threads)) {
            let (stop, shared, options) = (Arc::clone(&stop), Arc::clone(&shared), options.clone());
            let addr = addr.to_string();
            let thread = thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || load_thread(&addr, slow, &options, &stop, &shared, started))
                .expect("start a load thread");
            threads.push(thread);
        }
        Load {
            stop,
            shared,
            threads,
            started,
        }
    }

    pub fn ok(&self) -> u64 {
        self.shared.ok.load(Ordering::SeqCst)
    }

    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests succeeded in all (the load is flowing).
    pub fn wait_ok(&self, n: u64, timeout: Duration) {
        let target = self.ok() + n;
        poll_until(
            timeout,
            &format!("{n} more successful requests from the load"),
            || (self.ok() >= target).then_some(()),
        );
    }

    /// Stops the threads (each finishes the request in hand) and reports.
    pub fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                fail("a load thread panicked");
            }
        }
        let shared = &self.shared;
        LoadReport {
            ok: shared.ok.load(Ordering::SeqCst),
            failed: shared.failed.load(Ordering::SeqCst),
            errors: shared
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            pids: shared
                .pids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            slow_ok: shared.slow_ok.load(Ordering::SeqCst),
            elapsed: self.started.elapsed(),
            max_latency: Duration::from_micros(shared.max_latency_us.load(Ordering::SeqCst)),
        }
    }
}

impl Drop for Load {
    // A test that panics before `stop` must not leave threads hammering a port.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn load_thread(
    addr: &str,
    slow: bool,
    options: &LoadOptions,
    stop: &AtomicBool,
    shared: &LoadShared,
    started: Instant,
) {
    let path = if slow {
        format!("/sleep?ms={}", options.sleep_ms)
    } else {
        "/".to_string()
    };
    for _ in 0..options.max_requests {
        if stop.load(Ordering::SeqCst) || started.elapsed() > options.max_time {
            return;
        }
        let sent = Instant::now();
        let outcome = http_request(addr, "GET", &path, &[], options.request_timeout);
        let latency = sent.elapsed();
        let result = match outcome {
            Ok(r) if r.status == 200 && slow && r.body.starts_with("slept") => Ok(None),
            Ok(r) if r.status == 200 && !slow => match r.body.trim().strip_prefix("pid: ") {
                Some(pid) => pid
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| format!("body {:?} is not `pid: N`", r.body)),
                None => Err(format!("body {:?} is not `pid: N`", r.body)),
            },
            Ok(r) => Err(format!("HTTP {}: {:?}", r.status, r.body)),
            Err(err) => Err(err),
        };
        match result {
            Ok(pid) => {
                shared.ok.fetch_add(1, Ordering::SeqCst);
                if slow {
                    shared.slow_ok.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(pid) = pid {
                    shared
                        .pids
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(pid);
                }
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                shared.max_latency_us.fetch_max(us, Ordering::SeqCst);
            }
            Err(err) => {
                shared.failed.fetch_add(1, Ordering::SeqCst);
                let mut errors = shared.errors.lock().unwrap_or_else(|e| e.into_inner());
                if errors.len() < KEPT_ERRORS {
                    let at = sent.duration_since(started).as_secs_f64();
                    errors.push(format!("+{at:.3}s GET {path}: {err}"));
                }
            }
        }
        if !options.pause.is_zero() {
            thread::sleep(options.pause);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small readers shared by the test modules

/// The `pid` of a status entry; panics (with a dump) when it has none.
pub fn pid_of(status: &Value) -> i32 {
    status["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or_else(|| fail(format!("no pid in the status entry {status}")))
}

/// How many sockets the process `pid` holds open, of any kind. Not a count of connections:
/// a server may hold sockets of its own (`hello` keeps a spare one besides its listener);
/// compare with a count taken before, or use [`connections_of`].
pub fn sockets_of(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// How many TCP connections to local `port` the process `pid` has accepted and holds open:
/// its socket fds whose inode /proc/PID/net/tcp{,6} lists as ESTABLISHED on that local port.
/// A client's data sent before this count rises is already queued on the server's socket.
pub fn connections_of(pid: i32, port: u16) -> usize {
    let mut established = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            // 01: TCP_ESTABLISHED (include/net/tcp_states.h).
            if local_port == Some(port) && *state == "01" {
                established.insert(format!("socket:[{inode}]"));
            }
        }
    }
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    fs::read_link(e.path())
                        .is_ok_and(|t| established.contains(t.to_string_lossy().as_ref()))
                })
                .count()
        })
        .unwrap_or(0)
}

/// An HTTP request the test holds in flight: all of its head is sent but the blank line that
/// ends it. A server that finishes a partly received request when it stops (`hello` does)
/// keeps draining until the test sends the rest with [`HeldRequest::finish`], so a test can
/// look at a drain for as long as it needs. A slow request (`/sleep?ms=…`) would end the
/// drain on its own clock instead, and under load the test may look too late.
pub struct HeldRequest {
    stream: TcpStream,
}

impl HeldRequest {
    /// Connects to `addr` and sends the start of `GET path`.
    pub fn start(addr: &str, path: &str) -> HeldRequest {
        let mut stream = TcpStream::connect(addr)
            .unwrap_or_else(|err| fail(format!("connect to {addr}: {err}")));
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").as_bytes(),
            )
            .unwrap_or_else(|err| fail(format!("send the start of GET {path}: {err}")));
        HeldRequest { stream }
    }

    /// Waits until the process `pid` has accepted the connection (on local `port`). The
    /// start of the request was sent before, so it is already queued on the server's socket.
    pub fn wait_accepted(&self, pid: i32, port: u16) {
        poll_until(
            TIMEOUT,
            &format!("pid {pid} to accept the held request"),
            || (connections_of(pid, port) >= 1).then_some(()),
        );
    }

    /// Sends the end of the request; the answer as `(status, body)`.
    pub fn finish(mut self) -> Result<(u16, String), String> {
        self.stream
            .write_all(b"\r\n")
            .map_err(|err| format!("send the end of the request: {err}"))?;
        read_response(&mut self.stream, Instant::now() + TIMEOUT).map(|r| (r.status, r.body))
    }
}

// ---------------------------------------------------------------------------------------------
// Steps and readers several test modules repeat

impl Supergo {
    /// The pid of program `name` once it is Running: always > 0, so that a test can signal
    /// it (a 0 would be the test's own process group to `kill`).
    pub fn running_pid(&self, name: &str) -> i32 {
        let status = self.wait_state(name, "Running", TIMEOUT);
        let pid = pid_of(&status);
        if pid <= 0 {
            fail(format!("{name} is Running without a pid: {status}"));
        }
        pid
    }

    /// `METHOD PATH` on the control API, which must answer 200; the envelope.
    pub fn api_ok(&self, method: &str, path: &str) -> Value {
        let (http, body) = self.api(method, path);
        if http != 200 {
            fail(format!("{method} {path}: HTTP {http}: {body}"));
        }
        body
    }

    /// `WRAPPER… supergo --config … --listen …` set up as `spawn` sets it up (the test dir,
    /// output to `supergo.out`/`supergo.err`, a process group of its own, a clean
    /// inheritance and environment), for a test that must start supergo itself: under a
    /// wrapper that does not exec it (strace, `unshare --fork`), or keeping its `Child`.
    pub fn daemon_command(&self, wrapper: &[&std::ffi::OsStr]) -> Command {
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(supergo_bin());
                cmd
            }
            None => Command::new(supergo_bin()),
        };
        cmd.arg("--config")
            .arg(&self.config_path)
            .arg("--listen")
            .arg(&self.control)
            .current_dir(&self.dir);
        clean_env(&mut cmd);
        let create = |name: &str| {
            let path = self.path(name);
            File::create(&path).unwrap_or_else(|err| panic!("create {}: {err}", path.display()))
        };
        cmd.stdin(Stdio::null())
            .stdout(create("supergo.out"))
            .stderr(create("supergo.err"))
            .process_group(0);
        // SAFETY: the closure makes raw syscalls only (see clean_exec_state).
        unsafe {
            cmd.pre_exec(clean_exec_state);
        }
        cmd
    }
}

/// The `NOTIFY_SOCKET` a process was started with, from /proc/PID/environ.
pub fn notify_socket_of(pid: i32) -> String {
    let environ = fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|err| fail(format!("read /proc/{pid}/environ: {err}")));
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(b"NOTIFY_SOCKET="))
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .unwrap_or_else(|| fail(format!("pid {pid} has no NOTIFY_SOCKET in its environment")))
}

/// Makes the fifo `path`, on which a program can wait (`read line < FIFO`) until the test
/// releases it (`release_fifo`).
pub fn make_fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU)
        .unwrap_or_else(|err| fail(format!("mkfifo {}: {err}", path.display())));
}

/// Writes a line to the fifo `path` once `reader` has it open, so that the reader goes on.
pub fn release_fifo(path: &Path, reader: &str) {
    use nix::fcntl::{open, OFlag};
    let fifo = poll_until(TIMEOUT, &format!("{reader} to open the fifo"), || {
        open(
            path,
            OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()
    });
    nix::unistd::write(&fifo, b"go\n")
        .unwrap_or_else(|err| fail(format!("write to the fifo {}: {err}", path.display())));
}
