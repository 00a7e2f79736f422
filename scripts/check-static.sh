#!/usr/bin/env bash
# Checks the static binaries of scripts/build-static.sh: builds them (a no-op when they are
# up to date), checks that each is statically linked (ldd; no program interpreter, no
# needed library), then runs the example deployment with them (1 dispatcher, test_game,
# 1 gate; conf/goworld.ini.sample on free 127.0.0.1 ports, in a temporary directory) and a
# short strict bot run: test_client -N 20 -duration 10 -strict. Passes when every check
# holds, the bots exit 0 with "failures 0", and the servers exit 0 on SIGTERM.
#
#   ./scripts/check-static.sh [--no-build]
#
# --no-build: check the binaries already in target/static/ without building.
# STATIC_PROFILE (as for build-static.sh): the Cargo profile to build with; scripts/test.sh
# uses static-check, which builds much faster than release-static.
# scripts/test.sh runs it after the tests. It stops only the processes it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target_dir/static
bins=(dispatcher gate test_game test_client)
bots=20
secs=10

fail() { echo "check-static.sh: FAILED: $*" >&2; exit 1; }

if [ "${1:-}" != --no-build ]; then
  ./scripts/build-static.sh || fail "the static build failed (see above)"
fi

# 1. Statically linked: ldd refuses them, and the ELF files ask for no loader or library.
for b in "${bins[@]}"; do
  f=$bin/$b
  [ -x "$f" ] || fail "$f is missing (run ./scripts/build-static.sh)"
  [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || fail "$f is not an ELF executable"
  out=$(ldd "$f" 2>&1 || true)
  case $out in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) fail "$b is not static; ldd says: $out" ;;
  esac
  if command -v readelf >/dev/null 2>&1; then
    ! readelf -lW "$f" | grep -q 'program interpreter' || fail "$b has a program interpreter"
    ! readelf -dW "$f" | grep -q '(NEEDED)' || fail "$b needs shared libraries: $(readelf -dW "$f" | grep '(NEEDED)')"
  fi
  echo "check-static.sh: $b: $(stat -c %s "$f") bytes; ldd: $(echo "$out" | tr -s ' \t' ' ' | sed 's/^ //')"
done

# 2. The example deployment on free loopback ports, from a copy of the sample config.
run=$(mktemp -d "${TMPDIR:-/tmp}/goworld-static.XXXXXX")
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

used_ports() { # every local TCP port in use (any state), from /proc/net/tcp and tcp6
  local _ addr
  { tail -n +2 /proc/net/tcp; tail -n +2 /proc/net/tcp6 2>/dev/null || true; } |
    while read -r _ addr _; do echo $((16#${addr##*:})); done
}
free_port() { # a port in 20000-59999 that no socket uses and that was not picked before
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! used_ports | grep -qx "$p" && ! printf '%s\n' "${picked[@]:-}" | grep -qx "$p"; then
      echo "$p"; return 0
    fi
  done
  fail "found no free port"
}
picked=()
disp_port=$(free_port); picked+=("$disp_port")
gate_port=$(free_port); picked+=("$gate_port")
http_ports=()
for _ in 1 2 3 4 5 6; do p=$(free_port); picked+=("$p"); http_ports+=("$p"); done
# The sample's addresses: dispatcher 13000/13001, gate 14000/14001 (0.0.0.0 for the common
# default), pprof/http 23000/23001, 24000/24001, 25000/25001 (read and unused).
sed -e "s/127\.0\.0\.1:1300[01]/127.0.0.1:$disp_port/g" \
    -e "s/0\.0\.0\.0:14000/127.0.0.1:$gate_port/g" \
    -e "s/127\.0\.0\.1:14001/127.0.0.1:$gate_port/g" \
    -e "s/127\.0\.0\.1:23000/127.0.0.1:${http_ports[0]}/; s/127\.0\.0\.1:23001/127.0.0.1:${http_ports[1]}/" \
    -e "s/127\.0\.0\.1:24000/127.0.0.1:${http_ports[2]}/; s/127\.0\.0\.1:24001/127.0.0.1:${http_ports[3]}/" \
    -e "s/127\.0\.0\.1:25000/127.0.0.1:${http_ports[4]}/; s/127\.0\.0\.1:25001/127.0.0.1:${http_ports[5]}/" \
    conf/goworld.ini.sample >"$run/goworld.ini"
grep -q "listen_addr = 127.0.0.1:$gate_port" "$run/goworld.ini" || fail "could not set the ports in $run/goworld.ini"
cd "$run"

wait_ready() { # $1 = tag, $2 = stdout file, $3 = pid
  for _ in $(seq 1 300); do
    grep -q "^<!--XSUPERVISOR:BEGIN--> $1 STARTED" "$2" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || fail "$1 exited at start-up; see $run/$2 and the logs in $run/"
    sleep 0.1
  done
  fail "$1 was not ready in 30 s; see $run/$2"
}
"$bin/dispatcher" -dispid 1 -configfile goworld.ini >dispatcher1.out 2>&1 & pids+=($!)
wait_ready DISPATCHER dispatcher1.out "${pids[-1]}"
"$bin/test_game" -gid 1 -configfile goworld.ini >game1.out 2>&1 & pids+=($!)
wait_ready GAME game1.out "${pids[-1]}"
"$bin/gate" -gid 1 -configfile goworld.ini >gate1.out 2>&1 & pids+=($!)
wait_ready GATE gate1.out "${pids[-1]}"
echo "check-static.sh: dispatcher, game and gate running on 127.0.0.1:$disp_port / :$gate_port (in $run)"

# 3. The bots.
set +e
timeout $((secs + 60)) "$bin/test_client" -N "$bots" -duration "$secs" -strict -quiet -log warn \
  -configfile goworld.ini >test_client.out 2>&1
bots_status=$?
set -e
summary=$(grep '^test_client: bots ' test_client.out || true)
echo "check-static.sh: ${summary:-test_client printed no summary}"
[ "$bots_status" = 0 ] || { tail -20 test_client.out >&2; fail "test_client exited $bots_status (output: $run/test_client.out)"; }
case $summary in
  *", failures 0,"*) ;;
  *) fail "test_client did not report failures 0 (output: $run/test_client.out)" ;;
esac

# 4. Clean stops: gate, game, dispatcher, each SIGTERMed and exiting 0.
names=(dispatcher game gate)
for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
  kill -TERM "${pids[i]}"
  set +e; wait "${pids[i]}"; st=$?; set -e
  [ "$st" = 0 ] || fail "${names[i]} exited $st on SIGTERM; see the logs in $run/"
done
pids=()
cd / && rm -rf "$run"
echo "check-static.sh: static binaries pass (statically linked, $bots strict bots for $secs s, failures 0, clean stops)"
