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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::procfs;
use super::state_file::StateFile;
use super::table::{ProgramEntry, Table};
use crate::warn;

/// The shortest time between two writes while changes keep coming (longer when a write
/// itself takes longer than a tenth of it).
const MIN_GAP: Duration = Duration::from_millis(50);

/// Every worker's part, by worker id; and the version, bumped by each change.
struct Registry {
    entries: BTreeMap<u64, ProgramEntry>,
    version: u64,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    entries: BTreeMap::new(),
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

/// The worker `id`'s part of the table is now `entry`.
pub fn update(id: u64, entry: &ProgramEntry) {
    {
        let mut registry = registry();
        if registry.entries.get(&id) == Some(entry) {
            return;
        }
        registry.entries.insert(id, entry.clone());
        registry.version += 1;
    }
    wake();
}

/// The worker `id` has ended.
pub fn remove(id: u64) {
    {
        let mut registry = registry();
        if registry.entries.remove(&id).is_none() {
            return;
        }
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
    let (table, version) = snapshot(w);
    if w.written == Some(version) {
        return;
    }
    match w.file.write(&table.to_text()) {
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

fn snapshot(w: &Writer) -> (Table, u64) {
    let registry = registry();
    let table = Table {
        pid: w.pid,
        start_ticks: w.start_ticks,
        // Written into [handover] by the format's own writer.
        boot_id: None,
        control: w.control.clone(),
        programs: registry.entries.values().cloned().collect(),
    };
    (table, registry.version)
}

/// At exit: removes the state file when no process of any program is left (a clean
/// shutdown: nothing to adopt), else writes what is left. Nothing is written afterwards.
pub fn finish() {
    let mut guard = writer();
    let Some(w) = guard.as_mut().filter(|w| !w.finished) else {
        return;
    };
    w.finished = true;
    let (table, _) = snapshot(w);
    let outcome = if table.is_empty() {
        w.file.remove()
    } else {
        warn!(
            "exiting with processes still running: the state file {} names them for the next supergo",
            w.file.path().display()
        );
        w.file.write(&table.to_text())
    };
    if let Err(e) = outcome {
        warn!("state file {}: {e}", w.file.path().display());
    }
}
