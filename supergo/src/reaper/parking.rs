//! Exits of pids that no program has registered yet.
//!
//! A spawn registers its child's pid only after the clone has returned (no lock is held
//! across the clone: it returns only once the child has exec'd). A child that fails at
//! once (an exec error) can be reaped before that; its exit waits here and is handed over
//! at the registration. Exits nobody claims within [`KEEP_FOR`] (orphans reparented to
//! supergo, say, when it runs as pid 1) are dropped with a log line by the reaper.

use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::Exit;

/// How long an unclaimed exit is kept. The registration follows the clone's return within
/// microseconds; this is long enough for a machine so loaded that the spawning thread is not
/// scheduled for a long while, and short enough that strays do not pile up.
pub(super) const KEEP_FOR: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct Parking {
    /// A handful at most: a short list beats a map.
    exits: Vec<Exit>,
}

impl Parking {
    pub(super) fn park(&mut self, exit: Exit) {
        self.exits.push(exit);
    }

    /// The parked exit of `pid` reaped after `since` (when its clone began), if any. An
    /// exit reaped earlier belongs to another process that had the same pid before.
    pub(super) fn claim(&mut self, pid: Pid, since: Instant) -> Option<Exit> {
        let index = self
            .exits
            .iter()
            .position(|e| e.pid == pid && e.at >= since)?;
        Some(self.exits.swap_remove(index))
    }

    /// Removes and returns the exits parked for longer than [`KEEP_FOR`] at `now`.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<Exit> {
        if self.exits.is_empty() {
            return Vec::new();
        }
        let (expired, kept) = std::mem::take(&mut self.exits)
            .into_iter()
            .partition(|e| now.saturating_duration_since(e.at) >= KEEP_FOR);
        self.exits = kept;
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::super::ExitStatus;
    use super::*;

    fn exit(pid: i32, at: Instant) -> Exit {
        Exit {
            pid: Pid::from_raw(pid),
            status: ExitStatus::Code(127),
            at,
        }
    }

    #[test]
    fn an_exit_reaped_before_its_registration_is_handed_over_once() {
        let since = Instant::now();
        let mut parking = Parking::default();
        parking.park(exit(42, since + Duration::from_millis(1)));
        let claimed = parking.claim(Pid::from_raw(42), since).expect("parked");
        assert_eq!(claimed.status, ExitStatus::Code(127));
        assert!(parking.claim(Pid::from_raw(42), since).is_none());
    }

    #[test]
    fn an_exit_reaped_before_the_clone_began_is_another_process() {
        let earlier = Instant::now();
        let since = earlier + Duration::from_millis(5);
        let mut parking = Parking::default();
        parking.park(exit(42, earlier));
        assert!(parking.claim(Pid::from_raw(42), since).is_none());
        assert!(parking.claim(Pid::from_raw(43), earlier).is_none());
    }

    #[test]
    fn unclaimed_exits_expire_after_keep_for() {
        let start = Instant::now();
        let mut parking = Parking::default();
        parking.park(exit(1, start));
        parking.park(exit(2, start + Duration::from_secs(30)));
        assert!(parking.expire(start + KEEP_FOR / 2).is_empty());
        let expired = parking.expire(start + KEEP_FOR);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].pid, Pid::from_raw(1));
        assert!(parking
            .claim(Pid::from_raw(2), start)
            .is_some_and(|e| e.pid == Pid::from_raw(2)));
    }
}
