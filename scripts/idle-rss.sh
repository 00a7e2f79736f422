#!/usr/bin/env bash
# Idle memory of the example deployment: starts dispatcher, test_game and gate from BIN_DIR
# with conf/goworld.ini.sample on free 127.0.0.1 ports (in a temporary directory), lets them
# sit idle for SECS seconds with no client, then prints each one's VmRSS (anonymous and
# file-backed pages) and VmHWM (from
# /proc/<pid>/status) and stops them by PID. BENCHMARKS.md section 15 uses it.
#
#   ./scripts/idle-rss.sh BIN_DIR [SECS]       e.g. target/static 10, or target/release 10
set -euo pipefail
bin=$(realpath "${1:?usage: idle-rss.sh BIN_DIR [SECS]}")
secs=${2:-10}
cd "$(dirname "$0")/.."
run=$(mktemp -d "${TMPDIR:-/tmp}/goworld-rss.XXXXXX")
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT

used_ports() {
  local _ addr
  { tail -n +2 /proc/net/tcp; tail -n +2 /proc/net/tcp6 2>/dev/null || true; } |
    while read -r _ addr _; do echo $((16#${addr##*:})); done
}
picked=()
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    used_ports | grep -qx "$p" || printf '%s\n' "${picked[@]:-}" | grep -qx "$p" || { echo "$p"; return; }
  done
}
d=$(free_port); picked+=("$d"); g=$(free_port)
sed -e "s/127\.0\.0\.1:1300[01]/127.0.0.1:$d/g" -e "s/0\.0\.0\.0:14000/127.0.0.1:$g/g" \
    -e "s/127\.0\.0\.1:14001/127.0.0.1:$g/g" conf/goworld.ini.sample >"$run/goworld.ini"
cd "$run"
start() { # $1 = binary, $2 = id flag, $3 = tag, $4 = name
  "$bin/$1" "$2" 1 -configfile goworld.ini >"$4.out" 2>&1 & pids+=($!)
  for _ in $(seq 1 300); do
    grep -q "^<!--XSUPERVISOR:BEGIN--> $3 STARTED" "$4.out" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "idle-rss.sh: $4 was not ready in 30 s" >&2; exit 1
}
start dispatcher -dispid DISPATCHER dispatcher
start test_game -gid GAME game
start gate -gid GATE gate
sleep "$secs"
names=(dispatcher game gate)
for i in 0 1 2; do
  s=/proc/${pids[i]}/status
  kb() { awk -v k="$1:" '$1 == k { print $2 }' "$s"; }
  printf '%-10s VmRSS %6s kB (anon %6s, file %6s)  VmHWM %6s kB  threads %s\n' "${names[i]}" \
    "$(kb VmRSS)" "$(kb RssAnon)" "$(kb RssFile)" "$(kb VmHWM)" "$(kb Threads)"
done
