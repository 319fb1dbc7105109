#!/usr/bin/env bash
# Builds a release archive of kstrap for this machine's architecture:
#   dist/kstrap-<version>-<arch>-linux-gnu.tar.gz  holding
#     kstrap                      the binary (release build, stripped of debug info)
#     completions/kstrap.bash, _kstrap, kstrap.fish
#     man/kstrap.1, man/kstrap-<command>.1
#     README.md
#   dist/SHA256SUMS              `sha256sum` lines for every archive in dist/
# The binary links glibc dynamically: it refuses to build an archive whose binary needs a glibc
# newer than the stated floor (README, "Install"), so build on the oldest system you support.
# Usage: scripts/release.sh [OUT_DIR]   (default dist/)
# RELEASE_PROFILE=dev tries the packaging on a debug build (not for publishing).
set -euo pipefail
cd "$(dirname "$0")/.."
GLIBC_FLOOR="2.34"
out="${1:-dist}"

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
arch="$(uname -m)"
name="kstrap-${version}-${arch}-linux-gnu"

profile="${RELEASE_PROFILE:-release}"
cargo build --profile "$profile" --locked
case "$profile" in dev) binary="target/debug/kstrap" ;; *) binary="target/$profile/kstrap" ;; esac

scripts/glibc-floor.sh "$binary" "$GLIBC_FLOOR"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name"
cp "$binary" "$stage/$name/kstrap"
strip --strip-debug "$stage/$name/kstrap" 2>/dev/null || true
cp README.md "$stage/$name/"
cargo run --quiet --locked --example release_docs -- "$stage/$name" >/dev/null

mkdir -p "$out"
# Reproducible order and owners in the archive.
tar --sort=name --owner=0 --group=0 --numeric-owner -C "$stage" -czf "$out/$name.tar.gz" "$name"
(cd "$out" && sha256sum -- *.tar.gz > SHA256SUMS)
echo "$out/$name.tar.gz"
cat "$out/SHA256SUMS"
