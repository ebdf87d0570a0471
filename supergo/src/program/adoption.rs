//! The worker's adoption part (issue 15): its id in the state file's registry, what /proc
//! said about each of its processes (read once per process), and the status note of an
//! adopted serving process.
//!
//! A part like the others: plain data, read and changed by the transitions in `adopted`
//! (the state file's view, taking over what a dead supergo left) and `adopted_handover`
//! (the note across an upgrade in place, the only field serialized). The id and the cached
//! /proc readings are this image's own; a new image makes them afresh.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use nix::unistd::Pid;

use crate::adopt::record;
use crate::config::ProgramConfig;

pub(super) struct Part {
    /// This worker's entry in the state file's registry (`adopt::record`).
    pub id: u64,
    /// pid → (start ticks, process group).
    pub seen: RefCell<HashMap<i32, (u64, i32)>>,
    /// The config last hashed, and its hash.
    pub hashed: RefCell<Option<(Arc<ProgramConfig>, u64)>>,
    /// The status note of an adopted serving process, with its pid.
    pub note: Option<(Pid, String)>,
}

impl Part {
    pub fn new() -> Part {
        Part {
            id: record::next_id(),
            seen: RefCell::new(HashMap::new()),
            hashed: RefCell::new(None),
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
