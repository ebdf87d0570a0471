//! One `[program.NAME]` table to a complete `ProgramConfig`: every key checked for its type
//! and range, every default applied (DESIGN.md "Config (TOML)" is the contract), every path
//! made absolute against the directory of the file that holds it.
//!
//! Checks that need more than one program (duplicate names, one address claimed twice) are
//! the loader's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Group, User};

use super::section::{describe, Section};
use super::suggest;
use super::tree::{Node, Value};
use super::{shell, AutoRestart, ConfigError, Origin, ProgramConfig, ReadyMode};
use crate::listener::ListenAddr;

/// Every key a program may have (the `…_logfile` spellings are the original supergo's
/// and supervisord's).
pub const KEYS: &[&str] = &[
    "command",
    "args",
    "directory",
    "autostart",
    "auto_restart",
    "exit_codes",
    "start_secs",
    "max_retry",
    "backoff_secs",
    "backoff_max_secs",
    "listen_addrs",
    "listen_names",
    "socket_mode",
    "ready",
    "ready_timeout",
    "stop_signal",
    "stop_timeout",
    "stop_as_group",
    "stop_before_restart",
    "stdout_file",
    "stdout_logfile",
    "stderr_file",
    "stderr_logfile",
    "redirect_stderr",
    "log_max_bytes",
    "log_backups",
    "user",
    "group",
    "umask",
    "environment",
    "clear_env",
    "priority",
    "rlimits",
    "essential",
];

/// Resource names `rlimits` accepts: `RLIMIT_<NAME>` in setrlimit(2).
pub const RLIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "memlock",
    "nofile",
    "nproc",
    "rss",
    "stack",
    "msgqueue",
    "nice",
    "rtprio",
    "sigpending",
    "locks",
];

/// `stop_signal` values: the signals a server may sensibly be asked to stop with.
const STOP_SIGNALS: &[(&str, Signal)] = &[
    ("TERM", Signal::SIGTERM),
    ("INT", Signal::SIGINT),
    ("QUIT", Signal::SIGQUIT),
    ("HUP", Signal::SIGHUP),
    ("USR1", Signal::SIGUSR1),
    ("USR2", Signal::SIGUSR2),
    ("KILL", Signal::SIGKILL),
];

const MIB: u64 = 1024 * 1024;

/// Reads `[program.NAME]`. `cwd` is supergo's working directory, the default `directory`.
pub fn read(s: &Section, name: &str, cwd: &Path) -> Result<ProgramConfig, ConfigError> {
    check_name(s, name)?;
    s.check_keys(KEYS)?;
    let (backoff, backoff_max) = backoff(s)?;
    let (listen_addrs, listen_names) = listeners(s, name)?;
    Ok(ProgramConfig {
        name: name.to_string(),
        argv: argv(s)?,
        directory: directory(s, cwd)?,
        autostart: s.boolean("autostart")?.unwrap_or(true),
        auto_restart: auto_restart(s)?,
        exit_codes: exit_codes(s)?,
        start_secs: s
            .seconds("start_secs", false)?
            .unwrap_or(Duration::from_secs(1)),
        max_retry: s
            .integer("max_retry", 0, u32::MAX.into())?
            .map_or(3, as_u32),
        backoff,
        backoff_max,
        listen_addrs,
        listen_names,
        socket_mode: mode(s, "socket_mode")?.unwrap_or(0o660),
        ready: ready(s)?,
        ready_timeout: s
            .seconds("ready_timeout", true)?
            .unwrap_or(Duration::from_secs(60)),
        stop_signal: stop_signal(s)?,
        stop_timeout: s
            .seconds("stop_timeout", false)?
            .unwrap_or(Duration::from_secs(10)),
        stop_as_group: s.boolean("stop_as_group")?.unwrap_or(true),
        stop_before_restart: s.boolean("stop_before_restart")?.unwrap_or(false),
        stdout_file: log_file(s, "stdout_file", "stdout_logfile")?,
        stderr_file: log_file(s, "stderr_file", "stderr_logfile")?,
        redirect_stderr: s.boolean("redirect_stderr")?.unwrap_or(false),
        log_max_bytes: log_max_bytes(s)?,
        log_backups: s
            .integer("log_backups", 0, u32::MAX.into())?
            .map_or(10, as_u32),
        user: account(s, "user")?,
        group: account(s, "group")?,
        umask: mode(s, "umask")?,
        environment: environment(s)?,
        clear_env: s.boolean("clear_env")?.unwrap_or(false),
        priority: s
            .integer("priority", i32::MIN.into(), i32::MAX.into())?
            .map_or(999, as_i32),
        rlimits: rlimits(s)?,
        essential: s.boolean("essential")?.unwrap_or(false),
        // The parser gives every key a span; 0 would mean "line unknown".
        origin: Origin {
            file: s.file.path.clone(),
            line: s.line().unwrap_or(0),
        },
    })
}

/// The range checks of the getters make these conversions lossless.
fn as_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn as_i32(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// A name travels in URLs (`/restart/NAME`), log file names and `LISTEN_FDNAMES`: keep it
/// to characters that need no quoting anywhere.
fn check_name(s: &Section, name: &str) -> Result<(), ConfigError> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || !name.chars().all(valid) {
        return Err(s.error("invalid program name: use only letters, digits, `_`, `.` and `-`"));
    }
    if name == "all" {
        return Err(
            s.error("the name `all` is reserved: the control API uses it for every program")
        );
    }
    Ok(())
}

/// `command` split like a shell, then `args`.
fn argv(s: &Section) -> Result<Vec<String>, ConfigError> {
    let Some(node) = s.node("command") else {
        return Err(s.error(
            "`command` is missing: say what to run, as in command = \"./server --port 8080\"",
        ));
    };
    let command = s.as_string("command", node, "a string, as in \"./server --port 8080\"")?;
    let mut argv = shell::split(&command).map_err(|err| {
        s.item_error(
            "command",
            node,
            format!("cannot be split into words: {err}"),
        )
    })?;
    if argv.is_empty() {
        return Err(s.item_error("command", node, "is empty: say what to run"));
    }
    argv.extend(s.strings("args")?.unwrap_or_default());
    Ok(argv)
}

/// `directory`: must exist now, so a typo shows at load and not at the first start.
fn directory(s: &Section, cwd: &Path) -> Result<PathBuf, ConfigError> {
    // "" is what the original supergo's configs hold for "no directory": supergo's own.
    let Some(text) = s.string("directory")?.filter(|text| !text.is_empty()) else {
        return Ok(cwd.to_path_buf());
    };
    let path = s.file.resolve(&text);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(s.key_error(
            "directory",
            format!("{} is not a directory", path.display()),
        )),
        Err(err) => Err(s.key_error("directory", format!("{}: {err}", path.display()))),
    }
}

fn auto_restart(s: &Section) -> Result<AutoRestart, ConfigError> {
    let Some(node) = s.node("auto_restart") else {
        return Ok(AutoRestart::Always);
    };
    match &node.value {
        Value::Boolean(true) => Ok(AutoRestart::Always),
        Value::Boolean(false) => Ok(AutoRestart::Never),
        Value::String(text) if text == "unexpected" => Ok(AutoRestart::Unexpected),
        _ => Err(s.wrong_type("auto_restart", node, "true, false or \"unexpected\"")),
    }
}

fn exit_codes(s: &Section) -> Result<Vec<i32>, ConfigError> {
    let codes = s.array(
        "exit_codes",
        "an array of exit codes, like [0, 2]",
        |node| s.as_integer("exit_codes", node, 0, 255).map(as_i32),
    )?;
    Ok(codes.unwrap_or_else(|| vec![0]))
}

/// `backoff_secs` and its cap. Without an explicit cap, a first delay above 30 s is its own
/// cap rather than an error nobody asked for.
fn backoff(s: &Section) -> Result<(Duration, Duration), ConfigError> {
    let backoff = s
        .seconds("backoff_secs", true)?
        .unwrap_or(Duration::from_secs(1));
    match s.seconds("backoff_max_secs", true)? {
        None => Ok((backoff, backoff.max(Duration::from_secs(30)))),
        Some(max) if max >= backoff => Ok((backoff, max)),
        Some(max) => Err(s.key_error(
            "backoff_max_secs",
            format!(
                "({} s) must not be less than `backoff_secs` ({} s)",
                max.as_secs_f64(),
                backoff.as_secs_f64()
            ),
        )),
    }
}

/// `listen_addrs` and one `LISTEN_FDNAMES` name for each.
fn listeners(s: &Section, name: &str) -> Result<(Vec<ListenAddr>, Vec<String>), ConfigError> {
    let addrs = s
        .array(
            "listen_addrs",
            "an array of addresses, like [\":8080\"]",
            |node| {
                let text =
                    s.as_string("listen_addrs", node, "an address string, like \":8080\"")?;
                ListenAddr::parse(&text, &s.file.dir)
                    .map_err(|err| s.item_error("listen_addrs", node, err))
            },
        )?
        .unwrap_or_default();
    if let Some(twice) = addrs
        .iter()
        .enumerate()
        .find(|(i, addr)| addrs[..*i].contains(addr))
    {
        return Err(s.key_error("listen_addrs", format!("lists {} twice", twice.1)));
    }
    let names = match s.node("listen_names") {
        None => vec![name.to_string(); addrs.len()],
        Some(node) => listen_names(s, node, addrs.len())?,
    };
    Ok((addrs, names))
}

/// systemd's rule for fd names (`sd_listen_fds_with_names`): 1 to 255 printable ASCII
/// characters, no `:` (the separator in `LISTEN_FDNAMES`).
fn listen_names(s: &Section, node: &Node, count: usize) -> Result<Vec<String>, ConfigError> {
    let names = s
        .array(
            "listen_names",
            "an array of names, one per listen_addrs entry",
            |item| {
                let name = s.as_string("listen_names", item, "a string")?;
                let printable = name.chars().all(|c| c.is_ascii_graphic() || c == ' ');
                if name.is_empty() || name.len() > 255 || !printable || name.contains(':') {
                    let why = "must be 1 to 255 printable ASCII characters without `:`";
                    return Err(s.item_error(
                        "listen_names",
                        item,
                        format!("entry {name:?} {why}"),
                    ));
                }
                Ok(name)
            },
        )?
        .unwrap_or_default();
    if names.len() != count {
        let message = format!(
            "has {} names for {count} listen_addrs: give one name per address",
            names.len()
        );
        return Err(s.item_error("listen_names", node, message));
    }
    Ok(names)
}

/// A permission mode (`socket_mode`, `umask`): an octal string ("0660") or a TOML integer
/// written in octal (0o660). A decimal integer is refused: `660` is almost certainly meant
/// as octal, and taking it as 0o1224 would silently set the wrong bits.
fn mode(s: &Section, key: &str) -> Result<Option<u32>, ConfigError> {
    let Some(node) = s.node(key) else {
        return Ok(None);
    };
    let hint = format!(
        "write it in octal, as \"0660\" or 0o660, not {}",
        describe(&node.value)
    );
    let value = match &node.value {
        Value::String(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8).ok(),
        Value::Integer(value) if *value == 0 || written_in_octal(s, node) => {
            u32::try_from(*value).ok()
        }
        _ => None,
    };
    match value {
        Some(mode) if mode <= 0o777 => Ok(Some(mode)),
        Some(mode) => Err(s.item_error(key, node, format!("{mode:o} is not a mode (at most 777)"))),
        None => Err(s.item_error(key, node, format!("must be a mode: {hint}"))),
    }
}

fn written_in_octal(s: &Section, node: &Node) -> bool {
    let text = node.span.as_ref().and_then(|span| s.file.text_of(span));
    text.is_some_and(|text| text.trim_start_matches('+').starts_with("0o"))
}

fn ready(s: &Section) -> Result<ReadyMode, ConfigError> {
    match s.string("ready")?.as_deref() {
        None | Some("uptime") => Ok(ReadyMode::Uptime),
        Some("notify") => Ok(ReadyMode::Notify),
        Some(other) => Err(s.key_error(
            "ready",
            format!("must be \"uptime\" or \"notify\", not {other:?}"),
        )),
    }
}

/// `stop_signal`: "TERM", "SIGTERM", "term" are the same.
fn stop_signal(s: &Section) -> Result<Signal, ConfigError> {
    let Some(text) = s.string("stop_signal")? else {
        return Ok(Signal::SIGTERM);
    };
    let upper = text.to_ascii_uppercase();
    let short = upper.strip_prefix("SIG").unwrap_or(&upper);
    STOP_SIGNALS
        .iter()
        .find(|(name, _)| *name == short)
        .map(|(_, signal)| *signal)
        .ok_or_else(|| {
            let names: Vec<&str> = STOP_SIGNALS.iter().map(|(name, _)| *name).collect();
            s.key_error(
                "stop_signal",
                format!("must be one of {}, not {text:?}", names.join(" ")),
            )
        })
}

/// `stdout_file` or its alias `stdout_logfile` (likewise stderr). "" means discarded, as in
/// the original supergo.
fn log_file(s: &Section, key: &str, alias: &str) -> Result<Option<PathBuf>, ConfigError> {
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

/// `log_max_bytes`: bytes, or a size string such as "50MB" (KB, MB, GB are powers of 1024,
/// as in supervisord; "KiB" etc. are taken too).
fn log_max_bytes(s: &Section) -> Result<u64, ConfigError> {
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

/// `user` / `group`: looked up now, so that a typo is a config error rather than a failed
/// start; spawn looks the name up again before each fork.
fn account(s: &Section, key: &str) -> Result<Option<String>, ConfigError> {
    let Some(name) = s.string(key)? else {
        return Ok(None);
    };
    let found = if key == "user" {
        User::from_name(&name).map(|user| user.is_some())
    } else {
        Group::from_name(&name).map(|group| group.is_some())
    };
    match found {
        Ok(true) => Ok(Some(name)),
        Ok(false) => Err(s.at_key(key, format!("unknown {key} `{name}`"))),
        Err(err) => Err(s.key_error(key, format!("cannot look up {key} `{name}`: {err}"))),
    }
}

/// `environment`: NAME = value. Numbers and booleans are taken as their text (PORT = 8080).
fn environment(s: &Section) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut environment = BTreeMap::new();
    for entry in s
        .table("environment")?
        .map_or(&[][..], |table| &table.entries)
    {
        let at = |message: String| s.item_error("environment", &entry.node, message);
        let name = &entry.key;
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(at(format!(
                "has an invalid variable name {name:?}: no `=`, no NUL, not empty"
            )));
        }
        let value = match &entry.node.value {
            Value::String(text) => text.clone(),
            Value::Integer(value) => value.to_string(),
            Value::Float(value) => value.to_string(),
            Value::Boolean(value) => value.to_string(),
            other => {
                return Err(at(format!(
                    "`{name}` must be a string, not {}",
                    describe(other)
                )))
            }
        };
        if value.contains('\0') {
            return Err(at(format!("`{name}` must not contain a NUL character")));
        }
        environment.insert(name.clone(), value);
    }
    Ok(environment)
}

/// `rlimits`: resource = limit, a limit being a whole number or "unlimited".
fn rlimits(s: &Section) -> Result<BTreeMap<String, u64>, ConfigError> {
    let mut limits = BTreeMap::new();
    for entry in s.table("rlimits")?.map_or(&[][..], |table| &table.entries) {
        let at = |message: String| s.item_error("rlimits", &entry.node, message);
        let name = &entry.key;
        if !RLIMITS.contains(&name.as_str()) {
            let hint = suggest::did_you_mean(name, RLIMITS);
            return Err(at(format!(
                "names an unknown resource `{name}`{hint} (known: {})",
                RLIMITS.join(" ")
            )));
        }
        let limit = match &entry.node.value {
            Value::Integer(value) if *value >= 0 => value.unsigned_abs(),
            Value::String(text) if text.eq_ignore_ascii_case("unlimited") => u64::MAX,
            other => {
                let found = describe(other);
                return Err(at(format!(
                    "`{name}` must be a whole number ≥ 0 or \"unlimited\", not {found}"
                )));
            }
        };
        limits.insert(name.clone(), limit);
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::parse_size;
    use crate::config::load::load_in;

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

    /// `essential`: off unless asked for, and a boolean, or an error at its line.
    #[test]
    fn essential() {
        let dir = std::env::temp_dir().join(format!("supergo-essential-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        let load = |text: &str| {
            std::fs::write(dir.join("supergo.toml"), text).expect("write the config");
            load_in(std::path::Path::new("supergo.toml"), &dir)
        };
        let config = load(
            "[program.web]\ncommand = \"sleep 1\"\nessential = true\n\n\
             [program.db]\ncommand = \"sleep 1\"\n",
        )
        .expect("a valid config");
        assert!(config.programs["web"].essential);
        assert!(!config.programs["db"].essential, "the default is false");
        let err = load("[program.web]\ncommand = \"sleep 1\"\nessential = \"yes\"\n")
            .expect_err("a string is no boolean")
            .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            err.contains("supergo.toml:3:") && err.contains("essential"),
            "names the file, line and key: {err}"
        );
        assert!(err.contains("true or false"), "{err}");
    }
}
