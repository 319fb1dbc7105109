//! Checks on single objects of a stack: names that Kubernetes accepts, no secret material in the
//! repository, and images pinned to a release. Each finds the line of the field at fault, so the
//! error points where the edit has to happen.

use super::StackError;
use super::error::Place;
use super::yaml::Doc;
use serde_json::Value;

/// DNS-1123 label: lowercase alphanumerics and '-', at most 63, alphanumeric at both ends.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Why `name` is not a DNS-1123 subdomain (the rule for most object names), if it is not.
pub(crate) fn subdomain_problem(name: &str) -> Option<&'static str> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 253 {
        Some("it is longer than 253 characters")
    } else if !name.chars().all(|c| alnum(c) || c == '-' || c == '.') {
        Some("it has characters other than lowercase letters, digits, '-' and '.'")
    } else if !name.starts_with(alnum) || !name.ends_with(alnum) {
        Some("it must start and end with a lowercase letter or digit")
    } else {
        None
    }
}

/// Where the pod template sits in objects of the workload kinds.
fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "ReplicationController" => {
            Some("/spec/template/spec")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// Every container of a workload object: (JSON pointer of the container, container value).
pub(crate) fn containers<'a>(kind: &str, value: &'a Value) -> Vec<(String, &'a Value)> {
    let Some(spec_ptr) = pod_spec_pointer(kind) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let ptr = format!("{spec_ptr}/{list}");
        if let Some(Value::Array(items)) = value.pointer(&ptr) {
            for (i, c) in items.iter().enumerate() {
                out.push((format!("{ptr}/{i}"), c));
            }
        }
    }
    out
}

/// Why `image` is not pinned to a release, if it is not.
pub(crate) fn image_problem(image: &str) -> Option<&'static str> {
    if image.contains("@sha256:") {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        None => Some("it has no tag, which means :latest"),
        Some((_, "")) => Some("its tag is empty"),
        Some((_, "latest")) => Some(":latest moves; it is not a release"),
        Some(_) => None,
    }
}

/// The checks that apply to one object.
/// `declared`: the containers stack.yaml lists under `images:` (with their keys); only those may,
/// and must, carry a placeholder image (see `images.rs`).
pub(crate) fn object(
    doc: &Doc,
    place: &dyn Fn(usize) -> Place,
    kind: &str,
    name: &str,
    declared: &[(super::images::ContainerRef, String)],
) -> Result<(), StackError> {
    if kind == "Secret" {
        for field in ["data", "stringData"] {
            if doc.value.get(field).is_some() {
                return Err(StackError::SecretData {
                    at: place(doc.line_of(&format!("/{field}"))),
                    name: name.to_string(),
                });
            }
        }
    }
    if let Some(spec) = pod_spec_pointer(kind)
        && doc.value.pointer(&format!("{spec}/runtimeClassName")).is_some()
    {
        return Err(StackError::GpuInBase {
            at: place(doc.line_of(&format!("{spec}/runtimeClassName"))),
            what: "runtimeClassName".into(),
        });
    }
    for (ptr, c) in containers(kind, &doc.value) {
        let container = c.get("name").and_then(Value::as_str).unwrap_or("(unnamed)").to_string();
        for field in ["requests", "limits"] {
            let gpu = format!("{ptr}/resources/{field}/nvidia.com~1gpu");
            if doc.value.pointer(&gpu).is_some() {
                return Err(StackError::GpuInBase {
                    at: place(doc.line_of(&gpu)),
                    what: format!("container {container:?}: nvidia.com/gpu under resources.{field}"),
                });
            }
        }
        let image_ptr = format!("{ptr}/image");
        let image = c.get("image").and_then(Value::as_str);
        if let Some((message, hint)) = super::images::container_rule(declared, kind, name, &container, image) {
            return Err(super::images::rule_error(place(doc.line_of(&image_ptr)), message, hint));
        }
        if image.is_some_and(super::images::is_placeholder) {
            continue; // declared: the user names the image when the stack is applied
        }
        if let Some(Value::String(image)) = c.get("image")
            && let Some(reason) = super::reference::reference_problem(image)
        {
            return Err(StackError::InvalidImage {
                at: place(doc.line_of(&image_ptr)),
                container,
                image: image.clone(),
                reason,
            });
        }
        let (image, reason) = match c.get("image") {
            Some(Value::String(image)) => match image_problem(image) {
                None => continue,
                Some(reason) => (image.clone(), reason),
            },
            _ => (String::new(), "the container names no image"),
        };
        return Err(StackError::UnpinnedImage {
            at: place(doc.line_of(&image_ptr)),
            container,
            image,
            reason,
        });
    }
    Ok(())
}
