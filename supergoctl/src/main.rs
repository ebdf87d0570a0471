//! supergoctl: the command-line client of supergo's HTTP control API.
//!
//! `main` owns the process boundary only: it reads the arguments and environment, runs
//! the command, prints a final error as one stderr line `supergoctl: <reason>`, and sets
//! the exit status (see [`error`] for the table). Modules:
//! - [`args`]: command line and help text;
//! - [`client`]: the address, HTTP requests, the JSON envelope;
//! - [`api`]: lenient views of the answers' `data`;
//! - [`commands`]: what each command asks and prints;
//! - [`table`]: durations and aligned columns;
//! - [`wording`]: the daemon's messages reworded for the operator.

mod api;
mod args;
mod client;
mod commands;
mod error;
mod table;
mod wording;

use std::io::{self, Write};
use std::process::ExitCode;

use args::{EnvDefaults, Parsed};
use error::CtlError;

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().skip(1).collect();
    let result = match args::parse(argv, &EnvDefaults::from_env()) {
        Ok(Parsed::Help) => print_help(),
        Ok(Parsed::Run(cli)) => {
            let stdout = io::stdout();
            let stderr = io::stderr();
            commands::run(&cli, &mut stdout.lock(), &mut stderr.lock())
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `supergoctl status | head -1`: the reader left, nothing more to say.
        Err(CtlError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            if !matches!(e, CtlError::Reported) {
                // Nowhere left to report a failure to write to stderr.
                let _ = writeln!(io::stderr(), "supergoctl: {e}");
            }
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

fn print_help() -> Result<(), CtlError> {
    let mut out = io::stdout().lock();
    out.write_all(args::HELP.as_bytes())?;
    out.flush()?;
    Ok(())
}
