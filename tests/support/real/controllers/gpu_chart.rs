//! The GPU operator chart v26.3.2 as `helm install` renders it (NVIDIA/gpu-operator
//! `deployments/gpu-operator`, tag v26.3.2): the operator's ServiceAccount and Deployment
//! (`templates/operator.yaml`), node-feature-discovery 0.18.3's master/gc Deployments and worker
//! DaemonSet (`<release>-node-feature-discovery-*`), and ClusterPolicy `cluster-policy`
//! (`templates/clusterpolicy.yaml`) from the chart's defaults merged with the user's values.
//! Part of the GPU operator **test double** ([`super::gpu_operator`]).

use serde_json::{Value, json};

use super::charts::{GPU_OPERATOR, merge};
use super::gpu_operator::CLUSTER_POLICY;
use super::s;

/// `deployments/gpu-operator/values.yaml` (v26.3.2) for the fields the ClusterPolicy template
/// renders here.
fn chart_defaults() -> Value {
    json!({
        "nfd": {"enabled": true},
        "operator": {"repository": "nvcr.io/nvidia", "image": "gpu-operator", "priorityClassName": "system-node-critical", "runtimeClass": "nvidia"},
        "daemonsets": {"priorityClassName": "system-node-critical",
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
        "driver": {"enabled": true, "repository": "nvcr.io/nvidia", "image": "driver", "version": "580.126.20"},
        "toolkit": {"enabled": true, "repository": "nvcr.io/nvidia/k8s", "image": "container-toolkit", "version": "v1.19.1"},
        "devicePlugin": {"enabled": true, "repository": "nvcr.io/nvidia", "image": "k8s-device-plugin", "version": "v0.19.2"},
        "dcgmExporter": {"enabled": true, "repository": "nvcr.io/nvidia/k8s", "image": "dcgm-exporter", "version": "4.5.3-4.8.2-distroless"},
        "dcgm": {"enabled": false},
        "gfd": {"enabled": true, "repository": "nvcr.io/nvidia", "image": "k8s-device-plugin", "version": "v0.19.2"},
        "nodeStatusExporter": {"enabled": false},
        "validator": {"repository": "nvcr.io/nvidia", "image": "gpu-operator"},
        "migManager": {"enabled": true},
        "cdi": {"enabled": true},
        "hostPaths": {"rootFS": "/", "driverInstallDir": "/run/nvidia/driver"},
    })
}

fn pick(v: &Value, keys: &[&str]) -> Value {
    let mut out = json!({});
    for k in keys {
        if !v[*k].is_null() {
            out[*k] = v[*k].clone();
        }
    }
    out
}

/// The chart's objects for release `release` in `ns` (operator, NFD subchart, ClusterPolicy).
pub fn render_chart(release: &str, ns: &str, user: &Value) -> Vec<Value> {
    let mut v = chart_defaults();
    merge(&mut v, user);
    let helm = |extra: Value| {
        let mut l = json!({"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/name": "gpu-operator",
            "app.kubernetes.io/instance": release, "app.kubernetes.io/version": GPU_OPERATOR.app_version,
            "helm.sh/chart": format!("gpu-operator-{}", GPU_OPERATOR.version)});
        merge(&mut l, &extra);
        l
    };
    let ann = json!({"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": ns});
    let image = |c: &Value, default_version: &str| {
        let version = c["version"].as_str().unwrap_or(default_version);
        format!("{}/{}:{version}", s(c, "/repository"), s(c, "/image"))
    };
    let select = json!({"app.kubernetes.io/component": "gpu-operator", "app": "gpu-operator"});
    let mut out = vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "gpu-operator", "namespace": ns, "labels": helm(json!({})), "annotations": ann}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "gpu-operator", "namespace": ns, "annotations": ann,
                "labels": helm(json!({"app.kubernetes.io/component": "gpu-operator", "nvidia.com/gpu-driver-upgrade-drain.skip": "true"}))},
            "spec": {"replicas": 1, "selector": {"matchLabels": select},
                "template": {"metadata": {"labels": helm(json!({"app.kubernetes.io/component": "gpu-operator", "app": "gpu-operator"}))},
                    "spec": {"serviceAccountName": "gpu-operator", "priorityClassName": v["operator"]["priorityClassName"],
                        "containers": [{"name": "gpu-operator", "image": image(&v["operator"], GPU_OPERATOR.app_version),
                            "command": ["gpu-operator"],
                            "env": [{"name": "OPERATOR_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]}]}}}}),
    ];
    if v["nfd"]["enabled"].as_bool() != Some(false) {
        // node-feature-discovery 0.18.3: fullname `<release>-node-feature-discovery`.
        let full = format!("{release}-node-feature-discovery");
        let nfd_image = "registry.k8s.io/nfd/node-feature-discovery:v0.18.3";
        for (role, kind) in [("master", "Deployment"), ("gc", "Deployment"), ("worker", "DaemonSet")] {
            let sel = json!({"app.kubernetes.io/name": "node-feature-discovery", "app.kubernetes.io/instance": release, "role": role});
            let mut labels = sel.clone();
            labels["app.kubernetes.io/managed-by"] = json!("Helm");
            let mut spec = json!({"selector": {"matchLabels": sel},
                "template": {"metadata": {"labels": sel},
                    "spec": {"containers": [{"name": role, "image": nfd_image, "command": [format!("nfd-{role}")]}]}}});
            if kind == "Deployment" {
                spec["replicas"] = json!(1);
            }
            out.push(json!({"apiVersion": "apps/v1", "kind": kind,
                "metadata": {"name": format!("{full}-{role}"), "namespace": ns, "labels": labels, "annotations": ann},
                "spec": spec}));
        }
    }
    let comp = |k: &str| pick(&v[k], &["enabled", "repository", "image", "version", "env", "config"]);
    out.push(json!({"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy",
        "metadata": {"name": CLUSTER_POLICY, "annotations": ann, "labels": helm(json!({"app.kubernetes.io/component": "gpu-operator"}))},
        "spec": {
            "hostPaths": v["hostPaths"],
            "operator": pick(&v["operator"], &["runtimeClass"]),
            "daemonsets": pick(&v["daemonsets"], &["priorityClassName", "tolerations"]),
            "driver": comp("driver"), "toolkit": comp("toolkit"), "devicePlugin": comp("devicePlugin"),
            "dcgmExporter": comp("dcgmExporter"), "dcgm": comp("dcgm"), "gfd": comp("gfd"),
            "nodeStatusExporter": comp("nodeStatusExporter"), "validator": comp("validator"),
            "migManager": comp("migManager"), "cdi": pick(&v["cdi"], &["enabled"]),
        }}));
    out
}
