#!/usr/bin/env bash
# Installs the MongoDB-wire stand-in that the Mongo tests run against (see README.md):
#  1. `npm ci` of package-lock.json: smartmongo's run-time dependencies, without smartmongo;
#  2. smartmongo's own tarball, fetched with `npm pack`, checked against the pin below and
#     unpacked to node_modules/@push.rocks/smartmongo (its declared dependency tree does not
#     resolve, so npm cannot install it);
#  3. string-id.patch on top.
# Does nothing when all of that is already in place. Needs node, npm (and the npm registry,
# unless npm's cache holds every package) and patch.
set -euo pipefail
cd "$(dirname "$0")"

PKG=@push.rocks/smartmongo
VERSION=2.2.0
INTEGRITY=sha512-ovVCNoJ3D0aBuKtoKaQWWQKvBngaGJq9fAPQigzji1EHsS1XyGpXWCpe5nq/ptGvBROOcpqZcOFEGAcrnb+OjA==
DEST=node_modules/$PKG
MARKER=node_modules/.goworld-mongo-standin

fail() {
  echo "tests/mongo/install.sh: $*" >&2
  exit 1
}

for tool in node npm patch tar; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing; the MongoDB stand-in needs node, npm, patch and tar"
done

# What an install is made of: a change to any of these installs again.
stamp="$PKG@$VERSION $INTEGRITY $(cat package-lock.json string-id.patch | sha256sum | cut -d' ' -f1)"
if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$stamp" ] && [ -f "$DEST/dist_ts/congodb/index.js" ] &&
  grep -q 'goworld-rs patch' "$DEST/dist_ts/congodb/storage/MemoryStorageAdapter.js"; then
  echo "tests/mongo/install.sh: $PKG@$VERSION is installed and patched"
  exit 0
fi

echo "tests/mongo/install.sh: installing $PKG@$VERSION and its dependencies into tests/mongo/node_modules"
# npm ci empties node_modules first (smartmongo and the marker go too).
npm ci --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null ||
  fail "npm ci failed: is the npm registry reachable? The MongoDB tests cannot run without it"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm pack "$PKG@$VERSION" --pack-destination "$tmp" --prefer-offline --loglevel=error >/dev/null ||
  fail "npm pack $PKG@$VERSION failed: is the npm registry reachable? The MongoDB tests cannot run without it"
tarball=$(ls "$tmp"/*.tgz)
got=sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$tarball")
[ "$got" = "$INTEGRITY" ] || fail "$PKG@$VERSION's tarball is $got, not the pinned $INTEGRITY"

rm -rf "$DEST"
mkdir -p "$DEST"
tar xzf "$tarball" -C "$DEST" --strip-components=1 --no-same-owner
(cd "$DEST" && patch -p1 --forward --quiet <../../../string-id.patch) || fail "string-id.patch does not apply to $PKG@$VERSION"

echo "$stamp" >"$MARKER"
echo "tests/mongo/install.sh: $PKG@$VERSION is installed and patched"
