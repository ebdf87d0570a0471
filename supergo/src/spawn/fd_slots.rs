//! The fd slots: a pool of low fd numbers, reserved at start-up, that let a child start
//! without a copy of supergo's whole fd table.
//!
//! Why: a clone without CLONE_FILES copies the cloning process's entire fd table into the
//! child (`dup_fd`, in the cloning thread), and the child closes every copy again at its
//! `execve` (`do_close_on_exec`, one `filp_close` each). supergo holds about four fds per
//! program (a listener, pipe ends, a log file, a pidfd): with 1000 programs each spawn paid for
//! ~4000 fds twice. Measured: a posix_spawn of /bin/true from a process holding 4000
//! O_CLOEXEC fds costs 0.83 ms of child CPU against 0.50 ms with 10, and perf put
//! `dup_fd`/`do_close_on_exec`/`filp_close` at ~40% of the spawning threads' samples. Start-up
//! with 1000 programs is CPU-bound, so that was wall time (issue 17).
//!
//! How (Linux ≥ 5.9): `close_range(first, ~0U, CLOSE_RANGE_UNSHARE)` gives the caller a
//! private fd table holding only the fds below `first` (the kernel's `dup_fd` sizes the copy
//! to the last open fd below `first` when the range reaches the end of the table). So:
//! 1. [`reserve`], once at start-up before any thread, fills every free fd number from 3 up to
//!    `limit` (as many as the config's programs need to spawn all at once, 64 to 256) with a
//!    placeholder (/dev/null, O_CLOEXEC): the slots;
//! 2. a spawn leases the slots it needs ([`lease`]: stdin, stdout, stderr, each listener, the
//!    exec-error pipe's write end), `dup3`s each fd the child will read into one (replacing
//!    the placeholder atomically, O_CLOEXEC) and clones with CLONE_FILES: no table is copied;
//! 3. the child's first system call is `close_range(limit, ~0U, CLOSE_RANGE_UNSHARE)`: from
//!    there it has a private table of `limit` entries, closes the ones that are not its own
//!    (other spawns' slots) and goes on as before (`child.rs`);
//! 4. once the clone has returned (the child has exec'd or exited: CLONE_VFORK), dropping the
//!    [`Lease`] puts the placeholders back (`dup3` of /dev/null over each slot). That is what
//!    closes supergo's extra reference to a log pipe's write end, without which the pipe
//!    would never reach EOF: it happens on every path, in `Drop`.
//!
//! While the table is shared (between the clone and the child's `close_range`), whatever
//! another thread opens lands in supergo's table as usual; every fd supergo opens is
//! O_CLOEXEC, and the child's private copy holds only the fds below `limit`. The pidfd that
//! CLONE_PIDFD installs goes into the shared table, that is supergo's; should it land below
//! `limit` (a gap left by a closed fd), the child closes its copy with the other fds that
//! are not its own.
//!
//! Never a wait without end: a spawn that finds too few free slots queues for them
//! (`slot_queue.rs`), and clones the old way (a full copy) when no slot has come back for
//! [`LEASE_WAIT`]`.quiet`, or after [`LEASE_WAIT`]`.max` in any case. A child hung before its
//! exec (a `chdir` into a hung mount) holds only its own spawn's slots. When `close_range` is
//! missing (Linux < 5.9, or a seccomp filter refuses it: probed once at [`reserve`]) no slot
//! is reserved; when a child's `close_range` fails anyway, the child exits at once without
//! touching the shared table, and every spawn from then on clones the old way ([`disable`]).
//! A child that must see supergo's fds until its exec (the upgrade pre-flight runs the new
//! binary as `/proc/self/fd/N`) always clones the old way.
//!
//! Upgrade in place and inherited fds: [`reserve`] runs after `Inherited::take` has found the
//! fds an upgrade handed over, and takes only numbers free at that moment, so a slot never
//! collides with an inherited fd (nor with fds a launcher or systemd passed: those stay where
//! they are, below or above the slots: any fd below `limit` that is not a slot is copied into
//! each child's private table and closed there with the others). The slots are O_CLOEXEC and
//! vanish at an upgrade's exec; everything the daemon opens after them (its own binary's fd
//! too, see `main`) sits above `limit`, so the next image finds the same low numbers free
//! again. An image started by an older supergo (which handed fds over at low numbers) gets
//! fewer slots, or none: its spawns wait for the few there are, or clone the old way.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::libc;
use nix::sys::resource::{getrlimit, Resource};
use nix::sys::stat::Mode;
use nix::unistd::dup3;

use super::slot_queue::{SlotQueue, Wait};
use crate::config::Config;

/// The largest `limit`: 256 entries is what each child copies and closes instead of
/// supergo's whole table (~4000 with 1000 programs): ~4% of a spawn's cost rather than ~40%
/// (each entry costs about the same, ~85 ns). It gives 253 slots: a realistic program needs 5
/// (stdin, stdout, stderr, one listener, the exec-error pipe), so ~50 spawns at once. While
/// 1000 programs start, spawns queue for slots at any size (see [`LEASE_WAIT`]); measured on
/// two cores, limits of 128, 256 and 512 started them all equally fast (2.1 s), with children's
/// CPU 1.27-1.37 s, 1.39-1.40 s and 1.41-1.50 s: 256 keeps room for more cores to spawn at
/// once at little cost. A multiple of 64 (BITS_PER_LONG): the kernel rounds the private table
/// up to one, and would copy (then close) the fds up to that boundary too.
const MAX_LIMIT: RawFd = 256;

/// Slots a spawn needs besides one per listener: stdin, stdout, stderr, the exec-error pipe.
pub(super) const SLOTS_PER_SPAWN: usize = 4;

/// At most this share of the soft RLIMIT_NOFILE goes to slots (1/8: 128 of the common 1024),
/// so that a supergo near its fd limit does not lose the room its programs need.
const NOFILE_SHARE: u64 = 8;

/// How long a spawn waits for free slots before it clones with a full copy. A lease ends when
/// its clone returns, which is when the child has run to its exec: under load that can take
/// tens of milliseconds (hundreds of runnable threads while 1000 programs start: measured up
/// to ~500 ms, average ~85 ms, with the machine's load average above 30), and slots run out
/// however many there are (1018 did too). Waiting costs no CPU and keeps the waiting threads
/// off the run queue, while a full copy costs ~0.3 ms of CPU with 1000 programs; so a spawn
/// waits as long as slots keep coming back, up to `max`. `quiet`: no slot back for that
/// long means the slots are held by children hung before their exec, and nothing will come:
/// the spawn goes on without.
const LEASE_WAIT: Wait = Wait {
    quiet: Duration::from_millis(100),
    max: Duration::from_secs(1),
};

/// The reserved slots, shared by every spawn.
pub(super) struct SlotPool {
    /// What a free slot holds, and what a returned slot gets back.
    devnull: OwnedFd,
    /// Every slot is below this: the `first` of the child's `close_range`.
    limit: RawFd,
    free: SlotQueue,
}

static POOL: OnceLock<SlotPool> = OnceLock::new();

/// Set once a child's `close_range` failed: from then on every spawn copies the table.
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Reserves the slots, as many as `config`'s programs need to spawn all at once (at most
/// [`MAX_LIMIT`]; all of those when there is no config yet, as in an upgrade's new image).
/// Call once, in `main`, after `Inherited::take` and before any thread exists or the daemon
/// opens its fds (so that the lowest fd numbers are free). Without `close_range` (see the
/// module docs) it reserves nothing, and spawns clone the old way.
pub fn reserve(config: Option<&Config>) {
    if !close_range_exists() {
        return;
    }
    let wanted = config.map(|config| {
        (config.programs.values())
            .map(|program| SLOTS_PER_SPAWN + program.listen_addrs.len())
            .sum()
    });
    let Some(limit) = limit_for(soft_nofile(), wanted) else {
        return;
    };
    if let Some(pool) = SlotPool::reserve(limit) {
        let _ = POOL.set(pool);
    }
}

/// `close_range(2)` is there (Linux ≥ 5.9, and no seccomp filter refuses it). Called with
/// flags 0 on the empty range (~0U, ~0U), which closes nothing. Never with
/// CLOSE_RANGE_UNSHARE here: that would give the calling thread a table of its own, apart from
/// supergo's other threads. Through `syscall(2)`: nix has no close_range, and glibc's wrapper
/// needs glibc 2.34.
fn close_range_exists() -> bool {
    // SAFETY: closes no fd (the range is empty).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            libc::c_uint::MAX,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
    ret == 0
}

fn soft_nofile() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// The slots' `limit`: room for `wanted` slots (every program spawning at once), rounded up
/// to a multiple of 64 and at least 64 (the kernel's smallest table, embedded in its
/// `files_struct`: no allocation); at most [`MAX_LIMIT`] and 1/[`NOFILE_SHARE`] of the soft
/// RLIMIT_NOFILE, rounded down; None when that leaves less than 64.
///
/// Why not always [`MAX_LIMIT`]: every child copies and closes `limit` entries, and each
/// placeholder costs about what any fd does (posix_spawn of /bin/true from a process with 16
/// fds: 0.50 ms of child CPU; with 250 more dups of /dev/null: 0.52 ms). A supergo with a few
/// programs would pay that on every spawn for slots it never uses.
fn limit_for(soft_nofile: u64, wanted: Option<usize>) -> Option<RawFd> {
    let share = (soft_nofile / NOFILE_SHARE) & !63;
    let cap = RawFd::try_from(share).unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    // 3 for stdin, stdout and stderr (never slots), 1 for the placeholders' /dev/null.
    let room = wanted.map_or(MAX_LIMIT, |wanted| {
        let needed = RawFd::try_from(wanted.saturating_add(4)).unwrap_or(MAX_LIMIT);
        (needed.min(MAX_LIMIT) + 63) / 64 * 64
    });
    let limit = room.clamp(64, MAX_LIMIT).min(cap);
    (limit >= 64).then_some(limit)
}

impl SlotPool {
    /// Fills every free fd number in 3..limit with a /dev/null placeholder. None when not a
    /// single slot is free there (an image started by an older supergo's upgrade can hold
    /// them all) or /dev/null cannot be opened.
    fn reserve(limit: RawFd) -> Option<SlotPool> {
        let devnull = open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
        let mut slots = Vec::new();
        // The lowest free number from 3 up each time (0, 1 and 2 stay supergo's own, even
        // closed), until one is at `limit` or above: that one is closed again.
        while let Ok(fd) = fcntl(&devnull, FcntlArg::F_DUPFD_CLOEXEC(3)) {
            // SAFETY: F_DUPFD_CLOEXEC just returned this new fd, owned by nobody else.
            let slot = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            if fd >= limit {
                break;
            }
            slots.push(slot);
        }
        if slots.is_empty() {
            return None;
        }
        Some(SlotPool {
            devnull,
            limit,
            free: SlotQueue::new(slots),
        })
    }

    /// `count` slots, waiting for them as `wait` allows.
    fn lease(&'static self, count: usize, wait: Wait) -> Option<Lease> {
        let slots = self.free.take(count, wait)?;
        Some(Lease {
            pool: self,
            slots,
            placed: 0,
        })
    }

    /// Puts a placeholder back into each of the `placed` first slots, and the slots back
    /// into the pool.
    fn give_back(&self, mut slots: Vec<OwnedFd>, placed: usize) {
        let mut kept = Vec::with_capacity(slots.len());
        for (i, mut slot) in slots.drain(..).enumerate() {
            if i < placed {
                if let Err(e) = dup3(&self.devnull, &mut slot, OFlag::O_CLOEXEC) {
                    // Cannot happen (the slot is open, so dup3 has nothing to allocate).
                    // Closing it is what matters: a copy of a pipe's write end must not
                    // stay in supergo. The number leaves the pool.
                    crate::warn!(
                        "cannot put the placeholder back into fd slot {}: {}; the slot is closed and no longer used",
                        slot.as_raw_fd(),
                        e.desc()
                    );
                    continue;
                }
            }
            kept.push(slot);
        }
        self.free.put(kept);
    }
}

/// `count` slots for one spawn, or None: no pool, slots switched off, or none free within
/// [`LEASE_WAIT`]. The caller then clones the old way.
pub(super) fn lease(count: usize) -> Option<Lease> {
    if DISABLED.load(Ordering::Relaxed) {
        return None;
    }
    POOL.get()?.lease(count, LEASE_WAIT)
}

/// A child could not unshare its fd table (`errno`): every spawn from now on copies it.
pub(super) fn disable(program: &str, errno: Errno) {
    if !DISABLED.swap(true, Ordering::Relaxed) {
        crate::warn!(
            "{program}: the new process could not take a private fd table (close_range with \
             CLOSE_RANGE_UNSHARE: {}); it is started again the old way, and so is every \
             later process (each copies supergo's whole fd table, which is slower)",
            errno.desc()
        );
    }
}

/// Slots leased by one spawn. Dropping it puts the placeholders back and returns the slots.
pub(super) struct Lease {
    pool: &'static SlotPool,
    slots: Vec<OwnedFd>,
    /// How many of `slots` hold a duplicate rather than a placeholder.
    placed: usize,
}

impl Lease {
    /// Duplicates each of `sources` into a slot of its own (O_CLOEXEC, replacing the
    /// placeholder atomically): the slot numbers, in the order of `sources`.
    pub(super) fn place(&mut self, sources: &[RawFd]) -> Result<Vec<RawFd>, Errno> {
        let mut numbers = Vec::with_capacity(sources.len());
        for source in sources {
            let slot = self.slots.get_mut(self.placed).ok_or(Errno::EMFILE)?;
            // SAFETY: borrowed for one dup3; the caller keeps `source` open meanwhile.
            let source = unsafe { BorrowedFd::borrow_raw(*source) };
            dup3(source.as_fd(), slot, OFlag::O_CLOEXEC)?;
            numbers.push(slot.as_raw_fd());
            self.placed += 1;
        }
        Ok(numbers)
    }

    /// The first fd number above every slot: where the child's `close_range` starts.
    pub(super) fn limit(&self) -> RawFd {
        self.pool.limit
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        self.pool.give_back(slots, self.placed);
    }
}

/// A test hook, compiled into debug builds only (the integration tests run those): with
/// `SUPERGO_TEST_REFUSE_FD_TABLE` set, a child cloned with CLONE_FILES acts as if its
/// `close_range` had failed (ENOSYS), so that the tests can show the fallback: every program
/// still starts, with exactly its own fds. Read once, by supergo (never in the child).
#[cfg(debug_assertions)]
pub(super) fn refuse_for_test() -> bool {
    static REFUSE: OnceLock<bool> = OnceLock::new();
    *REFUSE.get_or_init(|| std::env::var_os("SUPERGO_TEST_REFUSE_FD_TABLE").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_a_modest_multiple_of_64() {
        // As many as every program spawning at once needs, from 64 to 256.
        assert_eq!(limit_for(20_000, Some(5)), Some(64));
        assert_eq!(limit_for(20_000, Some(60)), Some(64));
        assert_eq!(limit_for(20_000, Some(61)), Some(128));
        assert_eq!(limit_for(20_000, Some(5_000)), Some(256));
        assert_eq!(limit_for(20_000, None), Some(256));
        assert_eq!(limit_for(1 << 20, None), Some(256));
        // At most an eighth of the fd limit.
        assert_eq!(limit_for(1024, None), Some(128));
        assert_eq!(limit_for(600, Some(5_000)), Some(64));
        assert_eq!(limit_for(256, Some(5)), None);
    }

    fn target(fd: RawFd) -> String {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_else(|e| format!("fd {fd}: {e}"))
    }

    const NO_WAIT: Wait = Wait {
        quiet: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// A lease puts a pipe's write end into a slot and takes it out again when dropped: the
    /// read end then sees EOF, which is what the exec-error pipe relies on. (A pool of its
    /// own, not the process-wide one, whose slots the other tests' fds may have taken.)
    #[test]
    fn a_lease_holds_duplicates_until_it_is_dropped() {
        let pool: &'static SlotPool = Box::leak(Box::new(
            SlotPool::reserve(128).expect("free fds below 128"),
        ));
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let mut lease = pool.lease(2, NO_WAIT).expect("two free slots");
        let numbers = lease.place(&[write.as_raw_fd()]).expect("dup3 into a slot");
        let slot = numbers[0];
        assert!(slot >= 3 && slot < lease.limit());
        assert!(target(slot).starts_with("pipe:"), "{}", target(slot));
        // SAFETY: the slot stays open (the lease holds it) for this one fcntl.
        let flags =
            fcntl(unsafe { BorrowedFd::borrow_raw(slot) }, FcntlArg::F_GETFD).expect("F_GETFD");
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "the duplicate is close-on-exec"
        );
        drop(write);
        drop(lease);
        assert_eq!(target(slot), "/dev/null", "the placeholder is back");
        let mut buf = [0u8; 1];
        assert_eq!(
            nix::unistd::read(&read, &mut buf),
            Ok(0),
            "no copy of the write end is left"
        );
        assert_eq!(
            pool.free.free_len(),
            pool.free.total(),
            "every slot is back"
        );
        let all = pool.lease(pool.free.total(), NO_WAIT).expect("every slot");
        assert!(pool.lease(1, NO_WAIT).is_none(), "none left");
        drop(all);
        assert!(pool.lease(1, NO_WAIT).is_some(), "all back");
    }
}
