#!/bin/sh
# Profiles supergo's start-up with N realistic programs (bench/tools/config.sh): perf record
# (on-CPU, DWARF call graphs, children included) from launch until every program is Running,
# then SIGTERM. Prints when the first and last child started (from /proc) and supergo's own
# CPU time. Usage: bench/tools/perf-start.sh N OUTDIR [SUPERGO]
set -eu
n=$1; out=$2; supergo=${3:-target/prof/release/supergo}
ctl=target/release/supergoctl
rm -rf "$out"; bench/tools/config.sh "$n" "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=127.0.0.1:$port
t0=$(date +%s.%N)
perf record -F 999 -g --call-graph dwarf,16384 -o "$out/perf.data" -- \
  "$supergo" --config "$out/supergo.toml" --listen "$url" > "$out/supergo.log" 2> "$out/perf.err" &
running() { "$ctl" --url "$url" status 2>/dev/null | grep -c ' Running ' || true; }
until [ "$(running)" -ge "$n" ]; do sleep 0.05; done
t1=$(date +%s.%N)
pid=""
for p in $(pgrep -f -- "--listen $url"); do
  [ "$(cat /proc/$p/comm)" = supergo ] && pid=$p
done
tck=$(getconf CLK_TCK)
echo "all $n running after $(echo "$t1 - $t0" | bc) s (perf running)"
awk -v tck="$tck" '{print "supergo CPU: utime " $14/tck " s, stime " $15/tck " s"}' "/proc/$pid/stat"
base=$(awk '{print $22}' "/proc/$pid/stat")
pgrep -P "$pid" | while read -r c; do awk '{print $22}' "/proc/$c/stat"; done | sort -n | \
  awk -v b="$base" -v tck="$tck" 'NR==1{f=$1} {l=$1} END{print "first child at " (f-b)/tck " s, last child at " (l-b)/tck " s after supergo started"}'
kill -TERM "$pid"; wait || true
