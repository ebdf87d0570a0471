//! `reread` (what changed in the config files) and `update` (apply it).

use crate::api::{ItemResult, Reread};
use crate::client::Method;
use crate::error::CtlError;
use crate::wording::strip_name;

use super::ctx::Ctx;

impl Ctx<'_> {
    pub(super) fn reread(&mut self) -> Result<(), CtlError> {
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

    pub(super) fn update(&mut self) -> Result<(), CtlError> {
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
}
