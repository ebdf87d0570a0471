#!/bin/sh
# Profiles GET /status with N realistic programs (bench/tools/config.sh): once every program
# is Running, perf records supergo (on-CPU, DWARF call graphs) while curl asks GET /status
# REQUESTS times (default 200), one after the other. Prints the time curl measured.
# Usage: bench/tools/perf-status.sh N OUTDIR [SUPERGO]
set -eu
n=$1; out=$2; supergo=${3:-target/prof/release/supergo}; requests=${REQUESTS:-200}
. "$(dirname "$0")/common.sh"
"$supergo" --config "$out/supergo.toml" --listen "$url" > "$out/supergo.log" 2>&1 &
pid=$!
wait_running 0.2
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
