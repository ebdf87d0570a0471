//! circus: an ini config with a `[socket:NAME]` per listening program and a watcher with
//! `use_sockets = True`, `circusd CONFIG` in the foreground, `circusctl` for everything (its
//! API is ZeroMQ, so there is no cheaper way in).
//!
//! circus binds the socket once and keeps it open, and hands it to each new process on its
//! command line (`--fd $(circus.sockets.NAME)`). It sets the socket **non-blocking**; the
//! example children expect a blocking listener (they must not change the shared socket
//! themselves), so the bench starts them through `bench exec-blocking FD CHILD…`, which
//! clears `O_NONBLOCK` and execs the child (about a millisecond; see `main.rs`).
//!
//! Restart modes: `circusctl restart NAME --waiting` (stop, then start) and
//! `circusctl reload NAME --waiting` (start the new process, then stop the old one, with no
//! readiness wait). `--waiting` makes the command answer when it is done, as supergo's restart
//! does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{log_tail, wait_for, Peer, Program, RestartOutcome, System};
use crate::cleanup::{self, Daemon};
use crate::{procfs, setup};

pub struct Circus {
    daemon: Daemon,
    peer: Peer,
    ctl: PathBuf,
    endpoint: String,
    log: PathBuf,
    started: Instant,
}

pub fn config_text(programs: &[Program], endpoint: &str, pubsub: &str, wrapper: &Path) -> String {
    // No `stats_endpoint`: setting it turns circusd-stats (another process) on.
    let mut t = format!(
        "# written by the supergo bench\n[circus]\nendpoint = {endpoint}\npubsub_endpoint = {pubsub}\n\
         statsd = False\ncheck_delay = 5\n"
    );
    for p in programs {
        let exe = p.exe.to_string_lossy();
        let (cmd, mut args) = match p.listen {
            Some(_) => {
                let fd = format!("$(circus.sockets.{})", p.name);
                (
                    wrapper.to_string_lossy().into_owned(),
                    vec![
                        "exec-blocking".to_string(),
                        fd.clone(),
                        exe.into_owned(),
                        "--fd".into(),
                        fd,
                    ],
                )
            }
            None => (exe.into_owned(), Vec::new()),
        };
        // circus splits `args` like a shell.
        args.extend(p.args.iter().map(|a| {
            if a.contains(char::is_whitespace) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.clone()
            }
        }));
        t.push_str(&format!(
            "\n[watcher:{}]\ncmd = {cmd}\nnumprocesses = 1\nwarmup_delay = 0\ngraceful_timeout = {}\n\
             max_retry = {}\ncopy_env = True\nstop_children = True\n",
            p.name, p.stop_timeout, p.max_retry
        ));
        if !args.is_empty() {
            t.push_str(&format!("args = {}\n", args.join(" ")));
        }
        if let Some(path) = &p.stdout_file {
            t.push_str(&format!(
                "stdout_stream.class = FileStream\nstdout_stream.filename = {}\n",
                path.display()
            ));
        }
        if let Some(path) = &p.unix_listen {
            t.push_str("use_sockets = True\n");
            t.push_str(&format!(
                "\n[socket:{}]\nfamily = AF_UNIX\npath = {}\n",
                p.name,
                path.display()
            ));
        } else if let Some(addr) = p.listen {
            t.push_str("use_sockets = True\n");
            t.push_str(&format!(
                "\n[socket:{}]\nhost = {}\nport = {}\n",
                p.name,
                addr.ip(),
                addr.port()
            ));
        }
        if !p.env.is_empty() {
            t.push_str(&format!("\n[env:{}]\n", p.name));
            for (k, v) in &p.env {
                t.push_str(&format!("{k} = {v}\n"));
            }
        }
    }
    t
}

fn endpoint(addr: SocketAddr) -> String {
    format!("tcp://{addr}")
}

impl Circus {
    pub fn launch(
        programs: &[Program],
        dir: &Path,
        daemon_exe: &Path,
        ctl: &Path,
        peer: Peer,
    ) -> Result<Circus, String> {
        let endpoint = endpoint(setup::free_addr()?);
        let pubsub = self::endpoint(setup::free_addr()?);
        let wrapper =
            std::env::current_exe().map_err(|e| format!("cannot find the bench binary: {e}"))?;
        let conf = dir.join("circus.ini");
        std::fs::write(&conf, config_text(programs, &endpoint, &pubsub, &wrapper))
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        let log = dir.join("circus.log");
        let mut cmd = Command::new(daemon_exe);
        cmd.arg("--log-output")
            .arg(&log)
            .arg("--pidfile")
            .arg(dir.join("circus.pid"))
            .arg(&conf);
        let started = Instant::now();
        let daemon = Daemon::spawn("circusd", &mut cmd, &dir.join("circusd.out"))?;
        let mut c = Circus {
            daemon,
            peer,
            ctl: ctl.to_path_buf(),
            endpoint,
            log,
            started,
        };
        let up = wait_for(
            "circusd's control endpoint",
            Duration::from_secs(120),
            Duration::from_millis(50),
            || {
                if !c.daemon.running() {
                    return Some(Err("circusd exited".to_string()));
                }
                c.ctl(&["status"], Duration::from_secs(10))
                    .ok()
                    .filter(|d| d.success())
                    .map(|_| Ok(()))
            },
        );
        match up {
            Ok(Ok(())) => Ok(c),
            Ok(Err(e)) | Err(e) => Err(format!(
                "{e}; its log ({}):\n{}",
                c.log.display(),
                log_tail(&c.log, 20)
            )),
        }
    }

    fn ctl(&self, args: &[&str], timeout: Duration) -> Result<cleanup::Finished, String> {
        let mut cmd = Command::new(&self.ctl);
        cmd.arg("--endpoint")
            .arg(&self.endpoint)
            .arg("--timeout")
            .arg(timeout.as_secs().max(1).to_string())
            .args(args);
        cleanup::run(&mut cmd, timeout + Duration::from_secs(5))
    }
}

impl System for Circus {
    fn pid(&self) -> i32 {
        self.daemon.pid()
    }

    fn started_at(&self) -> Instant {
        self.started
    }

    fn restart(&self, name: &str) -> RestartOutcome {
        let verb = match self.peer {
            Peer::CircusReload => "reload",
            _ => "restart",
        };
        match self.ctl(&[verb, name, "--waiting"], Duration::from_secs(120)) {
            Ok(done) => RestartOutcome {
                ok: done.success() && !done.stdout.contains("error"),
                took_ms: done.took.as_secs_f64() * 1000.0,
                handoff_ms: None,
                message: done.output(),
            },
            Err(e) => RestartOutcome {
                ok: false,
                took_ms: 0.0,
                handoff_ms: None,
                message: e,
            },
        }
    }

    /// One at a time: circusd refuses a restart while another runs ("arbiter is already
    /// running watcher_restart command").
    fn restart_many(&self, names: &[String], _parallel: usize) -> Vec<RestartOutcome> {
        super::restart_parallel(|name| self.restart(name), names, 1)
    }

    fn status_api(&self) -> Option<Result<usize, String>> {
        None
    }

    fn status_cli(&mut self) -> Result<(), String> {
        let done = self.ctl(&["status"], Duration::from_secs(60))?;
        if done.success() && !done.stdout.is_empty() {
            Ok(())
        } else {
            Err(format!("circusctl status: {}", done.output()))
        }
    }

    fn running(&mut self) -> Result<usize, String> {
        Ok(procfs::live_children(self.daemon.pid()))
    }

    fn shutdown(&mut self, grace: Duration) {
        self.daemon.stop(grace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config of one program, with endpoints and a wrapper path that the checks ignore.
    fn text_of(program: Program) -> String {
        config_text(
            &[program],
            "tcp://127.0.0.1:1",
            "tcp://127.0.0.1:2",
            Path::new("/b"),
        )
    }

    #[test]
    fn config_has_socket_and_wrapper() {
        let mut p = Program::new("web", Path::new("/bin/hello"));
        p.listen = Some(([127, 0, 0, 1], 4041).into());
        p.env = vec![("A".into(), "1".into())];
        let t = text_of(p);
        assert!(
            t.contains("[socket:web]\nhost = 127.0.0.1\nport = 4041\n"),
            "{t}"
        );
        assert!(t.contains(
            "args = exec-blocking $(circus.sockets.web) /bin/hello --fd $(circus.sockets.web)\n"
        ));
        assert!(t.contains("cmd = /b\n"));
        assert!(t.contains("use_sockets = True\n"));
        assert!(t.contains("[env:web]\nA = 1\n"));
        assert!(!t.contains("stats_endpoint"));
    }

    #[test]
    fn config_has_unix_socket_and_log_file() {
        let mut p = Program::new("w", Path::new("/bin/sleep"));
        p.unix_listen = Some("/tmp/d/w.sock".into());
        p.stdout_file = Some("/tmp/d/w.out".into());
        let t = text_of(p);
        assert!(
            t.contains("[socket:w]\nfamily = AF_UNIX\npath = /tmp/d/w.sock\n"),
            "{t}"
        );
        assert!(t.contains("stdout_stream.filename = /tmp/d/w.out\n"));
        assert!(t.contains("use_sockets = True\n"));
    }
}
