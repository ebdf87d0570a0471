//! `essential = true` (the convention of ECS task definitions): when such a program ends for
//! good — it exited with `auto_restart = false` (or an expected code under `"unexpected"`),
//! or it went `Fatal` — supergo stops every other program (in priority order, with their stop
//! timeouts) and exits with that program's exit status. In a container this makes the
//! container end with its main process, as a container runtime expects.
//!
//! This module owns how that exit status is derived, as a shell reports a child's:
//! - the program exited with code N: N;
//! - a signal killed it: 128 + the signal number (SIGKILL: 137, SIGTERM: 143);
//! - it never ran (its command could not be executed, its listeners could not be bound), or
//!   its last try never became ready (`ready = "notify"`) and was stopped: 1, the generic
//!   failure.
//!
//! A program going `Fatal` after failed starts ends with its last try: the status of that
//! try's exit, or 1 as above.
//!
//! The parts: the worker notices the end (`program::ended`) and tells the core ([`Ended`]);
//! the core logs [`reason`], stops everything as for a stop signal, and `main` exits with
//! [`exit_status`] (`supervisor::essential`).

use crate::reaper::ExitStatus;

/// What a worker tells the core when its essential program has ended for good.
#[derive(Clone, Debug)]
pub struct Ended {
    pub program: String,
    /// How its last process ended, when that ending is what made the program end: the
    /// serving process exited and is not started again, or its exit was the last failed
    /// start. `None` when no process of it ran to the end: its command could not be executed,
    /// its listeners could not be bound, or it never became ready and was stopped.
    pub last: Option<ExitStatus>,
}

/// supergo's exit status after the essential program ended with `last` (`None`: no process
/// of it ever started).
pub fn exit_status(last: Option<ExitStatus>) -> u8 {
    match last {
        // An adopted process's exit status is not available (it was not our child): the
        // end of an essential program must not pass for success.
        None | Some(ExitStatus::Unknown) => 1,
        // waitpid gives 0..=255; anything else cannot be an exit code, and must not pass
        // for success.
        Some(ExitStatus::Code(code)) => u8::try_from(code).unwrap_or(1),
        Some(ExitStatus::Signal(signal, _)) => u8::try_from(128 + signal as i32).unwrap_or(u8::MAX),
    }
}

/// The log line that says why supergo is exiting, naming the program, how it ended, and the
/// status supergo will exit with.
pub fn reason(program: &str, last: Option<ExitStatus>) -> String {
    let how = match last {
        None => "never started, or never became ready".to_string(),
        Some(status) => status.to_string(),
    };
    format!(
        "{program} is essential and has ended for good ({how}): stopping every other program, \
         then supergo exits with status {}",
        exit_status(last)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn an_exit_code_passes_through() {
        assert_eq!(exit_status(Some(ExitStatus::Code(0))), 0);
        assert_eq!(exit_status(Some(ExitStatus::Code(7))), 7);
        assert_eq!(exit_status(Some(ExitStatus::Code(255))), 255);
    }

    #[test]
    fn a_signal_is_128_plus_its_number() {
        assert_eq!(
            exit_status(Some(ExitStatus::Signal(Signal::SIGKILL, false))),
            137
        );
        assert_eq!(
            exit_status(Some(ExitStatus::Signal(Signal::SIGTERM, false))),
            143
        );
        assert_eq!(
            exit_status(Some(ExitStatus::Signal(Signal::SIGSEGV, true))),
            139
        );
    }

    #[test]
    fn never_started_is_1() {
        assert_eq!(exit_status(None), 1);
    }

    #[test]
    fn an_impossible_code_is_no_success() {
        assert_eq!(exit_status(Some(ExitStatus::Code(-1))), 1);
        assert_eq!(exit_status(Some(ExitStatus::Code(256))), 1);
    }

    #[test]
    fn the_reason_names_program_cause_and_status() {
        let line = reason("web", Some(ExitStatus::Code(7)));
        assert!(line.starts_with("web is essential"), "{line}");
        assert!(line.contains("exited with status 7"), "{line}");
        assert!(line.ends_with("supergo exits with status 7"), "{line}");
        let line = reason("db", None);
        assert!(line.contains("never started"), "{line}");
        assert!(line.ends_with("status 1"), "{line}");
    }
}
