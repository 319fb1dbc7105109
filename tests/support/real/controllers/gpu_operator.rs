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
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::sync::Notify;

use super::super::NODE_NAME;
use super::super::node::NodeHandle;
use super::charts::{GPU_OPERATOR, merge};
use super::{cluster_policy_resource, json_of, notify_on, pod_running, s};

pub const CLUSTER_POLICY: &str = "cluster-policy";
const MANAGER: &str = "gpu-operator";
const HASH: &str = "nvidia.com/last-applied-hash";
/// How long NFD takes from its worker running to the node's labels.
pub const NFD_DELAY: Duration = Duration::from_millis(1500);
const NFD_PREFIX: &str = "feature.node.kubernetes.io/";
const PCI_LABELS: [&str; 3] = [
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

/// `deployments/gpu-operator/values.yaml` (v26.3.2) for the fields the ClusterPolicy template
/// renders here.
fn chart_defaults() -> Value {
    json!({
        "nfd": {"enabled": true},
        "operator": {"repository": "nvcr.io/nvidia", "image": "gpu-operator", "priorityClassName": "system-node-critical", "runtimeClass": "nvidia"},
        "daemonsets": {"priorityClassName": "system-node-critical",
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
        "driver": {"enabled": true, "repository": "nvcr.io/nvidia", "image": "driver", "version": "580.126.20"},
        "toolkit": {"enabled": true, "repository": "nvcr.io/nvidia/k8s", "image": "container-toolkit", "version": "v1.19.1"},
        "devicePlugin": {"enabled": true, "repository": "nvcr.io/nvidia", "image": "k8s-device-plugin", "version": "v0.19.2"},
        "dcgmExporter": {"enabled": true, "repository": "nvcr.io/nvidia/k8s", "image": "dcgm-exporter", "version": "4.5.3-4.8.2-distroless"},
        "dcgm": {"enabled": false},
        "gfd": {"enabled": true, "repository": "nvcr.io/nvidia", "image": "k8s-device-plugin", "version": "v0.19.2"},
        "nodeStatusExporter": {"enabled": false},
        "validator": {"repository": "nvcr.io/nvidia", "image": "gpu-operator"},
        "migManager": {"enabled": true},
        "cdi": {"enabled": true},
        "hostPaths": {"rootFS": "/", "driverInstallDir": "/run/nvidia/driver"},
    })
}

fn pick(v: &Value, keys: &[&str]) -> Value {
    let mut out = json!({});
    for k in keys {
        if !v[*k].is_null() {
            out[*k] = v[*k].clone();
        }
    }
    out
}

/// The chart's objects for release `release` in `ns` (operator, NFD subchart, ClusterPolicy).
pub fn render_chart(release: &str, ns: &str, user: &Value) -> Vec<Value> {
    let mut v = chart_defaults();
    merge(&mut v, user);
    let helm = |extra: Value| {
        let mut l = json!({"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/name": "gpu-operator",
            "app.kubernetes.io/instance": release, "app.kubernetes.io/version": GPU_OPERATOR.app_version,
            "helm.sh/chart": format!("gpu-operator-{}", GPU_OPERATOR.version)});
        merge(&mut l, &extra);
        l
    };
    let ann = json!({"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": ns});
    let image = |c: &Value, default_version: &str| {
        let version = c["version"].as_str().unwrap_or(default_version);
        format!("{}/{}:{version}", s(c, "/repository"), s(c, "/image"))
    };
    let select = json!({"app.kubernetes.io/component": "gpu-operator", "app": "gpu-operator"});
    let mut out = vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "gpu-operator", "namespace": ns, "labels": helm(json!({})), "annotations": ann}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "gpu-operator", "namespace": ns, "annotations": ann,
                "labels": helm(json!({"app.kubernetes.io/component": "gpu-operator", "nvidia.com/gpu-driver-upgrade-drain.skip": "true"}))},
            "spec": {"replicas": 1, "selector": {"matchLabels": select},
                "template": {"metadata": {"labels": helm(json!({"app.kubernetes.io/component": "gpu-operator", "app": "gpu-operator"}))},
                    "spec": {"serviceAccountName": "gpu-operator", "priorityClassName": v["operator"]["priorityClassName"],
                        "containers": [{"name": "gpu-operator", "image": image(&v["operator"], GPU_OPERATOR.app_version),
                            "command": ["gpu-operator"],
                            "env": [{"name": "OPERATOR_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]}]}}}}),
    ];
    if v["nfd"]["enabled"].as_bool() != Some(false) {
        // node-feature-discovery 0.18.3: fullname `<release>-node-feature-discovery`.
        let full = format!("{release}-node-feature-discovery");
        let nfd_image = "registry.k8s.io/nfd/node-feature-discovery:v0.18.3";
        for (role, kind) in [("master", "Deployment"), ("gc", "Deployment"), ("worker", "DaemonSet")] {
            let sel = json!({"app.kubernetes.io/name": "node-feature-discovery", "app.kubernetes.io/instance": release, "role": role});
            let mut labels = sel.clone();
            labels["app.kubernetes.io/managed-by"] = json!("Helm");
            let mut spec = json!({"selector": {"matchLabels": sel},
                "template": {"metadata": {"labels": sel},
                    "spec": {"containers": [{"name": role, "image": nfd_image, "command": [format!("nfd-{role}")]}]}}});
            if kind == "Deployment" {
                spec["replicas"] = json!(1);
            }
            out.push(json!({"apiVersion": "apps/v1", "kind": kind,
                "metadata": {"name": format!("{full}-{role}"), "namespace": ns, "labels": labels, "annotations": ann},
                "spec": spec}));
        }
    }
    let comp = |k: &str| pick(&v[k], &["enabled", "repository", "image", "version", "env", "config"]);
    out.push(json!({"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy",
        "metadata": {"name": CLUSTER_POLICY, "annotations": ann, "labels": helm(json!({"app.kubernetes.io/component": "gpu-operator"}))},
        "spec": {
            "hostPaths": v["hostPaths"],
            "operator": pick(&v["operator"], &["runtimeClass"]),
            "daemonsets": pick(&v["daemonsets"], &["priorityClassName", "tolerations"]),
            "driver": comp("driver"), "toolkit": comp("toolkit"), "devicePlugin": comp("devicePlugin"),
            "dcgmExporter": comp("dcgmExporter"), "dcgm": comp("dcgm"), "gfd": comp("gfd"),
            "nodeStatusExporter": comp("nodeStatusExporter"), "validator": comp("validator"),
            "migManager": comp("migManager"), "cdi": pick(&v["cdi"], &["enabled"]),
        }}));
    out
}

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
    tokio::spawn(operands(client.clone(), node));
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
    while let Some(Ok(event)) = stream.next().await {
        let (watcher::Event::Apply(n) | watcher::Event::InitApply(n)) = event else {
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

/// What the programs in the operand pods on the node do.
async fn operands(client: kube::Client, node: NodeHandle) {
    let notify = Arc::new(Notify::new());
    let pods: Api<Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={NODE_NAME}"));
    tokio::spawn(notify_on(pods.clone(), cfg, notify.clone()));
    tokio::spawn(notify_on(
        Api::<ConfigMap>::all(client.clone()),
        watcher::Config::default(),
        notify.clone(),
    ));
    let mut running_since: HashMap<String, Instant> = HashMap::new();
    let mut plugin: Option<(String, u32, &'static str)> = None; // pod uid, replicas, strategy
    loop {
        let list = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={NODE_NAME}")))
            .await
            .map(|l| l.items.iter().map(json_of).collect::<Vec<_>>())
            .unwrap_or_default();
        let running = |app: &str| {
            list.iter()
                .find(|p| s(p, "/metadata/labels/app") == app && pod_running(p))
        };
        let cfg = node.config();
        // NFD worker.
        if let Some(w) = list.iter().find(|p| {
            s(p, "/metadata/labels/app.kubernetes.io~1name") == "node-feature-discovery"
                && s(p, "/metadata/labels/role") == "worker"
                && pod_running(p)
        }) {
            let since = *running_since
                .entry(s(w, "/metadata/uid").to_string())
                .or_insert_with(Instant::now);
            if since.elapsed() >= NFD_DELAY {
                let mut labels = json!({
                    "feature.node.kubernetes.io/kernel-version.full": "6.8.0",
                    "feature.node.kubernetes.io/system-os_release.ID": "ubuntu",
                    "feature.node.kubernetes.io/system-os_release.VERSION_ID": "24.04",
                });
                if cfg.gpus > 0 {
                    labels[PCI_LABELS[0]] = json!("true");
                }
                patch_labels(&client, labels).await;
            }
        }
        // Toolkit: containerd gets the `nvidia` runtime.
        if running("nvidia-container-toolkit-daemonset").is_some()
            && !cfg.runtime_handlers.iter().any(|h| h == "nvidia")
        {
            let _ = node.set(|c| c.runtime_handlers.push("nvidia".into())).await;
        }
        // Device plugin: reads its config once, when it starts.
        if let Some(p) = running("nvidia-device-plugin-daemonset") {
            let uid = s(p, "/metadata/uid").to_string();
            if plugin.as_ref().map(|(u, _, _)| u) != Some(&uid)
                && let Some((resource, replicas, strategy)) = plugin_config(&client, p).await
            {
                let count = (cfg.gpus * replicas).to_string();
                let _ = node
                    .set(|c| {
                        c.extended.remove("nvidia.com/gpu");
                        c.extended.remove("nvidia.com/gpu.shared");
                        c.extended.insert(resource, count);
                    })
                    .await;
                plugin = Some((uid, replicas, strategy));
            }
        }
        if !list
            .iter()
            .any(|p| s(p, "/metadata/labels/app") == "nvidia-device-plugin-daemonset")
        {
            plugin = None;
        }
        // GPU feature discovery.
        if let (Some(_), Some((_, replicas, strategy))) = (running("gpu-feature-discovery"), &plugin) {
            patch_labels(
                &client,
                json!({
                    "nvidia.com/gpu.count": cfg.gpus.to_string(),
                    "nvidia.com/gpu.replicas": replicas.to_string(),
                    "nvidia.com/gpu.sharing-strategy": strategy,
                }),
            )
            .await;
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Sets node labels that differ (one merge patch; none when all are there).
async fn patch_labels(client: &kube::Client, labels: Value) {
    let api: Api<Node> = Api::all(client.clone());
    let Ok(node) = api.get(NODE_NAME).await else { return };
    let live = node.metadata.labels.unwrap_or_default();
    let differs = labels
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| live.get(k).map(String::as_str) != v.as_str());
    if differs {
        let _ = api
            .patch(
                NODE_NAME,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"labels": labels}})),
            )
            .await;
    }
}

/// The device plugin's config: (resource name, replicas per GPU, sharing strategy), or None
/// while the ConfigMap or its key is missing.
async fn plugin_config(client: &kube::Client, pod: &Value) -> Option<(String, u32, &'static str)> {
    let cps = super::dynamic_api(client, &cluster_policy_resource(), None);
    let cp = json_of(&cps.get_opt(CLUSTER_POLICY).await.ok()??);
    let name = s(&cp, "/spec/devicePlugin/config/name");
    if name.is_empty() {
        return Some(("nvidia.com/gpu".into(), 1, "none"));
    }
    let key = s(&cp, "/spec/devicePlugin/config/default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), s(pod, "/metadata/namespace"));
    let cm = cms.get_opt(name).await.ok()??;
    let text = cm.data?.get(key)?.clone();
    let config: Value = serde_saphyr::from_str(&text).ok()?;
    for (mode, strategy) in [("timeSlicing", "time-slicing"), ("mps", "mps")] {
        let section = &config["sharing"][mode];
        if let Some(r) = section["resources"].as_array().and_then(|rs| {
            rs.iter()
                .find(|r| r["name"] == "nvidia.com/gpu")
                .and_then(|r| r["replicas"].as_u64())
        }) {
            let resource = if section["renameByDefault"].as_bool() == Some(true) {
                "nvidia.com/gpu.shared"
            } else {
                "nvidia.com/gpu"
            };
            return Some((resource.into(), u32::try_from(r).ok()?, strategy));
        }
    }
    Some(("nvidia.com/gpu".into(), 1, "none"))
}
