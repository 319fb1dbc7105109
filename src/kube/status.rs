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

// ---- pure evaluation ------------------------------------------------------------------------

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A whole-device quantity (`"4"`, `4`); anything else is None.
fn whole(v: &Value) -> Option<u32> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

/// `k3s` / `k0s` from a kubelet version (`v1.35.3+k3s1`, `v1.35.3+k0s`).
pub fn distro_of(kubelet_version: &str) -> Option<&'static str> {
    let suffix = kubelet_version.split_once('+').map(|(_, s)| s)?;
    if suffix.starts_with("k3s") {
        Some("k3s")
    } else if suffix.starts_with("k0s") {
        Some("k0s")
    } else {
        None
    }
}

/// One node's status from its JSON.
pub fn node_status(node: &Value) -> NodeStatus {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    let (is_ready, condition, reason) = match ready {
        None => (
            false,
            "Unknown".to_string(),
            Some("the kubelet has not reported a Ready condition yet".to_string()),
        ),
        Some(c) => {
            let status = c["status"].as_str().unwrap_or("Unknown");
            let why = match (text(c, "/reason"), text(c, "/message")) {
                (Some(r), Some(m)) => format!("{r}: {m}"),
                (Some(r), None) => r.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => "no reason given".to_string(),
            };
            match status {
                "True" => (true, "Ready".to_string(), None),
                "False" => (false, "NotReady".to_string(), Some(why)),
                _ => (false, "Unknown".to_string(), Some(why)),
            }
        }
    };
    let kubelet_version = text(node, "/status/nodeInfo/kubeletVersion").map(str::to_string);
    NodeStatus {
        name: text(node, "/metadata/name").unwrap_or_default().to_string(),
        ready: is_ready,
        condition,
        reason,
        cordoned: node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true),
        distro: kubelet_version.as_deref().and_then(distro_of).map(str::to_string),
        kubelet_version,
        cpu: text(node, "/status/allocatable/cpu").map(str::to_string),
        memory: text(node, "/status/allocatable/memory").map(str::to_string),
    }
}

fn container_gpus(c: &Value) -> u32 {
    let res = &c["resources"];
    res["requests"]
        .get(GPU_RESOURCE)
        .or_else(|| res["limits"].get(GPU_RESOURCE))
        .and_then(whole)
        .unwrap_or(0)
}

/// The `nvidia.com/gpu` a pod asks for, as the scheduler counts it: the sum over its containers
/// (and sidecar init containers), or the largest plain init container if that is more.
pub fn pod_gpu_count(pod: &Value) -> u32 {
    let list = |k: &str| {
        pod.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let mut running: u32 = list("containers").iter().map(container_gpus).sum();
    let mut init_max = 0;
    for c in list("initContainers") {
        if c["restartPolicy"] == "Always" {
            running += container_gpus(c);
        } else {
            init_max = init_max.max(container_gpus(c));
        }
    }
    running.max(init_max)
}

/// Pods that ask for GPU shares and have not finished (Succeeded and Failed pods hold none),
/// sorted by namespace and name.
pub fn gpu_pods(pods: &[Value]) -> Vec<GpuPod> {
    let mut out: Vec<GpuPod> = pods
        .iter()
        .filter(|p| !matches!(text(p, "/status/phase"), Some("Succeeded" | "Failed")))
        .filter_map(|p| {
            let count = pod_gpu_count(p);
            (count > 0).then(|| GpuPod {
                namespace: text(p, "/metadata/namespace").unwrap_or_default().to_string(),
                name: text(p, "/metadata/name").unwrap_or_default().to_string(),
                count,
                phase: text(p, "/status/phase").unwrap_or("Pending").to_string(),
                node: text(p, "/spec/nodeName").map(str::to_string),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// GPU sharing on `node`, or None when it has no GPU (no GPU labels, no `nvidia.com/gpu`).
pub fn node_gpu(node: &Value, pods: &[GpuPod]) -> Option<NodeGpu> {
    let name = text(node, "/metadata/name").unwrap_or_default();
    let gpus = label(node, GPU_COUNT_LABEL).and_then(|v| v.trim().parse().ok());
    let replicas = label(node, GPU_REPLICAS_LABEL).and_then(|v| v.trim().parse().ok());
    let strategy = label(node, GPU_STRATEGY_LABEL).map(str::to_string);
    let advertised = node.pointer("/status/allocatable").and_then(|a| a.get(GPU_RESOURCE));
    let allocatable = advertised.and_then(whole);
    let present = label(node, GPU_PRESENT_LABEL) == Some("true");
    if gpus.is_none() && advertised.is_none() && !present {
        return None;
    }
    let mine: Vec<GpuPod> = pods
        .iter()
        .filter(|p| p.node.as_deref() == Some(name))
        .cloned()
        .collect();
    let held = mine.iter().map(|p| p.count).sum();
    Some(NodeGpu {
        node: name.to_string(),
        gpus,
        replicas,
        strategy,
        allocatable,
        held,
        free: allocatable.map(|a: u32| a.saturating_sub(held)),
        pods: mine,
        readiness: None,
    })
}

/// The ClusterPolicy as the report shows it.
pub fn operator_status(cluster_policy: Option<&Value>) -> GpuOperator {
    let Some(cp) = cluster_policy else {
        return GpuOperator {
            installed: false,
            state: None,
            reason: None,
            readiness: None,
        };
    };
    let reason = cp
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| text(c, "/reason"))
        .map(str::to_string);
    GpuOperator {
        installed: true,
        state: text(cp, "/status/state").map(str::to_string),
        reason,
        readiness: Some(cluster_policy_readiness(cp)),
    }
}

fn is_validator(pod: &Value) -> bool {
    let (key, value) = VALIDATOR_SELECTOR.split_once('=').unwrap_or((VALIDATOR_SELECTOR, ""));
    text(pod, "/metadata/namespace") == Some(GPU_NAMESPACE) && label(pod, key) == Some(value)
}

/// GPU sharing on every node and the operator's state. With the operator installed, each GPU
/// node is judged by the waiter's own rule (`gpu_stage_readiness`) with the GPUs and replicas
/// its labels state.
pub fn gpu_status(nodes: &[Value], pods: &[Value], cluster_policy: Option<&Value>) -> GpuStatus {
    let holders = gpu_pods(pods);
    let mut operator = operator_status(cluster_policy);
    let validators: Vec<Value> = pods.iter().filter(|p| is_validator(p)).cloned().collect();
    let mut gpu_nodes = Vec::new();
    for node in nodes {
        let Some(mut g) = node_gpu(node, &holders) else {
            continue;
        };
        if let Some(cp) = cluster_policy {
            g.readiness = Some(match g.gpus {
                Some(gpus) => gpu_stage_readiness(Some(cp), &validators, node, gpus, g.replicas.unwrap_or(1)),
                None => match gpu_stage_readiness(Some(cp), &validators, node, 0, 1) {
                    failed @ GpuReadiness::Failed { .. } => failed,
                    _ => GpuReadiness::InProgress {
                        reason: format!(
                            "GPU feature discovery has not labelled node {} with {GPU_COUNT_LABEL} yet",
                            g.node
                        ),
                    },
                },
            });
        }
        gpu_nodes.push(g);
    }
    // The operator's own verdict cannot know the shares; once ready, it reports what the GPU
    // nodes advertise together.
    if let Some(GpuReadiness::Ready { allocatable }) = operator.readiness.as_mut() {
        *allocatable = gpu_nodes.iter().filter_map(|n| n.allocatable).sum();
    }
    GpuStatus {
        operator,
        nodes: gpu_nodes,
        unscheduled: holders.into_iter().filter(|p| p.node.is_none()).collect(),
    }
}

/// One member's readiness, sharpened by its pods (as the waiter does).
pub fn member_readiness(member: &Value, pods: &[Value], ctx: &Context) -> Readiness {
    let own = readiness(member, ctx);
    let kind = member["kind"].as_str().unwrap_or_default();
    if diagnose::has_pods(kind) {
        let picked = diagnose::pods_of(member, pods);
        diagnose::with_pods(member, own, &picked, ctx)
    } else {
        own
    }
}

/// A stack's ready count and, for each object not ready, why and what to run next.
pub fn stack_status(stack: &GatheredStack, pods: &[Value], events: &[Value], ctx: &Context) -> StackStatus {
    let mut members: Vec<&Value> = stack.members.iter().collect();
    members.sort_by_key(|m| diagnose::display_name(m));
    let mut not_ready = Vec::new();
    for m in &members {
        let state = member_readiness(m, pods, ctx);
        let Some(reason) = state.reason() else {
            continue;
        };
        let picked = diagnose::pods_of(m, pods);
        let d = diagnose::diagnose(m, &picked, events, ctx);
        not_ready.push(NotReady {
            object: d.object,
            reason: reason.to_string(),
            failed: state.is_failed(),
            events: d.events,
            next_command: d.next_command,
        });
    }
    StackStatus {
        name: stack.name.clone(),
        applyset: stack.applyset.clone(),
        ready: members.len() - not_ready.len(),
        total: members.len(),
        not_ready,
    }
}

/// Namespaces holding a member that is not ready (where events are worth reading).
pub fn not_ready_namespaces(stacks: &[GatheredStack], pods: &[Value], ctx: &Context) -> BTreeSet<String> {
    stacks
        .iter()
        .flat_map(|s| &s.members)
        .filter(|m| !member_readiness(m, pods, ctx).is_ready())
        .filter_map(|m| text(m, "/metadata/namespace").map(str::to_string))
        .collect()
}

fn gpu_problem(what: &str, r: &GpuReadiness) -> Option<String> {
    match r {
        GpuReadiness::Ready { .. } => None,
        GpuReadiness::InProgress { reason } => Some(format!("{what}: {reason}")),
        GpuReadiness::Failed { reason, hint } => Some(format!("{what}: {reason} (fix: {hint})")),
    }
}

/// The whole report from what [`gather`] read.
pub fn evaluate(g: &Gathered) -> StatusReport {
    let nodes: Vec<NodeStatus> = g.nodes.iter().map(node_status).collect();
    let gpu = gpu_status(&g.nodes, &g.pods, g.cluster_policy.as_ref());
    let mut stacks: Vec<StackStatus> = g
        .stacks
        .iter()
        .map(|s| stack_status(s, &g.pods, &g.events, &g.ctx))
        .collect();
    stacks.sort_by(|a, b| a.name.cmp(&b.name));

    let mut problems = Vec::new();
    if nodes.is_empty() {
        problems.push("no node has registered with the API server".to_string());
    }
    for n in nodes.iter().filter(|n| !n.ready) {
        problems.push(format!(
            "node {} is {}: {}",
            n.name,
            n.condition,
            n.reason.as_deref().unwrap_or("no reason given")
        ));
    }
    if let Some(r) = &gpu.operator.readiness {
        let mut gpu_problems: Vec<String> = gpu
            .nodes
            .iter()
            .filter_map(|n| n.readiness.as_ref().and_then(|r| gpu_problem("GPU", r)))
            .collect();
        if gpu.nodes.is_empty() {
            gpu_problems.extend(gpu_problem("GPU operator", r).or_else(|| {
                Some(format!(
                    "GPU operator: installed, but no node has a GPU ({GPU_COUNT_LABEL} label or {GPU_RESOURCE} allocatable)"
                ))
            }));
        }
        gpu_problems.dedup();
        problems.extend(gpu_problems);
    }
    for s in &stacks {
        for o in &s.not_ready {
            problems.push(format!("stack {}: {}: {}", s.name, o.object, o.reason));
        }
    }
    StatusReport {
        ok: problems.is_empty(),
        nodes,
        gpu,
        stacks,
        problems,
    }
}

// ---- gathering ------------------------------------------------------------------------------

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No answer from the API server (connection refused, DNS, TLS, timeout).
    #[error("cannot reach the cluster's API server: {message}")]
    Unreachable { message: String },
    /// The API server answered with an error.
    #[error("{what}: {message}")]
    Api { what: String, message: String },
}

/// An error and its sources in one line, each cause once ("client error (Connect): tcp connect
/// error: Connection refused (os error 111)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn status_error(what: &str, e: ::kube::Error) -> StatusError {
    match &e {
        ::kube::Error::Api(_) => StatusError::Api {
            what: what.to_string(),
            message: ops::describe(&e),
        },
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) => StatusError::Unreachable { message: chain(&e) },
        _ => StatusError::Api {
            what: what.to_string(),
            message: chain(&e),
        },
    }
}

/// Runs `f`, retrying only answers worth retrying (429 and 5xx, with `ops::retry_delay`'s
/// backoff). A server that does not answer at all is reported at once: a status is a snapshot,
/// and "is the cluster running?" should not take seconds to say.
async fn retry_api<T, F, Fut>(f: F) -> Result<T, ::kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    ops::retry_if(|e| matches!(e, ::kube::Error::Api(_)), f).await
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn list_all(
    client: &::kube::Client,
    ar: &ApiResource,
    namespace: Option<&str>,
    lp: &ListParams,
) -> Result<Vec<Value>, ::kube::Error> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    let list = retry_api(|| api.list(lp)).await?;
    Ok(list.items.into_iter().map(|o| to_value(o, ar)).collect())
}

async fn cluster_policy(client: &::kube::Client) -> Result<Option<Value>, ::kube::Error> {
    let ar = cluster_policy_resource();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    // A missing CRD answers 404 like a missing object: both mean "not installed".
    match retry_api(|| api.get_opt(CLUSTER_POLICY)).await {
        Ok(found) => Ok(found.map(|o| to_value(o, &ar))),
        Err(e) if ops::is_status(&e, 404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The kstrap ApplySet parents in `kube-system`: (stack, what they record). Metadata only: the
/// parents are Secrets, and their data (none, but still) is never requested.
async fn parents(client: &::kube::Client) -> Result<Vec<(ApplySet, applyset::Recorded)>, ::kube::Error> {
    use k8s_openapi::api::core::v1::Secret;
    let api: Api<Secret> = Api::namespaced(client.clone(), applyset::PARENT_NAMESPACE);
    let lp = ListParams::default().labels(applyset::ID_LABEL);
    let list = retry_api(|| api.list_metadata(&lp)).await?;
    let mut out = Vec::new();
    for p in list.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        let Some(stack) = name.strip_prefix("applyset-").filter(|s| !s.is_empty()) else {
            continue;
        };
        let set = ApplySet::for_stack(stack);
        let meta = json!({ "metadata": serde_json::to_value(&p.metadata).unwrap_or(Value::Null) });
        // Another tool's ApplySet, or a Secret that only looks like a parent: not a kstrap stack.
        if let Ok(recorded) = applyset::read_parent(&set, &meta) {
            out.push((set, recorded));
        }
    }
    Ok(out)
}

/// The members of one stack: objects of its recorded kinds in its recorded namespaces that carry
/// its part-of label. Kinds the cluster no longer serves (their CRD was removed) have none.
async fn members(
    client: &::kube::Client,
    discovery: &Discovery,
    resolved: &mut HashMap<GroupKind, Option<Resolved>>,
    set: &ApplySet,
    recorded: &applyset::Recorded,
) -> Result<Vec<Value>, StatusError> {
    let selector = set.member_selector();
    let lp = ListParams::default().labels(&selector);
    let mut lists = Vec::new();
    for gk in &recorded.group_kinds {
        if !resolved.contains_key(gk) {
            let r = discovery
                .resolve_group_kind(&gk.group, &gk.kind)
                .await
                .map_err(|e| status_error(&format!("discovering {}", gk.encode()), e))?;
            resolved.insert(gk.clone(), r);
        }
        let Some(Some(r)) = resolved.get(gk) else {
            continue;
        };
        let scopes: Vec<Option<String>> = if r.namespaced {
            recorded.namespaces.iter().cloned().map(Some).collect()
        } else {
            vec![None]
        };
        for ns in scopes {
            let r = r.clone();
            let lp = lp.clone();
            let what = format!("listing {} of stack {}", gk.encode(), set.name);
            // A Secret is ready once it exists: its metadata is all status needs, and its data
            // is never asked for.
            let metadata_only = gk.group.is_empty() && gk.kind == "Secret";
            lists.push(async move {
                let api = ops::api_for(client, &r, ns.as_deref());
                let items: Result<Vec<Value>, ::kube::Error> = if metadata_only {
                    retry_api(|| api.list_metadata(&lp)).await.map(|l| {
                        l.items
                            .into_iter()
                            .map(|o| metadata_object(&r.resource, &o.metadata))
                            .collect()
                    })
                } else {
                    retry_api(|| api.list(&lp))
                        .await
                        .map(|l| l.items.into_iter().map(|o| to_value(o, &r.resource)).collect())
                };
                items.map_err(|e| status_error(&what, e))
            });
        }
    }
    let found: Vec<Value> = try_join_all(lists).await?.into_iter().flatten().collect();
    // Only what carries our label exactly (the server filtered; this is belt and braces).
    Ok(found
        .into_iter()
        .filter(|m| label(m, applyset::PART_OF_LABEL) == Some(set.id.as_str()))
        .collect())
}

/// An object as its type and metadata alone (what a metadata-only list returns).
fn metadata_object(ar: &ApiResource, meta: &::kube::api::ObjectMeta) -> Value {
    json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": serde_json::to_value(meta).unwrap_or(Value::Null),
    })
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Reads what the report needs. Nodes first: if the API server does not answer, that is the
/// error, before anything else is tried.
pub async fn gather(client: &::kube::Client) -> Result<Gathered, StatusError> {
    let nodes = list_all(
        client,
        &resource("", "v1", "Node", "nodes"),
        None,
        &ListParams::default(),
    )
    .await
    .map_err(|e| status_error("listing nodes", e))?;
    let lp = ListParams::default();
    let pods_ar = resource("", "v1", "Pod", "pods");
    let classes_ar = resource("storage.k8s.io", "v1", "StorageClass", "storageclasses");
    let (pods, cluster_policy, classes, parents) = futures::try_join!(
        async {
            list_all(client, &pods_ar, None, &lp)
                .await
                .map_err(|e| status_error("listing pods", e))
        },
        async {
            cluster_policy(client)
                .await
                .map_err(|e| status_error(&format!("reading ClusterPolicy {CLUSTER_POLICY}"), e))
        },
        async {
            // Without StorageClasses the PVC rule falls back to "Bound", as the waiter does.
            Ok(list_all(client, &classes_ar, None, &lp).await.unwrap_or_default())
        },
        async {
            parents(client).await.map_err(|e| {
                status_error(
                    &format!("listing ApplySet parents in {}", applyset::PARENT_NAMESPACE),
                    e,
                )
            })
        },
    )?;
    let ctx = Context {
        now_unix: now_unix(),
        ..context_from_storage_classes(&classes)
    };

    let discovery = Discovery::new(client.clone());
    let mut resolved = HashMap::new();
    let mut stacks = Vec::new();
    for (set, recorded) in &parents {
        let members = members(client, &discovery, &mut resolved, set, recorded).await?;
        let name = set.name.strip_prefix("applyset-").unwrap_or(&set.name).to_string();
        stacks.push(GatheredStack {
            name,
            applyset: set.id.clone(),
            members,
        });
    }

    // Events only where something is not ready; they explain, so failing to read them is no error.
    let event_ar = resource("", "v1", "Event", "events");
    let mut events = Vec::new();
    for ns in not_ready_namespaces(&stacks, &pods, &ctx) {
        let lp = ListParams::default().fields("type=Warning");
        events.extend(list_all(client, &event_ar, Some(&ns), &lp).await.unwrap_or_default());
    }

    Ok(Gathered {
        nodes,
        pods,
        cluster_policy,
        stacks,
        events,
        ctx,
    })
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
