//! How supergo uses glibc's malloc and threads: one arena, no per-thread cache, a small
//! static TLS block, big blocks always mapped on their own, and freed memory given back
//! after the big moments (the initial start of every program).
//!
//! Why: supergo has a thread per program, and glibc keeps memory for each thread. Measured
//! with 1000 realistic programs (BENCHMARKS.md, issue 17):
//! - an arena per thread cost ~20 MiB (hence `M_ARENA_MAX = 1`);
//! - the per-thread cache (tcache: up to 7 freed chunks of each of 64 sizes, kept by the
//!   thread that freed them and counted as in use) ~12 KiB per thread, 12 MiB of 42. A worker
//!   allocates at a spawn and at a few transitions, rarely enough that the cache never pays
//!   for itself: `bench restart` measures the same restart latency without it;
//! - glibc puts each thread's descriptor and static TLS block at the top of its stack: 4.3 KB
//!   by default, of which ~1.5 KB is room reserved for `dlmopen` namespaces and for libraries
//!   `dlopen`ed later that use initial-exec TLS. A worker's deepest path (a spawn) then
//!   touches a third stack page; without that room it fits in two: 4 MiB less with 1000
//!   programs. supergo never calls `dlmopen`, and the only libraries it may `dlopen` are NSS
//!   modules (user and group names), which use dynamic TLS (on Debian 12 none needs the
//!   room). Should an operator's NSS module need it, its `dlopen` fails and a `user =` lookup
//!   says so; `GLIBC_TUNABLES=glibc.rtld.optional_static_tls=512` in supergo's environment
//!   gives the room back;
//! - glibc maps a big block (128 KiB and more) on its own, but raises that threshold to the
//!   size of each such block freed, up to 32 MiB: after the first big temporary (the config
//!   file's text, a state file written) the next ones were carved from the heap, among the
//!   programs' small allocations, and the room they left stayed there, resident. Setting the
//!   threshold (`M_MMAP_THRESHOLD`, in `limit_arenas`) keeps it fixed: 0.6 MiB less with 1000
//!   programs.
//!
//! glibc reads the cache and TLS settings only from `GLIBC_TUNABLES`, when the process
//! starts; no `mallopt` sets them (the arena count and the threshold are `mallopt`s). So
//! supergo, started without them, execs itself once, at the very top of `main` (before any
//! thread, fd or state exists; same pid, argv and fds), with them added, and the new image
//! puts the environment back as it was at once (`restore_env`): glibc has read it by then,
//! and children, the pre-flight of an upgrade and the next image of an upgrade in place see
//! the operator's environment, never supergo's tuning (an upgrade's new image tunes itself
//! the same way). A setting the operator's `GLIBC_TUNABLES` holds already is theirs and is
//! kept; should the exec fail (no /proc), supergo runs with glibc's defaults.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Set (only) in the image that `tune_or_reexec` started: the operator's `GLIBC_TUNABLES`,
/// as `=VALUE`, or `-` when it was not set.
const MARK: &str = "SUPERGO_MALLOC_TUNED";
const TUNABLES: &str = "GLIBC_TUNABLES";
/// The settings (see the module docs), each added unless the operator's sets it.
const SETTINGS: [&str; 3] = [
    "glibc.malloc.tcache_count=0",
    "glibc.rtld.nns=1",
    "glibc.rtld.optional_static_tls=0",
];

/// First thing in `main`: execs supergo again with its settings, unless that is done
/// already (then puts the environment back) or the operator's `GLIBC_TUNABLES` decides.
/// Returns when no exec happened, or when it failed.
pub fn tune_or_reexec() {
    if cfg!(not(target_env = "gnu")) {
        return;
    }
    if let Some(mark) = std::env::var_os(MARK) {
        restore_env(&mark);
        restore_name();
        return;
    }
    let theirs = std::env::var_os(TUNABLES);
    let Some(tuned) = tuned_value(theirs.as_deref()) else {
        return;
    };
    let mark = match &theirs {
        Some(value) => [OsStr::new("="), value].into_iter().collect::<OsString>(),
        None => OsString::from("-"),
    };
    // Single-threaded here (the top of `main`): changing the environment is safe.
    std::env::set_var(TUNABLES, tuned);
    std::env::set_var(MARK, &mark);
    let argv: Vec<OsString> = std::env::args_os().collect();
    let error = exec_self(&argv);
    // Still here: the exec failed. Run untuned, with the environment as it was.
    restore_env(&mark);
    crate::warn!(
        "cannot execute supergo again with its memory settings ({error}); \
         running with glibc's defaults, which take more memory per program"
    );
}

/// `GLIBC_TUNABLES` with supergo's settings added, or None when the operator's sets them
/// all already.
fn tuned_value(theirs: Option<&OsStr>) -> Option<OsString> {
    let theirs = theirs.map(OsStr::as_bytes).unwrap_or_default();
    let set = |name: &[u8]| {
        theirs
            .split(|&b| b == b':')
            .any(|item| item.split(|&b| b == b'=').next() == Some(name))
    };
    let mut tuned = theirs.to_vec();
    for setting in SETTINGS {
        let name = setting.split('=').next().unwrap_or(setting);
        if !set(name.as_bytes()) {
            if !tuned.is_empty() {
                tuned.push(b':');
            }
            tuned.extend_from_slice(setting.as_bytes());
        }
    }
    (tuned.len() != theirs.len()).then(|| OsString::from_vec(tuned))
}

/// Puts `GLIBC_TUNABLES` back as the operator had it, and removes the mark.
fn restore_env(mark: &OsStr) {
    match mark.as_bytes().strip_prefix(b"=") {
        Some(value) => std::env::set_var(TUNABLES, OsStr::from_bytes(value)),
        None => std::env::remove_var(TUNABLES),
    }
    std::env::remove_var(MARK);
}

/// The exec through /proc/self/exe named the process "exe" (the kernel takes the name from
/// the path executed): it gets the name it had, the base name of argv[0] (`ps`, `pgrep
/// supergo` and systemd's logs show it).
fn restore_name() {
    let Some(argv0) = std::env::args_os().next() else {
        return;
    };
    let base = argv0
        .as_bytes()
        .rsplit(|&b| b == b'/')
        .next()
        .unwrap_or_default();
    // The kernel keeps 15 bytes of a name.
    let base = &base[..base.len().min(15)];
    if let Ok(name) = std::ffi::CString::new(base) {
        let _ = nix::sys::prctl::set_name(&name);
    }
}

/// execve(/proc/self/exe, argv, environ): the same binary (even if its file was replaced
/// meanwhile), the same pid and fds. Returns the error when it fails.
fn exec_self(argv: &[OsString]) -> String {
    use std::ffi::CString;
    let to_c = |s: &OsStr| CString::new(s.as_bytes()).ok();
    let Some(argv) = argv.iter().map(|a| to_c(a)).collect::<Option<Vec<_>>>() else {
        return "an argument holds a NUL byte".to_string();
    };
    let env: Option<Vec<CString>> = std::env::vars_os()
        .map(|(k, v)| {
            to_c(
                &[k.as_os_str(), OsStr::new("="), &v]
                    .into_iter()
                    .collect::<OsString>(),
            )
        })
        .collect();
    let Some(env) = env else {
        return "an environment variable holds a NUL byte".to_string();
    };
    let Err(e) = nix::unistd::execve(c"/proc/self/exe", &argv, &env);
    e.desc().to_string()
}

/// One malloc arena for every thread, and every big block mapped on its own (see the
/// module docs). Call before any thread exists.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a malloc parameter; called before any thread exists.
    // (nix has no mallopt.)
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// From this size on, a block is mapped on its own and unmapped when freed: glibc's default,
/// fixed (see the module docs).
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Gives the free pages inside the heap back to the kernel (glibc gives back only the top
/// of the heap on its own). For after a peak of allocation, such as the initial start of
/// every program: it walks the free lists under the arena's lock, about a millisecond with
/// 1000 programs, so not for every request.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; safe to call from any thread.
    // (nix has no malloc_trim.)
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_each_setting_the_operator_has_not_set() {
        let tuned = |v: Option<&str>| {
            tuned_value(v.map(OsStr::new)).map(|t| t.into_string().expect("UTF-8"))
        };
        let all = SETTINGS.join(":");
        assert_eq!(tuned(None), Some(all.clone()));
        assert_eq!(tuned(Some("")), Some(all.clone()));
        assert_eq!(
            tuned(Some("glibc.malloc.check=3")),
            Some(format!("glibc.malloc.check=3:{all}"))
        );
        assert_eq!(
            tuned(Some("glibc.malloc.tcache_count=7")),
            Some(
                "glibc.malloc.tcache_count=7:glibc.rtld.nns=1:glibc.rtld.optional_static_tls=0"
                    .into()
            )
        );
        assert_eq!(
            tuned(Some("glibc.rtld.optional_static_tls=512")),
            Some(
                "glibc.rtld.optional_static_tls=512:glibc.malloc.tcache_count=0:glibc.rtld.nns=1"
                    .into()
            )
        );
        assert_eq!(tuned(Some(&all)), None);
    }
}
