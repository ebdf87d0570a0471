//! The log thread: one `poll()` over every pipe's read end and the wake pipe.
//!
//! Each round: wait in `poll` (no timeout unless a partial line is waiting for its
//! newline), take the commands, read the pipes that are ready, write what is due, and
//! finish the pipes that were removed and have reached EOF. A pipe is read at most
//! `READS_PER_ROUND` times per round, so one chatty program cannot starve the others.
//!
//! A pipe writes either to a file (`file`, shared by path) or to one of supergo's own
//! streams (`console`, one per stream, created at first use and kept until shutdown, so that
//! never two writer threads share a stream). While a console's queue is full, the pipes that
//! write to it are not polled nor read (their children wait on a full pipe) until room comes
//! or the console's grace runs out.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd;

use super::console::{Console, Stream};
use super::file::{Files, LogFile};
use super::lines::LineBuffer;
use super::{Command, PipeInfo, Registration};

mod handover;

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

/// `wake`: the read end of the wake pipe; `wake_write`: a write end of it, which the
/// consoles' writer threads get (duplicated) to wake a held-back log thread.
pub(super) fn run(commands: Receiver<Command>, wake: OwnedFd, wake_write: OwnedFd) {
    Pump {
        commands,
        wake,
        wake_write,
        pipes: Vec::new(),
        files: Files::default(),
        consoles: [None, None],
        scratch: vec![0; READ_CHUNK].into_boxed_slice(),
    }
    .run();
}

/// Where a pipe's lines go.
#[derive(Clone, Debug, PartialEq)]
enum Sink {
    /// The file at this path, in `Pump::files` (the path is the pipe's `PipeInfo::path`).
    File(Arc<Path>),
    /// One of supergo's own streams, in `Pump::consoles`.
    Console(Stream),
}

struct Pipe {
    id: u64,
    read: OwnedFd,
    sink: Sink,
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
    wake_write: OwnedFd,
    /// Indices are stable within a round: pipes are only appended, and removed at its end.
    pipes: Vec<Pipe>,
    files: Files,
    /// supergo's stdout and stderr (`Stream::index`), once a pipe writes to them.
    consoles: [Option<Console>; 2],
    scratch: Box<[u8]>,
}

/// A pipe's sink, borrowed for a write.
enum Out<'a> {
    File(&'a mut LogFile),
    Console(&'a Console),
}

impl Out<'_> {
    fn write(&mut self, chunk: &[u8], continues: bool, info: &Arc<PipeInfo>) {
        match self {
            Out::File(file) => file.write(chunk, info),
            Out::Console(console) => console.write(chunk, continues, info, Instant::now()),
        }
    }
}

/// The sink of `sink`, if it exists (every pipe's sink does until the pipe is finished).
fn sink_of<'a>(
    files: &'a mut Files,
    consoles: &'a [Option<Console>; 2],
    sink: &Sink,
) -> Option<Out<'a>> {
    match sink {
        Sink::File(path) => files.get_mut(path).map(Out::File),
        Sink::Console(stream) => consoles[stream.index()].as_ref().map(Out::Console),
    }
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
                self.drain(index, READS_PER_ROUND, true);
            }
            self.flush_silent(Instant::now());
            self.close_finished();
        }
    }

    /// Until when the pipes writing to each console are held back (`Console::admit`).
    fn held(&self, now: Instant) -> [Option<Instant>; 2] {
        let admit = |c: &Option<Console>| c.as_ref().and_then(|c| c.admit(now));
        [admit(&self.consoles[0]), admit(&self.consoles[1])]
    }

    /// Blocks until a pipe or the wake pipe is readable, a partial line is due, or a held
    /// console's grace runs out. Returns the indices of the pipes with events.
    fn wait(&self) -> Vec<usize> {
        let now = Instant::now();
        let held = self.held(now);
        let is_held = |pipe: &Pipe| match &pipe.sink {
            Sink::Console(stream) => held[stream.index()].is_some(),
            Sink::File(_) => false,
        };
        let polled: Vec<usize> = (0..self.pipes.len())
            .filter(|&i| !self.pipes[i].eof && !is_held(&self.pipes[i]))
            .collect();
        let mut fds = Vec::with_capacity(polled.len() + 1);
        fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
        for &i in &polled {
            fds.push(PollFd::new(self.pipes[i].read.as_fd(), PollFlags::POLLIN));
        }
        let grace_end = held.iter().flatten().min().copied();
        match poll(&mut fds, self.timeout(now, grace_end)) {
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

    /// No timeout at all unless a partial line is waiting for its newline, or a console's
    /// grace runs (`grace_end`).
    fn timeout(&self, now: Instant, grace_end: Option<Instant>) -> PollTimeout {
        let next = self
            .pipes
            .iter()
            .filter_map(|p| p.lines.deadline())
            .chain(grace_end)
            .min();
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
                    self.files.iter_mut().for_each(LogFile::reopen);
                    let _ = done.send(());
                }
                Ok(Command::Shutdown) => return false,
                Ok(Command::Freeze(order)) => self.freeze(order),
                Ok(Command::Preload(stream, records)) => self.preload(stream, &records),
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
            carried,
        } = registration;
        let sink = match Stream::of(&target.path) {
            Some(stream) => {
                self.console(stream);
                Sink::Console(stream)
            }
            None => {
                let file = (self.files).get_or_open(&info.path, || LogFile::open(&target, &info));
                file.configure(&target);
                file.users += 1;
                Sink::File(info.path.clone())
            }
        };
        self.pipes.push(Pipe {
            id,
            read,
            sink,
            info,
            lines: LineBuffer::with_carried(carried.partial, carried.cut, Instant::now()),
            removed: carried.removed,
            eof: false,
        });
    }

    /// The console of `stream`, started at first use.
    fn console(&mut self, stream: Stream) -> &Console {
        let wake_write = &self.wake_write;
        self.consoles[stream.index()].get_or_insert_with(|| {
            // A writer that cannot get its wake pipe still writes; the log thread then
            // notices room at its next wake-up or at the grace's end.
            Console::start(stream, wake_write.try_clone().ok())
        })
    }

    /// Reads pipe `index` until it is empty (or `max_reads` reads), writing whole lines.
    /// With `hold`, stops when the pipe's console is full (see `Console::admit`).
    fn drain(&mut self, index: usize, max_reads: usize, hold: bool) {
        let Pump {
            pipes,
            files,
            consoles,
            scratch,
            ..
        } = self;
        let pipe = &mut pipes[index];
        let Some(mut out) = sink_of(files, consoles, &pipe.sink) else {
            return; // Every pipe's sink stays until the pipe is finished.
        };
        for _ in 0..max_reads {
            if let (true, Out::Console(console)) = (hold, &out) {
                if console.admit(Instant::now()).is_some() {
                    return;
                }
            }
            let info = &pipe.info;
            match unistd::read(&pipe.read, scratch) {
                Ok(0) => {
                    pipe.eof = true;
                    pipe.lines.flush(&mut |chunk, c| out.write(chunk, c, info));
                    return;
                }
                Ok(n) => {
                    let now = Instant::now();
                    pipe.lines.push(&scratch[..n], now, &mut |chunk, c| {
                        out.write(chunk, c, info)
                    });
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
                    pipe.lines.flush(&mut |chunk, c| out.write(chunk, c, info));
                    return;
                }
            }
        }
    }

    /// Writes partial lines that have waited `lines::SILENCE` for their newline.
    fn flush_silent(&mut self, now: Instant) {
        for pipe in &mut self.pipes {
            if pipe.lines.deadline().is_some_and(|at| at <= now) {
                if let Some(mut out) = sink_of(&mut self.files, &self.consoles, &pipe.sink) {
                    let info = &pipe.info;
                    pipe.lines.flush(&mut |chunk, c| out.write(chunk, c, info));
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
            let Sink::File(path) = &pipe.sink else {
                continue; // Consoles stay until shutdown.
            };
            if let Some(file) = self.files.get_mut(path) {
                file.users -= 1;
                if file.users == 0 {
                    self.files.remove(path);
                }
            }
        }
    }

    /// Shutdown: writes what every pipe holds now, partial lines included, and waits for
    /// the consoles to write theirs (as long as they make progress).
    fn finish(&mut self) {
        for index in 0..self.pipes.len() {
            if !self.pipes[index].eof {
                // No holding back: supergo is exiting. A full console drops instead.
                self.drain(index, READS_AT_SHUTDOWN, false);
            }
            let pipe = &mut self.pipes[index];
            if let Some(mut out) = sink_of(&mut self.files, &self.consoles, &pipe.sink) {
                let info = &pipe.info;
                pipe.lines.flush(&mut |chunk, c| out.write(chunk, c, info));
            }
        }
        for console in self.consoles.iter().flatten() {
            console.close();
        }
    }
}
