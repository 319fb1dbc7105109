//! The add-on, GPU and stack phases of `kstrap up`: the executor hands each `ApplyAddon`,
//! `Apply`, `WaitGpu` and `ApplyStage` step here, and this runs it with the same engine as
//! `kstrap apply`.
//!
//! - `ApplyAddon`: one of kstrap's add-ons (`crate::addons`) applied as a stack of its own (its
//!   own ApplySet), its declared Secrets kept or generated like a stack's; then, watch-based with
//!   the engine's waiter and readiness rules, the objects its controllers make (`wait_for`: the
//!   monitoring charts' Deployments), with the same diagnosis on timeout. The k0s storage add-on
//!   is skipped when the cluster already has another default StorageClass.
//! - `Apply` (GPU phase): the GPU operator's objects (`gpu::gpu_objects`) applied as a stack of
//!   their own, `gpu-operator`, so they get an ApplySet like any stack (a re-run prunes what
//!   left it, `down` knows them). When the time-slicing ConfigMap changed, the device plugin is
//!   restarted: the operator does not watch that ConfigMap.
//! - `WaitGpu`: `gpu::wait::wait_for_gpus`, then the `--verify-gpu` pod if asked for.
//! - `ApplyStage`: the engine applies and waits for the whole stack at the first stage step (it
//!   prunes once, after the last stage, so stages cannot be applied one call at a time); the
//!   later stage steps report the stage the engine already waited for.

use super::Failure;
use super::apply::secret_objects;
use crate::addons::{Addon, AddonKind, storage};
use crate::exec::{self, ClusterStepError, ClusterSteps, Outcome};
use crate::gpu;
use crate::kube::ops::Discovery;
use crate::kube::wait::{self, WaitOutcome, WaitSpec, WaitTarget};
use crate::kube::{ApplyError, ApplyOptions, ApplyProgress, ApplyReport, apply_stack};
use crate::plan::step::{Action, ObjectRef, Step};
use crate::stack::{Stack, StackObject, Stage};
use crate::ui::Printer;
use crate::ui::stage_progress::{self, Mode, StageProgress};
use serde_json::Value;
use std::time::Duration;

/// Name of the GPU operator's own stack (and ApplySet).
pub(crate) const GPU_STACK: &str = "gpu-operator";

pub(crate) struct EngineSteps<'p> {
    pub stack: Stack,
    /// The GPU operator's objects as a one-stage stack; None without a GPU profile.
    pub gpu_stack: Option<Stack>,
    pub secret_files: Vec<String>,
    pub stage_timeout: Option<Duration>,
    pub verify_gpu: bool,
    pub printer: &'p Printer,
    /// The engine's report once the stack was applied (at the first stage step).
    pub applied: Option<ApplyReport>,
    /// The node's address, read once the stack is up (for the URLs of the summary).
    pub node_address: Option<String>,
    /// kstrap's add-ons the plan's `ApplyAddon` steps name.
    pub addons: Vec<Addon>,
    /// The cluster the stack went to, for the verification after the last step.
    pub client: Option<::kube::Client>,
}

impl<'p> EngineSteps<'p> {
    pub fn new(stack: Stack, gpu_objects: Vec<Value>, printer: &'p Printer) -> Self {
        EngineSteps {
            stack,
            gpu_stack: (!gpu_objects.is_empty()).then(|| gpu_stack(gpu_objects)),
            secret_files: Vec::new(),
            stage_timeout: None,
            verify_gpu: false,
            printer,
            applied: None,
            node_address: None,
            addons: Vec::new(),
            client: None,
        }
    }

    fn options(&self) -> ApplyOptions {
        ApplyOptions {
            stage_timeout: self.stage_timeout,
            ..ApplyOptions::default()
        }
    }

    fn progress(&self) -> StageProgress {
        StageProgress::new(Mode::for_printer(self.printer), self.printer.verbosity, false)
    }

    async fn apply_gpu(&mut self, client: &::kube::Client) -> Result<Outcome, ClusterStepError> {
        let Some(stack) = &self.gpu_stack else {
            return Ok(Outcome::Skipped("the profile uses no GPU".into()));
        };
        let live = live_time_slicing(client).await?;
        let desired = stack
            .stages
            .iter()
            .flat_map(|s| &s.objects)
            .find(|o| o.reference.kind == "ConfigMap" && o.reference.name == gpu::TIME_SLICING_CONFIG)
            .map(|o| o.value.clone());
        let progress = self.progress();
        let report = apply_stack(client.clone(), stack, Vec::new(), &self.options(), &progress)
            .await
            .map_err(engine_error)?;
        drop(progress);
        if let Some(desired) = desired
            && live.is_some()
            && gpu::needs_device_plugin_restart(live.as_ref(), &desired)
        {
            restart_device_plugin(client).await?;
        }
        Ok(outcome(&report))
    }

    async fn wait_gpu(&self, client: &::kube::Client, step: &Step) -> Result<Outcome, ClusterStepError> {
        let Action::WaitGpu {
            gpus,
            replicas,
            timeout_s,
            ..
        } = &step.action
        else {
            return Err(unexpected(step));
        };
        let timeout = Duration::from_secs(*timeout_s);
        // The chart object kstrap applied: its status reports a Helm failure at once.
        let chart = self.gpu_stack.as_ref().and_then(|stack| {
            stack
                .stages
                .iter()
                .flat_map(|stage| &stage.objects)
                .find(|o| o.reference.kind == "HelmChart" || o.reference.kind == "Chart")
                .map(|o| o.reference.clone())
        });
        gpu::wait::wait_for_gpus_and_chart(client, chart.as_ref(), *gpus, *replicas, timeout)
            .await
            .map_err(gpu_error)?;
        if self.verify_gpu {
            gpu::wait::verify_gpu(client, Duration::from_secs(300))
                .await
                .map_err(gpu_error)?;
        }
        Ok(Outcome::Checked)
    }

    async fn apply_addon(&self, client: &::kube::Client, step: &Step) -> Result<Outcome, ClusterStepError> {
        let Action::ApplyAddon { addon, timeout_s, .. } = &step.action else {
            return Err(unexpected(step));
        };
        let Some(addon) = self.addons.iter().find(|a| a.name() == addon) else {
            return Err(unexpected(step));
        };
        if addon.kind == AddonKind::LocalPathStorage
            && let Some(why) = storage_conflict(client).await?
        {
            return Ok(Outcome::Skipped(why));
        }
        let mut extra = Vec::new();
        if !addon.stack.secrets.is_empty() {
            // The user's --secret-file keys are the stack's, not the add-on's: none here.
            extra = secret_objects(client, &addon.stack, &[]).await.map_err(failure_error)?;
            for secret in &mut extra {
                addon.complete_secret(secret);
            }
        }
        let timeout = self.stage_timeout.unwrap_or(Duration::from_secs(*timeout_s));
        let options = ApplyOptions {
            stage_timeout: Some(timeout),
            ..ApplyOptions::default()
        };
        let progress = self.progress();
        let report = apply_stack(client.clone(), &addon.stack, extra, &options, &progress)
            .await
            .map_err(engine_error)?;
        if !addon.wait_for.is_empty() {
            wait_made_objects(client, addon, timeout, &progress)
                .await
                .map_err(engine_error)?;
        }
        drop(progress);
        Ok(outcome(&report))
    }

    async fn apply_stage(&mut self, client: &::kube::Client, step: &Step) -> Result<Outcome, ClusterStepError> {
        let Action::ApplyStage { stage, .. } = &step.action else {
            return Err(unexpected(step));
        };
        if self.applied.is_none() {
            // After a reboot: pods rejected before the device plugin registered (the GPU phase
            // has just waited for it) are deleted, so that their controllers make new ones.
            super::rejected::clear(client, self.printer).await;
            let extra = secret_objects(client, &self.stack, &self.secret_files)
                .await
                .map_err(failure_error)?;
            let progress = self.progress();
            let report = apply_stack(client.clone(), &self.stack, extra, &self.options(), &progress)
                .await
                .map_err(engine_error)?;
            drop(progress);
            self.applied = Some(report);
            self.client = Some(client.clone());
            self.node_address = super::summary::node_address(client).await;
        }
        let Some(report) = &self.applied else {
            return Err(unexpected(step));
        };
        match report.stages.iter().find(|s| &s.name == stage) {
            Some(s) if s.created + s.configured > 0 => Ok(Outcome::Changed),
            Some(_) => Ok(Outcome::Unchanged),
            // The sized stack has no such stage (all its objects left out for this profile).
            None => Ok(Outcome::Skipped(format!("stage {stage} has nothing to apply"))),
        }
    }
}

impl ClusterSteps for EngineSteps<'_> {
    fn run<'a>(
        &'a mut self,
        client: &'a ::kube::Client,
        step: &'a Step,
    ) -> exec::BoxFuture<'a, Result<Outcome, ClusterStepError>> {
        Box::pin(async move {
            match &step.action {
                Action::ApplyAddon { .. } => self.apply_addon(client, step).await,
                Action::Apply { .. } => self.apply_gpu(client).await,
                Action::WaitGpu { .. } => self.wait_gpu(client, step).await,
                Action::ApplyStage { .. } => self.apply_stage(client, step).await,
                _ => Err(unexpected(step)),
            }
        })
    }
}

/// The GPU operator's objects as a one-stage stack.
pub(crate) fn gpu_stack(objects: Vec<Value>) -> Stack {
    let objects = objects
        .into_iter()
        .map(|value| {
            let text = |ptr: &str| {
                value
                    .pointer(ptr)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let namespace = value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            StackObject {
                reference: ObjectRef {
                    api_version: text("/apiVersion"),
                    kind: text("/kind"),
                    namespace,
                    name: text("/metadata/name"),
                },
                source: "(built in: GPU operator)".into(),
                document: 0,
                line: 0,
                value,
            }
        })
        .collect();
    Stack {
        name: GPU_STACK.into(),
        description: "NVIDIA GPU operator with time-slicing".into(),
        namespace: gpu::NAMESPACE.into(),
        stages: vec![Stage {
            dir: "00-operator".into(),
            name: "gpu-operator".into(),
            description: "the operator's chart, its namespace and the time-slicing config".into(),
            timeout_s: 300,
            objects,
        }],
        profiles: Default::default(),
        distros: Default::default(),
        secrets: Vec::new(),
        images: Vec::new(),
        namespaces: Vec::new(),
        databases: Vec::new(),
        verify: None,
    }
}

/// Why the k0s storage add-on must not be installed on this cluster (`storage::conflict` over
/// its StorageClasses), if it must not.
async fn storage_conflict(client: &::kube::Client) -> Result<Option<String>, ClusterStepError> {
    use k8s_openapi::api::storage::v1::StorageClass;
    let api: ::kube::Api<StorageClass> = ::kube::Api::all(client.clone());
    let list = api
        .list(&::kube::api::ListParams::default())
        .await
        .map_err(|e| ClusterStepError {
            message: format!(
                "cannot list StorageClasses to see whether the cluster has a default one: {}",
                crate::kube::ops::describe(&e)
            ),
            timed_out: false,
        })?;
    let classes: Vec<Value> = list
        .items
        .into_iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    Ok(storage::conflict(&classes))
}

/// Waits, on watches with the engine's readiness rules, until the objects an add-on's
/// controllers make (`Addon::wait_for`, e.g. a chart's Deployments) exist and are ready; on
/// timeout the error names each one not ready and why (pods' waiting reasons, events).
async fn wait_made_objects(
    client: &::kube::Client,
    addon: &Addon,
    timeout: Duration,
    progress: &dyn ApplyProgress,
) -> Result<(), ApplyError> {
    let discovery = Discovery::new(client.clone());
    let mut targets = Vec::new();
    for r in &addon.wait_for {
        let display = r.to_string();
        let resolved = discovery
            .resolve(&r.api_version, &r.kind)
            .await
            .map_err(|e| crate::kube::ops::api_error(&display, e))?
            .ok_or_else(|| ApplyError::Api {
                object: display.clone(),
                message: format!("the cluster serves no {} in {}", r.kind, r.api_version),
            })?;
        targets.push(WaitTarget {
            display,
            resolved,
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        });
    }
    let stage = format!("{} workloads", addon.name());
    progress.stage_started(&stage, targets.len());
    let started = std::time::Instant::now();
    let left = std::sync::Mutex::new(Vec::new());
    let waiting = wait::wait_ready(
        client,
        WaitSpec {
            stage: &stage,
            targets,
            timeout,
            started,
            // Not members of the add-on's ApplySet (the Helm controller made them): every object
            // of their kinds in their namespace is watched, and the targets are picked by name.
            selector: "",
            report: true,
        },
        progress,
        &left,
    );
    // Ctrl-C stops the wait as it stops the engine's: with what was left.
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let outcome = tokio::select! {
        o = waiting => o,
        _ = interrupted => {
            let not_done = left.lock().map(|l| l.clone()).unwrap_or_default();
            return Err(ApplyError::Interrupted { stage, left: not_done });
        }
    };
    match outcome {
        WaitOutcome::Ready => {
            progress.stage_done(&stage, started.elapsed());
            Ok(())
        }
        WaitOutcome::Failed(failed) => Err(ApplyError::Failed { stage, failed }),
        WaitOutcome::TimedOut(not_ready) => Err(ApplyError::Timeout {
            stage,
            timeout,
            not_ready,
        }),
    }
}

fn outcome(report: &ApplyReport) -> Outcome {
    let changed = report.stages.iter().any(|s| s.created + s.configured > 0) || !report.pruned.is_empty();
    if changed { Outcome::Changed } else { Outcome::Unchanged }
}

async fn live_time_slicing(client: &::kube::Client) -> Result<Option<Value>, ClusterStepError> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: ::kube::Api<ConfigMap> = ::kube::Api::namespaced(client.clone(), gpu::NAMESPACE);
    let found = api
        .get_opt(gpu::TIME_SLICING_CONFIG)
        .await
        .map_err(|e| ClusterStepError {
            message: format!(
                "cannot read ConfigMap {}/{}: {e}",
                gpu::NAMESPACE,
                gpu::TIME_SLICING_CONFIG
            ),
            timed_out: false,
        })?;
    Ok(found.and_then(|cm| serde_json::to_value(cm).ok()))
}

/// The time-slicing config changed: restart the device plugin so it reads it (a pod-template
/// annotation, as `kubectl rollout restart` does). Absent DaemonSet: the operator has not made
/// it yet and will start it with the new config.
async fn restart_device_plugin(client: &::kube::Client) -> Result<(), ClusterStepError> {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let (namespace, name) = gpu::device_plugin_daemonset();
    let api: ::kube::Api<DaemonSet> = ::kube::Api::namespaced(client.clone(), namespace);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = gpu::device_plugin_restart_patch(&now);
    match api
        .patch(
            name,
            &::kube::api::PatchParams::default(),
            &::kube::api::Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(::kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(ClusterStepError {
            message: format!(
                "cannot restart daemonset/{name} -n {namespace} after the time-slicing config changed: {e}"
            ),
            timed_out: false,
        }),
    }
}

fn engine_error(e: ApplyError) -> ClusterStepError {
    ClusterStepError {
        timed_out: e.exit_code() == 4,
        message: stage_progress::failure(&e),
    }
}

fn failure_error(f: Failure) -> ClusterStepError {
    ClusterStepError {
        message: f.message,
        timed_out: false,
    }
}

fn gpu_error(e: gpu::wait::GpuWaitError) -> ClusterStepError {
    ClusterStepError {
        timed_out: matches!(e, gpu::wait::GpuWaitError::TimedOut { .. }),
        message: e.to_string(),
    }
}

fn unexpected(step: &Step) -> ClusterStepError {
    ClusterStepError {
        message: format!("step {} is not a cluster step kstrap knows how to run", step.id),
        timed_out: false,
    }
}
