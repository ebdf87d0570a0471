//! The core's side of `essential = true`: a worker said its essential program has ended for
//! good (`program::ended`); the core logs why, and supergo stops every program as for a stop
//! signal (priority order, each with its stop timeout) and exits with that program's status
//! (`crate::essential::exit_status`).

use super::core::Supervisor;
use crate::essential::{self, Ended};
use crate::{error, info};

impl Supervisor {
    /// supergo's exit status when `ended` must end supergo; `None` when it no longer concerns
    /// a program of the running config (removed, or no longer essential, since it said so).
    pub(super) fn on_essential_ended(&mut self, ended: Ended) -> Option<u8> {
        let still_essential = self
            .programs
            .get(&ended.program)
            .is_some_and(|handle| handle.config().essential);
        if !still_essential {
            info!(
                "{}: ended, but it is no longer an essential program of the config: supergo runs on",
                ended.program
            );
            return None;
        }
        let status = essential::exit_status(ended.last);
        let reason = essential::reason(&ended.program, ended.last);
        if status == 0 {
            info!("{reason}");
        } else {
            error!("{reason}");
        }
        Some(status)
    }
}
