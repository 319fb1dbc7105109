//! The stack engine: apply a loaded stack to a cluster stage by stage with server-side apply,
//! wait until each stage is ready, then prune what left the stack — the library API behind
//! `kstrap apply` and the last phase of `kstrap up`.
//!
//! Order within a stage: CRDs and Namespaces, then (after those CRDs are Established and
//! discovery is refreshed) cluster-scoped objects, then namespaced ones; each phase applies with
//! bounded concurrency. Every object is labelled as a member of the stack's ApplySet
//! ([`applyset`](super::applyset)); the parent records the kinds and namespaces before anything is
//! applied (so an interrupted run can still be pruned later) and is narrowed after pruning.
//! Errors carry what a person needs: the stage, each object not ready and why, or the other field
//! manager of a conflict. Progress goes through [`ApplyProgress`]; only the CLI prints.

use ::kube::api::{Api, DeleteParams, DynamicObject, ListParams, PatchParams};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::applyset::{self, ApplySet, GroupKind, Member};
use super::diagnose::Diagnosis;
use super::ops::{self, Discovery, Resolved};
use super::wait::{self, WaitOutcome, WaitSpec, WaitTarget};
use crate::stack::Stack;

/// How to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Server-side apply field manager: `kstrap`.
    pub field_manager: String,
    /// Take over fields other managers own instead of failing with a conflict.
    pub force_conflicts: bool,
    /// Delete members of the stack's ApplySet that the stack no longer has.
    pub prune: bool,
    /// Wait this long per stage instead of the stack's own timeouts.
    pub stage_timeout: Option<Duration>,
    /// Objects applied at once within a phase of a stage.
    pub concurrency: usize,
    /// Change nothing: report what would be applied and pruned.
    pub dry_run: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            field_manager: "kstrap".into(),
            force_conflicts: false,
            prune: true,
            stage_timeout: None,
            concurrency: 8,
            dry_run: false,
        }
    }
}

/// What server-side apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

/// Where the engine reports as it goes; the CLI draws it, `up` forwards it, tests record it.
pub trait ApplyProgress: Send + Sync {
    fn stage_started(&self, stage: &str, objects: usize);
    /// Ready count of the stage, the time since it started and up to three objects not ready
    /// yet, with their reasons.
    fn stage_progress(&self, stage: &str, ready: usize, total: usize, elapsed: Duration, slowest: &[(String, String)]);
    fn stage_done(&self, stage: &str, elapsed: Duration);
    fn applied(&self, object: &str, outcome: Outcome);
    fn pruned(&self, object: &str);
}

/// Progress nobody watches.
pub struct NoProgress;

impl ApplyProgress for NoProgress {
    fn stage_started(&self, _: &str, _: usize) {}
    fn stage_progress(&self, _: &str, _: usize, _: usize, _: Duration, _: &[(String, String)]) {}
    fn stage_done(&self, _: &str, _: Duration) {}
    fn applied(&self, _: &str, _: Outcome) {}
    fn pruned(&self, _: &str) {}
}

/// One applied object in the report (names only: never a value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedObject {
    pub object: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageReport {
    pub name: String,
    pub created: usize,
    pub configured: usize,
    pub unchanged: usize,
    pub objects: Vec<AppliedObject>,
    pub elapsed_ms: u64,
}

/// What `apply_stack` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub stack: String,
    /// The ApplySet id every member is labelled with.
    pub applyset: String,
    pub dry_run: bool,
    pub stages: Vec<StageReport>,
    /// Objects deleted (or, with dry_run, that would be) because they left the stack.
    pub pruned: Vec<String>,
    pub elapsed_ms: u64,
}

/// Why applying stopped. [`exit_code`](ApplyError::exit_code) maps each to kstrap's exit codes.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("stage {stage}: not ready after {}s: {}", timeout.as_secs(), names(not_ready))]
    Timeout {
        stage: String,
        timeout: Duration,
        not_ready: Vec<Diagnosis>,
    },
    #[error("stage {stage}: failed: {}", names(failed))]
    Failed { stage: String, failed: Vec<Diagnosis> },
    #[error(
        "{object}: field {field} is owned by field manager \"{manager}\"; rerun with --force-conflicts to take it over, or remove the field from the manifest"
    )]
    Conflict {
        object: String,
        manager: String,
        field: String,
    },
    #[error("kubeconfig {file}: {message}")]
    Kubeconfig { file: String, message: String },
    #[error(
        "{source_file} document {document} (line {line}): the cluster has no kind {kind} in {api_version}; is its CustomResourceDefinition (or the operator that installs it) missing?"
    )]
    UnknownKind {
        source_file: String,
        document: usize,
        line: usize,
        api_version: String,
        kind: String,
    },
    #[error("{source_file} document {document} (line {line}): {message}")]
    Invalid {
        source_file: String,
        document: usize,
        line: usize,
        message: String,
    },
    #[error("inventory {parent}: {message}")]
    Inventory { parent: String, message: String },
    #[error("{object}: {message}")]
    Api { object: String, message: String },
    #[error("cannot reach the cluster: {message}")]
    Network { message: String },
    #[error("interrupted during stage {stage}; not done: {}", left.join(", "))]
    Interrupted { stage: String, left: Vec<String> },
}

fn names(d: &[Diagnosis]) -> String {
    d.iter()
        .map(|d| format!("{} ({})", d.object, d.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ApplyError {
    /// 4 timed out, 2 bad input (kubeconfig, manifests), 1 everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ApplyError::Timeout { .. } => 4,
            ApplyError::Kubeconfig { .. } | ApplyError::Invalid { .. } => 2,
            _ => 1,
        }
    }

    /// The objects not ready, for timeouts and failures.
    pub fn diagnoses(&self) -> &[Diagnosis] {
        match self {
            ApplyError::Timeout { not_ready, .. } => not_ready,
            ApplyError::Failed { failed, .. } => failed,
            _ => &[],
        }
    }
}

/// A client for the cluster of a kubeconfig: `kubeconfig` if given, else `$KUBECONFIG` or
/// `~/.kube/config` (kube's own loader); `context` instead of the current one. Errors name the
/// file and never show its contents.
pub async fn client_from(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<::kube::Client, ApplyError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = ::kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let file = match kubeconfig {
        Some(p) => p.display().to_string(),
        None => match std::env::var_os(crate::env::KUBECONFIG) {
            Some(v) if !v.is_empty() => v.to_string_lossy().into_owned(),
            _ => "~/.kube/config".to_string(),
        },
    };
    let err = |message: String| ApplyError::Kubeconfig {
        file: file.clone(),
        message,
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc = ::kube::config::Kubeconfig::read_from(path).map_err(|e| err(kubeconfig_message(&e)))?;
            ::kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| err(kubeconfig_message(&e)))?
        }
        None => ::kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| err(kubeconfig_message(&e)))?,
    };
    ::kube::Client::try_from(config).map_err(|e| err(format!("cannot build a client: {e}")))
}

/// A kubeconfig error in words that never quote the file (it holds credentials).
fn kubeconfig_message(e: &::kube::config::KubeconfigError) -> String {
    use ::kube::config::KubeconfigError as K;
    match e {
        K::ReadConfig(io, _) => format!("cannot read it: {io}"),
        K::Parse(_) => "not a valid kubeconfig (YAML parse error); check the file with `kubectl config view`".into(),
        K::CurrentContextNotSet => "no current context; pass --context NAME".into(),
        K::LoadContext(name) => format!("no context named {name:?}; see `kubectl config get-contexts`"),
        K::LoadClusterOfContext(name) => format!("the cluster of context {name:?} is not defined"),
        K::FindPath => "no kubeconfig found; pass --kubeconfig FILE or set KUBECONFIG".into(),
        K::MissingClusterUrl => "the selected cluster has no server URL".into(),
        K::ParseClusterUrl(_) => "the selected cluster's server URL is not valid".into(),
        K::LoadCertificateAuthority(_) => "cannot load the certificate authority data".into(),
        K::LoadClientCertificate(_) => "cannot load the client certificate".into(),
        K::LoadClientKey(_) => "cannot load the client key".into(),
        K::ParseCertificates(_) => "the certificates are not valid PEM".into(),
        _ => "not usable (kind or version mismatch, or bad proxy settings)".into(),
    }
}

/// One object ready to apply: labelled, with where it came from.
#[derive(Debug, Clone)]
struct Prepared {
    display: String,
    source: String,
    document: usize,
    line: usize,
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: String,
    value: Value,
}

impl Prepared {
    fn group_kind(&self) -> GroupKind {
        GroupKind::of(&self.api_version, &self.kind)
    }

    fn is_crd(&self) -> bool {
        self.kind == "CustomResourceDefinition" && self.api_version.starts_with("apiextensions.k8s.io/")
    }

    fn first_phase(&self) -> bool {
        self.is_crd() || (self.kind == "Namespace" && self.api_version == "v1")
    }

    fn unknown_kind(&self) -> ApplyError {
        ApplyError::UnknownKind {
            source_file: self.source.clone(),
            document: self.document,
            line: self.line,
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
        }
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// (apiVersion, kind) pairs a CRD object defines.
fn crd_kinds(crd: &Value) -> Vec<(String, String)> {
    let group = str_at(crd, "/spec/group");
    let kind = str_at(crd, "/spec/names/kind");
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .map(|ver| (format!("{group}/{ver}"), kind.to_string()))
        .collect()
}

/// The stack's stages as labelled objects; `extra` (the stack's Secrets) go first in stage one.
fn prepare(
    stack: &Stack,
    extra: Vec<Value>,
    set: &ApplySet,
) -> Result<Vec<(String, Duration, Vec<Prepared>)>, ApplyError> {
    let mut stages = Vec::new();
    let mut extra = Some(extra);
    for stage in &stack.stages {
        let mut objs = Vec::new();
        let first = extra.take().unwrap_or_default();
        let extra_iter = first
            .into_iter()
            .map(|v| (true, "(a Secret the stack declares)".to_string(), 0, 0, v));
        let stage_iter = stage
            .objects
            .iter()
            .map(|o| (false, o.source.clone(), o.document, o.line, o.value.clone()));
        let mut secrets = Vec::new();
        for (is_extra, source, document, line, mut value) in extra_iter.chain(stage_iter) {
            if is_extra
                && value.pointer("/metadata/namespace").is_none()
                && let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut)
            {
                meta.insert("namespace".into(), Value::String(stack.namespace.clone()));
            }
            set.label_member(&mut value).map_err(|message| ApplyError::Invalid {
                source_file: source.clone(),
                document,
                line,
                message,
            })?;
            let namespace = value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            let kind = str_at(&value, "/kind").to_string();
            let name = str_at(&value, "/metadata/name").to_string();
            let display = match &namespace {
                Some(ns) => format!("{kind}/{name} -n {ns}"),
                None => format!("{kind}/{name}"),
            };
            let p = Prepared {
                display,
                source,
                document,
                line,
                api_version: str_at(&value, "/apiVersion").to_string(),
                kind,
                namespace,
                name,
                value,
            };
            if is_extra {
                secrets.push(p);
            } else {
                objs.push(p);
            }
        }
        // Secrets of the stack after its Namespaces (they live in one), before everything else.
        let at = objs.iter().take_while(|o| o.first_phase()).count();
        objs.splice(at..at, secrets);
        let timeout = Duration::from_secs(stage.timeout_s);
        stages.push((stage.name.clone(), timeout, objs));
    }
    Ok(stages)
}

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
    let run = run(client, stack, extra, opts, progress, &left);
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

/// Applies `which` objects with bounded concurrency; resolves kinds not resolved yet.
#[allow(clippy::too_many_arguments)]
async fn apply_phase(
    client: &::kube::Client,
    discovery: &Discovery,
    objs: &[Prepared],
    which: &[usize],
    resolved: &mut [Option<Resolved>],
    outcomes: &mut HashMap<usize, Outcome>,
    params: &PatchParams,
    opts: &ApplyOptions,
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
    // Collected first: a lazy iterator of async blocks held across the awaits below makes this
    // future not `Send` for every lifetime (rustc #110338), which `kstrap up` needs.
    let jobs: Vec<_> = which
        .iter()
        .filter_map(|&i| resolved[i].clone().map(|r| (i, r)))
        .map(|(i, r)| {
            let o = &objs[i];
            async move {
                let outcome = if opts.dry_run {
                    ops::dry_run_one(client, &r, &o.display, &o.value).await
                } else {
                    ops::apply_one(client, &r, &o.display, &o.value, params).await
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

/// Deletes the members of the ApplySet that are not in `keep`, in a safe order.
#[allow(clippy::too_many_arguments)]
async fn prune(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::step::ObjectRef;
    use crate::stack::{StackObject, Stage};
    use serde_json::json;

    fn obj(source: &str, v: Value) -> StackObject {
        StackObject {
            reference: ObjectRef {
                api_version: v["apiVersion"].as_str().unwrap().into(),
                kind: v["kind"].as_str().unwrap().into(),
                namespace: v["metadata"]["namespace"].as_str().map(str::to_string),
                name: v["metadata"]["name"].as_str().unwrap().into(),
            },
            source: source.into(),
            document: 0,
            line: 1,
            value: v,
        }
    }

    fn stack(objects: Vec<StackObject>) -> Stack {
        Stack {
            name: "demo".into(),
            description: String::new(),
            namespace: "demo".into(),
            stages: vec![Stage {
                dir: "00-base".into(),
                name: "base".into(),
                description: String::new(),
                timeout_s: 30,
                objects,
            }],
            profiles: Default::default(),
            distros: Default::default(),
            secrets: Vec::new(),
            images: Vec::new(),
        }
    }

    #[test]
    fn prepare_labels_everything_and_puts_secrets_after_namespaces() {
        let s = stack(vec![
            obj(
                "demo/00-base/ns.yaml",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}),
            ),
            obj(
                "demo/00-base/cm.yaml",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "demo"}}),
            ),
        ]);
        let set = ApplySet::for_stack("demo");
        let secret =
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"}, "stringData": {"k": "v"}});
        let stages = prepare(&s, vec![secret], &set).unwrap();
        let names: Vec<&str> = stages[0].2.iter().map(|o| o.display.as_str()).collect();
        assert_eq!(names, ["Namespace/demo", "Secret/keys -n demo", "ConfigMap/c -n demo"]);
        for o in &stages[0].2 {
            assert_eq!(o.value["metadata"]["labels"][applyset::PART_OF_LABEL], set.id.as_str());
            assert_eq!(o.value["metadata"]["labels"][applyset::MANAGED_BY_LABEL], "kstrap");
        }
        assert_eq!(stages[0].1, Duration::from_secs(30));
    }

    #[test]
    fn prepare_refuses_an_object_of_another_applyset_naming_its_file() {
        let s = stack(vec![obj(
            "demo/00-base/cm.yaml",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "namespace": "demo", "labels": {"applyset.kubernetes.io/part-of": "applyset-x-v1"}}}),
        )]);
        let err = prepare(&s, Vec::new(), &ApplySet::for_stack("demo")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("demo/00-base/cm.yaml document 0 (line 1)"), "{text}");
        assert!(text.contains("applyset-x-v1"), "{text}");
    }

    #[test]
    fn crd_kinds_lists_every_version() {
        let crd = json!({"spec": {"group": "example.com", "names": {"kind": "Widget"},
            "versions": [{"name": "v1"}, {"name": "v1beta1"}]}});
        assert_eq!(
            crd_kinds(&crd),
            [
                ("example.com/v1".to_string(), "Widget".to_string()),
                ("example.com/v1beta1".to_string(), "Widget".to_string())
            ]
        );
    }

    #[test]
    fn errors_map_to_exit_codes_and_say_what_to_do() {
        let d = Diagnosis {
            object: "Deployment/web -n demo".into(),
            reason: "0/1 replicas ready".into(),
            details: vec![],
            events: vec![],
            next_command: None,
        };
        let timeout = ApplyError::Timeout {
            stage: "ai".into(),
            timeout: Duration::from_secs(5),
            not_ready: vec![d.clone()],
        };
        assert_eq!(timeout.exit_code(), 4);
        assert_eq!(
            timeout.to_string(),
            "stage ai: not ready after 5s: Deployment/web -n demo (0/1 replicas ready)"
        );
        assert_eq!(timeout.diagnoses().len(), 1);
        let failed = ApplyError::Failed {
            stage: "ai".into(),
            failed: vec![d],
        };
        assert_eq!(failed.exit_code(), 1);
        let conflict = ApplyError::Conflict {
            object: "Deployment/web -n demo".into(),
            manager: "helm".into(),
            field: ".spec.replicas".into(),
        };
        assert_eq!(conflict.exit_code(), 1);
        assert!(conflict.to_string().contains("\"helm\""));
        assert!(conflict.to_string().contains("--force-conflicts"));
        let kc = ApplyError::Kubeconfig {
            file: "/tmp/k".into(),
            message: "x".into(),
        };
        assert_eq!(kc.exit_code(), 2);
        let unknown = ApplyError::UnknownKind {
            source_file: "s/10-x/w.yaml".into(),
            document: 2,
            line: 9,
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
        };
        assert_eq!(unknown.exit_code(), 1);
        assert!(unknown.to_string().contains("s/10-x/w.yaml document 2 (line 9)"));
        assert!(unknown.to_string().contains("CustomResourceDefinition"));
        assert_eq!(ApplyError::Network { message: "x".into() }.exit_code(), 1);
    }

    #[tokio::test]
    async fn client_from_names_the_file_and_never_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nusers:\n- name: u\n  user:\n    token: s3cr3t-t0ken\n  [broken",
        )
        .unwrap();
        let err = client_from(Some(&path), None).await.err().unwrap();
        let text = err.to_string();
        assert_eq!(err.exit_code(), 2);
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");

        let missing = dir.path().join("nope");
        let err = client_from(Some(&missing), None).await.err().unwrap();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(err.to_string().contains("cannot read it"), "{err}");

        let good = dir.path().join("good");
        std::fs::write(
            &good,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: s3cr3t\ncurrent-context: x\n",
        )
        .unwrap();
        assert!(client_from(Some(&good), None).await.is_ok());
        let err = client_from(Some(&good), Some("other")).await.err().unwrap();
        assert!(err.to_string().contains("\"other\""), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
}
