//! Pods the kubelet rejected at admission because their GPU was not there yet.
//!
//! After a reboot the kubelet admits again every pod bound to its node, and it can do so before
//! the GPU operator's device plugin has registered `nvidia.com/gpu` with it again. The device
//! manager then cannot allocate the pod's GPU and the kubelet rejects the pod for good:
//!
//! - the device manager's error: `requested number of devices unavailable for nvidia.com/gpu.
//!   Requested: 1, Available: 0` (kubernetes/kubernetes, pkg/kubelet/cm/devicemanager/manager.go
//!   `devicesToAllocate`);
//! - wrapped by the admission handler as reason `UnexpectedAdmissionError`, message
//!   `Allocate failed due to <error>, which is unexpected` (pkg/kubelet/cm/admission/errors.go
//!   `GetPodAdmitResult` / `unexpectedAdmissionError`);
//! - written by the kubelet as the pod's status: phase `Failed`, `status.reason` the admission
//!   reason, `status.message` `Pod was rejected: <message>`, plus a Warning event of that reason
//!   (pkg/kubelet/kubelet.go `rejectPod`, called from `HandlePodAdditions` when `canAdmitPod`
//!   refuses). Read in kubernetes/kubernetes as the code search index holds it (errors.go at
//!   commit 3a53ab6e); the repository is too large to fetch here, so the v1.35 tag that k3s
//!   v1.35.3+k3s1 builds its kubelet from was not read itself. A newer errors.go in the index
//!   also defines a reason `DeviceNotReady`; it is not matched here.
//!
//! A rejected pod never runs and nothing removes it: a ReplicaSet counts only active pods and
//! makes a new one beside it, and the pod garbage collector keeps terminated pods until there
//! are thousands. So `kstrap status` names these pods (and does not call their workload ready),
//! and a re-run of `kstrap up` or `kstrap apply` deletes them — only pods of kstrap's own stacks
//! and add-ons that a controller owns (it recreates them), never anyone else's.
//!
//! The pure half (which pods, what to say) is tested from JSON; [`clear`] does the deletes.

use serde::Serialize;
use serde_json::Value;

use super::diagnose;
use super::readiness::Readiness;
use super::status::{GatheredStack, StatusError};

/// The pod `status.reason` the kubelet writes when admission could not allocate a device.
pub const UNEXPECTED_ADMISSION_ERROR: &str = "UnexpectedAdmissionError";

/// Workloads whose controller makes a new pod for one that was deleted.
const RECREATING_KINDS: &[&str] = &["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"];

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The kubelet's message when it rejected this pod at admission (phase Failed, reason
/// `UnexpectedAdmissionError`); None for any other pod.
pub fn rejection(pod: &Value) -> Option<&str> {
    (text(pod, "/status/phase") == Some("Failed") && text(pod, "/status/reason") == Some(UNEXPECTED_ADMISSION_ERROR))
        .then(|| text(pod, "/status/message").unwrap_or("no message"))
}

/// Whether a controller (a ReplicaSet, StatefulSet, DaemonSet) owns the pod, so it recreates it.
fn controlled(pod: &Value) -> bool {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["controller"] == true))
}

/// One pod of a kstrap stack that the kubelet rejected at admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedPod {
    pub namespace: String,
    pub name: String,
    /// The pod's uid: a delete is made on this pod only, never on a new one of the same name.
    pub uid: String,
    /// The stack (ApplySet) whose workload owns it.
    pub stack: String,
    /// The workload, `Deployment/ollama -n ai`.
    pub workload: String,
    /// What the kubelet wrote (`Pod was rejected: Allocate failed due to …`).
    pub message: String,
}

/// Why a workload with this rejected pod is not ready, in one line.
pub fn reason(pod_name: &str, message: &str) -> String {
    format!(
        "pod {pod_name} was rejected by the kubelet at admission ({UNEXPECTED_ADMISSION_ERROR}: {message}): it was started before the GPU device plugin registered (as after a reboot), and it stays Failed until it is deleted"
    )
}

/// What to run about a rejected pod of a kstrap stack.
pub const CLEAR_HINT: &str = "re-run `sudo kstrap up` (or `kstrap apply`): it deletes the pods the kubelet rejected, and their controllers make new ones";

/// Pods of the stacks' Deployments, ReplicaSets, StatefulSets and DaemonSets that the kubelet
/// rejected at admission and that a controller owns, sorted by namespace and name.
pub fn rejected_pods(stacks: &[GatheredStack], pods: &[Value]) -> Vec<RejectedPod> {
    let mut out: Vec<RejectedPod> = Vec::new();
    for stack in stacks {
        for member in &stack.members {
            if !RECREATING_KINDS.contains(&member["kind"].as_str().unwrap_or_default()) {
                continue;
            }
            for pod in diagnose::pods_of(member, pods) {
                let Some(message) = rejection(pod).filter(|_| controlled(pod)) else {
                    continue;
                };
                let (Some(namespace), Some(name), Some(uid)) = (
                    text(pod, "/metadata/namespace"),
                    text(pod, "/metadata/name"),
                    text(pod, "/metadata/uid"),
                ) else {
                    continue;
                };
                if out.iter().any(|r| r.uid == uid) {
                    continue;
                }
                out.push(RejectedPod {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    uid: uid.to_string(),
                    stack: stack.name.clone(),
                    workload: diagnose::display_name(member),
                    message: message.to_string(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// A workload's readiness once its rejected pods are counted: a workload with a pod the kubelet
/// rejected at admission is not ready, even when a replacement made its counts whole — the
/// rejected pod stays until someone deletes it, and waiting does not remove it.
pub fn with_rejected(member: &Value, own: Readiness, pods: &[&Value]) -> Readiness {
    if !RECREATING_KINDS.contains(&member["kind"].as_str().unwrap_or_default()) {
        return own;
    }
    let rejected = pods
        .iter()
        .find_map(|p| rejection(p).map(|m| (text(p, "/metadata/name").unwrap_or("?"), m)));
    match rejected {
        Some((name, message)) => Readiness::Failed {
            reason: reason(name, message),
        },
        None => own,
    }
}

/// What a re-run says about one pod it deleted.
pub fn cleared_line(r: &RejectedPod) -> String {
    format!(
        "deleted pod {} -n {} of {} (stack {}): the kubelet had rejected it at admission ({UNEXPECTED_ADMISSION_ERROR}); its controller makes a new one",
        r.name, r.namespace, r.workload, r.stack
    )
}

/// Deletes the pods of kstrap's stacks that the kubelet rejected at admission, each by its uid
/// (a precondition: a new pod of the same name, as a StatefulSet makes, is never deleted), and
/// returns those it deleted. A pod already gone counts as cleared by someone else, not listed.
pub async fn clear(client: &::kube::Client) -> Result<Vec<RejectedPod>, StatusError> {
    use ::kube::api::{Api, DeleteParams, Preconditions};
    use k8s_openapi::api::core::v1::Pod;

    // One cheap look first: on a healthy cluster no pod was rejected, and a converged re-run
    // should not pay for the whole status gathering. The API server filters by phase
    // (`status.phase` is one of a pod's selectable fields; the real API server in the reboot
    // test answers this very request).
    let pods: Api<Pod> = Api::all(client.clone());
    let failed = pods
        .list(&::kube::api::ListParams::default().fields("status.phase=Failed"))
        .await
        .map_err(|e| StatusError::Api {
            what: "listing failed pods".into(),
            message: super::ops::describe(&e),
        })?;
    let any_rejected = failed
        .items
        .iter()
        .any(|p| p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some(UNEXPECTED_ADMISSION_ERROR));
    if !any_rejected {
        return Ok(Vec::new());
    }
    let gathered = super::status::gather(client).await?;
    let mut cleared = Vec::new();
    for r in rejected_pods(&gathered.stacks, &gathered.pods) {
        let api: Api<Pod> = Api::namespaced(client.clone(), &r.namespace);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(r.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&r.name, &dp).await {
            Ok(_) => cleared.push(r),
            // Gone already, or a new pod has the name now: nothing of ours to delete.
            Err(e) if super::ops::is_status(&e, 404) || super::ops::is_status(&e, 409) => {}
            Err(e) => {
                return Err(StatusError::Api {
                    what: format!("deleting pod {} -n {} (rejected at admission)", r.name, r.namespace),
                    message: super::ops::describe(&e),
                });
            }
        }
    }
    Ok(cleared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A pod as the kubelet leaves it after rejecting it at admission (`rejectPod`), owned by
    /// ReplicaSet `ollama-5d9c7`.
    fn rejected(name: &str, uid: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ai", "uid": uid, "labels": {"app": "ollama"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "ollama-5d9c7", "uid": "rs-1", "controller": true}]},
            "spec": {"nodeName": "gpu-box", "containers": [{"name": "ollama", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
            "status": {"phase": "Failed", "reason": "UnexpectedAdmissionError",
                "message": "Pod was rejected: Allocate failed due to requested number of devices unavailable for nvidia.com/gpu. Requested: 1, Available: 0, which is unexpected"}})
    }

    fn running(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ai", "uid": "u-run", "labels": {"app": "ollama"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "ollama-5d9c7", "uid": "rs-1", "controller": true}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn deployment(ns: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "ollama", "namespace": ns, "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "ollama"}}},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                "conditions": [{"type": "Available", "status": "True"}]}})
    }

    fn stack(members: Vec<Value>) -> GatheredStack {
        GatheredStack {
            name: "voice".into(),
            applyset: "applyset-x-v1".into(),
            members,
        }
    }

    #[test]
    fn only_failed_pods_with_the_admission_reason_are_rejections() {
        let pod = rejected("ollama-5d9c7-aaaaa", "u1");
        assert!(rejection(&pod).unwrap().contains("Requested: 1, Available: 0"));
        let mut other = pod.clone();
        other["status"]["reason"] = json!("Evicted");
        assert_eq!(rejection(&other), None, "an evicted pod is not an admission rejection");
        let mut pending = pod.clone();
        pending["status"]["phase"] = json!("Pending");
        assert_eq!(rejection(&pending), None);
        assert_eq!(rejection(&running("x")), None);
    }

    #[test]
    fn rejected_pods_are_those_of_the_stacks_workloads_that_a_controller_owns() {
        let mine = rejected("ollama-5d9c7-aaaaa", "u1");
        // The same labels in another namespace: another workload's, not ours.
        let mut elsewhere = rejected("ollama-5d9c7-bbbbb", "u2");
        elsewhere["metadata"]["namespace"] = json!("someone-else");
        // A bare pod (no controller) in our namespace: deleting it would lose it for good.
        let mut bare = rejected("ollama-bare", "u3");
        bare["metadata"]["ownerReferences"] = json!([]);
        let pods = vec![mine, elsewhere, bare, running("ollama-5d9c7-ccccc")];
        let found = rejected_pods(&[stack(vec![deployment("ai")])], &pods);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].name, "ollama-5d9c7-aaaaa");
        assert_eq!(found[0].uid, "u1");
        assert_eq!(found[0].stack, "voice");
        assert_eq!(found[0].workload, "Deployment/ollama -n ai");
        assert!(
            cleared_line(&found[0]).starts_with("deleted pod ollama-5d9c7-aaaaa -n ai of Deployment/ollama -n ai"),
            "{}",
            cleared_line(&found[0])
        );
        // A Job's failed pods are its record of failures: never cleared.
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pull", "namespace": "ai"},
            "spec": {"selector": {"matchLabels": {"app": "ollama"}}}});
        assert!(rejected_pods(&[stack(vec![job])], &pods).is_empty());
        // No stacks, nothing of ours.
        assert!(rejected_pods(&[], &pods).is_empty());
    }

    #[test]
    fn a_workload_with_a_rejected_pod_is_not_ready_even_with_a_replacement() {
        let d = deployment("ai");
        let (bad, good) = (rejected("ollama-5d9c7-aaaaa", "u1"), running("ollama-5d9c7-ccccc"));
        let r = with_rejected(&d, Readiness::Ready, &[&bad, &good]);
        assert!(r.is_failed(), "{r:?}");
        let why = r.reason().unwrap();
        assert!(
            why.contains("pod ollama-5d9c7-aaaaa was rejected by the kubelet at admission"),
            "{why}"
        );
        assert!(why.contains("UnexpectedAdmissionError"), "{why}");
        assert!(why.contains("Requested: 1, Available: 0"), "{why}");
        assert!(why.contains("before the GPU device plugin registered"), "{why}");
        assert_eq!(with_rejected(&d, Readiness::Ready, &[&good]), Readiness::Ready);
        let svc = json!({"kind": "Service", "metadata": {"name": "s"}});
        assert_eq!(with_rejected(&svc, Readiness::Ready, &[&bad]), Readiness::Ready);
    }
}
