#!/bin/sh
# Where start-up time goes, without a profiler in the way: supergo (release) with N realistic
# programs, polled until all are Running (every 0.1 s with supergoctl status); then supergo's
# own CPU time, its children's CPU time (each child's utime+stime: the sh that became sleep),
# and when the first and last child started, from /proc. Usage: start-cpu.sh N OUTDIR [SUPERGO]
set -eu
n=$1; out=$2; supergo=${3:-target/release/supergo}
. "$(dirname "$0")/common.sh"
t0=$(date +%s.%N)
"$supergo" --config "$out/supergo.toml" --listen "$url" > "$out/supergo.log" 2>&1 &
pid=$!
wait_running 0.1
t1=$(date +%s.%N)
tck=$(getconf CLK_TCK)
base=$(awk '{print $22}' "/proc/$pid/stat")
echo "all $n Running $(echo "$t1 - $t0" | bc) s after launch"
cat /proc/$pid/task/*/schedstat | awk '{c += $1} END {printf "supergo CPU (schedstat, its live threads): %.3f s\n", c/1e9}'
# schedstat: nanoseconds on a CPU (a child's exec is well under a clock tick).
for c in $(pgrep -P "$pid"); do echo "$(awk '{print $22}' "/proc/$c/stat") $(awk '{print $1}' "/proc/$c/schedstat")"; done | \
  awk -v t="$tck" -v b="$base" '
  {s = $1 - b; cpu += $2; if (k == 0 || s < f) f = s; if (s > l) l = s; k++}
  END {printf "children: %d, CPU %.3f s together (schedstat); first started %.2f s, last %.2f s after supergo\n", k, cpu/1e9, f/t, l/t}'
kill -TERM "$pid"; wait "$pid" || true
