//! The process table as the state file holds it: what each program's worker reports about
//! its live processes and listeners (`ProgramEntry`), the whole table with the supergo that
//! wrote it (`Table`), and both directions of the text (`Table::to_text`, `Table::parse`),
//! in the handover format (`handover`) without fds:
//!
//! ```text
//! supergo-state 1.0 (supergo 0.1.0)
//!
//! [handover]
//! pid=4242
//! boot_id=0f5b…
//! fds=
//!
//! [supergo]
//! pid=4242
//! start_ticks=1234
//! control=127.0.0.1:22106
//!
//! [program web]
//! generation=3
//! config_hash=9f0c…
//!
//! [.listener 0]
//! addr=127.0.0.1:4041
//! inode=81234
//!
//! [.process 5012]
//! role=serving
//! pid=5012
//! pgid=5012
//! generation=3
//! start_ticks=98765432
//! piped=false
//! stop_signal=SIGTERM
//! stop_timeout=10000000000
//! stop_as_group=true
//! ```
//!
//! `start_ticks` is field 22 of /proc/PID/stat: with the pid, it names one process for the
//! whole boot (`boot_id` tells boots apart), so a reused pid is never taken for it. `piped`
//! says the process's stdout or stderr went to supergo's log pipes, whose reader dies with
//! supergo. A program may appear twice (a program removed by `update` that still drains,
//! and a new one of the same name): the reader keeps both.

use std::fmt::{self, Write};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::ProgramConfig;
use crate::handover::{SectionRef, State, StateWriter};

/// What a process was doing when the table was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The program's serving process, ready.
    Serving,
    /// The program's current process, not ready yet.
    Starting,
    /// A new generation started by a restart, not ready yet.
    Handoff,
    /// Asked to stop; finishing its work.
    Draining,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Serving => "serving",
            Role::Starting => "starting",
            Role::Handoff => "handoff",
            Role::Draining => "draining",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        [Role::Serving, Role::Starting, Role::Handoff, Role::Draining]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// One live process of a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessEntry {
    pub pid: i32,
    pub pgid: i32,
    pub generation: u64,
    pub start_ticks: u64,
    pub role: Role,
    /// Its stdout or stderr went to supergo's log pipes.
    pub piped: bool,
    /// How it is stopped (from the config it was started with).
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub stop_as_group: bool,
}

/// One listening socket of a program: its `listen_addrs` entry and the socket's inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerEntry {
    pub addr: String,
    pub inode: u64,
}

/// What one program's worker reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramEntry {
    pub name: String,
    /// The newest generation started (`SUPERGO_GENERATION`).
    pub generation: u64,
    /// `config_hash` of the config its serving process runs with.
    pub config_hash: u64,
    pub listeners: Vec<ListenerEntry>,
    pub processes: Vec<ProcessEntry>,
}

/// The whole table and the supergo that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub pid: i32,
    /// The writer's own start time (field 22 of /proc/PID/stat).
    pub start_ticks: u64,
    /// The boot it was written in (`None` when /proc did not say).
    pub boot_id: Option<String>,
    /// The control address it served.
    pub control: String,
    pub programs: Vec<ProgramEntry>,
}

impl Table {
    /// True when no program has a live process.
    pub fn is_empty(&self) -> bool {
        self.programs.iter().all(|p| p.processes.is_empty())
    }

    /// The state file's text. `boot_id` and the writer's pid also go into `[handover]`,
    /// written by the format's own writer.
    pub fn to_text(&self) -> String {
        let mut w = StateWriter::new();
        write_head(&mut w, self.pid, self.start_ticks, &self.control);
        for program in &self.programs {
            let listeners = program.listeners.iter().map(|l| (l.addr.clone(), l.inode));
            write_program(
                &mut w,
                &program.name,
                program.generation,
                program.config_hash,
                listeners,
                &program.processes,
            );
        }
        w.finish().text
    }

    /// Reads a state file's text. Any error names the line at fault.
    pub fn parse(text: &str) -> Result<Table, String> {
        let state = State::parse(text).map_err(|e| e.to_string())?;
        let handover = state.section(crate::handover::HANDOVER);
        let boot_id = match handover {
            Some(h) => h.str("boot_id").map_err(|e| e.to_string())?,
            None => None,
        };
        let head = state
            .section("supergo")
            .ok_or("no [supergo] section: not a supergo state file")?;
        let control = head.string_or("control", "").map_err(|e| e.to_string())?;
        let table = Table {
            pid: head
                .pid("pid")
                .map_err(|e| e.to_string())?
                .ok_or_else(|| head.error("no `pid`").to_string())?,
            start_ticks: head.u64_or("start_ticks", 0).map_err(|e| e.to_string())?,
            boot_id: boot_id.map(str::to_string),
            control,
            programs: state
                .sections("program")
                .iter()
                .map(read_program)
                .collect::<Result<_, _>>()?,
        };
        Ok(table)
    }
}

/// The `[supergo]` section: the supergo that writes the table.
pub(super) fn write_head(w: &mut StateWriter, pid: i32, start_ticks: u64, control: &str) {
    w.section("supergo", "")
        .write_i64("pid", i64::from(pid))
        .write_u64("start_ticks", start_ticks)
        .write_str("control", control);
}

/// One program's sections, with its listeners (address, inode); nothing for a program
/// without a live process (nothing to adopt).
pub(super) fn write_program(
    w: &mut StateWriter,
    name: &str,
    generation: u64,
    config_hash: u64,
    listeners: impl Iterator<Item = (String, u64)>,
    processes: &[ProcessEntry],
) {
    if processes.is_empty() {
        return;
    }
    w.section("program", name)
        .write_u64("generation", generation)
        .write_str("config_hash", &format!("{config_hash:016x}"));
    for (i, (addr, inode)) in listeners.enumerate() {
        w.child("listener", &i.to_string())
            .write_str("addr", &addr)
            .write_u64("inode", inode);
    }
    for p in processes {
        w.child("process", &p.pid.to_string())
            .write_str("role", p.role.as_str())
            .write_i64("pid", i64::from(p.pid))
            .write_i64("pgid", i64::from(p.pgid))
            .write_u64("generation", p.generation)
            .write_u64("start_ticks", p.start_ticks)
            .write_bool("piped", p.piped)
            .write_str("stop_signal", p.stop_signal.as_str())
            .write_duration("stop_timeout", p.stop_timeout)
            .write_bool("stop_as_group", p.stop_as_group);
    }
}

fn read_program(s: &SectionRef<'_>) -> Result<ProgramEntry, String> {
    let e = |e: crate::handover::StateError| e.to_string();
    let hash = s.string_or("config_hash", "0").map_err(e)?;
    let config_hash = u64::from_str_radix(&hash, 16).map_err(|_| {
        s.error(format!("`config_hash` {hash:?} is not hexadecimal"))
            .to_string()
    })?;
    let listeners = s
        .children("listener")
        .iter()
        .map(|l| {
            Ok(ListenerEntry {
                addr: l
                    .str("addr")
                    .map_err(e)?
                    .ok_or_else(|| l.error("no `addr`").to_string())?
                    .to_string(),
                inode: l.u64_or("inode", 0).map_err(e)?,
            })
        })
        .collect::<Result<_, String>>()?;
    let processes = s
        .children("process")
        .iter()
        .map(read_process)
        .collect::<Result<_, String>>()?;
    Ok(ProgramEntry {
        name: s.name().to_string(),
        generation: s.u64_or("generation", 0).map_err(e)?,
        config_hash,
        listeners,
        processes,
    })
}

fn read_process(p: &SectionRef<'_>) -> Result<ProcessEntry, String> {
    let e = |e: crate::handover::StateError| e.to_string();
    let pid = p
        .pid("pid")
        .map_err(e)?
        .ok_or_else(|| p.error("no `pid`").to_string())?;
    let role_text = p.string_or("role", "serving").map_err(e)?;
    let role = Role::parse(&role_text)
        .ok_or_else(|| p.error(format!("unknown role {role_text:?}")).to_string())?;
    let signal_text = p.string_or("stop_signal", "SIGTERM").map_err(e)?;
    let stop_signal = Signal::from_str(&signal_text).map_err(|_| {
        p.error(format!("unknown stop_signal {signal_text:?}"))
            .to_string()
    })?;
    Ok(ProcessEntry {
        pid,
        pgid: p.pid("pgid").map_err(e)?.unwrap_or(pid),
        generation: p.u64_or("generation", 0).map_err(e)?,
        start_ticks: p.u64_or("start_ticks", 0).map_err(e)?,
        role,
        piped: p.bool_or("piped", true).map_err(e)?,
        stop_signal,
        stop_timeout: p
            .duration_or("stop_timeout", Duration::from_secs(10))
            .map_err(e)?,
        stop_as_group: p.bool_or("stop_as_group", true).map_err(e)?,
    })
}

/// A fingerprint of what a program runs and how (every key but where it was defined), so
/// that a supergo started after a crash can tell whether the config changed meanwhile.
/// FNV-1a over the config's `Debug` text: stable for one build of supergo; a new build may
/// print a config differently, which costs one needless zero-downtime handoff at most.
pub fn config_hash(config: &ProgramConfig) -> u64 {
    let mut config = config.clone();
    config.origin = crate::config::Origin {
        file: Default::default(),
        line: 0,
    };
    // Hashed as it is printed: the text is never kept.
    let mut hash = Fnv(0xcbf2_9ce4_8422_2325);
    let _ = write!(hash, "{config:?}");
    hash.0
}

/// FNV-1a, fed by `write!`.
struct Fnv(u64);

impl fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = s.bytes().fold(self.0, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Ok(())
    }
}
