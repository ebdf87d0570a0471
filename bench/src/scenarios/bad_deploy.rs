//! `bad-deploy`: under load, restart into a version that exits at once, then into one that
//! never becomes ready, then back into a good one; for every system.
//!
//! The program is a small `sh` wrapper around the Rust demo child whose behaviour is switched
//! by a file the bench writes: `good` runs the child, `crash` runs it with
//! `HELLO_EXIT_AT_START=1`, `hang` with `HELLO_START_DELAY_MS` of an hour (it holds the socket
//! and never answers, never sends `READY=1`). The same wrapper runs under every system.
//!
//! supergo runs it with `ready = "notify"` and `ready_timeout = --ready-timeout`: both bad
//! restarts must fail and leave the old process serving (0 failed requests). The peers have
//! no readiness check; what their clients see is what is counted. Each phase is watched for
//! `--phase-secs` after its restart was issued (longer if the command itself takes longer).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{labels, systems, wait_serving};
use crate::cleanup::TempDir;
use crate::load::{Kind, Load, LoadConfig, Sample};
use crate::report::{Row, Table};
use crate::setup::free_addr;
use crate::stats::{longest_hole, Hole};
use crate::systems::{self, Peer, Program, RestartOutcome};
use crate::Ctx;

const PHASES: [(&str, &str); 3] = [
    ("crash at start", "crash"),
    ("never ready", "hang"),
    ("recovery (good version)", "good"),
];

struct Phase {
    name: &'static str,
    outcome: RestartOutcome,
    failed: usize,
    requests: usize,
    hole: Hole,
}

struct RunResult {
    peer: Peer,
    phases: Vec<Phase>,
    failed: usize,
    requests: usize,
    longest: Hole,
    recovered: Result<u32, String>,
}

pub fn run(ctx: &Ctx) -> Result<(Vec<Table>, Value), String> {
    let peers = systems(
        ctx,
        &[
            Peer::Supergo,
            Peer::Supervisord,
            Peer::CircusRestart,
            Peer::CircusReload,
        ],
    );
    let hello = ctx.paths.hello()?;
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    for &peer in &peers {
        eprintln!("-- bad-deploy: {}", peer.label());
        match run_one(ctx, peer, &hello) {
            Ok(r) => {
                eprintln!(
                    "   {} requests, {} failed, longest hole {:.0} ms",
                    r.requests,
                    r.failed,
                    r.longest.ms()
                );
                runs.push(r);
            }
            Err(e) => {
                eprintln!("\n!!!!! {} FAILED: {e} !!!!!\n", peer.label());
                errors.push(json!({"system": peer.label(), "error": e}));
            }
        }
    }
    let used: Vec<Peer> = runs.iter().map(|r| r.peer).collect();
    let mut t = Table::new(
        &format!(
            "bad-deploy: restart into a crashing, then a never-ready, then a good version, under load ({} s watched per phase)",
            ctx.opts.phase_secs
        ),
        labels(&used),
    );
    for (i, (name, _)) in PHASES.iter().enumerate() {
        t.push(Row::text(
            &format!("{name}: restart command says"),
            runs.iter().map(|r| verdict(&r.phases[i].outcome)).collect(),
        ));
        t.push(Row::num(
            &format!("{name}: failed requests"),
            "",
            runs.iter()
                .map(|r| Some(r.phases[i].failed as f64))
                .collect(),
        ));
        t.push(Row::num(
            &format!("{name}: longest hole in service"),
            "ms",
            runs.iter().map(|r| Some(r.phases[i].hole.ms())).collect(),
        ));
    }
    t.push(Row::text(
        "all phases: requests",
        runs.iter().map(|r| r.requests.to_string()).collect(),
    ));
    t.push(Row::num(
        "all phases: failed requests",
        "",
        runs.iter().map(|r| Some(r.failed as f64)).collect(),
    ));
    t.push(Row::num(
        "all phases: longest hole in service",
        "ms",
        runs.iter().map(|r| Some(r.longest.ms())).collect(),
    ));
    t.push(Row::text(
        "serving after the recovery",
        runs.iter()
            .map(|r| match &r.recovered {
                Ok(pid) => format!("yes (pid {pid})"),
                Err(e) => format!("NO: {e}"),
            })
            .collect(),
    ));
    let results = json!({
        "phase_secs": ctx.opts.phase_secs,
        "ready_timeout": ctx.opts.ready_timeout,
        "errors": errors,
        "runs": runs.iter().map(|r| json!({
            "system": r.peer.label(),
            "requests": r.requests,
            "failed": r.failed,
            "longest_hole_ms": r.longest.ms(),
            "recovered": r.recovered.is_ok(),
            "phases": r.phases.iter().map(|p| json!({
                "phase": p.name,
                "restart": p.outcome,
                "requests": p.requests,
                "failed": p.failed,
                "longest_hole_ms": p.hole.ms(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    Ok((vec![t], results))
}

fn verdict(o: &RestartOutcome) -> String {
    let what = if o.ok { "ok" } else { "failed" };
    format!("{what} after {:.0} ms", o.took_ms)
}

fn run_one(ctx: &Ctx, peer: Peer, hello: &std::path::Path) -> Result<RunResult, String> {
    let dir = TempDir::new(&format!("bad-deploy-{}", peer.label().replace(' ', "-")))?;
    let mode = dir.path().join("mode");
    let wrapper = dir.path().join("hello-wrapper.sh");
    let script = format!(
        "#!/bin/sh\n# The bench switches this child's behaviour through {mode}.\n\
         case \"$(cat '{mode}' 2>/dev/null)\" in\n\
         crash) HELLO_EXIT_AT_START=1; export HELLO_EXIT_AT_START ;;\n\
         hang) HELLO_START_DELAY_MS=3600000; export HELLO_START_DELAY_MS ;;\n\
         esac\nexec '{hello}' \"$@\"\n",
        mode = mode.display(),
        hello = hello.display()
    );
    std::fs::write(&wrapper, script).map_err(|e| format!("{}: {e}", wrapper.display()))?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", wrapper.display()))?;
    set_mode(&mode, "good")?;
    let addr = free_addr()?;
    let mut program = Program::new("web", &wrapper);
    program.listen = Some(addr);
    program.notify = true;
    program.ready_timeout = ctx.opts.ready_timeout;
    program.stop_timeout = 10.0;
    program.max_retry = 3;
    let mut sys = systems::launch(peer, &[program], dir.path(), &ctx.paths, &ctx.installed)?;
    let result = (|| {
        wait_serving(addr, Duration::from_secs(30))?;
        let o = &ctx.opts;
        let cfg = LoadConfig {
            addr,
            close_clients: o.clients / 2,
            keepalive_clients: o.clients - o.clients / 2,
            slow_clients: o.slow,
            slow_ms: 800,
            rate: o.rate,
            timeout: Duration::from_secs(3),
            max_duration: Duration::from_secs_f64(o.phase_secs * 3.0 + 600.0),
        };
        let load = Load::start(&cfg)?;
        std::thread::sleep(Duration::from_secs(1));
        let mut windows = Vec::new();
        for (name, m) in PHASES {
            set_mode(&mode, m)?;
            let mark = load.now_us();
            let t = Instant::now();
            let outcome = sys.restart("web");
            eprintln!(
                "   {name}: restart {} in {:.0} ms: {}",
                if outcome.ok { "ok" } else { "failed" },
                outcome.took_ms,
                outcome.message.chars().take(160).collect::<String>()
            );
            let watch =
                Duration::from_secs_f64(o.phase_secs).max(t.elapsed() + Duration::from_secs(1));
            std::thread::sleep(watch.saturating_sub(t.elapsed()));
            windows.push((name, mark, load.now_us(), outcome));
        }
        let samples = load.finish();
        let recovered = wait_serving(addr, Duration::from_secs(10));
        Ok(summarize_run(peer, &samples, windows, recovered))
    })();
    sys.shutdown(Duration::from_secs(20));
    result
}

fn summarize_run(
    peer: Peer,
    samples: &[Sample],
    windows: Vec<(&'static str, u64, u64, RestartOutcome)>,
    recovered: Result<u32, String>,
) -> RunResult {
    let mut ok: Vec<u64> = samples
        .iter()
        .filter(|s| s.ok() && s.kind != Kind::Slow)
        .map(|s| s.end_us)
        .collect();
    ok.sort_unstable();
    let first = windows.first().map(|w| w.1).unwrap_or(0);
    let last = windows.last().map(|w| w.2).unwrap_or(0);
    let in_window = |s: &&Sample, from: u64, to: u64| s.start_us >= from && s.start_us < to;
    let phases = windows
        .into_iter()
        .map(|(name, from, to, outcome)| Phase {
            name,
            outcome,
            requests: samples.iter().filter(|s| in_window(s, from, to)).count(),
            failed: samples
                .iter()
                .filter(|s| in_window(s, from, to) && !s.ok())
                .count(),
            hole: longest_hole(&ok, from, to),
        })
        .collect();
    RunResult {
        peer,
        phases,
        failed: samples.iter().filter(|s| !s.ok()).count(),
        requests: samples.len(),
        longest: longest_hole(&ok, first, last),
        recovered,
    }
}

fn set_mode(path: &std::path::Path, mode: &str) -> Result<(), String> {
    std::fs::write(path, mode).map_err(|e| format!("{}: {e}", path.display()))
}
