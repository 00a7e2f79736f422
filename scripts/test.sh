#!/usr/bin/env bash
# Runs every test: builds the release binaries once, then the unit, in-memory, golden-byte,
# fuzz-seed and end-to-end tests (which start those binaries on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
cargo test --release --workspace
