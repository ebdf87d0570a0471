//! Exits, as the reaper routes them: of the serving process (a failed start, a crash to
//! restart or not, or a death during a handoff), of a handoff's new process (rollback), and
//! of a draining process (the drain is over; a stop-first restart may start its successor).

use std::time::{Instant, SystemTime};

use super::fixed::secs;
use super::generations::Owner;
use super::lifecycle::{restarts_after, MIN_RUN};
use super::process::{Process, StopReason};
use super::waiters::Waiter;
use super::worker::Worker;
use crate::reaper::{Exit, ExitStatus};
use crate::reply::Reply;
use crate::status::State;
use crate::{info, warn};

impl Worker {
    pub(super) fn on_exit(&mut self, exit: Exit) {
        match self.gens.owner_of(exit.pid) {
            Owner::Current => {
                let process = self.gens.current.take().expect("owner_of found it");
                // A crash: whatever the process left in its group must not outlive it (nor
                // keep its listeners or log pipes).
                process.kill_rest_of_group();
                self.on_current_exit(process, exit.status);
            }
            Owner::Handoff => {
                if let Some(handoff) = &self.gens.handoff {
                    handoff.process.kill_rest_of_group();
                }
                let why = format!("{} before it was ready", exit.status);
                self.roll_back(why, false);
            }
            Owner::Draining(index) => {
                let process = &mut self.gens.draining[index];
                // A stopping group leader (say `sh -c 'server'`) may exit at once while the
                // rest of its group still drains: the drain ends when the group is empty, or
                // at the SIGKILL deadline, never earlier.
                if process.policy.as_group && process.group_alive() {
                    info!(
                        "{}[{}]: {}; the rest of its process group is still running, waiting for it",
                        self.resources.config.name, process.pid, exit.status
                    );
                    process.leader_exit = Some(exit.status);
                    return;
                }
                let process = self.gens.take_draining(index);
                self.on_stopped_exit(process, exit.status, exit.at);
            }
            Owner::Unknown => self.gens.stillborn.retain(|pid| *pid != exit.pid),
        }
    }

    fn on_current_exit(&mut self, process: Process, status: ExitStatus) {
        let pid = process.pid;
        self.record.last_exit = Some(status.to_string());
        self.record.stop_time = SystemTime::now();
        if !process.ready {
            let uptime = secs(process.started.elapsed(), 2);
            return self.on_start_failure(format!(
                "pid {pid} {status} {uptime} s after start, before it was ready"
            ));
        }
        // The serving process died during a handoff: the new one becomes the serving
        // process as soon as it is ready.
        if let Some((handoff, replacement, waiters)) = self.take_handoff() {
            warn!(
                "{}[{pid}]: {status} during a restart; pid {} takes over once ready",
                self.name(),
                handoff.process.pid
            );
            self.gens.current = Some(handoff.process);
            self.life.state = State::Starting;
            self.waiters
                .ready
                .extend(waiters.into_iter().map(|reply| Waiter::Restart {
                    reply,
                    old_pid: pid,
                    requested: handoff.requested.mono,
                }));
            if let Some(replacement) = replacement {
                // Not `adopt`: the new process was given this notify socket.
                self.resources.take_over(replacement);
            }
            return;
        }
        let config = self.resources.config.clone();
        if !restarts_after(&config, &status) {
            info!(
                "{}[{pid}]: {status}; not restarted (auto_restart = {:?})",
                self.name(),
                config.auto_restart
            );
            self.life.state = State::Exited;
            return;
        }
        let ran = process.started.elapsed();
        if ran >= MIN_RUN.max(config.start_secs) {
            self.life.failures = 0;
        } else {
            return self.on_start_failure(format!(
                "pid {pid} {status} {} s after start, right after it became ready",
                secs(ran, 2)
            ));
        }
        warn!(
            "{}[{pid}]: {status} unexpectedly; starting it again",
            self.name()
        );
        self.record.restarts += 1;
        self.launch();
    }

    fn on_stopped_exit(&mut self, process: Process, status: ExitStatus, at: Instant) {
        let Some(stop) = &process.stop else { return };
        let took = secs(at.duration_since(stop.since.mono), 2);
        // The status says how it ended ("exited with status 0", "killed by signal 9"); what it
        // cannot say is that supergo sent that SIGKILL at the stop deadline.
        let how = if stop.kill_at.is_none() {
            "SIGKILL at the stop deadline: "
        } else {
            ""
        };
        info!(
            "{}[{}]: {} after {took} s: {how}{}, generation {}",
            self.name(),
            process.pid,
            if stop.reason == StopReason::Handoff {
                "drained"
            } else {
                "stopped"
            },
            status,
            process.generation
        );
        if self
            .gens
            .stop_first
            .is_some_and(|r| r.old_pid == process.pid)
        {
            let pending = self.gens.stop_first.take().expect("checked just above");
            let waiters = std::mem::take(&mut self.waiters.stop_first);
            if self.life.stop_requested {
                // (request_stop cancels a stop-first restart itself; this is a safety net.)
                let cancelled = format!(
                    "{}: restart cancelled: the program was stopped",
                    self.name()
                );
                self.waiters
                    .answer_each(waiters, &Reply::error(409, cancelled));
                return;
            }
            self.waiters
                .ready
                .extend(waiters.into_iter().map(|reply| Waiter::Restart {
                    reply,
                    old_pid: pending.old_pid,
                    requested: pending.requested.mono,
                }));
            self.life.failures = 0;
            self.launch();
        }
    }

    /// The drains whose group leader exited earlier and whose group is now empty.
    pub(super) fn end_emptied_group_drains(&mut self, now: Instant) {
        while let Some((process, status)) = self.gens.take_emptied_group() {
            self.on_stopped_exit(process, status, now);
        }
    }
}
