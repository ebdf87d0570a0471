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
ctl=target/release/supergoctl
rm -rf "$out"; bench/tools/config.sh "$n" "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=127.0.0.1:$port
"$supergo" --config "$out/supergo.toml" --listen "$url" > "$out/supergo.log" 2>&1 &
pid=$!
running() { "$ctl" --url "$url" status 2>/dev/null | grep -c ' Running ' || true; }
t=0
until [ "$(running)" -ge "$n" ]; do
  sleep 0.2; t=$((t + 1))
  [ "$t" -lt 1500 ] || { echo "not all running after 300 s" >&2; kill -TERM "$pid"; exit 1; }
done
i=0; names=""
while [ "$i" -lt "$n" ]; do names="$names $(printf 'p%04d' "$i")"; i=$((i + 10)); done
echo $names | tr ' ' '\n' | xargs -P10 -n1 "$ctl" --url "$url" restart > "$out/restarts.txt"
until [ "$(running)" -ge "$n" ]; do sleep 0.2; done
i=0; while [ "$i" -lt "${READS:-20}" ]; do
  python3 -c "import urllib.request; urllib.request.urlopen('http://$url/status').read()"; i=$((i + 1))
done
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
