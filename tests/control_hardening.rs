//! Issue 12, "Hardening": what a web page or a local user can do to the control API must
//! not work. Each test sends the real headers, or opens the real connections, to the real
//! supergo:
//! - item 3: a web page's request (cross-site `Origin` / `Sec-Fetch-Site`, a DNS-rebinding
//!   `Host`) is refused with a 403 that says why, and changes nothing; supergoctl and plain
//!   requests (GET actions too) keep working;
//! - item 7: a client answered 4xx is disconnected, one client address cannot hold more
//!   than its share of connections, and a connection's lifetime is capped;
//! - item 8: a flood of slow connections costs supergo no thread and does not deny
//!   `GET /status` or `supergoctl status`;
//! - item 9: a duplicate or signed `Content-Length` is a 400.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
use serde_json::Value;

use crate::util::{http_request, sockets_of, try_poll_until, Supergo, TIMEOUT};

/// supergo's `http::MAX_PER_PEER`: connections one client address may hold.
const MAX_PER_PEER: usize = 128;
/// supergo's `http::MAX_LIFETIME`, in seconds.
const MAX_LIFETIME_SECS: u64 = 30;
/// What every refusal of a web page's request ends with.
const LOCAL_ONLY: &str = "supergo's control API only answers local clients";

/// `web`, a served probe, after `daemon` (a `[supergo]` section or nothing).
fn config(daemon: &str) -> String {
    format!(
        r#"
{daemon}

[program.web]
command = "{{probe}} serve"
listen_addrs = ["127.0.0.1:{{port}}"]
start_secs = 0.2
stop_timeout = 2
"#
    )
}

/// supergo serving `web`; the pid of `web`.
fn start(name: &str) -> (Supergo, i32) {
    let sg = Supergo::start(name, &config(""));
    let web = sg.running_pid("web");
    (sg, web)
}

/// Asserts that `web` still runs as `pid`: a refused request changed nothing.
fn assert_web_untouched(sg: &Supergo, pid: i32, after: &str) {
    let web = sg.status("web");
    assert!(
        web["state"] == "Running" && web["pid"].as_i64() == Some(i64::from(pid)),
        "after {after}, web is no longer Running as pid {pid}: {web}{}",
        sg.dump()
    );
}

// ---------------------------------------------------------------------------------------------
// A raw client: exactly the bytes a test wants on the wire, on a connection it keeps.

/// One answer read off a connection.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn message(&self) -> String {
        let body: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        body["message"].as_str().unwrap_or_default().to_string()
    }
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|err| panic!("connect {addr}: {err}"));
        Client::from(stream)
    }

    /// A connection from another loopback address (127.0.0.2): another client, as far as
    /// supergo can tell. Linux routes all of 127/8 to `lo`.
    fn connect_from(local: Ipv4Addr, addr: &str) -> Client {
        let target: SocketAddrV4 = addr.parse().expect("an IPv4 control address");
        let fd: OwnedFd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("a TCP socket");
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::from(SocketAddrV4::new(local, 0)),
        )
        .unwrap_or_else(|err| panic!("bind to {local}: {err}"));
        connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::from(target),
        )
        .unwrap_or_else(|err| panic!("connect {addr} from {local}: {err}"));
        Client::from(TcpStream::from(fd))
    }

    fn from(stream: TcpStream) -> Client {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `bytes`; `Err` when the connection is gone.
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one answer (head, and a body by its `Content-Length`) within `TIMEOUT`.
    /// `Err("closed …")` when the server closed or reset the connection first.
    fn answer(&mut self) -> Result<Answer, String> {
        let deadline = Instant::now() + TIMEOUT;
        let head_len = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.read_more(deadline)?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_len]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
        let mut answer = Answer {
            status,
            head,
            body: String::new(),
        };
        let length: usize = answer
            .header("Content-Length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("an answer without Content-Length: {:?}", answer.head))?;
        while self.buf.len() < head_len + length {
            self.read_more(deadline)?;
        }
        answer.body = String::from_utf8_lossy(&self.buf[head_len..head_len + length]).into_owned();
        self.buf.drain(..head_len + length);
        Ok(answer)
    }

    fn read_more(&mut self, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no answer within the deadline".into());
        }
        self.stream
            .set_read_timeout(Some(left))
            .map_err(|err| format!("set a read timeout: {err}"))?;
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(format!("closed by supergo after {} bytes", self.buf.len())),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err("no answer within the deadline".into())
            }
            Err(err) => Err(format!("closed by supergo (read: {err})")),
        }
    }

    /// Sends `request` and reads its answer; `Err` saying how it went otherwise.
    fn ask(&mut self, request: &str) -> Result<Answer, String> {
        self.send(request.as_bytes())
            .map_err(|err| format!("closed by supergo (write: {err})"))?;
        self.answer()
    }
}

/// A keep-alive `GET /status` naming `host`.
fn status_request(host: &str) -> String {
    format!("GET /status HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// The port of supergo's control address.
fn control_port(sg: &Supergo) -> String {
    let (_, port) = sg.control.rsplit_once(':').unwrap_or_default();
    port.to_string()
}

/// `request` on `client`, which supergo must answer with 200 (`what` names it in a failure).
fn served(client: &mut Client, request: &str, what: &str, sg: &Supergo) -> Answer {
    let answer = client
        .ask(request)
        .unwrap_or_else(|err| panic!("{what}: {err}{}", sg.dump()));
    assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    answer
}

/// Asserts that supergo had closed the connection that `next` (a request on it) tried.
fn assert_closed(next: Result<Answer, String>, why: &str, sg: &Supergo) {
    assert!(
        matches!(&next, Err(err) if err.starts_with("closed")),
        "{why}: {}{}",
        next.map_or_else(|e| e, |a| format!("HTTP {} {}", a.status, a.body)),
        sg.dump()
    );
}

/// `request` on a new connection: its answer, or a failure with supergo's dump.
fn ask_once(sg: &Supergo, request: &str) -> Answer {
    Client::connect(&sg.control)
        .ask(request)
        .unwrap_or_else(|err| panic!("{request:?}: {err}{}", sg.dump()))
}

// ---------------------------------------------------------------------------------------------
// Item 3: web pages' requests are refused

#[test]
fn cross_site_requests_are_refused_with_403_and_stop_nothing() {
    let (sg, pid) = start("cross_site_requests_are_refused_with_403_and_stop_nothing");
    let host = &sg.control;
    let cases = [
        (
            // `<img src="http://127.0.0.1:22106/stop/web">` on evil.example.
            format!(
                "GET /stop/web HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\n\
                 Sec-Fetch-Site: cross-site\r\nConnection: close\r\n\r\n"
            ),
            "refused: cross-site request (Origin http://evil.example); ".to_string() + LOCAL_ONLY,
        ),
        (
            // A form POST (browsers send Origin with it).
            format!(
                "POST /stop/web HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
            "refused: cross-site request (Origin http://evil.example); ".to_string() + LOCAL_ONLY,
        ),
        (
            format!(
                "POST /restart/web HTTP/1.1\r\nHost: {host}\r\nOrigin: null\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
            "refused: cross-site request (Origin null); ".to_string() + LOCAL_ONLY,
        ),
        (
            // A GET without Origin: only Sec-Fetch-Site tells.
            format!(
                "GET /stop/all HTTP/1.1\r\nHost: {host}\r\nSec-Fetch-Site: cross-site\r\n\
                 Connection: close\r\n\r\n"
            ),
            "refused: cross-site request (Sec-Fetch-Site: cross-site); ".to_string() + LOCAL_ONLY,
        ),
        (
            format!(
                "GET /restart/all HTTP/1.1\r\nHost: {host}\r\nSec-Fetch-Site: same-site\r\n\
                 Connection: close\r\n\r\n"
            ),
            "refused: same-site request (from another page of this site) \
             (Sec-Fetch-Site: same-site); "
                .to_string()
                + LOCAL_ONLY,
        ),
    ];
    for (request, message) in &cases {
        let answer = ask_once(&sg, request);
        assert_eq!(
            (answer.status, answer.message()),
            (403, message.clone()),
            "{request:?}: {}{}",
            answer.body,
            sg.dump()
        );
        let body: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        assert!(
            body["status"].as_i64().is_some_and(|s| s != 0),
            "a 403 without the failure envelope: {}",
            answer.body
        );
    }
    assert_web_untouched(&sg, pid, "cross-site requests to stop and restart it");
}

#[test]
fn dns_rebinding_host_is_refused_with_403_and_reads_nothing() {
    let (sg, pid) = start("dns_rebinding_host_is_refused_with_403_and_reads_nothing");
    let port = control_port(&sg);
    let evil = format!("evil.example:{port}");
    for (method, path) in [
        ("GET", "/status"),
        ("GET", "/log/web"),
        ("GET", "/metrics"),
        ("GET", "/reread"),
        ("POST", "/stop/web"),
    ] {
        // What a page on evil.example, re-resolved to 127.0.0.1, sends: its own name, and
        // no Origin (to the browser, the request is same-origin).
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {evil}\r\nSec-Fetch-Site: same-origin\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let answer = ask_once(&sg, &request);
        let message = answer.message();
        assert!(
            answer.status == 403
                && message.starts_with(&format!("refused: request for host \"{evil}\""))
                && message.contains(LOCAL_ONLY),
            "{method} {path} with Host {evil}: HTTP {} {}{}",
            answer.status,
            answer.body,
            sg.dump()
        );
        assert!(
            !answer.body.contains(&format!("\"pid\":{pid}")),
            "{method} {path} with Host {evil} gave away web's pid: {}",
            answer.body
        );
    }
    assert_web_untouched(&sg, pid, "requests with Host evil.example");
}

#[test]
fn local_clients_keep_working_get_actions_included() {
    let (sg, pid) = start("local_clients_keep_working_get_actions_included");
    let port = control_port(&sg);
    let origin = format!("http://{}", sg.control);
    let requests = [
        status_request(&sg.control),
        status_request(&format!("localhost:{port}")),
        status_request(&format!("[::1]:{port}")),
        // HTTP/1.0 without Host.
        "GET /status HTTP/1.0\r\n\r\n".to_string(),
        // A page supergo itself would serve, and a URL typed in the address bar.
        format!(
            "GET /status HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nSec-Fetch-Site: same-origin\r\n\r\n",
            sg.control
        ),
        format!(
            "GET /status HTTP/1.1\r\nHost: {}\r\nSec-Fetch-Site: none\r\n\r\n",
            sg.control
        ),
    ];
    for request in &requests {
        let answer = ask_once(&sg, request);
        assert!(
            answer.status == 200 && answer.body.contains(&format!("\"pid\":{pid}")),
            "{request:?}: HTTP {} {}{}",
            answer.status,
            answer.body,
            sg.dump()
        );
    }
    let out = sg.ctl(&["status"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("web"),
        "supergoctl status: {out:?}{}",
        sg.dump()
    );
    // The original supergo's clients send GET for actions, as curl does by default.
    for (path, state) in [("/stop/web", "Stopped"), ("/start/web", "Running")] {
        let response = http_request(&sg.control, "GET", path, &[], Duration::from_secs(60))
            .unwrap_or_else(|err| panic!("GET {path}: {err}{}", sg.dump()));
        assert_eq!(
            response.status,
            200,
            "GET {path}: {}{}",
            response.body,
            sg.dump()
        );
        sg.wait_state("web", state, TIMEOUT);
    }
}

// ---------------------------------------------------------------------------------------------
// Item 7: no slot kept by a refused client, by one address, or forever

#[test]
fn client_answered_4xx_is_disconnected() {
    let token = "s3cret";
    let mut sg = Supergo::new("client_answered_4xx_is_disconnected");
    sg.token = Some(token.to_string());
    sg.write_config(&config(&format!("[supergo]\ntoken = \"{token}\"")));
    sg.spawn(&[]);
    sg.wait_ready();
    let authorized = format!(
        "GET /status HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
        sg.control
    );
    let refusals = [
        // No token: 401.
        status_request(&sg.control),
        // The token, but no such route: 404.
        format!(
            "GET /no-such-route HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
            sg.control
        ),
    ];
    for request in &refusals {
        let mut client = Client::connect(&sg.control);
        let answer = client
            .ask(request)
            .unwrap_or_else(|err| panic!("{request:?}: {err}{}", sg.dump()));
        assert!(
            (400..500).contains(&answer.status) && answer.header("Connection") == Some("close"),
            "{request:?} (keep-alive) got HTTP {} without `Connection: close`: {:?}{}",
            answer.status,
            answer.head,
            sg.dump()
        );
        // A further request on the same connection, this time a right one, gets nothing:
        // supergo closed it.
        let why = format!(
            "after a {} on a keep-alive connection, the connection is still served",
            answer.status
        );
        assert_closed(client.ask(&authorized), &why, &sg);
    }
    // A well-behaved client keeps its connection.
    let mut client = Client::connect(&sg.control);
    for n in 0..2 {
        let what = format!("authorized request {n} on one connection");
        served(&mut client, &authorized, &what, &sg);
    }
}

#[test]
fn one_client_address_holds_at_most_its_share_of_connections() {
    let (sg, _) = start("one_client_address_holds_at_most_its_share_of_connections");
    let request = status_request(&sg.control);
    let open = |from: Ipv4Addr, what: &str| {
        let mut client = Client::connect_from(from, &sg.control);
        served(&mut client, &request, what, &sg);
        client
    };
    let local = Ipv4Addr::LOCALHOST;
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let mut oldest = open(local, "the first connection from 127.0.0.1");
    let mut elsewhere = open(other, "a connection from 127.0.0.2");
    // Each answered and kept alive (idle: waiting for its next request).
    let mut newer: Vec<Client> = (0..MAX_PER_PEER)
        .map(|i| open(local, &format!("connection {} from 127.0.0.1", i + 2)))
        .collect();
    let why = format!(
        "127.0.0.1 holds {} connections and the oldest is still served",
        MAX_PER_PEER + 1
    );
    assert_closed(oldest.ask(&request), &why, &sg);
    // Another address's connection, older than all of those, was not pushed out by them.
    served(
        &mut elsewhere,
        &request,
        "the connection from 127.0.0.2",
        &sg,
    );
    let last = newer.last_mut().expect("connections were opened");
    served(last, &request, "the newest connection from 127.0.0.1", &sg);
}

#[test]
fn keep_alive_connection_is_closed_after_its_lifetime() {
    let (sg, _) = start("keep_alive_connection_is_closed_after_its_lifetime");
    let mut client = Client::connect(&sg.control);
    let request = status_request(&sg.control);
    let opened = Instant::now();
    let mut answered = 0;
    // Busy, never idle for long: only the lifetime cap can end it.
    let closed = try_poll_until(Duration::from_secs(MAX_LIFETIME_SECS) + 2 * TIMEOUT, || {
        let answer = match client.ask(&request) {
            Ok(answer) => answer,
            Err(err) => panic!(
                "request {answered} on the connection failed without `Connection: close` \
                 first: {err}{}",
                sg.dump()
            ),
        };
        assert_eq!(answer.status, 200, "{}", answer.body);
        answered += 1;
        if answer.header("Connection") == Some("close") {
            return Some(());
        }
        // Paces the requests (one a second), well within the idle timeout.
        thread::sleep(Duration::from_secs(1));
        None
    });
    assert!(
        closed.is_some(),
        "a busy keep-alive connection is still open after {:?} ({answered} requests)",
        opened.elapsed()
    );
    assert!(answered > 1, "the connection was not kept alive at all");
    let why = "after `Connection: close`, the connection is still served";
    assert_closed(client.ask(&request), why, &sg);
}

// ---------------------------------------------------------------------------------------------
// Item 8: slow connections cannot deny the API

/// How many threads process `pid` runs.
fn threads_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |dir| dir.count())
}

/// Waits until supergo holds no socket of an earlier control connection: the harness's
/// last request may still have one there (the poll loop closes its copy once it hears the
/// answer went out), which would make a count of supergo's sockets one too high. A request
/// of our own, read to its end (EOF comes once every copy in supergo is closed; the poll
/// loop hears of the closes in order), leaves none behind.
fn settle_connections(sg: &Supergo) {
    let mut client = Client::connect(&sg.control);
    let request = format!(
        "GET /status HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        sg.control
    );
    served(&mut client, &request, "a last status request", sg);
    let end = client.answer();
    assert_closed(
        end,
        "supergo did not close a `Connection: close` connection",
        sg,
    );
}

#[test]
fn incomplete_connections_cost_supergo_no_thread() {
    let (sg, _) = start("incomplete_connections_cost_supergo_no_thread");
    let supergo = sg.pid();
    settle_connections(&sg);
    let threads = threads_of(supergo);
    let sockets = sockets_of(supergo);
    let count = 100;
    let mut slow = Vec::new();
    for i in 0..count {
        let mut client = Client::connect(&sg.control);
        client
            .send(b"GET /status HTTP/1.1\r\nHost: x\r\n")
            .unwrap_or_else(|err| panic!("incomplete request {i}: {err}"));
        slow.push(client);
    }
    // Taken in by supergo (each one a socket there), and still incomplete.
    let held = try_poll_until(TIMEOUT, || {
        (sockets_of(supergo) >= sockets + count).then_some(())
    });
    assert!(
        held.is_some(),
        "supergo holds {} sockets, {sockets} before {count} connections{}",
        sockets_of(supergo),
        sg.dump()
    );
    let now = threads_of(supergo);
    assert!(
        now <= threads + 2,
        "{count} incomplete requests took supergo from {threads} to {now} threads{}",
        sg.dump()
    );
    drop(slow);
}

/// Counts of what the flood saw.
#[derive(Default)]
struct FloodTally {
    /// Connections opened in all.
    opened: AtomicU64,
    /// Open at once now.
    open: AtomicU64,
    /// Closed by supergo (to make room, or timed out).
    dropped: AtomicU64,
    /// Answered by supergo (a 503 "too many connections"): each a slot it had none of.
    answered: AtomicU64,
    /// Full sweeps over every connection done.
    sweeps: AtomicU64,
}

/// `count` connections that each send a byte of a never-ending request head now and then;
/// one closed by supergo is opened again at once, as an attacker would. Non-blocking sockets
/// on one thread: a thousand threads would load the machine more than supergo.
fn flood(addr: SocketAddr, count: usize, stop: &AtomicBool, tally: &FloodTally) {
    const HEAD: &[u8] = b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let open = || {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        stream.set_nonblocking(true).ok()?;
        tally.opened.fetch_add(1, Ordering::SeqCst);
        tally.open.fetch_add(1, Ordering::SeqCst);
        Some((stream, 0))
    };
    let mut conns: Vec<Option<(TcpStream, usize)>> = (0..count).map(|_| None).collect();
    while !stop.load(Ordering::SeqCst) {
        for slot in conns.iter_mut() {
            if slot.is_none() {
                *slot = open();
            }
            let Some((stream, sent)) = slot else { continue };
            let mut buf = [0u8; 512];
            let gone = match stream.read(&mut buf) {
                Ok(0) => {
                    tally.dropped.fetch_add(1, Ordering::SeqCst);
                    true
                }
                Ok(_) => {
                    tally.answered.fetch_add(1, Ordering::SeqCst);
                    true
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    let next = HEAD.get(*sent).copied().unwrap_or(b'a');
                    *sent += 1;
                    stream.write(&[next]).is_err()
                }
                Err(_) => {
                    tally.dropped.fetch_add(1, Ordering::SeqCst);
                    true
                }
            };
            if gone {
                tally.open.fetch_sub(1, Ordering::SeqCst);
                // Back at once, and its first byte with it.
                *slot = open();
                if let Some((stream, sent)) = slot {
                    *sent = usize::from(stream.write(&HEAD[..1]).is_ok());
                }
            }
        }
        tally.sweeps.fetch_add(1, Ordering::SeqCst);
        // "Now and then": each connection sends about two bytes a second.
        thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn slow_connection_flood_does_not_deny_status() {
    let (sg, pid) = start("slow_connection_flood_does_not_deny_status");
    let addr: SocketAddr = sg.control.parse().expect("a socket address");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(FloodTally::default());
    let flooder = {
        let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
        thread::Builder::new()
            .name("flood".into())
            .spawn(move || flood(addr, 1000, &stop, &tally))
            .expect("start the flood thread")
    };
    let report = |tally: &FloodTally| {
        format!(
            "flood: {} connections opened, {} open now, {} dropped by supergo, {} answered \
             (503) by supergo, {} sweeps",
            tally.opened.load(Ordering::SeqCst),
            tally.open.load(Ordering::SeqCst),
            tally.dropped.load(Ordering::SeqCst),
            tally.answered.load(Ordering::SeqCst),
            tally.sweeps.load(Ordering::SeqCst)
        )
    };
    // The flood is on: a thousand connections opened, each has sent a byte at least twice.
    let on = try_poll_until(Duration::from_secs(30), || {
        (tally.sweeps.load(Ordering::SeqCst) >= 2 && tally.opened.load(Ordering::SeqCst) >= 1000)
            .then_some(())
    });
    if on.is_none() {
        stop.store(true, Ordering::SeqCst);
        panic!(
            "the flood did not get going: {}{}",
            report(&tally),
            sg.dump()
        );
    }
    // Asked again and again while the flood goes on for several sweeps (each one pushes
    // hundreds of slow connections at supergo).
    let mut failures = Vec::new();
    let first_sweep = tally.sweeps.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    while round < 12 || tally.sweeps.load(Ordering::SeqCst) < first_sweep + 4 {
        if Instant::now() > deadline {
            failures.push(format!("the flood stalled after {round} rounds"));
            break;
        }
        match http_request(&sg.control, "GET", "/status", &[], TIMEOUT) {
            Ok(r) if r.status == 200 && r.body.contains(&format!("\"pid\":{pid}")) => {}
            Ok(r) => failures.push(format!("GET /status {round}: HTTP {} {}", r.status, r.body)),
            Err(err) => failures.push(format!("GET /status {round}: {err}")),
        }
        if round % 4 == 0 {
            let out = sg.ctl(&["status"]);
            if !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("web") {
                failures.push(format!(
                    "supergoctl status {round}: {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        round += 1;
        // Paces the rounds over the flood's sweeps.
        thread::sleep(Duration::from_millis(100));
    }
    let during = report(&tally);
    stop.store(true, Ordering::SeqCst);
    flooder.join().expect("the flood thread panicked");
    assert!(
        failures.is_empty(),
        "the control API was denied during a flood of slow connections ({during}):\n{}{}",
        failures.join("\n"),
        sg.dump()
    );
    // The flood was real: supergo had to push slow connections out to make room.
    assert!(
        tally.dropped.load(Ordering::SeqCst) > 0 || tally.answered.load(Ordering::SeqCst) > 0,
        "supergo never had to make room: not a flood ({during})"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 9: Content-Length, strictly

#[test]
fn duplicate_content_length_is_refused_with_400() {
    let (sg, pid) = start("duplicate_content_length_is_refused_with_400");
    let request = format!(
        "POST /stop/web HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n",
        sg.control
    );
    let answer = ask_once(&sg, &request);
    assert!(
        answer.status == 400 && answer.message().contains("more than one Content-Length"),
        "two Content-Length headers: HTTP {} {}{}",
        answer.status,
        answer.body,
        sg.dump()
    );
    assert_web_untouched(&sg, pid, "a request with two Content-Length headers");
}

#[test]
fn signed_content_length_is_refused_with_400() {
    let (sg, pid) = start("signed_content_length_is_refused_with_400");
    let request = format!(
        "POST /stop/web HTTP/1.1\r\nHost: {}\r\nContent-Length: +5\r\nConnection: close\r\n\r\nabcde",
        sg.control
    );
    let answer = ask_once(&sg, &request);
    assert!(
        answer.status == 400 && answer.message().contains("malformed Content-Length \"+5\""),
        "Content-Length: +5: HTTP {} {}{}",
        answer.status,
        answer.body,
        sg.dump()
    );
    assert_web_untouched(&sg, pid, "a request with Content-Length: +5");
}
