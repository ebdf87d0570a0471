//! One log file: appending whole lines, rotating by size, and riding out a failing disk.
//!
//! A `LogFile` is either open (with the size supergo believes it has) or failing. While
//! failing, what arrives is dropped and counted, and the file is opened again at the next
//! write at most once per `RETRY_EVERY`: the log thread must keep draining the pipes, or
//! children block on a full pipe because a disk is full.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{reason, LogTarget, PipeInfo};

/// How often a failing file is tried again.
pub(super) const RETRY_EVERY: Duration = Duration::from_secs(1);

pub(super) struct LogFile {
    /// The path of the pipe that opened it (`PipeInfo::path`), shared.
    path: Arc<Path>,
    max_bytes: u64,
    backups: u32,
    state: State,
    /// The pipe that opened it, named in messages that no single write caused (reopen).
    owner: Arc<PipeInfo>,
    /// Pipes writing here; the file is closed when the last one is finished.
    pub users: usize,
}

enum State {
    Open {
        file: File,
        size: u64,
    },
    /// Since a failure that was logged once; the episode ends when an open succeeds.
    Failing {
        retry_at: Instant,
        dropped: u64,
    },
}

/// What to do with the head of the data to write.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Write this many bytes (whole lines, unless the data holds a line cut by the buffer).
    Write(usize),
    /// Rotate first: the next line would pass `max_bytes`.
    Rotate,
}

/// The open files, one per path, in the order of their paths: a vector costs a tenth of a
/// hash map's room with 1000 programs (whose table keeps half its slots free and every file
/// in each), and a binary search is as quick for a handful of pipes ready at once.
#[derive(Default)]
pub(super) struct Files(Vec<LogFile>);

impl Files {
    fn find(&self, path: &Path) -> Result<usize, usize> {
        self.0.binary_search_by(|f| (*f.path).cmp(path))
    }

    pub fn get(&self, path: &Path) -> Option<&LogFile> {
        self.find(path).ok().map(|i| &self.0[i])
    }

    pub fn get_mut(&mut self, path: &Path) -> Option<&mut LogFile> {
        self.find(path).ok().map(|i| &mut self.0[i])
    }

    /// The file at `path`, opened by `open` when there is none yet.
    pub fn get_or_open(&mut self, path: &Path, open: impl FnOnce() -> LogFile) -> &mut LogFile {
        let i = match self.find(path) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, open());
                i
            }
        };
        &mut self.0[i]
    }

    pub fn remove(&mut self, path: &Path) {
        if let Ok(i) = self.find(path) {
            self.0.remove(i);
        }
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut LogFile> {
        self.0.iter_mut()
    }
}

impl LogFile {
    /// Opens `owner.path` (the target's path) with `target`'s rotation settings; a failure
    /// is logged and starts a failure episode.
    pub fn open(target: &LogTarget, owner: &Arc<PipeInfo>) -> LogFile {
        let now = Instant::now();
        let mut log = LogFile {
            path: owner.path.clone(),
            max_bytes: target.max_bytes,
            backups: target.backups,
            state: State::Failing {
                retry_at: now,
                dropped: 0,
            },
            owner: owner.clone(),
            users: 0,
        };
        match open_append(&log.path) {
            Ok((file, size)) => log.state = State::Open { file, size },
            Err(e) => log.fail(owner, "cannot open", &e, now),
        }
        log
    }

    /// Takes the rotation settings of the latest registration (`update` may change them).
    pub fn configure(&mut self, target: &LogTarget) {
        self.max_bytes = target.max_bytes;
        self.backups = target.backups;
    }

    /// The path and rotation settings (what an upgrade in place hands over).
    pub fn target(&self) -> LogTarget {
        LogTarget {
            path: self.path.to_path_buf(),
            max_bytes: self.max_bytes,
            backups: self.backups,
        }
    }

    /// Appends `data` (whole lines, see `lines`), rotating between lines where needed.
    /// Whatever cannot be written is dropped and counted against `who`.
    pub fn write(&mut self, mut data: &[u8], who: &PipeInfo) {
        while !data.is_empty() {
            let now = Instant::now();
            if !self.ready(now) {
                self.drop_bytes(data.len(), who);
                return;
            }
            let size = self.current_size(data.len());
            match plan(size, self.max_bytes, data) {
                Plan::Rotate => {
                    if let Err(e) = self.rotate() {
                        self.fail(who, "cannot rotate", &e, now);
                    }
                }
                Plan::Write(n) => {
                    self.append(&data[..n], who, now);
                    data = &data[n..];
                }
            }
        }
    }

    /// Closes the file and opens it again by path (SIGUSR1: an external logrotate moved it).
    pub fn reopen(&mut self) {
        let now = Instant::now();
        match open_append(&self.path) {
            Ok((file, size)) => {
                self.resumed();
                self.state = State::Open { file, size };
            }
            // A failing file stays failing, without a second message.
            Err(e) if matches!(self.state, State::Open { .. }) => {
                let owner = self.owner.clone();
                self.fail(&owner, "cannot reopen", &e, now);
            }
            Err(_) => {}
        }
    }

    /// True when the file is open, opening it again if it was failing and a retry is due.
    fn ready(&mut self, now: Instant) -> bool {
        let State::Failing { retry_at, .. } = &mut self.state else {
            return true;
        };
        if now < *retry_at {
            return false;
        }
        match open_append(&self.path) {
            Ok((file, size)) => {
                self.resumed();
                self.state = State::Open { file, size };
                true
            }
            Err(_) => {
                *retry_at = now + RETRY_EVERY;
                false
            }
        }
    }

    /// The size to plan with. Near the limit, the file's real size is asked for: an
    /// external truncation (logrotate's copytruncate) makes supergo's count stale.
    fn current_size(&mut self, incoming: usize) -> u64 {
        let State::Open { file, size } = &mut self.state else {
            return 0;
        };
        if self.max_bytes > 0 && *size + incoming as u64 > self.max_bytes {
            if let Ok(meta) = file.metadata() {
                *size = meta.len();
            }
        }
        *size
    }

    /// Writes `piece` in full or fails the file; counts written and dropped bytes.
    fn append(&mut self, piece: &[u8], who: &PipeInfo, now: Instant) {
        let State::Open { file, size } = &mut self.state else {
            self.drop_bytes(piece.len(), who);
            return;
        };
        let (done, result) = write_all(file, piece);
        *size += done as u64;
        who.written.fetch_add(done as u64, Ordering::Relaxed);
        if let Err(e) = result {
            self.fail(who, "cannot write", &e, now);
            self.drop_bytes(piece.len() - done, who);
        }
    }

    /// `path.N-1` → `path.N` … `path` → `path.1`, then a fresh `path`; with no backups, a
    /// truncation in place.
    fn rotate(&mut self) -> io::Result<()> {
        if self.backups == 0 {
            if let State::Open { file, size } = &mut self.state {
                // Same inode, so `tail -f` keeps following; O_APPEND puts the next write at 0.
                file.set_len(0)?;
                *size = 0;
            }
            return Ok(());
        }
        // Oldest first, so no rename overwrites a file not moved yet; the rename onto
        // `path.N` replaces the oldest backup atomically (that is the one let go).
        for i in (1..self.backups).rev() {
            rename_existing(&self.backup(i), &self.backup(i + 1))?;
        }
        // Our fd follows the inode to `path.1`; it is replaced just below.
        rename_existing(&self.path, &self.backup(1))?;
        let (file, size) = open_append(&self.path)?;
        self.state = State::Open { file, size };
        Ok(())
    }

    fn backup(&self, n: u32) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Starts a failure episode: logged once, the file closed, output dropped until a retry
    /// opens it.
    fn fail(&mut self, who: &PipeInfo, what: &str, e: &io::Error, now: Instant) {
        crate::error!(
            "{}: {what} {} ({}): {}; its output is dropped until the file can be written \
             again (retried every {} s)",
            who.program,
            self.path.display(),
            who.stream,
            reason(e),
            RETRY_EVERY.as_secs()
        );
        self.state = State::Failing {
            retry_at: now + RETRY_EVERY,
            dropped: 0,
        };
    }

    /// Ends a failure episode, if one is going on, with a message.
    fn resumed(&self) {
        if let State::Failing { dropped, .. } = self.state {
            crate::info!(
                "{}: writing {} again ({}); {dropped} bytes were dropped",
                self.owner.program,
                self.path.display(),
                self.owner.stream
            );
        }
    }

    fn drop_bytes(&mut self, n: usize, who: &PipeInfo) {
        who.dropped.fetch_add(n as u64, Ordering::Relaxed);
        if let State::Failing { dropped, .. } = &mut self.state {
            *dropped += n as u64;
        }
    }
}

/// Where the next write goes: whole lines that fit under `max`, else a rotation; a line
/// longer than `max` goes whole into a fresh file.
fn plan(size: u64, max: u64, data: &[u8]) -> Plan {
    let len = data.len() as u64;
    if max == 0 || size + len <= max {
        return Plan::Write(data.len());
    }
    let room = max.saturating_sub(size).min(len) as usize;
    if let Some(i) = data[..room].iter().rposition(|&b| b == b'\n') {
        return Plan::Write(i + 1);
    }
    if size > 0 {
        return Plan::Rotate;
    }
    Plan::Write(
        data.iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| i + 1),
    )
}

/// Like `Write::write_all`, but says how much was written before an error.
fn write_all(file: &mut File, piece: &[u8]) -> (usize, io::Result<()>) {
    let mut done = 0;
    while done < piece.len() {
        match file.write(&piece[done..]) {
            Ok(0) => return (done, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Err(e)),
        }
    }
    (done, Ok(()))
}

/// Opens a log file for appending; returns it with its size.
fn open_append(path: &Path) -> io::Result<(File, u64)> {
    // O_APPEND: every write lands at the end even after someone else appended to or
    // truncated the file (copytruncate), so there are no holes and nothing is overwritten.
    // Mode 0644 (before umask): operators' tools read it. std opens with O_CLOEXEC, so no
    // child forked by another thread inherits it.
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// `rename`, where a missing source is fine (a gap among the backups, or a file that was
/// deleted from under supergo).
fn rename_existing(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_everything_when_it_fits_or_rotation_is_off() {
        assert_eq!(plan(0, 100, b"a\nb\n"), Plan::Write(4));
        assert_eq!(plan(96, 100, b"a\nb\n"), Plan::Write(4));
        assert_eq!(plan(1 << 40, 0, b"a\n"), Plan::Write(2));
    }

    #[test]
    fn cuts_at_the_last_line_that_fits_then_rotates() {
        assert_eq!(plan(95, 100, b"a\nb\ncc\n"), Plan::Write(4));
        assert_eq!(plan(99, 100, b"a\nb\n"), Plan::Rotate);
        assert_eq!(plan(150, 100, b"a\n"), Plan::Rotate);
    }

    #[test]
    fn a_line_longer_than_the_limit_goes_whole_into_a_fresh_file() {
        assert_eq!(plan(0, 4, b"abcdefgh\nxy\n"), Plan::Write(9));
        assert_eq!(plan(0, 4, b"abcdefgh"), Plan::Write(8));
    }
}
