#!/bin/sh
# RSS and threads of supergo with N `ready = "notify"` programs (each `probe notify sleep`:
# sends READY=1 on its NOTIFY_SOCKET, then sleeps), once all are Running: what one thread
# polling every notify socket saves against a reader thread per program (issue 17).
# Release build first: cargo build --release --workspace --bins --examples.
# Usage: bench/tools/notify-footprint.sh N [SUPERGO] [PROBE]
set -eu
n=$1; supergo=${2:-target/release/supergo}; probe=${3:-target/release/probe}
dir=$(mktemp -d "${TMPDIR:-/tmp}/notify-footprint.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
  printf '[supergo]\nstate_dir = "%s/state"\n' "$dir"
  i=0
  while [ "$i" -lt "$n" ]; do
    printf '\n[program.p%04d]\ncommand = "%s notify sleep"\nready = "notify"\nready_timeout = 60\nstop_timeout = 5\n' "$i" "$probe"
    i=$((i + 1))
  done
} > "$dir/supergo.toml"
"$supergo" --config "$dir/supergo.toml" --listen "127.0.0.1:$port" > "$dir/out" 2> "$dir/err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
polls=0
until [ "$(target/release/supergoctl --url "127.0.0.1:$port" status 2>/dev/null | grep -c ' Running ' || true)" -ge "$n" ]; do
  polls=$((polls + 1)); [ "$polls" -le 360 ] || { echo "not all $n Running after 180 s" >&2; exit 1; }
  sleep 0.5
done
# The starter and collector threads end once the first starts are answered.
sleep 2
echo "$supergo, $n notify programs: $(grep -E '^(VmRSS|Threads)' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' ')"
