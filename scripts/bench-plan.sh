#!/usr/bin/env bash
# Wall time (median, p90) and peak RSS of `kstrap detect` and `kstrap plan` for a release build,
# then the stack engine benchmark (benches/apply.rs).
# Targets (issue 2): plan < 50 ms median without a GPU; with NVML, at most NVML's own init + 20 ms.
# Usage: scripts/bench-plan.sh [runs]   (default 50). Prints a table; nothing is asserted here.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
bin=${KSTRAP_BENCH_BIN:-target/release/kstrap}
if [ -z "${KSTRAP_BENCH_BIN:-}" ]; then
    cargo build --release --quiet
fi
fixtures=tests/fixtures/facts
rss_file=$(mktemp)
trap 'rm -f "$rss_file"' EXIT

measure() { # name, command...
    local name=$1; shift
    local times=() t0 t1
    for _ in $(seq "$runs"); do
        t0=$(date +%s%N)
        "$@" >/dev/null 2>&1 || true
        t1=$(date +%s%N)
        times+=($(( (t1 - t0) / 1000 )))
    done
    local sorted median p90 rss
    sorted=$(printf '%s\n' "${times[@]}" | sort -n)
    median=$(echo "$sorted" | awk -v n="$runs" 'NR==int((n+1)/2){print}')
    p90=$(echo "$sorted" | awk -v n="$runs" 'NR==int(n*0.9+0.5){print}')
    /usr/bin/time -f '%M' -o "$rss_file" "$@" >/dev/null 2>&1 || true
    rss=$(tail -n1 "$rss_file")
    printf '%-34s %9.2f ms %9.2f ms %8s KiB\n' "$name" "$(echo "$median/1000" | bc -l)" "$(echo "$p90/1000" | bc -l)" "$rss"
}

command -v bc >/dev/null || { echo "bench.sh needs bc (apt-get install bc)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench.sh needs GNU time (apt-get install time)" >&2; exit 1; }
printf '%-34s %12s %12s %12s\n' "command ($runs runs)" median p90 "peak RSS"
measure "detect (probe this host)" "$bin" detect
measure "detect -o json (probe this host)" "$bin" detect -o json
measure "plan (probe this host)" "$bin" plan
measure "plan --facts rtx5090-96gb" "$bin" plan --facts "$fixtures/rtx5090-96gb.json"
measure "plan -o json --facts two-gpus" "$bin" plan -o json --facts "$fixtures/two-gpus.json"

# Stack engine against the real control plane named by KSTRAP_TEST_KUBECONFIG (without one the
# bench says so and ends): 300-object apply + wait (objects/s, peak RSS < 60 MB) and reaction
# latency (p50 < 20 ms, p99 < 100 ms).
echo
cargo bench --quiet --bench apply
