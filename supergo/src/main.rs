//! `supergo`: the daemon. Parses flags, loads and checks the config, binds the control API,
//! installs signal handling, starts the programs and runs the core until a stop signal.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crossbeam_channel::unbounded;
use supergo::config::{self, Config, DEFAULT_LISTEN};
use supergo::control::Control;
use supergo::handover::exec::SelfExe;
use supergo::handover::inherit::Inherited;
use supergo::listener::{ListenAddr, ListenerPool};
use supergo::logs::LogHub;
use supergo::program::Context;
use supergo::reaper::Reaper;
use supergo::supervisor::{restore, Supervisor, Tools};
use supergo::{adopt, error, info, signals, warn};

const USAGE: &str = "\
supergo — a process supervisor with zero-downtime restart

Usage: supergo [--config PATH] [--listen ADDR] [--check]
       supergo --check-upgrade [--state-version N] [--config PATH]

Options:
  --config PATH   config file (default config/supergo.toml)
  --listen ADDR   control API address (default: [supergo] listen, else 127.0.0.1:22106)
  --check         check the config, print what would run, and exit (0 = valid)
  --check-upgrade exit 0 if this binary can take over a running supergo in place: it
                  reads state format N (--state-version, as the running one writes it)
                  and can load the config; run by `supergoctl upgrade` before the exec
  --version       print the version and exit
  --help          print this help and exit

The original supergo's spellings -config, -listen and -version work too.
Signals: TERM/INT/QUIT stop every program and exit; HUP = reread + update;
USR1 = reopen the log files; USR2 = upgrade in place (as `supergoctl upgrade`).
Exit status: 0 after a stop signal; 1 when supergo cannot start; with an essential
program, that program's exit status once it has ended for good.
If supergo dies, start it again with the same config and control address: it takes its
running children back (see [supergo] state_dir).
";

struct Args {
    config: PathBuf,
    listen: Option<String>,
    check: bool,
    /// `--check-upgrade`, with the running supergo's `--state-version`.
    check_upgrade: Option<Option<String>>,
}

fn main() -> ExitCode {
    // Before anything else (it may exec supergo again, and it reads the environment as the
    // operator set it): malloc without a per-thread cache (see `memory`).
    supergo::memory::tune_or_reexec();
    // First, before any fd is opened or thread started: the state of an upgrade in place, if
    // this image was exec'd by one (it removes its variables from the environment).
    let inherited = Inherited::take();
    // Every signal blocked, in this thread and so in every thread it starts: the signals
    // thread unblocks the ones it handles once their handlers are installed (`signals`).
    // Unblocking here would let a SIGTERM pending across an upgrade's exec kill this image
    // before the handlers exist; and a mask inherited from the launcher cannot switch off
    // supergo's handling, since that thread unblocks what it needs.
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::all()),
        None,
    );
    supergo::memory::limit_arenas();
    // Before any thread exists: it takes NOTIFY_SOCKET out of supergo's environment.
    supergo::manager_notify::init();
    supergo::spawn::close_inherited_fds_on_exec();
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("supergo: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.check || args.check_upgrade.is_some() {
        // Not the daemon: no signals thread will take what is blocked.
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&nix::sys::signal::SigSet::empty()),
            None,
        );
    }
    if let Some(state_version) = &args.check_upgrade {
        return supergo::handover::preflight::run(state_version.as_deref(), &args.config);
    }
    match inherited {
        Ok(None) => {}
        Ok(Some(inherited)) => {
            // See `reserve_fd_slots` below. Sized by the config file, as the old image's slots
            // were (unless the file was edited since); `restore` loads it again for itself and
            // says what is wrong with it.
            supergo::spawn::reserve_fd_slots(config::load(&args.config).ok().as_ref());
            let self_exe = open_self_exe();
            return match restore::run(inherited, &args.config, args.listen.clone(), self_exe) {
                Ok(status) => ExitCode::from(status),
                Err(e) => {
                    error!("upgrade in place: {e}; the programs keep running, unsupervised: start supergo again with the same config and control address, and it takes them back from its state file");
                    ExitCode::from(1)
                }
            };
        }
        Err(e) => {
            error!("upgrade in place: {e}");
            return ExitCode::from(1);
        }
    }
    let config = match config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("supergo: error: {e}");
            eprintln!("supergo: nothing was started");
            return ExitCode::from(1);
        }
    };
    if args.check {
        return check(&config);
    }
    // The lowest free fd numbers, for spawns that share the fd table (`spawn::fd_slots`):
    // after `Inherited::take` (so that no slot takes the number of an fd an upgrade handed
    // over), before any thread exists and before the daemon opens its fds.
    supergo::spawn::reserve_fd_slots(Some(&config));
    let self_exe = open_self_exe();
    match run(args, config, self_exe) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// supergo's own binary, kept open for the daemon's life: the binary to go back to should an
/// upgrade fail. Opened after the fd slots, above them: an upgrade hands it to the next image,
/// which then finds every slot number free again.
fn open_self_exe() -> Option<SelfExe> {
    SelfExe::open()
        .map_err(|e| {
            warn!("cannot open supergo's own binary ({e}): upgrade in place is not available")
        })
        .ok()
}

/// Turns the original's single-dash long options into pico-args' double-dash ones.
fn normalized_args() -> Vec<std::ffi::OsString> {
    std::env::args_os()
        .skip(1)
        .map(|arg| match arg.to_str() {
            Some(s) if s.starts_with('-') && !s.starts_with("--") && s.len() > 2 => {
                format!("-{s}").into()
            }
            _ => arg,
        })
        .collect()
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = pico_args::Arguments::from_vec(normalized_args());
    if args.contains(["-h", "--help"]) {
        print!("{USAGE}");
        return Ok(None);
    }
    if args.contains(["-V", "--version"]) {
        println!("supergo {}", env!("CARGO_PKG_VERSION"));
        return Ok(None);
    }
    let parsed = Args {
        config: args
            .opt_value_from_str("--config")
            .map_err(|e| e.to_string())?
            .unwrap_or_else(|| PathBuf::from("config/supergo.toml")),
        listen: args
            .opt_value_from_str("--listen")
            .map_err(|e| e.to_string())?,
        check: args.contains("--check"),
        check_upgrade: if args.contains(supergo::handover::preflight::CHECK_FLAG) {
            Some(
                args.opt_value_from_str(supergo::handover::preflight::STATE_VERSION_FLAG)
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        },
    };
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!(
            "unexpected argument(s): {}",
            rest.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    Ok(Some(parsed))
}

fn check(config: &Config) -> ExitCode {
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
    println!(
        "{}: config OK, {} program(s)",
        config.path.display(),
        config.programs.len()
    );
    for program in config.start_order() {
        let listeners: Vec<String> = program.listen_addrs.iter().map(|a| a.to_string()).collect();
        println!(
            "  {:<20} {}{}{}",
            program.name,
            program.argv.join(" "),
            if listeners.is_empty() {
                String::new()
            } else {
                format!("  [listens on {}]", listeners.join(", "))
            },
            if program.autostart {
                ""
            } else {
                "  (autostart = false)"
            }
        );
    }
    ExitCode::SUCCESS
}

/// Runs supergo until it stops: `Ok` with its exit status (0 after a stop signal, an essential
/// program's status after its end), or the error that kept it from starting (exit status 1).
fn run(args: Args, config: Config, self_exe: Option<SelfExe>) -> Result<u8, String> {
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let listen = args
        .listen
        .clone()
        .or_else(|| config.daemon.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let configured_listen = listen.clone();
    // The same forms as listen_addrs (":22106" = every interface), TCP only.
    let listen = match ListenAddr::parse(&listen, Path::new(".")) {
        Ok(ListenAddr::Tcp(addr)) => addr.to_string(),
        Ok(ListenAddr::Unix(_)) => {
            return Err(format!(
                "control API address {listen}: the control API listens on TCP only (host:port)"
            ))
        }
        Err(e) => return Err(format!("control API address: {e}")),
    };
    refuse_open_control(&listen, &config)?;
    // Before binding: a supergo that still runs on this address is named in the refusal.
    let mut startup = adopt::startup::begin(config.daemon.state_dir.as_deref(), &listen)?;
    // std's TcpListener is created with SOCK_CLOEXEC: children never inherit it.
    let listener = std::net::TcpListener::bind(&listen).map_err(|e| {
        format!("cannot listen on {listen} for the control API: {e} — is another supergo running? (use --listen to pick another address)")
    })?;

    supergo::descendants::become_subreaper();
    let (core_tx, core_rx) = unbounded();
    let reaper = Arc::new(Reaper::new());
    // Handlers first: a child must never exit before SIGCHLD is being watched.
    let (signals, _) = signals::start(reaper.clone(), core_tx.clone())
        .map_err(|e| format!("cannot install signal handling: {e}"))?;
    let logs = LogHub::start().map_err(|e| format!("cannot start the log thread: {e}"))?;
    let ctx = Arc::new(Context {
        reaper,
        pool: Arc::new(ListenerPool::new()),
        logs: logs.clone(),
        core: core_tx.clone(),
    });

    info!(
        "supergo {} started (pid {}): config {}, {} program(s), control API on http://{listen}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        config.path.display(),
        config.programs.len()
    );
    let token = config.daemon.token.clone();
    // What a supergo that died left running is taken over before anything starts.
    let adoption = startup.adopt(&config, &ctx.pool);
    let mut supervisor = Supervisor::adopting(config, ctx, adoption);
    if let Some(file) = startup.file.take() {
        adopt::record::install(file, &listen);
    }
    let control = Control {
        listener,
        listen: configured_listen,
        core: core_tx.clone(),
        token,
    }
    .start()
    .map_err(|e| format!("cannot start the control API threads: {e}"))?;
    if let Some(self_exe) = self_exe {
        let tools = Tools {
            self_exe,
            signals,
            control,
            core: core_tx,
        };
        supervisor.enable_upgrades(tools, 0, 0);
    }
    let status = supervisor.run(core_rx);
    adopt::record::finish();
    // Every child has exited: write what is left in the log pipes before exiting.
    logs.shutdown();
    Ok(status)
}

/// A control API reachable from the network without a token would let anyone run
/// commands as supergo's user: refused unless `allow_insecure = true`.
fn refuse_open_control(listen: &str, config: &Config) -> Result<(), String> {
    if config.daemon.token.is_some() || config.daemon.allow_insecure {
        return Ok(());
    }
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| format!("control API address {listen} is not usable: {e}"))?
        .collect();
    let open = addrs.iter().any(|a| match a.ip() {
        IpAddr::V4(ip) => !ip.is_loopback(),
        IpAddr::V6(ip) => !ip.is_loopback(),
    });
    if open {
        return Err(format!(
            "refusing to serve the control API on {listen} without a token: anyone who can reach it could run commands. \
             Set [supergo] token (or token_file) in {}, listen on 127.0.0.1, or set allow_insecure = true",
            config.path.display()
        ));
    }
    Ok(())
}
