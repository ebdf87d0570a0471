//! The signals thread: SIGCHLD → reap and route exits; SIGTERM/SIGINT/SIGQUIT → shutdown;
//! SIGHUP → reread + update; SIGUSR1 → reopen logs; SIGUSR2 → upgrade in place. One
//! `signal-hook` iterator, so supergo's own handlers only write to a self-pipe and all real
//! work happens on this thread.
//!
//! The signal mask: `main` blocks every signal before it starts any thread, and every thread
//! inherits that; this thread alone unblocks the signals it handles, once their handlers are
//! installed. So a signal that arrived before (a SIGTERM pending across an upgrade's exec,
//! whose dispositions the exec reset to default) is handled, not fatal, and the process
//! takes each signal on this thread only.
//!
//! Parking, for an upgrade in place (`Signals::park`): the thread blocks every signal again
//! and stops reaping until released. While parked, a child that exits stays a zombie (the new
//! image reaps it and routes its exit), and a signal sent to supergo stays pending (the new
//! image, or this thread once released, handles it). Signals the thread had already taken
//! when it parked are raised again, so they stay pending too.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals as Iterator;

use crate::reaper::Reaper;
use crate::supervisor::CoreMessage;

const HANDLED: [i32; 7] = [SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parking {
    Running,
    Requested,
    Parked,
    Released,
}

struct Park {
    state: Mutex<Parking>,
    changed: Condvar,
}

impl Park {
    fn state(&self) -> MutexGuard<'_, Parking> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The way to the signals thread.
#[derive(Clone)]
pub struct Signals {
    park: Arc<Park>,
}

/// Installs the handlers (before any child is started, so no SIGCHLD is missed) and starts
/// the thread, which reaps once at once: exits that happened before (children that exited
/// during an upgrade's exec) are routed then.
pub fn start(
    reaper: Arc<Reaper>,
    core: Sender<CoreMessage>,
) -> io::Result<(Signals, JoinHandle<()>)> {
    let mut signals = Iterator::new(HANDLED)?;
    let park = Arc::new(Park {
        state: Mutex::new(Parking::Running),
        changed: Condvar::new(),
    });
    let thread_park = park.clone();
    let thread = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&handled()), None);
            reaper.reap();
            loop {
                let batch: Vec<i32> = signals.wait().collect();
                if *thread_park.state() == Parking::Requested {
                    park_here(&thread_park, &batch);
                    reaper.reap();
                    continue;
                }
                for signal in batch {
                    if signal == SIGCHLD {
                        reaper.reap();
                    } else if core.send(CoreMessage::Signal(signal)).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok((Signals { park }, thread))
}

fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for signal in HANDLED {
        if let Ok(signal) = Signal::try_from(signal) {
            set.add(signal);
        }
    }
    set
}

/// Blocks every signal, puts back the ones just taken, and waits to be released.
fn park_here(park: &Park, taken: &[i32]) {
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None);
    for &signal in taken.iter().filter(|s| **s != SIGCHLD) {
        if let Ok(signal) = Signal::try_from(signal) {
            // Process-directed, and blocked everywhere now: it stays pending.
            let _ = kill(Pid::this(), signal);
        }
    }
    let mut state = park.state();
    if *state == Parking::Requested {
        *state = Parking::Parked;
        park.changed.notify_all();
        while *state == Parking::Parked {
            state = park.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
    *state = Parking::Running;
    drop(state);
    // Whatever arrived meanwhile (and what was put back) is delivered now.
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&handled()), None);
}

impl Signals {
    /// Parks the thread (see the module docs). `Err` when it did not park `within`: then it
    /// is not parked and nothing changed.
    pub fn park(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let mut state = self.park.state();
        *state = Parking::Requested;
        // Wakes the thread out of its wait: this thread blocks every signal, so the
        // process-directed signal goes to the signals thread. A SIGCHLD at worst makes it
        // reap, which a parking thread does not.
        let _ = kill(Pid::this(), Signal::SIGCHLD);
        while *state == Parking::Requested {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                *state = Parking::Running;
                return Err(format!(
                    "the signals thread did not stop within {} ms",
                    within.as_millis()
                ));
            }
            state = self
                .park
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

    /// Lets a parked thread go on: it handles what arrived meanwhile and reaps.
    pub fn release(&self) {
        let mut state = self.park.state();
        if *state == Parking::Parked {
            *state = Parking::Released;
            self.park.changed.notify_all();
        }
    }
}
