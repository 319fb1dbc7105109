//! The NVIDIA GPU operator with time-slicing, as data: which chart, which objects, what the node
//! must advertise afterwards.
//!
//! The operator is installed through the distribution's own Helm controller (no helm binary):
//! `helm.cattle.io/v1 HelmChart` on k3s, `helm.k0sproject.io/v1beta1 Chart` on k0s. Its values are
//! a typed model (`values`), the objects are built in `objects`, GPU readiness is decided by the
//! pure functions in `readiness`, and `verify` holds the `--verify-gpu` pod. The plan names
//! exactly the objects `gpu_objects` generates (a test holds them equal).

pub mod node_use;
pub mod objects;
pub mod readiness;
pub mod values;
pub mod verify;
pub mod wait;

#[cfg(test)]
mod plugin_config_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use objects::{
    chart, device_plugin_daemonset, device_plugin_restart_patch, gpu_objects, gpu_objects_in, gpu_selected, namespace,
    needs_device_plugin_restart, time_slicing_config,
};
pub use readiness::{GpuReadiness, cluster_policy_readiness, gpu_stage_readiness, node_gpu_readiness};
pub use values::{OperatorValues, operator_values, operator_values_in, toolkit_env, toolkit_env_in, values_yaml};
pub use verify::{VERIFY_IMAGE, VERIFY_POD, verify_pod};

use crate::distro::Distro;
use crate::facts::HostFacts;
use crate::plan::step::{Action, ObjectRef, Phase, Step};
use crate::profile::{Selection, Sharing};
use serde_json::Value;

/// Chart name in NVIDIA's Helm repository.
pub const CHART: &str = "gpu-operator";
/// NVIDIA's Helm repository.
pub const REPO: &str = "https://helm.ngc.nvidia.com/nvidia";
/// Name k0s's Chart gives that repository (`chartName: nvidia/gpu-operator`, the name NVIDIA's
/// install guide uses with `helm repo add nvidia`).
pub const REPO_NAME: &str = "nvidia";
/// Pinned chart version (NVIDIA's chart versions carry a leading `v`). v26.3.2 is published:
/// NVIDIA/gpu-operator PR #2498 ("bump gpu-operator version to v26.3.2") and RKE2's GPU operator
/// page installs it through the same HelmChart kind k3s uses.
pub const CHART_VERSION: &str = "v26.3.2";
/// Namespace of the operator and of the time-slicing ConfigMap.
pub const NAMESPACE: &str = "gpu-operator";
/// The time-slicing ConfigMap, referenced by `devicePlugin.config.name`.
pub const TIME_SLICING_CONFIG: &str = "kstrap-time-slicing";
/// The key in that ConfigMap, referenced by `devicePlugin.config.default` ("any", as in NVIDIA's
/// time-slicing guide).
pub const TIME_SLICING_KEY: &str = "any";
/// RuntimeClass (and containerd handler) GPU workloads use.
pub const RUNTIME_CLASS: &str = "nvidia";
/// The extended resource the NVIDIA device plugin advertises; one unit is one time-sliced share.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The operator's ClusterPolicy.
pub const CLUSTER_POLICY: &str = "cluster-policy";
/// The DaemonSet to restart after the time-slicing ConfigMap changes.
pub const DEVICE_PLUGIN_DAEMONSET: &str = "nvidia-device-plugin-daemonset";
/// Value of `app.kubernetes.io/managed-by` on everything kstrap applies.
pub const MANAGED_BY: &str = "kstrap";
/// How long k0s's Helm extension waits for the chart's own pods (`--wait`, then rolls back).
pub const HELM_TIMEOUT: &str = "15m";
/// Seconds to wait for the node to advertise its GPU shares.
pub const WAIT_TIMEOUT_S: u64 = 900;
/// Seconds the driver container may take to build and load its module before Kubernetes
/// restarts it: its startup probe's `initialDelaySeconds` 60 + `failureThreshold` 120 ×
/// `periodSeconds` 10 (`driver.startupProbe`, `deployments/gpu-operator/values.yaml`,
/// NVIDIA/gpu-operator v26.3.2). Added to the wait with `--gpu-driver operator`.
pub const DRIVER_STARTUP_S: u64 = 60 + 120 * 10;

/// Shares each GPU is advertised as: 1 without sharing, at least 2 with time-slicing or MPS
/// (profiles already require 2..=48; the floor keeps a hand-built selection honest).
pub fn shares_per_gpu(sharing: Sharing, replicas: u32) -> u32 {
    match sharing {
        Sharing::None => 1,
        Sharing::TimeSlicing | Sharing::Mps => replicas.max(2),
    }
}

/// The chart object for the distribution's Helm controller.
pub fn chart_object(distro: Distro) -> ObjectRef {
    crate::distro::helm::chart_ref(distro, CHART)
}

/// The reference naming a generated object.
pub fn object_ref(object: &Value) -> ObjectRef {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    ObjectRef {
        api_version: s(&object["apiVersion"]),
        kind: s(&object["kind"]),
        namespace: object["metadata"]["namespace"].as_str().map(str::to_string),
        name: s(&object["metadata"]["name"]),
    }
}

/// Plan steps for the GPU phase; empty when the selection uses no GPU.
pub fn steps(facts: &HostFacts, sel: &Selection) -> Vec<Step> {
    // RuntimeClass `nvidia` is the operator's own (see `gpu_objects`), on k3s and k0s alike.
    let objects: Vec<ObjectRef> = gpu_objects(facts, sel).iter().map(object_ref).collect();
    if objects.is_empty() {
        return Vec::new();
    }
    let gpus = sel.gpus.len() as u32;
    let replicas = shares_per_gpu(sel.profile.gpu.sharing, sel.profile.gpu.replicas);
    let container = sel.gpu_driver == crate::profile::GpuDriver::Operator;
    let driver = match &facts.nvidia.driver_version {
        _ if container => format!(
            "--gpu-driver operator: the operator builds and loads NVIDIA driver {} for kernel {} in a container ({}, driver.enabled=true)",
            values::DRIVER_VERSION,
            facts.os.kernel,
            values::Driver::image_ref()
        ),
        Some(v) => format!("host driver {v} kept (driver.enabled=false)"),
        None => "host driver kept (driver.enabled=false; NVML did not report its version)".to_string(),
    };
    let timeout_s = if container {
        WAIT_TIMEOUT_S + DRIVER_STARTUP_S
    } else {
        WAIT_TIMEOUT_S
    };
    let controller = match sel.distro {
        Distro::K3s => "k3s's Helm controller",
        Distro::K0s => "k0s's Helm extension",
    };
    vec![
        Step {
            id: "install-gpu-operator".into(),
            phase: Phase::Gpu,
            title: format!("Install the NVIDIA GPU operator {CHART_VERSION} through {controller}"),
            reason: format!(
                "{driver}; {} sharing with {replicas} shares per GPU (devicePlugin.config.name={TIME_SLICING_CONFIG}, default set so it applies without node labels); toolkit pointed at {}'s containerd",
                sel.profile.gpu.sharing.label(),
                sel.distro
            ),
            action: Action::Apply { objects },
        },
        Step {
            id: "wait-gpu".into(),
            phase: Phase::Gpu,
            title: format!(
                "Wait for nvidia.com/gpu = {gpus} GPU(s) × {replicas} = {}",
                gpus * replicas
            ),
            reason: if container {
                format!(
                    "proves the driver, the operator, the toolkit and time-slicing all work: the node advertises every share (building the driver takes minutes: the wait allows the driver pod's startup probe its {DRIVER_STARTUP_S} s on top)"
                )
            } else {
                "proves the operator, the toolkit and time-slicing all work: the node advertises every share".into()
            },
            action: Action::WaitGpu {
                gpus,
                replicas,
                expected: gpus * replicas,
                timeout_s,
            },
        },
    ]
}
