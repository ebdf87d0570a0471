//! At most one log line per kind of event and period, so that a flood of bad datagrams cannot
//! fill supergo's log, while an operator still learns that it happens and how often.

use std::time::{Duration, Instant};

/// How often one kind of refusal may be logged.
pub(super) const PERIOD: Duration = Duration::from_secs(10);

pub(super) struct Throttle {
    last: Option<Instant>,
    /// Events since the last line that were not logged.
    suppressed: u64,
}

impl Throttle {
    pub(super) const fn new() -> Throttle {
        Throttle {
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suffix)` when this event may be logged now, with `suffix` to append to its line
    /// (how many like it were not logged); `None` when it is only counted.
    pub(super) fn allow(&mut self, now: Instant) -> Option<String> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < PERIOD)
        {
            self.suppressed += 1;
            return None;
        }
        let suffix = match self.suppressed {
            0 => format!(
                " (such messages are logged at most once every {} s)",
                PERIOD.as_secs()
            ),
            n => format!(
                " ({n} more like it were not logged in the last {} s)",
                PERIOD.as_secs()
            ),
        };
        self.last = Some(now);
        self.suppressed = 0;
        Some(suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_period_and_counts_the_rest() {
        let mut throttle = Throttle::new();
        let start = Instant::now();
        assert!(throttle.allow(start).is_some());
        assert!(throttle.allow(start + Duration::from_secs(1)).is_none());
        assert!(throttle.allow(start + Duration::from_secs(2)).is_none());
        let next = throttle
            .allow(start + PERIOD)
            .expect("a new period logs again");
        assert!(next.contains("2 more like it"), "{next}");
    }
}
