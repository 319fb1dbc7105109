//! Readiness of the other kinds with a status worth reading: PersistentVolumeClaims (aware of
//! WaitForFirstConsumer), PersistentVolumes, Services (LoadBalancer address), Namespaces, CRDs,
//! and custom resources with a `Ready` condition.

use serde_json::Value;

use super::*;

pub(super) fn pvc(obj: &Value, ctx: &Context) -> Readiness {
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

pub(super) fn pv(obj: &Value) -> Readiness {
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

pub(super) fn service(obj: &Value) -> Readiness {
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

pub(super) fn namespace(obj: &Value) -> Readiness {
    match string(obj, &["status", "phase"]) {
        Some("Active") => Readiness::Ready,
        Some("Terminating") => Readiness::in_progress("the namespace is terminating"),
        Some(phase) => Readiness::in_progress(format!("the namespace is {phase}")),
        None => Readiness::in_progress(NO_STATUS),
    }
}

/// A chart object of the distribution's Helm controller: failed as soon as its own status reports
/// a Helm failure (`distro::helm::chart_failure`). A k0s Chart is installed once its status names
/// the release (`ChartStatus.ReleaseName`, set by `updateStatus` after a successful install,
/// k0sproject/k0s v1.35.3+k0s.0 `pkg/component/controller/extensions_controller.go`); a k3s
/// HelmChart has no such field (helm-controller v0.16.17 `HelmChartStatus`: `jobName` and the
/// `JobCreated`/`Failed` conditions), so it is ready once applied and what it installs is waited
/// on instead.
pub(super) fn helm_chart(obj: &Value) -> Readiness {
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

pub(super) fn crd(obj: &Value) -> Readiness {
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

pub(super) fn custom(obj: &Value) -> Readiness {
    match condition(obj, "Ready") {
        Some(c) if c.is_true() => Readiness::Ready,
        Some(c) => {
            let state = if c.is_false() { "not Ready" } else { "Ready is Unknown" };
            Readiness::in_progress(with_detail(state, c.explain()))
        }
        None => Readiness::Ready,
    }
}
