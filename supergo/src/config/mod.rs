//! The configuration: what supergo runs, as loaded and checked from TOML files.
//!
//! This module owns the *types* every other module reads. Loading lives in submodules:
//! `load` (files, `[supergo]`, checks across programs), `include` (`[include]` globs),
//! `program` (one `[program.NAME]`), `section` (typed getters with file:line errors),
//! `source` and `tree` (a TOML file parsed with the line of every key), `suggest`
//! (did-you-mean); splitting a `command` string like a shell lives in `shell`.
//!
//! A config is checked whole before anything changes: `load` either returns a complete,
//! valid `Config` or an error naming the file, line and key at fault.

mod defaults;
mod include;
mod load;
mod program;
mod section;
pub mod shell;
mod source;
mod suggest;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::listener::ListenAddr;

pub use defaults::program_defaults;
pub use load::load;

/// Default control API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:22106";

/// A whole, valid configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The main file, as given on the command line.
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    /// Every program, by name. Shared (`Arc`): the core's table and each program's worker
    /// hold the same one, not a copy each (~1 KB per program).
    pub programs: BTreeMap<String, Arc<ProgramConfig>>,
    /// Things worth telling the operator that do not stop the load (an include pattern that
    /// matched nothing, one found only from the working directory), one line each, naming
    /// the file.
    pub warnings: Vec<String>,
}

impl Config {
    /// Programs in start order: ascending `priority`, then name.
    pub fn start_order(&self) -> Vec<&Arc<ProgramConfig>> {
        let mut programs: Vec<&Arc<ProgramConfig>> = self.programs.values().collect();
        programs.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
        programs
    }
}

/// The `[supergo]` section.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DaemonConfig {
    /// Control API address (`listen`); `None` = `DEFAULT_LISTEN` unless `--listen` says.
    pub listen: Option<String>,
    /// Bearer token for the control API, from `token` or read from `token_file`.
    pub token: Option<String>,
    /// Allow a control address outside loopback without a token.
    pub allow_insecure: bool,
    /// Where the state file goes (`state_dir`, absolute); `None` = the default
    /// (`adopt::state_file::state_dir`).
    pub state_dir: Option<PathBuf>,
}

/// Where a program was defined, for error messages ("config/conf.d/web.toml:3").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// When an exited process is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoRestart {
    /// `true`: always.
    Always,
    /// `false`: never (the program ends `Exited`).
    Never,
    /// `"unexpected"`: when the exit code is not in `exit_codes`, or a signal killed it.
    Unexpected,
}

/// How a new process proves it is ready to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyMode {
    /// Alive for `start_secs`.
    Uptime,
    /// Sent `READY=1` to `NOTIFY_SOCKET` within `ready_timeout`.
    Notify,
}

/// One `[program.NAME]`, complete: every default applied, every path absolute.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramConfig {
    pub name: String,
    /// `command` split like a shell, then `args` appended. Never empty.
    pub argv: Vec<String>,
    /// Working directory, absolute (`directory`, else supergo's working directory).
    pub directory: PathBuf,
    pub autostart: bool,
    pub auto_restart: AutoRestart,
    pub exit_codes: Vec<i32>,
    pub start_secs: Duration,
    pub max_retry: u32,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub listen_addrs: Vec<ListenAddr>,
    /// One name per listener (`listen_names`, else the program name).
    pub listen_names: Vec<String>,
    pub socket_mode: u32,
    pub ready: ReadyMode,
    pub ready_timeout: Duration,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub stop_as_group: bool,
    pub stop_before_restart: bool,
    /// Absolute; `None` = discarded (`/dev/null`).
    pub stdout_file: Option<PathBuf>,
    pub stderr_file: Option<PathBuf>,
    pub redirect_stderr: bool,
    pub log_max_bytes: u64,
    pub log_backups: u32,
    pub user: Option<String>,
    pub group: Option<String>,
    pub umask: Option<u32>,
    pub environment: BTreeMap<String, String>,
    pub clear_env: bool,
    pub priority: i32,
    /// Resource name (`nofile`, `core`, …) to the value set as both soft and hard limit.
    pub rlimits: BTreeMap<String, u64>,
    /// `essential`: when it ends for good, supergo stops the others and exits (`essential`).
    pub essential: bool,
    /// Where `[program.NAME]` stands. Not part of what makes two configs equal for `update`.
    pub origin: Origin,
}

impl ProgramConfig {
    /// True when `other` runs the same thing the same way: `update` leaves such a program
    /// alone. The origin (file and line) does not count.
    pub fn same_as(&self, other: &ProgramConfig) -> bool {
        let mut a = self.clone();
        a.origin = other.origin.clone();
        a == *other
    }
}

/// A config that cannot be used. The message names the file, the line when known, the
/// program and the key at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}
