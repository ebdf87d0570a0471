//! Typed reading of one section of a parsed state (`SectionRef`): each getter takes the
//! default its caller names for a missing key, marks the key read (what `State::skipped`
//! leaves out), and turns a value of the wrong form into an error naming its line, key and
//! section. Fds come out as `HandedFd` tokens, owned only after the commit (`inherit`).

use std::ffi::OsString;
use std::fmt;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::monotonic;
use super::parsed::{at, visit, Entry, HandedFds, Section, StateError};

/// One section of a parsed state, with typed getters. A missing key gives the default the
/// caller names (or `None`); a key of the wrong form is an error naming its line.
#[derive(Clone, Copy, Debug)]
pub struct SectionRef<'a> {
    fds: &'a HandedFds,
    section: &'a Section,
}

impl<'a> SectionRef<'a> {
    pub(super) fn new(fds: &'a HandedFds, section: &'a Section) -> SectionRef<'a> {
        SectionRef { fds, section }
    }

    pub fn kind(&self) -> &'a str {
        &self.section.kind
    }

    /// The name after the kind (`web` in `[program web]`), empty when none.
    pub fn name(&self) -> &'a str {
        &self.section.name
    }

    pub fn line(&self) -> usize {
        self.section.line
    }

    /// Child sections of `kind`, in order (a program's `[.process …]`).
    pub fn children(&self, kind: &str) -> Vec<SectionRef<'a>> {
        visit(&self.section.children, kind)
            .into_iter()
            .map(|section| SectionRef::new(self.fds, section))
            .collect()
    }

    pub fn child(&self, kind: &str) -> Option<SectionRef<'a>> {
        self.children(kind).into_iter().next()
    }

    /// An error about this section, at its header.
    pub fn error(&self, message: impl fmt::Display) -> StateError {
        at(
            self.section.line,
            format!("{}: {message}", self.section.label()),
        )
    }

    /// The one entry of `key`, marked read.
    fn entry(&self, key: &str) -> Result<Option<&'a Entry>, StateError> {
        let mut found = self.section.entries.iter().filter(|e| e.key == key);
        let Some(first) = found.next() else {
            return Ok(None);
        };
        first.used.set(true);
        if let Some(second) = found.next() {
            second.used.set(true);
            return Err(at(
                second.line,
                format!(
                    "`{key}` in {} is given twice (first at line {})",
                    self.section.label(),
                    first.line
                ),
            ));
        }
        Ok(Some(first))
    }

    fn invalid(&self, entry: &Entry, expected: &str) -> StateError {
        let shown = String::from_utf8_lossy(&entry.value);
        at(
            entry.line,
            format!(
                "`{}` in {} must be {expected}, not {shown:?}",
                entry.key,
                self.section.label()
            ),
        )
    }

    pub fn bytes(&self, key: &str) -> Result<Option<&'a [u8]>, StateError> {
        Ok(self.entry(key)?.map(|e| e.value.as_slice()))
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>, StateError> {
        self.entry(key)?
            .map(|e| std::str::from_utf8(&e.value).map_err(|_| self.invalid(e, "UTF-8 text")))
            .transpose()
    }

    pub fn string_or(&self, key: &str, default: &str) -> Result<String, StateError> {
        Ok(self.str(key)?.unwrap_or(default).to_string())
    }

    pub fn path(&self, key: &str) -> Result<Option<PathBuf>, StateError> {
        Ok(self
            .bytes(key)?
            .map(|b| PathBuf::from(OsString::from_vec(b.to_vec()))))
    }

    /// Every value of a key that may be repeated (one line per item), in order.
    pub fn list(&self, key: &str) -> Result<Vec<&'a str>, StateError> {
        let entries = self.section.entries.iter().filter(|e| e.key == key);
        entries
            .inspect(|e| e.used.set(true))
            .map(|e| std::str::from_utf8(&e.value).map_err(|_| self.invalid(e, "UTF-8 text")))
            .collect()
    }

    fn parsed<T: FromStr>(&self, key: &str, expected: &str) -> Result<Option<T>, StateError> {
        self.entry(key)?
            .map(|e| {
                std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| self.invalid(e, expected))
            })
            .transpose()
    }

    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, StateError> {
        Ok(self.parsed(key, "a whole number ≥ 0")?.unwrap_or(default))
    }

    pub fn u32_or(&self, key: &str, default: u32) -> Result<u32, StateError> {
        Ok(self
            .parsed(key, "a whole number from 0 to 4294967295")?
            .unwrap_or(default))
    }

    pub fn i64_or(&self, key: &str, default: i64) -> Result<i64, StateError> {
        Ok(self.parsed(key, "a whole number")?.unwrap_or(default))
    }

    /// A pid (or any i32 that must be > 0).
    pub fn pid(&self, key: &str) -> Result<Option<i32>, StateError> {
        let value: Option<i32> = self.parsed(key, "a pid (a whole number > 0)")?;
        match (value, self.entry(key)?) {
            (Some(pid), Some(e)) if pid <= 0 => Err(self.invalid(e, "a pid (a whole number > 0)")),
            _ => Ok(value),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, StateError> {
        Ok(self.parsed(key, "true or false")?.unwrap_or(default))
    }

    /// A duration written by `write_duration` (whole nanoseconds).
    pub fn duration_or(&self, key: &str, default: Duration) -> Result<Duration, StateError> {
        Ok(self
            .parsed(key, "a duration in nanoseconds")?
            .map_or(default, Duration::from_nanos))
    }

    /// A deadline written by `write_deadline`, as an `Instant` of this process.
    pub fn deadline(&self, key: &str) -> Result<Option<Instant>, StateError> {
        let at: Option<u64> = self.parsed(key, "CLOCK_MONOTONIC nanoseconds")?;
        Ok(at.map(|at| {
            let now_mono = monotonic::now_nanos();
            let now = Instant::now();
            if at >= now_mono {
                now + Duration::from_nanos(at - now_mono)
            } else {
                now.checked_sub(Duration::from_nanos(now_mono - at))
                    .unwrap_or(now)
            }
        }))
    }

    /// The inherited fd `key` names, checked: it was handed over (listed in `[handover] fds`
    /// and open when this image started) and no other key names it. Ownership comes later
    /// (`HandedFd::into_owned`), once the whole state has been read: a restore that fails
    /// half-way must leave every fd open for the fallback.
    pub fn fd(&self, key: &str) -> Result<Option<HandedFd>, StateError> {
        let Some(entry) = self.entry(key)? else {
            return Ok(None);
        };
        let fd: RawFd = std::str::from_utf8(&entry.value)
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| self.invalid(entry, "an fd number"))?;
        let label = self.section.label();
        if !self.fds.handed.contains(&fd) {
            return Err(at(
                entry.line,
                format!("`{key}` in {label}: fd {fd} was not handed over (not listed in [handover] fds, or not open when this supergo started)"),
            ));
        }
        if !self.fds.taken.borrow_mut().insert(fd) {
            return Err(at(
                entry.line,
                format!("`{key}` in {label}: fd {fd} is named by another key too"),
            ));
        }
        Ok(Some(HandedFd(fd)))
    }
}

/// An inherited fd, checked by `SectionRef::fd` and named by one key only; owned (and closed
/// on drop) only after `Inherited::commit`.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an fd read from the state must be owned after the commit, or it leaks"]
pub struct HandedFd(pub(super) RawFd);

impl HandedFd {
    pub fn raw(&self) -> RawFd {
        self.0
    }
}
