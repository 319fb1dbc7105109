//! What the programs in the GPU operator's operand pods and NFD's worker do on the node (the
//! node stand-in's side of the GPU operator **test double**, see [`super::gpu_operator`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::super::NODE_NAME;
use super::super::node::NodeHandle;
use super::gpu_operator::{CLUSTER_POLICY, NFD_DELAY, PCI_LABELS};
use super::{cluster_policy_resource, json_of, notify_on, pod_running, s};

/// What the programs in the operand pods on the node do.
pub async fn operands(client: kube::Client, node: NodeHandle) {
    let notify = Arc::new(Notify::new());
    let pods: Api<Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={NODE_NAME}"));
    tokio::spawn(notify_on(pods.clone(), cfg, notify.clone()));
    tokio::spawn(notify_on(
        Api::<ConfigMap>::all(client.clone()),
        watcher::Config::default(),
        notify.clone(),
    ));
    let mut running_since: HashMap<String, Instant> = HashMap::new();
    let mut plugin: Option<(String, u32, &'static str)> = None; // pod uid, replicas, strategy
    loop {
        let list = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={NODE_NAME}")))
            .await
            .map(|l| l.items.iter().map(json_of).collect::<Vec<_>>())
            .unwrap_or_default();
        let running = |app: &str| {
            list.iter()
                .find(|p| s(p, "/metadata/labels/app") == app && pod_running(p))
        };
        let cfg = node.config();
        // NFD worker.
        if let Some(w) = list.iter().find(|p| {
            s(p, "/metadata/labels/app.kubernetes.io~1name") == "node-feature-discovery"
                && s(p, "/metadata/labels/role") == "worker"
                && pod_running(p)
        }) {
            let since = *running_since
                .entry(s(w, "/metadata/uid").to_string())
                .or_insert_with(Instant::now);
            if since.elapsed() >= NFD_DELAY {
                let mut labels = json!({
                    "feature.node.kubernetes.io/kernel-version.full": "6.8.0",
                    "feature.node.kubernetes.io/system-os_release.ID": "ubuntu",
                    "feature.node.kubernetes.io/system-os_release.VERSION_ID": "24.04",
                });
                if cfg.gpus > 0 {
                    labels[PCI_LABELS[0]] = json!("true");
                }
                patch_labels(&client, labels).await;
            }
        }
        // Toolkit: containerd gets the `nvidia` runtime.
        if running("nvidia-container-toolkit-daemonset").is_some()
            && !cfg.runtime_handlers.iter().any(|h| h == "nvidia")
        {
            let _ = node.set(|c| c.runtime_handlers.push("nvidia".into())).await;
        }
        // Device plugin: reads its config once, when it starts.
        if let Some(p) = running("nvidia-device-plugin-daemonset") {
            let uid = s(p, "/metadata/uid").to_string();
            if plugin.as_ref().map(|(u, _, _)| u) != Some(&uid)
                && let Some((resource, replicas, strategy)) = plugin_config(&client, p).await
            {
                let count = (cfg.gpus * replicas).to_string();
                let _ = node
                    .set(|c| {
                        c.extended.remove("nvidia.com/gpu");
                        c.extended.remove("nvidia.com/gpu.shared");
                        c.extended.insert(resource, count);
                    })
                    .await;
                plugin = Some((uid, replicas, strategy));
            }
        }
        if !list
            .iter()
            .any(|p| s(p, "/metadata/labels/app") == "nvidia-device-plugin-daemonset")
        {
            plugin = None;
        }
        // GPU feature discovery.
        if let (Some(_), Some((_, replicas, strategy))) = (running("gpu-feature-discovery"), &plugin) {
            patch_labels(
                &client,
                json!({
                    "nvidia.com/gpu.count": cfg.gpus.to_string(),
                    "nvidia.com/gpu.replicas": replicas.to_string(),
                    "nvidia.com/gpu.sharing-strategy": strategy,
                }),
            )
            .await;
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Sets node labels that differ (one merge patch; none when all are there).
async fn patch_labels(client: &kube::Client, labels: Value) {
    let api: Api<Node> = Api::all(client.clone());
    let Ok(node) = api.get(NODE_NAME).await else { return };
    let live = node.metadata.labels.unwrap_or_default();
    let differs = labels
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| live.get(k).map(String::as_str) != v.as_str());
    if differs {
        let _ = api
            .patch(
                NODE_NAME,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"labels": labels}})),
            )
            .await;
    }
}

/// The device plugin's config: (resource name, replicas per GPU, sharing strategy), or None
/// while the ConfigMap or its key is missing.
async fn plugin_config(client: &kube::Client, pod: &Value) -> Option<(String, u32, &'static str)> {
    let cps = super::dynamic_api(client, &cluster_policy_resource(), None);
    let cp = json_of(&cps.get_opt(CLUSTER_POLICY).await.ok()??);
    let name = s(&cp, "/spec/devicePlugin/config/name");
    if name.is_empty() {
        return Some(("nvidia.com/gpu".into(), 1, "none"));
    }
    let key = s(&cp, "/spec/devicePlugin/config/default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), s(pod, "/metadata/namespace"));
    let cm = cms.get_opt(name).await.ok()??;
    let text = cm.data?.get(key)?.clone();
    let config: Value = serde_saphyr::from_str(&text).ok()?;
    for (mode, strategy) in [("timeSlicing", "time-slicing"), ("mps", "mps")] {
        let section = &config["sharing"][mode];
        if let Some(r) = section["resources"].as_array().and_then(|rs| {
            rs.iter()
                .find(|r| r["name"] == "nvidia.com/gpu")
                .and_then(|r| r["replicas"].as_u64())
        }) {
            let resource = if section["renameByDefault"].as_bool() == Some(true) {
                "nvidia.com/gpu.shared"
            } else {
                "nvidia.com/gpu"
            };
            return Some((resource.into(), u32::try_from(r).ok()?, strategy));
        }
    }
    Some(("nvidia.com/gpu".into(), 1, "none"))
}
