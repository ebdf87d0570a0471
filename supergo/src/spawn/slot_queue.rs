//! The free fd slots (`fd_slots.rs`), handed out first come, first served, with a bounded
//! wait.
//!
//! Why a queue rather than a condvar: while 1000 programs start, hundreds of spawns want
//! slots at once, and slots come back one clone at a time. A condvar's `notify_all` woke
//! every waiter at each return to find too few slots and sleep again (measured: supergo's CPU
//! time went from 0.45 s to 2-3 s); here a return wakes only the waiters it serves, in order,
//! and hands them their slots. Waiting threads sleep, so the spawns in flight (the only
//! runnable ones) finish sooner.
//!
//! The wait is bounded twice: a waiter gives up when no slot at all has come back for
//! [`Wait::quiet`] (every slot held by children hung before their exec, say), and in any case
//! after [`Wait::max`]; the caller then spawns without slots.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a spawn may wait for slots.
#[derive(Clone, Copy, Debug)]
pub(super) struct Wait {
    /// Give up when no slot has come back for this long.
    pub(super) quiet: Duration,
    /// Give up after this long in any case.
    pub(super) max: Duration,
}

pub(super) struct SlotQueue {
    state: Mutex<State>,
    total: usize,
}

struct State {
    free: Vec<OwnedFd>,
    /// Oldest first.
    waiting: VecDeque<Waiter>,
    /// Slots handed to a waiter that has not picked them up yet, by its id.
    granted: Vec<(u64, Vec<OwnedFd>)>,
    next_id: u64,
    /// How many times slots came back: a waiter that sees it change knows others progress.
    returns: u64,
}

struct Waiter {
    id: u64,
    count: usize,
    thread: Thread,
}

impl SlotQueue {
    pub(super) fn new(slots: Vec<OwnedFd>) -> SlotQueue {
        SlotQueue {
            total: slots.len(),
            state: Mutex::new(State {
                free: slots,
                waiting: VecDeque::new(),
                granted: Vec::new(),
                next_id: 0,
                returns: 0,
            }),
        }
    }

    /// How many slots there are.
    #[cfg(test)]
    pub(super) fn total(&self) -> usize {
        self.total
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `count` slots, after those who asked first; None when there are fewer slots than that
    /// at all, or when `wait` ran out.
    pub(super) fn take(&self, count: usize, wait: Wait) -> Option<Vec<OwnedFd>> {
        if count > self.total {
            return None;
        }
        let mut state = self.lock();
        if state.waiting.is_empty() && state.free.len() >= count {
            let at = state.free.len() - count;
            return Some(state.free.split_off(at));
        }
        let id = state.next_id;
        state.next_id += 1;
        state.waiting.push_back(Waiter {
            id,
            count,
            thread: thread::current(),
        });
        let started = Instant::now();
        let (mut quiet_since, mut seen) = (started, state.returns);
        loop {
            if let Some(i) = state.granted.iter().position(|(g, _)| *g == id) {
                return Some(state.granted.swap_remove(i).1);
            }
            let now = Instant::now();
            if state.returns != seen {
                (quiet_since, seen) = (now, state.returns);
            }
            let until = (started + wait.max).min(quiet_since + wait.quiet);
            if now >= until {
                state.waiting.retain(|w| w.id != id);
                // Leaving the head of the queue may let the next ones be served.
                serve(&mut state);
                return None;
            }
            drop(state);
            // Woken by `put` once our slots are granted; or at `until`; or early (a stray
            // unpark token): the loop looks again in each case.
            thread::park_timeout(until - now);
            state = self.lock();
        }
    }

    /// Slots back (with their placeholders in place), to the oldest waiters first.
    pub(super) fn put(&self, slots: Vec<OwnedFd>) {
        let mut state = self.lock();
        state.free.extend(slots);
        state.returns += 1;
        serve(&mut state);
    }

    #[cfg(test)]
    pub(super) fn free_len(&self) -> usize {
        self.lock().free.len()
    }
}

/// Hands free slots to the waiters at the head of the queue, as long as there are enough
/// for the next one (first come, first served: a small request does not overtake).
fn serve(state: &mut State) {
    while let Some(head) = state.waiting.front() {
        if state.free.len() < head.count {
            break;
        }
        let at = state.free.len() - head.count;
        let slots = state.free.split_off(at);
        let waiter = state.waiting.pop_front().expect("the head exists");
        state.granted.push((waiter.id, slots));
        waiter.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn slots(n: usize) -> Vec<OwnedFd> {
        (0..n)
            .map(|_| {
                std::fs::File::open("/dev/null")
                    .expect("open /dev/null")
                    .into()
            })
            .collect()
    }

    const LONG: Wait = Wait {
        quiet: Duration::from_secs(20),
        max: Duration::from_secs(20),
    };

    #[test]
    fn a_waiter_is_handed_the_slots_that_come_back() {
        let queue = Arc::new(SlotQueue::new(slots(4)));
        let held = queue.take(3, LONG).expect("3 of 4 free");
        let waiter = {
            let queue = queue.clone();
            thread::spawn(move || queue.take(2, LONG).map(|s| s.len()))
        };
        // Queued: it cannot be served until slots come back; then it is, at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while queue.lock().waiting.is_empty() {
            assert!(Instant::now() < deadline, "the waiter never queued");
            thread::yield_now();
        }
        assert!(!waiter.is_finished(), "served with only 1 slot free");
        let started = Instant::now();
        queue.put(held);
        assert_eq!(waiter.join().expect("the waiter"), Some(2));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(queue.free_len(), 2);
    }

    #[test]
    fn a_wait_ends_when_no_slot_comes_back() {
        let queue = SlotQueue::new(slots(2));
        let _held = queue.take(2, LONG).expect("both");
        let started = Instant::now();
        let wait = Wait {
            quiet: Duration::from_millis(30),
            max: Duration::from_secs(20),
        };
        assert!(queue.take(1, wait).is_none());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(30) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
        assert!(
            queue.take(3, LONG).is_none(),
            "more than there are: at once"
        );
        assert!(queue.lock().waiting.is_empty(), "no waiter left behind");
    }
}
