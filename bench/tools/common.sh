# Sourced by the tools that start a supergo of their own (after they set n, out and supergo
# from their arguments N OUTDIR [SUPERGO]): writes the realistic config for n programs into
# out (config.sh), picks a free control address (url), and gives them the steps they share.
ctl=target/release/supergoctl
rm -rf "$out"; "$(dirname "$0")/config.sh" "$n" "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=127.0.0.1:$port

# How many programs supergoctl shows Running (0 while supergo does not answer yet).
running() { "$ctl" --url "$url" status 2>/dev/null | grep -c ' Running ' || true; }

# Polls every $1 s until all n programs are Running; with $2, gives up after $2 polls,
# saying so, and returns 1.
wait_running() {
  polls=0
  until [ "$(running)" -ge "$n" ]; do
    sleep "$1"; polls=$((polls + 1))
    if [ -n "${2:-}" ] && [ "$polls" -ge "$2" ]; then
      echo "not all running after $(awk "BEGIN {print $1 * $2}") s" >&2; return 1
    fi
  done
}

# The pid of the supergo behind url when a wrapper (perf, heaptrack) started it: the process
# with that command line whose name is supergo.
supergo_pid() {
  for p in $(pgrep -f -- "--listen $url"); do
    if [ "$(cat "/proc/$p/comm")" = supergo ]; then echo "$p"; fi
  done | tail -1
}

# Restarts every tenth program (p0000, p0010, …), 10 at a time; answers in out/restarts.txt.
restart_tenth() {
  i=0; names=""
  while [ "$i" -lt "$n" ]; do names="$names $(printf 'p%04d' "$i")"; i=$((i + 10)); done
  echo $names | tr ' ' '\n' | xargs -P10 -n1 "$ctl" --url "$url" restart > "$out/restarts.txt"
}

# GET /status $1 times, one after the other.
read_status() {
  i=0; while [ "$i" -lt "$1" ]; do
    python3 -c "import urllib.request; urllib.request.urlopen('http://$url/status').read()"; i=$((i + 1))
  done
}
