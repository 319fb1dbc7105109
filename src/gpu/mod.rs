//! The NVIDIA GPU operator with time-slicing, as data: which chart, which objects, what the node
//! must advertise afterwards.
//!
//! The operator is installed through the distribution's own Helm controller (no helm binary):
//! `helm.cattle.io/v1 HelmChart` on k3s, `helm.k0sproject.io/v1beta1 Chart` on k0s. Values are
//! built as typed data in the issue that installs it; the plan names the objects and settings.

use crate::distro::Distro;
use crate::facts::HostFacts;
use crate::plan::step::{Action, ObjectRef, Phase, Step};
use crate::profile::Selection;

/// Chart name in NVIDIA's Helm repository.
pub const CHART: &str = "gpu-operator";
/// NVIDIA's Helm repository.
pub const REPO: &str = "https://helm.ngc.nvidia.com/nvidia";
/// Pinned chart version (NVIDIA's chart versions carry a leading `v`).
pub const CHART_VERSION: &str = "v26.3.2";
/// Namespace of the operator and of the time-slicing ConfigMap.
pub const NAMESPACE: &str = "gpu-operator";
/// The time-slicing ConfigMap, referenced by `devicePlugin.config.name`.
pub const TIME_SLICING_CONFIG: &str = "kstrap-time-slicing";
/// Seconds to wait for the node to advertise its GPU shares.
pub const WAIT_TIMEOUT_S: u64 = 900;

fn obj(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectRef {
    ObjectRef {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: namespace.map(Into::into),
        name: name.into(),
    }
}

/// The chart object for the distribution's Helm controller.
pub fn chart_object(distro: Distro) -> ObjectRef {
    match distro {
        Distro::K3s => obj("helm.cattle.io/v1", "HelmChart", Some("kube-system"), CHART),
        Distro::K0s => obj("helm.k0sproject.io/v1beta1", "Chart", Some("kube-system"), CHART),
    }
}

/// Plan steps for the GPU phase; empty when the selection uses no GPU.
pub fn steps(facts: &HostFacts, sel: &Selection) -> Vec<Step> {
    if !sel.profile.gpu.operator || sel.gpus.is_empty() {
        return Vec::new();
    }
    let gpus = sel.gpus.len() as u32;
    let replicas = sel.profile.gpu.replicas;
    let mut objects = vec![
        obj("v1", "Namespace", None, NAMESPACE),
        obj("v1", "ConfigMap", Some(NAMESPACE), TIME_SLICING_CONFIG),
    ];
    // k3s creates RuntimeClass `nvidia` itself once it finds the NVIDIA container runtime; k0s
    // does not.
    if sel.distro == Distro::K0s {
        objects.push(obj("node.k8s.io/v1", "RuntimeClass", None, "nvidia"));
    }
    objects.push(chart_object(sel.distro));
    let driver = match &facts.nvidia.driver_version {
        Some(v) => format!("host driver {v} kept (driver.enabled=false)"),
        None => "no host driver found: the operator's driver container would be needed".to_string(),
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
            reason: "proves the operator, the toolkit and time-slicing all work: the node advertises every share"
                .into(),
            action: Action::WaitGpu {
                gpus,
                replicas,
                expected: gpus * replicas,
                timeout_s: WAIT_TIMEOUT_S,
            },
        },
    ]
}
