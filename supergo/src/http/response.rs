//! Answers on the wire: a `Reply` as HTTP/1.1 bytes, and writing them to a non-blocking
//! socket within one deadline for the whole answer.

use std::io::{self, Write};
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

/// The whole answer: status line, headers, and the body unless `head_only` (HEAD).
pub fn render(reply: &Reply, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let (body, content_type) = match &reply.raw {
        Some(text) => (text.clone(), "text/plain; version=0.0.4"),
        None => (reply.body(), "application/json"),
    };
    let mut response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        reply.http,
        reason(reply.http),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    if reply.http == 401 {
        response.push_str("WWW-Authenticate: Bearer\r\n");
    }
    response.push_str("\r\n");
    if !head_only {
        response.push_str(&body);
    }
    response.into_bytes()
}

/// Writes all of `bytes` to the non-blocking `stream` by `deadline`. One deadline for the
/// whole answer, not one per write: a client that reads a byte now and then must not hold
/// a worker longer than that.
pub fn write_by(stream: &TcpStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let mut left = bytes;
    while !left.is_empty() {
        match (&*stream).write(left) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => left = &left[n..],
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
}
