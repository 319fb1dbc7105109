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
