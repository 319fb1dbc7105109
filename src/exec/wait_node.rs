//! Waiting on a worker for its own node, with the kubelet's own credentials.
//!
//! The kubelet's kubeconfig (k3s `/var/lib/rancher/k3s/agent/kubelet.kubeconfig`, k0s
//! `/var/lib/k0s/kubelet.conf`) authenticates as `system:node:<name>`. The Node authorizer lets
//! that identity read its own Node, and since Kubernetes v1.32 (`AuthorizeNodeWithSelectors`)
//! list and watch Nodes only with the field selector `metadata.name=<its name>`. So kstrap watches
//! exactly that: one node, by name, and reads nothing else on the cluster.
//!
//! The kubeconfig names its certificate files by absolute host paths (k3s: `client-kubelet.crt`,
//! `server-ca.crt` under the agent folder); they are read through the host seam (under the host
//! root) and passed inline, never quoted in messages.

use super::Interrupt;
use super::host::Host;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use std::time::Duration;

/// The label the GPU operator's feature discovery sets to the time-slicing replicas.
pub const REPLICAS_LABEL: &str = "nvidia.com/gpu.replicas";
const GPU: &str = "nvidia.com/gpu";

/// What the node said when the wait ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSeen {
    pub ready: bool,
    /// Allocatable `nvidia.com/gpu`.
    pub gpu_allocatable: u32,
    /// Its `nvidia.com/gpu.replicas` label.
    pub replicas: Option<u32>,
    /// Why it is not there yet, for a timeout message.
    pub why: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeWaitError {
    #[error(
        "timed out after {waited}s waiting for node {node}: {seen}\n  fix: see the worker's log (`journalctl -u {unit}`) and, on the server, `kstrap status`; then run `kstrap join` again"
    )]
    Timeout {
        waited: u64,
        node: String,
        seen: String,
        unit: String,
    },
    #[error("interrupted while waiting for node {0}")]
    Interrupted(String),
}

/// A client from a kubeconfig on the host, its certificate files read under the host root.
pub async fn client(host: &Host, path: &str) -> Result<::kube::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let file = host
        .read(path)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{path} is not written yet"))?;
    let mut kc = ::kube::config::Kubeconfig::from_yaml(&String::from_utf8_lossy(&file.bytes))
        .map_err(|_| format!("{path} is not (yet) a complete kubeconfig"))?;
    let inline = |file: &Option<String>| -> Result<Option<String>, String> {
        use base64::Engine;
        let Some(f) = file else { return Ok(None) };
        let bytes = host
            .read(f)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{f} (named by {path}) is not written yet"))?;
        Ok(Some(base64::engine::general_purpose::STANDARD.encode(bytes.bytes)))
    };
    for c in kc.clusters.iter_mut().filter_map(|c| c.cluster.as_mut()) {
        if let Some(data) = inline(&c.certificate_authority)? {
            c.certificate_authority_data = Some(data);
            c.certificate_authority = None;
        }
    }
    for u in kc.auth_infos.iter_mut().filter_map(|a| a.auth_info.as_mut()) {
        if let Some(data) = inline(&u.client_certificate)? {
            u.client_certificate_data = Some(data);
            u.client_certificate = None;
        }
        if let Some(data) = inline(&u.client_key)? {
            u.client_key_data = Some(data.into());
            u.client_key = None;
        }
    }
    let config = ::kube::Config::from_custom_kubeconfig(kc, &::kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| format!("{path} cannot be used: {e}"))?;
    ::kube::Client::try_from(config).map_err(|e| format!("{path}: cannot build a client: {e}"))
}

/// What one Node says, against what the wait needs (`gpus` > 0: GPUs × replicas).
pub fn judge(node: &Node, gpus: u32) -> (bool, NodeSeen) {
    let status = node.status.as_ref();
    let ready_cond = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let ready = ready_cond.is_some_and(|c| c.status == "True");
    let gpu_allocatable = status
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get(GPU))
        .and_then(|q| q.0.parse::<u32>().ok())
        .unwrap_or(0);
    let replicas = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REPLICAS_LABEL))
        .and_then(|v| v.parse::<u32>().ok());
    let mut seen = NodeSeen {
        ready,
        gpu_allocatable,
        replicas,
        why: String::new(),
    };
    if !ready {
        seen.why = match ready_cond {
            Some(c) => format!(
                "Ready={}{}",
                c.status,
                c.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            None => "registered, no Ready condition yet".into(),
        };
        return (false, seen);
    }
    if gpus == 0 {
        return (true, seen);
    }
    match replicas {
        None => {
            seen.why = format!(
                "Ready; no {REPLICAS_LABEL} label yet (the GPU operator has not set up this node), {gpu_allocatable} {GPU} allocatable"
            );
            (false, seen)
        }
        Some(r) if gpu_allocatable == gpus * r => (true, seen),
        Some(r) => {
            seen.why = format!(
                "Ready; {gpu_allocatable} {GPU} allocatable, {} expected ({gpus} GPU(s) × {r} replicas)",
                gpus * r
            );
            (false, seen)
        }
    }
}

/// Waits until node `name` is Ready (and, with `gpus` > 0, advertises GPUs × replicas).
pub async fn wait_node(
    host: &Host,
    kubeconfig: &str,
    name: &str,
    gpus: u32,
    unit: &str,
    timeout: Duration,
    interrupt: &Interrupt,
) -> Result<NodeSeen, NodeWaitError> {
    use ::kube::runtime::{WatchStreamExt, watcher};
    let mut last = format!("the kubelet's kubeconfig {kubeconfig} is not written yet");
    let work = async {
        let client = loop {
            match client(host, kubeconfig).await {
                Ok(c) => break c,
                Err(why) => last = why,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        last = format!("node {name} not registered yet");
        let api: ::kube::Api<Node> = ::kube::Api::all(client);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher(api, config).default_backoff().applied_objects().boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(node) => {
                    let (done, seen) = judge(&node, gpus);
                    if done {
                        return seen;
                    }
                    last = seen.why;
                }
                Err(e) => last = format!("watching node {name} failed (retrying): {e}"),
            }
        }
        std::future::pending::<NodeSeen>().await
    };
    let deadline = crate::limits::deadline(timeout);
    tokio::select! {
        r = tokio::time::timeout_at(deadline, work) => r.map_err(|_| NodeWaitError::Timeout {
            waited: timeout.as_secs(),
            node: name.to_string(),
            seen: last.clone(),
            unit: unit.to_string(),
        }),
        () = interrupt.wait() => Err(NodeWaitError::Interrupted(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(ready: &str, gpu: Option<&str>, replicas: Option<&str>) -> Node {
        let mut labels = serde_json::Map::new();
        if let Some(r) = replicas {
            labels.insert(REPLICAS_LABEL.into(), json!(r));
        }
        let mut alloc = serde_json::Map::new();
        alloc.insert("cpu".into(), json!("8"));
        if let Some(g) = gpu {
            alloc.insert(GPU.into(), json!(g));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "w", "labels": labels},
            "status": {"allocatable": alloc,
                       "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletNotReady"}]}
        }))
        .unwrap()
    }

    #[test]
    fn ready_and_gpu_shares() {
        assert!(!judge(&node("False", None, None), 0).0);
        assert!(judge(&node("False", None, None), 0).1.why.contains("KubeletNotReady"));
        assert!(judge(&node("True", None, None), 0).0);
        let (done, seen) = judge(&node("True", Some("0"), None), 1);
        assert!(
            !done && seen.why.contains("no nvidia.com/gpu.replicas label"),
            "{seen:?}"
        );
        let (done, seen) = judge(&node("True", Some("1"), Some("4")), 1);
        assert!(!done && seen.why.contains("4 expected"), "{seen:?}");
        let (done, seen) = judge(&node("True", Some("8"), Some("4")), 2);
        assert!(done);
        assert_eq!((seen.gpu_allocatable, seen.replicas), (8, Some(4)));
    }
}
