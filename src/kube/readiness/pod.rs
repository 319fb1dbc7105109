//! Readiness of a Pod, as the kubelet reports it: Ready, stuck container waiting reasons,
//! CrashLoopBackOff, and Unschedulable for longer than the grace period.

use serde_json::Value;

use super::*;

/// Container waiting reasons that mean "stuck until something changes", reported while waiting.
const STUCK_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

pub(super) fn container_statuses(obj: &Value) -> impl Iterator<Item = &Value> {
    ["initContainerStatuses", "containerStatuses"]
        .into_iter()
        .filter_map(|field| at(obj, &["status", field]).and_then(Value::as_array))
        .flatten()
}

pub(super) fn pod(obj: &Value, ctx: &Context) -> Readiness {
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
