//! The reader of one notify socket: receives each datagram, identifies its sender on the
//! spot, closes every fd it brought, and hands what it said to the program's worker. The
//! one notify thread (`poller`) runs it whenever its socket is readable.
//!
//! Datagrams are handled strictly one after the other, which is what makes `BARRIER=1` work:
//! by the time a barrier's fd is closed, every earlier datagram has been read and its sender
//! identified. Nothing a sender does ends the reader; only the drop of its `NotifySocket`
//! does (the `closing` flag, see there). Refusals are logged, each kind at most once per
//! period (`throttle`).

use std::borrow::Cow;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::datagram::{self, Buffers, Datagram, MAX_DATAGRAM};
use super::sender::{self, Identity};
use super::throttle::Throttle;
use super::Notification;

/// Kinds of datagram the reader refuses or trims; each is logged on its own schedule.
#[derive(Clone, Copy)]
enum Refusal {
    NoCredentials,
    FdsClosed,
    BadBarrier,
    TooLong,
    SenderGone,
    QueueFull,
    ReceiveError,
}

const REFUSAL_KINDS: usize = 7;

/// What the poller does with a reader after its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Turn {
    /// Poll its socket again.
    Keep,
    /// Done: drop it (and, with it, the worker's channel).
    End,
}

pub(super) struct Reader {
    program: String,
    socket: Arc<OwnedFd>,
    closing: Arc<AtomicBool>,
    notes: crossbeam_channel::Sender<Notification>,
    throttles: [Throttle; REFUSAL_KINDS],
}

impl Reader {
    pub(super) fn new(
        program: &str,
        socket: Arc<OwnedFd>,
        closing: Arc<AtomicBool>,
        notes: crossbeam_channel::Sender<Notification>,
        pidfds: bool,
    ) -> Reader {
        if !pidfds {
            say_once_that_pidfds_are_missing();
        }
        Reader {
            program: program.to_string(),
            socket,
            closing,
            notes,
            throttles: [const { Throttle::new() }; REFUSAL_KINDS],
        }
    }

    /// The socket it reads.
    pub(super) fn socket(&self) -> &OwnedFd {
        &self.socket
    }

    /// Reads what the socket holds, at most `max` datagrams (without blocking: the socket
    /// was found readable). `Turn::End` when the reader is done: its `NotifySocket` was
    /// dropped, or its worker is gone.
    pub(super) fn read(&mut self, buffers: &mut Buffers, max: usize) -> Turn {
        for _ in 0..max {
            let received = datagram::receive(&self.socket, buffers);
            if self.closing.load(Ordering::SeqCst) {
                return Turn::End;
            }
            match received {
                Ok(datagram) => {
                    if !self.handle(datagram) {
                        return Turn::End;
                    }
                }
                // Nothing more for now.
                Err(Errno::EAGAIN) => return Turn::Keep,
                Err(Errno::EINTR) => {}
                // Cannot happen while the reader holds the fd; never spin on it.
                Err(Errno::EBADF | Errno::ENOTSOCK) => return Turn::End,
                // ENOMEM, ENOBUFS: transient. Pause a little so that an error that persists
                // costs no CPU (the socket stays readable, so the next turn tries again).
                Err(err) => {
                    self.refuse(
                        Refusal::ReceiveError,
                        format_args!(
                            "cannot read from its NOTIFY_SOCKET ({}); retrying",
                            err.desc()
                        ),
                    );
                    std::thread::sleep(Duration::from_millis(10));
                    return Turn::Keep;
                }
            }
        }
        Turn::Keep
    }

    /// Handles one datagram; false when the worker is gone and the reader should end.
    fn handle(&mut self, datagram: Datagram) -> bool {
        let Datagram {
            bytes,
            cut,
            pid,
            pidfd,
            fds,
            control_cut,
        } = datagram;
        let Some(pid) = pid else {
            // The socket asks for credentials, so the kernel always attaches them.
            self.refuse(
                Refusal::NoCredentials,
                format_args!("ignoring a datagram that came without the sender's credentials"),
            );
            return true;
        };
        let sender = sender::identify(pid, pidfd.as_ref());
        drop(pidfd);
        let text = String::from_utf8_lossy(&bytes);
        if is_barrier(&text) {
            if fds.len() != 1 || control_cut {
                self.refuse(
                    Refusal::BadBarrier,
                    format_args!(
                        "pid {pid} sent BARRIER=1 with {} file descriptors instead of one; closed them",
                        fds.len()
                    ),
                );
            }
            // Dropping `fds` closes the barrier and releases the sender: every datagram
            // before this one has been read and its sender identified.
            return true;
        }
        if !fds.is_empty() || control_cut {
            let more = if control_cut {
                " (and the kernel discarded more that did not fit)"
            } else {
                ""
            };
            self.refuse(
                Refusal::FdsClosed,
                format_args!(
                    "closed {} file descriptor(s) that pid {pid} attached to a notification{more}: \
                     supergo keeps no file descriptors for its programs (FDSTORE=1 is not supported)",
                    fds.len()
                ),
            );
        }
        drop(fds);
        if cut {
            self.refuse(
                Refusal::TooLong,
                format_args!(
                    "ignoring a notification from pid {pid}: it is longer than {MAX_DATAGRAM} bytes"
                ),
            );
            return true;
        }
        if sender.exited {
            self.refuse_from_gone_sender(&sender, &text);
            return true;
        }
        if self.notes.len() >= super::QUEUE_LIMIT {
            self.refuse(
                Refusal::QueueFull,
                format_args!(
                    "dropped a notification from pid {pid} ({}): {} earlier ones are still \
                     waiting to be handled; is something flooding its NOTIFY_SOCKET?",
                    summary(&text),
                    self.notes.len()
                ),
            );
            return true;
        }
        // Unbounded (the limit is checked above): only a worker that is gone refuses it.
        self.notes.send(Notification::parse(&sender, &text)).is_ok()
    }

    fn refuse_from_gone_sender(&mut self, sender: &Identity, text: &str) {
        self.refuse(
            Refusal::SenderGone,
            format_args!(
                "ignoring a notification from pid {} ({}): that process had exited before \
                 supergo read it, so it cannot be told apart from whatever holds pid {} now. \
                 A helper that notifies for its program must wait until supergo has read the \
                 message, as `systemd-notify` does (BARRIER=1) unless it is given --no-block",
                sender.pid,
                summary(text),
                sender.pid
            ),
        );
    }

    fn refuse(&mut self, kind: Refusal, what: std::fmt::Arguments<'_>) {
        if let Some(suffix) = self.throttles[kind as usize].allow(Instant::now()) {
            crate::warn!("{}: NOTIFY_SOCKET: {what}{suffix}", self.program);
        }
    }
}

/// A datagram of exactly `BARRIER=1` (systemd treats nothing else as a barrier either).
fn is_barrier(text: &str) -> bool {
    let mut lines = text.lines().filter(|line| !line.is_empty());
    lines.next() == Some("BARRIER=1") && lines.next().is_none()
}

/// What a datagram said, short enough for a log line: `"READY=1 | STATUS=…"`.
fn summary(text: &str) -> Cow<'_, str> {
    const MAX: usize = 80;
    let joined = text
        .lines()
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    let shown: String = joined.chars().take(MAX).collect();
    if shown.len() < joined.len() {
        Cow::Owned(format!("{shown:?}…"))
    } else if joined.is_empty() {
        Cow::Borrowed("empty")
    } else {
        Cow::Owned(format!("{joined:?}"))
    }
}

fn say_once_that_pidfds_are_missing() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        crate::info!(
            "this kernel does not attach pidfds to notify datagrams (SO_PASSPIDFD, Linux 6.5+): \
             a notification from a process that exited at once and whose pid was reused could \
             be taken for the new owner's"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lone_barrier_line_is_a_barrier() {
        assert!(is_barrier("BARRIER=1"));
        assert!(is_barrier("BARRIER=1\n"));
        assert!(!is_barrier("READY=1\nBARRIER=1"));
        assert!(!is_barrier("BARRIER=0"));
    }

    #[test]
    fn summaries_are_short_and_quoted() {
        assert_eq!(summary("READY=1\nSTATUS=up\n"), "\"READY=1 | STATUS=up\"");
        assert_eq!(summary(""), "empty");
        assert!(summary(&"X".repeat(500)).chars().count() < 100);
    }
}
