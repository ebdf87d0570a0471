//! `status [NAME...]`: the table of programs, or the ones named.

use crate::api::{StatusEntry, StatusList};
use crate::client::{Answer, Method};
use crate::error::CtlError;
use crate::table;

use super::ctx::Ctx;

impl Ctx<'_> {
    pub(super) fn status(&mut self, names: &[String]) -> Result<(), CtlError> {
        let answer: Answer<StatusList> = self.request(Method::Get, "/status", false)?;
        if !answer.ok() {
            return Err(CtlError::Daemon(format!("status: {}", answer.reason())));
        }
        let entries = answer.data.0;
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
}
