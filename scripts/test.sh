#!/usr/bin/env bash
# Runs every test: builds the release binaries once, then the unit, in-memory, golden-byte,
# fuzz-seed and end-to-end tests (which start those binaries on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
mkdir -p target
set +e
cargo test --release --workspace 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
set -e
# One closing line with the totals of every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' target/test-output.log
exit "$status"
