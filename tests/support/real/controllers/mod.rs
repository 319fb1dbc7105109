//! **Test doubles** of the controllers kstrap relies on, each following its upstream at the
//! version kstrap pins, talking to the real API server with kube clients and running in the test
//! process for its whole life (their own thread and runtime, like the node stand-in):
//!
//! - [`helm_controller`]: k3s's Helm controller (`helm.cattle.io/v1 HelmChart`), helm-controller
//!   v0.16.17 as vendored by k3s v1.35.3+k3s1: the `helm-install-<name>` Job in the chart's
//!   namespace and the JobCreated / Failed conditions, and a `HelmChartConfig`'s values over the
//!   chart's;
//! - [`k0s_charts`]: k0s v1.35.3+k0s.0's chart reconciler (`helm.k0sproject.io/v1beta1 Chart`):
//!   how it resolves `chartName` and `spec.repository`, and the status it writes;
//! - [`charts`]: what `helm install` of each chart kstrap uses creates (the GPU operator v26.3.2
//!   with its node-feature-discovery subchart, Prometheus 28.13.0, Grafana 11.6.1), shared by both
//!   Helm controllers; a chart it does not know fails the way Helm fails to find it;
//! - [`gpu_operator`]: the GPU operator v26.3.2's ClusterPolicy reconciler (node labels, the
//!   `nvidia` RuntimeClass, operand DaemonSets, status) and what its operands and NFD do on the
//!   node (labels, containerd's `nvidia` runtime, `nvidia.com/gpu` = GPUs × replicas after a
//!   device-plugin start);
//! - [`cnpg`]: the CloudNativePG operator v1.30.0's Cluster reconciler (the `<name>-app` Secret,
//!   Services, instance PVCs and pods, status and the Ready condition).
//!
//! The CRDs are upstream's own (`tests/fixtures/upstream/`, each with its SOURCE), installed with
//! server-side apply and never deleted: every test of the process shares them.

pub mod charts;
pub mod cnpg;
pub mod gpu_chart;
pub mod gpu_operands;
pub mod gpu_operator;
pub mod helm_controller;
pub mod k0s_charts;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::Notify;

use super::node::NodeHandle;

/// Upstream CRDs, as `tests/fixtures/upstream/<component>/<file>` (see each SOURCE.md).
pub const CRDS: [&str; 4] = [
    "helm-controller/helm.cattle.io_helmcharts.yaml",
    "helm-controller/helm.cattle.io_helmchartconfigs.yaml",
    "k0s/helm.k0sproject.io_charts.yaml",
    "gpu-operator/nvidia.com_clusterpolicies.yaml",
];

/// Starts the stand-ins on their own thread; returns once the CRDs are established.
pub fn start(kubeconfig: &Path, node: NodeHandle) -> Result<(), String> {
    let ((), stop) = super::background::in_background(
        "controller-standins",
        kubeconfig,
        Duration::from_secs(90),
        move |client: kube::Client| async move {
            install_crds(&client).await?;
            let work = async move {
                tokio::join!(
                    helm_controller::run(client.clone(), node.clone()),
                    k0s_charts::run(client.clone()),
                    gpu_operator::run(client.clone(), node.clone()),
                    cnpg::run(client.clone()),
                );
            };
            Ok(((), work))
        },
    )?;
    // They live as long as the process (tests share them).
    stop.detach();
    Ok(())
}

fn fixture(rel: &str) -> Result<Value, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upstream")
        .join(rel);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Server-side applies upstream's CRDs (idempotent; never deleted) and waits until established.
pub async fn install_crds(client: &kube::Client) -> Result<(), String> {
    let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for rel in CRDS {
        let crd = fixture(rel)?;
        super::apply_json(client, &crd, "kstrap-test-crds")
            .await
            .map_err(|e| format!("{rel}: {e}"))?;
        let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let established = api.get_opt(&name).await.ok().flatten().is_some_and(|c| {
                c.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("CRD {name} not established within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The ApiResource of a kind whose plural is known (no discovery round trip).
pub fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub fn helm_chart_resource() -> ApiResource {
    resource("helm.cattle.io/v1", "HelmChart", "helmcharts")
}

pub fn helm_chart_config_resource() -> ApiResource {
    resource("helm.cattle.io/v1", "HelmChartConfig", "helmchartconfigs")
}

pub fn k0s_chart_resource() -> ApiResource {
    resource("helm.k0sproject.io/v1beta1", "Chart", "charts")
}

pub fn cluster_policy_resource() -> ApiResource {
    resource("nvidia.com/v1", "ClusterPolicy", "clusterpolicies")
}

/// Wakes `notify` on every event of a watch (a controller's informer), retrying with backoff.
pub async fn notify_on<K>(api: Api<K>, cfg: watcher::Config, notify: Arc<Notify>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        if event.is_ok() {
            notify.notify_one();
        }
    }
}

/// A dynamic watch, for custom resources.
pub fn dynamic_api(client: &kube::Client, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// The object as JSON.
pub fn json_of<T: serde::Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

/// `s(v, "/a/b")`: a string at a JSON pointer, or "".
pub fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// RFC 3339 now, as the API writes times.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Replaces an object's status (a controller's `Status().Update`), on the live object's
/// resourceVersion; a conflict is left to the next round.
pub async fn replace_status(api: &Api<DynamicObject>, name: &str, status: Value) -> Result<(), kube::Error> {
    let live = api.get_status(name).await?;
    let mut body = json_of(&live);
    body["status"] = status;
    let Ok(obj) = serde_json::from_value::<DynamicObject>(body) else {
        return Ok(());
    };
    api.replace_status(name, &kube::api::PostParams::default(), &obj)
        .await
        .map(|_| ())
}

/// A pod is running with every container ready (what the stand-ins take as "the program runs").
pub fn pod_running(pod: &Value) -> bool {
    s(pod, "/status/phase") == "Running"
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}
