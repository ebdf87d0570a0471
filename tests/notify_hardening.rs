//! What other local processes can do to a program's `NOTIFY_SOCKET` (issue 12, items 1, 2
//! and 9): attach hundreds of fds to datagrams, bind the socket names supergo would use next,
//! and send from a process that is gone (or whose pid now belongs to someone else) by the
//! time supergo reads the datagram.
//!
//! "supergo reads late" is made certain, not hoped for: the test stops supergo (SIGSTOP)
//! while the senders send, and lets it go on (SIGCONT) once the situation is set up. A
//! `Frozen` guard resumes it on every path, panics included. While it is stopped, nothing
//! reaches the files it writes for its children, so the helpers' stderr goes straight to a
//! file of their own (`2>>`).

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram};
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::unistd::{Pid, Uid};

use crate::util::{
    fail, http_get, notify_socket_of, pid_alive, pid_of, poll_until, probe_bin, proc_stat,
    try_poll_until, wait_pid_gone, Supergo, TIMEOUT,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// `command` and `args` that run `script` with `/bin/sh -c`.
fn shell(script: &str) -> String {
    format!("command = \"/bin/sh\"\nargs = [\"-c\", '''{script}''']")
}

/// Shell code that waits until the test creates the file `{dir}/gate`.
const WAIT_FOR_GATE: &str = "while [ ! -e {dir}/gate ]; do sleep 0.01; done";

fn open_gate(sg: &Supergo) {
    let gate = sg.path("gate");
    fs::write(&gate, b"").unwrap_or_else(|err| fail(format!("create {}: {err}", gate.display())));
}

/// The address of a `NOTIFY_SOCKET` value (`@name`: abstract).
fn notify_addr(socket: &str) -> UnixAddr {
    let name = socket
        .strip_prefix('@')
        .unwrap_or_else(|| fail(format!("NOTIFY_SOCKET={socket} is not an abstract name")));
    UnixAddr::new_abstract(name.as_bytes())
        .unwrap_or_else(|err| fail(format!("NOTIFY_SOCKET={socket}: {err}")))
}

/// How many fds the process `pid` has open.
fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|err| fail(format!("list /proc/{pid}/fd: {err}")))
        .count()
}

/// supergo stopped with SIGSTOP; SIGCONT when dropped, whatever happens in between.
struct Frozen<'a>(&'a Supergo);

impl<'a> Frozen<'a> {
    fn new(sg: &'a Supergo) -> Frozen<'a> {
        sg.signal(Signal::SIGSTOP);
        // SIGSTOP takes effect asynchronously, thread by thread: wait until every thread
        // (the notify readers above all) is stopped.
        let tasks = format!("/proc/{}/task", sg.pid());
        poll_until(
            TIMEOUT,
            "every thread of supergo to be stopped (SIGSTOP)",
            || {
                let threads = fs::read_dir(&tasks).ok()?;
                let mut all_stopped = true;
                for thread in threads.flatten() {
                    let stat = fs::read_to_string(thread.path().join("stat")).unwrap_or_default();
                    let state = stat
                        .rsplit_once(") ")
                        .and_then(|(_, rest)| rest.chars().next());
                    all_stopped &= state == Some('T');
                }
                all_stopped.then_some(())
            },
        );
        Frozen(sg)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.pid()), Signal::SIGCONT);
    }
}

/// The first `probe: pid N: <what>` line of a probe's stderr file: N.
fn probe_pid_saying(sg: &Supergo, file: &str, what: &str) -> i32 {
    poll_until(TIMEOUT, &format!("`{what}` in {file}"), || {
        let text = fs::read_to_string(sg.path(file)).unwrap_or_default();
        text.lines().find_map(|line| {
            let rest = line.strip_prefix("probe: pid ")?;
            let (pid, said) = rest.split_once(": ")?;
            said.starts_with(what).then(|| pid.parse().ok()).flatten()
        })
    })
}

/// `GET /` on the program's address: the pid that answered.
fn answering_pid(addr: &str) -> i32 {
    match http_get(addr, "/") {
        Ok((200, body)) => body
            .trim()
            .strip_prefix("pid: ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| fail(format!("GET / on {addr}: {body:?} is not `pid: N`"))),
        Ok((status, body)) => fail(format!("GET / on {addr}: HTTP {status}: {body:?}")),
        Err(err) => fail(format!("GET / on {addr}: {err}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Item 1: fds attached to datagrams

/// Sends `copies` copies of `fd` in one datagram saying `text` to `addr`.
fn send_with_fds(addr: &UnixAddr, text: &[u8], fd: &OwnedFd, copies: usize) {
    let sock = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap_or_else(|err| fail(format!("socket: {err}")));
    let fds = vec![fd.as_raw_fd(); copies];
    sendmsg(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(text)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        Some(addr),
    )
    .unwrap_or_else(|err| fail(format!("sendmsg with {copies} fds: {err}")));
}

#[test]
fn fds_attached_to_notify_datagrams_are_all_closed_and_the_program_still_gets_ready() {
    let sg = Supergo::start(
        "notify_fd_flood",
        &format!(
            r#"
[program.web]
{}
listen_addrs = ["127.0.0.1:{{port}}"]
ready = "notify"
ready_timeout = 60
stop_timeout = 5
"#,
            shell(&format!("{WAIT_FOR_GATE}; exec {{probe}} notify serve"))
        ),
    );
    let starting = sg.wait_state("web", "Starting", TIMEOUT);
    let first = pid_of(&starting);
    let addr = notify_addr(&notify_socket_of(first));
    let before = fd_count(sg.pid());

    // 20 datagrams of 200 fds (what the report measured: 11 -> 1291 fds), and one with
    // the most a datagram can carry (SCM_MAX_FD).
    let devnull: OwnedFd = fs::File::open("/dev/null")
        .unwrap_or_else(|err| fail(format!("open /dev/null: {err}")))
        .into();
    for _ in 0..20 {
        send_with_fds(&addr, b"STATUS=flood", &devnull, 200);
    }
    send_with_fds(&addr, b"READY=1", &devnull, 253);

    // The child's READY=1 is queued behind every datagram above: once the program is
    // ready, supergo has read them all.
    open_gate(&sg);
    sg.wait_state("web", "Running", TIMEOUT);
    let after = fd_count(sg.pid());
    // A few fds come and go with the control API's connections; one datagram's worth
    // (200) left open would be a leak.
    if after > before + 20 {
        fail(format!(
            "supergo had {before} fds open before the datagrams and {after} after: the fds \
             attached to them were not all closed"
        ));
    }
    let test_pid = std::process::id();
    sg.wait_log(
        &format!("web: NOTIFY_SOCKET: closed 200 file descriptor(s) that pid {test_pid} attached"),
        TIMEOUT,
    );

    // And the program still restarts through the same socket.
    sg.api_ok("POST", "/restart/web");
    let second = sg.running_pid("web");
    assert_ne!(
        second, first,
        "the restart should have started a new process"
    );
    // The old process may take a last connection before its SIGTERM lands.
    poll_until(TIMEOUT, "the new process to answer", || {
        (answering_pid(&sg.app_addr()) == second).then_some(())
    });
    let restarted = fd_count(sg.pid());
    assert!(
        restarted <= before + 20,
        "supergo had {before} fds before the datagrams and {restarted} after a restart"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 2: names bound in advance

#[test]
fn notify_socket_names_bound_in_advance_by_someone_else_do_not_stop_a_new_program() {
    let sg = Supergo::start(
        "notify_names_squatted",
        r#"
[program.first]
command = "{probe} sleep"
start_secs = 0.2
"#,
    );
    sg.wait_state("first", "Running", TIMEOUT);
    // The names supergo used to choose: `supergo/<its pid>/<program>/<n>`, n counting up
    // from 0 in the whole daemon. Bind the next ones for the program about to be added.
    let squatted: Vec<(String, UnixDatagram)> = (0..64)
        .map(|n| {
            let name = format!("supergo/{}/late/{n}", sg.pid());
            let addr = UnixSocketAddr::from_abstract_name(name.as_bytes())
                .unwrap_or_else(|err| fail(format!("abstract name {name}: {err}")));
            let sock = UnixDatagram::bind_addr(&addr)
                .unwrap_or_else(|err| fail(format!("bind @{name}: {err}")));
            (format!("@{name}"), sock)
        })
        .collect();

    sg.write_config(
        r#"
[program.first]
command = "{probe} sleep"
start_secs = 0.2

[program.late]
command = "{probe} notify sleep"
ready = "notify"
ready_timeout = 30
"#,
    );
    sg.api_ok("POST", "/update");
    let late = sg.running_pid("late");
    let socket = notify_socket_of(late);
    assert!(
        squatted.iter().all(|(name, _)| *name != socket),
        "late was given the squatted name {socket}"
    );

    // A stop and a start make a new process on the same program: it gets ready too.
    sg.api_ok("POST", "/stop/late");
    sg.wait_state("late", "Stopped", TIMEOUT);
    sg.api_ok("POST", "/start/late");
    let again = sg.running_pid("late");
    assert_ne!(again, late);
    drop(squatted);
}

// ---------------------------------------------------------------------------------------------
// Item 9: READY=1 from a short-lived helper in the program's process group

/// supergo running `web`, a `ready = "notify"` program whose shell runs `script` once the
/// gate opens (a helper that notifies, then the server it execs); web's pid, Starting.
fn start_behind_a_helper(name: &str, script: &str) -> (Supergo, i32) {
    let sg = Supergo::start(
        name,
        &format!(
            r#"
[program.web]
{}
listen_addrs = ["127.0.0.1:{{port}}"]
ready = "notify"
ready_timeout = 60
stop_timeout = 5
stderr_file = "{{dir}}/web.err"
"#,
            shell(&format!("{WAIT_FOR_GATE}; {script}"))
        ),
    );
    let main = pid_of(&sg.wait_state("web", "Starting", TIMEOUT));
    (sg, main)
}

#[test]
fn ready_from_a_helper_that_waits_for_the_barrier_counts_even_when_supergo_reads_it_late() {
    // `sh -c 'systemd-notify --ready; exec server'`, with a helper that notifies under its
    // own pid (systemd-notify as root would claim its parent's) and then waits, as
    // systemd-notify does, until supergo has closed the fd of its BARRIER=1.
    let (sg, main) = start_behind_a_helper(
        "notify_helper_barrier",
        "{probe} notify barrier exit 0 2>>{dir}/helper.err; exec {probe} serve",
    );
    let frozen = Frozen::new(&sg);
    open_gate(&sg);
    let helper = probe_pid_saying(&sg, "helper.err", "sent BARRIER=1, waiting");
    assert_ne!(helper, main, "the helper is a process of its own");
    let stat = proc_stat(helper).unwrap_or_else(|| {
        fail(format!(
            "helper pid {helper} is gone while supergo is stopped"
        ))
    });
    assert_eq!(
        stat.pgid, main,
        "the helper should be in the program's process group"
    );
    // While supergo cannot read, the helper cannot go: the barrier holds it.
    assert!(
        pid_alive(helper),
        "helper pid {helper} should wait for the barrier"
    );
    drop(frozen);

    let status = sg.wait_state("web", "Running", TIMEOUT);
    assert_eq!(
        pid_of(&status),
        main,
        "the shell exec'd the server in its own pid"
    );
    probe_pid_saying(&sg, "helper.err", "barrier released");
    wait_pid_gone(helper, TIMEOUT);
    assert_eq!(answering_pid(&sg.app_addr()), main);
}

#[test]
fn ready_from_a_helper_that_exited_before_supergo_read_it_is_refused_with_advice() {
    // The same helper without the barrier: it is gone (reaped by the shell) before supergo
    // reads its READY=1, and nothing can tell its process group any more.
    let (sg, main) = start_behind_a_helper(
        "notify_helper_gone",
        "{probe} notify exit 0 2>>{dir}/helper.err; exec {probe} serve 2>>{dir}/server.err",
    );
    let frozen = Frozen::new(&sg);
    open_gate(&sg);
    let helper = probe_pid_saying(&sg, "helper.err", "sent READY=1");
    // The server (the shell's pid, after `exec`) prints its start line after the shell
    // has reaped the helper.
    poll_until(TIMEOUT, "the server's start line in server.err", || {
        let text = fs::read_to_string(sg.path("server.err")).unwrap_or_default();
        text.contains(&format!("probe: pid {main} started"))
            .then_some(())
    });
    assert!(!pid_alive(helper), "helper pid {helper} should be gone");
    drop(frozen);

    sg.wait_log(
        &format!(
            "web: NOTIFY_SOCKET: ignoring a notification from pid {helper} (\"READY=1\"): that \
             process had exited before supergo read it"
        ),
        TIMEOUT,
    );
    let status = sg.status("web");
    assert_eq!(
        status["state"], "Starting",
        "a READY=1 whose sender cannot be identified must not count: {status}"
    );
}

#[test]
fn ready_from_a_reaped_sender_whose_pid_now_belongs_to_the_program_is_refused() {
    // An outsider sends READY=1 and exits; before supergo reads it, its pid is given to a
    // new process inside the program's group. Looking the sender's group up by pid would
    // take the outsider for a member; the pidfd the kernel attached says it is gone.
    let sg = Supergo::start(
        "notify_pid_reused",
        r#"
[program.web]
command = "{probe} hold-pid {dir}/reuse sleep"
ready = "notify"
ready_timeout = 60
stop_timeout = 5
stderr_file = "{dir}/web.err"
"#,
    );
    let main = pid_of(&sg.wait_state("web", "Starting", TIMEOUT));
    let socket = notify_socket_of(main);

    let frozen = Frozen::new(&sg);
    let outsider = Command::new(probe_bin())
        .args(["notify", "exit", "0"])
        .env("NOTIFY_SOCKET", &socket)
        .env_remove("PROBE_REPORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| fail(format!("start the outsider probe: {err}")));
    let outsider_pid = i32::try_from(outsider.id()).expect("a pid fits in pid_t");
    let status = outsider_pid_waiter(outsider);
    assert!(status.success(), "the outsider probe failed: {status}");

    // The outsider is reaped: its pid is free. The program's process takes it.
    fs::write(sg.path("reuse"), format!("{outsider_pid}\n"))
        .unwrap_or_else(|err| fail(format!("write the pid to reuse: {err}")));
    let outcome = poll_until(TIMEOUT, "the program to report on hold-pid", || {
        fs::read_to_string(sg.path("reuse.done")).ok()
    });
    if outcome.trim() != format!("held {outsider_pid}") {
        if !Uid::effective().is_root() {
            let reason = "SKIPPED ready_from_a_reaped_sender_whose_pid_now_belongs_to_the_program_is_refused: \
                          making a process with a chosen pid needs root";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{reason}, and CI=true: CI must run the tests as root");
            }
            eprintln!("\n*** {reason} ({}) ***\n", outcome.trim());
            return;
        }
        fail(format!(
            "the program could not take pid {outsider_pid}: {}",
            outcome.trim()
        ));
    }
    let holder =
        proc_stat(outsider_pid).unwrap_or_else(|| fail(format!("pid {outsider_pid} vanished")));
    assert_eq!(
        holder.pgid, main,
        "pid {outsider_pid} should now be in the program's group"
    );
    drop(frozen);

    let refused = format!(
        "web: NOTIFY_SOCKET: ignoring a notification from pid {outsider_pid} (\"READY=1\"): \
         that process had exited before supergo read it"
    );
    let seen = try_poll_until(TIMEOUT, || {
        let status = sg.status("web");
        if status["state"] == "Running" {
            fail(format!(
                "the outsider's READY=1 made web ready, through its pid {outsider_pid} that \
                 now belongs to web's group: {status}"
            ));
        }
        sg.log().contains(&refused).then_some(())
    });
    if seen.is_none() {
        fail(format!("supergo did not log `{refused}`"));
    }
    let status = sg.status("web");
    assert_eq!(status["state"], "Starting", "{status}");
    assert_eq!(pid_of(&status), main);
}

/// Waits for the outsider probe (a short-lived process: it sends and exits at once).
fn outsider_pid_waiter(mut child: std::process::Child) -> std::process::ExitStatus {
    poll_until(TIMEOUT, "the outsider probe to exit", || {
        child
            .try_wait()
            .unwrap_or_else(|err| fail(format!("wait for the outsider: {err}")))
    })
}
