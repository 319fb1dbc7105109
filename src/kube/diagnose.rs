//! Why is an object not ready? Pure functions from JSON (the object, the pods its selector picks,
//! recent events) to a [`Diagnosis`] a person can act on: the reason, the details behind it
//! (container waiting reasons, crash exit codes, the scheduler's message, a Job's failure), the
//! recent Warning events, and the next command to run.
//!
//! Peers' users complain most that `--wait` hangs and then says nothing; this is what kstrap says
//! instead, on a timeout or failure and in the progress line while waiting.

use super::readiness::{Context, Readiness, readiness};
use serde::Serialize;
use serde_json::Value;

/// What kstrap says about one object that is not ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// `Deployment/web -n demo`.
    pub object: String,
    /// One line: the most specific cause known.
    pub reason: String,
    /// Supporting facts, one per line (pod and container states, the object's own status).
    pub details: Vec<String>,
    /// Recent Warning events of the object and its pods, newest first: `reason: message (×n)`.
    pub events: Vec<String>,
    /// What to run next to see more.
    pub next_command: Option<String>,
}

/// How many events a diagnosis shows.
const MAX_EVENTS: usize = 5;

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

fn kind_of(v: &Value) -> &str {
    s(v, &["kind"]).unwrap_or("")
}

fn name_of(v: &Value) -> &str {
    s(v, &["metadata", "name"]).unwrap_or("")
}

fn namespace_of(v: &Value) -> Option<&str> {
    s(v, &["metadata", "namespace"]).filter(|n| !n.is_empty())
}

/// `Kind/name -n ns`, or `Kind/name` for a cluster-scoped object.
pub fn display_name(v: &Value) -> String {
    match namespace_of(v) {
        Some(ns) => format!("{}/{} -n {ns}", kind_of(v), name_of(v)),
        None => format!("{}/{}", kind_of(v), name_of(v)),
    }
}

/// Whether a `LabelSelector` (matchLabels and matchExpressions) selects these labels. An empty or
/// missing selector selects nothing (a workload always has one; guessing would blame wrong pods).
pub fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    let exprs = selector.get("matchExpressions").and_then(Value::as_array);
    if match_labels.is_none_or(|m| m.is_empty()) && exprs.is_none_or(|e| e.is_empty()) {
        return false;
    }
    if let Some(m) = match_labels {
        for (k, v) in m {
            if label(k) != v.as_str() {
                return false;
            }
        }
    }
    for e in exprs.into_iter().flatten() {
        let key = s(e, &["key"]).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let ok = match s(e, &["operator"]).unwrap_or("") {
            "In" => label(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether the pods of this kind of object are worth looking at.
pub fn has_pods(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "Cluster"
    )
}

/// A CloudNativePG `Cluster`: its instance pods carry `cnpg.io/cluster: <name>` (v1.30.0
/// `pkg/specs/pods.go`), which stands in for the selector workloads have.
fn cnpg_selector(workload: &Value) -> Option<Value> {
    let api = workload.get("apiVersion").and_then(Value::as_str)?;
    (api.starts_with("postgresql.cnpg.io/") && kind_of(workload) == "Cluster")
        .then(|| serde_json::json!({"matchLabels": {crate::stack::databases::CLUSTER_LABEL: name_of(workload)}}))
}

/// The pods a workload's selector picks, in its namespace.
pub fn pods_of<'a>(workload: &Value, pods: impl IntoIterator<Item = &'a Value>) -> Vec<&'a Value> {
    if !has_pods(kind_of(workload)) {
        return Vec::new();
    }
    let cnpg = cnpg_selector(workload);
    let Some(selector) = cnpg
        .as_ref()
        .or_else(|| workload.get("spec").and_then(|s| s.get("selector")))
    else {
        return Vec::new();
    };
    let ns = namespace_of(workload);
    pods.into_iter()
        .filter(|p| namespace_of(p) == ns)
        .filter(|p| {
            p.get("metadata")
                .and_then(|m| m.get("labels"))
                .is_some_and(|l| selector_matches(selector, l))
        })
        .collect()
}

/// A problem found in one pod, and the command that shows more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProblem {
    pub reason: String,
    pub next_command: String,
    /// Crash loops and failed pods: a failure, not just slow.
    pub fatal: bool,
}

fn ns_flag(pod: &Value) -> String {
    namespace_of(pod).map(|n| format!("-n {n} ")).unwrap_or_default()
}

/// The most telling problem of one pod, if it has one (a Ready or Succeeded pod has none).
pub fn pod_problem(pod: &Value, ctx: &Context) -> Option<PodProblem> {
    let name = name_of(pod);
    let nsf = ns_flag(pod);
    let describe = format!("kubectl {nsf}describe pod {name}");
    // Rejected at admission (a GPU not registered yet, after a reboot): it never runs.
    if let Some(message) = super::admission::rejection(pod) {
        return Some(PodProblem {
            reason: super::admission::reason(name, message),
            next_command: format!("kubectl {nsf}delete pod {name}"),
            fatal: true,
        });
    }
    let statuses = ["initContainerStatuses", "containerStatuses"]
        .into_iter()
        .filter_map(|f| pod.get("status").and_then(|s| s.get(f)).and_then(Value::as_array))
        .flatten();
    for cs in statuses {
        let cname = s(cs, &["name"]).unwrap_or("?");
        let Some(waiting) = cs.get("state").and_then(|st| st.get("waiting")) else {
            continue;
        };
        let reason = s(waiting, &["reason"]).unwrap_or("");
        if reason.is_empty() || reason == "ContainerCreating" || reason == "PodInitializing" {
            continue;
        }
        let message = s(waiting, &["message"]).unwrap_or("");
        let mut text = format!("pod {name}: container {cname} is waiting: {reason}");
        if reason == "CrashLoopBackOff" {
            let restarts = cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            text = format!("pod {name}: container {cname} is in CrashLoopBackOff ({restarts} restarts");
            let term = cs.get("lastState").and_then(|l| l.get("terminated"));
            if let Some(code) = term.and_then(|t| t.get("exitCode")).and_then(Value::as_i64) {
                text.push_str(&format!(", last exit code {code}"));
                if let Some(r) = term.and_then(|t| s(t, &["reason"])) {
                    text.push_str(&format!(": {r}"));
                }
            }
            text.push(')');
            return Some(PodProblem {
                reason: text,
                next_command: format!("kubectl {nsf}logs {name} -c {cname} --previous"),
                fatal: true,
            });
        }
        if !message.is_empty() {
            text.push_str(&format!(": {message}"));
        }
        return Some(PodProblem {
            reason: text,
            next_command: describe,
            fatal: false,
        });
    }
    // Not scheduled: the scheduler's own message names the missing resource.
    if let Some(conds) = pod
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        && let Some(c) = conds.iter().find(|c| s(c, &["type"]) == Some("PodScheduled"))
        && s(c, &["status"]) == Some("False")
    {
        let msg = s(c, &["message"]).unwrap_or("");
        let why = s(c, &["reason"]).unwrap_or("not scheduled");
        let text = if msg.is_empty() {
            format!("pod {name} is not scheduled: {why}")
        } else {
            format!("pod {name} is not scheduled: {msg}")
        };
        let fatal = readiness(pod, ctx).is_failed();
        return Some(PodProblem {
            reason: text,
            next_command: describe,
            fatal,
        });
    }
    match readiness(pod, ctx) {
        Readiness::Ready => None,
        Readiness::Failed { reason } => Some(PodProblem {
            reason: format!("pod {name}: {reason}"),
            next_command: format!("kubectl {nsf}logs {name}"),
            fatal: true,
        }),
        Readiness::InProgress { reason } => Some(PodProblem {
            reason: format!("pod {name}: {reason}"),
            next_command: describe,
            fatal: false,
        }),
    }
}

/// Is this Warning event about `kind/name` in `ns`? Accepts core/v1 and events.k8s.io/v1 shapes.
fn event_is_about(event: &Value, kind: &str, name: &str, ns: Option<&str>) -> bool {
    let Some(target) = event.get("involvedObject").or_else(|| event.get("regarding")) else {
        return false;
    };
    s(target, &["kind"]) == Some(kind)
        && s(target, &["name"]) == Some(name)
        && (ns.is_none() || s(target, &["namespace"]).is_none_or(|n| Some(n) == ns))
}

fn event_time(event: &Value) -> &str {
    s(event, &["lastTimestamp"])
        .or_else(|| s(event, &["series", "lastObservedTime"]))
        .or_else(|| s(event, &["eventTime"]))
        .or_else(|| s(event, &["metadata", "creationTimestamp"]))
        .unwrap_or("")
}

/// Recent Warning events of an object and its pods, newest first, as `reason: message (×n)`.
pub fn warning_events(obj: &Value, pods: &[&Value], events: &[Value]) -> Vec<String> {
    let ns = namespace_of(obj);
    let mut picked: Vec<&Value> = events
        .iter()
        .filter(|e| s(e, &["type"]) == Some("Warning"))
        .filter(|e| {
            event_is_about(e, kind_of(obj), name_of(obj), ns)
                || pods.iter().any(|p| event_is_about(e, "Pod", name_of(p), ns))
        })
        .collect();
    // RFC 3339 timestamps in UTC sort as text.
    picked.sort_by(|a, b| event_time(b).cmp(event_time(a)));
    let mut out: Vec<String> = Vec::new();
    for e in picked {
        let reason = s(e, &["reason"]).unwrap_or("Warning");
        let message = s(e, &["message"]).or_else(|| s(e, &["note"])).unwrap_or("").trim();
        let count = e
            .get("count")
            .and_then(Value::as_i64)
            .or_else(|| e.get("series").and_then(|s| s.get("count")).and_then(Value::as_i64))
            .unwrap_or(1);
        let target = e.get("involvedObject").or_else(|| e.get("regarding"));
        let about = target
            .map(|t| format!("{}/{}", s(t, &["kind"]).unwrap_or(""), s(t, &["name"]).unwrap_or("")))
            .unwrap_or_default();
        let mut line = format!("{about} {reason}: {message}");
        if count > 1 {
            line.push_str(&format!(" (×{count})"));
        }
        if !out.contains(&line) {
            out.push(line);
        }
        if out.len() == MAX_EVENTS {
            break;
        }
    }
    out
}

/// The readiness of a workload, sharpened by its pods: a crash-looping or failed pod fails a
/// Deployment, StatefulSet, DaemonSet or ReplicaSet at once (waiting longer cannot help), and an
/// in-progress workload's reason names its stuck pod. A Job's failed pods are retries, so they
/// only explain; the Job's own conditions decide.
pub fn with_pods(obj: &Value, own: Readiness, pods: &[&Value], ctx: &Context) -> Readiness {
    if own.is_ready() || own.is_failed() {
        return own;
    }
    let is_job = kind_of(obj) == "Job";
    let mut first = None;
    for pod in pods {
        if let Some(p) = pod_problem(pod, ctx) {
            if p.fatal && !is_job {
                return Readiness::Failed { reason: p.reason };
            }
            if first.is_none() {
                first = Some(p.reason);
            }
        }
    }
    match (first, own) {
        (Some(pod_reason), Readiness::InProgress { reason }) => Readiness::InProgress {
            reason: format!("{reason}; {pod_reason}"),
        },
        (_, own) => own,
    }
}

/// The diagnosis of one object that is not ready, from its JSON, its pods and recent events.
pub fn diagnose(obj: &Value, pods: &[&Value], events: &[Value], ctx: &Context) -> Diagnosis {
    let object = display_name(obj);
    let own = readiness(obj, ctx);
    let nsf = namespace_of(obj).map(|n| format!("-n {n} ")).unwrap_or_default();
    let kind = kind_of(obj);
    let name = name_of(obj);
    let mut details = Vec::new();
    if let Some(r) = own.reason() {
        details.push(format!("{kind} {name}: {r}"));
    }
    let mut reason = own.reason().map(str::to_string).unwrap_or_else(|| "ready".to_string());
    let mut next_command = Some(format!("kubectl {nsf}describe {} {name}", kind.to_lowercase()));
    if kind == "Job" && own.is_failed() {
        next_command = Some(format!("kubectl {nsf}logs job/{name}"));
    }
    let mut best: Option<PodProblem> = None;
    for pod in pods {
        if let Some(p) = pod_problem(pod, ctx) {
            details.push(p.reason.clone());
            let better = match &best {
                None => true,
                Some(b) => p.fatal && !b.fatal,
            };
            if better {
                best = Some(p);
            }
        }
    }
    if let Some(p) = best
        && !(kind == "Job" && own.is_failed())
    {
        reason = p.reason;
        next_command = Some(p.next_command);
    }
    if pods.is_empty() && has_pods(kind) && !own.is_ready() {
        details.push(format!("no pods of {kind} {name} found"));
    }
    Diagnosis {
        object,
        reason,
        details,
        events: warning_events(obj, pods, events),
        next_command,
    }
}

/// Several lines for people: the object, its reason, details, events and the next command.
pub fn render(d: &Diagnosis) -> String {
    let mut out = format!("  {}: {}\n", d.object, d.reason);
    for line in d.details.iter().filter(|l| **l != d.reason) {
        out.push_str(&format!("      {line}\n"));
    }
    for e in &d.events {
        out.push_str(&format!("      event: {e}\n"));
    }
    if let Some(cmd) = &d.next_command {
        out.push_str(&format!("      next: {cmd}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/diagnose/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A fixture file holds `{object, pods, events}`.
    fn run(name: &str) -> Diagnosis {
        let f = fixture(name);
        let pods: Vec<Value> = f["pods"].as_array().cloned().unwrap_or_default();
        let events: Vec<Value> = f["events"].as_array().cloned().unwrap_or_default();
        let picked = pods_of(&f["object"], &pods);
        let ctx = Context {
            now_unix: 1_767_225_600, // 2026-01-01T00:00:00Z
            ..Context::default()
        };
        diagnose(&f["object"], &picked, &events, &ctx)
    }

    #[test]
    fn image_pull_backoff_names_the_image_and_describes_the_pod() {
        let d = run("deployment-imagepull");
        assert_eq!(d.object, "Deployment/web -n demo");
        assert!(d.reason.contains("ImagePullBackOff"), "{d:?}");
        assert!(d.reason.contains("ghcr.io/example/web:9.9.9"), "{d:?}");
        assert!(d.reason.contains("pod web-5d9c7-abcde"), "{d:?}");
        assert_eq!(
            d.next_command.as_deref(),
            Some("kubectl -n demo describe pod web-5d9c7-abcde")
        );
        // The Warning event of the pod, not the Normal one, nor another pod's.
        assert_eq!(d.events.len(), 1, "{:?}", d.events);
        assert!(d.events[0].contains("Failed: Failed to pull image"), "{:?}", d.events);
        assert!(d.events[0].contains("(×4)"), "{:?}", d.events);
        assert!(d.details.iter().any(|l| l.contains("0/1 replicas")), "{:?}", d.details);
    }

    #[test]
    fn crash_loop_gives_exit_code_and_previous_logs() {
        let d = run("deployment-crashloop");
        assert!(d.reason.contains("CrashLoopBackOff"), "{d:?}");
        assert!(d.reason.contains("last exit code 137"), "{d:?}");
        assert!(d.reason.contains("OOMKilled"), "{d:?}");
        assert_eq!(
            d.next_command.as_deref(),
            Some("kubectl -n demo logs api-7f8b9-xyz12 -c api --previous")
        );
        assert!(d.events.iter().any(|e| e.contains("BackOff")), "{:?}", d.events);
    }

    #[test]
    fn unschedulable_reports_the_scheduler_message() {
        let d = run("deployment-unschedulable");
        assert!(
            d.reason
                .contains("0/1 nodes are available: 1 Insufficient nvidia.com/gpu"),
            "{d:?}"
        );
        assert_eq!(
            d.next_command.as_deref(),
            Some("kubectl -n ai describe pod ollama-0-abc")
        );
        assert!(
            d.events.iter().any(|e| e.contains("FailedScheduling")),
            "{:?}",
            d.events
        );
    }

    #[test]
    fn failed_job_points_at_its_logs() {
        let d = run("job-failed");
        assert!(d.reason.contains("the Job failed"), "{d:?}");
        assert!(d.reason.contains("BackoffLimitExceeded"), "{d:?}");
        assert_eq!(d.next_command.as_deref(), Some("kubectl -n demo logs job/migrate"));
        // Its failed pod is a detail.
        assert!(d.details.iter().any(|l| l.contains("pod migrate-")), "{:?}", d.details);
    }

    #[test]
    fn workload_without_pods_says_so() {
        let d = run("statefulset-no-pods");
        assert!(
            d.details.iter().any(|l| l.contains("no pods of StatefulSet db")),
            "{d:?}"
        );
        assert_eq!(
            d.next_command.as_deref(),
            Some("kubectl -n demo describe statefulset db")
        );
    }

    #[test]
    fn pvc_and_cluster_scoped_objects() {
        let d = run("pvc-pending");
        assert_eq!(d.object, "PersistentVolumeClaim/models -n demo");
        assert!(d.reason.contains("Pending"), "{d:?}");
        assert!(
            d.events.iter().any(|e| e.contains("ProvisioningFailed")),
            "{:?}",
            d.events
        );
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com", "generation": 1}, "status": {}});
        let d = diagnose(&crd, &[], &[], &Context::default());
        assert_eq!(d.object, "CustomResourceDefinition/widgets.example.com");
        assert_eq!(
            d.next_command.as_deref(),
            Some("kubectl describe customresourcedefinition widgets.example.com")
        );
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"app": "web", "tier": "front"});
        assert!(selector_matches(&json!({"matchLabels": {"app": "web"}}), &labels));
        assert!(!selector_matches(&json!({"matchLabels": {"app": "api"}}), &labels));
        assert!(!selector_matches(&json!({}), &labels), "empty selects nothing");
        let e =
            |op: &str, vals: &[&str]| json!({"matchExpressions": [{"key": "tier", "operator": op, "values": vals}]});
        assert!(selector_matches(&e("In", &["front", "x"]), &labels));
        assert!(!selector_matches(&e("In", &["back"]), &labels));
        assert!(selector_matches(&e("NotIn", &["back"]), &labels));
        assert!(!selector_matches(&e("NotIn", &["front"]), &labels));
        assert!(selector_matches(&e("Exists", &[]), &labels));
        assert!(!selector_matches(&e("DoesNotExist", &[]), &labels));
        assert!(!selector_matches(&e("Bogus", &[]), &labels));
    }

    #[test]
    fn pods_of_respects_namespace_and_kind() {
        let f = fixture("deployment-imagepull");
        let pods: Vec<Value> = f["pods"].as_array().cloned().unwrap();
        let picked = pods_of(&f["object"], &pods);
        assert_eq!(
            picked.len(),
            1,
            "the pod of another app and the one in another namespace are left out"
        );
        let cm = json!({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "demo"}});
        assert!(pods_of(&cm, &pods).is_empty());
    }

    #[test]
    fn with_pods_fails_on_crash_loop_but_not_for_jobs() {
        let ctx = Context::default();
        let f = fixture("deployment-crashloop");
        let pods: Vec<Value> = f["pods"].as_array().cloned().unwrap();
        let picked = pods_of(&f["object"], &pods);
        let own = readiness(&f["object"], &ctx);
        assert!(!own.is_ready());
        let r = with_pods(&f["object"], own, &picked, &ctx);
        assert!(r.is_failed(), "{r:?}");
        assert!(r.reason().unwrap().contains("CrashLoopBackOff"));

        let f = fixture("deployment-imagepull");
        let pods: Vec<Value> = f["pods"].as_array().cloned().unwrap();
        let picked = pods_of(&f["object"], &pods);
        let r = with_pods(&f["object"], readiness(&f["object"], &ctx), &picked, &ctx);
        assert!(!r.is_failed(), "image pulls may recover: {r:?}");
        assert!(r.reason().unwrap().contains("ImagePullBackOff"), "{r:?}");

        // A Job's failed pod is a retry: still in progress.
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "demo", "generation": 1},
            "spec": {"selector": {"matchLabels": {"job-name": "j"}}},
            "status": {"active": 1, "failed": 1}});
        let pod = json!({"kind": "Pod", "metadata": {"name": "j-1", "namespace": "demo", "labels": {"job-name": "j"}},
            "status": {"phase": "Failed", "reason": "Error"}});
        let r = with_pods(&job, readiness(&job, &ctx), &[&pod], &ctx);
        assert!(!r.is_failed(), "{r:?}");
        // Ready stays ready whatever the pods say.
        assert_eq!(with_pods(&job, Readiness::Ready, &[&pod], &ctx), Readiness::Ready);
    }

    #[test]
    fn render_lists_everything_once() {
        let d = run("deployment-crashloop");
        let text = render(&d);
        assert!(
            text.starts_with("  Deployment/api -n demo: pod api-7f8b9-xyz12"),
            "{text}"
        );
        assert!(
            text.contains("next: kubectl -n demo logs api-7f8b9-xyz12 -c api --previous"),
            "{text}"
        );
        assert_eq!(text.matches("last exit code 137").count(), 1, "{text}");
    }
}
