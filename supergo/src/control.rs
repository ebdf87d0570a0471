//! The HTTP control API: routes, the JSON envelope, the bearer token.
//!
//! `http` reads requests with one poll loop and answers them on a few workers (bounded);
//! each request becomes a message to the core with a reply channel. A malformed request
//! gets a 4xx answer, never a crash; a web page's request (cross-site, DNS rebinding) gets a
//! 403 before it reaches the routes or the token check.
//!
//! Routes (DESIGN.md, "Control API"): `GET /status`, `GET /reread`, `POST /update`,
//! `POST /start/NAME`, `POST /stop/NAME`, `POST /restart/NAME[?wait=false]`,
//! `GET /log/NAME?stream=stdout|stderr&bytes=N[&offset=N]`, `POST /upgrade[?binary=PATH]`
//! (or the path as the body). For the original supergo's clients, which send GET everywhere,
//! the action routes accept GET as well (but `/upgrade`: POST only).
//!
//! `POST /upgrade` goes to the core with a duplicate of its connection: once supergo execs,
//! the new image answers it on that connection.

use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::http;
use crate::reply::Reply;
use crate::supervisor::{self, CoreMessage, Request};

pub struct Control {
    pub listener: TcpListener,
    /// The control address as configured (`--listen` or `[supergo] listen`): a request may
    /// name its host in `Host` (`myhost` of `myhost:22106`), besides an IP or `localhost`.
    pub listen: String,
    pub core: Sender<CoreMessage>,
    pub token: Option<String>,
}

impl Control {
    /// Starts serving; runs until the process exits (or execs).
    pub fn start(self) -> std::io::Result<http::Server> {
        let Control {
            listener,
            listen,
            core,
            token,
        } = self;
        let local = http::LocalOnly::new(&listen, listener.local_addr()?);
        http::serve(
            listener,
            local,
            Arc::new(move |request: &http::Request, stream: &TcpStream| {
                answer(&core, token.as_deref(), request, stream)
            }),
        )
    }
}

fn answer(
    core: &Sender<CoreMessage>,
    token: Option<&str>,
    request: &http::Request,
    stream: &TcpStream,
) -> Reply {
    if let Some(token) = token {
        let given = request.authorization.as_deref().unwrap_or("");
        // The scheme is case-insensitive (RFC 9110 11.1); the token itself is not.
        let given = match given.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => "",
        };
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return Reply::error(
                401,
                "missing or wrong token: send `Authorization: Bearer <token>` (supergoctl --token or SUPERGO_TOKEN)",
            );
        }
    }
    match route(&request.method, &request.target) {
        Ok(Request::Upgrade { binary }) => {
            let binary = binary.or_else(|| binary_in_body(&request.body));
            supervisor::ask_upgrade(core, binary, stream.try_clone().ok())
        }
        Ok(req) => supervisor::ask(core, req),
        Err(reply) => reply,
    }
}

/// `POST /upgrade`'s body, when it names the binary: the path, alone (blanks around it are
/// not part of it).
fn binary_in_body(body: &[u8]) -> Option<PathBuf> {
    let text = body.trim_ascii();
    (!text.is_empty()).then(|| PathBuf::from(std::ffi::OsString::from_vec(text.to_vec())))
}

/// `%XX` escapes decoded (`+` stays `+`: a path is not a form field). `None` for a bad
/// escape.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Maps method + URL to a core request, or the 4xx answer.
pub fn route(method: &str, url: &str) -> Result<Request, Reply> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let is_get = method == "GET" || method == "HEAD";
    let is_action = method == "POST" || method == "GET";
    let wrong_method = |allowed: &str| {
        Reply::error(
            405,
            format!("{method} is not allowed on {path}: use {allowed}"),
        )
    };
    match segments.as_slice() {
        ["status"] if is_get => Ok(Request::Status),
        ["status"] => Err(wrong_method("GET")),
        ["metrics"] if is_get => Ok(Request::Metrics),
        ["metrics"] => Err(wrong_method("GET")),
        ["reread"] if is_get => Ok(Request::Reread),
        ["reread"] => Err(wrong_method("GET")),
        ["update"] if is_action => Ok(Request::Update),
        ["update"] => Err(wrong_method("POST")),
        [verb @ ("start" | "stop" | "restart"), name] => {
            if !is_action {
                return Err(wrong_method("POST"));
            }
            let name = checked_name(name)?;
            Ok(match *verb {
                "start" => Request::Start(name),
                "stop" => Request::Stop(name),
                _ => Request::Restart { name, wait: query_value(query, "wait") != Some("false") },
            })
        }
        ["upgrade"] if method == "POST" => {
            let binary = match query_value(query, "binary").filter(|b| !b.is_empty()) {
                None => None,
                Some(b) => {
                    let bytes = percent_decode(b).ok_or_else(|| {
                        Reply::error(400, format!("binary={b}: a bad %-escape"))
                    })?;
                    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
                }
            };
            Ok(Request::Upgrade { binary })
        }
        ["upgrade"] => Err(wrong_method("POST")),
        ["start" | "stop" | "restart"] => Err(Reply::error(400, format!("{path} needs a program name: {path}/NAME (or {path}/all)"))),
        ["log", name] => {
            if !is_get {
                return Err(wrong_method("GET"));
            }
            let name = checked_name(name)?;
            let stream = query_value(query, "stream").unwrap_or("stdout").to_string();
            let bytes = match query_value(query, "bytes") {
                Some(b) => b.parse().map_err(|_| Reply::error(400, format!("bytes={b} is not a number")))?,
                None => 16 * 1024,
            };
            let offset = match query_value(query, "offset") {
                Some(o) => Some(o.parse().map_err(|_| Reply::error(400, format!("offset={o} is not a number")))?),
                None => None,
            };
            Ok(Request::Log { name, stream, bytes, offset })
        }
        _ => Err(Reply::error(404, format!("no route {path}: see GET /status, /reread, /log/NAME; POST /update, /start|stop|restart/NAME, /upgrade"))),
    }
}

fn checked_name(name: &str) -> Result<String, Reply> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        Ok(name.to_string())
    } else {
        Err(Reply::error(
            400,
            "a program name holds only letters, digits, `_`, `.` and `-`",
        ))
    }
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

/// Compares without an early exit, so the time taken says nothing about how much of the
/// token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_refuses() {
        assert!(matches!(route("GET", "/status"), Ok(Request::Status)));
        assert!(matches!(
            route("POST", "/restart/web?wait=false"),
            Ok(Request::Restart { wait: false, .. })
        ));
        assert!(matches!(
            route("POST", "/restart/web"),
            Ok(Request::Restart { wait: true, .. })
        ));
        assert_eq!(route("DELETE", "/status").unwrap_err().http, 405);
        assert_eq!(route("PUT", "/stop/web").unwrap_err().http, 405);
        assert_eq!(route("GET", "/nope").unwrap_err().http, 404);
        assert_eq!(route("POST", "/start/../etc").unwrap_err().http, 404);
        assert_eq!(route("POST", "/start/a%20b").unwrap_err().http, 400);
        assert_eq!(route("GET", "/log/web?bytes=x").unwrap_err().http, 400);
        assert!(matches!(
            route("POST", "/upgrade?binary=%2Fusr%2Flocal%2Fbin%2Fsupergo%20new"),
            Ok(Request::Upgrade { binary: Some(b) }) if b == std::path::Path::new("/usr/local/bin/supergo new")
        ));
        assert!(matches!(
            route("POST", "/upgrade"),
            Ok(Request::Upgrade { binary: None })
        ));
        assert_eq!(route("GET", "/upgrade").unwrap_err().http, 405);
        assert_eq!(route("POST", "/upgrade?binary=%zz").unwrap_err().http, 400);
        assert_eq!(
            binary_in_body(b"/opt/supergo\n"),
            Some(PathBuf::from("/opt/supergo"))
        );
        assert_eq!(binary_in_body(b"  "), None);
    }

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"secretx", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
