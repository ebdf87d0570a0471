//! `bench`: supergo's benchmarks, side by side with supervisord and circus when they are
//! installed. Real daemons, real children, real sockets on 127.0.0.1; its own load generator.
//!
//! ```text
//! cargo build --release --workspace --bins --examples
//! cargo run --release -p bench -- restart [--child rust|c|go|all] [--restarts 50]
//! cargo run --release -p bench -- footprint [--counts 1,100,1000] [--idle-secs 30]
//! cargo run --release -p bench -- scale [--programs 1000]
//! cargo run --release -p bench -- churn [--programs 10] [--secs 10]
//! cargo run --release -p bench -- bad-deploy [--phase-secs 8]
//! cargo run --release -p bench -- restart --restarts 1000 --systems supergo   # soak
//! ```
//!
//! Each prints Markdown tables and writes a JSON result (`--json PATH`, default
//! `target/bench/<scenario>.json`). Timings live here, never in tests.
//!
//! The binary also has two internal modes. `bench exec-blocking FD PROGRAM ARGS…` clears
//! `O_NONBLOCK` on FD and execs PROGRAM: circus hands its workers a non-blocking listener,
//! which the example children (rightly) refuse to change themselves; see `systems::circus`.
//! `bench smaps PID` prints a process's resident memory by cause (`smaps`), as `footprint`
//! reads it, for the tools in `bench/tools/`.

mod cleanup;
mod load;
mod procfs;
mod report;
mod scenarios;
mod setup;
mod smaps;
mod stats;
mod systems;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;

use setup::{ChildKind, Paths};
use systems::{Installed, Peer};

const USAGE: &str = "\
bench — supergo's benchmarks (with supervisord and circus side by side when installed)

Usage: cargo run --release -p bench -- SCENARIO [options]

Scenarios:
  restart      restarts under load: failed requests, latency, handoff, holes in service
  footprint    RSS, threads and idle CPU with 1, 100, 1000 programs; binary sizes
  scale        1000 programs: time to all running, status latency, one restart
  churn        programs that exit at once: exits reaped per second, none lost (supergo)
  bad-deploy   restart into a crashing version, then a never-ready one, under load
  upgrade      supergo upgrades itself in place under load (--restarts N upgrades)

Options:
  --systems LIST     supergo,supervisord,circus (default: supergo and every peer installed)
  --json PATH        result file (default target/bench/SCENARIO.json)
  --child KIND       restart: rust, c, go or all (default rust)
  --restarts N       restart: restarts per system (default 50; 1000 or more = soak checks)
  --peer-restarts N  restart: restarts for the peers (default: --restarts, at most 50)
  --gap-ms N         restart: pause between restarts (default 200)
  --clients N        fast client threads, half new-connection, half keep-alive (default 12)
  --slow N           client threads with /sleep?ms=800 always in flight (default 4)
  --rate N           fast requests per second, all fast clients together (default 2000)
  --baseline-secs N  restart: length of the run without restarts (default 5)
  --counts LIST      footprint: program counts (default 1,100,1000)
  --idle-secs N      footprint: idle CPU window (default 30)
  --shape SHAPE      footprint, scale: `realistic` (default; a unix-socket listener and a
                     stdout log file per program; footprint restarts a tenth of them and
                     reads the status before measuring) or `sleep` (bare `sleep` programs)
  --supergo PATH     the supergo binary to run (default: target/release/supergo), e.g. an
                     earlier build for a before/after
  --baseline PATH    footprint, scale: an earlier result file; its supergo figures are
                     shown beside the targets as `before`
  --programs N       scale: programs (default 1000); churn: programs (default 10)
  --secs N           churn: seconds of churn (default 10)
  --backoff-secs F   churn: backoff_secs (default 0.01)
  --phase-secs N     bad-deploy: seconds watched after each restart (default 8)
  --ready-timeout F  bad-deploy: supergo's ready_timeout (default 2)
";

/// Everything the scenarios read from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub scenario: String,
    pub systems: Vec<Peer>,
    pub json: PathBuf,
    pub children: Vec<ChildKind>,
    pub restarts: usize,
    pub peer_restarts: usize,
    pub gap_ms: u64,
    pub clients: usize,
    pub slow: usize,
    pub rate: f64,
    pub baseline_secs: f64,
    pub counts: Vec<usize>,
    pub idle_secs: u64,
    pub programs: Option<usize>,
    pub secs: f64,
    pub backoff_secs: f64,
    pub phase_secs: f64,
    pub ready_timeout: f64,
    pub shape: scenarios::Shape,
    pub baseline: Option<PathBuf>,
    pub supergo: Option<PathBuf>,
}

/// What every scenario gets.
pub struct Ctx {
    pub opts: Options,
    pub paths: Paths,
    pub installed: Installed,
}

fn main() -> ExitCode {
    let mut raw: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if raw.first().is_some_and(|a| a == "exec-blocking") {
        raw.remove(0);
        return exec_blocking(raw);
    }
    if raw.first().is_some_and(|a| a == "smaps") {
        return print_smaps(raw.get(1));
    }
    if let Err(e) = cleanup::install() {
        eprintln!("bench: error: {e}");
        return ExitCode::from(1);
    }
    let mut paths = match Paths::find() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench: error: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = match parse(raw, &paths) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    paths.supergo_binary = opts.supergo.clone();
    let installed = Installed::detect();
    let ctx = Ctx {
        opts,
        paths,
        installed,
    };
    let result = scenarios::run(&ctx);
    cleanup::sweep_orphans();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse(raw: Vec<std::ffi::OsString>, paths: &Paths) -> Result<Option<Options>, String> {
    let mut args = pico_args::Arguments::from_vec(raw);
    if args.contains(["-h", "--help"]) {
        print!("{USAGE}");
        return Ok(None);
    }
    let e = |err: pico_args::Error| err.to_string();
    let scenario: String = args
        .subcommand()
        .map_err(e)?
        .ok_or("which scenario? restart, footprint, scale, churn, bad-deploy or upgrade")?;
    if ![
        "restart",
        "footprint",
        "scale",
        "churn",
        "bad-deploy",
        "upgrade",
    ]
    .contains(&scenario.as_str())
    {
        return Err(format!("unknown scenario `{scenario}`"));
    }
    let systems = match args
        .opt_value_from_str::<_, String>("--systems")
        .map_err(e)?
    {
        None => vec![
            Peer::Supergo,
            Peer::Supervisord,
            Peer::CircusRestart,
            Peer::CircusReload,
        ],
        Some(list) => parse_systems(&list)?,
    };
    let json = args
        .opt_value_from_str("--json")
        .map_err(e)?
        .unwrap_or_else(|| paths.results_dir().join(format!("{scenario}.json")));
    let children = ChildKind::parse_list(
        &args
            .opt_value_from_str::<_, String>("--child")
            .map_err(e)?
            .unwrap_or_else(|| "rust".into()),
    )?;
    let restarts: usize = args
        .opt_value_from_str("--restarts")
        .map_err(e)?
        .unwrap_or(50);
    let peer_restarts = args
        .opt_value_from_str("--peer-restarts")
        .map_err(e)?
        .unwrap_or(restarts.min(50));
    let counts = match args
        .opt_value_from_str::<_, String>("--counts")
        .map_err(e)?
    {
        None => vec![1, 100, 1000],
        Some(list) => list
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("--counts: `{c}` is not a number"))
            })
            .collect::<Result<_, _>>()?,
    };
    let opts = Options {
        scenario,
        systems,
        json,
        children,
        restarts,
        peer_restarts,
        gap_ms: args
            .opt_value_from_str("--gap-ms")
            .map_err(e)?
            .unwrap_or(200),
        clients: args
            .opt_value_from_str("--clients")
            .map_err(e)?
            .unwrap_or(12),
        slow: args.opt_value_from_str("--slow").map_err(e)?.unwrap_or(4),
        rate: args
            .opt_value_from_str("--rate")
            .map_err(e)?
            .unwrap_or(2000.0),
        baseline_secs: args
            .opt_value_from_str("--baseline-secs")
            .map_err(e)?
            .unwrap_or(5.0),
        counts,
        idle_secs: args
            .opt_value_from_str("--idle-secs")
            .map_err(e)?
            .unwrap_or(30),
        programs: args.opt_value_from_str("--programs").map_err(e)?,
        secs: args
            .opt_value_from_str("--secs")
            .map_err(e)?
            .unwrap_or(10.0),
        backoff_secs: args
            .opt_value_from_str("--backoff-secs")
            .map_err(e)?
            .unwrap_or(0.01),
        phase_secs: args
            .opt_value_from_str("--phase-secs")
            .map_err(e)?
            .unwrap_or(8.0),
        ready_timeout: args
            .opt_value_from_str("--ready-timeout")
            .map_err(e)?
            .unwrap_or(2.0),
        shape: scenarios::Shape::parse(
            &args
                .opt_value_from_str::<_, String>("--shape")
                .map_err(e)?
                .unwrap_or_else(|| "realistic".into()),
        )?,
        baseline: args.opt_value_from_str("--baseline").map_err(e)?,
        supergo: args.opt_value_from_str("--supergo").map_err(e)?,
    };
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("unexpected argument(s): {rest:?}"));
    }
    if opts.rate <= 0.0 || opts.clients == 0 {
        return Err("--rate and --clients must be more than 0".into());
    }
    Ok(Some(opts))
}

fn parse_systems(list: &str) -> Result<Vec<Peer>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim) {
        match name {
            "supergo" => out.push(Peer::Supergo),
            "supervisord" | "supervisor" => out.push(Peer::Supervisord),
            "circus" => out.extend([Peer::CircusRestart, Peer::CircusReload]),
            other => {
                return Err(format!(
                    "--systems: unknown system `{other}` (supergo, supervisord, circus)"
                ))
            }
        }
    }
    if !out.contains(&Peer::Supergo) {
        // Every ratio is against supergo.
        out.insert(0, Peer::Supergo);
    }
    Ok(out)
}

/// `smaps PID`: the resident memory of PID by cause, and how many stacks have each resident
/// size.
fn print_smaps(pid: Option<&std::ffi::OsString>) -> ExitCode {
    let Some(pid) = pid
        .and_then(|p| p.to_str())
        .and_then(|p| p.parse::<i32>().ok())
    else {
        eprintln!("usage: bench smaps PID");
        return ExitCode::from(2);
    };
    match smaps::breakdown(pid) {
        Ok(b) => {
            print!("{}", b.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench smaps: {e}");
            ExitCode::from(1)
        }
    }
}

/// `exec-blocking FD PROGRAM ARGS…`: clear O_NONBLOCK on FD, exec PROGRAM (see module docs).
fn exec_blocking(args: Vec<std::ffi::OsString>) -> ExitCode {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::BorrowedFd;
    use std::os::unix::process::CommandExt;
    let usage = "usage: bench exec-blocking FD PROGRAM [ARGS…]";
    let (Some(fd), Some(program)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let Some(fd) = fd.to_str().and_then(|f| f.parse::<i32>().ok()) else {
        eprintln!("bench exec-blocking: {fd:?} is not an fd number; {usage}");
        return ExitCode::from(2);
    };
    // SAFETY: the fd is only borrowed for two fcntl calls; if it is not open they fail with
    // EBADF, reported below.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = match fcntl(borrowed, FcntlArg::F_GETFL) {
        Ok(f) => OFlag::from_bits_truncate(f),
        Err(e) => {
            eprintln!("bench exec-blocking: fd {fd}: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = fcntl(borrowed, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)) {
        eprintln!("bench exec-blocking: fd {fd}: cannot clear O_NONBLOCK: {e}");
        return ExitCode::from(1);
    }
    let err = std::process::Command::new(program).args(&args[2..]).exec();
    eprintln!("bench exec-blocking: cannot exec {program:?}: {err}");
    ExitCode::from(127)
}
