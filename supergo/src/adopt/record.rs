//! Keeping the state file current: every worker reports its part of the process table here
//! after each turn (`update`, a no-op when nothing changed), and one writer thread writes the
//! whole table atomically (`StateFile::write`) after each change.
//!
//! Why a thread, and why coalesced: a write (temp file, fsync, rename) costs milliseconds,
//! and a restart of `all` changes the table hundreds of times in a second. The writer writes
//! at once after a quiet spell, then at most every `MIN_GAP` (50 ms; ten times a write's own
//! duration when that is longer: a big table on a slow disk) while changes keep coming, so
//! the file lags the table by about that much: a process started in the last moments before
//! supergo is SIGKILLed may be missing from it (and then runs on unsupervised), and one that
//! became ready may still be recorded as starting (`startup` judges it by its age then).
//!
//! Process-wide, like the registry of live children's pidfds: workers report whether or not
//! a state file is in use; until `install` (after every program's worker exists, so that a
//! first write never leaves out a program that was adopted) nothing is written. `finish`
//! writes the last table at exit, or removes the file when no process is left.
//!
//! An upgrade in place keeps the file: the old image hands `installed`'s directory and
//! control address over, and the new image installs the same file once its workers have
//! reported (the registry, the writer and its thread are this image's memory, gone with the
//! exec; the file itself still names the same pid and processes meanwhile).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::procfs;
use super::state_file::StateFile;
use super::table::{config_hash, write_head, write_program, ProcessEntry, Role};
use crate::config::ProgramConfig;
use crate::handover::StateWriter;
use crate::listener::Listener;
use crate::warn;

/// The shortest time between two writes while changes keep coming (longer when a write
/// itself takes longer than a tenth of it).
const MIN_GAP: Duration = Duration::from_millis(50);

/// Every worker's part, in the order of their ids; and the version, bumped by each change.
///
/// Kept small, since every program has its part whether or not a state file is written: a
/// part shares the worker's config and listeners instead of copying their text (the writer
/// prints them), and its config's hash is worked out by the writer, once.
struct Registry {
    parts: Vec<Part>,
    version: u64,
}

struct Part {
    id: u64,
    entry: Entry,
    /// `config_hash(entry.config)`, once the writer has needed it.
    hash: Option<u64>,
}

/// What one worker reports: the config its serving process runs with, the newest
/// generation started, its listeners and its live processes.
struct Entry {
    config: Arc<ProgramConfig>,
    generation: u64,
    listeners: Box<[Arc<Listener>]>,
    processes: Box<[ProcessEntry]>,
}

/// One live process as a worker reports it (`update` adds its start time and process
/// group from /proc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported {
    pub pid: Pid,
    pub generation: u64,
    pub role: Role,
    /// Its stdout or stderr goes to supergo's log pipes.
    pub piped: bool,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub stop_as_group: bool,
}

impl Reported {
    fn matches(&self, p: &ProcessEntry) -> bool {
        self.pid.as_raw() == p.pid
            && self.generation == p.generation
            && self.role == p.role
            && self.piped == p.piped
            && self.stop_signal == p.stop_signal
            && self.stop_timeout == p.stop_timeout
            && self.stop_as_group == p.stop_as_group
    }
}

impl Registry {
    fn index(&self, id: u64) -> Result<usize, usize> {
        self.parts.binary_search_by_key(&id, |p| p.id)
    }
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    parts: Vec::new(),
    version: 0,
});

/// What writes: the file, this supergo's own line, and what was last written.
struct Writer {
    file: StateFile,
    pid: i32,
    start_ticks: u64,
    control: String,
    written: Option<u64>,
    /// The last write error, logged once until it changes.
    last_error: Option<String>,
    /// Set by `finish`: nothing is written after it.
    finished: bool,
}

static WRITER: Mutex<Option<Writer>> = Mutex::new(None);
static WAKE: OnceLock<Sender<()>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

fn writer() -> MutexGuard<'static, Option<Writer>> {
    WRITER.lock().unwrap_or_else(|p| p.into_inner())
}

/// A new id for a worker's part (two workers of one name may coexist: one removed by
/// `update` still draining, one added again).
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The worker `id`'s part of the table is now: `config`, `generation`, `listeners` and
/// `processes` (serving or starting first, then a handoff's, then the draining). Called
/// after every turn of the worker: when nothing changed it only compares, under the lock,
/// without allocating.
pub fn update<'a>(
    id: u64,
    config: &Arc<ProgramConfig>,
    generation: u64,
    listeners: impl Iterator<Item = &'a Arc<Listener>> + Clone,
    processes: impl Iterator<Item = Reported> + Clone,
) {
    let same = |entry: &Entry| {
        Arc::ptr_eq(&entry.config, config)
            && entry.generation == generation
            && entry
                .listeners
                .iter()
                .map(Arc::as_ptr)
                .eq(listeners.clone().map(Arc::as_ptr))
            && entry.processes.len() == processes.clone().count()
            && processes
                .clone()
                .zip(entry.processes.iter())
                .all(|(r, p)| r.matches(p))
    };
    // What /proc said of the processes already recorded (a restart changes the part four
    // or five times: each reading of /proc costs more than the rest of a turn). A handful
    // at most; a program with more reads /proc again for the others.
    let mut known = [(0, 0, 0); 8];
    {
        let registry = registry();
        if let Ok(i) = registry.index(id) {
            let entry = &registry.parts[i].entry;
            if same(entry) {
                return;
            }
            for (slot, p) in known.iter_mut().zip(entry.processes.iter()) {
                *slot = (p.pid, p.start_ticks, p.pgid);
            }
        }
    }
    // Changed (rarely: a process started, became ready, was asked to stop, exited): /proc
    // is read outside the lock, for new processes only. A process that has exited, its
    // exit not routed yet, has nothing to adopt and is left out.
    let processes: Box<[ProcessEntry]> = processes
        .filter_map(|r| {
            let pid = r.pid.as_raw();
            let (start_ticks, pgid) = match known.iter().find(|k| k.0 == pid && pid != 0) {
                Some(&(_, start_ticks, pgid)) => (start_ticks, pgid),
                None => procfs::stat(r.pid)
                    .map(|stat| (stat.start_time, stat.pgid))
                    .ok()?,
            };
            Some(ProcessEntry {
                pid,
                pgid,
                generation: r.generation,
                start_ticks,
                role: r.role,
                piped: r.piped,
                stop_signal: r.stop_signal,
                stop_timeout: r.stop_timeout,
                stop_as_group: r.stop_as_group,
            })
        })
        .collect();
    let entry = Entry {
        config: config.clone(),
        generation,
        listeners: listeners.cloned().collect(),
        processes,
    };
    {
        let mut registry = registry();
        match registry.index(id) {
            Ok(i) => {
                let part = &mut registry.parts[i];
                let old = &part.entry;
                let unchanged = Arc::ptr_eq(&old.config, &entry.config)
                    && old.generation == entry.generation
                    && old
                        .listeners
                        .iter()
                        .map(Arc::as_ptr)
                        .eq(entry.listeners.iter().map(Arc::as_ptr))
                    && old.processes == entry.processes;
                if unchanged {
                    return;
                }
                if !Arc::ptr_eq(&old.config, &entry.config) {
                    part.hash = None;
                }
                part.entry = entry;
            }
            Err(i) => registry.parts.insert(
                i,
                Part {
                    id,
                    entry,
                    hash: None,
                },
            ),
        }
        registry.version += 1;
    }
    wake();
}

/// The worker `id` has ended.
pub fn remove(id: u64) {
    {
        let mut registry = registry();
        let Ok(i) = registry.index(id) else {
            return;
        };
        registry.parts.remove(i);
        registry.version += 1;
    }
    wake();
}

fn wake() {
    if let Some(wake) = WAKE.get() {
        // Full: a wake-up is already pending, which covers this change too.
        let _ = wake.try_send(());
    }
}

/// Starts keeping `file` current, for the supergo serving the control address `control`.
/// The first write happens at once.
pub fn install(file: StateFile, control: &str) {
    let pid = std::process::id() as i32;
    let start_ticks = procfs::start_time(nix::unistd::Pid::from_raw(pid)).unwrap_or(0);
    *writer() = Some(Writer {
        file,
        pid,
        start_ticks,
        control: control.to_string(),
        written: None,
        last_error: None,
        finished: false,
    });
    let (tx, rx) = bounded(1);
    if WAKE.set(tx).is_err() {
        return; // installed already (a second call changes the file only)
    }
    let spawned = std::thread::Builder::new()
        .name("state file".into())
        .stack_size(256 * 1024)
        .spawn(move || run(rx));
    if let Err(e) = spawned {
        warn!("cannot start the state file's thread: {e}; the state file is written only at exit, so a supergo started after a crash cannot take the children back");
    }
    wake();
}

/// The directory of the state file being kept current, and the control address it is for:
/// what an upgrade in place hands to the new image, which `install`s the same file again
/// (the writer thread dies with the exec). `None` when there is none.
pub fn installed() -> Option<(PathBuf, String)> {
    let guard = writer();
    let w = guard.as_ref().filter(|w| !w.finished)?;
    let dir = w.file.path().parent()?.to_path_buf();
    Some((dir, w.control.clone()))
}

fn run(wake: Receiver<()>) {
    let mut next_due: Option<Instant> = None;
    while wake.recv().is_ok() {
        // Changes arriving before the next write is due join it.
        if let Some(due) = next_due {
            while let Ok(()) = wake.recv_deadline(due) {}
        }
        let started = Instant::now();
        write_now();
        // A big table on a slow disk: the writer stays busy at most a tenth of the time.
        let gap = MIN_GAP.max(started.elapsed().saturating_mul(10));
        next_due = Some(Instant::now() + gap);
    }
}

/// Writes the table if it changed since the last write.
pub fn write_now() {
    let mut guard = writer();
    let Some(w) = guard.as_mut().filter(|w| !w.finished) else {
        return;
    };
    let (text, version, _) = text(w);
    if w.written == Some(version) {
        return;
    }
    match w.file.write(&text) {
        Ok(()) => {
            w.written = Some(version);
            w.last_error = None;
        }
        Err(e) => {
            let message = e.to_string();
            if w.last_error.as_deref() != Some(message.as_str()) {
                warn!("state file: {message}; a supergo started after a crash may not find every child");
                w.last_error = Some(message);
            }
        }
    }
}

/// The table's text, its version, and whether any program has a live process. Written
/// from the parts under the registry's lock (workers wait for it only when their part
/// changed): nothing is copied first.
fn text(w: &Writer) -> (String, u64, bool) {
    let mut registry = registry();
    let mut out = StateWriter::new();
    write_head(&mut out, w.pid, w.start_ticks, &w.control);
    let mut any = false;
    for part in &mut registry.parts {
        let entry = &part.entry;
        if entry.processes.is_empty() {
            continue;
        }
        any = true;
        let hash = *part.hash.get_or_insert_with(|| config_hash(&entry.config));
        let listeners = entry.listeners.iter().map(|l| {
            let inode = procfs::socket_inode(l.as_fd()).unwrap_or(0);
            (l.addr.to_string(), inode)
        });
        write_program(
            &mut out,
            &entry.config.name,
            entry.generation,
            hash,
            listeners,
            &entry.processes,
        );
    }
    (out.finish().text, registry.version, any)
}

/// At exit: removes the state file when no process of any program is left (a clean
/// shutdown: nothing to adopt), else writes what is left. Nothing is written afterwards.
pub fn finish() {
    let mut guard = writer();
    let Some(w) = guard.as_mut().filter(|w| !w.finished) else {
        return;
    };
    w.finished = true;
    let (text, _, any) = text(w);
    let outcome = if !any {
        w.file.remove()
    } else {
        warn!(
            "exiting with processes still running: the state file {} names them for the next supergo",
            w.file.path().display()
        );
        w.file.write(&text)
    };
    if let Err(e) = outcome {
        warn!("state file {}: {e}", w.file.path().display());
    }
}
