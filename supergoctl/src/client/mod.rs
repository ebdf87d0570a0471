//! Talking to supergo's control API: one HTTP request per call, and turning transport
//! failures and answers that are not supergo's into [`CtlError`]s an operator can act on.
//!
//! Leniency, on purpose: a non-JSON body is reported with its HTTP status and a snippet,
//! never unwrapped. Submodules: `endpoint` (the `--url` address), `http` (one exchange on
//! the wire), `answer` (the JSON envelope).

mod answer;
mod endpoint;
mod http;

use std::io;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::CtlError;

pub use answer::Answer;
pub use endpoint::{Endpoint, DEFAULT_ADDR};

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
    pub fn call<T: DeserializeOwned + Default>(
        &self,
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> Result<Answer<T>, CtlError> {
        let (http, raw) = self.send(method, path, timeout)?;
        Answer::parse(http, raw).map_err(|raw| self.not_supergo(method, path, http, &raw))
    }

    /// Sends one request; returns the HTTP status and body. Handles what every request
    /// shares: the token, the timeout, transport errors and HTTP 401.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> Result<(i32, String), CtlError> {
        let mut headers = vec![
            "Accept: application/json".to_string(),
            concat!("User-Agent: supergoctl/", env!("CARGO_PKG_VERSION")).to_string(),
        ];
        if let Some(token) = &self.token {
            headers.push(format!("Authorization: Bearer {token}"));
        }
        let target = format!("{}{}", self.endpoint.prefix, path);
        let response = http::exchange(&http::Request {
            method: method.as_str(),
            connect: &self.endpoint.connect,
            host: &self.endpoint.authority,
            target: &target,
            headers: &headers,
            timeout,
        })
        .map_err(|err| self.transport_error(err, timeout.as_secs()))?;
        let http = i32::from(response.status);
        // supergo sends UTF-8; anything else is shown, not refused.
        let raw = String::from_utf8(response.body)
            .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned());
        if http == 401 {
            let message = match Answer::<Value>::parse(http, raw) {
                Ok(a) => a.reason(),
                Err(_) => format!("HTTP 401 {}", response.reason),
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

    fn transport_error(&self, err: http::HttpError, secs: u64) -> CtlError {
        let addr = self.endpoint.authority.clone();
        let reason = match err {
            http::HttpError::Io(io) => io_reason(&io, secs),
            http::HttpError::NoAddress => "the host name does not resolve".to_string(),
            http::HttpError::Malformed(what) => {
                return CtlError::BadAnswer(format!(
                    "supergo at {addr} sent a malformed HTTP answer: {what}"
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
pub fn snippet(raw: &str) -> String {
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
/// Bytes, not `str`: a path (`upgrade --binary`) need not be UTF-8.
pub fn encode(text: impl AsRef<[u8]>) -> String {
    let bytes = text.as_ref();
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
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
