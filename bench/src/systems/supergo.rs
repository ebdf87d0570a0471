//! supergo: a TOML config, `supergo --config FILE --listen ADDR`, the HTTP control API for
//! restart and status, `supergoctl` for the CLI figures.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{log_tail, wait_for, Program, RestartOutcome, System};
use crate::cleanup::{self, Daemon};
use crate::setup::{self, Paths};

pub struct Supergo {
    daemon: Daemon,
    api: SocketAddr,
    ctl: PathBuf,
    log: PathBuf,
    started: Instant,
}

/// A TOML basic string: JSON's escapes are TOML's.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// supergo's `command` is split like a shell: single quotes keep a path whole.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The config file for `programs`.
pub fn config_text(programs: &[Program]) -> String {
    // The state file (adoption after a crash) goes beside the config, in the run's temp dir,
    // not in /run/supergo where every run would leave one behind.
    let mut t =
        String::from("# written by the supergo bench\n\n[supergo]\nstate_dir = \"state\"\n");
    for p in programs {
        t.push_str(&format!("\n[program.{}]\n", p.name));
        t.push_str(&format!(
            "command = {}\n",
            toml_str(&shell_quote(&p.exe.to_string_lossy()))
        ));
        if !p.args.is_empty() {
            let args: Vec<String> = p.args.iter().map(|a| toml_str(a)).collect();
            t.push_str(&format!("args = [{}]\n", args.join(", ")));
        }
        let mut listen: Vec<String> = p.listen.iter().map(|a| toml_str(&a.to_string())).collect();
        if let Some(path) = &p.unix_listen {
            listen.push(toml_str(&format!("unix:{}", path.display())));
        }
        if !listen.is_empty() {
            t.push_str(&format!("listen_addrs = [{}]\n", listen.join(", ")));
        }
        if let Some(path) = &p.stdout_file {
            t.push_str(&format!(
                "stdout_file = {}\n",
                toml_str(&path.to_string_lossy())
            ));
        }
        t.push_str(&format!("start_secs = {}\n", p.start_secs));
        if p.notify {
            t.push_str("ready = \"notify\"\n");
        }
        t.push_str(&format!("ready_timeout = {}\n", p.ready_timeout));
        t.push_str(&format!("stop_timeout = {}\n", p.stop_timeout));
        t.push_str(&format!(
            "backoff_secs = {}\nbackoff_max_secs = {}\n",
            p.backoff_secs,
            p.backoff_secs.max(1.0)
        ));
        t.push_str(&format!("max_retry = {}\n", p.max_retry));
        if !p.env.is_empty() {
            let env: Vec<String> = p
                .env
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_str(v)))
                .collect();
            t.push_str(&format!("environment = {{ {} }}\n", env.join(", ")));
        }
    }
    t
}

impl Supergo {
    pub fn launch(programs: &[Program], dir: &Path, paths: &Paths) -> Result<Supergo, String> {
        Supergo::launch_text(&config_text(programs), dir, paths)
    }

    /// Starts supergo with a config given as text (the churn scenario sets its own keys).
    pub fn launch_text(config: &str, dir: &Path, paths: &Paths) -> Result<Supergo, String> {
        let file = dir.join("supergo.toml");
        std::fs::write(&file, config).map_err(|e| format!("{}: {e}", file.display()))?;
        let api = setup::free_addr()?;
        let log = dir.join("supergo.log");
        let mut cmd = Command::new(paths.supergo()?);
        cmd.arg("--config")
            .arg(&file)
            .arg("--listen")
            .arg(api.to_string());
        let started = Instant::now();
        let daemon = Daemon::spawn("supergo", &mut cmd, &log)?;
        let mut s = Supergo {
            daemon,
            api,
            ctl: paths.supergoctl()?,
            log,
            started,
        };
        let up = wait_for(
            "supergo's control API",
            Duration::from_secs(20),
            Duration::from_millis(5),
            || {
                if !s.daemon.running() {
                    return Some(Err("supergo exited".to_string()));
                }
                s.get("/status").ok().map(|_| Ok(()))
            },
        );
        match up {
            Ok(Ok(())) => Ok(s),
            Ok(Err(e)) | Err(e) => Err(format!(
                "{e}; its log ({}):\n{}",
                s.log.display(),
                log_tail(&s.log, 20)
            )),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// A GET; the parsed envelope when its `status` is 0.
    pub fn get(&self, path: &str) -> Result<Value, String> {
        let r = minreq::get(self.url(path))
            .with_timeout(30)
            .send()
            .map_err(|e| format!("GET {path}: {e}"))?;
        envelope(path, r.as_str().map_err(|e| format!("GET {path}: {e}"))?)
    }

    pub fn post(&self, path: &str, timeout_secs: u64) -> Result<Value, String> {
        let r = minreq::post(self.url(path))
            .with_timeout(timeout_secs)
            .send()
            .map_err(|e| format!("POST {path}: {e}"))?;
        envelope(path, r.as_str().map_err(|e| format!("POST {path}: {e}"))?)
    }

    /// Every program's status entry.
    pub fn status(&self) -> Result<Vec<Value>, String> {
        match self.get("/status")?.get("data") {
            Some(Value::Array(list)) => Ok(list.clone()),
            _ => Err("GET /status: no list in `data`".into()),
        }
    }
}

/// One `GET` on a fresh connection, read to the end of its `Content-Length` body and not
/// parsed any further: the status figures time supergo's answer, not a JSON parser in the
/// bench (parsing 300 kB into a `serde_json::Value` takes longer than the answer itself).
pub fn raw_get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), String> {
    use std::io::{Read, Write};
    let what = |e: std::io::Error| format!("GET {path}: {e}");
    let timeout = Some(Duration::from_secs(30));
    let mut s = std::net::TcpStream::connect(addr).map_err(what)?;
    s.set_read_timeout(timeout).map_err(what)?;
    s.set_write_timeout(timeout).map_err(what)?;
    s.set_nodelay(true).map_err(what)?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(what)?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let (head_end, code, length) = loop {
        let n = s.read(&mut chunk).map_err(what)?;
        if n == 0 {
            return Err(format!("GET {path}: closed before the answer's head"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let code = head
                .get(9..12)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| format!("GET {path}: not an HTTP answer: {head:?}"))?;
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("GET {path}: no Content-Length in {head:?}"))?;
            break (end + 4, code, length);
        }
    };
    let mut body = buf.split_off(head_end);
    while body.len() < length {
        let n = s.read(&mut chunk).map_err(what)?;
        if n == 0 {
            return Err(format!(
                "GET {path}: closed after {} of {length} bytes",
                body.len()
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok((code, body))
}

/// The JSON envelope `{"status", "message", "data"}`; an error unless `status` is 0.
fn envelope(what: &str, body: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("{what}: not JSON ({e})"))?;
    if v.get("status").and_then(Value::as_i64) == Some(0) {
        Ok(v)
    } else {
        Err(format!(
            "{what}: {}",
            v.get("message").and_then(Value::as_str).unwrap_or(body)
        ))
    }
}

impl System for Supergo {
    fn pid(&self) -> i32 {
        self.daemon.pid()
    }

    fn started_at(&self) -> Instant {
        self.started
    }

    fn restart(&self, name: &str) -> RestartOutcome {
        let t = Instant::now();
        let answer = self.post(&format!("/restart/{name}"), 300);
        let took_ms = t.elapsed().as_secs_f64() * 1000.0;
        match answer {
            Ok(v) => RestartOutcome {
                ok: true,
                took_ms,
                handoff_ms: v.pointer("/data/handoff_ms").and_then(Value::as_f64),
                message: v
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            },
            Err(e) => RestartOutcome {
                ok: false,
                took_ms,
                handoff_ms: None,
                message: e,
            },
        }
    }

    fn status_api(&self) -> Option<Result<usize, String>> {
        Some(raw_get(self.api, "/status").and_then(|(code, body)| {
            if code == 200 {
                Ok(body.len())
            } else {
                Err(format!(
                    "GET /status: HTTP {code}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ))
            }
        }))
    }

    fn status_cli(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(&self.ctl);
        cmd.arg("--url").arg(self.api.to_string()).arg("status");
        let done = cleanup::run(&mut cmd, Duration::from_secs(30))?;
        if done.success() && !done.stdout.is_empty() {
            Ok(())
        } else {
            Err(format!("supergoctl status: {}", done.output()))
        }
    }

    fn running(&mut self) -> Result<usize, String> {
        Ok(self
            .status()?
            .iter()
            .filter(|p| p.get("state").and_then(Value::as_str) == Some("Running"))
            .count())
    }

    fn shutdown(&mut self, grace: Duration) {
        self.daemon.stop(grace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_every_key() {
        let mut p = Program::new("web", Path::new("/bin/it's"));
        p.args = vec!["--x".into()];
        p.listen = Some(SocketAddr::from(([127, 0, 0, 1], 4041)));
        p.notify = true;
        p.env = vec![("HELLO_START_DELAY_MS".into(), "5".into())];
        p.unix_listen = Some("/tmp/d/web.sock".into());
        p.stdout_file = Some("/tmp/d/web.out".into());
        let t = config_text(&[p]);
        assert!(t.contains("[program.web]"));
        assert!(t.contains(r#"command = "'/bin/it'\\''s'""#), "{t}");
        assert!(t.contains(r#"args = ["--x"]"#));
        assert!(
            t.contains(r#"listen_addrs = ["127.0.0.1:4041", "unix:/tmp/d/web.sock"]"#),
            "{t}"
        );
        assert!(t.contains(r#"stdout_file = "/tmp/d/web.out""#));
        assert!(t.contains("ready = \"notify\""));
        assert!(t.contains(r#"environment = { HELLO_START_DELAY_MS = "5" }"#));
    }
}
