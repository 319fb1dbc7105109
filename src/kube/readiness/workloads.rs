//! Readiness rules of the workload controllers: Deployment, StatefulSet, DaemonSet, ReplicaSet
//! and Job (kstatus's, with the differences listed in the parent module).

use serde_json::Value;

use super::*;

pub(super) fn deployment(obj: &Value) -> Readiness {
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

pub(super) fn statefulset(obj: &Value) -> Readiness {
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

pub(super) fn daemonset(obj: &Value) -> Readiness {
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

pub(super) fn replicaset(obj: &Value) -> Readiness {
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

pub(super) fn job(obj: &Value) -> Readiness {
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
