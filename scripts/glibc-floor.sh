#!/usr/bin/env bash
# Checks that an ELF binary needs no glibc symbol version newer than a floor.
# Usage: scripts/glibc-floor.sh BINARY [FLOOR]   (FLOOR like 2.34; default 2.34)
# Reads the binary's version needs with objdump -T, else readelf -V. Exit 0 within the floor,
# 1 above it, 2 when the binary or the tools are missing.
set -euo pipefail
binary="${1:?usage: glibc-floor.sh BINARY [FLOOR]}"
floor="${2:-2.34}"
[ -f "$binary" ] || { echo "glibc-floor: $binary: no such file" >&2; exit 2; }
if command -v objdump >/dev/null 2>&1; then
    listing="$(objdump -T "$binary")"
elif command -v readelf >/dev/null 2>&1; then
    listing="$(readelf -V "$binary")"
else
    echo "glibc-floor: neither objdump nor readelf found (binutils)" >&2
    exit 2
fi
newest="$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$listing" | sed 's/GLIBC_//' | sort -uV | tail -n1)"
if [ -z "$newest" ]; then
    echo "glibc-floor: $binary needs no glibc (static or musl)"
    exit 0
fi
highest="$(printf '%s\n%s\n' "$newest" "$floor" | sort -V | tail -n1)"
if [ "$highest" != "$floor" ]; then
    echo "glibc-floor: $binary needs GLIBC_$newest, newer than the floor $floor" >&2
    exit 1
fi
echo "glibc-floor: $binary needs at most GLIBC_$newest (floor $floor)"
