//! `scale`: many programs (`--programs`, default 1000) of `--shape` (default `realistic`: a
//! unix-socket listener and a stdout log file each; `sleep`: bare `sleep 100000`), all with
//! `start_secs 1`.
//!
//! - time from spawning the daemon to every program in its running state (supergo `Running`,
//!   supervisord `RUNNING` — both need `start_secs`/`startsecs` 1 of uptime; circus has no such
//!   state, so its figure is all child processes alive), polled every `POLL`; and, from
//!   `/proc/PID/stat` start times, when the first and the last child process were started
//!   after the daemon (where the start-up time goes: spawning vs. waiting `start_secs`);
//! - `status` latency, median of `STATUS_RUNS`: through the API (supergo `GET /status` on a
//!   fresh connection, read to its last byte and not parsed; supervisord XML-RPC
//!   `getAllProcessInfo`), with the answer's size, and as the whole CLI command;
//! - restart latency of one program among them, median of 5;
//! - how long the daemon takes to stop everything on SIGTERM.
//!
//! A second table holds supergo against issue 17's targets (all running ≤ 1.3 s, `GET
//! /status` ≤ 0.5 ms, `supergoctl status` ≤ 3 ms); `--baseline` adds the earlier figures.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::shape;
use super::{opt, systems};
use crate::cleanup::TempDir;
use crate::report::{fmt_num, Row, Table};
use crate::stats::median;
use crate::systems::{self, wait_for, Peer};
use crate::targets::{self, Baseline, Target};
use crate::{procfs, Ctx};

const STATUS_RUNS: usize = 20;
const RESTART_RUNS: usize = 5;
/// How often "all running" is polled, for every system. A status of 1000 programs is not
/// free: polling much faster would slow the start being measured.
const POLL: Duration = Duration::from_millis(50);

#[derive(Clone, Debug, Default, serde::Serialize)]
struct Point {
    system: &'static str,
    programs: usize,
    all_running_s: Option<f64>,
    first_child_started_s: Option<f64>,
    last_child_started_s: Option<f64>,
    status_api_ms: Option<f64>,
    status_api_all_ms: Vec<f64>,
    status_bytes: Option<usize>,
    status_cli_ms: Option<f64>,
    status_cli_all_ms: Vec<f64>,
    restart_one_ms: Option<f64>,
    restart_failures: usize,
    stop_all_s: Option<f64>,
}

pub fn run(ctx: &Ctx) -> Result<(Vec<Table>, Value), String> {
    let peers = systems(
        ctx,
        &[Peer::Supergo, Peer::Supervisord, Peer::CircusRestart],
    );
    let baseline = match &ctx.opts.baseline {
        Some(path) => Some(Baseline::load(path, "scale")?),
        None => None,
    };
    let n = ctx.opts.programs.unwrap_or(1000);
    let mut points = Vec::new();
    let mut errors = Vec::new();
    for &peer in &peers {
        eprintln!(
            "-- scale: {} with {n} {} programs",
            peer.system(),
            ctx.opts.shape.name()
        );
        match measure(ctx, peer, n) {
            Ok(p) => {
                eprintln!(
                    "   all running {:?} s (last child started {:?} s), status API {:?} ms ({:?} bytes), CLI {:?} ms",
                    p.all_running_s, p.last_child_started_s, p.status_api_ms, p.status_bytes, p.status_cli_ms
                );
                points.push(p);
            }
            Err(e) => {
                eprintln!(
                    "\n!!!!! {} WITH {n} PROGRAMS FAILED: {e} !!!!!\n",
                    peer.system()
                );
                errors.push(json!({"system": peer.system(), "error": e}));
                points.push(Point {
                    system: peer.system(),
                    programs: n,
                    ..Point::default()
                });
            }
        }
    }
    let names: Vec<String> = peers.iter().map(|p| p.system().to_string()).collect();
    let mut t = Table::new(
        &format!("scale: {n} {}, start_secs 1", ctx.opts.shape.describe()),
        names,
    );
    let col = |f: &dyn Fn(&Point) -> Option<f64>| points.iter().map(f).collect::<Vec<_>>();
    t.push(Row::num(
        &format!(
            "start → all running (circus: all alive), polled every {} ms",
            POLL.as_millis()
        ),
        "s",
        col(&|p| p.all_running_s),
    ));
    t.push(Row::num(
        "start → first child process started (/proc)",
        "s",
        col(&|p| p.first_child_started_s),
    ));
    t.push(Row::num(
        "start → last child process started (/proc)",
        "s",
        col(&|p| p.last_child_started_s),
    ));
    t.push(Row::num(
        &format!("status via API, median of {STATUS_RUNS}"),
        "ms",
        col(&|p| p.status_api_ms),
    ));
    t.push(Row::num(
        "status via API, answer size",
        "kB",
        col(&|p| p.status_bytes.map(|b| b as f64 / 1000.0)),
    ));
    t.push(Row::num(
        &format!("status via CLI (whole command), median of {STATUS_RUNS}"),
        "ms",
        col(&|p| p.status_cli_ms),
    ));
    t.push(Row::num(
        &format!("restart one program, median of {RESTART_RUNS}"),
        "ms",
        col(&|p| p.restart_one_ms),
    ));
    t.push(Row::num(
        "stop everything on SIGTERM",
        "s",
        col(&|p| p.stop_all_s),
    ));

    let supergo = points.iter().find(|p| p.system == "supergo");
    let before = |field: &str| {
        baseline
            .as_ref()
            // Only a run with as many programs compares.
            .and_then(|b| {
                b.supergo_point(|p| p.get("programs").and_then(Value::as_u64) == Some(n as u64))
            })
            .and_then(|p| p.get(field))
            .and_then(Value::as_f64)
    };
    let mut goals = vec![
        Target::new(
            &format!("all {n} programs running, start_secs 1"),
            "s",
            1.3,
            supergo.and_then(|p| p.all_running_s),
        ),
        Target::new(
            &format!("`GET /status` with {n} programs, median"),
            "ms",
            0.5,
            supergo.and_then(|p| p.status_api_ms),
        ),
        Target::new(
            "`supergoctl status`, whole command, median",
            "ms",
            3.0,
            supergo.and_then(|p| p.status_cli_ms),
        ),
    ];
    for (goal, field) in goals
        .iter_mut()
        .zip(["all_running_s", "status_api_ms", "status_cli_ms"])
    {
        goal.before = before(field);
    }
    let mut target_table = targets::table(
        &format!(
            "scale: supergo against the targets ({} shape)",
            ctx.opts.shape.name()
        ),
        &goals,
        baseline.as_ref(),
    );
    let mut size = vec![
        "–".to_string(),
        supergo
            .and_then(|p| p.status_bytes)
            .map_or("–".into(), |b| fmt_num(b as f64 / 1000.0)),
        String::new(),
    ];
    if baseline.is_some() {
        size.push(before("status_bytes").map_or("–".into(), |b| fmt_num(b / 1000.0)));
    }
    target_table.push(Row::text("`GET /status` answer size (kB)", size));

    let results = json!({
        "shape": ctx.opts.shape,
        "points": points,
        "targets": goals,
        "errors": errors,
        "all_running_s": points.iter().map(|p| opt(p.all_running_s)).collect::<Vec<_>>(),
    });
    Ok((vec![t, target_table], results))
}

fn measure(ctx: &Ctx, peer: Peer, n: usize) -> Result<Point, String> {
    let dir = TempDir::new(&format!("scale-{}", peer.system()))?;
    let programs = shape::programs(ctx.opts.shape, n, dir.path(), 1.0)?;
    let mut sys = systems::launch(peer, &programs, dir.path(), &ctx.paths, &ctx.installed)?;
    let mut point = Point {
        system: peer.system(),
        programs: n,
        ..Point::default()
    };
    let measured = (|| -> Result<(), String> {
        wait_for(
            "all programs running",
            Duration::from_secs(300),
            POLL,
            || sys.running().ok().filter(|&r| r >= n),
        )?;
        point.all_running_s = Some(sys.started_at().elapsed().as_secs_f64());
        (point.first_child_started_s, point.last_child_started_s) = child_start_times(sys.pid());
        std::thread::sleep(Duration::from_secs(1));

        for _ in 0..STATUS_RUNS {
            let t = Instant::now();
            match sys.status_api() {
                None => break,
                Some(r) => point.status_bytes = Some(r?),
            }
            point
                .status_api_all_ms
                .push(t.elapsed().as_secs_f64() * 1000.0);
        }
        point.status_api_ms = median(&point.status_api_all_ms);

        for _ in 0..STATUS_RUNS {
            let t = Instant::now();
            sys.status_cli()?;
            point
                .status_cli_all_ms
                .push(t.elapsed().as_secs_f64() * 1000.0);
        }
        point.status_cli_ms = median(&point.status_cli_all_ms);

        let name = format!("p{:04}", n / 2);
        let mut restarts = Vec::new();
        for _ in 0..RESTART_RUNS {
            let o = sys.restart(&name);
            if o.ok {
                restarts.push(o.took_ms);
            } else {
                point.restart_failures += 1;
                eprintln!("   restart {name} failed: {}", o.message);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        point.restart_one_ms = median(&restarts);
        Ok(())
    })();
    let t = Instant::now();
    sys.shutdown(Duration::from_secs(120));
    point.stop_all_s = Some(t.elapsed().as_secs_f64());
    measured.map(|()| point)
}

/// Seconds from the daemon's start to its first and its last child's start, from the start
/// times in `/proc/PID/stat` (clock ticks: 10 ms resolution).
fn child_start_times(daemon: i32) -> (Option<f64>, Option<f64>) {
    let Ok(base) = procfs::start_ticks(daemon) else {
        return (None, None);
    };
    let tick = procfs::ticks_per_second() as f64;
    let starts: Vec<u64> = procfs::children(daemon)
        .iter()
        .map(|c| c.starttime)
        .collect();
    let at = |t: Option<&u64>| t.map(|&t| t.saturating_sub(base) as f64 / tick);
    (at(starts.iter().min()), at(starts.iter().max()))
}
