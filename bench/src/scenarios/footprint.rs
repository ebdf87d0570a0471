//! `footprint`: what the daemon costs while it just supervises.
//!
//! For each program count (`--counts`, default 1, 100, 1000) and each system, programs of
//! `--shape` (see `shape`; default `realistic`: a unix-socket listener and a stdout log file
//! each). Wait until all are running; with the realistic shape, restart a tenth of them once
//! (10 at a time) and read the status (`STATUS_READS` times through the API, once through the
//! CLI), as an operator's day would. Then let it settle, read the daemon's RSS (`VmRSS`),
//! thread count and `/proc/PID/smaps` by cause, and the CPU ticks it uses over `--idle-secs`
//! of idleness (nobody queries it). Then the sizes of the stripped release binaries.
//!
//! Three tables: the figures side by side; supergo against issue 17's targets (≤ 4 MiB with
//! 100 programs, ≤ 16 MiB with 1000; `--baseline` adds the earlier figures); and supergo's
//! resident memory by cause at each count, with the cost per program between the smallest
//! and the largest count.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::by_cause;
use super::shape::{self, Shape};
use super::systems;
use crate::cleanup::{self, TempDir};
use crate::report::{mib, Row, Table};
use crate::setup::find_on_path;
use crate::smaps::{self, Breakdown};
use crate::stats::median;
use crate::systems::{self, wait_for, Peer};
use crate::targets::{self, Baseline, Target};
use crate::{procfs, Ctx};

/// Status reads through the API before measuring (realistic shape).
const STATUS_READS: usize = 20;
/// Restarts in flight at once (realistic shape).
const PARALLEL_RESTARTS: usize = 10;

/// One system at one program count.
#[derive(Clone, Debug, serde::Serialize)]
struct Point {
    system: &'static str,
    programs: usize,
    shape: Shape,
    start_to_all_running_s: f64,
    restarts_done: usize,
    restart_failures: usize,
    restart_median_ms: Option<f64>,
    status_reads: usize,
    status_bytes: Option<usize>,
    /// Programs whose log file holds the child's line (realistic shape).
    logs_written: Option<usize>,
    rss_kib: u64,
    threads: u64,
    smaps: Option<Breakdown>,
    idle_ticks: u64,
    idle_secs: u64,
    rss_kib_after_idle: u64,
}

pub fn run(ctx: &Ctx) -> Result<(Vec<Table>, Value), String> {
    let peers = systems(
        ctx,
        &[Peer::Supergo, Peer::Supervisord, Peer::CircusRestart],
    );
    let baseline = match &ctx.opts.baseline {
        Some(path) => Some(Baseline::load(path, "footprint")?),
        None => None,
    };
    let mut points: Vec<Point> = Vec::new();
    let mut errors = Vec::new();
    for &count in &ctx.opts.counts {
        for &peer in &peers {
            eprintln!(
                "-- footprint: {} with {count} {} program(s)",
                peer.system(),
                ctx.opts.shape.name()
            );
            match measure(ctx, peer, count) {
                Ok(p) => {
                    eprintln!(
                        "   RSS {:.1} MiB, {} threads, {} ticks in {} s idle",
                        mib(p.rss_kib),
                        p.threads,
                        p.idle_ticks,
                        p.idle_secs
                    );
                    points.push(p);
                }
                Err(e) => {
                    eprintln!(
                        "\n!!!!! {} WITH {count} PROGRAMS FAILED: {e} !!!!!\n",
                        peer.system()
                    );
                    errors.push(json!({"system": peer.system(), "programs": count, "error": e}));
                }
            }
        }
    }
    let sizes = binary_sizes(ctx)?;
    let mut tables = vec![figures_table(ctx, &peers, &points, &sizes)];
    let targets = rss_targets(ctx, &points, baseline.as_ref());
    if !targets.is_empty() {
        tables.push(targets::table(
            &format!(
                "footprint: supergo against the targets ({} shape)",
                ctx.opts.shape.name()
            ),
            &targets,
            baseline.as_ref(),
        ));
    }
    let supergo: Vec<by_cause::Measured> = points
        .iter()
        .filter(|p| p.system == "supergo")
        .filter_map(|p| {
            Some(by_cause::Measured {
                programs: p.programs,
                smaps: p.smaps.as_ref()?,
                rss_kib: p.rss_kib,
                threads: p.threads,
            })
        })
        .collect();
    if let Some(t) = by_cause::table(ctx.opts.shape, &supergo) {
        tables.push(t);
    }
    let results = json!({
        "shape": ctx.opts.shape,
        "ticks_per_second": procfs::ticks_per_second(),
        "points": points,
        "targets": targets,
        "errors": errors,
        "binaries_mib": sizes,
    });
    Ok((tables, results))
}

fn figures_table(ctx: &Ctx, peers: &[Peer], points: &[Point], sizes: &Value) -> Table {
    let names: Vec<String> = peers.iter().map(|p| p.system().to_string()).collect();
    let mut t = Table::new(
        &format!(
            "footprint: {}, {} s idle window",
            ctx.opts.shape.describe(),
            ctx.opts.idle_secs
        ),
        names,
    );
    let cell = |count: usize, f: &dyn Fn(&Point) -> Option<f64>| -> Vec<Option<f64>> {
        peers
            .iter()
            .map(|p| {
                points
                    .iter()
                    .find(|x| x.system == p.system() && x.programs == count)
                    .and_then(f)
            })
            .collect()
    };
    let counts = &ctx.opts.counts;
    let realistic = ctx.opts.shape == Shape::Realistic;
    for &count in counts {
        let label = if realistic {
            format!("RSS, {count} programs, after restarts and status reads")
        } else {
            format!("RSS, {count} programs")
        };
        t.push(Row::num(
            &label,
            "MiB",
            cell(count, &|p| Some(mib(p.rss_kib))),
        ));
    }
    for &count in counts {
        t.push(Row::num(
            &format!("threads, {count} programs"),
            "",
            cell(count, &|p| Some(p.threads as f64)),
        ));
    }
    for &count in counts {
        t.push(Row::num(
            &format!("CPU in {} s idle, {count} programs", ctx.opts.idle_secs),
            "ticks",
            cell(count, &|p| Some(p.idle_ticks as f64)),
        ));
    }
    for &count in counts {
        t.push(Row::num(
            &format!("start → all running, {count} programs"),
            "s",
            cell(count, &|p| Some(p.start_to_all_running_s)),
        ));
    }
    if realistic {
        for &count in counts.iter().filter(|&&c| c >= 10) {
            t.push(Row::num(
                &format!(
                    "restart, median of {} (10 at a time), {count} programs",
                    count / 10
                ),
                "ms",
                cell(count, &|p| p.restart_median_ms),
            ));
            t.push(Row::num(
                &format!("restarts failed, {count} programs"),
                "",
                cell(count, &|p| Some(p.restart_failures as f64)),
            ));
        }
        for &count in counts {
            t.push(Row::num(
                &format!("log files with the child's line, {count} programs"),
                "",
                cell(count, &|p| p.logs_written.map(|n| n as f64)),
            ));
        }
    }
    let only_supergo = |v: Option<f64>| {
        let mut values = vec![None; peers.len()];
        values[0] = v;
        values
    };
    t.push(Row::num(
        "stripped supergo",
        "MiB",
        only_supergo(sizes.get("supergo").and_then(Value::as_f64)),
    ));
    t.push(Row::num(
        "stripped supergoctl",
        "MiB",
        only_supergo(sizes.get("supergoctl").and_then(Value::as_f64)),
    ));
    t
}

/// Issue 17's RSS targets, for the counts that were measured.
fn rss_targets(ctx: &Ctx, points: &[Point], baseline: Option<&Baseline>) -> Vec<Target> {
    let mut out = Vec::new();
    for (count, limit) in [(100, 4.0), (1000, 16.0)] {
        if !ctx.opts.counts.contains(&count) {
            continue;
        }
        let now = points
            .iter()
            .find(|p| p.system == "supergo" && p.programs == count)
            .map(|p| mib(p.rss_kib));
        let mut t = Target::new(&format!("RSS with {count} programs"), "MiB", limit, now);
        t.before = baseline
            .and_then(|b| {
                b.supergo_point(|p| p.get("programs").and_then(Value::as_u64) == Some(count as u64))
            })
            .and_then(|p| p.get("rss_kib").and_then(Value::as_f64))
            .map(|kib| kib / 1024.0);
        out.push(t);
    }
    out
}

fn measure(ctx: &Ctx, peer: Peer, count: usize) -> Result<Point, String> {
    let dir = TempDir::new(&format!("footprint-{}-{count}", peer.system()))?;
    let shape = ctx.opts.shape;
    let programs = shape::programs(shape, count, dir.path(), 1.0)?;
    let mut sys = systems::launch(peer, &programs, dir.path(), &ctx.paths, &ctx.installed)?;
    let result = (|| {
        let every = Duration::from_millis(200);
        wait_for(
            "all programs running",
            Duration::from_secs(300),
            every,
            || sys.running().ok().filter(|&n| n >= count),
        )?;
        let start_to_all_running_s = sys.started_at().elapsed().as_secs_f64();
        let mut point = Point {
            system: peer.system(),
            programs: count,
            shape,
            start_to_all_running_s,
            restarts_done: 0,
            restart_failures: 0,
            restart_median_ms: None,
            status_reads: 0,
            status_bytes: None,
            logs_written: None,
            rss_kib: 0,
            threads: 0,
            smaps: None,
            idle_ticks: 0,
            idle_secs: ctx.opts.idle_secs,
            rss_kib_after_idle: 0,
        };
        if shape == Shape::Realistic {
            let names = shape::restarted_tenth(count);
            if count >= 10 {
                let outcomes = sys.restart_many(&names, PARALLEL_RESTARTS);
                point.restarts_done = outcomes.len();
                for (name, o) in names.iter().zip(&outcomes).filter(|(_, o)| !o.ok) {
                    point.restart_failures += 1;
                    eprintln!("   restart {name} failed: {}", o.message);
                }
                let took: Vec<f64> = outcomes
                    .iter()
                    .filter(|o| o.ok)
                    .map(|o| o.took_ms)
                    .collect();
                point.restart_median_ms = median(&took);
                wait_for(
                    "all programs running after the restarts",
                    Duration::from_secs(300),
                    every,
                    || sys.running().ok().filter(|&n| n >= count),
                )?;
            }
            for _ in 0..STATUS_READS {
                match sys.status_api() {
                    None => break,
                    Some(r) => point.status_bytes = Some(r?),
                }
                point.status_reads += 1;
            }
            sys.status_cli()?;
            point.logs_written = Some(shape::logs_written(&programs));
        }
        // Let start-up work (and the status polls above) settle.
        std::thread::sleep(Duration::from_secs(2));
        let pid = sys.pid();
        point.rss_kib = procfs::rss_kib(pid)?;
        point.threads = procfs::threads(pid)?;
        point.smaps = smaps::breakdown(pid).ok();
        let t0 = procfs::cpu_ticks(pid)?;
        std::thread::sleep(Duration::from_secs(ctx.opts.idle_secs));
        point.idle_ticks = procfs::cpu_ticks(pid)?.saturating_sub(t0);
        point.rss_kib_after_idle = procfs::rss_kib(pid)?;
        if let Some(flag) = std::env::var_os("BENCH_PAUSE_BEFORE_STOP") {
            pause_for_inspection(pid, std::path::Path::new(&flag));
        }
        Ok(point)
    })();
    sys.shutdown(Duration::from_secs(60));
    result
}

/// `BENCH_PAUSE_BEFORE_STOP=FILE`: keep the daemon running as measured until FILE exists (the
/// bench then removes it), so that tools (gdb, perf, a look at /proc) can examine it.
fn pause_for_inspection(pid: i32, flag: &std::path::Path) {
    eprintln!(
        "   BENCH_PAUSE_BEFORE_STOP: daemon pid {pid} left running until {} exists",
        flag.display()
    );
    while !flag.exists() {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_file(flag);
}

/// Sizes in MiB of the release binaries, stripped again with `strip` when it is installed
/// (the release profile already strips; this checks it).
fn binary_sizes(ctx: &Ctx) -> Result<Value, String> {
    let dir = TempDir::new("strip")?;
    let strip = find_on_path("strip");
    let mut out = serde_json::Map::new();
    for name in ["supergo", "supergoctl"] {
        let bin = ctx.paths.binary(name)?;
        let size = std::fs::metadata(&bin)
            .map_err(|e| format!("{}: {e}", bin.display()))?
            .len();
        out.insert(format!("{name}_as_built"), json!(size as f64 / 1048576.0));
        let mut stripped = size;
        if let Some(strip) = &strip {
            let copy = dir.path().join(name);
            std::fs::copy(&bin, &copy).map_err(|e| format!("{}: {e}", bin.display()))?;
            let mut cmd = Command::new(strip);
            cmd.arg(&copy);
            if cleanup::run(&mut cmd, Duration::from_secs(60))?.success() {
                stripped = std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(size);
            }
        }
        out.insert(name.to_string(), json!(stripped as f64 / 1048576.0));
    }
    out.insert(
        "strip".into(),
        json!(strip.map(|p| p.display().to_string())),
    );
    Ok(Value::Object(out))
}
