//! The API half of `kstrap status`: one round of reads (nodes, pods, the ClusterPolicy, the
//! ApplySet parents and their members, events where something is not ready), with errors that
//! say whether the API server answered at all.

use super::evaluate::label;
use super::*;

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No answer from the API server (connection refused, DNS, TLS, timeout).
    #[error("cannot reach the cluster's API server: {message}")]
    Unreachable { message: String },
    /// The API server answered with an error.
    #[error("{what}: {message}")]
    Api { what: String, message: String },
}

/// An error and its sources in one line, each cause once ("client error (Connect): tcp connect
/// error: Connection refused (os error 111)").
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        source = s.source();
    }
    parts.join(": ")
}

pub(super) fn status_error(what: &str, e: ::kube::Error) -> StatusError {
    match &e {
        ::kube::Error::Api(_) => StatusError::Api {
            what: what.to_string(),
            message: ops::describe(&e),
        },
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) => StatusError::Unreachable { message: chain(&e) },
        _ => StatusError::Api {
            what: what.to_string(),
            message: chain(&e),
        },
    }
}

/// Runs `f`, retrying only answers worth retrying (429 and 5xx, with `ops::retry_delay`'s
/// backoff). A server that does not answer at all is reported at once: a status is a snapshot,
/// and "is the cluster running?" should not take seconds to say.
async fn retry_api<T, F, Fut>(f: F) -> Result<T, ::kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    ops::retry_if(|e| matches!(e, ::kube::Error::Api(_)), f).await
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn list_all(
    client: &::kube::Client,
    ar: &ApiResource,
    namespace: Option<&str>,
    lp: &ListParams,
) -> Result<Vec<Value>, ::kube::Error> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    let list = retry_api(|| api.list(lp)).await?;
    Ok(list.items.into_iter().map(|o| to_value(o, ar)).collect())
}

async fn cluster_policy(client: &::kube::Client) -> Result<Option<Value>, ::kube::Error> {
    let ar = cluster_policy_resource();
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    // A missing CRD answers 404 like a missing object: both mean "not installed".
    match retry_api(|| api.get_opt(CLUSTER_POLICY)).await {
        Ok(found) => Ok(found.map(|o| to_value(o, &ar))),
        Err(e) if ops::is_status(&e, 404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The kstrap ApplySet parents in `kube-system`: (stack, what they record). Metadata only: the
/// parents are Secrets, and their data (none, but still) is never requested.
async fn parents(client: &::kube::Client) -> Result<Vec<(ApplySet, applyset::Recorded)>, ::kube::Error> {
    use k8s_openapi::api::core::v1::Secret;
    let api: Api<Secret> = Api::namespaced(client.clone(), applyset::PARENT_NAMESPACE);
    let lp = ListParams::default().labels(applyset::ID_LABEL);
    let list = retry_api(|| api.list_metadata(&lp)).await?;
    let mut out = Vec::new();
    for p in list.items {
        let name = p.metadata.name.clone().unwrap_or_default();
        let Some(stack) = name.strip_prefix("applyset-").filter(|s| !s.is_empty()) else {
            continue;
        };
        let set = ApplySet::for_stack(stack);
        let meta = json!({ "metadata": serde_json::to_value(&p.metadata).unwrap_or(Value::Null) });
        // Another tool's ApplySet, or a Secret that only looks like a parent: not a kstrap stack.
        if let Ok(recorded) = applyset::read_parent(&set, &meta) {
            out.push((set, recorded));
        }
    }
    Ok(out)
}

/// The members of one stack: objects of its recorded kinds in its recorded namespaces that carry
/// its part-of label. Kinds the cluster no longer serves (their CRD was removed) have none.
async fn members(
    client: &::kube::Client,
    discovery: &Discovery,
    resolved: &mut HashMap<GroupKind, Option<Resolved>>,
    set: &ApplySet,
    recorded: &applyset::Recorded,
) -> Result<Vec<Value>, StatusError> {
    let selector = set.member_selector();
    let lp = ListParams::default().labels(&selector);
    let mut lists = Vec::new();
    for gk in &recorded.group_kinds {
        if !resolved.contains_key(gk) {
            let r = discovery
                .resolve_group_kind(&gk.group, &gk.kind)
                .await
                .map_err(|e| status_error(&format!("discovering {}", gk.encode()), e))?;
            resolved.insert(gk.clone(), r);
        }
        let Some(Some(r)) = resolved.get(gk) else {
            continue;
        };
        let scopes: Vec<Option<String>> = if r.namespaced {
            recorded.namespaces.iter().cloned().map(Some).collect()
        } else {
            vec![None]
        };
        for ns in scopes {
            let r = r.clone();
            let lp = lp.clone();
            let what = format!("listing {} of stack {}", gk.encode(), set.name);
            // A Secret is ready once it exists: its metadata is all status needs, and its data
            // is never asked for.
            let metadata_only = gk.group.is_empty() && gk.kind == "Secret";
            lists.push(async move {
                let api = ops::api_for(client, &r, ns.as_deref());
                let items: Result<Vec<Value>, ::kube::Error> = if metadata_only {
                    retry_api(|| api.list_metadata(&lp)).await.map(|l| {
                        l.items
                            .into_iter()
                            .map(|o| metadata_object(&r.resource, &o.metadata))
                            .collect()
                    })
                } else {
                    retry_api(|| api.list(&lp))
                        .await
                        .map(|l| l.items.into_iter().map(|o| to_value(o, &r.resource)).collect())
                };
                items.map_err(|e| status_error(&what, e))
            });
        }
    }
    let found: Vec<Value> = try_join_all(lists).await?.into_iter().flatten().collect();
    // Only what carries our label exactly (the server filtered; this is belt and braces).
    Ok(found
        .into_iter()
        .filter(|m| label(m, applyset::PART_OF_LABEL) == Some(set.id.as_str()))
        .collect())
}

/// An object as its type and metadata alone (what a metadata-only list returns).
fn metadata_object(ar: &ApiResource, meta: &::kube::api::ObjectMeta) -> Value {
    json!({
        "apiVersion": ar.api_version,
        "kind": ar.kind,
        "metadata": serde_json::to_value(meta).unwrap_or(Value::Null),
    })
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Reads what the report needs. Nodes first: if the API server does not answer, that is the
/// error, before anything else is tried.
pub async fn gather(client: &::kube::Client) -> Result<Gathered, StatusError> {
    let nodes = list_all(
        client,
        &resource("", "v1", "Node", "nodes"),
        None,
        &ListParams::default(),
    )
    .await
    .map_err(|e| status_error("listing nodes", e))?;
    let lp = ListParams::default();
    let pods_ar = resource("", "v1", "Pod", "pods");
    let classes_ar = resource("storage.k8s.io", "v1", "StorageClass", "storageclasses");
    let (pods, cluster_policy, classes, parents) = futures::try_join!(
        async {
            list_all(client, &pods_ar, None, &lp)
                .await
                .map_err(|e| status_error("listing pods", e))
        },
        async {
            cluster_policy(client)
                .await
                .map_err(|e| status_error(&format!("reading ClusterPolicy {CLUSTER_POLICY}"), e))
        },
        async {
            // Without StorageClasses the PVC rule falls back to "Bound", as the waiter does.
            Ok(list_all(client, &classes_ar, None, &lp).await.unwrap_or_default())
        },
        async {
            parents(client).await.map_err(|e| {
                status_error(
                    &format!("listing ApplySet parents in {}", applyset::PARENT_NAMESPACE),
                    e,
                )
            })
        },
    )?;
    let ctx = Context {
        now_unix: now_unix(),
        ..context_from_storage_classes(&classes)
    };

    let discovery = Discovery::new(client.clone());
    let mut resolved = HashMap::new();
    let mut stacks = Vec::new();
    for (set, recorded) in &parents {
        let members = members(client, &discovery, &mut resolved, set, recorded).await?;
        let name = set.name.strip_prefix("applyset-").unwrap_or(&set.name).to_string();
        stacks.push(GatheredStack {
            name,
            applyset: set.id.clone(),
            members,
        });
    }

    // Events only where something is not ready; they explain, so failing to read them is no error.
    let event_ar = resource("", "v1", "Event", "events");
    let mut events = Vec::new();
    for ns in not_ready_namespaces(&stacks, &pods, &ctx) {
        let lp = ListParams::default().fields("type=Warning");
        events.extend(list_all(client, &event_ar, Some(&ns), &lp).await.unwrap_or_default());
    }

    Ok(Gathered {
        nodes,
        pods,
        cluster_policy,
        stacks,
        events,
        ctx,
    })
}
