//! Loading a whole config: the main file, the files its `[include]` names, and the checks
//! that span programs (one name defined twice, one listen address claimed twice).
//!
//! The main file may hold `[supergo]`, `[include]` and `[program.NAME]`; an included file
//! holds `[program.NAME]` only (nested includes are not supported: one level is all the
//! original supergo had, and it keeps the set of files obvious). Each table is read by
//! `section::Section` with typed getters, so every error names the file, the line, the
//! program and the key. The first error ends the load: a config is used whole or not at all.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::section::Section;
use super::source::SourceFile;
use super::tree::{Entry, Table, Value};
use super::{include, program, suggest, Config, ConfigError, DaemonConfig, ProgramConfig};
use crate::listener::ListenAddr;

/// Top-level sections of the main file.
const SECTIONS: &[&str] = &["supergo", "program", "include"];
const DAEMON_KEYS: &[&str] = &[
    "listen",
    "token",
    "token_file",
    "allow_insecure",
    "state_dir",
];

/// Loads and checks the config at `path` (relative paths in it resolve against the
/// directory of the file that holds them; supergo's working directory is the default
/// `directory` of a program).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let cwd = std::env::current_dir().map_err(|err| ConfigError {
        file: path.to_path_buf(),
        line: None,
        message: format!("cannot determine the working directory: {err}"),
    })?;
    load_in(path, &cwd)
}

/// `load` with the working directory given, so that tests need not change the process's.
pub(super) fn load_in(path: &Path, cwd: &Path) -> Result<Config, ConfigError> {
    let main = SourceFile::read(path, cwd)?;
    let mut programs = Programs::default();
    let mut warnings = Vec::new();
    let mut daemon = DaemonConfig::default();
    let mut included = Vec::new();
    for entry in &main.root.entries {
        let table = section_table(&main, entry, SECTIONS)?;
        let line = main.line_of(entry.offset());
        match entry.key.as_str() {
            "supergo" => {
                daemon = read_daemon(&Section::new(&main, "[supergo]".into(), table, line))?
            }
            "include" => {
                let section = Section::new(&main, "[include]".into(), table, line);
                included = include::files(&section, cwd, &mut warnings)?;
            }
            _ => programs.read_all(&main, table, cwd)?,
        }
    }
    // Each file once: `files = "*.toml"` beside the main file matches the main file too, and
    // two patterns may name one file by two paths.
    let mut seen = vec![identity(&cwd.join(path))];
    for file in included {
        let id = identity(&cwd.join(&file));
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let source = SourceFile::read(&file, cwd)?;
        read_included(&source, &mut programs, cwd)?;
    }
    Ok(Config {
        path: path.to_path_buf(),
        daemon,
        programs: programs
            .by_name
            .into_iter()
            .map(|(name, program)| (name, Arc::new(program)))
            .collect(),
        warnings,
    })
}

/// An included file: `[program.NAME]` tables only.
fn read_included(
    file: &SourceFile,
    programs: &mut Programs,
    cwd: &Path,
) -> Result<(), ConfigError> {
    for entry in &file.root.entries {
        let line = file.line_of(entry.offset());
        match entry.key.as_str() {
            "program" => programs.read_all(file, section_table(file, entry, SECTIONS)?, cwd)?,
            "supergo" => return Err(file.error(line, "[supergo] belongs in the main config file")),
            "include" => {
                return Err(file.error(
                    line,
                    "[include] belongs in the main config file: included files cannot include more",
                ))
            }
            _ => {
                section_table(file, entry, SECTIONS)?;
            }
        }
    }
    Ok(())
}

/// A top-level entry as a section: it must be a known name, and a table.
fn section_table<'a>(
    file: &SourceFile,
    entry: &'a Entry,
    known: &[&str],
) -> Result<&'a Table, ConfigError> {
    let line = file.line_of(entry.offset());
    let name = entry.key.as_str();
    if !known.contains(&name) && !matches!(entry.node.value, Value::Table(_)) {
        return Err(file.error(line, misplaced_key(name)));
    }
    if !known.contains(&name) {
        let hint = suggest::closest(name, known)
            .map(|k| format!(" — did you mean `[{k}]`?"))
            .unwrap_or_default();
        return Err(file.error(
            line,
            format!(
                "unknown section `[{name}]`{hint} (known: [supergo], [program.NAME], [include])"
            ),
        ));
    }
    match &entry.node.value {
        Value::Table(table) => Ok(table),
        _ if name == "program" => Err(file.error(
            line,
            "`program` must hold one table per program, like [program.web]",
        )),
        _ => Err(file.error(
            line,
            format!("`{name}` must be a section, written [{name}]"),
        )),
    }
}

/// A plain `key = value` at the top level: most likely a key that lost its section header.
fn misplaced_key(name: &str) -> String {
    let home = if DAEMON_KEYS.contains(&name) {
        "it belongs in [supergo]"
    } else if program::KEYS.contains(&name) {
        "it belongs in a [program.NAME] section"
    } else {
        "only sections stand at the top level: [supergo], [program.NAME], [include]"
    };
    format!("`{name}` is outside any section: {home}")
}

/// `[supergo]`.
fn read_daemon(s: &Section) -> Result<DaemonConfig, ConfigError> {
    s.check_keys(DAEMON_KEYS)?;
    let listen = s.string("listen")?;
    if let Some(listen) = &listen {
        // Checked here so that a typo is reported with its line; the control module binds it.
        let addr =
            ListenAddr::parse(listen, &s.file.dir).map_err(|err| s.key_error("listen", err))?;
        if matches!(addr, ListenAddr::Unix(_)) {
            return Err(s.key_error(
                "listen",
                "the control API listens on TCP only: use \"host:port\"".to_string(),
            ));
        }
    }
    Ok(DaemonConfig {
        listen,
        token: token(s)?,
        allow_insecure: s.boolean("allow_insecure")?.unwrap_or(false),
        state_dir: state_dir(s)?,
    })
}

/// `state_dir`: a directory path, relative to the file's directory. Whether it is safe to
/// use (owner, mode) is checked when supergo starts, by `adopt::state_file::ensure_dir`.
fn state_dir(s: &Section) -> Result<Option<PathBuf>, ConfigError> {
    match s.string("state_dir")? {
        None => Ok(None),
        Some(dir) if dir.trim().is_empty() => Err(s.key_error(
            "state_dir",
            "must name a directory: leave it out for the default (/run/supergo as root, else $XDG_RUNTIME_DIR/supergo or /tmp/supergo-UID)",
        )),
        Some(dir) => Ok(Some(s.file.resolve(&dir))),
    }
}

/// `token`, or the content of `token_file` without surrounding blanks. `token = ""` means
/// none.
fn token(s: &Section) -> Result<Option<String>, ConfigError> {
    let token = s.string("token")?;
    let Some(path) = s.string("token_file")? else {
        return Ok(token.filter(|token| !token.is_empty()));
    };
    if token.is_some() {
        return Err(s.key_error("token_file", "and `token` are both given: keep one"));
    }
    let path = s.file.resolve(&path);
    let text = std::fs::read_to_string(&path).map_err(|err| {
        s.key_error(
            "token_file",
            format!("cannot be read: {}: {err}", path.display()),
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        // An empty token would silently turn authentication off.
        return Err(s.key_error("token_file", format!("{} is empty", path.display())));
    }
    Ok(Some(token.to_string()))
}

/// The programs read so far, and the listen addresses they claim.
#[derive(Default)]
struct Programs {
    by_name: BTreeMap<String, ProgramConfig>,
    /// Which program holds each address: two processes cannot both bind it. By TCP port
    /// and by unix path, so that a config of 1000 programs is not checked pair by pair (a
    /// half-million path comparisons took ~30 ms of every load, at start and at reread).
    claimed: HashMap<ClaimKey, Vec<(ListenAddr, String)>>,
}

impl Programs {
    /// Every `[program.NAME]` of the `program` table of `file`.
    fn read_all(
        &mut self,
        file: &SourceFile,
        programs: &Table,
        cwd: &Path,
    ) -> Result<(), ConfigError> {
        for entry in &programs.entries {
            let line = file.line_of(entry.offset());
            let label = format!("program `{}`", entry.key);
            let Value::Table(table) = &entry.node.value else {
                let found = super::section::describe(&entry.node.value);
                let message = format!(
                    "{label} must be a table ([program.{}]), not {found}",
                    entry.key
                );
                return Err(file.error(line, message));
            };
            let section = Section::new(file, label, table, line);
            let config = program::read(&section, &entry.key, cwd)?;
            self.add(&section, config)?;
        }
        Ok(())
    }

    fn add(&mut self, s: &Section, config: ProgramConfig) -> Result<(), ConfigError> {
        if let Some(first) = self.by_name.get(&config.name) {
            return Err(s.error(format!(
                "defined twice: at {} and at {}",
                first.origin, config.origin
            )));
        }
        for addr in &config.listen_addrs {
            let same_key = self.claimed.get(&ClaimKey::of(addr)).into_iter().flatten();
            if let Some((_, owner)) = same_key.clone().find(|(other, _)| conflict(addr, other)) {
                let origin = self
                    .by_name
                    .get(owner)
                    .map(|p| p.origin.to_string())
                    .unwrap_or_default();
                let message = format!("{addr} is already claimed by program `{owner}` ({origin})");
                return Err(s.key_error("listen_addrs", message));
            }
        }
        for addr in &config.listen_addrs {
            self.claimed
                .entry(ClaimKey::of(addr))
                .or_default()
                .push((addr.clone(), config.name.clone()));
        }
        self.by_name.insert(config.name.clone(), config);
        Ok(())
    }
}

/// What two conflicting addresses share (see `conflict`): a TCP port, or a unix path.
#[derive(Clone, PartialEq, Eq, Hash)]
enum ClaimKey {
    Port(u16),
    Path(PathBuf),
}

impl ClaimKey {
    fn of(addr: &ListenAddr) -> ClaimKey {
        match addr {
            ListenAddr::Tcp(a) => ClaimKey::Port(a.port()),
            ListenAddr::Unix(path) => ClaimKey::Path(path.clone()),
        }
    }
}

/// Two addresses no two sockets can bind at once: the same address, or the same TCP port
/// when one side is the wildcard of the same family (listener.rs binds IPv6 sockets
/// V6ONLY, so 0.0.0.0 and [::] do not collide). Port 0 is a fresh port each time.
fn conflict(a: &ListenAddr, b: &ListenAddr) -> bool {
    match (a, b) {
        (ListenAddr::Tcp(a), ListenAddr::Tcp(b)) => {
            a.port() != 0
                && a.port() == b.port()
                && a.is_ipv4() == b.is_ipv4()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        }
        (ListenAddr::Unix(a), ListenAddr::Unix(b)) => a == b,
        _ => false,
    }
}

/// A path that is equal for equal files, whichever way they were named.
fn identity(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}
