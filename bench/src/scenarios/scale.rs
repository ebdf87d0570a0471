//! `scale`: many programs (`--programs`, default 1000) of `sleep 100000`, `start_secs 1`.
//!
//! - time from spawning the daemon to every program in its running state (supergo `Running`,
//!   supervisord `RUNNING` — both need `start_secs`/`startsecs` 1 of uptime; circus has no such
//!   state, so its figure is all child processes alive);
//! - `status` latency, median of 20: through the API (supergo `GET /status`, supervisord
//!   XML-RPC `getAllProcessInfo`) and as the whole CLI command;
//! - restart latency of one program among them, median of 5;
//! - how long the daemon takes to stop everything on SIGTERM.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{opt, systems};
use crate::cleanup::TempDir;
use crate::report::{Row, Table};
use crate::setup::find_on_path;
use crate::stats::median;
use crate::systems::{self, wait_for, Peer, Program};
use crate::Ctx;

const STATUS_RUNS: usize = 20;
const RESTART_RUNS: usize = 5;

#[derive(Clone, Debug, Default, serde::Serialize)]
struct Point {
    system: &'static str,
    programs: usize,
    all_running_s: Option<f64>,
    status_api_ms: Option<f64>,
    status_cli_ms: Option<f64>,
    restart_one_ms: Option<f64>,
    restart_failures: usize,
    stop_all_s: Option<f64>,
}

pub fn run(ctx: &Ctx) -> Result<(Vec<Table>, Value), String> {
    let peers = systems(
        ctx,
        &[Peer::Supergo, Peer::Supervisord, Peer::CircusRestart],
    );
    let n = ctx.opts.programs.unwrap_or(1000);
    let sleep = find_on_path("sleep").ok_or("`sleep` is not on PATH")?;
    let mut points = Vec::new();
    let mut errors = Vec::new();
    for &peer in &peers {
        eprintln!("-- scale: {} with {n} programs", peer.system());
        match measure(ctx, peer, n, &sleep) {
            Ok(p) => {
                eprintln!("   {p:?}");
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
    let mut t = Table::new(&format!("scale: {n} programs, start_secs 1"), names);
    let col = |f: &dyn Fn(&Point) -> Option<f64>| points.iter().map(f).collect::<Vec<_>>();
    t.push(Row::num(
        "start → all running (circus: all alive)",
        "s",
        col(&|p| p.all_running_s),
    ));
    t.push(Row::num(
        "status via API, median of 20",
        "ms",
        col(&|p| p.status_api_ms),
    ));
    t.push(Row::num(
        "status via CLI (whole command), median of 20",
        "ms",
        col(&|p| p.status_cli_ms),
    ));
    t.push(Row::num(
        "restart one program, median of 5",
        "ms",
        col(&|p| p.restart_one_ms),
    ));
    t.push(Row::num(
        "stop everything on SIGTERM",
        "s",
        col(&|p| p.stop_all_s),
    ));
    let results = json!({
        "points": points,
        "errors": errors,
        "all_running_s": points.iter().map(|p| opt(p.all_running_s)).collect::<Vec<_>>(),
    });
    Ok((vec![t], results))
}

fn measure(ctx: &Ctx, peer: Peer, n: usize, sleep: &Path) -> Result<Point, String> {
    let dir = TempDir::new(&format!("scale-{}", peer.system()))?;
    let programs: Vec<Program> = (0..n)
        .map(|i| {
            let mut p = Program::new(&format!("p{i:04}"), sleep);
            p.args = vec!["100000".into()];
            p.start_secs = 1.0;
            p.stop_timeout = 5.0;
            p
        })
        .collect();
    let mut sys = systems::launch(peer, &programs, dir.path(), &ctx.paths, &ctx.installed)?;
    let mut point = Point {
        system: peer.system(),
        programs: n,
        ..Point::default()
    };
    let measured = (|| -> Result<(), String> {
        // The same for every system: a status of 1000 programs is not free, and polling
        // faster would slow the start being measured.
        let every = Duration::from_millis(100);
        wait_for(
            "all programs running",
            Duration::from_secs(300),
            every,
            || sys.running().ok().filter(|&r| r >= n),
        )?;
        point.all_running_s = Some(sys.started_at().elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_secs(1));

        let mut api = Vec::new();
        for _ in 0..STATUS_RUNS {
            let t = Instant::now();
            match sys.status_api() {
                None => break,
                Some(r) => r?,
            }
            api.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        point.status_api_ms = median(&api);

        let mut cli = Vec::new();
        for _ in 0..STATUS_RUNS {
            let t = Instant::now();
            sys.status_cli()?;
            cli.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        point.status_cli_ms = median(&cli);

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
