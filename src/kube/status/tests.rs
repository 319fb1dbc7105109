use super::fixtures::*;
use super::gather::{chain, status_error};
use super::*;
use serde_json::json;

fn names(pods: &[GpuPod]) -> Vec<String> {
    pods.iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect()
}

#[test]
fn one_gpu_times_four_with_three_pods_holding_shares_leaves_one_free() {
    let nodes = vec![gpu_node("rtx", 1, 4, 4)];
    let pods = vec![
        gpu_pod("voice-ai", "ollama-1", "rtx", 1, "Running"),
        gpu_pod("voice-ai", "whisper-1", "rtx", 1, "Running"),
        gpu_pod("other", "train-1", "rtx", 1, "Pending"),
        validator_pod(true),
    ];
    let g = gpu_status(&nodes, &pods, Some(&cluster_policy_ready()));
    assert_eq!(g.nodes.len(), 1);
    let n = &g.nodes[0];
    assert_eq!((n.gpus, n.replicas, n.allocatable), (Some(1), Some(4), Some(4)));
    assert_eq!(n.strategy.as_deref(), Some("time-slicing"));
    assert_eq!(n.held, 3);
    assert_eq!(n.free, Some(1));
    assert_eq!(
        names(&n.pods),
        ["other/train-1", "voice-ai/ollama-1", "voice-ai/whisper-1"]
    );
    assert_eq!(n.pods[0].phase, "Pending");
    assert_eq!(n.readiness, Some(GpuReadiness::Ready { allocatable: 4 }));
    assert!(g.operator.installed);
    assert_eq!(g.operator.readiness, Some(GpuReadiness::Ready { allocatable: 4 }));
    assert_eq!(g.operator.state.as_deref(), Some("ready"));
    assert_eq!(g.operator.reason.as_deref(), Some("Reconciled"));
    assert!(g.unscheduled.is_empty());
}

#[test]
fn a_node_without_gpu_labels_or_resource_has_no_gpu() {
    let node = cpu_node("laptop", "v1.35.3+k0s");
    assert_eq!(node_gpu(&node, &[]), None);
    let g = gpu_status(&[node], &[], None);
    assert!(g.nodes.is_empty());
    assert!(!g.operator.installed);
    assert_eq!(g.operator.readiness, None);
    // Nothing about GPUs is a problem when there is no operator.
    let r = evaluate(&gathered(vec![cpu_node("laptop", "v1.35.3+k0s")], vec![], None, vec![]));
    assert!(r.ok, "{:?}", r.problems);
}

#[test]
fn finished_pods_hold_no_share_and_unscheduled_ones_are_listed_apart() {
    let node = gpu_node("rtx", 1, 4, 4);
    let mut waiting = gpu_pod("ai", "big-1", "rtx", 2, "Pending");
    waiting["spec"].as_object_mut().unwrap().remove("nodeName");
    let pods = vec![
        gpu_pod("ai", "done-1", "rtx", 1, "Succeeded"),
        gpu_pod("ai", "crashed-1", "rtx", 1, "Failed"),
        gpu_pod("ai", "run-1", "rtx", 1, "Running"),
        waiting,
        // Another node's pod holds none of this node's shares.
        gpu_pod("ai", "elsewhere-1", "other-node", 1, "Running"),
    ];
    let holders = gpu_pods(&pods);
    assert_eq!(names(&holders), ["ai/big-1", "ai/elsewhere-1", "ai/run-1"]);
    let n = node_gpu(&node, &holders).unwrap();
    assert_eq!(n.held, 1);
    assert_eq!(n.free, Some(3));
    let g = gpu_status(&[node], &pods, None);
    assert_eq!(names(&g.unscheduled), ["ai/big-1"]);
    assert_eq!(g.unscheduled[0].count, 2);
    assert_eq!(g.nodes[0].readiness, None, "no operator: nothing to judge");
}

#[test]
fn more_pods_than_shares_never_underflow() {
    let node = gpu_node("rtx", 1, 2, 2);
    let pods: Vec<Value> = (0..3)
        .map(|i| gpu_pod("ai", &format!("p-{i}"), "rtx", 1, "Running"))
        .collect();
    let n = node_gpu(&node, &gpu_pods(&pods)).unwrap();
    assert_eq!((n.held, n.free), (3, Some(0)));
}

#[test]
fn gpu_count_follows_the_scheduler() {
    let pod = |spec: Value| json!({"kind": "Pod", "spec": spec});
    // Requests win over limits; containers add up.
    let p = pod(json!({"containers": [
        {"name": "a", "resources": {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "2"}}},
        {"name": "b", "resources": {"limits": {"nvidia.com/gpu": 1}}},
        {"name": "c"}]}));
    assert_eq!(pod_gpu_count(&p), 3);
    // A plain init container counts only if it asks for more than the containers together;
    // a sidecar (restartPolicy Always) runs alongside and adds.
    let p = pod(json!({
        "initContainers": [{"name": "warm", "resources": {"limits": {"nvidia.com/gpu": "4"}}}],
        "containers": [{"name": "a", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}));
    assert_eq!(pod_gpu_count(&p), 4);
    let p = pod(json!({
        "initContainers": [{"name": "side", "restartPolicy": "Always", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        "containers": [{"name": "a", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}));
    assert_eq!(pod_gpu_count(&p), 2);
    assert_eq!(
        pod_gpu_count(&pod(
            json!({"containers": [{"name": "x", "resources": {"limits": {"nvidia.com/gpu": "lots"}}}]})
        )),
        0
    );
    assert_eq!(pod_gpu_count(&json!({"kind": "Pod"})), 0);
}

#[test]
fn nodes_report_ready_version_distro_and_resources() {
    let n = node_status(&gpu_node("rtx", 1, 4, 4));
    assert!(n.ready);
    assert_eq!(n.condition, "Ready");
    assert_eq!(n.reason, None);
    assert_eq!(n.kubelet_version.as_deref(), Some("v1.35.3+k3s1"));
    assert_eq!(n.distro.as_deref(), Some("k3s"));
    assert_eq!((n.cpu.as_deref(), n.memory.as_deref()), (Some("32"), Some("98304Mi")));
    assert_eq!(
        node_status(&cpu_node("l", "v1.35.3+k0s")).distro.as_deref(),
        Some("k0s")
    );
    assert_eq!(distro_of("v1.33.1"), None);
    assert_eq!(distro_of("v1.33.1+rke2r1"), None);

    let bad = node_status(&not_ready_node("n1"));
    assert!(!bad.ready);
    assert_eq!(bad.condition, "NotReady");
    assert!(
        bad.reason
            .as_deref()
            .unwrap()
            .starts_with("KubeletNotReady: container runtime network not ready")
    );
    let mut unknown = cpu_node("n2", "v1.35.3+k3s1");
    unknown["status"]["conditions"] = json!([{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."}]);
    unknown["spec"] = json!({"unschedulable": true});
    let u = node_status(&unknown);
    assert_eq!((u.ready, u.condition.as_str(), u.cordoned), (false, "Unknown", true));
    assert_eq!(
        u.reason.as_deref(),
        Some("NodeStatusUnknown: Kubelet stopped posting node status.")
    );
    let none = node_status(&json!({"metadata": {"name": "new"}}));
    assert!(!none.ready);
    assert!(none.reason.unwrap().contains("not reported"));
}

#[test]
fn a_node_not_ready_fails_the_status_and_says_why() {
    let r = evaluate(&gathered(vec![not_ready_node("n1")], vec![], None, vec![]));
    assert!(!r.ok);
    assert_eq!(r.problems.len(), 1);
    assert!(
        r.problems[0].starts_with("node n1 is NotReady: KubeletNotReady"),
        "{:?}",
        r.problems
    );
    let r = evaluate(&gathered(vec![], vec![], None, vec![]));
    assert!(!r.ok);
    assert_eq!(r.problems, ["no node has registered with the API server"]);
}

#[test]
fn stacks_count_ready_members_and_explain_the_others() {
    let pods = vec![image_pull_backoff_pod("voice-ai", "whisper-7d4b9-q8m2z", "whisper")];
    let s = stack_status(&voice_ai_stack(false), &pods, &[], &k3s_context());
    assert_eq!((s.ready, s.total), (6, 7), "{s:?}");
    assert_eq!(s.name, "voice-ai");
    assert_eq!(s.applyset, ApplySet::for_stack("voice-ai").id);
    assert_eq!(s.not_ready.len(), 1);
    let o = &s.not_ready[0];
    assert_eq!(o.object, "Deployment/whisper -n voice-ai");
    assert!(o.reason.contains("ImagePullBackOff"), "{}", o.reason);
    assert!(o.reason.contains("whisper-7d4b9-q8m2z"), "{}", o.reason);
    assert!(!o.failed, "an image pull may still succeed");
    assert_eq!(
        o.next_command.as_deref(),
        Some("kubectl -n voice-ai describe pod whisper-7d4b9-q8m2z")
    );
    // All ready; the Pending claim on a WaitForFirstConsumer class counts as ready.
    let s = stack_status(&voice_ai_stack(true), &[], &[], &k3s_context());
    assert_eq!((s.ready, s.total, s.not_ready.len()), (7, 7, 0));
    // Without that context the claim waits for Bound.
    let s = stack_status(&voice_ai_stack(true), &[], &[], &Context::default());
    assert_eq!(s.not_ready[0].object, "PersistentVolumeClaim/models -n voice-ai");
}

#[test]
fn a_crash_looping_pod_fails_its_deployment_and_events_explain() {
    let mut pod = image_pull_backoff_pod("voice-ai", "whisper-1", "whisper");
    pod["status"]["containerStatuses"][0]["state"]["waiting"] =
        json!({"reason": "CrashLoopBackOff", "message": "back-off 5m0s"});
    pod["status"]["containerStatuses"][0]["restartCount"] = json!(7);
    pod["status"]["containerStatuses"][0]["lastState"] =
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
    let events = vec![
        json!({"type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container",
        "count": 12, "lastTimestamp": "2026-01-01T00:00:00Z",
        "involvedObject": {"kind": "Pod", "name": "whisper-1", "namespace": "voice-ai"}}),
    ];
    let stack = voice_ai_stack(false);
    let mut g = gathered(
        vec![cpu_node("rtx", "v1.35.3+k3s1")],
        vec![pod.clone()],
        None,
        vec![stack.clone()],
    );
    g.events = events;
    let r = evaluate(&g);
    assert!(!r.ok);
    let o = &r.stacks[0].not_ready[0];
    assert!(o.failed);
    assert!(
        o.reason
            .contains("CrashLoopBackOff (7 restarts, last exit code 137: OOMKilled)"),
        "{}",
        o.reason
    );
    assert_eq!(
        o.next_command.as_deref(),
        Some("kubectl -n voice-ai logs whisper-1 -c whisper --previous")
    );
    assert_eq!(
        o.events,
        ["Pod/whisper-1 BackOff: Back-off restarting failed container (×12)"]
    );
    assert_eq!(r.problems.len(), 1);
    assert!(
        r.problems[0].starts_with("stack voice-ai: Deployment/whisper -n voice-ai: "),
        "{:?}",
        r.problems
    );
    assert_eq!(
        not_ready_namespaces(&[stack], &[pod], &k3s_context()),
        BTreeSet::from(["voice-ai".to_string()])
    );
}

#[test]
fn the_operator_must_reconcile_validate_and_advertise_every_share() {
    let ok = |nodes: Vec<Value>, pods: Vec<Value>, cp: Option<Value>| evaluate(&gathered(nodes, pods, cp, vec![]));
    let r = ok(
        vec![gpu_node("rtx", 1, 4, 4)],
        vec![validator_pod(true)],
        Some(cluster_policy_ready()),
    );
    assert!(r.ok, "{:?}", r.problems);

    // The plugin has not read the time-slicing config: 1 share, not 4.
    let mut node = gpu_node("rtx", 1, 4, 1);
    node["metadata"]["labels"]["nvidia.com/gpu.replicas"] = json!("4");
    let r = ok(vec![node], vec![validator_pod(true)], Some(cluster_policy_ready()));
    assert!(!r.ok);
    assert!(r.problems[0].contains("advertises 1, expected 4"), "{:?}", r.problems);

    // The validator is not Ready yet.
    let r = ok(
        vec![gpu_node("rtx", 1, 4, 4)],
        vec![validator_pod(false)],
        Some(cluster_policy_ready()),
    );
    assert!(!r.ok);
    assert!(r.problems[0].contains("nvidia-operator-validator"), "{:?}", r.problems);

    // NoGPUNodes is a failure with a fix, even though the operator says "ready".
    let r = ok(
        vec![gpu_node("rtx", 1, 4, 4)],
        vec![validator_pod(true)],
        Some(cluster_policy_no_gpu_nodes()),
    );
    assert!(!r.ok);
    assert!(
        r.problems[0].contains("NoGPUNodes") && r.problems[0].contains("fix:"),
        "{:?}",
        r.problems
    );
    assert_eq!(r.gpu.operator.reason.as_deref(), Some("NoGPUNodes"));

    // Installed, but no node has a GPU at all.
    let r = ok(
        vec![cpu_node("box", "v1.35.3+k3s1")],
        vec![],
        Some(cluster_policy_ready()),
    );
    assert!(!r.ok);
    assert!(r.problems[0].contains("no node has a GPU"), "{:?}", r.problems);

    // A GPU node GPU feature discovery has not counted yet.
    let mut node = gpu_node("rtx", 1, 4, 4);
    node["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("nvidia.com/gpu.count");
    let r = ok(vec![node], vec![validator_pod(true)], Some(cluster_policy_ready()));
    assert!(!r.ok);
    assert!(r.problems[0].contains("nvidia.com/gpu.count"), "{:?}", r.problems);

    // Without the operator, shares are shown but not judged.
    let r = ok(vec![gpu_node("rtx", 1, 4, 1)], vec![], None);
    assert!(r.ok, "{:?}", r.problems);
    assert_eq!(r.gpu.nodes[0].allocatable, Some(1));
}

#[test]
fn the_report_serialises_without_surprises() {
    let g = gathered(
        vec![gpu_node("rtx", 1, 4, 4)],
        vec![
            gpu_pod("voice-ai", "ollama-1", "rtx", 1, "Running"),
            validator_pod(true),
        ],
        Some(cluster_policy_ready()),
        vec![gpu_operator_stack(), voice_ai_stack(true)],
    );
    let v = serde_json::to_value(evaluate(&g)).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["nodes"][0]["distro"], "k3s");
    assert_eq!(v["gpu"]["nodes"][0]["free"], 3);
    assert_eq!(v["gpu"]["nodes"][0]["readiness"]["state"], "ready");
    assert_eq!(v["gpu"]["operator"]["installed"], true);
    assert_eq!(v["stacks"][0]["name"], "gpu-operator");
    assert_eq!(v["stacks"][1]["name"], "voice-ai");
    assert_eq!(v["stacks"][1]["ready"], 7);
    assert_eq!(v["problems"], json!([]));
}

#[derive(Debug)]
struct Layer(&'static str, Option<Box<Layer>>);

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Layer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|l| l as &(dyn std::error::Error + 'static))
    }
}

#[test]
fn error_chains_are_one_line_without_repeats() {
    let e = Layer(
        "client error (Connect)",
        Some(Box::new(Layer(
            "tcp connect error: Connection refused (os error 111)",
            Some(Box::new(Layer("Connection refused (os error 111)", None))),
        ))),
    );
    assert_eq!(
        chain(&e),
        "client error (Connect): tcp connect error: Connection refused (os error 111)"
    );
    let api = ::kube::Error::Api(
        ::kube::core::Status::failure("nodes is forbidden", "Forbidden")
            .with_code(403)
            .boxed(),
    );
    match status_error("listing nodes", api) {
        StatusError::Api { what, message } => {
            assert_eq!(what, "listing nodes");
            assert!(message.contains("403"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
