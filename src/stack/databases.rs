//! `databases:` in `stack.yaml`: the PostgreSQL databases a stack's services own, each run by the
//! CloudNativePG operator as one `postgresql.cnpg.io/v1` `Cluster` and reachable only by the
//! service that owns it.
//!
//! For each declaration the loader adds to the named stage, as if they were in its folder:
//! - the `Cluster` in the owner's namespace: `instances`, `bootstrap.initdb` (database and owner
//!   role), `postgresql.parameters`, `storage.size` on the cluster's default StorageClass
//!   (`storageClass` left out: k3s and k0s have `local-path`, not the seed's `standard`), the
//!   instance resources, and `imageName` pinned to the operator's own default at the pinned
//!   version;
//! - `<name>-isolation`, a NetworkPolicy on the instances (`cnpg.io/cluster: <name>`) admitting
//!   only the owner's pods on 5432, the Cluster's own instances (replication on 5432, the
//!   instance manager's status port 8000) and the operator's pods from its namespace on 8000 and
//!   5432 (CloudNativePG v1.30.0 `docs/src/networking.md`, `docs/src/security.md` "Exposed
//!   Ports", `docs/src/samples/networkpolicy-example.yaml`); their egress goes only to the
//!   other instances and to the Kubernetes API (the instance manager is a Kubernetes client);
//! - `<name>-client`, a NetworkPolicy on the owner's pods letting them reach the instances on
//!   5432 (every namespace of a stack denies egress by default);
//!
//! and it wires the credentials into the owner: every container of its pod template gets the
//! variable `env` (default `DATABASE_URL`) from the operator-generated Secret `<name>-app`, key
//! `uri` (CloudNativePG v1.30.0 `pkg/specs/secrets.go` `CreateSecret`: `postgresql://user:pass@
//! <name>-rw.<namespace>:5432/<db>`; `docs/src/applications.md` "Secrets"). kstrap never reads
//! or prints that Secret. Per-profile sizes use the ordinary overlays on `Cluster/<name>`
//! (`storage`, `replicas` = instances).

use super::check::{containers, is_dns_label};
use super::error::{Place, StackError};
use super::overlay::Quantity;
use super::{StackObject, Stage};
use crate::plan::step::ObjectRef;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// CloudNativePG's API version and kind.
pub const API_VERSION: &str = "postgresql.cnpg.io/v1";
pub const KIND: &str = "Cluster";
pub const GROUP: &str = "postgresql.cnpg.io";
/// The label CloudNativePG puts on every instance pod (and PVC) of a Cluster
/// (`pkg/utils/labels_annotations.go`, `ClusterLabelName`, v1.30.0).
pub const CLUSTER_LABEL: &str = "cnpg.io/cluster";
/// Suffix of the Secret the operator generates for the database owner, and its key with the
/// libpq connection URI (`docs/src/applications.md`, `pkg/specs/secrets.go`, v1.30.0).
pub const APP_SECRET_SUFFIX: &str = "-app";
pub const URI_KEY: &str = "uri";
/// PostgreSQL's port and the instance manager's status port (`docs/src/security.md`, "Exposed
/// Ports", v1.30.0).
pub const POSTGRES_PORT: u16 = 5432;
pub const STATUS_PORT: u16 = 8000;
/// The image the operator v1.30.0 runs when a Cluster names none (`pkg/versions/versions.go`,
/// `DefaultImageName`); written out so that it is pinned and visible in plans.
pub const POSTGRES_IMAGE: &str = "ghcr.io/cloudnative-pg/postgresql:18.4-system-trixie";
/// The variable the owner gets by default.
pub const DEFAULT_ENV: &str = "DATABASE_URL";

/// One entry of `databases:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseFile {
    /// The Cluster's name (its Services are `<name>-rw`, `-ro`, `-r`).
    pub name: String,
    /// The owner's namespace; the stack's when left out.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The stage folder the Cluster and its policies are applied in (before the owner's, so
    /// that the credentials Secret exists when the owner starts).
    pub stage: String,
    /// The owning service: `Deployment/name` or `StatefulSet/name`, in the same namespace.
    pub service: String,
    /// The database and its owner role (`bootstrap.initdb.database` / `.owner`).
    pub database: String,
    pub owner: String,
    #[serde(default = "one")]
    pub instances: u32,
    /// Volume size of each instance.
    pub size: Quantity,
    /// `postgresql.parameters`.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Requests and limits of each instance (`cpu`, `memory`).
    pub requests: BTreeMap<String, Quantity>,
    pub limits: BTreeMap<String, Quantity>,
    /// The variable the owner's containers get the connection URI in.
    #[serde(default = "default_env")]
    pub env: String,
}

fn one() -> u32 {
    1
}

fn default_env() -> String {
    DEFAULT_ENV.to_string()
}

/// A database of a stack, as the rest of kstrap sees it (no secret material: the credentials
/// are the operator's, in `<name>-app`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub name: String,
    pub namespace: String,
    /// `Deployment/name` or `StatefulSet/name`.
    pub service_kind: String,
    pub service_name: String,
    pub env: String,
}

impl Database {
    /// The operator-generated Secret the owner reads (`<name>-app`).
    pub fn app_secret(&self) -> String {
        format!("{}{APP_SECRET_SUFFIX}", self.name)
    }

    /// The Cluster object's reference.
    pub fn reference(&self) -> ObjectRef {
        ObjectRef {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            namespace: Some(self.namespace.clone()),
            name: self.name.clone(),
        }
    }
}

/// Checks the declarations and adds each database's objects to its stage and its credentials to
/// its owner. `namespaces` are those the stack may use (its own first).
pub(crate) fn expand(
    path: &str,
    decls: Vec<serde_saphyr::Spanned<DatabaseFile>>,
    namespaces: &[String],
    stages: &mut [Stage],
) -> Result<Vec<Database>, StackError> {
    let mut out: Vec<Database> = Vec::new();
    for decl in decls {
        let line = decl.referenced.line() as usize;
        let d = decl.value;
        let err = |message: String, hint: &str| StackError::StackFile {
            path: path.to_string(),
            line,
            message,
            hint: hint.to_string(),
        };
        // A Cluster's name becomes pod names `<name>-<n>` and Services `<name>-rw`: a DNS label
        // with room for the suffixes.
        if !is_dns_label(&d.name) || d.name.len() > 50 {
            return Err(err(
                format!("databases: name {:?} is not a valid Cluster name", d.name),
                "use lowercase letters, digits and '-', at most 50 characters (the operator adds -rw, -1, ...)",
            ));
        }
        let namespace = d.namespace.clone().unwrap_or_else(|| namespaces[0].clone());
        if !namespaces.contains(&namespace) {
            return Err(err(
                format!(
                    "databases: {}: namespace {namespace:?} is not one of the stack's",
                    d.name
                ),
                "use the stack's namespace or one listed under namespaces: in stack.yaml",
            ));
        }
        if out.iter().any(|o| o.name == d.name && o.namespace == namespace) {
            return Err(err(
                format!("databases: {} is declared twice in namespace {namespace}", d.name),
                "give each database a name of its own",
            ));
        }
        for (what, v) in [("database", &d.database), ("owner", &d.owner)] {
            if !is_pg_identifier(v) {
                return Err(err(
                    format!("databases: {}: {what} {v:?} is not a plain PostgreSQL name", d.name),
                    "use lowercase letters, digits and '_', starting with a letter, at most 63 characters",
                ));
            }
        }
        if d.owner == "postgres" || d.owner.starts_with("pg_") {
            return Err(err(
                format!("databases: {}: owner {:?} is reserved", d.name, d.owner),
                "name a role of the service's own; the superuser stays with the operator",
            ));
        }
        if !(1..=9).contains(&d.instances) {
            return Err(err(
                format!("databases: {}: instances {} is out of range", d.name, d.instances),
                "give 1 (a primary) up to 9 (a primary and replicas)",
            ));
        }
        if !super::format::is_env_name(&d.env) {
            return Err(err(
                format!(
                    "databases: {}: env {:?} is not an environment variable name",
                    d.name, d.env
                ),
                "use UPPER_CASE letters, digits and '_', e.g. DATABASE_URL",
            ));
        }
        for (field, map) in [("requests", &d.requests), ("limits", &d.limits)] {
            if map.keys().any(|k| k != "cpu" && k != "memory")
                || !map.contains_key("cpu")
                || !map.contains_key("memory")
            {
                return Err(err(
                    format!("databases: {}: {field} must name cpu and memory (only)", d.name),
                    "e.g. requests: {cpu: 100m, memory: 256Mi}, limits: {cpu: 500m, memory: 512Mi}",
                ));
            }
        }
        for k in ["cpu", "memory"] {
            let (r, l) = (&d.requests[k].0, &d.limits[k].0);
            if super::overlay::quantity_value(r) > super::overlay::quantity_value(l) {
                return Err(err(
                    format!("databases: {}: {k} request {r} exceeds its limit {l}", d.name),
                    "a request may not exceed its limit",
                ));
            }
        }
        let Some((service_kind, service_name)) = d
            .service
            .split_once('/')
            .filter(|(k, n)| matches!(*k, "Deployment" | "StatefulSet") && !n.is_empty())
        else {
            return Err(err(
                format!(
                    "databases: {}: service {:?} is not Deployment/name or StatefulSet/name",
                    d.name, d.service
                ),
                "name the workload that owns the database, e.g. service: Deployment/alice-assets",
            ));
        };
        let Some(stage_index) = stages.iter().position(|s| s.dir == d.stage) else {
            return Err(err(
                format!(
                    "databases: {}: stage {:?} is not one of the stack's stages",
                    d.name, d.stage
                ),
                "name a stage folder listed under stages:, one before (or the same as) the service's",
            ));
        };
        // The owner: exactly one object of that kind and name in that namespace.
        let owner_at = stages.iter().enumerate().find_map(|(si, s)| {
            s.objects
                .iter()
                .position(|o| {
                    o.reference.kind == service_kind
                        && o.reference.name == service_name
                        && o.reference.namespace.as_deref() == Some(namespace.as_str())
                })
                .map(|oi| (si, oi))
        });
        let Some((owner_stage, owner_index)) = owner_at else {
            return Err(err(
                format!(
                    "databases: {}: no {service_kind} {service_name:?} in namespace {namespace}",
                    d.name
                ),
                "the owning service must be a workload of the stack in the database's namespace",
            ));
        };
        if owner_stage < stage_index {
            return Err(err(
                format!(
                    "databases: {}: stage {} comes after the stage of its service ({})",
                    d.name, d.stage, stages[owner_stage].dir
                ),
                "apply the database in the service's stage or an earlier one, so its credentials exist when the service starts",
            ));
        }
        let owner = &mut stages[owner_stage].objects[owner_index];
        let Some(owner_labels) = owner.value.pointer("/spec/template/metadata/labels").cloned() else {
            return Err(err(
                format!(
                    "databases: {}: {service_kind}/{service_name} has no pod template labels",
                    d.name
                ),
                "give the pod template labels (the isolation policy admits the service's pods by them)",
            ));
        };
        // The pods the policies admit are those the workload selects (its own selector).
        let owner_selector = owner
            .value
            .pointer("/spec/selector/matchLabels")
            .cloned()
            .unwrap_or(owner_labels);
        wire_credentials(owner, &d.name, &d.env).map_err(|m| {
            err(
                format!("databases: {}: {m}", d.name),
                "remove that variable from the container: kstrap sets it from the database's credentials",
            )
        })?;

        let db = Database {
            name: d.name.clone(),
            namespace: namespace.clone(),
            service_kind: service_kind.to_string(),
            service_name: service_name.to_string(),
            env: d.env.clone(),
        };
        let source = format!("{path} (databases: {})", d.name);
        let place = |value: Value| {
            let r = ObjectRef {
                api_version: value["apiVersion"].as_str().unwrap_or_default().to_string(),
                kind: value["kind"].as_str().unwrap_or_default().to_string(),
                namespace: Some(namespace.clone()),
                name: value["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            };
            StackObject {
                reference: r,
                source: source.clone(),
                document: 0,
                line,
                value,
            }
        };
        let objects = vec![
            place(cluster_object(&d, &namespace)),
            place(isolation_policy(&d.name, &namespace, &owner_selector)),
            place(client_policy(&d.name, &namespace, &owner_selector)),
        ];
        for o in &objects {
            let clash = stages.iter().flat_map(|s| &s.objects).find(|x| {
                x.reference.kind == o.reference.kind
                    && x.reference.name == o.reference.name
                    && x.reference.namespace == o.reference.namespace
            });
            if let Some(x) = clash {
                return Err(StackError::Duplicate {
                    object: o.reference.to_string(),
                    first: Place {
                        path: x.source.clone(),
                        document: x.document,
                        line: x.line,
                    },
                    second: Place {
                        path: path.to_string(),
                        document: 0,
                        line,
                    },
                });
            }
        }
        // Namespaced objects go last in a stage, after its Namespaces and cluster-scoped ones.
        stages[stage_index].objects.extend(objects);
        out.push(db);
    }
    Ok(out)
}

/// A PostgreSQL identifier that needs no quoting.
fn is_pg_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Puts `env` ← Secret `<name>-app` key `uri` first in every container of the owner (first, so
/// that later variables may use `$(env)`).
fn wire_credentials(owner: &mut StackObject, name: &str, env: &str) -> Result<(), String> {
    let pointers: Vec<String> = containers(&owner.reference.kind, &owner.value)
        .into_iter()
        .filter(|(p, _)| !p.contains("ephemeralContainers"))
        .map(|(p, _)| p)
        .collect();
    for p in pointers {
        let Some(Value::Object(c)) = owner.value.pointer_mut(&p) else {
            continue;
        };
        let cname = c.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let list = c.entry("env").or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        let Some(list) = list.as_array_mut() else { continue };
        if list.iter().any(|e| e.get("name").and_then(Value::as_str) == Some(env)) {
            return Err(format!("container {cname:?} already sets {env}"));
        }
        list.insert(
            0,
            json!({"name": env, "valueFrom": {"secretKeyRef": {"name": format!("{name}{APP_SECRET_SUFFIX}"), "key": URI_KEY}}}),
        );
    }
    Ok(())
}

/// The `Cluster` (CloudNativePG v1.30.0, `api/v1/cluster_types.go`).
fn cluster_object(d: &DatabaseFile, namespace: &str) -> Value {
    let q = |m: &BTreeMap<String, Quantity>| -> Value {
        Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v.0))).collect())
    };
    let mut spec = json!({
        "instances": d.instances,
        "imageName": POSTGRES_IMAGE,
        "bootstrap": {"initdb": {"database": d.database, "owner": d.owner}},
        "storage": {"size": d.size.0},
        "resources": {"requests": q(&d.requests), "limits": q(&d.limits)},
    });
    if !d.parameters.is_empty() {
        spec["postgresql"] = json!({"parameters": d.parameters});
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": d.name, "namespace": namespace},
        "spec": spec,
    })
}

fn tcp(ports: &[u16]) -> Value {
    Value::Array(ports.iter().map(|p| json!({"protocol": "TCP", "port": p})).collect())
}

/// Who may reach the database's instances, and where they may go.
pub fn isolation_policy(name: &str, namespace: &str, owner_selector: &Value) -> Value {
    let own = json!({"podSelector": {"matchLabels": {CLUSTER_LABEL: name}}});
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": format!("{name}-isolation"), "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": {CLUSTER_LABEL: name}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                // The owning service, and only it, on PostgreSQL's port.
                {"from": [{"podSelector": {"matchLabels": owner_selector}}], "ports": tcp(&[POSTGRES_PORT])},
                // The Cluster's own instances: streaming replication and the status port.
                {"from": [own.clone()], "ports": tcp(&[POSTGRES_PORT, STATUS_PORT])},
                // The operator, from its namespace (docs/src/samples/networkpolicy-example.yaml).
                {"from": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": crate::addons::cnpg::NAMESPACE}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": crate::addons::cnpg::OPERATOR_POD_NAME}},
                }], "ports": tcp(&[STATUS_PORT, POSTGRES_PORT])},
            ],
            "egress": [
                {"to": [own], "ports": tcp(&[POSTGRES_PORT, STATUS_PORT])},
                // The instance manager talks to the Kubernetes API. Its address is the node's
                // (k3s and k0s run the API server on the host, 6443; the `kubernetes` Service's
                // 443 is translated to it), which no pod selector names.
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": tcp(&[443, 6443])},
            ],
        },
    })
}

/// The owner's way out to its database (its namespace denies egress by default).
pub fn client_policy(name: &str, namespace: &str, owner_selector: &Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": format!("{name}-client"), "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": owner_selector},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"podSelector": {"matchLabels": {CLUSTER_LABEL: name}}}], "ports": tcp(&[POSTGRES_PORT])},
            ],
        },
    })
}

/// The labels CloudNativePG puts on instance pod `n` of Cluster `name` (v1.30.0
/// `pkg/specs/pods.go` `CreatePodTemplate`/`createPostgresContainers` via
/// `pkg/utils/labels_annotations.go`): the cluster, the instance name and the pod role.
pub fn instance_pod_labels(name: &str, n: u32) -> Value {
    json!({
        CLUSTER_LABEL: name,
        "cnpg.io/instanceName": format!("{name}-{n}"),
        "cnpg.io/podRole": "instance",
    })
}
