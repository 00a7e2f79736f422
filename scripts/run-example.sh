#!/usr/bin/env bash
# The example server: builds the binaries, then `goworld start` in the foreground on
# run/goworld.ini (copied from conf/goworld.ini.sample the first time): one dispatcher, one
# game (test_game), one gate, embedded file storage. Ctrl-C stops them in order. Another
# config: ./scripts/run-example.sh path/to/goworld.ini. The ops cycle (status, reload, stop
# from another terminal) is in the README's "Operations" section.
#
# The gate also serves the live world page (web/, the sample's web_root) on its http_addr:
# with npm, its client library (web/client) is built here first (npm ci, npm run build;
# skipped while web/client/dist/index.js is newer than every file in web/client/src).
set -euo pipefail
config=$(realpath -m "${1:-$(dirname "$0")/../run/goworld.ini}")
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
mkdir -p run && { [ -f run/goworld.ini ] || cp conf/goworld.ini.sample run/goworld.ini; }

# The page's client library.
if [ -f web/client/package.json ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "run-example.sh: npm is missing, so the live world page's client library (web/client) is not built; install node and npm for the page"
  elif [ -f web/client/dist/index.js ] && [ -z "$(find web/client/src -type f -newer web/client/dist/index.js | head -1)" ]; then
    : # up to date
  else
    echo "run-example.sh: building the page's client library (web/client)"
    (cd web/client && npm ci --no-audit --no-fund && npm run build)
  fi
fi

# Where to open the page: gate1's http_addr ([gate1], else [gate_common], else the default).
http=$(awk -F= '
  /^[ \t]*\[/ { sec = $0; gsub(/[ \t\[\]]/, "", sec); next }
  /^[ \t]*http_addr[ \t]*=/ { v = $2; sub(/[;#].*/, "", v); gsub(/[ \t"]/, "", v)
    if (sec == "gate1") g1 = v; else if (sec == "gate_common") gc = v }
  /^[ \t]*web_root[ \t]*=/ { v = $2; sub(/[;#].*/, "", v); gsub(/[ \t"]/, "", v)
    if ((sec == "gate1" || sec == "gate_common") && v != "") web = 1 }
  END { a = (g1 != "" ? g1 : (gc != "" ? gc : "127.0.0.1:24000")); print a, (web ? "web" : "") }
' "$config")
addr=${http% *}
port=${addr##*:}
if [ "${http#* }" = web ] && [ -n "$port" ]; then
  echo "run-example.sh: once the gate is ready, open the live world page at http://127.0.0.1:$port/"
else
  echo "run-example.sh: $config sets no web_root, so the gate serves no page (add web_root = ../web to [gate_common], as conf/goworld.ini.sample does)"
fi
exec ./target/release/goworld start -configfile "$config"
