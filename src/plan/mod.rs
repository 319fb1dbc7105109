//! Planning: facts + selection + findings + stack + settings → the ordered steps `up` will run.
//!
//! `plan` is a pure function: no I/O, no clock, no environment. Everything it decides is in the
//! returned `Plan`, which is exactly what `kstrap plan` and `kstrap up --dry-run` print and what
//! the executor runs.

pub mod step;

use crate::distro::network::ClusterNetwork;
use crate::distro::{self, Distro, DistroContext, Release, Version, worker};
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

/// What the plan makes of this machine.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A cluster's server with its add-ons, GPU operator and stack (`up`, `plan`).
    Server { selection: &'a Selection, stack: &'a Stack },
    /// A worker of an existing cluster (`join`).
    Worker(WorkerTarget<'a>),
}

/// A worker: the server's distribution, the tier this machine meets, and the join itself.
#[derive(Debug, Clone, Copy)]
pub struct WorkerTarget<'a> {
    /// The server's distribution (its version is `Settings::version`).
    pub distro: Distro,
    /// The profile this machine meets, if any: its tier label, GPU replicas and VRAM estimate.
    pub selection: Option<&'a Selection>,
    pub join: worker::Join<'a>,
}

impl Target<'_> {
    fn distro(&self) -> Distro {
        match self {
            Target::Server { selection, .. } => selection.distro,
            Target::Worker(w) => w.distro,
        }
    }
}

/// Builds a server's plan. Pure: the same inputs give the same plan.
pub fn plan(
    facts: &HostFacts,
    sel: &Selection,
    findings: Vec<Finding>,
    stack: &Stack,
    settings: &Settings,
) -> Result<Plan, PlanError> {
    plan_for(facts, findings, settings, Target::Server { selection: sel, stack })
}

/// Builds the plan for a server or a worker. Pure: the same inputs give the same plan.
///
/// Both get the same version check, preflight step, network ranges, proxy, and the same verified
/// download of the binary; a server then gets its distribution's service, the add-ons, the GPU
/// operator and the stack, a worker its agent and the waits for its node.
pub fn plan_for(
    facts: &HostFacts,
    findings: Vec<Finding>,
    settings: &Settings,
    target: Target,
) -> Result<Plan, PlanError> {
    let distro = target.distro();
    let version = match &settings.version {
        Some(v) => Version::parse(distro, v)?,
        None => distro.default_version(),
    };
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let preflight = PreflightSummary {
        pass: count(Severity::Pass),
        warn: count(Severity::Warn),
        fail: count(Severity::Fail),
        refused: count(Severity::Fail) > 0,
    };
    let reason = match (&target, preflight.refused) {
        (Target::Server { .. }, true) => "a failed check stops `up` here (exit 3) before anything changes",
        (Target::Server { .. }, false) => "the host meets the profile; warnings are printed and up goes on",
        (Target::Worker(_), true) => {
            "a failed check stops `join` here (exit 3) before anything changes or the token is used"
        }
        (Target::Worker(_), false) => "the machine can run a worker and the server is the token's cluster",
    };
    let mut steps = vec![Step {
        id: "preflight".into(),
        phase: Phase::Preflight,
        title: format!(
            "Preflight: {} pass, {} warn, {} fail",
            preflight.pass, preflight.warn, preflight.fail
        ),
        reason: reason.into(),
        action: Action::Preflight { findings },
    }];

    // On a re-run: the installed ranges, and whether the node's address or the proxy changed.
    let mut network = match &target {
        Target::Server { .. } => distro::rerun::for_host(distro, facts, settings.proxy.is_some()),
        Target::Worker(_) => distro::network::choose(distro, &facts.network),
    };
    let release = Release {
        distro,
        version: &version,
        arch: &facts.os.arch,
        mirror: &settings.mirror,
        airgap: settings.airgap.as_deref(),
    };
    // SELinux on in the distribution's containerd where preflight let it pass (k3s with its policy).
    let selinux = facts.security.selinux_enforcing() && facts.security.k3s_selinux_policy;
    let mut data_dir = None;
    let proxy_env = match target {
        Target::Server { selection: sel, stack } => {
            let ctx = DistroContext {
                distro,
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
                selinux,
                data_dir: settings.data_dir.as_deref(),
            };
            data_dir = ctx.custom_data_dir().map(str::to_string);
            steps.extend(server_steps(facts, sel, stack, settings, &ctx, data_dir.as_deref())?);
            ctx.proxy_env()
        }
        Target::Worker(w) => {
            let ctx = worker::WorkerContext {
                release,
                join: &w.join,
                wait_timeout_s: settings.cluster_timeout_s,
                network: &network,
                node_addresses: &facts.network.addresses,
                proxy: settings.proxy.as_ref(),
                selinux,
            };
            steps.extend(worker::steps(&ctx)?);
            ctx.proxy_env()
        }
    };
    let proxy = settings.proxy.as_ref().map(|p| ProxyShown {
        http: p.http.as_deref().map(crate::redact::url),
        https: p.https.as_deref().map(crate::redact::url),
        no_proxy: proxy_env
            .into_iter()
            .find(|(k, _)| k == "NO_PROXY")
            .map(|(_, v)| v)
            .unwrap_or_default(),
    });

    Ok(match target {
        Target::Server { selection: sel, stack } => Plan {
            profile: sel.profile.name.clone(),
            chosen_by: sel.chosen_by,
            distro,
            distro_version: version.to_string(),
            stack: stack.name.clone(),
            reasons: sel.reasons.clone(),
            rejected: sel.rejected.clone(),
            warnings: sel.warnings.clone(),
            gpu_notes: sel.gpu_notes.clone(),
            gpu: (sel.profile.uses_gpu() && !sel.gpus.is_empty()).then(|| GpuShares {
                gpus: sel.gpus.clone(),
                replicas: sel.profile.gpu.replicas,
                allocatable: sel.gpu_shares(),
                driver: sel.gpu_driver,
            }),
            vram_budget: sel.vram_budget.clone(),
            network,
            proxy,
            data_dir,
            preflight,
            steps,
        },
        Target::Worker(w) => {
            let sel = w.selection;
            let (usable, gpu_notes) = crate::profile::usable_gpus(facts);
            let gpus = usable.len() as u32;
            let replicas = sel.map_or(1, |s| s.profile.gpu.replicas.max(1));
            // A worker joins the ranges the server chose; what this machine's routes say of them.
            network.reason = format!(
                "a worker uses the server's ranges; checked against this machine's routes: {}",
                network.reason
            );
            Plan {
                profile: sel.map_or_else(|| "worker".to_string(), |s| s.profile.name.clone()),
                chosen_by: "join",
                distro,
                distro_version: version.to_string(),
                stack: String::new(),
                reasons: vec![format!(
                    "worker {} of {}: the server's distribution and version ({distro} {version})",
                    w.join.node_name, w.join.server
                )],
                rejected: Vec::new(),
                warnings: Vec::new(),
                gpu_notes,
                gpu: (gpus > 0).then(|| GpuShares {
                    gpus: usable.iter().map(|g| g.index).collect(),
                    replicas,
                    allocatable: gpus * replicas,
                    // A worker uses its host's driver (`join` has no --gpu-driver).
                    driver: Default::default(),
                }),
                // What this machine's GPUs would hold as a host of its own tier (an estimate).
                vram_budget: sel.and_then(|s| s.vram_budget.clone()),
                network,
                proxy,
                // A worker keeps its distribution's default data directory (no `--data-dir` for `join`).
                data_dir: None,
                preflight,
                steps,
            }
        }
    })
}

/// A server's steps after preflight: the distribution (with the firewall rules before it
/// starts), the add-ons, the GPU operator and the stack's stages.
fn server_steps(
    facts: &HostFacts,
    sel: &Selection,
    stack: &Stack,
    settings: &Settings,
    ctx: &DistroContext,
    data_dir: Option<&str>,
) -> Result<Vec<Step>, PlanError> {
    let mut steps = distro::host_steps(ctx)?;
    if settings.open_firewall {
        // Before the distribution starts: its first minute already needs pods to reach DNS.
        use distro::firewall::{self, Firewall};
        let at = steps
            .iter()
            .position(|s| s.phase == Phase::Cluster)
            .unwrap_or(steps.len());
        let mut fw = Vec::new();
        for (on, which) in [
            (facts.firewall.ufw, Firewall::Ufw),
            (facts.firewall.firewalld, Firewall::Firewalld),
        ] {
            if on {
                fw.extend(firewall::steps(sel.distro, which, ctx.network));
            }
        }
        steps.splice(at..at, fw);
    }
    // Add-ons before the GPU operator and the stack: their claims need k0s's StorageClass.
    steps.extend(crate::addons::steps(&crate::addons::planned_in(
        sel,
        &settings.addons,
        stack,
        data_dir,
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
    Ok(steps)
}

impl Plan {
    /// Where the planned distribution keeps its files, with the plan's data directory.
    pub fn paths(&self) -> &'static distro::Paths {
        self.distro
            .layout(distro::worker::Role::Server, self.data_dir.as_deref())
    }
}
