//! Real pipes, real files, one temporary directory per test.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// Long enough for a loaded CI machine; conditions are polled, never slept on.
const DEADLINE: Duration = Duration::from_secs(20);

/// A directory removed (with its content) when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("supergo-logs-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn target(path: PathBuf, max_bytes: u64, backups: u32) -> LogTarget {
    LogTarget {
        path,
        max_bytes,
        backups,
    }
}

/// A writer on a duplicate of the pipe's write end, as a child would hold it.
fn writer(pipe: &LogPipe) -> File {
    File::from(pipe.try_clone_write_end().expect("dup the write end"))
}

/// Polls `condition` until it holds; panics with `what` after `DEADLINE`.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn stats_of(hub: &LogHub, program: &str) -> LogStats {
    hub.stats()
        .into_iter()
        .find(|s| s.program == program)
        .expect("the pipe is registered")
}

#[test]
fn lines_from_two_writers_land_in_order() {
    let dir = TempDir::new("two-writers");
    let path = dir.path("out.log");
    let hub = LogHub::start().expect("start the log hub");
    let pipe = hub
        .open("two", "stdout", target(path.clone(), 0, 0))
        .expect("open a log pipe");

    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|tag| {
            let mut out = writer(&pipe);
            std::thread::spawn(move || {
                for i in 0..1000 {
                    // One write per line, as a line-buffered child does.
                    out.write_all(format!("{tag} {i}\n").as_bytes())
                        .expect("write into the pipe");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }

    wait_for("2000 lines", || read(&path).lines().count() == 2000);
    let text = read(&path);
    for tag in ["a", "b"] {
        let numbers: Vec<u32> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{tag} ")))
            .map(|n| n.parse().expect("a whole line"))
            .collect();
        assert_eq!(numbers, (0..1000).collect::<Vec<_>>(), "writer {tag}");
    }
    assert_eq!(
        stats_of(&hub, "two").bytes_written,
        text.len() as u64,
        "written count"
    );
}

/// 10 000 numbered lines of varying length, written in chunks that cut lines anywhere.
fn write_numbered_lines(pipe: &LogPipe, count: usize) -> u64 {
    let mut out = BufWriter::with_capacity(1000, writer(pipe));
    let mut total = 0;
    for i in 0..count {
        let line = format!("{i:05} {}\n", "x".repeat(i % 70));
        total += line.len() as u64;
        out.write_all(line.as_bytes()).expect("write into the pipe");
    }
    out.flush().expect("flush into the pipe");
    total
}

fn backup(path: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

#[test]
fn rotation_never_splits_or_loses_a_line() {
    let dir = TempDir::new("rotation");
    let path = dir.path("out.log");
    let max = 8 * 1024;
    let hub = LogHub::start().expect("start the log hub");
    let pipe = hub
        .open("rot", "stdout", target(path.clone(), max, 1000))
        .expect("open a log pipe");
    let total = write_numbered_lines(&pipe, 10_000);
    wait_for("every byte written", || {
        stats_of(&hub, "rot").bytes_written == total
    });

    // Oldest backup first, then the current file: the lines in the order written.
    let backups = (1..).take_while(|&n| backup(&path, n).exists()).count() as u32;
    assert!(backups > 20, "only {backups} rotations");
    let mut files: Vec<PathBuf> = (1..=backups).rev().map(|n| backup(&path, n)).collect();
    files.push(path.clone());
    let mut expected = 0;
    for file in &files {
        let text = read(file);
        assert!(
            text.len() as u64 <= max,
            "{} passed max_bytes",
            file.display()
        );
        assert!(text.ends_with('\n'), "{} ends mid-line", file.display());
        for line in text.lines() {
            assert_eq!(
                line,
                format!("{expected:05} {}", "x".repeat(expected % 70)),
                "in {}",
                file.display()
            );
            expected += 1;
        }
    }
    assert_eq!(expected, 10_000);
    assert_eq!(stats_of(&hub, "rot").bytes_dropped, 0);
}

#[test]
fn rotation_keeps_exactly_the_configured_backups() {
    let dir = TempDir::new("backups");
    let path = dir.path("out.log");
    let hub = LogHub::start().expect("start the log hub");
    let pipe = hub
        .open("keep", "stdout", target(path.clone(), 4096, 3))
        .expect("open a log pipe");
    let total = write_numbered_lines(&pipe, 10_000);
    wait_for("every byte written", || {
        stats_of(&hub, "keep").bytes_written == total
    });

    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .expect("list the test directory")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["out.log", "out.log.1", "out.log.2", "out.log.3"]);
    // The newest lines are in the current file, the last line last.
    assert!(read(&path).ends_with(&format!("09999 {}\n", "x".repeat(9999 % 70))));
}

#[test]
fn rotation_without_backups_truncates() {
    let dir = TempDir::new("truncate");
    let path = dir.path("out.log");
    let hub = LogHub::start().expect("start the log hub");
    let pipe = hub
        .open("trunc", "stdout", target(path.clone(), 1024, 0))
        .expect("open a log pipe");
    let total = write_numbered_lines(&pipe, 1000);
    wait_for("every byte written", || {
        stats_of(&hub, "trunc").bytes_written == total
    });
    let text = read(&path);
    assert!(text.len() <= 1024);
    assert!(text.ends_with(&format!("00999 {}\n", "x".repeat(999 % 70))));
    assert!(!backup(&path, 1).exists());
}

#[test]
fn stdout_and_stderr_share_one_file_and_its_rotation() {
    let dir = TempDir::new("shared");
    let path = dir.path("both.log");
    let hub = LogHub::start().expect("start the log hub");
    let out = hub
        .open("both", "stdout", target(path.clone(), 2048, 100))
        .expect("open stdout");
    let err = hub
        .open("both", "stderr", target(path.clone(), 2048, 100))
        .expect("open stderr");
    let mut o = writer(&out);
    let mut e = writer(&err);
    for i in 0..500 {
        o.write_all(format!("out {i}\n").as_bytes()).expect("write");
        e.write_all(format!("err {i}\n").as_bytes()).expect("write");
    }
    let written = || hub.stats().iter().map(|s| s.bytes_written).sum::<u64>();
    let total: u64 = (0..500)
        .map(|i| format!("out {i}\nerr {i}\n").len() as u64)
        .sum();
    wait_for("both streams written", || written() == total);

    let mut all = read(&path);
    for n in (1..).take_while(|&n| backup(&path, n).exists()) {
        let text = read(&backup(&path, n));
        assert!(text.len() <= 2048, "backup {n} passed max_bytes");
        all.push_str(&text);
    }
    assert_eq!(all.lines().count(), 1000);
}

#[test]
fn an_unwritable_file_never_blocks_the_writer() {
    let dir = TempDir::new("unwritable");
    // A path under a regular file fails with ENOTDIR, for root too.
    let parent = dir.path("not-a-directory");
    std::fs::write(&parent, b"").expect("create a regular file");
    let hub = LogHub::start().expect("start the log hub");
    let pipe = hub
        .open("full", "stdout", target(parent.join("out.log"), 0, 0))
        .expect("open a log pipe");

    const TOTAL: usize = 10 * 1024 * 1024;
    let mut out = writer(&pipe);
    let (done_tx, done) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let line = [b'y'; 1023];
        let mut block = Vec::with_capacity(64 * 1024);
        while block.len() < 64 * 1024 {
            block.extend_from_slice(&line);
            block.push(b'\n');
        }
        for _ in 0..TOTAL / block.len() {
            out.write_all(&block).expect("write into the pipe");
        }
        let _ = done_tx.send(());
    });
    done.recv_timeout(DEADLINE)
        .expect("the writer finished without blocking");
    wait_for("10 MiB dropped", || {
        stats_of(&hub, "full").bytes_dropped == TOTAL as u64
    });
    assert_eq!(stats_of(&hub, "full").bytes_written, 0);
}

#[test]
fn reopen_all_follows_a_file_renamed_away() {
    let dir = TempDir::new("reopen");
    let path = dir.path("out.log");
    let moved = dir.path("out.log.moved");
    let hub = LogHub::start().expect("start the log hub");
    let pipe = hub
        .open("re", "stdout", target(path.clone(), 0, 0))
        .expect("open a log pipe");
    let mut out = writer(&pipe);

    out.write_all(b"before\n").expect("write");
    wait_for("the first line", || read(&path) == "before\n");
    std::fs::rename(&path, &moved).expect("rename the log away");
    hub.reopen_all();
    out.write_all(b"after\n").expect("write");
    wait_for("the second line in a new file", || read(&path) == "after\n");
    assert_eq!(read(&moved), "before\n");
}

#[test]
fn dropping_a_pipe_writes_what_it_held() {
    let dir = TempDir::new("drop");
    let path = dir.path("out.log");
    let hub = LogHub::start().expect("start the log hub");
    let pipe = hub
        .open("gone", "stdout", target(path.clone(), 0, 0))
        .expect("open a log pipe");
    {
        let mut out = writer(&pipe);
        out.write_all(b"complete\nno newline at the end")
            .expect("write");
    }
    drop(pipe);
    wait_for("the pipe's content", || {
        read(&path) == "complete\nno newline at the end"
    });
    wait_for("the pipe to be unregistered", || hub.stats().is_empty());
}

#[test]
fn a_partial_line_is_written_after_a_silence() {
    let dir = TempDir::new("silence");
    let path = dir.path("out.log");
    let hub = LogHub::start().expect("start the log hub");
    let pipe = hub
        .open("prompt", "stdout", target(path.clone(), 0, 0))
        .expect("open a log pipe");
    writer(&pipe).write_all(b"password: ").expect("write");
    wait_for("the prompt", || read(&path) == "password: ");
}

#[test]
fn shutdown_writes_what_the_pipes_hold() {
    let dir = TempDir::new("shutdown");
    let path = dir.path("out.log");
    let hub = LogHub::start().expect("start the log hub");
    let pipe = hub
        .open("bye", "stdout", target(path.clone(), 0, 0))
        .expect("open a log pipe");
    writer(&pipe).write_all(b"last words").expect("write");
    hub.shutdown();
    assert_eq!(read(&path), "last words");
    assert!(hub.open("late", "stdout", target(path, 0, 0)).is_err());
}

#[test]
fn tail_reads_the_end_and_follows_an_offset() {
    let dir = TempDir::new("tail");
    let path = dir.path("out.log");
    assert_eq!(tail(&path, 10, None).expect("tail"), (String::new(), 0));
    std::fs::write(&path, "0123456789").expect("write");
    assert_eq!(tail(&path, 4, None).expect("tail"), ("6789".into(), 10));
    assert_eq!(tail(&path, 100, Some(8)).expect("tail"), ("89".into(), 10));
    // Shrunk under the reader (rotated): the tail again.
    assert_eq!(tail(&path, 3, Some(50)).expect("tail"), ("789".into(), 10));
}

#[test]
fn a_failing_file_is_retried_and_resumed() {
    let dir = TempDir::new("resume");
    let parent = dir.path("logs");
    std::fs::write(&parent, b"").expect("create a regular file where the directory goes");
    let path = parent.join("out.log");
    let hub = LogHub::start().expect("start the log hub");
    let pipe = hub
        .open("back", "stdout", target(path.clone(), 0, 0))
        .expect("open a log pipe");
    let mut out = writer(&pipe);

    out.write_all(b"lost\n").expect("write");
    wait_for("the line dropped", || {
        stats_of(&hub, "back").bytes_dropped == 5
    });
    std::fs::remove_file(&parent).expect("remove the file in the way");
    std::fs::create_dir(&parent).expect("create the log directory");
    // The retry happens at a write, at most once a second: keep writing until one lands.
    wait_for("writing to resume", || {
        out.write_all(b"again\n").expect("write");
        read(&path).starts_with("again\n")
    });
    assert!(!read(&path).contains("lost"));
}
