//! Tests of the whole command line: options, environment, each command and its arguments.

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
    let Ok(Parsed::Run(c)) = parse_with(&["--url", "h:6", "--token", "x", "status"], &env) else {
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
fn upgrade_arguments() {
    assert_eq!(cli(&["upgrade"]).command, Command::Upgrade { binary: None });
    assert_eq!(
        cli(&["upgrade", "--binary", "/usr/local/bin/supergo"]).command,
        Command::Upgrade {
            binary: Some("/usr/local/bin/supergo".into())
        }
    );
    assert_eq!(
        cli(&["--binary=new/supergo", "upgrade"]).command,
        Command::Upgrade {
            binary: Some("new/supergo".into())
        }
    );
    let m = usage_error(&["upgrade", "/usr/local/bin/supergo"]);
    assert!(
        m.contains("takes no arguments") && m.contains("upgrade [--binary PATH]"),
        "{m}"
    );
    assert!(usage_error(&["upgrade", "--binary"]).contains("--binary"));
    assert!(usage_error(&["upgrade", "--binary", " "]).contains("needs the path"));
    assert!(usage_error(&["status", "--binary", "x"]).contains("'upgrade' only"));
    assert!(usage_error(&["upgrade", "--binary", "a", "--binary", "b"]).contains("more than once"));
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
