//! "A control plane that lets no one in": the bearer token on every route (`[supergo]
//! token` and `token_file`, `supergoctl --token` and `SUPERGO_TOKEN`), the refusal of a
//! control address outside loopback without a token, and a control API that stays up and
//! correct under idle connections and malformed requests (DESIGN.md, "Control API": a
//! malformed request gets a 4xx answer, never a crash).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    free_port, http_get, http_request, run_captured, supergoctl_bin, HttpResponse, Supergo, TIMEOUT,
};

const TOKEN: &str = "s3cret";

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
stderr_file = "{{dir}}/web.err"
environment = {{ PROBE_REPORT = "{{dir}}/web-{{gen}}.json" }}
"#
    )
}

/// supergo with `config`, whose API needs `token` (the harness sends it); waits until the
/// API answers and `web` runs. The pid of `web`.
fn start_with_token(name: &str, config: &str, token: &str) -> (Supergo, i64) {
    let mut sg = Supergo::new(name);
    sg.token = Some(token.to_string());
    sg.write_config(config);
    sg.spawn(&[]);
    sg.wait_ready();
    let web = sg.wait_state("web", "Running", TIMEOUT);
    (sg, web["pid"].as_i64().unwrap_or(0))
}

/// One request to the control API with `authorization` as the header, if any.
fn call(sg: &Supergo, method: &str, path: &str, authorization: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = authorization
        .map(|value| ("Authorization", value))
        .into_iter()
        .collect();
    http_request(&sg.control, method, path, &headers, Duration::from_secs(60))
        .unwrap_or_else(|err| panic!("{method} {path}: {err}{}", sg.dump()))
}

/// Every route of the API; the state-changing ones last, so that the 200 pass leaves `web`
/// stopped only at the very end.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/status"),
    ("GET", "/reread"),
    ("POST", "/update"),
    ("GET", "/metrics"),
    ("GET", "/log/web?stream=stderr&bytes=100"),
    ("POST", "/start/web"),
    ("POST", "/restart/web"),
    ("POST", "/stop/web"),
];

/// Asserts a 401 with the failure envelope for every route (and an unknown one, so the
/// answer tells nothing about which routes exist), then that `web` was not touched.
fn assert_every_route_refused(sg: &Supergo, pid: i64, authorization: Option<&str>) {
    let unknown = [("GET", "/no-such-route")];
    for &(method, path) in ROUTES.iter().chain(unknown.iter()) {
        let response = call(sg, method, path, authorization);
        assert_eq!(
            response.status,
            401,
            "{method} {path} with Authorization {authorization:?}: {}{}",
            response.body,
            sg.dump()
        );
        let body: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
        assert!(
            body["status"].as_i64().is_some_and(|s| s != 0) && body["message"].is_string(),
            "{method} {path}: a 401 without the failure envelope: {}",
            response.body
        );
    }
    let web = sg.status("web");
    assert!(
        web["state"] == "Running" && web["pid"].as_i64() == Some(pid),
        "a refused request changed web (Running as pid {pid} before): {web}{}",
        sg.dump()
    );
}

#[test]
fn every_route_answers_401_without_the_token() {
    let (sg, pid) = start_with_token(
        "every_route_answers_401_without_the_token",
        &config(&format!("[supergo]\ntoken = \"{TOKEN}\"")),
        TOKEN,
    );
    assert_every_route_refused(&sg, pid, None);
}

#[test]
fn every_route_answers_401_with_a_wrong_token() {
    let (sg, pid) = start_with_token(
        "every_route_answers_401_with_a_wrong_token",
        &config(&format!("[supergo]\ntoken = \"{TOKEN}\"")),
        TOKEN,
    );
    let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let longer = format!("Bearer {TOKEN}x");
    let upper = format!("Bearer {}", TOKEN.to_uppercase());
    let basic = format!("Basic {TOKEN}");
    for wrong in [
        "Bearer wrong",
        prefix.as_str(),
        longer.as_str(),
        upper.as_str(),
        TOKEN,
        basic.as_str(),
        "Bearer ",
        "",
    ] {
        assert_every_route_refused(&sg, pid, Some(wrong));
    }
}

#[test]
fn every_route_answers_200_with_the_token() {
    let (sg, _) = start_with_token(
        "every_route_answers_200_with_the_token",
        &config(&format!("[supergo]\ntoken = \"{TOKEN}\"")),
        TOKEN,
    );
    let bearer = format!("Bearer {TOKEN}");
    for &(method, path) in ROUTES {
        let response = call(&sg, method, path, Some(&bearer));
        assert_eq!(
            response.status,
            200,
            "{method} {path} with the token: {}{}",
            response.body,
            sg.dump()
        );
    }
    sg.wait_state("web", "Stopped", TIMEOUT);
}

#[test]
fn token_file_guards_the_api() {
    let sg_config = config("[supergo]\ntoken_file = \"token.txt\"");
    let mut sg = Supergo::new("token_file_guards_the_api");
    sg.write_file("token.txt", &format!("{TOKEN}\n"));
    sg.token = Some(TOKEN.to_string());
    sg.write_config(&sg_config);
    sg.spawn(&[]);
    sg.wait_ready();
    let web = sg.wait_state("web", "Running", TIMEOUT);
    let pid = web["pid"].as_i64().unwrap_or(0);
    assert_every_route_refused(&sg, pid, None);
    assert_every_route_refused(&sg, pid, Some("Bearer wrong"));
    let response = call(&sg, "GET", "/status", Some(&format!("Bearer {TOKEN}")));
    assert_eq!(
        response.status, 200,
        "GET /status with the token from token_file"
    );
}

/// supergoctl with exactly `args` and `env` (the harness's `ctl` adds the right token).
fn ctl_raw(sg: &Supergo, args: &[&str], env: &[(&str, &str)]) -> Output {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, Ordering::SeqCst);
    let mut cmd = Command::new(supergoctl_bin());
    cmd.args(args)
        .current_dir(&sg.dir)
        .env_remove("SUPERGO_URL")
        .env_remove("SUPERGO_TOKEN")
        .envs(env.iter().copied());
    run_captured(
        &mut cmd,
        &sg.dir,
        &format!("ctl-token-{n}"),
        Duration::from_secs(30),
    )
}

fn assert_exit(sg: &Supergo, what: &str, out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: {}: stdout {:?}, stderr {:?}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        sg.dump()
    );
}

#[test]
fn ctl_token_flag_is_accepted() {
    let (sg, pid) = start_with_token(
        "ctl_token_flag_is_accepted",
        &config(&format!("[supergo]\ntoken = \"{TOKEN}\"")),
        TOKEN,
    );
    let out = ctl_raw(
        &sg,
        &["--url", &sg.control, "--token", TOKEN, "status"],
        &[],
    );
    assert_exit(&sg, "supergoctl --token s3cret status", &out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("web") && stdout.contains(&pid.to_string()),
        "supergoctl status does not show web (pid {pid}): {stdout:?}"
    );
}

#[test]
fn ctl_takes_the_token_from_supergo_token() {
    let (sg, pid) = start_with_token(
        "ctl_takes_the_token_from_supergo_token",
        &config(&format!("[supergo]\ntoken = \"{TOKEN}\"")),
        TOKEN,
    );
    let out = ctl_raw(
        &sg,
        &["--url", &sg.control, "status"],
        &[("SUPERGO_TOKEN", TOKEN)],
    );
    assert_exit(&sg, "SUPERGO_TOKEN=s3cret supergoctl status", &out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("web") && stdout.contains(&pid.to_string()),
        "supergoctl status does not show web (pid {pid}): {stdout:?}"
    );
}

#[test]
fn ctl_with_a_wrong_or_no_token_exits_4() {
    let (sg, pid) = start_with_token(
        "ctl_with_a_wrong_or_no_token_exits_4",
        &config(&format!("[supergo]\ntoken = \"{TOKEN}\"")),
        TOKEN,
    );
    let url = sg.control.as_str();
    // (what, arguments after --url, SUPERGO_TOKEN)
    let runs = [
        (
            "--token wrong status",
            vec!["--token", "wrong", "status"],
            None,
        ),
        ("SUPERGO_TOKEN=wrong status", vec!["status"], Some("wrong")),
        (
            "--token wrong stop web",
            vec!["--token", "wrong", "stop", "web"],
            None,
        ),
        ("status without a token", vec!["status"], None),
    ];
    for (what, args, env_token) in runs {
        let args: Vec<&str> = ["--url", url].into_iter().chain(args).collect();
        let env: Vec<(&str, &str)> = env_token
            .map(|t| ("SUPERGO_TOKEN", t))
            .into_iter()
            .collect();
        let out = ctl_raw(&sg, &args, &env);
        assert_exit(&sg, &format!("supergoctl {what}"), &out, 4);
        assert!(
            out.stdout.is_empty() && !out.stderr.is_empty(),
            "supergoctl {what}: the refusal belongs on stderr only: stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let web = sg.status("web");
    assert_eq!(
        web["pid"].as_i64(),
        Some(pid),
        "a refused stop touched web: {web}"
    );
}

// ---------------------------------------------------------------------------------------------
// Control address outside loopback

/// supergo whose control API is asked to listen on all interfaces (`--listen 0.0.0.0:P`);
/// `sg.control` is left at `127.0.0.1:P` for the requests.
fn spawn_on_all_interfaces(name: &str, daemon: &str) -> (Supergo, String) {
    let mut sg = Supergo::new(name);
    let port = free_port();
    let open = format!("0.0.0.0:{port}");
    sg.control = open.clone();
    sg.write_config(&config(daemon));
    sg.spawn(&[]);
    sg.control = format!("127.0.0.1:{port}");
    (sg, open)
}

#[test]
fn open_control_address_without_a_token_is_refused() {
    let (sg, open) = spawn_on_all_interfaces("open_control_address_without_a_token", "");
    let status = sg.wait_exit(TIMEOUT);
    assert!(
        !status.success(),
        "supergo started with its API open on {open} and no token{}",
        sg.dump()
    );
    let log = sg.log();
    assert!(
        log.contains(&open),
        "the refusal does not name the address {open}: {log}"
    );
    assert!(
        !sg.path("web-1.json").exists(),
        "a program was started although supergo refused to run{}",
        sg.dump()
    );
}

#[test]
fn open_control_address_starts_with_allow_insecure() {
    let (sg, _) = spawn_on_all_interfaces(
        "open_control_address_starts_with_allow_insecure",
        "[supergo]\nallow_insecure = true",
    );
    sg.wait_ready();
    sg.wait_state("web", "Running", TIMEOUT);
}

#[test]
fn open_control_address_starts_with_a_token() {
    let (mut sg, _) = spawn_on_all_interfaces(
        "open_control_address_starts_with_a_token",
        &format!("[supergo]\ntoken = \"{TOKEN}\""),
    );
    sg.token = Some(TOKEN.to_string());
    sg.wait_ready();
    sg.wait_state("web", "Running", TIMEOUT);
}

// ---------------------------------------------------------------------------------------------
// Idle connections and malformed requests

#[test]
fn idle_connections_do_not_hold_up_status() {
    let sg = Supergo::start("idle_connections_do_not_hold_up_status", &config(""));
    let web = sg.wait_state("web", "Running", TIMEOUT);
    let mut idle = Vec::new();
    for i in 0..200 {
        let mut stream = TcpStream::connect(&sg.control)
            .unwrap_or_else(|err| panic!("idle connection {i}: {err}{}", sg.dump()));
        // Half of them start a request and never finish it (slowloris).
        if i % 2 == 1 {
            let _ = stream.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n");
        }
        idle.push(stream);
    }
    // Generous: this is about answering at all, not about speed.
    let response = http_request(&sg.control, "GET", "/status", &[], Duration::from_secs(10))
        .unwrap_or_else(|err| {
            panic!(
                "GET /status with 200 idle connections open: {err}{}",
                sg.dump()
            )
        });
    assert_eq!(response.status, 200, "GET /status: {}", response.body);
    let body: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    let listed = body["data"].as_array().is_some_and(|list| {
        list.iter()
            .any(|p| p["name"] == "web" && p["pid"] == web["pid"])
    });
    assert!(listed, "GET /status does not list web: {}", response.body);
    drop(idle);
}

/// xorshift64*: a seeded, reproducible stream of numbers; no crate needed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// A length in `min..max`.
    fn len(&mut self, min: usize, max: usize) -> usize {
        min + self.below(max - min)
    }

    /// `min..max` random bytes.
    fn bytes(&mut self, min: usize, max: usize) -> Vec<u8> {
        let n = self.len(min, max);
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// `min..max` characters of printable ASCII but space.
    fn visible(&mut self, min: usize, max: usize) -> String {
        let n = self.len(min, max);
        (0..n)
            .map(|_| char::from(b'!' + self.below(94) as u8))
            .collect()
    }

    /// `min..max` lowercase letters and digits.
    fn alnum(&mut self, min: usize, max: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let n = self.len(min, max);
        (0..n)
            .map(|_| char::from(CHARS[self.below(CHARS.len())]))
            .collect()
    }
}

/// A request method: standard, wrong case, made up, with control bytes, empty, long.
fn fuzz_method(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => rng.alnum(1, 13).to_uppercase(),
        1 => rng.visible(1, 301),
        _ => rng
            .pick(&[
                "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT",
                "PRI", "get", "Post", "G\x01T", "", "GET\t",
            ])
            .to_string(),
    }
}

/// A target that no method can turn into a successful request: no route, a route with a bad
/// argument, an unknown program, a name with bad characters, a route without its name.
/// (Never `web` or `all` on an action route: the program must survive the fuzzing.)
fn fuzz_path(rng: &mut Rng) -> String {
    match rng.below(13) {
        0 => format!("/zz{}", rng.alnum(1, 13)),
        1 => format!("/zz{}", rng.visible(1, 81)),
        2 => "/zz%00%ff%zz%".to_string(),
        3 => "*".to_string(),
        4 => format!("http://{}/zz", rng.alnum(8, 9)),
        5 => format!("/zz/{}", "../".repeat(rng.len(1, 21))),
        6 => format!("/zz{}", "a".repeat(rng.len(1, 16 * 1024))),
        7 => format!(
            "/{}/{}{}",
            rng.pick(&["start", "stop", "restart", "log"]),
            rng.alnum(1, 9),
            rng.pick(&["%20x", ";x", "*", "'", "\"", "%2F", "$(id)", "\\", "!", "~"])
        ),
        8 => format!("/log/web?bytes=x{}", rng.visible(0, 20)),
        9 => format!("/log/web?offset=-{}", rng.below(1000)),
        10 => format!("/log/web?stream={}", rng.alnum(1, 11)),
        11 => rng
            .pick(&["/start", "/stop", "/restart", "/start/", "//stop//"])
            .to_string(),
        _ => format!(
            "/{}/nosuch{}",
            rng.pick(&["start", "stop", "restart", "log"]),
            rng.alnum(1, 9)
        ),
    }
}

/// A protocol version. HTTP/2.0 and HTTP/3.0 are left out: tiny_http treats them apart
/// (see `http2_request_line_gets_4xx_or_close`).
fn fuzz_version(rng: &mut Rng) -> String {
    if rng.chance(70) {
        return "HTTP/1.1".into();
    }
    rng.pick(&[
        "HTTP/1.0",
        "HTTP/0.9",
        "HTTP/1.2",
        "HTTP/9.9",
        "http/1.1",
        "HTTP/1.1 extra",
        "HTTP/",
        "",
        "HTTP/1.1\0",
        "HTTPS/1.1",
    ])
    .to_string()
}

/// One header line (with its CRLF), mostly broken one way or another.
fn fuzz_header(rng: &mut Rng) -> Vec<u8> {
    let line = match rng.below(14) {
        0 => format!("Host: {}", rng.alnum(1, 21)),
        1 => format!(
            "Connection: {}",
            rng.pick(&[
                "close",
                "keep-alive",
                "upgrade",
                "Upgrade, HTTP/2.0",
                "\x7f"
            ])
        ),
        2 => format!(
            "Content-Length: {}",
            rng.pick(&[
                "0",
                "5",
                "100000",
                "-1",
                "abc",
                "99999999999999999999999",
                "",
                "1, 2"
            ])
        ),
        3 => format!(
            "Transfer-Encoding: {}",
            rng.pick(&["chunked", "gzip", "chunked, chunked", "identity", "zz"])
        ),
        4 => format!(
            "Expect: {}",
            rng.pick(&["100-continue", "200-ok", "", "100-continue, x"])
        ),
        5 => format!("Authorization: Bearer {}", rng.visible(1, 41)),
        6 => format!("X-{}: {}", rng.alnum(1, 11), rng.visible(0, 100)),
        7 => rng.visible(1, 61),
        8 => "Bad Name: value".into(),
        9 => ": no name".into(),
        10 => format!(" folded {}", rng.alnum(5, 6)),
        11 => {
            // Bytes outside ASCII (never CR or LF: the line must stay one line).
            let mut line = b"X-Bin: ".to_vec();
            line.extend(rng.bytes(1, 51).into_iter().map(|b| {
                if b == b'\r' || b == b'\n' {
                    0xff
                } else {
                    b
                }
            }));
            line.extend_from_slice(b"\r\n");
            return line;
        }
        12 if rng.chance(30) => {
            // Oversized: far beyond what any real client sends.
            format!("X-Big: {}", "b".repeat(rng.len(8 * 1024, 208 * 1024)))
        }
        _ => format!("Cookie: {}", rng.visible(0, 200)),
    };
    let mut line = line.into_bytes();
    line.extend_from_slice(if rng.chance(5) { b"\n" } else { b"\r\n" });
    line
}

/// A body: random bytes, a broken chunked body, or a well-formed chunked one.
fn fuzz_body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(3) {
        0 => rng.bytes(0, 4096),
        1 => b"zz\r\nabc\r\n".to_vec(),
        _ => b"3\r\nabc\r\n0\r\n\r\n".to_vec(),
    }
}

/// One malformed request, and whether its method is HEAD (whose answer has no body).
fn malformed_request(rng: &mut Rng) -> (Vec<u8>, bool) {
    if rng.chance(10) {
        return (rng.bytes(1, 4097), false);
    }
    let method = fuzz_method(rng);
    let mut request = format!("{method} {} {}\r\n", fuzz_path(rng), fuzz_version(rng)).into_bytes();
    for _ in 0..rng.below(6) {
        request.extend(fuzz_header(rng));
    }
    request.extend_from_slice(b"\r\n");
    if rng.chance(30) {
        request.extend(fuzz_body(rng));
    }
    if rng.chance(5) {
        // A second request right behind the first.
        request.extend(format!("GET /zz{} HTTP/1.1\r\n\r\n", rng.alnum(6, 7)).into_bytes());
    }
    if rng.chance(20) {
        // Truncated anywhere before its end.
        let keep = 1 + rng.below(request.len() - 1);
        request.truncate(keep);
    }
    (request, method == "HEAD")
}

/// What one connection got back.
enum Outcome {
    /// The final (non-1xx) statuses of the answers, in order.
    Answered(Vec<u16>),
    /// Closed (or reset) without an answer.
    Closed,
    /// Neither an answer nor a close before the deadline.
    Hung,
    /// Bytes that are not an HTTP answer.
    Garbled(String),
    ConnectFailed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Answered(statuses) => write!(f, "answers with statuses {statuses:?}"),
            Outcome::Closed => write!(f, "a close without an answer"),
            Outcome::Hung => write!(f, "neither an answer nor a close within the deadline"),
            Outcome::Garbled(what) => write!(f, "a garbled answer: {what}"),
            Outcome::ConnectFailed(err) => write!(f, "no connection: {err}"),
        }
    }
}

/// Sends `request` on a new connection, closes our side, and reads until the server closes.
fn exchange(addr: SocketAddr, request: &[u8], head: bool, deadline: Duration) -> Outcome {
    let mut stream = match TcpStream::connect_timeout(&addr, deadline) {
        Ok(stream) => stream,
        Err(err) => return Outcome::ConnectFailed(err.to_string()),
    };
    let _ = stream.set_write_timeout(Some(deadline));
    // The server may answer and close before it has read everything: not an error.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(Shutdown::Write);
    let end = Instant::now() + deadline;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut hung = false;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            hung = true;
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                hung = true;
                break;
            }
            // Reset: a close, as far as the client can tell.
            Err(_) => break,
        }
    }
    match parse_statuses(&answer, head) {
        Err(garbled) => Outcome::Garbled(garbled),
        Ok(statuses) if !statuses.is_empty() => Outcome::Answered(statuses),
        Ok(_) if hung => Outcome::Hung,
        Ok(_) => Outcome::Closed,
    }
}

/// The final statuses of the answers in `bytes`; an answer cut short at the end is ignored
/// (the connection was closed inside it), anything else that is not HTTP is an error.
fn parse_statuses(bytes: &[u8], head: bool) -> Result<Vec<u16>, String> {
    let mut statuses = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some(head_len) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            let looks_http =
                rest.starts_with(b"HTTP/") || b"HTTP/".starts_with(&rest[..rest.len().min(5)]);
            if looks_http {
                break;
            }
            return Err(format!("not an HTTP answer: {}", show(rest)));
        };
        let text = String::from_utf8_lossy(&rest[..head_len]);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        // "HTTP/x.y NNN …" (tiny_http answers an HTTP/0.9 request with "HTTP/0.9").
        let status: u16 = status_line
            .strip_prefix("HTTP/")
            .filter(|s| s.as_bytes().get(3) == Some(&b' '))
            .and_then(|s| s.get(4..7))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let length = lines.find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        });
        at += head_len + 4;
        if (100..200).contains(&status) {
            continue;
        }
        let body = if (head && statuses.is_empty()) || status == 204 || status == 304 {
            0
        } else {
            // No length: the body runs to the close.
            length.unwrap_or(bytes.len() - at)
        };
        statuses.push(status);
        at = (at + body).min(bytes.len());
    }
    Ok(statuses)
}

/// Bytes for a message: escaped, and cut to a readable length.
fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(300)];
    let more = if bytes.len() > cut.len() {
        format!("… ({} bytes)", bytes.len())
    } else {
        String::new()
    };
    format!("\"{}\"{more}", cut.escape_ascii())
}

/// Counts of what the fuzzing saw, and the first failures word for word.
#[derive(Default)]
struct Tally {
    client_errors: usize,
    closed: usize,
    failures: Vec<String>,
}

const FUZZ_SEED: u64 = 0x5eed_c0de;
const FUZZ_THREADS: u64 = 4;
const FUZZ_PER_THREAD: usize = 750;

#[test]
fn malformed_requests_get_4xx_or_close_never_5xx() {
    let sg = Supergo::start("malformed_requests_get_4xx_or_close_never_5xx", &config(""));
    let web = sg.wait_state("web", "Running", TIMEOUT);
    let addr: SocketAddr = sg.control.parse().expect("a socket address");
    let workers: Vec<_> = (0..FUZZ_THREADS)
        .map(|t| {
            thread::spawn(move || {
                let seed = FUZZ_SEED + t;
                let mut rng = Rng::new(seed);
                let mut tally = Tally::default();
                for i in 0..FUZZ_PER_THREAD {
                    let (request, head) = malformed_request(&mut rng);
                    let outcome = exchange(addr, &request, head, Duration::from_secs(5));
                    let fine = match &outcome {
                        Outcome::Answered(statuses) => {
                            statuses.iter().all(|s| (400..500).contains(s))
                        }
                        Outcome::Closed => true,
                        _ => false,
                    };
                    match outcome {
                        Outcome::Answered(_) if fine => tally.client_errors += 1,
                        Outcome::Closed => tally.closed += 1,
                        other => tally.failures.push(format!(
                            "seed {seed:#x}, request {i}: {other} for {}",
                            show(&request)
                        )),
                    }
                    // A broken server could make every request wait for the deadline.
                    if tally.failures.len() >= 5 {
                        break;
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.join().expect("a fuzzing thread panicked");
        total.client_errors += tally.client_errors;
        total.closed += tally.closed;
        total.failures.extend(tally.failures);
    }
    assert!(
        total.failures.is_empty(),
        "malformed requests got something other than a 4xx or a close \
         ({} answered 4xx, {} closed):\n{}{}",
        total.client_errors,
        total.closed,
        total.failures.join("\n"),
        sg.dump()
    );
    // The requests did reach supergo's API (a wrong address would only ever "close").
    assert!(
        total.client_errors > FUZZ_PER_THREAD,
        "only {} of the malformed requests got an answer ({} closed){}",
        total.client_errors,
        total.closed,
        sg.dump()
    );

    assert!(
        sg.try_exit_status().is_none(),
        "supergo exited during the fuzzing{}",
        sg.dump()
    );
    let after = sg.status("web");
    assert!(
        after["state"] == "Running" && after["pid"] == web["pid"],
        "web changed during the fuzzing (was {web}): {after}{}",
        sg.dump()
    );
    let (code, body) = http_get(&sg.app_addr(), "/")
        .unwrap_or_else(|err| panic!("web no longer serves: {err}{}", sg.dump()));
    assert!(
        code == 200 && body.starts_with("pid: "),
        "web answers {code} {body:?}"
    );
}

/// An HTTP/2.0 or HTTP/3.0 request line (a client speaking the wrong protocol) must be
/// refused like any other malformed request: a 4xx or a close, never a connection left
/// hanging with a handler thread stuck on it.
#[test]
fn http2_request_line_gets_4xx_or_close() {
    let sg = Supergo::start("http2_request_line_gets_4xx_or_close", &config(""));
    let addr: SocketAddr = sg.control.parse().expect("a socket address");
    for version in ["HTTP/2.0", "HTTP/3.0"] {
        let request = format!("GET /status {version}\r\nHost: x\r\n\r\n");
        let outcome = exchange(addr, request.as_bytes(), false, Duration::from_secs(5));
        let fine = match &outcome {
            Outcome::Answered(statuses) => statuses.iter().all(|s| (400..500).contains(s)),
            Outcome::Closed => true,
            _ => false,
        };
        assert!(
            fine,
            "{request:?} got {outcome}, not a 4xx or a close{}",
            sg.dump()
        );
    }
}
