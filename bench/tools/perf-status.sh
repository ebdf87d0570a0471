#!/bin/sh
# Profiles GET /status with N realistic programs (bench/tools/config.sh): once every program
# is Running, perf records supergo (on-CPU, DWARF call graphs) while curl asks GET /status
# REQUESTS times (default 200), one after the other. Prints the time curl measured.
# Usage: bench/tools/perf-status.sh N OUTDIR [SUPERGO]
set -eu
n=$1; out=$2; supergo=${3:-target/prof/release/supergo}; requests=${REQUESTS:-200}
ctl=target/release/supergoctl
rm -rf "$out"; bench/tools/config.sh "$n" "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=127.0.0.1:$port
"$supergo" --config "$out/supergo.toml" --listen "$url" > "$out/supergo.log" 2>&1 &
pid=$!
running() { "$ctl" --url "$url" status 2>/dev/null | grep -c ' Running ' || true; }
until [ "$(running)" -ge "$n" ]; do sleep 0.2; done
sleep 1
perf record -F 4999 -g --call-graph dwarf,32768 -p "$pid" -o "$out/perf.data" 2> "$out/perf.err" &
perfpid=$!
sleep 1
i=0
while [ "$i" -lt "$requests" ]; do
  curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "http://$url/status" >> "$out/curl.txt"
  i=$((i + 1))
done
kill -INT "$perfpid"; wait "$perfpid" || true
sort -n "$out/curl.txt" | awk '{t[NR]=$1; s=$2} END {printf "GET /status (under perf): median %.2f ms over %d, %d bytes\n", t[int((NR+1)/2)]*1000, NR, s}'
kill -TERM "$pid"; wait "$pid" || true
