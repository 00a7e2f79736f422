#!/usr/bin/env bash
# Builds and runs the example server: one dispatcher, one game (test_game) and one gate, with
# embedded file storage (no database). Ctrl-C stops all three cleanly.
# Config: run/goworld.ini (copied from conf/goworld.ini.sample on first run); logs in run/.
#
#   ./scripts/run-example.sh [CONFIG]
#
# CONFIG: another goworld.ini to run with (for example one whose [storage] and [kvdb] point
# at Redis or MongoDB); it must exist. The processes then run in its directory, which gets
# the logs, the *.out files, example.pid and anything the config's relative paths name.
#
# Hot swap: `kill -USR1 $(cat run/example.pid)` makes this script rebuild the binaries, send
# SIGUSR1 to the game (it writes run/game1_freezed.dat and exits) and start the new
# test_game with -restore; connected clients see only a pause. (With CONFIG, example.pid and
# game1_freezed.dat are in CONFIG's directory.)
set -euo pipefail
config=${1:-}
if [ -n "$config" ]; then
  [ -f "$config" ] || { echo "run-example.sh: $config does not exist" >&2; exit 1; }
  config=$(realpath "$config")
fi
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/target/release
cargo build --release --workspace --bins
if [ -z "$config" ]; then
  mkdir -p run
  [ -f run/goworld.ini ] || cp conf/goworld.ini.sample run/goworld.ini
  config=$PWD/run/goworld.ini
fi
cd "$(dirname "$config")"
ini=$(basename "$config")
# Each server runs in its own session, so Ctrl-C reaches only this script, which stops them
# in order (gate, game, dispatcher) with SIGTERM.
pids=()

wait_ready() { # $1 = log-tag, $2 = stdout file, $3 = pid
  for _ in $(seq 1 300); do
    if grep -q "^<!--XSUPERVISOR:BEGIN--> $1 STARTED" "$2" 2>/dev/null; then grep -m1 "^<!--XSUPERVISOR:BEGIN--> $1 STARTED" "$2"; return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then echo "$1 exited early; see $PWD/$2 and the logs in $PWD/" >&2; return 1; fi
    sleep 0.1
  done
  echo "$1 did not become ready in 30 s" >&2; return 1
}

stop() {
  trap - INT TERM
  echo "stopping..."
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -f example.pid
  echo "stopped"
  exit 0
}
trap stop INT TERM

swap() {
  echo "hot swap: rebuilding..."
  if ! (cd "$root" && cargo build --release --workspace --bins -q); then
    echo "hot swap: build failed; the game keeps running" >&2
    return
  fi
  local game=${pids[1]}
  echo "hot swap: freezing game1 (pid $game)"
  kill -USR1 "$game"
  if ! wait "$game"; then
    echo "hot swap: game1 did not exit 0; see game1.log in $PWD" >&2
    stop
  fi
  setsid "$bin/test_game" -gid 1 -configfile "$ini" -restore >game1.out 2>&1 & pids[1]=$!
  wait_ready GAME game1.out "${pids[1]}" || stop
  echo "hot swap: game1 restored (pid ${pids[1]})"
}
trap swap USR1
echo $$ > example.pid

setsid "$bin/dispatcher" -dispid 1 -configfile "$ini" >dispatcher1.out 2>&1 & pids+=($!)
wait_ready DISPATCHER dispatcher1.out "${pids[-1]}" || stop
setsid "$bin/test_game" -gid 1 -configfile "$ini" >game1.out 2>&1 & pids+=($!)
wait_ready GAME game1.out "${pids[-1]}" || stop
setsid "$bin/gate" -gid 1 -configfile "$ini" >gate1.out 2>&1 & pids+=($!)
wait_ready GATE gate1.out "${pids[-1]}" || stop
echo "example server running (clients connect to the gate above); Ctrl-C to stop"
while true; do
  # Waiting on a background sleep lets the INT/TERM trap run at once.
  sleep 1 & wait $! || true
  for p in "${pids[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "process $p exited; see the logs in $PWD/" >&2; stop; }
  done
done
