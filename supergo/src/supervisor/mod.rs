//! The core thread: owner of the program table and of the loaded config.
//!
//! It answers control requests, runs reread/update and shutdown. It never blocks on a
//! worker: a request whose answer must wait (start, stop, restart, update) hands its reply
//! channel to the worker(s), and when several answers must be gathered (`all`, `update`) a
//! short-lived collector thread gathers them. Status is read from the snapshots workers
//! publish, never by asking a busy worker. Whatever waits on a worker's answer also has a
//! last-resort deadline, so that no request goes unanswered until supergo exits.
//!
//! Parts: `core` (the table, the loop, supergo's signals), `request` (what reaches the
//! core, and `ask`), `requests` (how the core answers each; `status_answer` writes
//! `GET /status`), `update` (reread and update), `shutdown`, `gather` (the starter and
//! collector threads), `deadline` (how long is too long) and `adopting` (workers for what a dead supergo left running);
//! for a container's entrypoint and a systemd service (issue 16), `essential` (the end of an
//! essential program ends supergo) and `service_manager` (what supergo tells systemd, and
//! when).
//!
//! Upgrade in place (issue 14): `upgrade` (who asks, one at a time, the answers),
//! `preflight` (the new binary's `--check-upgrade`, run through supergo's own spawn),
//! `upgrade_exec` (freeze, write the state, exec) and `restore` (the new image's start);
//! `upgrade_messages` (what reaches the core about an upgrade) and `upgrade_state` (the
//! core's upgrade bookkeeping) are the data they share.

mod adopting;
mod core;
mod deadline;
mod essential;
mod gather;
mod preflight;
mod request;
mod requests;
pub mod restore;
mod service_manager;
mod shutdown;
mod status_answer;
mod update;
mod upgrade;
mod upgrade_exec;
mod upgrade_messages;
mod upgrade_state;

pub use self::core::Supervisor;
pub use self::request::{ask, CoreMessage, Request};
pub use self::update::Diff;
pub use self::upgrade::ask_upgrade;
pub use self::upgrade_messages::{Ask, Checked};
pub use self::upgrade_state::Tools;
