//! The pre-flight of an upgrade, run by the old image: `NEWBIN --check-upgrade
//! --state-version N --config FILE`, as a child of supergo's own spawn and reaper (never
//! `std::process::Command`: the reaper's `waitpid(-1)` would take its exit), with its stdout
//! and stderr on pipes, on a thread of its own; `handover::preflight::judge` reads the
//! outcome, which goes back to the core as `CoreMessage::Preflight`.
//!
//! The binary runs as `/proc/self/fd/N` of the opened target (`Target::exec_path`), so the
//! file checked is the file the exec will run, whatever happens to its path meanwhile.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use super::request::CoreMessage;
use super::upgrade_messages::Checked;
use crate::handover::exec::UpgradeError;
use crate::handover::preflight::{self, Answer};
use crate::program::Context;
use crate::reaper::ExitStatus;
use crate::spawn::{self, SpawnRequest};

/// How long the new binary may take to answer (it loads the config).
const CHECK_WITHIN: Duration = Duration::from_secs(30);

/// The most of its output kept, per stream.
const OUTPUT_MAX: usize = 64 * 1024;

/// Starts the check of `exec_path` (`shown` in messages) on a thread of its own; its
/// outcome goes to `core`.
pub(super) fn start(
    ctx: Arc<Context>,
    exec_path: PathBuf,
    shown: PathBuf,
    config: PathBuf,
    core: Sender<CoreMessage>,
) {
    let answer = core.clone();
    let spawned = std::thread::Builder::new()
        .name("upgrade check".into())
        .spawn(move || {
            let outcome = check(&ctx, &exec_path, &shown, &config);
            let _ = answer.send(CoreMessage::Preflight(Checked(outcome)));
        });
    if let Err(e) = spawned {
        let why = UpgradeError(format!(
            "cannot start a thread to check the new binary: {e}"
        ));
        let _ = core.send(CoreMessage::Preflight(Checked(Err(why))));
    }
}

fn check(
    ctx: &Context,
    exec_path: &Path,
    shown: &Path,
    config: &Path,
) -> Result<Answer, UpgradeError> {
    let refuse =
        |why: String| UpgradeError(format!("refusing to upgrade to {}: {why}", shown.display()));
    let cwd = std::env::current_dir().map_err(|e| refuse(format!("no working directory: {e}")))?;
    let mut program =
        crate::config::program_defaults("supergo-check-upgrade", &cwd).map_err(refuse)?;
    program.argv = preflight::argv(exec_path, config)
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (out_read, out_write) = pipe().map_err(|e| refuse(format!("cannot make a pipe: {e}")))?;
    let (err_read, err_write) = pipe().map_err(|e| refuse(format!("cannot make a pipe: {e}")))?;
    let mut prepared = spawn::prepare(SpawnRequest {
        config: &program,
        listeners: &[],
        generation: 0,
        notify_socket: None,
        stdio: (out_write, err_write),
    })
    .map_err(|e| refuse(e.message))?;
    let (exits, exit) = bounded(1);
    let started = Instant::now();
    let spawned = ctx.reaper.spawn(&mut prepared, &exits);
    // Our copies of the write ends: the pipes end when the check exits.
    drop(prepared);
    let pid = spawned.map_err(|e| refuse(e.message))?;
    let deadline = started + CHECK_WITHIN;
    let (stdout, stderr) = read_both(&out_read, &err_read, deadline);
    let code = match exit.recv_deadline(deadline) {
        Ok(exit) => match exit.status {
            ExitStatus::Code(code) => Some(code),
            ExitStatus::Signal(..) | ExitStatus::Unknown => None,
        },
        Err(_) => {
            // Its own process group (setsid): whatever it started goes too.
            spawn::signal_child(pid, Signal::SIGKILL, true);
            None
        }
    };
    preflight::judge(shown, code, &stdout, &stderr)
}

/// A pipe whose read end is non-blocking (ours) and write end blocking (the child's).
fn pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let flags = OFlag::from_bits_retain(fcntl(&read, FcntlArg::F_GETFL)?);
    fcntl(&read, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok((read, write))
}

/// Reads both pipes until both end or `deadline`.
fn read_both(out: &OwnedFd, err: &OwnedFd, deadline: Instant) -> (String, String) {
    let mut texts = [Vec::new(), Vec::new()];
    let mut open = [true, true];
    let mut buf = [0u8; 4096];
    while open.iter().any(|o| *o) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // Only the open ones: an ended pipe polls ready forever.
        let both = [out, err];
        let mut fds: Vec<PollFd> = both
            .iter()
            .zip(open)
            .filter(|(_, open)| *open)
            .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break,
        }
        for (i, fd) in [out, err].into_iter().enumerate() {
            if !open[i] {
                continue;
            }
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => open[i] = false,
                Ok(n) if texts[i].len() < OUTPUT_MAX => texts[i].extend_from_slice(&buf[..n]),
                Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(_) => open[i] = false,
            }
        }
    }
    let [out, err] = texts;
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}
