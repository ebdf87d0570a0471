//! The worker's adoption part (issue 15): its id in the state file's registry, and the
//! status note of an adopted serving process.
//!
//! A part like the others: plain data, read and changed by the transitions in `adopted`
//! (the state file's view, taking over what a dead supergo left) and `adopted_handover`
//! (the note across an upgrade in place, the only field serialized). The id is this image's
//! own; a new image makes it afresh.

use nix::unistd::Pid;

use crate::adopt::record;

pub(super) struct Part {
    /// This worker's entry in the state file's registry (`adopt::record`).
    pub id: u64,
    /// The status note of an adopted serving process, with its pid.
    pub note: Option<(Pid, String)>,
}

impl Part {
    pub fn new() -> Part {
        Part {
            id: record::next_id(),
            note: None,
        }
    }
}

impl Drop for Part {
    /// The worker has ended: its part leaves the table.
    fn drop(&mut self) {
        record::remove(self.id);
    }
}
