//! What the core tells supergo's own service manager (systemd, through `manager_notify`), and
//! when: `READY=1` once the initial start is done, `RELOADING=1` … `READY=1` around each
//! update, `STOPPING=1` when the shutdown begins; each `READY=1` with a one-line summary of
//! the programs' states.
//!
//! "The initial start is done" means every autostart program is past its first start:
//! `Running`, or `Fatal` (or `Exited`, `Stopped`: anything but `Starting` and `Backoff`). The
//! priority starter moves on after a program's first try; a program whose first try failed is
//! in `Backoff` and may still come up, so `READY=1` waits for it too. The wait reads the
//! programs' published states (a worker announces no state change to anyone), every
//! [`SETTLE_POLL`], and only when there is a manager to tell. Its deadline covers every retry
//! of every program; past it, `READY=1` goes anyway, with a warning naming who is not done.

use std::time::{Duration, Instant};

use crate::config::ProgramConfig;
use crate::manager_notify;
use crate::program::{ready_within, ProgramHandle};
use crate::status::{SharedStatus, State};
use crate::warn;

/// How often the wait for the initial start reads the programs' states.
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// Slack beyond a program's configured waits (as `deadline` allows).
const MARGIN: Duration = Duration::from_secs(60);

/// One program, as the wait for the initial start sees it.
pub(super) struct Watched {
    name: String,
    autostart: bool,
    /// How long its initial start may take: every try, and the backoff before each.
    settle_within: Duration,
    status: SharedStatus,
}

/// Every program of `handles`, for [`after_initial_start`].
pub(super) fn watch<'a>(handles: impl IntoIterator<Item = &'a ProgramHandle>) -> Vec<Watched> {
    handles
        .into_iter()
        .map(|handle| {
            let config = handle.config();
            Watched {
                name: config.name.clone(),
                autostart: config.autostart,
                settle_within: settle_within(&config),
                status: handle.status.clone(),
            }
        })
        .collect()
}

/// `(ready_within + backoff_max) × (max_retry + 1)`, and a margin.
fn settle_within(config: &ProgramConfig) -> Duration {
    ready_within(config)
        .saturating_add(config.backoff_max)
        .saturating_mul(config.max_retry.saturating_add(1))
        .saturating_add(MARGIN)
}

/// Called by the priority starter once every priority has had its first start: waits until
/// each autostart program is past it (see the module docs), then says `READY=1`.
pub(super) fn after_initial_start(programs: Vec<Watched>) {
    if !manager_notify::enabled() {
        return;
    }
    let began = Instant::now();
    let give_up = programs
        .iter()
        .filter(|p| p.autostart)
        .map(|p| p.settle_within)
        .max()
        .and_then(|within| began.checked_add(within));
    loop {
        let unsettled: Vec<&str> = programs
            .iter()
            .filter(|p| p.autostart && matches!(state(&p.status), State::Starting | State::Backoff))
            .map(|p| p.name.as_str())
            .collect();
        if unsettled.is_empty() {
            break;
        }
        if give_up.is_some_and(|t| Instant::now() >= t) {
            warn!(
                "telling the service manager READY=1 although, after {:.0} s, these programs are still starting: {}",
                began.elapsed().as_secs_f64(),
                unsettled.join(", ")
            );
            break;
        }
        std::thread::sleep(SETTLE_POLL);
    }
    manager_notify::ready(&summary(programs.iter().map(|p| &p.status)));
}

/// "3 programs: 2 Running, 1 Fatal".
pub(super) fn summary<'a>(statuses: impl IntoIterator<Item = &'a SharedStatus>) -> String {
    manager_notify::summary(statuses.into_iter().map(state))
}

fn state(status: &SharedStatus) -> State {
    status.lock().unwrap_or_else(|p| p.into_inner()).state
}
