//! Config errors through the real binary: `supergo --check --config F` and a plain start
//! both refuse a bad config with exit status 1, start nothing, and name the file, the line
//! and the key at fault (DESIGN.md, "Config": "A config is checked whole before anything
//! changes … errors that name the file, line and key").
//!
//! Every bad config below also holds a valid program, `canary`, a probe that writes
//! `canary.json` the moment it starts: no report means nothing was started.

use std::path::Path;

use crate::util::{http_get, Supergo, TIMEOUT};

/// A valid program that proves, by the report it would write, that it was started.
const CANARY: &str = r#"
[program.canary]
command = "{probe} sleep"
start_secs = 0.2
stop_timeout = 1
environment = { PROBE_REPORT = "{dir}/canary.json" }
"#;

/// The 1-based number of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    line_where(text, 0, |line| line.contains(needle))
}

/// The 1-based number of the first line after line `after` for which `test` holds.
fn line_where(text: &str, after: usize, test: impl Fn(&str) -> bool) -> usize {
    text.lines()
        .enumerate()
        .skip(after)
        .find(|(_, line)| test(line))
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("the test config has no such line after line {after}:\n{text}"))
}

/// `file:line`, as a message shows it.
fn at(file: &Path, line: usize) -> String {
    format!("{}:{line}", file.display())
}

/// Asserts that `text` holds every fragment.
fn assert_names(sg: &Supergo, what: &str, text: &str, fragments: &[String]) {
    for fragment in fragments {
        assert!(
            text.contains(fragment.as_str()),
            "{what} does not name {fragment:?}:\n{text}{}",
            sg.dump()
        );
    }
}

/// Checks that `sg`'s config (already written) is refused twice, by `--check` and by a plain
/// start, with exit status 1, a message holding every fragment, and nothing started.
fn assert_refused(sg: &Supergo, fragments: &[String]) {
    let config = sg.config_path.display().to_string();

    let check = sg.run(&["--check", "--config", &config]);
    let stderr = String::from_utf8_lossy(&check.stderr).into_owned();
    assert_eq!(
        check.status.code(),
        Some(1),
        "`supergo --check` accepted a bad config ({}):\n{stderr}{}",
        check.status,
        sg.dump()
    );
    assert_names(sg, "the --check error", &stderr, fragments);

    sg.spawn(&[]);
    let status = sg.wait_exit(TIMEOUT);
    assert_eq!(
        status.code(),
        Some(1),
        "supergo started with a bad config ({status}){}",
        sg.dump()
    );
    assert_names(sg, "the start error", &sg.log(), fragments);

    assert!(
        !sg.path("canary.json").exists(),
        "a program was started from a config that was refused{}",
        sg.dump()
    );
    assert!(
        http_get(&sg.control, "/status").is_err(),
        "the control API answers although supergo refused its config{}",
        sg.dump()
    );
}

/// Writes `CANARY` followed by `program` as the main config; its expanded text.
fn write_with_canary(sg: &Supergo, program: &str) -> String {
    let text = format!("{CANARY}{program}");
    sg.write_config(&text);
    sg.expand(&text)
}

#[test]
fn unknown_key_is_refused_with_a_suggestion() {
    let sg = Supergo::new("unknown_key_is_refused_with_a_suggestion");
    let text = write_with_canary(
        &sg,
        r#"
[program.web]
command = "{probe} sleep"
stop_timout = 1
"#,
    );
    let line = line_of(&text, "stop_timout");
    assert_refused(
        &sg,
        &[
            at(&sg.config_path, line),
            "`stop_timout`".into(),
            "did you mean `stop_timeout`".into(),
            "web".into(),
        ],
    );
}

#[test]
fn wrong_type_is_refused() {
    let sg = Supergo::new("wrong_type_is_refused");
    let text = write_with_canary(
        &sg,
        r#"
[program.web]
command = "{probe} sleep"
start_secs = "abc"
"#,
    );
    let line = line_of(&text, "start_secs = \"abc\"");
    assert_refused(
        &sg,
        &[
            at(&sg.config_path, line),
            "start_secs".into(),
            "abc".into(),
            "web".into(),
        ],
    );
}

#[test]
fn bad_listen_address_is_refused() {
    let sg = Supergo::new("bad_listen_address_is_refused");
    let text = write_with_canary(
        &sg,
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["nope"]
"#,
    );
    let line = line_of(&text, "\"nope\"");
    assert_refused(
        &sg,
        &[
            at(&sg.config_path, line),
            "listen_addrs".into(),
            "nope".into(),
            "web".into(),
        ],
    );
}

#[test]
fn program_defined_in_main_file_and_include_is_refused() {
    let sg = Supergo::new("program_defined_in_main_file_and_include");
    let text = write_with_canary(
        &sg,
        r#"
[include]
files = "conf.d/*.toml"

[program.web]
command = "{probe} sleep"
"#,
    );
    let include = sg.write_file(
        "conf.d/web.toml",
        "[program.web]\ncommand = \"{probe} sleep\"\n",
    );
    let main_line = line_of(&text, "[program.web]");
    let file_name = include
        .file_name()
        .and_then(|name| name.to_str())
        .expect("a file name");
    assert_refused(
        &sg,
        &[
            at(&sg.config_path, main_line),
            format!("{file_name}:1"),
            "web".into(),
        ],
    );
}

#[test]
fn missing_command_is_refused() {
    let sg = Supergo::new("missing_command_is_refused");
    let text = write_with_canary(
        &sg,
        r#"
[program.web]
start_secs = 0.2
"#,
    );
    let line = line_of(&text, "[program.web]");
    assert_refused(
        &sg,
        &[at(&sg.config_path, line), "`command`".into(), "web".into()],
    );
}

#[test]
fn absent_config_file_is_refused_and_named() {
    let sg = Supergo::new("absent_config_file_is_refused_and_named");
    // Nothing written: supergo.toml does not exist.
    assert_refused(&sg, &[sg.config_path.display().to_string()]);
}

#[test]
fn directory_that_does_not_exist_is_refused() {
    let sg = Supergo::new("directory_that_does_not_exist_is_refused");
    let text = write_with_canary(
        &sg,
        r#"
[program.web]
command = "{probe} sleep"
directory = "{dir}/no-such-dir"
"#,
    );
    let line = line_of(&text, "no-such-dir");
    assert_refused(
        &sg,
        &[
            at(&sg.config_path, line),
            "directory".into(),
            sg.path("no-such-dir").display().to_string(),
            "web".into(),
        ],
    );
}

#[test]
fn unknown_user_is_refused() {
    let sg = Supergo::new("unknown_user_is_refused");
    let text = write_with_canary(
        &sg,
        r#"
[program.web]
command = "{probe} sleep"
user = "no-such-user-supergo"
"#,
    );
    let line = line_of(&text, "no-such-user-supergo");
    assert_refused(
        &sg,
        &[
            at(&sg.config_path, line),
            "user".into(),
            "no-such-user-supergo".into(),
            "web".into(),
        ],
    );
}

#[test]
fn program_name_with_a_space_is_refused() {
    let sg = Supergo::new("program_name_with_a_space_is_refused");
    let text = write_with_canary(
        &sg,
        r#"
[program."my web"]
command = "{probe} sleep"
"#,
    );
    let line = line_of(&text, "[program.\"my web\"]");
    assert_refused(&sg, &[at(&sg.config_path, line), "my web".into()]);
}

#[test]
fn program_name_with_a_slash_is_refused() {
    let sg = Supergo::new("program_name_with_a_slash_is_refused");
    let text = write_with_canary(
        &sg,
        r#"
[program."../web"]
command = "{probe} sleep"
"#,
    );
    let line = line_of(&text, "[program.\"../web\"]");
    assert_refused(&sg, &[at(&sg.config_path, line), "../web".into()]);
}

#[test]
fn address_claimed_by_two_programs_is_refused() {
    let sg = Supergo::new("address_claimed_by_two_programs_is_refused");
    let text = write_with_canary(
        &sg,
        r#"
[program.first]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]

[program.second]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
"#,
    );
    // The second claim is the one at fault.
    let second = line_of(&text, "[program.second]");
    let line = line_where(&text, second, |l| l.contains("listen_addrs"));
    assert_refused(
        &sg,
        &[
            at(&sg.config_path, line),
            "listen_addrs".into(),
            format!("127.0.0.1:{}", sg.port),
            "first".into(),
            "second".into(),
        ],
    );
}

#[test]
fn toml_syntax_error_is_refused_with_its_line() {
    let sg = Supergo::new("toml_syntax_error_is_refused_with_its_line");
    let text = write_with_canary(
        &sg,
        r#"
[program.web]
start_secs = 0.2
command = "{probe} sleep
stop_timeout = 1
"#,
    );
    // The line of the string that never ends (the canary's command is closed).
    let line = line_where(&text, 0, |l| {
        l.starts_with("command = \"") && !l.ends_with('"')
    });
    assert_refused(&sg, &[at(&sg.config_path, line)]);
}

#[test]
fn check_on_valid_config_lists_programs_and_starts_nothing() {
    let sg = Supergo::new("check_on_valid_config_lists_programs");
    write_with_canary(
        &sg,
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
environment = { PROBE_REPORT = "{dir}/web.json" }
"#,
    );
    let config = sg.config_path.display().to_string();
    let out = sg.run(&["--check", "--config", &config]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "`supergo --check` refused a valid config ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        sg.dump()
    );
    let listen = format!("127.0.0.1:{}", sg.port);
    assert_names(
        &sg,
        "`supergo --check` output",
        &stdout,
        &["canary".into(), "web".into(), listen],
    );
    for report in ["canary.json", "web.json"] {
        assert!(
            !sg.path(report).exists(),
            "`supergo --check` started a program ({report} exists){}",
            sg.dump()
        );
    }
}

#[test]
fn single_dash_config_flag_is_accepted() {
    let sg = Supergo::new("single_dash_config_flag_is_accepted");
    // Not at the default path: the listing proves this file was read.
    let path = sg.write_file(
        "elsewhere/original.toml",
        "[program.legacy]\ncommand = \"{probe} sleep\"\n",
    );
    let out = sg.run(&["-config", &path.display().to_string(), "--check"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "`supergo -config F --check` failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        sg.dump()
    );
    assert_names(
        &sg,
        "`supergo -config F --check` output",
        &stdout,
        &["legacy".into()],
    );
}

#[test]
fn single_dash_version_prints_the_version() {
    let sg = Supergo::new("single_dash_version_prints_the_version");
    let out = sg.run(&["-version"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "`supergo -version`: {}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(env!("CARGO_PKG_VERSION")),
        "`supergo -version` does not print {}: {stdout:?}",
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn double_dash_version_prints_the_version() {
    let sg = Supergo::new("double_dash_version_prints_the_version");
    let out = sg.run(&["--version"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "`supergo --version`: {}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("supergo ") && stdout.contains(env!("CARGO_PKG_VERSION")),
        "`supergo --version` does not print `supergo {}`: {stdout:?}",
        env!("CARGO_PKG_VERSION")
    );
}
