//! The state format end to end: what a writer writes, a reader reads back, and what a reader
//! does with a state from a newer or broken writer.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

use super::inherit::scan_handover;
use super::{format_version, State, StateWriter, FORMAT_MAJOR};

/// A program with a serving and a draining process, as the lead's worker might write it.
fn sample(writer: &mut StateWriter, deadline: Instant) {
    writer.section("supergo", "").write_str("version", "0.1.0");
    writer
        .section("program", "web")
        .write_u64("generation", 3)
        .write_u64("retries", 0)
        .write_bool("stop_before_restart", false)
        .write_duration("backoff", Duration::from_millis(1500))
        .write_str(
            "note",
            " spaces, = signs, [brackets], \\backslash\nand a newline ",
        );
    writer
        .child("listener", "0")
        .write_str("addr", "127.0.0.1:4041");
    writer
        .child("process", "5012")
        .write_str("role", "serving")
        .write_i64("pid", 5012)
        .write_path("cwd", Path::new("/srv/we\u{ff}rd\n"));
    writer
        .child("process", "4990")
        .write_str("role", "draining")
        .write_i64("pid", 4990)
        .write_deadline("kill_at", deadline);
    writer.section("program", "api ]x[ \u{e9}");
}

#[test]
fn a_state_round_trips() {
    let deadline = Instant::now() + Duration::from_secs(7);
    let mut writer = StateWriter::new();
    sample(&mut writer, deadline);
    let serialized = writer.finish();
    let first = serialized.text.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "supergo-state {} (supergo {})",
            format_version(),
            env!("CARGO_PKG_VERSION")
        )
    );

    let state = State::parse(&serialized.text).unwrap();
    assert_eq!((state.major, state.minor), (FORMAT_MAJOR, 0));
    assert_eq!(
        state.writer,
        format!("supergo {}", env!("CARGO_PKG_VERSION"))
    );
    let handover = state.section("handover").unwrap();
    assert_eq!(
        handover.pid("pid").unwrap(),
        Some(std::process::id() as i32)
    );
    handover.bytes("boot_id").unwrap();
    assert_eq!(handover.str("fds").unwrap(), Some(""));
    assert_eq!(
        state.section("supergo").unwrap().str("version").unwrap(),
        Some("0.1.0")
    );

    let programs = state.sections("program");
    assert_eq!(
        programs.iter().map(|p| p.name()).collect::<Vec<_>>(),
        ["web", "api ]x[ \u{e9}"]
    );
    let web = programs[0];
    assert_eq!(web.u64_or("generation", 1).unwrap(), 3);
    assert_eq!(web.u64_or("retries", 9).unwrap(), 0);
    assert!(!web.bool_or("stop_before_restart", true).unwrap());
    assert_eq!(
        web.duration_or("backoff", Duration::ZERO).unwrap(),
        Duration::from_millis(1500)
    );
    assert_eq!(
        web.str("note").unwrap(),
        Some(" spaces, = signs, [brackets], \\backslash\nand a newline ")
    );
    assert_eq!(
        web.child("listener").unwrap().str("addr").unwrap(),
        Some("127.0.0.1:4041")
    );
    let processes = web.children("process");
    assert_eq!(processes.len(), 2);
    assert_eq!(processes[0].string_or("role", "").unwrap(), "serving");
    assert_eq!(processes[0].pid("pid").unwrap(), Some(5012));
    assert_eq!(
        processes[0].path("cwd").unwrap().unwrap(),
        Path::new("/srv/we\u{ff}rd\n")
    );
    let draining = processes[1];
    assert_eq!(draining.name(), "4990");
    assert_eq!(draining.str("role").unwrap(), Some("draining"));
    assert_eq!(draining.pid("pid").unwrap(), Some(4990));
    let read = draining.deadline("kill_at").unwrap().unwrap();
    let off = if read > deadline {
        read - deadline
    } else {
        deadline - read
    };
    assert!(off < Duration::from_millis(50), "deadline moved by {off:?}");
    // Everything was read: nothing is reported as skipped.
    assert_eq!(state.skipped(), Vec::<String>::new());
}

#[test]
fn unknown_keys_and_sections_of_a_newer_minor_version_are_skipped_and_listed() {
    let text = "supergo-state 1.9 (supergo 0.9.0)\n\
                [handover]\npid=1\nfds=\n\
                [program web]\ngeneration=2\nhot_swap=yes\n\
                [.process 7]\nrole=serving\ncgroup=/x\n\
                [.socket_map 1]\nfd=9\n\
                [metrics]\nupgrades=4\n";
    let state = State::parse(text).unwrap();
    assert_eq!((state.major, state.minor), (1, 9));
    let web = state.section("program").unwrap();
    assert_eq!(web.u64_or("generation", 1).unwrap(), 2);
    assert_eq!(
        web.child("process").unwrap().str("role").unwrap(),
        Some("serving")
    );
    let handover = state.section("handover").unwrap();
    handover.bytes("pid").unwrap();
    handover.bytes("fds").unwrap();
    assert_eq!(
        state.skipped(),
        [
            "line 7: `hot_swap` in [program web]",
            "line 10: `cgroup` in [process 7]",
            "line 11: section [socket_map 1]",
            "line 13: section [metrics]",
        ]
    );
}

#[test]
fn missing_keys_take_their_defaults() {
    let state = State::parse("supergo-state 1.0\n[program web]\n").unwrap();
    let web = state.section("program").unwrap();
    assert_eq!(web.u64_or("generation", 1).unwrap(), 1);
    assert_eq!(web.i64_or("offset", -3).unwrap(), -3);
    assert_eq!(web.u32_or("retries", 0).unwrap(), 0);
    assert!(web.bool_or("autostart", true).unwrap());
    assert_eq!(web.string_or("role", "serving").unwrap(), "serving");
    assert_eq!(
        web.duration_or("backoff", Duration::from_secs(1)).unwrap(),
        Duration::from_secs(1)
    );
    assert_eq!(web.deadline("kill_at").unwrap(), None);
    assert_eq!(web.fd("stdout_fd").unwrap(), None);
    assert_eq!(web.pid("pid").unwrap(), None);
    assert!(web.list("listener").unwrap().is_empty());
    assert!(web.children("process").is_empty());
    assert!(state.section("supergo").is_none());
}

#[test]
fn another_major_version_is_refused_naming_both_versions() {
    let err = State::parse("supergo-state 2.1 (supergo 3.0.0)\n[x]\n").unwrap_err();
    assert_eq!(err.line, Some(1));
    let message = err.to_string();
    for fragment in [
        "line 1:",
        "state format 2.1",
        "supergo 3.0.0",
        "reads format 1.x",
    ] {
        assert!(message.contains(fragment), "{fragment:?} not in: {message}");
    }
}

#[test]
fn corrupt_input_is_an_error_that_names_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "not a supergo state"),
        ("{\"json\": true}\n", 1, "not a supergo state"),
        ("supergo-state one.0\n", 1, "not a supergo state"),
        (
            "supergo-state 1.0\n[program web]\njust some words\n",
            3,
            "expected `key=value`",
        ),
        ("supergo-state 1.0\nkey=1\n", 2, "before any section"),
        ("supergo-state 1.0\n[.process 1]\n", 2, "before any section"),
        (
            "supergo-state 1.0\n[program web\n",
            2,
            "does not end with `]`",
        ),
        ("supergo-state 1.0\n[Program]\n", 2, "bad section kind"),
        ("supergo-state 1.0\n[p]\nKey=1\n", 3, "bad key"),
        (
            "supergo-state 1.0\n[p]\n\nnote=a\\qb\n",
            4,
            "unknown escape `\\q`",
        ),
        (
            "supergo-state 1.0\n[p]\nnote=a\rb\n",
            3,
            "raw control character",
        ),
    ];
    for (text, line, fragment) in cases {
        let err = State::parse(text).unwrap_err();
        assert_eq!(err.line, Some(*line), "{text:?}: {err}");
        assert!(err.to_string().contains(fragment), "{text:?}: {err}");
    }
}

#[test]
fn a_value_of_the_wrong_form_names_its_line_key_and_section() {
    let text =
        "supergo-state 1.0\n[program web]\ngeneration=three\npid=-4\nup=yes\nx=1\nx=2\nfd=seven\n";
    let state = State::parse(text).unwrap();
    let web = state.section("program").unwrap();
    let err = web.u64_or("generation", 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 3: `generation` in [program web] must be a whole number ≥ 0, not \"three\""
    );
    assert!(web
        .pid("pid")
        .unwrap_err()
        .to_string()
        .starts_with("line 4: `pid`"));
    assert!(web
        .bool_or("up", false)
        .unwrap_err()
        .to_string()
        .contains("true or false"));
    assert_eq!(
        web.u64_or("x", 0).unwrap_err().to_string(),
        "line 7: `x` in [program web] is given twice (first at line 6)"
    );
    assert!(web
        .fd("fd")
        .unwrap_err()
        .to_string()
        .contains("an fd number"));
}

#[test]
fn fds_are_listed_for_the_exec_and_given_out_once() {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let mut writer = StateWriter::new();
    writer
        .section("program", "web")
        .write_fd("stdout_r", read.as_fd())
        .write_fd("stdout_w", write.as_fd())
        .write_fd("again", read.as_fd());
    writer
        .section("extra", "")
        .write_fd("from_a_newer_writer", write.as_fd());
    let serialized = writer.finish();
    assert_eq!(serialized.fds, [read.as_raw_fd(), write.as_raw_fd()]);
    assert_eq!(scan_handover(&serialized.text).fds, serialized.fds);

    let mut state = State::parse(&serialized.text).unwrap();
    // Only `read` counts as handed over here.
    state.allow_fds(BTreeSet::from([read.as_raw_fd()]));
    let web = state.section("program").unwrap();
    let token = web.fd("stdout_r").unwrap().unwrap();
    assert_eq!(token.raw(), read.as_raw_fd());
    let err = web.fd("again").unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "fd {} is named by another key too",
            read.as_raw_fd()
        )),
        "{err}"
    );
    let err = web.fd("stdout_w").unwrap_err().to_string();
    assert!(err.contains("was not handed over"), "{err}");
    assert!(state.untaken_fds().is_empty());
    // The tokens own nothing: `read` and `write` close once, at the end of this test.
    let _ = token;
}

#[test]
fn the_handover_header_is_read_even_when_later_lines_are_corrupt() {
    let text = "supergo-state 1.0 (supergo 0.1.0)\n[handover]\npid=1\nexe_fd=4\nexe=/usr/bin/super\\x67o\nfds=5 6 4\n[program web]\n!!! garbage\n";
    assert!(State::parse(text).is_err());
    let header = scan_handover(text);
    assert_eq!(header.fds, [5, 6, 4]);
    assert_eq!(header.exe_fd, Some(4));
    assert_eq!(header.exe.as_deref(), Some(Path::new("/usr/bin/supergo")));
}

#[test]
fn the_exe_of_the_writer_is_recorded_for_the_fallback() {
    let exe = std::fs::File::open("/proc/self/exe").unwrap();
    let mut writer = StateWriter::new();
    writer.handover_exe(exe.as_fd(), Path::new("/usr/local/bin/supergo"));
    let serialized = writer.finish();
    assert_eq!(serialized.fds, [exe.as_raw_fd()]);
    let header = scan_handover(&serialized.text);
    assert_eq!(header.exe_fd, Some(exe.as_raw_fd()));
    assert_eq!(
        header.exe.as_deref(),
        Some(Path::new("/usr/local/bin/supergo"))
    );
}
