//! Start-up after a crash: what the state file of this control address says, and what to do
//! with every process it names.
//!
//! `begin` (before the control API binds): reads the state file. Missing, unreadable or
//! corrupt: a warning, and a normal start. From another boot: nothing can have survived.
//! Written by a supergo that is still running (its pid with its start time): refused, since
//! that supergo owns these programs. Written by this very process (an upgrade in place
//! execs the same pid): nothing to adopt, the handover restores it.
//!
//! `Startup::adopt` (once the listener pool exists, before any program starts): for each
//! recorded process, `verify::check` says whether it is still the one recorded and this
//! program's. Each recorded listening socket is taken back from a process that holds it
//! (the serving one first) and put in the listener pool under its address, so a program
//! acquires that very socket instead of binding: its accept queue is never interrupted.
//! Then per program of the config: the serving process is adopted when it could be (and
//! replaced at once when its output went to the dead supergo's pipes or its config changed
//! meanwhile); every other process of it is stopped; a program whose serving process could
//! not be adopted starts afresh, after that process has exited if it still holds a socket
//! supergo could not take. Processes of programs no longer in the config are stopped.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::Pid;

use super::plan::{AdoptedProgram, Adoption, Found};
use super::procfs;
use super::state_file::{ensure_dir, state_dir, StateFile};
use super::table::{config_hash, ProgramEntry, Role, Table};
use super::verify::{self, Taking, Verdict};
use crate::config::{Config, ReadyMode};
use crate::listener::{ListenAddr, Listener, ListenerPool};
use crate::{error, info, warn};

/// What `begin` found: the state file to keep current (None: no usable `state_dir`), and
/// the table of a supergo that died, to adopt from.
pub struct Startup {
    pub file: Option<StateFile>,
    previous: Option<Table>,
}

/// Reads the state file of the control address `control` in `configured` (`[supergo]
/// state_dir`) or the default directory. An error only when another supergo that is still
/// running wrote it.
pub fn begin(configured: Option<&Path>, control: &str) -> Result<Startup, String> {
    let dir = state_dir(configured);
    if let Err(e) = ensure_dir(&dir) {
        warn!("{e}; running without a state file: should supergo die, a new supergo cannot take its children back");
        return Ok(Startup {
            file: None,
            previous: None,
        });
    }
    let file = StateFile::new(&dir, control);
    remove_stale_temps(&file);
    let shown = file.path().display().to_string();
    let table = match file.read() {
        Ok(None) => None,
        Ok(Some(text)) => match Table::parse(&text) {
            Ok(table) => Some(table),
            Err(e) => {
                warn!("state file {shown} is corrupt ({e}): ignored; no process is adopted, programs start normally");
                None
            }
        },
        Err(e) => {
            warn!("state file: {e}: ignored; no process is adopted, programs start normally");
            None
        }
    };
    let previous = match table {
        Some(table) => judge(table, &shown)?,
        None => None,
    };
    Ok(Startup {
        file: Some(file),
        previous,
    })
}

/// Removes the temp files a supergo killed in the middle of a write left beside `file`
/// (`.NAME.PID.tmp`, see `StateFile::write`), when no process has that pid any more.
fn remove_stale_temps(file: &StateFile) {
    let (Some(dir), Some(name)) = (file.path().parent(), file.path().file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let pid = entry_name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<i32>().ok());
        let gone = pid.is_some_and(|pid| procfs::stat(Pid::from_raw(pid)).is_err());
        if gone {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The table to adopt from, or None; an error when its writer still runs.
fn judge(table: Table, shown: &str) -> Result<Option<Table>, String> {
    let own = std::process::id() as i32;
    let own_ticks = procfs::start_time(Pid::from_raw(own)).ok();
    if table.pid == own && own_ticks == Some(table.start_ticks) {
        // This process wrote it before an exec in place: the handover carries the rest.
        return Ok(None);
    }
    if let (Some(then), Ok(now)) = (&table.boot_id, procfs::boot_id()) {
        if *then != now {
            info!("state file {shown} is from another boot of this machine: none of its processes can be running; ignored");
            return Ok(None);
        }
    }
    if procfs::is_same_process(Pid::from_raw(table.pid), table.start_ticks) {
        return Err(format!(
            "another supergo (pid {}) is running and owns these programs: its state file {shown} names it. \
             Stop it first (kill {}), or give this supergo another control address (--listen); each address has a state file of its own",
            table.pid, table.pid
        ));
    }
    if table.is_empty() {
        return Ok(None);
    }
    let count: usize = table.programs.iter().map(|p| p.processes.len()).sum();
    info!(
        "state file {shown}: supergo pid {} is gone and left {count} process(es) of {} program(s); taking them back",
        table.pid,
        table.programs.iter().filter(|p| !p.processes.is_empty()).count()
    );
    Ok(Some(table))
}

impl Startup {
    /// Decides, for every recorded process, whether it is adopted, replaced or stopped, and
    /// takes the listening sockets back into `pool` (see the module docs).
    pub fn adopt(&mut self, config: &Config, pool: &ListenerPool) -> Adoption {
        let mut adoption = Adoption::default();
        let Some(table) = self.previous.take() else {
            return adoption;
        };
        for entry in merge(table.programs) {
            let program = config.programs.get(&entry.name);
            // With `ready = "uptime"`, a process that has lived `start_secs` is ready: one
            // recorded while still starting (the state file lags by up to 50 ms) counts as
            // serving once it is that old. `notify` readiness cannot be judged afterwards.
            let ready_after = program
                .filter(|p| p.ready == ReadyMode::Uptime)
                .map(|p| p.start_secs);
            let (mut part, lost_socket) = adopt_program(
                &entry,
                program.is_some(),
                ready_after,
                table.pid,
                pool,
                &mut adoption.held,
            );
            let Some(program) = program else {
                if !part.stop.is_empty() {
                    info!(
                        "{}: no longer in the config: stopping its {} process(es) left by supergo pid {}",
                        entry.name,
                        part.stop.len(),
                        table.pid
                    );
                    adoption.removed.push(part);
                }
                continue;
            };
            if let Some(serving) = &part.serving {
                let mut why = Vec::new();
                let recorded_piped = entry
                    .processes
                    .iter()
                    .any(|p| p.pid == serving.pid.as_raw() && p.piped);
                if recorded_piped || verify::writes_to_pipe(serving.pid) {
                    why.push("its output went to the log pipes of the supergo that died, which nobody reads now");
                }
                if entry.config_hash != config_hash(program) {
                    why.push("its config changed while supergo was down");
                }
                if lost_socket {
                    why.push("one of its listening sockets is gone and is bound anew");
                }
                part.replace = (!why.is_empty()).then(|| why.join("; "));
            }
            adoption.programs.insert(entry.name.clone(), part);
        }
        adoption
    }
}

/// One program's processes checked, its sockets taken back, and the decision (for a
/// program no longer in the config: every process stopped). True beside it when a recorded
/// socket could be taken back from no one.
fn adopt_program(
    entry: &ProgramEntry,
    in_config: bool,
    ready_after: Option<Duration>,
    previous_pid: i32,
    pool: &ListenerPool,
    held: &mut Vec<Arc<Listener>>,
) -> (AdoptedProgram, bool) {
    let name = &entry.name;
    let mut found: Vec<(Found, Option<String>)> = Vec::new();
    for process in &entry.processes {
        match verify::check(process, name) {
            Verdict::Ours(mut f, why_not) => {
                let old_enough = ready_after
                    .zip(verify::age(f.start_ticks))
                    .is_some_and(|(needed, age)| age >= needed);
                if f.role == Role::Starting && old_enough {
                    f.role = Role::Serving;
                }
                found.push((f, why_not));
            }
            Verdict::Gone(why) => info!("{name}: {why}"),
            Verdict::NotOurs(why) => warn!("{name}: {why}"),
        }
    }
    // The serving process first: a socket is taken back from it when it holds one.
    found.sort_by_key(|(f, _)| f.role != Role::Serving);
    let mut part = AdoptedProgram {
        name: name.clone(),
        generation: entry.generation,
        previous_pid,
        ..AdoptedProgram::default()
    };
    let mut lost_socket = false;
    for listener in &entry.listeners {
        let addr = match ListenAddr::parse(&listener.addr, Path::new("/")) {
            Ok(addr) => addr,
            Err(e) => {
                warn!(
                    "{name}: state file: listener {:?}: {e}; not taken back",
                    listener.addr
                );
                continue;
            }
        };
        // Two programs may record one address (the pool shares a socket by address): the
        // socket is taken back once, and a second copy never dropped (a unix listener's
        // drop would unlink the path the first one serves).
        if held.iter().any(|l| l.addr == addr) {
            continue;
        }
        let mut taken = None;
        let mut holder = None;
        for (f, why_not) in found.iter_mut() {
            match verify::take_socket(f, listener.inode, &listener.addr) {
                Taking::Taken(fd) => {
                    taken = Some(fd);
                    break;
                }
                Taking::NotHeld => {}
                Taking::Failed(why) => {
                    error!("{name}[{}]: {why}", f.pid);
                    why_not.get_or_insert(format!("pid {} cannot be adopted: {why}", f.pid));
                    holder.get_or_insert(f.pid);
                }
            }
        }
        match taken {
            Some(fd) => match pool.insert(Listener::from_fd(addr, fd)) {
                Ok(listener) => {
                    info!("{name}: took back the listening socket of {} (inode {}) instead of binding it", listener.addr, listener_inode(&listener));
                    held.push(listener);
                }
                Err(e) => warn!("{name}: {e}"),
            },
            None => {
                if let Some(pid) = holder {
                    part.start_after.get_or_insert(pid);
                }
                lost_socket = true;
            }
        }
    }
    for (f, why_not) in found {
        let adoptable =
            in_config && f.role == Role::Serving && why_not.is_none() && f.pidfd.is_some();
        if adoptable && part.serving.is_none() {
            info!(
                "{name}[{}]: adopted (generation {}, started by supergo pid {previous_pid}, which is gone): it keeps serving on the same sockets; \
                 it is not supergo's child, so its exit status will not be known",
                f.pid, f.generation
            );
            part.serving = Some(f);
            continue;
        }
        match why_not.filter(|_| in_config) {
            Some(why) if f.role == Role::Serving => {
                error!("{name}: {why}: stopping it gracefully; the program starts afresh");
                part.error.get_or_insert(format!(
                    "{why}: it was stopped and the program started afresh"
                ));
            }
            Some(why) => warn!("{name}: {why}: stopping it gracefully"),
            None => {}
        }
        part.stop.push(f);
    }
    if part.serving.is_some() || !in_config {
        // Nothing to wait for: its sockets are back, or nothing starts.
        part.start_after = None;
    }
    (part, lost_socket)
}

fn listener_inode(listener: &Listener) -> u64 {
    procfs::socket_inode(std::os::fd::AsFd::as_fd(listener)).unwrap_or(0)
}

/// One entry per program name: a program removed by `update` that still drained and a new
/// one of the same name are one program now.
pub(super) fn merge(programs: Vec<ProgramEntry>) -> Vec<ProgramEntry> {
    let mut by_name: BTreeMap<String, ProgramEntry> = BTreeMap::new();
    for program in programs {
        match by_name.get_mut(&program.name) {
            None => {
                by_name.insert(program.name.clone(), program);
            }
            Some(merged) => {
                merged.generation = merged.generation.max(program.generation);
                if program.processes.iter().any(|p| p.role == Role::Serving) {
                    merged.config_hash = program.config_hash;
                }
                merged.listeners.extend(program.listeners);
                merged.processes.extend(program.processes);
            }
        }
    }
    by_name.into_values().collect()
}
