//! Text output: human durations (`3s`, `5m12s`, `2h03m`, `4d01h`), left-aligned column
//! tables, and the `status` table built from [`StatusEntry`]s.
//!
//! Columns are separated by two spaces and padded by character count (names may be
//! non-ASCII); the last column is never padded, so no line ends in spaces.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::api::StatusEntry;
use crate::wording::strip_name;

/// Two significant units at most, like `ps` and `systemctl`: the exact seconds of a
/// process that has run for days are noise.
pub fn format_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".to_string();
    }
    let s = secs.floor() as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Renders rows as aligned columns; every line ends with `\n`. Rows may be shorter than
/// the widest one. Written into one buffer: with 1000 programs a string per line and per
/// padding showed in the time `status` takes.
pub fn align<S: AsRef<str>>(rows: &[Vec<S>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(cell.as_ref()));
        }
    }
    let line_length: usize = widths.iter().map(|w| w + 2).sum();
    let mut out = String::with_capacity(rows.len() * (line_length + 1));
    for row in rows {
        let start = out.len();
        for (i, cell) in row.iter().enumerate() {
            let cell = cell.as_ref();
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - width(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        // Empty last cells leave padding behind them: no line ends in spaces.
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    }
    out
}

/// Width of a cell in characters (names may be non-ASCII).
fn width(cell: &str) -> usize {
    if cell.is_ascii() {
        cell.len()
    } else {
        cell.chars().count()
    }
}

/// The `status` table: NAME STATE PID UPTIME LISTENERS DRAINING, plus INFO when any
/// program has an error, a STATUS= text, a last exit or restarts to report.
pub fn status_table(entries: &[StatusEntry], now_unix: i64) -> String {
    let header = ["NAME", "STATE", "PID", "UPTIME", "LISTENERS", "DRAINING"];
    let mut rows: Vec<Vec<Cow<str>>> = Vec::with_capacity(entries.len() + 1);
    rows.push(header.iter().map(|s| Cow::Borrowed(*s)).collect());
    let mut any_info = false;
    for e in entries {
        let info = info(e);
        any_info |= !info.is_empty();
        rows.push(vec![
            one_line(&e.name),
            one_line(&e.state),
            if e.pid == 0 {
                DASH
            } else {
                Cow::Owned(e.pid.to_string())
            },
            uptime(e, now_unix),
            dash_if_empty(e.listeners.join(",")),
            dash_if_empty(
                e.draining
                    .iter()
                    .map(|d| d.pid.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Cow::Owned(info),
        ]);
    }
    if any_info {
        rows[0].push(Cow::Borrowed("INFO"));
    } else {
        for row in rows.iter_mut().skip(1) {
            row.pop();
        }
    }
    align(&rows)
}

const DASH: Cow<'static, str> = Cow::Borrowed("-");

/// Uptime of the current process: the daemon's `uptime_secs`, else now − `start_time`;
/// `-` when no process runs.
fn uptime(e: &StatusEntry, now_unix: i64) -> Cow<'static, str> {
    if e.pid == 0 {
        return DASH;
    }
    match e.uptime_secs {
        Some(secs) => Cow::Owned(format_duration(secs)),
        None if e.start_time > 0 && now_unix >= e.start_time => {
            Cow::Owned(format_duration((now_unix - e.start_time) as f64))
        }
        None => DASH,
    }
}

/// What an operator needs to know beyond the state, most urgent first.
fn info(e: &StatusEntry) -> String {
    let mut parts = Vec::new();
    if let Some(err) = &e.error {
        parts.push(one_line(strip_name(&e.name, err)).into_owned());
    }
    if let Some(pid) = e.handoff_pid {
        parts.push(format!("restarting: new pid {pid} not ready yet"));
    }
    if let Some(text) = &e.status_text {
        parts.push(format!("status: {}", one_line(text)));
    }
    if let Some(exit) = &e.last_exit {
        parts.push(format!("last exit: {}", one_line(exit)));
    }
    if e.restarts > 0 {
        parts.push(format!(
            "{} restart{}",
            e.restarts,
            if e.restarts == 1 { "" } else { "s" }
        ));
    }
    parts.join("; ")
}

fn dash_if_empty(s: String) -> Cow<'static, str> {
    if s.is_empty() {
        DASH
    } else {
        Cow::Owned(s)
    }
}

/// A daemon-supplied text may hold newlines or tabs; a table cell must not.
fn one_line(s: &str) -> Cow<'_, str> {
    let single_spaced = !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s.contains("  ")
        && !s.contains(|c: char| c.is_whitespace() && c != ' ');
    if single_spaced {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// Seconds since the epoch, 0 if the clock is before 1970.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Draining;

    #[test]
    fn durations() {
        assert_eq!(format_duration(0.0), "0s");
        assert_eq!(format_duration(3.9), "3s");
        assert_eq!(format_duration(59.99), "59s");
        assert_eq!(format_duration(60.0), "1m00s");
        assert_eq!(format_duration(312.0), "5m12s");
        assert_eq!(format_duration(3599.0), "59m59s");
        assert_eq!(format_duration(3600.0), "1h00m");
        assert_eq!(format_duration(2.0 * 3600.0 + 3.0 * 60.0 + 59.0), "2h03m");
        assert_eq!(format_duration(86_399.0), "23h59m");
        assert_eq!(format_duration(4.0 * 86_400.0 + 3600.0 + 5.0), "4d01h");
        assert_eq!(format_duration(400.0 * 86_400.0), "400d00h");
        assert_eq!(format_duration(-1.0), "-");
        assert_eq!(format_duration(f64::NAN), "-");
    }

    #[test]
    fn align_pads_all_but_the_last_column() {
        let rows = vec![
            vec!["NAME".to_string(), "STATE".to_string(), "PID".to_string()],
            vec!["a".to_string(), "Running".to_string(), "1".to_string()],
            vec!["longname".to_string(), "-".to_string(), "12345".to_string()],
        ];
        assert_eq!(
            align(&rows),
            "NAME      STATE    PID\n\
             a         Running  1\n\
             longname  -        12345\n"
        );
    }

    #[test]
    fn align_counts_characters_not_bytes_and_strips_trailing_space() {
        let rows = vec![
            vec!["é".to_string(), "x".to_string(), "".to_string()],
            vec!["ab".to_string(), "y".to_string(), "".to_string()],
        ];
        assert_eq!(align(&rows), "é   x\nab  y\n");
        assert_eq!(align::<String>(&[]), "");
    }

    fn entry(name: &str, state: &str, pid: u64) -> StatusEntry {
        StatusEntry {
            name: name.to_string(),
            state: state.to_string(),
            pid,
            ..StatusEntry::default()
        }
    }

    #[test]
    fn status_table_without_info_column() {
        let mut web = entry("web", "Running", 1234);
        web.uptime_secs = Some(312.5);
        web.listeners = vec!["127.0.0.1:4041".into(), "unix:/run/w.sock".into()];
        web.draining = vec![Draining { pid: 1200 }, Draining { pid: 1100 }];
        let idle = entry("idle", "Stopped", 0);
        assert_eq!(
            status_table(&[web, idle], 0),
            "NAME  STATE    PID   UPTIME  LISTENERS                        DRAINING\n\
             web   Running  1234  5m12s   127.0.0.1:4041,unix:/run/w.sock  1200,1100\n\
             idle  Stopped  -     -       -                                -\n"
        );
    }

    #[test]
    fn status_table_with_info_and_start_time_fallback() {
        let mut old = entry("old", "Running", 9);
        old.start_time = 1000;
        let mut bad = entry("bad", "Fatal", 0);
        bad.error = Some("bad: cannot listen on\n:80".into());
        bad.handoff_pid = Some(77);
        bad.last_exit = Some("exited with status 1".into());
        bad.restarts = 3;
        assert_eq!(
            status_table(&[old, bad], 1000 + 7265),
            "NAME  STATE    PID  UPTIME  LISTENERS  DRAINING  INFO\n\
             old   Running  9    2h01m   -          -\n\
             bad   Fatal    -    -       -          -         \
             cannot listen on :80; restarting: new pid 77 not ready yet; last exit: exited with status 1; 3 restarts\n"
        );
    }
}
