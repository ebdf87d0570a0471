#!/bin/sh
# Runs supergo (default: the measured release binary) with N realistic programs
# (bench/tools/config.sh), restarts a tenth of them (10 at a time), reads GET /status 20
# times (READS=N to change), waits 2 s, then prints VmRSS/threads, the smaps totals per kind of mapping, the
# resident size of every stack mapping, and glibc's malloc_stats() (called through gdb: no
# change to supergo); HOLD=1 leaves it running for more looks; with TRIM=1, RSS again after malloc_trim(0). Then stops supergo with SIGTERM. Extra environment (e.g.
# GLIBC_TUNABLES=glibc.malloc.tcache_count=0) reaches supergo unchanged.
#
# Usage: bench/tools/inspect.sh N OUTDIR [SUPERGO]
set -eu
n=$1; out=$2; supergo=${3:-target/release/supergo}
. "$(dirname "$0")/common.sh"
"$supergo" --config "$out/supergo.toml" --listen "$url" > "$out/supergo.log" 2>&1 &
pid=$!
wait_running 0.2 1500 || { kill -TERM "$pid"; exit 1; }
restart_tenth
wait_running 0.2
read_status "${READS:-20}"
sleep 2
echo "== supergo pid $pid, $n programs, $(grep -c restarted "$out/restarts.txt") restarted"
grep -E 'VmRSS|RssAnon|RssFile|Threads' "/proc/$pid/status"
cp "/proc/$pid/smaps" "$out/smaps"
echo "== smaps by cause (bench smaps)"
target/release/bench smaps "$pid"
echo "== malloc_stats()"
timeout 120 gdb -p "$pid" -batch -ex 'call (void)malloc_stats()' > /dev/null 2>&1 || echo "gdb failed"
sleep 0.2
sed -n '/^Arena 0:/,$p' "$out/supergo.log"
if [ -n "${TRIM:-}" ]; then
  timeout 120 gdb -p "$pid" -batch -ex 'call (int)malloc_trim(0)' > /dev/null 2>&1 || echo "gdb failed"
  echo "== after malloc_trim(0)"; grep -E 'VmRSS|RssAnon' "/proc/$pid/status"
fi
if [ -n "${HOLD:-}" ]; then echo "HOLD: supergo pid $pid left running (url $url)"; exit 0; fi
kill -TERM "$pid"; wait "$pid" || true
