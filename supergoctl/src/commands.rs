//! What each command asks supergo and what it prints.
//!
//! Output rules (the original client printed everything to stderr and always exited 0):
//! - results go to `out` (stdout), one line per program;
//! - each failure goes to `err` (stderr) as one line `supergoctl: <program>: <reason>`;
//! - a command over several programs keeps going after a failure of one program (so
//!   `restart a b c` still restarts c when b fails) and ends with [`CtlError::Reported`];
//!   an unreachable daemon or a refused token stops it at once;
//! - with `--json`, every answer's body is printed as it came, one per line, and the
//!   exit status and stderr lines stay the same.

use std::io::Write;
use std::thread;
use std::time::Duration;

use crate::api::{ItemResult, LogChunk, Reread, StatusEntry};
use crate::args::{Cli, Command, Stream, Targets};
use crate::client::{encode, Answer, Client, Method, LONG_TIMEOUT, SHORT_TIMEOUT};
use crate::error::CtlError;
use crate::table;

/// How often `tail -f` asks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(300);

/// Runs one command line against supergo.
pub fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CtlError> {
    let mut ctx = Ctx {
        client: Client::new(cli.endpoint.clone(), cli.token.clone()),
        json: cli.json,
        out,
        err,
        failed: false,
    };
    match &cli.command {
        Command::Status { names } => ctx.status(names),
        Command::Reread => ctx.reread(),
        Command::Update => ctx.update(),
        Command::Start(targets) => ctx.start_stop("start", targets),
        Command::Stop(targets) => ctx.start_stop("stop", targets),
        Command::Restart { targets, wait } => ctx.restart(targets, *wait),
        Command::Tail {
            name,
            stream,
            follow,
            bytes,
        } => ctx.tail(name, *stream, *follow, *bytes),
        Command::Version => ctx.version(),
    }
}

struct Ctx<'a> {
    client: Client,
    json: bool,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    /// A failure was already printed to `err`.
    failed: bool,
}

impl Ctx<'_> {
    /// One request; with `--json` its body is printed right away.
    fn request(&mut self, method: Method, path: &str, long: bool) -> Result<Answer, CtlError> {
        let timeout = if long { LONG_TIMEOUT } else { SHORT_TIMEOUT };
        let answer = self.client.call(method, path, timeout)?;
        if self.json {
            self.raw(&answer.raw)?;
        }
        Ok(answer)
    }

    fn raw(&mut self, body: &str) -> Result<(), CtlError> {
        writeln!(self.out, "{}", body.trim_end())?;
        self.out.flush()?;
        Ok(())
    }

    /// A human result line (nothing with `--json`).
    fn say(&mut self, line: &str) -> Result<(), CtlError> {
        if !self.json {
            writeln!(self.out, "{line}")?;
            self.out.flush()?;
        }
        Ok(())
    }

    /// A failure line on stderr; the command will end with exit status 1.
    fn fail(&mut self, line: &str) -> Result<(), CtlError> {
        self.failed = true;
        writeln!(self.err, "supergoctl: {line}")?;
        Ok(())
    }

    /// The result of a command that may have printed failures along the way.
    fn finish(&self) -> Result<(), CtlError> {
        if self.failed {
            Err(CtlError::Reported)
        } else {
            Ok(())
        }
    }

    fn status(&mut self, names: &[String]) -> Result<(), CtlError> {
        let answer = self.request(Method::Get, "/status", false)?;
        if !answer.ok() {
            return Err(CtlError::Daemon(format!("status: {}", answer.reason())));
        }
        let entries = StatusEntry::list(&answer.data);
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !entries.iter().any(|e| &e.name == *n))
            .map(String::as_str)
            .collect();
        let shown: Vec<StatusEntry> = if names.is_empty() {
            entries
        } else {
            entries
                .into_iter()
                .filter(|e| names.contains(&e.name))
                .collect()
        };
        if !shown.is_empty() {
            let text = table::status_table(&shown, table::now_unix());
            if !self.json {
                self.out.write_all(text.as_bytes())?;
            }
        } else if names.is_empty() {
            self.say("no programs configured")?;
        }
        if !missing.is_empty() {
            let plural = if missing.len() == 1 { "" } else { "s" };
            return Err(CtlError::Daemon(format!(
                "no such program{plural}: {}",
                missing.join(", ")
            )));
        }
        Ok(())
    }

    fn reread(&mut self) -> Result<(), CtlError> {
        let answer = self.request(Method::Get, "/reread", false)?;
        if !answer.ok() {
            return Err(CtlError::Daemon(format!("reread: {}", answer.reason())));
        }
        let diff = Reread::from_value(&answer.data);
        let mut any = false;
        for (label, names) in [
            ("added:  ", &diff.inserts),
            ("removed:", &diff.deletes),
            ("changed:", &diff.updates),
        ] {
            if !names.is_empty() {
                any = true;
                self.say(&format!("{label} {}", names.join(", ")))?;
            }
        }
        if any {
            self.say("(run 'supergoctl update' to apply)")?;
        } else {
            self.say("no changes")?;
        }
        Ok(())
    }

    fn update(&mut self) -> Result<(), CtlError> {
        let answer = self.request(Method::Post, "/update", true)?;
        let items = ItemResult::list(&answer.data).unwrap_or_default();
        for item in &items {
            let name = if item.name.is_empty() {
                "?"
            } else {
                &item.name
            };
            let action = if item.action.is_empty() {
                "updated"
            } else {
                &item.action
            };
            if item.ok.unwrap_or(answer.ok()) {
                let line = match item.message.trim() {
                    "" => format!("{name}: {action}"),
                    msg => format!("{name}: {action}: {}", strip_name(name, msg)),
                };
                self.say(&line)?;
            } else {
                let verb = match action {
                    "added" => "add",
                    "removed" => "remove",
                    "changed" => "change",
                    other => other,
                };
                let msg = match item.message.trim() {
                    "" => answer.reason(),
                    msg => strip_name(name, msg).to_string(),
                };
                self.fail(&format!("{name}: {verb} failed: {msg}"))?;
            }
        }
        if !answer.ok() && !self.failed {
            return Err(CtlError::Daemon(format!("update: {}", answer.reason())));
        }
        if items.is_empty() && answer.ok() {
            self.say("no changes")?;
        }
        self.finish()
    }

    fn start_stop(&mut self, verb: &str, targets: &Targets) -> Result<(), CtlError> {
        let done = if verb == "start" {
            "started"
        } else {
            "stopped"
        };
        for name in target_names(targets) {
            let answer = self.request(Method::Post, &format!("/{verb}/{}", encode(name)), true)?;
            match ItemResult::list(&answer.data).filter(|items| !items.is_empty()) {
                Some(items) => {
                    for item in items {
                        let msg = if is_generic(&item.message) {
                            if item.ok.unwrap_or(answer.ok()) {
                                done.to_string()
                            } else {
                                answer.reason()
                            }
                        } else {
                            item.message.trim().to_string()
                        };
                        let line = about(&item.name, &msg);
                        if item.ok.unwrap_or(answer.ok()) {
                            self.say(&line)?;
                        } else {
                            self.fail(&line)?;
                        }
                    }
                    if !answer.ok() && !self.failed {
                        self.fail(&about(name, &answer.reason()))?;
                    }
                }
                None if answer.ok() => {
                    let msg = if is_generic(&answer.message) {
                        done.to_string()
                    } else {
                        answer.reason()
                    };
                    self.say(&about(name, &msg))?;
                }
                None => self.fail(&about(name, &answer.reason()))?,
            }
        }
        self.finish()
    }

    fn restart(&mut self, targets: &Targets, wait: bool) -> Result<(), CtlError> {
        for name in target_names(targets) {
            let query = if wait { "" } else { "?wait=false" };
            let path = format!("/restart/{}{query}", encode(name));
            let answer = self.request(Method::Post, &path, true)?;
            if let Some(items) = ItemResult::list(&answer.data).filter(|i| !i.is_empty()) {
                for item in items {
                    let ok = item.ok.unwrap_or(answer.ok());
                    let msg = if item.message.trim().is_empty() {
                        answer.reason()
                    } else {
                        item.message.trim().to_string()
                    };
                    self.restart_outcome(&item.name, ok, wait, &item, &msg, answer.http)?;
                }
                if !answer.ok() && !self.failed {
                    self.fail(&about(name, &answer.reason()))?;
                }
            } else {
                let item = ItemResult::from_value(&answer.data);
                let who = if item.name.is_empty() || name == "all" {
                    name
                } else {
                    &item.name
                };
                let who = who.to_string();
                let msg = answer.reason();
                self.restart_outcome(&who, answer.ok(), wait, &item, &msg, answer.http)?;
            }
        }
        self.finish()
    }

    /// `web: restarted, pid 1200 -> 1234 (ready in 1003 ms)`, or on failure
    /// `supergoctl: web: restart failed: <why>; pid 1200 keeps serving`.
    fn restart_outcome(
        &mut self,
        name: &str,
        ok: bool,
        wait: bool,
        item: &ItemResult,
        msg: &str,
        http: i32,
    ) -> Result<(), CtlError> {
        let name = if name.is_empty() { "?" } else { name };
        if ok {
            let ready = match item.handoff_ms {
                Some(ms) => format!(" (ready in {} ms)", ms.round() as u64),
                None => String::new(),
            };
            let line = match (item.old_pid, item.new_pid) {
                (old, new) if old > 0 && new > 0 => {
                    format!("{name}: restarted, pid {old} -> {new}{ready}")
                }
                (0, new) if new > 0 => {
                    format!("{name}: started, pid {new}{ready} (it was not running)")
                }
                _ if !wait && is_generic(msg) => format!("{name}: restart requested"),
                _ if is_generic(msg) => format!("{name}: restarted"),
                _ => about(name, msg),
            };
            return self.say(&line);
        }
        if http == 404 {
            // Unknown program: nothing was restarted, so "restart failed" would mislead.
            return self.fail(&about(name, msg));
        }
        let why = strip_prefix_ci(strip_name(name, msg), "restart failed");
        let why = why.trim_start_matches([':', ' ']);
        let why = if why.is_empty() {
            "no reason given"
        } else {
            why
        };
        // After a failed restart the old process is still the serving one: supergo
        // reports it as `old_pid`, or as the program's current `pid`.
        let serving = if item.old_pid > 0 {
            item.old_pid
        } else {
            item.pid
        };
        let keeps = if serving > 0 && !why.contains("keeps serving") {
            format!("; pid {serving} keeps serving")
        } else {
            String::new()
        };
        self.fail(&format!("{name}: restart failed: {why}{keeps}"))
    }

    fn tail(
        &mut self,
        name: &str,
        stream: Stream,
        follow: bool,
        bytes: u64,
    ) -> Result<(), CtlError> {
        let base = format!(
            "/log/{}?stream={}&bytes={bytes}",
            encode(name),
            stream.as_str()
        );
        let first = self.log_request(name, &base)?;
        self.write_text(whole_lines(&first.text, first.offset))?;
        if !follow {
            return Ok(());
        }
        let Some(mut offset) = first.offset else {
            return Err(CtlError::Daemon(format!(
                "{name}: supergo gave no offset with the log, so it cannot be followed"
            )));
        };
        loop {
            thread::sleep(FOLLOW_INTERVAL);
            let chunk = self.log_request(name, &format!("{base}&offset={offset}"))?;
            let Some(next) = chunk.offset else { continue };
            if next < offset {
                writeln!(
                    self.err,
                    "supergoctl: {name}: {} was truncated or rotated; following the new file",
                    stream.as_str()
                )?;
                self.write_text(&chunk.text)?;
            } else if next > offset {
                // supergo may send everything from `offset`, or just the last `bytes`
                // again; either way only the last `next - offset` bytes are new.
                self.write_text(new_part(&chunk.text, next - offset))?;
            }
            offset = next;
        }
    }

    /// One `GET /log/…`; a route that does not exist (older supergo) is explained.
    fn log_request(&mut self, name: &str, path: &str) -> Result<LogChunk, CtlError> {
        let (http, raw) = self.client.send(Method::Get, path, SHORT_TIMEOUT)?;
        let Some(answer) = Answer::parse(http, raw.clone()) else {
            if http == 404 || http == 405 {
                return Err(CtlError::Daemon(format!(
                    "{name}: this supergo does not serve logs (GET /log answered HTTP {http}); \
                     read the program's stdout_file / stderr_file instead"
                )));
            }
            return Err(self.client.not_supergo(Method::Get, path, http, &raw));
        };
        if !answer.ok() {
            return Err(CtlError::Daemon(about(name, &answer.reason())));
        }
        if self.json {
            self.raw(&answer.raw)?;
        }
        Ok(LogChunk::from_value(&answer.data))
    }

    fn write_text(&mut self, text: &str) -> Result<(), CtlError> {
        if !self.json && !text.is_empty() {
            self.out.write_all(text.as_bytes())?;
            self.out.flush()?;
        }
        Ok(())
    }

    fn version(&mut self) -> Result<(), CtlError> {
        let version = env!("CARGO_PKG_VERSION");
        if self.json {
            self.raw(&format!(
                "{{\"name\":\"supergoctl\",\"version\":\"{version}\"}}"
            ))
        } else {
            self.say(&format!("supergoctl {version}"))
        }
    }
}

fn target_names(targets: &Targets) -> Vec<&str> {
    match targets {
        Targets::All => vec!["all"],
        Targets::Names(names) => names.iter().map(String::as_str).collect(),
    }
}

/// An empty or content-free message ("ok", the original supergo's "success"), for
/// which a line of our own says more.
fn is_generic(message: &str) -> bool {
    let m = message.trim();
    m.is_empty() || m.eq_ignore_ascii_case("ok") || m.eq_ignore_ascii_case("success")
}

/// `name: message`, unless the daemon's message already names the program
/// ("web: started, pid 12", "restart of web started").
fn about(name: &str, message: &str) -> String {
    if name.is_empty() || name == "all" || names_program(message, name) {
        message.to_string()
    } else {
        format!("{name}: {message}")
    }
}

/// Whether `name` occurs in `message` as a whole word (program names are made of
/// letters, digits, `_`, `.` and `-`; a sentence's final `.` is not part of one).
fn names_program(message: &str, name: &str) -> bool {
    message
        .split(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .any(|word| word == name || word.strip_suffix('.') == Some(name))
}

/// `message` without a leading `name:` (the daemon may or may not name the program).
pub(crate) fn strip_name<'m>(name: &str, message: &'m str) -> &'m str {
    match message.strip_prefix(name) {
        Some(rest) if rest.starts_with(':') => rest[1..].trim_start(),
        _ => message,
    }
}

fn strip_prefix_ci<'m>(text: &'m str, prefix: &str) -> &'m str {
    match text.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => &text[prefix.len()..],
        _ => text,
    }
}

/// The first piece of a tail without the partial line it may start with, when it does
/// not start at the beginning of the file (`offset` is where the text ends).
fn whole_lines(text: &str, offset: Option<u64>) -> &str {
    let starts_mid_file = offset.is_some_and(|end| end > text.len() as u64);
    match text.find('\n') {
        Some(i) if starts_mid_file && i + 1 < text.len() => &text[i + 1..],
        _ => text,
    }
}

/// The last `new_bytes` bytes of `text`, widened to a character boundary.
fn new_part(text: &str, new_bytes: u64) -> &str {
    let new_bytes = usize::try_from(new_bytes).unwrap_or(usize::MAX);
    if new_bytes >= text.len() {
        return text;
    }
    let mut start = text.len() - new_bytes;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_does_not_repeat_the_name() {
        assert_eq!(about("web", "started"), "web: started");
        assert_eq!(about("web", "web started"), "web started");
        assert_eq!(about("web", "web: not running"), "web: not running");
        assert_eq!(about("web", "webby is fine"), "web: webby is fine");
        assert_eq!(
            about("web", "restart of web started"),
            "restart of web started"
        );
        assert_eq!(about("a", "already running"), "a: already running");
        assert_eq!(about("web", "stopped web."), "stopped web.");
        assert_eq!(about("all", "started 3 programs"), "started 3 programs");
    }

    #[test]
    fn restart_reason_is_cleaned_of_repeats() {
        assert_eq!(strip_name("web", "web: boom"), "boom");
        assert_eq!(strip_name("web", "webby: boom"), "webby: boom");
        assert_eq!(
            strip_prefix_ci("Restart failed: x", "restart failed"),
            ": x"
        );
        assert_eq!(strip_prefix_ci("é", "restart failed"), "é");
    }

    #[test]
    fn a_tail_from_mid_file_starts_at_a_whole_line() {
        assert_eq!(whole_lines("ick 5\ntick 6\n", Some(100)), "tick 6\n");
        assert_eq!(
            whole_lines("tick 1\ntick 2\n", Some(14)),
            "tick 1\ntick 2\n"
        );
        assert_eq!(whole_lines("one long line", Some(100)), "one long line");
        assert_eq!(whole_lines("partial\n", Some(100)), "partial\n");
        assert_eq!(whole_lines("x\ny", None), "x\ny");
    }

    #[test]
    fn new_part_takes_the_tail_on_a_char_boundary() {
        assert_eq!(new_part("one\ntwo\n", 4), "two\n");
        assert_eq!(new_part("abc", 10), "abc");
        assert_eq!(new_part("aé", 1), "é");
        assert_eq!(new_part("abc", 0), "");
    }
}
