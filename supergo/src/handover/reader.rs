//! Reading a state: `State::parse` checks the version line and the syntax of every line;
//! typed getters on each section then read the keys a part of supergo knows, each with its
//! default, and remember what they read, so that `skipped` can list what this version did
//! not know (keys and sections of a newer writer) for one log line.
//!
//! A syntax error (a line that is neither `key=value`, `[section]`, blank nor `# comment`, a
//! bad escape, a child section before any section) and a value of the wrong type are errors
//! that name the line. A key given twice where one value is expected is an error too: which
//! one a reader would take is a guess.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::escape::unescape;
use super::writer::is_name;
use super::{monotonic, FORMAT_MAJOR};

/// A state that cannot be read: the line at fault (1-based) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for StateError {}

fn at(line: usize, message: impl Into<String>) -> StateError {
    StateError {
        line: Some(line),
        message: message.into(),
    }
}

/// A parsed state.
#[derive(Debug)]
pub struct State {
    pub major: u32,
    pub minor: u32,
    /// What the version line says wrote it ("supergo 0.2.0").
    pub writer: String,
    sections: Vec<Section>,
    /// The fds `fd` may give out: handed over and open when this image started (`inherit`).
    handed: BTreeSet<RawFd>,
    taken: RefCell<BTreeSet<RawFd>>,
}

#[derive(Debug)]
struct Section {
    kind: String,
    name: String,
    line: usize,
    entries: Vec<Entry>,
    children: Vec<Section>,
    visited: Cell<bool>,
}

#[derive(Debug)]
struct Entry {
    key: String,
    value: Vec<u8>,
    line: usize,
    used: Cell<bool>,
}

impl State {
    pub fn parse(text: &str) -> Result<State, StateError> {
        let mut lines = text.split('\n').enumerate().map(|(i, line)| (i + 1, line));
        let (major, minor, writer) = version_line(lines.next().map_or("", |(_, l)| l))?;
        let mut sections: Vec<Section> = Vec::new();
        for (n, line) in lines {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(inner) = line.strip_prefix('[') {
                let inner = inner.strip_suffix(']').ok_or_else(|| {
                    at(n, format!("section header {line:?} does not end with `]`"))
                })?;
                let (child, inner) = match inner.strip_prefix('.') {
                    Some(rest) => (true, rest),
                    None => (false, inner),
                };
                let (kind, name) = inner.split_once(' ').unwrap_or((inner, ""));
                if !is_name(kind) {
                    return Err(at(
                        n,
                        format!("bad section kind {kind:?}: expected [a-z0-9_-]"),
                    ));
                }
                let name = unescape(name).map_err(|e| at(n, format!("section name: {e}")))?;
                let section = Section {
                    kind: kind.to_string(),
                    name: String::from_utf8(name)
                        .map_err(|_| at(n, "section name is not UTF-8"))?,
                    line: n,
                    entries: Vec::new(),
                    children: Vec::new(),
                    visited: Cell::new(false),
                };
                match (child, sections.last_mut()) {
                    (false, _) => sections.push(section),
                    (true, Some(parent)) => parent.children.push(section),
                    (true, None) => {
                        return Err(at(n, format!("child section [.{kind}] before any section")))
                    }
                }
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| {
                at(
                    n,
                    format!("expected `key=value`, `[section]` or `# comment`, not {line:?}"),
                )
            })?;
            if !is_name(key) {
                return Err(at(n, format!("bad key {key:?}: expected [a-z0-9_-]")));
            }
            let value = unescape(value).map_err(|e| at(n, format!("`{key}`: {e}")))?;
            let parent = sections
                .last_mut()
                .ok_or_else(|| at(n, format!("`{key}` stands before any section")))?;
            let section = match parent.children.last_mut() {
                Some(child) => child,
                None => parent,
            };
            section.entries.push(Entry {
                key: key.to_string(),
                value,
                line: n,
                used: Cell::new(false),
            });
        }
        Ok(State {
            major,
            minor,
            writer,
            sections,
            handed: BTreeSet::new(),
            taken: RefCell::new(BTreeSet::new()),
        })
    }

    /// The fds `SectionRef::fd` may give out (inherited, and listed in `[handover] fds`).
    pub fn allow_fds(&mut self, fds: BTreeSet<RawFd>) {
        self.handed = fds;
    }

    /// The first top-level section of `kind` (for a section written once, like `[supergo]`).
    pub fn section(&self, kind: &str) -> Option<SectionRef<'_>> {
        self.sections(kind).into_iter().next()
    }

    /// Every top-level section of `kind`, in order (`program`: one per program).
    pub fn sections(&self, kind: &str) -> Vec<SectionRef<'_>> {
        visit(&self.sections, kind)
            .into_iter()
            .map(|section| SectionRef {
                state: self,
                section,
            })
            .collect()
    }

    /// What this version did not read: every section no one asked for, and every key of a
    /// section read that no getter asked for. One line each, naming the line.
    pub fn skipped(&self) -> Vec<String> {
        let mut out = Vec::new();
        skipped_in(&self.sections, &mut out);
        out
    }

    /// Handed-over fds that no key read (a newer writer's field): `commit` closes them.
    pub fn untaken_fds(&self) -> Vec<RawFd> {
        let taken = self.taken.borrow();
        self.handed
            .iter()
            .copied()
            .filter(|fd| !taken.contains(fd))
            .collect()
    }
}

/// The sections of `kind`, marked read.
fn visit<'a>(sections: &'a [Section], kind: &str) -> Vec<&'a Section> {
    let found: Vec<&Section> = sections.iter().filter(|s| s.kind == kind).collect();
    found.iter().for_each(|s| s.visited.set(true));
    found
}

fn skipped_in(sections: &[Section], out: &mut Vec<String>) {
    for section in sections {
        if !section.visited.get() {
            out.push(format!(
                "line {}: section {}",
                section.line,
                section.label()
            ));
            continue;
        }
        for entry in section.entries.iter().filter(|e| !e.used.get()) {
            out.push(format!(
                "line {}: `{}` in {}",
                entry.line,
                entry.key,
                section.label()
            ));
        }
        skipped_in(&section.children, out);
    }
}

/// `supergo-state MAJOR.MINOR (WRITER)`: refuses another major version.
fn version_line(line: &str) -> Result<(u32, u32, String), StateError> {
    let not_state = || {
        let start: String = line.chars().take(40).collect();
        at(
            1,
            format!(
                "not a supergo state: it starts with {start:?}, not \"supergo-state MAJOR.MINOR\""
            ),
        )
    };
    let rest = line.strip_prefix("supergo-state ").ok_or_else(not_state)?;
    let (version, writer) = rest.split_once(' ').unwrap_or((rest, ""));
    let (major, minor) = parse_version(version).ok_or_else(not_state)?;
    let writer = writer
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .to_string();
    if major != FORMAT_MAJOR {
        return Err(at(
            1,
            format!(
                "state format {major}.{minor} (written by {}) cannot be read by supergo {}, which reads format {FORMAT_MAJOR}.x",
                if writer.is_empty() { "an unknown supergo" } else { &writer },
                env!("CARGO_PKG_VERSION"),
            ),
        ));
    }
    Ok((major, minor, writer))
}

/// `1.2` → (1, 2); `1` → (1, 0).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then(|| Some((major.parse().ok()?, minor.parse().ok()?)))?
}

impl Section {
    fn label(&self) -> String {
        if self.name.is_empty() {
            format!("[{}]", self.kind)
        } else {
            format!("[{} {}]", self.kind, self.name)
        }
    }
}

/// One section of a parsed state, with typed getters. A missing key gives the default the
/// caller names (or `None`); a key of the wrong form is an error naming its line.
#[derive(Clone, Copy, Debug)]
pub struct SectionRef<'a> {
    state: &'a State,
    section: &'a Section,
}

impl<'a> SectionRef<'a> {
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
            .map(|section| SectionRef {
                state: self.state,
                section,
            })
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
        if !self.state.handed.contains(&fd) {
            return Err(at(
                entry.line,
                format!("`{key}` in {label}: fd {fd} was not handed over (not listed in [handover] fds, or not open when this supergo started)"),
            ));
        }
        if !self.state.taken.borrow_mut().insert(fd) {
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
