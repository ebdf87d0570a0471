//! Request heads: where one ends in the bytes read so far, and what the control API needs
//! from it (method, target, `Authorization`, keep-alive, the body's length, and the headers
//! that tell a web page's request from a local client's).
//!
//! Strict where leniency has bitten servers before: one `Content-Length` of digits only (a
//! duplicate or a sign is how request smuggling starts, RFC 9112 6.3), no
//! `Transfer-Encoding` (the API takes no body), at most one `Host`, `Origin` and
//! `Sec-Fetch-Site`. Anything else malformed is a 400 that says what was wrong.

use super::Request;
use crate::reply::Reply;

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub request: Request,
    pub keep_alive: bool,
    pub content_length: u64,
    pub provenance: Provenance,
}

impl Head {
    /// A HEAD request's answer has no body, even an error answer.
    pub fn head_only(&self) -> bool {
        self.request.method == "HEAD"
    }
}

/// The headers that say where a request comes from (see `origin`).
#[derive(Debug, Default, Clone)]
pub struct Provenance {
    pub host: Option<String>,
    pub origin: Option<String>,
    pub fetch_site: Option<String>,
}

/// How many bytes of blank lines `buf` starts with: RFC 9112 2.2 lets a server skip them
/// before a request line (some clients send a CRLF after a POST body).
pub fn leading_blank_lines(buf: &[u8]) -> usize {
    let mut at = 0;
    loop {
        if buf[at..].starts_with(b"\r\n") {
            at += 2;
        } else if buf[at..].starts_with(b"\n") {
            at += 1;
        } else {
            return at;
        }
    }
}

/// The length of the head at the start of `buf` (up to and with the blank line that ends
/// it), or `None` while it is incomplete. A bare LF ends a line too (RFC 9112 2.2).
pub fn head_len(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        let rest = &buf[i + 1..];
        if rest.starts_with(b"\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// Parses a complete head (as `head_len` delimits it), or the 400 answer saying what is wrong.
pub fn parse_head(head: &[u8]) -> Result<Head, Reply> {
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
    let mut content_length = None;
    let mut authorization = None;
    let mut provenance = Provenance::default();
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
                let length = content_length_of(value)?;
                if content_length.replace(length).is_some() {
                    return Err(duplicate("Content-Length"));
                }
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
            "host" => once(&mut provenance.host, value, "Host")?,
            "origin" => once(&mut provenance.origin, value, "Origin")?,
            "sec-fetch-site" => once(&mut provenance.fetch_site, value, "Sec-Fetch-Site")?,
            _ => {}
        }
    }
    Ok(Head {
        request: Request {
            method: method.to_string(),
            target: target.to_string(),
            authorization,
            body: Vec::new(),
        },
        keep_alive,
        content_length: content_length.unwrap_or(0),
        provenance,
    })
}

/// `Content-Length` is 1*DIGIT (RFC 9110 8.6): `u64::from_str` would also take `+5`, and a
/// sign one parser accepts and another refuses is a way to smuggle a request.
fn content_length_of(value: &str) -> Result<u64, Reply> {
    let malformed = || {
        Reply::error(
            400,
            format!("malformed Content-Length {value:?}: expected digits only"),
        )
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    value.parse().map_err(|_| malformed())
}

/// Stores a header that may appear only once; a second one is a 400 (for `Host`, RFC 9112
/// 3.2 says so; for the others, two answers to "where from?" cannot both be believed).
fn once(slot: &mut Option<String>, value: &str, name: &str) -> Result<(), Reply> {
    if slot.replace(value.to_string()).is_some() {
        return Err(duplicate(name));
    }
    Ok(())
}

fn duplicate(name: &str) -> Reply {
    Reply::error(400, format!("the request has more than one {name} header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Head, u16> {
        parse_head(text.as_bytes()).map_err(|r| r.http)
    }

    #[test]
    fn parses_what_the_api_needs() {
        let p = parse(
            "POST /restart/web HTTP/1.1\r\nAuthorization: Bearer x\r\nContent-Length: 3\r\n\
             Host: localhost:1\r\nOrigin: http://a\r\nSec-Fetch-Site: none\r\n\r\n",
        )
        .unwrap_or_else(|code| panic!("parse failed: {code}"));
        assert_eq!(
            (p.request.method.as_str(), p.request.target.as_str()),
            ("POST", "/restart/web")
        );
        assert_eq!(p.request.authorization.as_deref(), Some("Bearer x"));
        assert!(p.keep_alive);
        assert_eq!(p.content_length, 3);
        assert_eq!(p.provenance.host.as_deref(), Some("localhost:1"));
        assert_eq!(p.provenance.origin.as_deref(), Some("http://a"));
        assert_eq!(p.provenance.fetch_site.as_deref(), Some("none"));
        assert!(!parse("GET / HTTP/1.0\r\n\r\n")
            .map(|p| p.keep_alive)
            .unwrap_or(true));
    }

    #[test]
    fn refuses_malformed_heads() {
        for bad in [
            "GET /x HTTP/2.0\r\n\r\n",
            "GET /x\r\n\r\n",
            "get /x HTTP/1.1\r\n\r\n",
            "GET x HTTP/1.1\r\n\r\n",
            "GET /x HTTP/1.1\r\nbad header\r\n\r\n",
            "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET /x HTTP/1.1\r\nOrigin: a\r\norigin: a\r\n\r\n",
        ] {
            assert_eq!(parse(bad).err(), Some(400), "{bad:?}");
        }
    }

    #[test]
    fn content_length_is_one_unsigned_number() {
        for bad in [
            "-1",
            "+5",
            " ",
            "1, 2",
            "0x10",
            "5 5",
            "99999999999999999999999",
        ] {
            let head = format!("POST /x HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(parse(&head).err(), Some(400), "Content-Length: {bad}");
        }
        let twice = "POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse(twice).err(), Some(400));
        let ok = "POST /x HTTP/1.1\r\nContent-Length: 007\r\n\r\n";
        assert_eq!(parse(ok).map(|p| p.content_length).ok(), Some(7));
    }

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest"), Some(27));
        assert_eq!(head_len(b"GET / HTTP/1.1\n\nrest"), Some(16));
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), None);
        assert_eq!(head_len(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(leading_blank_lines(b"\r\n\n\r\nGET"), 5);
        assert_eq!(leading_blank_lines(b"\r"), 0);
    }
}
