//! supervisord: an ini config with an `inet_http_server`, `supervisord -c FILE` in the
//! foreground, XML-RPC for the API figures, `supervisorctl` for restart and the CLI figures.
//!
//! The child binds its port itself (`--listen ADDR`): supervisord has no way to hold a socket
//! across a restart. `stopasgroup`/`killasgroup` are set so that a stop reaches the whole
//! process group, as supergo's does. `minfds` is raised with the program count (supervisord
//! keeps three pipe ends per program), else 1000 programs do not start at all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{log_tail, wait_for, Program, RestartOutcome, System};
use crate::cleanup::{self, Daemon};
use crate::setup;

pub struct Supervisord {
    daemon: Daemon,
    /// Programs that are `[fcgi-program]` groups (they hold a socket): their process is
    /// `NAME:NAME`, restarted as `NAME:*`.
    groups: std::collections::HashSet<String>,
    conf: PathBuf,
    ctl: PathBuf,
    rpc_url: String,
    log: PathBuf,
    started: Instant,
}

/// supervisord's values go through Python `%` interpolation: a literal `%` is `%%`.
fn ini(s: &str) -> String {
    s.replace('%', "%%")
}

/// A word of a supervisord `command` (split with `shlex`).
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r#"'"'"'"#))
    }
}

pub fn config_text(programs: &[Program], dir: &Path, port: u16) -> String {
    let d = dir.to_string_lossy();
    let minfds = 1024 + 4 * programs.len();
    let mut t = format!(
        "; written by the supergo bench\n\
         [supervisord]\nnodaemon = true\nlogfile = {d}/supervisord.log\npidfile = {d}/supervisord.pid\n\
         childlogdir = {d}\nminfds = {minfds}\nminprocs = 200\n\n\
         [inet_http_server]\nport = 127.0.0.1:{port}\n\n\
         [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
         [supervisorctl]\nserverurl = http://127.0.0.1:{port}\n"
    );
    for p in programs {
        let mut words = vec![quote(&p.exe.to_string_lossy())];
        words.extend(p.args.iter().map(|a| quote(a)));
        if let Some(addr) = p.listen {
            words.push("--listen".into());
            words.push(addr.to_string());
        }
        // supervisord holds a socket only for an `[fcgi-program]`: it binds it and passes it
        // to the process as its stdin (fd 0).
        let (section, socket) = match &p.unix_listen {
            Some(path) => (
                "fcgi-program",
                format!("socket = unix://{}\n", ini(&path.to_string_lossy())),
            ),
            None => ("program", String::new()),
        };
        let stdout = match &p.stdout_file {
            Some(path) => ini(&path.to_string_lossy()),
            None => "NONE".into(),
        };
        t.push_str(&format!(
            "\n[{section}:{}]\n{socket}command = {}\nautostart = true\nautorestart = true\nstartsecs = {}\n\
             startretries = {}\nstopwaitsecs = {}\nstopasgroup = true\nkillasgroup = true\n\
             stdout_logfile = {stdout}\nstderr_logfile = NONE\n",
            p.name,
            ini(&words.join(" ")),
            // An integer in supervisord.
            p.start_secs.ceil() as u64,
            p.max_retry,
            p.stop_timeout.ceil()
        ));
        if !p.env.is_empty() {
            let env: Vec<String> = p
                .env
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", ini(v)))
                .collect();
            t.push_str(&format!("environment = {}\n", env.join(",")));
        }
    }
    t
}

/// How many processes an XML-RPC `getAllProcessInfo` answer shows in state `want`.
pub fn count_state(xml: &str, want: &str) -> usize {
    xml.split("<name>statename</name>")
        .skip(1)
        .filter(|rest| {
            rest.split_once("<string>")
                .and_then(|(_, s)| s.split_once("</string>"))
                .is_some_and(|(state, _)| state == want)
        })
        .count()
}

impl Supervisord {
    pub fn launch(
        programs: &[Program],
        dir: &Path,
        daemon_exe: &Path,
        ctl: &Path,
    ) -> Result<Supervisord, String> {
        let port = setup::free_addr()?.port();
        let conf = dir.join("supervisord.conf");
        std::fs::write(&conf, config_text(programs, dir, port))
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        let log = dir.join("supervisord.out");
        let mut cmd = Command::new(daemon_exe);
        cmd.arg("-c").arg(&conf);
        let started = Instant::now();
        let daemon = Daemon::spawn("supervisord", &mut cmd, &log)?;
        let mut s = Supervisord {
            daemon,
            groups: programs
                .iter()
                .filter(|p| p.unix_listen.is_some())
                .map(|p| p.name.clone())
                .collect(),
            conf,
            ctl: ctl.to_path_buf(),
            rpc_url: format!("http://127.0.0.1:{port}/RPC2"),
            log,
            started,
        };
        // Its control interface answers only once the initial spawns are done.
        let up = wait_for(
            "supervisord's XML-RPC interface",
            Duration::from_secs(120),
            Duration::from_millis(20),
            || {
                if !s.daemon.running() {
                    return Some(Err("supervisord exited".to_string()));
                }
                s.rpc("supervisor.getState").ok().map(|_| Ok(()))
            },
        );
        match up {
            Ok(Ok(())) => Ok(s),
            Ok(Err(e)) | Err(e) => Err(format!(
                "{e}; its output ({}):\n{}",
                s.log.display(),
                log_tail(&s.log, 20)
            )),
        }
    }

    /// One XML-RPC call without parameters; the answer's text.
    fn rpc(&self, method: &str) -> Result<String, String> {
        let body = format!(
            "<?xml version=\"1.0\"?><methodCall><methodName>{method}</methodName><params></params></methodCall>"
        );
        let r = minreq::post(&self.rpc_url)
            .with_header("Content-Type", "text/xml")
            .with_body(body)
            .with_timeout(60)
            .send()
            .map_err(|e| format!("XML-RPC {method}: {e}"))?;
        if r.status_code != 200 {
            return Err(format!("XML-RPC {method}: HTTP {}", r.status_code));
        }
        let text = r
            .as_str()
            .map_err(|e| format!("XML-RPC {method}: {e}"))?
            .to_string();
        if text.contains("<fault>") {
            return Err(format!("XML-RPC {method}: fault"));
        }
        Ok(text)
    }

    fn ctl(&self, args: &[&str], timeout: Duration) -> Result<cleanup::Finished, String> {
        let mut cmd = Command::new(&self.ctl);
        cmd.arg("-c").arg(&self.conf).args(args);
        cleanup::run(&mut cmd, timeout)
    }
}

impl System for Supervisord {
    fn pid(&self) -> i32 {
        self.daemon.pid()
    }

    fn started_at(&self) -> Instant {
        self.started
    }

    fn restart(&self, name: &str) -> RestartOutcome {
        let target = if self.groups.contains(name) {
            format!("{name}:*")
        } else {
            name.to_string()
        };
        match self.ctl(&["restart", &target], Duration::from_secs(300)) {
            Ok(done) => RestartOutcome {
                // `supervisorctl restart` is a stop, then a start: "NAME: ERROR (not running)"
                // from the stop of a program that had died is no failure of the restart;
                // "NAME: ERROR (spawn error)" from the start is.
                ok: done.stdout.contains(&format!("{name}: started")),
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

    fn status_api(&self) -> Option<Result<usize, String>> {
        Some(
            self.rpc("supervisor.getAllProcessInfo")
                .map(|xml| xml.len()),
        )
    }

    fn status_cli(&mut self) -> Result<(), String> {
        let done = self.ctl(&["status"], Duration::from_secs(60))?;
        // Exit 3 means "some program is not RUNNING": still a full answer.
        match done.status.and_then(|s| s.code()) {
            Some(0) | Some(3) if !done.stdout.is_empty() => Ok(()),
            _ => Err(format!("supervisorctl status: {}", done.output())),
        }
    }

    fn running(&mut self) -> Result<usize, String> {
        Ok(count_state(
            &self.rpc("supervisor.getAllProcessInfo")?,
            "RUNNING",
        ))
    }

    fn shutdown(&mut self, grace: Duration) {
        self.daemon.stop(grace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_states_in_an_xmlrpc_answer() {
        let xml = "<member>\n<name>statename</name>\n<value><string>RUNNING</string></value>\n</member>\
                   <member><name>statename</name><value><string>STARTING</string></value></member>\
                   <member><name>statename</name>\n<value><string>RUNNING</string></value></member>";
        assert_eq!(count_state(xml, "RUNNING"), 2);
        assert_eq!(count_state(xml, "FATAL"), 0);
    }

    #[test]
    fn quotes_words_and_percent_signs() {
        assert_eq!(quote("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(quote("a b"), "'a b'");
        let mut p = Program::new("w", Path::new("/bin/x"));
        p.listen = Some(([127, 0, 0, 1], 80).into());
        p.env = vec![("K".into(), "50%".into())];
        let t = config_text(&[p], Path::new("/tmp/d"), 9001);
        assert!(
            t.contains("command = /bin/x --listen 127.0.0.1:80\n"),
            "{t}"
        );
        assert!(t.contains("environment = K=\"50%%\"\n"));
        assert!(t.contains("port = 127.0.0.1:9001"));
    }

    #[test]
    fn a_unix_listener_makes_an_fcgi_program() {
        let mut p = Program::new("w", Path::new("/bin/sleep"));
        p.unix_listen = Some("/tmp/d/w.sock".into());
        p.stdout_file = Some("/tmp/d/w.out".into());
        let t = config_text(&[p], Path::new("/tmp/d"), 9001);
        assert!(
            t.contains("[fcgi-program:w]\nsocket = unix:///tmp/d/w.sock\ncommand = /bin/sleep\n"),
            "{t}"
        );
        assert!(t.contains("stdout_logfile = /tmp/d/w.out\n"));
    }
}
