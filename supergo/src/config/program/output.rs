//! Where a program's output goes: `stdout_file` and `stderr_file` (or their `…_logfile`
//! aliases), and `log_max_bytes`, the size at which a log file is rotated.

use std::path::{Path, PathBuf};

use crate::config::section::Section;
use crate::config::tree::Value;
use crate::config::ConfigError;

const MIB: u64 = 1024 * 1024;

/// `log_max_bytes`: bytes, or a size string such as "50MB" (KB, MB, GB are powers of 1024,
/// as in supervisord; "KiB" etc. are taken too).
pub(super) fn log_max_bytes(s: &Section) -> Result<u64, ConfigError> {
    let Some(node) = s.node("log_max_bytes") else {
        return Ok(50 * MIB);
    };
    let expected = "a size in bytes, like 52428800 or \"50MB\"";
    match &node.value {
        Value::Integer(_) => s
            .as_integer("log_max_bytes", node, 0, i64::MAX)
            .map(|v| v.unsigned_abs()),
        Value::String(text) => {
            parse_size(text).ok_or_else(|| s.wrong_type("log_max_bytes", node, expected))
        }
        _ => Err(s.wrong_type("log_max_bytes", node, expected)),
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let multiplier: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => MIB,
        "G" | "GB" | "GIB" => 1024 * MIB,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// `stdout_file` or its alias `stdout_logfile` (likewise stderr). "" means discarded, as in
/// the original supergo.
pub(super) fn log_file(
    s: &Section,
    key: &str,
    alias: &str,
) -> Result<Option<PathBuf>, ConfigError> {
    if s.node(key).is_some() && s.node(alias).is_some() {
        return Err(s.key_error(
            alias,
            format!("repeats `{key}` under another name: keep one of the two"),
        ));
    }
    let used = if s.node(alias).is_some() { alias } else { key };
    let path = s
        .string(used)?
        .filter(|text| !text.is_empty())
        .map(|text| s.file.resolve(&text));
    // "/dev/stdout" and "/dev/stderr" (also as /dev/fd/1, /proc/self/fd/2 …) are supergo's
    // own streams (logs::console). Any other of supergo's fds is no place for output.
    if let Some(fd) = path.as_deref().and_then(own_fd) {
        if !(fd == "1" || fd == "2") {
            return Err(s.key_error(
                used,
                format!(
                    "{} is supergo's own file descriptor {fd}, not a log file: use \
                     \"/dev/stdout\" or \"/dev/stderr\" for supergo's output, or a file path",
                    path.as_deref().unwrap_or(Path::new("")).display()
                ),
            ));
        }
    }
    Ok(path)
}

/// The fd number of supergo's own that `path` names (`/dev/stdin` is "0"), if any.
fn own_fd(path: &Path) -> Option<&str> {
    if path == Path::new("/dev/stdin") {
        return Some("0");
    }
    ["/dev/fd", "/proc/self/fd"]
        .iter()
        .find_map(|dir| path.strip_prefix(dir).ok())
        .and_then(|rest| rest.to_str())
        .filter(|fd| !fd.is_empty())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50MB"), Some(50 * 1024 * 1024));
        assert_eq!(parse_size("10KB"), Some(10 * 1024));
        assert_eq!(parse_size("1GB"), Some(1024 * 1024 * 1024));
        assert_eq!(parse_size("2 mib"), Some(2 * 1024 * 1024));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_size("5TB"), None);
        assert_eq!(parse_size("-5MB"), None);
        assert_eq!(parse_size("99999999999999999999GB"), None);
    }
}
