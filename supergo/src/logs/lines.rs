//! Cutting a pipe's byte stream into whole lines.
//!
//! Reads from a pipe end anywhere: in the middle of a line, when a child writes with a
//! buffer that is not line-aligned, or when a line is longer than the pipe's atomic write
//! (4 KiB). `LineBuffer` hands on complete lines and keeps the partial one, so the file
//! (and its rotation) only ever sees whole lines.
//!
//! Each piece handed on comes with `continues`: true when its first bytes continue a line
//! whose start was handed on before, because that line reached `LINE_MAX`. A file ignores it
//! (the bytes simply follow); supergo's own stdout marks it (`console`).

use std::time::{Duration, Instant};

/// A partial line longer than this is written as is: the buffer must stay bounded.
pub(super) const LINE_MAX: usize = 64 * 1024;

/// A partial line with no more bytes for this long is written as is.
pub(super) const SILENCE: Duration = Duration::from_secs(1);

/// Kept capacity of an emptied buffer; a larger one is freed (1000 programs must stay cheap).
const KEEP_CAPACITY: usize = 4096;

#[derive(Default)]
pub(super) struct LineBuffer {
    partial: Vec<u8>,
    /// When the partial line last grew.
    last_data: Option<Instant>,
    /// The last piece handed on was a line cut at `LINE_MAX`: the next bytes continue it.
    cut: bool,
}

impl LineBuffer {
    /// Hands every complete line in `partial + data` to `out` (in one call when possible),
    /// and keeps what follows the last newline.
    pub fn push(&mut self, data: &[u8], now: Instant, out: &mut impl FnMut(&[u8], bool)) {
        let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete > 0 {
            if self.partial.is_empty() {
                out(&data[..complete], std::mem::take(&mut self.cut));
            } else {
                self.partial.extend_from_slice(&data[..complete]);
                self.flush(out);
            }
        }
        self.keep(&data[complete..], now, out);
    }

    /// Writes the partial line, if any, as is: it ends here (a silence, an exit, shutdown).
    pub fn flush(&mut self, out: &mut impl FnMut(&[u8], bool)) {
        self.hand_on(out);
        self.cut = false;
    }

    /// Hands on the partial line, if any, and empties the buffer.
    fn hand_on(&mut self, out: &mut impl FnMut(&[u8], bool)) {
        if !self.partial.is_empty() {
            out(&self.partial, std::mem::take(&mut self.cut));
        }
        if self.partial.capacity() > KEEP_CAPACITY {
            self.partial = Vec::new();
        } else {
            self.partial.clear();
        }
        self.last_data = None;
    }

    /// The partial line, and whether it continues a cut one (what an upgrade in place
    /// carries to the new image).
    pub fn carried(&self) -> (&[u8], bool) {
        (&self.partial, self.cut)
    }

    /// A buffer that goes on with a line carried across an upgrade in place; it waits for
    /// its newline for `SILENCE` from `now`, as if its bytes had just come.
    pub fn with_carried(partial: Vec<u8>, cut: bool, now: Instant) -> LineBuffer {
        let last_data = (!partial.is_empty()).then_some(now);
        LineBuffer {
            partial,
            last_data,
            cut,
        }
    }

    /// When the partial line is due to be written for lack of its newline.
    pub fn deadline(&self) -> Option<Instant> {
        self.last_data.map(|at| at + SILENCE)
    }

    fn keep(&mut self, rest: &[u8], now: Instant, out: &mut impl FnMut(&[u8], bool)) {
        if rest.is_empty() {
            return;
        }
        self.partial.extend_from_slice(rest);
        self.last_data = Some(now);
        if self.partial.len() >= LINE_MAX {
            // The line goes on: what comes next continues it.
            self.hand_on(out);
            self.cut = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, LineBuffer) {
        let (out, buffer) = run_marked(chunks);
        (out.into_iter().map(|(piece, _)| piece).collect(), buffer)
    }

    /// Like `run`, with each piece's `continues` flag.
    fn run_marked(chunks: &[&[u8]]) -> (Vec<(Vec<u8>, bool)>, LineBuffer) {
        let mut buffer = LineBuffer::default();
        let mut out = Vec::new();
        let now = Instant::now();
        for chunk in chunks {
            buffer.push(chunk, now, &mut |piece: &[u8], continues| {
                out.push((piece.to_vec(), continues))
            });
        }
        (out, buffer)
    }

    #[test]
    fn hands_on_complete_lines_and_keeps_the_partial_one() {
        let (out, buffer) = run(&[b"one\ntw", b"o\nthree\nfo", b"ur"]);
        assert_eq!(out, vec![b"one\n".to_vec(), b"two\nthree\n".to_vec()]);
        assert_eq!(buffer.partial, b"four");
        assert!(buffer.deadline().is_some());
    }

    #[test]
    fn flush_writes_the_partial_line_as_is() {
        let (_, mut buffer) = run(&[b"prompt> "]);
        let mut out = Vec::new();
        buffer.flush(&mut |piece: &[u8], _| out.push(piece.to_vec()));
        assert_eq!(out, vec![b"prompt> ".to_vec()]);
        assert_eq!(buffer.deadline(), None);
    }

    #[test]
    fn a_partial_line_that_fills_the_buffer_is_written_as_is() {
        let big = vec![b'x'; LINE_MAX - 1];
        let (out, buffer) = run(&[&big, b"yz", b"\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), LINE_MAX + 1);
        assert_eq!(out[1], b"\n");
        assert!(buffer.partial.is_empty());
    }

    #[test]
    fn the_piece_after_a_cut_says_it_continues_the_line() {
        let big = vec![b'x'; LINE_MAX];
        let (out, mut buffer) = run_marked(&[&big, b"tail\nnext\n", &big, b"rest"]);
        let flags: Vec<bool> = out.iter().map(|(_, continues)| *continues).collect();
        assert_eq!(flags, vec![false, true, false]);
        assert_eq!(out[1].0, b"tail\nnext\n");
        // A flush ends the line: the cut big line's rest is handed on as its continuation,
        // and what comes after starts a line of its own.
        let mut flushed = Vec::new();
        buffer.flush(&mut |piece: &[u8], continues| flushed.push((piece.to_vec(), continues)));
        assert_eq!(flushed, vec![(b"rest".to_vec(), true)]);
        let mut after = Vec::new();
        buffer.push(b"new\n", Instant::now(), &mut |piece: &[u8], continues| {
            after.push((piece.to_vec(), continues))
        });
        assert_eq!(after, vec![(b"new\n".to_vec(), false)]);
    }
}
