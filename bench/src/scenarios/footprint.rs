//! `footprint`: what the daemon costs while it just supervises.
//!
//! For each program count (`--counts`, default 1, 100, 1000) and each system: programs that
//! sleep (`sleep 100000`, no listeners: the figure is the supervisor's, not the children's),
//! wait until all are running, let it settle, then read the daemon's RSS (`VmRSS`) and thread
//! count, and the CPU ticks it uses over `--idle-secs` of idleness (nobody queries it).
//! Then the sizes of the stripped release binaries.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::systems;
use crate::cleanup::{self, TempDir};
use crate::report::{mib, Row, Table};
use crate::setup::find_on_path;
use crate::systems::{self, wait_for, Peer, Program};
use crate::{procfs, Ctx};

/// One system at one program count.
#[derive(Clone, Debug, serde::Serialize)]
struct Point {
    system: &'static str,
    programs: usize,
    start_to_all_running_s: f64,
    rss_kib: u64,
    threads: u64,
    idle_ticks: u64,
    idle_secs: u64,
    rss_kib_after_idle: u64,
}

pub fn run(ctx: &Ctx) -> Result<(Vec<Table>, Value), String> {
    let peers = systems(
        ctx,
        &[Peer::Supergo, Peer::Supervisord, Peer::CircusRestart],
    );
    let sleep = find_on_path("sleep").ok_or("`sleep` is not on PATH")?;
    let mut points: Vec<Point> = Vec::new();
    let mut errors = Vec::new();
    for &count in &ctx.opts.counts {
        for &peer in &peers {
            eprintln!("-- footprint: {} with {count} program(s)", peer.system());
            match measure(ctx, peer, count, &sleep) {
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

    let names: Vec<String> = peers.iter().map(|p| p.system().to_string()).collect();
    let mut t = Table::new(
        &format!(
            "footprint: idle daemon, `sleep` programs, {} s idle window",
            ctx.opts.idle_secs
        ),
        names.clone(),
    );
    let cell = |count: usize, f: &dyn Fn(&Point) -> f64| -> Vec<Option<f64>> {
        peers
            .iter()
            .map(|p| {
                points
                    .iter()
                    .find(|x| x.system == p.system() && x.programs == count)
                    .map(f)
            })
            .collect()
    };
    for &count in &ctx.opts.counts {
        t.push(Row::num(
            &format!("RSS, {count} programs"),
            "MiB",
            cell(count, &|p| mib(p.rss_kib)),
        ));
    }
    for &count in &ctx.opts.counts {
        t.push(Row::num(
            &format!("threads, {count} programs"),
            "",
            cell(count, &|p| p.threads as f64),
        ));
    }
    for &count in &ctx.opts.counts {
        t.push(Row::num(
            &format!("CPU in {} s idle, {count} programs", ctx.opts.idle_secs),
            "ticks",
            cell(count, &|p| p.idle_ticks as f64),
        ));
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
    let results = json!({
        "ticks_per_second": procfs::ticks_per_second(),
        "points": points,
        "errors": errors,
        "binaries_mib": sizes,
    });
    Ok((vec![t], results))
}

fn measure(ctx: &Ctx, peer: Peer, count: usize, sleep: &Path) -> Result<Point, String> {
    let dir = TempDir::new(&format!("footprint-{}-{count}", peer.system()))?;
    let programs: Vec<Program> = (0..count)
        .map(|i| {
            let mut p = Program::new(&format!("p{i:04}"), sleep);
            p.args = vec!["100000".into()];
            p.stop_timeout = 5.0;
            p
        })
        .collect();
    let mut sys = systems::launch(peer, &programs, dir.path(), &ctx.paths, &ctx.installed)?;
    let result = (|| {
        let every = Duration::from_millis(200);
        wait_for(
            "all programs running",
            Duration::from_secs(300),
            every,
            || sys.running().ok().filter(|&n| n >= count),
        )?;
        let all_running = sys.started_at().elapsed().as_secs_f64();
        // Let start-up work (and the status polls above) settle.
        std::thread::sleep(Duration::from_secs(2));
        let pid = sys.pid();
        let rss_kib = procfs::rss_kib(pid)?;
        let threads = procfs::threads(pid)?;
        let t0 = procfs::cpu_ticks(pid)?;
        std::thread::sleep(Duration::from_secs(ctx.opts.idle_secs));
        let idle_ticks = procfs::cpu_ticks(pid)?.saturating_sub(t0);
        Ok(Point {
            system: peer.system(),
            programs: count,
            start_to_all_running_s: all_running,
            rss_kib,
            threads,
            idle_ticks,
            idle_secs: ctx.opts.idle_secs,
            rss_kib_after_idle: procfs::rss_kib(pid)?,
        })
    })();
    sys.shutdown(Duration::from_secs(60));
    result
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
