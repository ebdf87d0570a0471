//! The connection budget: every connection the control API holds, whether the poll loop is
//! waiting for its request or a worker is answering it, counted in all and per client
//! address.
//!
//! When a new connection would go over `MAX_CONNECTIONS`, or over `MAX_PER_PEER` for its
//! address, the connection that has waited longest for its request (incomplete, or idle
//! between keep-alive requests) is dropped to make room: a flood of slow or silent
//! connections then only ever pushes out its own oldest members, and a client that sends a
//! whole request at once is always read and answered. Only when all `MAX_CONNECTIONS` are
//! being answered by workers is the newcomer refused (503).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::assemble::Assembly;
use super::{MAX_CONNECTIONS, MAX_PER_PEER};

/// How often at most the log says that connections were dropped to make room: a flood
/// must not flood supergo's log too.
const EVICTION_REPORT_EVERY: Duration = Duration::from_secs(60);

/// A connection the poll loop waits on for a request.
#[derive(Debug)]
pub struct Waiting {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// When it was accepted (the workers end it after `MAX_LIFETIME`).
    pub born: Instant,
    /// When the server began waiting for the current request.
    pub since: Instant,
    pub request: Assembly,
}

/// Every connection held: the waiting ones, and a count of those out with workers.
#[derive(Debug)]
pub struct Table {
    pub waiting: Vec<Waiting>,
    busy: usize,
    per_peer: HashMap<IpAddr, usize>,
    evicted: u64,
    last_report: Option<Instant>,
}

impl Table {
    pub fn new() -> Table {
        Table {
            waiting: Vec::new(),
            busy: 0,
            per_peer: HashMap::new(),
            evicted: 0,
            last_report: None,
        }
    }

    /// Makes room for a new connection from `peer`, dropping the longest-waiting connection
    /// in the way (of `peer` when it is at its own limit). `Err` with the reason when only
    /// connections being answered are in the way of the total budget.
    pub fn make_room(&mut self, peer: SocketAddr) -> Result<(), String> {
        let peer = key(peer);
        if self.per_peer.get(&peer).copied().unwrap_or(0) >= MAX_PER_PEER {
            // When every one of them is being answered, only the total budget limits it:
            // all local clients share 127.0.0.1, and a burst of one client's requests in
            // the workers must not turn the operator's request away.
            if let Some(oldest) = self.longest_waiting(|w| key(w.peer) == peer) {
                self.evict(oldest);
            }
        }
        if self.waiting.len() + self.busy >= MAX_CONNECTIONS {
            let oldest = self
                .longest_waiting(|_| true)
                .ok_or("too many connections to the control API; try again")?;
            self.evict(oldest);
        }
        Ok(())
    }

    /// Adds a connection just accepted (after `make_room`).
    pub fn add(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        *self.per_peer.entry(key(peer)).or_default() += 1;
        self.wait_on(stream, peer, now, now, Vec::new());
    }

    /// Waits for a further request on a connection a worker gave back (keep-alive), which
    /// starts with `pending`.
    pub fn give_back(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        born: Instant,
        pending: Vec<u8>,
    ) {
        self.busy = self.busy.saturating_sub(1);
        self.wait_on(stream, peer, born, Instant::now(), pending);
    }

    fn wait_on(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        born: Instant,
        since: Instant,
        pending: Vec<u8>,
    ) {
        self.waiting.push(Waiting {
            stream,
            peer,
            born,
            since,
            request: Assembly::new(pending),
        });
    }

    /// Connections out with workers (being answered).
    pub fn busy(&self) -> usize {
        self.busy
    }

    /// Takes waiting connection `i` out to hand it to a worker; it still counts.
    pub fn hand_to_worker(&mut self, i: usize) -> Waiting {
        self.busy += 1;
        self.waiting.swap_remove(i)
    }

    /// Closes waiting connection `i`.
    pub fn close(&mut self, i: usize) {
        let w = self.waiting.swap_remove(i);
        self.forget(w.peer);
    }

    /// A worker closed a connection from `peer`.
    pub fn closed_by_worker(&mut self, peer: SocketAddr) {
        self.busy = self.busy.saturating_sub(1);
        self.forget(peer);
    }

    fn forget(&mut self, peer: SocketAddr) {
        let peer = key(peer);
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    fn longest_waiting(&self, of: impl Fn(&Waiting) -> bool) -> Option<usize> {
        (self.waiting.iter().enumerate())
            .filter(|(_, w)| of(w))
            .min_by_key(|(_, w)| w.since)
            .map(|(i, _)| i)
    }

    fn evict(&mut self, i: usize) {
        self.close(i);
        self.evicted += 1;
        let now = Instant::now();
        if self
            .last_report
            .is_none_or(|at| now >= at + EVICTION_REPORT_EVERY)
        {
            crate::warn!(
                "control API: dropped {} connection(s) that were idle or still sending their \
                 request, to make room for new ones (at most {MAX_CONNECTIONS} connections, \
                 {MAX_PER_PEER} per client address); is something flooding it?",
                self.evicted
            );
            self.evicted = 0;
            self.last_report = Some(now);
        }
    }
}

/// The address a per-peer count is kept under: an IPv4 client of a dual-stack listener
/// (`::ffff:127.0.0.1`) is the same client as `127.0.0.1`.
fn key(peer: SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// The accepted end of a connection from 127.0.0.1, and its peer address (the client's
    /// end is dropped: the table never reads).
    fn stream(listener: &TcpListener) -> (TcpStream, SocketAddr) {
        let addr = listener.local_addr().expect("a bound listener");
        let _client = TcpStream::connect(addr).expect("connect to our own listener");
        listener.accept().expect("accept our own connection")
    }

    #[test]
    fn drops_the_longest_waiting_connection_of_a_peer_at_its_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let mut table = Table::new();
        let start = Instant::now();
        for n in 0..MAX_PER_PEER {
            let (s, peer) = stream(&listener);
            table.make_room(peer).expect("room below the limit");
            // Waiting since a later moment each, except the 10th: the longest waiting.
            let since = start + Duration::from_millis(if n == 10 { 0 } else { 1 + n as u64 });
            table.add(s, peer, since);
        }
        let (s, peer) = stream(&listener);
        let longest = table.waiting[10].peer;
        table.make_room(peer).expect("room made by dropping one");
        assert_eq!(table.waiting.len(), MAX_PER_PEER - 1);
        assert!(table.waiting.iter().all(|w| w.peer != longest));
        table.add(s, peer, Instant::now());

        // Out with workers, none can be dropped: the total budget is the only limit then.
        while !table.waiting.is_empty() {
            drop(table.hand_to_worker(0));
        }
        let (_s, peer) = stream(&listener);
        assert!(table.make_room(peer).is_ok());
        table.busy = MAX_CONNECTIONS;
        assert!(table.make_room(peer).is_err());
    }
}
