//! Databases per service (`databases:` in stack.yaml, CloudNativePG) and seed 003's `alice`
//! stack, without a cluster:
//! - every `Cluster` kstrap can apply (alice sized for every profile on both distributions)
//!   reads as CloudNativePG's own CRD schema at the pinned version says
//!   (`tests/fixtures/upstream/cloudnative-pg/postgresql.cnpg.io_clusters.yaml`): no unknown
//!   field, every type right, every required field there;
//! - the isolation proof: each database's instances admit, on 5432, exactly the owning service's
//!   pods and the Cluster's own instances (and the operator from its namespace), evaluated over
//!   every pod template of the stack, every other database's instances, the operator, and
//!   look-alikes in other namespaces; the event bus admits exactly the four services;
//! - the owner's containers read `DATABASE_URL` from the operator's Secret, never a value;
//! - a missing image stops `kstrap up` with exit 2 before anything is written.

use std::collections::BTreeSet;
use std::path::Path;

use kstrap::distro::Distro;
use kstrap::stack::{self, Stack, databases};
use serde_json::{Value, json};

use crate::stacks::{Peer, allowed, pod_peer};

fn cluster_crd() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upstream/cloudnative-pg/postgresql.cnpg.io_clusters.yaml");
    let text = std::fs::read_to_string(&path).expect("CRD fixture");
    serde_saphyr::from_str(&text).expect("CRD YAML")
}

/// Why `value` does not fit the OpenAPI v3 `schema` (as the API server's structural schema
/// validation reads it: properties, required, type, items, additionalProperties,
/// x-kubernetes-preserve-unknown-fields, x-kubernetes-int-or-string), if it does not.
fn schema_fit(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if schema["x-kubernetes-int-or-string"] == json!(true) {
        return match value {
            Value::String(_) | Value::Number(_) => Ok(()),
            _ => Err(format!("{at}: expected an integer or a string, got {value}")),
        };
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match (ty, value) {
        ("", _) => true,
        ("object", Value::Object(_)) | ("array", Value::Array(_)) | ("string", Value::String(_)) => true,
        ("boolean", Value::Bool(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("number", Value::Number(_)) => true,
        _ => false,
    };
    if !ok {
        return Err(format!("{at}: expected {ty}, got {value}"));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    match value {
        Value::Object(map) => {
            for req in schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(req) {
                    return Err(format!("{at}: required field {req} is missing"));
                }
            }
            let props = schema["properties"].as_object();
            for (k, v) in map {
                // The API server checks a custom resource's metadata itself, not by the CRD.
                if at.is_empty() && k == "metadata" {
                    continue;
                }
                let sub = match (props.and_then(|p| p.get(k)), &schema["additionalProperties"]) {
                    (Some(s), _) => s,
                    (None, extra) if extra.is_object() => extra,
                    _ if schema["x-kubernetes-preserve-unknown-fields"] == json!(true) => continue,
                    _ => return Err(format!("{at}.{k}: unknown field")),
                };
                schema_fit(sub, v, &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                schema_fit(&schema["items"], v, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Why a `Cluster` does not read as CloudNativePG v1.30.0's CRD says, if it does not.
pub fn cluster_schema_problem(value: &Value) -> Result<(), String> {
    let crd = cluster_crd();
    let version = value["apiVersion"]
        .as_str()
        .and_then(|a| a.split('/').nth(1))
        .unwrap_or("");
    let schema = crd["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == version))
        .map(|v| v["schema"]["openAPIV3Schema"].clone())
        .ok_or_else(|| format!("the CRD serves no version {version:?}"))?;
    schema_fit(&schema, value, "")
}

/// Every variant of alice kstrap can apply: sized for each profile on each distribution.
fn alice_variants() -> Vec<(String, Stack)> {
    let s = stack::load("alice", None).expect("alice loads");
    let mut out = Vec::new();
    for p in ["laptop-8gb", "cpu-fallback", "rtx-5090"] {
        assert!(s.sized_profiles().contains(&p), "alice names no sizing for {p}");
        for d in [Distro::K3s, Distro::K0s] {
            out.push((format!("{p} on {d}"), s.sized_for(p, Some(d))));
        }
    }
    out
}

fn objects(s: &Stack) -> impl Iterator<Item = &stack::StackObject> {
    s.stages.iter().flat_map(|st| &st.objects)
}

#[test]
fn every_cluster_reads_as_the_upstream_crd_schema() {
    let mut checked = 0;
    for (variant, s) in alice_variants() {
        for o in objects(&s).filter(|o| o.reference.kind == "Cluster") {
            cluster_schema_problem(&o.value).unwrap_or_else(|e| panic!("alice ({variant}): {}: {e}", o.reference));
            checked += 1;
        }
    }
    assert_eq!(checked, 6 * 4);
    // The check finds a misspelt field, a wrong type and a field in the wrong place.
    let s = stack::load("alice", None).unwrap();
    let good = objects(&s)
        .find(|o| o.reference.kind == "Cluster")
        .unwrap()
        .value
        .clone();
    let mut typo = good.clone();
    typo["spec"]["storage"]["storageClas"] = json!("standard");
    assert!(
        cluster_schema_problem(&typo)
            .unwrap_err()
            .contains(".spec.storage.storageClas: unknown field")
    );
    let mut wrong = good.clone();
    wrong["spec"]["instances"] = json!("one");
    assert!(
        cluster_schema_problem(&wrong)
            .unwrap_err()
            .contains(".spec.instances: expected integer")
    );
    let mut misplaced = good;
    misplaced["spec"]["database"] = json!("assets");
    assert!(cluster_schema_problem(&misplaced).is_err());
}

#[test]
fn alice_sizes_its_databases_from_the_seed_and_smaller_on_the_laptop() {
    let s = stack::load("alice", None).unwrap();
    let size = |s: &Stack, name: &str| {
        objects(s)
            .find(|o| o.reference.kind == "Cluster" && o.reference.name == name)
            .map(|o| {
                o.value["spec"]["storage"]["size"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap()
    };
    let ws = s.sized_for("rtx-5090", Some(Distro::K3s));
    assert_eq!(size(&ws, "alice-assets-db"), "5Gi");
    assert_eq!(size(&ws, "alice-quality-db"), "1Gi");
    let laptop = s.sized_for("laptop-8gb", Some(Distro::K0s));
    assert_eq!(size(&laptop, "alice-assets-db"), "2Gi");
    assert_eq!(size(&laptop, "alice-quality-db"), "512Mi");
    let assets = objects(&ws).find(|o| o.reference.name == "alice-assets-db").unwrap();
    let spec = &assets.value["spec"];
    assert_eq!(assets.reference.namespace.as_deref(), Some("alice-assets"));
    assert_eq!(
        spec["bootstrap"]["initdb"],
        json!({"database": "assets", "owner": "asset_service"})
    );
    assert_eq!(spec["postgresql"]["parameters"]["shared_buffers"], "256MB");
    assert_eq!(spec["instances"], 1);
    // The cluster's default StorageClass: the seed's `standard` does not exist on k3s or k0s.
    assert!(spec["storage"].get("storageClass").is_none(), "{spec}");
    assert_eq!(spec["imageName"], databases::POSTGRES_IMAGE);
    // The databases are applied in their own stage, before the services that read them.
    let stage_of = |kind: &str, name: &str| {
        ws.stages
            .iter()
            .position(|st| {
                st.objects
                    .iter()
                    .any(|o| o.reference.kind == kind && o.reference.name == name)
            })
            .unwrap()
    };
    assert!(stage_of("Cluster", "alice-assets-db") < stage_of("Deployment", "alice-assets"));
    assert_eq!(
        s.namespaces,
        ["alice-assets", "alice-quality", "alice-metadata", "alice-events"]
    );
}

#[test]
fn each_owner_reads_its_credentials_from_the_operators_secret() {
    for (variant, s) in alice_variants() {
        assert_eq!(s.databases.len(), 4);
        for d in &s.databases {
            let owner = objects(&s)
                .find(|o| o.reference.kind == d.service_kind && o.reference.name == d.service_name)
                .unwrap();
            for c in owner.value["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
            {
                let first = &c["env"][0];
                assert_eq!(
                    *first,
                    json!({"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": format!("{}-app", d.name), "key": "uri"}}}),
                    "alice ({variant}): {}",
                    d.name
                );
                let n = c["env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["name"] == "DATABASE_URL")
                    .count();
                assert_eq!(n, 1);
            }
        }
        // No object of the stack carries a credential: the operator makes them in the cluster.
        assert!(objects(&s).all(|o| o.reference.kind != "Secret"), "alice ({variant})");
    }
}

/// Every pod of a sized stack, as (namespace, labels, what): each pod template's, and each
/// database's instances (CloudNativePG's labels).
fn stack_pods(s: &Stack) -> Vec<(String, Value, String)> {
    let mut out = Vec::new();
    for o in objects(s) {
        if let Some(labels) = o.value.pointer("/spec/template/metadata/labels") {
            out.push((
                o.reference.namespace.clone().unwrap_or_default(),
                labels.clone(),
                o.reference.to_string(),
            ));
        }
    }
    for d in &s.databases {
        for n in 1..=2 {
            out.push((
                d.namespace.clone(),
                databases::instance_pod_labels(&d.name, n),
                format!("{} instance {n}", d.name),
            ));
        }
    }
    out
}

/// The CloudNativePG operator's pod (chart labels) in its namespace.
fn operator() -> Peer {
    pod_peer(
        kstrap::addons::cnpg::NAMESPACE,
        json!({"app.kubernetes.io/name": "cloudnative-pg", "app.kubernetes.io/instance": "cnpg"}),
    )
}

#[test]
fn each_database_is_reachable_only_by_its_owner() {
    let mut proofs = 0;
    for (variant, s) in alice_variants() {
        let pods = stack_pods(&s);
        for d in &s.databases {
            let owner_labels = objects(&s)
                .find(|o| o.reference.kind == d.service_kind && o.reference.name == d.service_name)
                .and_then(|o| o.value.pointer("/spec/template/metadata/labels").cloned())
                .unwrap();
            let target = pod_peer(&d.namespace, databases::instance_pod_labels(&d.name, 1));
            // Every pod of the stack, and look-alikes: the owner's labels in other namespaces,
            // a pod of the same namespace with other labels, the operator.
            let mut peers: Vec<(Peer, String, bool)> = Vec::new();
            for (ns, labels, what) in &pods {
                let is_owner = *ns == d.namespace && labels == &owner_labels;
                let is_own_instance = *ns == d.namespace && labels["cnpg.io/cluster"] == json!(d.name);
                peers.push((pod_peer(ns, labels.clone()), what.clone(), is_owner || is_own_instance));
            }
            for ns in ["default", "alice-events", "cnpg-system", "kube-system"] {
                peers.push((
                    pod_peer(ns, owner_labels.clone()),
                    format!("the owner's labels in {ns}"),
                    false,
                ));
            }
            peers.push((
                pod_peer(&d.namespace, json!({"app.kubernetes.io/name": "intruder"})),
                "another pod of the namespace".into(),
                false,
            ));
            peers.push((operator(), "the operator".into(), true));
            peers.push((Peer::Outside, "outside the cluster".into(), false));
            for (peer, what, expected) in &peers {
                let got = allowed(&s, peer, &target, databases::POSTGRES_PORT as u64, "postgresql");
                assert_eq!(
                    got,
                    *expected,
                    "alice ({variant}): {what} -> {} on 5432: expected {}",
                    d.name,
                    if *expected { "admitted" } else { "refused" }
                );
                proofs += 1;
            }
            // The status port: the instances and the operator, never the owner.
            let owner = pod_peer(&d.namespace, owner_labels.clone());
            assert!(
                !allowed(&s, &owner, &target, 8000, "status"),
                "{variant}: owner on 8000"
            );
            assert!(
                allowed(&s, &operator(), &target, 8000, "status"),
                "{variant}: operator on 8000"
            );
            let sibling = pod_peer(&d.namespace, databases::instance_pod_labels(&d.name, 2));
            assert!(
                allowed(&s, &sibling, &target, 8000, "status"),
                "{variant}: replica on 8000"
            );
        }
    }
    assert!(proofs > 6 * 4 * 15, "{proofs}");
}

#[test]
fn the_event_bus_is_reachable_only_by_the_four_services() {
    for (variant, s) in alice_variants() {
        let redis = pod_peer(
            "alice-events",
            json!({"app.kubernetes.io/name": "alice-events-redis", "app.kubernetes.io/part-of": "alice"}),
        );
        let services: BTreeSet<&str> = ["alice-interface", "alice-assets", "alice-quality", "alice-metadata"].into();
        for (ns, labels, what) in stack_pods(&s) {
            let name = labels["app.kubernetes.io/name"].as_str().unwrap_or("");
            let expected = services.contains(name) && ns == name;
            assert_eq!(
                allowed(&s, &pod_peer(&ns, labels.clone()), &redis, 6379, "redis"),
                expected,
                "alice ({variant}): {what} -> Redis"
            );
        }
        assert!(!allowed(&s, &operator(), &redis, 6379, "redis"), "{variant}");
        assert!(!allowed(&s, &Peer::Outside, &redis, 6379, "redis"), "{variant}");
        assert!(
            !allowed(
                &s,
                &pod_peer("default", json!({"app.kubernetes.io/name": "alice-assets"})),
                &redis,
                6379,
                "redis"
            ),
            "{variant}: a look-alike elsewhere"
        );
    }
}

#[test]
fn a_missing_image_stops_up_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let facts = crate::support::fixture_path("rtx5090-96gb");
    let out = assert_cmd::Command::cargo_bin("kstrap")
        .unwrap()
        .args(["up", "--yes", "--stack", "alice", "--facts"])
        .arg(&facts)
        .env("KSTRAP_HOST_ROOT", root.path())
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env("ASSETS_IMAGE", "registry.example.com/alice/assets:1.0.0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for key in ["INTERFACE_IMAGE", "QUALITY_IMAGE", "METADATA_IMAGE"] {
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
    assert!(!stderr.contains("ASSETS_IMAGE:"), "given in the environment: {stderr}");
    let written: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
    assert!(written.is_empty(), "wrote {written:?}");
    let written: Vec<_> = std::fs::read_dir(home.path()).unwrap().collect();
    assert!(written.is_empty(), "wrote {written:?}");
}
