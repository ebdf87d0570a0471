//! Loading real files from a temporary directory: defaults, every key, `[include]`, and each
//! kind of error with the file:line it must name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::load::load_in;
use super::{AutoRestart, Config, ConfigError, DaemonConfig, ReadyMode};
use crate::listener::ListenAddr;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "supergo-config-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to `relative` (creating directories) and returns its full path.
    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn mkdir(&self, relative: &str) -> PathBuf {
        let path = self.0.join(relative);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Loads `relative` with this directory as the working directory.
    fn load(&self, relative: &str) -> Result<Config, ConfigError> {
        load_in(Path::new(relative), &self.0)
    }

    /// Writes `supergo.toml` and loads it.
    fn load_main(&self, text: &str) -> Result<Config, ConfigError> {
        self.write("supergo.toml", text);
        self.load("supergo.toml")
    }

    /// The error `text` as main file gives, as the operator reads it.
    fn error(&self, text: &str) -> String {
        match self.load_main(text) {
            Ok(config) => panic!("loaded, but expected an error: {config:?}"),
            Err(err) => err.to_string(),
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The error must start with `file:line:` and contain every fragment.
fn assert_error(error: &str, place: &str, fragments: &[&str]) {
    assert!(
        error.starts_with(&format!("{place}: ")),
        "expected at {place}: {error}"
    );
    for fragment in fragments {
        assert!(
            error.contains(fragment),
            "expected {fragment:?} in: {error}"
        );
    }
}

#[test]
fn every_default() {
    let dir = TempDir::new();
    let config = dir
        .load_main("[program.web]\ncommand = \"sleep 1000\"\n")
        .unwrap();
    assert_eq!(config.path, Path::new("supergo.toml"));
    assert_eq!(config.daemon, DaemonConfig::default());
    assert!(config.warnings.is_empty());
    let web = &config.programs["web"];
    assert_eq!(web.name, "web");
    assert_eq!(web.argv, ["sleep", "1000"]);
    assert_eq!(web.directory, dir.path());
    assert!(web.autostart);
    assert_eq!(web.auto_restart, AutoRestart::Always);
    assert_eq!(web.exit_codes, [0]);
    assert_eq!(web.start_secs, Duration::from_secs(1));
    assert_eq!(web.max_retry, 3);
    assert_eq!(web.backoff, Duration::from_secs(1));
    assert_eq!(web.backoff_max, Duration::from_secs(30));
    assert!(web.listen_addrs.is_empty());
    assert!(web.listen_names.is_empty());
    assert_eq!(web.socket_mode, 0o660);
    assert_eq!(web.ready, ReadyMode::Uptime);
    assert_eq!(web.ready_timeout, Duration::from_secs(60));
    assert_eq!(web.stop_signal, Signal::SIGTERM);
    assert_eq!(web.stop_timeout, Duration::from_secs(10));
    assert!(web.stop_as_group);
    assert!(!web.stop_before_restart);
    assert_eq!(web.stdout_file, None);
    assert_eq!(web.stderr_file, None);
    assert!(!web.redirect_stderr);
    assert_eq!(web.log_max_bytes, 50 * 1024 * 1024);
    assert_eq!(web.log_backups, 10);
    assert_eq!(web.user, None);
    assert_eq!(web.group, None);
    assert_eq!(web.umask, None);
    assert!(web.environment.is_empty());
    assert!(!web.clear_env);
    assert_eq!(web.priority, 999);
    assert!(web.rlimits.is_empty());
    assert_eq!(web.origin.to_string(), "supergo.toml:1");
}

#[test]
fn every_key() {
    let dir = TempDir::new();
    dir.mkdir("www");
    dir.write("token", "  s3cret\n");
    let config = dir
        .load_main(
            r#"
[supergo]
listen = "127.0.0.1:9999"
token_file = "token"
allow_insecure = true

[program.web]
command = "sh -c 'sleep 1 && echo hi'"
args = ["extra", "two words"]
directory = "www"
autostart = false
auto_restart = "unexpected"
exit_codes = [0, 2]
start_secs = 0.5
max_retry = 0
backoff_secs = 2
backoff_max_secs = 8.5
listen_addrs = [":4041", "unix:web.sock"]
listen_names = ["http", "admin sock"]
socket_mode = "0600"
ready = "notify"
ready_timeout = 5
stop_signal = "sigquit"
stop_timeout = 0
stop_as_group = false
stop_before_restart = true
stdout_logfile = "logs/out.log"
stderr_file = "/var/log/web.err"
redirect_stderr = true
log_max_bytes = "10KB"
log_backups = 0
user = "root"
group = "root"
umask = 0o022
clear_env = true
priority = -5
environment = { PORT = 8080, DEBUG = true, NAME = "web", RATIO = 0.5 }
rlimits = { nofile = 65536, core = "unlimited" }
"#,
        )
        .unwrap();
    let base = dir.path();
    assert_eq!(config.daemon.listen.as_deref(), Some("127.0.0.1:9999"));
    assert_eq!(config.daemon.token.as_deref(), Some("s3cret"));
    assert!(config.daemon.allow_insecure);
    let web = &config.programs["web"];
    assert_eq!(
        web.argv,
        ["sh", "-c", "sleep 1 && echo hi", "extra", "two words"]
    );
    assert_eq!(web.directory, base.join("www"));
    assert!(!web.autostart);
    assert_eq!(web.auto_restart, AutoRestart::Unexpected);
    assert_eq!(web.exit_codes, [0, 2]);
    assert_eq!(web.start_secs, Duration::from_millis(500));
    assert_eq!(web.max_retry, 0);
    assert_eq!(
        (web.backoff, web.backoff_max),
        (Duration::from_secs(2), Duration::from_millis(8500))
    );
    assert_eq!(
        web.listen_addrs,
        [
            ListenAddr::Tcp("0.0.0.0:4041".parse().unwrap()),
            ListenAddr::Unix(base.join("web.sock"))
        ]
    );
    assert_eq!(web.listen_names, ["http", "admin sock"]);
    assert_eq!(web.socket_mode, 0o600);
    assert_eq!(web.ready, ReadyMode::Notify);
    assert_eq!(web.ready_timeout, Duration::from_secs(5));
    assert_eq!(web.stop_signal, Signal::SIGQUIT);
    assert_eq!(web.stop_timeout, Duration::ZERO);
    assert!(!web.stop_as_group);
    assert!(web.stop_before_restart);
    assert_eq!(web.stdout_file, Some(base.join("logs/out.log")));
    assert_eq!(web.stderr_file, Some(PathBuf::from("/var/log/web.err")));
    assert!(web.redirect_stderr);
    assert_eq!(web.log_max_bytes, 10 * 1024);
    assert_eq!(web.log_backups, 0);
    assert_eq!(
        (web.user.as_deref(), web.group.as_deref()),
        (Some("root"), Some("root"))
    );
    assert_eq!(web.umask, Some(0o022));
    assert!(web.clear_env);
    assert_eq!(web.priority, -5);
    let env: Vec<(&str, &str)> = web
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("DEBUG", "true"),
            ("NAME", "web"),
            ("PORT", "8080"),
            ("RATIO", "0.5")
        ]
    );
    assert_eq!(web.rlimits["nofile"], 65536);
    assert_eq!(web.rlimits["core"], u64::MAX);
    assert_eq!(web.origin.to_string(), "supergo.toml:7");
}

#[test]
fn the_original_supergo_example_loads() {
    let dir = TempDir::new();
    let config = dir
        .load_main(
            r#"[program.test]
directory = ""
command = " ./http_listener -arg=test world"
auto_restart = true
stdout_file = "/tmp/hello.log"
stderr_file = ""
max_retry = 3
listen_addrs = [":4041"]
stop_timeout = 10
stop_before_restart = false
"#,
        )
        .unwrap();
    let test = &config.programs["test"];
    assert_eq!(test.argv, ["./http_listener", "-arg=test", "world"]);
    assert_eq!(test.directory, dir.path());
    assert_eq!(test.stdout_file, Some(PathBuf::from("/tmp/hello.log")));
    assert_eq!(test.stderr_file, None);
    assert_eq!(test.listen_names, ["test"]);
}

#[test]
fn stdout_and_stderr_take_both_spellings() {
    let dir = TempDir::new();
    let config = dir
        .load_main(
            "[program.a]\ncommand = \"x\"\nstdout_file = \"a.out\"\nstderr_logfile = \"a.err\"\n\
             [program.b]\ncommand = \"x\"\nstdout_logfile = \"b.out\"\nstderr_file = \"b.err\"\n",
        )
        .unwrap();
    let base = dir.path();
    assert_eq!(config.programs["a"].stdout_file, Some(base.join("a.out")));
    assert_eq!(config.programs["a"].stderr_file, Some(base.join("a.err")));
    assert_eq!(config.programs["b"].stdout_file, Some(base.join("b.out")));
    assert_eq!(config.programs["b"].stderr_file, Some(base.join("b.err")));

    let error =
        dir.error("[program.a]\ncommand = \"x\"\nstdout_file = \"a\"\nstdout_logfile = \"b\"\n");
    assert_error(
        &error,
        "supergo.toml:4",
        &["program `a`", "`stdout_logfile`", "`stdout_file`"],
    );
}

#[test]
fn modes_and_sizes_in_every_accepted_form() {
    let dir = TempDir::new();
    let config = dir
        .load_main(
            "[program.a]\ncommand = \"x\"\nsocket_mode = 0o640\numask = \"027\"\nlog_max_bytes = 1000\n\
             [program.b]\ncommand = \"x\"\nsocket_mode = \"660\"\numask = 0\nlog_max_bytes = \"1GB\"\n",
        )
        .unwrap();
    let (a, b) = (&config.programs["a"], &config.programs["b"]);
    assert_eq!(
        (a.socket_mode, a.umask, a.log_max_bytes),
        (0o640, Some(0o027), 1000)
    );
    assert_eq!(
        (b.socket_mode, b.umask, b.log_max_bytes),
        (0o660, Some(0), 1 << 30)
    );

    let error = dir.error("[program.a]\ncommand = \"x\"\nsocket_mode = 660\n");
    assert_error(
        &error,
        "supergo.toml:3",
        &["program `a`", "`socket_mode`", "octal"],
    );
    let error = dir.error("[program.a]\ncommand = \"x\"\numask = \"0999\"\n");
    assert_error(&error, "supergo.toml:3", &["`umask`", "octal"]);
    let error = dir.error("[program.a]\ncommand = \"x\"\nlog_max_bytes = \"5TB\"\n");
    assert_error(&error, "supergo.toml:3", &["`log_max_bytes`", "\"5TB\""]);
}

#[test]
fn stop_signal_names() {
    let dir = TempDir::new();
    for (text, signal) in [
        ("TERM", Signal::SIGTERM),
        ("SIGINT", Signal::SIGINT),
        ("usr2", Signal::SIGUSR2),
        ("SigKill", Signal::SIGKILL),
    ] {
        let config = dir
            .load_main(&format!(
                "[program.a]\ncommand = \"x\"\nstop_signal = \"{text}\"\n"
            ))
            .unwrap();
        assert_eq!(config.programs["a"].stop_signal, signal, "{text}");
    }
    let error = dir.error("[program.a]\ncommand = \"x\"\n\nstop_signal = \"STOP\"\n");
    assert_error(
        &error,
        "supergo.toml:4",
        &["program `a`", "`stop_signal`", "TERM", "\"STOP\""],
    );
}

#[test]
fn include_loads_matches_in_sorted_order() {
    let dir = TempDir::new();
    dir.write(
        "config/conf.d/b.toml",
        "[program.b]\ncommand = \"x\"\nlisten_addrs = [\":4100\"]\n",
    );
    dir.write(
        "config/conf.d/a.toml",
        "\n[program.a]\ncommand = \"x\"\nlisten_addrs = [\":4100\"]\n",
    );
    dir.write("config/conf.d/notes.txt", "not toml");
    dir.write(
        "config/supergo.toml",
        "[include]\nfiles = \"conf.d/*.toml\"\n",
    );
    // a.toml loads first, so b.toml is the one whose address is already taken.
    let error = dir.load("config/supergo.toml").unwrap_err().to_string();
    assert_error(
        &error,
        "config/conf.d/b.toml:3",
        &[
            "program `b`",
            "0.0.0.0:4100",
            "program `a`",
            "config/conf.d/a.toml:2",
        ],
    );

    dir.write("config/conf.d/b.toml", "[program.b]\ncommand = \"x\"\n");
    let config = dir.load("config/supergo.toml").unwrap();
    assert_eq!(
        config.programs["a"].origin.to_string(),
        "config/conf.d/a.toml:2"
    );
    assert_eq!(
        config.programs["b"].origin.to_string(),
        "config/conf.d/b.toml:1"
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn include_takes_an_array_of_patterns_and_skips_the_main_file() {
    let dir = TempDir::new();
    dir.write("one/x.toml", "[program.x]\ncommand = \"x\"\n");
    dir.write("two/y.toml", "[program.y]\ncommand = \"y\"\n");
    dir.write(
        "supergo.toml",
        "[include]\nfiles = [\"one/*.toml\", \"two/*.toml\", \"*.toml\", \"./one/x.toml\"]\n",
    );
    let config = dir.load("supergo.toml").unwrap();
    assert_eq!(config.programs.keys().collect::<Vec<_>>(), ["x", "y"]);
}

#[test]
fn include_falls_back_to_the_working_directory_with_a_warning() {
    let dir = TempDir::new();
    dir.write("config/conf.d/web.toml", "[program.web]\ncommand = \"x\"\n");
    dir.write(
        "config/supergo.toml",
        "[include]\nfiles = \"config/conf.d/*.toml\"\n",
    );
    let config = dir.load("config/supergo.toml").unwrap();
    assert_eq!(
        config.programs["web"].origin.to_string(),
        "config/conf.d/web.toml:1"
    );
    assert_eq!(
        config.warnings,
        [format!(
            "config/supergo.toml: [include] files = \"config/conf.d/*.toml\" matched nothing beside this \
             file; using it from the working directory {} as the original supergo did — write \
             \"conf.d/*.toml\" to silence this",
            dir.path().display()
        )]
    );
}

#[test]
fn include_matching_nothing_is_a_warning() {
    let dir = TempDir::new();
    dir.mkdir("conf.d");
    let config = dir
        .load_main("[include]\nfiles = \"conf.d/*.toml\"\n")
        .unwrap();
    assert!(config.programs.is_empty());
    assert_eq!(
        config.warnings,
        ["supergo.toml: [include] files = \"conf.d/*.toml\" matched no file"]
    );
}

#[test]
fn included_files_hold_programs_only() {
    let dir = TempDir::new();
    dir.write(
        "conf.d/a.toml",
        "[program.a]\ncommand = \"x\"\n\n[supergo]\nlisten = \":1\"\n",
    );
    let error = dir.error("[include]\nfiles = \"conf.d/*.toml\"\n");
    assert_error(
        &error,
        "conf.d/a.toml:4",
        &["[supergo] belongs in the main config file"],
    );

    dir.write("conf.d/a.toml", "[include]\nfiles = \"more/*.toml\"\n");
    let error = dir.error("[include]\nfiles = \"conf.d/*.toml\"\n");
    assert_error(
        &error,
        "conf.d/a.toml:1",
        &["[include]", "main config file"],
    );
}

#[test]
fn a_program_defined_in_two_files_is_an_error_naming_both() {
    let dir = TempDir::new();
    dir.write(
        "conf.d/web.toml",
        "# again\n[program.web]\ncommand = \"y\"\n",
    );
    let error =
        dir.error("[include]\nfiles = \"conf.d/*.toml\"\n\n[program.web]\ncommand = \"x\"\n");
    assert_error(
        &error,
        "conf.d/web.toml:2",
        &[
            "program `web`",
            "defined twice",
            "supergo.toml:4",
            "conf.d/web.toml:2",
        ],
    );
}

#[test]
fn one_address_in_two_programs_is_an_error_naming_both() {
    let dir = TempDir::new();
    let error = dir.error(
        "[program.a]\ncommand = \"x\"\nlisten_addrs = [\"127.0.0.1:4200\"]\n\
         [program.b]\ncommand = \"x\"\nlisten_addrs = [\"unix:b.sock\", \":4200\"]\n",
    );
    assert_error(
        &error,
        "supergo.toml:6",
        &[
            "program `b`",
            "0.0.0.0:4200",
            "program `a` (supergo.toml:1)",
        ],
    );
    // Port 0 is a new port each time; IPv4 and IPv6 wildcards are separate sockets.
    dir.load_main(
        "[program.a]\ncommand = \"x\"\nlisten_addrs = [\":0\", \"[::]:4201\"]\n\
         [program.b]\ncommand = \"x\"\nlisten_addrs = [\":0\", \":4201\"]\n",
    )
    .unwrap();
}

#[test]
fn a_wrong_type_names_file_line_program_key_and_value() {
    let dir = TempDir::new();
    dir.write(
        "config/conf.d/web.toml",
        "# web\n\n[program.web]\ncommand = \"x\"\nautostart = true\n\nstart_secs = \"abc\"\n",
    );
    dir.write(
        "config/supergo.toml",
        "[include]\nfiles = \"conf.d/*.toml\"\n",
    );
    let error = dir.load("config/supergo.toml").unwrap_err();
    assert_eq!(
        error.to_string(),
        "config/conf.d/web.toml:7: program `web`: `start_secs` must be a number of seconds (like 1 or 0.5), \
         not the string \"abc\""
    );
    assert_eq!(
        (error.file, error.line),
        (PathBuf::from("config/conf.d/web.toml"), Some(7))
    );
}

#[test]
fn unknown_keys_and_sections_suggest_the_closest_name() {
    let dir = TempDir::new();
    let error = dir.error("[program.web]\ncommand = \"x\"\nstop_timout = 5\n");
    assert_eq!(
        error,
        "supergo.toml:3: unknown key `stop_timout` in program `web` — did you mean `stop_timeout`?"
    );
    let error = dir.error("[supergo]\nlisen = \":1\"\n");
    assert_eq!(
        error,
        "supergo.toml:2: unknown key `lisen` in [supergo] — did you mean `listen`?"
    );
    let error = dir.error("[progam.web]\ncommand = \"x\"\n");
    assert_error(
        &error,
        "supergo.toml:1",
        &["unknown section `[progam]` — did you mean `[program]`?"],
    );
    let error = dir.error("[program.web]\ncommand = \"x\"\ncolour = 1\n");
    assert_eq!(
        error,
        "supergo.toml:3: unknown key `colour` in program `web`"
    );
    let error = dir.error("[program.web]\ncommand = \"x\"\nrlimits = { nofiles = 5 }\n");
    assert_error(
        &error,
        "supergo.toml:3",
        &[
            "program `web`",
            "`rlimits`",
            "`nofiles`",
            "did you mean `nofile`?",
        ],
    );
}

#[test]
fn syntax_errors_and_unreadable_files() {
    let dir = TempDir::new();
    let error = dir.error("[program.web]\ncommand = \"x\nstart_secs = 1\n");
    assert_error(&error, "supergo.toml:2", &["invalid TOML"]);
    let error = dir.error("[program.web]\ncommand = \"x\"\ncommand = \"y\"\n");
    assert_error(&error, "supergo.toml:3", &["invalid TOML", "duplicate"]);

    let error = dir.load("missing.toml").unwrap_err().to_string();
    assert!(
        error.starts_with("missing.toml: cannot read config file: "),
        "{error}"
    );
    assert!(error.contains("No such file"), "{error}");
}

#[test]
fn program_errors_name_their_line() {
    let dir = TempDir::new();
    let cases: &[(&str, &str, &[&str])] = &[
        ("[program.web]\nargs = []\n", "supergo.toml:1", &["program `web`", "`command` is missing"]),
        ("[program.web]\ncommand = \"  \"\n", "supergo.toml:2", &["`command` is empty"]),
        ("[program.web]\ncommand = 'echo \"hi'\n", "supergo.toml:2", &["`command` cannot be split into words: unterminated double quote"]),
        ("[program.web]\ncommand = [\"a\"]\n", "supergo.toml:2", &["`command` must be a string", "not an array"]),
        ("[program.\"a b\"]\ncommand = \"x\"\n", "supergo.toml:1", &["program `a b`", "invalid program name"]),
        ("[program.all]\ncommand = \"x\"\n", "supergo.toml:1", &["program `all`", "reserved"]),
        ("[program.web]\ncommand = \"x\"\ndirectory = \"nowhere\"\n", "supergo.toml:3", &["`directory`", "nowhere", "No such file"]),
        ("[program.web]\ncommand = \"x\"\ndirectory = \"supergo.toml\"\n", "supergo.toml:3", &["`directory`", "not a directory"]),
        ("[program.web]\ncommand = \"x\"\nuser = \"no-such-user-here\"\n", "supergo.toml:3", &["program `web`: unknown user `no-such-user-here`"]),
        ("[program.web]\ncommand = \"x\"\ngroup = \"no-such-group-here\"\n", "supergo.toml:3", &["unknown group `no-such-group-here`"]),
        ("[program.web]\ncommand = \"x\"\nexit_codes = [0,\n 256]\n", "supergo.toml:4", &["`exit_codes` must be between 0 and 255, not 256"]),
        ("[program.web]\ncommand = \"x\"\nmax_retry = -1\n", "supergo.toml:3", &["`max_retry` must be at least 0, not -1"]),
        ("[program.web]\ncommand = \"x\"\nmax_retry = 1.5\n", "supergo.toml:3", &["`max_retry` must be a whole number, not the number 1.5"]),
        ("[program.web]\ncommand = \"x\"\nstop_timeout = -1\n", "supergo.toml:3", &["`stop_timeout` must not be negative"]),
        ("[program.web]\ncommand = \"x\"\nready_timeout = 0\n", "supergo.toml:3", &["`ready_timeout` must be more than 0"]),
        ("[program.web]\ncommand = \"x\"\nbackoff_secs = 5\nbackoff_max_secs = 2\n", "supergo.toml:4", &["`backoff_max_secs`", "less than `backoff_secs`"]),
        ("[program.web]\ncommand = \"x\"\nauto_restart = \"sometimes\"\n", "supergo.toml:3", &["`auto_restart` must be true, false or \"unexpected\""]),
        ("[program.web]\ncommand = \"x\"\nready = \"soon\"\n", "supergo.toml:3", &["`ready` must be \"uptime\" or \"notify\""]),
        ("[program.web]\ncommand = \"x\"\nlisten_addrs = [\":1\",\n \"nonsense\"]\n", "supergo.toml:4", &["`listen_addrs`", "nonsense"]),
        ("[program.web]\ncommand = \"x\"\nlisten_addrs = [\":1\", \":1\"]\n", "supergo.toml:3", &["lists 0.0.0.0:1 twice"]),
        ("[program.web]\ncommand = \"x\"\nlisten_addrs = [\":1\"]\nlisten_names = [\"a\", \"b\"]\n", "supergo.toml:4", &["`listen_names` has 2 names for 1 listen_addrs"]),
        ("[program.web]\ncommand = \"x\"\nlisten_addrs = [\":1\"]\nlisten_names = [\"a:b\"]\n", "supergo.toml:4", &["`listen_names` entry \"a:b\"", "without `:`"]),
        ("[program.web]\ncommand = \"x\"\nenvironment = { A = [1] }\n", "supergo.toml:3", &["`environment` `A` must be a string, not an array"]),
        ("[program.web]\ncommand = \"x\"\nrlimits = { core = -1 }\n", "supergo.toml:3", &["`rlimits` `core` must be a whole number ≥ 0 or \"unlimited\""]),
        ("[program.web]\ncommand = \"x\"\n[program.web.rlimits]\nnofile = \"lots\"\n", "supergo.toml:4", &["`rlimits` `nofile`", "the string \"lots\""]),
        ("[program]\nweb = \"x\"\n", "supergo.toml:2", &["program `web` must be a table"]),
        ("program = 1\n", "supergo.toml:1", &["`program` must hold one table per program"]),
        ("[supergo]\nlisten = \"localhost\"\n", "supergo.toml:2", &["[supergo]: `listen`", "localhost"]),
        ("[supergo]\ntoken = \"a\"\ntoken_file = \"t\"\n", "supergo.toml:3", &["`token_file` and `token` are both given"]),
        ("[supergo]\ntoken_file = \"missing-token\"\n", "supergo.toml:2", &["`token_file` cannot be read", "missing-token"]),
        ("[supergo]\n\nstate_dir = 7\n", "supergo.toml:3", &["[supergo]: `state_dir` must be a string, not the integer 7"]),
        ("[supergo]\nstate_dir = \" \"\n", "supergo.toml:2", &["`state_dir` must name a directory", "/run/supergo"]),
        ("[supergo]\nstate_dir = \"a\\u0000b\"\n", "supergo.toml:2", &["`state_dir` must not contain a NUL"]),
        ("[supergo]\nstatedir = \"x\"\n", "supergo.toml:2", &["unknown key `statedir` in [supergo] — did you mean `state_dir`?"]),
        ("[include]\nfiles = 3\n", "supergo.toml:2", &["[include]: `files` must be a glob"]),
        ("[include]\nfile = \"x\"\n", "supergo.toml:2", &["unknown key `file` in [include] — did you mean `files`?"]),
    ];
    for (text, place, fragments) in cases {
        let error = dir.error(text);
        assert_error(&error, place, fragments);
    }
}

#[test]
fn state_dir_is_relative_to_its_file_and_absent_by_default() {
    let dir = TempDir::new();
    let config = dir
        .load_main("[supergo]\nstate_dir = \"run/state\"\n")
        .unwrap();
    assert_eq!(config.daemon.state_dir, Some(dir.path().join("run/state")));
    let config = dir
        .load_main("[supergo]\nstate_dir = \"/var/lib/supergo\"\n")
        .unwrap();
    assert_eq!(
        config.daemon.state_dir.as_deref(),
        Some(Path::new("/var/lib/supergo"))
    );
    let config = dir.load_main("[supergo]\n").unwrap();
    assert_eq!(config.daemon.state_dir, None);
}

#[test]
fn an_empty_token_means_none_and_an_empty_token_file_is_an_error() {
    let dir = TempDir::new();
    let config = dir.load_main("[supergo]\ntoken = \"\"\n").unwrap();
    assert_eq!(config.daemon.token, None);
    dir.write("empty", " \n");
    let error = dir.error("[supergo]\n\ntoken_file = \"empty\"\n");
    assert_error(&error, "supergo.toml:3", &["`token_file`", "is empty"]);
}

#[test]
fn inline_and_dotted_program_forms_give_lines() {
    let dir = TempDir::new();
    let config = dir
        .load_main("[supergo]\n\nprogram.a = { command = \"sleep 1000\" }\n")
        .map(|config| config.programs["a"].origin.to_string());
    // `program.a` under [supergo] is a key of [supergo], not a program.
    assert!(config
        .unwrap_err()
        .to_string()
        .contains("unknown key `program` in [supergo]"));
    let error = dir.error("x = 1\nprogram.a = { command = \"sleep 1000\" }\n");
    assert_eq!(
        error,
        "supergo.toml:1: `x` is outside any section: only sections stand at the top level: \
         [supergo], [program.NAME], [include]"
    );
    let error = dir.error("listen = \":1\"\n");
    assert_eq!(
        error,
        "supergo.toml:1: `listen` is outside any section: it belongs in [supergo]"
    );
    let error = dir.error("# web\ncommand = \"x\"\n");
    assert_eq!(
        error,
        "supergo.toml:2: `command` is outside any section: it belongs in a [program.NAME] section"
    );
    let config = dir.load_main("program.a = { command = \"sleep 1000\", start_secs = \"x\" }\n");
    assert_error(
        &config.unwrap_err().to_string(),
        "supergo.toml:1",
        &["program `a`", "`start_secs`"],
    );
    let config = dir
        .load_main("\n[program.a]\ncommand = \"x\"\n[program.a.environment]\nA = \"1\"\n")
        .unwrap();
    assert_eq!(config.programs["a"].origin.to_string(), "supergo.toml:2");
    assert_eq!(config.programs["a"].environment["A"], "1");
    let config = dir
        .load_main("[program]\n\na.command = \"sleep 1000\"\n")
        .unwrap();
    assert_eq!(config.programs["a"].origin.to_string(), "supergo.toml:3");
}
