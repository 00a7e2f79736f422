#!/usr/bin/env bash
# Builds the release binaries and runs the benchmarks of BENCHMARKS.md, printing their
# figures: the dispatcher's in-memory routing rate, a real dispatcher's routing rate over
# loopback TCP, the idle CPU and memory of a 1/1/1 deployment with and without silent
# clients, test_client's bots against a 1/1/1 deployment (all things, then GoWorld's eight),
# the AOI index alone, and migrations between two games. Takes about 5 minutes after the
# build. Not part of the test
# command.
#
# Environment: ROUTE_SECS (default 10), IDLE_SECS (default 30), PHASE_SECS (default 10),
# CLIENTS (default 1000), BOTS (default 500), BOTS_SECS (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUTE_SECS=${ROUTE_SECS:-10}
IDLE_SECS=${IDLE_SECS:-30}
PHASE_SECS=${PHASE_SECS:-10}
CLIENTS=${CLIENTS:-1000}
BOTS=${BOTS:-500}
BOTS_SECS=${BOTS_SECS:-30}

# Each idle client takes a file descriptor in the gate and in bench_idle.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "kernel $(uname -r), $(rustc --version), $(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release --workspace --bins --examples

echo "== route_inmem (dispatcher state machine, no sockets)"
timeout 120 ./target/release/examples/route_inmem

echo "== bench_route (real dispatcher over loopback TCP, ${ROUTE_SECS} s)"
timeout $((ROUTE_SECS + 60)) ./target/release/bench_route -secs "$ROUTE_SECS"

echo "== bench_idle (1 dispatcher, 1 game, 1 gate; ${IDLE_SECS} s idle, ${CLIENTS} clients)"
timeout $((IDLE_SECS + 2 * PHASE_SECS + 90)) ./target/release/bench_idle \
  -secs "$IDLE_SECS" -clients "$CLIENTS" -phase-secs "$PHASE_SECS"

echo "== bench_bots (test_client -N ${BOTS} -strict, ${BOTS_SECS} s; 1 dispatcher, 1 game, 1 gate)"
timeout $((BOTS_SECS + 180)) ./target/release/bench_bots -N "$BOTS" -secs "$BOTS_SECS"

echo "== bench_bots, GoWorld's eight things only (test_client -things goworld)"
timeout $((BOTS_SECS + 180)) ./target/release/bench_bots -N "$BOTS" -secs "$BOTS_SECS" -goworld

echo "== bench_aoi (the AOI index alone: 1 000, 10 000, 50 000 entities)"
timeout 300 ./target/release/bench_aoi

echo "== bench_freeze (hot swap: freeze, file, restore of 1 000, 10 000, 100 000 entities)"
timeout 300 ./target/release/bench_freeze -N 1000,10000,100000

echo "== bench_migrate (entities moving between two games: 1, 100, 1 000 of them, 10 s each)"
timeout 300 ./target/release/bench_migrate -N 1,100,1000 -secs 10
