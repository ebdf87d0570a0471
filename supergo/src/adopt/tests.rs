//! Every adoption primitive against real processes (`sleep`, started here with
//! `std::process::Command`: these are the test's own children, not children under
//! supervision) and real sockets, directories and files.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::{geteuid, getpgid, Pid};

use super::pidfd::{has_exited, pidfd_open, pidfd_send_signal, take_socket, wait_exit};
use super::procfs::{self, parse_stat};
use super::state_file::{default_dir, ensure_dir, file_name, StateFile};

/// A child killed and reaped when dropped, even when the test panics.
struct Reaped(Child);

impl Reaped {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id() as i32)
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every millisecond until it gives a value; panics after 10 s naming `what`.
fn poll_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn sleeper(cmd: &mut Command) -> Reaped {
    cmd.arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Reaped(cmd.spawn().expect("start sleep"))
}

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("supergo-adopt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn stat_is_parsed_when_the_command_name_holds_spaces_and_parentheses() {
    let text =
        "4242 (a) (b c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 5000 100 0 0";
    let stat = parse_stat(4242, text).unwrap();
    assert_eq!(stat.comm, "a) (b c)");
    assert_eq!(
        (stat.state, stat.ppid, stat.pgid, stat.sid),
        ('S', 1, 4242, 4242)
    );
    assert_eq!(stat.start_time, 987654);
    assert!(parse_stat(1, "1 (x) S 1 2")
        .unwrap_err()
        .contains("no field 22"));
    assert!(parse_stat(1, "garbage")
        .unwrap_err()
        .contains("/proc/1/stat"));

    // The same with a real process whose name is awkward: exec'd through a symlink so named.
    let dir = TempDir::new("comm");
    let link = dir.0.join("a) (b c");
    symlink("/bin/sleep", &link).expect("symlink");
    let child = sleeper(&mut Command::new(&link));
    // The name changes during the exec, which may still be under way.
    let stat = poll_until("the child's new name", || {
        let stat = procfs::stat(child.pid()).expect("stat of a running child");
        (stat.comm == "a) (b c").then_some(stat)
    });
    assert_eq!(stat.comm, "a) (b c");
    assert_eq!(stat.ppid, std::process::id() as i32);
    assert!(stat.is_alive());
    assert!(stat.start_time > 0);
    assert_eq!(procfs::start_time(child.pid()).unwrap(), stat.start_time);
}

#[test]
fn a_start_time_names_one_process_and_a_reused_pid_is_not_taken_for_it() {
    let mut child = sleeper(&mut Command::new("sleep"));
    let pid = child.pid();
    let start = procfs::start_time(pid).unwrap();
    assert!(procfs::is_same_process(pid, start));
    // Another start time is another process, whatever the pid.
    assert!(!procfs::is_same_process(pid, start + 1));
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(
        !procfs::is_same_process(pid, start),
        "an exited process is not the same process"
    );
}

#[test]
fn the_process_group_is_read() {
    let child = sleeper(Command::new("sleep").process_group(0));
    let stat = procfs::stat(child.pid()).unwrap();
    assert_eq!(stat.pgid, child.pid().as_raw());
    assert_eq!(getpgid(Some(child.pid())).unwrap(), child.pid());
    let own = procfs::stat(Pid::this()).unwrap();
    assert_eq!(own.pgid, getpgid(None).unwrap().as_raw());
}

#[test]
fn supergo_program_is_read_from_the_environment_the_process_started_with() {
    let child = sleeper(
        Command::new("sleep")
            .env("SUPERGO_PROGRAM", "web api")
            .env("SUPERGO_PROGRAMX", "no"),
    );
    // The kernel wakes the parent of a vfork-style spawn before it has set up the new
    // image's environment: /proc/PID/environ reads empty for that moment.
    let value = poll_until("sleep's environment", || {
        procfs::environ_var(child.pid(), "SUPERGO_PROGRAM").unwrap()
    });
    assert_eq!(value, "web api");
    assert_eq!(
        procfs::environ_var(child.pid(), "NO_SUCH_VARIABLE_HERE").unwrap(),
        None
    );
    assert_eq!(
        procfs::find_var(b"A=1\0SUPERGO_PROGRAM=\0", "SUPERGO_PROGRAM").unwrap(),
        ""
    );
    assert_eq!(
        procfs::find_var(b"XSUPERGO_PROGRAM=1\0", "SUPERGO_PROGRAM"),
        None
    );
}

/// A `sleep` holding `listener` at fd 5 (not 3: adoption must not assume fd 3).
fn holder(listener: &TcpListener) -> Reaped {
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sleep");
    // SAFETY: dup2 is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || match nix::libc::dup2(fd, 5) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    sleeper(&mut cmd)
}

#[test]
fn a_listening_socket_is_found_by_inode_and_taken_back_through_a_pidfd() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let inode = procfs::socket_inode(listener.as_fd()).unwrap();
    let child = holder(&listener);
    let pid = child.pid();
    let start = procfs::start_time(pid).unwrap();
    // The exec closes the child's O_CLOEXEC fds one by one, and its parent may be woken
    // before the last one: wait until fd 5 is the child's only copy of the socket.
    let link = format!("socket:[{inode}]");
    poll_until(
        "the child's exec to close its other copy of the socket",
        || {
            let copies = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .filter(|e| {
                    e.as_ref().is_ok_and(|e| {
                        std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == link.as_str())
                    })
                })
                .count();
            (copies == 1).then_some(())
        },
    );
    assert_eq!(procfs::find_socket_fd(pid, inode).unwrap(), Some(5));
    assert_eq!(
        procfs::find_socket_fd(pid, inode + 1_000_000).unwrap(),
        None
    );

    let taken = take_socket(pid, start, inode).expect("take the socket back");
    assert_eq!(taken.fd_in_process, 5);
    assert_eq!(procfs::socket_inode(taken.socket.as_fd()).unwrap(), inode);
    // Only the child's copy and the taken one remain: a connection queued now is accepted
    // on the taken fd, so it is the very socket, accept queue and all.
    drop(listener);
    let mut client = TcpStream::connect(addr).unwrap();
    let taken_listener = TcpListener::from(taken.socket);
    let (mut server, _) = taken_listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut buf = [0; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");

    let err = take_socket(pid, start + 1, inode).unwrap_err();
    assert!(
        err.contains(&format!("pid {pid} is no longer the process recorded")),
        "{err}"
    );
    let err = take_socket(pid, start, inode + 1_000_000).unwrap_err();
    assert!(err.contains("no longer holds socket inode"), "{err}");
}

#[test]
fn socket_inode_refuses_what_is_not_a_socket() {
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    assert!(procfs::socket_inode(file.as_fd())
        .unwrap_err()
        .to_string()
        .contains("not a socket"));
}

#[test]
fn a_pidfd_signals_its_process_and_sees_it_exit() {
    let child = sleeper(&mut Command::new("sleep"));
    let pidfd = pidfd_open(child.pid()).unwrap();
    assert!(!has_exited(pidfd.as_fd()).unwrap());
    pidfd_send_signal(pidfd.as_fd(), Signal::SIGTERM).unwrap();
    assert!(
        wait_exit(pidfd.as_fd(), Duration::from_secs(10)).unwrap(),
        "sleep did not exit on SIGTERM"
    );
    assert!(has_exited(pidfd.as_fd()).unwrap());
    let err = pidfd_open(Pid::from_raw(i32::MAX)).unwrap_err().to_string();
    assert!(err.starts_with("pidfd_open: "), "{err}");
}

#[test]
fn the_default_state_dir_follows_the_user_and_the_environment() {
    use std::ffi::OsStr;
    assert_eq!(
        default_dir(0, Some(OsStr::new("/run/user/0"))),
        Path::new("/run/supergo")
    );
    assert_eq!(
        default_dir(1000, Some(OsStr::new("/run/user/1000"))),
        Path::new("/run/user/1000/supergo")
    );
    assert_eq!(
        default_dir(1000, Some(OsStr::new("relative"))),
        Path::new("/tmp/supergo-1000")
    );
    assert_eq!(default_dir(1000, None), Path::new("/tmp/supergo-1000"));
}

#[test]
fn the_state_dir_is_created_private_and_an_unsafe_one_is_refused() {
    let temp = TempDir::new("dir");
    let dir = temp.0.join("a/b/state");
    ensure_dir(&dir).unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    ensure_dir(&dir).expect("an existing safe directory is fine");

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = ensure_dir(&dir).unwrap_err();
    assert!(
        err.contains("writable by group or others (mode 0777)") && err.contains("chmod 700"),
        "{err}"
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    let link = temp.0.join("link");
    symlink(&dir, &link).unwrap();
    assert!(ensure_dir(&link)
        .unwrap_err()
        .contains("is a symbolic link"));
    let file = temp.0.join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(ensure_dir(&file).unwrap_err().contains("not a directory"));

    // A directory of another user: as root, make one; otherwise / is one.
    let foreign = if geteuid().is_root() {
        let foreign = temp.0.join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        foreign
    } else {
        PathBuf::from("/")
    };
    let err = ensure_dir(&foreign).unwrap_err();
    assert!(
        err.contains("is owned by uid") && err.contains("not by supergo's uid"),
        "{err}"
    );
}

#[test]
fn the_state_file_is_replaced_atomically_one_per_control_address() {
    assert_eq!(file_name("127.0.0.1:22106"), "127.0.0.1_22106.state");
    assert_eq!(file_name("[::1]:22106"), "[__1]_22106.state");
    let temp = TempDir::new("file");
    let file = StateFile::new(&temp.0, "127.0.0.1:22106");
    assert_eq!(file.read().unwrap(), None);
    file.write("supergo-state 1.0\n[a]\n").unwrap();
    file.write("supergo-state 1.0\n[b]\n").unwrap();
    assert_eq!(
        file.read().unwrap().as_deref(),
        Some("supergo-state 1.0\n[b]\n")
    );
    let mode = std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Nothing but the state file is left in the directory: no temp file.
    let names: Vec<_> = std::fs::read_dir(&temp.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["127.0.0.1_22106.state"]);
    // A temp file left by a supergo killed mid-write does not stop the next write.
    let stale = temp
        .0
        .join(format!(".127.0.0.1_22106.state.{}.tmp", std::process::id()));
    std::fs::write(&stale, "half").unwrap();
    file.write("supergo-state 1.0\n[c]\n").unwrap();
    assert!(!stale.exists());
    let other = StateFile::new(&temp.0, "127.0.0.1:22107");
    assert_ne!(other.path(), file.path());
    file.remove().unwrap();
    file.remove().expect("removing a missing file is fine");
    assert_eq!(file.read().unwrap(), None);
    std::fs::write(file.path(), b"\xff\xfe").unwrap();
    assert!(file.read().unwrap_err().contains("not UTF-8"));
}
