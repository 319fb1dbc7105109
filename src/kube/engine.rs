//! The stack engine: apply a loaded stack to a cluster stage by stage with server-side apply,
//! wait until each stage is ready, then prune what left the stack — the library API behind
//! `kstrap apply` and the last phase of `kstrap up`.
//!
//! Order within a stage: CRDs and Namespaces, then (after those CRDs are Established and
//! discovery is refreshed) cluster-scoped objects, then namespaced ones; each phase applies with
//! bounded concurrency. Every object is labelled as a member of the stack's ApplySet
//! ([`applyset`](crate::applyset)); the parent records the kinds and namespaces before anything is
//! applied (so an interrupted run can still be pruned later) and is narrowed after pruning.
//! Errors carry what a person needs: the stage, each object not ready and why, or the other field
//! manager of a conflict. Progress goes through [`ApplyProgress`]; only the CLI prints.

use ::kube::api::PatchParams;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ops::{self, Discovery, Resolved};
use super::wait::{self, WaitOutcome, WaitSpec, WaitTarget};
use crate::applyset::{self, ApplySet, GroupKind, Member};
use crate::stack::Stack;

mod error;
mod options;
mod phases;
mod prepare;

pub use error::{ApplyError, client_from};
pub use options::{AppliedObject, ApplyOptions, ApplyProgress, ApplyReport, NoProgress, Outcome, StageReport};
use phases::{apply_phase, prune};
use prepare::{Prepared, crd_kinds, prepare};

/// Shared with the Ctrl-C handler: what is not done yet.
struct Left {
    stage: Mutex<String>,
    objects: Mutex<Vec<String>>,
    stages: Mutex<Vec<String>>,
}

impl Left {
    fn snapshot(&self) -> (String, Vec<String>) {
        let stage = self.stage.lock().map(|s| s.clone()).unwrap_or_default();
        let mut left: Vec<String> = self.objects.lock().map(|o| o.clone()).unwrap_or_default();
        if let Ok(stages) = self.stages.lock() {
            left.extend(stages.iter().map(|s| format!("stage {s}")));
        }
        (stage, left)
    }
}

/// Applies `stack` (plus `extra` Secrets in its first stage), waits for each stage, prunes.
/// Ctrl-C stops cleanly with what was left undone.
pub async fn apply_stack(
    client: ::kube::Client,
    stack: &Stack,
    extra: Vec<Value>,
    opts: &ApplyOptions,
    progress: &dyn ApplyProgress,
) -> Result<ApplyReport, ApplyError> {
    let left = Left {
        stage: Mutex::new(String::new()),
        objects: Mutex::new(Vec::new()),
        stages: Mutex::new(stack.stages.iter().map(|s| s.name.clone()).collect()),
    };
    // The calls' retries through a silent server are said as the waits' are.
    let run = super::reach::reporting_call_silence(run(client, stack, extra, opts, progress, &left), |silent| {
        progress.server_silent(silent)
    });
    tokio::select! {
        r = run => r,
        _ = ctrl_c() => {
            let (stage, left) = left.snapshot();
            Err(ApplyError::Interrupted { stage, left })
        }
    }
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling here: never interrupt.
        std::future::pending::<()>().await;
    }
}

async fn run(
    client: ::kube::Client,
    stack: &Stack,
    extra: Vec<Value>,
    opts: &ApplyOptions,
    progress: &dyn ApplyProgress,
    left: &Left,
) -> Result<ApplyReport, ApplyError> {
    let started = Instant::now();
    let set = ApplySet::for_stack(&stack.name);
    let stages = prepare(stack, extra, &set)?;
    let discovery = Discovery::new(client.clone());

    // Every kind must be served by the cluster or defined by a CRD earlier in the stack: checked
    // before anything is written.
    let mut from_crds: BTreeSet<(String, String)> = BTreeSet::new();
    for (_, _, objs) in &stages {
        for o in objs.iter().filter(|o| o.is_crd()) {
            from_crds.extend(crd_kinds(&o.value));
        }
        for o in objs {
            let known = discovery
                .resolve(&o.api_version, &o.kind)
                .await
                .map_err(|e| ops::api_error(&o.display, e))?
                .is_some();
            if !known && !from_crds.contains(&(o.api_version.clone(), o.kind.clone())) {
                return Err(o.unknown_kind());
            }
        }
    }

    // The inventory first: record the union of old and new kinds and namespaces.
    let parent_display = format!("Secret/{} -n {}", set.name, set.namespace);
    let secret = Resolved {
        resource: ::kube::core::ApiResource::from_gvk_with_plural(
            &::kube::core::GroupVersionKind::gvk("", "v1", "Secret"),
            "secrets",
        ),
        namespaced: true,
    };
    let parent_api = ops::api_for(&client, &secret, Some(&set.namespace));
    let existing = ops::retry(|| parent_api.get_opt(&set.name))
        .await
        .map_err(|e| ops::api_error(&parent_display, e))?;
    let existing = existing.map(|p| serde_json::to_value(&p).unwrap_or(Value::Null));
    let recorded = match &existing {
        None => applyset::Recorded::default(),
        Some(v) => applyset::read_parent(&set, v).map_err(|problem| ApplyError::Inventory {
            parent: parent_display.clone(),
            message: match problem {
                applyset::ParentProblem::OtherTooling(t) => {
                    format!("it belongs to {t}, not kstrap; kstrap will not change another tool's ApplySet")
                }
                applyset::ParentProblem::WrongId(id) => format!(
                    "it exists but is not kstrap's ApplySet parent (id label {}); rename or remove it",
                    id.unwrap_or_else(|| "missing".into())
                ),
            },
        })?,
    };
    let all: Vec<&Prepared> = stages.iter().flat_map(|(_, _, o)| o.iter()).collect();
    let new_gks: BTreeSet<GroupKind> = all.iter().map(|o| o.group_kind()).collect();
    let new_ns: BTreeSet<String> = all.iter().filter_map(|o| o.namespace.clone()).collect();
    let union_gks: BTreeSet<GroupKind> = recorded.group_kinds.union(&new_gks).cloned().collect();
    let union_ns: BTreeSet<String> = recorded.namespaces.union(&new_ns).cloned().collect();
    let parent_params = PatchParams::apply(&opts.field_manager).force();
    // Decided from the parent as read: a converged re-run sends no request for it.
    let union_parent = set.parent_object(&union_gks, &union_ns);
    if !opts.dry_run && !applyset::parent_is_current(existing.as_ref(), &union_parent) {
        ops::apply_one(&client, &secret, &parent_display, &union_parent, &parent_params).await?;
    }

    let mut params = PatchParams::apply(&opts.field_manager);
    if opts.force_conflicts {
        params = params.force();
    }
    let mut reports = Vec::new();
    let mut keep: BTreeSet<Member> = BTreeSet::new();
    for (name, stack_timeout, objs) in &stages {
        if let Ok(mut s) = left.stage.lock() {
            *s = name.clone();
        }
        if let Ok(mut s) = left.stages.lock() {
            s.retain(|x| x != name);
        }
        if let Ok(mut o) = left.objects.lock() {
            *o = objs.iter().map(|o| o.display.clone()).collect();
        }
        let stage_started = Instant::now();
        let timeout = opts.stage_timeout.unwrap_or(*stack_timeout);
        progress.stage_started(name, objs.len());
        let mut outcomes: HashMap<usize, Outcome> = HashMap::new();
        let mut resolved: Vec<Option<Resolved>> = vec![None; objs.len()];

        // Phase 1: CRDs and Namespaces.
        let first: Vec<usize> = (0..objs.len()).filter(|&i| objs[i].first_phase()).collect();
        apply_phase(
            &client,
            &discovery,
            objs,
            &first,
            &mut resolved,
            &mut outcomes,
            &params,
            opts,
            &set.member_selector(),
            progress,
        )
        .await?;

        // CRDs must be Established before their custom resources can be applied.
        let crds: Vec<usize> = first.iter().copied().filter(|&i| objs[i].is_crd()).collect();
        if !crds.is_empty() && !opts.dry_run {
            let targets = crds
                .iter()
                .filter_map(|&i| target(&objs[i], resolved[i].as_ref()))
                .collect();
            let outcome = wait::wait_ready(
                &client,
                WaitSpec {
                    stage: name,
                    targets,
                    timeout,
                    started: stage_started,
                    selector: &set.member_selector(),
                    report: false,
                },
                progress,
                &left.objects,
            )
            .await;
            stage_verdict(name, timeout, outcome)?;
            for &i in &crds {
                for (api_version, _) in crd_kinds(&objs[i].value) {
                    discovery.invalidate(&api_version);
                }
            }
        }

        // Phase 2 and 3: cluster-scoped, then namespaced.
        let mut cluster = Vec::new();
        let mut namespaced = Vec::new();
        for i in (0..objs.len()).filter(|i| !first.contains(i)) {
            let o = &objs[i];
            let r = discovery
                .resolve(&o.api_version, &o.kind)
                .await
                .map_err(|e| ops::api_error(&o.display, e))?;
            match r {
                Some(r) => {
                    if r.namespaced {
                        namespaced.push(i);
                    } else {
                        cluster.push(i);
                    }
                    resolved[i] = Some(r);
                }
                // A CRD of this stage in dry-run (not created), else really unknown.
                None if opts.dry_run => {
                    outcomes.insert(i, Outcome::Created);
                    progress.applied(&o.display, Outcome::Created);
                }
                None => return Err(o.unknown_kind()),
            }
        }
        apply_phase(
            &client,
            &discovery,
            objs,
            &cluster,
            &mut resolved,
            &mut outcomes,
            &params,
            opts,
            &set.member_selector(),
            progress,
        )
        .await?;
        apply_phase(
            &client,
            &discovery,
            objs,
            &namespaced,
            &mut resolved,
            &mut outcomes,
            &params,
            opts,
            &set.member_selector(),
            progress,
        )
        .await?;

        for (i, o) in objs.iter().enumerate() {
            let namespaced = resolved[i].as_ref().is_some_and(|r| r.namespaced);
            keep.insert(Member {
                group_kind: o.group_kind(),
                namespace: if namespaced { o.namespace.clone() } else { None },
                name: o.name.clone(),
            });
        }

        if !opts.dry_run {
            let targets: Vec<WaitTarget> = (0..objs.len())
                .filter_map(|i| target(&objs[i], resolved[i].as_ref()))
                .collect();
            let outcome = wait::wait_ready(
                &client,
                WaitSpec {
                    stage: name,
                    targets,
                    timeout,
                    started: stage_started,
                    selector: &set.member_selector(),
                    report: true,
                },
                progress,
                &left.objects,
            )
            .await;
            stage_verdict(name, timeout, outcome)?;
        }
        let elapsed = stage_started.elapsed();
        progress.stage_done(name, elapsed);

        let objects: Vec<AppliedObject> = (0..objs.len())
            .filter_map(|i| {
                outcomes.get(&i).map(|&outcome| AppliedObject {
                    object: objs[i].display.clone(),
                    outcome,
                })
            })
            .collect();
        let count = |o: Outcome| objects.iter().filter(|a| a.outcome == o).count();
        reports.push(StageReport {
            name: name.clone(),
            created: count(Outcome::Created),
            configured: count(Outcome::Configured),
            unchanged: count(Outcome::Unchanged),
            objects,
            elapsed_ms: elapsed.as_millis() as u64,
        });
    }
    if let Ok(mut o) = left.objects.lock() {
        o.clear();
    }

    let mut pruned = Vec::new();
    if opts.prune {
        pruned = prune(
            &client,
            &discovery,
            &set,
            &union_gks,
            &union_ns,
            &keep,
            opts.dry_run,
            progress,
        )
        .await?;
        let parent = set.parent_object(&new_gks, &new_ns);
        // Nothing left the stack: the parent is already what it records.
        if !opts.dry_run && parent != union_parent {
            ops::apply_one(&client, &secret, &parent_display, &parent, &parent_params).await?;
        }
    }
    Ok(ApplyReport {
        stack: stack.name.clone(),
        applyset: set.id.clone(),
        dry_run: opts.dry_run,
        stages: reports,
        pruned,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

fn target(o: &Prepared, r: Option<&Resolved>) -> Option<WaitTarget> {
    Some(WaitTarget {
        display: o.display.clone(),
        resolved: r?.clone(),
        namespace: o.namespace.clone(),
        name: o.name.clone(),
    })
}

fn stage_verdict(stage: &str, timeout: Duration, outcome: WaitOutcome) -> Result<(), ApplyError> {
    match outcome {
        WaitOutcome::Ready => Ok(()),
        WaitOutcome::Failed(failed) => Err(ApplyError::Failed {
            stage: stage.to_string(),
            failed,
        }),
        WaitOutcome::TimedOut(not_ready) => Err(ApplyError::Timeout {
            stage: stage.to_string(),
            timeout,
            not_ready,
        }),
    }
}

#[cfg(test)]
mod tests;
