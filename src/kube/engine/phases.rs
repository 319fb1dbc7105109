//! The two write phases of the stack engine: applying a set of objects with bounded concurrency,
//! and pruning the ApplySet members that left the stack.

use ::kube::api::{Api, DeleteParams, DynamicObject, ListParams, PatchParams};
use futures::stream::{self, StreamExt};
use std::collections::{BTreeSet, HashMap};

use super::prepare::Prepared;
use super::{ApplyError, ApplyOptions, ApplyProgress, Outcome};
use crate::applyset::{self, ApplySet, GroupKind, Member};
use crate::kube::ops::{self, Discovery, Known, Prefetched, Resolved};

/// Applies `which` objects with bounded concurrency; resolves kinds not resolved yet.
#[allow(clippy::too_many_arguments)]
pub(super) async fn apply_phase(
    client: &::kube::Client,
    discovery: &Discovery,
    objs: &[Prepared],
    which: &[usize],
    resolved: &mut [Option<Resolved>],
    outcomes: &mut HashMap<usize, Outcome>,
    params: &PatchParams,
    opts: &ApplyOptions,
    selector: &str,
    progress: &dyn ApplyProgress,
) -> Result<(), ApplyError> {
    for &i in which {
        if resolved[i].is_none() {
            let o = &objs[i];
            let r = discovery
                .resolve(&o.api_version, &o.kind)
                .await
                .map_err(|e| ops::api_error(&o.display, e))?;
            resolved[i] = Some(r.ok_or_else(|| o.unknown_kind())?);
        }
    }
    let known = if opts.dry_run {
        HashMap::new()
    } else {
        prefetch(client, objs, which, resolved, selector).await
    };
    // Collected first: a lazy iterator of async blocks held across the awaits below makes this
    // future not `Send` for every lifetime (rustc #110338), which `kstrap up` needs.
    let jobs: Vec<_> = which
        .iter()
        .filter_map(|&i| resolved[i].clone().map(|r| (i, r)))
        .map(|(i, r)| {
            let o = &objs[i];
            let known = known.get(&i).cloned().unwrap_or(Known::Unknown);
            async move {
                let outcome = if opts.dry_run {
                    ops::dry_run_one(client, &r, &o.display, &o.value).await
                } else {
                    ops::apply_known(client, &r, &o.display, &o.value, params, known, progress).await
                };
                (i, outcome)
            }
        })
        .collect();
    let mut results = stream::iter(jobs).buffer_unordered(opts.concurrency.max(1));
    let mut first_error = None;
    while let Some((i, outcome)) = results.next().await {
        match outcome {
            Ok(outcome) => {
                progress.applied(&objs[i].display, outcome);
                outcomes.insert(i, outcome);
            }
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Objects of one resource and namespace that are worth one list instead of a GET each.
const PREFETCH_FROM: usize = 3;

/// What is known of `which` objects before applying them: where several share a resource and
/// namespace, read with [`Prefetched`] (two lists at most) instead of one GET each. A list that
/// fails leaves its objects unknown (each is then read on its own, with that call's errors).
async fn prefetch(
    client: &::kube::Client,
    objs: &[Prepared],
    which: &[usize],
    resolved: &[Option<Resolved>],
    selector: &str,
) -> HashMap<usize, Known> {
    let mut groups: HashMap<(String, Option<String>), Vec<usize>> = HashMap::new();
    for &i in which {
        if let Some(r) = &resolved[i] {
            let ns = if r.namespaced { objs[i].namespace.clone() } else { None };
            let key = (format!("{}/{}", r.resource.api_version, r.resource.plural), ns);
            groups.entry(key).or_default().push(i);
        }
    }
    let mut known = HashMap::new();
    for ((_, ns), members) in groups {
        let Some(r) = resolved[members[0]].as_ref().filter(|_| members.len() >= PREFETCH_FROM) else {
            continue;
        };
        let names: Vec<&str> = members.iter().map(|&i| objs[i].name.as_str()).collect();
        if let Ok(p) = Prefetched::read(client, r, ns.as_deref(), selector, &names).await {
            for &i in &members {
                known.insert(i, p.known(&objs[i].name));
            }
        }
    }
    known
}

/// Deletes the members of the ApplySet that are not in `keep`, in a safe order.
#[allow(clippy::too_many_arguments)]
pub(super) async fn prune(
    client: &::kube::Client,
    discovery: &Discovery,
    set: &ApplySet,
    gks: &BTreeSet<GroupKind>,
    namespaces: &BTreeSet<String>,
    keep: &BTreeSet<Member>,
    dry_run: bool,
    progress: &dyn ApplyProgress,
) -> Result<Vec<String>, ApplyError> {
    let selector = set.member_selector();
    let mut found = Vec::new();
    let mut apis: HashMap<GroupKind, Resolved> = HashMap::new();
    for gk in gks {
        let what = format!("listing {} to prune", gk.encode());
        let Some(r) = discovery
            .resolve_group_kind(&gk.group, &gk.kind)
            .await
            .map_err(|e| ops::api_error(&what, e))?
        else {
            // The kind is gone (its CRD was removed): nothing of it is left to prune.
            continue;
        };
        let scopes: Vec<Option<&str>> = if r.namespaced {
            namespaces.iter().map(|n| Some(n.as_str())).collect()
        } else {
            vec![None]
        };
        for ns in scopes {
            let api = ops::api_for(client, &r, ns);
            let lp = ListParams::default().labels(&selector);
            let list = ops::retry(|| api.list(&lp))
                .await
                .map_err(|e| ops::api_error(&what, e))?;
            for item in list.items {
                // Only what carries our label exactly (the server filtered; this is belt and braces).
                let ours = item
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(applyset::PART_OF_LABEL))
                    .is_some_and(|v| *v == set.id);
                if !ours {
                    continue;
                }
                found.push(Member {
                    group_kind: gk.clone(),
                    namespace: if r.namespaced {
                        item.metadata.namespace.clone()
                    } else {
                        None
                    },
                    name: item.metadata.name.clone().unwrap_or_default(),
                });
            }
        }
        apis.insert(gk.clone(), r);
    }
    let mut pruned = Vec::new();
    for m in applyset::to_prune(&found, keep) {
        let display = match &m.namespace {
            Some(ns) => format!("{}/{} -n {ns}", m.group_kind.kind, m.name),
            None => format!("{}/{}", m.group_kind.kind, m.name),
        };
        if !dry_run && let Some(r) = apis.get(&m.group_kind) {
            let api: Api<DynamicObject> = ops::api_for(client, r, m.namespace.as_deref());
            let dp = DeleteParams::background();
            match ops::retry(|| api.delete(&m.name, &dp)).await {
                Ok(_) => {}
                Err(e) if ops::is_status(&e, 404) => {}
                Err(e) => return Err(ops::api_error(&display, e)),
            }
        }
        progress.pruned(&display);
        pruned.push(display);
    }
    Ok(pruned)
}
