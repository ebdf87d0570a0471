//! When a program's process counts as up, when it is restarted and how it is stopped:
//! `auto_restart` and `exit_codes`, the `backoff_secs` between retries and its cap, `ready`,
//! and `stop_signal`.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::section::{as_i32, Section};
use crate::config::tree::Value;
use crate::config::{AutoRestart, ConfigError, ReadyMode};

/// `stop_signal` values: the signals a server may sensibly be asked to stop with.
const STOP_SIGNALS: &[(&str, Signal)] = &[
    ("TERM", Signal::SIGTERM),
    ("INT", Signal::SIGINT),
    ("QUIT", Signal::SIGQUIT),
    ("HUP", Signal::SIGHUP),
    ("USR1", Signal::SIGUSR1),
    ("USR2", Signal::SIGUSR2),
    ("KILL", Signal::SIGKILL),
];

pub(super) fn auto_restart(s: &Section) -> Result<AutoRestart, ConfigError> {
    let Some(node) = s.node("auto_restart") else {
        return Ok(AutoRestart::Always);
    };
    match &node.value {
        Value::Boolean(true) => Ok(AutoRestart::Always),
        Value::Boolean(false) => Ok(AutoRestart::Never),
        Value::String(text) if text == "unexpected" => Ok(AutoRestart::Unexpected),
        _ => Err(s.wrong_type("auto_restart", node, "true, false or \"unexpected\"")),
    }
}

pub(super) fn exit_codes(s: &Section) -> Result<Vec<i32>, ConfigError> {
    let codes = s.array(
        "exit_codes",
        "an array of exit codes, like [0, 2]",
        |node| s.as_integer("exit_codes", node, 0, 255).map(as_i32),
    )?;
    Ok(codes.unwrap_or_else(|| vec![0]))
}

/// `backoff_secs` and its cap. Without an explicit cap, a first delay above 30 s is its own
/// cap rather than an error nobody asked for.
pub(super) fn backoff(s: &Section) -> Result<(Duration, Duration), ConfigError> {
    let backoff = s
        .seconds("backoff_secs", true)?
        .unwrap_or(Duration::from_secs(1));
    match s.seconds("backoff_max_secs", true)? {
        None => Ok((backoff, backoff.max(Duration::from_secs(30)))),
        Some(max) if max >= backoff => Ok((backoff, max)),
        Some(max) => Err(s.key_error(
            "backoff_max_secs",
            format!(
                "({} s) must not be less than `backoff_secs` ({} s)",
                max.as_secs_f64(),
                backoff.as_secs_f64()
            ),
        )),
    }
}

pub(super) fn ready(s: &Section) -> Result<ReadyMode, ConfigError> {
    match s.string("ready")?.as_deref() {
        None | Some("uptime") => Ok(ReadyMode::Uptime),
        Some("notify") => Ok(ReadyMode::Notify),
        Some(other) => Err(s.key_error(
            "ready",
            format!("must be \"uptime\" or \"notify\", not {other:?}"),
        )),
    }
}

/// `stop_signal`: "TERM", "SIGTERM", "term" are the same.
pub(super) fn stop_signal(s: &Section) -> Result<Signal, ConfigError> {
    let Some(text) = s.string("stop_signal")? else {
        return Ok(Signal::SIGTERM);
    };
    let upper = text.to_ascii_uppercase();
    let short = upper.strip_prefix("SIG").unwrap_or(&upper);
    STOP_SIGNALS
        .iter()
        .find(|(name, _)| *name == short)
        .map(|(_, signal)| *signal)
        .ok_or_else(|| {
            let names: Vec<&str> = STOP_SIGNALS.iter().map(|(name, _)| *name).collect();
            s.key_error(
                "stop_signal",
                format!("must be one of {}, not {text:?}", names.join(" ")),
            )
        })
}
