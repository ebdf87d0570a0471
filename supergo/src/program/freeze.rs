//! The worker's side of an upgrade in place: the freeze.
//!
//! The core first parks the signals thread (nothing is reaped from then on), then sends every
//! worker `Command::Freeze`. The worker acts on what reached it before (exits and
//! notifications already routed: their work must not die with the old image; the reaper's
//! exits come before the freeze on the commands channel, those of `adopt::watch`, which is
//! not parked, may come after it and are taken too), then either
//! writes its state or says why it cannot be handed over now (`busy`), and answers no
//! command until it is released: from the freeze to the exec it spawns nothing and changes
//! nothing, so the state written is the state the new image takes over. An exec ends the
//! thread right there; a release (the exec failed, or another worker was busy) lets it carry
//! on as if nothing had happened.
//!
//! The policy for what cannot cross the exec (README, "Upgrading supergo"): a handoff in
//! progress, a `stop_before_restart` restart, a client waiting for an outcome (start, stop,
//! restart, update), and a process that is starting with `ready = "notify"` (its `READY=1`
//! could be read by the old image's notify reader and die with it), helpers outside the
//! program's process groups being stopped (`escaped`: their stop is not serialized), and an
//! `essential` program that ends during the freeze itself (its end is told to the core,
//! which stops supergo instead). Each refuses the upgrade with a reason that names the
//! program; what is merely starting with `ready = "uptime"`, backing off or draining
//! (adopted processes too: `adopted_handover`) is handed over.

use std::time::Instant;

use super::wiring::{Command, Freeze, Frozen};
use super::worker::Worker;
use crate::config::ReadyMode;
use crate::handover::StateWriter;

impl Worker {
    // Never inlined: its frame (the state it writes) would sit below every spawn on the
    // worker's small stack, through `on_command`.
    #[inline(never)]
    pub(super) fn on_freeze(&mut self, order: Freeze) {
        // What was routed here before the signals thread parked: acted on now, in this
        // image, so that no exit or READY=1 is lost with it.
        let mut serving_exit = None;
        // Commands behind the freeze wait for the release (and die with the exec, as the
        // ones still in the channel do).
        let mut later = Vec::new();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Exited(exit) => {
                    serving_exit = self.serving_exit(&exit).or(serving_exit);
                    self.on_exit(*exit);
                }
                command => later.push(command),
            }
        }
        if let Some(notifications) = self.resources.notify.as_ref().map(|n| n.receiver().clone()) {
            while let Ok(note) = notifications.try_recv() {
                self.on_notification(note);
            }
        }
        self.on_timers(Instant::now());
        self.check_stopped();
        // An essential program that ends here tells the core now (with its status), and
        // refuses the upgrade below: the core then stops supergo, as without the upgrade.
        let was_reported = self.end_reported;
        self.report_if_ended(serving_exit);
        let just_ended = self.end_reported && !was_reported;
        self.publish();
        self.waiters.flush();
        let busy = if just_ended {
            Some(format!(
                "{} has just ended (it is essential: supergo stops)",
                self.name()
            ))
        } else {
            self.busy()
        };
        let frozen = match busy {
            Some(why) => Frozen::Busy(why),
            None => {
                let mut writer = StateWriter::new();
                self.serialize(&mut writer);
                Frozen::Ready(writer)
            }
        };
        // An error: the core gave up on this freeze; carry on.
        if order.answer.send(frozen).is_ok() {
            // No command, exit or timer is looked at until the release; the exec ends this
            // thread here.
            let _ = order.release.recv();
        }
        // Carrying on: the commands taken above first, in their order.
        for command in later {
            self.on_command(command);
        }
    }

    /// Why this program cannot be handed over right now (see the module docs).
    fn busy(&self) -> Option<String> {
        let name = self.name();
        if let Some(handoff) = &self.gens.handoff {
            return Some(format!(
                "{name}: a restart is in progress (new pid {} is starting)",
                handoff.process.pid
            ));
        }
        if self.gens.stop_first.is_some() {
            return Some(format!(
                "{name}: a restart is in progress (stopping the old process first)"
            ));
        }
        let w = &self.waiters;
        if !w.ready.is_empty() {
            return Some(format!("{name}: a client is waiting for it to start"));
        }
        if !w.stop.is_empty() {
            return Some(format!("{name}: a client is waiting for it to stop"));
        }
        if !w.handoff.is_empty() || !w.stop_first.is_empty() {
            return Some(format!("{name}: a client is waiting for its restart"));
        }
        if self.escaped.running() {
            return Some(format!(
                "{name}: its helpers outside its process group are being stopped"
            ));
        }
        let starting_notify = self.resources.config.ready == ReadyMode::Notify
            && self.gens.current.as_ref().is_some_and(|p| !p.ready);
        if starting_notify {
            return Some(format!(
                "{name}: pid {} is starting and has not sent READY=1 yet",
                self.gens.current_pid()
            ));
        }
        None
    }
}
