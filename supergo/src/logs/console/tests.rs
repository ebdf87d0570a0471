//! The console's records, hold-back and drops, written to a real pipe the test reads (or
//! stops reading) in place of supergo's stdout. Time is passed in, so the grace is crossed
//! without sleeping.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use nix::fcntl::OFlag;

use super::*;

/// Long enough for a loaded CI machine; conditions are polled, never slept on.
const DEADLINE: Duration = Duration::from_secs(20);

fn info(program: &str) -> Arc<PipeInfo> {
    Arc::new(PipeInfo {
        program: program.to_string(),
        stream: "stdout".to_string(),
        path: std::path::Path::new("/dev/stdout").into(),
        written: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    })
}

/// A console writing into a pipe; the read end, non-blocking, for the test.
fn console() -> (Console, File) {
    let (read, write): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("create a pipe");
    nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .expect("make the read end non-blocking");
    let console = Console::with_output(Stream::Stdout, writer::Output::Fd(write), None);
    (console, File::from(read))
}

/// Reads what is in the pipe now.
fn read_now(pipe: &mut File, into: &mut Vec<u8>) {
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        into.extend_from_slice(&buf[..n]);
    }
}

/// Reads until `done` holds for what was read so far; panics after `DEADLINE`.
fn read_until(pipe: &mut File, what: &str, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let start = Instant::now();
    let mut text = Vec::new();
    while !done(&text) {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        read_now(pipe, &mut text);
        std::thread::yield_now();
    }
    text
}

#[test]
fn lines_are_prefixed_and_end_with_one_newline() {
    let (console, mut pipe) = console();
    let web = info("web");
    let now = Instant::now();
    console.write(b"one\n\ntwo\n", false, &web, now);
    console.write(b"cut-off", false, &web, now);
    console.write(b"rest\nnext\n", true, &web, now);
    let expected = "web | one\nweb | \nweb | two\nweb | cut-off\nweb + rest\nweb | next\n";
    let text = read_until(&mut pipe, "every record", |t| t.len() >= expected.len());
    assert_eq!(String::from_utf8_lossy(&text), expected);
    // The child's bytes, without prefixes or the added newline.
    let child_bytes = "one\n\ntwo\ncut-offrest\nnext\n".len() as u64;
    let start = Instant::now();
    while web.written.load(Ordering::Relaxed) != child_bytes {
        assert!(
            start.elapsed() < DEADLINE,
            "bytes_written never reached {child_bytes}"
        );
        std::thread::yield_now();
    }
    assert_eq!(web.dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn a_full_queue_holds_back_then_drops_whole_lines_and_says_so() {
    let (console, mut pipe) = console();
    let web = info("web");
    let line = vec![b'x'; 999];
    let mut record = line.clone();
    record.push(b'\n');
    let now = Instant::now();
    // Nobody reads: fill the pipe and the queue up to the soft limit.
    let mut queued = 0;
    while console.admit(now).is_none() {
        console.write(&record, false, &web, now);
        queued += 1;
        assert!(queued < 100_000, "the queue never reached its limit");
    }
    // Held back for the grace; a read allowed just before the limit may still queue.
    let until = console.admit(now).expect("held back");
    assert_eq!(until, now + GRACE);
    console.write(&record, false, &web, now);
    assert_eq!(
        web.dropped.load(Ordering::Relaxed),
        0,
        "nothing dropped within the grace"
    );
    // After the grace: reading resumes, and what does not fit is dropped whole.
    let later = now + GRACE;
    assert_eq!(console.admit(later), None);
    console.write(b"lost 1\nlost 2\n", false, &web, later);
    assert_eq!(web.dropped.load(Ordering::Relaxed), 14);
    // The reader comes back: everything queued arrives, whole; then the notice, then the
    // next line that fits.
    let mut text = read_until(&mut pipe, "the queue to drain", |t| {
        t.len() >= (queued + 1) * (record.len() + 6)
    });
    console.write(b"back\n", false, &web, later);
    read_until(&mut pipe, "the line after the drop", |t| {
        t.ends_with(b"web | back\n")
    })
    .into_iter()
    .for_each(|b| text.push(b));
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let (notice, rest) = lines[queued + 1..].split_first().expect("a notice");
    assert!(
        notice.contains("WARN  2 line(s) (14 bytes) of children's output were dropped here"),
        "{notice}"
    );
    assert_eq!(rest, ["web | back"]);
    assert!(lines[..queued + 1]
        .iter()
        .all(|l| *l == format!("web | {}", "x".repeat(999))));
}

#[test]
fn close_gives_up_on_a_writer_that_makes_no_progress() {
    let (console, _pipe) = console();
    let web = info("web");
    let line = vec![b'y'; 64 * 1024 - 1];
    let now = Instant::now();
    // More than the pipe holds: the writer blocks in `write`, as on a stdout nobody reads.
    for _ in 0..4 {
        console.write(&line, false, &web, now);
    }
    let start = Instant::now();
    console.close();
    assert!(
        start.elapsed() < DEADLINE,
        "close waited for a writer that could not write"
    );
}

#[test]
fn names_supergos_own_streams() {
    for (path, stream) in [
        ("/dev/stdout", Some(Stream::Stdout)),
        ("/dev//stdout", Some(Stream::Stdout)),
        ("/proc/self/fd/1", Some(Stream::Stdout)),
        ("/dev/stderr", Some(Stream::Stderr)),
        ("/dev/fd/2", Some(Stream::Stderr)),
        ("/var/log/stdout", None),
        ("/dev/null", None),
    ] {
        assert_eq!(Stream::of(Path::new(path)), stream, "{path}");
    }
}
