//! State that crosses an exec (upgrade in place, issue 14) or supergo's death (adoption from
//! the state file, issue 15): one format, its writer and reader, and the exec that carries it.
//!
//! - `escape`: values as one line of text; `writer`, `reader` and `section`: the format
//!   below, read into the sections and entries of `parsed`;
//! - `exec`: supergo's own binary kept open from start, the binary to upgrade to, and the exec
//!   that hands a state and its fds to a new image (`SUPERGO_UPGRADE_STATE=<memfd>`);
//! - `inherit`: the new image's side: take the state back at start, or fall back to the old
//!   binary when it cannot be restored;
//! - `preflight`: `supergo --check-upgrade`, and how the old image judges the answer.
//!
//! # The format
//!
//! Plain text, in the spirit of systemd's `serialize.c`: versioned from its first line, one
//! `key=value` per line, each part of supergo writing (and reading) its own section.
//!
//! ```text
//! supergo-state 1.0 (supergo 0.2.0)
//!
//! [handover]
//! pid=4242
//! boot_id=5f0c…
//! exe_fd=4
//! exe=/usr/local/bin/supergo
//! fds=6 7 8 9 4
//!
//! [program web]
//! generation=3
//! retries=0
//!
//! [.listener 0]
//! addr=127.0.0.1:4041
//! fd=6
//!
//! [.process 5012]
//! role=serving
//! fd_stdout=8
//!
//! [.process 4990]
//! role=draining
//! kill_at=81234567890123
//! ```
//!
//! - Line 1 is `supergo-state MAJOR.MINOR (writer)`. A reader takes any minor version of its
//!   major (what it does not know it skips) and refuses another major with a message that
//!   names both versions. Bump the minor for a new key or section; bump the major only when an
//!   old reader would misread the new state (einhorn: "don't change or remove these variables
//!   without thinking about backwards/forwards compatibility").
//! - `[kind name]` opens a top-level section, `[.kind name]` a child of the last one (one item
//!   of a list: a listener, a draining process). The name is escaped like a value.
//! - `key=value`: keys are `[a-z0-9_-]+`, values escaped (`escape`), so any string,
//!   path or byte string round-trips. Blank lines and `# …` lines are ignored.
//! - A key the reader does not know, or a section no part asks for, is skipped and reported by
//!   `State::skipped` (for one log line); a missing key takes the default its getter names.
//! - Numbers are decimal; durations whole nanoseconds; deadlines CLOCK_MONOTONIC nanoseconds
//!   (that clock runs on across an exec); fds are numbers that the new image inherits, all
//!   listed in `[handover] fds`, the only ones that lose FD_CLOEXEC for the exec.
//! - `[handover]` comes first and is written by `StateWriter::finish`: the writer's pid and
//!   boot id, the fds, and the old binary (`exe_fd`, `exe`) for the fallback.

pub mod escape;
pub mod exec;
pub mod inherit;
mod parsed;
pub mod preflight;
mod reader;
mod section;
#[cfg(test)]
mod tests;
mod writer;

pub use parsed::StateError;
pub use reader::{parse_version, State};
pub use section::{HandedFd, SectionRef};
pub use writer::{Serialized, StateWriter};

/// The format this supergo writes. A reader reads every minor version of its major.
pub const FORMAT_MAJOR: u32 = 1;
pub const FORMAT_MINOR: u32 = 0;

/// The section `StateWriter::finish` writes first.
pub const HANDOVER: &str = "handover";

/// `"1.0"`: what `--check-upgrade` prints and `--state-version` takes.
pub fn format_version() -> String {
    format!("{FORMAT_MAJOR}.{FORMAT_MINOR}")
}

pub(crate) mod monotonic {
    use nix::time::{clock_gettime, ClockId};

    /// CLOCK_MONOTONIC in nanoseconds: the clock `Instant` reads, which keeps running across
    /// an exec, so a deadline written by one image means the same instant to the next.
    pub fn now_nanos() -> u64 {
        // CLOCK_MONOTONIC exists on every Linux supergo runs on; clock_gettime can only fail
        // for an unknown clock id.
        let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is readable");
        u64::try_from(now.tv_sec())
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(now.tv_nsec()).unwrap_or(0))
    }
}
