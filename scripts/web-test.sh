#!/usr/bin/env bash
# The live world page (web/) end to end in headless Chromium. Starts 1 dispatcher, 2 games
# and 1 gate (goworld start -d) on free 127.0.0.1 ports with embedded storage in a temporary
# directory and the gate's web_root on the repository's web/, then 50 strict bots, then
# tests/web/world.test.mjs (playwright-core driving Chromium): two pages log in as two users
# through the page, enter one space, see each other move, chat in the world channel, live
# through a hot swap of both games (goworld reload) without reloading, and a screenshot is
# saved to target/web-test/world.png. Passes when the page test passes, the bots exit 0 in
# strict mode, goworld stop stops every server and no server output has a panic.
#
#   ./scripts/web-test.sh
#
# Installs what is missing: Debian's chromium-headless-shell (as root, with apt-get; else
# uses chromium if present), and with npm the page's client library (web/client: npm ci, npm
# run build) and the test's playwright-core (tests/web: npm ci). Uses the release binaries
# (cargo build --release --workspace --bins first, unless BUILD=0, as scripts/test.sh calls
# it). Stops every process it started, by PID, however it exits.
#
# Environment: INSTALL_ONLY=1 installs and builds what the test needs, then stops (test.sh
# runs that in the background while it builds), BUILD (1), BOTS (50), BOT_SECS (20: the bots' run; the page test, swap
# included, runs meanwhile), CHROMIUM (the browser executable, found when unset), KEEP=1
# keeps the run directory on success.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
BUILD=${BUILD:-1}
BOTS=${BOTS:-50}
BOT_SECS=${BOT_SECS:-20}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bin=$target_dir/release
out_dir=$target_dir/web-test
shot=$out_dir/world.png
t_start=$(date +%s)

say() { echo "web-test.sh: $*"; }
fail() { echo "web-test.sh: FAILED: $*" >&2; exit 1; }
root() { [ "$(id -u)" = 0 ]; }
apt_install() { # Debian packages, as root; one apt-get update on a miss
  root && command -v apt-get >/dev/null 2>&1 || return 1
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$@" >/dev/null 2>&1; }
}

# 1. What the test needs: the page, node and npm, a Chromium, the built client library.
[ -f web/index.html ] || fail "web/index.html is missing: there is no page to test"
[ -f web/client/package.json ] || fail "web/client/package.json is missing: no client library to build"
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  say "node or npm is missing; installing Debian's nodejs and npm"
  apt_install nodejs npm || fail "node and npm are needed (the page's client library and the test are built and run with them) and could not be installed: install Node.js 20 or later with npm"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "node $(node --version) is too old: playwright-core needs Node.js 20 or later"
find_chromium() {
  if [ -n "${CHROMIUM:-}" ]; then command -v "$CHROMIUM"; return; fi
  command -v chromium-headless-shell || command -v chromium
}
if ! chrome=$(find_chromium); then
  say "no Chromium found; installing Debian's chromium-headless-shell"
  apt_install chromium-headless-shell ||
    fail "cannot install chromium-headless-shell (needs root and apt-get): install it or chromium, or set CHROMIUM"
  chrome=$(find_chromium) || fail "chromium-headless-shell was installed but is not on PATH"
fi
say "browser: $chrome ($("$chrome" --version 2>/dev/null | head -1 || echo 'version unknown'))"

npm_ci() { # $1 = directory: npm ci unless node_modules is as new as the lock file
  if [ ! -f "$1/node_modules/.package-lock.json" ] || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; then
    (cd "$1" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci in $1 failed (see above)"
  fi
}
npm_ci web/client
(cd web/client && timeout 300 npm run build --silent) || fail "npm run build in web/client failed (see above)"
[ -f web/client/dist/index.js ] || fail "web/client/dist/index.js is missing after npm run build"
npm_ci tests/web
if [ "${INSTALL_ONLY:-0}" = 1 ]; then
  say "installed what the test needs ($(( $(date +%s) - t_start )) s)"
  exit 0
fi

if [ "$BUILD" != 0 ]; then
  nice -n 19 cargo build --release --workspace --bins
fi
for b in goworld dispatcher gate test_game test_client; do
  [ -x "$bin/$b" ] || fail "$bin/$b is missing (cargo build --release --workspace --bins)"
done

# 2. The deployment: a config on free loopback ports, in a temporary directory.
mkdir -p "$out_dir"
rm -f "$shot" "${shot%.png}-failed.png"
run=$(mktemp -d "${TMPDIR:-/tmp}/goworld-web.XXXXXX")
bots_pid=
node_pid=
passed=0
server_pids() { # the PIDs in goworld's PID files
  local f
  for f in "$run"/.goworld/*.pid; do
    [ -f "$f" ] && sed -n 's/^pid=//p' "$f"
  done
  return 0
}
cleanup() {
  local st=$? p
  trap - EXIT INT TERM
  # timeout passes the TERM on to node, whose playwright closes the browser.
  for p in $node_pid $bots_pid; do kill -TERM "$p" 2>/dev/null || true; done
  if [ -n "$node_pid" ]; then wait "$node_pid" 2>/dev/null || true; fi
  if [ -n "$bots_pid" ] && kill -0 "$bots_pid" 2>/dev/null; then
    kill -TERM "$bots_pid" 2>/dev/null || true
    wait "$bots_pid" 2>/dev/null || true
  fi
  if [ -d "$run/.goworld" ]; then
    local pids
    pids=$(server_pids)
    timeout 30 "$bin/goworld" stop -configfile "$run/goworld.ini" >/dev/null 2>&1 || true
    for p in $pids; do
      # Only a process that is still this run's (its working directory is the run dir).
      if [ "$(readlink "/proc/$p/cwd" 2>/dev/null)" = "$run" ]; then
        kill -KILL "$p" 2>/dev/null || true
      fi
    done
  fi
  if [ "$passed" = 1 ] && [ "${KEEP:-0}" != 1 ]; then
    rm -rf "$run"
  else
    echo "web-test.sh: the run directory (config, logs, each process's output in .goworld/): $run" >&2
  fi
  exit "$st"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

used_ports() { # every local TCP port in use (any state), from /proc/net/tcp and tcp6
  local _ addr
  { tail -n +2 /proc/net/tcp; tail -n +2 /proc/net/tcp6 2>/dev/null || true; } |
    while read -r _ addr _; do echo $((16#${addr##*:})); done
}
picked=()
free_port() { # a port in 20000-59999 that no socket uses and that was not picked before
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! used_ports | grep -qx "$p" && ! printf '%s\n' "${picked[@]:-}" | grep -qx "$p"; then
      echo "$p"; return 0
    fi
  done
  return 1
}
next_port() { # sets variable $1 to a free port
  local p
  p=$(free_port) || fail "found no free port"
  picked+=("$p")
  printf -v "$1" '%s' "$p"
}
for v in disp gate disp_http game1_http game2_http gate_http; do next_port "$v"; done
cat >"$run/goworld.ini" <<EOF
; scripts/web-test.sh's deployment: 1 dispatcher, 2 games, 1 gate serving the page.
[deployment]
desired_dispatchers = 1
desired_games = 2
desired_gates = 1
[storage]
type = filesystem
directory = entity_storage
[kvdb]
type = filesystem
directory = kvdb
[dispatcher_common]
log_stderr = 0
[dispatcher1]
listen_addr = 127.0.0.1:$disp
advertise_addr = 127.0.0.1:$disp
http_addr = 127.0.0.1:$disp_http
[game_common]
boot_entity = Account
log_stderr = 0
[game1]
http_addr = 127.0.0.1:$game1_http
[game2]
http_addr = 127.0.0.1:$game2_http
[gate_common]
log_stderr = 0
[gate1]
listen_addr = 127.0.0.1:$gate
http_addr = 127.0.0.1:$gate_http
web_root = $repo/web
EOF
cd "$run"
timeout 120 "$bin/goworld" start -d -timeout 60 -configfile goworld.ini >start.out 2>&1 ||
  { cat start.out >&2; fail "goworld start failed (above)"; }
page_url=$(sed -n 's/.* page=\([^ ]*\).*/\1/p' .goworld/gate1.out | head -1)
[ -n "$page_url" ] || fail "the gate's ready line has no page= (is web_root served?): $(grep -h STARTED .goworld/gate1.out)"
say "deployment up in $run: page at $page_url"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$page_url" 2>/dev/null || echo none)
[ "$code" = 200 ] || [ "$code" = none ] || fail "GET $page_url answered $code, not 200"

# 3. The bots, then the page test while they run.
timeout $((BOT_SECS + 90)) "$bin/test_client" -N "$BOTS" -duration "$BOT_SECS" -strict -quiet -log warn \
  -configfile goworld.ini >test_client.out 2>&1 &
bots_pid=$!
say "$BOTS strict bots for $BOT_SECS s (pid $bots_pid)"
# In the background and waited for, so that a signal reaches the trap at once.
PAGE_URL=$page_url CHROMIUM=$chrome SCREENSHOT=$shot \
  RELOAD_CMD="timeout 80 '$bin/goworld' reload -configfile '$run/goworld.ini'" \
  timeout 150 node "$repo/tests/web/world.test.mjs" &
node_pid=$!
set +e
wait "$node_pid"
page_status=$?
set -e
node_pid=
[ "$page_status" = 0 ] || fail "the page test failed (exit $page_status; above)"

set +e
wait "$bots_pid"
bots_status=$?
set -e
bots_pid=
summary=$(grep '^test_client: bots ' test_client.out || true)
say "${summary:-test_client printed no summary}"
[ "$bots_status" = 0 ] || { tail -n 20 test_client.out >&2; fail "test_client exited $bots_status (strict; its output: $run/test_client.out)"; }

# 4. Clean stops, and no panic anywhere.
timeout 60 "$bin/goworld" stop -configfile goworld.ini >stop.out 2>&1 ||
  { cat stop.out >&2; fail "goworld stop failed (above)"; }
if grep -l "panicked" .goworld/*.out ./*.log 2>/dev/null; then
  fail "a server panicked (the files above)"
fi
passed=1
say "screenshot: $shot"
say "passed in $(($(date +%s) - t_start)) s (the page test, $BOTS strict bots, a hot swap of both games)"
