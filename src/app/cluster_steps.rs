//! The GPU and stack phases of `kstrap up`: the executor hands each `Apply`, `WaitGpu` and
//! `ApplyStage` step here, and this runs it with the same engine as `kstrap apply`.
//!
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
use crate::exec::{self, ClusterStepError, ClusterSteps, Outcome};
use crate::gpu;
use crate::kube::{ApplyError, ApplyOptions, ApplyReport, apply_stack};
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
        gpu::wait::wait_for_gpus(client, *gpus, *replicas, timeout)
            .await
            .map_err(gpu_error)?;
        if self.verify_gpu {
            gpu::wait::verify_gpu(client, Duration::from_secs(300))
                .await
                .map_err(gpu_error)?;
        }
        Ok(Outcome::Checked)
    }

    async fn apply_stage(&mut self, client: &::kube::Client, step: &Step) -> Result<Outcome, ClusterStepError> {
        let Action::ApplyStage { stage, .. } = &step.action else {
            return Err(unexpected(step));
        };
        if self.applied.is_none() {
            let extra = secret_objects(client, &self.stack, &self.secret_files)
                .await
                .map_err(|f: Failure| ClusterStepError {
                    message: f.message,
                    timed_out: false,
                })?;
            let progress = self.progress();
            let report = apply_stack(client.clone(), &self.stack, extra, &self.options(), &progress)
                .await
                .map_err(engine_error)?;
            drop(progress);
            self.applied = Some(report);
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
