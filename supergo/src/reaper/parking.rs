//! Exits of pids that no program has registered yet.
//!
//! A spawn registers its child's pid only after the clone has returned (no lock is held
//! across the clone: it returns only once the child has exec'd). A child that fails at
//! once (an exec error) can be reaped before that; its exit waits here and is handed over
//! at the registration.
//!
//! Exits are parked only while a clone is in flight (see the reaper's docs on orphans), and
//! some of them are orphans': nobody claims those. They are dropped quietly when no clone is
//! left in flight, or, should a clone hang, after [`KEEP_FOR`], or, should orphans exit
//! faster than that, the oldest first once [`MAX_PARKED`] wait. None of these can drop a
//! spawn's own exit: it is claimed within microseconds of being parked. An orphan's exit is never taken for a spawn's: a claim needs
//! the spawn's pid, an exit reaped after its clone began, and (with a pidfd, Linux 5.3) a
//! child that has exited; only a pid reused within one clone could pass all three.

use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::Exit;

/// How long an unclaimed exit is kept. The registration follows the clone's return within
/// microseconds; this is long enough for a machine so loaded that the spawning thread is not
/// scheduled for a long while, and short enough that strays do not pile up.
pub(super) const KEEP_FOR: Duration = Duration::from_secs(60);

/// At most this many exits wait: a bound on memory and on the search of each claim, under a
/// storm of orphans.
pub(super) const MAX_PARKED: usize = 1024;

#[derive(Default)]
pub(super) struct Parking {
    /// A handful at most: a short list beats a map.
    exits: Vec<Exit>,
}

impl Parking {
    pub(super) fn park(&mut self, exit: Exit) {
        if self.exits.len() >= MAX_PARKED {
            // Parked in order: the first is the oldest, surely an orphan's.
            self.exits.remove(0);
        }
        self.exits.push(exit);
    }

    /// The parked exit of `pid` reaped after `since` (when its clone began), if any. An
    /// exit reaped earlier belongs to another process that had the same pid before.
    pub(super) fn claim(&mut self, pid: Pid, since: Instant) -> Option<Exit> {
        let index = self
            .exits
            .iter()
            .position(|e| e.pid == pid && e.at >= since)?;
        Some(self.exits.remove(index))
    }

    /// Drops every parked exit.
    pub(super) fn clear(&mut self) {
        self.exits.clear();
    }

    /// Removes and returns the exits parked for longer than [`KEEP_FOR`] at `now` (the
    /// reaper drops them: see the module docs).
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
    fn a_storm_of_orphans_drops_the_oldest_and_keeps_the_newest() {
        let start = Instant::now();
        let mut parking = Parking::default();
        for pid in 0..MAX_PARKED + 10 {
            parking.park(exit(1000 + pid as i32, start));
        }
        assert_eq!(parking.exits.len(), MAX_PARKED);
        assert!(parking.claim(Pid::from_raw(1000), start).is_none());
        let newest = Pid::from_raw(1000 + (MAX_PARKED + 9) as i32);
        assert!(parking.claim(newest, start).is_some());
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
