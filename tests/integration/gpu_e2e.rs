//! The GPU stage end to end against the real API server: the objects `gpu_objects` generates are
//! server-side applied with kstrap's own discovery, the distribution's Helm controller stand-in
//! (k3s HelmChart or k0s Chart, `tests/support/real/controllers/`) installs the GPU operator
//! chart, the operator stand-in labels the node and runs its operands on the node stand-in, and
//! `gpu::wait::wait_for_gpus` watches the node, the ClusterPolicy and the validator pods until
//! the node advertises GPUs × replicas. Every test takes the cluster exclusively (the
//! ClusterPolicy is a singleton, the node's GPUs change) and removes what it made.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kstrap::distro::Distro;
use kstrap::gpu::wait::{GpuWaitError, verify_gpu, wait_for_gpus};
use kstrap::gpu::{device_plugin_restart_patch, gpu_objects, time_slicing_config};
use kstrap::kube::ops::Discovery;
use kstrap::profile::{self, Overrides, Selection, Sharing, select};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::real::controllers::{cluster_policy_resource, dynamic_api, json_of};
use crate::real::{Cleanup, ClusterGuard, RealCluster};
use crate::support::fixture;

const OPERATOR_NS: &str = "gpu-operator";

fn selection(distro: Distro) -> (kstrap::facts::HostFacts, Selection) {
    let facts = fixture("rtx5090-96gb");
    let profiles = profile::embedded().expect("embedded profiles");
    let overrides = Overrides {
        profile: Some("rtx-5090".into()),
        distro: Some(distro),
        force: false,
        model: None,
        kept: None,
        ..Default::default()
    };
    let sel = select(&facts, &profiles, &overrides).expect("rtx-5090 fits the fixture");
    (facts, sel)
}

/// What a GPU test holds: its cleanup (dropped first) and the exclusive guard.
pub struct GpuCluster {
    _cleanup: Cleanup,
    _guard: ClusterGuard<'static>,
    pub cluster: &'static RealCluster,
    pub client: kube::Client,
}

/// The cluster, exclusively, with a node of `distro` that has `gpus` NVIDIA GPUs; everything
/// the GPU phase makes is removed when the test ends.
pub async fn gpu_cluster(test: &str, distro: Distro, gpus: u32) -> Option<GpuCluster> {
    let cluster = RealCluster::get(test)?;
    let guard = cluster.exclusive();
    cluster.node().set(|c| {
        c.gpus = gpus;
        c.kubelet_version = match distro {
            Distro::K3s => "v1.35.3+k3s1".into(),
            Distro::K0s => "v1.35.3+k0s".into(),
        };
    });
    let client = cluster.client().await;
    let mut cleanup = Cleanup::new(cluster);
    cleanup
        .object(
            "helm.cattle.io/v1",
            "HelmChart",
            "helmcharts",
            "kube-system",
            "gpu-operator",
        )
        .object(
            "helm.k0sproject.io/v1beta1",
            "Chart",
            "charts",
            "kube-system",
            "gpu-operator",
        )
        .cluster_object("nvidia.com/v1", "ClusterPolicy", "clusterpolicies", "cluster-policy")
        .cluster_object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "helm-kube-system-gpu-operator",
        )
        .cluster_object("node.k8s.io/v1", "RuntimeClass", "runtimeclasses", "nvidia")
        .namespace(OPERATOR_NS);
    Some(GpuCluster {
        _cleanup: cleanup,
        _guard: guard,
        cluster,
        client,
    })
}

/// Server-side apply, GVK resolved by discovery (as the engine does).
pub async fn apply(client: &kube::Client, objects: &[Value]) {
    let discovery = Discovery::new(client.clone());
    for obj in objects {
        let api_version = obj["apiVersion"].as_str().unwrap();
        let kind = obj["kind"].as_str().unwrap();
        let r = discovery
            .resolve(api_version, kind)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{api_version} {kind} not served"));
        let name = obj["metadata"]["name"].as_str().unwrap();
        let api: Api<DynamicObject> = kstrap::kube::ops::api_for(client, &r, obj["metadata"]["namespace"].as_str());
        api.patch(name, &PatchParams::apply("kstrap").force(), &Patch::Apply(obj))
            .await
            .unwrap_or_else(|e| panic!("apply {kind}/{name}: {e}"));
    }
}

async fn node(client: &kube::Client) -> Value {
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    json_of(&api.get(crate::real::NODE_NAME).await.unwrap())
}

async fn node_gpus(client: &kube::Client) -> Option<String> {
    node(client).await["status"]["allocatable"]["nvidia.com/gpu"]
        .as_str()
        .map(str::to_string)
}

/// Records every Ready-condition reason the ClusterPolicy shows while a wait runs.
fn watch_reasons(client: &kube::Client) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let api = dynamic_api(client, &cluster_policy_resource(), None);
    let out = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Ok(Some(cp)) = api.get_opt("cluster-policy").await {
                let cp = json_of(&cp);
                for c in cp["status"]["conditions"].as_array().into_iter().flatten() {
                    if c["type"] == "Ready" && c["status"] == "True" {
                        let r = c["reason"].as_str().unwrap_or_default().to_string();
                        let mut s = out.lock().unwrap();
                        if s.last() != Some(&r) {
                            s.push(r);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (seen, task)
}

/// The operator marks a fresh install ready with reason NFDLabelsMissing until NFD labels the
/// node (clusterpolicy_controller.go, v26.3.2): kstrap keeps waiting through it. Then the
/// ConfigMap changes to 8 shares, but the running device plugin keeps its config until the
/// DaemonSet is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_installs_then_replicas_change_needs_a_device_plugin_restart() {
    let Some(g) = gpu_cluster(
        "operator_installs_then_replicas_change_needs_a_device_plugin_restart",
        Distro::K3s,
        1,
    )
    .await
    else {
        return;
    };
    let client = &g.client;
    let (facts, sel) = selection(Distro::K3s);
    let replicas = sel.profile.gpu.replicas;
    assert_eq!(replicas, 4, "the rtx-5090 profile shares the GPU 4 ways");
    let objects = gpu_objects(&facts, &sel);
    assert!(objects.iter().any(|o| o["kind"] == "HelmChart"));
    let (reasons, observer) = watch_reasons(client);
    apply(client, &objects).await;

    let got = wait_for_gpus(client, 1, replicas, Duration::from_secs(90)).await;
    observer.abort();
    assert_eq!(got, Ok(4), "1 GPU × 4 replicas");
    let reasons = reasons.lock().unwrap().clone();
    assert!(
        reasons.iter().any(|r| r == "NFDLabelsMissing"),
        "the operator said NFDLabelsMissing on the way (a failure for kstrap before): {reasons:?}"
    );
    let cps = dynamic_api(client, &cluster_policy_resource(), None);
    let cp = json_of(&cps.get("cluster-policy").await.unwrap());
    let ready = cp["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["reason"], "Reconciled", "{reasons:?} then {}", cp["status"]);
    assert!(
        cp["status"]["observedGeneration"].is_null(),
        "ClusterPolicyStatus has none"
    );
    let n = node(client).await;
    assert_eq!(n["metadata"]["labels"]["nvidia.com/gpu.replicas"], "4");
    assert_eq!(
        n["metadata"]["labels"]["nvidia.com/gpu.sharing-strategy"],
        "time-slicing"
    );
    assert_eq!(n["metadata"]["labels"]["nvidia.com/gpu.present"], "true");
    // k3s's Helm controller ran the install in its Job, in the chart's namespace.
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), "kube-system");
    let job = json_of(&jobs.get("helm-install-gpu-operator").await.unwrap());
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    // The operator's RuntimeClass, owned by the ClusterPolicy.
    let rcs: Api<k8s_openapi::api::node::v1::RuntimeClass> = Api::all(client.clone());
    let rc = json_of(&rcs.get("nvidia").await.unwrap());
    assert_eq!(rc["handler"], "nvidia");
    assert_eq!(rc["metadata"]["ownerReferences"][0]["kind"], "ClusterPolicy");

    // Re-run with 8 replicas: the ConfigMap changes, but the running device plugin keeps its config.
    apply(client, &[time_slicing_config(8, Sharing::TimeSlicing, false)]).await;
    match wait_for_gpus(client, 1, 8, Duration::from_secs(2)).await {
        Err(GpuWaitError::TimedOut { reason }) => {
            assert!(reason.contains("advertises 4, expected 8"), "{reason}")
        }
        other => panic!("the old plugin must still advertise 4: {other:?}"),
    }
    assert_eq!(node_gpus(client).await.as_deref(), Some("4"));

    // Restarting the DaemonSet (as `up` does) makes the new plugin read the new config.
    let ds: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client.clone(), OPERATOR_NS);
    ds.patch(
        "nvidia-device-plugin-daemonset",
        &PatchParams::default(),
        &Patch::Strategic(device_plugin_restart_patch("2026-07-01T10:00:00Z")),
    )
    .await
    .unwrap();
    assert_eq!(wait_for_gpus(client, 1, 8, Duration::from_secs(60)).await, Ok(8));
}

/// On k0s the Chart names `<repo>/<chart>` with `spec.repository`: k0s v1.35.3's reconciler
/// takes the text before the first `/` as a repository name and finds none configured for an
/// archive URL ("repository 'https:' not found in cluster configuration").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k0s_chart_installs_the_operator_too() {
    let Some(g) = gpu_cluster("k0s_chart_installs_the_operator_too", Distro::K0s, 2).await else {
        return;
    };
    let client = &g.client;
    let (facts, sel) = selection(Distro::K0s);
    let objects = gpu_objects(&facts, &sel);
    let chart = objects.iter().find(|o| o["kind"] == "Chart").expect("a k0s Chart");
    assert!(
        !chart["spec"]["chartName"].as_str().unwrap().contains("://"),
        "k0s reads chartName as <repository>/<chart>: {}",
        chart["spec"]["chartName"]
    );
    apply(client, &objects).await;
    // Two physical GPUs: 2 × 4.
    let got = wait_for_gpus(client, 2, 4, Duration::from_secs(90)).await;
    let charts = dynamic_api(
        client,
        &crate::real::controllers::k0s_chart_resource(),
        Some("kube-system"),
    );
    let chart = json_of(&charts.get("gpu-operator").await.unwrap());
    assert_eq!(got, Ok(8), "chart status: {}", chart["status"]);
    assert_eq!(chart["status"]["releaseName"], "gpu-operator");
    assert_eq!(chart["status"]["version"], "v26.3.2");
    assert_eq!(chart["status"]["namespace"], OPERATOR_NS);
    assert!(chart["status"]["error"].is_null(), "{}", chart["status"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gpu_nodes_fails_at_once_with_the_reason() {
    // NFD labels the node, but finds no NVIDIA PCI device.
    let Some(g) = gpu_cluster("no_gpu_nodes_fails_at_once_with_the_reason", Distro::K3s, 0).await else {
        return;
    };
    let client = &g.client;
    let (facts, sel) = selection(Distro::K3s);
    apply(client, &gpu_objects(&facts, &sel)).await;
    let started = Instant::now();
    match wait_for_gpus(client, 1, 4, Duration::from_secs(120)).await {
        Err(e @ GpuWaitError::Failed { .. }) => {
            let text = e.to_string();
            assert!(text.contains("NoGPUNodes"), "{text}");
            assert!(text.contains("fix:"), "{text}");
        }
        other => panic!("expected a failure naming NoGPUNodes: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a failure must not wait for the timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_toolkit_times_out_naming_it_and_its_pod() {
    let Some(g) = gpu_cluster("a_stuck_toolkit_times_out_naming_it_and_its_pod", Distro::K3s, 1).await else {
        return;
    };
    // The toolkit cannot configure containerd: its container exits 1 and crash-loops.
    g.cluster
        .node()
        .handle()
        .script_exit(OPERATOR_NS, "nvidia-container-toolkit-daemonset-", 1);
    let client = &g.client;
    let (facts, sel) = selection(Distro::K3s);
    apply(client, &gpu_objects(&facts, &sel)).await;
    // Long enough for the operator to deploy its operands and report them not ready.
    match wait_for_gpus(client, 1, 4, Duration::from_secs(25)).await {
        Err(GpuWaitError::TimedOut { reason }) => {
            assert!(reason.contains("the NVIDIA container toolkit"), "{reason}");
            assert!(reason.contains("nvidia-container-toolkit-daemonset-"), "{reason}");
            assert!(reason.contains("CrashLoopBackOff"), "{reason}");
        }
        other => panic!("expected a timeout naming the toolkit: {other:?}"),
    }
    assert_eq!(
        node_gpus(client).await,
        None,
        "no GPU is advertised while the toolkit is stuck"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_before_the_chart_is_applied_says_the_operator_is_missing() {
    let Some(g) = gpu_cluster(
        "a_timeout_before_the_chart_is_applied_says_the_operator_is_missing",
        Distro::K3s,
        1,
    )
    .await
    else {
        return;
    };
    match wait_for_gpus(&g.client, 1, 4, Duration::from_millis(500)).await {
        Err(GpuWaitError::TimedOut { reason }) => {
            assert!(
                reason.contains("ClusterPolicy cluster-policy does not exist yet"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_pod_succeeds_and_is_deleted() {
    let Some(g) = gpu_cluster("verify_pod_succeeds_and_is_deleted", Distro::K3s, 1).await else {
        return;
    };
    let client = &g.client;
    let (facts, sel) = selection(Distro::K3s);
    apply(client, &gpu_objects(&facts, &sel)).await;
    assert_eq!(wait_for_gpus(client, 1, 4, Duration::from_secs(90)).await, Ok(4));
    // It ran: kstrap waits for Succeeded, then deletes it.
    verify_gpu(client, Duration::from_secs(30)).await.unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), OPERATOR_NS);
    let gone = pods.get_opt("kstrap-verify-gpu").await.unwrap();
    assert!(
        gone.is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "the verification pod is deleted"
    );
    // A second run finds nothing left over (or waits for it to go) and succeeds again.
    verify_gpu(client, Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_pod_that_cannot_run_times_out_naming_why_and_cleans_up() {
    let Some(g) = gpu_cluster(
        "verify_pod_that_cannot_run_times_out_naming_why_and_cleans_up",
        Distro::K3s,
        1,
    )
    .await
    else {
        return;
    };
    let client = &g.client;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), OPERATOR_NS);
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NS}});
    let rc = serde_json::json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"}, "handler": "nvidia"});
    apply(client, &[ns, rc]).await;
    // No GPU advertised: the real scheduler leaves the pod Pending and says why.
    match verify_gpu(client, Duration::from_secs(3)).await {
        Err(GpuWaitError::TimedOut { reason }) => {
            assert!(reason.contains("Insufficient nvidia.com/gpu"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let left = pods.get_opt("kstrap-verify-gpu").await.unwrap();
    assert!(left.is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
    // A GPU share but no `nvidia` runtime in containerd (the toolkit never ran): the sandbox
    // cannot start and the pod stays ContainerCreating.
    g.cluster.node().set(|c| {
        c.extended.insert("nvidia.com/gpu".into(), "1".into());
    });
    match verify_gpu(client, Duration::from_secs(3)).await {
        Err(GpuWaitError::TimedOut { reason }) => {
            assert!(reason.contains("ContainerCreating"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let left = pods.get_opt("kstrap-verify-gpu").await.unwrap();
    assert!(left.is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
}
