#!/usr/bin/env bash
# Hot swap under load (the hot swap issue's script). Builds the release binaries, then runs
# 200 strict bots against 1 dispatcher, 2 games and 1 gate twice in a row; in each run game1
# and then game2 are swapped: test_game is rebuilt with a new build tag, the game gets
# SIGUSR1, writes game<N>_freezed.dat and exits 0, and the rebuilt binary is started with
# -restore. Each run passes when the bots see no failure and no disconnect, every server
# exits 0 and no server log has an error line. Not part of the test command.
#
# Environment: BOTS (default 200), SECS (default 50), FIRST (default 15), GAP (default 15).
set -euo pipefail
cd "$(dirname "$0")/.."
BOTS=${BOTS:-200}
SECS=${SECS:-50}
FIRST=${FIRST:-15}
GAP=${GAP:-15}
cargo build --release --workspace --bins
for run in 1 2; do
  echo "== swap_bots, run ${run}"
  timeout $((SECS + 300)) ./target/release/swap_bots -N "$BOTS" -secs "$SECS" -first "$FIRST" -gap "$GAP" -rebuild
done
# Leave test_game built without a tag, as the test command builds it.
cargo build --release -q -p goworld-test-game --bin test_game
echo "swap.sh: both runs passed"
