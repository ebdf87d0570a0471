#!/bin/sh
# Writes the bench's realistic-shape config (what `bench footprint` runs) for N programs into
# DIR/supergo.toml, with DIR/sockets and DIR/logs. Usage: config.sh N DIR
set -eu
n=$1; dir=$2
mkdir -p "$dir/sockets" "$dir/logs"
sh=$(command -v sh)
{
  echo "# written by bench/tools/config.sh (the bench's realistic shape)"
  i=0
  while [ "$i" -lt "$n" ]; do
    p=$(printf 'p%04d' "$i")
    cat <<TOML

[program.$p]
command = "'$sh'"
args = ["-c", "echo $p up; exec sleep 100000"]
listen_addrs = ["unix:$dir/sockets/$p.sock"]
stdout_file = "$dir/logs/$p.out"
start_secs = 1
ready_timeout = 10
stop_timeout = 5
backoff_secs = 1
backoff_max_secs = 1
max_retry = 3
TOML
    i=$((i + 1))
  done
} > "$dir/supergo.toml"
