//! What a program runs, where and as whom: `command` split like a shell and then `args`,
//! the `directory` (which must exist now), the `user` and `group` (looked up now), the
//! `environment` and the `rlimits`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::unistd::{Group, User};

use crate::config::section::{describe, Section};
use crate::config::tree::Value;
use crate::config::{shell, suggest, ConfigError};

/// Resource names `rlimits` accepts: `RLIMIT_<NAME>` in setrlimit(2).
pub const RLIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "memlock",
    "nofile",
    "nproc",
    "rss",
    "stack",
    "msgqueue",
    "nice",
    "rtprio",
    "sigpending",
    "locks",
];

/// `command` split like a shell, then `args`.
pub(super) fn argv(s: &Section) -> Result<Vec<String>, ConfigError> {
    let Some(node) = s.node("command") else {
        return Err(s.error(
            "`command` is missing: say what to run, as in command = \"./server --port 8080\"",
        ));
    };
    let command = s.as_string("command", node, "a string, as in \"./server --port 8080\"")?;
    let mut argv = shell::split(&command).map_err(|err| {
        s.item_error(
            "command",
            node,
            format!("cannot be split into words: {err}"),
        )
    })?;
    if argv.is_empty() {
        return Err(s.item_error("command", node, "is empty: say what to run"));
    }
    argv.extend(s.strings("args")?.unwrap_or_default());
    Ok(argv)
}

/// `directory`: must exist now, so a typo shows at load and not at the first start.
pub(super) fn directory(s: &Section, cwd: &Path) -> Result<PathBuf, ConfigError> {
    // "" is what the original supergo's configs hold for "no directory": supergo's own.
    let Some(text) = s.string("directory")?.filter(|text| !text.is_empty()) else {
        return Ok(cwd.to_path_buf());
    };
    let path = s.file.resolve(&text);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(s.key_error(
            "directory",
            format!("{} is not a directory", path.display()),
        )),
        Err(err) => Err(s.key_error("directory", format!("{}: {err}", path.display()))),
    }
}

/// `user` / `group`: looked up now, so that a typo is a config error rather than a failed
/// start; spawn looks the name up again before each fork.
pub(super) fn account(s: &Section, key: &str) -> Result<Option<String>, ConfigError> {
    let Some(name) = s.string(key)? else {
        return Ok(None);
    };
    let found = if key == "user" {
        User::from_name(&name).map(|user| user.is_some())
    } else {
        Group::from_name(&name).map(|group| group.is_some())
    };
    match found {
        Ok(true) => Ok(Some(name)),
        Ok(false) => Err(s.at_key(key, format!("unknown {key} `{name}`"))),
        Err(err) => Err(s.key_error(key, format!("cannot look up {key} `{name}`: {err}"))),
    }
}

/// `environment`: NAME = value. Numbers and booleans are taken as their text (PORT = 8080).
pub(super) fn environment(s: &Section) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut environment = BTreeMap::new();
    for entry in s
        .table("environment")?
        .map_or(&[][..], |table| &table.entries)
    {
        let at = |message: String| s.item_error("environment", &entry.node, message);
        let name = &entry.key;
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(at(format!(
                "has an invalid variable name {name:?}: no `=`, no NUL, not empty"
            )));
        }
        let value = match &entry.node.value {
            Value::String(text) => text.clone(),
            Value::Integer(value) => value.to_string(),
            Value::Float(value) => value.to_string(),
            Value::Boolean(value) => value.to_string(),
            other => {
                return Err(at(format!(
                    "`{name}` must be a string, not {}",
                    describe(other)
                )))
            }
        };
        if value.contains('\0') {
            return Err(at(format!("`{name}` must not contain a NUL character")));
        }
        environment.insert(name.clone(), value);
    }
    Ok(environment)
}

/// `rlimits`: resource = limit, a limit being a whole number or "unlimited".
pub(super) fn rlimits(s: &Section) -> Result<BTreeMap<String, u64>, ConfigError> {
    let mut limits = BTreeMap::new();
    for entry in s.table("rlimits")?.map_or(&[][..], |table| &table.entries) {
        let at = |message: String| s.item_error("rlimits", &entry.node, message);
        let name = &entry.key;
        if !RLIMITS.contains(&name.as_str()) {
            let hint = suggest::did_you_mean(name, RLIMITS);
            return Err(at(format!(
                "names an unknown resource `{name}`{hint} (known: {})",
                RLIMITS.join(" ")
            )));
        }
        let limit = match &entry.node.value {
            Value::Integer(value) if *value >= 0 => value.unsigned_abs(),
            Value::String(text) if text.eq_ignore_ascii_case("unlimited") => u64::MAX,
            other => {
                let found = describe(other);
                return Err(at(format!(
                    "`{name}` must be a whole number ≥ 0 or \"unlimited\", not {found}"
                )));
            }
        };
        limits.insert(name.clone(), limit);
    }
    Ok(limits)
}
