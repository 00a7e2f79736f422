#!/usr/bin/env bash
# Builds fully static x86_64 Linux binaries of dispatcher, gate, test_game and test_client
# (target x86_64-unknown-linux-musl, Cargo profile `release-static`: release plus
# whole-program LTO), then puts stripped copies in target/static/. Those run on any x86_64
# Linux kernel with nothing installed: no libc, no dynamic loader, no other library.
#
#   ./scripts/build-static.sh
#   STATIC_PROFILE=release ./scripts/build-static.sh   # another Cargo profile: quicker, larger
#
# Output:
#   target/static/{dispatcher,gate,test_game,test_client}      stripped, to ship
#   target/x86_64-unknown-linux-musl/release-static/{...}      as built (symbols, line tables;
#                                                               the profile's name if another)
# (under $CARGO_TARGET_DIR instead of target/ when that is set).
#
# Needs the Rust target x86_64-unknown-linux-musl and a musl C compiler: the game's MongoDB
# driver uses rustls with ring, which compiles C and assembly (Debian: musl-tools). When
# either is missing the script installs it (rustup target add; apt-get install musl-tools as
# root), or stops saying what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-musl
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
bins=(dispatcher gate test_game test_client)

die() { echo "build-static.sh: $*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "builds for x86_64 only, and this machine is $(uname -m)"

# The Rust standard library for the musl target.
if ! rustc --print sysroot >/dev/null 2>&1; then die "rustc is not on PATH"; fi
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/$triple/lib" ]; then
  command -v rustup >/dev/null 2>&1 ||
    die "the Rust target $triple is missing and there is no rustup to add it; install the musl standard library for this rustc ($(rustc --version))"
  echo "build-static.sh: adding the Rust target $triple"
  rustup target add "$triple" >&2 || die "rustup target add $triple failed (see above)"
fi

# A C compiler for musl (cc-rs looks for x86_64-linux-musl-gcc; Debian's musl-tools has it
# and musl-gcc). CC_x86_64_unknown_linux_musl, when set, is used as it is.
if [ -z "${CC_x86_64_unknown_linux_musl:-}" ]; then
  if ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1 && ! command -v musl-gcc >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "build-static.sh: no musl C compiler; installing Debian's musl-tools"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -q musl-tools >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q musl-tools >/dev/null 2>&1; } ||
        die "apt-get install musl-tools failed; the game's ring crate needs a musl C compiler"
    else
      die "no musl C compiler (x86_64-linux-musl-gcc or musl-gcc), which the game's ring crate needs: install Debian's musl-tools (apt-get install musl-tools, as root), or set CC_x86_64_unknown_linux_musl"
    fi
  fi
  if ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1; then
    export CC_x86_64_unknown_linux_musl=musl-gcc
  fi
fi
command -v strip >/dev/null 2>&1 || die "strip (binutils) is missing"

# musl targets link statically by default (crt-static is on), so no RUSTFLAGS are needed.
profile=${STATIC_PROFILE:-release-static}
cargo build --profile "$profile" --target "$triple" --bins \
  -p goworld-dispatcher -p goworld-gate -p goworld-test-game -p goworld-test-client

mkdir -p "$target_dir/static"
for b in "${bins[@]}"; do
  strip -o "$target_dir/static/$b" "$target_dir/$triple/$profile/$b"
done
echo "build-static.sh: static binaries (profile $profile, stripped) in $target_dir/static/:"
for b in "${bins[@]}"; do
  printf '  %-12s %9d bytes\n' "$b" "$(stat -c %s "$target_dir/static/$b")"
done
