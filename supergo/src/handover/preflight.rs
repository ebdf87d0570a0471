//! The pre-flight of an upgrade: before it execs, the old image runs
//! `NEWBIN --check-upgrade --state-version 1.0 --config FILE`; a supergo that can take over
//! prints one line, `supergo 0.2.0: state format 1.0, config ok (12 programs)`, and exits 0.
//! Anything else (another major format, a config it cannot load, a binary that is not a
//! supergo at all, like /bin/true) refuses the upgrade with the reason, and nothing changes.
//!
//! The old image must run the check through supergo's own spawn and reaper, not
//! `std::process::Command` (its `waitpid` would race the reaper's `waitpid(-1)`), with its
//! stdout and stderr on pipes; `argv` builds the command and `judge` reads the outcome.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use super::exec::UpgradeError;
use super::{format_version, parse_version, FORMAT_MAJOR};

pub const CHECK_FLAG: &str = "--check-upgrade";
pub const STATE_VERSION_FLAG: &str = "--state-version";

/// The new image's side: whether it reads state format `state_version` (the old image's,
/// `MAJOR.MINOR`) and can load the config at `config_path`. `Ok` holds the line to print.
pub fn check(state_version: Option<&str>, config_path: &Path) -> Result<String, String> {
    let me = format!("supergo {}", env!("CARGO_PKG_VERSION"));
    if let Some(version) = state_version {
        let (major, _) = parse_version(version).ok_or_else(|| {
            format!("{STATE_VERSION_FLAG} {version:?}: expected MAJOR.MINOR, like 1.0")
        })?;
        if major != FORMAT_MAJOR {
            return Err(format!(
                "{me} reads state format {FORMAT_MAJOR}.x, and the running supergo writes {version}: \
                 it cannot take over in place (stop supergo and start the new one instead)"
            ));
        }
    }
    let config = crate::config::load(config_path)
        .map_err(|e| format!("{me} cannot load the config: {e}"))?;
    let n = config.programs.len();
    Ok(format!(
        "{me}: state format {}, config ok ({n} program{})",
        format_version(),
        if n == 1 { "" } else { "s" }
    ))
}

/// `supergo --check-upgrade`: prints the answer (stdout) or the reason (stderr).
pub fn run(state_version: Option<&str>, config_path: &Path) -> ExitCode {
    match check(state_version, config_path) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("supergo: cannot take over: {reason}");
            ExitCode::from(1)
        }
    }
}

/// The command the old image runs: `binary` (`Target::exec_path`, so the file checked is
/// the file that will be executed), this image's format version and the config, absolute.
pub fn argv(binary: &Path, config: &Path) -> Vec<OsString> {
    let config = std::env::current_dir()
        .map(|cwd| cwd.join(config))
        .unwrap_or_else(|_| config.to_path_buf());
    vec![
        binary.into(),
        CHECK_FLAG.into(),
        STATE_VERSION_FLAG.into(),
        format_version().into(),
        "--config".into(),
        config.into(),
    ]
}

/// What a new binary said it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Its version, for the log: "upgrade: /usr/local/bin/supergo (0.2.0), …".
    pub version: String,
    /// The whole line it printed.
    pub line: String,
}

/// The old image's reading of the pre-flight of `binary`: `exit_code` is `None` when it did
/// not exit normally (killed by a signal, or by the caller's deadline).
pub fn judge(
    binary: &Path,
    exit_code: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> Result<Answer, UpgradeError> {
    let refuse = |why: String| {
        UpgradeError(format!(
            "refusing to upgrade to {}: {why}",
            binary.display()
        ))
    };
    let said = || {
        let text = stderr.trim();
        let text = if text.is_empty() { stdout.trim() } else { text };
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        if tail.is_empty() {
            "it printed nothing".to_string()
        } else {
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        }
    };
    match exit_code {
        None => {
            return Err(refuse(format!(
                "its {CHECK_FLAG} did not finish ({})",
                said()
            )))
        }
        Some(0) => {}
        Some(code) => {
            return Err(refuse(format!(
                "its {CHECK_FLAG} failed with exit status {code}: {}",
                said()
            )))
        }
    }
    let line = stdout.lines().next().unwrap_or("").trim();
    let parsed = line
        .strip_prefix("supergo ")
        .and_then(|rest| rest.split_once(": state format "))
        .and_then(|(version, rest)| Some((version, parse_version(rest.split(',').next()?)?)));
    match parsed {
        Some((version, (major, _))) if major == FORMAT_MAJOR => Ok(Answer {
            version: version.to_string(),
            line: line.to_string(),
        }),
        Some((version, (major, minor))) => Err(refuse(format!(
            "it is supergo {version}, which writes state format {major}.{minor}, and this supergo reads {FORMAT_MAJOR}.x: \
             going back to this version later would not be possible in place"
        ))),
        None => Err(refuse(format!(
            "it exited 0 but did not answer \"supergo VERSION: state format …\" to {CHECK_FLAG} \
             (it printed {:?}): is it a supergo?",
            line.chars().take(200).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_takes_a_supergo_that_reads_this_format() {
        let bin = Path::new("/usr/local/bin/supergo");
        let answer = judge(
            bin,
            Some(0),
            "supergo 0.2.0: state format 1.3, config ok (12 programs)\n",
            "",
        )
        .unwrap();
        assert_eq!(answer.version, "0.2.0");
        assert!(answer.line.ends_with("(12 programs)"));
    }

    #[test]
    fn judge_refuses_everything_else_with_the_reason() {
        let bin = Path::new("/bin/x");
        let cases: &[(Option<i32>, &str, &str, &[&str])] = &[
            (
                Some(1),
                "",
                "",
                &["/bin/x", "exit status 1", "printed nothing"],
            ),
            (
                Some(1),
                "",
                "supergo: cannot take over: bad config\n",
                &["bad config"],
            ),
            (Some(0), "", "", &["did not answer", "is it a supergo?"]),
            (Some(0), "hello\n", "", &["\"hello\""]),
            (None, "", "", &["did not finish"]),
            (
                Some(0),
                "supergo 9.0.0: state format 2.0, config ok (1 programs)\n",
                "",
                &["supergo 9.0.0", "format 2.0"],
            ),
        ];
        for (code, stdout, stderr, fragments) in cases {
            let err = judge(bin, *code, stdout, stderr).unwrap_err().0;
            assert!(err.starts_with("refusing to upgrade to /bin/x: "), "{err}");
            for fragment in *fragments {
                assert!(err.contains(fragment), "{fragment:?} not in: {err}");
            }
        }
    }

    #[test]
    fn argv_names_the_binary_the_format_and_an_absolute_config() {
        let argv = argv(
            Path::new("/proc/self/fd/9"),
            Path::new("config/supergo.toml"),
        );
        assert_eq!(
            argv[..5],
            [
                "/proc/self/fd/9",
                "--check-upgrade",
                "--state-version",
                "1.0",
                "--config"
            ]
            .map(OsString::from)
        );
        assert!(
            Path::new(&argv[5]).is_absolute()
                && Path::new(&argv[5]).ends_with("config/supergo.toml")
        );
    }

    #[test]
    fn check_refuses_another_major_version_and_a_bad_config() {
        let err = check(Some("2.0"), Path::new("/nonexistent.toml")).unwrap_err();
        assert!(
            err.contains("reads state format 1.x") && err.contains("writes 2.0"),
            "{err}"
        );
        let err = check(Some("one"), Path::new("/nonexistent.toml")).unwrap_err();
        assert!(err.contains("expected MAJOR.MINOR"), "{err}");
        let err = check(Some("1.7"), Path::new("/nonexistent.toml")).unwrap_err();
        assert!(
            err.contains("cannot load the config") && err.contains("/nonexistent.toml"),
            "{err}"
        );
    }
}
