//! Where the state file lives, and how it is written and read.
//!
//! - `state_dir`: `[supergo] state_dir`, else `/run/supergo` as root, else
//!   `$XDG_RUNTIME_DIR/supergo`, else `/tmp/supergo-UID`; `ensure_dir` creates it 0700 and
//!   refuses one that another user could tamper with (a symlink, another owner, writable by
//!   group or others): a state file names pids that supergo will signal and take fds from.
//! - One file per control address (two supergos on one machine never share one):
//!   `127.0.0.1_22106.state`, in the handover format (`handover::StateWriter`) without fds.
//! - Written atomically: a temp file in the same directory, fsync, rename. A reader sees the
//!   old file or the new one, never half of one, even if supergo is killed mid-write. (The
//!   fsync matters only when `state_dir` is on disk and the machine loses power, and then
//!   every recorded process is gone anyway; on tmpfs, /run's usual home, it costs nothing.)

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::geteuid;

/// The state directory: `configured` (`[supergo] state_dir`), else the default for this
/// user and environment.
pub fn state_dir(configured: Option<&Path>) -> PathBuf {
    match configured {
        Some(dir) => dir.to_path_buf(),
        None => default_dir(
            geteuid().as_raw(),
            std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
        ),
    }
}

/// `/run/supergo` for root; `$XDG_RUNTIME_DIR/supergo` (a directory systemd-logind makes
/// for the user, 0700) when set to an absolute path; else `/tmp/supergo-UID`.
pub fn default_dir(euid: u32, xdg_runtime_dir: Option<&OsStr>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from("/run/supergo");
    }
    match xdg_runtime_dir.map(Path::new) {
        Some(dir) if dir.is_absolute() => dir.join("supergo"),
        _ => PathBuf::from(format!("/tmp/supergo-{euid}")),
    }
}

/// Creates `dir` (and missing parents) with mode 0700, or checks an existing one: it must
/// be a real directory (not a symlink), owned by supergo's user, and not writable by group
/// or others. Otherwise another user could plant a state file naming processes for supergo
/// to signal, or a symlink sending supergo's writes elsewhere.
pub fn ensure_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        // Left to the checks below: a symlink or a file in the way.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("state_dir {shown}: cannot create it: {e}")),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("state_dir {shown}: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err(format!("state_dir {shown} is a symbolic link: refusing it (point state_dir at the real directory)"));
    }
    if !meta.is_dir() {
        return Err(format!("state_dir {shown} exists and is not a directory"));
    }
    let me = geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "state_dir {shown} is owned by uid {}, not by supergo's uid {me}: another user could plant a state \
             file there; remove it or set [supergo] state_dir to a directory of your own",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "state_dir {shown} is writable by group or others (mode {mode:04o}): another user could plant a \
             state file there; `chmod 700 {shown}`"
        ));
    }
    Ok(())
}

/// The name of the state file of the control API at `control` (`127.0.0.1:22106` →
/// `127.0.0.1_22106.state`, `[::1]:22106` → `[__1]_22106.state`): one file per address.
pub fn file_name(control: &str) -> String {
    let name: String = control
        .chars()
        .map(|c| {
            if c == ':' || c == '/' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("{name}.state")
}

/// The state file of one supergo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file for the control address `control` in `dir` (see `ensure_dir`).
    pub fn new(dir: &Path, control: &str) -> StateFile {
        StateFile {
            path: dir.join(file_name(control)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `text`, atomically (temp file, fsync, rename).
    pub fn write(&self, text: &str) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
        };
        // A temp file left by a supergo that died mid-write (with this same pid): ours.
        let mut file = match open() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&temp)?;
                open()?
            }
            other => other?,
        };
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all());
        drop(file);
        if let Err(e) = written.and_then(|()| std::fs::rename(&temp, &self.path)) {
            let _ = std::fs::remove_file(&temp);
            return Err(io::Error::new(
                e.kind(),
                format!("cannot write {}: {e}", self.path.display()),
            ));
        }
        Ok(())
    }

    /// The file's text: `None` when there is none (a first start, or a clean shutdown). An
    /// unreadable file is an error naming it; the caller warns and starts normally.
    pub fn read(&self) -> Result<Option<String>, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                format!(
                    "{}: not UTF-8 text: not a supergo state file",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// Removes the file (after a clean shutdown nothing is left to adopt).
    pub fn remove(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
