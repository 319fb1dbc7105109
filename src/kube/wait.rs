//! Waiting for a stage to become ready, by watching — never by polling on an interval.
//!
//! One kube-runtime `watcher` per resource type and namespace the stage uses (label-selected to
//! the stack's ApplySet, so the server sends only our objects), plus one Pod watcher per namespace
//! holding workloads, so a Deployment's crash-looping or unschedulable pod is seen as it happens.
//! The watchers list first, then watch; they resume dropped streams and re-list after
//! `410 Gone`, with kube-runtime's default backoff. Every event re-evaluates the objects it
//! touches with the pure [`readiness`](super::readiness) rules, so the stage is reported ready
//! within milliseconds of its last object becoming ready. A one-second local tick (no API call)
//! refreshes the progress line and time-based rules (a pod Unschedulable for more than 15 s).

use ::kube::api::{Api, DynamicObject, ListParams};
use ::kube::core::ApiResource;
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event};
use futures::stream::{BoxStream, SelectAll, StreamExt};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::diagnose::{self, Diagnosis};
use super::engine::ApplyProgress;
use super::ops::{Resolved, api_for, retry};
use super::readiness::{Context, Readiness, StorageClassInfo, readiness};

/// One object the stage waits for.
#[derive(Debug, Clone)]
pub struct WaitTarget {
    /// `Kind/name -n ns`.
    pub display: String,
    pub resolved: Resolved,
    pub namespace: Option<String>,
    pub name: String,
}

/// How a wait ended (an error is for the engine to build: it knows the stage).
#[derive(Debug)]
pub enum WaitOutcome {
    Ready,
    Failed(Vec<Diagnosis>),
    TimedOut(Vec<Diagnosis>),
}

/// What one wait is about.
pub struct WaitSpec<'a> {
    pub stage: &'a str,
    pub targets: Vec<WaitTarget>,
    pub timeout: Duration,
    /// When the stage started (for elapsed times in progress lines).
    pub started: Instant,
    /// Label selector of the stack's members.
    pub selector: &'a str,
    /// Whether to send progress lines (not for the short CRD wait inside a stage).
    pub report: bool,
}

/// The Context of the readiness rules: StorageClasses' binding modes and the default class.
pub fn context_from_storage_classes(classes: &[Value]) -> Context {
    let mut storage_classes = BTreeMap::new();
    let mut default_storage_class = None;
    for sc in classes {
        let Some(name) = sc.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let wffc = sc.get("volumeBindingMode").and_then(Value::as_str) == Some("WaitForFirstConsumer");
        storage_classes.insert(
            name.to_string(),
            StorageClassInfo {
                wait_for_first_consumer: wffc,
            },
        );
        let ann = |k: &str| {
            sc.pointer("/metadata/annotations")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
        };
        if ann("storageclass.kubernetes.io/is-default-class") == Some("true")
            || ann("storageclass.beta.kubernetes.io/is-default-class") == Some("true")
        {
            default_storage_class = Some(name.to_string());
        }
    }
    Context {
        storage_classes,
        default_storage_class,
        ..Context::default()
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn cluster_context(client: &::kube::Client) -> Context {
    let ar = ApiResource::from_gvk_with_plural(
        &::kube::core::GroupVersionKind::gvk("storage.k8s.io", "v1", "StorageClass"),
        "storageclasses",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let lp = ListParams::default();
    let classes: Vec<Value> = match retry(|| api.list(&lp)).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect(),
        // No StorageClasses readable: PVC rules fall back to "Bound".
        Err(_) => Vec::new(),
    };
    context_from_storage_classes(&classes)
}

/// A watched object as the readiness rules read it: list items come without apiVersion/kind.
pub(crate) fn to_value(obj: DynamicObject, ar: &ApiResource) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(map) = v.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(ar.api_version.clone()));
        map.entry("kind").or_insert_with(|| Value::String(ar.kind.clone()));
    }
    v
}

fn pod_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&::kube::core::GroupVersionKind::gvk("", "v1", "Pod"), "pods")
}

fn event_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&::kube::core::GroupVersionKind::gvk("", "v1", "Event"), "events")
}

/// Which stream an event came from.
#[derive(Clone, Copy)]
enum Source {
    Objects(usize),
    Pods(usize),
}

type Stream = BoxStream<'static, (Source, watcher::Result<Event<DynamicObject>>)>;

struct State {
    targets: Vec<WaitTarget>,
    /// Latest JSON of each target; None until seen (or after deletion).
    values: Vec<Option<Value>>,
    states: Vec<Readiness>,
    /// (source, namespace, name) → target.
    index: HashMap<(usize, String, String), usize>,
    /// Per object source: the targets it covers, and what its current list has shown.
    source_targets: Vec<Vec<usize>>,
    listing: Vec<Option<HashSet<usize>>>,
    /// Pods per namespace (namespace order of `pod_namespaces`).
    pod_namespaces: Vec<String>,
    pods: Vec<BTreeMap<String, Value>>,
    listing_pods: Vec<Option<BTreeMap<String, Value>>>,
    ctx: Context,
}

impl State {
    fn eval(&mut self, i: usize) {
        self.ctx.now_unix = now_unix();
        self.states[i] = match &self.values[i] {
            None => Readiness::InProgress {
                reason: "not seen in the cluster yet".into(),
            },
            Some(v) => {
                let own = readiness(v, &self.ctx);
                let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
                if diagnose::has_pods(kind) {
                    let pods = self.pods_for(self.targets[i].namespace.as_deref());
                    let picked = diagnose::pods_of(v, pods);
                    diagnose::with_pods(v, own, &picked, &self.ctx)
                } else {
                    own
                }
            }
        };
    }

    fn pods_for(&self, ns: Option<&str>) -> Vec<&Value> {
        match ns.and_then(|ns| self.pod_namespaces.iter().position(|n| n == ns)) {
            Some(k) => self.pods[k].values().collect(),
            None => Vec::new(),
        }
    }

    fn eval_not_ready(&mut self) {
        for i in 0..self.targets.len() {
            if !self.states[i].is_ready() {
                self.eval(i);
            }
        }
    }

    /// Re-evaluates the workloads of namespace `k` after one of its pods changed.
    fn eval_workloads_in(&mut self, k: usize) {
        let ns = self.pod_namespaces[k].clone();
        for i in 0..self.targets.len() {
            if self.targets[i].namespace.as_deref() == Some(ns.as_str()) && !self.states[i].is_ready() {
                let kind = &self.targets[i].resolved.resource.kind;
                if diagnose::has_pods(kind) {
                    self.eval(i);
                }
            }
        }
    }

    fn handle(&mut self, source: Source, event: Event<DynamicObject>) {
        match source {
            Source::Objects(s) => self.handle_object(s, event),
            Source::Pods(k) => self.handle_pod(k, event),
        }
    }

    fn target_of(&self, s: usize, obj: &DynamicObject) -> Option<usize> {
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        let name = obj.metadata.name.clone().unwrap_or_default();
        self.index.get(&(s, ns, name)).copied()
    }

    fn handle_object(&mut self, s: usize, event: Event<DynamicObject>) {
        match event {
            Event::Init => self.listing[s] = Some(HashSet::new()),
            Event::InitApply(obj) | Event::Apply(obj) => {
                if let Some(i) = self.target_of(s, &obj) {
                    if let Some(seen) = self.listing[s].as_mut() {
                        seen.insert(i);
                    }
                    let ar = self.targets[i].resolved.resource.clone();
                    self.values[i] = Some(to_value(obj, &ar));
                    self.eval(i);
                }
            }
            Event::Delete(obj) => {
                if let Some(i) = self.target_of(s, &obj) {
                    self.values[i] = None;
                    self.states[i] = Readiness::InProgress {
                        reason: "deleted from the cluster while waiting".into(),
                    };
                }
            }
            Event::InitDone => {
                // After a (re-)list, targets the list did not show are gone.
                let seen = self.listing[s].take().unwrap_or_default();
                for i in self.source_targets[s].clone() {
                    if !seen.contains(&i) {
                        self.values[i] = None;
                        self.eval(i);
                    }
                }
            }
        }
    }

    fn handle_pod(&mut self, k: usize, event: Event<DynamicObject>) {
        let key = |o: &DynamicObject| o.metadata.name.clone().unwrap_or_default();
        match event {
            Event::Init => self.listing_pods[k] = Some(BTreeMap::new()),
            Event::InitApply(obj) => {
                let name = key(&obj);
                let v = to_value(obj, &pod_resource());
                match self.listing_pods[k].as_mut() {
                    Some(list) => {
                        list.insert(name, v);
                    }
                    None => {
                        self.pods[k].insert(name, v);
                    }
                }
            }
            Event::InitDone => {
                if let Some(list) = self.listing_pods[k].take() {
                    self.pods[k] = list;
                }
                self.eval_workloads_in(k);
            }
            Event::Apply(obj) => {
                let name = key(&obj);
                self.pods[k].insert(name, to_value(obj, &pod_resource()));
                self.eval_workloads_in(k);
            }
            Event::Delete(obj) => {
                self.pods[k].remove(&key(&obj));
                self.eval_workloads_in(k);
            }
        }
    }

    fn ready_count(&self) -> usize {
        self.states.iter().filter(|s| s.is_ready()).count()
    }

    fn not_ready(&self) -> Vec<(String, String)> {
        self.targets
            .iter()
            .zip(&self.states)
            .filter(|(_, s)| !s.is_ready())
            .map(|(t, s)| (t.display.clone(), s.reason().unwrap_or("").to_string()))
            .collect()
    }
}

/// Diagnoses of the targets matching `pick`, with their pods and the namespace's recent events.
async fn diagnoses(client: &::kube::Client, state: &State, pick: impl Fn(&Readiness) -> bool) -> Vec<Diagnosis> {
    let mut events_by_ns: HashMap<String, Vec<Value>> = HashMap::new();
    let mut out = Vec::new();
    for (i, t) in state.targets.iter().enumerate() {
        if !pick(&state.states[i]) {
            continue;
        }
        let Some(v) = &state.values[i] else {
            out.push(Diagnosis {
                object: t.display.clone(),
                reason: state.states[i].reason().unwrap_or("not found").to_string(),
                details: Vec::new(),
                events: Vec::new(),
                next_command: Some(format!(
                    "kubectl {}get {} {}",
                    t.namespace.as_deref().map(|n| format!("-n {n} ")).unwrap_or_default(),
                    t.resolved.resource.kind.to_lowercase(),
                    t.name
                )),
            });
            continue;
        };
        let events: &[Value] = match &t.namespace {
            Some(ns) => {
                if !events_by_ns.contains_key(ns) {
                    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &event_resource());
                    let list = api
                        .list(&ListParams::default().limit(500))
                        .await
                        .map(|l| {
                            l.items
                                .into_iter()
                                .filter_map(|o| serde_json::to_value(o).ok())
                                .collect()
                        })
                        .unwrap_or_default();
                    events_by_ns.insert(ns.clone(), list);
                }
                events_by_ns.get(ns).map(Vec::as_slice).unwrap_or_default()
            }
            None => &[],
        };
        let pods = state.pods_for(t.namespace.as_deref());
        let picked = diagnose::pods_of(v, pods);
        let mut d = diagnose::diagnose(v, &picked, events, &state.ctx);
        // The waiter's own verdict (pods included) is the headline when the object alone says less.
        if let Some(reason) = state.states[i].reason()
            && !d.reason.contains(reason)
            && !reason.contains(&d.reason)
        {
            d.details.insert(0, d.reason.clone());
            d.reason = reason.to_string();
        } else if let Some(reason) = state.states[i].reason()
            && reason.len() > d.reason.len()
        {
            d.reason = reason.to_string();
        }
        out.push(d);
    }
    out
}

/// Waits until every target is ready, one fails, or the timeout passes.
pub async fn wait_ready(
    client: &::kube::Client,
    spec: WaitSpec<'_>,
    progress: &dyn ApplyProgress,
    left: &Mutex<Vec<String>>,
) -> WaitOutcome {
    let deadline = crate::limits::deadline(spec.timeout);
    let ctx = cluster_context(client).await;

    // One watcher per (resource, namespace).
    let mut sources: Vec<(Resolved, Option<String>)> = Vec::new();
    let mut index = HashMap::new();
    let mut source_targets: Vec<Vec<usize>> = Vec::new();
    for (i, t) in spec.targets.iter().enumerate() {
        let ns = if t.resolved.namespaced {
            t.namespace.clone()
        } else {
            None
        };
        let pos = sources.iter().position(|(r, n)| {
            r.resource.api_version == t.resolved.resource.api_version
                && r.resource.plural == t.resolved.resource.plural
                && *n == ns
        });
        let s = match pos {
            Some(s) => s,
            None => {
                sources.push((t.resolved.clone(), ns.clone()));
                source_targets.push(Vec::new());
                sources.len() - 1
            }
        };
        source_targets[s].push(i);
        index.insert((s, ns.unwrap_or_default(), t.name.clone()), i);
    }
    let mut pod_namespaces: Vec<String> = Vec::new();
    for t in &spec.targets {
        if diagnose::has_pods(&t.resolved.resource.kind)
            && let Some(ns) = &t.namespace
            && !pod_namespaces.contains(ns)
        {
            pod_namespaces.push(ns.clone());
        }
    }

    let mut streams: SelectAll<Stream> = SelectAll::new();
    for (s, (r, ns)) in sources.iter().enumerate() {
        let api = api_for(client, r, ns.as_deref());
        let cfg = watcher::Config::default().labels(spec.selector);
        streams.push(
            watcher::watcher(api, cfg)
                .default_backoff()
                .map(move |e| (Source::Objects(s), e))
                .boxed(),
        );
    }
    for (k, ns) in pod_namespaces.iter().enumerate() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &pod_resource());
        streams.push(
            watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .map(move |e| (Source::Pods(k), e))
                .boxed(),
        );
    }

    let n = spec.targets.len();
    let mut state = State {
        values: vec![None; n],
        states: vec![
            Readiness::InProgress {
                reason: "not seen in the cluster yet".into()
            };
            n
        ],
        index,
        listing: vec![None; source_targets.len()],
        source_targets,
        pods: vec![BTreeMap::new(); pod_namespaces.len()],
        listing_pods: vec![None; pod_namespaces.len()],
        pod_namespaces,
        targets: spec.targets,
        ctx,
    };

    let mut last_ready = usize::MAX;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut report = false;
        tokio::select! {
            item = streams.next(), if n > 0 => {
                match item {
                    Some((source, Ok(event))) => state.handle(source, event),
                    // The watcher retries by itself (with backoff); nothing to do here.
                    Some((_, Err(_))) => {}
                    None => {}
                }
            }
            _ = tick.tick() => {
                state.eval_not_ready();
                report = true;
            }
            _ = tokio::time::sleep_until(deadline) => {
                let d = diagnoses(client, &state, |s| !s.is_ready()).await;
                return WaitOutcome::TimedOut(d);
            }
        }
        let ready = state.ready_count();
        if state.states.iter().any(Readiness::is_failed) {
            let d = diagnoses(client, &state, Readiness::is_failed).await;
            return WaitOutcome::Failed(d);
        }
        if ready != last_ready || report || ready == n {
            let not_ready = state.not_ready();
            if let Ok(mut l) = left.lock() {
                *l = not_ready.iter().map(|(o, _)| o.clone()).collect();
            }
            if spec.report {
                let slowest: Vec<(String, String)> = not_ready.into_iter().take(3).collect();
                progress.stage_progress(spec.stage, ready, n, spec.started.elapsed(), &slowest);
            }
            last_ready = ready;
        }
        if ready == n {
            return WaitOutcome::Ready;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn storage_classes_make_the_context() {
        let classes = vec![
            json!({"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                   "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}),
            json!({"metadata": {"name": "fast"}, "volumeBindingMode": "Immediate"}),
            json!({"metadata": {}}),
        ];
        let ctx = context_from_storage_classes(&classes);
        assert_eq!(ctx.default_storage_class.as_deref(), Some("local-path"));
        assert!(ctx.storage_classes["local-path"].wait_for_first_consumer);
        assert!(!ctx.storage_classes["fast"].wait_for_first_consumer);
        assert_eq!(ctx.storage_classes.len(), 2);
        assert_eq!(ctx.unschedulable_grace_s, 15);
        // A claim on the default class that waits for its consumer is ready while Pending.
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "m", "namespace": "d"}, "spec": {}, "status": {"phase": "Pending"}});
        assert!(readiness(&pvc, &ctx).is_ready());
        assert!(!readiness(&pvc, &Context::default()).is_ready());
    }

    #[test]
    fn list_items_get_their_type_back() {
        let ar = pod_resource();
        let obj: DynamicObject = serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "d"}, "status": {"phase": "Running"}}),
        )
        .unwrap();
        let v = to_value(obj, &ar);
        assert_eq!(v["kind"], "Pod");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["status"]["phase"], "Running");
    }
}
