//! Last-resort deadlines for everything that waits on a worker's answer: a control request
//! (`ask`), the collector of `all` and `update` answers, the priority starter.
//!
//! Every path in the workers answers its waiters; these deadlines are the guard should one
//! ever not (a bug, a spawn stuck in the kernel), so that nothing waits until supergo exits.
//! They are derived from the config: a worker may legitimately take a program's
//! `stop_timeout` (a stop-first restart drains the old process) plus two readiness waits (a
//! new config replaced a process still starting), and a margin for slow spawns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::ProgramConfig;
use crate::program::ready_within;

/// Slack beyond the configured waits: spawns under load, a busy core.
const MARGIN: Duration = Duration::from_secs(60);

/// How much longer `ask` waits than a collector, so that the collector's answer (which names
/// each program that did not answer) arrives first.
const ASK_EXTRA: Duration = Duration::from_secs(10);

/// `ask`'s deadline in milliseconds. Process-wide because the control threads reach the core
/// only through its channel; set by the core from the config, and never lowered, since a
/// request in flight may wait on a program of an older, slower config.
static ASK_WITHIN_MS: AtomicU64 = AtomicU64::new(millis(MARGIN.saturating_add(ASK_EXTRA)));

const fn millis(d: Duration) -> u64 {
    let ms = d.as_millis();
    if ms > u64::MAX as u128 {
        u64::MAX
    } else {
        ms as u64
    }
}

/// The longest one program's worker may take to answer a command.
pub fn worker_answer_within(program: &ProgramConfig) -> Duration {
    program
        .stop_timeout
        .saturating_add(ready_within(program).saturating_mul(2))
        .saturating_add(MARGIN)
}

/// The longest any of `programs` may take to answer (what a collector waits).
pub fn answers_within<'a>(programs: impl IntoIterator<Item = &'a ProgramConfig>) -> Duration {
    programs
        .into_iter()
        .map(worker_answer_within)
        .max()
        .unwrap_or(MARGIN)
}

/// How long the starter waits for a program's first start: its readiness wait, and a margin.
pub fn first_start_within(program: &ProgramConfig) -> Duration {
    ready_within(program).saturating_add(MARGIN)
}

/// Makes `ask` wait at least as long as a collector for `programs` does.
pub fn cover(programs_within: Duration) {
    let ms = millis(programs_within.saturating_add(ASK_EXTRA));
    ASK_WITHIN_MS.fetch_max(ms, Ordering::Relaxed);
}

pub fn ask_within() -> Duration {
    Duration::from_millis(ASK_WITHIN_MS.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Config};

    fn load(text: &str) -> Config {
        let dir = std::env::temp_dir().join(format!("supergo-deadline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let path = dir.join("supergo.toml");
        std::fs::write(&path, text).expect("the config written");
        let config = config::load(&path).expect("the config loads");
        let _ = std::fs::remove_dir_all(&dir);
        config
    }

    #[test]
    fn a_worker_may_take_a_drain_two_readiness_waits_and_a_margin() {
        let config = load(
            r#"
[program.web]
command = "sleep 1"
stop_timeout = 10
start_secs = 1

[program.api]
command = "sleep 1"
stop_timeout = 5
ready = "notify"
ready_timeout = 60
"#,
        );
        let web = &config.programs["web"];
        let api = &config.programs["api"];
        assert_eq!(worker_answer_within(web), Duration::from_secs(10 + 2 + 60));
        assert_eq!(worker_answer_within(api), Duration::from_secs(5 + 120 + 60));
        assert_eq!(
            answers_within(config.programs.values().map(std::sync::Arc::as_ref)),
            Duration::from_secs(185)
        );
        assert_eq!(first_start_within(api), Duration::from_secs(120));
        assert_eq!(answers_within([]), MARGIN);
    }

    #[test]
    fn the_ask_deadline_covers_collectors_and_never_shrinks() {
        cover(Duration::from_secs(1000));
        assert!(ask_within() >= Duration::from_secs(1000) + ASK_EXTRA);
        cover(Duration::from_secs(1));
        assert!(ask_within() >= Duration::from_secs(1000) + ASK_EXTRA);
    }
}
