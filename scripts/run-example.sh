#!/usr/bin/env bash
# Builds and runs the example server: one dispatcher, one game (test_game) and one gate, with
# embedded file storage (no database), started by `goworld start` in the foreground. Ctrl-C
# stops all three cleanly (gate, game, dispatcher); if one of them exits, the others are
# stopped too.
# Config: run/goworld.ini (copied from conf/goworld.ini.sample on first run); logs in run/,
# each process's stdout/stderr (*.out) and PID file in run/.goworld/.
#
#   ./scripts/run-example.sh [CONFIG]
#
# CONFIG: another goworld.ini to run with (for example one whose [storage] and [kvdb] point
# at Redis or MongoDB); it must exist. The processes then run in its directory, which gets
# the logs, .goworld/, example.pid and anything the config's relative paths name.
#
# Hot swap: `kill -USR1 $(cat run/example.pid)` makes this script rebuild the binaries and run
# `goworld reload`: SIGUSR1 to the game (it writes run/game1_freezed.dat and exits), then the
# new test_game starts with -restore; connected clients see only a pause. (With CONFIG,
# example.pid and game1_freezed.dat are in CONFIG's directory.) `goworld status`, `reload`
# and `stop` work from another terminal too: see the README's "Operations" section.
set -euo pipefail
config=${1:-}
if [ -n "$config" ]; then
  [ -f "$config" ] || { echo "run-example.sh: $config does not exist" >&2; exit 1; }
  config=$(realpath "$config")
fi
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
if [ -z "$config" ]; then
  mkdir -p run
  [ -f run/goworld.ini ] || cp conf/goworld.ini.sample run/goworld.ini
  config=$PWD/run/goworld.ini
fi
goworld=$PWD/target/release/goworld
pidfile=$(dirname "$config")/example.pid
gw=

swap() {
  echo "hot swap: rebuilding..."
  if ! cargo build --release --workspace --bins -q; then
    echo "hot swap: build failed; the game keeps running" >&2
    return
  fi
  # If the game does not come back, `goworld start` sees it and stops the rest.
  "$goworld" reload -configfile "$config" || echo "hot swap: reload failed (see above)" >&2
}
trap swap USR1
# Ctrl-C reaches `goworld start` too; either way it stops the servers in order.
trap '[ -n "$gw" ] && kill -TERM "$gw" 2>/dev/null || true' INT TERM
echo $$ > "$pidfile"

"$goworld" start -configfile "$config" &
gw=$!
status=0
while true; do
  # A trapped signal interrupts `wait`; go on waiting until goworld itself has exited.
  wait "$gw" && status=0 || status=$?
  kill -0 "$gw" 2>/dev/null || break
done
rm -f "$pidfile"
exit "$status"
