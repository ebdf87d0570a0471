//! A small HTTP/1.1 server for the control API: bounded in every dimension.
//!
//! Why not `tiny_http`: in 0.12 a request line with `HTTP/2.0` deadlocks the connection's
//! thread forever (its 505 answer waits on the request's own writer), and it has no read
//! timeout, so idle or half-sent requests each hold a thread and fds until the client leaves.
//! Both let anyone who can reach the port, token or not, exhaust supergo's fds — and with
//! them its ability to start children. The control API needs little of HTTP (no bodies, no
//! chunking, small heads), so a server that does exactly that, with hard limits, is safer.
//!
//! Limits: at most `MAX_CONNECTIONS` connections at once (more are answered 503 and closed);
//! a request head of at most `MAX_HEAD` bytes, read within `READ_TIMEOUT` (idle keep-alive
//! connections close after it too); request bodies of at most `MAX_BODY` bytes, read and
//! discarded; writes time out after `WRITE_TIMEOUT`. Anything malformed gets a 4xx/5xx
//! answer and the connection is closed.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::reply::Reply;

pub const MAX_CONNECTIONS: usize = 256;
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: u64 = 64 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One parsed request: what the router needs.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// Answers a request. Called on the connection's thread; may block (a restart waits for its
/// handoff), which holds up that connection only.
pub type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// Accepts connections on `listener` forever, one thread per connection, at most
/// `MAX_CONNECTIONS` at once.
pub fn serve(listener: TcpListener, handler: Arc<Handler>) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("control accept".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else {
                    // EMFILE and friends: back off a little rather than spin on accept.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    refuse_busy(stream);
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let guard = ActiveGuard(active.clone());
                let handler = handler.clone();
                let spawned = std::thread::Builder::new()
                    .name("control conn".into())
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        let _guard = guard;
                        let _ = serve_connection(stream, &*handler);
                    });
                if let Err(e) = spawned {
                    crate::warn!("control API: cannot start a connection thread: {e}");
                }
            }
        })?;
    Ok(())
}

/// Decrements the connection count when a connection thread ends (or fails to start).
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn refuse_busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let reply = Reply::error(503, "too many connections to the control API; try again");
    let _ = write_response(&mut stream, &reply, false, false);
}

/// Serves requests on one connection until it closes, errs, idles out, or asks to close.
fn serve_connection(stream: TcpStream, handler: &Handler) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let head = match read_head(&mut reader)? {
            Head::Complete(head) => head,
            Head::Closed => return Ok(()),
            Head::TooLarge(head_only) => {
                let reply = Reply::error(431, format!("request head larger than {MAX_HEAD} bytes"));
                return write_response(&mut writer, &reply, false, head_only);
            }
        };
        let parsed = match parse_head(&head) {
            Ok(parsed) => parsed,
            // A HEAD answer has no body, even an error answer.
            Err(reply) => {
                return write_response(&mut writer, &reply, false, head.starts_with(b"HEAD "))
            }
        };
        if parsed.content_length > MAX_BODY {
            let reply = Reply::error(413, "request body too large (the control API takes none)");
            return write_response(&mut writer, &reply, false, parsed.request.method == "HEAD");
        }
        // The control API uses no body; read it so the next request starts at its start.
        discard_body(&mut reader, parsed.content_length)?;
        let reply = handler(&parsed.request);
        let head_only = parsed.request.method == "HEAD";
        write_response(&mut writer, &reply, parsed.keep_alive, head_only)?;
        if !parsed.keep_alive {
            return Ok(());
        }
    }
}

/// Reads and drops `len` bytes (at most `MAX_BODY`), all within `READ_TIMEOUT`.
fn discard_body(reader: &mut BufReader<TcpStream>, len: u64) -> io::Result<()> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut left = len;
    let mut buf = [0u8; 4096];
    while left > 0 {
        let time = deadline.saturating_duration_since(Instant::now());
        if time.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        reader.get_ref().set_read_timeout(Some(time))?;
        let want = buf.len().min(usize::try_from(left).unwrap_or(buf.len()));
        match reader.read(&mut buf[..want])? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => left -= n as u64,
        }
    }
    Ok(())
}

/// What reading a request head gave.
enum Head {
    Complete(Vec<u8>),
    /// The peer closed, or idled out, before sending anything.
    Closed,
    /// Longer than `MAX_HEAD`, or cut short by the peer; true for a HEAD request.
    TooLarge(bool),
}

/// Reads up to the blank line ending a request head.
///
/// The whole head must arrive within `READ_TIMEOUT` of the first read (a timeout per read
/// would let a client that sends a byte every few seconds hold the connection forever), and
/// blank lines before it count toward `MAX_HEAD`.
fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Head> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut consumed = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return if head.is_empty() {
                Ok(Head::Closed)
            } else {
                Err(io::ErrorKind::TimedOut.into())
            };
        }
        reader.get_ref().set_read_timeout(Some(left))?;
        let mut line = Vec::new();
        let n = (&mut *reader)
            .take((MAX_HEAD + 1 - consumed) as u64)
            .read_until(b'\n', &mut line);
        let n = match n {
            Ok(n) => n,
            Err(e) if head.is_empty() && is_timeout(&e) => return Ok(Head::Closed),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return if head.is_empty() {
                Ok(Head::Closed)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        consumed += n;
        // Blank lines before a request line are allowed (RFC 9112 2.2).
        if head.is_empty() && (line == b"\r\n" || line == b"\n") {
            if consumed > MAX_HEAD {
                return Ok(Head::TooLarge(false));
            }
            continue;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            return Ok(Head::Complete(head));
        }
        if consumed > MAX_HEAD || !line.ends_with(b"\n") {
            return Ok(Head::TooLarge(head.starts_with(b"HEAD ")));
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

struct Parsed {
    request: Request,
    keep_alive: bool,
    content_length: u64,
}

fn parse_head(head: &[u8]) -> Result<Parsed, Reply> {
    let text =
        std::str::from_utf8(head).map_err(|_| Reply::error(400, "request head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reply::error(
            400,
            "malformed request line: expected `METHOD /path HTTP/1.1`",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Reply::error(400, format!("malformed method {method:?}")));
    }
    if !target.starts_with('/') {
        return Err(Reply::error(
            400,
            "the request target must be a path starting with /",
        ));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        // A 4xx, not 505: the API keeps 5xx for supergo's own failures.
        v if v.starts_with("HTTP/") => {
            return Err(Reply::error(
                400,
                format!("{v} is not supported: the control API speaks HTTP/1.1"),
            ))
        }
        _ => return Err(Reply::error(400, "malformed HTTP version")),
    };
    let mut keep_alive = http11;
    let mut content_length = 0;
    let mut authorization = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| Reply::error(400, "malformed header line"))?;
        if name.is_empty() || name.contains(' ') || name.contains('\t') {
            return Err(Reply::error(400, "malformed header name"));
        }
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                content_length = value
                    .parse()
                    .map_err(|_| Reply::error(400, "malformed Content-Length"))?;
            }
            "transfer-encoding" => {
                return Err(Reply::error(
                    400,
                    "Transfer-Encoding is not supported (the control API takes no body)",
                ))
            }
            "connection" => {
                let value = value.to_ascii_lowercase();
                if value.contains("close") {
                    keep_alive = false;
                } else if value.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            "authorization" => authorization = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(Parsed {
        request: Request {
            method: method.to_string(),
            target: target.to_string(),
            authorization,
        },
        keep_alive,
        content_length,
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

fn write_response(
    out: &mut TcpStream,
    reply: &Reply,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
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
    out.write_all(response.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Parsed, u16> {
        parse_head(text.as_bytes()).map_err(|r| r.http)
    }

    #[test]
    fn parses_what_the_api_needs() {
        let p = parse(
            "POST /restart/web HTTP/1.1\r\nAuthorization: Bearer x\r\nContent-Length: 3\r\n\r\n",
        )
        .unwrap_or_else(|code| panic!("parse failed: {code}"));
        assert_eq!(
            (p.request.method.as_str(), p.request.target.as_str()),
            ("POST", "/restart/web")
        );
        assert_eq!(p.request.authorization.as_deref(), Some("Bearer x"));
        assert!(p.keep_alive);
        assert_eq!(p.content_length, 3);
        assert!(!parse("GET / HTTP/1.0\r\n\r\n")
            .map(|p| p.keep_alive)
            .unwrap_or(true));
    }

    #[test]
    fn refuses_malformed_heads() {
        assert_eq!(parse("GET /x HTTP/2.0\r\n\r\n").err(), Some(400));
        assert_eq!(parse("GET /x\r\n\r\n").err(), Some(400));
        assert_eq!(parse("get /x HTTP/1.1\r\n\r\n").err(), Some(400));
        assert_eq!(parse("GET x HTTP/1.1\r\n\r\n").err(), Some(400));
        assert_eq!(
            parse("GET /x HTTP/1.1\r\nbad header\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            parse("GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            parse("GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").err(),
            Some(400)
        );
    }
}
