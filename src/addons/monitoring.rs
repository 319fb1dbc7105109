//! The `monitoring` add-on (`kstrap up --with monitoring`): Prometheus and Grafana, installed
//! through the distribution's own Helm controller like the GPU operator (no helm binary).
//!
//! Two pinned charts, each a chart object built by `distro::helm`:
//! - `prometheus` (prometheus-community) with the server only: Alertmanager and the Pushgateway
//!   are off (nothing sends alerts on a one-machine cluster); node-exporter and
//!   kube-state-metrics are off too: the chart's own jobs already scrape every container's and the
//!   whole node's CPU and memory from the kubelet's cAdvisor, node-exporter would bind host port
//!   9100 (often taken on a workstation by the host's own node_exporter) and each would be one more
//!   pod on an 8 GB laptop. On GPU profiles an explicit scrape job finds the GPU operator's DCGM
//!   exporter by Kubernetes service discovery, so GPU metrics appear whenever the operator is up,
//!   whatever order things start in.
//! - `grafana` (grafana-community, where Grafana Labs moved the chart in 2026; the
//!   grafana.github.io copy is frozen and deprecated) with Prometheus provisioned as its default
//!   datasource, reached on NodePort [`GRAFANA_NODE_PORT`], its admin password in the Secret
//!   [`ADMIN_SECRET`] (`admin.existingSecret`), generated on first install and kept afterwards by
//!   the stack-secrets machinery (`stack::secrets`), never printed.
//!
//! Values are typed models serialized to YAML, never string templates; a test checks every field
//! against the charts' own field lists (`tests/fixtures/upstream/{prometheus,grafana}/values-fields.txt`). Sizing is a
//! function of the profile ([`Sizing::for_profile`]).

use super::{Addon, AddonKind};
use crate::distro::Distro;
use crate::distro::helm::{self, ChartSource};
use crate::plan::step::ObjectRef;
use crate::profile::{Profile, Selection};
use crate::stack::{Generate, SecretDecl, Stack, StackObject, Stage};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The add-on's stack name (and ApplySet), and the namespace of Prometheus and Grafana.
pub const STACK: &str = "monitoring";
pub const NAMESPACE: &str = "monitoring";

/// prometheus-community's Helm repository.
pub const PROMETHEUS_REPO: &str = "https://prometheus-community.github.io/helm-charts";
pub const PROMETHEUS_CHART: &str = "prometheus";
/// Name k0s's Chart gives that repository (`chartName: prometheus-community/prometheus`).
pub const PROMETHEUS_REPO_NAME: &str = "prometheus-community";
/// Pinned chart version (Prometheus v3.10.0): published on the repository's GitHub releases as
/// `prometheus-28.13.0` (used by public air-gap bundles of "chart 28.13.0, Prometheus 3.10.0").
pub const PROMETHEUS_VERSION: &str = "28.13.0";
/// Release (and chart object) name.
pub const PROMETHEUS_RELEASE: &str = "prometheus";
/// The server's Deployment and Service (`server.fullnameOverride`).
pub const PROMETHEUS_SERVER: &str = "prometheus-server";

/// grafana-community's Helm repository (the chart's home since January 2026).
pub const GRAFANA_REPO: &str = "https://grafana-community.github.io/helm-charts";
pub const GRAFANA_CHART: &str = "grafana";
/// Name k0s's Chart gives that repository (`chartName: grafana-community/grafana`).
pub const GRAFANA_REPO_NAME: &str = "grafana-community";
/// Pinned chart version: the last chart of Grafana 12 in grafana-community/helm-charts
/// (Grafana 13 starts with chart 12.0.0).
pub const GRAFANA_VERSION: &str = "11.6.1";
/// Release (and chart object) name, and the Deployment and Service (`fullnameOverride`).
pub const GRAFANA_RELEASE: &str = "grafana";
/// Grafana's NodePort: `http://<node>:30030`. The stacks use 30080 (voice-ai) and 30300
/// (multimodal-ai); a test keeps this one apart from every NodePort in manifests/.
pub const GRAFANA_NODE_PORT: u16 = 30030;

/// The Secret holding Grafana's admin user and password (`admin.existingSecret`).
pub const ADMIN_SECRET: &str = "grafana-admin";
pub const ADMIN_USER_KEY: &str = "admin-user";
pub const ADMIN_PASSWORD_KEY: &str = "admin-password";
/// Grafana's admin user.
pub const ADMIN_USER: &str = "admin";
/// Where a user-chosen admin password is read from (else kept from the cluster, else generated).
pub const ADMIN_PASSWORD_ENV: &str = crate::env::GRAFANA_ADMIN_PASSWORD;

/// The GPU operator's DCGM exporter: Service `nvidia-dcgm-exporter`, port `gpu-metrics` (9400),
/// in the operator's namespace (NVIDIA/gpu-operator `assets/state-dcgm-exporter/0400_service.yaml`).
pub const DCGM_SERVICE: &str = "nvidia-dcgm-exporter";
pub const DCGM_PORT_NAME: &str = "gpu-metrics";
/// Name of the scrape job for it.
pub const DCGM_JOB: &str = "gpu-dcgm-exporter";

/// How long the k0s Helm extension waits for a chart's pods; how long kstrap waits for the
/// chart objects and then for Prometheus and Grafana (first install pulls ~300 MB of images).
pub const HELM_TIMEOUT: &str = "10m";
pub const TIMEOUT_S: u64 = 600;

// ---- typed values ------------------------------------------------------------------------------

/// `{enabled: bool}`, the switch of a sub-chart or feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Toggle {
    pub enabled: bool,
}

/// CPU and memory, as Kubernetes quantities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quantities {
    pub cpu: String,
    pub memory: String,
}

/// A container's `resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resources {
    pub requests: Quantities,
    pub limits: Quantities,
}

fn resources(req_cpu: &str, req_mem: &str, lim_cpu: &str, lim_mem: &str) -> Resources {
    Resources {
        requests: Quantities {
            cpu: req_cpu.into(),
            memory: req_mem.into(),
        },
        limits: Quantities {
            cpu: lim_cpu.into(),
            memory: lim_mem.into(),
        },
    }
}

/// Values of the `prometheus` chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrometheusValues {
    pub alertmanager: Toggle,
    #[serde(rename = "kube-state-metrics")]
    pub kube_state_metrics: Toggle,
    #[serde(rename = "prometheus-node-exporter")]
    pub node_exporter: Toggle,
    #[serde(rename = "prometheus-pushgateway")]
    pub pushgateway: Toggle,
    pub server: PrometheusServer,
    #[serde(rename = "configmapReload")]
    pub configmap_reload: ConfigmapReload,
    /// Scrape jobs added to the chart's own, as a YAML string (the chart pastes it into
    /// prometheus.yml); built from [`ScrapeConfig`]s, empty when there are none.
    #[serde(rename = "extraScrapeConfigs", skip_serializing_if = "String::is_empty")]
    pub extra_scrape_configs: String,
}

/// `server.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusServer {
    /// Names the Deployment and Service `prometheus-server` whatever the release is called.
    pub fullname_override: String,
    pub global: Global,
    /// How long samples are kept (`--storage.tsdb.retention.time`).
    pub retention: String,
    /// The most they may take on disk (`--storage.tsdb.retention.size`), below the volume's size.
    pub retention_size: String,
    pub persistent_volume: PersistentVolume,
    pub resources: Resources,
}

/// `server.global.*` (prometheus.yml's `global`, snake_case as Prometheus spells it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Global {
    pub scrape_interval: String,
    pub evaluation_interval: String,
}

/// `server.persistentVolume.*`: a claim on the cluster's default StorageClass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersistentVolume {
    pub enabled: bool,
    pub size: String,
}

/// `configmapReload.prometheus.*`: the sidecar that reloads Prometheus when its config changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigmapReload {
    pub prometheus: Reloader,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reloader {
    pub resources: Resources,
}

/// One Prometheus scrape job (prometheus.yml `scrape_configs[]`), only the fields kstrap uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub kubernetes_sd_configs: Vec<KubernetesSd>,
    pub relabel_configs: Vec<Relabel>,
}

/// `kubernetes_sd_configs[]`: discover `role` objects in these namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubernetesSd {
    pub role: String,
    pub namespaces: SdNamespaces,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdNamespaces {
    pub names: Vec<String>,
}

/// `relabel_configs[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Relabel {
    pub source_labels: Vec<String>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
}

/// Values of the `grafana` chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaValues {
    /// Names the Deployment and Service `grafana`.
    pub fullname_override: String,
    pub admin: GrafanaAdmin,
    pub service: GrafanaService,
    pub resources: Resources,
    /// Off: dashboards and the datasource are provisioned from values, and the admin password
    /// comes from the Secret at every start, so nothing needs a volume.
    pub persistence: Toggle,
    /// Off: no `helm test` pod (and no bats image) in the release.
    pub test_framework: Toggle,
    /// Provisioning files by name: `datasources.yaml` (Grafana's provisioning format).
    pub datasources: BTreeMap<String, DatasourcesFile>,
}

/// `admin.*`: the admin user and password come from an existing Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaAdmin {
    pub existing_secret: String,
    pub user_key: String,
    pub password_key: String,
}

/// `service.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaService {
    #[serde(rename = "type")]
    pub kind: String,
    pub port: u16,
    pub node_port: u16,
}

/// A Grafana datasource provisioning file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasourcesFile {
    pub api_version: u32,
    pub datasources: Vec<Datasource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Datasource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub uid: String,
    pub url: String,
    pub access: String,
    pub is_default: bool,
}

// ---- sizing ------------------------------------------------------------------------------------

/// How big Prometheus and Grafana are, as a function of the profile: small on profiles for
/// machines under 16 GiB (the 8 GB laptop), larger on workstation profiles. A profile from
/// `--profiles-dir` gets the size its memory requirement calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizing {
    pub scrape_interval: &'static str,
    pub retention: &'static str,
    pub retention_size: &'static str,
    pub volume: &'static str,
    pub prometheus: Resources,
    pub reloader: Resources,
    pub grafana: Resources,
}

impl Sizing {
    /// Below this required memory a profile is a laptop's.
    pub const SMALL_BELOW_GIB: f64 = 16.0;

    pub fn for_profile(profile: &Profile) -> Sizing {
        if profile.requires.memory_gib < Self::SMALL_BELOW_GIB {
            Sizing {
                scrape_interval: "1m",
                retention: "3d",
                // The volume less room for the write-ahead log.
                retention_size: "1500MB",
                volume: "2Gi",
                prometheus: resources("100m", "256Mi", "500m", "512Mi"),
                reloader: resources("10m", "16Mi", "50m", "32Mi"),
                grafana: resources("50m", "128Mi", "250m", "256Mi"),
            }
        } else {
            Sizing {
                scrape_interval: "30s",
                retention: "15d",
                retention_size: "17GB",
                volume: "20Gi",
                prometheus: resources("250m", "1Gi", "1", "2Gi"),
                reloader: resources("10m", "16Mi", "100m", "64Mi"),
                grafana: resources("100m", "256Mi", "500m", "512Mi"),
            }
        }
    }
}

// ---- values for a selection --------------------------------------------------------------------

/// The scrape job for the GPU operator's DCGM exporter: endpoints of Service
/// `nvidia-dcgm-exporter` (port `gpu-metrics`) in the operator's namespace, found by service
/// discovery, so the job works before, during and after the operator comes up. Each target gets
/// the node it runs on as label `node`.
pub fn dcgm_scrape_job() -> ScrapeConfig {
    ScrapeConfig {
        job_name: DCGM_JOB.into(),
        kubernetes_sd_configs: vec![KubernetesSd {
            role: "endpoints".into(),
            namespaces: SdNamespaces {
                names: vec![crate::gpu::NAMESPACE.into()],
            },
        }],
        relabel_configs: vec![
            Relabel {
                source_labels: vec![
                    "__meta_kubernetes_service_name".into(),
                    "__meta_kubernetes_endpoint_port_name".into(),
                ],
                action: "keep".into(),
                regex: Some(format!("{DCGM_SERVICE};{DCGM_PORT_NAME}")),
                target_label: None,
            },
            Relabel {
                source_labels: vec!["__meta_kubernetes_pod_node_name".into()],
                action: "replace".into(),
                regex: None,
                target_label: Some("node".into()),
            },
        ],
    }
}

/// The `prometheus` chart's values for this selection: the DCGM job only where the selection
/// puts GPUs under the operator.
pub fn prometheus_values(sel: &Selection) -> PrometheusValues {
    let size = Sizing::for_profile(&sel.profile);
    let jobs: Vec<ScrapeConfig> = if crate::gpu::gpu_selected(sel) {
        vec![dcgm_scrape_job()]
    } else {
        Vec::new()
    };
    let off = || Toggle { enabled: false };
    PrometheusValues {
        alertmanager: off(),
        kube_state_metrics: off(),
        node_exporter: off(),
        pushgateway: off(),
        server: PrometheusServer {
            fullname_override: PROMETHEUS_SERVER.into(),
            global: Global {
                scrape_interval: size.scrape_interval.into(),
                evaluation_interval: size.scrape_interval.into(),
            },
            retention: size.retention.into(),
            retention_size: size.retention_size.into(),
            persistent_volume: PersistentVolume {
                enabled: true,
                size: size.volume.into(),
            },
            resources: size.prometheus,
        },
        configmap_reload: ConfigmapReload {
            prometheus: Reloader {
                resources: size.reloader,
            },
        },
        extra_scrape_configs: if jobs.is_empty() {
            String::new()
        } else {
            helm::values_yaml(&jobs)
        },
    }
}

/// In-cluster URL of the Prometheus server (its Service listens on 80).
pub fn prometheus_url() -> String {
    format!("http://{PROMETHEUS_SERVER}.{NAMESPACE}.svc")
}

/// The `grafana` chart's values for this selection.
pub fn grafana_values(sel: &Selection) -> GrafanaValues {
    let size = Sizing::for_profile(&sel.profile);
    let datasources = DatasourcesFile {
        api_version: 1,
        datasources: vec![Datasource {
            name: "Prometheus".into(),
            kind: "prometheus".into(),
            uid: "prometheus".into(),
            url: prometheus_url(),
            access: "proxy".into(),
            is_default: true,
        }],
    };
    GrafanaValues {
        fullname_override: GRAFANA_RELEASE.into(),
        admin: GrafanaAdmin {
            existing_secret: ADMIN_SECRET.into(),
            user_key: ADMIN_USER_KEY.into(),
            password_key: ADMIN_PASSWORD_KEY.into(),
        },
        service: GrafanaService {
            kind: "NodePort".into(),
            port: 80,
            node_port: GRAFANA_NODE_PORT,
        },
        resources: size.grafana,
        persistence: Toggle { enabled: false },
        test_framework: Toggle { enabled: false },
        datasources: BTreeMap::from([("datasources.yaml".to_string(), datasources)]),
    }
}

/// The monitoring namespace.
fn namespace() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": { "app.kubernetes.io/managed-by": "kstrap" },
        },
    })
}

/// Everything the add-on applies itself, in apply order: the namespace, the Prometheus chart
/// object, the Grafana chart object (the admin Secret is resolved when it is applied).
pub fn objects(distro: Distro, sel: &Selection) -> Vec<Value> {
    let prometheus = ChartSource {
        release: PROMETHEUS_RELEASE.into(),
        repo: PROMETHEUS_REPO.into(),
        repo_name: PROMETHEUS_REPO_NAME.into(),
        chart: PROMETHEUS_CHART.into(),
        version: PROMETHEUS_VERSION.into(),
        namespace: NAMESPACE.into(),
        values: helm::values_yaml(&prometheus_values(sel)),
        timeout: HELM_TIMEOUT.into(),
    };
    let grafana = ChartSource {
        release: GRAFANA_RELEASE.into(),
        repo: GRAFANA_REPO.into(),
        repo_name: GRAFANA_REPO_NAME.into(),
        chart: GRAFANA_CHART.into(),
        version: GRAFANA_VERSION.into(),
        namespace: NAMESPACE.into(),
        values: helm::values_yaml(&grafana_values(sel)),
        timeout: HELM_TIMEOUT.into(),
    };
    vec![
        namespace(),
        helm::chart_object(distro, &prometheus),
        helm::chart_object(distro, &grafana),
    ]
}

/// The Secret Grafana's admin credentials live in: the password from
/// `KSTRAP_GRAFANA_ADMIN_PASSWORD`, else kept from the cluster, else 32 random letters and digits.
pub fn admin_secret() -> SecretDecl {
    SecretDecl {
        name: ADMIN_SECRET.into(),
        description: "Grafana's admin password".into(),
        keys: vec![ADMIN_PASSWORD_ENV.into()],
        secret_keys: BTreeMap::from([(ADMIN_PASSWORD_ENV.to_string(), ADMIN_PASSWORD_KEY.to_string())]),
        generate: Some(Generate {
            length: 32,
            format: "{random}".into(),
        }),
    }
}

/// Adds the admin user (not a secret: always `admin`) to the resolved admin Secret, so the chart
/// finds both of the keys it reads.
pub fn complete_admin_secret(secret: &mut Value) {
    if secret.pointer("/metadata/name").and_then(Value::as_str) != Some(ADMIN_SECRET) {
        return;
    }
    let encoded = serde_json::to_value(k8s_openapi::ByteString(ADMIN_USER.as_bytes().to_vec())).unwrap_or(Value::Null);
    if let Some(data) = secret.get_mut("data").and_then(Value::as_object_mut) {
        data.insert(ADMIN_USER_KEY.into(), encoded);
    }
}

/// The add-on for this selection.
pub fn addon(sel: &Selection) -> Addon {
    let objects: Vec<StackObject> = objects(sel.distro, sel)
        .into_iter()
        .map(|value| StackObject {
            reference: crate::gpu::object_ref(&value),
            source: "(built in: monitoring add-on)".into(),
            document: 0,
            line: 0,
            value,
        })
        .collect();
    let stack = Stack {
        name: STACK.into(),
        description: "Prometheus and Grafana through the distribution's Helm controller".into(),
        namespace: NAMESPACE.into(),
        stages: vec![Stage {
            dir: "00-monitoring".into(),
            name: STACK.into(),
            description: "the namespace, the admin Secret and the two chart objects".into(),
            timeout_s: TIMEOUT_S,
            objects,
        }],
        profiles: BTreeMap::new(),
        distros: Default::default(),
        secrets: vec![admin_secret()],
        images: Vec::new(),
        namespaces: Vec::new(),
        databases: Vec::new(),
        verify: None,
    };
    let deployment = |name: &str| ObjectRef {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: Some(NAMESPACE.into()),
        name: name.into(),
    };
    let controller = match sel.distro {
        Distro::K3s => "k3s's Helm controller",
        Distro::K0s => "k0s's Helm extension",
    };
    let gpu = if crate::gpu::gpu_selected(sel) {
        format!(
            "; Prometheus scrapes the GPU operator's DCGM exporter ({DCGM_SERVICE}.{}:9400, job {DCGM_JOB})",
            crate::gpu::NAMESPACE
        )
    } else {
        String::new()
    };
    let size = Sizing::for_profile(&sel.profile);
    Addon {
        kind: AddonKind::Monitoring,
        title: format!(
            "Install monitoring: Prometheus (chart {PROMETHEUS_VERSION}) and Grafana (chart {GRAFANA_VERSION}) through {controller}"
        ),
        reason: format!(
            "asked for with --with monitoring; Grafana on http://<node>:{GRAFANA_NODE_PORT} (user {ADMIN_USER}, password in Secret {NAMESPACE}/{ADMIN_SECRET}: generated once, kept, never printed); Prometheus keeps {} of metrics on a {} volume{gpu}",
            size.retention, size.volume
        ),
        stack,
        wait_for: vec![deployment(PROMETHEUS_SERVER), deployment(GRAFANA_RELEASE)],
        timeout_s: TIMEOUT_S,
    }
}
