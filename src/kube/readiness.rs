//! Is one applied Kubernetes object really ready? A pure function over the object's JSON.
//!
//! The watch-based waiter calls [`readiness`] on every watch event for every object of a stage, so
//! it must be cheap, must never panic on odd or partial objects, and must not read a clock (the
//! caller passes `now` in [`Context`]). The rules follow kstatus (`sigs.k8s.io/cli-utils`, used by
//! kpt and Flux): an object whose controller has not yet observed its latest generation is in
//! progress whatever else its status says, then kind-specific rules decide. We do not use
//! kube-runtime's `conditions` helpers because they ignore `status.observedGeneration` and so
//! report a stale "ready" right after an update.
//!
//! Where we differ from kstatus, on purpose (each because a stack waiter must neither hang nor
//! pass too early):
//! - a Pod in phase `Failed` fails (kstatus calls it current: "completed, but not successfully");
//! - CrashLoopBackOff fails in any phase, init containers included (kstatus: Running phase only);
//! - Unschedulable is timed from the `PodScheduled` condition's `lastTransitionTime` (kstatus uses
//!   the creation time), falling back to `creationTimestamp`;
//! - a Job is ready only when `Complete=True` (kstatus calls a started Job current), since later
//!   stages may need its output; a suspended Job is ready (nothing will happen until resumed);
//! - a paused Deployment is ready as applied (kstatus would wait for a rollout that cannot come);
//! - a LoadBalancer Service needs an ingress address (kstatus only checks `spec.clusterIP`);
//! - a PVC that is Pending on a `WaitForFirstConsumer` class is ready (waiting for Bound deadlocks:
//!   the consumer is applied in the same or a later stage); `Lost` fails;
//! - a StatefulSet with `OnDelete` still needs its ready count (kstatus: ready on sight);
//! - a CRD needs both `Established=True` and `NamesAccepted=True`;
//! - custom resources with a `Ready` condition follow it (`False` is in progress, with its reason);
//! - a CloudNativePG `Cluster` needs its healthy phase, `Ready=True` and every instance ready
//!   (`readiness/database.rs`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// Whether an object is ready, and if not, why, in a sentence a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Readiness {
    Ready,
    InProgress { reason: String },
    Failed { reason: String },
}

impl Readiness {
    fn in_progress(reason: impl Into<String>) -> Self {
        Readiness::InProgress { reason: reason.into() }
    }

    fn failed(reason: impl Into<String>) -> Self {
        Readiness::Failed { reason: reason.into() }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready)
    }

    pub fn is_failed(&self) -> bool {
        matches!(self, Readiness::Failed { .. })
    }

    /// The reason, if not ready.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Readiness::Ready => None,
            Readiness::InProgress { reason } | Readiness::Failed { reason } => Some(reason),
        }
    }
}

/// What a StorageClass's binding mode means for its claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageClassInfo {
    /// `volumeBindingMode: WaitForFirstConsumer`: claims stay Pending until a Pod uses them.
    pub wait_for_first_consumer: bool,
}

/// Cluster facts the rules need beyond the object itself. No clock is read inside: `now_unix` is
/// the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub storage_classes: BTreeMap<String, StorageClassInfo>,
    /// The class a claim without `storageClassName` gets.
    pub default_storage_class: Option<String>,
    /// Seconds since the Unix epoch, for how long a Pod has been Unschedulable.
    pub now_unix: i64,
    /// How long a Pod may be Unschedulable before that is a failure (kstatus: 15 s).
    pub unschedulable_grace_s: i64,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            storage_classes: BTreeMap::new(),
            default_storage_class: None,
            now_unix: 0,
            unschedulable_grace_s: 15,
        }
    }
}

/// The readiness of one object, as JSON (a `DynamicObject` serialised with serde).
pub fn readiness(obj: &Value, ctx: &Context) -> Readiness {
    let Some(map) = obj.as_object() else {
        return Readiness::failed("not a Kubernetes object (expected a JSON object)");
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Readiness::failed("the object has no kind");
    }
    let group = api_group(map.get("apiVersion").and_then(Value::as_str).unwrap_or(""));

    if let Some(r) = generic(obj, kind) {
        return r;
    }

    match (group, kind) {
        ("apps" | "extensions", "Deployment") => deployment(obj),
        ("apps", "StatefulSet") => statefulset(obj),
        ("apps" | "extensions", "DaemonSet") => daemonset(obj),
        ("apps" | "extensions", "ReplicaSet") => replicaset(obj),
        ("batch", "Job") => job(obj),
        ("", "Pod") => pod(obj, ctx),
        ("", "PersistentVolumeClaim") => pvc(obj, ctx),
        ("", "PersistentVolume") => pv(obj),
        ("", "Service") => service(obj),
        ("", "Namespace") => namespace(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj),
        ("helm.cattle.io", "HelmChart") | ("helm.k0sproject.io", "Chart") => helm_chart(obj),
        ("postgresql.cnpg.io", "Cluster") => cnpg_cluster(obj),
        ("", "ConfigMap" | "Secret" | "ServiceAccount" | "Endpoints" | "LimitRange" | "ResourceQuota")
        | ("rbac.authorization.k8s.io", "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding")
        | ("networking.k8s.io", "NetworkPolicy" | "Ingress" | "IngressClass")
        | ("node.k8s.io", "RuntimeClass")
        | ("storage.k8s.io", "StorageClass")
        | ("scheduling.k8s.io", "PriorityClass")
        | ("batch", "CronJob")
        | ("policy", "PodDisruptionBudget")
        | ("admissionregistration.k8s.io", _) => Readiness::Ready,
        _ => custom(obj),
    }
}

/// The readiness of a `DynamicObject` (it must carry apiVersion and kind: list items from the
/// API server do not, so the waiter fills them in from discovery before calling [`readiness`]).
pub fn readiness_of(obj: &::kube::api::DynamicObject, ctx: &Context) -> Readiness {
    match serde_json::to_value(obj) {
        Ok(v) => readiness(&v, ctx),
        Err(e) => Readiness::failed(format!("cannot read the object: {e}")),
    }
}

/// "apps/v1" → "apps"; "v1" → "" (the core group).
fn api_group(api_version: &str) -> &str {
    match api_version.rsplit_once('/') {
        Some((group, _)) => group,
        None => "",
    }
}

// ---- field access that never panics -------------------------------------------------------

fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, key| v.as_object()?.get(*key))
}

fn int(obj: &Value, path: &[&str]) -> Option<i64> {
    at(obj, path).and_then(Value::as_i64)
}

fn int_or(obj: &Value, path: &[&str], default: i64) -> i64 {
    int(obj, path).unwrap_or(default)
}

fn string<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(obj, path).and_then(Value::as_str)
}

fn has_status(obj: &Value) -> bool {
    at(obj, &["status"])
        .and_then(Value::as_object)
        .is_some_and(|s| !s.is_empty())
}

/// One entry of `status.conditions`.
struct Condition<'a> {
    status: &'a str,
    reason: &'a str,
    message: &'a str,
    last_transition: Option<&'a str>,
}

impl Condition<'_> {
    fn is_true(&self) -> bool {
        self.status == "True"
    }

    fn is_false(&self) -> bool {
        self.status == "False"
    }

    /// "reason: message", or whichever is present.
    fn explain(&self) -> String {
        match (self.reason.is_empty(), self.message.is_empty()) {
            (false, false) => format!("{}: {}", self.reason, self.message),
            (false, true) => self.reason.to_string(),
            (true, false) => self.message.to_string(),
            (true, true) => String::new(),
        }
    }
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<Condition<'a>> {
    let list = at(obj, &["status", "conditions"])?.as_array()?;
    list.iter().find_map(|c| {
        if c.get("type").and_then(Value::as_str) != Some(kind) {
            return None;
        }
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
        Some(Condition {
            status: s("status"),
            reason: s("reason"),
            message: s("message"),
            last_transition: c.get("lastTransitionTime").and_then(Value::as_str),
        })
    })
}

fn with_detail(head: &str, detail: String) -> String {
    if detail.is_empty() {
        head.to_string()
    } else {
        format!("{head} ({detail})")
    }
}

// ---- rules for every kind -----------------------------------------------------------------

/// kstatus's generic checks: deletion, unobserved generation, and the standard `Reconciling` /
/// `Stalled` conditions, which decide alone when a controller sets them.
fn generic(obj: &Value, kind: &str) -> Option<Readiness> {
    if string(obj, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_empty()) {
        return Some(Readiness::in_progress(format!("the {kind} is being deleted")));
    }
    if let (Some(generation), Some(observed)) = (
        int(obj, &["metadata", "generation"]),
        int(obj, &["status", "observedGeneration"]),
    ) && observed < generation
    {
        return Some(Readiness::in_progress(format!(
            "waiting for the controller to observe generation {generation} (observed {observed})"
        )));
    }
    if let Some(c) = condition(obj, "Stalled")
        && c.is_true()
    {
        return Some(Readiness::failed(with_detail("stalled", c.explain())));
    }
    if let Some(c) = condition(obj, "Reconciling")
        && c.is_true()
    {
        return Some(Readiness::in_progress(with_detail("reconciling", c.explain())));
    }
    None
}

const NO_STATUS: &str = "no status yet";

mod database;
mod pod;
mod resources;
mod time;
mod workloads;

pub use database::PHASE_HEALTHY as CNPG_PHASE_HEALTHY;
use database::cnpg_cluster;
use pod::pod;
use resources::{crd, custom, helm_chart, namespace, pv, pvc, service};
pub use time::parse_rfc3339;
use workloads::{daemonset, deployment, job, replicaset, statefulset};

#[cfg(test)]
mod tests;
