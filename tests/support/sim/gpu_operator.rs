//! GPU-operator simulation of the simulated API server (test double): what NVIDIA's GPU operator
//! does once its chart is installed by the distribution's Helm controller (a k3s `HelmChart` or a
//! k0s `Chart` named `gpu-operator`), acted out on the one simulated node.
//!
//! After the chart's ready delay it registers the ClusterPolicy CRD (`clusterpolicies.nvidia.com`),
//! creates ClusterPolicy `cluster-policy` (state `ready`, Ready condition reason `Reconciled`), the
//! DaemonSets `nvidia-device-plugin-daemonset` and `nvidia-operator-validator` (whose pods carry
//! `app=nvidia-operator-validator`) in `gpu-operator`. When a device-plugin pod is Ready with a pod
//! template it has not seen yet (first start, or a restart after the template's restart
//! annotation changed), it reads the time-slicing ConfigMap `kstrap-time-slicing` and sets node
//! allocatable `nvidia.com/gpu` = `SimConfig.gpus` × the ConfigMap's replicas, plus the labels GPU
//! feature discovery puts (`nvidia.com/gpu.replicas`, `.sharing-strategy`, `.present`,
//! `.count`). Like the real operator, a changed ConfigMap alone changes nothing: the device plugin
//! must be restarted. A plugin that started before the ConfigMap existed waits for it (the real
//! config-manager init container does).
//!
//! Faults: [`Fault::GpuNoNodes`] (ClusterPolicy ready with reason `NoGPUNodes`, nothing deployed)
//! and [`Fault::GpuToolkitStuck`] (ClusterPolicy `notReady` waiting for
//! `state-container-toolkit`, a `nvidia-container-toolkit-daemonset` pod in CrashLoopBackOff).
//!
//! Not simulated: node-feature-discovery, the driver container, MIG, MPS daemons, DCGM, the
//! operator reacting to ClusterPolicy spec changes, several nodes.

use serde_json::{Value, json};

use super::controllers::{crd, record_event};
use super::faults::Fault;
use super::store::{Actor, ObjectKey, State, now_rfc3339, s};

pub const CHART_NAME: &str = "gpu-operator";
pub const NAMESPACE: &str = "gpu-operator";
pub const CONFIG_MAP: &str = "kstrap-time-slicing";
pub const DEVICE_PLUGIN: &str = "nvidia-device-plugin-daemonset";
pub const VALIDATOR: &str = "nvidia-operator-validator";
pub const TOOLKIT: &str = "nvidia-container-toolkit-daemonset";
pub const CLUSTER_POLICY: &str = "cluster-policy";
pub const CRD_NAME: &str = "clusterpolicies.nvidia.com";

/// What the simulated operator remembers.
#[derive(Debug, Clone, Default)]
pub struct GpuSim {
    /// The pod template hash of the device-plugin pod that last read the config.
    pub plugin_revision: Option<String>,
    /// Replicas the running device plugin advertises.
    pub replicas: Option<u32>,
}

fn has_fault(st: &State, f: &Fault) -> bool {
    st.faults.contains(f)
}

/// A chart object (k3s HelmChart or k0s Chart) was reconciled.
pub fn on_chart(st: &mut State, key: &ObjectKey) {
    if key.name != CHART_NAME {
        return;
    }
    register_crd(st);
    let no_nodes = has_fault(st, &Fault::GpuNoNodes);
    let toolkit_stuck = has_fault(st, &Fault::GpuToolkitStuck);
    ensure_namespace(st);
    let now = now_rfc3339();
    let status = if no_nodes {
        json!({"state": "ready", "namespace": NAMESPACE, "conditions": [
            {"type": "Ready", "status": "True", "reason": "NoGPUNodes", "message": "No GPU node found, watching for new nodes to join the cluster.", "lastTransitionTime": now},
            {"type": "Error", "status": "False", "reason": "Ready", "message": "", "lastTransitionTime": now}]})
    } else if toolkit_stuck {
        let msg = "ClusterPolicy is not ready, states not ready: [state-container-toolkit state-operator-validation]";
        json!({"state": "notReady", "namespace": NAMESPACE, "conditions": [
            {"type": "Ready", "status": "False", "reason": "OperandNotReady", "message": msg, "lastTransitionTime": now},
            {"type": "Error", "status": "True", "reason": "OperandNotReady", "message": msg, "lastTransitionTime": now}]})
    } else {
        json!({"state": "ready", "namespace": NAMESPACE, "conditions": [
            {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ClusterPolicy is ready as all resources have been successfully reconciled", "lastTransitionTime": now},
            {"type": "Error", "status": "False", "reason": "Ready", "message": "", "lastTransitionTime": now}]})
    };
    // The operator's own RuntimeClass `nvidia` (`assets/pre-requisites/0200_runtime_class.yaml`,
    // `transformRuntimeClass` in `controllers/object_controls.go`, NVIDIA/gpu-operator v26.3.2).
    let rc_key = ObjectKey::new("node.k8s.io/v1", "RuntimeClass", None, "nvidia");
    if !st.objects.contains_key(&rc_key) {
        st.create_object(
            json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                "metadata": {"name": "nvidia", "labels": {"app.kubernetes.io/component": "gpu-operator"}},
                "handler": "nvidia"}),
            Actor::Controller,
        );
    }
    let cp_key = ObjectKey::new("nvidia.com/v1", "ClusterPolicy", None, CLUSTER_POLICY);
    match st.objects.get(&cp_key).cloned() {
        Some(mut cp) => {
            if cp["status"] != status {
                // No observedGeneration: ClusterPolicyStatus has none (NVIDIA/gpu-operator
                // `api/nvidia/v1/clusterpolicy_types.go` at v26.3.2).
                cp["status"] = status.clone();
                st.store(cp, Actor::Controller);
            }
        }
        None => {
            let cp = json!({"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy",
                "metadata": {"name": CLUSTER_POLICY, "labels": {"app.kubernetes.io/managed-by": "Helm"}},
                "spec": {"operator": {"defaultRuntime": "containerd"}, "devicePlugin": {"enabled": true,
                    "config": {"name": CONFIG_MAP, "default": "any"}}},
                "status": status});
            st.create_object(cp, Actor::Controller);
        }
    }
    if no_nodes {
        return;
    }
    if toolkit_stuck {
        let fault = Fault::PodWaiting {
            owner_name: TOOLKIT.into(),
            reason: "CrashLoopBackOff".into(),
            message: format!(
                "back-off 5m0s restarting failed container=nvidia-container-toolkit-ctr pod={TOOLKIT}-sim"
            ),
        };
        if !st.faults.contains(&fault) {
            st.faults.push(fault);
        }
        ensure_daemonset(
            st,
            TOOLKIT,
            "nvidia-container-toolkit-daemonset",
            "nvidia-container-toolkit-ctr",
        );
        return;
    }
    ensure_daemonset(
        st,
        DEVICE_PLUGIN,
        "nvidia-device-plugin-daemonset",
        "nvidia-device-plugin",
    );
    ensure_daemonset(st, VALIDATOR, VALIDATOR, "nvidia-operator-validator");
}

fn ensure_namespace(st: &mut State) {
    if !st.namespace_exists(NAMESPACE) {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE,
            "labels": {"kubernetes.io/metadata.name": NAMESPACE}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        st.create_object(ns, Actor::Controller);
    }
}

fn register_crd(st: &mut State) {
    let key = ObjectKey::new("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, CRD_NAME);
    if st.objects.contains_key(&key) {
        return;
    }
    let c = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {"group": "nvidia.com", "scope": "Cluster",
            "names": {"plural": "clusterpolicies", "singular": "clusterpolicy", "kind": "ClusterPolicy", "listKind": "ClusterPolicyList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let stored = st.create_object(c, Actor::Controller);
    crd(st, &key, &stored);
}

fn ensure_daemonset(st: &mut State, name: &str, app: &str, container: &str) {
    let key = ObjectKey::new("apps/v1", "DaemonSet", Some(NAMESPACE), name);
    if st.objects.contains_key(&key) {
        return;
    }
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app}},
        "spec": {"selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                "spec": {"priorityClassName": "system-node-critical",
                    "containers": [{"name": container, "image": format!("nvcr.io/nvidia/{container}:sim")}]}}}});
    st.create_object(ds, Actor::Controller);
    st.pending.insert(key, std::time::Instant::now());
}

/// Replicas per GPU from the ConfigMap's `any` key (time-slicing or MPS; 1 without sharing).
fn configured_replicas(cm: &Value) -> Option<u32> {
    let text = cm.pointer("/data/any")?.as_str()?;
    let config: Value = serde_saphyr::from_str(text).ok()?;
    let sharing = &config["sharing"];
    for mode in ["timeSlicing", "mps"] {
        if let Some(r) = sharing[mode]["resources"].as_array().and_then(|rs| {
            rs.iter()
                .find(|r| r["name"] == "nvidia.com/gpu")
                .and_then(|r| r["replicas"].as_u64())
        }) {
            return u32::try_from(r).ok();
        }
    }
    Some(1)
}

fn strategy(cm: &Value) -> &'static str {
    let text = cm.pointer("/data/any").and_then(Value::as_str).unwrap_or_default();
    if text.contains("timeSlicing") {
        "time-slicing"
    } else if text.contains("mps") {
        "mps"
    } else {
        "none"
    }
}

/// A DaemonSet was reconciled: if it is the device plugin and a pod of a template the plugin has
/// not started with is Ready, that plugin reads the config and advertises the shares.
pub fn after_daemonset(st: &mut State, key: &ObjectKey) {
    if key.name != DEVICE_PLUGIN || key.namespace.as_deref() != Some(NAMESPACE) {
        return;
    }
    let Some(ds) = st.objects.get(key).cloned() else {
        return;
    };
    let uid = s(&ds, &["metadata", "uid"]).to_string();
    let ready_revision = st
        .objects
        .iter()
        .filter(|(k, p)| {
            k.kind == "Pod"
                && k.namespace.as_deref() == Some(NAMESPACE)
                && super::store::owner_uids(p).contains(&uid)
                && p.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .map(|(_, p)| s(p, &["metadata", "labels", "controller-revision-hash"]).to_string())
        .next();
    let Some(revision) = ready_revision else {
        return;
    };
    if st.gpu.plugin_revision.as_deref() == Some(revision.as_str()) {
        return;
    }
    let cm_key = ObjectKey::new("v1", "ConfigMap", Some(NAMESPACE), CONFIG_MAP);
    let Some(cm) = st.objects.get(&cm_key).cloned() else {
        // The config-manager init container waits for the ConfigMap.
        record_event(
            st,
            &ds,
            "Warning",
            "ConfigMissing",
            &format!("configmap {CONFIG_MAP} not found"),
            "nvidia-device-plugin",
        );
        return;
    };
    let Some(replicas) = configured_replicas(&cm) else {
        return;
    };
    st.gpu.plugin_revision = Some(revision);
    st.gpu.replicas = Some(replicas);
    let gpus = st.config.gpus;
    st.node_allocatable
        .insert("nvidia.com/gpu".into(), (gpus * replicas).to_string());
    for (k, v) in [
        ("nvidia.com/gpu.present", "true".to_string()),
        ("nvidia.com/gpu.count", gpus.to_string()),
        ("nvidia.com/gpu.replicas", replicas.to_string()),
        ("nvidia.com/gpu.sharing-strategy", strategy(&cm).to_string()),
    ] {
        st.node_labels.insert(k.into(), v);
    }
    st.refresh_node();
    st.reschedule_all();
}

/// A client wrote a ConfigMap: a device plugin waiting for its config gets it now (the running
/// plugin does not re-read a changed one).
pub fn on_configmap(st: &mut State, key: &ObjectKey) {
    if key.name == CONFIG_MAP && key.namespace.as_deref() == Some(NAMESPACE) && st.gpu.plugin_revision.is_none() {
        let ds = ObjectKey::new("apps/v1", "DaemonSet", Some(NAMESPACE), DEVICE_PLUGIN);
        if st.objects.contains_key(&ds) {
            st.pending.insert(ds, std::time::Instant::now());
        }
    }
}
