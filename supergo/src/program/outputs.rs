//! The pipes a program's output goes through, and the log settings they were made for.
//!
//! Every generation shares them; a config with other log settings gets new ones (the old
//! pipes keep being drained while old processes still write into them). An upgrade would
//! serialize the settings and hand the pipes' read ends over as fds.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::config::ProgramConfig;
use crate::logs::{LogHub, LogPipe, LogTarget};

/// The part of a program's config that decides where its output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LogSettings {
    pub stdout_file: Option<PathBuf>,
    pub stderr_file: Option<PathBuf>,
    pub redirect_stderr: bool,
    pub max_bytes: u64,
    pub backups: u32,
}

impl LogSettings {
    /// True when `c` asks for these settings (compared in place: every spawn asks).
    pub fn are_those_of(&self, c: &ProgramConfig) -> bool {
        self.stdout_file == c.stdout_file
            && self.stderr_file == c.stderr_file
            && self.redirect_stderr == c.redirect_stderr
            && self.max_bytes == c.log_max_bytes
            && self.backups == c.log_backups
    }

    pub fn of(c: &ProgramConfig) -> LogSettings {
        LogSettings {
            stdout_file: c.stdout_file.clone(),
            stderr_file: c.stderr_file.clone(),
            redirect_stderr: c.redirect_stderr,
            max_bytes: c.log_max_bytes,
            backups: c.log_backups,
        }
    }
}

pub(super) struct Outputs {
    pub settings: LogSettings,
    stdout: Option<LogPipe>,
    stderr: Option<LogPipe>,
}

impl Outputs {
    pub fn open(logs: &LogHub, c: &ProgramConfig) -> Result<Outputs, String> {
        let pipe = |stream: &str, path: &Option<PathBuf>| -> Result<Option<LogPipe>, String> {
            let Some(path) = path else { return Ok(None) };
            let target = LogTarget {
                path: path.clone(),
                max_bytes: c.log_max_bytes,
                backups: c.log_backups,
            };
            logs.open(&c.name, stream, target).map(Some).map_err(|e| {
                format!(
                    "{}: cannot create the {stream} pipe for {}: {e}",
                    c.name,
                    path.display()
                )
            })
        };
        let stdout = pipe("stdout", &c.stdout_file)?;
        let stderr = if c.redirect_stderr {
            None
        } else {
            pipe("stderr", &c.stderr_file)?
        };
        Ok(Outputs {
            settings: LogSettings::of(c),
            stdout,
            stderr,
        })
    }

    /// Outputs rebuilt by an upgrade in place from the pipes the log hub took back.
    pub fn from_parts(
        settings: LogSettings,
        stdout: Option<LogPipe>,
        stderr: Option<LogPipe>,
    ) -> Outputs {
        Outputs {
            settings,
            stdout,
            stderr,
        }
    }

    /// Each stream's pipe, by name (what an upgrade in place writes).
    pub fn pipes(&self) -> [(&'static str, Option<&LogPipe>); 2] {
        [
            ("stdout", self.stdout.as_ref()),
            ("stderr", self.stderr.as_ref()),
        ]
    }

    /// fd 1 and fd 2 for a new child: pipe write ends, or /dev/null for a discarded stream.
    pub fn stdio(&self, c: &ProgramConfig) -> Result<(OwnedFd, OwnedFd), String> {
        let end = |pipe: &Option<LogPipe>| -> Result<OwnedFd, String> {
            match pipe {
                Some(p) => p.try_clone_write_end(),
                None => std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .map(Into::into),
            }
            .map_err(|e| format!("{}: cannot set up its output: {e}", c.name))
        };
        let stdout = end(&self.stdout)?;
        let stderr = if c.redirect_stderr {
            end(&self.stdout)?
        } else {
            end(&self.stderr)?
        };
        Ok((stdout, stderr))
    }
}
