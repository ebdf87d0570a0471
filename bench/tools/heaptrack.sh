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
ctl=target/release/supergoctl
rm -rf "$out"; bench/tools/config.sh "$n" "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=127.0.0.1:$port
heaptrack -o "$out/heaptrack" "$supergo" --config "$out/supergo.toml" --listen "$url" \
  > "$out/heaptrack.out" 2>&1 &
running() { "$ctl" --url "$url" status 2>/dev/null | grep -c ' Running ' || true; }
t=0
until [ "$(running)" -ge "$n" ]; do
  sleep 0.5; t=$((t + 1))
  [ "$t" -lt 600 ] || { echo "not all running after 300 s" >&2; exit 1; }
done
pid=$(pgrep -f -n -- "--listen $url" | head -1)
# the supergo process (heaptrack runs it as a child of its own shell)
for p in $(pgrep -f -- "--listen $url"); do
  if [ "$(cat /proc/$p/comm)" = supergo ]; then pid=$p; fi
done
echo "supergo pid $pid, all $n running"
i=0; names=""
while [ "$i" -lt "$n" ]; do names="$names $(printf 'p%04d' "$i")"; i=$((i + 10)); done
echo $names | tr ' ' '\n' | xargs -P10 -n1 "$ctl" --url "$url" restart > "$out/restarts.txt"
until [ "$(running)" -ge "$n" ]; do sleep 0.5; done
i=0; while [ "$i" -lt 20 ]; do
  python3 -c "import urllib.request; urllib.request.urlopen('http://$url/status').read()"; i=$((i + 1))
done
sleep 2
grep -E 'VmRSS|Threads' "/proc/$pid/status"
kids=$(pgrep -P "$pid" || true)
kill -KILL "$pid"
[ -z "$kids" ] || kill -TERM $kids
wait
ls "$out"/heaptrack.*
