//! Planning: facts + selection + findings + stack + settings → the ordered steps `up` will run.
//!
//! `plan` is a pure function: no I/O, no clock, no environment. Everything it decides is in the
//! returned `Plan`, which is exactly what `kstrap plan` and `kstrap up --dry-run` print and what
//! the executor runs.

pub mod step;

use crate::distro::network::ClusterNetwork;
use crate::distro::{self, Distro, DistroContext, Version};
use crate::facts::HostFacts;
use crate::finding::{Finding, Severity};
use crate::profile::{Rejection, Selection};
use crate::stack::Stack;
use serde::Serialize;
use step::{Action, Phase, Step};

/// Settings resolved once from flags and environment before planning.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Distribution version; `None` means the pinned default.
    pub version: Option<String>,
    /// Base URL for release downloads.
    pub mirror: String,
    /// Air-gap folder to install from instead of downloading.
    pub airgap: Option<std::path::PathBuf>,
    /// Where the user's kubeconfig gets the `kstrap` context.
    pub kubeconfig_dest: String,
    /// Seconds to wait for the API server and node.
    pub cluster_timeout_s: u64,
    /// Optional add-ons asked for with `--with`.
    pub addons: Vec<crate::addons::Optional>,
    /// The HTTP proxy from kstrap's environment (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`).
    pub proxy: Option<distro::proxy::Proxy>,
    /// Add the distribution's firewall rules to an active ufw or firewalld (`--open-firewall`).
    pub open_firewall: bool,
    /// The distribution's data directory (`--data-dir`, checked), or `None` for its default.
    pub data_dir: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            version: None,
            mirror: distro::DEFAULT_MIRROR.to_string(),
            airgap: None,
            kubeconfig_dest: "~/.kube/config".to_string(),
            cluster_timeout_s: 300,
            addons: Vec::new(),
            proxy: None,
            open_firewall: false,
            data_dir: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreflightSummary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    /// `up` would stop at preflight (exit code 3).
    pub refused: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuShares {
    pub gpus: Vec<u32>,
    pub replicas: u32,
    pub allocatable: u32,
    /// Where the NVIDIA driver comes from; left out for the host's.
    #[serde(skip_serializing_if = "crate::profile::GpuDriver::is_host")]
    pub driver: crate::profile::GpuDriver,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub profile: String,
    pub chosen_by: &'static str,
    pub distro: Distro,
    pub distro_version: String,
    pub stack: String,
    pub reasons: Vec<String>,
    pub rejected: Vec<Rejection>,
    pub warnings: Vec<String>,
    pub gpu_notes: Vec<String>,
    pub gpu: Option<GpuShares>,
    /// GPU profiles: what each GPU service holds in VRAM, the headroom left, and why (estimate).
    pub vram_budget: Option<crate::budget::VramBudget>,
    /// The cluster's pod and service ranges and why (moved off the defaults when a route of the
    /// host overlaps them).
    pub network: ClusterNetwork,
    /// The proxy the cluster and the stack's downloading pods get, credentials masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyShown>,
    /// The distribution's data directory when `--data-dir` moved it off the default (images,
    /// containerd, the cluster's datastore and the local-path volumes live there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    pub preflight: PreflightSummary,
    pub steps: Vec<Step>,
}

/// The proxy as a plan shows it: URLs with their userinfo masked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyShown {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https: Option<String>,
    /// `NO_PROXY` as the distribution gets it (completed).
    pub no_proxy: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Distro(#[from] distro::DistroError),
    #[error(transparent)]
    Addon(#[from] crate::addons::AddonError),
}

/// Builds the plan. Pure: the same inputs give the same plan.
pub fn plan(
    facts: &HostFacts,
    sel: &Selection,
    findings: Vec<Finding>,
    stack: &Stack,
    settings: &Settings,
) -> Result<Plan, PlanError> {
    let version = match &settings.version {
        Some(v) => Version::parse(sel.distro, v)?,
        None => sel.distro.default_version(),
    };
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let preflight = PreflightSummary {
        pass: count(Severity::Pass),
        warn: count(Severity::Warn),
        fail: count(Severity::Fail),
        refused: count(Severity::Fail) > 0,
    };

    let mut steps = vec![Step {
        id: "preflight".into(),
        phase: Phase::Preflight,
        title: format!(
            "Preflight: {} pass, {} warn, {} fail",
            preflight.pass, preflight.warn, preflight.fail
        ),
        reason: if preflight.refused {
            "a failed check stops `up` here (exit 3) before anything changes".into()
        } else {
            "the host meets the profile; warnings are printed and up goes on".into()
        },
        action: Action::Preflight { findings },
    }];

    // On a re-run: the installed ranges, and whether the node's address or the proxy changed.
    let network = distro::rerun::for_host(sel.distro, facts, settings.proxy.is_some());
    let ctx = DistroContext {
        distro: sel.distro,
        version: &version,
        arch: &facts.os.arch,
        mirror: &settings.mirror,
        airgap: settings.airgap.as_deref(),
        profile: &sel.profile.name,
        cluster: &sel.profile.cluster,
        kubeconfig_dest: &settings.kubeconfig_dest,
        wait_timeout_s: settings.cluster_timeout_s,
        network: &network,
        node_addresses: &facts.network.addresses,
        proxy: settings.proxy.as_ref(),
        selinux: facts.security.selinux_enforcing() && facts.security.k3s_selinux_policy,
        data_dir: settings.data_dir.as_deref(),
    };
    let data_dir = ctx.custom_data_dir().map(str::to_string);
    let proxy = settings.proxy.as_ref().map(|p| ProxyShown {
        http: p.http.as_deref().map(crate::redact::url),
        https: p.https.as_deref().map(crate::redact::url),
        no_proxy: ctx
            .proxy_env()
            .into_iter()
            .find(|(k, _)| k == "NO_PROXY")
            .map(|(_, v)| v)
            .unwrap_or_default(),
    });
    let mut host_steps = distro::host_steps(&ctx)?;
    if settings.open_firewall {
        // Before the distribution starts: its first minute already needs pods to reach DNS.
        use distro::firewall::{self, Firewall};
        let at = host_steps
            .iter()
            .position(|s| s.phase == Phase::Cluster)
            .unwrap_or(host_steps.len());
        let mut fw = Vec::new();
        for (on, which) in [
            (facts.firewall.ufw, Firewall::Ufw),
            (facts.firewall.firewalld, Firewall::Firewalld),
        ] {
            if on {
                fw.extend(firewall::steps(sel.distro, which, &network));
            }
        }
        host_steps.splice(at..at, fw);
    }
    steps.extend(host_steps);
    // Add-ons before the GPU operator and the stack: their claims need k0s's StorageClass.
    steps.extend(crate::addons::steps(&crate::addons::planned_in(
        sel,
        &settings.addons,
        stack,
        data_dir.as_deref(),
    )?));
    steps.extend(crate::gpu::steps(facts, sel));

    for stage in &stack.stages {
        steps.push(Step {
            id: format!("stage-{}", stage.name),
            phase: Phase::Stack,
            title: format!(
                "Apply {} stage {} ({} objects) and wait",
                stack.name,
                stage.name,
                stage.objects.len()
            ),
            reason: format!(
                "server-side apply as field manager kstrap, then wait up to {}s until every object is ready",
                stage.timeout_s
            ),
            action: Action::ApplyStage {
                stack: stack.name.clone(),
                stage: stage.name.clone(),
                objects: stage.objects.iter().map(|o| o.reference.clone()).collect(),
                timeout_s: stage.timeout_s,
            },
        });
    }

    let gpu = (sel.profile.uses_gpu() && !sel.gpus.is_empty()).then(|| GpuShares {
        gpus: sel.gpus.clone(),
        replicas: sel.profile.gpu.replicas,
        allocatable: sel.gpu_shares(),
        driver: sel.gpu_driver,
    });

    Ok(Plan {
        profile: sel.profile.name.clone(),
        chosen_by: sel.chosen_by,
        distro: sel.distro,
        distro_version: version.to_string(),
        stack: stack.name.clone(),
        reasons: sel.reasons.clone(),
        rejected: sel.rejected.clone(),
        warnings: sel.warnings.clone(),
        gpu_notes: sel.gpu_notes.clone(),
        gpu,
        vram_budget: sel.vram_budget.clone(),
        network,
        proxy,
        data_dir,
        preflight,
        steps,
    })
}

impl Plan {
    /// Where the planned distribution keeps its files, with the plan's data directory.
    pub fn paths(&self) -> &'static distro::Paths {
        self.distro
            .layout(distro::worker::Role::Server, self.data_dir.as_deref())
    }
}
