//! Where a daemon's resident memory is, mapping by mapping: `/proc/PID/smaps` grouped into
//! causes (thread stacks, the malloc heap, other malloc arenas, other anonymous memory, the
//! binary and its libraries), with the resident size of every thread stack.
//!
//! How a mapping is recognised, from what glibc and the kernel do:
//! - a **thread stack** is an anonymous `rw-p` mapping that starts where an anonymous `---p`
//!   mapping ends: glibc maps a thread's stack and makes its lowest pages the guard; the
//!   thread's descriptor (`struct pthread`) and its static TLS sit at the top of the same
//!   mapping, so a thread costs at least a page of "stack" even if it never calls anything.
//!   Such a mapping under 32 KiB is a **signal stack** (see `SIGNAL_STACK_MAX`);
//! - a **malloc arena** of a thread other than the main one is an anonymous `rw-p` mapping
//!   followed by the `---p` rest of its 64 MiB reservation (the other way round);
//! - `[heap]` is the main arena (brk); `[stack]` the main thread's stack;
//! - a mapping with a path is the binary, a library or a mapped file.
//!
//! The main arena also hands out large blocks (≥ 128 KiB by default) as their own anonymous
//! mappings: those land in "other anonymous".

use std::collections::BTreeMap;

/// A guarded anonymous mapping smaller than this is a signal stack, not a thread stack: Rust's
/// std gives every thread it starts a `sigaltstack` of `max(SIGSTKSZ, AT_MINSIGSTKSZ)` (8 KiB
/// here) behind a guard page, to report stack overflows; the smallest thread stack supergo
/// asks for is 64 KiB.
const SIGNAL_STACK_MAX: u64 = 32 * 1024;

/// One mapping of `/proc/PID/smaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    /// The path or `[heap]`-like name; empty for anonymous memory.
    pub name: String,
    pub rss_kib: u64,
}

/// What a mapping is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Cause {
    ThreadStacks,
    SignalStacks,
    Heap,
    OtherArenas,
    OtherAnonymous,
    MainStack,
    Files,
    Kernel,
}

impl Cause {
    pub fn label(self) -> &'static str {
        match self {
            Cause::ThreadStacks => "thread stacks (incl. each thread's TLS and descriptor)",
            Cause::SignalStacks => "signal stacks (Rust's sigaltstack per thread)",
            Cause::Heap => "malloc main arena ([heap], brk)",
            Cause::OtherArenas => "other malloc arenas (per-thread)",
            Cause::OtherAnonymous => "other anonymous (large mallocs, mmap)",
            Cause::MainStack => "main thread stack ([stack])",
            Cause::Files => "binary, libraries, mapped files",
            Cause::Kernel => "vdso, vvar, vsyscall",
        }
    }

    pub const ALL: [Cause; 8] = [
        Cause::ThreadStacks,
        Cause::SignalStacks,
        Cause::Heap,
        Cause::OtherArenas,
        Cause::OtherAnonymous,
        Cause::MainStack,
        Cause::Files,
        Cause::Kernel,
    ];
}

/// Resident memory by cause, and the resident size of each thread stack.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Breakdown {
    pub rss_kib: BTreeMap<Cause, u64>,
    /// One entry per thread-stack mapping, in KiB, sorted.
    pub stack_rss_kib: Vec<u64>,
    pub total_kib: u64,
}

impl Breakdown {
    pub fn of(&self, cause: Cause) -> u64 {
        self.rss_kib.get(&cause).copied().unwrap_or(0)
    }

    /// As text: KiB per cause, then how many thread stacks have each resident size.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for cause in Cause::ALL {
            out.push_str(&format!("{:>9} KiB  {}\n", self.of(cause), cause.label()));
        }
        out.push_str(&format!("{:>9} KiB  total\n", self.total_kib));
        let mut sizes: BTreeMap<u64, usize> = BTreeMap::new();
        for &kib in &self.stack_rss_kib {
            *sizes.entry(kib).or_insert(0) += 1;
        }
        for (kib, count) in sizes {
            out.push_str(&format!(
                "{count:>9} thread stack(s) with {kib} KiB resident\n"
            ));
        }
        out
    }
}

/// Reads and groups `/proc/PID/smaps`.
pub fn breakdown(pid: i32) -> Result<Breakdown, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .map_err(|e| format!("/proc/{pid}/smaps: {e}"))?;
    Ok(classify(&parse(&text)))
}

/// The mappings of an smaps text, in address order.
pub fn parse(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
            {
                let perms = words.next().unwrap_or("").to_string();
                // offset, device, inode, then the name (which may hold spaces).
                let name = words.skip(3).collect::<Vec<_>>().join(" ");
                out.push(Mapping {
                    start,
                    end,
                    perms,
                    name,
                    rss_kib: 0,
                });
                continue;
            }
        }
        if first == "Rss:" {
            if let (Some(last), Some(kib)) = (out.last_mut(), words.next()) {
                last.rss_kib = kib.parse().unwrap_or(0);
            }
        }
    }
    out
}

fn is_guard(m: &Mapping) -> bool {
    m.name.is_empty() && m.perms.starts_with("---")
}

/// Groups mappings by cause (see the module comment for the rules).
pub fn classify(maps: &[Mapping]) -> Breakdown {
    let mut b = Breakdown::default();
    for (i, m) in maps.iter().enumerate() {
        let cause = match m.name.as_str() {
            "[heap]" => Cause::Heap,
            "[stack]" => Cause::MainStack,
            "[vdso]" | "[vvar]" | "[vvar_vclock]" | "[vsyscall]" => Cause::Kernel,
            "" => {
                let after_guard = i > 0 && is_guard(&maps[i - 1]) && maps[i - 1].end == m.start;
                let before_reserve = maps
                    .get(i + 1)
                    .is_some_and(|n| is_guard(n) && n.start == m.end);
                if is_guard(m) {
                    Cause::OtherAnonymous
                } else if after_guard && m.end - m.start < SIGNAL_STACK_MAX {
                    Cause::SignalStacks
                } else if after_guard {
                    b.stack_rss_kib.push(m.rss_kib);
                    Cause::ThreadStacks
                } else if before_reserve {
                    Cause::OtherArenas
                } else {
                    Cause::OtherAnonymous
                }
            }
            name if name.starts_with('[') => Cause::OtherAnonymous,
            _ => Cause::Files,
        };
        *b.rss_kib.entry(cause).or_insert(0) += m.rss_kib;
        b.total_kib += m.rss_kib;
    }
    b.stack_rss_kib.sort_unstable();
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r-xp 00000000 fd:01 1234   /usr/bin/supergo
Size:               1024 kB
Rss:                 600 kB
55d0c1000000-55d0c1200000 rw-p 00000000 00:00 0      [heap]
Rss:                 300 kB
7f0000000000-7f0000021000 rw-p 00000000 00:00 0
Rss:                 132 kB
7f0000021000-7f0004000000 ---p 00000000 00:00 0
Rss:                   0 kB
7f1000000000-7f1000001000 ---p 00000000 00:00 0
Rss:                   0 kB
7f1000001000-7f1000021000 rw-p 00000000 00:00 0
Rss:                  12 kB
7f1000021000-7f1000022000 ---p 00000000 00:00 0
Rss:                   0 kB
7f1000022000-7f1000042000 rw-p 00000000 00:00 0
Rss:                   8 kB
7f2000000000-7f2000040000 rw-p 00000000 00:00 0
Rss:                 256 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]
Rss:                  16 kB
7ffd10000000-7ffd10002000 r-xp 00000000 00:00 0      [vdso]
Rss:                   4 kB
";

    #[test]
    fn parses_names_and_rss() {
        let maps = parse(SMAPS);
        assert_eq!(maps.len(), 11);
        assert_eq!(maps[0].name, "/usr/bin/supergo");
        assert_eq!(maps[0].rss_kib, 600);
        assert_eq!(maps[2].name, "");
        assert_eq!(maps[2].start, 0x7f0000000000);
    }

    #[test]
    fn groups_by_cause() {
        let b = classify(&parse(SMAPS));
        assert_eq!(b.of(Cause::Files), 600);
        assert_eq!(b.of(Cause::Heap), 300);
        // rw-p followed by its ---p reserve: an arena.
        assert_eq!(b.of(Cause::OtherArenas), 132);
        // rw-p right after a guard: two stacks (the second guard follows the first stack).
        assert_eq!(b.of(Cause::ThreadStacks), 20);
        assert_eq!(b.stack_rss_kib, vec![8, 12]);
        assert_eq!(b.of(Cause::OtherAnonymous), 256);
        assert_eq!(b.of(Cause::MainStack), 16);
        assert_eq!(b.of(Cause::Kernel), 4);
        assert_eq!(b.total_kib, 1328);
        let text = b.render();
        assert!(text.contains("       20 KiB  thread stacks"), "{text}");
        assert!(
            text.contains("        1 thread stack(s) with 8 KiB resident"),
            "{text}"
        );
    }

    #[test]
    fn small_guarded_mappings_are_signal_stacks() {
        let text = "\
7f1000000000-7f1000001000 ---p 00000000 00:00 0
Rss:                   0 kB
7f1000001000-7f1000003000 rw-p 00000000 00:00 0
Rss:                   4 kB
";
        let b = classify(&parse(text));
        assert_eq!(b.of(Cause::SignalStacks), 4);
        assert_eq!(b.of(Cause::ThreadStacks), 0);
        assert!(b.stack_rss_kib.is_empty());
    }
}
