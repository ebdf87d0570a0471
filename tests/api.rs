//! The control API on the real daemon (DESIGN.md, "Control API"): each route's HTTP status
//! and the `{"status", "message", "data"}` envelope (status 0 on success, non-zero
//! otherwise), `/metrics` as Prometheus text, `/log` tails; and `supergoctl` against it
//! (README, "A short tour": output, `--json`, `SUPERGO_URL`, exit statuses 0/1/2/3).

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::util::{
    poll_until, run_captured, supergoctl_bin, wait_pid_gone, HttpResponse, Supergo, TIMEOUT,
};

/// One served program, `web`, with its output in files; `extra` adds keys to it.
fn web_config(extra: &str) -> String {
    format!(
        r#"
[program.web]
command = "{{probe}} serve"
listen_addrs = ["127.0.0.1:{{port}}"]
start_secs = 0.2
stop_timeout = 2
stdout_file = "{{dir}}/web.out"
stderr_file = "{{dir}}/web.err"
{extra}
"#
    )
}

/// supergo running `web`; the pid of its serving process.
fn start_web(name: &str) -> (Supergo, i64) {
    let sg = Supergo::start(name, &web_config(""));
    let status = sg.wait_state("web", "Running", TIMEOUT);
    let pid = status["pid"].as_i64().unwrap_or(0);
    assert!(
        pid > 0,
        "web is Running without a pid: {status}{}",
        sg.dump()
    );
    (sg, pid)
}

/// Asserts the envelope: `status` (0 exactly when `ok`), `message` a string, `data` present.
fn assert_envelope(sg: &Supergo, what: &str, body: &Value, ok: bool) {
    let status = body["status"].as_i64();
    let fine = match status {
        Some(0) => ok,
        Some(_) => !ok,
        None => false,
    };
    assert!(
        fine && body["message"].is_string() && body.get("data").is_some(),
        "{what}: not the envelope of a {}: {body}{}",
        if ok {
            "success (status 0)"
        } else {
            "failure (status non-zero)"
        },
        sg.dump()
    );
}

/// `method path` answers `http` with the envelope of a failure whose message holds `names`.
fn assert_refused(sg: &Supergo, method: &str, path: &str, http: u16, names: &str) {
    let (code, body) = sg.api(method, path);
    assert_eq!(code, http, "{method} {path}: {body}{}", sg.dump());
    assert_envelope(sg, &format!("{method} {path}"), &body, false);
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(names),
        "{method} {path}: the message does not name {names:?}: {message:?}{}",
        sg.dump()
    );
}

/// Asserts that `web` still runs as `pid`: a refused request changed nothing.
fn assert_unchanged(sg: &Supergo, pid: i64) {
    let status = sg.status("web");
    assert!(
        status["state"] == "Running" && status["pid"].as_i64() == Some(pid),
        "a refused request changed web (was Running as pid {pid}): {status}{}",
        sg.dump()
    );
}

#[test]
fn status_answers_200_with_the_envelope() {
    let (sg, pid) = start_web("status_answers_200_with_the_envelope");
    let (code, body) = sg.api("GET", "/status");
    assert_eq!(code, 200, "GET /status: {body}{}", sg.dump());
    assert_envelope(&sg, "GET /status", &body, true);
    let web = sg.status("web");
    for key in [
        "name",
        "pid",
        "start_time",
        "stop_time",
        "state",
        "listeners",
    ] {
        assert!(
            web.get(key).is_some(),
            "the status entry has no `{key}`: {web}{}",
            sg.dump()
        );
    }
    assert_eq!(web["pid"].as_i64(), Some(pid), "{web}");
    assert_eq!(web["state"], "Running", "{web}");
}

#[test]
fn start_answers_200_and_starts_the_program() {
    let sg = Supergo::start(
        "start_answers_200_and_starts_the_program",
        &web_config("autostart = false"),
    );
    sg.wait_state("web", "Stopped", TIMEOUT);
    let (code, body) = sg.api("POST", "/start/web");
    assert_eq!(code, 200, "POST /start/web: {body}{}", sg.dump());
    assert_envelope(&sg, "POST /start/web", &body, true);
    let web = sg.wait_state("web", "Running", TIMEOUT);
    assert!(web["pid"].as_i64().unwrap_or(0) > 0, "{web}");
}

#[test]
fn stop_answers_200_and_stops_the_program() {
    let (sg, pid) = start_web("stop_answers_200_and_stops_the_program");
    let (code, body) = sg.api("POST", "/stop/web");
    assert_eq!(code, 200, "POST /stop/web: {body}{}", sg.dump());
    assert_envelope(&sg, "POST /stop/web", &body, true);
    sg.wait_state("web", "Stopped", TIMEOUT);
    wait_pid_gone(i32::try_from(pid).expect("a pid"), TIMEOUT);
}

#[test]
fn restart_answers_200_with_old_and_new_pid() {
    let (sg, pid) = start_web("restart_answers_200_with_old_and_new_pid");
    let (code, body) = sg.api("POST", "/restart/web");
    assert_eq!(code, 200, "POST /restart/web: {body}{}", sg.dump());
    assert_envelope(&sg, "POST /restart/web", &body, true);
    let new_pid = body["data"]["new_pid"].as_i64();
    assert_eq!(body["data"]["old_pid"].as_i64(), Some(pid), "{body}");
    assert!(
        new_pid.is_some_and(|new| new > 0 && new != pid),
        "no new pid in {body}{}",
        sg.dump()
    );
    assert_eq!(sg.status("web")["pid"].as_i64(), new_pid);
}

#[test]
fn unknown_program_answers_404() {
    let (sg, pid) = start_web("unknown_program_answers_404");
    for (method, path) in [
        ("POST", "/start/nosuch"),
        ("POST", "/stop/nosuch"),
        ("POST", "/restart/nosuch"),
        ("GET", "/log/nosuch"),
    ] {
        assert_refused(&sg, method, path, 404, "nosuch");
    }
    assert_unchanged(&sg, pid);
}

#[test]
fn unknown_route_answers_404() {
    let (sg, _) = start_web("unknown_route_answers_404");
    for (method, path) in [
        ("GET", "/nosuch"),
        ("GET", "/status/web/extra"),
        ("POST", "/frobnicate/web"),
    ] {
        let (code, body) = sg.api(method, path);
        assert_eq!(code, 404, "{method} {path}: {body}{}", sg.dump());
        assert_envelope(&sg, &format!("{method} {path}"), &body, false);
    }
}

#[test]
fn wrong_method_answers_405() {
    let (sg, pid) = start_web("wrong_method_answers_405");
    for (method, path) in [
        ("DELETE", "/status"),
        ("PUT", "/stop/web"),
        ("DELETE", "/restart/web"),
        ("POST", "/metrics"),
        ("PUT", "/log/web"),
    ] {
        let (code, body) = sg.api(method, path);
        assert_eq!(code, 405, "{method} {path}: {body}{}", sg.dump());
        assert_envelope(&sg, &format!("{method} {path}"), &body, false);
    }
    assert_unchanged(&sg, pid);
}

#[test]
fn non_numeric_log_bytes_answers_400() {
    let (sg, _) = start_web("non_numeric_log_bytes_answers_400");
    assert_refused(&sg, "GET", "/log/web?bytes=abc", 400, "abc");
}

#[test]
fn program_name_with_bad_characters_answers_400() {
    let (sg, pid) = start_web("program_name_with_bad_characters_answers_400");
    for (method, path) in [
        ("POST", "/start/my%20web"),
        ("POST", "/stop/we%2Fb"),
        ("POST", "/restart/web;rm"),
        ("GET", "/log/web*"),
    ] {
        let (code, body) = sg.api(method, path);
        assert_eq!(code, 400, "{method} {path}: {body}{}", sg.dump());
        assert_envelope(&sg, &format!("{method} {path}"), &body, false);
    }
    assert_unchanged(&sg, pid);
}

/// A Prometheus metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (labels: no `:`).
fn is_name(name: &str, colon: bool) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
    name.chars().all(ok) && name.starts_with(|c: char| ok(c) && !c.is_ascii_digit())
}

/// Checks one sample line of the Prometheus text format: `name{label="v",…} value
/// [timestamp]`, labels optional. `Err` says what is wrong.
fn check_sample(line: &str) -> Result<(), String> {
    // `rest` is what follows the name and labels: " value [timestamp]".
    let (name, rest) = match line.split_once('{') {
        Some((name, after)) => {
            let (labels, rest) = after.rsplit_once('}').ok_or("unclosed `{`")?;
            check_labels(labels)?;
            (name, rest)
        }
        None => line.split_at(line.find(' ').ok_or("no value after the name")?),
    };
    if !is_name(name, true) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut words = rest
        .strip_prefix(' ')
        .ok_or("no single space before the value")?
        .split(' ');
    let value = words.next().unwrap_or_default();
    if value.parse::<f64>().is_err() {
        return Err(format!("value {value:?} is not a number"));
    }
    match (words.next(), words.next()) {
        (None, _) => Ok(()),
        (Some(ts), None) if ts.parse::<i64>().is_ok() => Ok(()),
        _ => Err("junk after the value".into()),
    }
}

/// `label="value",…` (a trailing comma allowed); values may hold `\\`, `\"` and `\n`.
fn check_labels(mut labels: &str) -> Result<(), String> {
    while !labels.is_empty() {
        let (name, after) = labels
            .split_once("=\"")
            .ok_or_else(|| format!("no `=\"` in labels {labels:?}"))?;
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| format!("unclosed value in labels {labels:?}"))?;
        labels = &after[end + 1..];
        if let Some(next) = labels.strip_prefix(',') {
            labels = next;
        } else if !labels.is_empty() {
            return Err(format!("junk between labels: {labels:?}"));
        }
    }
    Ok(())
}

#[test]
fn metrics_is_prometheus_text_with_the_program_state() {
    let (sg, _) = start_web("metrics_is_prometheus_text_with_the_program_state");
    let response: HttpResponse = sg
        .request("GET", "/metrics")
        .unwrap_or_else(|err| panic!("GET /metrics: {err}{}", sg.dump()));
    assert_eq!(response.status, 200, "GET /metrics: {}", response.body);
    assert!(
        response
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "GET /metrics: Content-Type {:?}",
        response.header("Content-Type")
    );
    let mut samples = 0;
    for line in response.body.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples += 1;
        if let Err(err) = check_sample(line) {
            panic!(
                "GET /metrics: not Prometheus text: {err}: {line:?}\n{}",
                response.body
            );
        }
    }
    assert!(
        samples > 0,
        "GET /metrics has no samples:\n{}",
        response.body
    );
    let running = r#"supergo_program_state{program="web",state="Running"} 1"#;
    assert!(
        response.body.lines().any(|line| line == running),
        "GET /metrics has no line {running:?}:\n{}",
        response.body
    );
}

#[test]
fn log_returns_the_tail_of_stderr() {
    let (sg, _) = start_web("log_returns_the_tail_of_stderr");
    // The probe writes one line to stderr at start, ending with its generation.
    let file = sg.path("web.err");
    let text = poll_until(TIMEOUT, "the probe's start line in web.err", || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|text| text.ends_with("SUPERGO_GENERATION=1\n"))
    });
    let bytes = 21;
    let (code, body) = sg.api("GET", &format!("/log/web?stream=stderr&bytes={bytes}"));
    assert_eq!(code, 200, "GET /log/web: {body}{}", sg.dump());
    assert_envelope(&sg, "GET /log/web", &body, true);
    let tail = &text[text.len() - bytes..];
    assert_eq!(
        body["data"]["text"].as_str(),
        Some(tail),
        "GET /log/web?stream=stderr&bytes={bytes} is not the end of web.err ({text:?}): {body}"
    );
}

// ---------------------------------------------------------------------------------------------
// supergoctl

/// supergoctl run with exactly `args` and the environment `env` (no `--url` added).
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
        &format!("ctl-raw-{n}"),
        Duration::from_secs(30),
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that stdout shows the status table with `web` running as `pid`.
fn assert_status_table(sg: &Supergo, out: &Output, pid: i64) {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "supergoctl status: {}: {}{}",
        out.status,
        text(&out.stderr),
        sg.dump()
    );
    let header = stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("NAME") && header.contains("STATE") && header.contains("PID"),
        "supergoctl status has no header line: {stdout:?}"
    );
    assert!(
        stdout.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.first() == Some(&"web")
                && words.contains(&"Running")
                && words.contains(&pid.to_string().as_str())
        }),
        "supergoctl status has no line `web Running {pid}`: {stdout:?}"
    );
}

#[test]
fn ctl_status_prints_a_table_and_exits_0() {
    let (sg, pid) = start_web("ctl_status_prints_a_table_and_exits_0");
    let out = sg.ctl(&["status"]);
    assert_status_table(&sg, &out, pid);
}

#[test]
fn ctl_restart_prints_the_pid_change_and_exits_0() {
    let (sg, pid) = start_web("ctl_restart_prints_the_pid_change");
    let out = sg.ctl(&["restart", "web"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "supergoctl restart web: {}: {}{}",
        out.status,
        text(&out.stderr),
        sg.dump()
    );
    let new_pid = sg.status("web")["pid"].as_i64().unwrap_or(0);
    assert_ne!(new_pid, pid, "restart left the same pid");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{pid} -> {new_pid}")),
        "supergoctl restart web does not print `{pid} -> {new_pid}`: {stdout:?}"
    );
}

#[test]
fn ctl_unknown_program_exits_1_with_the_message_on_stderr() {
    let (sg, pid) = start_web("ctl_unknown_program_exits_1");
    let out = sg.ctl(&["restart", "nosuch"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "supergoctl restart nosuch: {}{}",
        out.status,
        sg.dump()
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("nosuch"),
        "stderr does not name the program: {stderr:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "an error went to stdout: {:?}",
        text(&out.stdout)
    );
    assert_unchanged(&sg, pid);
}

#[test]
fn ctl_exits_3_when_supergo_is_not_running() {
    // Nothing is started: nothing listens on the control address.
    let sg = Supergo::new("ctl_exits_3_when_supergo_is_not_running");
    let out = sg.ctl(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "supergoctl status without supergo: {}: {}",
        out.status,
        text(&out.stderr)
    );
    let stderr = text(&out.stderr);
    let expected = format!("cannot reach supergo at {}", sg.control);
    assert!(
        stderr.contains(&expected),
        "stderr does not say {expected:?}: {stderr:?}"
    );
}

#[test]
fn ctl_unknown_command_exits_2() {
    let (sg, pid) = start_web("ctl_unknown_command_exits_2");
    let out = sg.ctl(&["frobnicate", "web"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "supergoctl frobnicate web: {}: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("frobnicate"),
        "stderr does not name the command: {:?}",
        text(&out.stderr)
    );
    assert_unchanged(&sg, pid);
}

#[test]
fn ctl_json_status_prints_the_json_answer() {
    let (sg, pid) = start_web("ctl_json_status_prints_the_json_answer");
    let out = sg.ctl(&["--json", "status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "supergoctl --json status: {}: {}",
        out.status,
        text(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "supergoctl --json status is not JSON ({err}): {:?}",
            text(&out.stdout)
        )
    });
    assert_envelope(&sg, "supergoctl --json status", &body, true);
    let listed = body["data"]
        .as_array()
        .is_some_and(|list| list.iter().any(|p| p["name"] == "web" && p["pid"] == pid));
    assert!(listed, "web (pid {pid}) is not in {body}");
}

#[test]
fn ctl_takes_the_address_from_supergo_url() {
    let (sg, pid) = start_web("ctl_takes_the_address_from_supergo_url");
    let out = ctl_raw(&sg, &["status"], &[("SUPERGO_URL", &sg.control)]);
    assert_status_table(&sg, &out, pid);
}

#[test]
fn ctl_accepts_the_single_dash_url_spelling() {
    let (sg, pid) = start_web("ctl_accepts_the_single_dash_url_spelling");
    let out = ctl_raw(&sg, &["-url", &sg.control, "status"], &[]);
    assert_status_table(&sg, &out, pid);
}
