//! An adopted process (issue 15) across an upgrade in place (issue 14).
//!
//! A child of supergo's needs nothing special: it stays supergo's child across the exec, and
//! the new image registers it with its reaper (`Reaper::adopt`), whose first reap routes an
//! exit that happened meanwhile. An adopted process is not supergo's child: no SIGCHLD comes
//! for it and `waitpid` cannot reap it, so registering it with the reaper would leave its
//! program `Running` after it exited, and (its pid being free once init reaps it) would aim
//! a stop at whatever process gets its number next. Its watch (`adopt::watch`) and its pidfd
//! die with the old image. So:
//!
//! - the old image writes, with the process, its start time (`adopted_ticks`), and the
//!   program's status note (`adopted_note`, `adopted_note_pid`);
//! - the new image opens a pidfd for the pid again and only then checks that the pid still
//!   names that process (alive, the same start time): the pidfd then holds the process
//!   checked, never a later one given its pid, exactly as adoption itself does. It is
//!   registered for signals (through that pidfd) and watched again; its exit comes as
//!   before, status unknown. A process gone meanwhile (it exited during the exec) has its
//!   exit routed at once, status unknown, as the watch would have done.

use std::time::Instant;

use nix::unistd::Pid;

use super::worker::Worker;
use crate::adopt::{pidfd, procfs, watch};
use crate::handover::{SectionRef, StateError, StateWriter};
use crate::reaper::{Exit, ExitStatus};
use crate::{error, info, spawn};

/// The program's part, as the state holds it: the status note, with the pid it is about.
pub(super) type Note = Option<(Pid, String)>;

impl Worker {
    /// Writes the status note of an adopted serving process, if any.
    pub(super) fn serialize_adoption(&self, w: &mut StateWriter) {
        if let Some((pid, note)) = self.adoption_note() {
            w.write_i64("adopted_note_pid", i64::from(pid.as_raw()))
                .write_str("adopted_note", note);
        }
    }

    /// In the new image: watches again each adopted process handed over (see the module
    /// docs), and takes the status note back.
    pub(super) fn watch_handed_over(&mut self, note: Note) {
        self.set_adoption_note(note);
        let adopted: Vec<(Pid, u64)> = (self.gens.current.iter())
            .chain(&self.gens.draining)
            .filter(|p| p.leader_exit.is_none())
            .filter_map(|p| p.adopted.map(|ticks| (p.pid, ticks)))
            .collect();
        for (pid, ticks) in adopted {
            self.watch_again(pid, ticks);
        }
    }

    fn watch_again(&mut self, pid: Pid, start_ticks: u64) {
        let name = self.name().to_string();
        // Opened first, checked after: see the module docs.
        let opened = pidfd::pidfd_open(pid);
        if !procfs::is_same_process(pid, start_ticks) {
            info!("{name}[{pid}]: the adopted process exited while supergo was being replaced (its exit status is not known)");
            // The worker's own channel: it reads it in its first turn.
            self.exit_route().send(Exit {
                pid,
                status: ExitStatus::Unknown,
                at: Instant::now(),
            });
            return;
        }
        // Without a pidfd (only a kernel without pidfd_open, which could not have adopted
        // it) the watch looks at /proc by start time, as adoption does.
        let pidfd = opened.ok();
        let for_signals = pidfd.as_ref().and_then(|fd| fd.try_clone().ok());
        spawn::register_child(pid, for_signals);
        if let Err(e) = watch::watch(pid, start_ticks, pidfd, self.exit_route()) {
            error!("{name}[{pid}]: cannot watch the adopted process for its exit: {e}");
        }
    }
}

/// The note `serialize_adoption` wrote.
pub(super) fn read_note(s: &SectionRef<'_>) -> Result<Note, StateError> {
    let pid = s.pid("adopted_note_pid")?;
    let note = s.str("adopted_note")?;
    Ok(pid
        .zip(note)
        .map(|(pid, note)| (Pid::from_raw(pid), note.to_string())))
}
