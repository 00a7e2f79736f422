#!/usr/bin/env bash
# Runs every test: builds the release binaries once, then the unit, in-memory, golden-byte,
# fuzz-seed and end-to-end tests (which start those binaries on 127.0.0.1), then builds the
# static binaries and checks them (scripts/check-static.sh), as root runs a deployment
# across network namespaces with a cut link (scripts/netns.sh), and runs the live world page
# in headless Chromium (scripts/web-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# The Redis engines' tests run against a real redis-server, which they start on free
# loopback ports and stop by PID. Install Debian's package if it is missing.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "test.sh: redis-server is missing; installing Debian's redis-server"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q redis-server >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q redis-server >/dev/null 2>&1; } ||
      echo "test.sh: could not install redis-server (apt-get failed); the Redis tests will fail"
  else
    echo "test.sh: cannot install redis-server here (needs root and apt-get); install it, or the Redis tests will fail"
  fi
fi
# The MongoDB engine's tests run against an in-memory MongoDB-wire stand-in run by node
# (tests/mongo/README.md), which they start on free loopback ports and stop by PID.
# tests/mongo/install.sh installs it with npm, or does nothing if it is installed.
if ! bash tests/mongo/install.sh; then
  echo "test.sh: the MongoDB stand-in could not be installed (the reason is above); the MongoDB tests will fail"
fi
# The observability test reads /metrics with Prometheus's own text parser (Python's
# prometheus_client, pinned).
if ! python3 -c "import prometheus_client" >/dev/null 2>&1; then
  echo "test.sh: installing Python's prometheus_client (the /metrics test's reference parser)"
  python3 -m pip install -q --disable-pip-version-check "prometheus_client==0.26.0" >/dev/null 2>&1 ||
    echo "test.sh: could not install prometheus_client (pip failed); the /metrics test will fail"
fi
# The Chromium test's browser and npm packages install in the background while cargo builds
# (scripts/web-test.sh INSTALL_ONLY=1; it is waited for before the TypeScript tests).
mkdir -p target
INSTALL_ONLY=1 ./scripts/web-test.sh > target/web-install.log 2>&1 &
web_install_pid=$!
# The binaries and every test target in one build, so cargo overlaps them on every core.
cargo build --release --workspace --bins --tests
set +e
cargo test --release --workspace 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
wait "$web_install_pid"
cat target/web-install.log
# The TypeScript client library's unit tests (web/client: tsc, then node --test), with the
# golden frames of docs/PROTOCOL.md as fixtures. npm ci fetches TypeScript the first time.
if command -v npm >/dev/null 2>&1; then
  (cd web/client && timeout 300 npm ci --no-audit --no-fund --loglevel=error && timeout 300 npm test) 2>&1 |
    tee target/web-client-test.log
  ts_status=${PIPESTATUS[0]}
else
  echo "test.sh: npm is missing: the TypeScript client's tests cannot run" | tee target/web-client-test.log
  ts_status=1
fi
[ "$status" != 0 ] || status=$ts_status
# The fully static (musl) binaries: built, checked static, and run with a short strict bot
# run (scripts/check-static.sh). Run even when a test failed; either failure fails the command.
# The static check builds with the quick static-check profile (Cargo.toml): what it checks,
# static linking and a bot run, does not depend on optimisation, and it saves minutes here.
STATIC_PROFILE=static-check ./scripts/check-static.sh
static_status=$?
[ "$status" != 0 ] || status=$static_status
# Several hosts, as Linux network namespaces (scripts/netns.sh): needs root and iproute2, so
# it runs only where both are there (CI runs as root); elsewhere it says it is skipped.
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null 2>&1; then
  BUILD=0 ./scripts/netns.sh
  netns_status=$?
  [ "$status" != 0 ] || status=$netns_status
else
  echo "test.sh: scripts/netns.sh skipped (it needs root and the ip command)"
fi
# The live world page end to end in headless Chromium, with bots and a hot swap
# (scripts/web-test.sh; it installs Chromium and the npm packages it needs, or says why not).
BUILD=0 ./scripts/web-test.sh
web_status=$?
[ "$status" != 0 ] || status=$web_status
set -e
# One closing line with the totals of every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' target/test-output.log
awk '/^# pass / { p += $3 } /^# fail / { f += $3 }
     END { printf "TypeScript client tests: %d passed, %d failed\n", p, f }' target/web-client-test.log
exit "$status"
