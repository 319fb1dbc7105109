//! Is the GPU stage done? Pure functions over the ClusterPolicy, the validator pods and the node
//! (design §6): the operator says `ready` *because it reconciled* (not because it found no GPU
//! node), its validator pod is Ready, and the node advertises every share.
//!
//! Reasons name the stuck component (toolkit, driver, device plugin, NFD) in words a user can act
//! on; failures carry a hint. Nothing here reads a clock or the network: the waiter calls these on
//! every watch event.

use super::{CLUSTER_POLICY, NAMESPACE};
use serde::Serialize;
use serde_json::Value;

/// Where the GPU stage stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GpuReadiness {
    /// Done; `allocatable` is the node's `nvidia.com/gpu` (0 from [`cluster_policy_readiness`]
    /// alone, which cannot know it).
    Ready {
        allocatable: u32,
    },
    InProgress {
        reason: String,
    },
    /// Waiting longer will not help.
    Failed {
        reason: String,
        hint: String,
    },
}

impl GpuReadiness {
    fn in_progress(reason: impl Into<String>) -> Self {
        GpuReadiness::InProgress { reason: reason.into() }
    }

    fn failed(reason: impl Into<String>, hint: impl Into<String>) -> Self {
        GpuReadiness::Failed {
            reason: reason.into(),
            hint: hint.into(),
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, GpuReadiness::Ready { .. })
    }
}

fn conditions(obj: &Value) -> &[Value] {
    obj["status"]["conditions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    conditions(obj).iter().find(|c| c["type"].as_str() == Some(kind))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The operator's state names (`state-container-toolkit`) as components a user knows.
fn components(message: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("state-driver", "the driver container"),
        ("state-container-toolkit", "the NVIDIA container toolkit"),
        ("state-operator-validation", "the operator validator"),
        ("state-device-plugin", "the device plugin"),
        ("gpu-feature-discovery", "GPU feature discovery"),
        ("state-dcgm-exporter", "the DCGM exporter"),
        ("state-mig-manager", "the MIG manager"),
        ("state-node-status-exporter", "the node status exporter"),
    ];
    let found: Vec<&str> = NAMES
        .iter()
        .filter(|(state, _)| message.contains(state))
        .map(|(_, name)| *name)
        .collect();
    if found.is_empty() {
        String::new()
    } else {
        format!(" (waiting for {})", found.join(", "))
    }
}

fn no_gpu_nodes() -> GpuReadiness {
    GpuReadiness::failed(
        format!(
            "the GPU operator found no GPU node: ClusterPolicy {CLUSTER_POLICY} is ready with reason NoGPUNodes, so nothing was deployed for the GPU"
        ),
        "the node lacks the PCI label node-feature-discovery puts on NVIDIA hardware (feature.node.kubernetes.io/pci-10de.present=true): check `kubectl get node --show-labels`, that `nvidia-smi` works on the host, and that the nfd-worker pod in namespace gpu-operator is running",
    )
}

/// node-feature-discovery has labelled the node (its labels carry the prefix
/// `feature.node.kubernetes.io/`) and none of the labels by which the operator recognises a GPU
/// node is there: the operator will report `NoGPUNodes` at its next look, up to 45 s later
/// (after `NFDLabelsMissing` it only re-polls: a node label update without GPU labels does not
/// wake it). NVIDIA/gpu-operator v26.3.2 `controllers/state_manager.go`: `gpuNodeLabels`
/// (`pci-10de.present`, `pci-0302_10de.present`, `pci-0300_10de.present` = "true"),
/// `hasGPULabels`, `hasNFDLabels` (`nfdLabelPrefix`); `controllers/clusterpolicy_controller.go`
/// `addWatchNewGPUNode`, whose update predicate fires only for nodes with GPU labels. NFD's
/// master writes a node's feature labels in one update, so the PCI labels are never behind the
/// others.
fn nfd_found_no_gpu(node: &Value) -> bool {
    const NFD_PREFIX: &str = "feature.node.kubernetes.io/";
    const GPU_LABELS: [&str; 3] = [
        "feature.node.kubernetes.io/pci-10de.present",
        "feature.node.kubernetes.io/pci-0302_10de.present",
        "feature.node.kubernetes.io/pci-0300_10de.present",
    ];
    let Some(labels) = node["metadata"]["labels"].as_object() else {
        return false;
    };
    labels.keys().any(|k| k.starts_with(NFD_PREFIX))
        && !GPU_LABELS
            .iter()
            .any(|k| labels.get(*k).and_then(Value::as_str) == Some("true"))
}

/// The operator found no node labelled by node-feature-discovery yet. On a fresh install that is
/// transient: NFD's worker labels the node a little after the operator's first reconcile, and the
/// operator marks the policy ready with reason `NFDLabelsMissing` and re-polls every 45 s
/// (NVIDIA/gpu-operator `controllers/clusterpolicy_controller.go` at v26.3.2: `requeueAfter =
/// time.Second * 45` under `!clusterPolicyCtrl.hasNFDLabels`). So it is waited out; the timeout
/// reports it if NFD never labels the node.
fn nfd_labels_missing() -> GpuReadiness {
    GpuReadiness::in_progress(format!(
        "node-feature-discovery has not labelled the node yet (ClusterPolicy {CLUSTER_POLICY}: NFDLabelsMissing; the operator looks again every 45 s); if this lasts, check its pods: `kubectl -n {NAMESPACE} get pods -l app.kubernetes.io/name=node-feature-discovery`"
    ))
}

/// ClusterPolicy `cluster-policy`: `status.state == ready` with the `Ready` condition's reason
/// `Reconciled` is ready; reason `NoGPUNodes` (the operator also calls that ready) fails with an
/// explanation; `NFDLabelsMissing` (also "ready") is in progress, see [`nfd_labels_missing`];
/// `notReady` is in progress with the operands it waits for.
///
/// There is no generation check: `ClusterPolicyStatus` has no `observedGeneration`
/// (`api/nvidia/v1/clusterpolicy_types.go` at v26.3.2: `state`, `namespace`, `conditions`), and
/// the operator's condition updater sets none on its conditions
/// (`internal/conditions/clusterpolicy.go`, same tag).
pub fn cluster_policy_readiness(cluster_policy: &Value) -> GpuReadiness {
    let status = &cluster_policy["status"];
    if status.is_null() {
        return GpuReadiness::in_progress(format!(
            "ClusterPolicy {CLUSTER_POLICY} has no status yet: the operator has not reconciled it"
        ));
    }
    let ready = condition(cluster_policy, "Ready");
    // NoGPUNodes fails and NFDLabelsMissing waits, whichever condition carries them and whatever
    // the state (reasons from `internal/conditions/consts.go`, v26.3.2).
    for c in conditions(cluster_policy) {
        match text(&c["reason"]) {
            "NoGPUNodes" if text(&c["status"]) == "True" => return no_gpu_nodes(),
            "NFDLabelsMissing" if text(&c["status"]) == "True" => return nfd_labels_missing(),
            _ => {}
        }
    }
    match text(&status["state"]) {
        "ready" => match ready {
            Some(c) if text(&c["status"]) == "True" && text(&c["reason"]) == "Reconciled" => {
                GpuReadiness::Ready { allocatable: 0 }
            }
            Some(c) => GpuReadiness::in_progress(format!(
                "ClusterPolicy {CLUSTER_POLICY} says ready but its Ready condition is {}={} ({})",
                text(&c["reason"]),
                text(&c["status"]),
                text(&c["message"])
            )),
            // Operators older than the conditions API only report the state.
            None => GpuReadiness::Ready { allocatable: 0 },
        },
        "notReady" => {
            let error = condition(cluster_policy, "Error")
                .filter(|c| text(&c["status"]) == "True")
                .or(ready);
            match error {
                Some(c) => {
                    let message = text(&c["message"]);
                    GpuReadiness::in_progress(format!(
                        "ClusterPolicy {CLUSTER_POLICY} is not ready: {}: {message}{}",
                        text(&c["reason"]),
                        components(message)
                    ))
                }
                None => GpuReadiness::in_progress(format!("ClusterPolicy {CLUSTER_POLICY} is not ready yet")),
            }
        }
        "ignored" => GpuReadiness::failed(
            format!(
                "ClusterPolicy {CLUSTER_POLICY} is ignored: another ClusterPolicy is already active in this cluster"
            ),
            "an earlier GPU operator install left its ClusterPolicy: `kubectl get clusterpolicies`, delete the one kstrap did not make, then re-run",
        ),
        "" => GpuReadiness::in_progress(format!("ClusterPolicy {CLUSTER_POLICY} has no state yet")),
        other => GpuReadiness::in_progress(format!("ClusterPolicy {CLUSTER_POLICY} is in state {other}")),
    }
}

/// Parses a quantity of whole devices ("4"); anything else is `None`.
fn count(v: &Value) -> Option<u32> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

/// The node advertises `gpus × replicas` allocatable `nvidia.com/gpu`, and GPU feature discovery's
/// labels `nvidia.com/gpu.replicas` / `nvidia.com/gpu.sharing-strategy` agree. Anything else is in
/// progress, with what the node says.
pub fn node_gpu_readiness(node: &Value, gpus: u32, replicas: u32) -> GpuReadiness {
    let expected = gpus.saturating_mul(replicas);
    let node_name = text(&node["metadata"]["name"]);
    let allocatable = &node["status"]["allocatable"];
    let Some(have) = allocatable.get("nvidia.com/gpu") else {
        let renamed = allocatable.get("nvidia.com/gpu.shared").and_then(count);
        return GpuReadiness::in_progress(match renamed {
            Some(n) => format!(
                "node {node_name} advertises {n} nvidia.com/gpu.shared but no nvidia.com/gpu: the sharing config renames the resource (renameByDefault), expected {expected} nvidia.com/gpu"
            ),
            None => {
                format!("node {node_name} does not advertise nvidia.com/gpu yet: the device plugin is not running yet")
            }
        });
    };
    let Some(have) = count(have) else {
        return GpuReadiness::in_progress(format!(
            "node {node_name} advertises nvidia.com/gpu = {have}, not a whole number"
        ));
    };
    if have == 0 {
        return GpuReadiness::in_progress(format!(
            "node {node_name} advertises 0 nvidia.com/gpu: the device plugin is starting or cannot reach the GPU yet (toolkit, driver), expected {expected}"
        ));
    }
    if have != expected {
        return GpuReadiness::in_progress(format!(
            "node {node_name} advertises {have}, expected {expected} ({gpus} GPU(s) × {replicas}) (time-slicing config not applied yet?)"
        ));
    }
    let labels = &node["metadata"]["labels"];
    let label_replicas = labels.get("nvidia.com/gpu.replicas").and_then(count);
    let strategy = labels["nvidia.com/gpu.sharing-strategy"].as_str();
    match label_replicas {
        None => {
            return GpuReadiness::in_progress(format!(
                "node {node_name} advertises {have} nvidia.com/gpu, but GPU feature discovery has not labelled it nvidia.com/gpu.replicas yet"
            ));
        }
        Some(r) if r != replicas => {
            return GpuReadiness::in_progress(format!(
                "node {node_name} is labelled nvidia.com/gpu.replicas={r}, expected {replicas} (GPU feature discovery has not seen the new config yet?)"
            ));
        }
        Some(_) => {}
    }
    let strategy_ok = match strategy {
        Some("none") => replicas == 1,
        Some("time-slicing") | Some("mps") => replicas > 1,
        // Older GFD versions do not set the label; replicas and allocatable already agree.
        None => true,
        Some(_) => false,
    };
    if !strategy_ok {
        return GpuReadiness::in_progress(format!(
            "node {node_name} is labelled nvidia.com/gpu.sharing-strategy={}, which does not match {replicas} share(s) per GPU",
            strategy.unwrap_or_default()
        ));
    }
    GpuReadiness::Ready { allocatable: have }
}

/// Readiness of one `nvidia-operator-validator` pod: `Ok(())` when Ready, else what holds it.
fn validator_pod(pod: &Value) -> Result<(), GpuReadiness> {
    let name = text(&pod["metadata"]["name"]);
    let ready = condition(pod, "Ready").is_some_and(|c| text(&c["status"]) == "True");
    if ready && text(&pod["status"]["phase"]) == "Running" {
        return Ok(());
    }
    let status = &pod["status"];
    for (list, what) in [
        ("initContainerStatuses", "init container"),
        ("containerStatuses", "container"),
    ] {
        for c in status[list].as_array().map(Vec::as_slice).unwrap_or_default() {
            let cname = text(&c["name"]);
            let waiting = &c["state"]["waiting"];
            let reason = text(&waiting["reason"]);
            let message = text(&waiting["message"]);
            // The validator's init containers are named after what they validate
            // (driver-validation, toolkit-validation, cuda-validation, plugin-validation).
            let component = cname.strip_suffix("-validation").unwrap_or(cname);
            match reason {
                "" | "PodInitializing" => continue,
                "CrashLoopBackOff" => {
                    return Err(GpuReadiness::failed(
                        format!("{component} validation fails: {what} {cname} of pod {name} is in CrashLoopBackOff {message}").trim_end().to_string(),
                        format!("see why: `kubectl -n {NAMESPACE} logs {name} -c {cname}`"),
                    ));
                }
                _ => {
                    return Err(GpuReadiness::in_progress(
                        format!("{component} validation waits: {what} {cname} of pod {name} is {reason} {message}")
                            .trim_end()
                            .to_string(),
                    ));
                }
            }
        }
        if what == "init container"
            && let Some(running) = status[list]
                .as_array()
                .and_then(|l| l.iter().find(|c| !c["state"]["running"].is_null()))
        {
            let cname = text(&running["name"]);
            return Err(GpuReadiness::in_progress(format!(
                "{} validation is running (init container {cname} of pod {name})",
                cname.strip_suffix("-validation").unwrap_or(cname)
            )));
        }
    }
    Err(GpuReadiness::in_progress(format!(
        "validator pod {name} is not Ready yet (phase {})",
        match text(&status["phase"]) {
            "" => "unknown",
            p => p,
        }
    )))
}

/// All of design §6: ClusterPolicy ready and reconciled, an `nvidia-operator-validator` pod Ready,
/// and the node advertising `gpus × replicas` shares.
pub fn gpu_stage_readiness(
    cluster_policy: Option<&Value>,
    validator_pods: &[Value],
    node: &Value,
    gpus: u32,
    replicas: u32,
) -> GpuReadiness {
    let Some(cp) = cluster_policy else {
        return GpuReadiness::in_progress(format!(
            "ClusterPolicy {CLUSTER_POLICY} does not exist yet: the Helm controller is still installing the operator chart"
        ));
    };
    match cluster_policy_readiness(cp) {
        GpuReadiness::Ready { .. } => {}
        // The operator looks again only every 45 s; node-feature-discovery's labels already say
        // whether it will find a GPU.
        GpuReadiness::InProgress { .. } if nfd_found_no_gpu(node) => return no_gpu_nodes(),
        other => return other,
    }
    if validator_pods.is_empty() {
        return GpuReadiness::in_progress(format!("no nvidia-operator-validator pod in namespace {NAMESPACE} yet"));
    }
    if !validator_pods.iter().any(|p| validator_pod(p).is_ok()) {
        // Report the first pod's problem; failures first.
        let problems: Vec<GpuReadiness> = validator_pods.iter().filter_map(|p| validator_pod(p).err()).collect();
        let first_failed = problems
            .iter()
            .find(|p| matches!(p, GpuReadiness::Failed { .. }))
            .or(problems.first());
        if let Some(p) = first_failed {
            return p.clone();
        }
    }
    node_gpu_readiness(node, gpus, replicas)
}
