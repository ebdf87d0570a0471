//! The command line as a whole: options, the environment they fall back to, and the
//! resulting [`Cli`].
//!
//! `supergoctl [--url ADDR] [--token T] [--json] COMMAND [ARGS]`. Options may come before
//! or after the command. The original client's Go-style `-url ADDR` / `-url=ADDR` spelling
//! is accepted too. Every mistake is a [`CtlError::Usage`] whose text ends with a hint
//! (exit status 2); nothing here talks to the network.
//!
//! Submodules: `command` (a command name and its arguments), `help` (the help text).

mod command;
mod help;

use std::ffi::OsString;

use crate::client::{Endpoint, DEFAULT_ADDR};
use crate::error::CtlError;

use command::{parse_command, Pending, UPGRADE_USAGE};
pub use command::{Command, Stream, Targets, DEFAULT_TAIL_BYTES};
use help::COMMANDS;
pub use help::HELP;

/// A valid command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    pub endpoint: Endpoint,
    pub token: Option<String>,
    pub json: bool,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Run(Cli),
}

/// The environment variables that stand in for options (passed in, for tests).
#[derive(Debug, Clone, Default)]
pub struct EnvDefaults {
    pub url: Option<String>,
    pub token: Option<String>,
}

impl EnvDefaults {
    pub fn from_env() -> EnvDefaults {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        EnvDefaults {
            url: var("SUPERGO_URL"),
            token: var("SUPERGO_TOKEN"),
        }
    }
}

/// Options that take a value or are flags; used to tell "given twice" from "unknown".
const KNOWN_OPTIONS: &[&str] = &[
    "--url",
    "--token",
    "--json",
    "--no-wait",
    "-f",
    "--follow",
    "--bytes",
    "--binary",
    "-h",
    "--help",
    "-V",
    "--version",
];

/// Parses the arguments after the program name.
pub fn parse(args: Vec<OsString>, env: &EnvDefaults) -> Result<Parsed, CtlError> {
    let mut p = pico_args::Arguments::from_vec(args.into_iter().map(go_style_to_long).collect());
    if p.contains(["-h", "--help"]) {
        return Ok(Parsed::Help);
    }
    let bad = |e: pico_args::Error| CtlError::usage(format!("{e} (see 'supergoctl --help')"));
    let url: Option<String> = p.opt_value_from_str("--url").map_err(bad)?;
    let token: Option<String> = p.opt_value_from_str("--token").map_err(bad)?;
    let bytes: Option<u64> = p
        .opt_value_from_fn("--bytes", |s| match s.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("'{s}' is not a positive number of bytes")),
        })
        .map_err(bad)?;
    let binary: Option<String> = p.opt_value_from_str("--binary").map_err(bad)?;
    let json = p.contains("--json");
    let no_wait = p.contains("--no-wait");
    let follow = p.contains(["-f", "--follow"]);
    let version_flag = p.contains(["-V", "--version"]);

    let mut free = Vec::new();
    for arg in p.finish() {
        let arg = arg
            .into_string()
            .map_err(|a| CtlError::usage(format!("argument {a:?} is not valid UTF-8")))?;
        if arg.starts_with('-') && arg.len() > 1 {
            let key = arg.split('=').next().unwrap_or(&arg);
            return Err(if KNOWN_OPTIONS.contains(&key) {
                CtlError::usage(format!("option {key} is given more than once"))
            } else {
                CtlError::usage(format!("unknown option '{arg}' (see 'supergoctl --help')"))
            });
        }
        free.push(arg);
    }

    let mut free = free.into_iter();
    let command = match (free.next(), version_flag) {
        (None, true) => Command::Version,
        (None, false) => {
            return Err(CtlError::usage(format!(
                "no command given (commands: {COMMANDS}; see 'supergoctl --help')"
            )))
        }
        (Some(name), _) => match parse_command(&name, free.collect())? {
            Pending::Help => return Ok(Parsed::Help),
            Pending::Cmd(c) => c,
        },
    };

    if no_wait && !matches!(command, Command::Restart { .. }) {
        return Err(CtlError::usage("--no-wait applies to 'restart' only"));
    }
    if (follow || bytes.is_some()) && !matches!(command, Command::Tail { .. }) {
        return Err(CtlError::usage("-f and --bytes apply to 'tail' only"));
    }
    if binary.is_some() && !matches!(command, Command::Upgrade { .. }) {
        return Err(CtlError::usage("--binary applies to 'upgrade' only"));
    }
    if binary.as_deref().is_some_and(|path| path.trim().is_empty()) {
        return Err(CtlError::usage(format!(
            "--binary needs the path of a supergo binary (usage: {UPGRADE_USAGE})"
        )));
    }
    let command = match command {
        Command::Restart { targets, .. } => Command::Restart {
            targets,
            wait: !no_wait,
        },
        Command::Tail { name, stream, .. } => Command::Tail {
            name,
            stream,
            follow,
            bytes: bytes.unwrap_or(DEFAULT_TAIL_BYTES),
        },
        Command::Upgrade { .. } => Command::Upgrade { binary },
        other => other,
    };

    let (addr, from) = match url {
        Some(u) => (u, "--url"),
        None => match &env.url {
            Some(u) => (u.clone(), "SUPERGO_URL"),
            None => (DEFAULT_ADDR.to_string(), "the default address"),
        },
    };
    let endpoint =
        Endpoint::parse(&addr).map_err(|e| CtlError::usage(format!("bad {from}: {e}")))?;
    let token = token
        .or_else(|| env.token.clone())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());

    Ok(Parsed::Run(Cli {
        endpoint,
        token,
        json,
        command,
    }))
}

/// The original client was a Go program: `-url ADDR`, `-url=ADDR`, `-help`.
fn go_style_to_long(arg: OsString) -> OsString {
    let Some(s) = arg.to_str() else { return arg };
    for name in ["url", "token", "json", "help"] {
        let single = format!("-{name}");
        if s == single {
            return format!("-{single}").into();
        }
        if let Some(value) = s.strip_prefix(&format!("{single}=")) {
            return format!("--{name}={value}").into();
        }
    }
    arg
}

#[cfg(test)]
mod tests;
