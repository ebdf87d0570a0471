//! The test playing systemd's service manager: an abstract datagram socket given to supergo
//! as its `NOTIFY_SOCKET`, which collects what supergo says (`READY=1`, `RELOADING=1`,
//! `STOPPING=1`, `STATUS=…`). Shared by the container and combined tests.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::util::{fail, try_poll_until};

/// The test playing systemd: an abstract datagram socket that collects what supergo says.
pub struct ServiceManager {
    socket: UnixDatagram,
    /// `NOTIFY_SOCKET`'s value: `@name`.
    pub target: String,
    /// Every datagram so far, in order.
    pub seen: Vec<String>,
}

impl ServiceManager {
    pub fn bind() -> ServiceManager {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "supergo-test-manager-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract address");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind the manager's socket");
        socket
            .set_nonblocking(true)
            .expect("a non-blocking manager socket");
        ServiceManager {
            socket,
            target: format!("@{name}"),
            seen: Vec::new(),
        }
    }

    /// Takes every datagram waiting on the socket.
    fn receive(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    /// Waits for a datagram with the line `line` at index `from` or later; its index.
    pub fn wait_for(&mut self, line: &str, from: usize, timeout: Duration) -> usize {
        let found = try_poll_until(timeout, || {
            self.receive();
            self.seen
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, message)| message.lines().any(|l| l == line))
                .map(|(i, _)| i)
        });
        found.unwrap_or_else(|| {
            fail(format!(
                "timed out after {timeout:?}: no {line:?} from supergo (from datagram {from} on); \
                 datagrams so far: {:?}",
                self.seen
            ))
        })
    }

    /// How many datagrams so far hold the line `line`.
    pub fn count(&mut self, line: &str) -> usize {
        self.receive();
        self.seen
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }
}

/// The value of `key` in one datagram.
pub fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}
