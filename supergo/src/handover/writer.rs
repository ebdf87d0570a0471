//! Writing a state: `StateWriter` turns what each part of supergo says about itself into the
//! line format described in `handover` (mod.rs), collecting the fds it names on the way.
//!
//! Each part writes its own section (`section("program", "web")`) and, below it, child
//! sections for its lists (`child("process", "4990")`); then `write_*` calls add `key=value`
//! lines to the section opened last. Keys and kinds are names chosen in code (`[a-z0-9_-]`):
//! a bad one is a bug, caught by an assertion. Values are escaped, so any string is fine.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::escape::{escape, is_name};
use super::{monotonic, FORMAT_MAJOR, FORMAT_MINOR, HANDOVER};

/// A state being written. `finish` gives the text and the fds it names.
#[derive(Debug, Default)]
pub struct StateWriter {
    body: String,
    /// Every fd a `write_fd` named, in order, without repeats.
    fds: Vec<RawFd>,
    /// The binary the state was written by, kept open for the fallback (see `exec`).
    exe: Option<(RawFd, Vec<u8>)>,
    /// A top-level section is open: a `child` may follow.
    in_section: bool,
    /// A section (top-level or child) is open: keys may follow.
    in_any: bool,
}

/// A finished state: its text, and every fd it names (which must stay open, and lose
/// FD_CLOEXEC just before the exec that hands them over).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serialized {
    pub text: String,
    pub fds: Vec<RawFd>,
}

impl StateWriter {
    pub fn new() -> StateWriter {
        StateWriter::default()
    }

    /// Opens a top-level section `[kind name]` (`name` may be empty: `[kind]`).
    pub fn section(&mut self, kind: &str, name: &str) -> &mut Self {
        self.header("", kind, name);
        self.in_section = true;
        self
    }

    /// Opens a child section `[.kind name]` of the top-level section opened last: one item
    /// of a list (a draining process, a listener).
    pub fn child(&mut self, kind: &str, name: &str) -> &mut Self {
        assert!(
            self.in_section,
            "state writer: child section [.{kind}] before any top-level section"
        );
        self.header(".", kind, name);
        self
    }

    fn header(&mut self, dot: &str, kind: &str, name: &str) {
        assert_name("section kind", kind);
        self.body.push('\n');
        self.body.push('[');
        self.body.push_str(dot);
        self.body.push_str(kind);
        if !name.is_empty() {
            self.body.push(' ');
            self.body.push_str(&escape(name.as_bytes()));
        }
        self.body.push_str("]\n");
        self.in_any = true;
    }

    /// `key=value`, the value escaped.
    pub fn write_bytes(&mut self, key: &str, value: &[u8]) -> &mut Self {
        assert_name("key", key);
        assert!(self.in_any, "state writer: key `{key}` outside any section");
        self.body.push_str(key);
        self.body.push('=');
        self.body.push_str(&escape(value));
        self.body.push('\n');
        self
    }

    pub fn write_str(&mut self, key: &str, value: &str) -> &mut Self {
        self.write_bytes(key, value.as_bytes())
    }

    /// A path, byte for byte (it need not be UTF-8).
    pub fn write_path(&mut self, key: &str, value: &Path) -> &mut Self {
        self.write_bytes(key, value.as_os_str().as_bytes())
    }

    pub fn write_u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.write_str(key, &value.to_string())
    }

    pub fn write_i64(&mut self, key: &str, value: i64) -> &mut Self {
        self.write_str(key, &value.to_string())
    }

    pub fn write_bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.write_str(key, if value { "true" } else { "false" })
    }

    /// A duration, in whole nanoseconds.
    pub fn write_duration(&mut self, key: &str, value: Duration) -> &mut Self {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.write_u64(key, nanos)
    }

    /// A deadline, as CLOCK_MONOTONIC nanoseconds: that clock runs on across an exec (and
    /// across supergo's death, until the machine reboots), so the new image finds the same
    /// instant. A deadline already past is written as now.
    pub fn write_deadline(&mut self, key: &str, deadline: Instant) -> &mut Self {
        let left = deadline.saturating_duration_since(Instant::now());
        let at = monotonic::now_nanos()
            .saturating_add(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX));
        self.write_u64(key, at)
    }

    /// The number of an fd that the new image inherits: it is added to the list of fds the
    /// exec hands over (`Serialized::fds`). The fd must stay open until the exec.
    pub fn write_fd(&mut self, key: &str, fd: BorrowedFd<'_>) -> &mut Self {
        let raw = fd.as_raw_fd();
        if !self.fds.contains(&raw) {
            self.fds.push(raw);
        }
        self.write_i64(key, i64::from(raw))
    }

    /// Appends the sections `other` wrote (a part that wrote on a thread of its own) after
    /// those written here, with the fds they name.
    pub fn append(&mut self, other: StateWriter) -> &mut Self {
        self.body.push_str(&other.body);
        for fd in other.fds {
            if !self.fds.contains(&fd) {
                self.fds.push(fd);
            }
        }
        self.in_section = other.in_section || self.in_section;
        self.in_any = other.in_any || self.in_any;
        self
    }

    /// Records supergo's own binary (opened at start) for the fallback: a new image that
    /// cannot restore the state re-executes it. Written into `[handover]` by `finish`.
    pub fn handover_exe(&mut self, fd: BorrowedFd<'_>, path: &Path) -> &mut Self {
        self.exe = Some((fd.as_raw_fd(), path.as_os_str().as_bytes().to_vec()));
        self
    }

    /// The whole state: the version line, `[handover]` (who wrote it, and the fds it
    /// names), then every section written.
    pub fn finish(self) -> Serialized {
        let mut fds = self.fds;
        let mut head = StateWriter::new();
        head.section(HANDOVER, "");
        head.write_u64("pid", u64::from(std::process::id()));
        if let Ok(boot_id) = crate::adopt::procfs::boot_id() {
            head.write_str("boot_id", &boot_id);
        }
        if let Some((fd, path)) = &self.exe {
            if !fds.contains(fd) {
                fds.push(*fd);
            }
            head.write_i64("exe_fd", i64::from(*fd));
            head.write_bytes("exe", path);
        }
        let list: Vec<String> = fds.iter().map(|fd| fd.to_string()).collect();
        head.write_str("fds", &list.join(" "));
        let text = format!(
            "supergo-state {FORMAT_MAJOR}.{FORMAT_MINOR} (supergo {})\n{}{}",
            env!("CARGO_PKG_VERSION"),
            head.body,
            self.body
        );
        Serialized { text, fds }
    }
}

fn assert_name(what: &str, name: &str) {
    assert!(
        is_name(name),
        "state writer: {what} {name:?} must be [a-z0-9_-]+"
    );
}
