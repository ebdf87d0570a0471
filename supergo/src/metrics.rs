//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of every program's status, of
//! its output streams (bytes written and dropped, per `stream`), and of supergo itself (RSS,
//! open fds, threads, read from /proc/self).

use std::fmt::Write;

use crate::status::{OutputStatus, ProgramStatus, State};

const STATES: [State; 7] = [
    State::Stopped,
    State::Starting,
    State::Running,
    State::Backoff,
    State::Stopping,
    State::Exited,
    State::Fatal,
];

/// A per-program series: name, type, help, and how to read its value.
type Gauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ProgramStatus) -> f64,
);

/// Renders the metrics page.
pub fn render(programs: &[ProgramStatus]) -> String {
    let mut out = String::with_capacity(256 + programs.len() * 1024);
    family(
        &mut out,
        "supergo_program_state",
        "gauge",
        "1 for the state the program is in",
        |out| {
            for p in programs {
                for state in STATES {
                    let value = u8::from(p.state == state);
                    let _ = writeln!(
                        out,
                        "supergo_program_state{{program=\"{}\",state=\"{state:?}\"}} {value}",
                        p.name
                    );
                }
            }
        },
    );
    let per_program: [Gauge; 7] = [
        (
            "supergo_program_pid",
            "gauge",
            "pid of the serving process (0: none)",
            |p| f64::from(p.pid),
        ),
        (
            "supergo_program_uptime_seconds",
            "gauge",
            "seconds since the serving process started",
            |p| p.uptime_secs,
        ),
        (
            "supergo_program_restarts_total",
            "counter",
            "restarts after an exit",
            |p| p.restarts as f64,
        ),
        (
            "supergo_program_handoffs_total",
            "counter",
            "successful restart handoffs",
            |p| p.handoffs as f64,
        ),
        (
            "supergo_program_failed_restarts_total",
            "counter",
            "restarts rolled back",
            |p| p.failed_handoffs as f64,
        ),
        (
            "supergo_program_draining_processes",
            "gauge",
            "old processes still draining",
            |p| p.draining.len() as f64,
        ),
        (
            "supergo_program_last_handoff_seconds",
            "gauge",
            "duration of the last successful handoff",
            |p| p.last_handoff_ms.unwrap_or(0.0) / 1000.0,
        ),
    ];
    for (name, kind, help, value) in per_program {
        family(&mut out, name, kind, help, |out| {
            for p in programs {
                let _ = writeln!(out, "{name}{{program=\"{}\"}} {}", p.name, value(p));
            }
        });
    }
    // Per output stream: a program whose output is discarded has no series.
    for (name, help, value) in [
        (
            "supergo_program_output_bytes_total",
            "bytes of the program's output written to its log file or to supergo's own stream",
            (|o| o.bytes_written) as fn(&OutputStatus) -> u64,
        ),
        (
            "supergo_program_output_dropped_bytes_total",
            "bytes of the program's output dropped: its log file could not be written, or \
             supergo's stdout/stderr was not read",
            |o| o.bytes_dropped,
        ),
    ] {
        family(&mut out, name, "counter", help, |out| {
            for p in programs {
                for o in &p.output {
                    let _ = writeln!(
                        out,
                        "{name}{{program=\"{}\",stream=\"{}\"}} {}",
                        p.name,
                        o.stream,
                        value(o)
                    );
                }
            }
        });
    }
    let own = own_usage();
    for (name, help, value) in [
        (
            "supergo_resident_memory_bytes",
            "resident set size of supergo",
            own.rss_bytes,
        ),
        (
            "supergo_open_fds",
            "file descriptors open in supergo",
            own.open_fds,
        ),
        ("supergo_threads", "threads of supergo", own.threads),
    ] {
        family(&mut out, name, "gauge", help, |out| {
            let _ = writeln!(out, "{name} {value}");
        });
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, body: impl FnOnce(&mut String)) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    body(out);
}

struct OwnUsage {
    rss_bytes: u64,
    open_fds: u64,
    threads: u64,
}

fn own_usage() -> OwnUsage {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    OwnUsage {
        rss_bytes: field("VmRSS:") * 1024,
        open_fds,
        threads: field("Threads:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_line_parses() {
        let mut p = ProgramStatus::new("web");
        p.state = State::Running;
        p.pid = 42;
        p.output.push(OutputStatus {
            stream: "stdout".into(),
            path: "/dev/stdout".into(),
            bytes_written: 10,
            bytes_dropped: 7,
        });
        let text = render(&[p]);
        assert!(text.contains(
            "supergo_program_output_dropped_bytes_total{program=\"web\",stream=\"stdout\"} 7"
        ));
        assert!(text.contains("supergo_program_state{program=\"web\",state=\"Running\"} 1"));
        assert!(text.contains("supergo_program_pid{program=\"web\"} 42"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name and value");
            value.parse::<f64>().expect("a number");
        }
    }
}
