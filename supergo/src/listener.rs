//! Listening sockets: parsing `listen_addrs` entries and binding them.
//!
//! supergo binds every listener itself, once per address, and keeps it for as long as some
//! program uses the address. Children receive duplicates at fd 3, 4, … (see `spawn`), so the
//! kernel keeps queueing connections on the same socket while one generation hands over to the
//! next: no client ever sees "connection refused".
//!
//! Address forms (the original supergo's `":4041"` included):
//! - `host:port` and `[v6]:port`: TCP on that address;
//! - `:port`: TCP on every IPv4 interface (`0.0.0.0:port`);
//! - `unix:/path`: a unix stream socket; a stale socket file left at that path is replaced,
//!   any other kind of file there is an error.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn, SockaddrIn6, UnixAddr,
};

/// Connections the kernel queues per listener while no process accepts (during a handoff,
/// for instance). Linux clamps it to `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// One entry of `listen_addrs`, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    /// Parses one `listen_addrs` entry. `base` resolves a relative unix-socket path (the
    /// directory of the config file that holds it).
    pub fn parse(text: &str, base: &Path) -> Result<ListenAddr, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a path, as in \"unix:/run/web.sock\"".into());
            }
            return Ok(ListenAddr::Unix(base.join(path)));
        }
        if let Some(port) = text.strip_prefix(':') {
            let port = parse_port(port, text)?;
            return Ok(ListenAddr::Tcp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port,
            )));
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(ListenAddr::Tcp(addr));
        }
        // A host name such as "localhost:4041": resolve it now, once, so that a typo is a
        // config error and not a bind failure at start.
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            format!("`{text}` is not an address: use \"host:port\", \":port\", \"[v6]:port\" or \"unix:/path\"")
        })?;
        let port = parse_port(port, text)?;
        let mut addrs = (host, port)
            .to_socket_addrs()
            .map_err(|err| format!("cannot resolve `{host}` in `{text}`: {err}"))?;
        addrs
            .next()
            .map(ListenAddr::Tcp)
            .ok_or_else(|| format!("`{host}` in `{text}` resolves to no address"))
    }
}

fn parse_port(port: &str, whole: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .map_err(|_| format!("`{whole}` has no valid port (0-65535)"))
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A bound, listening socket owned by supergo. Dropping it closes supergo's copy; children
/// keep theirs.
#[derive(Debug)]
pub struct Listener {
    pub addr: ListenAddr,
    fd: OwnedFd,
}

impl Listener {
    /// Binds and listens on `addr`. Unix sockets get `socket_mode` as their permissions.
    pub fn bind(addr: &ListenAddr, socket_mode: u32) -> Result<Listener, String> {
        let fd = match addr {
            ListenAddr::Tcp(sa) => bind_tcp(sa),
            ListenAddr::Unix(path) => bind_unix(path, socket_mode),
        }
        .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
        Ok(Listener {
            addr: addr.clone(),
            fd,
        })
    }

    /// A listening socket supergo did not bind just now: handed over by an upgrade in place,
    /// or taken back from a process a dead supergo left running (adoption). The same socket,
    /// so its queue of connections is never interrupted.
    pub fn from_fd(addr: ListenAddr, fd: OwnedFd) -> Listener {
        Listener { addr, fd }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The address actually bound (tells the port when `addr` asked for port 0).
    pub fn local_addr(&self) -> String {
        match &self.addr {
            ListenAddr::Tcp(_) => {
                nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(
                    self.fd.as_raw_fd(),
                )
                .ok()
                .and_then(|ss| {
                    ss.as_sockaddr_in()
                        .map(|a| SocketAddr::from(std::net::SocketAddrV4::from(*a)))
                        .or_else(|| {
                            ss.as_sockaddr_in6()
                                .map(|a| SocketAddr::from(std::net::SocketAddrV6::from(*a)))
                        })
                })
                .map(|a| a.to_string())
                .unwrap_or_else(|| self.addr.to_string())
            }
            ListenAddr::Unix(_) => self.addr.to_string(),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // The socket file of a unix listener would otherwise stay behind and refuse
        // connections ("connection refused" on a path that looks alive).
        if let ListenAddr::Unix(path) = &self.addr {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bind_tcp(sa: &SocketAddr) -> Result<OwnedFd, String> {
    let family = if sa.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    // SOCK_CLOEXEC in the same call: a child forked by another thread in between must not
    // inherit this fd at a random number.
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| e.desc().to_string())?;
    // SO_REUSEADDR lets supergo rebind right after a restart of supergo itself, while old
    // connections sit in TIME_WAIT; it does not allow two live listeners on one port.
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| e.desc().to_string())?;
    match sa {
        SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(*v4)),
        SocketAddr::V6(v6) => {
            setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(|e| e.desc().to_string())?;
            bind(fd.as_raw_fd(), &SockaddrIn6::from(*v6))
        }
    }
    .map_err(|e| e.desc().to_string())?;
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| e.desc().to_string())?;
    Ok(fd)
}

fn bind_unix(path: &Path, socket_mode: u32) -> Result<OwnedFd, String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // Stale (left by a crash) only if nobody accepts on it: a live server's socket
            // must not be unlinked and taken over.
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(format!(
                        "{} is in use: another process is listening on it",
                        path.display()
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => {
                    return Err(format!(
                        "cannot check whether {} is in use: {e}",
                        path.display()
                    ))
                }
            }
            std::fs::remove_file(path).map_err(|e| format!("cannot remove stale socket: {e}"))?;
        }
        Ok(_) => return Err(format!("{} exists and is not a socket", path.display())),
        Err(_) => {}
    }
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| e.desc().to_string())?;
    let addr = UnixAddr::new(path).map_err(|e| e.desc().to_string())?;
    bind(fd.as_raw_fd(), &addr).map_err(|e| e.desc().to_string())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(socket_mode))
        .map_err(|e| format!("cannot set mode {socket_mode:o}: {e}"))?;
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| e.desc().to_string())?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let base = Path::new("/etc/supergo");
        assert_eq!(
            ListenAddr::parse(":4041", base).unwrap(),
            ListenAddr::Tcp("0.0.0.0:4041".parse().unwrap())
        );
        assert_eq!(
            ListenAddr::parse("127.0.0.1:80", base).unwrap(),
            ListenAddr::Tcp("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            ListenAddr::parse("[::1]:80", base).unwrap(),
            ListenAddr::Tcp("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            ListenAddr::parse("unix:web.sock", base).unwrap(),
            ListenAddr::Unix("/etc/supergo/web.sock".into())
        );
        assert!(ListenAddr::parse("4041", base).is_err());
        assert!(ListenAddr::parse(":99999", base).is_err());
        assert!(ListenAddr::parse("unix:", base).is_err());
    }
}

/// The open listeners, by address. Listeners belong to addresses, not to programs: while
/// any program (or a process still draining) holds an address, `acquire` returns the same
/// socket, so an `update` or a move of an address between programs never closes and rebinds
/// it. A socket closes when its last holder drops it.
#[derive(Default)]
pub struct ListenerPool {
    open: std::sync::Mutex<std::collections::HashMap<ListenAddr, std::sync::Weak<Listener>>>,
}

impl ListenerPool {
    pub fn new() -> ListenerPool {
        ListenerPool::default()
    }

    /// The open socket for `addr`, bound now if nobody holds it.
    pub fn acquire(
        &self,
        addr: &ListenAddr,
        socket_mode: u32,
    ) -> Result<std::sync::Arc<Listener>, String> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = open.get(addr).and_then(std::sync::Weak::upgrade) {
            return Ok(existing);
        }
        let listener = std::sync::Arc::new(Listener::bind(addr, socket_mode)?);
        open.insert(addr.clone(), std::sync::Arc::downgrade(&listener));
        open.retain(|_, weak| weak.strong_count() > 0);
        Ok(listener)
    }

    /// Every socket some program (or a process still draining) holds now: what an upgrade in
    /// place hands over.
    pub fn open_listeners(&self) -> Vec<std::sync::Arc<Listener>> {
        let open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut listeners: Vec<_> = open.values().filter_map(std::sync::Weak::upgrade).collect();
        listeners.sort_by(|a, b| a.addr.cmp(&b.addr));
        listeners
    }

    /// Puts a socket supergo did not bind itself (see `Listener::from_fd`) into the pool under
    /// its address, so that `acquire` returns it instead of binding, for as long as someone
    /// holds the `Arc` returned. An error when the address is open already.
    pub fn insert(&self, listener: Listener) -> Result<std::sync::Arc<Listener>, String> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if open
            .get(&listener.addr)
            .and_then(std::sync::Weak::upgrade)
            .is_some()
        {
            return Err(format!(
                "{}: a second socket for this address was handed over; keeping the first",
                listener.addr
            ));
        }
        let addr = listener.addr.clone();
        let listener = std::sync::Arc::new(listener);
        open.insert(addr, std::sync::Arc::downgrade(&listener));
        Ok(listener)
    }

    /// Every listener of a program, in `listen_addrs` order (fd 3, 4, …).
    pub fn acquire_all(
        &self,
        addrs: &[ListenAddr],
        socket_mode: u32,
    ) -> Result<Vec<std::sync::Arc<Listener>>, String> {
        addrs
            .iter()
            .map(|addr| self.acquire(addr, socket_mode))
            .collect()
    }
}
