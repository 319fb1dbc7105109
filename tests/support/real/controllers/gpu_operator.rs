//! **Test double** of the NVIDIA GPU operator v26.3.2 (NVIDIA/gpu-operator, tag v26.3.2) and of
//! what its operands and node-feature-discovery do on the node.
//!
//! The chart ([`render_chart`], `deployments/gpu-operator`) makes the operator's Deployment,
//! the ClusterPolicy `cluster-policy` from the values and NFD's Deployments and worker
//! DaemonSet. Once the operator's pod runs, its ClusterPolicy reconciler
//! (`controllers/clusterpolicy_controller.go`, `state_manager.go`, `object_controls.go`) does,
//! on ClusterPolicy and DaemonSet events, on node label changes that pass its predicate
//! (`addWatchNewGPUNode`: a node with NFD's NVIDIA PCI label but without
//! `nvidia.com/gpu.present=true`, or the reverse) and on its requeues:
//! - `labelGPUNodes`: a node with `feature.node.kubernetes.io/pci-10de.present=true` (or the
//!   0300/0302 class forms) gets `nvidia.com/gpu.present=true` and the container workload's
//!   `nvidia.com/gpu.deploy.<operand>=true` labels; NFD labels anywhere (`feature.node.kubernetes.io/`)
//!   mean `hasNFDLabels`;
//! - `pre-requisites`: RuntimeClass `nvidia` (handler `nvidia`, label
//!   `app.kubernetes.io/component=gpu-operator`), controlled by the ClusterPolicy; an existing
//!   one is taken over with an Update (`transformRuntimeClass`);
//! - the operand DaemonSets in the operator's namespace, each with the node selector of its
//!   deploy label, controlled by the ClusterPolicy, rewritten only when their
//!   `nvidia.com/last-applied-hash` changes: `nvidia-driver-daemonset` (driver.enabled),
//!   `nvidia-container-toolkit-daemonset`, `nvidia-operator-validator`,
//!   `nvidia-device-plugin-daemonset`, `nvidia-dcgm-exporter` (+ its Service), `gpu-feature-
//!   discovery`; all but the driver and toolkit run with `runtimeClassName: nvidia`
//!   (`setRuntimeClassName`). A state is ready when its DaemonSet wants no pod or has none
//!   unavailable (`isDaemonSetReady`);
//! - status (`state`, `namespace`, conditions Ready/Error as `SetConditionsReady/Error` write
//!   them, no observedGeneration): a state not ready → `notReady`, Error=True reason
//!   OperandNotReady "ClusterPolicy is not ready, states not ready: [...]", requeue 5 s; no NFD
//!   label on any node → `ready` with Ready reason **NFDLabelsMissing** "No NFD labels found",
//!   requeue 45 s; no GPU node → `ready`, reason NoGPUNodes; else `ready`, reason Reconciled.
//!
//! On the node ([`operands`]), as the programs in those pods would:
//! - the NFD worker, [`NFD_DELAY`] after it runs, labels the node with its kernel/OS features and,
//!   when the node has NVIDIA GPUs (`NodeConfig::gpus`), `feature.node.kubernetes.io/pci-10de.present=true`;
//! - the toolkit, once running, gives containerd the `nvidia` runtime (the node's
//!   `runtimeHandlers`), so the sandboxes of the `nvidia` RuntimeClass start;
//! - each device-plugin pod, when it starts, reads the ConfigMap `devicePlugin.config.name`'s key
//!   `devicePlugin.config.default` and the kubelet advertises `nvidia.com/gpu` (or
//!   `nvidia.com/gpu.shared` with renameByDefault) = GPUs × replicas. A running plugin never
//!   re-reads a changed ConfigMap: the DaemonSet must be restarted (a plugin started before the
//!   ConfigMap existed waits for it, as its config-manager init container does);
//! - GPU feature discovery, while running, labels `nvidia.com/gpu.count`, `nvidia.com/gpu.replicas`
//!   and `nvidia.com/gpu.sharing-strategy` from the config the running plugin read (both read the
//!   same ConfigMap key through their config managers).
//!
//! Not played: the driver container's work, MIG, MPS daemons, DCGM itself, NVIDIADriver CRs,
//! sandbox workloads, several nodes, the operator's ServiceAccounts/RBAC for operands (their pods
//! use the namespace's default ServiceAccount).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::sync::Notify;

use super::super::node::NodeHandle;
use super::charts::{GPU_OPERATOR, merge};
use super::{cluster_policy_resource, json_of, notify_on, s};

pub const CLUSTER_POLICY: &str = "cluster-policy";
const MANAGER: &str = "gpu-operator";
const HASH: &str = "nvidia.com/last-applied-hash";
/// How long NFD takes from its worker running to the node's labels.
pub const NFD_DELAY: Duration = Duration::from_millis(1500);
const NFD_PREFIX: &str = "feature.node.kubernetes.io/";
pub const PCI_LABELS: [&str; 3] = [
    "feature.node.kubernetes.io/pci-10de.present",
    "feature.node.kubernetes.io/pci-0302_10de.present",
    "feature.node.kubernetes.io/pci-0300_10de.present",
];
const PRESENT: &str = "nvidia.com/gpu.present";
/// `gpuStateLabels[container]` (state_manager.go).
const STATE_LABELS: [&str; 8] = [
    "nvidia.com/gpu.deploy.driver",
    "nvidia.com/gpu.deploy.gpu-feature-discovery",
    "nvidia.com/gpu.deploy.container-toolkit",
    "nvidia.com/gpu.deploy.device-plugin",
    "nvidia.com/gpu.deploy.dcgm",
    "nvidia.com/gpu.deploy.dcgm-exporter",
    "nvidia.com/gpu.deploy.node-status-exporter",
    "nvidia.com/gpu.deploy.operator-validator",
];

pub async fn run(client: kube::Client, node: NodeHandle) {
    let notify = Arc::new(Notify::new());
    let cps = super::dynamic_api(&client, &cluster_policy_resource(), None);
    tokio::spawn(notify_on(cps, watcher::Config::default(), notify.clone()));
    tokio::spawn(notify_on(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
        notify.clone(),
    ));
    tokio::spawn(notify_on(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default().labels("app.kubernetes.io/component=gpu-operator"),
        notify.clone(),
    ));
    tokio::spawn(node_predicate(client.clone(), notify.clone()));
    tokio::spawn(super::gpu_operands::operands(client.clone(), node));
    loop {
        let requeue = match reconcile(&client).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("gpu-operator stand-in: {e}");
                Some(Duration::from_secs(1))
            }
        };
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(requeue.unwrap_or(Duration::from_secs(3600))) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn has_gpu_labels(l: &BTreeMap<String, String>) -> bool {
    PCI_LABELS.iter().any(|k| l.get(*k).map(String::as_str) == Some("true"))
}

fn has_common(l: &BTreeMap<String, String>) -> bool {
    l.get(PRESENT).map(String::as_str) == Some("true")
}

/// The operator's Node watch with its predicate (`addWatchNewGPUNode`).
async fn node_predicate(client: kube::Client, notify: Arc<Notify>) {
    let mut last: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let mut stream = watcher(Api::<Node>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    // An error (the server gone a moment) ends nothing: the watcher retries with backoff.
    while let Some(event) = stream.next().await {
        let Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) = event else {
            continue;
        };
        let name = n.metadata.name.clone().unwrap_or_default();
        let labels = n.metadata.labels.clone().unwrap_or_default();
        let fire = match last.get(&name) {
            None => has_gpu_labels(&labels),
            Some(_) => {
                (has_gpu_labels(&labels) && !has_common(&labels)) || (!has_gpu_labels(&labels) && has_common(&labels))
            }
        };
        last.insert(name, labels);
        if fire {
            notify.notify_one();
        }
    }
}

/// The namespace of a running operator, if one runs.
async fn operator_namespace(client: &kube::Client) -> Option<String> {
    let api: Api<Deployment> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels("app.kubernetes.io/component=gpu-operator"))
        .await
        .ok()?;
    list.items
        .into_iter()
        .find(|d| {
            d.metadata.name.as_deref() == Some("gpu-operator")
                && d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) > 0
        })
        .and_then(|d| d.metadata.namespace)
}

/// One ClusterPolicy reconcile; returns the requeue.
async fn reconcile(client: &kube::Client) -> Result<Option<Duration>, String> {
    let Some(ns) = operator_namespace(client).await else {
        return Ok(None);
    };
    let cps = super::dynamic_api(client, &cluster_policy_resource(), None);
    let Some(cp) = cps.get_opt(CLUSTER_POLICY).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let cp = json_of(&cp);
    let (has_nfd, gpu_nodes) = label_gpu_nodes(client).await?;
    let owner = json!([{"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy", "name": CLUSTER_POLICY,
        "uid": s(&cp, "/metadata/uid"), "controller": true, "blockOwnerDeletion": true}]);
    runtime_class(client, &cp, &owner).await?;
    let mut not_ready = Vec::new();
    for (state, name, enabled) in operand_states(&cp) {
        let ready = ensure_daemonset(client, &ns, &cp, &owner, name, enabled).await?;
        if !ready {
            not_ready.push(state);
        }
    }
    let (state, cond, requeue) = if !not_ready.is_empty() {
        let msg = format!(
            "ClusterPolicy is not ready, states not ready: [{}]",
            not_ready.join(" ")
        );
        (
            "notReady",
            ("Error", "OperandNotReady", msg),
            Some(Duration::from_secs(5)),
        )
    } else if !has_nfd {
        (
            "ready",
            ("Ready", "NFDLabelsMissing", "No NFD labels found".to_string()),
            Some(Duration::from_secs(45)),
        )
    } else if gpu_nodes == 0 {
        let msg = "No GPU node found, watching for new nodes to join the cluster.".to_string();
        ("ready", ("Ready", "NoGPUNodes", msg), None)
    } else {
        let msg = "ClusterPolicy is ready as all resources have been successfully reconciled".to_string();
        ("ready", ("Ready", "Reconciled", msg), None)
    };
    write_status(&cps, &cp, state, &ns, cond).await?;
    Ok(requeue)
}

/// `meta.SetStatusCondition` of Ready and Error as `updateConditions` does.
async fn write_status(
    cps: &Api<kube::api::DynamicObject>,
    cp: &Value,
    state: &str,
    ns: &str,
    (kind, reason, message): (&str, &str, String),
) -> Result<(), String> {
    let (ready, error) = if kind == "Ready" {
        (("True", reason, message.as_str()), ("False", "Ready", ""))
    } else {
        (("False", "Error", ""), ("True", reason, message.as_str()))
    };
    let old = cp["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let cond = |t: &str, (st, r, m): (&str, &str, &str)| {
        let prev = old.iter().find(|c| c["type"] == t);
        let since = match prev {
            Some(p) if p["status"] == st => p["lastTransitionTime"].clone(),
            _ => json!(super::now()),
        };
        json!({"type": t, "status": st, "reason": r, "message": m, "lastTransitionTime": since})
    };
    let status = json!({"state": state, "namespace": ns,
        "conditions": [cond("Ready", ready), cond("Error", error)]});
    let same = cp["status"]["state"] == status["state"]
        && cp["status"]["namespace"] == status["namespace"]
        && old.len() == 2
        && old
            .iter()
            .zip(status["conditions"].as_array().into_iter().flatten())
            .all(|(a, b)| {
                a["type"] == b["type"]
                    && a["status"] == b["status"]
                    && a["reason"] == b["reason"]
                    && a["message"].as_str().unwrap_or("") == b["message"].as_str().unwrap_or("")
            });
    if same {
        return Ok(());
    }
    super::replace_status(cps, CLUSTER_POLICY, status)
        .await
        .map_err(|e| format!("ClusterPolicy status: {e}"))
}

/// `labelGPUNodes`: returns (any node has NFD labels, GPU nodes).
async fn label_gpu_nodes(client: &kube::Client) -> Result<(bool, u32), String> {
    let api: Api<Node> = Api::all(client.clone());
    let nodes = api.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
    let mut has_nfd = false;
    let mut gpu_nodes = 0;
    for n in nodes.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let labels = n.metadata.labels.clone().unwrap_or_default();
        has_nfd |= labels.keys().any(|k| k.starts_with(NFD_PREFIX));
        let mut patch = serde_json::Map::new();
        let gpu = has_gpu_labels(&labels);
        let common = if !has_common(&labels) && gpu {
            patch.insert(PRESENT.into(), json!("true"));
            true
        } else if has_common(&labels) && !gpu {
            patch.insert(PRESENT.into(), json!("false"));
            for k in STATE_LABELS {
                if labels.contains_key(k) {
                    patch.insert(k.into(), Value::Null);
                }
            }
            false
        } else {
            has_common(&labels)
        };
        if common {
            for k in STATE_LABELS {
                if !labels.contains_key(k) {
                    patch.insert(k.into(), json!("true"));
                }
            }
            gpu_nodes += 1;
        }
        if !patch.is_empty() {
            let body = json!({"metadata": {"labels": patch}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
                .map_err(|e| format!("label node {name}: {e}"))?;
        }
    }
    Ok((has_nfd, gpu_nodes))
}

fn runtime_class_name(cp: &Value) -> String {
    match s(cp, "/spec/operator/runtimeClass") {
        "" => "nvidia".to_string(),
        n => n.to_string(),
    }
}

/// `transformRuntimeClass`: create, or Update an existing one into the operator's.
async fn runtime_class(client: &kube::Client, cp: &Value, owner: &Value) -> Result<(), String> {
    let name = runtime_class_name(cp);
    let api: Api<k8s_openapi::api::node::v1::RuntimeClass> = Api::all(client.clone());
    let mut desired = json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "handler": name,
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": "gpu-operator"}, "ownerReferences": owner}});
    match api.get_opt(&name).await.map_err(|e| e.to_string())? {
        None => {
            let rc = serde_json::from_value(desired).map_err(|e| e.to_string())?;
            api.create(&PostParams::default(), &rc)
                .await
                .map_err(|e| e.to_string())?;
        }
        Some(live) => {
            let l = json_of(&live);
            if l["metadata"]["labels"] == desired["metadata"]["labels"]
                && l["metadata"]["ownerReferences"] == desired["metadata"]["ownerReferences"]
            {
                return Ok(());
            }
            desired["metadata"]["resourceVersion"] = l["metadata"]["resourceVersion"].clone();
            let rc = serde_json::from_value(desired).map_err(|e| e.to_string())?;
            api.replace(&name, &PostParams::default(), &rc)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// (state name, DaemonSet, enabled) in the operator's order.
fn operand_states(cp: &Value) -> Vec<(&'static str, &'static str, bool)> {
    let on = |k: &str, default: bool| cp["spec"][k]["enabled"].as_bool().unwrap_or(default);
    vec![
        ("state-driver", "nvidia-driver-daemonset", on("driver", true)),
        (
            "state-container-toolkit",
            "nvidia-container-toolkit-daemonset",
            on("toolkit", true),
        ),
        ("state-operator-validation", "nvidia-operator-validator", true),
        (
            "state-device-plugin",
            "nvidia-device-plugin-daemonset",
            on("devicePlugin", true),
        ),
        ("state-dcgm-exporter", "nvidia-dcgm-exporter", on("dcgmExporter", true)),
        ("gpu-feature-discovery", "gpu-feature-discovery", on("gfd", true)),
    ]
}

fn component_image(cp: &Value, key: &str) -> String {
    let c = &cp["spec"][key];
    let version = c["version"].as_str().unwrap_or(GPU_OPERATOR.app_version);
    format!("{}/{}:{version}", s(c, "/repository"), s(c, "/image"))
}

/// The DaemonSet of one operand as the operator's assets and transforms make it.
fn daemonset(cp: &Value, ns: &str, owner: &Value, name: &str) -> Value {
    let (key, deploy, container, runtime_class, extra_labels) = match name {
        "nvidia-driver-daemonset" => (
            "driver",
            "driver",
            "nvidia-driver-ctr",
            false,
            json!({"app.kubernetes.io/component": "nvidia-driver"}),
        ),
        "nvidia-container-toolkit-daemonset" => (
            "toolkit",
            "container-toolkit",
            "nvidia-container-toolkit-ctr",
            false,
            json!({}),
        ),
        "nvidia-operator-validator" => (
            "validator",
            "operator-validator",
            "nvidia-operator-validator",
            true,
            json!({"app.kubernetes.io/part-of": "gpu-operator"}),
        ),
        "nvidia-device-plugin-daemonset" => ("devicePlugin", "device-plugin", "nvidia-device-plugin", true, json!({})),
        "nvidia-dcgm-exporter" => ("dcgmExporter", "dcgm-exporter", "nvidia-dcgm-exporter", true, json!({})),
        _ => (
            "gfd",
            "gpu-feature-discovery",
            "gpu-feature-discovery",
            true,
            json!({"app.kubernetes.io/part-of": "nvidia-gpu"}),
        ),
    };
    let mut labels = json!({"app": name});
    merge(&mut labels, &extra_labels);
    let mut c = json!({"name": container, "image": component_image(cp, key), "securityContext": {"privileged": true}});
    if let Some(env) = cp["spec"][key]["env"].as_array() {
        c["env"] = json!(env);
    }
    let mut pod = json!({
        "nodeSelector": {format!("nvidia.com/gpu.deploy.{deploy}"): "true"},
        "tolerations": cp["spec"]["daemonsets"]["tolerations"],
        "priorityClassName": cp["spec"]["daemonsets"]["priorityClassName"],
        "containers": [c],
    });
    if runtime_class {
        pod["runtimeClassName"] = json!(runtime_class_name(cp));
    }
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod}}})
}

/// Creates or (when its hash changed) updates the operand; deletes a disabled one. Ready as
/// `isDaemonSetReady` decides.
async fn ensure_daemonset(
    client: &kube::Client,
    ns: &str,
    cp: &Value,
    owner: &Value,
    name: &str,
    enabled: bool,
) -> Result<bool, String> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let live = api.get_opt(name).await.map_err(|e| e.to_string())?;
    if !enabled {
        if live.is_some() {
            let _ = api.delete(name, &Default::default()).await;
        }
        return Ok(true);
    }
    let mut desired = daemonset(cp, ns, owner, name);
    let hash: String = sha2::Sha256::digest(desired.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    desired["metadata"]["annotations"] = json!({HASH: hash});
    if name == "nvidia-dcgm-exporter" {
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}, "ownerReferences": owner},
            "spec": {"selector": {"app": name}, "ports": [{"name": "gpu-metrics", "port": 9400, "targetPort": 9400, "protocol": "TCP"}]}});
        super::super::apply_json(client, &svc, MANAGER)
            .await
            .map_err(|e| e.to_string())?;
    }
    match live {
        None => {
            let ds: DaemonSet = serde_json::from_value(desired).map_err(|e| e.to_string())?;
            api.create(&PostParams::default(), &ds)
                .await
                .map_err(|e| format!("DaemonSet {name}: {e}"))?;
            Ok(true)
        }
        Some(live) => {
            let l = json_of(&live);
            if s(&l, &format!("/metadata/annotations/{}", HASH.replace('/', "~1"))) != hash {
                desired["metadata"]["resourceVersion"] = l["metadata"]["resourceVersion"].clone();
                let ds: DaemonSet = serde_json::from_value(desired).map_err(|e| e.to_string())?;
                api.replace(name, &PostParams::default(), &ds)
                    .await
                    .map_err(|e| format!("DaemonSet {name}: {e}"))?;
            }
            let st = &l["status"];
            let n = |k: &str| st[k].as_i64().unwrap_or(0);
            Ok(n("desiredNumberScheduled") == 0 || n("numberUnavailable") == 0)
        }
    }
}
