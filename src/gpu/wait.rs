//! Waiting for the GPU stage: watch the node, the ClusterPolicy and the operator validator pods
//! until [`gpu_stage_readiness`](super::readiness::gpu_stage_readiness) says Ready (or Failed),
//! bounded by a timeout; and the optional `--verify-gpu` pod.
//!
//! Everything is watch-based (kube-runtime `watcher` with its default backoff, which re-lists after
//! `410 Gone`), never polled on an interval: every event re-evaluates the pure readiness rules, so
//! the stage is reported the moment the node advertises its last share. The ClusterPolicy's CRD
//! is created by the operator chart, after `up` starts waiting; so the CRD itself is watched too,
//! and the ClusterPolicy watcher is (re)started the moment the CRD is Established, instead of
//! leaving a watcher failing against a missing resource and backing off for up to 30 s.

use std::collections::BTreeMap;
use std::time::Duration;

use ::kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use ::kube::core::{ApiResource, GroupVersionKind};
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event};
use futures::stream::{BoxStream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::readiness::{GpuReadiness, gpu_stage_readiness};
use super::verify::{VERIFY_IMAGE, VERIFY_POD, verify_pod};
use super::{CLUSTER_POLICY, GPU_RESOURCE, NAMESPACE};
use crate::kube::wait::to_value;
use crate::plan::step::ObjectRef;

/// Label of the operator's validator pods.
pub const VALIDATOR_SELECTOR: &str = "app=nvidia-operator-validator";
/// The ClusterPolicy CRD's name.
pub const CLUSTER_POLICY_CRD: &str = "clusterpolicies.nvidia.com";

/// Why the GPU stage did not become ready.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GpuWaitError {
    #[error("{reason}")]
    TimedOut { reason: String },
    #[error("{reason}\n  fix: {hint}")]
    Failed { reason: String, hint: String },
    #[error("{0}")]
    Api(String),
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn node_resource() -> ApiResource {
    resource("", "v1", "Node", "nodes")
}

fn pod_resource() -> ApiResource {
    resource("", "v1", "Pod", "pods")
}

fn crd_resource() -> ApiResource {
    resource(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    )
}

/// `nvidia.com/v1 ClusterPolicy`, built by hand: its CRD may not exist when the wait starts.
pub fn cluster_policy_resource() -> ApiResource {
    resource("nvidia.com", "v1", "ClusterPolicy", "clusterpolicies")
}

/// The objects one watcher has shown, by name; a re-list replaces them all at `InitDone`.
#[derive(Default)]
struct Mirror {
    items: BTreeMap<String, Value>,
    listing: Option<BTreeMap<String, Value>>,
}

impl Mirror {
    /// Applies one watcher event; returns whether the visible set changed.
    fn apply(&mut self, event: Event<DynamicObject>, ar: &ApiResource) -> bool {
        let name = |o: &DynamicObject| o.metadata.name.clone().unwrap_or_default();
        match event {
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            Event::InitApply(obj) => {
                let n = name(&obj);
                let v = to_value(obj, ar);
                match self.listing.as_mut() {
                    Some(l) => {
                        l.insert(n, v);
                    }
                    None => {
                        self.items.insert(n, v);
                    }
                }
                false
            }
            Event::InitDone => {
                if let Some(l) = self.listing.take() {
                    self.items = l;
                }
                true
            }
            Event::Apply(obj) => {
                let n = name(&obj);
                self.items.insert(n, to_value(obj, ar));
                true
            }
            Event::Delete(obj) => {
                self.items.remove(&name(&obj));
                true
            }
        }
    }
}

fn has_gpu(node: &Value) -> bool {
    node["status"]["allocatable"].get(GPU_RESOURCE).is_some()
}

/// The node the GPU stage is about: the only one; with several, the first advertising
/// `nvidia.com/gpu`, else the first.
fn pick_node(nodes: &BTreeMap<String, Value>) -> Option<&Value> {
    nodes.values().find(|n| has_gpu(n)).or_else(|| nodes.values().next())
}

fn established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"].as_str() == Some("Established") && c["status"].as_str() == Some("True"))
    })
}

type Watch = BoxStream<'static, watcher::Result<Event<DynamicObject>>>;

fn watch(api: Api<DynamicObject>, cfg: watcher::Config) -> Watch {
    watcher::watcher(api, cfg).default_backoff().boxed()
}

async fn next_of(stream: &mut Option<Watch>) -> Option<watcher::Result<Event<DynamicObject>>> {
    match stream.as_mut() {
        Some(s) => s.next().await,
        None => futures::future::pending().await,
    }
}

struct GpuWatch {
    nodes: Mirror,
    pods: Mirror,
    policies: Mirror,
    crd: Mirror,
    /// The operator's chart object (HelmChart / Chart), whose own status reports a Helm failure.
    charts: Mirror,
    /// Last watch error, shown on timeout when nothing else explains the wait.
    last_error: Option<String>,
}

impl GpuWatch {
    fn readiness(&self, gpus: u32, replicas: u32) -> GpuReadiness {
        if let Some(reason) = self.charts.items.values().find_map(crate::distro::helm::chart_failure) {
            let kind = self
                .charts
                .items
                .values()
                .next()
                .and_then(|c| c["kind"].as_str())
                .unwrap_or("chart");
            return GpuReadiness::Failed {
                reason,
                hint: format!(
                    "`kubectl -n {} describe {} {}` shows the Helm controller's status; fix what it names, then re-run",
                    crate::distro::helm::CHART_NAMESPACE,
                    kind.to_lowercase(),
                    super::CHART
                ),
            };
        }
        let policy = self.policies.items.get(CLUSTER_POLICY);
        let pods: Vec<Value> = self.pods.items.values().cloned().collect();
        match pick_node(&self.nodes.items) {
            Some(node) => gpu_stage_readiness(policy, &pods, node, gpus, replicas),
            None => match gpu_stage_readiness(policy, &pods, &Value::Null, gpus, replicas) {
                GpuReadiness::InProgress { .. } | GpuReadiness::Ready { .. } => GpuReadiness::InProgress {
                    reason: "no node has registered with the API server yet".into(),
                },
                failed => failed,
            },
        }
    }
}

/// One line per not-ready pod of the operator namespace: which component, which container, why
/// (waiting reason and message, last exit). One list at the end of a timed-out wait.
async fn stuck_pods(client: &::kube::Client) -> Vec<String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &pod_resource());
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for obj in list.items {
        let pod = to_value(obj, &pod_resource());
        if let Some(line) = pod_problem(&pod) {
            out.push(line);
        }
    }
    out
}

/// What keeps one pod from being Ready (None when it is Ready or finished).
fn pod_problem(pod: &Value) -> Option<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let status = &pod["status"];
    let phase = status["phase"].as_str().unwrap_or_default();
    if phase == "Succeeded" {
        return None;
    }
    let conditions = status["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
    if conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True") {
        return None;
    }
    if let Some(c) = conditions
        .iter()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
    {
        return Some(format!(
            "pod {name} is not scheduled: {}",
            c["message"].as_str().unwrap_or_default()
        ));
    }
    for list in ["initContainerStatuses", "containerStatuses"] {
        for c in status[list].as_array().map(Vec::as_slice).unwrap_or_default() {
            let waiting = &c["state"]["waiting"];
            if let Some(reason) = waiting["reason"].as_str()
                && reason != "PodInitializing"
            {
                let message = waiting["message"].as_str().unwrap_or_default();
                let last = &c["lastState"]["terminated"];
                let exit = last["exitCode"]
                    .as_i64()
                    .map(|code| format!(" (last exit code {code})"))
                    .unwrap_or_default();
                return Some(
                    format!(
                        "pod {name}: container {} is {reason}{exit} {message}",
                        c["name"].as_str().unwrap_or_default()
                    )
                    .trim_end()
                    .to_string(),
                );
            }
        }
    }
    Some(format!("pod {name} is not Ready (phase {phase})"))
}

/// Waits until the node advertises `gpus × replicas` shares and the operator is reconciled.
/// Returns the node's allocatable `nvidia.com/gpu`.
pub async fn wait_for_gpus(
    client: &::kube::Client,
    gpus: u32,
    replicas: u32,
    timeout: Duration,
) -> Result<u32, GpuWaitError> {
    wait_for_gpus_and_chart(client, None, gpus, replicas, timeout).await
}

/// [`wait_for_gpus`], also watching the operator's chart object (`chart`: the HelmChart or Chart
/// kstrap applied) so that a Helm failure its status reports ends the wait at once, with the
/// controller's message, instead of at the timeout.
pub async fn wait_for_gpus_and_chart(
    client: &::kube::Client,
    chart: Option<&ObjectRef>,
    gpus: u32,
    replicas: u32,
    timeout: Duration,
) -> Result<u32, GpuWaitError> {
    let deadline = crate::limits::deadline(timeout);
    let node_ar = node_resource();
    let pod_ar = pod_resource();
    let crd_ar = crd_resource();
    let policy_ar = cluster_policy_resource();

    let mut nodes = Some(watch(
        Api::all_with(client.clone(), &node_ar),
        watcher::Config::default(),
    ));
    let mut pods = Some(watch(
        Api::namespaced_with(client.clone(), NAMESPACE, &pod_ar),
        watcher::Config::default().labels(VALIDATOR_SELECTOR),
    ));
    let mut crds = Some(watch(
        Api::all_with(client.clone(), &crd_ar),
        watcher::Config::default().fields(&format!("metadata.name={CLUSTER_POLICY_CRD}")),
    ));
    // Started once the CRD is Established (and again if it is re-created).
    let mut policies: Option<Watch> = None;
    let chart_ar = chart.map(|c| {
        let (group, version) = c.api_version.split_once('/').unwrap_or(("", c.api_version.as_str()));
        resource(group, version, &c.kind, &format!("{}s", c.kind.to_lowercase()))
    });
    let mut charts = match (chart, &chart_ar) {
        (Some(c), Some(ar)) => Some(watch(
            Api::namespaced_with(client.clone(), c.namespace.as_deref().unwrap_or_default(), ar),
            watcher::Config::default().fields(&format!("metadata.name={}", c.name)),
        )),
        _ => None,
    };
    let chart_ar = chart_ar.unwrap_or_else(|| resource("", "v1", "Unused", "unused"));

    let mut state = GpuWatch {
        nodes: Mirror::default(),
        pods: Mirror::default(),
        policies: Mirror::default(),
        crd: Mirror::default(),
        charts: Mirror::default(),
        last_error: None,
    };
    let mut current = state.readiness(gpus, replicas);
    loop {
        let changed = tokio::select! {
            e = next_of(&mut nodes) => handle(&mut state.nodes, e, &node_ar, &mut state.last_error),
            e = next_of(&mut pods) => handle(&mut state.pods, e, &pod_ar, &mut state.last_error),
            e = next_of(&mut policies) => handle(&mut state.policies, e, &policy_ar, &mut state.last_error),
            e = next_of(&mut charts) => handle(&mut state.charts, e, &chart_ar, &mut state.last_error),
            e = next_of(&mut crds) => {
                let changed = handle(&mut state.crd, e, &crd_ar, &mut state.last_error);
                if changed {
                    let served = state.crd.items.get(CLUSTER_POLICY_CRD).is_some_and(established);
                    match (served, policies.is_some()) {
                        (true, false) => {
                            policies = Some(watch(Api::all_with(client.clone(), &policy_ar), watcher::Config::default()));
                        }
                        (false, true) => {
                            policies = None;
                            state.policies = Mirror::default();
                        }
                        _ => {}
                    }
                }
                changed
            }
            _ = tokio::time::sleep_until(deadline) => {
                let reason = match &current {
                    GpuReadiness::InProgress { reason } => reason.clone(),
                    other => format!("{other:?}"),
                };
                let mut message = format!(
                    "the GPU stage is not ready after {}s: {reason}",
                    timeout.as_secs_f64().round() as u64
                );
                let stuck = stuck_pods(client).await;
                if !stuck.is_empty() {
                    message.push_str(&format!("\n  operator pods not ready in namespace {NAMESPACE}:"));
                    for line in stuck {
                        message.push_str(&format!("\n    {line}"));
                    }
                } else if let Some(e) = &state.last_error {
                    message.push_str(&format!("\n  last watch error: {e}"));
                }
                message.push_str(&format!("\n  next: kubectl -n {NAMESPACE} get pods; kubectl describe clusterpolicy {CLUSTER_POLICY}"));
                return Err(GpuWaitError::TimedOut { reason: message });
            }
        };
        if !changed {
            continue;
        }
        current = state.readiness(gpus, replicas);
        match &current {
            GpuReadiness::Ready { allocatable } => return Ok(*allocatable),
            GpuReadiness::Failed { reason, hint } => {
                return Err(GpuWaitError::Failed {
                    reason: reason.clone(),
                    hint: hint.clone(),
                });
            }
            GpuReadiness::InProgress { .. } => {}
        }
    }
}

/// Applies one watcher item to its mirror; errors are kept for the timeout message (the watcher
/// retries by itself, with backoff).
fn handle(
    mirror: &mut Mirror,
    item: Option<watcher::Result<Event<DynamicObject>>>,
    ar: &ApiResource,
    last_error: &mut Option<String>,
) -> bool {
    match item {
        Some(Ok(event)) => mirror.apply(event, ar),
        Some(Err(e)) => {
            *last_error = Some(format!("watching {}: {e}", ar.plural));
            false
        }
        None => false,
    }
}

fn api_error(what: &str, e: ::kube::Error) -> GpuWaitError {
    GpuWaitError::Api(format!("{what}: {}", crate::kube::ops::describe(&e)))
}

fn is_not_found(e: &::kube::Error) -> bool {
    crate::kube::ops::is_status(e, 404)
}

/// Why a finished or stuck verification pod did not succeed, from its status.
fn verify_problem(pod: &Value) -> String {
    let status = &pod["status"];
    let mut parts = Vec::new();
    if let Some(reason) = status["reason"].as_str() {
        parts.push(format!(
            "pod {reason}: {}",
            status["message"].as_str().unwrap_or_default()
        ));
    }
    for c in status["containerStatuses"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let cname = c["name"].as_str().unwrap_or_default();
        let t = &c["state"]["terminated"];
        if !t.is_null() {
            parts.push(format!(
                "container {cname} terminated with exit code {} ({})",
                t["exitCode"].as_i64().unwrap_or(-1),
                t["reason"].as_str().unwrap_or("no reason")
            ));
        } else if let Some(reason) = c["state"]["waiting"]["reason"].as_str() {
            parts.push(
                format!(
                    "container {cname} is {reason} {}",
                    c["state"]["waiting"]["message"].as_str().unwrap_or_default()
                )
                .trim_end()
                .to_string(),
            );
        }
    }
    if parts.is_empty()
        && let Some(line) = pod_problem(pod)
    {
        parts.push(line);
    }
    if parts.is_empty() {
        parts.push(format!("phase {}", status["phase"].as_str().unwrap_or("unknown")));
    }
    parts.join("; ")
}

/// Runs the verification pod (`verify::verify_pod`) and waits until it succeeds. The pod is
/// deleted afterwards whatever happened.
pub async fn verify_gpu(client: &::kube::Client, timeout: Duration) -> Result<(), GpuWaitError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    // An old pod of the same name (an interrupted run) goes first; wait for it to be gone.
    match api.get_opt(VERIFY_POD).await {
        Ok(Some(old)) => {
            let uid = old.metadata.uid.clone().unwrap_or_default();
            match api.delete(VERIFY_POD, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_error(&format!("deleting the old pod {VERIFY_POD}"), e)),
            }
            let gone = ::kube::runtime::wait::await_condition(
                api.clone(),
                VERIFY_POD,
                ::kube::runtime::wait::conditions::is_deleted(&uid),
            );
            if tokio::time::timeout(timeout, gone).await.is_err() {
                return Err(GpuWaitError::TimedOut {
                    reason: format!(
                        "the old verification pod {VERIFY_POD} in namespace {NAMESPACE} was not deleted within {}s",
                        timeout.as_secs()
                    ),
                });
            }
        }
        Ok(None) => {}
        Err(e) => return Err(api_error(&format!("reading pod {VERIFY_POD}"), e)),
    }
    let pod: Pod = serde_json::from_value(verify_pod(NAMESPACE, VERIFY_IMAGE))
        .map_err(|e| GpuWaitError::Api(format!("building the verification pod: {e}")))?;
    api.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| api_error(&format!("creating pod {VERIFY_POD} in namespace {NAMESPACE}"), e))?;

    let result = wait_verify(&api, timeout).await;
    // Delete in every case; a failure to delete only matters when everything else worked.
    let deleted = match api.delete(VERIFY_POD, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(api_error(&format!("deleting pod {VERIFY_POD}"), e)),
    };
    result?;
    deleted
}

async fn wait_verify(api: &Api<Pod>, timeout: Duration) -> Result<(), GpuWaitError> {
    let finished = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
    };
    let waited = tokio::time::timeout(
        timeout,
        ::kube::runtime::wait::await_condition(api.clone(), VERIFY_POD, finished),
    )
    .await;
    let pod = match waited {
        Ok(Ok(Some(pod))) => pod,
        Ok(Ok(None)) => {
            return Err(GpuWaitError::Failed {
                reason: format!("the verification pod {VERIFY_POD} was deleted before it finished"),
                hint: "something else deleted it; re-run with --verify-gpu".into(),
            });
        }
        Ok(Err(e)) => return Err(GpuWaitError::Api(format!("watching pod {VERIFY_POD}: {e}"))),
        Err(_) => {
            let why = match api.get_opt(VERIFY_POD).await {
                Ok(Some(p)) => verify_problem(&serde_json::to_value(p).unwrap_or(Value::Null)),
                _ => "pod not found".into(),
            };
            return Err(GpuWaitError::TimedOut {
                reason: format!(
                    "the verification pod {VERIFY_POD} (nvidia-smi with one {GPU_RESOURCE}) did not finish within {}s: {why}",
                    timeout.as_secs()
                ),
            });
        }
    };
    let value = serde_json::to_value(&pod).unwrap_or(Value::Null);
    match value["status"]["phase"].as_str() {
        Some("Succeeded") => Ok(()),
        _ => Err(GpuWaitError::Failed {
            reason: format!(
                "the verification pod {VERIFY_POD} (nvidia-smi with one {GPU_RESOURCE}) failed: {}",
                verify_problem(&value)
            ),
            hint: format!(
                "see its output with `kubectl -n {NAMESPACE} logs {VERIFY_POD}` on the next run before it is deleted, or run `nvidia-smi` on the host: a failing driver or a toolkit that did not configure containerd's `nvidia` runtime are the usual causes"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_node_with_gpus_is_picked() {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "a".to_string(),
            json!({"metadata": {"name": "a"}, "status": {"allocatable": {"cpu": "4"}}}),
        );
        assert_eq!(pick_node(&nodes).unwrap()["metadata"]["name"], "a");
        nodes.insert(
            "b".to_string(),
            json!({"metadata": {"name": "b"}, "status": {"allocatable": {"nvidia.com/gpu": "4"}}}),
        );
        assert_eq!(pick_node(&nodes).unwrap()["metadata"]["name"], "b");
        assert!(pick_node(&BTreeMap::new()).is_none());
    }

    #[test]
    fn pod_problems_name_the_container_and_reason() {
        let pod = json!({"metadata": {"name": "nvidia-container-toolkit-daemonset-x"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "nvidia-container-toolkit-ctr", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                "lastState": {"terminated": {"exitCode": 1}}}]}});
        assert_eq!(
            pod_problem(&pod).unwrap(),
            "pod nvidia-container-toolkit-daemonset-x: container nvidia-container-toolkit-ctr is CrashLoopBackOff (last exit code 1) back-off 5m0s"
        );
        let ready = json!({"metadata": {"name": "p"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(pod_problem(&ready).is_none());
        let failed = json!({"metadata": {"name": "v"}, "status": {"phase": "Failed",
            "containerStatuses": [{"name": "nvidia-smi", "state": {"terminated": {"exitCode": 9, "reason": "Error"}}}]}});
        assert_eq!(
            verify_problem(&failed),
            "container nvidia-smi terminated with exit code 9 (Error)"
        );
    }
}
