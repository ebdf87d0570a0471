#!/bin/sh
# The timeline of supergo's start-up with N realistic programs, from the kernel's own events
# (perf tracepoints sched_process_fork / sched_process_exec, supergo and its children only):
# for each child, when supergo's clone happened and when the child's execve completed; the
# gaps between consecutive clones. Usage: bench/tools/spawn-timeline.sh N OUTDIR [SUPERGO]
set -eu
n=$1; out=$2; supergo=${3:-target/release/supergo}
. "$(dirname "$0")/common.sh"
perf record -e sched:sched_process_fork -e sched:sched_process_exec -o "$out/perf.data" -- \
  "$supergo" --config "$out/supergo.toml" --listen "$url" > "$out/supergo.log" 2> "$out/perf.err" &
wait_running 0.1
pid=$(supergo_pid)
kill -TERM "$pid"; wait || true
perf script -i "$out/perf.data" -F comm,tid,time,event,trace > "$out/events.txt" 2>/dev/null
python3 - "$out/events.txt" <<'PY'
import re, sys, statistics
forks, execs, first = {}, {}, None
for line in open(sys.argv[1]):
    m = re.search(r"^\s*(.+?)\s+(\d+)\s+([\d.]+):\s+sched:(\w+):\s*(.*)$", line)
    if not m:
        continue
    comm, tid, t, ev, rest = m.group(1), int(m.group(2)), float(m.group(3)), m.group(4), m.group(5)
    if first is None:
        first = t
    if ev == "sched_process_fork":
        child = int(re.search(r"child_pid=(\d+)", rest).group(1))
        # threads of supergo are forks too; a child process is one that execs later
        forks[child] = (t, comm)
    elif ev == "sched_process_exec":
        pid = int(re.search(r" pid=(\d+)", rest).group(1))
        execs.setdefault(pid, t)  # the first exec (sh); the second is sleep
spawns = sorted((forks[p][0], execs[p], p) for p in execs if p in forks and forks[p][1].startswith("program"))
if not spawns:
    print("no spawns found"); sys.exit()
f = [s[0] for s in spawns]
lat = [(s[1] - s[0]) * 1000 for s in spawns]
gaps = [(b - a) * 1000 for a, b in zip(f, f[1:])]
print(f"{len(spawns)} children; first clone at {f[0]-first:.3f} s, last at {f[-1]-first:.3f} s after the first event (supergo's exec)")
print(f"clone -> child's execve done: median {statistics.median(lat):.3f} ms, p90 {sorted(lat)[int(len(lat)*0.9)]:.3f} ms, max {max(lat):.3f} ms")
print(f"gap between consecutive clones: median {statistics.median(gaps):.3f} ms, p90 {sorted(gaps)[int(len(gaps)*0.9)]:.3f} ms, max {max(gaps):.3f} ms, sum {sum(gaps):.0f} ms")
PY
