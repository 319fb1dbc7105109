//! **Test double** of k0s's chart reconciler: k0sproject/k0s v1.35.3+k0s.0,
//! `pkg/component/controller/extensions_controller.go` (`ChartReconciler`), with the Chart type of
//! `pkg/apis/helm/v1beta1/chart_types.go` and Helm's install of `pkg/helm/helm.go`.
//!
//! It reconciles `helm.k0sproject.io/v1beta1 Chart`s in `kube-system` only
//! (`namespaceToWatch`), on creation and generation changes (`GenerationChangedPredicate`: a
//! status write does not trigger it):
//! - **the repository**: with `spec.repository` set, its `url` is used and the repository's name
//!   is `extractRepositoryIdentifier(chartName)`; without it, `extractAndLookupRepository`:
//!   the text of `chartName` before the first `/` names a repository that must be configured in
//!   k0s.yaml (`spec.extensions.helm.repositories`; none here, as kstrap writes none), else
//!   "repository '<name>' not found in cluster configuration"; a `chartName` without `/` that is
//!   not a local path is "invalid chart name …: expected format 'repository/chart' for non-OCI
//!   charts"; `oci://` charts need no configured repository. Such errors are returned as
//!   `can't lookup repository for chart "<chartName>": …`;
//! - **install** (`status.releaseName` empty) or **upgrade** (`chartNeedsUpgrade`: namespace,
//!   release name, version, values hash differ from the status, or status.error is set): Helm
//!   installs `<repo>/<chart>` at `spec.version` into `spec.namespace` (CreateNamespace) and waits
//!   (`Wait`, `WaitForJobs`) up to `spec.timeout` (default 10m) for the release's workloads;
//!   a failure is `can't reconcile installation for "<name>": <helm error>`;
//! - **status** (`updateStatus`, a Status().Update): on success `releaseName`, `version`,
//!   `appVersion`, `revision`, `namespace`, `updated`, `valuesHash` (sha256 of releaseName +
//!   values) and `error` cleared; on failure `error` (the message above), `updated`, `valuesHash`.
//!
//! Not played: the requeue with backoff after an error (the same error comes back until the spec
//! changes), repository Secrets (`configFrom`), the uninstall on deletion (only Charts k0s made
//! from k0s.yaml carry the finalizer), OCI registries.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::watcher;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::sync::Notify;

use super::{charts, json_of, k0s_chart_resource, notify_on, s};

const NS: &str = "kube-system";

pub async fn run(client: kube::Client) {
    let notify = Arc::new(Notify::new());
    let api = super::dynamic_api(&client, &k0s_chart_resource(), Some(NS));
    tokio::spawn(notify_on(api.clone(), watcher::Config::default(), notify.clone()));
    // Chart uid → generation last handled; uids with a reconcile in flight.
    let mut handled: HashMap<String, i64> = HashMap::new();
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        if let Ok(list) = api.list(&Default::default()).await {
            for chart in list.items {
                let chart = json_of(&chart);
                let uid = s(&chart, "/metadata/uid").to_string();
                let generation = chart["metadata"]["generation"].as_i64().unwrap_or(0);
                if handled.get(&uid) == Some(&generation) || !chart["metadata"]["deletionTimestamp"].is_null() {
                    continue;
                }
                if !busy.lock().map(|mut b| b.insert(uid.clone())).unwrap_or(false) {
                    continue;
                }
                handled.insert(uid.clone(), generation);
                let client = client.clone();
                let busy = busy.clone();
                tokio::spawn(async move {
                    if let Err(e) = reconcile(&client, &chart).await {
                        let _ = update_status(&client, &chart, None, Some(&e)).await;
                    }
                    if let Ok(mut b) = busy.lock() {
                        b.remove(&uid);
                    }
                });
            }
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// `extractRepositoryIdentifier`.
pub fn repository_identifier(chart_name: &str) -> String {
    if chart_name.starts_with('/') || chart_name.starts_with('.') {
        return String::new();
    }
    if let Some(rest) = chart_name.strip_prefix("oci://") {
        return rest.split('/').next().unwrap_or_default().to_string();
    }
    chart_name
        .split_once('/')
        .map(|(repo, _)| repo.to_string())
        .unwrap_or_default()
}

/// `extractAndLookupRepository` with no repositories in k0s.yaml: the repository URL, or the error.
fn lookup_repository(chart_name: &str) -> Result<Option<String>, String> {
    let id = repository_identifier(chart_name);
    if id.is_empty() {
        if chart_name.starts_with('/') || chart_name.starts_with('.') {
            return Ok(None);
        }
        return Err(format!(
            "invalid chart name \"{chart_name}\": expected format 'repository/chart' for non-OCI charts"
        ));
    }
    if chart_name.starts_with("oci://") {
        return Ok(None);
    }
    Err(format!("repository '{id}' not found in cluster configuration"))
}

/// `ChartSpec.HashValues`.
fn values_hash(chart: &Value) -> String {
    let mut h = sha2::Sha256::new();
    h.update(s(chart, "/spec/releaseName").as_bytes());
    h.update(s(chart, "/spec/values").as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn needs_upgrade(chart: &Value) -> bool {
    let st = &chart["status"];
    s(st, "/namespace") != s(chart, "/spec/namespace")
        || s(st, "/releaseName") != s(chart, "/spec/releaseName")
        || s(st, "/version") != s(chart, "/spec/version")
        || !s(st, "/error").is_empty()
        || s(st, "/valuesHash") != values_hash(chart)
}

/// Go's `time.ParseDuration` for the forms kstrap writes (`15m`, `10m0s`, `90s`, `1h`).
fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let c = rest.chars().next()?;
        if c.is_ascii_digit() {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total += n * unit;
        rest = &rest[1..];
    }
    if !num.is_empty() || total == 0 {
        return None;
    }
    Some(Duration::from_secs(total))
}

async fn reconcile(client: &kube::Client, chart: &Value) -> Result<(), String> {
    let name = s(chart, "/metadata/name");
    let chart_name = s(chart, "/spec/chartName");
    let repo_url = if let Some(repo) = chart["spec"]["repository"].as_object() {
        repo.get("url").and_then(Value::as_str).map(str::to_string)
    } else {
        lookup_repository(chart_name).map_err(|e| format!("can't lookup repository for chart \"{chart_name}\": {e}"))?
    };
    let installing = s(chart, "/status/releaseName").is_empty();
    if !installing && !needs_upgrade(chart) {
        return Ok(());
    }
    let what = if installing { "installation" } else { "upgrade" };
    let fail = |e: String| format!("can't reconcile {what} for \"{name}\": {e}");
    // Helm's locateChart: `<repo>/<chart>` in the added repository.
    let in_repo = chart_name.split_once('/').map_or(chart_name, |(_, c)| c);
    let repo_url = repo_url.unwrap_or_default();
    let known = charts::lookup(&repo_url, in_repo, s(chart, "/spec/version")).map_err(fail)?;
    let values: Value = match s(chart, "/spec/values") {
        "" => json!({}),
        v => serde_saphyr::from_str(v).map_err(|e| fail(format!("values: {e}")))?,
    };
    let namespace = s(chart, "/spec/namespace");
    let release = s(chart, "/spec/releaseName");
    let workloads = charts::install(client, known, release, namespace, &values)
        .await
        .map_err(fail)?;
    let timeout = parse_duration(s(chart, "/spec/timeout")).unwrap_or(Duration::from_secs(600));
    let deadline = tokio::time::Instant::now() + timeout;
    while !charts::ready(client, &workloads).await {
        if tokio::time::Instant::now() > deadline {
            return Err(fail("context deadline exceeded".into()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let revision = chart["status"]["revision"].as_i64().unwrap_or(0) + 1;
    let release_info = json!({"releaseName": release, "version": known.version, "appVersion": known.app_version,
        "revision": revision, "namespace": namespace});
    update_status(client, chart, Some(release_info), None).await
}

/// `updateStatus`: on the live object (it may have changed during the install).
async fn update_status(
    client: &kube::Client,
    chart: &Value,
    release: Option<Value>,
    err: Option<&str>,
) -> Result<(), String> {
    let api = super::dynamic_api(client, &k0s_chart_resource(), Some(NS));
    let name = s(chart, "/metadata/name");
    let live = api.get_status(name).await.map_err(|e| e.to_string())?;
    let mut status = json_of(&live)["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    if let Some(Value::Object(r)) = release {
        for (k, v) in r {
            status[k] = v;
        }
    }
    // Go's `time.Now().String()`.
    status["updated"] = json!(
        k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")
            .to_string()
    );
    match err {
        Some(e) => status["error"] = json!(e),
        None => {
            if let Some(o) = status.as_object_mut() {
                o.remove("error");
            }
        }
    }
    status["valuesHash"] = json!(values_hash(chart));
    super::replace_status(&api, name, status)
        .await
        .map_err(|e| e.to_string())
}
