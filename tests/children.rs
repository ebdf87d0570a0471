//! Non-Rust children: the C example (`hello-c`, built on `shim-c`) and the Go example
//! (`go-example/`) go through the same zero-downtime restart as the Rust demo.
//!
//! Each test restarts the child 20 times under continuous load while slow requests
//! (`/sleep?ms=800`) are in flight, and checks the three promises of a restart: no request
//! fails, every slow request completes (the old process drains instead of dying), and every
//! generation served (21 distinct pids answered the load). Once with `ready = "uptime"`
//! (`start_secs = 0.2`) and once with `ready = "notify"` (each child sends `READY=1`, so the
//! handoff happens the moment it accepts).
//!
//! The Go child is built once per run with `go build` into the target dir (standard library
//! only, offline: `GOFLAGS=-mod=mod GOPROXY=off`). Without `go` the Go tests fail when `CI=true`
//! and, elsewhere, say loudly that they were skipped and why.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use nix::unistd::{access, AccessFlags};

use crate::util::{fail, run_captured, target_dir, Load, LoadOptions, Supergo, TIMEOUT};

/// Restarts per test: 21 generations in all.
const RESTARTS: usize = 20;
/// How long each slow request takes: long enough to span several handoffs.
const SLOW_MS: u64 = 800;
/// Requests the load must complete after each restart before the next one. The old process
/// closes its listener as soon as it gets SIGTERM; from then on only the new generation
/// accepts, so the load sees every pid.
const OK_PER_GENERATION: u64 = 50;

#[derive(Clone, Copy, Debug)]
enum Ready {
    /// `ready = "uptime"`, `start_secs = 0.2`.
    Uptime,
    /// `ready = "notify"`: ready when the child sends `READY=1`.
    Notify,
}

/// The config of one program `web` running `command` on `{port}`.
fn config(command: &str, ready: Ready) -> String {
    let readiness = match ready {
        Ready::Uptime => "start_secs = 0.2",
        Ready::Notify => "ready = \"notify\"\nready_timeout = 10",
    };
    format!(
        r#"
[program.web]
command = "{command}"
listen_addrs = ["127.0.0.1:{{port}}"]
{readiness}
# Far longer than a slow request: a drain is never cut short by SIGKILL.
stop_timeout = 10
stdout_file = "{{dir}}/web.out"
stderr_file = "{{dir}}/web.err"
"#
    )
}

/// The pid `GET /status` shows for `web`.
fn serving_pid(sg: &Supergo) -> u32 {
    let status = sg.status("web");
    status["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or_else(|| fail(format!("web has no pid in its status: {status}")))
}

/// The body of every test: 20 restarts under load with slow requests in flight; no failure,
/// every slow request completed, every generation seen by the load.
fn restarts_under_load(sg: &Supergo) {
    sg.wait_state("web", "Running", TIMEOUT);
    let mut old = serving_pid(sg);
    let mut generations = BTreeSet::from([old]);
    let load = Load::start(
        &sg.app_addr(),
        LoadOptions {
            threads: 3,
            sleepers: 2,
            sleep_ms: SLOW_MS,
            ..LoadOptions::default()
        },
    );
    load.wait_ok(OK_PER_GENERATION, TIMEOUT);
    for n in 1..=RESTARTS {
        let (http, body) = sg.api("POST", "/restart/web");
        if http != 200 || body["status"] != 0 {
            fail(format!(
                "restart {n} of {RESTARTS} failed: HTTP {http}: {body}"
            ));
        }
        // The restart reports both pids (what `supergoctl restart` prints).
        let pid = |key: &str| {
            body["data"][key]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
        };
        let (Some(from), Some(to)) = (pid("old_pid"), pid("new_pid")) else {
            fail(format!(
                "restart {n} of {RESTARTS}: the answer lacks old_pid and new_pid: {body}"
            ));
        };
        sg.register(to as i32);
        if from != old || to == old || !generations.insert(to) {
            fail(format!(
                "restart {n} of {RESTARTS} answered {body}, but the serving pid was {old} and \
                 the generations seen so far are {generations:?}"
            ));
        }
        old = to;
        load.wait_ok(OK_PER_GENERATION, TIMEOUT);
    }
    let report = load.stop();
    report.assert_no_failures();
    if report.slow_ok < 2 {
        fail(format!(
            "the slow requests (/sleep?ms={SLOW_MS}) never completed: {report}"
        ));
    }
    let seen: BTreeSet<u32> = report.pids.clone();
    if seen != generations {
        fail(format!(
            "the load should have been answered by each of the {} generations {generations:?}, \
             and by nothing else; it saw {seen:?}: {report}",
            RESTARTS + 1
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// C

#[test]
fn c_child_restarts_20_times_under_load_without_a_failed_request() {
    let sg = Supergo::start(
        "c_child_restarts_uptime",
        &config("{hello_c}", Ready::Uptime),
    );
    restarts_under_load(&sg);
}

#[test]
fn c_child_with_notify_restarts_20_times_under_load_without_a_failed_request() {
    let sg = Supergo::start(
        "c_child_restarts_notify",
        &config("{hello_c}", Ready::Notify),
    );
    restarts_under_load(&sg);
}

// ---------------------------------------------------------------------------------------------
// Go

#[test]
fn go_child_restarts_20_times_under_load_without_a_failed_request() {
    let Some(go_example) = go_example("go_child_restarts_20_times_under_load") else {
        return;
    };
    let sg = Supergo::start(
        "go_child_restarts_uptime",
        &config(&go_example.display().to_string(), Ready::Uptime),
    );
    restarts_under_load(&sg);
}

#[test]
fn go_child_with_notify_restarts_20_times_under_load_without_a_failed_request() {
    let Some(go_example) = go_example("go_child_with_notify_restarts_20_times") else {
        return;
    };
    let sg = Supergo::start(
        "go_child_restarts_notify",
        &config(&go_example.display().to_string(), Ready::Notify),
    );
    restarts_under_load(&sg);
}

/// The Go example, built once per test run; `None` (after saying so loudly) when `go` is
/// not installed outside CI. With `CI=true` a missing `go` fails the test: CI installs it, and
/// a silent skip there would hide that the Go child is not tested at all.
fn go_example(test: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let Some(go) = find_on_path("go") else {
        let why = "`go` is not on PATH (Debian: `apt-get install golang-go`; .ci/run installs it)";
        if std::env::var("CI").as_deref() == Ok("true") {
            fail(format!(
                "{test}: CI=true but {why}: the Go child cannot be tested"
            ));
        }
        eprintln!(
            "\n**************** SKIPPED {test}: {why}; the Go example child is NOT tested ****************\n"
        );
        return None;
    };
    match BUILT.get_or_init(|| build_go_example(&go)) {
        Ok(path) => Some(path.clone()),
        Err(err) => fail(format!("{test}: {err}")),
    }
}

/// `go build -o DIR/go-example .` in `go-example/`, DIR a directory of the target dir (out of
/// the test directories, whose failure dumps would print the binary). Standard library
/// only, offline.
fn build_go_example(go: &Path) -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests member sits in the workspace root")
        .join("go-example");
    let dir = target_dir().join("go-example-for-tests");
    fs::create_dir_all(&dir).map_err(|err| format!("create {}: {err}", dir.display()))?;
    let output = dir.join("go-example");
    let _ = fs::remove_file(&output);
    let mut cmd = Command::new(go);
    cmd.args(["build", "-o"])
        .arg(&output)
        .arg(".")
        .current_dir(&source)
        // Nothing may be downloaded: the example needs the standard library only.
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off");
    if !go_cache_usable(go) {
        // The default cache lives under $HOME, which is missing or read-only here.
        let cache = std::env::temp_dir().join("supergo-tests").join("go");
        cmd.env("GOCACHE", cache.join("cache"))
            .env("GOPATH", cache.join("path"));
    }
    let done = run_captured(&mut cmd, &dir, "go-build", Duration::from_secs(300));
    if !done.status.success() || !output.is_file() {
        return Err(format!(
            "`go build -o {} .` in {} failed ({}): {}{}",
            output.display(),
            source.display(),
            done.status,
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        ));
    }
    Ok(output)
}

/// Whether `go env GOCACHE` names a directory go can use: it, or the directory above it, or
/// the one above that (`$HOME` for `$HOME/.cache/go-build`) exists and is writable, so go
/// creates at most the rest. Nothing is created here.
fn go_cache_usable(go: &Path) -> bool {
    let Ok(out) = Command::new(go).args(["env", "GOCACHE"]).output() else {
        return false;
    };
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !dir.is_absolute() {
        return false; // "off", or no cache dir at all
    }
    dir.ancestors()
        .take(3)
        .find(|d| d.exists())
        .is_some_and(|d| d.is_dir() && access(d, AccessFlags::W_OK).is_ok())
}

/// The first executable file `name` on PATH.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}
