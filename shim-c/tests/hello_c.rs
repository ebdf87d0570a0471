//! hello-c, the real binary, over real sockets: its routes, keep-alive, the ways it takes a
//! listener (--listen, fd 3 with and without LISTEN_FDS, --fd N), READY=1, and the drain on
//! SIGTERM that zero-downtime restart relies on.
//!
//! Every example child shares this contract, so `HELLO_BIN=/path/to/child` runs the same
//! tests against another one, e.g. go-example (built with `go build -o /tmp/go-example`).
//! Log lines are matched as "<prog>: listening on ADDR", "…: listener closed…" and
//! "…: no listener…".

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const HELLO_C: &str = env!("CARGO_BIN_EXE_hello-c");
const LISTENING_ON: &str = ": listening on ";
const STARTUP: Duration = Duration::from_secs(10);

/// A running child under test. Dropping it kills the process, and on a failing test prints its stderr.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    lines: Receiver<String>,
}

impl Server {
    /// Starts `cmd` (a child under test) with `fds` placed (source, target) and no protocol
    /// variable but those `cmd` sets, and waits for its first "listening on ADDR" line.
    fn start(cmd: Command, fds: &[(RawFd, RawFd)]) -> Server {
        let mut cmd = cmd;
        for k in [
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
            "NOTIFY_SOCKET",
        ] {
            if !cmd.get_envs().any(|(key, _)| key == k) {
                cmd.env_remove(k);
            }
        }
        support::place_fds(&mut cmd, fds, &[]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stderr = child.stderr.take().expect("stderr was piped");

        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line.clone());
                let _ = tx.send(line);
            }
        });

        let mut server = Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
            lines,
        };
        let line = server.wait_line(LISTENING_ON, STARTUP);
        let addr = line.split_once(LISTENING_ON).map_or("", |(_, addr)| addr);
        server.addr = addr
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        server
    }

    /// The next stderr line that contains `pattern`, within `timeout`.
    fn wait_line(&self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(pattern) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line with {pattern:?} from {} within {timeout:?}",
                    binary()
                ),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: std::ffi::c_int) {
        let pid = i32::try_from(self.pid()).expect("pid fits in pid_t");
        // SAFETY: kill(2) on our own child, which has not been reaped (we hold it).
        assert_eq!(unsafe { support::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => panic!(
                    "{} (pid {}) still running after {timeout:?}",
                    binary(),
                    self.pid()
                ),
                Err(e) => panic!("waitpid on {}: {e}", binary()),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            eprintln!(
                "--- {} (pid {}) stderr ---\n{}",
                binary(),
                self.child.id(),
                log.join("\n")
            );
        }
    }
}

/// The child under test: hello-c, or `HELLO_BIN`.
fn binary() -> String {
    std::env::var("HELLO_BIN").unwrap_or_else(|_| HELLO_C.to_string())
}

fn hello_c(args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    cmd
}

fn start_on_free_port() -> Server {
    Server::start(hello_c(&["--listen", "127.0.0.1:0"]), &[])
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP/1.1 client connection.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, path: &str, extra_headers: &str) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra_headers}\r\n");
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("send a request");
    }

    fn receive(&mut self) -> Response {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("read the status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .expect("read a header line");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {l:?}"));
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut response = Response {
            status,
            headers,
            body: String::new(),
        };
        let length: usize = response
            .header("Content-Length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Content-Length in {:?}", response.headers));
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("read the body");
        response.body = String::from_utf8_lossy(&body).into_owned();
        response
    }

    fn get(&mut self, path: &str) -> Response {
        self.send(path, "");
        self.receive()
    }

    /// Whether the server closed the connection within `timeout`.
    fn closed_within(&mut self, timeout: Duration) -> bool {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .expect("set a read timeout");
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
            _ => false,
        }
    }
}

fn get(addr: SocketAddr, path: &str) -> Response {
    Client::connect(addr).get(path)
}

#[test]
fn answers_the_contract_routes() {
    let server = start_on_free_port();
    let cases = [
        ("/", 200, format!("pid: {}", server.pid())),
        ("/hello", 200, "hello, Jack".to_string()),
        ("/hello?name=", 200, "hello, Jack".to_string()),
        ("/hello?name=X", 200, "hello, X".to_string()),
        (
            "/hello?x=1&name=Ada+L%C3%BCbke",
            200,
            "hello, Ada Lübke".to_string(),
        ),
        ("/sleep?ms=20", 200, "slept 20 ms".to_string()),
    ];
    for (path, status, body) in cases {
        let r = get(server.addr, path);
        assert_eq!(
            (r.status, r.body.as_str()),
            (status, body.as_str()),
            "GET {path}"
        );
    }
    for path in ["/nope", "/hello/", "/sleepy"] {
        assert_eq!(get(server.addr, path).status, 404, "GET {path}");
    }
    assert_eq!(get(server.addr, "/sleep?ms=abc").status, 400);
}

#[test]
fn keeps_connections_alive_and_honours_connection_close() {
    let server = start_on_free_port();
    let mut c = Client::connect(server.addr);
    for _ in 0..3 {
        let r = c.get("/hello?name=again");
        assert_eq!(r.body, "hello, again");
        assert_eq!(
            r.header("Connection"),
            None,
            "HTTP/1.1 keeps the connection"
        );
    }
    c.send("/", "Connection: close\r\n");
    let r = c.receive();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "closed after Connection: close"
    );
}

#[test]
fn answers_pipelined_requests_in_order() {
    let server = start_on_free_port();
    let mut c = Client::connect(server.addr);
    let both = "GET /hello?name=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /hello?name=2 HTTP/1.1\r\nHost: t\r\n\r\n";
    c.reader
        .get_mut()
        .write_all(both.as_bytes())
        .expect("send two requests");
    assert_eq!(c.receive().body, "hello, 1");
    assert_eq!(c.receive().body, "hello, 2");
}

#[test]
fn serves_slow_requests_concurrently() {
    let server = start_on_free_port();
    let addr = server.addr;
    let started = Instant::now();
    let handles: Vec<_> = (0..20)
        .map(|_| thread::spawn(move || get(addr, "/sleep?ms=300").status))
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("client thread"), 200);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2000),
        "20 × 300 ms took {took:?}: not concurrent"
    );
}

#[test]
fn sigterm_finishes_a_slow_request_then_exits_0() {
    let mut server = start_on_free_port();
    let mut slow = Client::connect(server.addr);
    // A first answer proves the connection was accepted (a connection still in the backlog
    // of a closed --listen socket would be reset, which is not what this test is about).
    assert_eq!(slow.get("/").status, 200);
    let sent = Instant::now();
    slow.send("/sleep?ms=500", "");
    // Let the request reach its thread before the signal.
    thread::sleep(Duration::from_millis(100));
    server.signal(support::SIGTERM);
    server.wait_line(": listener closed", Duration::from_secs(2));

    // The listener is closed while the slow request is still in progress.
    let refused = TcpStream::connect(server.addr).map_err(|e| e.kind());
    assert_eq!(
        refused.err(),
        Some(ErrorKind::ConnectionRefused),
        "listener closed on SIGTERM"
    );

    let r = slow.receive();
    assert_eq!((r.status, r.body.as_str()), (200, "slept 500 ms"));
    assert!(sent.elapsed() >= Duration::from_millis(500));
    assert_eq!(
        r.header("Connection"),
        Some("close"),
        "a draining server closes after the answer"
    );
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after the drain: {status}"
    );
}

#[test]
fn sigterm_closes_idle_keep_alive_connections() {
    let mut server = start_on_free_port();
    let mut idle = Client::connect(server.addr);
    assert_eq!(idle.get("/").status, 200);
    server.signal(support::SIGTERM);
    assert!(
        idle.closed_within(Duration::from_secs(3)),
        "idle connection closed on SIGTERM"
    );
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn sigint_drains_like_sigterm() {
    let mut server = start_on_free_port();
    assert_eq!(get(server.addr, "/").status, 200);
    server.signal(support::SIGINT);
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn serves_a_listener_at_fd_3_without_variables() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("local address");
    let server = Server::start(hello_c(&[]), &[(l.as_raw_fd(), 3)]);
    assert_eq!(server.addr, addr);
    assert_eq!(get(addr, "/").body, format!("pid: {}", server.pid()));
}

#[test]
fn serves_every_listener_of_listen_fds() {
    let (a, b) = (
        TcpListener::bind("127.0.0.1:0").expect("bind"),
        TcpListener::bind("127.0.0.1:0").expect("bind"),
    );
    // LISTEN_PID must be the pid of the child: a shell knows its pid ($$) and exec keeps it.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\"", &binary()])
        .env("LISTEN_FDS", "2");
    let server = Server::start(cmd, &[(a.as_raw_fd(), 3), (b.as_raw_fd(), 4)]);
    let second = server.wait_line(LISTENING_ON, STARTUP);
    let b_addr = b.local_addr().expect("local address");
    assert_eq!(server.addr, a.local_addr().expect("local address"));
    assert!(
        second.ends_with(&format!("{LISTENING_ON}{b_addr}")),
        "{second}"
    );
    for addr in [server.addr, b_addr] {
        assert_eq!(get(addr, "/").body, format!("pid: {}", server.pid()));
    }
}

#[test]
fn serves_the_listener_given_with_the_fd_option() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = Server::start(hello_c(&["--fd", "7"]), &[(l.as_raw_fd(), 7)]);
    assert_eq!(server.addr, l.local_addr().expect("local address"));
    assert_eq!(get(server.addr, "/hello?name=circus").body, "hello, circus");
}

#[test]
fn sends_ready_to_notify_socket() {
    let path = std::env::temp_dir().join(format!("shim-c-hello-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).expect("bind a unix datagram socket");
    let mut cmd = hello_c(&["--listen", "127.0.0.1:0"]);
    cmd.env("NOTIFY_SOCKET", &path);
    let _server = Server::start(cmd, &[]);
    sock.set_read_timeout(Some(STARTUP))
        .expect("set a read timeout");
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 from the child");
    let _ = std::fs::remove_file(&path);
    assert_eq!(&buf[..n], b"READY=1");
}

#[test]
fn fails_with_a_message_when_it_has_no_listener() {
    let mut cmd = hello_c(&[]);
    support::place_fds(&mut cmd, &[], &[3]);
    let out = cmd
        .env_remove("LISTEN_FDS")
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(": no listener"), "stderr: {stderr}");
}
