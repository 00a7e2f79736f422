#!/usr/bin/env bash
# Bots while servers die (issue 6's fault script). Builds the release binaries, then runs
# 300 strict bots in -faults mode against 3 dispatchers, 3 games and 3 gates twice: once
# killing game2 with SIGKILL 15 s in, once killing dispatcher2 with SIGKILL and starting it
# again 2 s later. Each run passes when test_client exits 0 (nothing failed outside the 10 s
# after the fault), no server log has a panic, the surviving servers stop cleanly, and for the
# game kill its clients were closed by their gates. Not part of the test command.
#
# Environment: BOTS (default 300), SECS (default 40), AT (default 15).
set -euo pipefail
cd "$(dirname "$0")/.."
BOTS=${BOTS:-300}
SECS=${SECS:-40}
AT=${AT:-15}
cargo build --release --workspace --bins
for kill in game dispatcher; do
  echo "== fault_bots -kill ${kill}"
  timeout $((SECS + 120)) ./target/release/fault_bots -N "$BOTS" -secs "$SECS" -at "$AT" -kill "$kill"
done
echo "fault.sh: both runs passed"
