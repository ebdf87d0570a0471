//! `upgrade`: supergo re-executes itself in place (`POST /upgrade`) N times (`--restarts`,
//! `--gap-ms` apart) under the restart scenario's load, with the first `--child` (Rust by
//! default). supergo only: no peer can replace its own binary without stopping its programs
//! (supervisord must be restarted, which stops every program; circus's `reloadconfig` reloads
//! the config, not the daemon, and a new circusd stops the watchers of the old one).
//!
//! Measured: failed requests (fast and slow), the longest hole in service (and one per
//! upgrade), how long each upgrade took (the client's round trip, and supergo's own figure
//! from the request to the new image's answer), whether the daemon's pid, the child's pid and
//! the listening socket stayed the same, the control API polled every 10 ms on fresh
//! connections during the upgrades (refused or failed polls), and the daemon's fds, RSS and
//! threads before and after. A run of the same load without upgrades gives the machine's own
//! longest hole (`--baseline-secs`).

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::restart::{load_config, successes, SLOW_MS};
use super::wait_serving;
use crate::cleanup::TempDir;
use crate::load::{Kind, Load, Sample};
use crate::report::{Row, Table};
use crate::setup::free_addr;
use crate::stats::{holes_between, longest_hole, summarize, Hole};
use crate::systems::{Program, Supergo, System};
use crate::{procfs, Ctx};

/// What one upgrade returned.
struct Upgraded {
    ok: bool,
    took_ms: f64,
    /// supergo's own figure: from the request to the new image's answer.
    server_ms: Option<f64>,
    message: String,
}

/// The control API as a poller saw it.
#[derive(Default)]
struct Polls {
    done: usize,
    failed: usize,
    first_failure: Option<String>,
    longest_ms: f64,
}

pub fn run(ctx: &Ctx) -> Result<(Vec<Table>, Value), String> {
    let kind = ctx.opts.children[0];
    let exe = kind.executable(&ctx.paths)?;
    eprintln!("== upgrade, {} child ({})", kind.name(), exe.display());
    let dir = TempDir::new("supergo-upgrade")?;
    let addr = free_addr()?;
    let mut program = Program::new("web", &exe);
    program.listen = Some(addr);
    program.notify = true;
    program.stop_timeout = 10.0;
    let mut sg = Supergo::launch(&[program], dir.path(), &ctx.paths)?;
    let result = measure(ctx, &mut sg, addr);
    sg.shutdown(Duration::from_secs(20));
    let r = result?;
    let table = table(ctx, kind.name(), &r);
    Ok((vec![table], r))
}

fn measure(ctx: &Ctx, sg: &mut Supergo, addr: SocketAddr) -> Result<Value, String> {
    let o = &ctx.opts;
    let n = o.restarts;
    let gap = Duration::from_millis(o.gap_ms);
    let child = wait_serving(addr, Duration::from_secs(30))?;
    let pid = sg.pid();
    let inode = socket_inode(child as i32)?;
    let cfg = load_config(ctx, addr, n);

    // The same load without upgrades: the machine's own longest hole.
    let load = Load::start(&cfg)?;
    std::thread::sleep(Duration::from_secs_f64(o.baseline_secs));
    let end = load.now_us();
    let samples = load.finish();
    let baseline = longest_hole(&successes(&samples), 500_000.min(end), end);

    let load = Load::start(&cfg)?;
    std::thread::sleep(Duration::from_secs(1));
    let (fds0, rss0, threads0) = resources(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (api, stop) = (control_addr(pid)?, stop.clone());
        std::thread::spawn(move || poll_control(api, &stop))
    };
    let mut marks = Vec::new();
    let mut upgrades = Vec::new();
    for i in 0..n {
        marks.push(load.now_us());
        let t = Instant::now();
        let answer = sg.post("/upgrade", 120);
        let took_ms = t.elapsed().as_secs_f64() * 1000.0;
        let outcome = match answer {
            Ok(v) => Upgraded {
                ok: true,
                took_ms,
                server_ms: v.pointer("/data/ms").and_then(Value::as_f64),
                message: v["message"].as_str().unwrap_or("").to_string(),
            },
            Err(e) => Upgraded {
                ok: false,
                took_ms,
                server_ms: None,
                message: e,
            },
        };
        if !outcome.ok && upgrades.iter().all(|u: &Upgraded| u.ok) {
            eprintln!("   upgrade {} failed: {}", i + 1, outcome.message);
        }
        upgrades.push(outcome);
        std::thread::sleep(gap.saturating_sub(t.elapsed()));
    }
    std::thread::sleep(Duration::from_secs(1));
    let end = load.now_us();
    stop.store(true, Ordering::SeqCst);
    let polls = poller
        .join()
        .map_err(|_| "the control API poller panicked")?;
    let samples = load.finish();
    let (fds1, rss1, threads1) = resources(pid);
    let child_after = wait_serving(addr, Duration::from_secs(10))?;
    let ok = successes(&samples);
    let holes: Vec<f64> = holes_between(&ok, &marks, end)
        .iter()
        .map(Hole::ms)
        .collect();
    let longest = longest_hole(&ok, marks.first().copied().unwrap_or(0), end);
    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok()).collect();
    let slow: Vec<&Sample> = samples.iter().filter(|s| s.kind == Kind::Slow).collect();
    let took: Vec<f64> = upgrades.iter().map(|u| u.took_ms).collect();
    let server: Vec<f64> = upgrades.iter().filter_map(|u| u.server_ms).collect();
    eprintln!(
        "   {} upgrades, {} requests, {} failed, longest hole {:.1} ms",
        upgrades.len(),
        samples.len(),
        failed.len(),
        longest.ms()
    );
    Ok(json!({
        "child": ctx.opts.children[0].name(),
        "upgrades": upgrades.len(),
        "upgrades_failed": upgrades.iter().filter(|u| !u.ok).count(),
        "first_failure": upgrades.iter().find(|u| !u.ok).map(|u| u.message.clone()),
        "last_message": upgrades.last().map(|u| u.message.clone()),
        "requests": samples.len(),
        "failed": failed.len(),
        "failed_by": failed.iter().filter_map(|s| s.outcome.err()).map(|f| f.name()).collect::<Vec<_>>(),
        "slow_requests": slow.len(),
        "slow_failed": slow.iter().filter(|s| !s.ok()).count(),
        "longest_hole_ms": longest.ms(),
        "hole_per_upgrade_ms": summarize(&holes),
        "baseline_longest_hole_ms": baseline.ms(),
        "upgrade_round_trip_ms": summarize(&took),
        "upgrade_server_ms": summarize(&server),
        "daemon_pid_kept": procfs::alive(pid) && sg.pid() == pid,
        "child_pid_kept": child_after == child,
        "listener_inode_kept": socket_inode(child_after as i32).ok() == Some(inode),
        "control_polls": polls.done,
        "control_polls_failed": polls.failed,
        "control_first_failure": polls.first_failure,
        "control_longest_poll_ms": polls.longest_ms,
        "fds": [fds0, fds1],
        "rss_kib": [rss0, rss1],
        "threads": [threads0, threads1],
    }))
}

fn resources(pid: i32) -> (usize, u64, u64) {
    (
        procfs::fd_count(pid).unwrap_or(0),
        procfs::rss_kib(pid).unwrap_or(0),
        procfs::threads(pid).unwrap_or(0),
    )
}

/// The inode of the child's listening socket (its fd 3).
fn socket_inode(pid: i32) -> Result<String, String> {
    std::fs::read_link(format!("/proc/{pid}/fd/3"))
        .map(|l| l.display().to_string())
        .map_err(|e| format!("/proc/{pid}/fd/3: {e}"))
}

/// The control API's address: the daemon's `--listen` argument (its argv survives every
/// upgrade: the new image gets the same).
fn control_addr(pid: i32) -> Result<SocketAddr, String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|e| format!("/proc/{pid}/cmdline: {e}"))?;
    let args: Vec<String> = (cmdline.split(|b| *b == 0))
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    args.iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("no --listen ADDR in supergo's arguments {args:?}"))
}

/// `GET /status` every 10 ms on a fresh connection until `stop`.
fn poll_control(api: SocketAddr, stop: &AtomicBool) -> Polls {
    use std::io::{Read, Write};
    let mut polls = Polls::default();
    while !stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        let answer = (|| -> Result<(), String> {
            let mut s = TcpStream::connect_timeout(&api, Duration::from_secs(5))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .map_err(|e| format!("write: {e}"))?;
            let mut body = Vec::new();
            s.read_to_end(&mut body).map_err(|e| format!("read: {e}"))?;
            if body.starts_with(b"HTTP/1.1 200") {
                Ok(())
            } else {
                Err(format!(
                    "answer {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(40)])
                ))
            }
        })();
        polls.done += 1;
        polls.longest_ms = polls.longest_ms.max(t.elapsed().as_secs_f64() * 1000.0);
        if let Err(e) = answer {
            polls.failed += 1;
            polls.first_failure.get_or_insert(e);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    polls
}

fn table(ctx: &Ctx, child: &str, r: &Value) -> Table {
    let o = &ctx.opts;
    let mut t = Table::new(
        &format!(
            "upgrade in place: {child} child, {} upgrades {} ms apart, {} fast clients at {} req/s + {} × /sleep?ms={SLOW_MS}",
            o.restarts, o.gap_ms, o.clients, o.rate, o.slow
        ),
        vec!["supergo".to_string()],
    );
    let num = |key: &str| r[key].as_f64();
    let sum = |key: &str, p: &str| r[key][p].as_f64();
    let ms = |metric: &str, value: Option<f64>| Row::num(metric, "ms", vec![value]);
    let text = |metric: &str, value: String| Row::text(metric, vec![value]);
    let before_after = |key: &str| format!("{} → {}", r[key][0], r[key][1]);
    let upgrades_ok =
        r["upgrades"].as_u64().unwrap_or(0) - r["upgrades_failed"].as_u64().unwrap_or(0);
    let rows = [
        text(
            "upgrades ok / done",
            format!("{upgrades_ok} / {}", r["upgrades"]),
        ),
        text("requests", r["requests"].to_string()),
        Row::num("failed requests", "", vec![num("failed")]),
        text(
            "slow requests failed / done",
            format!("{} / {}", r["slow_failed"], r["slow_requests"]),
        ),
        ms("longest hole in service", num("longest_hole_ms")),
        ms("hole per upgrade, p50", sum("hole_per_upgrade_ms", "p50")),
        ms("hole per upgrade, max", sum("hole_per_upgrade_ms", "max")),
        ms(
            "longest hole without upgrades (baseline)",
            num("baseline_longest_hole_ms"),
        ),
        ms(
            "upgrade, request to answer, p50",
            sum("upgrade_round_trip_ms", "p50"),
        ),
        ms(
            "upgrade, request to answer, p99",
            sum("upgrade_round_trip_ms", "p99"),
        ),
        ms(
            "upgrade, as supergo counts it, p50",
            sum("upgrade_server_ms", "p50"),
        ),
        text(
            "same daemon pid / child pid / listener",
            format!(
                "{} / {} / {}",
                r["daemon_pid_kept"], r["child_pid_kept"], r["listener_inode_kept"]
            ),
        ),
        text(
            "control API polls (every 10 ms) failed / done",
            format!("{} / {}", r["control_polls_failed"], r["control_polls"]),
        ),
        ms("longest control API poll", num("control_longest_poll_ms")),
        text(
            "daemon fds / RSS KiB / threads, before → after",
            format!(
                "{} / {} / {}",
                before_after("fds"),
                before_after("rss_kib"),
                before_after("threads")
            ),
        ),
    ];
    rows.into_iter().for_each(|row| t.push(row));
    t
}
