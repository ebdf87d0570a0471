//! `start`, `stop` and `restart` of programs by name or `all`: one request per name,
//! one line per program, carrying on after a failure of one.

use crate::api::ItemResult;
use crate::args::Targets;
use crate::client::{encode, Method};
use crate::error::CtlError;
use crate::wording::{about, is_generic, strip_name, strip_prefix_ci};

use super::ctx::Ctx;

impl Ctx<'_> {
    pub(super) fn start_stop(&mut self, verb: &str, targets: &Targets) -> Result<(), CtlError> {
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

    pub(super) fn restart(&mut self, targets: &Targets, wait: bool) -> Result<(), CtlError> {
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
}

fn target_names(targets: &Targets) -> Vec<&str> {
    match targets {
        Targets::All => vec!["all"],
        Targets::Names(names) => names.iter().map(String::as_str).collect(),
    }
}
