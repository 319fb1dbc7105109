//! The distribution's own Helm controller, as data: one builder for the chart object that makes it
//! install a chart (no helm binary on the host), used by the GPU operator and the monitoring
//! add-on alike.
//!
//! - k3s: `helm.cattle.io/v1 HelmChart` (spec `repo`, `chart`, `version`, `targetNamespace`,
//!   `createNamespace`, and the values as a YAML string in `valuesContent`); k3s's helm-controller
//!   runs `helm install` in a Job and names the release after the object.
//! - k0s: `helm.k0sproject.io/v1beta1 Chart` (spec `chartName`, `releaseName`, `version`,
//!   `values` — a YAML string too —, `namespace`, `timeout`). The Chart CR has no repository field
//!   (repositories live in k0s.yaml), so `chartName` is the chart archive's URL: k0s's
//!   `locateChart` hands it to Helm's ChartDownloader, which fetches absolute URLs directly, and
//!   nothing in k0s.yaml has to change.
//!
//! Both controllers only look for these objects in `kube-system`.

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
    /// Repository URL (`helm repo add` form), for k3s.
    pub repo: String,
    /// Chart name in that repository.
    pub chart: String,
    /// Pinned chart version, exactly as the repository spells it.
    pub version: String,
    /// URL of the chart archive of that version, for k0s.
    pub archive_url: String,
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
                "chartName": c.archive_url,
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
            chart: "demo-chart".into(),
            version: "1.2.3".into(),
            archive_url: "https://charts.example.com/demo-chart-1.2.3.tgz".into(),
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
        assert_eq!(
            k0s["spec"]["chartName"],
            "https://charts.example.com/demo-chart-1.2.3.tgz"
        );
        assert_eq!(k0s["spec"]["releaseName"], "demo");
        assert_eq!(k0s["spec"]["values"], "a: 1\n");
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
