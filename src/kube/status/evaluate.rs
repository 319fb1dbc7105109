//! The pure half of `kstrap status`: verdicts on nodes, GPU sharing, the GPU operator and each
//! stack's members from what [`gather`](super::gather) read, unit-tested from fixtures.

use super::*;

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

pub(super) fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
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
        let sharpened = diagnose::with_pods(member, own, &picked, ctx);
        // A pod the kubelet rejected at admission (after a reboot) stays until deleted.
        crate::kube::admission::with_rejected(member, sharpened, &picked)
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
        let rejected = picked.iter().any(|p| crate::kube::admission::rejection(p).is_some());
        not_ready.push(NotReady {
            object: d.object,
            reason: reason.to_string(),
            failed: state.is_failed(),
            events: d.events,
            next_command: if rejected {
                Some(crate::kube::admission::CLEAR_HINT.to_string())
            } else {
                d.next_command
            },
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
