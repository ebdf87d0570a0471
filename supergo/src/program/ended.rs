//! An `essential` program that has ended for good tells the core (see `crate::essential`):
//! at the end of a turn of the worker's loop it is `Exited` (its serving process exited and
//! `auto_restart` does not start it again) or `Fatal` (its starts failed `max_retry` times in
//! a row, or its listeners could not be bound). A stop asked for (`stop`, a shutdown, removal
//! by `update`) is no end of its own and tells nothing.
//!
//! The status told is that of the serving process's exit in the same turn, since that exit
//! is what ended the program; when the turn had none (a command that could not be executed,
//! a readiness deadline, a listen error), there is no status to pass on (`None`).
//!
//! Told once per ending: `reported` is set when told and cleared once the program is in
//! another state. Carried across an upgrade in place (`end_reported`), so that the new image
//! does not tell an old end again (with no status: it would change supergo's exit status);
//! an end told during the upgrade's freeze refuses the upgrade (`freeze`), so the core that
//! hears of it is the one that acts on it.

use super::generations::Owner;
use super::worker::Worker;
use crate::essential::Ended;
use crate::reaper::{Exit, ExitStatus};
use crate::status::State;
use crate::supervisor::CoreMessage;

impl Worker {
    /// The status of `exit` when it is the serving process's (call before `on_exit`).
    pub(super) fn serving_exit(&self, exit: &Exit) -> Option<ExitStatus> {
        matches!(self.gens.owner_of(exit.pid), Owner::Current).then_some(exit.status)
    }

    /// Tells the core when an essential program has just ended for good. `serving_exit`: the
    /// serving process's exit during this turn, if any.
    pub(super) fn report_if_ended(&mut self, serving_exit: Option<ExitStatus>) {
        let ended = matches!(self.life.state, State::Exited | State::Fatal);
        if !ended {
            self.end_reported = false;
            return;
        }
        if self.end_reported
            || !self.resources.config.essential
            || self.life.stop_requested
            || self.life.shutting_down
        {
            return;
        }
        self.end_reported = true;
        let ended = Ended {
            program: self.name().to_string(),
            last: serving_exit,
        };
        // The core is gone only when supergo is exiting anyway.
        let _ = self.ctx.core.send(CoreMessage::Ended(ended));
    }
}
