//! The messages supergo sends its manager, received on real unix datagram sockets of the
//! test's own (a path and an abstract name), and what happens when nobody reads them.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// A receiving socket bound to a fresh path, removed when dropped.
struct PathSocket {
    path: PathBuf,
    socket: UnixDatagram,
}

impl PathSocket {
    fn bind() -> PathSocket {
        let path = unique_path();
        let socket = UnixDatagram::bind(&path).expect("bind a datagram socket in /tmp");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        PathSocket { path, socket }
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for PathSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn unique_path() -> PathBuf {
    std::env::temp_dir().join(format!("supergo-mn-{}-{}.sock", std::process::id(), next()))
}

fn next() -> usize {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    COUNT.fetch_add(1, Ordering::SeqCst)
}

/// A receiving socket with an abstract name; its `NOTIFY_SOCKET` value.
fn abstract_socket() -> (UnixDatagram, String) {
    let name = format!("supergo-mn-test-{}-{}", std::process::id(), next());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract address");
    let socket = UnixDatagram::bind_addr(&addr).expect("bind an abstract datagram socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    (socket, format!("@{name}"))
}

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a datagram within 10 s");
    String::from_utf8(buf[..n].to_vec()).expect("a UTF-8 datagram")
}

/// The value of `key` in a datagram of `KEY=VALUE` lines.
fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn ready_reaches_a_path_socket_with_its_status() {
    let receiver = PathSocket::bind();
    let manager = Manager::connect(&receiver.target()).expect("a valid target");
    manager.ready("2 programs: 2 Running").expect("sent");
    assert_eq!(
        receive(&receiver.socket),
        "READY=1\nSTATUS=2 programs: 2 Running\n"
    );
}

#[test]
fn reloading_reaches_an_abstract_socket_with_the_monotonic_clock() {
    let (receiver, target) = abstract_socket();
    let manager = Manager::connect(&target).expect("a valid target");
    let before = monotonic_usec();
    manager.reloading().expect("sent");
    let after = monotonic_usec();
    let message = receive(&receiver);
    assert_eq!(field(&message, "RELOADING"), Some("1"), "{message:?}");
    let usec: u64 = field(&message, "MONOTONIC_USEC")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC number in {message:?}"));
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} is not between {before} and {after}, the clock read around it"
    );
    manager.ready("1 program: 1 Running").expect("sent");
    assert_eq!(field(&receive(&receiver), "READY"), Some("1"));
}

#[test]
fn stopping_is_sent_once() {
    let (receiver, target) = abstract_socket();
    let manager = Manager::connect(&target).expect("a valid target");
    manager.stopping().expect("sent");
    manager.stopping().expect("a repeat is no error");
    manager.status("last words").expect("sent");
    let first = receive(&receiver);
    assert_eq!(field(&first, "STOPPING"), Some("1"), "{first:?}");
    // The repeat sent nothing: the next datagram is the status.
    assert_eq!(receive(&receiver), "STATUS=last words\n");
}

#[test]
fn a_status_is_one_line() {
    let (receiver, target) = abstract_socket();
    let manager = Manager::connect(&target).expect("a valid target");
    manager.status("web: Fatal\nREADY=1").expect("sent");
    // A newline in the text must not smuggle in another key.
    assert_eq!(receive(&receiver), "STATUS=web: Fatal READY=1\n");
}

#[test]
fn a_target_that_is_no_socket_address_is_refused_with_its_value() {
    for bad in ["", "run/notify", "notify.sock"] {
        let err = Manager::connect(bad).expect_err("not a path nor an abstract name");
        assert!(
            err.contains("NOTIFY_SOCKET") && err.contains(&format!("{bad:?}")),
            "{err}"
        );
    }
    let long = format!("/{}", "x".repeat(200));
    let err = Manager::connect(&long).expect_err("longer than sun_path");
    assert!(err.contains("not a usable socket address"), "{err}");
}

#[test]
fn a_gone_manager_is_reported_once_until_it_is_back() {
    let path = unique_path();
    let target = path.display().to_string();
    let manager = Manager::connect(&target).expect("a valid target");
    let err = manager.status("one").expect_err("nothing listens there");
    assert!(
        err.contains("STATUS=one") && err.contains(&target),
        "the warning names the message and the socket: {err}"
    );
    manager.status("two").expect("a second failure is quiet");
    // The manager comes back: messages arrive, and the next failure is reported again.
    let receiver = UnixDatagram::bind(&path).expect("bind");
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    manager.status("three").expect("sent");
    assert_eq!(receive(&receiver), "STATUS=three\n");
    drop(receiver);
    std::fs::remove_file(&path).expect("remove the socket file");
    manager
        .status("four")
        .expect_err("gone again: reported again");
}

#[test]
fn a_manager_that_does_not_read_never_blocks_supergo() {
    // The receiver never reads: its queue fills up, and every send after that must fail at
    // once instead of waiting for room.
    let (receiver, target) = abstract_socket();
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let manager = Manager::connect(&target).expect("a valid target");
        let mut errors = Vec::new();
        for n in 0..5_000 {
            if let Err(e) = manager.status(&format!("message {n}")) {
                errors.push(e);
            }
        }
        let _ = done_tx.send(errors);
    });
    let errors = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("5000 sends to a full queue must not block");
    assert!(
        errors.iter().any(|e| e.contains("queue is full")),
        "the full queue is reported: {errors:?}"
    );
    // One warning for the whole run of failures, not one per message.
    assert_eq!(errors.len(), 1, "{errors:?}");
    drop(receiver);
}

#[test]
fn summary_counts_programs_by_state() {
    use State::*;
    assert_eq!(summary([]), "0 programs");
    assert_eq!(summary([Running]), "1 program: 1 Running");
    assert_eq!(
        summary([Fatal, Running, Running, Backoff]),
        "4 programs: 2 Running, 1 Backoff, 1 Fatal"
    );
}
