//! The stack a child runs on between clone and exec: one per spawn, mapped for it and
//! unmapped once the clone has returned, with a guard page below it.
//!
//! Why one per spawn: a shared stack would need a lock held across the clone, and a clone
//! with CLONE_VFORK returns only when the child has exec'd; one child hung before its exec
//! (a `chdir` into a hung NFS mount) would then block every other spawn.
//!
//! Why a guard page: the child shares supergo's memory (CLONE_VM). Running off the end of a
//! plain buffer would silently overwrite whatever supergo keeps below it; running into a
//! PROT_NONE page kills the child with SIGSEGV instead, and supergo reports its exit.

use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::libc;
use nix::sys::mman::{mmap_anonymous, mprotect, munmap, MapFlags, ProtFlags};
use nix::unistd::{sysconf, SysconfVar};

/// What the child needs: a few frames of syscall wrappers (64 KiB is ample).
const STACK_BYTES: usize = 64 * 1024;

/// A child stack: `guard` bytes of PROT_NONE, then the usable stack above it (stacks grow
/// down, so an overflow runs into the guard).
pub(super) struct ChildStack {
    base: NonNull<libc::c_void>,
    len: usize,
}

impl ChildStack {
    pub(super) fn new() -> Result<ChildStack, Errno> {
        let page = sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .unwrap_or(4096);
        let len = STACK_BYTES + page;
        let length = NonZeroUsize::new(len).expect("a stack and a page are not zero bytes");
        // SAFETY: a fresh anonymous private mapping aliases nothing. MAP_STACK says what it
        // is for; MAP_NORESERVE: it is used for microseconds, and only a few pages of it.
        let base = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_STACK | MapFlags::MAP_NORESERVE,
            )?
        };
        let stack = ChildStack { base, len };
        // SAFETY: the first page of the mapping made just above, which nothing uses yet.
        unsafe { mprotect(base, page, ProtFlags::PROT_NONE)? };
        Ok(stack)
    }

    /// The highest address of the usable stack, 16-byte aligned: where a child's stack
    /// pointer starts (clone(2) takes the top on every architecture Linux runs on that
    /// grows stacks down, which is all that supergo supports).
    pub(super) fn top(&mut self) -> *mut libc::c_void {
        let top = self.base.as_ptr() as usize + self.len;
        (top & !15) as *mut libc::c_void
    }

    /// The guard page's address range, for the tests.
    #[cfg(test)]
    fn guard_range(&self) -> (usize, usize) {
        let start = self.base.as_ptr() as usize;
        (start, start + self.len - STACK_BYTES)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; dropped only after the clone returned, and a
        // CLONE_VFORK clone returns only once the child has exec'd or exited, so nothing
        // runs on it any more.
        if let Err(e) = unsafe { munmap(self.base, self.len) } {
            crate::warn!("cannot unmap a child's stack: {}", e.desc());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's view (/proc/self/maps): the page below the stack is mapped with no
    /// access at all, directly under the read-write stack.
    #[test]
    fn the_child_stack_has_a_guard_page_below_it() {
        let mut stack = ChildStack::new().expect("mmap a child stack");
        let (guard_start, guard_end) = stack.guard_range();
        let top = stack.top() as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
        let mapping = |addr: usize| {
            maps.lines()
                .find(|line| {
                    let range = line.split(' ').next().unwrap_or("");
                    let (lo, hi) = range.split_once('-').unwrap_or(("0", "0"));
                    let lo = usize::from_str_radix(lo, 16).unwrap_or(0);
                    let hi = usize::from_str_radix(hi, 16).unwrap_or(0);
                    lo <= addr && addr < hi
                })
                .unwrap_or_else(|| panic!("no mapping holds {addr:#x}:\n{maps}"))
                .to_string()
        };
        let guard = mapping(guard_start);
        assert!(
            guard.contains(" ---p "),
            "guard page not PROT_NONE: {guard}"
        );
        let usable = mapping(guard_end);
        assert!(usable.contains(" rw-p "), "stack not read-write: {usable}");
        assert!(
            usable.starts_with(&format!("{guard_end:x}-")),
            "the stack starts right above the guard page: {usable}"
        );
        assert!(top > guard_end && top - guard_end >= STACK_BYTES - 16);
        // The stack is usable: the clone's first frames go there.
        // SAFETY: writes inside the read-write part of our own mapping.
        unsafe { std::ptr::write_bytes((top - 4096) as *mut u8, 0xa5, 4096) };
    }
}
