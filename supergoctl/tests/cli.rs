//! End-to-end tests of the real `supergoctl` binary against a fake supergo: a std
//! `TcpListener` on 127.0.0.1:0, in a thread, that answers each route with canned JSON
//! and records the requests it got. Each test checks stdout, stderr and the exit status.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request as the fake daemon saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path with the query string.
    target: String,
    headers: HashMap<String, String>,
}

/// A canned answer: HTTP status and body.
type Reply = (u16, String);

struct FakeSupergo {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeSupergo {
    /// `routes`: "METHOD /path" (query ignored) -> answers served in order, the last one
    /// repeated. Unknown routes get a 404 envelope.
    fn start(routes: Vec<(&str, Vec<Reply>)>) -> FakeSupergo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake supergo");
        let addr = listener.local_addr().expect("local addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut table: HashMap<String, (Vec<Reply>, usize)> = routes
            .into_iter()
            .map(|(k, v)| (k.to_string(), (v, 0)))
            .collect();
        let log = Arc::clone(&seen);
        // The thread ends with the test process.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Some(req) = read_request(&stream) else {
                    continue;
                };
                let path = req.target.split('?').next().unwrap_or("").to_string();
                let key = format!("{} {}", req.method, path);
                log.lock().expect("log lock").push(req);
                let reply = match table.get_mut(&key) {
                    Some((answers, next)) => {
                        let i = (*next).min(answers.len() - 1);
                        *next += 1;
                        answers[i].clone()
                    }
                    None => (404, r#"{"status":1,"message":"no such route"}"#.to_string()),
                };
                write_reply(stream, reply);
            }
        });
        FakeSupergo { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        target,
        headers,
    })
}

fn write_reply(mut stream: TcpStream, (code, body): Reply) {
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Error",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn ok(data: &str) -> Reply {
    (
        200,
        format!(r#"{{"status":0,"message":"ok","data":{data}}}"#),
    )
}

/// Runs supergoctl with a clean environment.
fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_supergoctl"))
        .args(args)
        .env_remove("SUPERGO_URL")
        .env_remove("SUPERGO_TOKEN")
        .output()
        .expect("run supergoctl")
}

struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(args: &[&str]) -> Run {
        let out = ctl(args);
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Everything about the run, for failure messages.
    fn dump(&self) -> String {
        format!(
            "\nsupergoctl {:?}\nexit: {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    fn expect(&self, code: i32, stdout: &str, stderr: &str) {
        assert_eq!(self.code, Some(code), "exit status{}", self.dump());
        assert_eq!(self.stdout, stdout, "stdout{}", self.dump());
        assert_eq!(self.stderr, stderr, "stderr{}", self.dump());
    }
}

const STATUS: &str = r#"[
 {"name":"web","state":"Running","pid":1234,"generation":3,"start_time":1764000000,
  "stop_time":0,"uptime_secs":312.5,"listeners":["127.0.0.1:4041"],
  "draining":[{"pid":1200,"generation":2,"since":1764000000,"kill_at":1764000010}],
  "restarts":0,"last_exit":null,"error":null,"status_text":null},
 {"name":"worker","state":"Backoff","pid":0,"uptime_secs":0,"listeners":[],"draining":[],
  "restarts":2,"last_exit":"exited with status 1","error":null},
 {"name":"legacy","state":"Stopped","pid":0,"start_time":0,"stop_time":0,"listeners":null}
]"#;

#[test]
fn status_prints_an_aligned_table() {
    let fake = FakeSupergo::start(vec![("GET /status", vec![ok(STATUS)])]);
    Run::of(&["--url", &fake.addr, "status"]).expect(
        0,
        "NAME    STATE    PID   UPTIME  LISTENERS       DRAINING  INFO\n\
         web     Running  1234  5m12s   127.0.0.1:4041  1200\n\
         worker  Backoff  -     -       -               -         \
         last exit: exited with status 1; 2 restarts\n\
         legacy  Stopped  -     -       -               -\n",
        "",
    );
}

#[test]
fn status_of_named_programs_filters_the_table() {
    let fake = FakeSupergo::start(vec![("GET /status", vec![ok(STATUS)])]);
    Run::of(&["-url", &format!("http://{}", fake.addr), "status", "legacy"]).expect(
        0,
        "NAME    STATE    PID  UPTIME  LISTENERS  DRAINING\n\
         legacy  Stopped  -    -       -          -\n",
        "",
    );
}

#[test]
fn status_of_an_unknown_program_exits_1() {
    let fake = FakeSupergo::start(vec![("GET /status", vec![ok(STATUS)])]);
    let run = Run::of(&["--url", &fake.addr, "status", "web", "nope"]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert!(run.stdout.starts_with("NAME "), "{}", run.dump());
    assert_eq!(
        run.stderr,
        "supergoctl: no such program: nope\n",
        "{}",
        run.dump()
    );
}

#[test]
fn start_of_an_unknown_program_prints_the_daemons_message_and_exits_1() {
    let fake = FakeSupergo::start(vec![(
        "POST /start/nope",
        vec![(
            404,
            r#"{"status":1,"message":"program not found","data":null}"#.into(),
        )],
    )]);
    Run::of(&["--url", &fake.addr, "start", "nope"]).expect(
        1,
        "",
        "supergoctl: nope: program not found\n",
    );
}

#[test]
fn an_error_sent_with_http_200_like_the_original_supergo_still_exits_1() {
    let fake = FakeSupergo::start(vec![(
        "POST /stop/nope",
        vec![(200, r#"{"status":1,"message":"program not found"}"#.into())],
    )]);
    Run::of(&["--url", &fake.addr, "stop", "nope"]).expect(
        1,
        "",
        "supergoctl: nope: program not found\n",
    );
}

#[test]
fn start_keeps_going_after_one_failure() {
    let fake = FakeSupergo::start(vec![
        ("POST /start/a", vec![ok("null")]),
        (
            "POST /start/b",
            vec![(
                409,
                r#"{"status":1,"message":"b is already running"}"#.into(),
            )],
        ),
        (
            "POST /start/c",
            vec![(200, r#"{"status":0,"message":"c started"}"#.into())],
        ),
    ]);
    Run::of(&["--url", &fake.addr, "start", "a", "b", "c"]).expect(
        1,
        "a: started\nc started\n",
        "supergoctl: b is already running\n",
    );
}

#[test]
fn unreachable_daemon_exits_3_and_says_so() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    Run::of(&["--url", &addr, "status"]).expect(
        3,
        "",
        &format!(
            "supergoctl: cannot reach supergo at {addr}: connection refused — is it running?\n"
        ),
    );
}

#[test]
fn refused_token_exits_4() {
    let fake = FakeSupergo::start(vec![(
        "GET /status",
        vec![(401, r#"{"status":1,"message":"bad token"}"#.into())],
    )]);
    Run::of(&["--url", &fake.addr, "--token", "wrong", "status"]).expect(
        4,
        "",
        "supergoctl: supergo refused the token: bad token (check --token or SUPERGO_TOKEN)\n",
    );
}

#[test]
fn token_from_the_environment_is_sent_as_a_bearer_header() {
    let fake = FakeSupergo::start(vec![("GET /status", vec![ok("[]")])]);
    let out = Command::new(env!("CARGO_BIN_EXE_supergoctl"))
        .arg("status")
        .env("SUPERGO_URL", &fake.addr)
        .env("SUPERGO_TOKEN", "s3cret")
        .output()
        .expect("run supergoctl");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no programs configured\n"
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].headers.get("authorization").map(String::as_str),
        Some("Bearer s3cret")
    );
}

#[test]
fn unknown_command_is_a_usage_error_exit_2() {
    let run = Run::of(&["frobnicate"]);
    assert_eq!(run.code, Some(2), "{}", run.dump());
    assert_eq!(run.stdout, "", "{}", run.dump());
    assert!(
        run.stderr
            .starts_with("supergoctl: unknown command 'frobnicate'")
            && run.stderr.contains("supergoctl --help")
            && run.stderr.lines().count() == 1,
        "{}",
        run.dump()
    );
}

#[test]
fn missing_program_name_is_a_usage_error_exit_2() {
    Run::of(&["restart"]).expect(
        2,
        "",
        "supergoctl: 'restart' needs a program name or 'all' \
         (usage: supergoctl restart [--no-wait] NAME...|all)\n",
    );
}

#[test]
fn help_mentions_that_status_exits_0_for_stopped_programs() {
    let run = Run::of(&["--help"]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(run
        .stdout
        .contains("`status` exits 0 even when programs are stopped"));
    assert_eq!(run.stderr, "");
}

#[test]
fn restart_success_prints_pids_and_handoff_time() {
    let fake = FakeSupergo::start(vec![(
        "POST /restart/web",
        vec![ok(
            r#"{"name":"web","old_pid":1200,"new_pid":1234,"handoff_ms":1003.2}"#,
        )],
    )]);
    Run::of(&["--url", &fake.addr, "restart", "web"]).expect(
        0,
        "web: restarted, pid 1200 -> 1234 (ready in 1003 ms)\n",
        "",
    );
    assert_eq!(fake.seen()[0].target, "/restart/web");
}

#[test]
fn restart_failure_says_the_old_process_keeps_serving_and_exits_1() {
    let fake = FakeSupergo::start(vec![(
        "POST /restart/web",
        vec![(
            500,
            r#"{"status":1,"message":"web: restart failed: new process (pid 1240) exited with status 1 before it was ready","data":{"name":"web","old_pid":1200,"new_pid":1240}}"#
                .into(),
        )],
    )]);
    Run::of(&["--url", &fake.addr, "restart", "web"]).expect(
        1,
        "",
        "supergoctl: web: restart failed: new process (pid 1240) exited with status 1 \
         before it was ready; pid 1200 keeps serving\n",
    );
}

#[test]
fn restart_failure_message_that_already_names_the_serving_pid_is_not_repeated() {
    // The shape supergo's worker sends: the reason in `message`, the serving pid in `pid`.
    let fake = FakeSupergo::start(vec![(
        "POST /restart/web",
        vec![(
            500,
            r#"{"status":1,"message":"web: restart failed: new pid 1240 (generation 4) exited with status 1; pid 1200 keeps serving","data":{"name":"web","state":"Running","pid":1200}}"#
                .into(),
        )],
    )]);
    Run::of(&["--url", &fake.addr, "restart", "web"]).expect(
        1,
        "",
        "supergoctl: web: restart failed: new pid 1240 (generation 4) exited with status 1; \
         pid 1200 keeps serving\n",
    );
}

#[test]
fn restart_failure_without_a_reason_in_the_message_names_the_serving_pid() {
    let fake = FakeSupergo::start(vec![(
        "POST /restart/web",
        vec![(
            500,
            r#"{"status":1,"message":"not ready within 60 s","data":{"name":"web","pid":1200}}"#
                .into(),
        )],
    )]);
    Run::of(&["--url", &fake.addr, "restart", "web"]).expect(
        1,
        "",
        "supergoctl: web: restart failed: not ready within 60 s; pid 1200 keeps serving\n",
    );
}

#[test]
fn restart_all_reports_each_program() {
    let fake = FakeSupergo::start(vec![(
        "POST /restart/all",
        vec![(
            500,
            r#"{"status":1,"message":"1 of 2 restarts failed","data":[
              {"name":"web","ok":true,"message":"restarted","old_pid":1,"new_pid":2,"handoff_ms":10},
              {"name":"api","ok":false,"message":"not ready within 60 s","old_pid":3,"new_pid":4}]}"#
                .into(),
        )],
    )]);
    Run::of(&["--url", &fake.addr, "restart", "all"]).expect(
        1,
        "web: restarted, pid 1 -> 2 (ready in 10 ms)\n",
        "supergoctl: api: restart failed: not ready within 60 s; pid 3 keeps serving\n",
    );
}

#[test]
fn restart_no_wait_asks_supergo_not_to_wait() {
    let fake = FakeSupergo::start(vec![(
        "POST /restart/web",
        vec![(
            200,
            r#"{"status":0,"message":"restart of web started","data":["web"]}"#.into(),
        )],
    )]);
    Run::of(&["--url", &fake.addr, "restart", "--no-wait", "web"]).expect(
        0,
        "restart of web started\n",
        "",
    );
    assert_eq!(fake.seen()[0].target, "/restart/web?wait=false");
}

#[test]
fn json_prints_the_raw_answer() {
    let body = r#"{"status":0,"message":"ok","data":{"inserts":["a"],"deletes":[],"updates":[]}}"#;
    let fake = FakeSupergo::start(vec![("GET /reread", vec![(200, body.into())])]);
    Run::of(&["--url", &fake.addr, "--json", "reread"]).expect(0, &format!("{body}\n"), "");
}

#[test]
fn reread_lists_the_changes() {
    let fake = FakeSupergo::start(vec![(
        "GET /reread",
        vec![ok(
            r#"{"inserts":["a","b"],"deletes":[],"updates":["web"]}"#,
        )],
    )]);
    Run::of(&["--url", &fake.addr, "reread"]).expect(
        0,
        "added:   a, b\nchanged: web\n(run 'supergoctl update' to apply)\n",
        "",
    );
}

#[test]
fn update_failure_of_one_program_exits_1() {
    let fake = FakeSupergo::start(vec![(
        "POST /update",
        vec![(
            500,
            r#"{"status":1,"message":"update incomplete","data":[
              {"name":"a","action":"added","ok":true,"message":""},
              {"name":"web","action":"changed","ok":false,"message":"cannot listen on 127.0.0.1:80: permission denied"}]}"#
                .into(),
        )],
    )]);
    Run::of(&["--url", &fake.addr, "update"]).expect(
        1,
        "a: added\n",
        "supergoctl: web: change failed: cannot listen on 127.0.0.1:80: permission denied\n",
    );
}

#[test]
fn an_answer_that_is_not_json_is_reported_not_unwrapped() {
    let fake = FakeSupergo::start(vec![("GET /status", vec![(200, "<html>hi</html>".into())])]);
    let run = Run::of(&["--url", &fake.addr, "status"]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert!(
        run.stderr.contains("not supergo's JSON: '<html>hi</html>'"),
        "{}",
        run.dump()
    );
}

#[test]
fn tail_prints_the_text() {
    let fake = FakeSupergo::start(vec![(
        "GET /log/web",
        vec![ok(r#"{"text":"line 1\nline 2\n","offset":14}"#)],
    )]);
    Run::of(&["--url", &fake.addr, "tail", "web", "stderr"]).expect(0, "line 1\nline 2\n", "");
    assert_eq!(fake.seen()[0].target, "/log/web?stream=stderr&bytes=16384");
}

#[test]
fn tail_against_a_supergo_without_logs_explains() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = read_request(&stream);
            write_reply(stream, (404, "404 page not found".into()));
        }
    });
    Run::of(&["--url", &addr, "tail", "web"]).expect(
        1,
        "",
        "supergoctl: web: this supergo does not serve logs (GET /log answered HTTP 404); \
         read the program's stdout_file / stderr_file instead\n",
    );
}

#[test]
fn tail_follow_prints_only_new_output() {
    // The second answer repeats old text (a daemon that ignores `offset`): only the
    // bytes past the previous offset may be printed.
    let fake = FakeSupergo::start(vec![(
        "GET /log/web",
        vec![
            ok(r#"{"text":"one\n","offset":4}"#),
            ok(r#"{"text":"one\ntwo\n","offset":8}"#),
            ok(r#"{"text":"","offset":8}"#),
        ],
    )]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_supergoctl"))
        .args(["--url", &fake.addr, "tail", "-f", "web"])
        .env_remove("SUPERGO_URL")
        .env_remove("SUPERGO_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn supergoctl");
    let stdout = child.stdout.take().expect("stdout pipe");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < 2 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(line);
        }
    }
    // Let a few more polls happen: nothing more may be printed.
    let wait_for_polls = Instant::now() + Duration::from_secs(10);
    while fake.seen().len() < 4 && Instant::now() < wait_for_polls {
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(100));
    while let Ok(line) = rx.try_recv() {
        got.push(line);
    }
    let still_running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still_running, "tail -f exited on its own; got {got:?}");
    assert_eq!(got, vec!["one", "two"]);
    let seen = fake.seen();
    assert!(seen.len() >= 4, "{seen:?}");
    assert_eq!(
        seen[1].target,
        "/log/web?stream=stdout&bytes=16384&offset=4"
    );
    assert_eq!(
        seen[3].target,
        "/log/web?stream=stdout&bytes=16384&offset=8"
    );
}

const UPGRADED: &str = "upgraded: supergo 0.1.0 -> 0.2.0 (pid 4242 kept), 12 programs kept, \
                        0 restarted, in 14 ms";

#[test]
fn upgrade_posts_and_prints_the_new_images_message() {
    let fake = FakeSupergo::start(vec![(
        "POST /upgrade",
        vec![(
            200,
            format!(r#"{{"status":0,"message":"{UPGRADED}","data":null}}"#),
        )],
    )]);
    Run::of(&["--url", &fake.addr, "upgrade"]).expect(0, &format!("{UPGRADED}\n"), "");
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, "/upgrade");
}

#[test]
fn upgrade_binary_goes_in_the_query_url_encoded() {
    let fake = FakeSupergo::start(vec![(
        "POST /upgrade",
        vec![(200, format!(r#"{{"status":0,"message":"{UPGRADED}"}}"#))],
    )]);
    Run::of(&[
        "--url",
        &fake.addr,
        "upgrade",
        "--binary",
        "/opt/super go/supergo-0.2+é",
    ])
    .expect(0, &format!("{UPGRADED}\n"), "");
    assert_eq!(
        fake.seen()[0].target,
        "/upgrade?binary=%2Fopt%2Fsuper%20go%2Fsupergo-0.2%2B%C3%A9"
    );
}

#[test]
fn upgrade_binary_relative_path_is_taken_from_the_current_directory() {
    let fake = FakeSupergo::start(vec![(
        "POST /upgrade",
        vec![(200, format!(r#"{{"status":0,"message":"{UPGRADED}"}}"#))],
    )]);
    // Canonical, so that the directory supergoctl finds itself in is spelled the same.
    let cwd = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).expect("manifest dir");
    let out = Command::new(env!("CARGO_BIN_EXE_supergoctl"))
        .args(["--url", &fake.addr, "upgrade", "--binary", "new/supergo"])
        .current_dir(&cwd)
        .env_remove("SUPERGO_URL")
        .env_remove("SUPERGO_TOKEN")
        .output()
        .expect("run supergoctl");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let expected: String = format!("{}/new/supergo", cwd.display())
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    assert_eq!(fake.seen()[0].target, format!("/upgrade?binary={expected}"));
}

#[test]
fn upgrade_against_a_supergo_without_it_exits_1_with_the_daemons_404_message() {
    // Byte for byte what supergo answers today for a route it does not have.
    let fake = FakeSupergo::start(vec![(
        "POST /upgrade",
        vec![(
            404,
            r#"{"data":null,"message":"no route /upgrade: see GET /status, /reread, /log/NAME; POST /update, /start|stop|restart/NAME","status":404}"#
                .into(),
        )],
    )]);
    Run::of(&["--url", &fake.addr, "upgrade"]).expect(
        1,
        "",
        "supergoctl: upgrade failed: this supergo cannot upgrade in place (POST /upgrade \
         answered HTTP 404: no route /upgrade: see GET /status, /reread, /log/NAME; \
         POST /update, /start|stop|restart/NAME)\n",
    );
}

#[test]
fn upgrade_refused_exits_1_with_the_reason() {
    let fake = FakeSupergo::start(vec![(
        "POST /upgrade",
        vec![(
            409,
            r#"{"status":1,"message":"an upgrade is already running (to /usr/local/bin/supergo)"}"#
                .into(),
        )],
    )]);
    Run::of(&["--url", &fake.addr, "upgrade"]).expect(
        1,
        "",
        "supergoctl: upgrade failed: an upgrade is already running (to /usr/local/bin/supergo)\n",
    );
}

#[test]
fn upgrade_usage_errors_exit_2_without_a_request() {
    let fake = FakeSupergo::start(vec![]);
    for args in [
        &["upgrade", "/usr/local/bin/supergo"][..],
        &["status", "--binary", "/usr/local/bin/supergo"],
        &["upgrade", "--binary", ""],
    ] {
        let mut all = vec!["--url", &fake.addr];
        all.extend_from_slice(args);
        let run = Run::of(&all);
        assert_eq!(run.code, Some(2), "{}", run.dump());
        assert!(run.stdout.is_empty(), "{}", run.dump());
        assert!(run.stderr.starts_with("supergoctl: "), "{}", run.dump());
    }
    assert!(fake.seen().is_empty(), "{:?}", fake.seen());
}

#[test]
fn help_lists_upgrade_and_its_option() {
    let run = Run::of(&["--help"]);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(
        run.stdout.contains("upgrade [--binary PATH]"),
        "{}",
        run.dump()
    );
    let run = Run::of(&["frobnicate"]);
    assert!(run.stderr.contains(", upgrade, "), "{}", run.dump());
}

/// Serves every connection with `answer`, written as it is (the head included).
fn serve_raw(answer: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = read_request(&stream);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    addr
}

#[test]
fn status_reads_a_chunked_answer_as_gos_net_http_sends_it() {
    let addr = serve_raw(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         18\r\n{\"status\":0,\"data\":[{\"na\r\n\
         1A\r\nme\":\"web\",\"state\":\"Running\r\n\
         d;ext=1\r\n\",\"pid\":42}]}\r\n\
         0\r\nX-Trailer: 1\r\n\r\n",
    );
    Run::of(&["--url", &addr, "status"]).expect(
        0,
        "NAME  STATE    PID  UPTIME  LISTENERS  DRAINING\nweb   Running  42   -       -          -\n",
        "",
    );
}

#[test]
fn status_reads_an_answer_that_ends_when_the_connection_closes() {
    let addr = serve_raw(
        "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n\
         {\"status\":0,\"data\":[{\"name\":\"web\",\"state\":\"Stopped\",\"pid\":0}]}",
    );
    Run::of(&["--url", &addr, "status"]).expect(
        0,
        "NAME  STATE    PID  UPTIME  LISTENERS  DRAINING\nweb   Stopped  -    -       -          -\n",
        "",
    );
}

#[test]
fn an_answer_that_is_not_http_is_a_clear_error() {
    let addr = serve_raw("SSH-2.0-OpenSSH_9.6\r\n");
    let run = Run::of(&["--url", &addr, "status"]);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert_eq!(
        run.stderr,
        format!(
            "supergoctl: supergo at {addr} sent a malformed HTTP answer: \
             not an HTTP status line: 'SSH-2.0-OpenSSH_9.6'\n"
        ),
        "{}",
        run.dump()
    );
}

#[test]
fn a_connection_closed_without_an_answer_exits_3() {
    let addr = serve_raw("");
    let run = Run::of(&["--url", &addr, "status"]);
    assert_eq!(run.code, Some(3), "{}", run.dump());
    assert_eq!(
        run.stderr,
        format!(
            "supergoctl: cannot reach supergo at {addr}: the connection was closed before \
             an answer came — did supergo exit?\n"
        ),
        "{}",
        run.dump()
    );
}
