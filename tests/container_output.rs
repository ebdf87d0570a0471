//! Children's output on supergo's own stdout and stderr (issue 16, item 1; README,
//! "Configuration"): `stdout_file = "/dev/stdout"` writes each line whole, as `NAME | TEXT`,
//! into supergo's real stdout (here a pipe the test reads, or stops reading); a partial line
//! is written after a silence; a stdout nobody reads never blocks the children, and what is
//! dropped is counted in GET /status and GET /metrics.
//!
//! The children are a perl script (`CHATTER`) that writes numbered lines whose length and
//! content follow from their number, so every line read back can be checked byte for byte.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::unistd::pipe2;
use serde_json::Value;

use crate::util::{fail, http_get, pid_of, poll_until, Supergo, TIMEOUT};

/// `perl chatter.pl NAME COUNT count|flood`. Line `i` of program NAME is `NAME:i:` followed
/// by the letter `a + i % 26` up to `length(i)` bytes: 20 KiB for every 25th line (past
/// Docker's 16 KiB split), else 0..300 bytes.
/// - `count`: writes lines 0..COUNT with perl's block buffering (writes cut lines anywhere),
///   one line to stderr, then `NAME:no newline at the end` without a newline, and sleeps.
/// - `flood`: writes 25 lines every 10 ms forever, and after each batch the number of lines
///   written so far to `PROGRESS` (written to a temp file, then renamed): it stops growing
///   as soon as a write to stdout blocks.
const CHATTER: &str = r#"
use strict;
use warnings;
use IO::Handle;

my ($name, $count, $mode) = @ARGV;

sub line {
    my ($i) = @_;
    my $len = ($i % 25 == 7) ? 20480 : ($i * 37) % 300;
    my $head = "$name:$i:";
    my $fill = $len > length($head) ? $len - length($head) : 0;
    return $head . (chr(97 + $i % 26) x $fill) . "\n";
}

if ($mode eq 'count') {
    print line($_) for 0 .. $count - 1;
    print STDERR "$name:stderr line\n";
    print "$name:no newline at the end";
    STDOUT->flush();
    sleep 3600 while 1;
}

my $progress = $ENV{PROGRESS};
my $i = 0;
while (1) {
    for (1 .. 25) {
        print line($i);
        $i++;
    }
    STDOUT->flush();
    open(my $fh, '>', "$progress.tmp") or die "$progress.tmp: $!";
    print $fh "$i\n";
    close($fh);
    rename("$progress.tmp", $progress) or die "rename $progress: $!";
    select(undef, undef, undef, 0.01);
}
"#;

/// The line `i` of `name` as `CHATTER` writes it, without its newline.
fn expected_line(name: &str, i: usize) -> String {
    let len = if i % 25 == 7 { 20480 } else { (i * 37) % 300 };
    let head = format!("{name}:{i}:");
    let letter = char::from(b'a' + (i % 26) as u8);
    let fill = len.saturating_sub(head.len());
    format!("{head}{}", letter.to_string().repeat(fill))
}

/// supergo's stdout as read so far by a thread, which also copies it to
/// `supergo-stdout.txt` in the test dir so that a failure's dump shows it.
#[derive(Clone)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Reads `pipe` until EOF (supergo and every holder of the write end gone).
    fn start(sg: &Supergo, mut pipe: File) -> Captured {
        let captured = Captured(Arc::new(Mutex::new(Vec::new())));
        let copy_path = sg.path("supergo-stdout.txt");
        let shared = captured.clone();
        thread::spawn(move || {
            let mut copy = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&copy_path)
                .ok();
            let mut buf = vec![0; 256 * 1024];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shared.bytes().extend_from_slice(&buf[..n]);
                if let Some(copy) = copy.as_mut() {
                    let _ = copy.write_all(&buf[..n]);
                }
            }
        });
        captured
    }

    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Waits until what was read contains `needle`; the text.
    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        poll_until(timeout, &format!("{needle:?} on supergo's stdout"), || {
            let text = self.text();
            text.contains(needle).then_some(text)
        })
    }
}

/// Starts supergo with `files` written and its stdout a pipe; the pipe's read end, which
/// nobody reads yet.
fn start_with_stdout_pipe(name: &str, files: &[(&str, &str)], config: &str) -> (Supergo, File) {
    let sg = Supergo::new(name);
    for (path, text) in files {
        sg.write_file(path, text);
    }
    sg.write_config(config);
    let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("create supergo's stdout pipe");
    sg.spawn_with_stdout(&[], Some(Stdio::from(write)));
    sg.wait_ready();
    (sg, File::from(read))
}

/// One line of supergo's stdout: a record `NAME | TEXT` or `NAME + TEXT`, or anything else.
enum Record<'a> {
    Line { program: &'a str, text: &'a str },
    Continued,
    Other,
}

fn record(line: &str) -> Record<'_> {
    let program_name = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    if let Some((program, text)) = line.split_once(" | ") {
        if program_name(program) {
            return Record::Line { program, text };
        }
    }
    match line.split_once(" + ") {
        Some((program, _)) if program_name(program) => Record::Continued,
        _ => Record::Other,
    }
}

/// Checks every record of `text` written by a `CHATTER` program: its line number, length
/// and content. Returns, per program, how often each line number was seen; panics (with
/// the dump) on a line that is cut, glued, unprefixed or changed, unless it is in `allowed`.
fn check_records(
    text: &str,
    allowed: impl Fn(&str) -> bool,
) -> BTreeMap<String, BTreeMap<usize, usize>> {
    let mut seen: BTreeMap<String, BTreeMap<usize, usize>> = BTreeMap::new();
    for line in text.lines() {
        let bad = |why: &str| -> ! {
            let shown: String = line.chars().take(200).collect();
            fail(format!(
                "supergo's stdout has a bad line ({why}): {shown:?}"
            ))
        };
        match record(line) {
            Record::Line { program, text } => {
                if allowed(text) {
                    continue;
                }
                let mut parts = text.splitn(3, ':');
                let (Some(name), Some(number)) = (parts.next(), parts.next()) else {
                    bad("not a chatter line")
                };
                if name != program {
                    bad("prefixed with another program's name");
                }
                let Ok(i) = number.parse::<usize>() else {
                    bad("no line number")
                };
                if text != expected_line(program, i) {
                    bad(&format!(
                        "line {i} is {} bytes, expected {}",
                        text.len(),
                        expected_line(program, i).len()
                    ));
                }
                *seen
                    .entry(program.to_string())
                    .or_default()
                    .entry(i)
                    .or_default() += 1;
            }
            Record::Continued => bad("a continuation: no line here passes 64 KiB"),
            Record::Other if allowed(line) => {}
            Record::Other => bad("not a record"),
        }
    }
    seen
}

/// The `output` entry of `name`'s `stream` in GET /status.
fn output_of(sg: &Supergo, name: &str, stream: &str) -> Value {
    let status = sg.status(name);
    status["output"]
        .as_array()
        .and_then(|list| list.iter().find(|o| o["stream"] == stream))
        .cloned()
        .unwrap_or_else(|| fail(format!("{name} has no {stream} in `output`: {status}")))
}

/// The value of the sample `series` (name and labels) in GET /metrics.
fn metric(sg: &Supergo, series: &str) -> Option<f64> {
    let response = sg
        .request("GET", "/metrics")
        .unwrap_or_else(|err| fail(format!("GET /metrics: {err}")));
    response
        .body
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[test]
fn every_line_reaches_supergos_stdout_once_whole_and_prefixed() {
    const COUNT: usize = 3000;
    let (sg, pipe) = start_with_stdout_pipe(
        "stdout_every_line_once",
        &[("chatter.pl", CHATTER)],
        &format!(
            r#"
[program.alpha]
command = "perl {{dir}}/chatter.pl alpha {COUNT} count"
auto_restart = false
stdout_file = "/dev/stdout"

[program.beta]
command = "perl {{dir}}/chatter.pl beta {COUNT} count"
auto_restart = false
stdout_logfile = "/dev/stdout"
stderr_file = "/dev/stderr"
"#
        ),
    );
    // A larger pipe: less for supergo to hold while this test thread is not scheduled.
    let _ = nix::fcntl::fcntl(&pipe, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1024 * 1024));
    let captured = Captured::start(&sg, pipe);

    // Each program's last words have no newline: supergo writes them after a silence, and
    // they come after every other line of that program.
    for name in ["alpha", "beta"] {
        captured.wait_for(
            &format!("{name} | {name}:no newline at the end\n"),
            TIMEOUT * 6,
        );
    }
    let text = captured.text();
    let seen = check_records(&text, |t| t.ends_with(":no newline at the end"));
    for name in ["alpha", "beta"] {
        let counts = seen.get(name).cloned().unwrap_or_default();
        let missing: Vec<usize> = (0..COUNT).filter(|i| !counts.contains_key(i)).collect();
        let repeated: Vec<usize> = counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(i, _)| *i)
            .collect();
        if !missing.is_empty() || !repeated.is_empty() || counts.len() != COUNT {
            fail(format!(
                "{name}: {} line(s) missing (first: {:?}), {} repeated (first: {:?}); \
                 its output counters: {}",
                missing.len(),
                missing.first(),
                repeated.len(),
                repeated.first(),
                output_of(&sg, name, "stdout")
            ));
        }
    }

    // The counters count the child's bytes exactly, prefixes aside; nothing was dropped.
    let expected_bytes: usize = (0..COUNT)
        .map(|i| expected_line("alpha", i).len() + 1)
        .sum::<usize>()
        + "alpha:no newline at the end".len();
    let alpha = poll_until(TIMEOUT, "alpha's bytes_written to be counted", || {
        let output = output_of(&sg, "alpha", "stdout");
        (output["bytes_written"] == expected_bytes).then_some(output)
    });
    assert_eq!(alpha["path"], "/dev/stdout", "{alpha}");
    assert_eq!(alpha["bytes_dropped"], 0, "{alpha}");
    let series = r#"supergo_program_output_bytes_total{program="alpha",stream="stdout"}"#;
    assert_eq!(
        metric(&sg, series),
        Some(expected_bytes as f64),
        "GET /metrics: {series}"
    );

    // beta's stderr went to supergo's stderr, beside supergo's own log, as a whole line.
    sg.wait_log("\nbeta | beta:stderr line\n", TIMEOUT);

    // supergo keeps no copy of its own stdout: GET /log says where to read it.
    let (http, body) = sg.api("GET", "/log/alpha");
    assert_eq!(http, 404, "GET /log/alpha: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("supergo's own stdout"), "{message}");
}

#[test]
fn a_stdout_nobody_reads_never_blocks_the_children() {
    let (sg, pipe) = start_with_stdout_pipe(
        "stdout_blocked",
        &[("chatter.pl", CHATTER)],
        r#"
[program.flood]
command = "perl {dir}/chatter.pl flood 0 flood"
stdout_file = "/dev/stdout"
environment = { PROGRESS = "{dir}/flood.progress" }

[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stdout_file = "/dev/stdout"
"#,
    );
    // Nobody reads `pipe` yet: it fills (64 KiB), then supergo's queue (1 MiB), then after
    // a second of holding back supergo drops flood's lines.
    sg.wait_state("flood", "Running", TIMEOUT);
    let web_pid = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    let dropped = poll_until(TIMEOUT * 3, "flood's bytes_dropped in GET /status", || {
        let output = output_of(&sg, "flood", "stdout");
        output["bytes_dropped"].as_u64().filter(|n| *n > 0)
    });

    // The children go on: flood keeps writing (its writes into its pipe do not block) ...
    let progress = || -> u64 {
        std::fs::read_to_string(sg.path("flood.progress"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = progress();
    poll_until(TIMEOUT, "flood to write 1000 more lines", || {
        (progress() >= before + 1000).then_some(())
    });
    // ... web answers, and a restart (a new process, whose first line goes to the same
    // stdout) completes.
    let (code, body) = http_get(&sg.app_addr(), "/").unwrap_or_else(|e| fail(e));
    assert_eq!(code, 200, "web: {body}");
    let (http, answer) = sg.api("POST", "/restart/web");
    assert_eq!(
        http, 200,
        "POST /restart/web while stdout is blocked: {answer}"
    );
    let new_pid = pid_of(&sg.wait_state("web", "Running", TIMEOUT));
    assert_ne!(new_pid, web_pid, "web was not restarted");

    // The drops show in /metrics too, and keep growing while nobody reads.
    let series = r#"supergo_program_output_dropped_bytes_total{program="flood",stream="stdout"}"#;
    poll_until(TIMEOUT, &format!("{series} above {dropped}"), || {
        metric(&sg, series).filter(|n| *n > dropped as f64)
    });

    // The reader comes back: what arrives is whole records, and a line says where lines
    // were dropped.
    let captured = Captured::start(&sg, pipe);
    let text = captured.wait_for("of children's output were dropped here", TIMEOUT * 3);
    poll_until(TIMEOUT, "flood's lines after the drop", || {
        let text = captured.text();
        let notice = text.find("of children's output were dropped here")?;
        text[notice..].contains("\nflood | flood:").then_some(())
    });
    let is_notice = |line: &str| line.contains(" WARN  ") && line.contains("were dropped here");
    let seen = check_records(&captured.text(), |line| {
        is_notice(line) || line.starts_with("probe: ")
    });
    assert!(
        seen.contains_key("flood"),
        "no flood line on stdout:\n{text}"
    );

    // And supergo still stops cleanly.
    sg.signal(Signal::SIGTERM);
    let status = sg.wait_exit(TIMEOUT * 3);
    assert!(status.success(), "supergo exited with {status}");
}

#[test]
fn supergos_other_fds_are_refused_as_output_targets() {
    let sg = Supergo::new("stdout_other_fds_refused");
    let config = sg.config_path.display().to_string();
    for (target, accepted) in [
        ("/dev/stdout", true),
        ("/dev/stderr", true),
        ("/proc/self/fd/1", true),
        ("/dev/fd/5", false),
        ("/dev/stdin", false),
    ] {
        sg.write_config(&format!(
            "[program.web]\ncommand = \"{{probe}} sleep\"\nstderr_file = \"{target}\"\n"
        ));
        let check = sg.run(&["--check", "--config", &config]);
        let stderr = String::from_utf8_lossy(&check.stderr);
        assert_eq!(
            check.status.success(),
            accepted,
            "stderr_file = {target:?}: {stderr}"
        );
        if !accepted {
            for fragment in ["stderr_file", target, "supergo's own file descriptor"] {
                assert!(
                    stderr.contains(fragment),
                    "{target}: no {fragment:?} in {stderr}"
                );
            }
        }
    }
}
