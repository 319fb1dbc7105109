//! A re-apply of an unchanged stack sends no mutating request (no PATCH, POST, PUT or DELETE),
//! and a real change is still sent — counted at the fault proxy (a test double between kstrap
//! and the API server, tests/support/proxy) in front of the real kube-apiserver, whose defaulting
//! and quantity normalisation (`cpu: 1000m` is stored as `1`) are the point of the check.

use crate::proxy::FaultProxy;
use crate::real::{Cleanup, RealCluster, unique};
use kstrap::kube::{ApplyOptions, ApplyReport, NoProgress, Outcome, apply_stack};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A 2-stage stack: Namespace and ConfigMaps, then a Service and a Deployment whose fields the
/// server defaults (protocol, imagePullPolicy, strategy) or normalises (cpu `1000m`).
fn write_stack(dir: &Path, name: &str, ns: &str, cm_value: &str, with_extra: bool) {
    let root = dir.join(name);
    write(
        &root,
        "stack.yaml",
        &format!(
            "name: {name}\ndescription: no-op test stack\nnamespace: {ns}\nstages:\n  - {{dir: 00-base, name: base, timeout_s: 60, description: config}}\n  - {{dir: 10-app, name: app, timeout_s: 120, description: app}}\n"
        ),
    );
    let mut base = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: {cm_value}\n"
    );
    if with_extra {
        base.push_str("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  k: v\n");
    }
    write(&root, "00-base/base.yaml", &base);
    write(
        &root,
        "10-app/app.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n    - port: 80\n      targetPort: 8080\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: registry.k8s.io/pause:3.10\n          args: [\"--v\", \"1\"]\n          ports:\n            - containerPort: 8080\n          resources:\n            requests: {cpu: 1000m, memory: 64Mi}\n            limits: {memory: 0.125Gi}\n",
    );
}

async fn apply(client: &kube::Client, dir: &Path, name: &str, ns: &str) -> ApplyReport {
    let stack = kstrap::stack::load(name, Some(dir)).unwrap();
    // A stack Secret as kstrap builds them (`data`, base64): "s3cr3t".
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "keys", "namespace": ns}, "data": {"KEY": "czNjcjN0"}});
    let opts = ApplyOptions {
        stage_timeout: Some(Duration::from_secs(120)),
        ..ApplyOptions::default()
    };
    match apply_stack(client.clone(), &stack, vec![secret], &opts, &NoProgress).await {
        Ok(r) => r,
        Err(e) => panic!("apply: {e}"),
    }
}

fn outcomes(r: &ApplyReport) -> Vec<(String, Outcome)> {
    r.stages
        .iter()
        .flat_map(|s| s.objects.iter().map(|o| (o.object.clone(), o.outcome)))
        .collect()
}

/// Applies, re-applies (no writes at all), changes one value (that object only is written),
/// then drops an object (pruned: its DELETE and the ApplySet parent narrowed).
async fn noop_reapply_writes_nothing(kubeconfig: &Path, name: &str, ns: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = FaultProxy::start(kubeconfig);
    let client = log.client().await;
    write_stack(dir.path(), name, ns, "v1", true);
    let first = apply(&client, dir.path(), name, ns).await;
    assert!(
        outcomes(&first).iter().all(|(_, o)| *o == Outcome::Created),
        "{:?}",
        outcomes(&first)
    );
    assert!(!log.mutating_requests().is_empty());

    log.clear_requests();
    let again = apply(&client, dir.path(), name, ns).await;
    assert!(
        outcomes(&again).iter().all(|(_, o)| *o == Outcome::Unchanged),
        "{:?}",
        outcomes(&again)
    );
    assert_eq!(
        writes(&log),
        Vec::<(String, String)>::new(),
        "a no-op re-apply must not write"
    );

    log.clear_requests();
    write_stack(dir.path(), name, ns, "v2", true);
    let changed = apply(&client, dir.path(), name, ns).await;
    let configured: Vec<_> = outcomes(&changed)
        .into_iter()
        .filter(|(_, o)| *o != Outcome::Unchanged)
        .collect();
    assert_eq!(
        configured,
        vec![(format!("ConfigMap/settings -n {ns}"), Outcome::Configured)]
    );
    assert_writes(
        &log,
        &[("PATCH", &format!("/api/v1/namespaces/{ns}/configmaps/settings"))],
    );

    log.clear_requests();
    write_stack(dir.path(), name, ns, "v2", false);
    let pruned = apply(&client, dir.path(), name, ns).await;
    assert_eq!(pruned.pruned, vec![format!("ConfigMap/extra -n {ns}")]);
    // Pruning lists and deletes; the parent's kinds and namespaces are unchanged, so it is not
    // written either.
    assert_writes(
        &log,
        &[("DELETE", &format!("/api/v1/namespaces/{ns}/configmaps/extra"))],
    );
}

/// The writes the proxy saw: (method, path).
fn writes(log: &FaultProxy) -> Vec<(String, String)> {
    log.mutating_requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}

fn assert_writes(log: &FaultProxy, want: &[(&str, &str)]) {
    let got = writes(log);
    let want: Vec<(String, String)> = want.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noop_reapply_sends_no_mutating_request_to_a_real_api_server() {
    let Some(cluster) = RealCluster::get("a_noop_reapply_sends_no_mutating_request_to_a_real_api_server") else {
        return;
    };
    let _hold = cluster.shared();
    let name = unique("noop");
    let mut cleanup = Cleanup::new(cluster);
    cleanup.unique_namespace(&name);
    noop_reapply_writes_nothing(cluster.kubeconfig(), &name, &name).await;
}
