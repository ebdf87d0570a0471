//! `restart`: restarts under load, for each child and each system.
//!
//! For each system, one program `web` serving the child on a free port, then:
//! 1. a few restarts with no load: the restart command's own latency;
//! 2. a run **without** restarts (`--baseline-secs`): the longest hole in service that the
//!    machine and the child produce on their own;
//! 3. a run with `--restarts` restarts, `--gap-ms` apart, under the same load (new-connection,
//!    keep-alive and slow `/sleep?ms=800` clients): failed requests, latency, how soon the new
//!    process serves, holes, the daemon's CPU, and its fds / RSS / zombies before and after.
//!
//! supergo runs the child with `ready = "notify"`, so its restart answers once the child said
//! `READY=1`. The child's own start-to-ready is measured standalone (the bench spawns it with a
//! listener and a notify socket of its own), idle and under the same load, and subtracted: the
//! rest is supergo's overhead.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{labels, systems, wait_serving};
use crate::cleanup::{TempDir, Tracked};
use crate::load::{Kind, Load, LoadConfig, Sample};
use crate::report::{fmt_num, Row, Table};
use crate::setup::{free_addr, ChildKind};
use crate::stats::{holes_between, longest_hole, median, summarize, Hole, Summary};
use crate::systems::{self, Peer, Program, RestartOutcome, System};
use crate::{procfs, Ctx};

/// Restarts without load, per system: enough for a median, few enough for supervisord.
const IDLE_RESTARTS_SUPERGO: usize = 20;
const IDLE_RESTARTS_PEER: usize = 3;
/// How long a slow request (`/sleep?ms=`) takes; the upgrade scenario runs the same load.
pub(super) const SLOW_MS: u64 = 800;

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
    let mut tables = Vec::new();
    let mut results = Vec::new();
    for &kind in &ctx.opts.children {
        let exe = match kind.executable(&ctx.paths) {
            Ok(e) => e,
            Err(e) => {
                eprintln!(
                    "\n!!!!! SKIPPING THE {} CHILD: {e} !!!!!\n",
                    kind.name().to_uppercase()
                );
                results.push(json!({"child": kind.name(), "skipped": e}));
                continue;
            }
        };
        eprintln!("== restart, {} child ({})", kind.name(), exe.display());
        let mut runs = Vec::new();
        for &peer in &peers {
            eprintln!("-- {} ({} child)", peer.label(), kind.name());
            match run_one(ctx, peer, &exe) {
                Ok(r) => {
                    eprintln!(
                        "   {} restarts, {} requests, {} failed, longest hole {:.1} ms",
                        r.loaded.len(),
                        r.analysis.requests,
                        r.analysis.failed,
                        r.analysis.longest.ms()
                    );
                    runs.push(r);
                }
                Err(e) => {
                    eprintln!(
                        "\n!!!!! {} FAILED with the {} child: {e} !!!!!\n",
                        peer.label(),
                        kind.name()
                    );
                    results.push(json!({"child": kind.name(), "system": peer.label(), "error": e}));
                }
            }
        }
        tables.push(table(ctx, kind, &runs));
        results.push(json!({
            "child": kind.name(),
            "runs": runs.iter().map(RunResult::to_json).collect::<Vec<_>>(),
        }));
    }
    Ok((tables, Value::Array(results)))
}

/// What one system did with one child.
struct RunResult {
    peer: Peer,
    idle: Vec<RestartOutcome>,
    loaded: Vec<RestartOutcome>,
    analysis: Analysis,
    baseline: Hole,
    baseline_requests: usize,
    baseline_failed: usize,
    cpu_ticks: u64,
    run_secs: f64,
    before: Snapshot,
    after: Snapshot,
    /// supergo only: the child's own start-to-ready, measured beside each restart without
    /// load, and in the gap after each restart under load.
    start_idle: Vec<f64>,
    start_loaded: Vec<f64>,
}

impl RunResult {
    fn to_json(&self) -> Value {
        let took =
            |v: &[RestartOutcome]| summarize(&v.iter().map(|o| o.took_ms).collect::<Vec<_>>());
        let handoff: Vec<f64> = self.loaded.iter().filter_map(|o| o.handoff_ms).collect();
        json!({
            "system": self.peer.label(),
            "restarts": self.loaded.len(),
            "restarts_failed": self.loaded.iter().filter(|o| !o.ok).count(),
            "first_failure": self.loaded.iter().find(|o| !o.ok).map(|o| o.message.clone()),
            "restart_command_idle_ms": took(&self.idle),
            "restart_command_loaded_ms": took(&self.loaded),
            "supergo_handoff_ms": summarize(&handoff),
            "analysis": self.analysis.to_json(),
            "baseline": {
                "longest_hole_ms": self.baseline.ms(),
                "requests": self.baseline_requests,
                "failed": self.baseline_failed,
            },
            "daemon_cpu_ticks": self.cpu_ticks,
            "ticks_per_second": procfs::ticks_per_second(),
            "run_secs": self.run_secs,
            "before": self.before,
            "after": self.after,
            "child_start_idle_ms": summarize(&self.start_idle),
            "child_start_loaded_ms": summarize(&self.start_loaded),
        })
    }
}

/// The daemon's resources at one moment.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
struct Snapshot {
    fds: usize,
    rss_kib: u64,
    threads: u64,
    zombies: usize,
    live_children: usize,
}

impl Snapshot {
    fn take(pid: i32) -> Snapshot {
        Snapshot {
            fds: procfs::fd_count(pid).unwrap_or(0),
            rss_kib: procfs::rss_kib(pid).unwrap_or(0),
            threads: procfs::threads(pid).unwrap_or(0),
            zombies: procfs::zombie_children(pid),
            live_children: procfs::live_children(pid),
        }
    }
}

/// The load every run of this scenario (and of `upgrade`) sends.
pub(super) fn load_config(ctx: &Ctx, addr: std::net::SocketAddr, restarts: usize) -> LoadConfig {
    let o = &ctx.opts;
    LoadConfig {
        addr,
        close_clients: o.clients / 2,
        keepalive_clients: o.clients - o.clients / 2,
        slow_clients: o.slow,
        slow_ms: SLOW_MS,
        rate: o.rate,
        timeout: Duration::from_secs(3),
        // Generous: a stop-then-start restart with 800 ms requests in flight takes ~2 s.
        max_duration: Duration::from_secs(120)
            + Duration::from_millis((o.gap_ms + 5000) * restarts as u64)
            + Duration::from_secs_f64(o.baseline_secs),
    }
}

fn run_one(ctx: &Ctx, peer: Peer, exe: &Path) -> Result<RunResult, String> {
    let dir = TempDir::new(&peer.label().replace(' ', "-"))?;
    let addr = free_addr()?;
    let mut program = Program::new("web", exe);
    program.listen = Some(addr);
    program.notify = true;
    program.ready_timeout = 10.0;
    program.stop_timeout = 10.0;
    let mut sys = systems::launch(peer, &[program], dir.path(), &ctx.paths, &ctx.installed)?;
    let result = measure(ctx, peer, sys.as_mut(), exe, addr, dir.path());
    sys.shutdown(Duration::from_secs(20));
    result
}

fn measure(
    ctx: &Ctx,
    peer: Peer,
    sys: &mut dyn System,
    exe: &Path,
    addr: std::net::SocketAddr,
    dir: &Path,
) -> Result<RunResult, String> {
    let gap = Duration::from_millis(ctx.opts.gap_ms);
    // The child's own start is measured right beside supergo's restarts, so that both see the
    // same machine (it is shared, and its load changes from minute to minute).
    let mut starts = 0;
    let mut child_start = || -> Result<f64, String> {
        starts += 1;
        child_start_once(exe, &dir.join(format!("notify-{starts}")))
    };
    let mut start_idle = Vec::new();
    let mut start_loaded = Vec::new();
    wait_serving(addr, Duration::from_secs(30))?;
    let pid = sys.pid();

    // 1. Restarts with no load.
    let idle_count = if peer == Peer::Supergo {
        IDLE_RESTARTS_SUPERGO
    } else {
        IDLE_RESTARTS_PEER
    };
    let mut idle = Vec::new();
    for _ in 0..idle_count {
        if peer == Peer::Supergo {
            start_idle.push(child_start()?);
        }
        idle.push(sys.restart("web"));
        wait_serving(addr, Duration::from_secs(30))?;
        std::thread::sleep(gap);
    }

    // 2. The same load without restarts.
    let restarts = if peer == Peer::Supergo {
        ctx.opts.restarts
    } else {
        ctx.opts.peer_restarts
    };
    let cfg = load_config(ctx, addr, restarts);
    let load = Load::start(&cfg)?;
    std::thread::sleep(Duration::from_secs_f64(ctx.opts.baseline_secs));
    let end = load.now_us();
    let samples = load.finish();
    let ok = successes(&samples);
    // The first half second is the clients' own start.
    let baseline = longest_hole(&ok, 500_000.min(end), end);
    let baseline_failed = samples.iter().filter(|s| !s.ok()).count();
    let baseline_requests = samples.len();

    // 3. Restarts under load.
    let load = Load::start(&cfg)?;
    std::thread::sleep(Duration::from_secs(1));
    let before = Snapshot::take(pid);
    let cpu0 = procfs::cpu_ticks(pid)?;
    let t_run = Instant::now();
    let mut marks = Vec::new();
    let mut loaded = Vec::new();
    for i in 0..restarts {
        marks.push(load.now_us());
        let outcome = sys.restart("web");
        if !outcome.ok && loaded.iter().all(|o: &RestartOutcome| o.ok) {
            eprintln!("   restart {} failed: {}", i + 1, outcome.message);
        }
        loaded.push(outcome);
        let t = Instant::now();
        if peer == Peer::Supergo {
            start_loaded.push(child_start()?);
        }
        std::thread::sleep(gap.saturating_sub(t.elapsed()));
        if (i + 1) % 100 == 0 {
            eprintln!("   {} restarts", i + 1);
        }
    }
    // A tail, so that the last restart's hole is inside the window.
    std::thread::sleep(Duration::from_secs(1));
    let end = load.now_us();
    let cpu_ticks = procfs::cpu_ticks(pid)?.saturating_sub(cpu0);
    let run_secs = t_run.elapsed().as_secs_f64();
    let samples = load.finish();
    // Let the last draining processes finish before looking at the daemon's resources.
    let settle = Instant::now();
    while procfs::live_children(pid) > 1 && settle.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = Snapshot::take(pid);
    Ok(RunResult {
        peer,
        idle,
        loaded,
        analysis: analyze(&samples, &marks, end),
        baseline,
        baseline_requests,
        baseline_failed,
        cpu_ticks,
        run_secs,
        before,
        after,
        start_idle,
        start_loaded,
    })
}

/// Sorted completion times of successful fast requests: what holes are computed from.
pub(super) fn successes(samples: &[Sample]) -> Vec<u64> {
    let mut ok: Vec<u64> = samples
        .iter()
        .filter(|s| s.ok() && s.kind != Kind::Slow)
        .map(|s| s.end_us)
        .collect();
    ok.sort_unstable();
    ok
}

/// What the load saw during a run with restarts.
#[derive(Clone, Debug, Default)]
struct Analysis {
    requests: usize,
    failed: usize,
    failed_by: BTreeMap<&'static str, usize>,
    reconnected: usize,
    slow_requests: usize,
    slow_failed: usize,
    /// Fast requests started after the first restart was issued.
    latency: Summary,
    /// The longest hole after each restart (until the next one).
    holes: Vec<Hole>,
    longest: Hole,
    /// Per restart: from issuing it to the first success by a pid not seen before it.
    serving_ms: Vec<Option<f64>>,
}

impl Analysis {
    fn to_json(&self) -> Value {
        let hole_ms: Vec<f64> = self.holes.iter().map(Hole::ms).collect();
        let serving: Vec<f64> = self.serving_ms.iter().flatten().copied().collect();
        json!({
            "requests": self.requests,
            "failed": self.failed,
            "failed_by": self.failed_by,
            "keepalive_reconnects": self.reconnected,
            "slow_requests": self.slow_requests,
            "slow_failed": self.slow_failed,
            "latency_ms": self.latency,
            "hole_per_restart_ms": summarize(&hole_ms),
            "longest_hole_ms": self.longest.ms(),
            "longest_hole_at_ms": self.longest.start_us as f64 / 1000.0,
            "new_process_serving_ms": summarize(&serving),
            "restarts_never_serving_a_new_pid": self.serving_ms.iter().filter(|s| s.is_none()).count(),
        })
    }
}

/// The pure part: failures, latency, holes and time-to-new-process from the samples and the
/// times restarts were issued (all in the load's microseconds).
fn analyze(samples: &[Sample], marks: &[u64], end_us: u64) -> Analysis {
    let mut a = Analysis {
        requests: samples.len(),
        ..Analysis::default()
    };
    for s in samples {
        if let Err(f) = s.outcome {
            a.failed += 1;
            *a.failed_by.entry(f.name()).or_default() += 1;
        }
        a.reconnected += usize::from(s.reconnected);
        if s.kind == Kind::Slow {
            a.slow_requests += 1;
            a.slow_failed += usize::from(!s.ok());
        }
    }
    let first = marks.first().copied().unwrap_or(0);
    let latencies: Vec<f64> = samples
        .iter()
        .filter(|s| s.kind != Kind::Slow && s.ok() && s.start_us >= first && s.start_us <= end_us)
        .map(Sample::latency_ms)
        .collect();
    a.latency = summarize(&latencies);
    let ok = successes(samples);
    a.holes = holes_between(&ok, marks, end_us);
    a.longest = longest_hole(&ok, first, end_us);

    // Successful fast answers with a pid, by completion time.
    let mut answered: Vec<(u64, u32)> = samples
        .iter()
        .filter_map(|s| match s.outcome {
            Ok(pid) if pid != 0 && s.kind != Kind::Slow => Some((s.end_us, pid)),
            _ => None,
        })
        .collect();
    answered.sort_unstable();
    let mut seen = BTreeSet::new();
    let mut i = 0;
    for &mark in marks {
        while i < answered.len() && answered[i].0 < mark {
            seen.insert(answered[i].1);
            i += 1;
        }
        let first_new = answered[i..]
            .iter()
            .find(|(_, pid)| !seen.contains(pid))
            .map(|(t, _)| (t - mark) as f64 / 1000.0);
        a.serving_ms.push(first_new);
    }
    a
}

/// The child's own start-to-ready: spawned by the bench with a listener at `--fd` and a
/// notify socket of its own, timed from spawn to `READY=1` (ms).
fn child_start_once(exe: &Path, notify: &Path) -> Result<f64, String> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let sock = UnixDatagram::bind(notify).map_err(|e| format!("{}: {e}", notify.display()))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("notify socket: {e}"))?;
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    // The child inherits the listener at the same number: clear its close-on-exec flag. The
    // bench spawns nothing else meanwhile (the load threads only use sockets).
    fcntl(&listener, FcntlArg::F_SETFD(FdFlag::empty()))
        .map_err(|e| format!("fcntl on the listener: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--fd")
        .arg(listener.as_raw_fd().to_string())
        .env("NOTIFY_SOCKET", notify)
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let child = Tracked::spawn(&mut cmd).map_err(|e| format!("{}: {e}", exe.display()))?;
    let mut buf = [0u8; 512];
    let took = loop {
        match sock.recv(&mut buf) {
            Ok(n)
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1") =>
            {
                break t.elapsed();
            }
            Ok(_) => continue,
            Err(e) => {
                return Err(format!(
                    "{} sent no READY=1 within 10 s: {e}",
                    exe.display()
                ))
            }
        }
    };
    drop(listener);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    drop(child);
    Ok(took.as_secs_f64() * 1000.0)
}

fn table(ctx: &Ctx, kind: ChildKind, runs: &[RunResult]) -> Table {
    let peers: Vec<Peer> = runs.iter().map(|r| r.peer).collect();
    let soak = ctx.opts.restarts >= 1000;
    let mut t = Table::new(
        &format!(
            "restart{}: {} child, {} restarts (peers {}), {} fast clients at {} req/s + {} × /sleep?ms={SLOW_MS}",
            if soak { " (soak)" } else { "" },
            kind.name(),
            ctx.opts.restarts,
            ctx.opts.peer_restarts,
            ctx.opts.clients,
            ctx.opts.rate,
            ctx.opts.slow
        ),
        labels(&peers),
    );
    let col = |f: &dyn Fn(&RunResult) -> Option<f64>| runs.iter().map(f).collect::<Vec<_>>();
    let txt = |f: &dyn Fn(&RunResult) -> String| runs.iter().map(f).collect::<Vec<_>>();
    t.push(Row::text(
        "restarts ok / done",
        txt(&|r| {
            format!(
                "{} / {}",
                r.loaded.iter().filter(|o| o.ok).count(),
                r.loaded.len()
            )
        }),
    ));
    t.push(Row::text(
        "requests",
        txt(&|r| r.analysis.requests.to_string()),
    ));
    t.push(Row::num(
        "failed requests",
        "",
        col(&|r| Some(r.analysis.failed as f64)),
    ));
    t.push(Row::text(
        "failures by kind",
        txt(&|r| {
            if r.analysis.failed_by.is_empty() {
                "none".into()
            } else {
                r.analysis
                    .failed_by
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }),
    ));
    t.push(Row::text(
        "slow requests failed / done",
        txt(&|r| format!("{} / {}", r.analysis.slow_failed, r.analysis.slow_requests)),
    ));
    t.push(Row::num(
        "keep-alive reconnects (stale connection, retried once)",
        "",
        col(&|r| Some(r.analysis.reconnected as f64)),
    ));
    t.push(Row::num(
        "latency p50",
        "ms",
        col(&|r| r.analysis.latency.p50),
    ));
    t.push(Row::num(
        "latency p99",
        "ms",
        col(&|r| r.analysis.latency.p99),
    ));
    t.push(Row::num(
        "latency max",
        "ms",
        col(&|r| r.analysis.latency.max),
    ));
    let serving = |r: &RunResult| {
        summarize(
            &r.analysis
                .serving_ms
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>(),
        )
    };
    t.push(Row::num(
        "restart → new process serving p50",
        "ms",
        col(&|r| serving(r).p50),
    ));
    t.push(Row::num(
        "restart → new process serving max",
        "ms",
        col(&|r| serving(r).max),
    ));
    let took = |v: &[RestartOutcome]| v.iter().map(|o| o.took_ms).collect::<Vec<_>>();
    t.push(Row::num(
        "restart command, idle, median",
        "ms",
        col(&|r| median(&took(&r.idle))),
    ));
    t.push(Row::num(
        "restart command, under load, median",
        "ms",
        col(&|r| median(&took(&r.loaded))),
    ));
    t.push(Row::num(
        "restart command, under load, max",
        "ms",
        col(&|r| summarize(&took(&r.loaded)).max),
    ));
    let hole_ms = |r: &RunResult| r.analysis.holes.iter().map(Hole::ms).collect::<Vec<_>>();
    t.push(Row::num(
        "hole in service per restart, p50",
        "ms",
        col(&|r| median(&hole_ms(r))),
    ));
    t.push(Row::num(
        "longest hole in service, with restarts",
        "ms",
        col(&|r| Some(r.analysis.longest.ms())),
    ));
    t.push(Row::num(
        "longest hole in service, no restarts",
        "ms",
        col(&|r| Some(r.baseline.ms())),
    ));
    t.push(Row::num(
        "daemon CPU during the restart run",
        "ticks",
        col(&|r| Some(r.cpu_ticks as f64)),
    ));
    // supergo's overhead over the child's own start.
    let sg = runs.iter().find(|r| r.peer == Peer::Supergo);
    let only_supergo = |v: Option<f64>| {
        let mut values = vec![None; runs.len()];
        if let Some(i) = runs.iter().position(|r| r.peer == Peer::Supergo) {
            values[i] = v;
        }
        values
    };
    if let Some(sg) = sg {
        let start_idle = median(&sg.start_idle);
        let start_loaded = median(&sg.start_loaded);
        let cmd_idle = median(&took(&sg.idle));
        let cmd_loaded = median(&took(&sg.loaded));
        let handoff: Vec<f64> = sg.loaded.iter().filter_map(|o| o.handoff_ms).collect();
        t.push(Row::num(
            "child's own start-to-ready, idle, median",
            "ms",
            only_supergo(start_idle),
        ));
        t.push(Row::num(
            "child's own start-to-ready, under load, median",
            "ms",
            only_supergo(start_loaded),
        ));
        t.push(Row::num(
            "supergo handoff_ms (its own figure), under load, median",
            "ms",
            only_supergo(median(&handoff)),
        ));
        let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
        t.push(Row::num(
            "supergo overhead over the child's start, idle",
            "ms",
            only_supergo(diff(cmd_idle, start_idle)),
        ));
        t.push(Row::num(
            "supergo overhead over the child's start, under load",
            "ms",
            only_supergo(diff(cmd_loaded, start_loaded)),
        ));
    }
    t.push(Row::text(
        "daemon fds before → after",
        txt(&|r| format!("{} → {}", r.before.fds, r.after.fds)),
    ));
    t.push(Row::text(
        "daemon RSS before → after (MiB)",
        txt(&|r| {
            format!(
                "{} → {}",
                fmt_num(r.before.rss_kib as f64 / 1024.0),
                fmt_num(r.after.rss_kib as f64 / 1024.0)
            )
        }),
    ));
    t.push(Row::text(
        "zombie children before → after",
        txt(&|r| format!("{} → {}", r.before.zombies, r.after.zombies)),
    ));
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Failure;

    fn ok(start: u64, end: u64, pid: u32) -> Sample {
        Sample {
            start_us: start,
            end_us: end,
            kind: Kind::Close,
            outcome: Ok(pid),
            reconnected: false,
        }
    }

    #[test]
    fn analysis_finds_failures_holes_and_the_new_process() {
        let mut samples = vec![
            ok(0, 1_000, 10),
            ok(1_000, 2_000, 10),
            // Restart issued at 2_500; the old pid still answers, then a hole, then pid 11.
            ok(2_400, 3_000, 10),
            Sample {
                start_us: 3_000,
                end_us: 3_500,
                kind: Kind::KeepAlive,
                outcome: Err(Failure::Reset),
                reconnected: true,
            },
            ok(3_500, 9_000, 11),
            ok(9_000, 9_500, 11),
            Sample {
                start_us: 100,
                end_us: 9_600,
                kind: Kind::Slow,
                outcome: Ok(0),
                reconnected: false,
            },
        ];
        samples.sort_by_key(|s| s.end_us);
        let a = analyze(&samples, &[2_500], 10_000);
        assert_eq!(a.requests, 7);
        assert_eq!(a.failed, 1);
        assert_eq!(a.failed_by.get("reset"), Some(&1));
        assert_eq!(a.reconnected, 1);
        assert_eq!(a.slow_requests, 1);
        assert_eq!(a.longest.length_us, 6_000);
        assert_eq!(a.longest.start_us, 3_000);
        assert_eq!(a.serving_ms, vec![Some(6.5)]);
        // Latency of fast successes started after the restart: 5.5 ms and 0.5 ms.
        assert_eq!(a.latency.count, 2);
        assert_eq!(a.latency.max, Some(5.5));
    }

    #[test]
    fn a_restart_that_never_brings_a_new_pid_is_none() {
        let samples = vec![ok(0, 1_000, 10), ok(2_000, 3_000, 10)];
        let a = analyze(&samples, &[1_500], 4_000);
        assert_eq!(a.serving_ms, vec![None]);
    }
}
