//! **Test double** of k3s's Helm controller: k3s-io/helm-controller v0.16.17 (the version k3s
//! v1.35.3+k3s1's `go.mod` vendors), `pkg/controllers/chart/chart.go`.
//!
//! For each `helm.cattle.io/v1 HelmChart` in `kube-system` (the namespace k3s registers it for)
//! with `spec.chart` set, as `OnChange` does:
//! - `spec.helmVersion` other than "" or "v3": status conditions JobCreated=False, Failed=True
//!   reason "Unsupported version", and nothing else;
//! - otherwise it generates, owned by the HelmChart: Secret `chart-values-<name>` (type
//!   `helmcharts.helm.cattle.io/values`, key `HelmChartValuesContent`), ConfigMap
//!   `chart-content-<name>`, ServiceAccount `helm-<name>`, ClusterRoleBinding
//!   `helm-kube-system-<name>` (to `cluster-admin`, the default `--job-cluster-role`), and Job
//!   `helm-install-<name>` **in the chart's namespace** (image `rancher/klipper-helm:v0.9.10-
//!   build20251111`, restartPolicy OnFailure, backoffLimit 1000, pod `runAsNonRoot` with the
//!   image's own USER, env NAME/VERSION/REPO/CHART (`<name>/<chart>` when `repo` is set)/
//!   TARGET_NAMESPACE/FAILURE_POLICY=reinstall…, pod annotation
//!   `helmcharts.helm.cattle.io/configHash` = SHA256 of the values Secret's and content
//!   ConfigMap's data). A Job whose hash changed is deleted and made again (`jobPatcher`);
//! - status: `jobName`, conditions JobCreated=True reason "Job created" message "Applying
//!   HelmChart using Job kube-system/helm-install-<name>", Failed=False.
//!
//! The Job's pod is klipper-helm running `helm install`; the stand-in plays that program: when
//! the chart is one [`super::charts`] knows, the pod succeeds and the chart's objects exist (the
//! Job completes); when not, the pod's `helm` exits 1 (the node stand-in is told so) and, with
//! restartPolicy OnFailure, crash-loops — the only sign of a failed install in v0.16.17, which
//! sets Failed=True only for the two cases above.
//!
//! A `HelmChartConfig` of the chart's name and namespace (`confCache.Get`, chart.go) adds its
//! `valuesContent` to the values Secret as key `HelmChartConfigValuesContent`, projected into the
//! Job as `values-1-000-HelmChartConfig-ValuesContent.yaml` after the chart's own
//! `values-0-000-HelmChart-ValuesContent.yaml` (`valuesSecretAddConfig`), so Helm merges it over
//! the chart's values; it is part of the config hash, so a changed or deleted HelmChartConfig
//! makes the Job again and the release is upgraded (`resolveHelmChartFromHelmChartConfig`
//! re-queues the chart on its events). The HelmChartConfig's `valuesSecrets` and
//! `failurePolicy` are not played.
//!
//! Not played: the managed-by annotation claim, `chartContent`, the uninstall Job on deletion
//! (tests delete what the release made), events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::sync::Notify;

use super::super::node::NodeHandle;
use super::{charts, helm_chart_config_resource, helm_chart_resource, json_of, notify_on, s};

const NS: &str = "kube-system";
const MANAGER: &str = "helm-controller";
const JOB_IMAGE: &str = "rancher/klipper-helm:v0.9.10-build20251111";
const LABEL: &str = "helmcharts.helm.cattle.io/chart";
const HASH: &str = "helmcharts.helm.cattle.io/configHash";

pub async fn run(client: kube::Client, node: NodeHandle) {
    let notify = Arc::new(Notify::new());
    let charts_api = super::dynamic_api(&client, &helm_chart_resource(), Some(NS));
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    tokio::spawn(notify_on(
        charts_api.clone(),
        watcher::Config::default(),
        notify.clone(),
    ));
    tokio::spawn(notify_on(
        super::dynamic_api(&client, &helm_chart_config_resource(), Some(NS)),
        watcher::Config::default(),
        notify.clone(),
    ));
    tokio::spawn(notify_on(
        jobs,
        watcher::Config::default().labels(LABEL),
        notify.clone(),
    ));
    // Chart uid → config hash whose release is installed.
    let mut installed: HashMap<String, String> = HashMap::new();
    loop {
        if let Ok(list) = charts_api.list(&Default::default()).await {
            for chart in list.items {
                let chart = json_of(&chart);
                if let Err(e) = reconcile(&client, &node, &chart, &mut installed).await {
                    eprintln!("helm-controller stand-in: {}: {e}", s(&chart, "/metadata/name"));
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

fn owner(chart: &Value) -> Value {
    json!([{"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart", "name": s(chart, "/metadata/name"),
        "uid": s(chart, "/metadata/uid"), "controller": true, "blockOwnerDeletion": true}])
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    let mut c = json!({"type": kind, "status": status});
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    c
}

async fn write_status(client: &kube::Client, chart: &Value, status: Value) -> Result<(), String> {
    if chart["status"] == status {
        return Ok(());
    }
    let api = super::dynamic_api(client, &helm_chart_resource(), Some(NS));
    super::replace_status(&api, s(chart, "/metadata/name"), status)
        .await
        .map_err(|e| e.to_string())
}

async fn reconcile(
    client: &kube::Client,
    node: &NodeHandle,
    chart: &Value,
    installed: &mut HashMap<String, String>,
) -> Result<(), String> {
    let spec = &chart["spec"];
    if s(spec, "/chart").is_empty() || !chart["metadata"]["deletionTimestamp"].is_null() {
        return Ok(());
    }
    let name = s(chart, "/metadata/name").to_string();
    let uid = s(chart, "/metadata/uid").to_string();
    if !matches!(s(spec, "/helmVersion"), "" | "v3") {
        let status = json!({"conditions": [
            condition("JobCreated", "False", "", ""),
            condition("Failed", "True", "Unsupported version", "Only Helm v3 charts are supported")]});
        return write_status(client, chart, status).await;
    }
    let values = s(spec, "/valuesContent");
    let mut secret_data = serde_json::Map::new();
    if !values.is_empty() {
        secret_data.insert(
            "HelmChartValuesContent".into(),
            json_of(&k8s_openapi::ByteString(values.as_bytes().to_vec())),
        );
    }
    let configs = super::dynamic_api(client, &helm_chart_config_resource(), Some(NS));
    let config = configs
        .get_opt(&name)
        .await
        .map_err(|e| format!("HelmChartConfig {name}: {e}"))?
        .map(|c| json_of(&c));
    let config_values = config
        .as_ref()
        .map(|c| s(c, "/spec/valuesContent").to_string())
        .unwrap_or_default();
    if !config_values.is_empty() {
        secret_data.insert(
            "HelmChartConfigValuesContent".into(),
            json_of(&k8s_openapi::ByteString(config_values.as_bytes().to_vec())),
        );
    }
    // hashObjects: key then value of each object's data, keys sorted (ConfigMap first, then the
    // Secret, whose data the unstructured converter holds base64-encoded).
    let mut hasher = sha2::Sha256::new();
    for (k, v) in &secret_data {
        hasher.update(k.as_bytes());
        hasher.update(v.as_str().unwrap_or_default().as_bytes());
    }
    let hash = format!(
        "SHA256={}",
        hasher.finalize().iter().map(|b| format!("{b:02X}")).collect::<String>()
    );
    let job_name = format!("helm-install-{name}");
    let sa = format!("helm-{name}");
    let objects = [
        json!({"apiVersion": "v1", "kind": "Secret", "type": "helmcharts.helm.cattle.io/values",
            "metadata": {"name": format!("chart-values-{name}"), "namespace": NS, "ownerReferences": owner(chart)},
            "data": secret_data}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("chart-content-{name}"), "namespace": NS, "ownerReferences": owner(chart)}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": true,
            "metadata": {"name": sa, "namespace": NS, "ownerReferences": owner(chart)}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("helm-{NS}-{name}")},
            "roleRef": {"kind": "ClusterRole", "apiGroup": "rbac.authorization.k8s.io", "name": "cluster-admin"},
            "subjects": [{"name": sa, "kind": "ServiceAccount", "namespace": NS}]}),
    ];
    for o in &objects {
        super::super::apply_json(client, o, MANAGER)
            .await
            .map_err(|e| format!("{} {}: {e}", s(o, "/kind"), s(o, "/metadata/name")))?;
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let live = jobs.get_opt(&job_name).await.map_err(|e| e.to_string())?;
    let live = live.map(|j| json_of(&j));
    let outdated = live.as_ref().is_some_and(|j| {
        j.pointer(&format!(
            "/spec/template/metadata/annotations/{}",
            HASH.replace('/', "~1")
        ))
        .and_then(Value::as_str)
            != Some(hash.as_str())
    });
    if outdated {
        let _ = jobs.delete(&job_name, &DeleteParams::foreground()).await;
        installed.remove(&uid);
        return Ok(());
    }
    let target = match s(spec, "/targetNamespace") {
        "" => NS.to_string(),
        t => t.to_string(),
    };
    let repo = s(spec, "/repo").to_string();
    let chart_name = s(spec, "/chart").to_string();
    let version = s(spec, "/version").to_string();
    let found = charts::lookup(&repo, &chart_name, &version);
    if live.is_none() {
        // The program in the Job's pod: `helm install` fails when the chart cannot be found.
        match &found {
            Ok(_) => node.unscript(NS, &format!("{job_name}-")),
            Err(_) => node.script_exit(NS, &format!("{job_name}-"), 1),
        }
        let job = job_json(chart, &job_name, &sa, &target, &hash, !config_values.is_empty());
        let job: Job = serde_json::from_value(job).map_err(|e| e.to_string())?;
        match jobs.create(&PostParams::default(), &job).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(format!("create Job {job_name}: {e}")),
        }
    }
    let status = json!({"jobName": job_name, "conditions": [
        condition("JobCreated", "True", "Job created", &format!("Applying HelmChart using Job {NS}/{job_name}")),
        condition("Failed", "False", "", "")]});
    write_status(client, chart, status).await?;
    let succeeded = live
        .as_ref()
        .and_then(|j| j.pointer("/status/succeeded"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
        > 0;
    if let (true, Ok(known)) = (succeeded, found)
        && installed.get(&uid) != Some(&hash)
    {
        // helm -f values-0-… -f values-1-…: the HelmChartConfig's values over the chart's.
        let parse = |text: &str, what: &str| -> Result<Value, String> {
            if text.is_empty() {
                Ok(json!({}))
            } else {
                serde_saphyr::from_str(text).map_err(|e| format!("{what}: {e}"))
            }
        };
        let mut values = parse(values, "valuesContent")?;
        charts::merge(&mut values, &parse(&config_values, "HelmChartConfig valuesContent")?);
        charts::install(client, known, &name, &target, &values).await?;
        installed.insert(uid, hash);
    }
    Ok(())
}

/// The Job as `job()` builds it (chart.go, v0.16.17), without the bootstrap and proxy parts.
fn job_json(chart: &Value, job_name: &str, sa: &str, target: &str, hash: &str, config_values: bool) -> Value {
    let spec = &chart["spec"];
    let name = s(chart, "/metadata/name");
    let repo = s(spec, "/repo");
    let chart_ref = if repo.is_empty() {
        s(spec, "/chart").to_string()
    } else {
        format!("{name}/{}", s(spec, "/chart"))
    };
    let env = |k: &str, v: &str| json!({"name": k, "value": v});
    let b = |p: &str| spec.pointer(p).and_then(Value::as_bool).unwrap_or(false).to_string();
    let mut envs = vec![
        env("NAME", name),
        env("VERSION", s(spec, "/version")),
        env("REPO", repo),
        env("HELM_DRIVER", "secret"),
        env("CHART_NAMESPACE", s(chart, "/metadata/namespace")),
        env("CHART", &chart_ref),
        env("HELM_VERSION", s(spec, "/helmVersion")),
        env("TARGET_NAMESPACE", target),
        env("AUTH_PASS_CREDENTIALS", &b("/authPassCredentials")),
        env("INSECURE_SKIP_TLS_VERIFY", &b("/insecureSkipTLSVerify")),
        env("PLAIN_HTTP", &b("/plainHTTP")),
    ];
    if let Some(t) = spec.get("timeout").and_then(Value::as_str) {
        envs.push(env("TIMEOUT", t));
    }
    envs.push(env(
        "FAILURE_POLICY",
        match s(spec, "/failurePolicy") {
            "" => "reinstall",
            f => f,
        },
    ));
    // args(): install, --namespace, --create-namespace, --version (no `set` here).
    let mut args = vec![json!("install")];
    if !s(spec, "/targetNamespace").is_empty() {
        args.push(json!("--namespace"));
        args.push(json!(target));
    }
    if spec["createNamespace"].as_bool() == Some(true) {
        args.push(json!("--create-namespace"));
    }
    if spec["takeOwnership"].as_bool() == Some(true) {
        args.push(json!("--take-ownership"));
    }
    if spec["version"].as_str().is_some_and(|v| !v.is_empty()) {
        args.push(json!("--version"));
        args.push(spec["version"].clone());
    }
    let mem = |n: &str| json!({"name": n, "emptyDir": {"medium": "Memory"}});
    let mut items = Vec::new();
    if !s(spec, "/valuesContent").is_empty() {
        items.push(json!({"key": "HelmChartValuesContent", "path": "values-0-000-HelmChart-ValuesContent.yaml"}));
    }
    if config_values {
        items.push(
            json!({"key": "HelmChartConfigValuesContent", "path": "values-1-000-HelmChartConfig-ValuesContent.yaml"}),
        );
    }
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name, "namespace": NS, "labels": {LABEL: name}, "ownerReferences": owner(chart)},
        "spec": {"backoffLimit": 1000, "template": {
            "metadata": {"labels": {LABEL: name}, "annotations": {HASH: hash}},
            "spec": {
                "restartPolicy": "OnFailure", "serviceAccountName": sa,
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "helm", "image": JOB_IMAGE, "imagePullPolicy": "IfNotPresent",
                    "args": args, "env": envs,
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true},
                    "volumeMounts": [
                        {"name": "klipper-helm", "mountPath": "/home/klipper-helm/.helm"},
                        {"name": "klipper-cache", "mountPath": "/home/klipper-helm/.cache"},
                        {"name": "klipper-config", "mountPath": "/home/klipper-helm/.config"},
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "values", "mountPath": "/config"},
                        {"name": "content", "mountPath": "/chart"}]}],
                "volumes": [mem("klipper-helm"), mem("klipper-cache"), mem("klipper-config"), mem("tmp"),
                    {"name": "values", "projected": {"sources": [{"secret": {"name": format!("chart-values-{name}"),
                        "items": items}}]}},
                    {"name": "content", "configMap": {"name": format!("chart-content-{name}")}}],
            }}},
    })
}
