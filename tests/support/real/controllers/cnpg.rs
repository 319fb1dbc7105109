//! **Test double** of the CloudNativePG operator v1.30.0 (cloudnative-pg/cloudnative-pg, tag
//! v1.30.0) and of what `helm install` of its chart `cloudnative-pg` 0.29.0 makes
//! (cloudnative-pg/charts, tag cloudnative-pg-v0.29.0).
//!
//! The chart ([`render_chart`]): ServiceAccount and Deployment `fullnameOverride` (else
//! `<release>` when it contains the chart's name, else `<release>-cloudnative-pg`; selector
//! labels `app.kubernetes.io/name: cloudnative-pg`, `app.kubernetes.io/instance: <release>`,
//! `templates/_helpers.tpl`), image `ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0`, the
//! webhook Service `cnpg-webhook-service`; with `crds.create` (default true) the CRD
//! `clusters.postgresql.cnpg.io` (`templates/crds/crds.yaml`, the fixture in
//! `tests/fixtures/upstream/cloudnative-pg/`). Not rendered: RBAC, the ConfigMaps, and the
//! webhook configurations (nothing here could answer them; the real operator's webhooks only
//! default and validate what the CRD schema already checks for kstrap's Clusters).
//!
//! Once an operator pod of that Deployment runs, its Cluster reconciler, for each
//! `postgresql.cnpg.io/v1 Cluster`:
//! - the Secret `<name>-app` (`pkg/specs/secrets.go` `CreateSecret`: type `kubernetes.io/basic-auth`,
//!   keys username, user, password, dbname, host `<name>-rw`, port, pgpass, uri, jdbc-uri,
//!   fqdn-uri, fqdn-jdbc-uri), only when missing (an existing one is never regenerated);
//! - Services `<name>-rw`, `-ro`, `-r` (`pkg/specs/services.go`);
//! - per instance, one after the other as the operator does (the next once the previous is
//!   ready), PVC `<name>-<n>` on the default StorageClass with `storage.size`, and Pod
//!   `<name>-<n>` with the labels of `pkg/specs/pods.go` (`cnpg.io/cluster`,
//!   `cnpg.io/instanceName`, `cnpg.io/podRole: instance`, `cnpg.io/instanceRole` and `role`:
//!   primary for the first), `imageName`, the Cluster's resources, uid/gid 26 and the restricted
//!   security context the operator sets; all owned by the Cluster;
//! - status as the operator writes it: `instances`, `readyInstances`, `instanceNames`,
//!   `instancesStatus` (`ListStatusPods`: ready → healthy, active → replicating, else failed),
//!   `currentPrimary`, `writeService`/`readService`, `phase` ("Setting up primary" until the
//!   first instance is ready, "Creating a new replica" while others come, then "Cluster in
//!   healthy state") and the `Ready` condition (`SetClusterReadyCondition`: True/ClusterIsReady
//!   only in the healthy phase, else False/ClusterIsNotReady).
//!
//! Not played: the initdb and join Jobs, PostgreSQL itself, failover, backups, poolers.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::charts::{CLOUDNATIVE_PG, merge};
use super::{json_of, notify_on, resource, s};

const MANAGER: &str = "cloudnative-pg";
pub const CLUSTER_CRD_FIXTURE: &str = "cloudnative-pg/postgresql.cnpg.io_clusters.yaml";
const CRD_NAME: &str = "clusters.postgresql.cnpg.io";

fn cluster_resource() -> kube::discovery::ApiResource {
    resource("postgresql.cnpg.io/v1", "Cluster", "clusters")
}

/// `values.yaml` defaults (cloudnative-pg-v0.29.0) for the fields rendered here.
fn defaults() -> Value {
    json!({
        "fullnameOverride": "", "nameOverride": "", "crds": {"create": true}, "resources": {},
        "podSecurityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containerSecurityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
            "runAsUser": 10001, "runAsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"},
            "capabilities": {"drop": ["ALL"]}},
        "service": {"name": "cnpg-webhook-service", "port": 443},
    })
}

/// Whether the values install the CRDs (`crds.create`).
pub fn creates_crds(user: &Value) -> bool {
    let mut v = defaults();
    merge(&mut v, user);
    v["crds"]["create"].as_bool().unwrap_or(true)
}

pub fn render_chart(release: &str, ns: &str, user: &Value) -> Vec<Value> {
    let mut v = defaults();
    merge(&mut v, user);
    let chart_name = match s(&v, "/nameOverride") {
        "" => CLOUDNATIVE_PG.chart,
        n => n,
    }
    .to_string();
    let name = match s(&v, "/fullnameOverride") {
        "" if release.contains(&chart_name) => release.to_string(),
        "" => format!("{release}-{chart_name}"),
        n => n.to_string(),
    };
    let select = json!({"app.kubernetes.io/name": chart_name, "app.kubernetes.io/instance": release});
    let mut labels = select.clone();
    merge(
        &mut labels,
        &json!({"app.kubernetes.io/version": CLOUDNATIVE_PG.app_version,
            "helm.sh/chart": format!("cloudnative-pg-{}", CLOUDNATIVE_PG.version), "app.kubernetes.io/managed-by": "Helm"}),
    );
    let meta = |n: &str| {
        json!({"name": n, "namespace": ns, "labels": labels,
            "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": ns}})
    };
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(&name)}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(s(&v, "/service/name")),
            "spec": {"selector": select, "ports": [{"name": "webhook-server", "port": v["service"]["port"], "targetPort": "webhook-server"}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(&name),
            "spec": {"replicas": 1, "selector": {"matchLabels": select},
                "template": {"metadata": {"labels": select},
                    "spec": {"serviceAccountName": name, "securityContext": v["podSecurityContext"],
                        "containers": [{"name": "manager",
                            "image": format!("ghcr.io/cloudnative-pg/cloudnative-pg:{}", CLOUDNATIVE_PG.app_version),
                            "ports": [{"name": "metrics", "containerPort": 8080}, {"name": "webhook-server", "containerPort": 9443}],
                            "resources": v["resources"], "securityContext": v["containerSecurityContext"]}]}}}}),
    ]
}

/// Applies the chart's Cluster CRD (upstream's own) and waits until it is established.
pub async fn install_crd(client: &kube::Client) -> Result<(), String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upstream")
        .join(CLUSTER_CRD_FIXTURE);
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let crd: Value = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
    super::super::apply_json(client, &crd, "helm")
        .await
        .map_err(|e| e.to_string())?;
    let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !crd_established(&api).await {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("CRD {CRD_NAME} not established within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn crd_established(
    api: &Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
) -> bool {
    api.get_opt(CRD_NAME).await.ok().flatten().is_some_and(|c| {
        c.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    })
}

/// The operator's reconciler; does nothing until the CRD exists and an operator pod runs.
pub async fn run(client: kube::Client) {
    let notify = Arc::new(Notify::new());
    tokio::spawn(notify_on(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels("cnpg.io/cluster"),
        notify.clone(),
    ));
    tokio::spawn(notify_on(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels("app.kubernetes.io/name=cloudnative-pg"),
        notify.clone(),
    ));
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let mut watching = false;
    loop {
        if !watching && crd_established(&crds).await {
            tokio::spawn(notify_on(
                super::dynamic_api(&client, &cluster_resource(), None),
                watcher::Config::default(),
                notify.clone(),
            ));
            watching = true;
        }
        if watching && operator_runs(&client).await {
            let api = super::dynamic_api(&client, &cluster_resource(), None);
            if let Ok(list) = api.list(&Default::default()).await {
                for c in list.items {
                    let c = json_of(&c);
                    if let Err(e) = reconcile(&client, &c).await {
                        eprintln!("cloudnative-pg stand-in: {}: {e}", s(&c, "/metadata/name"));
                    }
                }
            }
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn operator_runs(client: &kube::Client) -> bool {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let Ok(list) = deployments
        .list(&ListParams::default().labels("app.kubernetes.io/name=cloudnative-pg"))
        .await
    else {
        return false;
    };
    list.items
        .iter()
        .any(|d| d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) >= 1)
}

fn owner(c: &Value) -> Value {
    json!([{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "name": s(c, "/metadata/name"),
        "uid": s(c, "/metadata/uid"), "controller": true, "blockOwnerDeletion": true}])
}

/// A password nobody can guess from the test (the operator uses crypto/rand; this double hashes
/// the Cluster's uid with the time).
fn random_password(uid: &str) -> String {
    use sha2::Digest;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = sha2::Sha256::digest(format!("{uid}{nanos}").as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

async fn reconcile(client: &kube::Client, c: &Value) -> Result<(), String> {
    if c.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(());
    }
    let name = s(c, "/metadata/name").to_string();
    let ns = s(c, "/metadata/namespace").to_string();
    let apply = |obj: Value| async move {
        super::super::apply_json(client, &obj, MANAGER)
            .await
            .map_err(|e| e.to_string())
    };
    let meta =
        |n: &str, labels: Value| json!({"name": n, "namespace": ns, "labels": labels, "ownerReferences": owner(c)});

    // The application user's Secret, made once.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let secret_name = format!("{name}-app");
    if secrets
        .get_opt(&secret_name)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        let user = s(c, "/spec/bootstrap/initdb/owner").to_string();
        let db = s(c, "/spec/bootstrap/initdb/database").to_string();
        let (user, db) = (
            if user.is_empty() { "app".into() } else { user },
            if db.is_empty() { "app".into() } else { db },
        );
        let pw = random_password(s(c, "/metadata/uid"));
        let host = format!("{name}-rw");
        let uri = |h: &str| format!("postgresql://{user}:{pw}@{h}:5432/{db}");
        let jdbc = |h: &str| format!("jdbc:postgresql://{h}:5432/{db}?password={pw}&user={user}");
        let ns_host = format!("{host}.{ns}");
        let fqdn = format!("{host}.{ns}.svc.cluster.local");
        apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": meta(&secret_name, json!({"cnpg.io/userType": "app", "cnpg.io/reload": "true",
                "app.kubernetes.io/managed-by": "cloudnative-pg"})),
            "type": "kubernetes.io/basic-auth",
            "stringData": {"username": user, "user": user, "password": pw, "dbname": db, "host": host,
                "port": "5432", "pgpass": format!("{host}:5432:{db}:{user}:{pw}\n"),
                "uri": uri(&ns_host), "jdbc-uri": jdbc(&ns_host), "fqdn-uri": uri(&fqdn), "fqdn-jdbc-uri": jdbc(&fqdn)}}))
        .await?;
    }
    for (suffix, selector) in [
        (
            "rw",
            json!({"cnpg.io/cluster": name, "cnpg.io/instanceRole": "primary"}),
        ),
        (
            "ro",
            json!({"cnpg.io/cluster": name, "cnpg.io/instanceRole": "replica"}),
        ),
        ("r", json!({"cnpg.io/cluster": name, "cnpg.io/podRole": "instance"})),
    ] {
        apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(&format!("{name}-{suffix}"), json!({"cnpg.io/cluster": name})),
            "spec": {"selector": selector, "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432, "protocol": "TCP"}]}}))
        .await?;
    }

    let want = c.pointer("/spec/instances").and_then(Value::as_u64).unwrap_or(1);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut names = Vec::new();
    let (mut healthy, mut replicating, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for n in 1..=want {
        let pod_name = format!("{name}-{n}");
        let live = pods
            .get_opt(&pod_name)
            .await
            .map_err(|e| e.to_string())?
            .map(|p| json_of(&p));
        let live = match live {
            Some(p) => p,
            None => {
                // One instance at a time: the next only once every earlier one is ready.
                if !replicating.is_empty() || !failed.is_empty() || healthy.len() as u64 != n - 1 {
                    break;
                }
                let role = if n == 1 { "primary" } else { "replica" };
                let labels = json!({"cnpg.io/cluster": name, "cnpg.io/instanceName": pod_name,
                    "cnpg.io/podRole": "instance", "cnpg.io/instanceRole": role, "role": role});
                apply(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": meta(&pod_name, json!({"cnpg.io/cluster": name, "cnpg.io/instanceName": pod_name, "cnpg.io/pvcRole": "PG_DATA"})),
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": s(c, "/spec/storage/size")}}}}))
                .await?;
                apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta(&pod_name, labels),
                    "spec": {"securityContext": {"runAsNonRoot": true, "runAsUser": 26, "runAsGroup": 26, "fsGroup": 26,
                            "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{"name": "postgres", "image": s(c, "/spec/imageName"),
                            "ports": [{"name": "postgresql", "containerPort": 5432}, {"name": "metrics", "containerPort": 9187},
                                {"name": "status", "containerPort": 8000}],
                            "resources": c.pointer("/spec/resources").cloned().unwrap_or(json!({})),
                            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
                            "volumeMounts": [{"name": "pgdata", "mountPath": "/var/lib/postgresql/data"}]}],
                        "volumes": [{"name": "pgdata", "persistentVolumeClaim": {"claimName": pod_name}}]}}))
                .await?;
                names.push(pod_name.clone());
                replicating.push(pod_name);
                continue;
            }
        };
        names.push(pod_name.clone());
        let phase = s(&live, "/status/phase");
        if super::pod_running(&live) {
            healthy.push(pod_name);
        } else if phase != "Succeeded" && phase != "Failed" {
            replicating.push(pod_name);
        } else {
            failed.push(pod_name);
        }
    }
    let ready = healthy.len() as u64;
    let phase = if ready == want {
        "Cluster in healthy state"
    } else if !healthy.iter().any(|p| p == &format!("{name}-1")) {
        "Setting up primary"
    } else {
        "Creating a new replica"
    };
    let condition = if ready == want {
        json!({"type": "Ready", "status": "True", "reason": "ClusterIsReady", "message": "Cluster is Ready"})
    } else {
        json!({"type": "Ready", "status": "False", "reason": "ClusterIsNotReady", "message": "Cluster Is Not Ready"})
    };
    let mut instances_status = serde_json::Map::new();
    for (k, v) in [
        ("healthy", &healthy),
        ("replicating", &replicating),
        ("failed", &failed),
    ] {
        if !v.is_empty() {
            instances_status.insert(k.into(), json!(v));
        }
    }
    let old = c.get("status").cloned().unwrap_or(json!({}));
    let transition = old["conditions"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|x| x["type"] == "Ready" && x["status"] == condition["status"])
        })
        .and_then(|x| x["lastTransitionTime"].as_str().map(str::to_string))
        .unwrap_or_else(super::now);
    let mut condition = condition;
    condition["lastTransitionTime"] = json!(transition);
    let status = json!({"instances": names.len(), "readyInstances": ready, "instanceNames": names,
        "instancesStatus": instances_status, "currentPrimary": format!("{name}-1"),
        "writeService": format!("{name}-rw"), "readService": format!("{name}-r"),
        "phase": phase, "conditions": [condition], "latestGeneratedNode": names.len()});
    if old != status {
        let api = super::dynamic_api(client, &cluster_resource(), Some(&ns));
        super::replace_status(&api, &name, status)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
