//! kstrap's built-in add-ons: things `kstrap up` installs as stacks of their own (each with its
//! own ApplySet), after the cluster is up and before the GPU operator and the user's stack.
//!
//! - `local-path-storage` ([`storage`]), on k0s only: k0s ships no storage provisioner, so every
//!   PersistentVolumeClaim would stay Pending; k3s bundles the same provisioner itself. Plain YAML
//!   in `addons/`, loaded and checked by the stack loader.
//! - `monitoring` ([`monitoring`]), when asked for with `--with monitoring`: Prometheus and
//!   Grafana through the distribution's Helm controller. kstrap waits for the objects it applies,
//!   then for the Deployments the charts create ([`Addon::wait_for`]).
//! - `cloudnative-pg` ([`cnpg`]), when the stack declares `databases:`: the CloudNativePG
//!   operator through the Helm controller; kstrap waits for its Cluster CRD and its Deployment.
//!
//! Pure: what each add-on applies and waits for is data, built from the selection; the plan shows
//! it, and the executor (`app::cluster_steps`) runs it.

pub mod cnpg;
pub mod monitoring;
pub mod storage;

#[cfg(test)]
mod tests;

use crate::distro::Distro;
use crate::plan::step::{Action, ObjectRef, Phase, Step};
use crate::profile::Selection;
use crate::stack::{Stack, StackError};
use serde::{Deserialize, Serialize};

/// Add-ons the user can ask for with `--with`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Optional {
    // Prometheus and Grafana (a plain comment: a doc comment here would turn clap's help of every
    // command using `--with` into its long form).
    Monitoring,
}

/// Which add-on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddonKind {
    LocalPathStorage,
    Monitoring,
    CloudNativePg,
}

impl AddonKind {
    /// The add-on's name: its stack's, its ApplySet's, and `ApplyAddon.addon` in plans.
    pub fn name(self) -> &'static str {
        match self {
            AddonKind::LocalPathStorage => storage::STACK,
            AddonKind::Monitoring => monitoring::STACK,
            AddonKind::CloudNativePg => cnpg::STACK,
        }
    }
}

/// One add-on as `up` installs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Addon {
    pub kind: AddonKind,
    pub title: String,
    pub reason: String,
    /// What kstrap applies: one stage, the add-on's own ApplySet; its declared Secrets are
    /// resolved (kept or generated) when it is applied.
    pub stack: Stack,
    /// Objects the add-on's controllers make (a chart's Deployments) that must be ready too.
    pub wait_for: Vec<ObjectRef>,
    /// Seconds for the applied objects, and again for `wait_for`.
    pub timeout_s: u64,
}

impl Addon {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// The objects the add-on applies, in apply order, its declared Secrets after the Namespaces
    /// (where the engine puts them); names only, never a value.
    pub fn object_refs(&self) -> Vec<ObjectRef> {
        let mut out: Vec<ObjectRef> = self
            .stack
            .stages
            .iter()
            .flat_map(|s| &s.objects)
            .map(|o| o.reference.clone())
            .collect();
        let at = out
            .iter()
            .take_while(|r| r.kind == "Namespace" && r.api_version == "v1")
            .count();
        let secrets = self.stack.secrets.iter().map(|s| ObjectRef {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: Some(self.stack.namespace.clone()),
            name: s.name.clone(),
        });
        out.splice(at..at, secrets);
        out
    }

    /// Values that complete the add-on's resolved Secrets (keys that are not secret, such as
    /// Grafana's admin user name).
    pub fn complete_secret(&self, secret: &mut serde_json::Value) {
        if self.kind == AddonKind::Monitoring {
            monitoring::complete_admin_secret(secret);
        }
    }
}

/// A built-in add-on that cannot be loaded: a defect of kstrap's own files, caught by tests.
#[derive(Debug, thiserror::Error)]
#[error("built-in add-on {addon}: {source}")]
pub struct AddonError {
    pub addon: &'static str,
    #[source]
    pub source: Box<StackError>,
}

/// The add-ons `up` installs for this selection and stack, in order: local-path storage on k0s
/// (PVCs of everything after it need it), the optional ones asked for, then the CloudNativePG
/// operator when the stack declares databases.
pub fn planned(sel: &Selection, with: &[Optional], stack: &Stack) -> Result<Vec<Addon>, AddonError> {
    planned_in(sel, with, stack, None)
}

/// [`planned`] for a distribution whose data directory is `data_dir` (`--data-dir`): k0s's
/// local-path volumes follow it.
pub fn planned_in(
    sel: &Selection,
    with: &[Optional],
    stack: &Stack,
    data_dir: Option<&str>,
) -> Result<Vec<Addon>, AddonError> {
    let mut out = Vec::new();
    if sel.distro == Distro::K0s {
        let volume_dir = crate::distro::data_dir::volume_dir(Distro::K0s, data_dir);
        let stack = storage::stack_in(&volume_dir).map_err(|source| AddonError {
            addon: storage::STACK,
            source: Box::new(source),
        })?;
        let timeout_s = stack.stages.iter().map(|s| s.timeout_s).max().unwrap_or(300);
        out.push(Addon {
            kind: AddonKind::LocalPathStorage,
            title: "Install the local-path storage provisioner (default StorageClass local-path)".into(),
            reason: format!(
                "k0s ships no storage provisioner: without a default StorageClass every PersistentVolumeClaim stays Pending; Rancher's local-path provisioner (the one k3s bundles) keeps volumes in {volume_dir}; skipped if the cluster already has another default StorageClass"
            ),
            stack,
            wait_for: Vec::new(),
            timeout_s,
        });
    }
    if with.contains(&Optional::Monitoring) {
        out.push(monitoring::addon(sel));
    }
    if !stack.databases.is_empty() {
        let names: Vec<String> = stack
            .databases
            .iter()
            .map(|d| format!("{}/{}", d.namespace, d.name))
            .collect();
        out.push(cnpg::addon(sel, &stack.name, &names));
    }
    Ok(out)
}

/// The plan's steps for these add-ons, one each.
pub fn steps(addons: &[Addon]) -> Vec<Step> {
    addons
        .iter()
        .map(|a| Step {
            id: format!("addon-{}", a.name()),
            phase: Phase::Addons,
            title: a.title.clone(),
            reason: a.reason.clone(),
            action: Action::ApplyAddon {
                addon: a.name().to_string(),
                objects: a.object_refs(),
                wait_for: a.wait_for.clone(),
                timeout_s: a.timeout_s,
            },
        })
        .collect()
}
