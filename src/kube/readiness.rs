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
//! - custom resources with a `Ready` condition follow it (`False` is in progress, with its reason).

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

fn deployment(obj: &Value) -> Readiness {
    if let Some(c) = condition(obj, "Progressing")
        && c.reason == "ProgressDeadlineExceeded"
    {
        return Readiness::failed(with_detail("progress deadline exceeded", c.message.to_string()));
    }
    if at(obj, &["spec", "paused"]).and_then(Value::as_bool) == Some(true) {
        // Paused: the controller will not roll out until resumed; waiting would hang.
        return Readiness::Ready;
    }
    let spec = int_or(obj, &["spec", "replicas"], 1);
    if !has_status(obj) {
        return if spec == 0 {
            Readiness::Ready
        } else {
            Readiness::in_progress(NO_STATUS)
        };
    }
    let replicas = int_or(obj, &["status", "replicas"], 0);
    let updated = int_or(obj, &["status", "updatedReplicas"], 0);
    let ready = int_or(obj, &["status", "readyReplicas"], 0);
    let available = int_or(obj, &["status", "availableReplicas"], 0);

    if updated < spec {
        return Readiness::in_progress(format!("{updated}/{spec} replicas updated"));
    }
    if replicas > updated {
        return Readiness::in_progress(format!(
            "{} old replicas pending termination ({replicas} running, {updated} updated)",
            replicas.saturating_sub(updated)
        ));
    }
    if ready < spec {
        return Readiness::in_progress(format!("{ready}/{spec} replicas ready"));
    }
    if available < spec {
        return Readiness::in_progress(format!("{available}/{spec} replicas available"));
    }
    if let Some(c) = condition(obj, "Progressing")
        && !(c.is_true() && c.reason == "NewReplicaSetAvailable")
    {
        return Readiness::in_progress(with_detail("rollout not complete yet", c.explain()));
    }
    match condition(obj, "Available") {
        Some(c) if c.is_true() => Readiness::Ready,
        Some(c) => Readiness::in_progress(with_detail("the Deployment is not Available", c.explain())),
        None => Readiness::in_progress("the Deployment has no Available condition yet"),
    }
}

fn statefulset(obj: &Value) -> Readiness {
    let spec = int_or(obj, &["spec", "replicas"], 1);
    if !has_status(obj) {
        return if spec == 0 {
            Readiness::Ready
        } else {
            Readiness::in_progress(NO_STATUS)
        };
    }
    let replicas = int_or(obj, &["status", "replicas"], 0);
    let ready = int_or(obj, &["status", "readyReplicas"], 0);
    let current = int_or(obj, &["status", "currentReplicas"], 0);
    let updated = int_or(obj, &["status", "updatedReplicas"], 0);

    if replicas < spec {
        return Readiness::in_progress(format!("{replicas}/{spec} replicas created"));
    }
    if ready < spec {
        return Readiness::in_progress(format!("{ready}/{spec} replicas ready"));
    }
    if string(obj, &["spec", "updateStrategy", "type"]) == Some("OnDelete") {
        // Pods are replaced only when the user deletes them: the ready count is all we can ask.
        return Readiness::Ready;
    }
    if replicas > spec {
        return Readiness::in_progress(format!(
            "{} extra replicas pending termination",
            replicas.saturating_sub(spec)
        ));
    }
    if let Some(partition) = int(obj, &["spec", "updateStrategy", "rollingUpdate", "partition"])
        && partition > 0
    {
        let want = spec.saturating_sub(partition).max(0);
        if updated < want {
            return Readiness::in_progress(format!("{updated}/{want} replicas updated (partition {partition})"));
        }
        return Readiness::Ready;
    }
    if current < spec {
        return Readiness::in_progress(format!("{current}/{spec} replicas at the current revision"));
    }
    let current_rev = string(obj, &["status", "currentRevision"]).unwrap_or("");
    let update_rev = string(obj, &["status", "updateRevision"]).unwrap_or("");
    if current_rev != update_rev {
        return Readiness::in_progress(format!(
            "rolling update in progress: revision {current_rev} → {update_rev}, {updated}/{spec} replicas updated"
        ));
    }
    Readiness::Ready
}

fn daemonset(obj: &Value) -> Readiness {
    if !has_status(obj) {
        return Readiness::in_progress(NO_STATUS);
    }
    if int(obj, &["status", "observedGeneration"]).is_none() {
        return Readiness::in_progress("waiting for the controller to observe the DaemonSet");
    }
    let Some(desired) = int(obj, &["status", "desiredNumberScheduled"]) else {
        return Readiness::in_progress("the DaemonSet has no desired number of pods yet");
    };
    let checks = [
        ("currentNumberScheduled", "pods scheduled"),
        ("updatedNumberScheduled", "pods updated"),
        ("numberAvailable", "pods available"),
        ("numberReady", "pods ready"),
    ];
    for (field, what) in checks {
        let n = int_or(obj, &["status", field], 0);
        if n < desired {
            return Readiness::in_progress(format!("{n}/{desired} {what}"));
        }
    }
    Readiness::Ready
}

fn replicaset(obj: &Value) -> Readiness {
    let spec = int_or(obj, &["spec", "replicas"], 1);
    if !has_status(obj) {
        return if spec == 0 {
            Readiness::Ready
        } else {
            Readiness::in_progress(NO_STATUS)
        };
    }
    if let Some(c) = condition(obj, "ReplicaFailure")
        && c.is_true()
    {
        return Readiness::in_progress(with_detail("replica failure", c.explain()));
    }
    let replicas = int_or(obj, &["status", "replicas"], 0);
    let ready = int_or(obj, &["status", "readyReplicas"], 0);
    let available = int_or(obj, &["status", "availableReplicas"], 0);
    if ready < spec {
        return Readiness::in_progress(format!("{ready}/{spec} replicas ready"));
    }
    if available < spec {
        return Readiness::in_progress(format!("{available}/{spec} replicas available"));
    }
    if replicas > spec {
        return Readiness::in_progress(format!(
            "{} extra replicas pending termination",
            replicas.saturating_sub(spec)
        ));
    }
    Readiness::Ready
}

fn job(obj: &Value) -> Readiness {
    if let Some(c) = condition(obj, "Failed")
        && c.is_true()
    {
        let failed = int_or(obj, &["status", "failed"], 0);
        return Readiness::failed(with_detail(
            &format!("the Job failed ({failed} failed pods)"),
            c.explain(),
        ));
    }
    if condition(obj, "Complete").is_some_and(|c| c.is_true()) {
        return Readiness::Ready;
    }
    if condition(obj, "Suspended").is_some_and(|c| c.is_true()) {
        return Readiness::Ready;
    }
    if !has_status(obj) {
        return Readiness::in_progress(NO_STATUS);
    }
    let parallelism = int_or(obj, &["spec", "parallelism"], 1);
    let completions = int_or(obj, &["spec", "completions"], parallelism);
    let active = int_or(obj, &["status", "active"], 0);
    let succeeded = int_or(obj, &["status", "succeeded"], 0);
    let failed = int_or(obj, &["status", "failed"], 0);
    let mut reason = format!("{succeeded}/{completions} completions succeeded, {active} active");
    if failed > 0 {
        reason.push_str(&format!(", {failed} failed (retrying)"));
    }
    Readiness::in_progress(reason)
}

/// Container waiting reasons that mean "stuck until something changes", reported while waiting.
const STUCK_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

fn container_statuses(obj: &Value) -> impl Iterator<Item = &Value> {
    ["initContainerStatuses", "containerStatuses"]
        .into_iter()
        .filter_map(|field| at(obj, &["status", field]).and_then(Value::as_array))
        .flatten()
}

fn pod(obj: &Value, ctx: &Context) -> Readiness {
    if !has_status(obj) {
        return Readiness::in_progress(NO_STATUS);
    }
    match string(obj, &["status", "phase"]) {
        Some("Succeeded") => return Readiness::Ready,
        Some("Failed") => {
            let detail = [string(obj, &["status", "reason"]), string(obj, &["status", "message"])]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            return Readiness::failed(with_detail("the Pod failed", detail));
        }
        _ => {}
    }
    if condition(obj, "Ready").is_some_and(|c| c.is_true()) {
        return Readiness::Ready;
    }
    // Crash loops fail; other stuck waits are reported and left to the waiter's timeout.
    let mut stuck = None;
    for cs in container_statuses(obj) {
        let name = cs.get("name").and_then(Value::as_str).unwrap_or("?");
        let reason = string(cs, &["state", "waiting", "reason"]).unwrap_or("");
        let message = string(cs, &["state", "waiting", "message"]).unwrap_or("");
        if reason == "CrashLoopBackOff" {
            let restarts = int_or(cs, &["restartCount"], 0);
            let mut text = format!("container {name} is in CrashLoopBackOff ({restarts} restarts");
            if let Some(code) = int(cs, &["lastState", "terminated", "exitCode"]) {
                text.push_str(&format!(", last exit code {code}"));
                if let Some(r) = string(cs, &["lastState", "terminated", "reason"]) {
                    text.push_str(&format!(": {r}"));
                }
            }
            text.push(')');
            return Readiness::failed(text);
        }
        if stuck.is_none() && STUCK_WAITING.contains(&reason) {
            let head = format!("container {name} is waiting: {reason}");
            stuck = Some(if message.is_empty() {
                head
            } else {
                format!("{head}: {message}")
            });
        }
    }
    if let Some(text) = stuck {
        return Readiness::in_progress(text);
    }
    if let Some(c) = condition(obj, "PodScheduled")
        && c.is_false()
        && c.reason == "Unschedulable"
    {
        let since = c
            .last_transition
            .and_then(parse_rfc3339)
            .or_else(|| string(obj, &["metadata", "creationTimestamp"]).and_then(parse_rfc3339));
        let message = if c.message.is_empty() {
            "no reason given"
        } else {
            c.message
        };
        return match since {
            Some(t) if ctx.now_unix.saturating_sub(t) > ctx.unschedulable_grace_s => Readiness::failed(format!(
                "unschedulable for {} s: {message}",
                ctx.now_unix.saturating_sub(t)
            )),
            _ => Readiness::in_progress(format!("not scheduled yet: {message}")),
        };
    }
    let phase = string(obj, &["status", "phase"]).unwrap_or("unknown");
    Readiness::in_progress(format!("the Pod is {phase} and not Ready"))
}

fn pvc(obj: &Value, ctx: &Context) -> Readiness {
    match string(obj, &["status", "phase"]) {
        Some("Bound") => Readiness::Ready,
        Some("Lost") => Readiness::failed("the claim lost its volume (phase Lost)"),
        phase => {
            // An explicit "" means "no class", not the default.
            let class = match at(obj, &["spec", "storageClassName"]) {
                Some(v) => v.as_str().map(str::to_string),
                None => ctx.default_storage_class.clone(),
            };
            let waits = class
                .as_deref()
                .filter(|c| !c.is_empty())
                .and_then(|c| ctx.storage_classes.get(c))
                .is_some_and(|info| info.wait_for_first_consumer);
            if waits && phase.is_none_or(|p| p == "Pending") {
                // The claim waits for its first consumer, applied in this or a later stage.
                return Readiness::Ready;
            }
            let phase = phase.unwrap_or("unknown");
            match class.as_deref() {
                Some(c) if !c.is_empty() => Readiness::in_progress(format!(
                    "the claim is {phase}, not Bound (storage class {c} binds immediately)"
                )),
                _ => Readiness::in_progress(format!("the claim is {phase}, not Bound (no storage class)")),
            }
        }
    }
}

fn pv(obj: &Value) -> Readiness {
    match string(obj, &["status", "phase"]) {
        Some("Available" | "Bound") => Readiness::Ready,
        Some("Failed") => Readiness::failed(with_detail(
            "the volume failed",
            string(obj, &["status", "message"]).unwrap_or("").to_string(),
        )),
        Some(phase) => Readiness::in_progress(format!("the volume is {phase}")),
        None => Readiness::in_progress(NO_STATUS),
    }
}

fn service(obj: &Value) -> Readiness {
    if string(obj, &["spec", "type"]) != Some("LoadBalancer") {
        return Readiness::Ready;
    }
    let has_ingress = at(obj, &["status", "loadBalancer", "ingress"])
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_ingress {
        Readiness::Ready
    } else {
        Readiness::in_progress("waiting for a load-balancer address (none assigned yet)")
    }
}

fn namespace(obj: &Value) -> Readiness {
    match string(obj, &["status", "phase"]) {
        Some("Active") => Readiness::Ready,
        Some("Terminating") => Readiness::in_progress("the namespace is terminating"),
        Some(phase) => Readiness::in_progress(format!("the namespace is {phase}")),
        None => Readiness::in_progress(NO_STATUS),
    }
}

fn crd(obj: &Value) -> Readiness {
    if let Some(c) = condition(obj, "NamesAccepted")
        && c.is_false()
    {
        return Readiness::failed(with_detail("names not accepted", c.explain()));
    }
    let established = condition(obj, "Established");
    if let Some(c) = &established
        && c.is_false()
        && !c.reason.is_empty()
        && c.reason != "Installing"
    {
        return Readiness::failed(with_detail("not established", c.explain()));
    }
    if !established.is_some_and(|c| c.is_true()) {
        return Readiness::in_progress("waiting for the CRD to be established");
    }
    if !condition(obj, "NamesAccepted").is_some_and(|c| c.is_true()) {
        return Readiness::in_progress("waiting for the CRD's names to be accepted");
    }
    Readiness::Ready
}

/// A chart object of the distribution's Helm controller: failed as soon as its own status reports
/// a Helm failure (`distro::helm::chart_failure`). A k0s Chart is installed once its status names
/// the release (`ChartStatus.ReleaseName`, set by `updateStatus` after a successful install,
/// k0sproject/k0s v1.35.3+k0s.0 `pkg/component/controller/extensions_controller.go`); a k3s
/// HelmChart has no such field (helm-controller v0.16.17 `HelmChartStatus`: `jobName` and the
/// `JobCreated`/`Failed` conditions), so it is ready once applied and what it installs is waited
/// on instead.
fn helm_chart(obj: &Value) -> Readiness {
    if let Some(reason) = crate::distro::helm::chart_failure(obj) {
        return Readiness::failed(reason);
    }
    if string(obj, &["kind"]) != Some("Chart") {
        return Readiness::Ready;
    }
    if string(obj, &["status", "releaseName"]).unwrap_or("").is_empty() {
        return Readiness::in_progress("k0s's Helm extension has not installed the chart yet");
    }
    // `chartNeedsUpgrade` (same file and tag): a version or values the status has not caught up
    // with are still being upgraded to.
    let want = string(obj, &["spec", "version"]).unwrap_or("");
    let have = string(obj, &["status", "version"]).unwrap_or("");
    if !want.is_empty() && want != have {
        return Readiness::in_progress(format!(
            "k0s's Helm extension is upgrading the chart from {have} to {want}"
        ));
    }
    if let Some(hash) = string(obj, &["status", "valuesHash"])
        && hash != crate::distro::helm::k0s_values_hash(obj)
    {
        return Readiness::in_progress("k0s's Helm extension has not applied the chart's new values yet");
    }
    Readiness::Ready
}

fn custom(obj: &Value) -> Readiness {
    match condition(obj, "Ready") {
        Some(c) if c.is_true() => Readiness::Ready,
        Some(c) => {
            let state = if c.is_false() { "not Ready" } else { "Ready is Unknown" };
            Readiness::in_progress(with_detail(state, c.explain()))
        }
        None => Readiness::Ready,
    }
}

// ---- time ---------------------------------------------------------------------------------

/// Seconds since the epoch for an RFC 3339 timestamp ("2025-01-01T00:00:00Z",
/// "2025-01-01T01:00:00.5+01:00"); `None` if it does not parse.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = frac.get(digits..)?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let tz = rest.get(1..)?;
            if tz.len() != 5 || tz.as_bytes().get(2) != Some(&b':') {
                return None;
            }
            let h: i64 = tz.get(0..2)?.parse().ok()?;
            let m: i64 = tz.get(3..5)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::path::PathBuf;

    /// 2025-01-01T00:00:20Z: fixtures' timestamps are at 00:00:00 and 00:00:10.
    const NOW: i64 = 1_735_689_620;

    fn ctx() -> Context {
        let mut storage_classes = BTreeMap::new();
        storage_classes.insert(
            "local-path".to_string(),
            StorageClassInfo {
                wait_for_first_consumer: true,
            },
        );
        storage_classes.insert(
            "standard".to_string(),
            StorageClassInfo {
                wait_for_first_consumer: false,
            },
        );
        Context {
            storage_classes,
            default_storage_class: Some("local-path".to_string()),
            now_unix: NOW,
            unschedulable_grace_s: 15,
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Want {
        Ready,
        Progress,
        Fail,
    }
    use Want::{Fail, Progress, Ready};

    /// (fixture, expected variant, substring of the reason; "" for Ready).
    const TABLE: &[(&str, Want, &str)] = &[
        ("deployment-ready", Ready, ""),
        (
            "deployment-rolling-old-replicas",
            Progress,
            "1 old replicas pending termination (4 running, 3 updated)",
        ),
        (
            "deployment-generation-lag",
            Progress,
            "waiting for the controller to observe generation 4 (observed 3)",
        ),
        (
            "deployment-progress-deadline",
            Fail,
            "progress deadline exceeded (ReplicaSet \"ollama-7b9\" has timed out",
        ),
        ("deployment-zero-replicas", Ready, ""),
        ("deployment-too-few-available", Progress, "2/3 replicas available"),
        ("deployment-too-few-ready", Progress, "1/2 replicas ready"),
        ("deployment-no-status", Progress, "no status yet"),
        ("deployment-paused", Ready, ""),
        (
            "deployment-not-available",
            Progress,
            "not Available (MinimumReplicasUnavailable",
        ),
        ("deployment-being-deleted", Progress, "the Deployment is being deleted"),
        ("statefulset-ready", Ready, ""),
        (
            "statefulset-revision-mismatch",
            Progress,
            "revision qdrant-6b7 → qdrant-8c1, 1/3 replicas updated",
        ),
        ("statefulset-partition-done", Ready, ""),
        (
            "statefulset-partition-pending",
            Progress,
            "1/2 replicas updated (partition 1)",
        ),
        ("statefulset-ondelete-ready", Ready, ""),
        ("statefulset-ondelete-not-ready", Progress, "1/2 replicas ready"),
        ("daemonset-ready", Ready, ""),
        ("daemonset-desired-zero", Ready, ""),
        ("daemonset-updating", Progress, "1/2 pods updated"),
        ("daemonset-no-observed-generation", Progress, "observe the DaemonSet"),
        ("job-complete", Ready, ""),
        (
            "job-failed-backoff",
            Fail,
            "the Job failed (5 failed pods) (BackoffLimitExceeded: Job has reached",
        ),
        ("job-running", Progress, "0/1 completions succeeded, 1 active"),
        (
            "job-retrying",
            Progress,
            "0/2 completions succeeded, 1 active, 2 failed (retrying)",
        ),
        ("pod-ready", Ready, ""),
        ("pod-succeeded", Ready, ""),
        (
            "pod-failed",
            Fail,
            "the Pod failed (Evicted: The node was low on resource: memory.)",
        ),
        (
            "pod-crashloop",
            Fail,
            "container app is in CrashLoopBackOff (3 restarts, last exit code 137: OOMKilled)",
        ),
        (
            "pod-init-crashloop",
            Fail,
            "container init-model is in CrashLoopBackOff (2 restarts, last exit code 1",
        ),
        (
            "pod-image-pull-backoff",
            Progress,
            "container app is waiting: ImagePullBackOff: Back-off pulling image",
        ),
        (
            "pod-create-config-error",
            Progress,
            "CreateContainerConfigError: secret \"hf-token\" not found",
        ),
        (
            "pod-unschedulable-10s",
            Progress,
            "not scheduled yet: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        ),
        (
            "pod-unschedulable-20s",
            Fail,
            "unschedulable for 20 s: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        ),
        ("pod-running-not-ready", Progress, "the Pod is Running and not Ready"),
        ("pvc-bound", Ready, ""),
        ("pvc-wffc-explicit-class", Ready, ""),
        ("pvc-wffc-default-class", Ready, ""),
        (
            "pvc-immediate-pending",
            Progress,
            "Pending, not Bound (storage class standard binds immediately)",
        ),
        ("pvc-empty-class-pending", Progress, "not Bound (no storage class)"),
        ("pvc-lost", Fail, "phase Lost"),
        ("crd-established", Ready, ""),
        (
            "crd-names-conflict",
            Fail,
            "names not accepted (MultipleNameConflicts: \"models\" is already in use)",
        ),
        ("crd-installing", Progress, "waiting for the CRD to be established"),
        ("service-clusterip", Ready, ""),
        ("service-loadbalancer-with-ingress", Ready, ""),
        (
            "service-loadbalancer-without-ingress",
            Progress,
            "waiting for a load-balancer address",
        ),
        ("service-externalname", Ready, ""),
        ("namespace-active", Ready, ""),
        ("namespace-terminating", Progress, "terminating"),
        ("pv-available", Ready, ""),
        ("pv-released", Progress, "the volume is Released"),
        ("cr-ready", Ready, ""),
        (
            "cr-not-ready",
            Progress,
            "not Ready (ModelDownloading: downloaded 12 of 40 GiB)",
        ),
        (
            "cr-stalled",
            Fail,
            "stalled (SourceNotFound: repository example/model does not exist)",
        ),
        ("cr-no-conditions", Ready, ""),
        ("cr-generation-lag", Progress, "observe generation 2 (observed 1)"),
        ("cr-lookalike-deployment", Ready, ""),
        (
            "clusterpolicy-reconciling",
            Progress,
            "reconciling (Progressing: waiting for the driver daemonset)",
        ),
        (
            "k0s-chart-error",
            Fail,
            "failed to install chart grafana: can't lookup repository",
        ),
        ("k0s-chart-no-status", Progress, "has not installed the chart yet"),
        ("k0s-chart-installed", Ready, ""),
        ("k0s-chart-values-pending", Progress, "new values"),
        ("helmchart-failed", Fail, "Job create failed: Failed to generate Job"),
        ("helmchart-job-created", Ready, ""),
        ("configmap", Ready, ""),
        ("secret", Ready, ""),
        ("serviceaccount", Ready, ""),
        ("role", Ready, ""),
        ("clusterrolebinding", Ready, ""),
        ("networkpolicy", Ready, ""),
        ("ingress-no-status", Ready, ""),
        ("runtimeclass", Ready, ""),
        ("storageclass", Ready, ""),
        ("garbage-no-kind", Fail, "no kind"),
        ("garbage-array", Fail, "not a Kubernetes object"),
        ("garbage-deployment-wrong-types", Progress, "no status yet"),
        ("garbage-pod-wrong-types", Progress, "not Ready"),
    ];

    fn fixture_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/readiness")
    }

    fn load(name: &str) -> Value {
        let path = fixture_dir().join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn fixtures_match_the_table() {
        let ctx = ctx();
        let mut failures = Vec::new();
        for (name, want, needle) in TABLE {
            let got = readiness(&load(name), &ctx);
            let variant = match &got {
                Readiness::Ready => Ready,
                Readiness::InProgress { .. } => Progress,
                Readiness::Failed { .. } => Fail,
            };
            let reason_ok = got.reason().unwrap_or("").contains(needle);
            if variant != *want || !reason_ok {
                failures.push(format!("{name}: want {want:?} containing {needle:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn every_fixture_has_a_row_and_every_row_a_fixture() {
        let mut on_disk: Vec<String> = std::fs::read_dir(fixture_dir())
            .expect("fixture dir")
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
            .collect();
        on_disk.sort();
        let mut in_table: Vec<String> = TABLE.iter().map(|(n, _, _)| n.to_string()).collect();
        in_table.sort();
        assert_eq!(on_disk, in_table);
        assert!(in_table.len() >= 40);
    }

    #[test]
    fn unschedulable_grace_is_the_callers() {
        let pod = load("pod-unschedulable-10s");
        let mut ctx = ctx();
        assert!(!readiness(&pod, &ctx).is_failed());
        ctx.unschedulable_grace_s = 5;
        assert!(readiness(&pod, &ctx).is_failed());
        // Exactly at the grace boundary is not yet a failure.
        ctx.unschedulable_grace_s = 10;
        assert!(!readiness(&pod, &ctx).is_failed());
    }

    #[test]
    fn unschedulable_falls_back_to_creation_time_and_waits_when_unknown() {
        let mut pod = load("pod-unschedulable-10s");
        pod["status"]["conditions"][0]["lastTransitionTime"] = json!("not a time");
        // creationTimestamp is 00:00:00, 20 s before NOW.
        assert!(readiness(&pod, &ctx()).is_failed());
        pod["metadata"]["creationTimestamp"] = json!(null);
        assert!(matches!(readiness(&pod, &ctx()), Readiness::InProgress { .. }));
    }

    #[test]
    fn pvc_without_class_and_without_default_is_in_progress() {
        let pvc = load("pvc-wffc-default-class");
        let ctx = Context {
            default_storage_class: None,
            ..ctx()
        };
        assert_eq!(
            readiness(&pvc, &ctx),
            Readiness::InProgress {
                reason: "the claim is Pending, not Bound (no storage class)".into()
            }
        );
    }

    #[test]
    fn generation_ahead_of_observed_only_blocks_when_behind() {
        let mut dep = load("deployment-ready");
        dep["status"]["observedGeneration"] = json!(2);
        assert!(readiness(&dep, &ctx()).is_ready());
        dep["metadata"]["generation"] = json!(3);
        assert!(!readiness(&dep, &ctx()).is_ready());
    }

    #[test]
    fn extreme_counts_do_not_overflow() {
        let patches = [
            (
                "deployment-rolling-old-replicas",
                json!({"spec": {"replicas": i64::MIN}, "status": {"replicas": i64::MAX, "updatedReplicas": i64::MIN}}),
            ),
            (
                "statefulset-ready",
                json!({"spec": {"replicas": i64::MIN}, "status": {"replicas": i64::MAX}}),
            ),
            (
                "statefulset-partition-pending",
                json!({"spec": {"replicas": -2, "updateStrategy": {"rollingUpdate": {"partition": i64::MAX}}}, "status": {"replicas": -2}}),
            ),
        ];
        for (name, patch) in patches {
            let mut obj = load(name);
            merge(&mut obj, &patch);
            let _ = readiness(&obj, &ctx());
        }
    }

    fn merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    #[test]
    fn serializes_with_a_state_tag() {
        let v = serde_json::to_value(Readiness::Failed { reason: "x".into() }).expect("serialize");
        assert_eq!(v, json!({"state": "failed", "reason": "x"}));
        assert_eq!(
            serde_json::to_value(Readiness::Ready).expect("serialize"),
            json!({"state": "ready"})
        );
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2025-01-01T00:00:20Z"), Some(NOW));
        assert_eq!(parse_rfc3339("2025-01-01T01:00:20.123456+01:00"), Some(NOW));
        assert_eq!(parse_rfc3339("2024-12-31T23:00:20-01:00"), Some(NOW));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for bad in [
            "",
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "2025-01-01T00:00:00",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+0100",
            "2025-01-01T00:00:00Zjunk",
            "२०२५-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            prop_oneof![
                Just("True".to_string()),
                Just("False".to_string()),
                Just("Pending".to_string()),
                Just("2025-01-01T00:00:00Z".to_string()),
                ".{0,8}"
            ]
            .prop_map(Value::String),
        ];
        let keys = prop_oneof![
            Just("apiVersion"),
            Just("kind"),
            Just("metadata"),
            Just("spec"),
            Just("status"),
            Just("generation"),
            Just("observedGeneration"),
            Just("conditions"),
            Just("type"),
            Just("status"),
            Just("reason"),
            Just("phase"),
            Just("replicas"),
            Just("containerStatuses"),
            Just("state"),
            Just("waiting"),
            Just("lastTransitionTime"),
            Just("storageClassName"),
        ]
        .prop_map(str::to_string);
        leaf.prop_recursive(4, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_kind() -> impl Strategy<Value = (&'static str, &'static str)> {
        prop_oneof![
            Just(("apps/v1", "Deployment")),
            Just(("apps/v1", "StatefulSet")),
            Just(("apps/v1", "DaemonSet")),
            Just(("apps/v1", "ReplicaSet")),
            Just(("batch/v1", "Job")),
            Just(("v1", "Pod")),
            Just(("v1", "PersistentVolumeClaim")),
            Just(("v1", "PersistentVolume")),
            Just(("v1", "Service")),
            Just(("v1", "Namespace")),
            Just(("apiextensions.k8s.io/v1", "CustomResourceDefinition")),
            Just(("ai.example.com/v1", "Model")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_json_never_panics(v in arb_json()) {
            let _ = readiness(&v, &ctx());
        }

        #[test]
        fn arbitrary_objects_of_known_kinds_never_panic(
            (api, kind) in arb_kind(),
            metadata in arb_json(),
            spec in arb_json(),
            status in arb_json(),
            now in any::<i64>(),
            grace in any::<i64>(),
        ) {
            let obj = json!({"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec, "status": status});
            let ctx = Context { now_unix: now, unschedulable_grace_s: grace, ..ctx() };
            let _ = readiness(&obj, &ctx);
        }

        #[test]
        fn arbitrary_strings_never_panic_the_time_parser(s in ".{0,40}") {
            let _ = parse_rfc3339(&s);
        }
    }

    #[test]
    fn readiness_of_a_dynamic_object_matches_the_json_rules() {
        let json = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "d", "generation": 2},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                       "availableReplicas": 1, "conditions": [{"type": "Available", "status": "True"}]}});
        let obj: ::kube::api::DynamicObject = serde_json::from_value(json.clone()).unwrap();
        let ctx = Context::default();
        let r = readiness_of(&obj, &ctx);
        assert_eq!(r, readiness(&json, &ctx));
        assert!(r.reason().unwrap().contains("generation 2"), "{r:?}");
    }
}
