//! One HTTP/1.1 request and its answer over a plain TCP connection: all that supergo's
//! control API needs.
//!
//! Why not an HTTP crate: `minreq` read every answer a byte at a time through an iterator and
//! started a thread per request to enforce its timeout; for the 300 kB `status` of 1000
//! programs that alone cost more than the 3 ms a whole `supergoctl status` may take. Here the
//! body arrives in socket-sized `read`s straight into one buffer.
//!
//! The protocol, and where this stops short of a general client:
//! - the request carries `Connection: close` (one request per connection, as before), and a
//!   POST carries `Content-Length: 0` (no control request has a body);
//! - the answer's body is framed by `Transfer-Encoding: chunked` (Go's net/http, the
//!   original supergo, uses it for large answers), else by `Content-Length`, else it runs
//!   until the server closes; 1xx answers are not expected and not skipped;
//! - one deadline covers the whole exchange: connecting, sending and every read get what is
//!   left of it. Resolving a host name is the exception (the system resolver has no
//!   deadline), which does not matter for the IP literals and `localhost` supergo listens on;
//! - a head over [`MAX_HEAD`] bytes or a body over [`MAX_BODY`] is refused rather than read.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Longest answer head (status line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest answer body accepted: far above any status or log tail supergo sends.
const MAX_BODY: usize = 256 * 1024 * 1024;
/// Room for a 1000-program status answer in few reads.
const READ_BUFFER: usize = 64 * 1024;

/// What to send.
pub struct Request<'a> {
    pub method: &'a str,
    /// `host:port` to connect to.
    pub connect: &'a str,
    /// The `Host` header.
    pub host: &'a str,
    /// Path and query.
    pub target: &'a str,
    /// Extra headers, each `Name: value` without the line end.
    pub headers: &'a [String],
    pub timeout: Duration,
}

/// What came back.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub body: Vec<u8>,
}

/// Why no answer could be read.
#[derive(Debug)]
pub enum HttpError {
    /// Connecting, sending or receiving failed (refused, timed out, closed early).
    Io(io::Error),
    /// The host name resolves to nothing.
    NoAddress,
    /// Something answered, but not in HTTP/1.x.
    Malformed(String),
}

impl From<io::Error> for HttpError {
    fn from(err: io::Error) -> Self {
        HttpError::Io(err)
    }
}

/// Sends `request` on a new connection and reads the whole answer.
pub fn exchange(request: &Request) -> Result<Response, HttpError> {
    let deadline = Instant::now() + request.timeout;
    let mut stream = connect(request.connect, deadline)?;
    stream.set_write_timeout(Some(left(deadline)?))?;
    stream.write_all(head_of(request).as_bytes())?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, Deadlined { stream, deadline });
    let (status, reason, framing) = read_head(&mut reader)?;
    let body = match framing {
        _ if status == 204 || status == 304 => Vec::new(),
        Framing::Chunked => read_chunked(&mut reader)?,
        Framing::Length(length) => {
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            body
        }
        Framing::UntilClose => {
            let mut body = Vec::with_capacity(READ_BUFFER);
            let limit = u64::try_from(MAX_BODY + 1).unwrap_or(u64::MAX);
            reader.take(limit).read_to_end(&mut body)?;
            if body.len() > MAX_BODY {
                return Err(too_large());
            }
            body
        }
    };
    Ok(Response {
        status,
        reason,
        body,
    })
}

/// Tries each address the name resolves to, as a browser would, within the deadline.
fn connect(addr: &str, deadline: Instant) -> Result<TcpStream, HttpError> {
    let addrs = addr.to_socket_addrs().map_err(|_| HttpError::NoAddress)?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left(deadline)?) {
            Ok(stream) => return Ok(stream),
            Err(err) => last = Some(err),
        }
    }
    Err(last.map_or(HttpError::NoAddress, HttpError::Io))
}

/// Time left before `deadline`, or the error that it has passed.
fn left(deadline: Instant) -> io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
}

fn head_of(request: &Request) -> String {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        request.method, request.target, request.host
    );
    if request.method == "POST" {
        head.push_str("Content-Length: 0\r\n");
    }
    for header in request.headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// A socket whose every read waits at most until the exchange's deadline.
struct Deadlined {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(left(self.deadline)?))?;
        self.stream.read(buf)
    }
}

/// How the end of the body is known.
#[derive(Debug)]
enum Framing {
    Chunked,
    Length(usize),
    UntilClose,
}

/// The status line and the headers that frame the body.
fn read_head(reader: &mut impl BufRead) -> Result<(u16, String, Framing), HttpError> {
    let mut budget = MAX_HEAD;
    let status_line = match read_line(reader, &mut budget)? {
        Some(line) => line,
        // Accepted, then closed without a byte: the server went away (or refused us).
        None => {
            return Err(HttpError::Io(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed before answering",
            )))
        }
    };
    let (status, reason) = parse_status_line(&status_line)?;
    let mut chunked = false;
    let mut length = None;
    loop {
        let line = read_line(reader, &mut budget)?.ok_or_else(cut_short)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::Malformed(format!("bad header line '{line}'")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| HttpError::Malformed(format!("bad Content-Length '{value}'")))?;
            if n > MAX_BODY {
                return Err(too_large());
            }
            length = Some(n);
        }
    }
    // RFC 9112 §6.3: chunked framing wins over a Content-Length.
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    };
    Ok((status, reason, framing))
}

/// `HTTP/1.1 404 Not Found` -> (404, "Not Found").
fn parse_status_line(line: &str) -> Result<(u16, String), HttpError> {
    let bad = || HttpError::Malformed(format!("not an HTTP status line: '{line}'"));
    let rest = line.strip_prefix("HTTP/1.").ok_or_else(bad)?;
    let mut parts = rest.splitn(3, ' ');
    let _minor = parts.next();
    let status = parts
        .next()
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..1000).contains(code))
        .ok_or_else(bad)?;
    Ok((status, parts.next().unwrap_or("").to_string()))
}

/// One line without its `\r\n`; `None` at a clean end of stream. Counts against `budget`.
fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> Result<Option<String>, HttpError> {
    let mut line = Vec::new();
    let limit = u64::try_from(*budget).unwrap_or(u64::MAX);
    let n = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if n >= *budget {
            HttpError::Malformed(format!("answer head longer than {MAX_HEAD} bytes"))
        } else {
            cut_short()
        });
    }
    *budget -= n;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| HttpError::Malformed("answer head is not text".into()))
}

/// A chunked body: `SIZE[;ext]\r\n DATA\r\n` … `0\r\n`, then trailers up to an empty line.
fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let size_line = chunk_line(reader)?;
        let size = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| HttpError::Malformed(format!("bad chunk size '{size_line}'")))?;
        if size == 0 {
            break;
        }
        if body.len() + size > MAX_BODY {
            return Err(too_large());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !chunk_line(reader)?.is_empty() {
            return Err(HttpError::Malformed("chunk not followed by CRLF".into()));
        }
    }
    // Trailers, ignored.
    while !chunk_line(reader)?.is_empty() {}
    Ok(body)
}

/// One line of chunked framing (a size, a data end, a trailer), at most MAX_HEAD bytes.
fn chunk_line(reader: &mut impl BufRead) -> Result<String, HttpError> {
    read_line(reader, &mut MAX_HEAD.clone())?.ok_or_else(cut_short)
}

fn cut_short() -> HttpError {
    HttpError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the answer ended early",
    ))
}

fn too_large() -> HttpError {
    HttpError::Malformed(format!("answer larger than {MAX_BODY} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<(u16, String, Framing), HttpError> {
        read_head(&mut text.as_bytes())
    }

    #[test]
    fn status_line_and_framing() {
        let (status, reason, framing) =
            head("HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\n").expect("valid");
        assert_eq!((status, reason.as_str()), (404, "Not Found"));
        assert!(matches!(framing, Framing::Length(12)));
        let (_, _, framing) =
            head("HTTP/1.0 200 OK\r\ntransfer-encoding: Chunked\r\nContent-Length: 3\r\n\r\n")
                .expect("valid");
        assert!(matches!(framing, Framing::Chunked));
        let (status, reason, framing) = head("HTTP/1.1 200\nX: y\n\n").expect("bare LF");
        assert_eq!((status, reason.as_str()), (200, ""));
        assert!(matches!(framing, Framing::UntilClose));
    }

    #[test]
    fn bad_heads_say_what_is_wrong() {
        let message = |text: &str| match head(text) {
            Err(HttpError::Malformed(m)) => m,
            other => panic!("{text:?} gave {other:?}"),
        };
        assert!(message("SSH-2.0-OpenSSH\r\n\r\n").contains("not an HTTP status line"));
        assert!(message("HTTP/1.1 20 OK\r\n\r\n").contains("not an HTTP status line"));
        assert!(message("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").contains("x"));
        assert!(message("HTTP/1.1 200 OK\r\nnocolon\r\n\r\n").contains("nocolon"));
        assert!(matches!(
            head(""),
            Err(HttpError::Io(e)) if e.kind() == io::ErrorKind::ConnectionAborted
        ));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\nContent-"),
            Err(HttpError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(message(&huge).contains("longer than"));
    }

    #[test]
    fn chunked_bodies_are_joined_and_trailers_skipped() {
        let mut input = "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n".as_bytes();
        assert_eq!(
            read_chunked(&mut input).expect("valid"),
            b"hello, world".to_vec()
        );
        let mut cut = "5\r\nhel".as_bytes();
        assert!(matches!(read_chunked(&mut cut), Err(HttpError::Io(_))));
        let mut bad = "zz\r\n".as_bytes();
        assert!(matches!(
            read_chunked(&mut bad),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn request_head() {
        let headers = ["Authorization: Bearer t".to_string()];
        let request = Request {
            method: "POST",
            connect: "127.0.0.1:1",
            host: "127.0.0.1:1",
            target: "/restart/web?wait=false",
            headers: &headers,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            head_of(&request),
            "POST /restart/web?wait=false HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\
             Connection: close\r\nContent-Length: 0\r\nAuthorization: Bearer t\r\n\r\n"
        );
    }
}
