//! The node stand-in (test double, tests/support/real/node.rs) against the real control plane:
//! the real controllers and scheduler put pods on it, and it reports them as a kubelet would.
//! These tests check the stand-in itself, so that the suites built on it can trust it.

use crate::real::{Cleanup, NODE_NAME, RealCluster, apply_json, namespace_json, unique};
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const MANAGER: &str = "kstrap-e2e-test";

/// Polls `get` until `done` says yes, or panics with the last value after `within`.
async fn until<F, Fut>(what: &str, within: Duration, mut get: F, done: impl Fn(&Value) -> bool) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < within {
        if let Some(v) = get().await {
            if done(&v) {
                return v;
            }
            last = v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not reached within {within:?}; last seen:\n{last:#}");
}

async fn get(client: &kube::Client, api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await.ok()?;
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let obj = api.get_opt(name).await.ok()??;
    serde_json::to_value(obj).ok()
}

async fn pods_of(client: &kube::Client, ns: &str, selector: &str) -> Vec<Value> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    match api.list(&kube::api::ListParams::default().labels(selector)).await {
        Ok(l) => l
            .items
            .into_iter()
            .filter_map(|p| serde_json::to_value(p).ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn deployment(ns: &str, name: &str, image: &str, extra_pod: Value) -> Value {
    let mut pod = json!({"containers": [{"name": "main", "image": image,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]});
    if let (Some(p), Some(e)) = (pod.as_object_mut(), extra_pod.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_jobs_claims_and_load_balancers_come_up_on_the_node() {
    let Some(cluster) = RealCluster::get("deployments_jobs_claims_and_load_balancers_come_up_on_the_node") else {
        return;
    };
    let _shared = cluster.shared();
    let client = cluster.client().await;
    let ns = unique("node-ok");
    let mut cleanup = Cleanup::new(cluster);
    cleanup.unique_namespace(&ns);
    apply_json(&client, &namespace_json(&ns), MANAGER).await.unwrap();

    apply_json(&client, &deployment(&ns, "web", "nginx:1.27", json!({})), MANAGER)
        .await
        .unwrap();
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": ns},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.37.0"}]}}}});
    apply_json(&client, &job, MANAGER).await.unwrap();
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    apply_json(&client, &pvc, MANAGER).await.unwrap();
    let user = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user", "namespace": ns},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.37.0"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}});
    apply_json(&client, &user, MANAGER).await.unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": ns},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]}});
    apply_json(&client, &svc, MANAGER).await.unwrap();

    let within = Duration::from_secs(60);
    let d = until(
        "Deployment available",
        within,
        || get(&client, "apps/v1", "Deployment", Some(&ns), "web"),
        |d| d["status"]["availableReplicas"] == 2,
    )
    .await;
    assert_eq!(d["status"]["readyReplicas"], 2);
    for p in pods_of(&client, &ns, "app=web").await {
        assert_eq!(
            p["spec"]["nodeName"], NODE_NAME,
            "the real scheduler bound it to the stand-in"
        );
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
    }
    until(
        "Job complete",
        within,
        || get(&client, "batch/v1", "Job", Some(&ns), "once"),
        |j| {
            j["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Complete" && c["status"] == "True"))
        },
    )
    .await;
    let claim = until(
        "claim bound",
        within,
        || get(&client, "v1", "PersistentVolumeClaim", Some(&ns), "data"),
        |c| c["status"]["phase"] == "Bound",
    )
    .await;
    assert_eq!(
        claim["spec"]["storageClassName"], "local-path",
        "k3s's default class, filled in by admission"
    );
    until(
        "pod with the claim running",
        within,
        || get(&client, "v1", "Pod", Some(&ns), "user"),
        |p| p["status"]["phase"] == "Running",
    )
    .await;
    until(
        "load balancer address",
        within,
        || get(&client, "v1", "Service", Some(&ns), "lb"),
        |s| s["status"]["loadBalancer"]["ingress"][0]["ip"] == "127.0.0.1",
    )
    .await;
    // The lease keeps the node Ready and untainted.
    let node = get(&client, "v1", "Node", None, NODE_NAME).await.unwrap();
    assert!(node["spec"]["taints"].is_null(), "{:#}", node["spec"]);
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.35.3+k3s1");
    drop(cleanup);
    // The volume went with the claim (reclaim policy Delete).
    let pv = claim["spec"]["volumeName"].as_str().unwrap().to_string();
    until(
        "volume deleted",
        within,
        || async { Some(json!(get(&client, "v1", "PersistentVolume", None, &pv).await.is_none())) },
        |gone| gone == &json!(true),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_fail_the_way_a_kubelet_reports_it() {
    let Some(cluster) = RealCluster::get("pods_fail_the_way_a_kubelet_reports_it") else {
        return;
    };
    let _shared = cluster.shared();
    let client = cluster.client().await;
    let ns = unique("node-bad");
    let mut cleanup = Cleanup::new(cluster);
    cleanup.unique_namespace(&ns);
    apply_json(&client, &namespace_json(&ns), MANAGER).await.unwrap();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": ns}, "stringData": {"a": "1"}});
    apply_json(&client, &secret, MANAGER).await.unwrap();
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "pull",
            deployment(&ns, "pull", "kstrap.invalid/required/app:unset", json!({})),
            "ImagePullBackOff",
            "kstrap.invalid/required/app:unset",
        ),
        (
            "crash",
            deployment(&ns, "crash", "example.test/crash-loop:1", json!({})),
            "CrashLoopBackOff",
            "back-off",
        ),
        (
            "nokey",
            deployment(
                &ns,
                "nokey",
                "nginx:1.27",
                json!({"containers": [{"name": "main", "image": "nginx:1.27",
                "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "b"}}}]}]}),
            ),
            "CreateContainerConfigError",
            "couldn't find key b in Secret",
        ),
        (
            "nosecret",
            deployment(
                &ns,
                "nosecret",
                "nginx:1.27",
                json!({"containers": [{"name": "main", "image": "nginx:1.27",
                "envFrom": [{"secretRef": {"name": "absent"}}]}]}),
            ),
            "CreateContainerConfigError",
            "secret \"absent\" not found",
        ),
        (
            "root",
            deployment(
                &ns,
                "root",
                "nginx:1.27",
                json!({"securityContext": {"runAsNonRoot": true}}),
            ),
            "CreateContainerConfigError",
            "runAsNonRoot and image will run as root",
        ),
    ];
    for (_, obj, _, _) in &cases {
        apply_json(&client, obj, MANAGER).await.unwrap();
    }
    for (name, _, reason, message) in &cases {
        let pods = until(
            &format!("{name} pods reported"),
            Duration::from_secs(60),
            || async { Some(json!(pods_of(&client, &ns, &format!("app={name}")).await)) },
            |pods| {
                pods.as_array().is_some_and(|p| {
                    !p.is_empty()
                        && p.iter()
                            .all(|p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].is_string())
                })
            },
        )
        .await;
        let waiting = &pods[0]["status"]["containerStatuses"][0]["state"]["waiting"];
        assert_eq!(waiting["reason"], *reason, "{name}: {waiting}");
        assert!(
            waiting["message"].as_str().unwrap_or_default().contains(message),
            "{name}: {waiting}"
        );
    }
    // A Job whose container exits 3 fails, as the real Job controller decides from the pod.
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad", "namespace": ns},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "example.test/exit-3:1"}]}}}});
    apply_json(&client, &job, MANAGER).await.unwrap();
    until(
        "Job failed",
        Duration::from_secs(60),
        || get(&client, "batch/v1", "Job", Some(&ns), "bad"),
        |j| {
            j["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Failed" && c["status"] == "True"))
        },
    )
    .await;
    // A RuntimeClass whose handler the node's runtime lacks: the sandbox never starts.
    let rc_name = unique("rc-nvidia");
    cleanup.cluster_object("node.k8s.io/v1", "RuntimeClass", "runtimeclasses", &rc_name);
    apply_json(&client, &json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": rc_name}, "handler": "nvidia"}), MANAGER)
        .await
        .unwrap();
    let gpu = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu", "namespace": ns},
        "spec": {"runtimeClassName": rc_name, "containers": [{"name": "main", "image": "nginx:1.27"}]}});
    apply_json(&client, &gpu, MANAGER).await.unwrap();
    let p = until(
        "sandbox failure",
        Duration::from_secs(60),
        || get(&client, "v1", "Pod", Some(&ns), "gpu"),
        |p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating",
    )
    .await;
    assert_eq!(p["status"]["phase"], "Pending");
    // A RuntimeClass that does not exist is refused by the API server itself.
    let orphan = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "namespace": ns},
        "spec": {"runtimeClassName": "no-such-class", "containers": [{"name": "main", "image": "nginx:1.27"}]}});
    let err = apply_json(&client, &orphan, MANAGER).await.unwrap_err();
    assert!(err.to_string().contains("no-such-class"), "{err}");
}
