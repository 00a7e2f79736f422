#!/usr/bin/env bash
# A deployment across hosts, simulated with Linux network namespaces (needs root and `ip`):
# six "hosts" on one bridge, each with its own IP address and nothing shared but the bridge:
#
#   gwns-disp   10.213.0.1  dispatcher1 (listens on its IP), dispatcher2 (listens on
#                           0.0.0.0 with advertise_addr)
#   gwns-game1  10.213.0.2  game1
#   gwns-game2  10.213.0.3  game2
#   gwns-gate1  10.213.0.4  gate1 (listens on its IP)
#   gwns-gate2  10.213.0.5  gate2 (listens on 0.0.0.0 with advertise_addr)
#   gwns-bots   10.213.0.6  test_client, dialing each gate at its own address from the config
#
# The games share one storage directory (as game hosts would share one network file system;
# on real hosts use Redis or MongoDB). Every process reads the same goworld.ini, with
# link_timeout_ms = LINK_TIMEOUT_MS.
#
# 1. Up: every process starts in its namespace and prints its ready line.
# 2. Bots: BOTS strict bots for SECS seconds from gwns-bots: failures 0, disconnects 0.
# 3. A cut: BOTS bots in -faults mode; CUT_AT seconds in, game2's host is cut off (its veth
#    link set down) for CUT_SECS seconds (longer than the heartbeat timeout), then joined
#    again. Checks: both dispatchers declare game2 gone for its heartbeat timeout, the gates
#    close the clients whose players lived on game2, the other bots carry on (test_client
#    exits 0: nothing fails outside the 10 s after the cut and after the heal), game2 rejoins
#    both dispatchers after the heal (having dropped what they declared dead), and new bots
#    then do everything in strict mode again on both games.
# 4. Every server stops cleanly on SIGTERM (exit 0), and no log has a panic or an error line.
#
#   sudo ./scripts/netns.sh        (builds the release binaries first; about 1.5 minutes)
#
# Environment: BOTS (200), SECS (15), LINK_TIMEOUT_MS (2000), CUT_AT (8), CUT_SECS (6),
# KEEP=1 keeps the run directory (target/netns/) on success. It removes only the namespaces,
# the bridge and the processes it created (by PID); a run interrupted by kill -9 leaves
# namespaces named gwns-*, links gwv-* and a bridge gwns-br, which the next run removes first.
set -euo pipefail
cd "$(dirname "$0")/.."
BOTS=${BOTS:-200}
SECS=${SECS:-15}
LINK_TIMEOUT_MS=${LINK_TIMEOUT_MS:-2000}
CUT_AT=${CUT_AT:-8}
CUT_SECS=${CUT_SECS:-6}
repo=$PWD
bin=$repo/target/release
net=10.213.0
hosts=(disp game1 game2 gate1 gate2 bots)

say() { echo "netns.sh: $*"; }
fail() { echo "netns.sh: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (network namespaces)"
command -v ip >/dev/null || fail "needs the ip command (iproute2)"

if [ "${BUILD:-1}" = 1 ]; then
  cargo build --release --workspace --bins
fi
for b in dispatcher gate test_game test_client; do
  [ -x "$bin/$b" ] || fail "$bin/$b is missing"
done

run=$repo/target/netns
rm -rf "$run"
mkdir -p "$run"
pids=()
names=()
ok=0

remove_net() {
  for h in "${hosts[@]}"; do
    ip netns del "gwns-$h" 2>/dev/null || true
    ip link del "gwv-$h" 2>/dev/null || true
  done
  ip link del gwns-br 2>/dev/null || true
}
cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  remove_net
  if [ "$ok" = 1 ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$run"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The hosts: a bridge in the root namespace, one veth pair per host.
remove_net
ip link add gwns-br type bridge
ip link set gwns-br up
n=0
for h in "${hosts[@]}"; do
  n=$((n + 1))
  ip netns add "gwns-$h"
  ip link add "gwv-$h" type veth peer name eth0 netns "gwns-$h"
  ip link set "gwv-$h" master gwns-br up
  ip -n "gwns-$h" addr add "$net.$n/24" dev eth0
  ip -n "gwns-$h" link set eth0 up
  ip -n "gwns-$h" link set lo up
done
ipof() { local i; for i in "${!hosts[@]}"; do [ "${hosts[i]}" = "$1" ] && echo "$net.$((i + 1))"; done; }
# Programs run in a host's network with nsenter, which execs them (`ip netns exec` forks and
# waits, so a signal to the PID we hold would miss the program); started in the background
# as a simple command, so that $! is the program's own PID.
netof() { echo "--net=/run/netns/gwns-$1"; }
say "six hosts on bridge gwns-br: $(for h in "${hosts[@]}"; do printf '%s=%s ' "$h" "$(ipof "$h")"; done)"

cat >"$run/goworld.ini" <<EOF
; netns.sh: six hosts (network namespaces) on one bridge.
[deployment]
desired_dispatchers = 2
desired_games = 2
desired_gates = 2

[storage]
type = filesystem
directory = entity_storage

[kvdb]
type = filesystem
directory = kvdb

[dispatcher_common]
link_timeout_ms = $LINK_TIMEOUT_MS
log_stderr = false

[dispatcher1]
listen_addr = $(ipof disp):13001
http_addr = $(ipof disp):23001

[dispatcher2]
listen_addr = 0.0.0.0:13002
advertise_addr = $(ipof disp):13002
http_addr = $(ipof disp):23002

[game_common]
boot_entity = Account
save_interval = 5
log_stderr = false

[game1]
http_addr = $(ipof game1):25001

[game2]
http_addr = $(ipof game2):25002

[gate_common]
log_stderr = false

[gate1]
listen_addr = $(ipof gate1):14001
http_addr = $(ipof gate1):24001

[gate2]
listen_addr = 0.0.0.0:14002
advertise_addr = $(ipof gate2):14002
http_addr = $(ipof gate2):24002
EOF
cd "$run"

wait_ready() { # $1 = name, $2 = tag, $3 = pid
  local _
  for _ in $(seq 1 300); do
    grep -q "^<!--XSUPERVISOR:BEGIN--> $2 STARTED" "$1.out" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || fail "$1 exited at start-up; see $run/$1.out and $run/$1.log"
    sleep 0.1
  done
  fail "$1 was not ready in 30 s; see $run/$1.out"
}
start() { # $1 = host, $2 = name, $3 = tag, then the program and its flags
  local host=$1 name=$2 tag=$3
  shift 3
  nsenter "$(netof "$host")" "$@" -configfile goworld.ini >"$name.out" 2>&1 &
  pids+=($!)
  names+=("$name")
  wait_ready "$name" "$tag" "$!"
  say "$name on $host: $(grep -o "STARTED.*" "$name.out" | head -n 1 | sed 's/<!--XSUPERVISOR:END-->//')"
}

# 1. Up.
start disp dispatcher1 DISPATCHER "$bin/dispatcher" -dispid 1
start disp dispatcher2 DISPATCHER "$bin/dispatcher" -dispid 2
start game1 game1 GAME "$bin/test_game" -gid 1
start game2 game2 GAME "$bin/test_game" -gid 2
start gate1 gate1 GATE "$bin/gate" -gid 1
start gate2 gate2 GATE "$bin/gate" -gid 2
for g in game1 game2; do
  for _ in $(seq 1 100); do grep -q "deployment ready" "$g.log" && break; sleep 0.1; done
  grep -q "deployment ready" "$g.log" || fail "$g did not see the deployment ready"
done

bots() { # $1 = output name, then test_client flags; returns test_client's status
  local out=$1
  shift
  set +e
  timeout $((SECS + CUT_AT + CUT_SECS + 90)) nsenter "$(netof bots)" "$bin/test_client" \
    -quiet -log warn -configfile goworld.ini "$@" >"$out" 2>&1
  local st=$?
  set -e
  return "$st"
}
summary() { grep '^test_client: bots ' "$1" | tail -n 1; }

# 2. Bots across the hosts.
bots bots1.out -N "$BOTS" -duration "$SECS" -strict || { tail -20 bots1.out >&2; fail "strict bots failed (bots1.out)"; }
say "strict bots: $(summary bots1.out)"
case $(summary bots1.out) in
  *", failures 0, disconnects 0"*) ;;
  *) fail "strict bots did not report failures 0, disconnects 0" ;;
esac

# 3. game2's host cut off for longer than the heartbeat timeout.
faults_secs=$((CUT_AT + CUT_SECS + 14))
nsenter "$(netof bots)" "$bin/test_client" -quiet -log warn -configfile goworld.ini \
  -N "$BOTS" -S $((BOTS + 1)) -duration "$faults_secs" -strict -faults >bots2.out 2>&1 &
bots_pid=$!
pids+=("$bots_pid")
names+=(test_client)
sleep "$CUT_AT"
kill -USR1 "$bots_pid"
ip link set gwv-game2 down
cut=$(date +%s.%N)
say "cut game2's host off (gwv-game2 down) for $CUT_SECS s; link_timeout_ms = $LINK_TIMEOUT_MS"
sleep "$CUT_SECS"
ip link set gwv-game2 up
kill -USR1 "$bots_pid"
say "game2's host joined again"
set +e
wait "$bots_pid"
bots_status=$?
set -e
unset 'pids[-1]' 'names[-1]'
say "bots during the cut: $(summary bots2.out)"
say "$(grep 'faults mode:' bots2.out || true)"
[ "$bots_status" = 0 ] || { tail -20 bots2.out >&2; fail "the bots did not carry on (test_client exit $bots_status; bots2.out)"; }
for d in dispatcher1 dispatcher2; do
  line=$(grep "game2 disconnected.*heartbeat timeout" "$d.log" | head -n 1 || true)
  [ -n "$line" ] || fail "$d did not declare game2 gone on its heartbeat timeout ($d.log)"
  at=$(date -d "$(echo "$line" | cut -d' ' -f1)" +%s.%N)
  say "$d: game2 declared gone $(awk -v a="$at" -v b="$cut" 'BEGIN { printf "%.1f", a - b }') s after the cut: ${line#* * * }"
  grep -q "game2 was declared dead and is back" "$d.log" || fail "game2 did not rejoin $d after the heal ($d.log)"
done
closing=$(cat gate1.log gate2.log | grep -c "clients whose player lived on game2" || true)
[ "$closing" -gt 0 ] || fail "no gate closed the clients of game2's players"
say "gates: $closing reports of closing game2's players' clients"
dropped=$(grep -c "declared this game dead" game2.log || true)
[ "$dropped" = 2 ] || fail "game2 heard it was declared dead from $dropped dispatchers, not 2 (game2.log)"
say "game2: $(grep "declared this game dead" game2.log | sed 's/.*dropping/dropping/' | head -n 1)"
disconnects=$(grep -o 'faults mode: [0-9]*' bots2.out | grep -o '[0-9]*$' || echo 0)
[ "$disconnects" -gt 0 ] || fail "no bot was disconnected by the cut"

# After the heal: both games serve new bots again, strictly.
bots bots3.out -N "$BOTS" -S $((2 * BOTS + 1)) -duration "$SECS" -strict ||
  { tail -20 bots3.out >&2; fail "strict bots after the heal failed (bots3.out)"; }
say "strict bots after the heal: $(summary bots3.out)"

# 4. Clean stops (gates, games, dispatchers) and clean logs.
for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
  kill -TERM "${pids[i]}"
  set +e; wait "${pids[i]}"; st=$?; set -e
  [ "$st" = 0 ] || fail "${names[i]} exited $st on SIGTERM (${names[i]}.log)"
done
pids=()
if grep -l "panicked" ./*.log ./*.out 2>/dev/null; then fail "a panic in the logs above"; fi
if grep -h " error " ./*.log | head -5 | grep -q .; then
  grep -h " error " ./*.log | head -5 >&2
  fail "error lines in the server logs"
fi
ok=1
say "passed: 6 hosts, both address styles, strict bots before and after; game2 cut off for $CUT_SECS s was declared dead by both dispatchers, its players' clients were closed, the other bots carried on, and it rejoined clean"
