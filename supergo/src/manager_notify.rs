//! supergo telling its *own* service manager how it is doing (systemd's `sd_notify` protocol,
//! for a `Type=notify` unit): `READY=1` once the initial start is done, `RELOADING=1` …
//! `READY=1` around an update, `STOPPING=1` at shutdown, and `STATUS=` with a one-line
//! summary that `systemctl status` shows.
//!
//! Not to be confused with `notify`, the sockets supergo offers its *children*.
//!
//! The protocol as systemd defines it (`sd_notify(3)`): `NOTIFY_SOCKET` names a unix datagram
//! socket, a path starting with `/` or an abstract name starting with `@`; each message is one
//! datagram of newline-separated `KEY=VALUE` lines. Where supergo departs from `sd_notify`:
//! - the variable is read once, at start, and removed from supergo's environment, so that no
//!   child can ever inherit it and talk to supergo's manager in supergo's name (spawn also
//!   strips it from every child's environment: `spawn::OWN_VARIABLES`);
//! - sends never block (`MSG_DONTWAIT`): a manager that does not read its socket must not
//!   stall supergo's core. A message that cannot be sent is dropped with one warning; the
//!   next failure after a success warns again, so a gone manager does not flood the log;
//! - `RELOADING=1` carries `MONOTONIC_USEC=` (systemd ≥ 253 needs it to tie the reload to its
//!   request under `Type=notify-reload`; older versions ignore it).
//!
//! The core calls [`ready`], [`reloading`], [`reloaded`], [`stopping`] and [`status`]; each
//! does nothing when supergo was not started with `NOTIFY_SOCKET`. They keep systemd's order
//! whatever the order of the calls (the initial start, an update and a shutdown run in
//! different threads): `READY=1` once, first; `RELOADING=1` and the `READY=1` that ends it
//! only after it and before the shutdown; nothing but `STOPPING=1` and `STATUS=` after that.
//! (An update during the initial start tells nothing: systemd would take its `READY=1` for
//! the end of the start.)
//!
//! Across an upgrade in place (issue 14) supergo keeps its pid, so to systemd it is the same
//! main process throughout; it tells the upgrade as it tells an update: `RELOADING=1` just
//! before the exec ([`upgrading`]: held until the exec, so that no other thread says
//! anything in between), and `READY=1` with a fresh `STATUS=` from the new image once it
//! serves ([`restored`], then [`reloaded`]), or from the old one should the exec fail
//! ([`Upgrading::failed`]). Before the initial `READY=1` nothing is said around it, and the
//! new image waits for the initial start itself: nothing that systemd would take for a
//! second start. The new image gets `NOTIFY_SOCKET` back in its environment
//! (`handover::exec`, from [`target`]), and [`init`] takes it out again.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::sys::socket::{sendto, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

use crate::status::State;

/// The variable systemd sets for a `Type=notify` service.
pub const VARIABLE: &str = "NOTIFY_SOCKET";

/// The manager's socket, once [`init`] has run: `None` when supergo has no manager to tell.
static MANAGER: OnceLock<Option<Manager>> = OnceLock::new();

/// Where supergo is in systemd's sequence (see the module docs). Held across each send, so
/// that a `READY=1` decided before the shutdown cannot arrive after its `STOPPING=1`.
static PHASE: Mutex<Phase> = Mutex::new(Phase::Starting);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Stopping,
}

/// Sends `message` when supergo is in phase `when`, then moves to `then`.
fn in_phase(when: &[Phase], then: Phase, message: impl FnOnce(&Manager) -> Result<(), String>) {
    let mut phase = PHASE.lock().unwrap_or_else(|p| p.into_inner());
    if when.contains(&phase) {
        *phase = then;
        send_with(message);
    }
}

/// Reads `NOTIFY_SOCKET` and removes it from supergo's environment. Call once, first thing
/// in `main`, before any thread exists (changing the environment is not thread-safe). An
/// unusable value is one warning; supergo runs on without a manager.
pub fn init() {
    let value = std::env::var_os(VARIABLE);
    if value.is_some() {
        // Before any thread: no other thread can be reading the environment now.
        std::env::remove_var(VARIABLE);
    }
    let manager = value.and_then(|value| match Manager::connect(&value.to_string_lossy()) {
        Ok(manager) => Some(manager),
        Err(e) => {
            crate::warn!("{e}; supergo will not report its state to its service manager");
            None
        }
    });
    let _ = MANAGER.set(manager);
}

/// The value `NOTIFY_SOCKET` had, for an upgrade in place: the new image must get it back in
/// its environment, since [`init`] removed it from this one.
pub fn target() -> Option<&'static str> {
    manager().map(|m| m.target.as_str())
}

/// True when supergo has a service manager to tell (it was started with `NOTIFY_SOCKET`).
pub fn enabled() -> bool {
    manager().is_some()
}

/// The initial start is done (every autostart program Running or Fatal): `READY=1`. Once,
/// and never after [`stopping`].
pub fn ready(summary: &str) {
    in_phase(&[Phase::Starting], Phase::Ready, |m| m.ready(summary));
}

/// An update (`supergoctl update`, SIGHUP) begins: `RELOADING=1` (between [`ready`] and
/// [`stopping`] only).
pub fn reloading() {
    in_phase(&[Phase::Ready], Phase::Ready, Manager::reloading);
}

/// The update is done, whatever its outcome: `READY=1` again (between [`ready`] and
/// [`stopping`] only).
pub fn reloaded(summary: &str) {
    in_phase(&[Phase::Ready], Phase::Ready, |m| m.ready(summary));
}

/// Shutdown begins: `STOPPING=1`. Sent once; later calls do nothing.
pub fn stopping() {
    let all = [Phase::Starting, Phase::Ready, Phase::Stopping];
    in_phase(&all, Phase::Stopping, Manager::stopping);
}

/// An upgrade in place is about to exec: `RELOADING=1` when the initial `READY=1` was said.
/// Nothing else is told until the exec (the returned guard holds the sequence), or until
/// [`Upgrading::failed`] when it did not happen.
pub fn upgrading(to: &str) -> Upgrading {
    let phase = PHASE.lock().unwrap_or_else(|p| p.into_inner());
    if *phase == Phase::Ready {
        send_with(|m| m.reloading_for(&format!("Upgrading supergo in place to {to}")));
    }
    Upgrading { phase }
}

/// The sequence held across an upgrade's exec (see [`upgrading`]).
pub struct Upgrading {
    phase: std::sync::MutexGuard<'static, Phase>,
}

impl Upgrading {
    /// Where supergo is in the sequence, for the new image ([`restored`]).
    pub fn phase(&self) -> &'static str {
        match *self.phase {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Stopping => "stopping",
        }
    }

    /// The exec did not happen: `READY=1` again, ending the `RELOADING=1`.
    pub fn failed(self, summary: &str) {
        if *self.phase == Phase::Ready {
            send_with(|m| m.ready(summary));
        }
    }
}

/// In the new image of an upgrade: the sequence goes on where the image before left it
/// (`phase`, from [`Upgrading::phase`]; an unknown or missing one counts as `ready`). True
/// when the initial `READY=1` was said: the caller then says [`reloaded`]; otherwise it
/// waits for the initial start and says [`ready`], as a fresh start does.
pub fn restored(phase: &str) -> bool {
    let restored = match phase {
        "starting" => Phase::Starting,
        "stopping" => Phase::Stopping,
        _ => Phase::Ready,
    };
    *PHASE.lock().unwrap_or_else(|p| p.into_inner()) = restored;
    restored == Phase::Ready
}

/// A new one-line summary for `systemctl status`.
pub fn status(text: &str) {
    send_with(|m| m.status(text));
}

/// "3 programs: 2 Running, 1 Fatal": what `STATUS=` says about the programs.
pub fn summary(states: impl IntoIterator<Item = State>) -> String {
    let mut counts: Vec<(State, usize)> = Vec::new();
    let mut total = 0;
    for state in states {
        total += 1;
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    let noun = if total == 1 { "program" } else { "programs" };
    if counts.is_empty() {
        return format!("{total} {noun}");
    }
    // In the order of DESIGN.md's states, so that the line reads the same every time.
    counts.sort_by_key(|(state, _)| *state as u8);
    let parts: Vec<String> = counts
        .iter()
        .map(|(state, n)| format!("{n} {state:?}"))
        .collect();
    format!("{total} {noun}: {}", parts.join(", "))
}

fn manager() -> Option<&'static Manager> {
    MANAGER.get().and_then(Option::as_ref)
}

fn send_with(message: impl FnOnce(&Manager) -> Result<(), String>) {
    if let Some(manager) = manager() {
        if let Err(e) = message(manager) {
            crate::warn!("{e}");
        }
    }
}

/// A connection-less datagram socket aimed at the manager's `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Manager {
    socket: OwnedFd,
    addr: UnixAddr,
    /// The value of `NOTIFY_SOCKET`, for messages.
    target: String,
    /// `STOPPING=1` was sent.
    stopping_sent: AtomicBool,
    /// The last send failed and said so: the next failures stay quiet until one succeeds.
    failing: AtomicBool,
}

impl Manager {
    /// A socket for `target` (`/path` or `@abstract`). Nothing is sent yet.
    pub fn connect(target: &str) -> Result<Manager, String> {
        let bad = |why: &str| format!("{VARIABLE}={target:?} {why}");
        let addr = if let Some(name) = target.strip_prefix('@') {
            UnixAddr::new_abstract(name.as_bytes())
        } else if target.starts_with('/') {
            UnixAddr::new(target)
        } else {
            return Err(bad(
                "is neither a path starting with `/` nor an abstract name starting with `@`",
            ));
        }
        .map_err(|e| bad(&format!("is not a usable socket address ({})", e.desc())))?;
        // CLOEXEC: no child may inherit a way to speak to the manager; NONBLOCK: see the
        // module docs (MSG_DONTWAIT below says the same for each send).
        let socket = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| {
            bad(&format!(
                ": cannot create a socket to reach it ({})",
                e.desc()
            ))
        })?;
        Ok(Manager {
            socket,
            addr,
            target: target.to_string(),
            stopping_sent: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        })
    }

    pub fn ready(&self, summary: &str) -> Result<(), String> {
        self.send(&format!("READY=1\nSTATUS={}\n", one_line(summary)))
    }

    pub fn reloading(&self) -> Result<(), String> {
        self.reloading_for("Reloading the configuration")
    }

    /// `RELOADING=1`, with `MONOTONIC_USEC=` and `STATUS=what`.
    pub fn reloading_for(&self, what: &str) -> Result<(), String> {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS={}\n",
            monotonic_usec(),
            one_line(what)
        ))
    }

    pub fn stopping(&self) -> Result<(), String> {
        if self.stopping_sent.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.send("STOPPING=1\nSTATUS=Stopping every program\n")
    }

    pub fn status(&self, text: &str) -> Result<(), String> {
        self.send(&format!("STATUS={}\n", one_line(text)))
    }

    /// One datagram, never blocking. Err (with the operator's message) only for the first
    /// failure after a success.
    fn send(&self, message: &str) -> Result<(), String> {
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        let sent = loop {
            match sendto(
                self.socket.as_raw_fd(),
                message.as_bytes(),
                &self.addr,
                flags,
            ) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        match sent {
            Ok(_) => {
                self.failing.store(false, Ordering::SeqCst);
                Ok(())
            }
            Err(_) if self.failing.swap(true, Ordering::SeqCst) => Ok(()),
            Err(e) => {
                let first = message.lines().next().unwrap_or_default();
                let hint = match e {
                    Errno::EAGAIN => " (its queue is full: the manager is not reading)",
                    Errno::ECONNREFUSED | Errno::ENOENT => " (nothing listens there any more)",
                    _ => "",
                };
                Err(format!(
                    "cannot tell the service manager {first} through {VARIABLE}={}: {}{hint}; \
                     further failures are not logged until a message gets through",
                    self.target,
                    e.desc()
                ))
            }
        }
    }
}

/// `STATUS=` is one line: a newline would start another `KEY=VALUE`.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let mut now = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // nix has clock_gettime only behind its `time` feature, which the workspace does not
    // enable; this call has no side effect and cannot fail for CLOCK_MONOTONIC.
    // SAFETY: a valid clock id and a pointer to a live timespec.
    let done = unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_MONOTONIC, &mut now) };
    if done != 0 {
        return 0;
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

#[cfg(test)]
mod tests;
