//! What a run reports: each step's outcome, the progress trait the CLI implements, the seam for
//! the steps that talk to the cluster, and the error of a run that did not finish.

use crate::plan::step::Step;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "note", rename_all = "snake_case")]
pub enum Outcome {
    /// The host or cluster was changed.
    Changed,
    /// Everything was already as the plan says; nothing was written or restarted.
    Unchanged,
    /// A check or wait that passed.
    Checked,
    /// Not run, and why.
    Skipped(String),
}

/// Progress of a run, for people or scripts. Implemented by the CLI (`ui::steps`).
pub trait StepProgress {
    fn started(&self, step: &Step);
    fn finished(&self, step: &Step, outcome: &Outcome, elapsed: Duration);
    fn failed(&self, step: &Step, message: &str, elapsed: Duration);
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a GPU or stack step failed.
#[derive(Debug, Clone)]
pub struct ClusterStepError {
    pub message: String,
    /// Waiting for readiness ran out of time (exit code 4).
    pub timed_out: bool,
}

/// Runs the steps of phases Addons, Gpu and Stack (`ApplyAddon`, `Apply`, `WaitGpu`, `ApplyStage`)
/// against the cluster.
pub trait ClusterSteps {
    fn run<'a>(
        &'a mut self,
        client: &'a ::kube::Client,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<Outcome, ClusterStepError>>;
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub id: String,
    pub title: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Failed,
    TimedOut,
    Interrupted,
}

/// A run that did not finish: which step, why, what was undone, what is left.
#[derive(Debug)]
pub struct ExecError {
    pub kind: FailureKind,
    pub step: String,
    pub title: String,
    pub message: String,
    pub undone: Vec<String>,
    pub left: Vec<String>,
    pub report: Vec<StepReport>,
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            FailureKind::Interrupted => write!(
                f,
                "interrupted at step {:?} ({}): the steps before it are done, it and the rest did not run",
                self.step, self.title
            )?,
            _ => write!(f, "step {:?} ({}) failed: {}", self.step, self.title, self.message)?,
        }
        if !self.undone.is_empty() {
            write!(f, "\n  undone:")?;
            for u in &self.undone {
                write!(f, "\n    - {u}")?;
            }
        }
        if self.left.is_empty() {
            write!(f, "\n  nothing kstrap did in this run is left on the machine")?;
        } else {
            write!(f, "\n  left on the machine:")?;
            for l in &self.left {
                write!(f, "\n    - {l}")?;
            }
            write!(
                f,
                "\n  fix: run `kstrap up` again to carry on from here, or `kstrap down` to remove what kstrap installed"
            )?;
        }
        Ok(())
    }
}
