//! **Test double** of `helm install` / `helm upgrade` for the charts kstrap installs: what each
//! chart's templates render from the values kstrap gives, at the pinned chart version, applied to
//! the real API server (server-side apply, field manager `helm`, Helm's release labels and
//! annotations). Both Helm controller stand-ins use it.
//!
//! - `gpu-operator` v26.3.2 from `https://helm.ngc.nvidia.com/nvidia` (NVIDIA/gpu-operator
//!   `deployments/gpu-operator`, tag v26.3.2): the CRD `clusterpolicies.nvidia.com` (chart
//!   `crds/`, installed only when missing, as Helm does), ServiceAccount and Deployment
//!   `gpu-operator` (`templates/operator.yaml`: labels `app=gpu-operator`,
//!   `app.kubernetes.io/component=gpu-operator`), ClusterPolicy `cluster-policy`
//!   (`templates/clusterpolicy.yaml`, its spec from the values), and with `nfd.enabled` (default
//!   true) the node-feature-discovery 0.18.3 subchart's `gpu-operator-node-feature-discovery-
//!   {master,gc}` Deployments and `-worker` DaemonSet (kubernetes-sigs/node-feature-discovery
//!   `deployment/helm/node-feature-discovery/templates/{master,nfd-gc,worker}.yaml`, v0.18.3;
//!   the fullname is `<release>-node-feature-discovery`).
//! - `prometheus` 28.13.0 from `https://prometheus-community.github.io/helm-charts`
//!   (prometheus-community/helm-charts `charts/prometheus`, tag prometheus-28.13.0, appVersion
//!   v3.10.0): the server's ConfigMap, ServiceAccount, claim (`server.persistentVolume`), Service
//!   and Deployment `server.fullnameOverride` (else `<release>-server`), labels
//!   `app.kubernetes.io/{name=prometheus,instance,component=server}`, pod security context
//!   `server.securityContext` (default runAsUser 65534, runAsNonRoot). Its subcharts
//!   (alertmanager, kube-state-metrics, node-exporter, pushgateway) are not played: kstrap turns
//!   them off, and an enabled one is reported as not rendered.
//! - `grafana` 11.6.1 from `https://grafana-community.github.io/helm-charts`
//!   (grafana-community/helm-charts `charts/grafana`, tag grafana-11.6.1, appVersion 12.4.3):
//!   Deployment and Service `fullnameOverride` (else the release name), labels
//!   `app.kubernetes.io/{name=grafana,instance}`, pod security context `securityContext`
//!   (default runAsUser 472, runAsNonRoot), admin credentials from `admin.existingSecret`'s
//!   `userKey`/`passwordKey` (else the chart's own Secret), the container image from `image.*` and
//!   `global.imageRegistry` (`templates/_pod.tpl`; so a values override such as a HelmChartConfig
//!   can point it at an image the node stand-in cannot pull or never makes ready).
//! - `cloudnative-pg` 0.29.0 from `https://cloudnative-pg.github.io/charts` (cloudnative-pg/charts
//!   tag cloudnative-pg-v0.29.0, appVersion 1.30.0): see [`super::cnpg`].
//!
//! Anything else fails as Helm fails to find it: a repository URL that is not one of these
//! (`looks like "URL" is not a valid chart repository or cannot be reached`) or a chart or
//! version the repository does not have (`chart "C" version "V" not found in URL repository`,
//! helm v3 `pkg/repo/chartrepo.go`).

use serde_json::{Value, json};

use super::{resource, s};

/// A chart the stand-in can install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub repo: &'static str,
    pub chart: &'static str,
    pub version: &'static str,
    pub app_version: &'static str,
}

pub const GPU_OPERATOR: Known = Known {
    repo: "https://helm.ngc.nvidia.com/nvidia",
    chart: "gpu-operator",
    version: "v26.3.2",
    // NVIDIA's release packaging sets appVersion to the release tag (the chart in the repository
    // says `main-latest` until then).
    app_version: "v26.3.2",
};
pub const PROMETHEUS: Known = Known {
    repo: "https://prometheus-community.github.io/helm-charts",
    chart: "prometheus",
    version: "28.13.0",
    app_version: "v3.10.0",
};
pub const GRAFANA: Known = Known {
    repo: "https://grafana-community.github.io/helm-charts",
    chart: "grafana",
    version: "11.6.1",
    app_version: "12.4.3",
};
pub const CLOUDNATIVE_PG: Known = Known {
    repo: "https://cloudnative-pg.github.io/charts",
    chart: "cloudnative-pg",
    version: "0.29.0",
    app_version: "1.30.0",
};
const KNOWN: [Known; 4] = [GPU_OPERATOR, PROMETHEUS, GRAFANA, CLOUDNATIVE_PG];

/// Helm's chart lookup: the repository must answer, and have that chart at that version.
pub fn lookup(repo: &str, chart: &str, version: &str) -> Result<Known, String> {
    let repo = repo.trim_end_matches('/');
    if !KNOWN.iter().any(|k| k.repo == repo) {
        return Err(format!(
            "looks like \"{repo}\" is not a valid chart repository or cannot be reached"
        ));
    }
    KNOWN
        .iter()
        .find(|k| k.repo == repo && k.chart == chart && k.version == version)
        .copied()
        .ok_or_else(|| format!("chart \"{chart}\" version \"{version}\" not found in {repo} repository"))
}

/// A workload `helm --wait` waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

/// Deep merge of `over` into `base` (Helm's values coalescing: maps merge, the rest replaces).
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn helm_meta(name: &str, ns: Option<&str>, release: &str, release_ns: &str, labels: Value) -> Value {
    let mut l = json!({"app.kubernetes.io/managed-by": "Helm"});
    merge(&mut l, &labels);
    let mut m = json!({"name": name, "labels": l,
        "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": release_ns}});
    if let Some(ns) = ns {
        m["namespace"] = json!(ns);
    }
    m
}

/// Renders and applies the chart; returns the workloads `--wait` waits for.
pub async fn install(
    client: &kube::Client,
    known: Known,
    release: &str,
    namespace: &str,
    values: &Value,
) -> Result<Vec<Workload>, String> {
    let objects = render(known, release, namespace, values);
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    super::super::apply_json(client, &ns, "helm")
        .await
        .map_err(|e| format!("create namespace {namespace}: {e}"))?;
    if known == GPU_OPERATOR {
        // Helm installs a chart's crds/ first and only when missing.
        let crds: kube::Api<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        > = kube::Api::all(client.clone());
        if !matches!(crds.get_opt("clusterpolicies.nvidia.com").await, Ok(Some(_))) {
            super::install_crds(client).await?;
        }
    }
    if known == CLOUDNATIVE_PG && super::cnpg::creates_crds(values) {
        // The chart's CRDs are templates (`templates/crds/crds.yaml`): applied on every install.
        super::cnpg::install_crd(client).await?;
    }
    let mut workloads = Vec::new();
    for obj in &objects {
        super::super::apply_json(client, obj, "helm")
            .await
            .map_err(|e| format!("{} {}: {e}", s(obj, "/kind"), s(obj, "/metadata/name")))?;
        let kind = s(obj, "/kind");
        if kind == "Deployment" || kind == "DaemonSet" {
            workloads.push(Workload {
                kind: if kind == "Deployment" {
                    "Deployment"
                } else {
                    "DaemonSet"
                },
                namespace: namespace.to_string(),
                name: s(obj, "/metadata/name").to_string(),
            });
        }
    }
    Ok(workloads)
}

/// Whether every workload is ready, as `helm --wait` decides (kube `ReadyChecker`): a
/// Deployment with all replicas updated and available, a DaemonSet with every scheduled pod
/// updated and ready.
pub async fn ready(client: &kube::Client, workloads: &[Workload]) -> bool {
    for w in workloads {
        let plural = if w.kind == "Deployment" {
            "deployments"
        } else {
            "daemonsets"
        };
        let api = super::dynamic_api(client, &resource("apps/v1", w.kind, plural), Some(&w.namespace));
        let Ok(Some(obj)) = api.get_opt(&w.name).await else {
            return false;
        };
        let o = super::json_of(&obj);
        let st = &o["status"];
        let n = |p: &str| st[p].as_i64().unwrap_or(0);
        let ok = if w.kind == "Deployment" {
            let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
            n("updatedReplicas") >= want && n("availableReplicas") >= want
        } else {
            n("desiredNumberScheduled") > 0
                && n("numberReady") >= n("desiredNumberScheduled")
                && n("updatedNumberScheduled") >= n("desiredNumberScheduled")
        };
        if !ok {
            return false;
        }
    }
    true
}

fn render(known: Known, release: &str, ns: &str, user: &Value) -> Vec<Value> {
    if known == GPU_OPERATOR {
        super::gpu_chart::render_chart(release, ns, user)
    } else if known == PROMETHEUS {
        prometheus(release, ns, user)
    } else if known == CLOUDNATIVE_PG {
        super::cnpg::render_chart(release, ns, user)
    } else {
        grafana(release, ns, user)
    }
}

/// `charts/prometheus/values.yaml` defaults (prometheus-28.13.0) for the fields rendered here.
fn prometheus_defaults() -> Value {
    json!({
        "server": {"name": "server", "fullnameOverride": "",
            "persistentVolume": {"enabled": true, "size": "8Gi", "accessModes": ["ReadWriteOnce"]},
            "securityContext": {"runAsUser": 65534, "runAsNonRoot": true, "runAsGroup": 65534, "fsGroup": 65534},
            "resources": {}, "service": {"servicePort": 80}},
        "configmapReload": {"prometheus": {"resources": {}}},
    })
}

fn prometheus(release: &str, ns: &str, user: &Value) -> Vec<Value> {
    let mut v = prometheus_defaults();
    merge(&mut v, user);
    let component = s(&v, "/server/name").to_string();
    let name = match s(&v, "/server/fullnameOverride") {
        "" if release.contains("prometheus") => format!("{release}-{component}"),
        "" => format!("{release}-prometheus-{component}"),
        n => n.to_string(),
    };
    let select = json!({"app.kubernetes.io/component": component, "app.kubernetes.io/name": "prometheus",
        "app.kubernetes.io/instance": release});
    let mut labels = select.clone();
    merge(
        &mut labels,
        &json!({"app.kubernetes.io/version": PROMETHEUS.app_version,
        "helm.sh/chart": format!("prometheus-{}", PROMETHEUS.version), "app.kubernetes.io/part-of": "prometheus"}),
    );
    let meta = |n: &str| helm_meta(n, Some(ns), release, ns, labels.clone());
    let mut out = vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(&name)}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&name),
            "data": {"prometheus.yml": "global: {}\n", "alerting_rules.yml": "{}\n"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(&name),
            "spec": {"selector": select, "ports": [{"name": "http", "port": v["server"]["service"]["servicePort"], "targetPort": 9090, "protocol": "TCP"}]}}),
    ];
    let pv = v["server"]["persistentVolume"]["enabled"].as_bool().unwrap_or(true);
    let storage = if pv {
        out.push(
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(&name),
            "spec": {"accessModes": v["server"]["persistentVolume"]["accessModes"],
                "resources": {"requests": {"storage": v["server"]["persistentVolume"]["size"]}}}}),
        );
        json!({"name": "storage-volume", "persistentVolumeClaim": {"claimName": name}})
    } else {
        json!({"name": "storage-volume", "emptyDir": {}})
    };
    out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(&name),
        "spec": {"replicas": 1, "selector": {"matchLabels": select}, "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": labels},
                "spec": {"serviceAccountName": name, "securityContext": v["server"]["securityContext"],
                    "containers": [
                        {"name": format!("prometheus-{component}-configmap-reload"), "image": "quay.io/prometheus-operator/prometheus-config-reloader:v0.89.0",
                         "resources": v["configmapReload"]["prometheus"]["resources"],
                         "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/config", "readOnly": true}]},
                        {"name": format!("prometheus-{component}"), "image": format!("quay.io/prometheus/prometheus:{}", PROMETHEUS.app_version),
                         "resources": v["server"]["resources"],
                         "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/config"}, {"name": "storage-volume", "mountPath": "/data"}]}],
                    "volumes": [{"name": "config-volume", "configMap": {"name": name}}, storage]}}}}));
    out
}

/// `charts/grafana/values.yaml` defaults (grafana-11.6.1) for the fields rendered here.
fn grafana_defaults() -> Value {
    json!({
        "fullnameOverride": "",
        "admin": {"existingSecret": "", "userKey": "admin-user", "passwordKey": "admin-password"},
        "adminUser": "admin",
        "service": {"type": "ClusterIP", "port": 80, "targetPort": 3000},
        "securityContext": {"runAsNonRoot": true, "runAsUser": 472, "runAsGroup": 472, "fsGroup": 472},
        "resources": {},
        "persistence": {"enabled": false, "size": "10Gi"},
        "global": {"imageRegistry": ""},
        "image": {"registry": "docker.io", "repository": "grafana/grafana", "tag": "", "sha": ""},
    })
}

/// Grafana's container image as `templates/_pod.tpl` (grafana-11.6.1) writes it:
/// `{global.imageRegistry | default image.registry}/{image.repository}:{image.tag | default
/// appVersion}`, with `@sha256:{image.sha}` when a digest is given.
fn grafana_image(v: &Value) -> String {
    let registry = match s(v, "/global/imageRegistry") {
        "" => s(v, "/image/registry"),
        r => r,
    };
    let tag = match s(v, "/image/tag") {
        "" => GRAFANA.app_version,
        t => t,
    };
    let mut image = format!("{registry}/{}:{tag}", s(v, "/image/repository"));
    if !s(v, "/image/sha").is_empty() {
        image.push_str(&format!("@sha256:{}", s(v, "/image/sha")));
    }
    image
}

fn grafana(release: &str, ns: &str, user: &Value) -> Vec<Value> {
    let mut v = grafana_defaults();
    merge(&mut v, user);
    let name = match s(&v, "/fullnameOverride") {
        "" if release.contains("grafana") => release.to_string(),
        "" => format!("{release}-grafana"),
        n => n.to_string(),
    };
    let select = json!({"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": release});
    let mut labels = select.clone();
    merge(
        &mut labels,
        &json!({"app.kubernetes.io/version": GRAFANA.app_version,
        "helm.sh/chart": format!("grafana-{}", GRAFANA.version)}),
    );
    let meta = |n: &str| helm_meta(n, Some(ns), release, ns, labels.clone());
    let mut out = vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(&name)}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&name), "data": {"grafana.ini": "[server]\n"}}),
    ];
    let secret = match s(&v, "/admin/existingSecret") {
        "" => {
            out.push(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta(&name), "type": "Opaque",
                "stringData": {"admin-user": s(&v, "/adminUser"), "admin-password": "chart-generated"}}),
            );
            name.clone()
        }
        existing => existing.to_string(),
    };
    let mut port = json!({"name": "service", "port": v["service"]["port"], "targetPort": v["service"]["targetPort"], "protocol": "TCP"});
    if s(&v, "/service/type") == "NodePort" && !v["service"]["nodePort"].is_null() {
        port["nodePort"] = v["service"]["nodePort"].clone();
    }
    out.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(&name),
        "spec": {"type": v["service"]["type"], "selector": select, "ports": [port]}}));
    out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(&name),
        "spec": {"replicas": 1, "selector": {"matchLabels": select},
            "template": {"metadata": {"labels": labels},
                "spec": {"serviceAccountName": name, "securityContext": v["securityContext"],
                    "containers": [{"name": "grafana", "image": grafana_image(&v),
                        "env": [
                            {"name": "GF_SECURITY_ADMIN_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": s(&v, "/admin/userKey")}}},
                            {"name": "GF_SECURITY_ADMIN_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": s(&v, "/admin/passwordKey")}}}],
                        "ports": [{"name": "grafana", "containerPort": 3000, "protocol": "TCP"}],
                        "resources": v["resources"],
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/grafana/grafana.ini", "subPath": "grafana.ini"}]}],
                    "volumes": [{"name": "config", "configMap": {"name": name}}]}}}}));
    out
}
