//! Watching adopted processes for their exit. They are not supergo's children: no SIGCHLD
//! comes and `waitpid` cannot reap them (their parent is now init, or a subreaper), so one
//! thread polls their pidfds, which turn readable when the process exits, and routes each
//! exit to the worker that owns the pid, as the reaper does for children. The exit status
//! is not available to anyone but the parent: it is reported as `ExitStatus::Unknown`.
//!
//! A process without a pidfd (a kernel before Linux 5.3) is looked at in /proc every
//! `PROC_POLL` instead: gone, a zombie, or a newer process under its pid is an exit.
//!
//! When an exit is seen, the process's entry in the live-children registry (its pidfd for
//! signals) is dropped first, as the reaper does when it reaps a child.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::{pipe2, read, write, Pid};

use super::procfs;
use crate::reaper::{Exit, ExitRoute, ExitStatus};
use crate::spawn;

/// How often a process without a pidfd is looked at.
const PROC_POLL: Duration = Duration::from_millis(100);

/// One watched process.
struct Watch {
    pid: Pid,
    start_ticks: u64,
    pidfd: Option<OwnedFd>,
    route: ExitRoute,
}

struct Watcher {
    added: Mutex<Vec<Watch>>,
    /// Written to when `added` grows, so the thread's poll returns.
    wake: OwnedFd,
}

static WATCHER: OnceLock<Option<Watcher>> = OnceLock::new();

/// Sends an `Exit` (status unknown) for `pid` to `route` once the process exits. `pidfd`
/// is the process's (None: watched through /proc with `start_ticks`).
pub fn watch(
    pid: Pid,
    start_ticks: u64,
    pidfd: Option<OwnedFd>,
    route: ExitRoute,
) -> io::Result<()> {
    let watcher = WATCHER
        .get_or_init(|| match start() {
            Ok(w) => Some(w),
            Err(e) => {
                crate::error!("cannot start the thread that watches adopted processes: {e}");
                None
            }
        })
        .as_ref()
        .ok_or_else(|| io::Error::other("the watcher of adopted processes did not start"))?;
    watcher
        .added
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Watch {
            pid,
            start_ticks,
            pidfd,
            route,
        });
    // A full pipe already holds a wake-up: fine.
    let _ = write(&watcher.wake, &[1]);
    Ok(())
}

fn start() -> io::Result<Watcher> {
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    std::thread::Builder::new()
        .name("adopted".into())
        .stack_size(256 * 1024)
        .spawn(move || run(read_end))?;
    Ok(Watcher {
        added: Mutex::new(Vec::new()),
        wake: write_end,
    })
}

fn run(wake: OwnedFd) {
    let mut watches: Vec<Watch> = Vec::new();
    loop {
        if let Some(Some(watcher)) = WATCHER.get() {
            watches.append(&mut watcher.added.lock().unwrap_or_else(|p| p.into_inner()));
        }
        let ready = wait(&wake, &watches);
        let mut buf = [0u8; 64];
        while matches!(read(&wake, &mut buf), Ok(n) if n > 0) {}
        let now = Instant::now();
        let mut i = 0;
        while i < watches.len() {
            let w = &watches[i];
            let exited = match &w.pidfd {
                Some(_) => ready.contains(&w.pid),
                None => !procfs::is_same_process(w.pid, w.start_ticks),
            };
            if !exited {
                i += 1;
                continue;
            }
            let w = watches.swap_remove(i);
            spawn::forget_child(w.pid);
            // A worker that is gone no longer cares.
            w.route.send(Exit {
                pid: w.pid,
                status: ExitStatus::Unknown,
                at: now,
            });
        }
    }
}

/// Polls the wake pipe and every pidfd; the pids whose pidfd turned readable.
fn wait(wake: &OwnedFd, watches: &[Watch]) -> Vec<Pid> {
    let with_fd: Vec<&Watch> = watches.iter().filter(|w| w.pidfd.is_some()).collect();
    let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
    fds.extend(with_fd.iter().filter_map(|w| {
        w.pidfd
            .as_ref()
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
    }));
    let timeout = if with_fd.len() < watches.len() {
        PollTimeout::try_from(PROC_POLL).unwrap_or(PollTimeout::MAX)
    } else {
        PollTimeout::NONE
    };
    // EINTR or another error: look again (at worst the /proc pass finds nothing).
    if poll(&mut fds, timeout).is_err() {
        return Vec::new();
    }
    fds[1..]
        .iter()
        .zip(&with_fd)
        .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
        .map(|(_, w)| w.pid)
        .collect()
}
