//! Discovery for the simulated API server (test double): the built-in resource table (what a k3s
//! node serves, k3s's `helm.cattle.io` included) plus resources registered by Established CRDs,
//! rendered as `APIVersions`, `APIGroupList`, `APIResourceList` and the aggregated
//! `apidiscovery.k8s.io/v2` `APIGroupDiscoveryList` (kube's `Discovery::run_aggregated`).

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    /// Has a `/status` subresource (status is ignored on writes to the main resource).
    pub status: bool,
    /// The registry sets and bumps `metadata.generation`.
    pub generation: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Registered by this CRD (name), if a custom resource.
    pub crd: Option<String>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` / `pods`: how the apiserver names the resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

#[allow(clippy::too_many_arguments)]
fn rt(
    gv: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    status: bool,
    generation: bool,
    short: &[&str],
) -> ResourceType {
    let (group, version) = gv.split_once('/').unwrap_or(("", gv));
    ResourceType {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
        singular: kind.to_lowercase(),
        kind: kind.to_string(),
        namespaced,
        status,
        generation,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        crd: None,
    }
}

pub fn builtin() -> Vec<ResourceType> {
    vec![
        rt("v1", "namespaces", "Namespace", false, true, false, &["ns"]),
        rt("v1", "nodes", "Node", false, true, false, &["no"]),
        rt("v1", "pods", "Pod", true, true, true, &["po"]),
        rt("v1", "services", "Service", true, true, false, &["svc"]),
        rt("v1", "configmaps", "ConfigMap", true, false, false, &["cm"]),
        rt("v1", "secrets", "Secret", true, false, false, &[]),
        rt(
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            true,
            false,
            &["pvc"],
        ),
        rt(
            "v1",
            "persistentvolumes",
            "PersistentVolume",
            false,
            true,
            false,
            &["pv"],
        ),
        rt("v1", "serviceaccounts", "ServiceAccount", true, false, false, &["sa"]),
        rt("v1", "events", "Event", true, false, false, &["ev"]),
        rt("v1", "endpoints", "Endpoints", true, false, false, &["ep"]),
        rt("apps/v1", "deployments", "Deployment", true, true, true, &["deploy"]),
        rt("apps/v1", "statefulsets", "StatefulSet", true, true, true, &["sts"]),
        rt("apps/v1", "daemonsets", "DaemonSet", true, true, true, &["ds"]),
        rt("apps/v1", "replicasets", "ReplicaSet", true, true, true, &["rs"]),
        rt(
            "apps/v1",
            "controllerrevisions",
            "ControllerRevision",
            true,
            false,
            false,
            &[],
        ),
        rt("batch/v1", "jobs", "Job", true, true, true, &[]),
        rt("batch/v1", "cronjobs", "CronJob", true, true, true, &["cj"]),
        rt(
            "networking.k8s.io/v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            false,
            true,
            &["netpol"],
        ),
        rt(
            "networking.k8s.io/v1",
            "ingresses",
            "Ingress",
            true,
            true,
            true,
            &["ing"],
        ),
        rt(
            "networking.k8s.io/v1",
            "ingressclasses",
            "IngressClass",
            false,
            false,
            true,
            &[],
        ),
        rt(
            "storage.k8s.io/v1",
            "storageclasses",
            "StorageClass",
            false,
            false,
            false,
            &["sc"],
        ),
        rt("rbac.authorization.k8s.io/v1", "roles", "Role", true, false, false, &[]),
        rt(
            "rbac.authorization.k8s.io/v1",
            "rolebindings",
            "RoleBinding",
            true,
            false,
            false,
            &[],
        ),
        rt(
            "rbac.authorization.k8s.io/v1",
            "clusterroles",
            "ClusterRole",
            false,
            false,
            false,
            &[],
        ),
        rt(
            "rbac.authorization.k8s.io/v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            false,
            false,
            &[],
        ),
        rt(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            true,
            true,
            &["crd", "crds"],
        ),
        rt(
            "node.k8s.io/v1",
            "runtimeclasses",
            "RuntimeClass",
            false,
            false,
            false,
            &[],
        ),
        rt(
            "policy/v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            true,
            true,
            &["pdb"],
        ),
        rt(
            "scheduling.k8s.io/v1",
            "priorityclasses",
            "PriorityClass",
            false,
            false,
            false,
            &["pc"],
        ),
        rt("coordination.k8s.io/v1", "leases", "Lease", true, false, false, &[]),
        rt("helm.cattle.io/v1", "helmcharts", "HelmChart", true, true, true, &[]),
        rt("helm.k0sproject.io/v1beta1", "charts", "Chart", true, true, true, &[]),
        rt(
            "helm.cattle.io/v1",
            "helmchartconfigs",
            "HelmChartConfig",
            true,
            false,
            true,
            &[],
        ),
    ]
}

/// Resource types registered by a CRD object (one per served version).
pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("").to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or("").to_string();
    let kind = names["kind"].as_str().unwrap_or("").to_string();
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    spec["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["served"].as_bool().unwrap_or(true))
                .map(|v| ResourceType {
                    group: group.clone(),
                    version: v["name"].as_str().unwrap_or("v1").to_string(),
                    plural: plural.clone(),
                    singular: singular.clone(),
                    kind: kind.clone(),
                    namespaced,
                    status: v.pointer("/subresources/status").is_some(),
                    generation: true,
                    short_names: list(&names["shortNames"]),
                    categories: list(&names["categories"]),
                    crd: Some(name.clone()),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn resource_json(r: &ResourceType) -> Value {
    let mut v = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
        "kind": r.kind, "verbs": VERBS});
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    v
}

/// `APIResourceList` for one group/version, or None if not served.
pub fn resource_list(resources: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let mine: Vec<&ResourceType> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in &mine {
        list.push(resource_json(r));
        if r.status {
            list.push(
                json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}))
}

/// Groups in first-seen order with their versions.
fn groups(resources: &[ResourceType]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in resources.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => {
                if !vs.contains(&r.version) {
                    vs.push(r.version.clone());
                }
            }
            None => out.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    for (_, vs) in &mut out {
        // preferred first: highest "stable" version (v2 > v1 > v1beta1)
        vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    }
    out
}

fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.trim_start_matches('v');
    let (major, tail) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()));
    let major: u32 = major.parse().unwrap_or(0);
    let (stability, minor) = if let Some(b) = tail.strip_prefix("beta") {
        (1, b.parse().unwrap_or(0))
    } else if let Some(a) = tail.strip_prefix("alpha") {
        (0, a.parse().unwrap_or(0))
    } else {
        (2, 0)
    };
    (stability, major, minor)
}

pub fn api_group_list(resources: &[ResourceType]) -> Value {
    let groups: Vec<Value> = groups(resources)
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0].clone()})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(resources: &[ResourceType], group: &str) -> Option<Value> {
    let (g, vs) = groups(resources).into_iter().find(|(g, _)| g == group)?;
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": versions, "preferredVersion": versions[0].clone()}),
    )
}

pub fn api_versions(addr: &std::net::SocketAddr) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}]})
}

fn group_discovery(resources: &[ResourceType], group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let res: Vec<Value> = resources
                .iter()
                .filter(|r| r.group == group && &r.version == v)
                .map(|r| {
                    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
                    let mut d = json!({"resource": r.plural, "responseKind": gvk,
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular, "verbs": VERBS});
                    if !r.short_names.is_empty() {
                        d["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        d["categories"] = json!(r.categories);
                    }
                    if r.status {
                        d["subresources"] = json!([{"subresource": "status", "responseKind": gvk, "verbs": ["get", "patch", "update"]}]);
                    }
                    d
                })
                .collect();
            json!({"version": v, "resources": res, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// Aggregated discovery (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`).
pub fn aggregated(resources: &[ResourceType], core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![group_discovery(resources, "", &["v1".to_string()])]
    } else {
        groups(resources)
            .iter()
            .map(|(g, vs)| group_discovery(resources, g, vs))
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

pub const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Does the client accept aggregated discovery v2 (the apiserver picks it when listed)?
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p = part.replace(' ', "");
        p.contains("g=apidiscovery.k8s.io") && p.contains("v=v2;") && p.contains("as=APIGroupDiscoveryList")
            || p.ends_with("v=v2") && p.contains("g=apidiscovery.k8s.io")
    })
}
