#!/bin/sh
# Profiles supergo's start-up with N realistic programs (bench/tools/config.sh): perf record
# (on-CPU, DWARF call graphs, children included) from launch until every program is Running,
# then SIGTERM. Prints when the first and last child started (from /proc) and supergo's own
# CPU time. Usage: bench/tools/perf-start.sh N OUTDIR [SUPERGO]
set -eu
n=$1; out=$2; supergo=${3:-target/prof/release/supergo}
. "$(dirname "$0")/common.sh"
t0=$(date +%s.%N)
perf record -F 999 -g --call-graph dwarf,16384 -o "$out/perf.data" -- \
  "$supergo" --config "$out/supergo.toml" --listen "$url" > "$out/supergo.log" 2> "$out/perf.err" &
wait_running 0.05
t1=$(date +%s.%N)
pid=$(supergo_pid)
tck=$(getconf CLK_TCK)
echo "all $n running after $(echo "$t1 - $t0" | bc) s (perf running)"
awk -v tck="$tck" '{print "supergo CPU: utime " $14/tck " s, stime " $15/tck " s"}' "/proc/$pid/stat"
base=$(awk '{print $22}' "/proc/$pid/stat")
pgrep -P "$pid" | while read -r c; do awk '{print $22}' "/proc/$c/stat"; done | sort -n | \
  awk -v b="$base" -v tck="$tck" 'NR==1{f=$1} {l=$1} END{print "first child at " (f-b)/tck " s, last child at " (l-b)/tck " s after supergo started"}'
kill -TERM "$pid"; wait || true
