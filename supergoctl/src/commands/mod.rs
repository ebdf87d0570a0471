//! What each command asks supergo and what it prints.
//!
//! Output rules (the original client printed everything to stderr and always exited 0):
//! - results go to `out` (stdout), one line per program;
//! - each failure goes to `err` (stderr) as one line `supergoctl: <program>: <reason>`;
//! - a command over several programs keeps going after a failure of one program (so
//!   `restart a b c` still restarts c when b fails) and ends with [`CtlError::Reported`];
//!   an unreachable daemon or a refused token stops it at once;
//! - with `--json`, every answer's body is printed as it came, one per line, and the
//!   exit status and stderr lines stay the same.
//!
//! One file per group of commands (`status`, `config`: reread and update, `programs`:
//! start, stop and restart, `tail`, `upgrade`), each adding its methods to [`Ctx`] (`ctx`), the state
//! a run shares.

mod config;
mod ctx;
mod programs;
mod status;
mod tail;
mod upgrade;

use std::io::Write;

use crate::args::{Cli, Command};
use crate::error::CtlError;

use ctx::Ctx;

/// Runs one command line against supergo.
pub fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CtlError> {
    let mut ctx = Ctx::new(cli, out, err);
    match &cli.command {
        Command::Status { names } => ctx.status(names),
        Command::Reread => ctx.reread(),
        Command::Update => ctx.update(),
        Command::Start(targets) => ctx.start_stop("start", targets),
        Command::Stop(targets) => ctx.start_stop("stop", targets),
        Command::Restart { targets, wait } => ctx.restart(targets, *wait),
        Command::Tail {
            name,
            stream,
            follow,
            bytes,
        } => ctx.tail(name, *stream, *follow, *bytes),
        Command::Upgrade { binary } => ctx.upgrade(binary.as_deref()),
        Command::Version => ctx.version(),
    }
}

impl Ctx<'_> {
    fn version(&mut self) -> Result<(), CtlError> {
        let version = env!("CARGO_PKG_VERSION");
        if self.json {
            self.raw(&format!(
                "{{\"name\":\"supergoctl\",\"version\":\"{version}\"}}"
            ))
        } else {
            self.say(&format!("supergoctl {version}"))
        }
    }
}
