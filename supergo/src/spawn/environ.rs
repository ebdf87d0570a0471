//! A child's environment: supergo's own (unless `clear_env`), then the user's identity, then
//! `environment`, then the protocol variables; a variable set twice keeps its last value, at
//! the place of its last setting. Built into one buffer of `KEY=VALUE\0` entries, with a
//! fixed-width `LISTEN_PID=` slot the child fills in.
//!
//! Why one buffer: a spawn used to copy supergo's environment into two strings per variable,
//! then each entry once more. With 1000 programs starting at once, those short-lived copies
//! were the largest thing on the heap at its peak (4.4 of 14.6 MB), and the holes they left
//! among longer-lived allocations stayed resident. supergo's own environment is read once
//! (`inherited`): it does not change after `main`'s first steps (which take supergo's own
//! variables out of it, before any program starts).

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use nix::unistd::User;

use super::prepare::{SpawnRequest, PID_SLOT_DIGITS};

/// Variables supergo sets itself; inherited copies (supergo may itself be socket-activated)
/// are removed so that a child never sees a stale value.
const OWN_VARIABLES: [&str; 6] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "SUPERGO_PROGRAM",
    "SUPERGO_GENERATION",
];

/// The environment as the child gets it.
pub(super) struct Environ {
    /// Every entry, `KEY=VALUE\0`, back to back.
    pub bytes: Vec<u8>,
    /// Where each entry starts in `bytes`.
    pub starts: Vec<usize>,
    /// Where the `LISTEN_PID=` entry starts (programs with listeners).
    pub listen_pid: Option<usize>,
    /// `PATH` as the child gets it, if set.
    pub path: Option<OsString>,
}

/// supergo's environment less its own variables, read at the first spawn.
fn inherited() -> &'static [(OsString, OsString)] {
    static INHERITED: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();
    INHERITED.get_or_init(|| {
        std::env::vars_os()
            .filter(|(k, _)| !OWN_VARIABLES.iter().any(|own| k == OsStr::new(own)))
            .collect()
    })
}

/// Builds the environment; the error names a variable that holds a NUL byte.
pub(super) fn build(req: &SpawnRequest<'_>, user: Option<&User>) -> Result<Environ, String> {
    let config = req.config;
    // What supergo sets, in order; only the last setting of a name counts.
    let mut sets: Vec<(&str, Cow<'_, OsStr>)> = Vec::with_capacity(8);
    if let Some(user) = user {
        sets.push(("HOME", Cow::Borrowed(user.dir.as_os_str())));
        sets.push(("USER", Cow::Borrowed(OsStr::new(&user.name))));
        sets.push(("LOGNAME", Cow::Borrowed(OsStr::new(&user.name))));
    }
    for (key, value) in &config.environment {
        sets.push((key, Cow::Borrowed(OsStr::new(value))));
    }
    if !req.listeners.is_empty() {
        let count = req.listeners.len().to_string();
        sets.push(("LISTEN_FDS", Cow::Owned(OsString::from(count))));
        let names = config.listen_names.join(":");
        sets.push(("LISTEN_FDNAMES", Cow::Owned(OsString::from(names))));
    }
    if let Some(path) = req.notify_socket {
        sets.push(("NOTIFY_SOCKET", Cow::Borrowed(path.as_os_str())));
    }
    sets.push(("SUPERGO_PROGRAM", Cow::Borrowed(OsStr::new(&config.name))));
    let generation = req.generation.to_string();
    sets.push(("SUPERGO_GENERATION", Cow::Owned(OsString::from(generation))));
    let last_setting = |i: usize, key: &str| !sets[i + 1..].iter().any(|(k, _)| *k == key);
    let is_set = |key: &OsStr| sets.iter().any(|(k, _)| OsStr::new(k) == key);

    let base: &[(OsString, OsString)] = if config.clear_env { &[] } else { inherited() };
    let kept = base.iter().filter(|(k, _)| !is_set(k));
    let mut env = Environ {
        bytes: Vec::with_capacity(
            base.iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>()
                + sets
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 2)
                    .sum::<usize>()
                + PID_SLOT_DIGITS
                + 16,
        ),
        starts: Vec::with_capacity(base.len() + sets.len() + 1),
        listen_pid: None,
        path: None,
    };
    for (key, value) in kept {
        env.push(key, value)?;
    }
    for (i, (key, value)) in sets.iter().enumerate() {
        if last_setting(i, key) {
            env.push(OsStr::new(key), value)?;
        }
    }
    if !req.listeners.is_empty() {
        env.listen_pid = Some(env.bytes.len());
        env.starts.push(env.bytes.len());
        env.bytes.extend_from_slice(b"LISTEN_PID=");
        env.bytes
            .extend(std::iter::repeat_n(0u8, PID_SLOT_DIGITS + 1));
    }
    Ok(env)
}

impl Environ {
    fn push(&mut self, key: &OsStr, value: &OsStr) -> Result<(), String> {
        if key.as_bytes().contains(&0) || value.as_bytes().contains(&0) {
            return Err(key.to_string_lossy().into_owned());
        }
        if key == "PATH" {
            self.path = Some(value.to_os_string());
        }
        self.starts.push(self.bytes.len());
        self.bytes.extend_from_slice(key.as_bytes());
        self.bytes.push(b'=');
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.push(0);
        Ok(())
    }
}
