//! The cluster calls the engine makes, each one careful: a discovery cache (kinds → resources,
//! refreshed when CRDs appear), retries with backoff for 429 (honouring the server's
//! retry-after) and 5xx, server-side apply of one object with its outcome (a Job whose immutable
//! pod template changed, or that failed before, is replaced), and the mapping of API errors to
//! the engine's [`ApplyError`](super::engine::ApplyError).

use ::kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use ::kube::core::{ApiResource, GroupVersion};
use ::kube::discovery::{ApiCapabilities, Scope};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::engine::{ApplyError, ApplyProgress, Outcome};

/// A kind the cluster serves.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

type GroupResources = Arc<Vec<(ApiResource, ApiCapabilities)>>;

/// Discovery results per `apiVersion`, fetched once and dropped when CRDs change a group.
pub struct Discovery {
    client: ::kube::Client,
    cache: Mutex<HashMap<String, Option<GroupResources>>>,
}

impl Discovery {
    pub fn new(client: ::kube::Client) -> Self {
        Discovery {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The resource serving `kind` at `api_version`, or None when the cluster does not serve it.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<Option<Resolved>, ::kube::Error> {
        let cached = self.cache.lock().ok().and_then(|c| c.get(api_version).cloned());
        let resources = match cached {
            Some(r) => r,
            None => {
                let fetched = self.fetch(api_version).await?;
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(api_version.to_string(), fetched.clone());
                }
                fetched
            }
        };
        Ok(resources.and_then(|list| {
            list.iter().find(|(ar, _)| ar.kind == kind).map(|(ar, caps)| Resolved {
                resource: ar.clone(),
                namespaced: caps.scope == Scope::Namespaced,
            })
        }))
    }

    async fn fetch(&self, api_version: &str) -> Result<Option<GroupResources>, ::kube::Error> {
        let Ok(gv) = api_version.parse::<GroupVersion>() else {
            return Ok(None);
        };
        let result = retry(|| ::kube::discovery::pinned_group(&self.client, &gv)).await;
        match result {
            Ok(group) => Ok(Some(Arc::new(group.versioned_resources(&gv.version)))),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forget what is known about `api_version` (a CRD for it just became Established).
    pub fn invalidate(&self, api_version: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(api_version);
        }
    }

    /// The served version of a group's kind, for objects the stack no longer names (pruning).
    pub async fn resolve_group_kind(&self, group: &str, kind: &str) -> Result<Option<Resolved>, ::kube::Error> {
        let result = retry(|| ::kube::discovery::oneshot::group(&self.client, group)).await;
        match result {
            Ok(g) => Ok(g.recommended_kind(kind).map(|(ar, caps)| Resolved {
                resource: ar,
                namespaced: caps.scope == Scope::Namespaced,
            })),
            Err(::kube::Error::Discovery(_)) => Ok(None),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The typed API for one resource in one namespace (or cluster-wide).
pub fn api_for(client: &::kube::Client, r: &Resolved, namespace: Option<&str>) -> Api<DynamicObject> {
    match (r.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &r.resource),
        (true, None) => Api::all_with(client.clone(), &r.resource),
        (false, _) => Api::all_with(client.clone(), &r.resource),
    }
}

pub fn is_status(e: &::kube::Error, code: u16) -> bool {
    matches!(e, ::kube::Error::Api(s) if s.code == code)
}

/// How long to wait before attempt `attempt` (0-based) after error `e`, or None to give up.
pub fn retry_delay(e: &::kube::Error, attempt: u32) -> Option<Duration> {
    const ATTEMPTS: u32 = 8;
    if attempt + 1 >= ATTEMPTS {
        return None;
    }
    let backoff = Duration::from_millis(50u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(2));
    match e {
        ::kube::Error::Api(s) if s.code == 429 => {
            let server = s
                .details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|&s| s > 0)
                .map(|s| Duration::from_secs(u64::from(s).min(10)));
            Some(server.unwrap_or(backoff))
        }
        ::kube::Error::Api(s) if matches!(s.code, 500 | 502 | 503 | 504) => Some(backoff),
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) | ::kube::Error::ReadEvents(_) => Some(backoff),
        _ => None,
    }
}

/// How long a call keeps retrying a server that does not answer at all.
pub const UNANSWERED_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `f` until it succeeds, retrying 429s and server errors with backoff.
pub async fn retry<T, F, Fut>(f: F) -> Result<T, ::kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    retry_if(|_| true, f).await
}

/// [`retry`], for errors `worth` accepts only; others are returned at once.
pub async fn retry_if<T, F, Fut>(worth: impl Fn(&::kube::Error) -> bool, mut f: F) -> Result<T, ::kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        let result = f().await;
        // A server that does not answer is said (where the caller listens) every 12 s of it.
        match &result {
            Err(e) if super::reach::is_unanswered(e) => super::reach::call_unanswered(),
            _ => super::reach::call_answered(),
        }
        match result {
            Ok(v) => return Ok(v),
            Err(e) if !worth(&e) => return Err(e),
            Err(e) => match retry_delay(&e, attempt) {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                // A server that stopped answering (restarting) gets longer than one that
                // answers with errors; `apply` checked that it answered before it began.
                None if super::reach::is_unanswered(&e) && started.elapsed() < UNANSWERED_PATIENCE => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                None => return Err(e),
            },
        }
    }
}

/// The field manager and field of a server-side apply conflict (409), from the Status details
/// (`conflict with "helm" using apps/v1`, field `.spec.replicas`) or, failing that, its message.
pub fn conflict_of(e: &::kube::Error) -> Option<(String, String)> {
    let ::kube::Error::Api(s) = e else { return None };
    if s.code != 409 {
        return None;
    }
    let manager_in = |text: &str| -> Option<String> {
        let start = ["conflict with \"", "conflicts with \""]
            .iter()
            .find_map(|p| text.find(p).map(|i| i + p.len()))?;
        let rest = &text[start..];
        rest.find('"').map(|end| rest[..end].to_string())
    };
    let causes = s.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
    for c in causes {
        if let Some(m) = manager_in(&c.message) {
            return Some((m, c.field.clone()));
        }
    }
    let manager = manager_in(&s.message)?;
    // "…conflict with \"x\" using apps/v1: .spec.replicas" or a "- .field" list on later lines.
    let field = s
        .message
        .lines()
        .find_map(|l| l.trim().strip_prefix("- ").map(str::to_string))
        .or_else(|| s.message.rsplit_once(": ").map(|(_, f)| f.trim().to_string()))
        .filter(|f| f.starts_with('.'))
        .unwrap_or_default();
    Some((manager, field))
}

/// A short description of an API error, without request bodies.
pub fn describe(e: &::kube::Error) -> String {
    match e {
        ::kube::Error::Api(s) => {
            let mut text = format!("{} {}", s.code, s.reason);
            if !s.message.is_empty() {
                text.push_str(&format!(": {}", s.message));
            }
            text
        }
        other => other.to_string(),
    }
}

/// Maps an error from a call about `object` to the engine's error.
pub fn api_error(object: &str, e: ::kube::Error) -> ApplyError {
    if let Some((manager, field)) = conflict_of(&e) {
        return ApplyError::Conflict {
            object: object.to_string(),
            manager,
            field,
        };
    }
    match e {
        ::kube::Error::Api(_) => ApplyError::Api {
            object: object.to_string(),
            message: describe(&e),
        },
        other => ApplyError::Network {
            message: format!("{object}: {other}"),
        },
    }
}

fn resource_version(obj: &DynamicObject) -> Option<String> {
    obj.metadata.resource_version.clone()
}

/// The API for `value`'s resource and namespace, and its name.
fn api_and_name(client: &::kube::Client, r: &Resolved, value: &Value) -> (Api<DynamicObject>, String) {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ns = value.pointer("/metadata/namespace").and_then(Value::as_str);
    (api_for(client, r, ns), name)
}

/// The API for `value`'s resource and namespace, its name, and the live object (if any).
async fn live_object(
    client: &::kube::Client,
    r: &Resolved,
    display: &str,
    value: &Value,
) -> Result<(Api<DynamicObject>, String, Option<DynamicObject>), ApplyError> {
    let (api, name) = api_and_name(client, r, value);
    let live = retry(|| api.get_opt(&name)).await.map_err(|e| api_error(display, e))?;
    Ok((api, name, live))
}

/// What is known of an object before it is applied.
#[derive(Debug, Clone)]
pub enum Known {
    /// Nothing: read it first.
    Unknown,
    /// It does not exist.
    Absent,
    /// As listed a moment ago.
    Live(Box<DynamicObject>),
}

/// The live objects of one resource in one namespace (or cluster-wide), read with at most two
/// lists instead of one GET per object: the members carrying `selector` in full, then, if some
/// of `names` were not among them, the names of everything there (metadata only), so that an
/// object not listed is known to be absent.
#[derive(Debug, Default)]
pub struct Prefetched {
    members: HashMap<String, DynamicObject>,
    /// All names there, when the metadata list was needed; None when every name was a member.
    all: Option<std::collections::HashSet<String>>,
}

impl Prefetched {
    pub async fn read(
        client: &::kube::Client,
        r: &Resolved,
        namespace: Option<&str>,
        selector: &str,
        names: &[&str],
    ) -> Result<Prefetched, ::kube::Error> {
        let api = api_for(client, r, namespace);
        let lp = ::kube::api::ListParams::default().labels(selector);
        let list = retry(|| api.list(&lp)).await?;
        let members: HashMap<String, DynamicObject> = list
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name.clone().map(|n| (n, o)))
            .collect();
        let mut all = None;
        if names.iter().any(|n| !members.contains_key(*n)) {
            let everything = ::kube::api::ListParams::default();
            let meta = retry(|| api.list_metadata(&everything)).await?;
            all = Some(meta.items.into_iter().filter_map(|o| o.metadata.name).collect());
        }
        Ok(Prefetched { members, all })
    }

    pub fn known(&self, name: &str) -> Known {
        if let Some(o) = self.members.get(name) {
            return Known::Live(Box::new(o.clone()));
        }
        match &self.all {
            Some(all) if !all.contains(name) => Known::Absent,
            _ => Known::Unknown,
        }
    }
}

/// Server-side applies one object and says whether it was created, changed or left as it was.
/// An object the apply would not change ([`apply_is_noop`](super::noop::apply_is_noop), judged
/// from the live object read first) is not written at all.
///
/// A Job is one run of its pod template, and the API server refuses to change that template
/// (422 `spec.template: ... field is immutable`). So a Job whose template changed (another model,
/// another image) is deleted, gone for good, and applied again; so is a Job that failed on an
/// earlier run, so that running kstrap again runs it again. Both count as configured.
pub async fn apply_one(
    client: &::kube::Client,
    r: &Resolved,
    display: &str,
    value: &Value,
    params: &PatchParams,
) -> Result<Outcome, ApplyError> {
    apply_known(client, r, display, value, params, Known::Unknown, &super::NoProgress).await
}

/// [`apply_one`], with what is already known of the live object (read first when `Unknown`).
pub async fn apply_known(
    client: &::kube::Client,
    r: &Resolved,
    display: &str,
    value: &Value,
    params: &PatchParams,
    known: Known,
    progress: &dyn ApplyProgress,
) -> Result<Outcome, ApplyError> {
    let (api, name, before) = match known {
        Known::Unknown => live_object(client, r, display, value).await?,
        Known::Absent => {
            let (api, name) = api_and_name(client, r, value);
            (api, name, None)
        }
        Known::Live(live) => {
            let (api, name) = api_and_name(client, r, value);
            (api, name, Some(*live))
        }
    };
    let name = name.as_str();
    // A claim the stack sizes otherwise keeps its size where the server would refuse the change.
    let kept_claim;
    let value = match before.as_ref().filter(|_| is_claim(r)) {
        Some(live) => match kept_claim_size(client, live, value).await {
            Some((kept, why)) => {
                progress.note(display, &why);
                kept_claim = kept;
                &kept_claim
            }
            None => value,
        },
        None => value,
    };
    if let Some(live) = before.as_ref().filter(|_| is_volume(r))
        && let Some(message) = free_released_volume(&api, name, live).await
    {
        progress.note(display, &message);
    }
    // No write for an object the apply would leave as it is (a failed Job is replaced below).
    let manager = params.field_manager.as_deref().unwrap_or_default();
    if let Some(live) = &before
        && !(is_job(r) && job_failed(live))
        && serde_json::to_value(live).is_ok_and(|live| super::noop::apply_is_noop(&live, value, manager))
    {
        return Ok(Outcome::Unchanged);
    }
    let patch = Patch::Apply(value);
    let apply = || async { retry(|| api.patch(name, params, &patch)).await };
    if let Some(live) = before.as_ref().filter(|b| is_job(r) && job_failed(b)) {
        replace_job(&api, name, live, display).await?;
        apply().await.map_err(|e| api_error(display, e))?;
        return Ok(Outcome::Configured);
    }
    let after = match apply().await {
        Ok(after) => after,
        Err(e) if is_job(r) && template_immutable(&e) => {
            let Some(live) = &before else {
                return Err(api_error(display, e));
            };
            replace_job(&api, name, live, display).await?;
            apply().await.map_err(|e| api_error(display, e))?;
            return Ok(Outcome::Configured);
        }
        Err(e) => return Err(api_error(display, e)),
    };
    Ok(match before {
        None => Outcome::Created,
        Some(b) if resource_version(&b) == resource_version(&after) || same_but_version(&b, &after) => {
            Outcome::Unchanged
        }
        Some(_) => Outcome::Configured,
    })
}

/// Whether two versions of an object differ in nothing but their resourceVersion. The API server
/// can store an apply that changes nothing as a new version: kube-apiserver v1.36 does so for a
/// PersistentVolumeClaim the first time it is applied again after it was created (the stored
/// object is re-encoded), which is not a change kstrap made.
fn same_but_version(before: &DynamicObject, after: &DynamicObject) -> bool {
    let strip = |o: &DynamicObject| {
        let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
        if let Some(m) = v.pointer_mut("/metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        v
    };
    strip(before) == strip(after)
}

/// How long a deleted Job may take to disappear before kstrap gives up replacing it. Without
/// finalizers the API server removes it at once (its pods go in the background).
const JOB_GONE_TIMEOUT: Duration = Duration::from_secs(120);

fn is_claim(r: &Resolved) -> bool {
    r.resource.group.is_empty() && r.resource.kind == "PersistentVolumeClaim"
}

/// `value` asking for the live claim's size, and why, when the server would refuse the size the
/// stack asks for (see [`super::claims`]); None when the stack's size is applied.
async fn kept_claim_size(client: &::kube::Client, live: &DynamicObject, value: &Value) -> Option<(Value, String)> {
    let live = serde_json::to_value(live).ok()?;
    let change = super::claims::size_change(&live, value)?;
    let expands = match (&change.class, change.grow && change.bound) {
        (Some(class), true) => {
            let api: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client.clone());
            // A class that cannot be read is taken as one that does not expand: the claim keeps
            // its size rather than the apply failing.
            retry(|| api.get_opt(class))
                .await
                .ok()
                .flatten()
                .and_then(|c| c.allow_volume_expansion)
                .unwrap_or(false)
        }
        _ => false,
    };
    let why = super::claims::keep_reason(&change, expands)?;
    Some((super::claims::with_size(value, &change.live), why))
}

fn is_volume(r: &Resolved) -> bool {
    r.resource.group.is_empty() && r.resource.kind == "PersistentVolume"
}

/// A PersistentVolume of the stack (a hand-made one, reclaim policy Retain) whose claim was
/// deleted (its namespace went) stays `Released`, still naming the deleted claim in
/// `spec.claimRef`, and the persistent-volume controller never binds it to a new claim
/// (k8s.io/kubernetes v1.36 pkg/controller/volume/persistentvolume/pv_controller.go: a volume
/// whose claimRef uid names no claim is not available; "Retain ... the volume is considered
/// released ... not yet available for another claim", Kubernetes docs, Persistent Volumes,
/// Reclaiming). Applying the stack again would wait for the claim forever. As an administrator
/// does, kstrap clears the claimRef of a Released volume it applies, so that the stack's claim
/// binds it again, with the data kept. Returns what was done, to be said.
async fn free_released_volume(api: &Api<DynamicObject>, name: &str, live: &DynamicObject) -> Option<String> {
    let phase = live.data.pointer("/status/phase").and_then(Value::as_str);
    let claim = live.data.pointer("/spec/claimRef")?;
    if phase != Some("Released") {
        return None;
    }
    let claim = format!(
        "{}/{}",
        claim.get("namespace").and_then(Value::as_str).unwrap_or_default(),
        claim.get("name").and_then(Value::as_str).unwrap_or_default()
    );
    // Only if the volume is still as read (another writer wins).
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": live.metadata.resource_version},
        "spec": {"claimRef": null},
    });
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    match retry(|| api.patch(name, &params, &patch)).await {
        Ok(_) => Some(format!(
            "was Released (its claim {claim} was deleted): its claim reference is cleared so that the stack's claim binds it again, with its data"
        )),
        Err(_) => None,
    }
}

fn is_job(r: &Resolved) -> bool {
    r.resource.group == "batch" && r.resource.kind == "Job"
}

/// Whether a live Job has failed (`Failed=True`: backoff limit or deadline reached).
fn job_failed(job: &DynamicObject) -> bool {
    job.data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Failed")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Whether the API server refused an update because it changes a Job's pod template:
/// 422 Invalid, `Job.batch "x" is invalid: spec.template: Invalid value: ...: field is immutable`.
pub fn template_immutable(e: &::kube::Error) -> bool {
    let ::kube::Error::Api(s) = e else { return false };
    let causes = s.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
    let names_template =
        s.message.contains("spec.template") || causes.iter().any(|c| c.field.starts_with("spec.template"));
    let immutable =
        s.message.contains("field is immutable") || causes.iter().any(|c| c.message.contains("field is immutable"));
    s.code == 422 && names_template && immutable
}

/// Deletes the Job `live` (its pods in the background) and waits, watching it, until that Job
/// (by uid) is gone, so that applying it again creates a new one.
async fn replace_job(
    api: &Api<DynamicObject>,
    name: &str,
    live: &DynamicObject,
    display: &str,
) -> Result<(), ApplyError> {
    use ::kube::runtime::wait::{await_condition, conditions};
    let uid = live.metadata.uid.clone().unwrap_or_default();
    let background = DeleteParams::background();
    match retry(|| api.delete(name, &background)).await {
        Ok(_) => {}
        Err(e) if is_status(&e, 404) => return Ok(()),
        Err(e) => return Err(api_error(display, e)),
    }
    let gone = await_condition(api.clone(), name, conditions::is_deleted(&uid));
    match tokio::time::timeout(JOB_GONE_TIMEOUT, gone).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ApplyError::Network {
            message: format!("{display}: watching the old Job go to replace it: {e}"),
        }),
        Err(_) => Err(ApplyError::Api {
            object: display.to_string(),
            message: format!(
                "deleted to replace it (its pod template changed, or it failed before), but it is still there after {} s; see `kubectl describe` for finalizers holding it",
                JOB_GONE_TIMEOUT.as_secs()
            ),
        }),
    }
}

/// For `--dry-run`: what applying would do, judged from the live object without writing. An
/// object whose every field already has the wanted value is unchanged.
pub async fn dry_run_one(
    client: &::kube::Client,
    r: &Resolved,
    display: &str,
    value: &Value,
) -> Result<Outcome, ApplyError> {
    let (_, _, live) = live_object(client, r, display, value).await?;
    Ok(match live {
        None => Outcome::Created,
        // Replaced when applied (see `apply_one`).
        Some(live) if is_job(r) && job_failed(&live) => Outcome::Configured,
        Some(live) => {
            let live = serde_json::to_value(&live).unwrap_or(Value::Null);
            if contains(&live, value) {
                Outcome::Unchanged
            } else {
                Outcome::Configured
            }
        }
    })
}

/// Whether `have` holds every field of `want` with the same value (lists compared whole).
pub fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, wv)| h.get(k).is_some_and(|hv| contains(hv, wv))),
        (Value::Array(h), Value::Array(w)) => h.len() == w.len() && h.iter().zip(w).all(|(a, b)| contains(a, b)),
        (h, w) => h == w,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::kube::core::{Status, response::StatusDetails};
    use serde_json::json;

    fn details(v: Value) -> StatusDetails {
        serde_json::from_value(v).unwrap()
    }

    fn api(code: u16, message: &str) -> ::kube::Error {
        ::kube::Error::Api(Status::failure(message, "x").with_code(code).boxed())
    }

    #[test]
    fn retries_429_and_5xx_but_not_client_errors() {
        assert!(retry_delay(&api(500, ""), 0).is_some());
        assert!(retry_delay(&api(503, ""), 3).is_some());
        assert!(retry_delay(&api(429, ""), 0).is_some());
        assert!(retry_delay(&api(404, ""), 0).is_none());
        assert!(retry_delay(&api(409, ""), 0).is_none());
        assert!(retry_delay(&api(422, ""), 0).is_none());
        assert!(retry_delay(&api(500, ""), 7).is_none(), "gives up after 8 attempts");
        // Backoff grows and is capped.
        let d0 = retry_delay(&api(500, ""), 0).unwrap();
        let d3 = retry_delay(&api(500, ""), 3).unwrap();
        assert!(d3 > d0);
        assert!(retry_delay(&api(500, ""), 6).unwrap() <= Duration::from_secs(2));
    }

    #[test]
    fn retry_after_from_the_server_wins() {
        let s = Status::failure("slow down", "TooManyRequests")
            .with_code(429)
            .with_details(details(json!({"retryAfterSeconds": 2})));
        let e = ::kube::Error::Api(s.boxed());
        assert_eq!(retry_delay(&e, 0), Some(Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn retry_runs_until_success_or_a_final_error() {
        let mut calls = 0;
        let r: Result<u8, _> = retry(|| {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(api(500, "boom")) } else { Ok(7) } }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: Result<u8, _> = retry(|| {
            calls += 1;
            async { Err(api(403, "forbidden")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn conflicts_name_the_manager_and_field() {
        let s = Status::failure(
            "Apply failed with 1 conflict: conflict with \"helm\" using apps/v1: .spec.replicas",
            "Conflict",
        )
        .with_code(409)
        .with_details(details(json!({"causes": [{
            "reason": "FieldManagerConflict",
            "message": "conflict with \"helm\" using apps/v1",
            "field": ".spec.replicas"
        }]})));
        let e = ::kube::Error::Api(s.boxed());
        assert_eq!(conflict_of(&e), Some(("helm".into(), ".spec.replicas".into())));
        // Message only, single and multiple conflicts.
        let e = api(
            409,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .data.key",
        );
        assert_eq!(
            conflict_of(&e),
            Some(("kubectl-client-side-apply".into(), ".data.key".into()))
        );
        let e = api(
            409,
            "Apply failed with 2 conflicts: conflicts with \"kubectl\" using apps/v1:\n- .spec.replicas\n- .spec.template",
        );
        assert_eq!(conflict_of(&e), Some(("kubectl".into(), ".spec.replicas".into())));
        let e = api(409, "Operation cannot be fulfilled: the object has been modified");
        assert_eq!(conflict_of(&e), None);
        assert_eq!(conflict_of(&api(500, "conflict with \"x\"")), None);
        match api_error("ConfigMap/a -n d", api(409, "conflict with \"helm\" using v1: .data.x")) {
            ApplyError::Conflict { object, manager, field } => {
                assert_eq!(
                    (object.as_str(), manager.as_str(), field.as_str()),
                    ("ConfigMap/a -n d", "helm", ".data.x")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_job_template_change_is_recognised() {
        // kube-apiserver's answer (batch/validation, field.Invalid → "field is immutable").
        let real = Status::failure(
            "Job.batch \"ollama-model-pull\" is invalid: spec.template: Invalid value: core.PodTemplateSpec{ObjectMeta:v1.ObjectMeta{Name:\"\"}}: field is immutable",
            "Invalid",
        )
        .with_code(422)
        .with_details(details(json!({"name": "ollama-model-pull", "group": "batch", "kind": "Job",
            "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: core.PodTemplateSpec{}: field is immutable", "field": "spec.template"}]})));
        assert!(template_immutable(&::kube::Error::Api(real.boxed())));
        // The message alone is enough; the causes alone too.
        assert!(template_immutable(&api(
            422,
            "Job.batch \"x\" is invalid: spec.template: Invalid value: \"...\": field is immutable"
        )));
        let causes_only = Status::failure("Job.batch \"x\" is invalid", "Invalid")
            .with_code(422)
            .with_details(details(json!({"causes": [{"reason": "FieldValueInvalid",
                "message": "Invalid value: {}: field is immutable", "field": "spec.template.spec.containers"}]})));
        assert!(template_immutable(&::kube::Error::Api(causes_only.boxed())));
        // Other refusals are not.
        assert!(!template_immutable(&api(
            422,
            "Job.batch \"x\" is invalid: spec.parallelism: Invalid value: -1: must be greater than or equal to 0"
        )));
        assert!(!template_immutable(&api(
            422,
            "Service \"x\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.1\"}: field is immutable"
        )));
        assert!(!template_immutable(&api(409, "spec.template: field is immutable")));
    }

    #[test]
    fn failed_jobs_are_told_from_running_and_complete_ones() {
        let job = |conditions: Value| -> DynamicObject {
            serde_json::from_value(
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                "status": {"conditions": conditions}}),
            )
            .unwrap()
        };
        assert!(job_failed(&job(
            json!([{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}])
        )));
        assert!(!job_failed(&job(json!([{"type": "Complete", "status": "True"}]))));
        assert!(!job_failed(&job(json!([{"type": "Failed", "status": "False"}]))));
        assert!(!job_failed(&job(json!([]))));
    }

    #[test]
    fn contains_compares_wanted_fields_only() {
        let live = json!({"metadata": {"name": "a", "resourceVersion": "5", "labels": {"x": "1", "y": "2"}},
                          "data": {"k": "v"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}});
        assert!(contains(
            &live,
            &json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}})
        ));
        assert!(!contains(&live, &json!({"data": {"k": "w"}})));
        assert!(!contains(&live, &json!({"data": {"new": "v"}})));
        assert!(
            contains(&live, &json!({"spec": {"ports": [{"port": 80}]}})),
            "server defaults are fine"
        );
        assert!(!contains(
            &live,
            &json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}})
        ));
    }
}
