//! `kstrap status`: what the cluster of a kubeconfig looks like right now — its nodes, GPU
//! sharing and the GPU operator, and the readiness of every stack kstrap applied.
//!
//! Two halves, like the rest of `kube`: [`gather`] makes the API calls once (nodes, all pods, the
//! ClusterPolicy, StorageClasses, the ApplySet parents in `kube-system` and their members,
//! events where something is not ready) into plain JSON values, and [`evaluate`] turns those into
//! a [`StatusReport`] with pure functions, so every verdict is unit-tested from fixtures. The
//! verdicts reuse the rules the waiters use: [`readiness`](super::readiness) and
//! [`diagnose`](super::diagnose) for stack objects, [`crate::gpu::readiness`] for the operator.
//!
//! Stacks are found generically: every Secret `applyset-<stack>` in `kube-system` that is a
//! kstrap ApplySet parent is one stack (the user's stacks, kstrap's own `gpu-operator`, any other).
//! Only the parents' labels and annotations are read (metadata-only lists): never Secret data.

use ::kube::api::{Api, DynamicObject, ListParams};
use ::kube::core::{ApiResource, GroupVersionKind};
use futures::future::try_join_all;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use super::diagnose;
use super::ops::{self, Discovery, Resolved};
use super::readiness::{Context, Readiness, readiness};
use super::wait::{context_from_storage_classes, to_value};
use crate::applyset::{self, ApplySet, GroupKind};
use crate::gpu::readiness::{GpuReadiness, cluster_policy_readiness, gpu_stage_readiness};
use crate::gpu::wait::{VALIDATOR_SELECTOR, cluster_policy_resource};
use crate::gpu::{CLUSTER_POLICY, GPU_RESOURCE, NAMESPACE as GPU_NAMESPACE};

/// Node label GPU feature discovery puts: physical GPUs on the node.
pub const GPU_COUNT_LABEL: &str = "nvidia.com/gpu.count";
/// Node label: shares each GPU is advertised as.
pub const GPU_REPLICAS_LABEL: &str = "nvidia.com/gpu.replicas";
/// Node label: `time-slicing`, `mps` or `none`.
pub const GPU_STRATEGY_LABEL: &str = "nvidia.com/gpu.sharing-strategy";
/// Node label: the node has an NVIDIA GPU.
pub const GPU_PRESENT_LABEL: &str = "nvidia.com/gpu.present";

// ---- the report -----------------------------------------------------------------------------

/// Everything `kstrap status` says. `ok` decides the exit code (0 when true, else 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// Every node Ready, every stack object ready, and (with the GPU operator installed) the
    /// operator ready and every GPU node advertising GPUs × replicas.
    pub ok: bool,
    pub nodes: Vec<NodeStatus>,
    pub gpu: GpuStatus,
    pub stacks: Vec<StackStatus>,
    /// One line per thing that is not ready (empty when `ok`).
    pub problems: Vec<String>,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub ready: bool,
    /// `Ready`, `NotReady` or `Unknown` (the Ready condition's status, as kubectl shows it).
    pub condition: String,
    /// Why it is not Ready: the Ready condition's reason and message.
    pub reason: Option<String>,
    /// Cordoned (`spec.unschedulable`): running pods stay, new ones are not placed here.
    pub cordoned: bool,
    pub kubelet_version: Option<String>,
    /// `k3s` or `k0s`, from the kubelet version's suffix (`+k3s1`, `+k0s`).
    pub distro: Option<String>,
    /// Allocatable CPU and memory, as the node states them (`16`, `65674472Ki`).
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

/// One pod asking for GPU shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuPod {
    pub namespace: String,
    pub name: String,
    /// `nvidia.com/gpu` it requests (or limits, which is the same for extended resources).
    pub count: u32,
    pub phase: String,
    /// The node it was scheduled to; None while it waits for one (it holds no share then).
    pub node: Option<String>,
}

/// GPU sharing on one node that has a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeGpu {
    pub node: String,
    /// Physical GPUs (label `nvidia.com/gpu.count`).
    pub gpus: Option<u32>,
    /// Shares per GPU (label `nvidia.com/gpu.replicas`).
    pub replicas: Option<u32>,
    /// Label `nvidia.com/gpu.sharing-strategy`.
    pub strategy: Option<String>,
    /// Node allocatable `nvidia.com/gpu`: the shares pods can request.
    pub allocatable: Option<u32>,
    /// Shares held by pods scheduled here that have not finished.
    pub held: u32,
    /// `allocatable - held` (0 at least); None when the node advertises no shares.
    pub free: Option<u32>,
    pub pods: Vec<GpuPod>,
    /// With the GPU operator installed: whether this node is done (design §6). None without it.
    pub readiness: Option<GpuReadiness>,
}

/// The GPU operator's ClusterPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuOperator {
    /// ClusterPolicy `cluster-policy` exists (its CRD and the object).
    pub installed: bool,
    /// `status.state` (`ready`, `notReady`, `ignored`).
    pub state: Option<String>,
    /// The Ready condition's reason (`Reconciled`, `NoGPUNodes`, `OperandNotReady`).
    pub reason: Option<String>,
    /// The ClusterPolicy's own readiness (when ready, `allocatable` is the `nvidia.com/gpu` all
    /// GPU nodes advertise together); None when not installed.
    pub readiness: Option<GpuReadiness>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuStatus {
    pub operator: GpuOperator,
    /// Nodes with a GPU (labelled by GPU feature discovery, or advertising `nvidia.com/gpu`).
    pub nodes: Vec<NodeGpu>,
    /// GPU pods no node took yet (they hold no share).
    pub unscheduled: Vec<GpuPod>,
}

/// One object of a stack that is not ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotReady {
    /// `Kind/name -n ns`.
    pub object: String,
    pub reason: String,
    /// Waiting will not help (crash loop, failed Job, …).
    pub failed: bool,
    /// Recent Warning events of the object and its pods.
    pub events: Vec<String>,
    pub next_command: Option<String>,
}

/// One stack kstrap applied (one ApplySet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackStatus {
    pub name: String,
    /// The ApplySet id its members carry.
    pub applyset: String,
    pub ready: usize,
    pub total: usize,
    pub not_ready: Vec<NotReady>,
}

// ---- what gather reads ----------------------------------------------------------------------

/// The members of one stack as found in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct GatheredStack {
    pub name: String,
    pub applyset: String,
    /// Objects carrying the stack's part-of label, with apiVersion and kind set.
    pub members: Vec<Value>,
}

/// Everything [`evaluate`] needs, as the API server returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct Gathered {
    pub nodes: Vec<Value>,
    /// Every pod in every namespace.
    pub pods: Vec<Value>,
    /// ClusterPolicy `cluster-policy`; None when its CRD or the object does not exist.
    pub cluster_policy: Option<Value>,
    pub stacks: Vec<GatheredStack>,
    /// Warning events of the namespaces holding objects that are not ready.
    pub events: Vec<Value>,
    pub ctx: Context,
}

mod evaluate;
mod gather;

pub use evaluate::*;
pub use gather::*;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
