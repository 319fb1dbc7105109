//! Readiness of a CloudNativePG `Cluster` (`postgresql.cnpg.io/v1`), from its status as the
//! operator v1.30.0 writes it (cloudnative-pg/cloudnative-pg, `api/v1/cluster_types.go`):
//! `status.instances` / `status.readyInstances`, `status.phase` (+ `phaseReason`), the
//! `Ready` condition (`pkg/resources/status/transactions.go`, `SetClusterReadyCondition`: True
//! with reason `ClusterIsReady` exactly when the phase is "Cluster in healthy state"), and
//! `status.instancesStatus` (pod names by their state). The status has no `observedGeneration`.
//!
//! Ready: the phase is healthy, `Ready` is True and `readyInstances` equals `spec.instances`.
//! The phases that need a person (an invalid definition, objects that cannot be created, an
//! unrecoverable cluster, a missing image catalog or plugin, "Waiting for user action") fail at
//! once; every other phase is progress. The instance pods themselves are looked at by
//! `diagnose` (they carry `cnpg.io/cluster: <name>`), so a pod that cannot pull its image or
//! crash-loops is named with why.

use serde_json::Value;

use super::*;

/// "Cluster in healthy state" (`PhaseHealthy`).
pub const PHASE_HEALTHY: &str = "Cluster in healthy state";

/// Phases a wait cannot get past (`api/v1/cluster_types.go`, v1.30.0).
const STUCK: &[&str] = &[
    "Cluster is unrecoverable and needs manual intervention",
    "Invalid cluster definition",
    "Unable to create required cluster objects",
    "Cluster has incomplete or invalid image catalog",
    "Cluster cannot proceed to reconciliation due to an unknown plugin being required",
    "Cluster cannot proceed to reconciliation due to an error while interacting with plugins",
    "Cluster cannot execute instance online upgrade due to missing architecture binary",
    "Waiting for user action",
];

pub(super) fn cnpg_cluster(obj: &Value) -> Readiness {
    let want = int(obj, &["spec", "instances"]).unwrap_or(1);
    let Some(status) = at(obj, &["status"]).filter(|s| s.as_object().is_some_and(|m| !m.is_empty())) else {
        return Readiness::in_progress(
            "the CloudNativePG operator has not reported on it yet (is the operator in cnpg-system running?)",
        );
    };
    let phase = status.get("phase").and_then(Value::as_str).unwrap_or("");
    let phase_reason = status.get("phaseReason").and_then(Value::as_str).unwrap_or("");
    let ready = status.get("readyInstances").and_then(Value::as_i64).unwrap_or(0);
    if STUCK.contains(&phase) {
        return Readiness::failed(with_detail(&format!("phase {phase:?}"), phase_reason.to_string()));
    }
    let condition = condition(obj, "Ready");
    if phase == PHASE_HEALTHY && ready == want && condition.as_ref().is_some_and(|c| c.is_true()) {
        return Readiness::Ready;
    }
    let mut why = format!("{ready} of {want} instances ready");
    if !phase.is_empty() {
        why.push_str(&format!("; phase {phase:?}"));
        if !phase_reason.is_empty() {
            why.push_str(&format!(" ({phase_reason})"));
        }
    }
    // Instances not healthy, by name: the pods to look at.
    let mut waiting: Vec<String> = Vec::new();
    if let Some(map) = status.get("instancesStatus").and_then(Value::as_object) {
        for (state, pods) in map {
            if state == "healthy" {
                continue;
            }
            for p in pods.as_array().into_iter().flatten().filter_map(Value::as_str) {
                waiting.push(format!("{p} ({state})"));
            }
        }
    }
    if !waiting.is_empty() {
        why.push_str(&format!("; instances not healthy: {}", waiting.join(", ")));
    }
    Readiness::in_progress(why)
}

#[cfg(test)]
mod tests {
    use super::super::{Context, Readiness, readiness};
    use serde_json::{Value, json};

    /// A Cluster as the operator reports it (field names from `api/v1/cluster_types.go`).
    fn cluster(instances: i64, status: Value) -> Value {
        json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "app-db", "namespace": "demo", "generation": 1},
            "spec": {"instances": instances}, "status": status})
    }

    fn ready_condition(status: &str, reason: &str) -> Value {
        json!([{"type": "Ready", "status": status, "reason": reason, "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}])
    }

    #[test]
    fn ready_needs_the_healthy_phase_the_condition_and_every_instance() {
        let ctx = Context::default();
        let healthy = cluster(
            2,
            json!({"instances": 2, "readyInstances": 2, "phase": "Cluster in healthy state",
                "conditions": ready_condition("True", "ClusterIsReady"),
                "instancesStatus": {"healthy": ["app-db-1", "app-db-2"]}}),
        );
        assert_eq!(readiness(&healthy, &ctx), Readiness::Ready);
        // One replica still coming: in progress, naming it.
        let mut one = healthy.clone();
        one["status"]["readyInstances"] = json!(1);
        one["status"]["phase"] = json!("Creating a new replica");
        one["status"]["conditions"] = ready_condition("False", "ClusterIsNotReady");
        one["status"]["instancesStatus"] = json!({"healthy": ["app-db-1"], "replicating": ["app-db-2"]});
        let r = readiness(&one, &ctx);
        assert!(!r.is_ready() && !r.is_failed(), "{r:?}");
        let why = r.reason().unwrap();
        assert!(why.contains("1 of 2 instances ready"), "{why}");
        assert!(why.contains("phase \"Creating a new replica\""), "{why}");
        assert!(why.contains("app-db-2 (replicating)"), "{why}");
        // Healthy phase but the condition still False (the operator writes both together, a
        // watch may see the status between): not yet.
        let mut stale = healthy.clone();
        stale["status"]["conditions"] = ready_condition("False", "ClusterIsNotReady");
        assert!(!readiness(&stale, &ctx).is_ready());
        // Ready condition True but fewer ready instances than asked for (a scale-up).
        let mut scaled = healthy.clone();
        scaled["spec"]["instances"] = json!(3);
        assert!(!readiness(&scaled, &ctx).is_ready());
    }

    #[test]
    fn no_status_means_the_operator_has_not_seen_it() {
        let r = readiness(&cluster(1, json!({})), &Context::default());
        assert!(r.reason().unwrap().contains("operator has not reported"), "{r:?}");
        let mut none = cluster(1, json!({}));
        none.as_object_mut().unwrap().remove("status");
        assert!(!readiness(&none, &Context::default()).is_ready());
    }

    #[test]
    fn phases_that_need_a_person_fail_at_once() {
        for phase in [
            "Cluster is unrecoverable and needs manual intervention",
            "Invalid cluster definition",
            "Unable to create required cluster objects",
        ] {
            let c = cluster(
                1,
                json!({"phase": phase, "phaseReason": "why", "conditions": ready_condition("False", "ClusterIsNotReady")}),
            );
            let r = readiness(&c, &Context::default());
            assert!(r.is_failed(), "{phase}: {r:?}");
            assert!(r.reason().unwrap().contains(phase) && r.reason().unwrap().contains("why"));
        }
    }

    #[test]
    fn a_stuck_instance_pod_is_named_with_why() {
        use crate::kube::diagnose::{pods_of, with_pods};
        let c = cluster(
            1,
            json!({"instances": 1, "readyInstances": 0, "phase": "Setting up primary",
                "conditions": ready_condition("False", "ClusterIsNotReady")}),
        );
        let pod = |name: &str, ns: &str, cluster: &str, reason: &str| {
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": {"cnpg.io/cluster": cluster}},
                "status": {"phase": "Pending", "containerStatuses": [{"name": "postgres",
                    "state": {"waiting": {"reason": reason, "message": "Back-off pulling image"}}}]}})
        };
        let pods = [
            pod("app-db-1", "demo", "app-db", "ImagePullBackOff"),
            pod("other-db-1", "demo", "other-db", "ImagePullBackOff"),
            pod("app-db-1", "elsewhere", "app-db", "ImagePullBackOff"),
        ];
        let picked = pods_of(&c, pods.iter());
        assert_eq!(picked.len(), 1, "only its own instances, in its namespace");
        let ctx = Context::default();
        let r = with_pods(&c, readiness(&c, &ctx), &picked, &ctx);
        let why = r.reason().unwrap();
        assert!(
            why.contains("pod app-db-1: container postgres is waiting: ImagePullBackOff"),
            "{why}"
        );
    }
}
