//! A console across an upgrade in place: `hold` lets the writer finish what is queued (as
//! long as it makes progress), then stops it and takes what is left, which travels in the
//! state and is queued first by the new image (`preload`); `release` puts it back when the
//! exec did not happen. What the writer has taken already and is blocked writing (nobody
//! reads supergo's stdout) cannot be taken back: the exec cuts it short.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Console;

/// How long `hold` waits for the writer when it makes no progress.
const HOLD_WAIT: Duration = Duration::from_secs(1);

impl Console {
    /// Waits until the queue is written (or the writer stalls for `HOLD_WAIT`), then holds
    /// the writer and returns the records still queued. Their bytes are counted as written
    /// now: the counters travel in the state before they are written.
    pub fn hold(&self) -> Vec<u8> {
        let mut queue = self.shared.queue();
        let mut seen = queue.progress;
        while queue.queued() > 0 && !queue.finished {
            let (next, timeout) = self
                .shared
                .changed
                .wait_timeout(queue, HOLD_WAIT)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            queue = next;
            if timeout.timed_out() && queue.progress == seen {
                break;
            }
            seen = queue.progress;
        }
        queue.held = true;
        for share in std::mem::take(&mut queue.shares) {
            if let Some(info) = share.info {
                info.written.fetch_add(share.payload, Ordering::Relaxed);
            }
        }
        std::mem::take(&mut queue.pending)
    }

    /// Lets the writer go on (the exec did not happen), with `held` queued first again.
    pub fn release(&self, held: Vec<u8>) {
        let mut queue = self.shared.queue();
        queue.held = false;
        // Nothing was queued while held (the log thread was frozen too): `held` goes first.
        if !held.is_empty() {
            queue.push(None, b"", b"", &held);
        }
        drop(queue);
        self.shared.changed.notify_all();
    }

    /// Queues records carried over from the image before, before anything else.
    pub fn preload(&self, records: &[u8]) {
        if records.is_empty() {
            return;
        }
        self.shared.queue().push(None, b"", b"", records);
        self.shared.changed.notify_all();
    }
}
