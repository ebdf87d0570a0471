//! What a worker does for adoption (issue 15): it reports its processes for the state file
//! after every turn (`record_table`), and at start it takes over the processes a dead
//! supergo left running (`take_adopted`), as `adopt::startup` decided.
//!
//! An adopted process is not supergo's child: its exit comes from `adopt::watch` (its pidfd
//! turned readable), with `ExitStatus::Unknown`; signals go through its pidfd, registered
//! with the live children's pidfds like a spawned child's, so stop, restart, update and
//! shutdown treat it like any other process, process group included. The serving one is
//! `Running`, with a note in status (`adopted`) while it serves; one whose output went to the
//! dead supergo's pipes is replaced at once by the normal readiness-gated handoff. The others
//! (not ready when supergo died, draining, or not adoptable) are stopped.
//!
//! A program no longer in the config gets a worker of its own that only stops its processes
//! and ends (`adopted_removed`), like a program `update` removed.
//!
//! Across an upgrade in place, an adopted process is handed over with its start time and
//! watched again by the new image (`adopted_handover`).
//!
//! What this keeps between turns is the worker's `adoption` part (see `adoption`).

use std::sync::{Arc, Mutex};

use nix::unistd::Pid;

use super::fixed::secs;
use super::generations::StopFirst;
use super::process::{Process, StopInfo, StopPolicy, StopReason};
use super::stamp::Stamp;
use super::worker::Worker;
use super::{Context, ProgramHandle, SharedConfig};
use crate::adopt::plan::{AdoptedProgram, Found};
use crate::adopt::record::Reported;
use crate::adopt::table::Role;
use crate::adopt::{record, verify, watch};
use crate::config::ProgramConfig;
use crate::listener::Listener;
use crate::status::{ProgramStatus, State};
use crate::{error, info, spawn};

/// Whether a process of `config` writes into supergo's log pipes.
fn piped(config: &ProgramConfig) -> bool {
    config.stdout_file.is_some() || (!config.redirect_stderr && config.stderr_file.is_some())
}

impl Worker {
    /// Reports this program's processes and listeners for the state file (a comparison
    /// only, when nothing changed).
    pub(super) fn record_table(&self) {
        let config = &self.resources.config;
        let incoming = self.resources.incoming.as_ref();
        let report = |p: &Process, role: Role, piped: bool| Reported {
            pid: p.pid,
            generation: p.generation,
            role,
            piped,
            stop_signal: p.policy.signal,
            stop_timeout: p.policy.timeout,
            stop_as_group: p.policy.as_group,
        };
        let current = self.gens.current.iter().map(|p| {
            let role = if p.ready {
                Role::Serving
            } else {
                Role::Starting
            };
            report(p, role, piped(config))
        });
        let handoff = self.gens.handoff.iter().map(|h| {
            let piped = piped(incoming.map_or(config, |r| &r.config));
            report(&h.process, Role::Handoff, piped)
        });
        let draining =
            (self.gens.draining.iter()).map(|p| report(p, Role::Draining, piped(config)));
        let listeners = (self.resources.listeners.iter())
            .chain(incoming.into_iter().flat_map(|r| &r.listeners));
        record::update(
            self.adoption.id,
            config,
            self.gens.last,
            listeners,
            current.chain(handoff).chain(draining),
        );
    }

    /// The status note of an adopted serving process, and its pid (for an upgrade in place).
    pub(super) fn adoption_note(&self) -> Option<(Pid, &str)> {
        (self.adoption.note.as_ref()).map(|(pid, note)| (*pid, note.as_str()))
    }

    pub(super) fn set_adoption_note(&mut self, note: Option<(Pid, String)>) {
        self.adoption.note = note;
    }

    /// The status note of an adopted process, while it is the one status shows.
    pub(super) fn annotate(&self, status: &mut ProgramStatus) {
        let note = match &self.adoption.note {
            Some((pid, note)) if status.pid == pid.as_raw() => Some(note),
            _ => None,
        };
        if status.adopted.as_ref() != note {
            status.adopted = note.cloned();
        }
    }

    /// Takes over what adoption left this program (see the module docs).
    pub(super) fn take_adopted(&mut self, adopted: AdoptedProgram) {
        let name = self.name().to_string();
        let newest = adopted.processes().map(|f| f.generation).max();
        self.gens.last = self
            .gens
            .last
            .max(adopted.generation)
            .max(newest.unwrap_or(0));
        if let Some(found) = adopted.serving {
            let mut process = self.watch_adopted(found, &name);
            process.ready = true;
            let pid = process.pid;
            self.adoption.note = Some((
                pid,
                format!(
                    "adopted after supergo pid {} died: not supergo's child, so its exit status will not be known",
                    adopted.previous_pid
                ),
            ));
            self.gens.current = Some(process);
            self.life.state = State::Running;
        }
        for found in adopted.stop {
            let role = found.role;
            let mut process = self.watch_adopted(found, &name);
            if role == Role::Draining {
                // Asked to stop already: a second stop signal could cut its drain short.
                let since = Stamp::now();
                info!(
                    "{name}[{}]: was draining when supergo died; SIGKILL in {} s if still running",
                    process.pid,
                    secs(process.policy.timeout, 1)
                );
                process.stop = Some(Box::new(StopInfo {
                    since,
                    kill_at: Some(since.after(process.policy.timeout)),
                    reason: StopReason::Stop,
                }));
                self.gens.draining.push(process);
            } else {
                if role != Role::Serving {
                    info!(
                        "{name}[{}]: was not ready yet ({}) when supergo died: stopping it",
                        process.pid,
                        role.as_str()
                    );
                }
                self.begin_stop(process, StopReason::Stop);
            }
        }
        if let Some(error) = adopted.error {
            self.record.error = Some(error);
        }
        if self.gens.current.is_none() {
            if let Some(old_pid) = adopted.start_after {
                if self.resources.config.autostart {
                    info!("{name}: starts afresh once pid {old_pid} has exited (it holds a listening socket that could not be taken back)");
                    self.gens.stop_first = Some(StopFirst {
                        old_pid,
                        requested: Stamp::now(),
                    });
                } else {
                    // Nothing starts: the stop ends in `Stopped` once the processes are gone.
                    self.life.stop_requested = true;
                }
                self.life.state = State::Stopping;
            }
            return;
        }
        let Some(why) = adopted.replace else { return };
        let pid = self.gens.current_pid();
        match self.resources.listen_error.clone() {
            // A new generation would have no sockets: the adopted process keeps serving.
            Some(e) => {
                error!("{name}[{pid}]: should be replaced ({why}), but {e}; it keeps serving")
            }
            None => {
                info!("{name}[{pid}]: replacing it at once with a new generation (readiness-gated, no downtime): {why}");
                self.start_handoff(None, None);
            }
        }
    }

    /// An adopted process as one of this worker's: its pidfd registered for signals and
    /// watched for its exit, its start time as the kernel recorded it.
    fn watch_adopted(&mut self, found: Found, name: &str) -> Process {
        let Found {
            pid,
            generation,
            start_ticks,
            stop_signal,
            stop_timeout,
            stop_as_group,
            pidfd,
            ..
        } = found;
        let for_signals = pidfd.as_ref().and_then(|fd| fd.try_clone().ok());
        spawn::register_child(pid, for_signals);
        if let Err(e) = watch::watch(pid, start_ticks, pidfd, self.exit_route()) {
            error!("{name}[{pid}]: cannot watch it for its exit: {e}");
        }
        let mut process = Process::new(pid, generation, &self.resources.config);
        process.policy = StopPolicy {
            signal: stop_signal,
            timeout: stop_timeout,
            as_group: stop_as_group,
        };
        process.started = started_at(start_ticks);
        process.ready_deadline = process.started;
        process.adopted = Some(start_ticks);
        process
    }
}

/// When a process started, from its start time in clock ticks after boot.
fn started_at(start_ticks: u64) -> Stamp {
    let age = verify::age(start_ticks).unwrap_or_default();
    let now = Stamp::now();
    Stamp {
        mono: now.mono.checked_sub(age).unwrap_or(now.mono),
        wall: now.wall.checked_sub(age).unwrap_or(now.wall),
    }
}

/// Starts the worker of a program of the config that adoption left processes to
/// (`program::launch`, with `take_adopted` before its first status is published).
pub fn launch_adopted(
    config: Arc<ProgramConfig>,
    listeners: Result<Vec<Arc<Listener>>, String>,
    ctx: Arc<Context>,
    adopted: AdoptedProgram,
) -> std::io::Result<ProgramHandle> {
    start(config, listeners, ctx, move |worker| {
        worker.take_adopted(adopted)
    })
}

pub(super) fn start(
    config: Arc<ProgramConfig>,
    listeners: Result<Vec<Arc<Listener>>, String>,
    ctx: Arc<Context>,
    prepare: impl FnOnce(&mut Worker),
) -> std::io::Result<ProgramHandle> {
    let status = Arc::new(Mutex::new(ProgramStatus::new(&config.name)));
    let shared_config: SharedConfig = Arc::new(Mutex::new(config.clone()));
    let mut worker = Worker::new(
        config.clone(),
        shared_config.clone(),
        listeners,
        ctx,
        status.clone(),
    );
    prepare(&mut worker);
    worker.publish();
    worker.waiters.flush();
    let commands = worker.commands_tx.clone();
    let thread = worker.start()?;
    Ok(ProgramHandle {
        config: shared_config,
        commands,
        status,
        thread,
    })
}
