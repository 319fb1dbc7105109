//! The checks on `stack.yaml`'s overlays, made when a stack is loaded: each overlay names an
//! object and containers that exist, sizes what can be sized, pins and spells its images, keeps
//! GPU shares to `gpu: N`, and leaves every container with requests no larger than its limits
//! (the overlay's figures where it gives them, the base manifest's otherwise).

use super::Stage;
use super::check::{containers, image_problem};
use super::error::StackError;
use super::overlay::{PlacedOverlay, quantity_value};
use crate::distro::Distro;
use crate::gpu::GPU_RESOURCE;
use serde_json::Value;
use std::collections::BTreeMap;

const REPLICATED: &[&str] = &["Deployment", "StatefulSet", "ReplicaSet"];

/// Every set of overlays in stack.yaml, each with where it is written: (`profiles.laptop-8gb` or
/// `distros.k0s`, its overlays), profiles first. Errors name an overlay by that prefix.
pub(crate) fn sections<'a>(
    profiles: &'a BTreeMap<String, BTreeMap<String, PlacedOverlay>>,
    distros: &'a BTreeMap<Distro, BTreeMap<String, PlacedOverlay>>,
) -> Vec<(String, &'a BTreeMap<String, PlacedOverlay>)> {
    let profiles = profiles.iter().map(|(p, o)| (format!("profiles.{p}"), o));
    let distros = distros.iter().map(|(d, o)| (format!("distros.{}", d.name()), o));
    profiles.chain(distros).collect()
}

/// Checks every overlay (see [`sections`]) against the stack's objects. `path` is stack.yaml's
/// shown path.
pub(crate) fn check(
    path: &str,
    stages: &[Stage],
    sections: &[(String, &BTreeMap<String, PlacedOverlay>)],
) -> Result<(), StackError> {
    for (section, overlays) in sections {
        for (key, placed) in overlays.iter() {
            let err = |message: String, hint: &str| StackError::StackFile {
                path: path.to_string(),
                line: placed.line,
                message: format!("{section}.{key}: {message}"),
                hint: hint.to_string(),
            };
            let Some((kind, name)) = key.split_once('/') else {
                return Err(err(
                    "not of the form Kind/name".into(),
                    "name the object as Kind/name, e.g. Deployment/ollama",
                ));
            };
            let matches: Vec<&Value> = stages
                .iter()
                .flat_map(|s| &s.objects)
                .filter(|o| o.reference.kind == kind && o.reference.name == name)
                .map(|o| &o.value)
                .collect();
            let object = match matches.as_slice() {
                [one] => *one,
                [] => {
                    return Err(err(
                        format!("no {kind} named {name:?} in the stack"),
                        "overlays change objects of the stack's stage folders: correct the kind or name",
                    ));
                }
                _ => {
                    return Err(err(
                        format!("{} objects are {kind}/{name} (in different namespaces)", matches.len()),
                        "give those objects distinct names so an overlay can name one",
                    ));
                }
            };
            let o = &placed.overlay;
            if o.omit && (o.replicas.is_some() || o.storage.is_some() || !o.containers.is_empty()) {
                return Err(err(
                    "omit: true together with sizing".into(),
                    "an omitted object is not applied; remove either omit or the sizing",
                ));
            }
            // A database's Cluster: replicas are its instances, storage each instance's volume.
            let database = object.get("apiVersion").and_then(Value::as_str) == Some(super::databases::API_VERSION)
                && kind == super::databases::KIND;
            if o.replicas.is_some() && !REPLICATED.contains(&kind) && !database {
                return Err(err(
                    format!("replicas does not apply to a {kind}"),
                    "replicas sizes Deployments, StatefulSets, ReplicaSets and databases (Cluster: its instances)",
                ));
            }
            if o.storage.is_some() && kind != "PersistentVolumeClaim" && !database {
                return Err(err(
                    format!("storage does not apply to a {kind}"),
                    "storage sizes a PersistentVolumeClaim or a database (Cluster: each instance's volume)",
                ));
            }
            if database && o.omit {
                return Err(err(
                    "a database cannot be omitted".to_string(),
                    "its service reads the credentials it makes; omit the service and remove the database from databases: instead",
                ));
            }
            let present: Vec<String> = containers(kind, object)
                .iter()
                .filter_map(|(_, c)| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect();
            for (cname, c) in &o.containers {
                if !present.contains(cname) {
                    let have = if present.is_empty() {
                        format!("a {kind} has no containers")
                    } else {
                        format!("its containers are {}", present.join(", "))
                    };
                    return Err(err(
                        format!("no container {cname:?} ({have})"),
                        "name a container of the object",
                    ));
                }
                if let Some(image) = &c.image
                    && let Some(reason) = super::reference::reference_problem(image)
                {
                    return Err(err(
                        format!("container {cname}: image {image:?} is not a valid image reference: {reason}"),
                        "write [registry/]path/name:tag (path and name in lowercase) or name@sha256:<64 hex digits>",
                    ));
                }
                if let Some(image) = &c.image
                    && let Some(reason) = image_problem(image)
                {
                    return Err(err(
                        format!("container {cname}: image {image:?} is not pinned: {reason}"),
                        "pin the image to an exact release tag (name:1.2.3) or a digest",
                    ));
                }
                for (what, map) in [("requests", &c.requests), ("limits", &c.limits)] {
                    if map.contains_key(GPU_RESOURCE) {
                        return Err(err(
                            format!("container {cname}: {GPU_RESOURCE} under {what}"),
                            "write `gpu: N` on the container instead: it also sets runtimeClassName",
                        ));
                    }
                    if let Some(bad) = map.keys().find(|k| !is_resource_name(k)) {
                        return Err(err(
                            format!("container {cname}: {bad:?} is not a resource name"),
                            "use cpu, memory, ephemeral-storage or a domain/name extended resource",
                        ));
                    }
                }
                // Requests against limits as the container ends up: the overlay's figure where it
                // gives one, else the base manifest's (an overlay raising a request above the
                // base's limit makes a pod the API server refuses).
                let base = containers(kind, object)
                    .into_iter()
                    .find(|(_, v)| v.get("name").and_then(Value::as_str) == Some(cname.as_str()))
                    .map(|(_, v)| v);
                let base_quantity = |field: &str, res: &str| {
                    base.and_then(|b| b.get("resources"))
                        .and_then(|r| r.get(field))
                        .and_then(|m| m.get(res))
                        .and_then(quantity_text)
                };
                let resources: std::collections::BTreeSet<&String> = c.requests.keys().chain(c.limits.keys()).collect();
                for res in resources {
                    let (req, req_from) = match c.requests.get(res) {
                        Some(q) => (Some(q.0.clone()), "the overlay's"),
                        None => (base_quantity("requests", res), "the manifest's"),
                    };
                    let (lim, lim_from) = match c.limits.get(res) {
                        Some(q) => (Some(q.0.clone()), "the overlay's"),
                        None => (base_quantity("limits", res), "the manifest's"),
                    };
                    if let (Some(req), Some(lim)) = (req, lim)
                        && quantity_value(&req) > quantity_value(&lim)
                    {
                        let what = if req_from == lim_from {
                            format!("{res} request {req} is above its limit {lim}")
                        } else {
                            format!("{res} request {req} ({req_from}) is above {lim_from} limit {lim}")
                        };
                        return Err(err(
                            format!("container {cname}: {what}"),
                            "a request must not exceed the limit: raise the limit or lower the request",
                        ));
                    }
                }
                if c.gpu == Some(0) {
                    return Err(err(
                        format!("container {cname}: gpu: 0"),
                        "leave gpu out for a container that needs no GPU",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A quantity as a manifest writes it: a string, or a YAML number.
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn is_resource_name(k: &str) -> bool {
    matches!(k, "cpu" | "memory" | "ephemeral-storage")
        || k.split_once('/')
            .is_some_and(|(domain, name)| domain.contains('.') && super::check::is_dns_label(name))
}
