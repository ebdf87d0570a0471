#!/usr/bin/env python3
"""Groups a heaptrack flamegraph stack file (heaptrack_print --flamegraph-cost-type leaked -F FILE)
by the deepest frames that belong to supergo (or crossbeam/std where supergo's frame is above
them), so that live bytes can be read per cause. Usage: heap_by_frame.py FILE [PROGRAMS] [DEPTH]"""
import re, sys
from collections import defaultdict

path = sys.argv[1]
programs = int(sys.argv[2]) if len(sys.argv) > 2 else 0
depth = int(sys.argv[3]) if len(sys.argv) > 3 else 2
groups = defaultdict(lambda: [0, 0])
total = 0

def short(frame):
    frame = re.sub(r" \(.*\)$", "", frame)
    frame = re.sub(r"::h[0-9a-f]{16}$", "", frame)
    frame = frame.replace("_$u7b$$u7b$closure$u7d$$u7d$", "{closure}")
    frame = re.sub(r"\$LT\$.*?\$GT\$", "<..>", frame)
    return frame

for line in open(path):
    line = line.rstrip("\n")
    stack, _, cost = line.rpartition(" ")
    cost = int(cost)
    if cost == 0:
        continue
    total += cost
    frames = [short(f) for f in stack.split(";") if f]
    ours = [f for f in frames if f.startswith("supergo::") and "{closure}" not in f.split("::")[-1:]]
    if ours:
        key = " <- ".join(reversed(ours[-depth:]))
    else:
        key = "(no supergo frame) " + " <- ".join(reversed(frames[-3:]))
    groups[key][0] += cost

print(f"total live: {total} bytes" + (f" ({total / programs:.0f} per program)" if programs else ""))
for key, (cost, _) in sorted(groups.items(), key=lambda kv: -kv[1][0])[:40]:
    per = f"{cost / programs:8.0f} B/prog" if programs else ""
    print(f"{cost:9d} {per}  {key}")
