//! Talking to the cluster: server-side apply of a stack's objects, the ApplySet inventory and
//! pruning, watch-based readiness waits, and diagnosis of what is not ready.
//!
//! Pure parts (readiness rules, diagnosis, ApplySet names and labels) are separate from the parts
//! that call the API server (`ops`, `wait`, `engine`), so the rules are tested from JSON fixtures
//! and the calls against a real API server (the end-to-end suites).

/// The pure ApplySet naming lives in a leaf module; re-exported here for the engine and status.
pub use crate::applyset;
pub mod claims;
pub mod diagnose;
pub mod engine;
pub mod kubeconfig_list;
pub mod noop;
pub mod ops;
pub mod reach;
pub mod readiness;
pub mod status;
pub mod wait;

pub use diagnose::Diagnosis;
pub use engine::{
    AppliedObject, ApplyError, ApplyOptions, ApplyProgress, ApplyReport, NoProgress, Outcome, StageReport, apply_stack,
    client_from,
};
