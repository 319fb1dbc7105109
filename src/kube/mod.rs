//! Talking to the cluster: server-side apply of a stack's objects, the ApplySet inventory and
//! pruning, watch-based readiness waits, and diagnosis of what is not ready.
//!
//! Pure parts (readiness rules, diagnosis, ApplySet names and labels) are separate from the parts
//! that call the API server (`ops`, `wait`, `engine`), so the rules are tested from JSON fixtures
//! and the calls against a real API server (the end-to-end suites).

/// The pure ApplySet naming lives in a leaf module; re-exported here for the engine and status.
pub use crate::applyset;
pub mod admission;
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

/// Talks to the API server directly when it is on this machine or `NO_PROXY` names it.
///
/// kube's config loader takes `HTTPS_PROXY` from the environment for every cluster and, built
/// without its proxy features (as kstrap is), neither honours `NO_PROXY` nor can use the proxy:
/// on a machine behind a corporate proxy every request to the local cluster would then fail. The
/// kubeconfig's own `proxy-url` for a remote server is left as it is.
pub fn bypass_proxy(config: &mut ::kube::Config) {
    if config.proxy_url.is_none() {
        return;
    }
    let host = config.cluster_url.host().unwrap_or_default().to_string();
    let entries = crate::distro::proxy::no_proxy_entries(|k| std::env::var(k).ok());
    if crate::distro::proxy::bypasses(&host, &entries) {
        config.proxy_url = None;
    }
}
