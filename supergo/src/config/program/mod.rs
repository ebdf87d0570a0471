//! One `[program.NAME]` table to a complete `ProgramConfig`: every key checked for its type
//! and range, every default applied (DESIGN.md "Config (TOML)" is the contract), every path
//! made absolute against the directory of the file that holds it.
//!
//! Checks that need more than one program (duplicate names, one address claimed twice) are
//! the loader's.
//!
//! This file owns the list of keys and puts a `ProgramConfig` together; the keys that need
//! more than a typed getter of `section` are read by the part they belong to:
//! - `process`: what runs, where, as whom (`command`, `args`, `directory`, `user`, `group`,
//!   `environment`, `rlimits`);
//! - `lifecycle`: when it is up, restarted and stopped (`auto_restart`, `exit_codes`,
//!   `backoff_*`, `ready`, `stop_signal`);
//! - `listen`: its sockets (`listen_addrs`, `listen_names`);
//! - `output`: where its output goes (`stdout_file`, `stderr_file`, `log_max_bytes`).

mod lifecycle;
mod listen;
mod output;
mod process;

use std::path::Path;
use std::time::Duration;

use super::section::{as_i32, as_u32, Section};
use super::{ConfigError, Origin, ProgramConfig};

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

/// Reads `[program.NAME]`. `cwd` is supergo's working directory, the default `directory`.
pub fn read(s: &Section, name: &str, cwd: &Path) -> Result<ProgramConfig, ConfigError> {
    check_name(s, name)?;
    s.check_keys(KEYS)?;
    let (backoff, backoff_max) = lifecycle::backoff(s)?;
    let (listen_addrs, listen_names) = listen::listeners(s, name)?;
    Ok(ProgramConfig {
        name: name.to_string(),
        argv: process::argv(s)?,
        directory: process::directory(s, cwd)?,
        autostart: s.boolean("autostart")?.unwrap_or(true),
        auto_restart: lifecycle::auto_restart(s)?,
        exit_codes: lifecycle::exit_codes(s)?,
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
        socket_mode: s.mode("socket_mode")?.unwrap_or(0o660),
        ready: lifecycle::ready(s)?,
        ready_timeout: s
            .seconds("ready_timeout", true)?
            .unwrap_or(Duration::from_secs(60)),
        stop_signal: lifecycle::stop_signal(s)?,
        stop_timeout: s
            .seconds("stop_timeout", false)?
            .unwrap_or(Duration::from_secs(10)),
        stop_as_group: s.boolean("stop_as_group")?.unwrap_or(true),
        stop_before_restart: s.boolean("stop_before_restart")?.unwrap_or(false),
        stdout_file: output::log_file(s, "stdout_file", "stdout_logfile")?,
        stderr_file: output::log_file(s, "stderr_file", "stderr_logfile")?,
        redirect_stderr: s.boolean("redirect_stderr")?.unwrap_or(false),
        log_max_bytes: output::log_max_bytes(s)?,
        log_backups: s
            .integer("log_backups", 0, u32::MAX.into())?
            .map_or(10, as_u32),
        user: process::account(s, "user")?,
        group: process::account(s, "group")?,
        umask: s.mode("umask")?,
        environment: process::environment(s)?,
        clear_env: s.boolean("clear_env")?.unwrap_or(false),
        priority: s
            .integer("priority", i32::MIN.into(), i32::MAX.into())?
            .map_or(999, as_i32),
        rlimits: process::rlimits(s)?,
        essential: s.boolean("essential")?.unwrap_or(false),
        // The parser gives every key a span; 0 would mean "line unknown".
        origin: Origin {
            file: s.file.path.clone(),
            line: s.line().unwrap_or(0),
        },
    })
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

#[cfg(test)]
mod tests {
    use crate::config::load::load_in;

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
