//! What a child sees (DESIGN.md, "Child protocol"): exactly fds 0, 1, 2 and its listeners,
//! the socket-activation variables, its own session, default signal state, stdin /dev/null.

use serde_json::Value;

use crate::util::{Supergo, TIMEOUT};

/// The fds a report lists, as numbers.
fn fds(report: &Value) -> Vec<i64> {
    report["fds"]
        .as_array()
        .expect("fds in the report")
        .iter()
        .filter_map(Value::as_i64)
        .collect()
}

#[test]
fn child_sees_exactly_its_listeners_and_the_protocol_variables() {
    let sg = Supergo::start(
        "child_contract_listeners",
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}", "127.0.0.1:{port2}"]
listen_names = ["http", "admin"]
start_secs = 0.2
environment = { PROBE_REPORT = "{dir}/web-{gen}.json" }
"#,
    );
    let status = sg.wait_state("web", "Running", TIMEOUT);
    let report = sg.read_report("web-1.json");
    let pid = report["pid"].as_i64().expect("pid");
    assert_eq!(
        status["pid"].as_i64(),
        Some(pid),
        "status names the process that reported"
    );

    assert_eq!(
        fds(&report),
        vec![0, 1, 2, 3, 4],
        "exactly stdio and two listeners: {report}"
    );
    for (fd, port) in [("3", sg.port), ("4", sg.port2)] {
        let info = &report["fd_info"][fd];
        assert_eq!(
            info["listening"], true,
            "fd {fd} is a listening socket: {info}"
        );
        assert_eq!(
            info["addr"],
            format!("127.0.0.1:{port}"),
            "fd {fd} in listen_addrs order"
        );
    }
    assert_eq!(
        report["fd_info"]["0"]["target"], "/dev/null",
        "stdin is /dev/null"
    );

    let env = &report["env"];
    assert_eq!(env["LISTEN_FDS"], "2");
    assert_eq!(
        env["LISTEN_PID"],
        pid.to_string(),
        "LISTEN_PID is the pid that exec'd"
    );
    assert_eq!(env["LISTEN_FDNAMES"], "http:admin");
    assert_eq!(env["SUPERGO_PROGRAM"], "web");
    assert_eq!(env["SUPERGO_GENERATION"], "1");
    assert!(
        env.get("NOTIFY_SOCKET").is_none(),
        "no NOTIFY_SOCKET with ready = uptime"
    );

    assert_eq!(report["sid"].as_i64(), Some(pid), "its own session");
    assert_eq!(report["pgid"].as_i64(), Some(pid), "its own process group");
    assert_eq!(report["sig_blk"], "0000000000000000", "empty signal mask");
    assert_eq!(
        report["sig_ign"], "0000000000000000",
        "no ignored signal (Rust ignores SIGPIPE)"
    );
}

#[test]
fn child_without_listeners_gets_no_listen_variables() {
    let sg = Supergo::start(
        "child_contract_no_listeners",
        r#"
[program.worker]
command = "{probe} sleep"
start_secs = 0.2
environment = { PROBE_REPORT = "{dir}/worker.json" }
"#,
    );
    sg.wait_state("worker", "Running", TIMEOUT);
    let report = sg.read_report("worker.json");
    assert_eq!(
        fds(&report),
        vec![0, 1, 2],
        "no fd leaks from supergo: {report}"
    );
    for key in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        assert!(
            report["env"].get(key).is_none(),
            "{key} must be absent without listeners"
        );
    }
    assert_eq!(report["env"]["SUPERGO_PROGRAM"], "worker");
}

#[test]
fn each_generation_gets_its_own_number_and_the_same_sockets() {
    let sg = Supergo::start(
        "child_contract_generations",
        r#"
[program.web]
command = "{probe} serve"
listen_addrs = ["127.0.0.1:{port}"]
start_secs = 0.2
stop_timeout = 2
environment = { PROBE_REPORT = "{dir}/web-{gen}.json" }
"#,
    );
    sg.wait_state("web", "Running", TIMEOUT);
    let (http, body) = sg.api("POST", "/restart/web");
    assert_eq!(http, 200, "restart: {body}");
    let second = sg.read_report("web-2.json");
    assert_eq!(second["env"]["SUPERGO_GENERATION"], "2");
    assert_eq!(
        second["fd_info"]["3"]["addr"],
        format!("127.0.0.1:{}", sg.port)
    );
    assert_eq!(
        fds(&second),
        vec![0, 1, 2, 3],
        "the new generation leaks no fd either"
    );
}
