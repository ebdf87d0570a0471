//! A program's processes outside its process groups: helpers that called `setsid` or
//! daemonized, which the signals to its groups never reach. When the program stops (`stop`,
//! removal by `update`, supergo's shutdown) the worker looks for them
//! (`descendants::find_escaped`: supergo's descendants that carry `SUPERGO_PROGRAM=<name>`),
//! sends each the program's `stop_signal`, SIGKILL at its `stop_timeout`, and the stop ends
//! only once they are gone too.
//!
//! Which groups are left out of the search: those of every registered process of every
//! program (the workers signal those themselves, each as its `stop_as_group` says), and this
//! program's own processes. So with `stop_as_group = false` the processes still in the
//! program's group are left to the program, as that setting asks; only the ones that left it
//! are stopped here.
//!
//! Their exits come as no event (an orphan's is reaped quietly; another's goes to its own
//! parent): the worker looks again every `escaped_helpers::POLL` while any is left. A
//! process that even SIGKILL does not end (stuck in the kernel) is given up after
//! [`AFTER_KILL`], with a warning, so that the stop ends. The helpers being stopped and
//! their deadlines are the worker's `escaped` part (`escaped_helpers`).
//!
//! Not serialized: pidfds, and a stop in progress (a worker stopping helpers refuses an
//! upgrade in place, see `freeze`). After an upgrade, supergo's pid and its subreaper flag
//! are those of before (`PR_SET_CHILD_SUBREAPER` lives in the process's signal struct, which
//! `execve` keeps), so the helpers are found as before. After an adoption, the helpers of an
//! adopted process are found through it (`descendants::find_escaped_from`).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::escaped_helpers::EscapedHelpers;
use super::fixed::secs;
use super::worker::Worker;
use crate::descendants::{find_escaped_from, Escaped};
use crate::{info, warn};

/// How long a helper may take to go after SIGKILL before the stop ends without it.
const AFTER_KILL: Duration = Duration::from_secs(5);

impl Worker {
    /// The program's helpers outside its groups. Called when a stop begins, before any of its
    /// processes is asked to stop: the helpers of an adopted process are found through it
    /// (they do not descend from supergo), and it may exit on its stop signal at once, which
    /// would hand them to init before they were found.
    pub(super) fn find_escaped(&self) -> Vec<Escaped> {
        let mut groups: Vec<Pid> = self.ctx.reaper.registered_pids();
        let processes = (self.gens.draining.iter())
            .chain(&self.gens.current)
            .chain(self.gens.handoff.as_ref().map(|h| &h.process));
        let mut adopted = Vec::new();
        for process in processes {
            groups.push(process.pid);
            if process.adopted.is_some() {
                adopted.push(process.pid);
            }
        }
        find_escaped_from(self.name(), &groups, &adopted)
    }

    /// Sends the helpers `found` (by `find_escaped`) the program's stop signal. Called once
    /// the program's own processes have been asked to stop.
    pub(super) fn stop_escaped(&mut self, found: Vec<Escaped>) {
        let config = self.resources.config.clone();
        let helpers = &mut self.escaped;
        for helper in found {
            if helpers.stopping.iter().any(|h| h.pid() == helper.pid()) {
                continue; // a second stop (a shutdown during a stop): already asked
            }
            info!(
                "{}: pid {} left the program's process group: sending it SIG{}; SIGKILL in {} s if still running",
                config.name,
                helper.pid(),
                config.stop_signal.as_str().trim_start_matches("SIG"),
                secs(config.stop_timeout, 1)
            );
            // ESRCH: it exited meanwhile; nothing to wait for then.
            if helper.signal(config.stop_signal).is_ok() {
                helpers.stopping.push(helper);
            }
        }
        if helpers.running() && helpers.kill_at.is_none() && helpers.give_up_at.is_none() {
            let now = Instant::now();
            helpers.kill_at = Some(now.checked_add(config.stop_timeout).unwrap_or(now));
        }
    }

    /// Forgets the helpers that have exited; SIGKILL to the rest at the deadline; gives up on
    /// those SIGKILL did not end.
    pub(super) fn tend_escaped(&mut self, now: Instant) {
        let name = self.resources.config.name.clone();
        let helpers = &mut self.escaped;
        helpers.stopping.retain(|h| !h.has_exited());
        if helpers.stopping.is_empty() {
            helpers.kill_at = None;
            helpers.give_up_at = None;
            return;
        }
        if helpers.kill_at.is_some_and(|t| now >= t) {
            for helper in &helpers.stopping {
                warn!(
                    "{name}: pid {} (outside the program's process group) still running at its stop_timeout: sending SIGKILL",
                    helper.pid()
                );
                let _ = helper.signal(Signal::SIGKILL);
            }
            helpers.kill_at = None;
            helpers.give_up_at = Some(now + AFTER_KILL);
        }
        if helpers.give_up_at.is_some_and(|t| now >= t) {
            let pids: Vec<String> = helpers
                .stopping
                .iter()
                .map(|h| h.pid().to_string())
                .collect();
            warn!(
                "{name}: pid(s) {} did not exit {} s after SIGKILL (stuck in the kernel?); the stop ends without them",
                pids.join(", "),
                secs(AFTER_KILL, 0)
            );
            *helpers = EscapedHelpers::default();
        }
    }
}
