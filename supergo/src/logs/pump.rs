//! The log thread: one `poll()` over every pipe's read end and the wake pipe.
//!
//! Each round: wait in `poll` (no timeout unless a partial line is waiting for its
//! newline), take the commands, read the pipes that are ready, write what is due, and
//! finish the pipes that were removed and have reached EOF. A pipe is read at most
//! `READS_PER_ROUND` times per round, so one chatty program cannot starve the others.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd;

use super::file::LogFile;
use super::lines::LineBuffer;
use super::{Command, PipeInfo, Registration};

/// Bytes read from a pipe per `read`: the default pipe capacity, so one read usually
/// empties it.
const READ_CHUNK: usize = 64 * 1024;

/// Reads of one pipe per round (1 MiB) before the others get their turn.
const READS_PER_ROUND: usize = 16;

/// Reads of one pipe at shutdown: what it holds, but not forever from a child that is
/// still writing.
const READS_AT_SHUTDOWN: usize = 256;

/// Pause after an unexpected `poll` failure, so that a persistent one cannot spin.
const POLL_FAILURE_PAUSE: Duration = Duration::from_secs(1);

pub(super) fn run(commands: Receiver<Command>, wake: OwnedFd) {
    Pump {
        commands,
        wake,
        pipes: Vec::new(),
        files: HashMap::new(),
        scratch: vec![0; READ_CHUNK].into_boxed_slice(),
    }
    .run();
}

struct Pipe {
    id: u64,
    read: OwnedFd,
    path: PathBuf,
    info: Arc<PipeInfo>,
    lines: LineBuffer,
    /// supergo's write end is closed (the `LogPipe` was dropped).
    removed: bool,
    /// Every write end is closed: nothing more will come, and `poll` would report POLLHUP
    /// at once forever, so the pipe is no longer polled.
    eof: bool,
}

struct Pump {
    commands: Receiver<Command>,
    /// Read end of the wake pipe, O_NONBLOCK.
    wake: OwnedFd,
    /// Indices are stable within a round: pipes are only appended, and removed at its end.
    pipes: Vec<Pipe>,
    files: HashMap<PathBuf, LogFile>,
    scratch: Box<[u8]>,
}

impl Pump {
    fn run(mut self) {
        loop {
            let ready = self.wait();
            self.drain_wake();
            if !self.take_commands() {
                self.finish();
                return;
            }
            for index in ready {
                self.drain(index, READS_PER_ROUND);
            }
            self.flush_silent(Instant::now());
            self.close_finished();
        }
    }

    /// Blocks until a pipe or the wake pipe is readable, or a partial line is due.
    /// Returns the indices of the pipes with events.
    fn wait(&self) -> Vec<usize> {
        let polled: Vec<usize> = (0..self.pipes.len())
            .filter(|&i| !self.pipes[i].eof)
            .collect();
        let mut fds = Vec::with_capacity(polled.len() + 1);
        fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
        for &i in &polled {
            fds.push(PollFd::new(self.pipes[i].read.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, self.timeout(Instant::now())) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Vec::new(),
            Err(e) => {
                crate::error!("the log thread cannot poll its pipes: {}", e.desc());
                std::thread::sleep(POLL_FAILURE_PAUSE);
                return Vec::new();
            }
        }
        // POLLHUP and POLLERR count too: the read that follows finds EOF or the error.
        polled
            .into_iter()
            .zip(&fds[1..])
            .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| i)
            .collect()
    }

    /// No timeout at all unless a partial line is waiting for its newline.
    fn timeout(&self, now: Instant) -> PollTimeout {
        let next = self.pipes.iter().filter_map(|p| p.lines.deadline()).min();
        match next {
            None => PollTimeout::NONE,
            Some(at) => {
                // Rounded up, so that the wake-up is not a millisecond early and idle.
                let wait = at.saturating_duration_since(now) + Duration::from_millis(1);
                PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX)
            }
        }
    }

    /// Empties the wake pipe; the bytes carry no meaning, the channel does.
    fn drain_wake(&mut self) {
        while let Ok(n) = unistd::read(&self.wake, &mut self.scratch) {
            if n < self.scratch.len() {
                break;
            }
        }
    }

    /// Applies every pending command. False when the thread must end.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Add(registration)) => self.add(registration),
                Ok(Command::Remove(id)) => {
                    if let Some(pipe) = self.pipes.iter_mut().find(|p| p.id == id) {
                        pipe.removed = true;
                    }
                }
                Ok(Command::Reopen(done)) => {
                    self.files.values_mut().for_each(LogFile::reopen);
                    let _ = done.send(());
                }
                Ok(Command::Shutdown) => return false,
                Err(TryRecvError::Empty) => return true,
                // The hub and every LogPipe are gone: nobody can ask for anything any more.
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn add(&mut self, registration: Registration) {
        let Registration {
            id,
            read,
            target,
            info,
        } = registration;
        let file = self
            .files
            .entry(target.path.clone())
            .or_insert_with(|| LogFile::open(&target, &info));
        file.configure(&target);
        file.users += 1;
        self.pipes.push(Pipe {
            id,
            read,
            path: target.path,
            info,
            lines: LineBuffer::default(),
            removed: false,
            eof: false,
        });
    }

    /// Reads pipe `index` until it is empty (or `max_reads` reads), writing whole lines.
    fn drain(&mut self, index: usize, max_reads: usize) {
        let Pump {
            pipes,
            files,
            scratch,
            ..
        } = self;
        let pipe = &mut pipes[index];
        let Some(file) = files.get_mut(&pipe.path) else {
            return; // Every pipe's file stays in `files` until the pipe is finished.
        };
        for _ in 0..max_reads {
            match unistd::read(&pipe.read, scratch) {
                Ok(0) => {
                    pipe.eof = true;
                    pipe.lines.flush(&mut |chunk| file.write(chunk, &pipe.info));
                    return;
                }
                Ok(n) => {
                    let now = Instant::now();
                    let info = &pipe.info;
                    pipe.lines
                        .push(&scratch[..n], now, &mut |chunk| file.write(chunk, info));
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    // Cannot happen on a pipe we own; stop polling it rather than spin.
                    crate::error!(
                        "{}: cannot read its {} pipe: {}; output is lost from now on",
                        pipe.info.program,
                        pipe.info.stream,
                        e.desc()
                    );
                    pipe.eof = true;
                    pipe.lines.flush(&mut |chunk| file.write(chunk, &pipe.info));
                    return;
                }
            }
        }
    }

    /// Writes partial lines that have waited `lines::SILENCE` for their newline.
    fn flush_silent(&mut self, now: Instant) {
        for pipe in &mut self.pipes {
            if pipe.lines.deadline().is_some_and(|at| at <= now) {
                if let Some(file) = self.files.get_mut(&pipe.path) {
                    pipe.lines.flush(&mut |chunk| file.write(chunk, &pipe.info));
                }
            }
        }
    }

    /// Forgets pipes that were removed and have reached EOF, and files nobody writes to.
    fn close_finished(&mut self) {
        let mut index = 0;
        while index < self.pipes.len() {
            let pipe = &self.pipes[index];
            if !(pipe.removed && pipe.eof) {
                index += 1;
                continue;
            }
            let pipe = self.pipes.swap_remove(index);
            if let Some(file) = self.files.get_mut(&pipe.path) {
                file.users -= 1;
                if file.users == 0 {
                    self.files.remove(&pipe.path);
                }
            }
        }
    }

    /// Shutdown: writes what every pipe holds now, partial lines included.
    fn finish(&mut self) {
        for index in 0..self.pipes.len() {
            if !self.pipes[index].eof {
                self.drain(index, READS_AT_SHUTDOWN);
            }
            let pipe = &mut self.pipes[index];
            if let Some(file) = self.files.get_mut(&pipe.path) {
                pipe.lines.flush(&mut |chunk| file.write(chunk, &pipe.info));
            }
        }
    }
}
