//! Answers on the wire: a `Reply` as HTTP/1.1 bytes, and writing them to a non-blocking
//! socket within one deadline for the whole answer.

use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::reply::Reply;

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// The status line and headers of the answer, for a body of `body_len` bytes.
fn head(reply: &Reply, content_type: &str, body_len: usize, keep_alive: bool) -> String {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {body_len}\r\nConnection: {}\r\n",
        reply.http,
        reason(reply.http),
        if keep_alive { "keep-alive" } else { "close" }
    );
    if reply.http == 401 {
        head.push_str("WWW-Authenticate: Bearer\r\n");
    }
    head.push_str("\r\n");
    head
}

/// The whole answer: status line, headers, and the body unless `head_only` (HEAD).
pub fn render(reply: &Reply, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let mut scratch = Vec::new();
    let (content_type, body) = body_of(reply, &mut scratch);
    let mut response = head(reply, content_type, body.len(), keep_alive).into_bytes();
    if !head_only {
        response.extend_from_slice(body);
    }
    response
}

/// The body and its content type: the one the reply holds rendered already, or rendered
/// into `scratch`.
fn body_of<'a>(reply: &'a Reply, scratch: &'a mut Vec<u8>) -> (&'static str, &'a [u8]) {
    match (&reply.raw, &reply.json) {
        (Some(text), _) => ("text/plain; version=0.0.4", text.as_bytes()),
        (None, Some(json)) => ("application/json", json),
        (None, None) => {
            reply.write_body(scratch);
            ("application/json", scratch)
        }
    }
}

/// Writes the whole answer (as `render`) by `deadline`, without copying a body the reply
/// holds rendered already: the head and the body go out in one `writev`, so a big answer
/// is neither copied behind its head nor split into two small writes.
pub fn write_reply(
    stream: &TcpStream,
    reply: &Reply,
    keep_alive: bool,
    head_only: bool,
    deadline: Instant,
) -> io::Result<()> {
    let mut scratch = Vec::new();
    let (content_type, body) = body_of(reply, &mut scratch);
    let head = head(reply, content_type, body.len(), keep_alive);
    let body = if head_only { &[][..] } else { body };
    write_parts_by(stream, &[head.as_bytes(), body], deadline)
}

/// Writes all of `bytes` to the non-blocking `stream` by `deadline`. One deadline for the
/// whole answer, not one per write: a client that reads a byte now and then must not hold
/// a worker longer than that.
pub fn write_by(stream: &TcpStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    write_parts_by(stream, &[bytes], deadline)
}

/// `write_by` for several pieces written as one (vectored writes).
fn write_parts_by(stream: &TcpStream, parts: &[&[u8]], deadline: Instant) -> io::Result<()> {
    let mut slices: Vec<IoSlice> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut left = &mut slices[..];
    IoSlice::advance_slices(&mut left, 0);
    while !left.is_empty() {
        match (&*stream).write_vectored(left) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let wait = deadline.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                // Rounded up, so that a wait below a millisecond does not spin.
                let ms = wait.as_millis().saturating_add(1);
                let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_envelope() {
        let text = String::from_utf8(render(&Reply::error(401, "no"), false, false))
            .expect("an answer is UTF-8");
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.contains("WWW-Authenticate: Bearer\r\n"), "{text}");
        assert!(
            text.ends_with('}') && text.contains(r#""status":401"#),
            "{text}"
        );
        let head = String::from_utf8(render(&Reply::error(403, "no"), true, true))
            .expect("an answer is UTF-8");
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n") && head.ends_with("\r\n\r\n"));
        assert!(head.contains("Connection: keep-alive\r\n"), "{head}");
    }

    /// A rendered body goes out after its head, whole, as `render` would have put it.
    #[test]
    fn writes_a_rendered_body_after_its_head() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("non-blocking");
        let body = vec![b'x'; 300_000];
        let mut json = br#"{"status":0,"message":"","data":""#.to_vec();
        json.extend_from_slice(&body);
        json.extend_from_slice(br#""}"#);
        let reply = Reply::json(json.clone());
        let expected = render(&reply, false, false);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            (&client).read_to_end(&mut got).expect("read");
            got
        });
        write_reply(
            &server,
            &reply,
            false,
            false,
            Instant::now() + std::time::Duration::from_secs(10),
        )
        .expect("written");
        drop(server);
        let got = reader.join().expect("reader");
        assert_eq!(got, expected);
        assert!(got.ends_with(&json));
    }
}
