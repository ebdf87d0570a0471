//! One read of the process table shared by every worker that asks for it at about the same
//! moment.
//!
//! Why: reading `/proc` costs one file per process. At supergo's shutdown every program stops
//! at once, and with 1000 programs (1000 processes and more) a table read per program would be
//! a million reads. Here callers that arrive while a read is under way wait for the *next*
//! read, which one of them starts as soon as the current one ends, and all of them share it:
//! a burst of callers costs two reads, whatever its size.
//!
//! The rule that keeps a shared table as good as a read of one's own: a caller only takes a
//! table whose read *began after* the caller asked, so it never misses a process that existed
//! when it asked (what a read of its own would have seen at best).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::{process_table, Stat};

/// Every process of the namespace, by pid, as one read found them.
pub(super) type Table = Arc<HashMap<i32, Stat>>;

#[derive(Default)]
pub(super) struct Shared {
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// A read is under way (by some caller's thread).
    reading: bool,
    /// The newest table, with the moment its read began.
    latest: Option<(Instant, Table)>,
}

impl Shared {
    /// A table whose read began at `asked` or later.
    pub(super) fn since(&self, asked: Instant) -> Table {
        let mut state = self.lock();
        loop {
            if let Some((began, table)) = &state.latest {
                if *began >= asked {
                    return table.clone();
                }
            }
            if !state.reading {
                state.reading = true;
                drop(state);
                let began = Instant::now();
                let table: Table = Arc::new(process_table());
                let mut state = self.lock();
                state.reading = false;
                state.latest = Some((began, table.clone()));
                self.done.notify_all();
                return table;
            }
            state = self
                .done
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_never_older_than_the_request() {
        let shared = Shared::default();
        let asked = Instant::now();
        let first = shared.since(asked);
        assert!(first.contains_key(&(std::process::id() as i32)));
        // Asked before that read began: the same table serves.
        assert!(Arc::ptr_eq(&first, &shared.since(asked)));
        // Asked after it: a new read.
        let later = Instant::now();
        assert!(!Arc::ptr_eq(&first, &shared.since(later)));
    }
}
