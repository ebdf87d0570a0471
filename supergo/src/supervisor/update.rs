//! `reread` and `update`: the diff between the running config and the file, and applying it
//! (start added programs, stop removed ones, hand changed ones over to a process of their
//! new config; leave the rest alone). A config that does not load changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::bounded;
use serde_json::{json, Value};

use super::core::Supervisor;
use super::deadline;
use super::gather::collect;
use super::service_manager;
use crate::config::{self, Config, ProgramConfig};
use crate::manager_notify;
use crate::program::{Command, Replace};
use crate::reply::{Replier, Reply};
use crate::status::SharedStatus;
use crate::{error, info, warn};

/// What `update` would do.
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    pub inserts: Vec<String>,
    pub deletes: Vec<String>,
    pub updates: Vec<String>,
}

impl Diff {
    /// `running`: each program's effective config; `new`: the config file as it is now.
    pub fn between(running: &BTreeMap<String, Arc<ProgramConfig>>, new: &Config) -> Diff {
        let mut diff = Diff::default();
        for (name, program) in &new.programs {
            match running.get(name) {
                None => diff.inserts.push(name.clone()),
                Some(before) if !before.same_as(program) => diff.updates.push(name.clone()),
                Some(_) => {}
            }
        }
        diff.deletes = running
            .keys()
            .filter(|n| !new.programs.contains_key(*n))
            .cloned()
            .collect();
        diff
    }

    pub fn to_json(&self) -> Value {
        json!({ "inserts": self.inserts, "deletes": self.deletes, "updates": self.updates })
    }
}

impl Supervisor {
    pub(super) fn reread(&self) -> Result<(Diff, Config), String> {
        let new = config::load(&self.config.path).map_err(|e| e.to_string())?;
        for warning in &new.warnings {
            warn!("{warning}");
        }
        let running: BTreeMap<String, Arc<ProgramConfig>> = self
            .programs
            .iter()
            .map(|(name, h)| (name.clone(), h.config()))
            .collect();
        Ok((Diff::between(&running, &new), new))
    }

    /// Applies the config file: starts added programs, stops removed ones, hands changed
    /// ones over to a process of their new config. Untouched programs are left alone. A
    /// config that does not load changes nothing.
    pub(super) fn update(&mut self, reply: Replier) {
        // Every path below ends with `reloaded` (READY=1), once the answer is known.
        manager_notify::reloading();
        let (diff, new) = match self.reread() {
            Ok(x) => x,
            Err(e) => {
                error!("update refused, nothing changed: {e}");
                self.reloaded();
                let _ = reply.send(Reply::error(400, format!("{e} (nothing was changed)")));
                return;
            }
        };
        if new.daemon != self.config.daemon {
            warn!("the [supergo] section changed; it takes effect when supergo itself restarts");
        }
        // The answers may depend on the old configs (a drain) and the new ones (a start).
        let running: Vec<Arc<ProgramConfig>> = self.programs.values().map(|h| h.config()).collect();
        let within = deadline::answers_within(
            running
                .iter()
                .map(|c| c.as_ref())
                .chain(new.programs.values().map(Arc::as_ref)),
        );
        deadline::cover(within);
        let mut pending = Vec::new();
        for name in &diff.deletes {
            if let Some(handle) = self.programs.remove(name) {
                info!("{name}: removed from the config: stopping it");
                let (tx, rx) = bounded(1);
                let _ = handle.commands.send(Command::Shutdown(Some(tx)));
                self.retiring.push(handle);
                pending.push((name.clone(), "removed", rx));
            }
        }
        for name in &diff.updates {
            let (Some(handle), Some(program)) =
                (self.programs.get_mut(name), new.programs.get(name))
            else {
                continue;
            };
            info!("{name}: config changed: replacing it through a handoff");
            let listeners = self
                .ctx
                .pool
                .acquire_all(&program.listen_addrs, program.socket_mode);
            let program = program.clone();
            let (tx, rx) = bounded(1);
            let _ = handle.commands.send(Command::Replace(Box::new(Replace {
                config: program,
                listeners,
                reply: Some(tx),
            })));
            pending.push((name.clone(), "changed", rx));
        }
        let mut inserts: Vec<&Arc<ProgramConfig>> = diff
            .inserts
            .iter()
            .filter_map(|n| new.programs.get(n))
            .collect();
        inserts.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
        for program in inserts {
            info!("{}: added to the config", program.name);
            let (tx, rx) = bounded(1);
            self.add_program(program.clone(), Some(tx), true);
            pending.push((program.name.clone(), "added", rx));
        }
        self.config = new;
        self.retiring.retain(|h| !h.thread.is_finished());
        if pending.is_empty() {
            self.reloaded();
            let _ = reply.send(Reply::ok("nothing changed", json!([])));
            return;
        }
        let statuses: Vec<SharedStatus> =
            self.programs.values().map(|h| h.status.clone()).collect();
        collect(pending, reply, within, move |ok, total| {
            manager_notify::reloaded(&service_manager::summary(&statuses));
            format!("update: {ok} of {total} program change(s) succeeded")
        });
    }

    /// The update is over (`READY=1` to a service manager), with the programs' states now.
    fn reloaded(&self) {
        manager_notify::reloaded(&service_manager::summary(
            self.programs.values().map(|h| &h.status),
        ));
    }
}
