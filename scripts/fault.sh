#!/usr/bin/env bash
# Bots while servers die (issue 6's fault script). Builds the release binaries, then runs
# 300 strict bots in -faults mode against 3 dispatchers, 3 games and 3 gates three times:
# once killing game2 with SIGKILL 15 s in, once killing dispatcher2 with SIGKILL and starting
# it again 2 s later, once stopping game2 (SIGSTOP) for 4 s with a 1.5 s link_timeout_ms, as
# if its network were cut, and resuming it. Each run passes when test_client exits 0 (nothing
# failed outside the 10 s after the fault), no server log has a panic, the surviving servers
# stop cleanly, and for the game kill and the silence its clients were closed by their gates
# (and for the silence every dispatcher declared it gone on its heartbeat timeout and it
# rejoined clean). The test command runs the silence with fewer bots (tests/e2e/main.rs).
# Not part of the test command.
#
# Environment: BOTS (default 300), SECS (default 40), AT (default 15).
set -euo pipefail
cd "$(dirname "$0")/.."
BOTS=${BOTS:-300}
SECS=${SECS:-40}
AT=${AT:-15}
cargo build --release --workspace --bins
for kill in game dispatcher silence; do
  echo "== fault_bots -kill ${kill}"
  timeout $((SECS + 120)) ./target/release/fault_bots -N "$BOTS" -secs "$SECS" -at "$AT" -kill "$kill"
done
echo "fault.sh: all three runs passed"
