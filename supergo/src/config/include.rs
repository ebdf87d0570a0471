//! `[include] files`: which files a config pulls in.
//!
//! `files` is a glob (or an array of globs) relative to the directory of the file that holds
//! it; matches load in sorted order, pattern after pattern, each file once. A pattern that
//! matches nothing is fine (an empty `conf.d`) but gets a warning.
//!
//! Deviation kept for the original supergo, which took the pattern from the working
//! directory: when a relative pattern matches nothing beside the file but matches from the
//! working directory, those files are used and a warning says how to write the pattern.

use std::path::{Path, PathBuf};

use super::section::Section;
use super::tree::Value;
use super::ConfigError;

pub const KEYS: &[&str] = &["files"];

/// The files `[include]` names, as paths to show in messages (relative to `cwd` when the
/// config was named that way), in load order.
pub fn files(
    s: &Section,
    cwd: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<PathBuf>, ConfigError> {
    s.check_keys(KEYS)?;
    let mut files: Vec<PathBuf> = Vec::new();
    for pattern in patterns(s)? {
        for file in matches(s, &pattern, cwd, warnings)? {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    Ok(files)
}

/// `files` as a list of patterns.
fn patterns(s: &Section) -> Result<Vec<String>, ConfigError> {
    let expected = "a glob like \"conf.d/*.toml\", or an array of them";
    let Some(node) = s.node("files") else {
        return Ok(Vec::new());
    };
    let patterns = match &node.value {
        Value::String(_) => vec![s.as_string("files", node, expected)?],
        Value::Array(_) => s.strings("files")?.unwrap_or_default(),
        _ => return Err(s.wrong_type("files", node, expected)),
    };
    match patterns.iter().find(|pattern| pattern.trim().is_empty()) {
        Some(_) => Err(s.key_error("files", "holds an empty pattern")),
        None => Ok(patterns),
    }
}

/// The files one pattern names: beside the config file, else (for old configs) from the
/// working directory.
fn matches(
    s: &Section,
    pattern: &str,
    cwd: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<PathBuf>, ConfigError> {
    let file = s.file;
    let shown_dir = file.path.parent().unwrap_or(Path::new(""));
    let beside = glob_in(s, &file.dir, pattern)?;
    if !beside.is_empty() || Path::new(pattern).is_absolute() {
        return Ok(beside
            .into_iter()
            .map(|rest| shown_dir.join(rest))
            .collect());
    }
    let from_cwd = if file.dir == cwd {
        Vec::new()
    } else {
        glob_in(s, cwd, pattern)?
    };
    if from_cwd.is_empty() {
        warnings.push(format!(
            "{}: [include] files = {pattern:?} matched no file",
            file.path.display()
        ));
        return Ok(Vec::new());
    }
    warnings.push(format!(
        "{}: [include] files = {pattern:?} matched nothing beside this file; using it from the \
         working directory {} as the original supergo did — write {:?} to silence this",
        file.path.display(),
        cwd.display(),
        rewritten(&file.dir, cwd, pattern),
    ));
    Ok(from_cwd)
}

/// The pattern written relative to the config file's directory, when it lies below it,
/// else absolute.
fn rewritten(dir: &Path, cwd: &Path, pattern: &str) -> String {
    let absolute = cwd.join(pattern);
    let path = absolute.strip_prefix(dir).unwrap_or(&absolute);
    path.to_string_lossy().into_owned()
}

/// Files matching `pattern` taken from `base` (an absolute pattern ignores `base`), sorted,
/// as paths relative to `base` (absolute for an absolute pattern).
fn glob_in(s: &Section, base: &Path, pattern: &str) -> Result<Vec<PathBuf>, ConfigError> {
    // The directory is literal text, not a pattern: `[` in a directory name must not open a
    // character class.
    let base_text = base.to_str().ok_or_else(|| {
        s.key_error(
            "files",
            format!(
                "cannot be used from {}: the path is not UTF-8",
                base.display()
            ),
        )
    })?;
    let full = Path::new(&glob::Pattern::escape(base_text)).join(pattern);
    let full = full.to_string_lossy();
    let paths = glob::glob(&full).map_err(|err| {
        s.key_error(
            "files",
            format!("pattern {pattern:?} is not a valid glob: {err}"),
        )
    })?;
    let mut files = Vec::new();
    for path in paths {
        let path = path.map_err(|err| {
            s.key_error(
                "files",
                format!("cannot read {}: {}", err.path().display(), err.error()),
            )
        })?;
        // A directory matched by `conf.d/*` is not a config file.
        if path.is_dir() {
            continue;
        }
        files.push(
            path.strip_prefix(base)
                .map(Path::to_path_buf)
                .unwrap_or(path),
        );
    }
    files.sort();
    Ok(files)
}
