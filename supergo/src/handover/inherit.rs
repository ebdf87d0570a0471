//! The new image's side of an upgrade: find the state at start, read it, and either commit
//! to it or fall back to the old binary.
//!
//! `Inherited::take` runs first thing in `main`, before any thread (it removes
//! `SUPERGO_UPGRADE_STATE` and `SUPERGO_UPGRADE_FALLBACK` from the environment, so no child
//! ever sees them) and before supergo opens any fd (so each fd `[handover] fds` lists and
//! that is open now is one the old image handed over). Then:
//! - `state` parses the state; the parts of supergo read their sections, plain values and fd
//!   numbers only (`SectionRef::fd` gives a `HandedFd`, not an owned fd);
//! - all read and checked: `commit` closes the memfd, the old binary's fd and every
//!   handed-over fd that no key named, and from then on each `HandedFd` becomes an `OwnedFd`;
//! - anything wrong before the commit: `fall_back` re-executes the old binary (its fd came
//!   in `[handover] exe_fd`) with the same state and every fd, and says why in
//!   `SUPERGO_UPGRADE_FALLBACK`. The old binary, finding that variable, never falls back
//!   again: if it cannot restore either, the caller exits and leaves the children running,
//!   as after a crash: the state file (`adopt::record`) still names them, so a supergo
//!   started again adopts them.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::uio::pread;

use super::escape::unescape;
use super::exec::{exec_image, UpgradeError, FALLBACK_ENV, STATE_ENV};
use super::parsed::StateError;
use super::reader::State;
use super::section::HandedFd;
use super::HANDOVER;

/// A state is small (about 300 bytes per program); more than this is not one.
const MAX_STATE_BYTES: u64 = 64 << 20;

/// The state an upgrade handed to this image, not yet committed to.
#[derive(Debug)]
pub struct Inherited {
    memfd: OwnedFd,
    text: String,
    /// Listed in `[handover] fds` and open when this image started.
    handed: BTreeSet<RawFd>,
    /// The old binary (`[handover] exe_fd`, `exe`), for the fallback.
    exe: Option<(OwnedFd, PathBuf)>,
    fallback_reason: Option<String>,
}

/// Proof that the state was read whole and committed to: what `HandedFd::into_owned` needs.
#[derive(Debug)]
pub struct Committed {
    _private: (),
}

impl HandedFd {
    /// Owns the fd (it gets FD_CLOEXEC back, so no child of this image inherits it).
    pub fn into_owned(self, _committed: &Committed) -> OwnedFd {
        // SAFETY: `SectionRef::fd` gave out this number once, for an fd that was open when
        // this image started and that nothing in it opened: this is its only owner.
        let owned = unsafe { OwnedFd::from_raw_fd(self.0) };
        let _ = fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        owned
    }
}

impl Inherited {
    /// The state handed over by the image that exec'd this one: `Ok(None)` when supergo was
    /// started normally. Call it first thing in `main`: see the module comment.
    pub fn take() -> Result<Option<Inherited>, String> {
        let Some(value) = std::env::var_os(STATE_ENV) else {
            return Ok(None);
        };
        let fallback_reason = std::env::var_os(FALLBACK_ENV).map(|r| {
            String::from_utf8_lossy(&unescape(&r.to_string_lossy()).unwrap_or_default())
                .into_owned()
        });
        // Edition 2021: safe, and sound here because no other thread exists yet.
        std::env::remove_var(STATE_ENV);
        std::env::remove_var(FALLBACK_ENV);
        let shown = value.to_string_lossy().into_owned();
        let fd: RawFd = shown
            .parse()
            .ok()
            .filter(|fd| *fd > 2)
            .ok_or_else(|| format!("{STATE_ENV}={shown:?} is not an fd number above 2"))?;
        if !is_open(fd) {
            return Err(format!("{STATE_ENV}={fd} names an fd that is not open: was supergo started by hand with this variable set?"));
        }
        // SAFETY: open (checked), and the old image handed it to us alone.
        let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let _ = fcntl(&memfd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        let text = read_all(memfd.as_fd())
            .map_err(|e| format!("cannot read the upgrade state from fd {fd}: {e}"))?;
        let header = scan_handover(&text);
        let handed: BTreeSet<RawFd> = header
            .fds
            .iter()
            .copied()
            .filter(|fd| is_open(*fd))
            .collect();
        let exe = header.exe_fd.filter(|fd| handed.contains(fd)).map(|fd| {
            // SAFETY: open and handed over; removed from `handed` below, so owned once.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
            (
                owned,
                header
                    .exe
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("supergo")),
            )
        });
        let mut handed = handed;
        if let Some(fd) = header.exe_fd {
            handed.remove(&fd);
        }
        Ok(Some(Inherited {
            memfd,
            text,
            handed,
            exe,
            fallback_reason,
        }))
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Set when this image is the old binary, run again by a new one that could not restore
    /// the state: what the new one said.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// The parsed state, with its fds available to `SectionRef::fd`. Checks `[handover]`:
    /// it must have been written by this very process (an upgrade keeps the pid).
    pub fn state(&self) -> Result<State, StateError> {
        let mut state = State::parse(&self.text)?;
        state.allow_fds(self.handed.clone());
        let handover = state.section(HANDOVER).ok_or_else(|| StateError {
            line: None,
            message: "no [handover] section".into(),
        })?;
        let pid = handover.pid("pid")?;
        if pid != Some(std::process::id() as i32) {
            return Err(handover.error(format!(
                "written by pid {pid:?}, but this is pid {}: not a state for this process",
                std::process::id()
            )));
        }
        for key in ["boot_id", "exe_fd", "exe", "fds"] {
            handover.bytes(key)?;
        }
        Ok(state)
    }

    /// Commits to `state`: the fallback is gone. Closes the memfd, the old binary, and each
    /// handed-over fd that no key named (a field of a newer writer this version skipped).
    pub fn commit(self, state: &State) -> Committed {
        for fd in state.untaken_fds() {
            // SAFETY: handed over and named by no key: nothing else owns it.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Committed { _private: () }
    }

    /// Re-executes the old binary with the same state and every handed-over fd, telling it
    /// `reason`. Returns only when that is impossible (then the caller exits as after a
    /// crash: the children still run, and a supergo started again adopts them, see `adopt`).
    pub fn fall_back(self, reason: &str) -> UpgradeError {
        if let Some(previous) = &self.fallback_reason {
            return UpgradeError(format!("cannot restore the handed-over state ({reason}); this is already the fallback after a failed upgrade ({previous}), so there is nothing to go back to"));
        }
        let Some((exe_fd, exe)) = &self.exe else {
            return UpgradeError(format!("cannot restore the handed-over state ({reason}), and it names no old binary to go back to"));
        };
        let mut argv: Vec<OsString> = vec![exe.clone().into_os_string()];
        argv.extend(std::env::args_os().skip(1));
        let mut fds: Vec<RawFd> = self.handed.iter().copied().collect();
        fds.push(std::os::fd::AsRawFd::as_raw_fd(exe_fd));
        let err = exec_image(exe_fd.as_fd(), &argv, &self.memfd, &fds, Some(reason));
        UpgradeError(format!("cannot restore the handed-over state ({reason}), and cannot execute the old binary {} again: {err}", exe.display()))
    }
}

fn is_open(fd: RawFd) -> bool {
    // SAFETY: borrowed for one fcntl; a closed fd answers EBADF.
    fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD).is_ok()
}

/// The whole content of a memfd (or any file), from offset 0 whatever the shared offset.
pub fn read_all(fd: BorrowedFd<'_>) -> Result<String, String> {
    let mut bytes = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let offset = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        match pread(fd, &mut buf, offset) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.desc().to_string()),
        }
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(format!(
                "more than {MAX_STATE_BYTES} bytes: not a supergo state"
            ));
        }
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8 text (at byte {})", e.utf8_error().valid_up_to()))
}

/// What the fallback needs from `[handover]`, read leniently: even a state whose later lines
/// are corrupt can be handed back to the binary that wrote it.
#[derive(Debug, Default, PartialEq)]
pub struct HandoverHeader {
    pub fds: Vec<RawFd>,
    pub exe_fd: Option<RawFd>,
    pub exe: Option<PathBuf>,
}

pub fn scan_handover(text: &str) -> HandoverHeader {
    let mut header = HandoverHeader::default();
    let mut inside = false;
    for line in text.split('\n').skip(1) {
        if line.starts_with('[') {
            if inside {
                break;
            }
            inside = line == "[handover]";
            continue;
        }
        let Some((key, value)) = line.split_once('=').filter(|_| inside) else {
            continue;
        };
        match key {
            "fds" => {
                header.fds = value
                    .split(' ')
                    .filter_map(|fd| fd.parse().ok())
                    .filter(|fd| *fd > 2)
                    .collect()
            }
            "exe_fd" => header.exe_fd = value.parse().ok().filter(|fd| *fd > 2),
            "exe" => {
                header.exe = unescape(value)
                    .ok()
                    .map(|b| PathBuf::from(OsString::from_vec(b)))
            }
            _ => {}
        }
    }
    header
}
