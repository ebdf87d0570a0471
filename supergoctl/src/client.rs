//! Talking to supergo's control API: the address (`--url`), one HTTP request per call,
//! the `{"status","message","data"}` envelope, and turning transport failures into
//! [`CtlError`]s an operator can act on.
//!
//! Leniency, on purpose:
//! - The original supergo answered every request with HTTP 200, errors included
//!   (`{"status":1,"message":"program not found"}`), and may leave out `data`. An answer is
//!   a failure when *either* the HTTP status is not 2xx *or* the envelope's `status` is
//!   non-zero.
//! - A non-JSON body is reported with its HTTP status and a snippet, never unwrapped.
//!
//! The original client needed `http://` in `-url`; here `host:port`, `:port`,
//! `http://host:port` and `http://host:port/prefix` all work.

use std::io;
use std::time::Duration;

use serde_json::Value;

use crate::error::CtlError;

/// supergo's default control address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:22106";
const DEFAULT_PORT: &str = "22106";

/// Where supergo listens, normalised from `--url` / `SUPERGO_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http://host:port` plus an optional path prefix, no trailing slash.
    pub base: String,
    /// `host:port` (or `host` when a scheme was given without a port), for messages.
    pub authority: String,
}

impl Endpoint {
    /// Accepts `host:port`, `:port` (loopback), `host` (default port), `http://host[:port][/prefix]`.
    /// Errors are usage errors: the text says what is wrong with the address.
    pub fn parse(input: &str) -> Result<Endpoint, String> {
        let text = input.trim();
        if text.is_empty() {
            return Err("the supergo address is empty (expected host:port)".to_string());
        }
        let (has_scheme, rest) = match text.find("://") {
            Some(i) => {
                let scheme = &text[..i];
                if scheme.eq_ignore_ascii_case("http") {
                    (true, &text[i + 3..])
                } else if scheme.eq_ignore_ascii_case("https") {
                    return Err(format!(
                        "'{text}': https is not supported; supergo's control API is plain \
                         HTTP (use http://host:port)"
                    ));
                } else {
                    return Err(format!(
                        "'{text}': unknown scheme '{scheme}' (expected host:port or http://host:port)"
                    ));
                }
            }
            None => (false, text),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("'{text}' has no host (expected host:port)"));
        }
        if authority.contains('@') || path.contains(['?', '#']) {
            return Err(format!(
                "'{text}': user names, queries and fragments are not supported (expected host:port)"
            ));
        }
        let authority = if authority.starts_with(':') {
            format!("127.0.0.1{authority}")
        } else {
            authority.to_string()
        };
        let authority = match split_port(&authority)? {
            (_, Some(port)) => {
                match port.parse::<u16>() {
                    Ok(p) if p > 0 => {}
                    _ => return Err(format!("'{text}': bad port '{port}' (expected 1-65535)")),
                }
                authority
            }
            // With an explicit http:// the HTTP default (80) applies, as in any URL;
            // a bare host means "supergo on that host", so its default port.
            (_, None) if has_scheme => authority,
            (host, None) => format!("{host}:{DEFAULT_PORT}"),
        };
        Ok(Endpoint {
            base: format!("http://{authority}{path}"),
            authority,
        })
    }
}

/// Splits `host:port`, `[v6]:port`, `host`, `[v6]` into host and port.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err(format!("'{authority}': missing ']' after the IPv6 address"));
        };
        let after = &rest[close + 1..];
        return match after.strip_prefix(':') {
            Some(port) => Ok((&authority[..close + 2], Some(port))),
            None if after.is_empty() => Ok((authority, None)),
            None => Err(format!("'{authority}': unexpected text after ']'")),
        };
    }
    match authority.matches(':').count() {
        0 => Ok((authority, None)),
        1 => {
            let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
            if host.is_empty() {
                return Err(format!("'{authority}' has no host"));
            }
            Ok((host, Some(port)))
        }
        _ => Err(format!(
            "'{authority}': write an IPv6 address in brackets, e.g. [::1]:{DEFAULT_PORT}"
        )),
    }
}

/// HTTP method of a control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One answer of supergo, parsed from its envelope.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status code.
    pub http: i32,
    /// The envelope's `status` (0 = success); 0 when absent and the HTTP status is 2xx.
    pub status: i64,
    /// The envelope's `message` ("" when absent).
    pub message: String,
    /// The envelope's `data` (`Null` when absent).
    pub data: Value,
    /// The body exactly as received, for `--json`.
    pub raw: String,
}

impl Answer {
    /// Success means a 2xx HTTP status and a zero envelope status.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.http) && self.status == 0
    }

    /// The daemon's message, or a description of the HTTP status when it gave none.
    pub fn reason(&self) -> String {
        if !self.message.trim().is_empty() {
            self.message.trim().to_string()
        } else if self.ok() {
            "ok".to_string()
        } else {
            format!("failed (HTTP {}, status {})", self.http, self.status)
        }
    }

    /// Parses an envelope; `None` when the body is not a JSON object.
    pub fn parse(http: i32, raw: String) -> Option<Answer> {
        let value: Value = serde_json::from_str(&raw).ok()?;
        let obj = value.as_object()?;
        let status = match obj.get("status") {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .unwrap_or(1),
            Some(Value::Bool(b)) => i64::from(!*b),
            Some(Value::String(s)) => s.trim().parse().unwrap_or(1),
            // No status at all: trust the HTTP status.
            _ => i64::from(!(200..300).contains(&http)),
        };
        let message = match obj.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let data = obj.get("data").cloned().unwrap_or(Value::Null);
        Some(Answer {
            http,
            status,
            message,
            data,
            raw,
        })
    }
}

/// A configured connection to one supergo.
#[derive(Debug, Clone)]
pub struct Client {
    pub endpoint: Endpoint,
    pub token: Option<String>,
}

/// Read timeout for quick requests (status, reread, log).
pub const SHORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Read timeout for requests that answer only when processes have changed: a restart
/// waits for readiness (`ready_timeout`, 60 s by default) and a stop for the drain
/// (`stop_timeout`), so these may legitimately take a minute or more.
pub const LONG_TIMEOUT: Duration = Duration::from_secs(300);

impl Client {
    pub fn new(endpoint: Endpoint, token: Option<String>) -> Client {
        Client { endpoint, token }
    }

    /// Sends one request and parses the envelope. `Ok` holds failures the daemon
    /// reported (check [`Answer::ok`]); `Err` is for no answer, 401, or an answer that
    /// is not supergo's envelope.
    pub fn call(&self, method: Method, path: &str, timeout: Duration) -> Result<Answer, CtlError> {
        let (http, raw) = self.send(method, path, timeout)?;
        match Answer::parse(http, raw.clone()) {
            Some(answer) => Ok(answer),
            None => Err(self.not_supergo(method, path, http, &raw)),
        }
    }

    /// Sends one request; returns the HTTP status and body. Handles what every request
    /// shares: the token, the timeout, transport errors and HTTP 401.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> Result<(i32, String), CtlError> {
        let url = format!("{}{}", self.endpoint.base, path);
        let secs = timeout.as_secs().max(1);
        let mut request = match method {
            Method::Get => minreq::get(&url),
            Method::Post => minreq::post(&url),
        }
        .with_timeout(secs)
        .with_header("Accept", "application/json")
        .with_header(
            "User-Agent",
            concat!("supergoctl/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(token) = &self.token {
            request = request.with_header("Authorization", format!("Bearer {token}"));
        }
        let response = request
            .send()
            .map_err(|err| self.transport_error(err, secs))?;
        let http = response.status_code;
        let raw = String::from_utf8_lossy(response.as_bytes()).into_owned();
        if http == 401 {
            let message = match Answer::parse(http, raw) {
                Some(a) => a.reason(),
                None => format!("HTTP 401 {}", response.reason_phrase),
            };
            return Err(CtlError::Unauthorized {
                token_given: self.token.is_some(),
                message,
            });
        }
        Ok((http, raw))
    }

    /// The error for an answer that is not supergo's JSON envelope.
    pub fn not_supergo(&self, method: Method, path: &str, http: i32, raw: &str) -> CtlError {
        CtlError::BadAnswer(format!(
            "{} {} at {} answered HTTP {} with something that is not supergo's JSON: {} \
             (is this supergo's control address?)",
            method.as_str(),
            path,
            self.endpoint.authority,
            http,
            snippet(raw)
        ))
    }

    fn transport_error(&self, err: minreq::Error, secs: u64) -> CtlError {
        let addr = self.endpoint.authority.clone();
        let reason = match err {
            minreq::Error::IoError(io) => io_reason(&io, secs),
            minreq::Error::AddressNotFound => "the host name does not resolve".to_string(),
            minreq::Error::HttpsFeatureNotEnabled => {
                "https is not supported (use http://)".to_string()
            }
            other => {
                return CtlError::BadAnswer(format!(
                    "supergo at {addr} sent a malformed HTTP answer: {other}"
                ))
            }
        };
        CtlError::Unreachable { addr, reason }
    }
}

/// Plain words for the I/O errors of connecting and waiting.
fn io_reason(err: &io::Error, secs: u64) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused — is it running?".to_string(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("no answer within {secs} s")
        }
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            "the connection was closed before an answer came — did supergo exit?".to_string()
        }
        io::ErrorKind::UnexpectedEof => {
            "the connection was closed before a full answer came".to_string()
        }
        _ => err.to_string(),
    }
}

/// The start of a body, on one line, for error messages.
fn snippet(raw: &str) -> String {
    let one_line: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.is_empty() {
        return "an empty body".to_string();
    }
    let mut cut: String = one_line.chars().take(120).collect();
    if cut.len() < one_line.len() {
        cut.push('…');
    }
    format!("'{cut}'")
}

/// Percent-encodes one path segment or query value (program names may hold anything
/// TOML keys allow: spaces, dots, unicode).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(input: &str) -> String {
        match Endpoint::parse(input) {
            Ok(e) => e.base,
            Err(e) => format!("ERR {e}"),
        }
    }

    #[test]
    fn host_port_gets_http_scheme() {
        assert_eq!(base("127.0.0.1:22106"), "http://127.0.0.1:22106");
        assert_eq!(base("  localhost:9000 "), "http://localhost:9000");
    }

    #[test]
    fn http_url_is_kept_without_trailing_slash() {
        assert_eq!(base("http://127.0.0.1:22106"), "http://127.0.0.1:22106");
        assert_eq!(base("http://127.0.0.1:22106/"), "http://127.0.0.1:22106");
        assert_eq!(base("HTTP://host:1/ctl/"), "http://host:1/ctl");
    }

    #[test]
    fn bare_port_means_loopback() {
        assert_eq!(base(":4000"), "http://127.0.0.1:4000");
    }

    #[test]
    fn bare_host_gets_supergo_port_but_http_url_keeps_http_default() {
        assert_eq!(base("example.org"), "http://example.org:22106");
        assert_eq!(base("http://example.org"), "http://example.org");
    }

    #[test]
    fn ipv6_in_brackets() {
        assert_eq!(base("[::1]:5"), "http://[::1]:5");
        assert_eq!(base("[::1]"), "http://[::1]:22106");
        assert!(base("::1").starts_with("ERR"));
    }

    #[test]
    fn authority_is_host_and_port_for_messages() {
        let e = Endpoint::parse("http://127.0.0.1:22106/").expect("valid");
        assert_eq!(e.authority, "127.0.0.1:22106");
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        assert!(base("").contains("empty"));
        assert!(base("https://h:1").contains("https is not supported"));
        assert!(base("ftp://h:1").contains("unknown scheme 'ftp'"));
        assert!(base("h:0").contains("bad port '0'"));
        assert!(base("h:http").contains("bad port 'http'"));
        assert!(base("h:").contains("bad port ''"));
        assert!(base("http:///x").contains("no host"));
    }

    #[test]
    fn envelope_is_lenient() {
        let a = Answer::parse(200, r#"{"status":1,"message":"program not found"}"#.into())
            .expect("object");
        assert!(!a.ok());
        assert_eq!(a.data, Value::Null);
        assert_eq!(a.reason(), "program not found");

        let a = Answer::parse(200, r#"{"data":[]}"#.into()).expect("object");
        assert!(a.ok());
        let a = Answer::parse(404, r#"{"data":[]}"#.into()).expect("object");
        assert!(!a.ok());
        assert_eq!(a.reason(), "failed (HTTP 404, status 1)");
        assert!(Answer::parse(200, "not json".into()).is_none());
        assert!(Answer::parse(200, "[1]".into()).is_none());
    }

    #[test]
    fn encode_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(encode("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(encode("a b/c?"), "a%20b%2Fc%3F");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn snippet_is_one_short_line() {
        assert_eq!(snippet(""), "an empty body");
        assert_eq!(snippet("<h1>\nhi</h1>"), "'<h1> hi</h1>'");
        assert!(snippet(&"x".repeat(500)).ends_with("…'"));
    }
}
