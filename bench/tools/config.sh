#!/bin/sh
# Writes the bench's realistic-shape config (what `bench footprint` runs) for N programs into
# DIR/supergo.toml, with DIR/sockets and DIR/logs; SHAPE=sleep writes bare `sleep 100000`
# programs instead (`--shape sleep`). Usage: [SHAPE=sleep] config.sh N DIR
set -eu
n=$1; dir=$2
mkdir -p "$dir/sockets" "$dir/logs"
sh=$(command -v sh)
{
  echo "# written by bench/tools/config.sh (the bench's realistic shape)"
  i=0
  while [ "$i" -lt "$n" ]; do
    p=$(printf 'p%04d' "$i")
    if [ "${SHAPE:-realistic}" = sleep ]; then
      printf '\n[program.%s]\ncommand = "%s"\nargs = ["100000"]\nstart_secs = 1\nstop_timeout = 5\n' \
        "$p" "$(command -v sleep)"
      i=$((i + 1)); continue
    fi
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
