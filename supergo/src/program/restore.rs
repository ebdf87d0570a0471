//! A worker rebuilt by the new image of an upgrade in place from what `serialize` wrote.
//!
//! In two steps, as `handover::inherit` requires: `RestoredProgram::read` reads and checks
//! the program's section (plain values, and fd numbers as `HandedFd`s: any error here makes
//! the new image fall back to the old binary with every fd still open); once the whole state
//! is read and committed, `launch` owns the fds, registers every process with the reaper
//! (with a pidfd opened again: still supergo's unreaped child, its pid cannot have been
//! reused) before the new image's first reap, and starts the worker thread.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::adopted_handover;
use super::config_state;
use super::generations::Generations;
use super::lifecycle::Lifecycle;
use super::outputs::{LogSettings, Outputs};
use super::process::{Process, StopInfo, StopPolicy, StopReason};
use super::record::Record;
use super::stamp::Stamp;
use super::worker::Worker;
use super::{Context, ProgramHandle};
use crate::config::ProgramConfig;
use crate::handover::inherit::Committed;
use crate::handover::{HandedFd, SectionRef, StateError};
use crate::notify::NotifySocket;
use crate::reaper::ExitStatus;
use crate::status::{ProgramStatus, SharedStatus, State};
use crate::warn;

/// One program as the state described it, fds not owned yet.
pub struct RestoredProgram {
    pub name: String,
    config: ProgramConfig,
    life: Lifecycle,
    gens: Generations,
    record: Record,
    listen_error: Option<String>,
    notify: Option<HandedFd>,
    outputs: Option<RestoredOutputs>,
    adopted_note: adopted_handover::Note,
    end_reported: bool,
}

struct RestoredOutputs {
    settings: LogSettings,
    stdout: Option<(u64, HandedFd)>,
    stderr: Option<(u64, HandedFd)>,
}

impl RestoredProgram {
    /// Reads `[program NAME]` and its children.
    pub fn read(s: &SectionRef<'_>) -> Result<RestoredProgram, StateError> {
        let name = s.name().to_string();
        let config = config_state::read(s, &name)?;
        let mut life = Lifecycle::new();
        let state = s.string_or("state", "Stopped")?;
        life.state =
            parse_state(&state).ok_or_else(|| s.error(format!("unknown state {state:?}")))?;
        life.failures = s.u32_or("failures", 0)?;
        life.backoff_until = read_stamp(s, "backoff_until")?;
        life.stop_requested = s.bool_or("stop_requested", false)?;
        life.shutting_down = s.bool_or("shutting_down", false)?;
        let mut gens = Generations {
            last: s.u64_or("generation", 0)?,
            ..Generations::default()
        };
        for pid in s.list("stillborn")? {
            let pid = pid
                .parse()
                .map_err(|_| s.error(format!("stillborn pid {pid:?}")))?;
            gens.stillborn.push(Pid::from_raw(pid));
        }
        let _ = s.u64_or("stillborn_count", 0)?;
        for p in s.children("process") {
            let process = read_process(&p)?;
            match p.string_or("role", "")?.as_str() {
                "serving" if gens.current.is_none() => gens.current = Some(process),
                "draining" => gens.draining.push(process),
                other => return Err(p.error(format!("unexpected role {other:?}"))),
            }
        }
        let record = Record {
            stop_time: UNIX_EPOCH + Duration::from_nanos(s.u64_or("stop_time_wall", 0)?),
            restarts: s.u64_or("restarts", 0)?,
            handoffs: s.u64_or("handoffs", 0)?,
            failed_handoffs: s.u64_or("failed_handoffs", 0)?,
            last_handoff_ms: s.str("last_handoff_ms")?.and_then(|ms| ms.parse().ok()),
            last_exit: s.str("last_exit")?.map(str::to_string),
            error: s.str("error")?.map(str::to_string),
            status_text: s.str("status_text")?.map(str::to_string),
        };
        let outputs = match s.child("outputs") {
            None => None,
            Some(o) => Some(RestoredOutputs {
                settings: LogSettings {
                    stdout_file: o.path("stdout_file")?,
                    stderr_file: o.path("stderr_file")?,
                    redirect_stderr: o.bool_or("redirect_stderr", false)?,
                    max_bytes: o.u64_or("max_bytes", 0)?,
                    backups: o.u32_or("backups", 0)?,
                },
                stdout: read_pipe(&o, "stdout")?,
                stderr: read_pipe(&o, "stderr")?,
            }),
        };
        Ok(RestoredProgram {
            name,
            config,
            life,
            gens,
            record,
            listen_error: s.str("listen_error")?.map(str::to_string),
            notify: s.fd("notify_fd")?,
            outputs,
            adopted_note: adopted_handover::read_note(s)?,
            end_reported: s.bool_or("end_reported", false)?,
        })
    }

    /// The config the program runs with (what `reread` compares the file against).
    pub fn config(&self) -> &ProgramConfig {
        &self.config
    }

    /// Processes handed over: (serving, draining).
    pub fn process_counts(&self) -> (usize, usize) {
        (
            usize::from(self.gens.current.is_some()),
            self.gens.draining.len(),
        )
    }

    /// The serving process's pid, if any.
    pub fn serving_pid(&self) -> Option<Pid> {
        self.gens.current.as_ref().map(|p| p.pid)
    }

    /// Owns the fds, registers the processes with the reaper and starts the worker.
    pub fn launch(
        self,
        committed: &Committed,
        ctx: Arc<Context>,
    ) -> std::io::Result<ProgramHandle> {
        let RestoredProgram {
            name,
            config,
            life,
            gens,
            record,
            listen_error,
            notify,
            outputs,
            adopted_note,
            end_reported,
        } = self;
        let notify = notify.map(|fd| fd.into_owned(committed));
        let outputs = outputs.map(|o| {
            let adopt = |pipe: Option<(u64, HandedFd)>| {
                pipe.and_then(|(id, fd)| ctx.logs.adopt_pipe(id, fd.into_owned(committed)))
            };
            let stdout = adopt(o.stdout);
            let stderr = adopt(o.stderr);
            Outputs::from_parts(o.settings, stdout, stderr)
        });
        let config = Arc::new(config);
        let listeners = ctx
            .pool
            .acquire_all(&config.listen_addrs, config.socket_mode);
        let status: SharedStatus = Arc::new(Mutex::new(ProgramStatus::new(&name)));
        let shared_config = Arc::new(Mutex::new(config.clone()));
        let mut worker = Worker::new(
            config,
            shared_config.clone(),
            listeners,
            ctx,
            status.clone(),
        );
        if worker.resources.listen_error.is_none() {
            worker.resources.listen_error = listen_error;
        }
        worker.life = life;
        worker.record = record;
        worker.end_reported = end_reported;
        worker.resources.outputs = outputs;
        worker.resources.notify = notify.and_then(|fd| {
            NotifySocket::adopt(&name, fd)
                .map_err(|e| warn!("{name}: cannot take its NOTIFY_SOCKET back: {e}; a new one is made at its next start"))
                .ok()
                .map(Box::new)
        });
        // Children of supergo's only: an adopted process is not, and is watched again below.
        let pids = gens.current.iter().chain(&gens.draining);
        for pid in pids
            .filter(|p| p.leader_exit.is_none() && p.adopted.is_none())
            .map(|p| p.pid)
            .chain(gens.stillborn.iter().copied())
        {
            worker.ctx.reaper.adopt(pid, worker.exit_route());
        }
        worker.gens = gens;
        worker.watch_handed_over(adopted_note);
        worker.publish();
        let commands = worker.commands_tx.clone();
        let thread = worker.start()?;
        Ok(ProgramHandle {
            config: shared_config,
            commands,
            status,
            thread,
        })
    }
}

fn read_pipe(o: &SectionRef<'_>, stream: &str) -> Result<Option<(u64, HandedFd)>, StateError> {
    let id = o.u64_or(&format!("{stream}_pipe"), 0)?;
    let fd = o.fd(&format!("{stream}_fd"))?;
    Ok(fd.map(|fd| (id, fd)))
}

fn read_process(p: &SectionRef<'_>) -> Result<Process, StateError> {
    let pid = p.pid("pid")?.ok_or_else(|| p.error("no pid"))?;
    let signal = p.string_or("stop_signal", "SIGTERM")?;
    let signal: Signal = signal
        .parse()
        .map_err(|_| p.error(format!("unknown stop_signal {signal:?}")))?;
    let started = read_stamp(p, "started")?.ok_or_else(|| p.error("no start time"))?;
    let stop = match read_stamp(p, "stop_since")? {
        None => None,
        Some(since) => Some(Box::new(StopInfo {
            since,
            kill_at: read_stamp(p, "kill_at")?,
            reason: parse_reason(&p.string_or("stop_reason", "stop")?),
        })),
    };
    let leader_exit = match p.str("leader_exit")? {
        None => None,
        Some(text) => {
            Some(parse_exit(text).ok_or_else(|| p.error(format!("leader_exit {text:?}")))?)
        }
    };
    Ok(Process {
        pid: Pid::from_raw(pid),
        generation: p.u64_or("generation", 0)?,
        policy: StopPolicy {
            signal,
            timeout: p.duration_or("stop_timeout", Duration::from_secs(10))?,
            as_group: p.bool_or("stop_as_group", true)?,
        },
        started,
        ready_deadline: read_stamp(p, "ready_deadline")?.unwrap_or(started),
        ready: p.bool_or("ready", true)?,
        stop,
        leader_exit,
        adopted: match p.str("adopted_ticks")? {
            None => None,
            Some(ticks) => Some(
                ticks
                    .parse()
                    .map_err(|_| p.error(format!("adopted_ticks {ticks:?}")))?,
            ),
        },
    })
}

/// A stamp written by `serialize::write_stamp`: the instant from its monotonic half, the
/// wall-clock time from `KEY_wall`.
fn read_stamp(s: &SectionRef<'_>, key: &str) -> Result<Option<Stamp>, StateError> {
    let Some(mono) = s.deadline(key)? else {
        return Ok(None);
    };
    let wall = match s.u64_or(&format!("{key}_wall"), 0)? {
        0 => SystemTime::now(),
        nanos => UNIX_EPOCH + Duration::from_nanos(nanos),
    };
    Ok(Some(Stamp { mono, wall }))
}

fn parse_state(text: &str) -> Option<State> {
    Some(match text {
        "Stopped" => State::Stopped,
        "Starting" => State::Starting,
        "Running" => State::Running,
        "Backoff" => State::Backoff,
        "Stopping" => State::Stopping,
        "Exited" => State::Exited,
        "Fatal" => State::Fatal,
        _ => return None,
    })
}

fn parse_reason(text: &str) -> StopReason {
    match text {
        "handoff" => StopReason::Handoff,
        "rollback" => StopReason::Rollback,
        "restart" => StopReason::Restart,
        "replaced" => StopReason::Replaced,
        _ => StopReason::Stop,
    }
}

/// What `serialize::exit_status` wrote.
fn parse_exit(text: &str) -> Option<ExitStatus> {
    if text == "unknown" {
        return Some(ExitStatus::Unknown);
    }
    let mut parts = text.split(':');
    match (parts.next()?, parts.next()?, parts.next()) {
        ("code", code, None) => Some(ExitStatus::Code(code.parse().ok()?)),
        ("signal", n, core) => {
            let signal = Signal::try_from(n.parse::<i32>().ok()?).ok()?;
            Some(ExitStatus::Signal(signal, core == Some("core")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handover::monotonic;
    use crate::handover::State as Parsed;

    #[test]
    fn a_program_section_reads_back_into_its_parts() {
        let now = monotonic::now_nanos();
        let text = format!(
            "supergo-state 1.0\n[program web]\nstate=Running\nfailures=2\ngeneration=3\n\
             restarts=4\nhandoffs=5\nlast_handoff_ms=12.5\nlast_exit=exited with status 0\n\
             end_reported=true\nadopted_note_pid=90\nadopted_note=adopted after a crash\n\
             [.config]\narg_count=1\narg=sleep\ndirectory=/tmp\n\
             [.process 100]\nrole=serving\npid=100\ngeneration=3\nstop_signal=SIGINT\n\
             stop_timeout=2000000000\nready=true\nstarted={}\nstarted_wall=1700000000000000000\n\
             [.process 90]\nrole=draining\npid=90\ngeneration=2\nstarted={}\nstop_since={}\n\
             stop_reason=handoff\nkill_at={}\nleader_exit=signal:9:core\nadopted_ticks=4242\n",
            now - 5_000_000_000,
            now - 9_000_000_000,
            now - 1_000_000_000,
            now + 9_000_000_000,
        );
        let state = Parsed::parse(&text).expect("parses");
        let section = state.section("program").expect("the program");
        let p = RestoredProgram::read(&section).expect("reads");
        assert_eq!(p.name, "web");
        assert_eq!(p.life.state, State::Running);
        assert_eq!(p.life.failures, 2);
        assert_eq!((p.record.restarts, p.record.handoffs), (4, 5));
        assert_eq!(p.record.last_handoff_ms, Some(12.5));
        assert_eq!(p.gens.last, 3);
        let serving = p.gens.current.as_ref().expect("serving");
        assert_eq!(serving.pid, Pid::from_raw(100));
        assert_eq!(serving.policy.signal, Signal::SIGINT);
        assert_eq!(serving.policy.timeout, Duration::from_secs(2));
        let ago = serving.started.elapsed();
        assert!(
            ago >= Duration::from_secs(5) && ago < Duration::from_secs(6),
            "{ago:?}"
        );
        assert_eq!(serving.started.unix_seconds(), 1_700_000_000.0);
        let draining = &p.gens.draining[0];
        let stop = draining.stop.as_ref().expect("stopping");
        assert_eq!(stop.reason, StopReason::Handoff);
        let left = stop
            .kill_at
            .expect("a deadline")
            .mono
            .saturating_duration_since(std::time::Instant::now());
        assert!(
            left > Duration::from_secs(8) && left <= Duration::from_secs(9),
            "{left:?}"
        );
        assert_eq!(
            draining.leader_exit,
            Some(ExitStatus::Signal(Signal::SIGKILL, true))
        );
        assert_eq!(p.process_counts(), (1, 1));
        // A child of supergo's, and a process adopted after a crash (with its start time).
        assert_eq!(serving.adopted, None);
        assert_eq!(draining.adopted, Some(4242));
        assert_eq!(
            p.adopted_note,
            Some((Pid::from_raw(90), "adopted after a crash".to_string()))
        );
        assert!(p.end_reported);
    }
}
