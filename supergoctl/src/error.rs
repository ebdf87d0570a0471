//! The errors supergoctl can end with, and the exit status each one maps to.
//!
//! Exit statuses are part of the CLI contract (scripts branch on them):
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success (`status` exits 0 even when programs are stopped or failed) |
//! | 1 | supergo answered with an error: unknown program, failed restart, bad answer |
//! | 2 | usage error: unknown command or option, missing program name |
//! | 3 | cannot reach supergo: nothing listening, wrong address, no answer in time |
//! | 4 | supergo refused the request for want of a valid token (HTTP 401) |
//!
//! `main` prints an error as one line on stderr, `supergoctl: <Display>`.

use std::fmt;
use std::io;

/// supergo answered, but with an error (or with something unusable).
pub const EXIT_DAEMON: i32 = 1;
/// The command line is wrong.
pub const EXIT_USAGE: i32 = 2;
/// supergo could not be reached, or did not answer in time.
pub const EXIT_UNREACHABLE: i32 = 3;
/// supergo refused the token (HTTP 401).
pub const EXIT_UNAUTHORIZED: i32 = 4;

/// Why a supergoctl run failed.
#[derive(Debug)]
pub enum CtlError {
    /// A wrong command line; the text already carries a usage hint.
    Usage(String),
    /// No answer from supergo at `addr` (host:port); `reason` says why in plain words.
    Unreachable { addr: String, reason: String },
    /// HTTP 401. `token_given` tells "wrong token" from "no token".
    Unauthorized { token_given: bool, message: String },
    /// supergo answered with an error; the text names the program when there is one.
    Daemon(String),
    /// Something answered, but not the way supergo does (not JSON, malformed HTTP).
    BadAnswer(String),
    /// One or more failures were already printed line by line (e.g. `restart a b c`
    /// where b failed); only the exit status is left to set.
    Reported,
    /// Writing our own output failed (a closed pipe is handled quietly by `main`).
    Output(io::Error),
}

impl CtlError {
    /// A usage error; `msg` should end with a hint (`see 'supergoctl --help'`, a usage line).
    pub fn usage(msg: impl Into<String>) -> CtlError {
        CtlError::Usage(msg.into())
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Usage(_) => EXIT_USAGE,
            CtlError::Unreachable { .. } => EXIT_UNREACHABLE,
            CtlError::Unauthorized { .. } => EXIT_UNAUTHORIZED,
            CtlError::Daemon(_) | CtlError::BadAnswer(_) | CtlError::Reported => EXIT_DAEMON,
            CtlError::Output(_) => EXIT_DAEMON,
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Usage(msg) | CtlError::Daemon(msg) | CtlError::BadAnswer(msg) => {
                f.write_str(msg)
            }
            CtlError::Unreachable { addr, reason } => {
                write!(f, "cannot reach supergo at {addr}: {reason}")
            }
            // supergo's own message may already say where a token comes from.
            CtlError::Unauthorized {
                token_given: true,
                message,
            } if message.contains("SUPERGO_TOKEN") => {
                write!(f, "supergo refused the token: {message}")
            }
            CtlError::Unauthorized {
                token_given: true,
                message,
            } => write!(
                f,
                "supergo refused the token: {message} (check --token or SUPERGO_TOKEN)"
            ),
            CtlError::Unauthorized {
                token_given: false,
                message,
            } if message.contains("SUPERGO_TOKEN") => {
                write!(f, "supergo refused the token: none was given ({message})")
            }
            CtlError::Unauthorized {
                token_given: false,
                message,
            } => write!(
                f,
                "supergo refused the token: none was given, and this supergo requires one \
                 ({message}); pass --token T or set SUPERGO_TOKEN"
            ),
            CtlError::Reported => f.write_str("some operations failed"),
            CtlError::Output(err) => write!(f, "cannot write output: {err}"),
        }
    }
}

impl std::error::Error for CtlError {}

impl From<io::Error> for CtlError {
    fn from(err: io::Error) -> Self {
        CtlError::Output(err)
    }
}
