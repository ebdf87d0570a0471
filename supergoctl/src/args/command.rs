//! A command and its own arguments: `start web api`, `tail web stderr`, `restart all`.
//!
//! [`parse_command`] turns the command name and the free arguments after it into a
//! [`Command`]; options (`--no-wait`, `-f`, `--bytes`) are read by the caller and merged in
//! afterwards. Every mistake is a usage error that ends with the command's usage line.

use crate::error::CtlError;

use super::help::COMMANDS;

/// `tail` without `--bytes`: enough for the last few hundred lines.
pub const DEFAULT_TAIL_BYTES: u64 = 16 * 1024;

/// Which programs a start/stop/restart applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    All,
    Names(Vec<String>),
}

/// Which output stream `tail` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Empty `names` means every program.
    Status {
        names: Vec<String>,
    },
    Reread,
    Update,
    Start(Targets),
    Stop(Targets),
    Restart {
        targets: Targets,
        wait: bool,
    },
    Tail {
        name: String,
        stream: Stream,
        follow: bool,
        bytes: u64,
    },
    /// Re-execute supergo in place from `binary` (default: the path it was started from).
    Upgrade {
        binary: Option<String>,
    },
    Version,
}

/// The usage line of `upgrade`, whose only argument is an option.
pub const UPGRADE_USAGE: &str = "supergoctl upgrade [--binary PATH]";

/// A command name with its arguments, before the option flags are merged in.
#[derive(Debug)]
pub enum Pending {
    Help,
    Cmd(Command),
}

/// `name` is the first free argument, `args` the free arguments after it.
pub fn parse_command(name: &str, args: Vec<String>) -> Result<Pending, CtlError> {
    let none = |cmd: Command| {
        if args.is_empty() {
            Ok(Pending::Cmd(cmd))
        } else {
            Err(CtlError::usage(format!(
                "'{name}' takes no arguments, got '{}' (usage: supergoctl {name})",
                args.join(" ")
            )))
        }
    };
    match name {
        "status" => {
            check_names(name, &args)?;
            let names = if args.iter().any(|a| a == "all") {
                Vec::new()
            } else {
                args
            };
            Ok(Pending::Cmd(Command::Status { names }))
        }
        "reread" => none(Command::Reread),
        "update" => none(Command::Update),
        "version" => none(Command::Version),
        "help" => Ok(Pending::Help),
        "start" => Ok(Pending::Cmd(Command::Start(targets(name, args)?))),
        "stop" => Ok(Pending::Cmd(Command::Stop(targets(name, args)?))),
        "restart" => Ok(Pending::Cmd(Command::Restart {
            targets: targets(name, args)?,
            wait: true,
        })),
        "tail" => tail(args),
        "upgrade" => match args.first() {
            None => Ok(Pending::Cmd(Command::Upgrade { binary: None })),
            Some(_) => Err(CtlError::usage(format!(
                "'upgrade' takes no arguments, got '{}' (usage: {UPGRADE_USAGE})",
                args.join(" ")
            ))),
        },
        other => Err(CtlError::usage(format!(
            "unknown command '{other}' (commands: {COMMANDS}; see 'supergoctl --help')"
        ))),
    }
}

fn targets(cmd: &str, names: Vec<String>) -> Result<Targets, CtlError> {
    let hint = if cmd == "restart" {
        "usage: supergoctl restart [--no-wait] NAME...|all".to_string()
    } else {
        format!("usage: supergoctl {cmd} NAME...|all")
    };
    if names.is_empty() {
        return Err(CtlError::usage(format!(
            "'{cmd}' needs a program name or 'all' ({hint})"
        )));
    }
    check_names(cmd, &names)?;
    if names.iter().any(|n| n == "all") {
        if names.len() > 1 {
            return Err(CtlError::usage(format!(
                "'all' cannot be combined with program names ({hint})"
            )));
        }
        return Ok(Targets::All);
    }
    Ok(Targets::Names(names))
}

fn check_names(cmd: &str, names: &[String]) -> Result<(), CtlError> {
    if names.iter().any(|n| n.trim().is_empty()) {
        return Err(CtlError::usage(format!("'{cmd}': a program name is empty")));
    }
    Ok(())
}

fn tail(args: Vec<String>) -> Result<Pending, CtlError> {
    const HINT: &str = "usage: supergoctl tail [-f] [--bytes N] NAME [stdout|stderr]";
    let mut args = args.into_iter();
    let Some(name) = args.next() else {
        return Err(CtlError::usage(format!(
            "'tail' needs a program name ({HINT})"
        )));
    };
    check_names("tail", std::slice::from_ref(&name))?;
    let stream = match args.next().as_deref() {
        None | Some("stdout") => Stream::Stdout,
        Some("stderr") => Stream::Stderr,
        Some(other) => {
            return Err(CtlError::usage(format!(
                "'tail': unknown stream '{other}', expected stdout or stderr ({HINT})"
            )))
        }
    };
    if let Some(extra) = args.next() {
        return Err(CtlError::usage(format!(
            "'tail': unexpected argument '{extra}' ({HINT})"
        )));
    }
    Ok(Pending::Cmd(Command::Tail {
        name,
        stream,
        follow: false,
        bytes: DEFAULT_TAIL_BYTES,
    }))
}
