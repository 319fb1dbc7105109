//! Per-profile sizing and per-distribution changes: structured overlays from `stack.yaml`'s
//! `profiles:` and `distros:` applied to the parsed objects, never text templating.
//!
//! A stack's YAML carries one set of figures; a profile's overlay changes only what sizing needs
//! (replicas, container images for CPU/GPU variants, requests and limits, environment values,
//! storage sizes, GPU shares) on named objects, or leaves an object out; a distribution's overlay
//! does the same for what differs between clusters (k0s has no ingress controller, so an Ingress
//! is left out there). Every overlay is checked when the stack is loaded, against the objects it
//! names, so a typo in `stack.yaml` stops kstrap with the file and line rather than silently
//! leaving a service unsized.

use super::Stack;
use super::check::containers;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub(crate) use super::overlay_check::{check, sections};
use crate::distro::Distro;
use crate::gpu::{GPU_RESOURCE, RUNTIME_CLASS as GPU_RUNTIME_CLASS};

/// A resource quantity as Kubernetes writes it: `500m`, `2`, `1.5Gi`. YAML numbers are accepted
/// and kept as their decimal text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(n) => n.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Text(s) => s,
        };
        if quantity_value(&text).is_none() {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is not a Kubernetes quantity (write e.g. 500m, 2, 512Mi, 10Gi)"
            )));
        }
        Ok(Quantity(text))
    }
}

/// A quantity's value in base units (cores, bytes), for comparisons. None when malformed.
pub fn quantity_value(q: &str) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(s, f)| q.strip_suffix(s).map(|n| (n, *f)))
        .unwrap_or((q, 1.0));
    let digits_ok = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|b| *b == b'.').count() <= 1
        && !number.starts_with('.')
        && !number.ends_with('.');
    if !digits_ok {
        return None;
    }
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// One object's overlay for one profile, as written in `stack.yaml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// `spec.replicas` of a Deployment, StatefulSet or ReplicaSet.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// The requested size of a PersistentVolumeClaim (`spec.resources.requests.storage`).
    #[serde(default)]
    pub storage: Option<Quantity>,
    /// Leave the object out for this profile (a service the machine cannot carry).
    #[serde(default)]
    pub omit: bool,
    /// The user id the pod runs as, when an image variant's user differs from the manifest's
    /// (Kokoro-FastAPI's GPU image runs as uid 1001, its CPU image as 1000): sets the pod's
    /// `securityContext.runAsUser`, `runAsGroup` and `fsGroup`.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Changes per container, by container name.
    #[serde(default)]
    pub containers: BTreeMap<String, ContainerOverlay>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ContainerOverlay {
    /// Another pinned image (a CPU or CUDA variant of the same service).
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
    #[serde(default)]
    pub limits: BTreeMap<String, Quantity>,
    /// Environment values to set (added, or replacing a plain `value` of the same name).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// GPU shares (`nvidia.com/gpu` limit) for this container; the pod also gets
    /// `runtimeClassName: nvidia`. Under time-slicing one share is one slice of a GPU.
    #[serde(default)]
    pub gpu: Option<u32>,
}

/// What a checked overlay is attached to in the stack: the object key `Kind/name` and where in
/// `stack.yaml` it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedOverlay {
    pub overlay: Overlay,
    /// 1-based line in `stack.yaml`.
    pub line: usize,
}

impl Stack {
    /// Profiles this stack has sizing for.
    pub fn sized_profiles(&self) -> Vec<&str> {
        self.profiles.keys().map(String::as_str).collect()
    }

    /// What the stack's workloads request in total: (CPU cores, memory bytes, GPU shares), each
    /// container's requests (its limits where it names no request, as Kubernetes defaults them)
    /// times the object's replicas. Jobs count too: they run while the rest starts.
    pub fn total_requests(&self) -> (f64, f64, u32) {
        let (mut cpu, mut mem, mut gpu) = (0.0, 0.0, 0u32);
        for o in self.stages.iter().flat_map(|s| &s.objects) {
            let kind = o.reference.kind.as_str();
            let replicas = match kind {
                "Deployment" | "StatefulSet" | "ReplicaSet" => {
                    o.value.pointer("/spec/replicas").and_then(Value::as_u64).unwrap_or(1) as f64
                }
                _ => 1.0,
            };
            // A database: each instance is a pod with the Cluster's resources.
            if o.reference.api_version == super::databases::API_VERSION && kind == super::databases::KIND {
                let instances = o.value.pointer("/spec/instances").and_then(Value::as_u64).unwrap_or(1) as f64;
                let get = |res: &str| {
                    o.value
                        .pointer(&format!("/spec/resources/requests/{res}"))
                        .and_then(Value::as_str)
                        .and_then(quantity_value)
                        .unwrap_or(0.0)
                };
                cpu += get("cpu") * instances;
                mem += get("memory") * instances;
                continue;
            }
            for (ptr, c) in containers(kind, &o.value) {
                if ptr.contains("initContainers") || ptr.contains("ephemeralContainers") {
                    continue;
                }
                let get = |res: &str| {
                    let q = c
                        .pointer(&format!("/resources/requests/{}", res.replace('/', "~1")))
                        .or_else(|| c.pointer(&format!("/resources/limits/{}", res.replace('/', "~1"))));
                    match q {
                        Some(Value::String(s)) => quantity_value(s).unwrap_or(0.0),
                        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
                        _ => 0.0,
                    }
                };
                cpu += get("cpu") * replicas;
                mem += get("memory") * replicas;
                gpu += (get(GPU_RESOURCE) * replicas) as u32;
            }
        }
        (cpu, mem, gpu)
    }

    /// The stack sized for `profile`: its overlays applied to copies of the objects, omitted
    /// objects removed. A profile the stack has no sizing for gets the objects as written (the
    /// caller says so to the user). No distribution's overlays: see [`Stack::sized_for`].
    pub fn sized(&self, profile: &str) -> Stack {
        let mut out = self.clone();
        if let Some(overlays) = self.profiles.get(profile) {
            out.overlay(overlays);
        }
        out
    }

    /// The stack as it is applied on a cluster of `distro` for `profile`: the profile's
    /// overlays, then the distribution's (a later one wins where both set a field). `None`: the
    /// distribution is not known, only the profile's overlays apply.
    pub fn sized_for(&self, profile: &str, distro: Option<Distro>) -> Stack {
        let mut out = self.sized(profile);
        if let Some(overlays) = distro.and_then(|d| self.distros.get(&d)) {
            out.overlay(overlays);
        }
        out
    }

    /// Applies checked overlays to this stack's objects, removing the omitted ones. Overlays
    /// for objects the stack does not have change nothing.
    pub fn overlay(&mut self, overlays: &BTreeMap<String, PlacedOverlay>) {
        for stage in &mut self.stages {
            stage.objects.retain(|o| {
                let key = format!("{}/{}", o.reference.kind, o.reference.name);
                !overlays.get(&key).is_some_and(|p| p.overlay.omit)
            });
            for object in &mut stage.objects {
                let key = format!("{}/{}", object.reference.kind, object.reference.name);
                if let Some(placed) = overlays.get(&key) {
                    apply(&object.reference.kind, &mut object.value, &placed.overlay);
                }
            }
        }
    }
}

/// Applies one checked overlay to an object.
fn apply(kind: &str, object: &mut Value, overlay: &Overlay) {
    let database = object.get("apiVersion").and_then(Value::as_str) == Some(super::databases::API_VERSION)
        && kind == super::databases::KIND;
    if let Some(n) = overlay.replicas {
        let field = if database { "instances" } else { "replicas" };
        set(object, &["spec", field], json!(n));
    }
    if let Some(q) = &overlay.storage {
        if database {
            set(object, &["spec", "storage", "size"], json!(q.0));
        } else {
            set(object, &["spec", "resources", "requests", "storage"], json!(q.0));
        }
    }
    let spec_path: &[&str] = match kind {
        "Pod" => &["spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    };
    if let Some(uid) = overlay.uid {
        for field in ["runAsUser", "runAsGroup", "fsGroup"] {
            let mut path = spec_path.to_vec();
            path.extend(["securityContext", field]);
            set(object, &path, json!(uid));
        }
    }
    let mut wants_gpu = false;
    for (name, c) in &overlay.containers {
        let Some(container) = container_mut(object, spec_path, name) else {
            continue; // checked at load time
        };
        if let Some(image) = &c.image {
            container.insert("image".into(), json!(image));
        }
        for (field, map) in [("requests", &c.requests), ("limits", &c.limits)] {
            for (res, q) in map {
                set_in(container, &["resources", field, res], json!(q.0));
            }
        }
        if let Some(n) = c.gpu {
            set_in(container, &["resources", "limits", GPU_RESOURCE], json!(n.to_string()));
            wants_gpu = true;
        }
        if !c.env.is_empty() {
            let env = container.entry("env").or_insert_with(|| json!([]));
            if !env.is_array() {
                *env = json!([]);
            }
            if let Some(list) = env.as_array_mut() {
                for (k, v) in &c.env {
                    match list
                        .iter_mut()
                        .find(|e| e.get("name").and_then(Value::as_str) == Some(k))
                    {
                        Some(e) => *e = json!({ "name": k, "value": v }),
                        None => list.push(json!({ "name": k, "value": v })),
                    }
                }
            }
        }
    }
    if wants_gpu {
        set(
            object,
            &[spec_path, &["runtimeClassName"]].concat(),
            json!(GPU_RUNTIME_CLASS),
        );
    }
}

fn container_mut<'a>(
    object: &'a mut Value,
    spec_path: &[&str],
    name: &str,
) -> Option<&'a mut serde_json::Map<String, Value>> {
    let mut spec = object;
    for p in spec_path {
        spec = spec.get_mut(*p)?;
    }
    let spec = spec.as_object_mut()?;
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(items)) = spec.get(list)
            && items
                .iter()
                .any(|c| c.get("name").and_then(Value::as_str) == Some(name))
        {
            return spec
                .get_mut(list)?
                .as_array_mut()?
                .iter_mut()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name))?
                .as_object_mut();
        }
    }
    None
}

/// Sets `path` in `value`, creating mappings on the way.
fn set(value: &mut Value, path: &[&str], new: Value) {
    if let Some(map) = value.as_object_mut() {
        set_in(map, path, new);
    }
}

fn set_in(map: &mut serde_json::Map<String, Value>, path: &[&str], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = map;
    for p in parents {
        let entry = cur.entry(p.to_string()).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        let Some(next) = entry.as_object_mut() else {
            return;
        };
        cur = next;
    }
    cur.insert(last.to_string(), new);
}
