//! JSON fixtures of a cluster as [`gather`](super::gather) reads it — nodes, pods, the
//! ClusterPolicy, stack members — shared by the status evaluation tests and the snapshot tests
//! of its rendering. Shapes follow what kube-apiserver returns (k3s 1.35, GPU operator v26).

use super::{Gathered, GatheredStack};
use crate::applyset::ApplySet;
use crate::kube::readiness::Context;
use crate::kube::wait::context_from_storage_classes;
use serde_json::{Value, json};

const T: &str = "2026-01-01T00:00:00Z";

fn ready_conditions() -> Value {
    json!([
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available"},
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
    ])
}

/// A Ready node with no GPU.
pub fn cpu_node(name: &str, kubelet: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "allocatable": {"cpu": "8", "memory": "7901276Ki", "pods": "110"},
            "conditions": ready_conditions(),
            "nodeInfo": {"kubeletVersion": kubelet}}})
}

/// A Ready k3s node with `gpus` GPUs labelled by GPU feature discovery as shared `replicas`
/// ways (time-slicing), advertising `allocatable` shares.
pub fn gpu_node(name: &str, gpus: u32, replicas: u32, allocatable: u32) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.count": gpus.to_string(),
            "nvidia.com/gpu.replicas": replicas.to_string(),
            "nvidia.com/gpu.sharing-strategy": "time-slicing",
            "nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-5090-SHARED"}},
        "status": {
            "allocatable": {"cpu": "32", "memory": "98304Mi", "pods": "110", "nvidia.com/gpu": allocatable.to_string()},
            "conditions": ready_conditions(),
            "nodeInfo": {"kubeletVersion": "v1.35.3+k3s1"}}})
}

/// A node whose kubelet reports NotReady.
pub fn not_ready_node(name: &str) -> Value {
    let mut n = cpu_node(name, "v1.35.3+k3s1");
    n["status"]["conditions"] = json!([{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
        "message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"}]);
    n
}

/// A pod in `phase` on `node` whose one container limits `count` `nvidia.com/gpu`.
pub fn gpu_pod(ns: &str, name: &str, node: &str, count: u32, phase: &str) -> Value {
    let app = name.split('-').next().unwrap_or(name);
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": node, "runtimeClassName": "nvidia", "containers": [{"name": app, "image": "example/app:1",
            "resources": {"limits": {"nvidia.com/gpu": count.to_string()}}}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if phase == "Running" { "True" } else { "False" }}]}})
}

/// A pod of Deployment `app` stuck pulling its image.
pub fn image_pull_backoff_pod(ns: &str, name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": "rtx", "containers": [{"name": app, "image": "example/whisper:missing"}]},
        "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [{"name": app, "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"example/whisper:missing\""}}}]}})
}

/// The operator's validator pod.
pub fn validator_pod(ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nvidia-operator-validator-7xk2p", "namespace": "gpu-operator", "labels": {"app": "nvidia-operator-validator"}},
        "spec": {"nodeName": "rtx", "containers": [{"name": "nvidia-operator-validator", "image": "nvcr.io/nvidia/gpu-operator-validator:v26"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// ClusterPolicy `cluster-policy`, ready because it reconciled.
pub fn cluster_policy_ready() -> Value {
    json!({"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy",
        "metadata": {"name": "cluster-policy", "generation": 1},
        "status": {"state": "ready", "namespace": "gpu-operator", "conditions": [
            {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ClusterPolicy is ready as all resources have been successfully reconciled", "lastTransitionTime": T},
            {"type": "Error", "status": "False", "reason": "Ready", "message": "", "lastTransitionTime": T}]}})
}

/// ClusterPolicy `cluster-policy` that found no GPU node (the operator calls that ready).
pub fn cluster_policy_no_gpu_nodes() -> Value {
    let mut cp = cluster_policy_ready();
    cp["status"]["conditions"][0]["reason"] = json!("NoGPUNodes");
    cp["status"]["conditions"][0]["message"] = json!("No GPU node found, watching for new nodes to join the cluster.");
    cp
}

fn member(stack: &str, mut v: Value) -> Value {
    let set = ApplySet::for_stack(stack);
    if let Err(e) = set.label_member(&mut v) {
        panic!("fixture: {e}");
    }
    v
}

/// A Deployment of `app` in `ns` with `ready` of `replicas` pods ready.
pub fn deployment(ns: &str, app: &str, replicas: u32, ready: u32) -> Value {
    let available = if ready == replicas { "True" } else { "False" };
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": ns, "generation": 1},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": app, "image": "example/app:1"}]}}},
        "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [{"type": "Available", "status": available, "reason": "MinimumReplicasAvailable", "lastTransitionTime": T}]}})
}

/// kstrap's own `gpu-operator` stack: namespace, time-slicing ConfigMap, k3s HelmChart.
pub fn gpu_operator_stack() -> GatheredStack {
    let stack = "gpu-operator";
    GatheredStack {
        name: stack.into(),
        applyset: ApplySet::for_stack(stack).id,
        members: vec![
            member(
                stack,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gpu-operator"}, "status": {"phase": "Active"}}),
            ),
            member(
                stack,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kstrap-time-slicing", "namespace": "gpu-operator"}, "data": {"any": "version: v1\n"}}),
            ),
            member(
                stack,
                json!({"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart", "metadata": {"name": "gpu-operator", "namespace": "kube-system", "generation": 1},
                "spec": {"chart": "gpu-operator"}, "status": {}}),
            ),
        ],
    }
}

/// A `voice-ai` stack: namespace, config, a claim on a WaitForFirstConsumer class, three
/// Deployments and a Service; `whisper` has no ready pod unless `all_ready`.
pub fn voice_ai_stack(all_ready: bool) -> GatheredStack {
    let stack = "voice-ai";
    let ns = "voice-ai";
    GatheredStack {
        name: stack.into(),
        applyset: ApplySet::for_stack(stack).id,
        members: vec![
            member(
                stack,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "status": {"phase": "Active"}}),
            ),
            member(
                stack,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns}, "data": {"LOG": "info"}}),
            ),
            member(
                stack,
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models", "namespace": ns},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}, "status": {"phase": "Pending"}}),
            ),
            member(stack, deployment(ns, "ollama", 1, 1)),
            member(stack, deployment(ns, "whisper", 1, u32::from(all_ready))),
            member(stack, deployment(ns, "kokoro", 1, 1)),
            member(
                stack,
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ollama", "namespace": ns},
                "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.10", "ports": [{"port": 11434}]}}),
            ),
        ],
    }
}

/// A context like k3s's: `local-path` is the default class and waits for its first consumer.
pub fn k3s_context() -> Context {
    let classes = vec![json!({"metadata": {"name": "local-path",
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"})];
    Context {
        now_unix: 1_767_225_600,
        ..context_from_storage_classes(&classes)
    }
}

/// What gather would have read.
pub fn gathered(
    nodes: Vec<Value>,
    pods: Vec<Value>,
    cluster_policy: Option<Value>,
    stacks: Vec<GatheredStack>,
) -> Gathered {
    Gathered {
        nodes,
        pods,
        cluster_policy,
        stacks,
        events: Vec::new(),
        ctx: k3s_context(),
    }
}
