//! A program's running config across an upgrade in place: written key by key into the
//! program's `[.config]` section, read back on top of the defaults (`config::program_defaults`).
//!
//! Why the running config travels, rather than the new image reading it from the file: the
//! config a program runs with is the one it was started or last updated with, which the file
//! may no longer say (someone edited it and has not run `update` yet). Carrying it keeps
//! what runs exactly as it was, and `reread` after the upgrade shows the same difference as
//! before it. A key the state lacks (written by an older supergo) takes its default, so a key
//! added later needs no migration; an unknown key (from a newer supergo) is skipped.
//!
//! Lists are a `KEY_count=N` line then N `KEY=` lines, so that an empty list and a missing one
//! (the default) differ. Nothing here looks at the system (no user, directory or DNS look-up):
//! what was valid when it was loaded is taken as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::config::{AutoRestart, Origin, ProgramConfig, ReadyMode};
use crate::handover::{SectionRef, StateError, StateWriter};
use crate::listener::ListenAddr;

/// The child section that holds a program's config.
pub(super) const SECTION: &str = "config";

/// Writes `config` as a `[.config]` child of the section opened last.
pub(super) fn write(w: &mut StateWriter, config: &ProgramConfig) {
    w.child(SECTION, "");
    write_list(w, "arg", config.argv.iter().map(String::as_str));
    w.write_path("directory", &config.directory)
        .write_bool("autostart", config.autostart)
        .write_str(
            "auto_restart",
            match config.auto_restart {
                AutoRestart::Always => "always",
                AutoRestart::Never => "never",
                AutoRestart::Unexpected => "unexpected",
            },
        );
    let codes: Vec<String> = config.exit_codes.iter().map(i32::to_string).collect();
    write_list(w, "exit_code", codes.iter().map(String::as_str));
    w.write_duration("start_secs", config.start_secs)
        .write_u64("max_retry", u64::from(config.max_retry))
        .write_duration("backoff", config.backoff)
        .write_duration("backoff_max", config.backoff_max);
    let addrs: Vec<String> = config.listen_addrs.iter().map(|a| a.to_string()).collect();
    write_list(w, "listen_addr", addrs.iter().map(String::as_str));
    write_list(
        w,
        "listen_name",
        config.listen_names.iter().map(String::as_str),
    );
    w.write_u64("socket_mode", u64::from(config.socket_mode))
        .write_str(
            "ready",
            match config.ready {
                ReadyMode::Uptime => "uptime",
                ReadyMode::Notify => "notify",
            },
        )
        .write_duration("ready_timeout", config.ready_timeout)
        .write_str("stop_signal", config.stop_signal.as_str())
        .write_duration("stop_timeout", config.stop_timeout)
        .write_bool("stop_as_group", config.stop_as_group)
        .write_bool("stop_before_restart", config.stop_before_restart);
    if let Some(path) = &config.stdout_file {
        w.write_path("stdout_file", path);
    }
    if let Some(path) = &config.stderr_file {
        w.write_path("stderr_file", path);
    }
    w.write_bool("redirect_stderr", config.redirect_stderr)
        .write_u64("log_max_bytes", config.log_max_bytes)
        .write_u64("log_backups", u64::from(config.log_backups));
    if let Some(user) = &config.user {
        w.write_str("user", user);
    }
    if let Some(group) = &config.group {
        w.write_str("group", group);
    }
    if let Some(umask) = config.umask {
        w.write_u64("umask", u64::from(umask));
    }
    let env: Vec<String> = (config.environment.iter())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    write_list(w, "env", env.iter().map(String::as_str));
    w.write_bool("clear_env", config.clear_env)
        .write_i64("priority", i64::from(config.priority))
        .write_bool("essential", config.essential);
    let limits: Vec<String> = (config.rlimits.iter())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    write_list(w, "rlimit", limits.iter().map(String::as_str));
    w.write_path("origin_file", &config.origin.file)
        .write_u64("origin_line", config.origin.line as u64);
}

fn write_list<'a>(w: &mut StateWriter, key: &str, items: impl ExactSizeIterator<Item = &'a str>) {
    w.write_u64(&format!("{key}_count"), items.len() as u64);
    for item in items {
        w.write_str(key, item);
    }
}

/// The config of program `name` from its `[.config]` section, on top of the defaults.
pub(super) fn read(program: &SectionRef<'_>, name: &str) -> Result<ProgramConfig, StateError> {
    let s = program
        .child(SECTION)
        .ok_or_else(|| program.error("no [.config] section: the program's config is missing"))?;
    let directory = s.path("directory")?.unwrap_or_else(|| PathBuf::from("/"));
    let mut c = crate::config::program_defaults(name, &directory)
        .map_err(|e| s.error(format!("program name {name:?}: {e}")))?;
    if let Some(argv) = read_list(&s, "arg", |a| Some(a.to_string()))? {
        if argv.is_empty() {
            return Err(s.error("`arg_count` is 0: a program runs a command"));
        }
        c.argv = argv;
    }
    c.autostart = s.bool_or("autostart", c.autostart)?;
    c.auto_restart = match s.str("auto_restart")? {
        None => c.auto_restart,
        Some("always") => AutoRestart::Always,
        Some("never") => AutoRestart::Never,
        Some("unexpected") => AutoRestart::Unexpected,
        Some(other) => return Err(bad(&s, "auto_restart", other)),
    };
    if let Some(codes) = read_list(&s, "exit_code", |v| v.parse::<i32>().ok())? {
        c.exit_codes = codes;
    }
    c.start_secs = s.duration_or("start_secs", c.start_secs)?;
    c.max_retry = s.u32_or("max_retry", c.max_retry)?;
    c.backoff = s.duration_or("backoff", c.backoff)?;
    c.backoff_max = s.duration_or("backoff_max", c.backoff_max)?;
    if let Some(addrs) = read_list(&s, "listen_addr", |a| {
        ListenAddr::parse(a, Path::new("/")).ok()
    })? {
        c.listen_addrs = addrs;
    }
    if let Some(names) = read_list(&s, "listen_name", |n| Some(n.to_string()))? {
        c.listen_names = names;
    }
    c.socket_mode = s.u32_or("socket_mode", c.socket_mode)?;
    c.ready = match s.str("ready")? {
        None => c.ready,
        Some("uptime") => ReadyMode::Uptime,
        Some("notify") => ReadyMode::Notify,
        Some(other) => return Err(bad(&s, "ready", other)),
    };
    c.ready_timeout = s.duration_or("ready_timeout", c.ready_timeout)?;
    if let Some(signal) = s.str("stop_signal")? {
        c.stop_signal = Signal::from_str(signal).map_err(|_| bad(&s, "stop_signal", signal))?;
    }
    c.stop_timeout = s.duration_or("stop_timeout", c.stop_timeout)?;
    c.stop_as_group = s.bool_or("stop_as_group", c.stop_as_group)?;
    c.stop_before_restart = s.bool_or("stop_before_restart", c.stop_before_restart)?;
    c.stdout_file = s.path("stdout_file")?;
    c.stderr_file = s.path("stderr_file")?;
    c.redirect_stderr = s.bool_or("redirect_stderr", c.redirect_stderr)?;
    c.log_max_bytes = s.u64_or("log_max_bytes", c.log_max_bytes)?;
    c.log_backups = s.u32_or("log_backups", c.log_backups)?;
    c.user = s.str("user")?.map(str::to_string);
    c.group = s.str("group")?.map(str::to_string);
    c.umask = s.str("umask")?.map(|_| s.u32_or("umask", 0)).transpose()?;
    if let Some(env) = read_list(&s, "env", pair)? {
        c.environment = env.into_iter().collect::<BTreeMap<_, _>>();
    }
    c.clear_env = s.bool_or("clear_env", c.clear_env)?;
    c.essential = s.bool_or("essential", c.essential)?;
    let priority = s.i64_or("priority", i64::from(c.priority))?;
    c.priority = i32::try_from(priority).map_err(|_| bad(&s, "priority", &priority.to_string()))?;
    if let Some(limits) = read_list(&s, "rlimit", |l| {
        pair(l).and_then(|(k, v)| Some((k, v.parse::<u64>().ok()?)))
    })? {
        c.rlimits = limits.into_iter().collect();
    }
    c.origin = Origin {
        file: s.path("origin_file")?.unwrap_or_default(),
        line: s.u64_or("origin_line", 0)? as usize,
    };
    Ok(c)
}

/// The list `key`, when the state has one (`KEY_count` present); each item through `parse`.
fn read_list<T>(
    s: &SectionRef<'_>,
    key: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<Vec<T>>, StateError> {
    let count_key = format!("{key}_count");
    let items = s.list(key)?;
    let Some(count) = s.str(&count_key)? else {
        return Ok(None);
    };
    if count.parse::<usize>().ok() != Some(items.len()) {
        return Err(s.error(format!(
            "`{count_key}` says {count}, but {} `{key}` line(s) follow",
            items.len()
        )));
    }
    items
        .into_iter()
        .map(|item| parse(item).ok_or_else(|| bad(s, key, item)))
        .collect::<Result<Vec<T>, StateError>>()
        .map(Some)
}

fn pair(text: &str) -> Option<(String, String)> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
}

fn bad(s: &SectionRef<'_>, key: &str, value: &str) -> StateError {
    s.error(format!(
        "`{key}` holds {value:?}, which this supergo cannot read"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handover::State;
    use std::time::Duration;

    #[test]
    fn a_config_round_trips_through_the_state() {
        let mut config =
            crate::config::program_defaults("web", Path::new("/tmp")).expect("defaults");
        config.argv = vec!["./server".into(), "--name=a b".into(), String::new()];
        config.exit_codes = vec![];
        config.listen_addrs = vec![
            ListenAddr::Tcp("127.0.0.1:4041".parse().expect("addr")),
            ListenAddr::Unix("/run/web.sock".into()),
        ];
        config.listen_names = vec!["http".into(), "unix".into()];
        config.ready = ReadyMode::Notify;
        config.stop_signal = Signal::SIGQUIT;
        config.start_secs = Duration::from_millis(250);
        config.stdout_file = Some("/var/log/web.out".into());
        config.umask = Some(0o022);
        config.environment.insert("A".into(), "x=y".into());
        config.rlimits.insert("nofile".into(), 4096);
        config.auto_restart = AutoRestart::Unexpected;
        config.priority = -5;
        config.essential = true;
        config.origin = Origin {
            file: "/etc/supergo.toml".into(),
            line: 7,
        };
        let mut w = StateWriter::new();
        w.section("program", "web");
        write(&mut w, &config);
        let text = w.finish().text;
        let state = State::parse(&text).expect("parses");
        let program = state.section("program").expect("the program");
        let back = read(&program, "web").expect("reads");
        assert_eq!(back, config);
        assert_eq!(back.origin, config.origin);
    }

    #[test]
    fn missing_keys_take_their_defaults() {
        let text =
            "supergo-state 1.0\n[program web]\n[.config]\narg_count=1\narg=sleep\ndirectory=/tmp\n";
        let state = State::parse(text).expect("parses");
        let program = state.section("program").expect("the program");
        let config = read(&program, "web").expect("reads");
        assert_eq!(config.argv, ["sleep"]);
        assert_eq!(config.exit_codes, [0]);
        assert_eq!(config.stop_timeout, Duration::from_secs(10));
    }
}
