//! Reading a state: `State::parse` checks the version line and the syntax of every line;
//! typed getters on each section (`section::SectionRef`) then read the keys a part of
//! supergo knows, each with its default, and remember what they read, so that `skipped` can
//! list what this version did not know (keys and sections of a newer writer) for one log
//! line.
//!
//! A syntax error (a line that is neither `key=value`, `[section]`, blank nor `# comment`, a
//! bad escape, a child section before any section) and a value of the wrong type are errors
//! that name the line. A key given twice where one value is expected is an error too: which
//! one a reader would take is a guess.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::os::fd::RawFd;

use super::escape::{is_name, unescape};
use super::parsed::{at, visit, Entry, HandedFds, Section, StateError};
use super::section::SectionRef;
use super::FORMAT_MAJOR;

/// A parsed state.
#[derive(Debug)]
pub struct State {
    pub major: u32,
    pub minor: u32,
    /// What the version line says wrote it ("supergo 0.2.0").
    pub writer: String,
    sections: Vec<Section>,
    /// The fds `SectionRef::fd` may give out, and those it gave.
    fds: HandedFds,
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
            fds: HandedFds::default(),
        })
    }

    /// The fds `SectionRef::fd` may give out (inherited, and listed in `[handover] fds`).
    pub fn allow_fds(&mut self, fds: BTreeSet<RawFd>) {
        self.fds.handed = fds;
    }

    /// The first top-level section of `kind` (for a section written once, like `[supergo]`).
    pub fn section(&self, kind: &str) -> Option<SectionRef<'_>> {
        self.sections(kind).into_iter().next()
    }

    /// Every top-level section of `kind`, in order (`program`: one per program).
    pub fn sections(&self, kind: &str) -> Vec<SectionRef<'_>> {
        visit(&self.sections, kind)
            .into_iter()
            .map(|section| SectionRef::new(&self.fds, section))
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
        let taken = self.fds.taken.borrow();
        self.fds
            .handed
            .iter()
            .copied()
            .filter(|fd| !taken.contains(fd))
            .collect()
    }
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
