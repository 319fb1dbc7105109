//! After a reboot: GPU pods the kubelet rejected at admission because they were started before
//! the GPU device plugin registered (`UnexpectedAdmissionError`) are named by `kstrap status`
//! (exit 1, the workload not ready, what to run) and cleared by a re-run of `kstrap apply`,
//! which says what it deleted. On the real control plane: the real ReplicaSet controller makes
//! the replacement pod beside the rejected one; the node stand-in (TEST DOUBLE of the kubelet)
//! rejects the pods as the kubelet's `rejectPod` does.

use crate::real::{Cleanup, RealCluster, unique};
use assert_cmd::Command;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

fn kstrap(args: &[&str]) -> Output {
    Command::cargo_bin("kstrap")
        .unwrap()
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A stack of one namespace and one Deployment `gpu-app` whose pod asks for one GPU share on the
/// rtx-5090 profile (the overlay also sets `runtimeClassName: nvidia`).
fn write_stack(dir: &Path, name: &str) {
    let root = dir.join(name);
    std::fs::create_dir_all(root.join("00-base")).unwrap();
    std::fs::create_dir_all(root.join("10-app")).unwrap();
    std::fs::write(
        root.join("stack.yaml"),
        format!(
            "name: {name}\ndescription: reboot test stack\nnamespace: {name}\nstages:\n  - {{dir: 00-base, name: base, timeout_s: 30, description: namespace}}\n  - {{dir: 10-app, name: app, timeout_s: 30, description: app}}\nprofiles:\n  rtx-5090:\n    Deployment/gpu-app:\n      containers:\n        app: {{gpu: 1}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("00-base/ns.yaml"),
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("10-app/app.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: gpu-app\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: gpu-app}\n  template:\n    metadata:\n      labels: {app: gpu-app}\n    spec:\n      containers:\n        - name: app\n          image: registry.k8s.io/pause:3.10\n          resources:\n            limits: {cpu: 100m, memory: 64Mi}\n",
    )
    .unwrap();
}

fn apply(kubeconfig: &Path, dir: &Path, name: &str) -> Output {
    kstrap(&[
        "apply",
        "--profile",
        "rtx-5090",
        "--stack",
        name,
        "--stack-dir",
        dir.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--timeout",
        "30",
    ])
}

fn status_json(kubeconfig: &Path) -> (Output, Value) {
    let out = kstrap(&["status", "-o", "json", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("one JSON document: {e}\n{}", text(&out)));
    (out, v)
}

/// The pods of `ns`, as (name, phase, ready), once `done` holds for them (at most 30 s).
async fn pods_when(api: &Api<Pod>, done: impl Fn(&[(String, String, bool)]) -> bool) -> Vec<(String, String, bool)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = api.list(&Default::default()).await.unwrap();
        let pods: Vec<(String, String, bool)> = list
            .items
            .iter()
            .map(|p| {
                let s = p.status.clone().unwrap_or_default();
                let ready = s
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                (
                    p.metadata.name.clone().unwrap_or_default(),
                    s.phase.unwrap_or_default(),
                    ready,
                )
            })
            .collect();
        if done(&pods) {
            return pods;
        }
        assert!(Instant::now() < deadline, "pods never got there: {pods:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_pods_rejected_after_a_reboot_are_named_by_status_and_cleared_by_a_rerun() {
    let Some(cluster) = RealCluster::get("gpu_pods_rejected_after_a_reboot_are_named_by_status_and_cleared_by_a_rerun")
    else {
        return;
    };
    // The node's GPUs change: exclusive (it resets the node first, and after).
    let _guard = cluster.exclusive();
    let name = unique("reboot");
    let mut cleanup = Cleanup::new(cluster);
    cleanup.unique_namespace(&name).applyset_parent(&name);
    cleanup.cluster_object("node.k8s.io/v1", "RuntimeClass", "runtimeclasses", "nvidia");
    // A node whose device plugin and toolkit ran (as after the GPU operator's install).
    cluster.node().set(|c| {
        c.extended.insert("nvidia.com/gpu".into(), "1".into());
        c.runtime_handlers.push("nvidia".into());
    });
    let client = cluster.client().await;
    let rc = serde_json::json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"}, "handler": "nvidia"});
    crate::real::apply_json(&client, &rc, "kstrap-test").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_stack(dir.path(), &name);
    let kc = cluster.kubeconfig();

    let out = tokio::task::block_in_place(|| apply(kc, dir.path(), &name));
    assert_eq!(out.status.code(), Some(0), "first apply: {}", text(&out));

    // The reboot: the kubelet is back before the device plugin; it rejects the GPU pod.
    let rejected = tokio::task::block_in_place(|| cluster.node().reject_gpu_pods_as_after_a_reboot());
    let rejected: Vec<String> = rejected
        .into_iter()
        .filter_map(|p| p.strip_prefix(&format!("{name}/")).map(str::to_string))
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let rejected = &rejected[0];
    // The device plugin registered: the ReplicaSet's replacement runs beside the rejected pod.
    let api: Api<Pod> = Api::namespaced(client, &name);
    pods_when(&api, |pods| pods.iter().any(|(n, _, ready)| n != rejected && *ready)).await;

    let (out, report) = tokio::task::block_in_place(|| status_json(kc));
    assert_eq!(
        out.status.code(),
        Some(1),
        "the rejected pod fails status: {}",
        text(&out)
    );
    let mine = report["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name.as_str())
        .unwrap_or_else(|| panic!("no stack {name}: {report}"));
    let bad = &mine["not_ready"][0];
    assert_eq!(bad["object"], format!("Deployment/gpu-app -n {name}"), "{mine}");
    let reason = bad["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("pod {rejected} was rejected by the kubelet at admission")),
        "{reason}"
    );
    assert!(reason.contains("UnexpectedAdmissionError"), "{reason}");
    assert!(reason.contains("Requested: 1, Available: 0"), "{reason}");
    assert!(bad["next_command"].as_str().unwrap().contains("kstrap up"), "{bad}");
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains(rejected.as_str())),
        "{report}"
    );

    // The re-run deletes it and says so; status is clean again.
    let out = tokio::task::block_in_place(|| apply(kc, dir.path(), &name));
    assert_eq!(out.status.code(), Some(0), "re-run: {}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "deleted pod {rejected} -n {name} of Deployment/gpu-app -n {name}"
        )),
        "{}",
        text(&out)
    );
    let pods = pods_when(&api, |pods| pods.iter().all(|(n, _, _)| n != rejected)).await;
    assert_eq!(pods.len(), 1, "only the replacement is left: {pods:?}");
    let (out, report) = tokio::task::block_in_place(|| status_json(kc));
    let mine = report["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name.as_str())
        .unwrap();
    assert_eq!(mine["not_ready"], serde_json::json!([]), "{}", text(&out));
}
