//! The distribution's own Helm controller, as data: one builder for the chart object that makes it
//! install a chart (no helm binary on the host), used by the GPU operator and the monitoring
//! add-on alike.
//!
//! - k3s: `helm.cattle.io/v1 HelmChart` (spec `repo`, `chart`, `version`, `targetNamespace`,
//!   `createNamespace`, and the values as a YAML string in `valuesContent`); k3s's helm-controller
//!   runs `helm install` in a Job and names the release after the object.
//! - k0s: `helm.k0sproject.io/v1beta1 Chart` (spec `chartName`, `releaseName`, `version`,
//!   `values` — a YAML string too —, `namespace`, `timeout`, `repository`). k0s v1.35.3 reads the
//!   text of `chartName` before the first `/` as the repository's name
//!   (`extractRepositoryIdentifier`, k0sproject/k0s `pkg/component/controller/extensions_controller.go`
//!   at v1.35.3+k0s.0): without `spec.repository` it looks that name up among k0s.yaml's
//!   repositories, so an archive URL fails with "repository 'https:' not found in cluster
//!   configuration". With `spec.repository` (`RepositorySpec.url`, `pkg/apis/helm/v1beta1/chart_types.go`
//!   at the same tag) the Chart carries its own repository, named after that same prefix
//!   (`toHelmRepo`): so kstrap writes `chartName: <repo>/<chart>` and `repository.url`, and nothing
//!   in k0s.yaml has to change.
//!
//! kstrap puts these objects in `kube-system`, where k0s writes its own Chart objects
//! (`chartCrdTemplate`, `extensions_controller.go` at v1.35.3+k0s.0).
//!
//! While kstrap waits, the chart object's own status says whether Helm failed ([`chart_failure`]):
//! k3s's HelmChart carries a `Failed` condition (helm-controller v0.16.17,
//! `pkg/apis/helm.cattle.io/v1/types.go`, `HelmChartFailed`), k0s's Chart a `status.error` string
//! set from the reconcile error (`updateStatus` in `extensions_controller.go`, v1.35.3+k0s.0).

use super::Distro;
use crate::plan::step::ObjectRef;
use serde::Serialize;
use serde_json::{Value, json};

/// Namespace both Helm controllers watch for chart objects.
pub const CHART_NAMESPACE: &str = "kube-system";
/// Value of `app.kubernetes.io/managed-by` on every chart object kstrap makes.
const MANAGED_BY: &str = "kstrap";

/// One chart to install, pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSource {
    /// Name of the chart object and of the Helm release.
    pub release: String,
    /// Repository URL (`helm repo add` form): k3s `spec.repo`, k0s `spec.repository.url`.
    pub repo: String,
    /// Name k0s gives that repository: the text before the `/` of `chartName`.
    pub repo_name: String,
    /// Chart name in that repository.
    pub chart: String,
    /// Pinned chart version, exactly as the repository spells it.
    pub version: String,
    /// Namespace the release goes into.
    pub namespace: String,
    /// The values, already serialized to YAML (see [`values_yaml`]).
    pub values: String,
    /// How long k0s's Helm extension waits for the chart's pods before it rolls back (`15m`).
    pub timeout: String,
}

/// The chart object for `distro`'s Helm controller.
pub fn chart_object(distro: Distro, c: &ChartSource) -> Value {
    let labels = json!({ "app.kubernetes.io/managed-by": MANAGED_BY });
    match distro {
        Distro::K3s => json!({
            "apiVersion": "helm.cattle.io/v1",
            "kind": "HelmChart",
            "metadata": { "name": c.release, "namespace": CHART_NAMESPACE, "labels": labels },
            "spec": {
                "repo": c.repo,
                "chart": c.chart,
                "version": c.version,
                "targetNamespace": c.namespace,
                "createNamespace": true,
                "valuesContent": c.values,
            },
        }),
        Distro::K0s => json!({
            "apiVersion": "helm.k0sproject.io/v1beta1",
            "kind": "Chart",
            "metadata": { "name": c.release, "namespace": CHART_NAMESPACE, "labels": labels },
            "spec": {
                "chartName": format!("{}/{}", c.repo_name, c.chart),
                "repository": { "url": c.repo },
                "releaseName": c.release,
                "version": c.version,
                "namespace": c.namespace,
                "timeout": c.timeout,
                "values": c.values,
            },
        }),
    }
}

/// The reference naming the chart object of release `release`.
pub fn chart_ref(distro: Distro, release: &str) -> ObjectRef {
    let (api_version, kind) = match distro {
        Distro::K3s => ("helm.cattle.io/v1", "HelmChart"),
        Distro::K0s => ("helm.k0sproject.io/v1beta1", "Chart"),
    };
    ObjectRef {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: Some(CHART_NAMESPACE.into()),
        name: release.into(),
    }
}

/// The Helm failure a chart object's own status reports, in a sentence; `None` while it reports
/// none. Read on every watch event while kstrap waits on what the chart installs, so that a
/// failed install is reported at once instead of at the end of the timeout.
///
/// - HelmChart (helm-controller v0.16.17, `pkg/controllers/chart/chart.go` `OnChange`): condition
///   `Failed` = `True` with `reason` and `message` ("Unsupported version" / "Job create failed").
/// - Chart (k0s v1.35.3+k0s.0, `ChartStatus.Error` in `pkg/apis/helm/v1beta1/chart_types.go`,
///   written by `updateStatus` in `pkg/component/controller/extensions_controller.go` from the
///   reconcile error: repository lookup, download, install, upgrade); cleared on success.
pub fn chart_failure(object: &Value) -> Option<String> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?");
    match object.get("kind").and_then(Value::as_str) {
        Some("HelmChart") => object
            .pointer("/status/conditions")
            .and_then(Value::as_array)?
            .iter()
            .find(|c| c["type"] == "Failed" && c["status"] == "True")
            .map(|c| {
                let reason = c["reason"].as_str().unwrap_or_default();
                let message = c["message"].as_str().unwrap_or_default();
                format!("k3s's Helm controller failed to install chart {name}: {reason}: {message}")
            }),
        Some("Chart") => object
            .pointer("/status/error")
            .and_then(Value::as_str)
            .filter(|e| !e.trim().is_empty())
            .map(|e| format!("k0s's Helm extension failed to install chart {name}: {e}")),
        _ => None,
    }
}

/// What k0s records in a Chart's `status.valuesHash` once it has applied the spec: the hex
/// SHA-256 of `spec.releaseName` followed by `spec.values` (`ChartSpec.HashValues`,
/// k0sproject/k0s `pkg/apis/helm/v1beta1/chart_types.go` at v1.35.3+k0s.0).
pub fn k0s_values_hash(chart: &Value) -> String {
    use sha2::{Digest, Sha256};
    let field = |k: &str| {
        chart
            .pointer(&format!("/spec/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let mut h = Sha256::new();
    h.update(field("releaseName").as_bytes());
    h.update(field("values").as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Typed chart values as YAML, for `valuesContent` / `values`.
///
/// serde-saphyr cannot fail on plain structs of strings, numbers, bools, lists and string-keyed
/// maps; should it ever, the JSON form is used instead, which is valid YAML with the same meaning.
pub fn values_yaml<T: Serialize>(values: &T) -> String {
    serde_saphyr::to_string(values)
        .or_else(|_| serde_json::to_string(values))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> ChartSource {
        ChartSource {
            release: "demo".into(),
            repo: "https://charts.example.com".into(),
            repo_name: "example".into(),
            chart: "demo-chart".into(),
            version: "1.2.3".into(),
            namespace: "demo".into(),
            values: "a: 1\n".into(),
            timeout: "15m".into(),
        }
    }

    #[test]
    fn both_controllers_get_their_own_kind_in_kube_system() {
        for distro in [Distro::K3s, Distro::K0s] {
            let o = chart_object(distro, &source());
            let r = chart_ref(distro, "demo");
            assert_eq!(o["apiVersion"], r.api_version.as_str());
            assert_eq!(o["kind"], r.kind.as_str());
            assert_eq!(o["metadata"]["namespace"], "kube-system");
            assert_eq!(o["metadata"]["name"], "demo");
            assert_eq!(o["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kstrap");
        }
        let k3s = chart_object(Distro::K3s, &source());
        assert_eq!(k3s["spec"]["repo"], "https://charts.example.com");
        assert_eq!(k3s["spec"]["chart"], "demo-chart");
        assert_eq!(k3s["spec"]["valuesContent"], "a: 1\n");
        let k0s = chart_object(Distro::K0s, &source());
        assert_eq!(k0s["spec"]["chartName"], "example/demo-chart");
        assert_eq!(k0s["spec"]["repository"]["url"], "https://charts.example.com");
        assert_eq!(k0s["spec"]["releaseName"], "demo");
        assert_eq!(k0s["spec"]["values"], "a: 1\n");
    }

    #[test]
    fn a_chart_objects_own_status_reports_helm_failures() {
        // k0s v1.35.3's reconciler, given a URL as chartName and no spec.repository.
        let k0s = json!({"apiVersion": "helm.k0sproject.io/v1beta1", "kind": "Chart",
            "metadata": {"name": "gpu-operator", "namespace": "kube-system"},
            "status": {"error": "can't lookup repository for chart \"https://x/y.tgz\": repository 'https:' not found in cluster configuration"}});
        let e = chart_failure(&k0s).unwrap();
        assert!(
            e.contains("gpu-operator") && e.contains("repository 'https:' not found"),
            "{e}"
        );
        let fine = json!({"kind": "Chart", "metadata": {"name": "g"}, "status": {"releaseName": "g", "error": ""}});
        assert_eq!(chart_failure(&fine), None);
        let k3s = json!({"kind": "HelmChart", "metadata": {"name": "grafana"}, "status": {"conditions": [
            {"type": "JobCreated", "status": "False"},
            {"type": "Failed", "status": "True", "reason": "Job create failed", "message": "Failed to generate Job: boom"}]}});
        let e = chart_failure(&k3s).unwrap();
        assert!(e.contains("Job create failed") && e.contains("boom"), "{e}");
        let running = json!({"kind": "HelmChart", "metadata": {"name": "grafana"}, "status": {"conditions": [
            {"type": "JobCreated", "status": "True"}, {"type": "Failed", "status": "False"}]}});
        assert_eq!(chart_failure(&running), None);
        assert_eq!(chart_failure(&json!({"kind": "Deployment"})), None);
    }

    #[test]
    fn values_are_yaml_of_the_typed_model() {
        #[derive(Serialize)]
        struct V {
            enabled: bool,
            name: &'static str,
        }
        let text = values_yaml(&V {
            enabled: false,
            name: "x",
        });
        let back: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, json!({"enabled": false, "name": "x"}));
    }
}
