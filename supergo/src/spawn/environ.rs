//! A child's environment: supergo's own (unless `clear_env`), then the user's identity, then
//! `environment`, then the protocol variables; a variable set twice keeps its last value, at
//! the place of its last setting. What a spawn sets itself is built into one buffer of
//! `KEY=VALUE\0` entries, with a fixed-width `LISTEN_PID=` slot the child fills in; what a
//! child inherits unchanged from supergo is not copied at all: its `envp` points into one
//! block of supergo's environment, made once (`inherited`).
//!
//! Why: a spawn used to copy supergo's environment into two strings per variable, then each
//! entry once more; later into one buffer per spawn. With 1000 programs starting at once,
//! those short-lived copies (1.5 KB each with a shell's environment) were the largest thing
//! on the heap at its peak, and the holes they left among longer-lived allocations stayed
//! resident. supergo's environment does not change after `main`'s first steps (which take
//! supergo's own variables out of it, before any program starts), so one copy serves every
//! spawn.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use nix::libc;
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
pub(super) struct Environ<'a> {
    /// The entries this spawn sets, `KEY=VALUE\0`, back to back.
    pub bytes: Vec<u8>,
    /// `envp`: every entry, in order (into the shared block for the inherited ones, into
    /// `bytes` for the others), then a null. Valid while `bytes` lives (moving the vector
    /// does not move its buffer) and forever for the shared block.
    pub pointers: Vec<*const libc::c_char>,
    /// Where the `LISTEN_PID=` entry starts in `bytes` (programs with listeners).
    pub listen_pid: Option<usize>,
    /// `PATH` as the child gets it, if set.
    pub path: Option<&'a OsStr>,
}

/// supergo's environment less its own variables: `KEY=VALUE\0` entries back to back, and
/// where each starts with the length of its key.
struct Inherited {
    bytes: Box<[u8]>,
    entries: Box<[(usize, usize)]>,
}

impl Inherited {
    /// Each entry: its key, its value, and its place in the block.
    fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr, *const libc::c_char)> + '_ {
        self.entries.iter().map(|&(start, key_len)| {
            let entry = &self.bytes[start..];
            let end = entry.iter().position(|&b| b == 0).unwrap_or(entry.len());
            (
                OsStr::from_bytes(&entry[..key_len]),
                OsStr::from_bytes(&entry[key_len + 1..end]),
                entry.as_ptr().cast(),
            )
        })
    }

    /// supergo's own value of `key`.
    fn get(&self, key: &str) -> Option<&OsStr> {
        self.iter()
            .find(|(k, _, _)| *k == OsStr::new(key))
            .map(|(_, v, _)| v)
    }
}

/// supergo's environment less its own variables, read at the first spawn. (Neither a name
/// nor a value from the environment can hold a NUL byte: each came from a C string.)
fn inherited() -> &'static Inherited {
    static INHERITED: OnceLock<Inherited> = OnceLock::new();
    INHERITED.get_or_init(|| {
        let mut bytes = Vec::new();
        let mut entries = Vec::new();
        for (key, value) in std::env::vars_os() {
            if OWN_VARIABLES.iter().any(|own| key == OsStr::new(own)) {
                continue;
            }
            entries.push((bytes.len(), key.len()));
            bytes.extend_from_slice(key.as_bytes());
            bytes.push(b'=');
            bytes.extend_from_slice(value.as_bytes());
            bytes.push(0);
        }
        Inherited {
            bytes: bytes.into_boxed_slice(),
            entries: entries.into_boxed_slice(),
        }
    })
}

/// supergo's own `PATH` (where a child's command is looked up when the child gets none).
pub(super) fn supergo_path() -> Option<&'static OsStr> {
    inherited().get("PATH")
}

/// Builds the environment; the error names a variable that holds a NUL byte.
pub(super) fn build<'a>(
    req: &SpawnRequest<'a>,
    user: Option<&'a User>,
) -> Result<Environ<'a>, String> {
    let config = req.config;
    // What supergo sets, in order; only the last setting of a name counts.
    let mut sets: Vec<(&str, Cow<'a, OsStr>)> =
        Vec::with_capacity(3 + config.environment.len() + 5);
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
        sets.push(("LISTEN_FDS", Cow::Owned(count.into())));
        let names = config.listen_names.join(":");
        sets.push(("LISTEN_FDNAMES", Cow::Owned(names.into())));
    }
    if let Some(path) = req.notify_socket {
        sets.push(("NOTIFY_SOCKET", Cow::Borrowed(path.as_os_str())));
    }
    sets.push(("SUPERGO_PROGRAM", Cow::Borrowed(OsStr::new(&config.name))));
    let generation = req.generation.to_string();
    sets.push(("SUPERGO_GENERATION", Cow::Owned(generation.into())));
    let is_set = |key: &OsStr| sets.iter().any(|(k, _)| OsStr::new(k) == key);
    // This spawn's own entries: the last setting of each name, in order.
    let own = || {
        sets.iter()
            .enumerate()
            .filter(|(i, (key, _))| !sets[i + 1..].iter().any(|(k, _)| k == key))
            .map(|(_, (key, value))| (*key, value.as_ref()))
    };
    let inherited = inherited();
    let kept = || {
        (!config.clear_env)
            .then(|| inherited.iter().filter(|(k, _, _)| !is_set(k)))
            .into_iter()
            .flatten()
    };
    let holds_nul = |(k, v): &(&str, &OsStr)| k.contains('\0') || v.as_bytes().contains(&0);
    if let Some((key, _)) = own().find(holds_nul) {
        return Err(key.to_string());
    }

    let with_slot = !req.listeners.is_empty();
    let slot = b"LISTEN_PID=".len() + PID_SLOT_DIGITS + 1;
    let size =
        own().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>() + if with_slot { slot } else { 0 };
    let mut bytes = Vec::with_capacity(size);
    for (key, value) in own() {
        bytes.extend_from_slice(key.as_bytes());
        bytes.push(b'=');
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    let listen_pid = with_slot.then_some(bytes.len());
    if with_slot {
        bytes.extend_from_slice(b"LISTEN_PID=");
        bytes.extend(std::iter::repeat_n(0u8, PID_SLOT_DIGITS + 1));
    }

    // `bytes` is complete: its buffer stays where it is from here on.
    let count = kept().count() + own().count() + usize::from(with_slot) + 1;
    let mut pointers = Vec::with_capacity(count);
    pointers.extend(kept().map(|(_, _, entry)| entry));
    let base = bytes.as_mut_ptr();
    let mut offset = 0;
    for (key, value) in own() {
        // SAFETY: `offset` is the start of an entry within `bytes` (see just above).
        pointers.push(unsafe { base.add(offset) }.cast_const().cast());
        offset += key.len() + value.len() + 2;
    }
    if let Some(start) = listen_pid {
        // SAFETY: as above; the child writes its pid there through `bytes`.
        pointers.push(unsafe { base.add(start) }.cast_const().cast());
    }
    pointers.push(std::ptr::null());

    // The PATH the child gets: `environment` is the only setting of it supergo makes.
    let path = match config.environment.get("PATH") {
        Some(path) => Some(OsStr::new(path)),
        None if config.clear_env => None,
        None => inherited.get("PATH"),
    };
    Ok(Environ {
        bytes,
        pointers,
        listen_pid,
        path,
    })
}
