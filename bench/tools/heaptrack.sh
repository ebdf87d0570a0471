#!/bin/sh
# Runs supergo under heaptrack with N realistic programs (bench/tools/config.sh), waits until
# all are Running, restarts a tenth of them (10 at a time), reads GET /status 20 times, waits
# 2 s, then SIGKILLs supergo: heaptrack's "leaked" allocations are then exactly what was live
# at that moment, by call stack. Its children are then killed by pid.
#
# Usage: bench/tools/heaptrack.sh N OUTDIR [SUPERGO]
#   SUPERGO: a binary with symbols, e.g. built with
#   CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=1 \
#     cargo build --release -p supergo --target-dir target/prof
set -eu
n=$1; out=$2; supergo=${3:-target/prof/release/supergo}
. "$(dirname "$0")/common.sh"
heaptrack -o "$out/heaptrack" "$supergo" --config "$out/supergo.toml" --listen "$url" \
  > "$out/heaptrack.out" 2>&1 &
wait_running 0.5 600 || exit 1
# the supergo process (heaptrack runs it as a child of its own shell)
pid=$(supergo_pid)
echo "supergo pid $pid, all $n running"
restart_tenth
wait_running 0.5
read_status 20
sleep 2
grep -E 'VmRSS|Threads' "/proc/$pid/status"
kids=$(pgrep -P "$pid" || true)
kill -KILL "$pid"
[ -z "$kids" ] || kill -TERM $kids
wait
ls "$out"/heaptrack.*
