//! The parsed form of a state, shared by the parser (`reader`) and the typed getters
//! (`section`): its sections and `key=value` entries, each remembering whether a reader
//! asked for it, the fds the state may give out, and the error that names a line.
//!
//! A leaf: it knows neither how the text is parsed nor how a value is typed, so both sides
//! build on it without importing each other.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt;
use std::os::fd::RawFd;

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

pub(super) fn at(line: usize, message: impl Into<String>) -> StateError {
    StateError {
        line: Some(line),
        message: message.into(),
    }
}

#[derive(Debug)]
pub(super) struct Section {
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) line: usize,
    pub(super) entries: Vec<Entry>,
    pub(super) children: Vec<Section>,
    pub(super) visited: Cell<bool>,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) value: Vec<u8>,
    pub(super) line: usize,
    pub(super) used: Cell<bool>,
}

impl Section {
    pub(super) fn label(&self) -> String {
        if self.name.is_empty() {
            format!("[{}]", self.kind)
        } else {
            format!("[{} {}]", self.kind, self.name)
        }
    }
}

/// The sections of `kind`, marked read.
pub(super) fn visit<'a>(sections: &'a [Section], kind: &str) -> Vec<&'a Section> {
    let found: Vec<&Section> = sections.iter().filter(|s| s.kind == kind).collect();
    found.iter().for_each(|s| s.visited.set(true));
    found
}

/// The fds a state may give out, and those its keys have named so far.
#[derive(Debug, Default)]
pub(super) struct HandedFds {
    /// Handed over and open when this image started (`inherit`).
    pub(super) handed: BTreeSet<RawFd>,
    pub(super) taken: RefCell<BTreeSet<RawFd>>,
}
