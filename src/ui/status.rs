//! The human rendering of `kstrap status`: nodes, GPU sharing and the operator, stacks, then a
//! one-line verdict. Pure: a [`StatusReport`] in, aligned text out (snapshot-tested).
//!
//! Everything that is not ready is shown where it belongs (under its node, GPU or stack) with
//! the reason and, for stack objects, the command that shows more; `-v` adds recent Warning
//! events.

use crate::gpu::GPU_RESOURCE;
use crate::gpu::readiness::GpuReadiness;
use crate::kube::status::{GpuPod, NodeGpu, NodeStatus, StackStatus, StatusReport};
use crate::stack::overlay::quantity_value;
use crate::units::human_bytes;
use std::fmt::Write;

fn width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(|n| n.chars().count()).max().unwrap_or(0)
}

/// `64.0 GiB` from `64Gi` or `65674472Ki`; the quantity as written when it does not parse.
fn memory(q: &str) -> String {
    match quantity_value(q) {
        Some(bytes) if bytes >= 0.0 => human_bytes(bytes as u64),
        _ => q.to_string(),
    }
}

fn node_line(s: &mut String, n: &NodeStatus, w: usize) {
    let version = match (&n.distro, &n.kubelet_version) {
        (Some(d), Some(v)) => format!("{d} {v}"),
        (None, Some(v)) => v.clone(),
        _ => "version unknown".to_string(),
    };
    let mut line = format!("  {:<w$}  {:<8}  {version}", n.name, n.condition);
    if let Some(cpu) = &n.cpu {
        let _ = write!(line, ", cpu {cpu}");
    }
    if let Some(m) = &n.memory {
        let _ = write!(line, ", memory {}", memory(m));
    }
    if n.cordoned {
        line.push_str(", cordoned (no new pods)");
    }
    let _ = writeln!(s, "{line}");
    if let Some(r) = &n.reason {
        let _ = writeln!(s, "  {:<w$}  why: {r}", "");
    }
}

fn gpu_readiness_lines(s: &mut String, r: &GpuReadiness, pad: &str) {
    match r {
        GpuReadiness::Ready { .. } => {}
        GpuReadiness::InProgress { reason } => {
            let _ = writeln!(s, "{pad}not ready: {reason}");
        }
        GpuReadiness::Failed { reason, hint } => {
            let _ = writeln!(s, "{pad}failed: {reason}");
            let _ = writeln!(s, "{pad}fix: {hint}");
        }
    }
}

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn shares_line(g: &NodeGpu) -> String {
    let gpus = match g.gpus {
        Some(n) => plural(n, "GPU", "GPUs"),
        None => "GPUs not counted yet".to_string(),
    };
    let sharing = match (g.replicas, g.strategy.as_deref()) {
        (Some(r), Some(st)) => format!(" × {r} ({st})"),
        (Some(r), None) => format!(" × {r}"),
        (None, _) => String::new(),
    };
    match (g.allocatable, g.free) {
        (Some(a), Some(free)) => {
            // "=" only when the arithmetic holds; otherwise say what the node advertises.
            let expected = g.gpus.map(|n| n.saturating_mul(g.replicas.unwrap_or(1)));
            let advertised = if expected == Some(a) {
                format!(" = {a} {GPU_RESOURCE}")
            } else {
                format!(", {a} {GPU_RESOURCE} advertised")
            };
            format!("{gpus}{sharing}{advertised}: {} held, {free} free", g.held)
        }
        _ => format!("{gpus}{sharing}, no {GPU_RESOURCE} advertised yet"),
    }
}

fn pod_lines(s: &mut String, pods: &[GpuPod], pad: &str) {
    let names: Vec<String> = pods.iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
    let w = width(names.iter().map(String::as_str));
    for (p, name) in pods.iter().zip(&names) {
        let _ = writeln!(s, "{pad}{name:<w$}  {} × {GPU_RESOURCE}  {}", p.count, p.phase);
    }
}

fn gpu_section(s: &mut String, r: &StatusReport) {
    let _ = writeln!(s, "GPU");
    let op = &r.gpu.operator;
    let w = width(r.gpu.nodes.iter().map(|n| n.node.as_str()).chain(["operator"]));
    let pad = format!("  {:<w$}  ", "");
    match &op.readiness {
        None => {
            let _ = writeln!(s, "  {:<w$}  not installed", "operator");
        }
        Some(readiness) => {
            let state = op.state.as_deref().unwrap_or("no state yet");
            let reason = op.reason.as_deref().map(|r| format!(", {r}")).unwrap_or_default();
            let verdict = if readiness.is_ready() { "ready" } else { "not ready" };
            let _ = writeln!(
                s,
                "  {:<w$}  {verdict} (ClusterPolicy {}: {state}{reason})",
                "operator",
                crate::gpu::CLUSTER_POLICY
            );
            gpu_readiness_lines(s, readiness, &pad);
        }
    }
    if r.gpu.nodes.is_empty() {
        let _ = writeln!(
            s,
            "  {:<w$}  no node has a GPU (no nvidia.com/gpu.count label, no {GPU_RESOURCE} allocatable)",
            "nodes"
        );
    }
    for g in &r.gpu.nodes {
        let _ = writeln!(s, "  {:<w$}  {}", g.node, shares_line(g));
        if let Some(readiness) = &g.readiness
            && !readiness.is_ready()
        {
            gpu_readiness_lines(s, readiness, &pad);
        }
        pod_lines(s, &g.pods, &pad);
    }
    if !r.gpu.unscheduled.is_empty() {
        let _ = writeln!(s, "  waiting for a node (holding no share):");
        pod_lines(s, &r.gpu.unscheduled, "    ");
    }
}

fn stack_lines(s: &mut String, st: &StackStatus, w: usize, verbosity: i8) {
    let _ = writeln!(s, "  {:<w$}  {}/{} ready", st.name, st.ready, st.total);
    for o in &st.not_ready {
        let mark = if o.failed { "failed: " } else { "" };
        let _ = writeln!(s, "    {}: {mark}{}", o.object, o.reason);
        if verbosity > 0 {
            for e in &o.events {
                let _ = writeln!(s, "      event: {e}");
            }
        }
        if let Some(cmd) = &o.next_command {
            let _ = writeln!(s, "      next: {cmd}");
        }
    }
}

/// The one-line verdict: what is not ready, by section.
fn verdict(r: &StatusReport) -> String {
    if r.ok {
        return "All ready.".to_string();
    }
    let mut parts = Vec::new();
    if r.nodes.is_empty() {
        parts.push("no node".to_string());
    }
    for n in r.nodes.iter().filter(|n| !n.ready) {
        parts.push(format!("node {}", n.name));
    }
    // With the operator installed, GPU is ready when every GPU node is (and there is one).
    let gpu_ready = r.gpu.operator.readiness.is_none()
        || (!r.gpu.nodes.is_empty()
            && r.gpu
                .nodes
                .iter()
                .all(|n| n.readiness.as_ref().is_none_or(GpuReadiness::is_ready)));
    if !gpu_ready {
        parts.push("GPU".to_string());
    }
    for st in r.stacks.iter().filter(|st| !st.not_ready.is_empty()) {
        parts.push(format!(
            "stack {} ({} of {} objects)",
            st.name,
            st.not_ready.len(),
            st.total
        ));
    }
    format!("Not ready: {}.", parts.join(", "))
}

/// `kstrap status` for people.
pub fn report(r: &StatusReport, verbosity: i8) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Nodes");
    if r.nodes.is_empty() {
        let _ = writeln!(s, "  none: no node has registered with the API server yet");
    }
    let w = width(r.nodes.iter().map(|n| n.name.as_str()));
    for n in &r.nodes {
        node_line(&mut s, n, w);
    }
    gpu_section(&mut s, r);
    let _ = writeln!(s, "Stacks");
    if r.stacks.is_empty() {
        let _ = writeln!(
            s,
            "  none: kstrap has applied no stack to this cluster (`kstrap up` or `kstrap apply` does)"
        );
    }
    let w = width(r.stacks.iter().map(|st| st.name.as_str()));
    for st in &r.stacks {
        stack_lines(&mut s, st, w, verbosity);
    }
    let _ = writeln!(s, "{}", verdict(r));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::status::evaluate;
    use crate::kube::status::fixtures::*;

    #[test]
    fn healthy_gpu_node_with_voice_ai_ready() {
        let g = gathered(
            vec![gpu_node("rtx", 1, 4, 4)],
            vec![
                gpu_pod("voice-ai", "ollama-5f9c7-x2k4p", "rtx", 1, "Running"),
                gpu_pod("voice-ai", "whisper-7d4b9-q8m2z", "rtx", 1, "Running"),
                gpu_pod("voice-ai", "kokoro-6c8d5-h3n7w", "rtx", 1, "Running"),
                validator_pod(true),
            ],
            Some(cluster_policy_ready()),
            vec![gpu_operator_stack(), voice_ai_stack(true)],
        );
        let r = evaluate(&g);
        assert!(r.ok, "{:?}", r.problems);
        insta::assert_snapshot!("status_healthy_gpu", report(&r, 0));
    }

    #[test]
    fn one_object_not_ready() {
        let g = gathered(
            vec![gpu_node("rtx", 1, 4, 4)],
            vec![
                gpu_pod("voice-ai", "ollama-5f9c7-x2k4p", "rtx", 1, "Running"),
                validator_pod(true),
                image_pull_backoff_pod("voice-ai", "whisper-7d4b9-q8m2z", "whisper"),
            ],
            Some(cluster_policy_ready()),
            vec![gpu_operator_stack(), voice_ai_stack(false)],
        );
        let mut g = g;
        g.events = vec![serde_json::json!({"type": "Warning", "reason": "Failed",
            "message": "Failed to pull image \"example/whisper:missing\": not found", "count": 4,
            "lastTimestamp": "2026-01-01T00:00:00Z",
            "involvedObject": {"kind": "Pod", "name": "whisper-7d4b9-q8m2z", "namespace": "voice-ai"}})];
        let r = evaluate(&g);
        assert!(!r.ok);
        let text = report(&r, 1);
        assert!(text.contains("Deployment/whisper -n voice-ai"), "{text}");
        assert!(text.contains("ImagePullBackOff"), "{text}");
        insta::assert_snapshot!("status_one_not_ready", text);
    }

    #[test]
    fn no_stacks_installed() {
        let g = gathered(vec![cpu_node("laptop", "v1.35.3+k0s")], vec![], None, vec![]);
        let r = evaluate(&g);
        assert!(r.ok, "{:?}", r.problems);
        insta::assert_snapshot!("status_no_stacks", report(&r, 0));
    }

    #[test]
    fn a_node_and_the_gpu_not_ready() {
        let mut waiting = gpu_pod("lab", "train-0", "rtx", 2, "Pending");
        waiting["spec"].as_object_mut().unwrap().remove("nodeName");
        let g = gathered(
            vec![gpu_node("rtx", 1, 4, 1), not_ready_node("worker-2")],
            vec![validator_pod(true), waiting],
            Some(cluster_policy_ready()),
            vec![],
        );
        let r = evaluate(&g);
        assert!(!r.ok);
        let text = report(&r, 0);
        assert!(text.ends_with("Not ready: node worker-2, GPU.\n"), "{text}");
        insta::assert_snapshot!("status_node_and_gpu_not_ready", text);
    }

    #[test]
    fn memory_is_shown_in_binary_units() {
        assert_eq!(memory("65674472Ki"), "62.6 GiB");
        assert_eq!(memory("64Gi"), "64.0 GiB");
        assert_eq!(memory("lots"), "lots");
    }
}
