#!/usr/bin/env python3
"""How deep each thread of a running supergo ever reached into its stack.

A thread stack's pages are zero until touched, and a page once touched stays resident: the
lowest non-zero word of a stack mapping is the thread's high-water mark, and the number of
pages above it is what the stack costs. For the deepest stacks, the code addresses found
just above the mark (return addresses of the frames that went deepest, with stale ones of
earlier calls among them) are symbolized, so that the frame that crossed a page boundary can
be found.

Usage: stack_depth.py PID BINARY [N]
  BINARY: the supergo that runs as PID, with symbols (see README: target/prof); N: how many
  of the deepest stacks to show (default 3). Reads /proc/PID/maps and /proc/PID/mem: run as
  the same user (or root). Thread stacks are found as read-write mappings of 128 or 256 KiB
  right above a guard page (supergo's workers and helper threads)."""
import collections
import os
import re
import subprocess
import sys

pid = int(sys.argv[1])
binary = sys.argv[2]
show = int(sys.argv[3]) if len(sys.argv) > 3 else 3

text, stacks, prev = [], [], None
for line in open(f"/proc/{pid}/maps"):
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) (\S+) \S+ \S+\s*(.*)", line)
    start, end, perm, offset, path = (int(m.group(1), 16), int(m.group(2), 16),
                                      m.group(3), int(m.group(4), 16), m.group(5))
    if "x" in perm and path and os.path.realpath(path) == os.path.realpath(binary):
        text.append((start, end, offset))
    guarded = prev and prev[2] == "---p" and prev[1] == start
    if perm == "rw-p" and not path and guarded and end - start in (128 << 10, 256 << 10):
        stacks.append((start, end))
    prev = (start, end, perm)

mem = open(f"/proc/{pid}/mem", "rb")
found = []
for start, end in stacks:
    mem.seek(start)
    data = mem.read(end - start)
    low = next((i for i in range(0, len(data), 8) if data[i:i + 8] != bytes(8)), len(data))
    returns = []
    for i in range(low, min(len(data), low + 3072), 8):
        value = int.from_bytes(data[i:i + 8], "little")
        for t_start, t_end, t_offset in text:
            if t_start <= value < t_end:
                returns.append((value - t_start + t_offset, end - (start + i)))
    found.append((end - (start + low), start, end, returns))

pages = collections.Counter((depth + 4095) // 4096 for depth, *_ in found)
print("stacks by pages touched:", ", ".join(f"{n} x {p}" for p, n in sorted(pages.items())))
print("depths (bytes below the top, incl. glibc's descriptor and TLS):",
      collections.Counter(depth for depth, *_ in found).most_common(6))

# File offsets to addresses of the binary, for addr2line.
segments = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True).stdout
loads = [(int(o, 16), int(v, 16))
         for o, v in re.findall(r"LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)", segments)]


def vaddr(offset):
    base = max((o, v) for o, v in loads if o <= offset)
    return offset - base[0] + base[1]


for depth, start, end, returns in sorted(found, reverse=True)[:show]:
    print(f"\n{depth} bytes deep ({depth / 1024:.1f} KiB), stack {start:x}-{end:x}:")
    if not returns:
        continue
    out = subprocess.run(["addr2line", "-a", "-f", "-C", "-i", "-e", binary]
                         + [hex(vaddr(r) - 1) for r, _ in returns[:60]],
                         capture_output=True, text=True).stdout.splitlines()
    groups = []
    for line in out:
        if line.startswith("0x"):
            groups.append([])
        elif groups and not line.startswith(("/", "?")):
            groups[-1].append(line)
    for names, (_, at) in zip(groups, returns):
        # innermost inlined function <- the function the address is in
        shown = names[:1] + names[-1:] if len(names) > 1 else names
        print(f"  {at:6d}  " + " <- ".join(n[:70] for n in shown))
