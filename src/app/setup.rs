//! Set-up the commands share: the async runtime, the client for the cluster of the kubeconfig,
//! the profile selection, the stack it names and the VRAM budget's overlay on that stack.

use super::{Failure, gather_facts, kept_plan, load_profiles, select_error};
use crate::cli::{GlobalArgs, KubeArgs};
use crate::facts::HostFacts;
use crate::profile::{self, Overrides, Selection};
use crate::stack::{self, Stack};

/// The runtime the cluster calls and waits run on (two worker threads).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))
}

/// A client for the cluster of `--kubeconfig`/`--context` (else the environment's): a kubeconfig
/// that cannot be used is bad input (exit 2), anything else a failure (exit 1).
pub(crate) async fn cluster_client(kube: &KubeArgs) -> Result<::kube::Client, Failure> {
    crate::kube::client_from(kube.kubeconfig.as_deref(), kube.context.as_deref())
        .await
        .map_err(|e| match e.exit_code() {
            2 => Failure::usage(e.to_string()),
            _ => Failure::failed(e.to_string()),
        })
}

/// The profile for `facts` as `overrides` ask, from the profiles kstrap loads.
pub(crate) fn select(global: &GlobalArgs, facts: &HostFacts, overrides: &Overrides) -> Result<Selection, Failure> {
    let profiles = load_profiles(global)?;
    profile::select(facts, &profiles, overrides).map_err(select_error)
}

/// The stack `stack` names (else the chosen profile's), as loaded, the selection it is for and
/// the facts it was chosen from.
/// A named `profile` is taken as asked (`--force`: the cluster may be another machine); with
/// `keep_recorded`, the tier and model the first install recorded on this host are kept, the
/// choice `up` made.
pub(crate) fn chosen_stack(
    global: &GlobalArgs,
    profile: Option<&str>,
    stack: Option<&str>,
    keep_recorded: bool,
) -> Result<(Stack, Selection, HostFacts), Failure> {
    let facts = gather_facts(global)?;
    let overrides = Overrides {
        profile: profile.map(String::from),
        distro: None,
        force: profile.is_some(),
        model: None,
        kept: if keep_recorded { kept_plan(&facts) } else { None },
        // The driver's source does not change the stack's sizing for a GPU the host reports.
        gpu_driver: Default::default(),
    };
    let selection = select(global, &facts, &overrides)?;
    let name = stack.unwrap_or(&selection.profile.stack);
    let loaded = stack::load(name, global.stack_dir.as_deref()).map_err(|e| Failure::usage(e.to_string()))?;
    Ok((loaded, selection, facts))
}

/// The model Ollama serves and its limits, from the selection's VRAM budget (or the recorded or
/// `--model` choice), laid over `stack`.
pub(crate) fn overlay_budget(stack: &mut Stack, selection: &Selection) {
    stack.overlay(&crate::budget::stack_overlays(
        selection.vram_budget.as_ref(),
        selection.model.as_deref(),
    ));
}
