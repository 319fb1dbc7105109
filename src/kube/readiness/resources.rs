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
