//! `tail [-f] NAME [stdout|stderr]`: the end of a program's output, then (with `-f`) what
//! comes after it, asked for by offset every [`FOLLOW_INTERVAL`].

use std::thread;
use std::time::Duration;

use crate::api::LogChunk;
use crate::args::Stream;
use crate::client::{encode, Answer, Method, SHORT_TIMEOUT};
use crate::error::CtlError;
use crate::wording::about;

use super::ctx::Ctx;

/// How often `tail -f` asks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(300);

impl Ctx<'_> {
    pub(super) fn tail(
        &mut self,
        name: &str,
        stream: Stream,
        follow: bool,
        bytes: u64,
    ) -> Result<(), CtlError> {
        let base = format!(
            "/log/{}?stream={}&bytes={bytes}",
            encode(name),
            stream.as_str()
        );
        let first = self.log_request(name, &base)?;
        self.write_text(whole_lines(&first.text, first.offset))?;
        if !follow {
            return Ok(());
        }
        let Some(mut offset) = first.offset else {
            return Err(CtlError::Daemon(format!(
                "{name}: supergo gave no offset with the log, so it cannot be followed"
            )));
        };
        loop {
            thread::sleep(FOLLOW_INTERVAL);
            let chunk = self.log_request(name, &format!("{base}&offset={offset}"))?;
            let Some(next) = chunk.offset else { continue };
            if next < offset {
                writeln!(
                    self.err,
                    "supergoctl: {name}: {} was truncated or rotated; following the new file",
                    stream.as_str()
                )?;
                self.write_text(&chunk.text)?;
            } else if next > offset {
                // supergo may send everything from `offset`, or just the last `bytes`
                // again; either way only the last `next - offset` bytes are new.
                self.write_text(new_part(&chunk.text, next - offset))?;
            }
            offset = next;
        }
    }

    /// One `GET /log/…`; a route that does not exist (older supergo) is explained.
    fn log_request(&mut self, name: &str, path: &str) -> Result<LogChunk, CtlError> {
        let (http, raw) = self.client.send(Method::Get, path, SHORT_TIMEOUT)?;
        let answer: Answer = match Answer::parse(http, raw) {
            Ok(answer) => answer,
            Err(raw) => {
                if http == 404 || http == 405 {
                    return Err(CtlError::Daemon(format!(
                    "{name}: this supergo does not serve logs (GET /log answered HTTP {http}); \
                     read the program's stdout_file / stderr_file instead"
                )));
                }
                return Err(self.client.not_supergo(Method::Get, path, http, &raw));
            }
        };
        if !answer.ok() {
            return Err(CtlError::Daemon(about(name, &answer.reason())));
        }
        if self.json {
            self.raw(&answer.raw)?;
        }
        Ok(LogChunk::from_value(&answer.data))
    }
}

/// The first piece of a tail without the partial line it may start with, when it does
/// not start at the beginning of the file (`offset` is where the text ends).
fn whole_lines(text: &str, offset: Option<u64>) -> &str {
    let starts_mid_file = offset.is_some_and(|end| end > text.len() as u64);
    match text.find('\n') {
        Some(i) if starts_mid_file && i + 1 < text.len() => &text[i + 1..],
        _ => text,
    }
}

/// The last `new_bytes` bytes of `text`, widened to a character boundary.
fn new_part(text: &str, new_bytes: u64) -> &str {
    let new_bytes = usize::try_from(new_bytes).unwrap_or(usize::MAX);
    if new_bytes >= text.len() {
        return text;
    }
    let mut start = text.len() - new_bytes;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_from_mid_file_starts_at_a_whole_line() {
        assert_eq!(whole_lines("ick 5\ntick 6\n", Some(100)), "tick 6\n");
        assert_eq!(
            whole_lines("tick 1\ntick 2\n", Some(14)),
            "tick 1\ntick 2\n"
        );
        assert_eq!(whole_lines("one long line", Some(100)), "one long line");
        assert_eq!(whole_lines("partial\n", Some(100)), "partial\n");
        assert_eq!(whole_lines("x\ny", None), "x\ny");
    }

    #[test]
    fn new_part_takes_the_tail_on_a_char_boundary() {
        assert_eq!(new_part("one\ntwo\n", 4), "two\n");
        assert_eq!(new_part("abc", 10), "abc");
        assert_eq!(new_part("aé", 1), "é");
        assert_eq!(new_part("abc", 0), "");
    }
}
