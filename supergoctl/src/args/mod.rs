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

use command::{parse_command, Pending};
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
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &EnvDefaults) -> Result<Parsed, CtlError> {
        parse(args.iter().map(OsString::from).collect(), env)
    }

    fn cli(args: &[&str]) -> Cli {
        match parse_with(args, &EnvDefaults::default()) {
            Ok(Parsed::Run(cli)) => cli,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn usage_error(args: &[&str]) -> String {
        match parse_with(args, &EnvDefaults::default()) {
            Err(CtlError::Usage(msg)) => msg,
            other => panic!("{args:?} should be a usage error, gave {other:?}"),
        }
    }

    fn names(list: &[&str]) -> Targets {
        Targets::Names(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn defaults() {
        let c = cli(&["status"]);
        assert_eq!(c.endpoint.base, "http://127.0.0.1:22106");
        assert_eq!(c.token, None);
        assert!(!c.json);
        assert_eq!(c.command, Command::Status { names: vec![] });
    }

    #[test]
    fn options_before_or_after_the_command() {
        let c = cli(&[
            "--url",
            "10.0.0.1:1",
            "--json",
            "status",
            "web",
            "--token",
            "s3",
        ]);
        assert_eq!(c.endpoint.base, "http://10.0.0.1:1");
        assert_eq!(c.token.as_deref(), Some("s3"));
        assert!(c.json);
        assert_eq!(
            c.command,
            Command::Status {
                names: vec!["web".into()]
            }
        );
        assert_eq!(cli(&["--url=h:2", "reread"]).endpoint.base, "http://h:2");
    }

    #[test]
    fn go_style_url_of_the_original_client() {
        assert_eq!(
            cli(&["-url", "http://127.0.0.1:9/", "update"])
                .endpoint
                .base,
            "http://127.0.0.1:9"
        );
        assert_eq!(
            cli(&["-url=:7", "update"]).endpoint.base,
            "http://127.0.0.1:7"
        );
    }

    #[test]
    fn environment_is_the_fallback() {
        let env = EnvDefaults {
            url: Some("envhost:5".into()),
            token: Some(" tok \n".into()),
        };
        let Ok(Parsed::Run(c)) = parse_with(&["status"], &env) else {
            panic!("should parse");
        };
        assert_eq!(c.endpoint.base, "http://envhost:5");
        assert_eq!(c.token.as_deref(), Some("tok"));
        let Ok(Parsed::Run(c)) = parse_with(&["--url", "h:6", "--token", "x", "status"], &env)
        else {
            panic!("should parse");
        };
        assert_eq!(c.endpoint.base, "http://h:6");
        assert_eq!(c.token.as_deref(), Some("x"));
        let env = EnvDefaults {
            url: Some("https://x".into()),
            token: None,
        };
        match parse_with(&["status"], &env) {
            Err(CtlError::Usage(m)) => assert!(m.starts_with("bad SUPERGO_URL"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn program_commands() {
        assert_eq!(
            cli(&["start", "a", "b"]).command,
            Command::Start(names(&["a", "b"]))
        );
        assert_eq!(cli(&["stop", "all"]).command, Command::Stop(Targets::All));
        assert_eq!(
            cli(&["restart", "web"]).command,
            Command::Restart {
                targets: names(&["web"]),
                wait: true
            }
        );
        assert_eq!(
            cli(&["restart", "--no-wait", "all"]).command,
            Command::Restart {
                targets: Targets::All,
                wait: false
            }
        );
        assert_eq!(
            cli(&["status", "all"]).command,
            Command::Status { names: vec![] }
        );
        assert_eq!(cli(&["version"]).command, Command::Version);
        assert_eq!(cli(&["--version"]).command, Command::Version);
    }

    #[test]
    fn tail_arguments() {
        assert_eq!(
            cli(&["tail", "web"]).command,
            Command::Tail {
                name: "web".into(),
                stream: Stream::Stdout,
                follow: false,
                bytes: DEFAULT_TAIL_BYTES
            }
        );
        assert_eq!(
            cli(&["tail", "-f", "web", "stderr", "--bytes", "100"]).command,
            Command::Tail {
                name: "web".into(),
                stream: Stream::Stderr,
                follow: true,
                bytes: 100
            }
        );
        assert!(usage_error(&["tail"]).contains("needs a program name"));
        assert!(usage_error(&["tail", "web", "stdin"]).contains("unknown stream 'stdin'"));
        assert!(usage_error(&["tail", "web", "--bytes", "0"]).contains("positive"));
    }

    #[test]
    fn help_wins_everywhere() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["help"],
            &["restart", "--help"],
            &["-help"],
        ] {
            assert!(
                matches!(parse_with(args, &EnvDefaults::default()), Ok(Parsed::Help)),
                "{args:?}"
            );
        }
    }

    #[test]
    fn usage_errors_say_what_and_hint_how() {
        assert!(usage_error(&[]).contains("no command given"));
        let m = usage_error(&["frobnicate"]);
        assert!(
            m.contains("unknown command 'frobnicate'") && m.contains("--help"),
            "{m}"
        );
        let m = usage_error(&["start"]);
        assert!(
            m.contains("needs a program name") && m.contains("usage:"),
            "{m}"
        );
        assert!(usage_error(&["restart", "all", "web"]).contains("cannot be combined"));
        assert!(usage_error(&["reread", "x"]).contains("takes no arguments"));
        assert!(usage_error(&["status", "--bogus"]).contains("unknown option '--bogus'"));
        assert!(usage_error(&["start", "--no-wait", "web"]).contains("restart' only"));
        assert!(usage_error(&["status", "-f"]).contains("'tail' only"));
        assert!(usage_error(&["--url"]).contains("--url"));
        assert!(usage_error(&["--url", "a:1", "--url", "b:2", "status"]).contains("more than once"));
        assert!(usage_error(&["--url", "https://h:1", "status"]).starts_with("bad --url"));
        assert!(usage_error(&["start", ""]).contains("empty"));
    }
}
