//! The GPU stage end to end against the simulated API server (test double; its GPU-operator
//! simulation is in `tests/support/sim/gpu_operator.rs`): the objects `gpu_objects` generates are
//! server-side applied with the real `kube::Client`, then `gpu::wait::wait_for_gpus` watches the
//! node, the ClusterPolicy and the validator pods until the node advertises GPUs × replicas.

use std::time::{Duration, Instant};

use kstrap::distro::Distro;
use kstrap::gpu::wait::{GpuWaitError, verify_gpu, wait_for_gpus};
use kstrap::gpu::{device_plugin_restart_patch, gpu_objects, time_slicing_config};
use kstrap::kube::ops::Discovery;
use kstrap::profile::{self, Overrides, Selection, Sharing, select};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::sim::{Fault, SimConfig, SimulatedApiServer};
use crate::support::fixture;

fn selection(distro: Distro) -> (kstrap::facts::HostFacts, Selection) {
    let facts = fixture("rtx5090-96gb");
    let profiles = profile::embedded().expect("embedded profiles");
    let overrides = Overrides {
        profile: Some("rtx-5090".into()),
        distro: Some(distro),
        force: false,
    };
    let sel = select(&facts, &profiles, &overrides).expect("rtx-5090 fits the fixture");
    (facts, sel)
}

fn sim(gpus: u32, faults: Vec<Fault>) -> SimulatedApiServer {
    SimulatedApiServer::start(SimConfig {
        gpus,
        faults,
        ready_delay: Duration::from_millis(10),
        ..SimConfig::default()
    })
}

/// Server-side apply, GVK resolved by discovery (as the engine does).
async fn apply(client: &kube::Client, objects: &[Value]) {
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

fn node_gpus(sim: &SimulatedApiServer) -> Option<String> {
    sim.get("v1", "Node", None, "sim-node").and_then(|n| {
        n["status"]["allocatable"]["nvidia.com/gpu"]
            .as_str()
            .map(str::to_string)
    })
}

#[tokio::test]
async fn operator_installs_then_replicas_change_needs_a_device_plugin_restart() {
    let sim = sim(1, Vec::new());
    let client = sim.client().await;
    let (facts, sel) = selection(Distro::K3s);
    let replicas = sel.profile.gpu.replicas;
    assert_eq!(replicas, 4, "the rtx-5090 profile shares the GPU 4 ways");
    let objects = gpu_objects(&facts, &sel);
    assert!(objects.iter().any(|o| o["kind"] == "HelmChart"));
    apply(&client, &objects).await;

    let started = Instant::now();
    let got = wait_for_gpus(&client, 1, replicas, Duration::from_secs(5)).await;
    assert_eq!(got, Ok(4), "1 GPU × 4 replicas");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    let node = sim.get("v1", "Node", None, "sim-node").unwrap();
    assert_eq!(node["metadata"]["labels"]["nvidia.com/gpu.replicas"], "4");
    assert_eq!(
        node["metadata"]["labels"]["nvidia.com/gpu.sharing-strategy"],
        "time-slicing"
    );

    // Re-run with 8 replicas: the ConfigMap changes, but the running device plugin keeps its config.
    apply(&client, &[time_slicing_config(8, Sharing::TimeSlicing, false)]).await;
    let not_yet = wait_for_gpus(&client, 1, 8, Duration::from_millis(300)).await;
    match not_yet {
        Err(GpuWaitError::TimedOut { reason }) => {
            assert!(reason.contains("advertises 4, expected 8"), "{reason}")
        }
        other => panic!("the old plugin must still advertise 4: {other:?}"),
    }
    assert_eq!(node_gpus(&sim).as_deref(), Some("4"));

    // Restarting the DaemonSet (as `up` does) makes the new plugin read the new config.
    let ds: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client.clone(), "gpu-operator");
    ds.patch(
        "nvidia-device-plugin-daemonset",
        &PatchParams::default(),
        &Patch::Strategic(device_plugin_restart_patch("2026-07-01T10:00:00Z")),
    )
    .await
    .unwrap();
    assert_eq!(wait_for_gpus(&client, 1, 8, Duration::from_secs(5)).await, Ok(8));
}

#[tokio::test]
async fn k0s_chart_installs_the_operator_too() {
    let sim = sim(2, Vec::new());
    let client = sim.client().await;
    let (facts, sel) = selection(Distro::K0s);
    let objects = gpu_objects(&facts, &sel);
    assert!(objects.iter().any(|o| o["kind"] == "Chart"));
    apply(&client, &objects).await;
    // Two physical GPUs in the simulation: 2 × 4.
    assert_eq!(wait_for_gpus(&client, 2, 4, Duration::from_secs(5)).await, Ok(8));
    let chart = sim
        .get(
            "helm.k0sproject.io/v1beta1",
            "Chart",
            Some("kube-system"),
            "gpu-operator",
        )
        .unwrap();
    assert_eq!(chart["status"]["releaseName"], "gpu-operator");
}

#[tokio::test]
async fn no_gpu_nodes_fails_at_once_with_the_reason() {
    let sim = sim(1, vec![Fault::GpuNoNodes]);
    let client = sim.client().await;
    let (facts, sel) = selection(Distro::K3s);
    apply(&client, &gpu_objects(&facts, &sel)).await;
    let started = Instant::now();
    match wait_for_gpus(&client, 1, 4, Duration::from_secs(10)).await {
        Err(e @ GpuWaitError::Failed { .. }) => {
            let text = e.to_string();
            assert!(text.contains("NoGPUNodes"), "{text}");
            assert!(text.contains("fix:"), "{text}");
        }
        other => panic!("expected a failure naming NoGPUNodes: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a failure must not wait for the timeout"
    );
}

#[tokio::test]
async fn a_stuck_toolkit_times_out_naming_it_and_its_pod() {
    let sim = sim(1, vec![Fault::GpuToolkitStuck]);
    let client = sim.client().await;
    let (facts, sel) = selection(Distro::K3s);
    apply(&client, &gpu_objects(&facts, &sel)).await;
    match wait_for_gpus(&client, 1, 4, Duration::from_millis(600)).await {
        Err(GpuWaitError::TimedOut { reason }) => {
            assert!(reason.contains("the NVIDIA container toolkit"), "{reason}");
            assert!(reason.contains("nvidia-container-toolkit-daemonset-"), "{reason}");
            assert!(reason.contains("CrashLoopBackOff"), "{reason}");
        }
        other => panic!("expected a timeout naming the toolkit: {other:?}"),
    }
    assert_eq!(node_gpus(&sim), None, "no GPU is advertised while the toolkit is stuck");
}

#[tokio::test]
async fn a_timeout_before_the_chart_is_applied_says_the_operator_is_missing() {
    let sim = sim(1, Vec::new());
    let client = sim.client().await;
    match wait_for_gpus(&client, 1, 4, Duration::from_millis(300)).await {
        Err(GpuWaitError::TimedOut { reason }) => {
            assert!(
                reason.contains("ClusterPolicy cluster-policy does not exist yet"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn verify_pod_succeeds_and_is_deleted() {
    let sim = sim(1, Vec::new());
    let client = sim.client().await;
    let (facts, sel) = selection(Distro::K3s);
    apply(&client, &gpu_objects(&facts, &sel)).await;
    assert_eq!(wait_for_gpus(&client, 1, 4, Duration::from_secs(5)).await, Ok(4));
    verify_gpu(&client, Duration::from_secs(5)).await.unwrap();
    assert!(
        sim.get("v1", "Pod", Some("gpu-operator"), "kstrap-verify-gpu")
            .is_none()
    );
    // It ran: the pod was created and reached Succeeded before being deleted.
    let created = sim
        .requests()
        .iter()
        .any(|r| r.method == "POST" && r.path == "/api/v1/namespaces/gpu-operator/pods" && r.status == 201);
    assert!(created);
    // A second run finds nothing left over and succeeds again.
    verify_gpu(&client, Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn verify_pod_that_cannot_run_times_out_naming_why_and_cleans_up() {
    let sim = sim(1, Vec::new());
    let client = sim.client().await;
    // No GPU advertised: the pod cannot be scheduled, so the wait times out naming the scheduler.
    sim.set_node_allocatable("nvidia.com/gpu", "0");
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gpu-operator"}});
    apply(&client, &[ns]).await;
    match verify_gpu(&client, Duration::from_millis(400)).await {
        Err(GpuWaitError::TimedOut { reason }) => {
            assert!(reason.contains("Insufficient nvidia.com/gpu"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        sim.get("v1", "Pod", Some("gpu-operator"), "kstrap-verify-gpu")
            .is_none()
    );
    // Crash-looping nvidia-smi (a broken runtime) is reported with its container state.
    sim.set_node_allocatable("nvidia.com/gpu", "1");
    sim.inject(Fault::PodWaiting {
        owner_name: "kstrap-verify-gpu".into(),
        reason: "RunContainerError".into(),
        message: "no runtime for \"nvidia\" is configured".into(),
    });
    match verify_gpu(&client, Duration::from_millis(400)).await {
        Err(GpuWaitError::TimedOut { reason }) => {
            assert!(reason.contains("RunContainerError"), "{reason}");
            assert!(reason.contains("no runtime for"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        sim.get("v1", "Pod", Some("gpu-operator"), "kstrap-verify-gpu")
            .is_none()
    );
}
