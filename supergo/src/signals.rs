//! The signals thread: SIGCHLD → reap and route exits; SIGTERM/SIGINT/SIGQUIT → shutdown;
//! SIGHUP → reread + update; SIGUSR1 → reopen logs. One `signal-hook` iterator, so supergo's
//! own handlers only write to a self-pipe and all real work happens on this thread.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::reaper::Reaper;
use crate::supervisor::CoreMessage;

/// Installs the handlers (before any child is started, so no SIGCHLD is missed) and starts
/// the thread.
pub fn start(reaper: Arc<Reaper>, core: Sender<CoreMessage>) -> io::Result<JoinHandle<()>> {
    let mut signals = Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            // Children that exited before the handler was installed.
            reaper.reap();
            for signal in signals.forever() {
                if signal == SIGCHLD {
                    reaper.reap();
                } else if core.send(CoreMessage::Signal(signal)).is_err() {
                    return;
                }
            }
        })
}
