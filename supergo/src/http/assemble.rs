//! One request, assembled from a connection's bytes as they arrive: blank lines skipped,
//! the head found and parsed, checked against the origin policy, its body (if any, at most
//! `MAX_BODY` bytes) read into the request. Pure bookkeeping over bytes, so that the poll loop can hold hundreds of
//! half-sent requests without a thread for any of them.

use super::origin::LocalOnly;
use super::parse::{head_len, leading_blank_lines, parse_head, Head};
use super::{MAX_BODY, MAX_HEAD};
use crate::reply::Reply;

/// What a connection has sent of its current request.
#[derive(Debug, Default)]
pub struct Assembly {
    /// Bytes read and not consumed yet: the head so far, or what came after the body (the
    /// start of a pipelined next request).
    pending: Vec<u8>,
    /// Blank lines skipped before the request line: they count toward `MAX_HEAD`.
    skipped: usize,
    /// Once the head is complete: it, and how many body bytes are still to drop.
    body: Option<(Head, u64)>,
}

/// What to do with a request once it is complete, or hopeless.
#[derive(Debug)]
pub enum Verdict {
    /// A whole request, with its body: answer it.
    Answer(Head),
    /// Answer this refusal and close. The bool: the request was HEAD (no body in answers).
    Refuse(Reply, bool),
}

impl Assembly {
    /// A new request that starts with `pending` (bytes left over from the previous one).
    pub fn new(pending: Vec<u8>) -> Assembly {
        Assembly {
            pending,
            ..Assembly::default()
        }
    }

    /// The bytes read past the request (a pipelined next request), once it is complete.
    pub fn into_pending(self) -> Vec<u8> {
        self.pending
    }

    /// Takes `bytes` read from the connection (none: look at what is pending). `Some` once
    /// the request is complete or must be refused.
    pub fn feed(&mut self, bytes: &[u8], policy: &LocalOnly) -> Option<Verdict> {
        if let Some((head, left)) = &mut self.body {
            let dropped = body_part(*left, bytes.len());
            head.request.body.extend_from_slice(&bytes[..dropped]);
            *left -= dropped as u64;
            self.pending.extend_from_slice(&bytes[dropped..]);
            if *left > 0 {
                return None;
            }
            let (head, _) = self.body.take()?;
            return Some(Verdict::Answer(head));
        }
        self.pending.extend_from_slice(bytes);
        let blank = leading_blank_lines(&self.pending);
        self.skipped += blank;
        self.pending.drain(..blank);
        let Some(len) = head_len(&self.pending) else {
            return (self.skipped + self.pending.len() > MAX_HEAD).then(|| self.too_large());
        };
        if self.skipped + len > MAX_HEAD {
            return Some(self.too_large());
        }
        let head = match parse_head(&self.pending[..len]) {
            Ok(head) => head,
            Err(reply) => return Some(Verdict::Refuse(reply, self.starts_head_method())),
        };
        self.pending.drain(..len);
        if head.content_length > MAX_BODY {
            let reply = Reply::error(413, "request body too large (the control API takes none)");
            return Some(Verdict::Refuse(reply, head.head_only()));
        }
        if let Err(reply) = policy.check(&head.provenance) {
            return Some(Verdict::Refuse(reply, head.head_only()));
        }
        // The body (`MAX_BODY` at most, checked above) goes with the request; the next
        // request starts after it.
        let mut head = head;
        let dropped = body_part(head.content_length, self.pending.len());
        head.request.body.extend(self.pending.drain(..dropped));
        let left = head.content_length - dropped as u64;
        if left == 0 {
            return Some(Verdict::Answer(head));
        }
        self.body = Some((head, left));
        None
    }

    /// Nothing of a request has come yet (a keep-alive connection between requests).
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.skipped == 0 && self.body.is_none()
    }

    fn too_large(&self) -> Verdict {
        let reply = Reply::error(431, format!("request head larger than {MAX_HEAD} bytes"));
        Verdict::Refuse(reply, self.starts_head_method())
    }

    fn starts_head_method(&self) -> bool {
        self.pending.starts_with(b"HEAD ")
    }
}

/// How many of `available` bytes belong to a body with `left` bytes still to come.
fn body_part(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |left| left.min(available))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LocalOnly {
        LocalOnly::new(
            "127.0.0.1:22106",
            "127.0.0.1:22106".parse().expect("an address"),
        )
    }

    /// Feeds `parts` one after the other; the verdicts given, by part.
    fn feed_all(a: &mut Assembly, parts: &[&[u8]]) -> Vec<Option<Verdict>> {
        let p = policy();
        parts.iter().map(|part| a.feed(part, &p)).collect()
    }

    fn answered(v: &Option<Verdict>) -> Option<&str> {
        match v {
            Some(Verdict::Answer(head)) => Some(head.request.target.as_str()),
            _ => None,
        }
    }

    fn refused(v: &Option<Verdict>) -> Option<u16> {
        match v {
            Some(Verdict::Refuse(reply, _)) => Some(reply.http),
            _ => None,
        }
    }

    #[test]
    fn assembles_a_request_sent_a_byte_at_a_time() {
        let text = b"\r\nPOST /stop/web HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /next";
        let mut a = Assembly::new(Vec::new());
        let parts: Vec<&[u8]> = text.chunks(1).collect();
        let verdicts = feed_all(&mut a, &parts);
        let done = verdicts.iter().position(Option::is_some);
        // Complete with the body's last byte, not before.
        assert_eq!(done, Some(text.len() - "GET /next".len() - 1));
        assert_eq!(answered(&verdicts[done.unwrap_or(0)]), Some("/stop/web"));
        // Bytes past the request wait for the next one (fed after completion: kept as is).
        let mut rest = Assembly::new(b"GET /next HTTP/1.1\r\n".to_vec());
        let v = feed_all(&mut rest, &[b"\r\n"]);
        assert_eq!(answered(&v[0]), Some("/next"));
    }

    #[test]
    fn keeps_what_follows_a_request() {
        let mut a = Assembly::new(Vec::new());
        let v = feed_all(&mut a, &[b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"]);
        assert_eq!(answered(&v[0]), Some("/a"));
        let mut next = Assembly::new(a.into_pending());
        let v = feed_all(&mut next, &[b""]);
        assert_eq!(answered(&v[0]), Some("/b"));
    }

    #[test]
    fn refuses_what_it_cannot_take() {
        let mut big = Assembly::new(Vec::new());
        let line = format!("GET /x HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            refused(&feed_all(&mut big, &[line.as_bytes()])[0]),
            Some(431)
        );
        let mut blank = Assembly::new(Vec::new());
        let lines = "\r\n".repeat(MAX_HEAD);
        assert_eq!(
            refused(&feed_all(&mut blank, &[lines.as_bytes(), b"G"])[1]),
            Some(431)
        );
        let mut body = Assembly::new(Vec::new());
        let head = format!(
            "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            refused(&feed_all(&mut body, &[head.as_bytes()])[0]),
            Some(413)
        );
        let mut signed = Assembly::new(Vec::new());
        let v = feed_all(
            &mut signed,
            &[b"POST /x HTTP/1.1\r\nContent-Length: +5\r\n\r\n"],
        );
        assert_eq!(refused(&v[0]), Some(400));
        let mut cross = Assembly::new(Vec::new());
        let v = feed_all(
            &mut cross,
            &[b"GET /stop/all HTTP/1.1\r\nSec-Fetch-Site: cross-site\r\n\r\n"],
        );
        assert_eq!(refused(&v[0]), Some(403));
    }
}
