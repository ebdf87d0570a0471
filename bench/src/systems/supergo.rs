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
    let mut t = String::from("# written by the supergo bench\n");
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
        if let Some(addr) = p.listen {
            t.push_str(&format!(
                "listen_addrs = [{}]\n",
                toml_str(&addr.to_string())
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

    fn restart(&mut self, name: &str) -> RestartOutcome {
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

    fn status_api(&mut self) -> Option<Result<(), String>> {
        Some(self.get("/status").map(|_| ()))
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
        let t = config_text(&[p]);
        assert!(t.contains("[program.web]"));
        assert!(t.contains(r#"command = "'/bin/it'\\''s'""#), "{t}");
        assert!(t.contains(r#"args = ["--x"]"#));
        assert!(t.contains(r#"listen_addrs = ["127.0.0.1:4041"]"#));
        assert!(t.contains("ready = \"notify\""));
        assert!(t.contains(r#"environment = { HELLO_START_DELAY_MS = "5" }"#));
    }
}
