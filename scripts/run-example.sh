#!/usr/bin/env bash
# The example server: builds the binaries, then `goworld start` in the foreground on
# run/goworld.ini (copied from conf/goworld.ini.sample the first time): one dispatcher, one
# game (test_game), one gate, embedded file storage. Ctrl-C stops them in order. Another
# config: ./scripts/run-example.sh path/to/goworld.ini. The ops cycle (status, reload, stop
# from another terminal) is in the README's "Operations" section.
set -euo pipefail
config=$(realpath -m "${1:-$(dirname "$0")/../run/goworld.ini}")
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
mkdir -p run && { [ -f run/goworld.ini ] || cp conf/goworld.ini.sample run/goworld.ini; }
exec ./target/release/goworld start -configfile "$config"
