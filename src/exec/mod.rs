//! The executor: the only place that changes the host. It runs a `Plan`'s steps in order through
//! one host seam (file writes under a root, commands, systemctl), downloads with verification,
//! and reports progress through a small trait the CLI implements.
//!
//! Every step first looks at what is there and returns `Unchanged` when it already matches, so a
//! re-run converges instead of reinstalling. Host and cluster steps run inside a `Transaction`
//! that undoes what is safe to undo when a step fails, and `state.json` is rewritten after each
//! step so that a killed run can be carried on. GPU and stack steps go to a `ClusterSteps`
//! implementation (the apply engine) with a client for the cluster the earlier steps brought up.

pub mod down;
pub mod download;
mod executor;
pub mod host;
mod interrupt;
pub mod killall;
pub mod kubeconfig;
pub mod lock;
pub mod mounts;
mod outcome;
pub mod paths;
pub mod server_check;
pub mod state;
mod survey;
pub mod txn;
pub mod wait;
pub mod wait_node;

pub use executor::{Executor, Options};
pub use interrupt::Interrupt;
pub use outcome::{
    BoxFuture, ClusterStepError, ClusterSteps, ExecError, FailureKind, Outcome, StepProgress, StepReport,
};
pub use survey::{Found, admit, survey};
