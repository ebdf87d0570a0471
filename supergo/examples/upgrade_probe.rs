//! A test program for the upgrade's exec mechanism alone (`handover::exec` and `inherit`),
//! without the supervisor: it hands a pipe, a listening socket and a state to a new image of
//! a binary across a real `execve`, with a SIGTERM pending, and reports what arrived.
//! `tests/handover.rs` runs it.
//!
//! `upgrade_probe NEW_BINARY`: writes a state, blocks SIGTERM and raises it, and execs
//! NEW_BINARY (a copy of this program) with the state. Every image prints `phase=… key=value…`
//! lines on stdout (they share it, as they share the pid):
//! - `phase=first`: before the exec; `phase=carried-on`: the exec failed and nothing changed;
//! - `phase=refusing`: the new image, told by `PROBE_FAIL_RESTORE=1` to refuse the state,
//!   falls back to the old binary (after deleting the file `PROBE_DELETE_OLD` names);
//! - `phase=restored`: the state was read and committed; then SIGTERM is unblocked, and the
//!   pending one ends the process (status: killed by SIGTERM).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use supergo::adopt::procfs::socket_inode;
use supergo::handover::exec::{upgrade, SelfExe, Target};
use supergo::handover::inherit::Inherited;
use supergo::handover::StateWriter;

const ODD: &str = " a value with = [brackets] \\ and\na newline ";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            println!("phase=error message={e:?}");
            ExitCode::from(3)
        }
    }
}

fn run() -> Result<ExitCode, String> {
    match Inherited::take()? {
        None => first(),
        Some(inherited) => after_exec(inherited),
    }
}

fn report(phase: &str, extra: &str) {
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    println!(
        "phase={phase} pid={} exe={:?} {extra}",
        std::process::id(),
        exe.display().to_string()
    );
    let _ = std::io::stdout().flush();
}

fn cloexec(fd: BorrowedFd<'_>) -> bool {
    fcntl(fd, FcntlArg::F_GETFD)
        .is_ok_and(|f| FdFlag::from_bits_truncate(f).contains(FdFlag::FD_CLOEXEC))
}

fn first() -> Result<ExitCode, String> {
    let new_binary = std::env::args_os()
        .nth(1)
        .ok_or("usage: upgrade_probe NEW_BINARY")?;
    let self_exe = SelfExe::open().map_err(|e| e.to_string())?;
    let target = Target::resolve(Some(Path::new(&new_binary)), &self_exe).map_err(|e| e.0)?;
    let (pipe_r, pipe_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    nix::unistd::write(&pipe_w, b"carried").map_err(|e| e.to_string())?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    // Open like every fd of supergo (O_CLOEXEC) and not handed over: must not survive.
    let private = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
    let inode = socket_inode(listener.as_fd()).map_err(|e| e.to_string())?;
    report("first", &format!("inode={inode}"));

    let mut writer = StateWriter::new();
    writer
        .section("probe", "")
        .write_fd("pipe_r", pipe_r.as_fd())
        .write_fd("listener", listener.as_fd())
        .write_u64("inode", inode)
        .write_i64(
            "private_fd",
            i64::from(std::os::fd::AsRawFd::as_raw_fd(&private)),
        )
        .write_str("odd", ODD)
        .write_deadline("deadline", Instant::now() + Duration::from_secs(60));
    // A SIGTERM pending across the exec: blocked first, so it waits for the new image.
    let term = SigSet::from(Signal::SIGTERM);
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&term), None).map_err(|e| e.to_string())?;
    kill(Pid::this(), Signal::SIGTERM).map_err(|e| e.to_string())?;
    // Another thread: an exec replaces a multi-threaded process too.
    std::thread::spawn(|| loop {
        std::thread::park();
    });

    let err = upgrade(&target, &self_exe, writer);
    // Still here: the exec failed, and everything must be as before.
    let mut mask = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, None, Some(&mut mask)).map_err(|e| e.to_string())?;
    let only_term = mask.contains(Signal::SIGTERM) && !mask.contains(Signal::SIGHUP);
    report(
        "carried-on",
        &format!(
            "cloexec={} mask_restored={only_term} error={:?}",
            cloexec(pipe_r.as_fd()) && cloexec(listener.as_fd()),
            err.0
        ),
    );
    Ok(ExitCode::SUCCESS)
}

fn after_exec(inherited: Inherited) -> Result<ExitCode, String> {
    if inherited.fallback_reason().is_none() && std::env::var_os("PROBE_FAIL_RESTORE").is_some() {
        report("refusing", "");
        // As `install` does to the old binary: the fallback must run it from its fd.
        if let Some(old) = std::env::var_os("PROBE_DELETE_OLD") {
            std::fs::remove_file(&old).map_err(|e| format!("remove {old:?}: {e}"))?;
        }
        let err = inherited.fall_back("test: restore refused");
        return Err(err.0);
    }
    let state = inherited.state().map_err(|e| e.to_string())?;
    let probe = state.section("probe").ok_or("no [probe] section")?;
    let private_fd = probe.i64_or("private_fd", -1).map_err(|e| e.to_string())?;
    // Checked before this image opens anything that could take the number.
    let private_closed = i32::try_from(private_fd)
        .ok()
        .filter(|fd| *fd > 2)
        .is_some_and(|fd| {
            // SAFETY: borrowed for one fcntl; a closed fd answers EBADF.
            fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD).is_err()
        });
    let pipe_r = probe
        .fd("pipe_r")
        .map_err(|e| e.to_string())?
        .ok_or("no pipe_r")?;
    let listener = probe
        .fd("listener")
        .map_err(|e| e.to_string())?
        .ok_or("no listener")?;
    let inode = probe.u64_or("inode", 0).map_err(|e| e.to_string())?;
    let odd_ok = probe.str("odd").map_err(|e| e.to_string())? == Some(ODD);
    let deadline = probe
        .deadline("deadline")
        .map_err(|e| e.to_string())?
        .ok_or("no deadline")?;
    let left = deadline.saturating_duration_since(Instant::now());
    let deadline_ok = left > Duration::from_secs(50) && left <= Duration::from_secs(60);
    let fallback = inherited.fallback_reason().unwrap_or("").to_string();
    let skipped = state.skipped().len();
    let committed = inherited.commit(&state);
    let pipe_r = std::fs::File::from(pipe_r.into_owned(&committed));
    let listener = TcpListener::from(listener.into_owned(&committed));

    let fds_cloexec = cloexec(pipe_r.as_fd()) && cloexec(listener.as_fd());
    let mut carried = [0; 7];
    (&pipe_r)
        .read_exact(&mut carried)
        .map_err(|e| format!("read the pipe: {e}"))?;
    let same_socket = socket_inode(listener.as_fd()).map_err(|e| e.to_string())? == inode;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let _client = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    let accepts = listener.accept().is_ok();
    // nix has no sigpending: read it the way /proc shows it, SigPnd/ShdPnd.
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let shd_pnd = status
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .unwrap_or("")
        .trim();
    let term_pending =
        u64::from_str_radix(shd_pnd, 16).is_ok_and(|bits| bits & (1 << (15 - 1)) != 0);
    // Nothing of the handover is left open: not the memfd, not the old binary.
    let leftovers: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| e.to_string())?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|link| link.display().to_string())
        .filter(|link| {
            link.contains("supergo-state") || link.ends_with("/old") || link.ends_with("/new")
        })
        .collect();
    report(
        "restored",
        &format!(
            "fallback={fallback:?} pipe={} same_socket={same_socket} accepts={accepts} odd={odd_ok} \
             deadline={deadline_ok} skipped={skipped} cloexec={fds_cloexec} term_pending={term_pending} leftovers={leftovers:?} private_closed={private_closed}",
            String::from_utf8_lossy(&carried),
        ),
    );
    // The pending SIGTERM ends the process here, with the default action.
    pthread_sigmask(
        SigmaskHow::SIG_UNBLOCK,
        Some(&SigSet::from(Signal::SIGTERM)),
        None,
    )
    .map_err(|e| e.to_string())?;
    Err("SIGTERM was not pending: still alive after unblocking it".into())
}
