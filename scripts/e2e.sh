#!/usr/bin/env bash
# Runs the end-to-end tests of the stack engine and `kstrap apply` (tests/integration/apply_e2e.rs)
# against a cluster of your own (the suites otherwise use the control plane of .ci/run).
# Usage: scripts/e2e.sh [KUBECONFIG]   (default: $KSTRAP_TEST_KUBECONFIG, else $KUBECONFIG, else
# ~/.kube/config). Tests that need fault injection print why they skip. The tests create
# namespaces named e2e<pid>-<n>, a CRD widgets.e2e.kstrap.dev and ApplySet parents
# (Secrets applyset-e2e*) in kube-system; scripts/e2e.sh removes them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
kubeconfig=${1:-${KSTRAP_TEST_KUBECONFIG:-${KUBECONFIG:-$HOME/.kube/config}}}
if [ ! -r "$kubeconfig" ]; then
    echo "e2e: kubeconfig $kubeconfig not readable; pass its path" >&2
    exit 2
fi
export KSTRAP_TEST_KUBECONFIG=$kubeconfig
status=0
cargo test --test integration apply_e2e -- --test-threads=2 --nocapture || status=$?
if command -v kubectl >/dev/null 2>&1; then
    kubectl --kubeconfig "$kubeconfig" get ns -o name | grep '^namespace/e2e[0-9]' | xargs -r kubectl --kubeconfig "$kubeconfig" delete --wait=false || true
    kubectl --kubeconfig "$kubeconfig" -n kube-system get secret -o name | grep '^secret/applyset-e2e' | xargs -r kubectl --kubeconfig "$kubeconfig" -n kube-system delete || true
    kubectl --kubeconfig "$kubeconfig" delete crd widgets.e2e.kstrap.dev --ignore-not-found || true
fi
exit $status
