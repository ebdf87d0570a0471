//! Control requests as the core answers them: reads from the workers' published snapshots
//! (status, metrics) or from files (reread, log), and actions handed to the workers, whose
//! answers go straight to the client, or through a collector for `all`.

use crossbeam_channel::bounded;
use serde_json::json;

use super::core::Supervisor;
use super::deadline;
use super::gather::collect;
use super::request::Request;
use crate::program::Command;
use crate::reply::{Replier, Reply};

/// The most of a log file one `/log` request returns.
const MAX_LOG_BYTES: u64 = 1 << 20;

impl Supervisor {
    pub(super) fn handle(&mut self, request: Request, reply: Replier) {
        match request {
            Request::Status => {
                // Serialized straight from each published snapshot into a reused buffer
                // (see `status_answer`): nothing is copied per program.
                let mut body = crate::reply::buffer();
                let outputs = self.ctx.logs.output_index();
                super::status_answer::write(&mut body, &self.published(), &outputs);
                let _ = reply.send(Reply::json(body));
            }
            Request::Metrics => {
                let text = crate::metrics::render(&self.snapshots()) + &self.upgrade_metrics();
                let _ = reply.send(Reply::text(text));
            }
            Request::Reread => {
                let _ = reply.send(match self.reread() {
                    Ok((diff, _)) => {
                        let message = format!(
                            "{} to add, {} to remove, {} changed",
                            diff.inserts.len(),
                            diff.deletes.len(),
                            diff.updates.len()
                        );
                        Reply::ok(message, diff.to_json())
                    }
                    Err(e) => Reply::error(400, e),
                });
            }
            Request::Update => self.update(reply),
            Request::Start(name) => {
                self.for_each(&name, "start", reply, |r| Command::Start(Some(r)))
            }
            Request::Stop(name) => self.for_each(&name, "stop", reply, |r| Command::Stop(Some(r))),
            Request::Restart { name, wait: true } => {
                self.for_each(&name, "restart", reply, |r| Command::Restart(Some(r)))
            }
            Request::Restart { name, wait: false } => {
                let names = match self.resolve(&name) {
                    Ok(names) => names,
                    Err(r) => return drop(reply.send(r)),
                };
                for n in &names {
                    if let Some(h) = self.programs.get(n) {
                        let _ = h.commands.send(Command::Restart(None));
                    }
                }
                let _ = reply.send(Reply::ok(
                    format!("restart of {} started", names.join(", ")),
                    json!(names),
                ));
            }
            Request::Log {
                name,
                stream,
                bytes,
                offset,
            } => {
                let _ = reply.send(self.log_tail(&name, &stream, bytes, offset));
            }
            // (The control API sends `CoreMessage::Upgrade`, with its connection.)
            Request::Upgrade { binary } => self.upgrade_asked(super::upgrade::Ask {
                binary,
                reply: Some(reply),
                by: "the control API",
                ..super::upgrade::Ask::by_signal()
            }),
        }
    }

    /// Every program's published status, by name.
    /// Programs removed by `update` whose processes still drain come last, so that their
    /// draining processes stay visible until they are gone.
    fn published(&self) -> Vec<&crate::status::SharedStatus> {
        let retiring = self.retiring.iter().filter(|h| !h.thread.is_finished());
        self.programs
            .values()
            .chain(retiring)
            .map(|h| &h.status)
            .collect()
    }

    /// Every program's published status, as of now, by name (as `published`), with its
    /// output counters.
    pub(super) fn snapshots(&self) -> Vec<crate::status::ProgramStatus> {
        let mut all: Vec<_> = self
            .published()
            .into_iter()
            .map(|status| {
                status
                    .lock()
                    .map(|s| s.at_now())
                    .unwrap_or_else(|p| p.into_inner().at_now())
            })
            .collect();
        // Output counters live in the log thread, not in what the workers publish.
        self.ctx.logs.fill_output(&mut all);
        all
    }

    /// The program names a request targets: one, or every one for `all`.
    fn resolve(&self, name: &str) -> Result<Vec<String>, Reply> {
        if name == "all" {
            return Ok(self.programs.keys().cloned().collect());
        }
        if self.programs.contains_key(name) {
            Ok(vec![name.to_string()])
        } else {
            Err(Reply::error(
                404,
                format!("no program named `{name}` (see `supergoctl status`)"),
            ))
        }
    }

    /// Sends a command to one program (its worker answers `reply` directly), or to every
    /// program for `all` (a collector thread gathers the answers).
    fn for_each(
        &mut self,
        name: &str,
        verb: &str,
        reply: Replier,
        command: impl Fn(Replier) -> Command,
    ) {
        let names = match self.resolve(name) {
            Ok(names) => names,
            Err(r) => return drop(reply.send(r)),
        };
        if name != "all" {
            if let Some(h) = self.programs.get(&names[0]) {
                let _ = h.commands.send(command(reply));
            }
            return;
        }
        let mut pending = Vec::new();
        let mut configs = Vec::new();
        for n in names {
            let (tx, rx) = bounded(1);
            if let Some(h) = self.programs.get(&n) {
                let _ = h.commands.send(command(tx));
                configs.push(h.config());
                pending.push((n, "", rx));
            }
        }
        let within = deadline::answers_within(configs.iter().map(|c| c.as_ref()));
        let verb = verb.to_string();
        collect(pending, reply, within, move |ok, total| {
            format!("{verb} all: {ok} of {total} succeeded")
        });
    }

    fn log_tail(&self, name: &str, stream: &str, bytes: u64, offset: Option<u64>) -> Reply {
        let Some(handle) = self.programs.get(name) else {
            return Reply::error(404, format!("no program named `{name}`"));
        };
        let config = handle.config();
        let path = match stream {
            "stdout" => config.stdout_file.clone(),
            "stderr" if config.redirect_stderr => config.stdout_file.clone(),
            "stderr" => config.stderr_file.clone(),
            other => {
                return Reply::error(
                    400,
                    format!("unknown stream `{other}`: use stdout or stderr"),
                )
            }
        };
        let Some(path) = path else {
            return Reply::error(
                404,
                format!("{name}: its {stream} is discarded (no {stream}_file in its config)"),
            );
        };
        match crate::logs::tail(&path, bytes.min(MAX_LOG_BYTES), offset) {
            Ok((text, end)) => Reply::ok(
                format!("{name} {stream}"),
                json!({ "text": text, "offset": end }),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                Reply::error(404, format!("{name}: no tail of its {stream}: {e}"))
            }
            Err(e) => Reply::error(500, format!("{name}: cannot read {}: {e}", path.display())),
        }
    }
}
