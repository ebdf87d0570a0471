//! The core's upgrade bookkeeping (a part of `Supervisor`, issue 14): what it needs to
//! upgrade (`Tools`), the upgrade in progress (`Pending`) and the counters carried across each
//! upgrade. Plain data; `upgrade` and `upgrade_exec` act on it, `restore` rebuilds it in the
//! new image.

use crossbeam_channel::Sender;

use super::request::CoreMessage;
use super::upgrade_messages::Ask;
use crate::handover::exec::{SelfExe, Target};
use crate::http;
use crate::signals::Signals;

/// What the core needs to upgrade: its own binary (for the fallback), the signals thread
/// (parked across the exec), the control API (paused, and its listener handed over) and
/// the way back to its own inbox (for the pre-flight's answer).
pub struct Tools {
    pub self_exe: SelfExe,
    pub signals: Signals,
    pub control: http::Server,
    pub core: Sender<CoreMessage>,
}

/// The core's upgrade bookkeeping.
#[derive(Default)]
pub struct Upgrades {
    pub(super) tools: Option<Tools>,
    pub(super) pending: Option<Pending>,
    /// Upgrades done since supergo was first started (carried across each).
    pub(super) done: u64,
    /// Upgrades refused or failed.
    pub(super) failed: u64,
}

/// The upgrade in progress.
pub(super) struct Pending {
    pub ask: Ask,
    pub target: Target,
}
