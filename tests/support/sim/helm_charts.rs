//! Helm-controller simulation of the simulated API server (test double) for kstrap's monitoring
//! add-on: what k3s's helm-controller (a `HelmChart`) or k0s's Helm extension (a `Chart`) does once
//! the `prometheus` or `grafana` chart object appears in `kube-system`, acted out with the values
//! the object carries.
//!
//! - `prometheus`: a claim `<server.fullnameOverride>` (on the default StorageClass, sized from
//!   `server.persistentVolume.size`) and a Deployment of that name mounting it, with the server's
//!   resources from `server.resources`;
//! - `grafana`: a Deployment `<fullnameOverride>` and a NodePort Service of that name on
//!   `service.nodePort`; the Deployment's pod reads the admin user and password from the Secret
//!   `admin.existingSecret` (the chart's `secretKeyRef`s), so a test can see what it references.
//!
//! Both go into the chart's target namespace (HelmChart `spec.targetNamespace`, Chart
//! `spec.namespace`); the Deployments then turn ready through the controller simulation, or stay
//! stuck under a [`Fault::PodWaiting`](super::Fault::PodWaiting) naming them. A chart object
//! whose values change updates the Deployment's resources (a new rollout), as `helm upgrade` would.
//!
//! Not simulated: the charts' other objects (ConfigMaps, RBAC, ServiceAccounts), Helm releases and
//! their Secrets, uninstalling when the chart object is deleted, chart download failures.

use serde_json::{Value, json};

use super::store::{Actor, ObjectKey, State, s};

pub const PROMETHEUS: &str = "prometheus";
pub const GRAFANA: &str = "grafana";

/// The chart's values, parsed from the chart object (k3s `valuesContent`, k0s `values`).
fn values(chart: &Value) -> Value {
    let text = chart
        .pointer("/spec/valuesContent")
        .or_else(|| chart.pointer("/spec/values"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    serde_saphyr::from_str::<Value>(text).unwrap_or(Value::Null)
}

fn target_namespace(chart: &Value) -> String {
    let ns = s(chart, &["spec", "targetNamespace"]);
    if ns.is_empty() {
        s(chart, &["spec", "namespace"]).to_string()
    } else {
        ns.to_string()
    }
}

/// A chart object (k3s HelmChart or k0s Chart) was reconciled.
pub fn on_chart(st: &mut State, key: &ObjectKey) {
    if key.namespace.as_deref() != Some("kube-system") || !(key.name == PROMETHEUS || key.name == GRAFANA) {
        return;
    }
    let Some(chart) = st.objects.get(key).cloned() else {
        return;
    };
    let release = key.name.clone();
    let ns = target_namespace(&chart);
    let values = values(&chart);
    ensure_namespace(st, &ns);
    let labels = json!({"app.kubernetes.io/name": release, "app.kubernetes.io/instance": release,
        "app.kubernetes.io/managed-by": "Helm"});
    if release == PROMETHEUS {
        let name = match values.pointer("/server/fullnameOverride").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => format!("{release}-server"),
        };
        let size = values
            .pointer("/server/persistentVolume/size")
            .and_then(Value::as_str)
            .unwrap_or("8Gi")
            .to_string();
        let claim_key = ObjectKey::new("v1", "PersistentVolumeClaim", Some(&ns), &name);
        if !st.objects.contains_key(&claim_key) {
            let mut claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}});
            super::controllers::defaults_on_create(st, &mut claim);
            st.create_object(claim, Actor::Controller);
        }
        let container = json!({"name": "prometheus-server", "image": "quay.io/prometheus/prometheus:v3.10.0",
            "resources": values.pointer("/server/resources").cloned().unwrap_or(json!({})),
            "volumeMounts": [{"name": "storage-volume", "mountPath": "/data"}]});
        let volumes = json!([{"name": "storage-volume", "persistentVolumeClaim": {"claimName": name}}]);
        ensure_deployment(st, &ns, &name, &labels, container, volumes);
    } else {
        let name = match values.get("fullnameOverride").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => release.clone(),
        };
        let secret = values
            .pointer("/admin/existingSecret")
            .and_then(Value::as_str)
            .unwrap_or(&name)
            .to_string();
        let key_of = |field: &str, default: &str| {
            values
                .pointer(&format!("/admin/{field}"))
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_string()
        };
        let env = json!([
            {"name": "GF_SECURITY_ADMIN_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": key_of("userKey", "admin-user")}}},
            {"name": "GF_SECURITY_ADMIN_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": key_of("passwordKey", "admin-password")}}},
        ]);
        let container = json!({"name": "grafana", "image": "docker.io/grafana/grafana:12.4.3", "env": env,
            "resources": values.get("resources").cloned().unwrap_or(json!({}))});
        ensure_deployment(st, &ns, &name, &labels, container, json!([]));
        let svc_key = ObjectKey::new("v1", "Service", Some(&ns), &name);
        if !st.objects.contains_key(&svc_key) {
            let kind = values
                .pointer("/service/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let mut port = json!({"name": "service", "port": values.pointer("/service/port").cloned().unwrap_or(json!(80)),
                "targetPort": 3000, "protocol": "TCP"});
            if let Some(np) = values.pointer("/service/nodePort").filter(|_| kind == "NodePort") {
                port["nodePort"] = np.clone();
            }
            let mut svc = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"type": kind, "selector": {"app.kubernetes.io/name": release, "app.kubernetes.io/instance": release},
                    "ports": [port]}});
            super::controllers::defaults_on_create(st, &mut svc);
            st.create_object(svc, Actor::Controller);
        }
    }
}

fn ensure_namespace(st: &mut State, ns: &str) {
    if !st.namespace_exists(ns) {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns,
            "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        st.create_object(obj, Actor::Controller);
    }
}

/// Creates the Deployment, or updates its pod template when the chart's values changed it.
fn ensure_deployment(st: &mut State, ns: &str, name: &str, labels: &Value, container: Value, volumes: Value) {
    let key = ObjectKey::new("apps/v1", "Deployment", Some(ns), name);
    let template = json!({"metadata": {"labels": labels},
        "spec": {"securityContext": {"runAsNonRoot": true}, "containers": [container], "volumes": volumes}});
    match st.objects.get(&key).cloned() {
        Some(mut d) => {
            if d["spec"]["template"] == template {
                return;
            }
            d["spec"]["template"] = template;
            let generation = d.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
            d["metadata"]["generation"] = json!(generation + 1);
            st.store(d, Actor::Controller);
        }
        None => {
            let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template}});
            st.create_object(d, Actor::Controller);
        }
    }
    st.pending.insert(key, std::time::Instant::now());
}
