//! Where everything the bench runs is found: supergo's binaries beside the bench's own, the
//! example children, the peers on PATH, free ports, and the machine's description.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cleanup;

/// The target dir's profile directory the bench runs from (`target/release`), and the others.
#[derive(Clone, Debug)]
pub struct Paths {
    /// `target/release`.
    pub profile_dir: PathBuf,
    /// `target`.
    pub target_dir: PathBuf,
    /// The workspace root (the parent of `target`), for `go-example/`.
    pub root: PathBuf,
    /// `--supergo PATH`: the supergo binary to measure instead of `target/release/supergo`
    /// (an earlier build, say, for a before/after).
    pub supergo_binary: Option<PathBuf>,
}

impl Paths {
    pub fn find() -> Result<Paths, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the bench binary: {e}"))?;
        let profile_dir = exe
            .parent()
            .ok_or("the bench binary has no directory")?
            .to_path_buf();
        let target_dir = profile_dir
            .parent()
            .ok_or("the bench binary's directory has no parent")?
            .to_path_buf();
        let root = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .or_else(|| target_dir.parent().map(Path::to_path_buf))
            .ok_or("cannot find the workspace root")?;
        Ok(Paths {
            profile_dir,
            target_dir,
            root,
            supergo_binary: None,
        })
    }

    /// A binary of the workspace, which must have been built.
    pub fn binary(&self, rel: &str) -> Result<PathBuf, String> {
        let p = self.profile_dir.join(rel);
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "{} not found: build first with `cargo build --release --workspace --bins --examples`",
                p.display()
            ))
        }
    }

    pub fn supergo(&self) -> Result<PathBuf, String> {
        match &self.supergo_binary {
            Some(p) if p.is_file() => Ok(p.clone()),
            Some(p) => Err(format!("--supergo {}: no such file", p.display())),
            None => self.binary("supergo"),
        }
    }

    pub fn supergoctl(&self) -> Result<PathBuf, String> {
        self.binary("supergoctl")
    }

    /// The Rust demo child.
    pub fn hello(&self) -> Result<PathBuf, String> {
        self.binary("examples/hello")
    }

    /// Where results go by default.
    pub fn results_dir(&self) -> PathBuf {
        self.target_dir.join("bench")
    }
}

/// The example children that share the HTTP contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildKind {
    Rust,
    C,
    Go,
}

impl ChildKind {
    pub fn name(self) -> &'static str {
        match self {
            ChildKind::Rust => "rust",
            ChildKind::C => "c",
            ChildKind::Go => "go",
        }
    }

    pub fn parse_list(s: &str) -> Result<Vec<ChildKind>, String> {
        match s {
            "rust" => Ok(vec![ChildKind::Rust]),
            "c" => Ok(vec![ChildKind::C]),
            "go" => Ok(vec![ChildKind::Go]),
            "all" => Ok(vec![ChildKind::Rust, ChildKind::C, ChildKind::Go]),
            other => Err(format!("--child {other}: want rust, c, go or all")),
        }
    }

    /// The child's executable; the Go one is built into `target/bench/go-example` the first
    /// time (the Go toolchain is offline here: `GOFLAGS=-mod=mod GOPROXY=off`).
    pub fn executable(self, paths: &Paths) -> Result<PathBuf, String> {
        match self {
            ChildKind::Rust => paths.hello(),
            ChildKind::C => paths.binary("hello-c"),
            ChildKind::Go => build_go(paths),
        }
    }
}

fn build_go(paths: &Paths) -> Result<PathBuf, String> {
    let src = paths.root.join("go-example");
    if !src.join("go.mod").is_file() {
        return Err(format!(
            "{} has no go.mod: no Go child to run",
            src.display()
        ));
    }
    let out_dir = paths.results_dir();
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let out = out_dir.join("go-example");
    let go = find_on_path("go").ok_or("`go` is not on PATH: cannot build go-example")?;
    let mut cmd = Command::new(go);
    cmd.current_dir(&src)
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .arg("build")
        .arg("-o")
        .arg(&out)
        .arg(".");
    let done = cleanup::run(&mut cmd, Duration::from_secs(300))?;
    if !done.success() {
        return Err(format!(
            "go build in {} failed: {}",
            src.display(),
            done.output()
        ));
    }
    Ok(out)
}

/// The first executable `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A free loopback port: bound to port 0, the kernel's pick, then released for the system
/// under test to bind (the short race is harmless on a quiet machine, and a bind failure names
/// the address).
pub fn free_addr() -> Result<SocketAddr, String> {
    let l =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    l.local_addr().map_err(|e| format!("getsockname: {e}"))
}

/// The machine, for the report: `nproc`, the CPU model, the kernel.
pub fn machine() -> serde_json::Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| crate::procfs::parse_status_field(&t, "MemTotal"));
    // The machine is shared: its load when the run started says how quiet it was.
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    serde_json::json!({
        "nproc": cpus, "cpu_model": model, "kernel": kernel, "mem_kib": mem_kib,
        "loadavg_at_start": loadavg,
    })
}

/// What was measured: the commit of the workspace (with `-dirty` when the work tree has
/// changes) and the size and age of the supergo binary, since other builds may replace it.
pub fn provenance(paths: &Paths) -> serde_json::Value {
    let git = |args: &[&str]| -> Option<String> {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(&paths.root).args(args);
        let done = cleanup::run(&mut cmd, Duration::from_secs(20)).ok()?;
        done.success().then(|| done.stdout.trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
    let binary = paths.supergo().ok().and_then(|p| {
        let meta = std::fs::metadata(&p).ok()?;
        let modified = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(serde_json::json!({
            "path": p.display().to_string(),
            "bytes": meta.len(),
            "modified_unix": modified,
        }))
    });
    serde_json::json!({
        "commit": commit,
        "dirty": dirty,
        "supergo_binary": binary,
    })
}
