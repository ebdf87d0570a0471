//! How a spawn fails: `SpawnError`, the operator-facing reason every step of a spawn gives,
//! and the two ways the steps build one (`fail`, and `cstring` for text bound for the C
//! side). A leaf, so that every part of a spawn can fail without importing another part.

use std::ffi::CString;
use std::fmt;

use nix::unistd::Pid;

/// A spawn that could not happen, with an operator-facing reason.
#[derive(Debug, Clone)]
pub struct SpawnError {
    /// Set when a child was cloned and then failed before or at `execve`: its exit will
    /// still be reaped and routed; the caller must not take it for a running process.
    pub pid: Option<Pid>,
    pub message: String,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub(super) fn fail(message: String) -> SpawnError {
    SpawnError { pid: None, message }
}

/// `bytes` as a C string for argv, envp or a path; a NUL inside is an error naming `what`.
pub(super) fn cstring(bytes: &[u8], program: &str, what: &str) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| fail(format!("{program}: {what} contains a NUL byte")))
}
