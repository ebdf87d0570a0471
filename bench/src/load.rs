//! The load generator: plain std threads and `TcpStream`s against one address, 127.0.0.1 only.
//!
//! Three kinds of client, each on its own threads:
//! - **close**: a new connection per request (`Connection: close`), paced;
//! - **keep-alive**: one connection reused for request after request, paced;
//! - **slow**: a new connection per `GET /sleep?ms=N`, back to back, so that a few slow
//!   requests are always in flight when a restart happens.
//!
//! Every request is recorded as a [`Sample`]: when it started and ended (microseconds since
//! the load began), what kind it was, and either the pid that answered (`GET /` answers
//! `pid: N`) or why it failed.
//!
//! Keep-alive honesty: a server that drains closes its idle keep-alive connections, and a
//! request written at that very moment meets a closed connection. Every HTTP client library
//! retries an idempotent request once on a *fresh* connection when a *reused* connection fails
//! before any byte of the answer came back (RFC 9110 §9.2.2); this client does the same and
//! counts it in `reconnected`. Any other failure, and a failure of the retry, is a failed
//! request.
//!
//! Bounded: every thread stops when told to, or at `max_duration`, whichever comes first; every
//! socket operation has a timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What to generate.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub close_clients: usize,
    pub keepalive_clients: usize,
    pub slow_clients: usize,
    /// `/sleep?ms=` of the slow clients.
    pub slow_ms: u64,
    /// Requests per second of all close + keep-alive clients together.
    pub rate: f64,
    /// Connect, write and read timeout of a fast request (a slow one gets `slow_ms` more).
    pub timeout: Duration,
    /// Hard stop, whatever happens.
    pub max_duration: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    Close,
    KeepAlive,
    Slow,
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Failure {
    /// `connect` refused: nothing was listening.
    Refused,
    /// Connection reset while writing or reading.
    Reset,
    /// The connection closed before a whole answer came.
    Eof,
    /// No answer within the timeout (connect or read).
    Timeout,
    /// An answer other than 200, or one that could not be parsed.
    BadAnswer,
    /// Anything else (the error kind is in the name).
    Other,
}

impl Failure {
    fn from_io(e: &std::io::Error) -> Failure {
        match e.kind() {
            ErrorKind::ConnectionRefused => Failure::Refused,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                Failure::Reset
            }
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Failure::Timeout,
            ErrorKind::UnexpectedEof => Failure::Eof,
            _ => Failure::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Reset => "reset",
            Failure::Eof => "eof",
            Failure::Timeout => "timeout",
            Failure::BadAnswer => "bad-answer",
            Failure::Other => "other",
        }
    }
}

/// One request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub start_us: u64,
    pub end_us: u64,
    pub kind: Kind,
    /// The answering pid (0 when the answer carries none, as `/sleep`'s), or the failure.
    pub outcome: Result<u32, Failure>,
    /// A reused keep-alive connection was found closed and the request was sent again on a
    /// fresh one (see the module docs).
    pub reconnected: bool,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.outcome.is_ok()
    }

    pub fn latency_ms(&self) -> f64 {
        self.end_us.saturating_sub(self.start_us) as f64 / 1000.0
    }
}

/// Load running in the background.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Sample>>>,
    t0: Instant,
}

impl Load {
    /// Starts every client thread.
    pub fn start(config: &LoadConfig) -> Result<Load, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let fast = (config.close_clients + config.keepalive_clients).max(1);
        let interval = Duration::from_secs_f64(fast as f64 / config.rate.max(1.0));
        let kinds = std::iter::repeat_n(Kind::Close, config.close_clients)
            .chain(std::iter::repeat_n(
                Kind::KeepAlive,
                config.keepalive_clients,
            ))
            .chain(std::iter::repeat_n(Kind::Slow, config.slow_clients));
        let mut threads = Vec::new();
        for (i, kind) in kinds.enumerate() {
            // Fast clients start spread over one interval: paced in phase, they would all fire
            // at once and leave an idle stretch between bursts that looks like a hole in
            // service. Spread, the load has no gap longer than about 1 / rate.
            let phase = if kind == Kind::Slow {
                Duration::ZERO
            } else {
                interval.mul_f64(i as f64 / fast as f64)
            };
            let client = Client {
                config: config.clone(),
                kind,
                interval,
                phase,
                stop: stop.clone(),
                t0,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("load {i}"))
                .stack_size(256 * 1024)
                .spawn(move || client.run());
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    stop.store(true, Ordering::SeqCst);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(format!("cannot start load thread {i}: {e}"));
                }
            }
        }
        Ok(Load { stop, threads, t0 })
    }

    /// Microseconds since the load started: the clock of every [`Sample`].
    pub fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// Stops every client, waits for the requests in flight, and returns all samples sorted by
    /// completion time.
    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for t in self.threads {
            // A client thread that panicked lost its samples; the others still count.
            if let Ok(samples) = t.join() {
                all.extend(samples);
            }
        }
        all.sort_by_key(|s| s.end_us);
        all
    }
}

struct Client {
    config: LoadConfig,
    kind: Kind,
    interval: Duration,
    /// When its first request goes, after the start.
    phase: Duration,
    stop: Arc<AtomicBool>,
    t0: Instant,
}

impl Client {
    fn run(self) -> Vec<Sample> {
        let mut samples = Vec::new();
        let mut conn: Option<Conn> = None;
        let mut next = Instant::now() + self.phase;
        while !self.stop.load(Ordering::Relaxed) && self.t0.elapsed() < self.config.max_duration {
            if self.kind != Kind::Slow {
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                // Behind schedule (a slow answer): carry on from now, never burst to catch up.
                let now = Instant::now();
                next = next.max(now.checked_sub(self.interval).unwrap_or(now)) + self.interval;
            }
            let start = self.t0.elapsed().as_micros() as u64;
            let (outcome, reconnected) = match self.kind {
                Kind::Close => (self.one_shot("/"), false),
                Kind::Slow => {
                    let path = format!("/sleep?ms={}", self.config.slow_ms);
                    (self.one_shot(&path), false)
                }
                Kind::KeepAlive => self.keep_alive(&mut conn),
            };
            let end = self.t0.elapsed().as_micros() as u64;
            if outcome.is_err() && self.kind == Kind::Slow {
                // A refused connection fails in microseconds: a slow client retries at the
                // fast clients' pace, not in a busy loop (the fast ones are paced anyway).
                std::thread::sleep(self.interval);
            }
            samples.push(Sample {
                start_us: start,
                end_us: end,
                kind: self.kind,
                outcome,
                reconnected,
            });
        }
        samples
    }

    fn timeout(&self) -> Duration {
        match self.kind {
            Kind::Slow => self.config.timeout + Duration::from_millis(self.config.slow_ms),
            _ => self.config.timeout,
        }
    }

    fn connect(&self) -> Result<Conn, Failure> {
        let stream = TcpStream::connect_timeout(&self.config.addr, self.config.timeout)
            .map_err(|e| Failure::from_io(&e))?;
        let timeout = Some(self.timeout());
        stream
            .set_read_timeout(timeout)
            .and_then(|_| stream.set_write_timeout(timeout))
            .and_then(|_| stream.set_nodelay(true))
            .map_err(|e| Failure::from_io(&e))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(512),
            used: 0,
        })
    }

    fn one_shot(&self, path: &str) -> Result<u32, Failure> {
        let mut conn = self.connect()?;
        conn.request(path, false).map(|a| a.pid)
    }

    fn keep_alive(&self, slot: &mut Option<Conn>) -> (Result<u32, Failure>, bool) {
        let mut reconnected = false;
        for attempt in 0..2 {
            let mut conn = match slot.take() {
                Some(c) => c,
                None => match self.connect() {
                    Ok(c) => c,
                    Err(f) => return (Err(f), reconnected),
                },
            };
            let reused = conn.used > 0;
            match conn.request("/", true) {
                Ok(answer) => {
                    if answer.keep_alive {
                        *slot = Some(conn);
                    }
                    return (Ok(answer.pid), reconnected);
                }
                Err(f) => {
                    let stale =
                        reused && conn.buf.is_empty() && matches!(f, Failure::Eof | Failure::Reset);
                    if stale && attempt == 0 {
                        reconnected = true;
                        continue;
                    }
                    return (Err(f), reconnected);
                }
            }
        }
        (Err(Failure::Other), reconnected)
    }
}

struct Conn {
    stream: TcpStream,
    /// Bytes of the answer being read (empty while none has come).
    buf: Vec<u8>,
    /// Requests answered on this connection so far.
    used: u32,
}

struct Answer {
    pid: u32,
    keep_alive: bool,
}

impl Conn {
    fn request(&mut self, path: &str, keep_alive: bool) -> Result<Answer, Failure> {
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let head =
            format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: {connection}\r\n\r\n");
        self.stream
            .write_all(head.as_bytes())
            .map_err(|e| Failure::from_io(&e))?;
        self.buf.clear();
        let mut chunk = [0u8; 1024];
        loop {
            match parse_response(&self.buf) {
                Parsed::Complete(r) => {
                    self.buf.clear();
                    self.used += 1;
                    if r.status != 200 {
                        return Err(Failure::BadAnswer);
                    }
                    return Ok(Answer {
                        pid: r.pid.unwrap_or(0),
                        keep_alive: keep_alive && !r.close,
                    });
                }
                Parsed::Invalid => return Err(Failure::BadAnswer),
                Parsed::Incomplete => {}
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Failure::Eof),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::from_io(&e)),
            }
        }
    }
}

/// A parsed HTTP/1.1 answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// `pid: N` in the body.
    pub pid: Option<u32>,
    /// `Connection: close` was sent.
    pub close: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Incomplete,
    Complete(Response),
    Invalid,
}

/// Parses one answer with a `Content-Length` (the example children always send one).
pub fn parse_response(buf: &[u8]) -> Parsed {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > 16 * 1024 {
            Parsed::Invalid
        } else {
            Parsed::Incomplete
        };
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return Parsed::Invalid;
    };
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.get(2..5))
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else {
        return Parsed::Invalid;
    };
    let mut length = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) => length = Some(n),
                Err(_) => return Parsed::Invalid,
            }
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let Some(length) = length else {
        return Parsed::Invalid;
    };
    let body_start = head_end + 4;
    if buf.len() < body_start + length {
        return Parsed::Incomplete;
    }
    let body = String::from_utf8_lossy(&buf[body_start..body_start + length]);
    let pid = body
        .trim()
        .strip_prefix("pid: ")
        .and_then(|p| p.trim().parse().ok());
    Parsed::Complete(Response { status, pid, close })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_pid_answer() {
        let r =
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\npid: 1234\n";
        assert_eq!(
            parse_response(r),
            Parsed::Complete(Response {
                status: 200,
                pid: Some(1234),
                close: false
            })
        );
    }

    #[test]
    fn waits_for_the_whole_body() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npid: 12";
        assert_eq!(parse_response(r), Parsed::Incomplete);
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nCont"),
            Parsed::Incomplete
        );
        assert_eq!(parse_response(b""), Parsed::Incomplete);
    }

    #[test]
    fn sees_connection_close_and_other_bodies() {
        let r = b"HTTP/1.1 503 Busy\r\ncontent-length: 2\r\nCONNECTION: Close\r\n\r\nno";
        assert_eq!(
            parse_response(r),
            Parsed::Complete(Response {
                status: 503,
                pid: None,
                close: true
            })
        );
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(parse_response(b"SSH-2.0\r\n\r\n"), Parsed::Invalid);
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Parsed::Invalid
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\nbody"),
            Parsed::Invalid
        );
    }
}
