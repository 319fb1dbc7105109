//! The Kubernetes objects of the GPU phase, as JSON values ready for server-side apply: the
//! operator namespace, the time-slicing ConfigMap and the chart object for the distribution's own
//! Helm controller. Also the pure helpers that act on objects later: the device-plugin restart patch and the overlay that
//! makes a workload use a GPU share.

use super::values::{OperatorValues, operator_values_in, values_yaml};
use super::{
    CHART, CHART_VERSION, DEVICE_PLUGIN_DAEMONSET, HELM_TIMEOUT, MANAGED_BY, NAMESPACE, REPO, REPO_NAME,
    TIME_SLICING_CONFIG, TIME_SLICING_KEY, shares_per_gpu,
};
use crate::distro::Distro;
use crate::distro::helm::{self, ChartSource};
use crate::facts::HostFacts;
use crate::profile::{Selection, Sharing};
use serde::Serialize;
use serde_json::{Value, json};

/// Labels every object kstrap applies carries.
fn labels() -> Value {
    json!({ "app.kubernetes.io/managed-by": MANAGED_BY })
}

/// The operator namespace. Its pods are privileged (driver, toolkit, device plugin), so Pod
/// Security Admission must allow that where it is enforced (k3s with a CIS profile, k0s with PSA
/// configured).
pub fn namespace() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "pod-security.kubernetes.io/enforce": "privileged",
            },
        },
    })
}

/// The device plugin's config file (`version: v1`), one key of the ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct PluginConfig {
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sharing: Option<SharingConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct SharingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    time_slicing: Option<ReplicatedResources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mps: Option<ReplicatedResources>,
}

/// `sharing.timeSlicing` / `sharing.mps`. `renameByDefault` belongs here: at the top level or
/// under `sharing` the plugin ignores it without a word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReplicatedResources {
    rename_by_default: bool,
    resources: Vec<ReplicatedResource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct ReplicatedResource {
    name: &'static str,
    replicas: u32,
}

/// The time-slicing (or, when the profile asks for it, MPS) ConfigMap the device plugin reads
/// through `devicePlugin.config`. `replicas` shares per GPU, at least 2 under sharing. With
/// `rename_by_default` the shares are advertised as `nvidia.com/gpu.shared` instead of
/// `nvidia.com/gpu`; kstrap keeps it `false` so workloads and the readiness check use the plain
/// name. `Sharing::None` gives a config without a `sharing` section: one pod per GPU.
///
/// One resource for every GPU of the node, never per-GPU `rename` / `devices`: the device
/// plugin the operator ships (NVIDIA/k8s-device-plugin v0.19.2) resets both when it loads the
/// config (`DisableResourceNamingInConfig`, `api/config/v1/config.go` and `replicas.go`), so
/// placement per GPU cannot be configured; the VRAM budget covers any placement instead
/// (profiles/README.md, "More than one GPU").
pub fn time_slicing_config(replicas: u32, sharing: Sharing, rename_by_default: bool) -> Value {
    let resources = |replicas| ReplicatedResources {
        rename_by_default,
        resources: vec![ReplicatedResource {
            name: "nvidia.com/gpu",
            replicas,
        }],
    };
    let shares = shares_per_gpu(sharing, replicas);
    let sharing = match sharing {
        Sharing::TimeSlicing => Some(SharingConfig {
            time_slicing: Some(resources(shares)),
            mps: None,
        }),
        Sharing::Mps => Some(SharingConfig {
            time_slicing: None,
            mps: Some(resources(shares)),
        }),
        Sharing::None => None,
    };
    let config = PluginConfig { version: "v1", sharing };
    // Same reasoning as `values_yaml`: plain structs, cannot fail; JSON is valid YAML.
    let text = serde_saphyr::to_string(&config)
        .or_else(|_| serde_json::to_string(&config))
        .unwrap_or_default();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": TIME_SLICING_CONFIG,
            "namespace": NAMESPACE,
            "labels": labels(),
        },
        "data": { TIME_SLICING_KEY: text },
    })
}

/// The chart object for the distribution's Helm controller (`distro::helm::chart_object`): a k3s
/// `HelmChart` or a k0s `Chart` (`chartName: nvidia/gpu-operator` with `spec.repository`), both
/// naming NVIDIA's repository.
pub fn chart(distro: Distro, values: &OperatorValues) -> Value {
    let source = ChartSource {
        release: CHART.into(),
        repo: REPO.into(),
        repo_name: REPO_NAME.into(),
        chart: CHART.into(),
        version: CHART_VERSION.into(),
        namespace: NAMESPACE.into(),
        values: values_yaml(values),
        timeout: HELM_TIMEOUT.into(),
    };
    helm::chart_object(distro, &source)
}

/// Whether the selection puts GPUs under the operator at all.
pub fn gpu_selected(sel: &Selection) -> bool {
    sel.profile.gpu.operator && !sel.gpus.is_empty()
}

/// Everything the GPU phase applies, in apply order: Namespace, time-slicing ConfigMap, chart
/// object. Empty when the selection uses no GPU.
///
/// Not RuntimeClass `nvidia`: the operator creates it on every distribution from
/// `assets/pre-requisites/0200_runtime_class.yaml` (name and handler from
/// `operator.runtimeClass`, default `nvidia`) and sets the ClusterPolicy as its controller
/// (`transformRuntimeClass`, `controllers/object_controls.go`, NVIDIA/gpu-operator v26.3.2).
/// kstrap applying it too would make two owners, and `down` or a prune would delete the
/// operator's object.
pub fn gpu_objects(facts: &HostFacts, sel: &Selection) -> Vec<Value> {
    gpu_objects_in(facts, sel, sel.distro.paths())
}

/// [`gpu_objects`] for the distribution's paths with its data directory (`Plan::paths`).
pub fn gpu_objects_in(facts: &HostFacts, sel: &Selection, paths: &crate::distro::Paths) -> Vec<Value> {
    if !gpu_selected(sel) {
        return Vec::new();
    }
    let gpu = &sel.profile.gpu;
    vec![
        namespace(),
        time_slicing_config(gpu.replicas, gpu.sharing, false),
        chart(sel.distro, &operator_values_in(facts, sel, paths)),
    ]
}

/// Strategic-merge patch for `daemonset/nvidia-device-plugin-daemonset` in the operator
/// namespace that restarts its pods, as `kubectl rollout restart` does. Needed after the
/// time-slicing ConfigMap changes: the operator does not watch it, and the plugin keeps
/// advertising the old number of shares until restarted.
pub fn device_plugin_restart_patch(now_rfc3339: &str) -> Value {
    json!({
        "spec": {
            "template": {
                "metadata": {
                    "annotations": { "kubectl.kubernetes.io/restartedAt": now_rfc3339 },
                },
            },
        },
    })
}

/// Whether applying `desired` (the time-slicing ConfigMap) changes what the device plugin reads,
/// so that it must be restarted afterwards: true when the live ConfigMap is missing (first
/// install: restarting is harmless, the plugin may have started before the ConfigMap existed)
/// or its `data` differs.
pub fn needs_device_plugin_restart(live: Option<&Value>, desired: &Value) -> bool {
    match live {
        None => true,
        Some(live) => live["data"] != desired["data"],
    }
}

/// Name of the DaemonSet [`device_plugin_restart_patch`] applies to.
pub fn device_plugin_daemonset() -> (&'static str, &'static str) {
    (NAMESPACE, DEVICE_PLUGIN_DAEMONSET)
}
