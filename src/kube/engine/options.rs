//! What callers of the stack engine pass in and get back: the options, the progress callbacks,
//! and the report of what was applied.

use serde::Serialize;
use std::time::Duration;

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
    /// The API server has not answered for `silent` (said every 12 s of silence while a stage
    /// waits or a call retries; both go on retrying).
    fn server_silent(&self, _silent: Duration) {}
    /// Something worth knowing about `object`: it was applied otherwise than the stack asks (a
    /// claim keeps its size), or kstrap changed it to make the apply work (a released volume).
    fn note(&self, _object: &str, _message: &str) {}
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
