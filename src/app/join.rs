//! `kstrap join`: this machine becomes a worker of an existing cluster.
//!
//! Order: every input checked (server URL, token file, timeouts, air-gap folder); the machine's
//! facts and the worker preflight; the server checked over TCP and TLS against the CA the token
//! carries (before the token is used anywhere); the server's distribution and version; a plan of
//! steps (shown by `--dry-run`); then the same executor, lock, transaction and state as `up`,
//! recording the role `worker` so that `down` removes the agent the way the agent's own uninstall
//! does. The token is copied root-only into place and never printed, logged or put in JSON.

use super::up::host;
use super::{Exit, Failure, gather_facts, load_profiles};
use crate::checks::{self, Finding, Severity};
use crate::cli::{GlobalArgs, JoinArgs};
use crate::distro::join_token::{self, JoinToken};
use crate::distro::worker::{self, Role, WorkerContext};
use crate::distro::{self, Distro, Version};
use crate::exec::download::{DownloadProgress, NoProgress};
use crate::exec::host::Host;
use crate::exec::server_check::{self, ServerUrl};
use crate::exec::state::State;
use crate::exec::{self, ClusterStepError, Found, Interrupt, Outcome};
use crate::plan::step::{Action, Phase, Step};
use crate::plan::{GpuShares, Plan, PreflightSummary};
use crate::profile::{self, Overrides};
use crate::ui::Printer;
use crate::ui::download_bar::DownloadBar;
use crate::ui::steps::{StepLines, ask};
use serde::Serialize;
use std::sync::Arc;

const DEFAULT_WAIT_S: u64 = 300;
const DEFAULT_GPU_WAIT_S: u64 = 600;

/// Everything `join` decided before acting.
struct Planned {
    plan: Plan,
    node: String,
    server: ServerUrl,
    labels: Vec<String>,
    gpus: u32,
    gpu_model: Option<String>,
}

pub fn run(global: &GlobalArgs, args: &JoinArgs, printer: &Printer) -> Result<Exit, Failure> {
    let planned = build(global, args)?;
    let plan = &planned.plan;
    if args.dry_run {
        if printer.json_mode() {
            printer.json(plan);
        } else {
            printer.stdout(&render_plan(plan, printer.verbosity));
        }
        return Ok(Exit::Ok);
    }
    if plan.preflight.refused {
        let fails: Vec<String> = super::plan_findings(plan)
            .iter()
            .filter(|f| f.severity == Severity::Fail)
            .map(|f| match &f.how_to_fix {
                Some(fix) => format!("  - {}: {}\n    fix: {fix}", f.check, f.what),
                None => format!("  - {}: {}", f.check, f.what),
            })
            .collect();
        return Err(Failure::refused(format!(
            "preflight refused this join; nothing was changed and the token was not used:\n{}",
            fails.join("\n")
        )));
    }
    let host = host();
    let survey = |host: &Host| -> Result<Option<State>, Failure> {
        let found = exec::survey(host).map_err(|e| {
            if e.is_bad_input() {
                Failure::usage(e.to_string())
            } else {
                Failure::failed(e.to_string())
            }
        })?;
        admit(found, plan)
    };
    survey(&host)?;
    let question = format!(
        "Join this machine to {} as worker {} ({} {}, {} steps)?",
        planned.server,
        planned.node,
        plan.distro,
        plan.distro_version,
        plan.steps.len()
    );
    ask(args.yes, &question, "stopped: nothing was changed")?;
    let _lock = exec::lock::acquire(&host).map_err(|e| Failure::failed(e.to_string()))?;
    let state = survey(&host)?.unwrap_or_else(|| {
        let mut s = State::new(plan.distro, &plan.distro_version, &plan.profile);
        s.role = Role::Worker;
        s
    });
    let runtime = super::setup::runtime()?;
    let interrupt = Arc::new(Interrupt::default());
    let (result, seen) = runtime.block_on(async {
        let on_ctrl_c = interrupt.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_ctrl_c.trigger();
            }
        });
        let progress = StepLines { printer: *printer };
        let bar: Box<dyn DownloadProgress> = if printer.json_mode() {
            Box::new(NoProgress)
        } else {
            Box::new(DownloadBar::new(printer))
        };
        let mut cluster = NoClusterSteps;
        let mut executor = exec::Executor {
            host: &host,
            progress: &progress,
            download: bar.as_ref(),
            cluster: &mut cluster,
            options: exec::Options {
                merge_kubeconfig: false,
            },
            interrupt: &interrupt,
        };
        let result = executor.execute(plan, Some(state)).await;
        let seen = match &result {
            Ok(_) => observe(&host, plan, &planned.node).await,
            Err(_) => None,
        };
        (result, seen)
    });
    runtime.shutdown_background();
    match result {
        Ok(steps) => {
            report(&planned, &steps, seen, printer);
            Ok(Exit::Ok)
        }
        Err(e) => Err(Failure {
            exit: match e.kind {
                exec::FailureKind::TimedOut => Exit::Timeout,
                _ => Exit::Failed,
            },
            message: e
                .to_string()
                .replace("run `kstrap up` again", "run `kstrap join` again"),
        }),
    }
}

/// `up`'s plan rendering, worded for a join.
fn render_plan(plan: &Plan, verbosity: i8) -> String {
    let text = crate::ui::render::plan(plan, verbosity);
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let first = format!(
        "Plan: join as a worker ({}), {} {}",
        first
            .strip_prefix("Plan: profile ")
            .and_then(|f| f.split(" (join)").next())
            .map_or_else(|| "worker".to_string(), |p| format!("profile {p}")),
        plan.distro,
        plan.distro_version
    );
    format!("{first}\n{rest}")
        .replace("`kstrap up` would stop", "`kstrap join` would stop")
        .replace(
            "To do it: sudo kstrap up",
            "To do it: sudo kstrap join with the same flags, without --dry-run",
        )
}

/// A worker's plan has no apply steps; the executor never calls this.
struct NoClusterSteps;

impl exec::ClusterSteps for NoClusterSteps {
    fn run<'a>(
        &'a mut self,
        _client: &'a ::kube::Client,
        step: &'a Step,
    ) -> exec::BoxFuture<'a, Result<Outcome, ClusterStepError>> {
        let message = format!("step {:?} has no place in a join", step.id);
        Box::pin(async move {
            Err(ClusterStepError {
                message,
                timed_out: false,
            })
        })
    }
}

/// Whether this machine may become (or stay) this worker; the state to carry on from.
fn admit(found: Found, plan: &Plan) -> Result<Option<State>, Failure> {
    match found {
        Found::Nothing => Ok(None),
        Found::Ours(state) if state.role.is_server() => Err(Failure::refused(format!(
            "kstrap installed a {} server here ({}); a machine is a cluster's server or a worker of one, not both\n  fix: join another machine, or `kstrap down` here first",
            state.distro,
            crate::exec::state::STATE_PATH
        ))),
        Found::Ours(state) if state.distro != plan.distro || state.version != plan.distro_version => {
            Err(Failure::refused(format!(
                "this machine is already a {} {} worker (kstrap installed it); the server runs {} {}\n  fix: `kstrap down` here, then join again",
                state.distro, state.version, plan.distro, plan.distro_version
            )))
        }
        Found::Ours(state) => Ok(Some(*state)),
        Found::Foreign { distro, traces } => Err(Failure::refused(format!(
            "{distro} is already on this machine but kstrap did not install it (found {})\n  fix: remove it first",
            traces.join(", ")
        ))),
    }
}

/// The node as the kubelet's credentials read it, for the summary.
async fn observe(host: &Host, plan: &Plan, node: &str) -> Option<crate::exec::wait_node::NodeSeen> {
    let kubeconfig = plan.distro.paths_for(Role::Worker).kubeconfig;
    let client = crate::exec::wait_node::client(host, kubeconfig).await.ok()?;
    let api: ::kube::Api<k8s_openapi::api::core::v1::Node> = ::kube::Api::all(client);
    let n = api.get(node).await.ok()?;
    Some(crate::exec::wait_node::judge(&n, 0).1)
}

fn usage(flag: &str, what: &str, why: impl std::fmt::Display, fix: &str) -> Failure {
    Failure::usage(format!("{flag} {what}: {why}\n  fix: {fix}"))
}

/// Inputs, facts, the server check and the plan. Changes nothing.
fn build(global: &GlobalArgs, args: &JoinArgs) -> Result<Planned, Failure> {
    let wait_s = crate::limits::wait_flag("--cluster-timeout", args.cluster_timeout)
        .map_err(Failure::usage)?
        .map_or(DEFAULT_WAIT_S, |d| d.as_secs());
    let gpu_wait_s = crate::limits::wait_flag("--gpu-timeout", args.gpu_timeout)
        .map_err(Failure::usage)?
        .map_or(DEFAULT_GPU_WAIT_S, |d| d.as_secs());
    let server = server_check::parse_url(&args.server).map_err(|e| {
        usage(
            "--server",
            &args.server,
            e,
            "give the server's URL as `kstrap join-command` prints it, e.g. https://10.0.0.5:6443",
        )
    })?;
    let token_path = std::path::absolute(&args.token_file).unwrap_or_else(|_| args.token_file.clone());
    let shown = token_path.display().to_string();
    let fix_token =
        "copy the whole token from the server into a root-only file (`kstrap join-command` on the server says how)";
    let text = crate::limits::read_text(&token_path).map_err(|e| usage("--token-file", &shown, e, fix_token))?;
    let token = join_token::parse(&text).map_err(|e| usage("--token-file", &shown, e, fix_token))?;
    if let JoinToken::K0s { server: named, .. } = &token {
        let named_url = server_check::parse_url(named).map_err(|e| usage("--token-file", &shown, e, fix_token))?;
        if named_url != server {
            return Err(usage(
                "--server",
                &args.server,
                format!("the k0s token was made for {named_url}"),
                "give the server the token names, or make a token on this server",
            ));
        }
    }
    let Some(token_source) = token_path.to_str().map(str::to_string) else {
        return Err(usage(
            "--token-file",
            &shown,
            "the path is not valid UTF-8",
            "move the token to a file whose name is plain text",
        ));
    };
    let mirror = args
        .release_mirror
        .clone()
        .unwrap_or_else(|| distro::DEFAULT_MIRROR.to_string());
    if let Some(dir) = &args.airgap
        && !dir.is_dir()
    {
        return Err(Failure::usage(format!(
            "--airgap {}: not a folder; give the folder holding the distribution binary (and images tarball)",
            dir.display()
        )));
    }
    let distro = token.distro();
    let asked = match &args.distro_version {
        Some(v) => Some(Version::parse(distro, v).map_err(|e| Failure::usage(e.to_string()))?),
        None => None,
    };

    let facts = gather_facts(global)?;
    let mut findings = checks::worker_preflight(&facts, distro);
    let checked = match server_check::check(&server, &token) {
        Ok(c) => {
            findings.push(Finding::pass(
                "server",
                format!("{server} answers over TLS with the CA the token names"),
            ));
            Some(c)
        }
        Err(e) => {
            findings.push(Finding::fail(
                "server",
                e.to_string(),
                "check the address, that the server is running, and that the token is this cluster's (`kstrap join-command` on the server)",
            ));
            None
        }
    };
    let served = checked.as_ref().and_then(|c| c.version.clone());
    let version = resolve_version(distro, served.as_deref(), asked, &mut findings)?;

    let node = match &args.node_name {
        Some(n) => n.clone(),
        None => hostname()
            .ok_or_else(|| Failure::usage("cannot tell this machine's host name\n  fix: pass --node-name NAME"))?,
    };
    check_node_name(&node)?;

    let profiles = load_profiles(global)?;
    let overrides = Overrides {
        distro: Some(distro),
        ..Overrides::default()
    };
    let selection = profile::select(&facts, &profiles, &overrides).ok();
    let (usable, gpu_notes) = profile::usable_gpus(&facts);
    let gpus = usable.len() as u32;
    let gpu_model = usable.first().map(|g| g.name.clone());
    let mut pairs: Vec<(String, String)> = vec![("kstrap.dev/role".into(), "worker".into())];
    if let Some(sel) = &selection {
        pairs.push((distro::PROFILE_LABEL.into(), sel.profile.name.clone()));
        pairs.push(("kstrap.dev/tier".into(), sel.profile.name.clone()));
    }
    if let Some(g) = usable.first() {
        pairs.push(("kstrap.dev/gpu-model".into(), worker::label_value(&g.name)));
        pairs.push((
            "kstrap.dev/gpu-vram-gib".into(),
            (g.memory_total_bytes >> 30).to_string(),
        ));
        pairs.push(("kstrap.dev/gpu-count".into(), gpus.to_string()));
    }
    let labels = worker::node_labels(&pairs).map_err(|e| Failure::usage(e.to_string()))?;
    let ctx = WorkerContext {
        distro,
        version: &version,
        arch: &facts.os.arch,
        mirror: &mirror,
        airgap: args.airgap.as_deref(),
        server: &server.to_string(),
        token_source: &token_source,
        node_name: &node,
        labels: &labels,
        gpus,
        wait_timeout_s: wait_s,
        gpu_timeout_s: gpu_wait_s,
    };
    let host_steps = worker::steps(&ctx).map_err(|e| match e {
        distro::DistroError::UnsupportedArch { .. } => Failure::refused(e.to_string()),
        _ => Failure::usage(e.to_string()),
    })?;
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
            "a failed check stops `join` here (exit 3) before anything changes or the token is used".into()
        } else {
            "the machine can run a worker and the server is the token's cluster".into()
        },
        action: Action::Preflight { findings },
    }];
    steps.extend(host_steps);
    let replicas = selection.as_ref().map_or(1, |s| s.profile.gpu.replicas.max(1));
    let plan = Plan {
        profile: selection
            .as_ref()
            .map_or_else(|| "worker".to_string(), |s| s.profile.name.clone()),
        chosen_by: "join",
        distro,
        distro_version: version.to_string(),
        stack: String::new(),
        reasons: vec![format!(
            "worker {node} of {server}: the server's distribution and version ({distro} {version})"
        )],
        rejected: Vec::new(),
        warnings: Vec::new(),
        gpu_notes,
        gpu: (gpus > 0).then(|| GpuShares {
            gpus: usable.iter().map(|g| g.index).collect(),
            replicas,
            allocatable: gpus * replicas,
            driver: Default::default(),
        }),
        // What this machine's GPUs would hold as a host of its own tier (an estimate).
        vram_budget: selection.as_ref().and_then(|s| s.vram_budget.clone()),
        // A worker joins the ranges the server chose; what this machine's routes say of them.
        network: {
            let mut n = crate::distro::network::choose(distro, &facts.network);
            n.reason = format!(
                "a worker uses the server's ranges; checked against this machine's routes: {}",
                n.reason
            );
            n
        },
        // The agent gets no proxy settings of its own yet.
        proxy: None,
        // A worker keeps its distribution's default data directory (no `--data-dir` for `join`).
        data_dir: None,
        preflight,
        steps,
    };
    Ok(Planned {
        plan,
        node,
        server,
        labels,
        gpus,
        gpu_model,
    })
}

/// The version to install: the server's. k3s reports its release as the API server's
/// `gitVersion` (`v1.35.3+k3s1`); k0s reports `v1.35.3+k0s` without the release's build number,
/// so kstrap's pinned k0s release is used when its Kubernetes version is the server's.
fn resolve_version(
    distro: Distro,
    served: Option<&str>,
    asked: Option<Version>,
    findings: &mut Vec<Finding>,
) -> Result<Version, Failure> {
    let from_server = served.and_then(|v| match distro {
        Distro::K3s => Version::parse(Distro::K3s, v).ok(),
        Distro::K0s => {
            let pinned = Distro::K0s.default_version();
            let k8s = pinned.to_string();
            let k8s = k8s.split('+').next().unwrap_or_default().to_string();
            (v.split('+').next() == Some(k8s.as_str())).then_some(pinned)
        }
    });
    match (from_server, asked, served) {
        (Some(s), Some(a), _) if s != a => Err(Failure::usage(format!(
            "--distro-version {a}: the server runs {s}, and a worker must run the server's version\n  fix: leave --distro-version out"
        ))),
        (Some(s), _, _) => Ok(s),
        (None, Some(a), _) => Ok(a),
        (None, None, Some(v)) => Err(Failure::usage(format!(
            "the server reports Kubernetes {v}, which is not a {distro} release kstrap can name\n  fix: pass --distro-version with the server's {distro} release (`{distro} version` on the server)"
        ))),
        (None, None, None) => {
            let d = distro.default_version();
            findings.push(Finding::warn(
                "server-version",
                format!("the server did not tell its version; installing kstrap's pinned {d}"),
                "pass --distro-version with the server's release if it differs",
            ));
            Ok(d)
        }
    }
}

/// The host name the kubelet registers with: the kernel's, lowercased (under the host root, so a
/// test folder can give one).
fn hostname() -> Option<String> {
    let host = host();
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(Some(f)) = host.read(path) {
            let name = String::from_utf8_lossy(&f.bytes).trim().to_ascii_lowercase();
            if !name.is_empty() {
                return Some(name);
            }
        }
    }
    None
}

/// A node name is a DNS subdomain: lowercase alphanumerics, `-` and `.`, at most 253.
fn check_node_name(name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(usage(
            "--node-name",
            name,
            "not a valid node name (lowercase letters, digits, '-' and '.', at most 253)",
            "pass --node-name with a valid name",
        ))
    }
}

#[derive(Serialize)]
struct JoinReport<'a> {
    result: &'static str,
    role: &'static str,
    node: &'a str,
    server: String,
    distro: Distro,
    version: &'a str,
    labels: &'a [String],
    gpus: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu_model: Option<&'a str>,
    /// `nvidia.com/gpu` the node advertises (GPUs × replicas).
    gpu_shares: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<u32>,
    steps: &'a [exec::StepReport],
    /// Run on the server to see every node.
    status_command: &'static str,
}

fn report(
    planned: &Planned,
    steps: &[exec::StepReport],
    seen: Option<crate::exec::wait_node::NodeSeen>,
    printer: &Printer,
) {
    let seen = seen.unwrap_or_default();
    let r = JoinReport {
        result: "ok",
        role: "worker",
        node: &planned.node,
        server: planned.server.to_string(),
        distro: planned.plan.distro,
        version: &planned.plan.distro_version,
        labels: &planned.labels,
        gpus: planned.gpus,
        gpu_model: planned.gpu_model.as_deref(),
        gpu_shares: seen.gpu_allocatable,
        replicas: seen.replicas,
        steps,
        status_command: "kstrap status",
    };
    if printer.json_mode() {
        printer.json(&r);
        return;
    }
    let mut text = format!(
        "Joined: node {} is Ready, a {} {} worker of {}\n",
        r.node, r.distro, r.version, r.server
    );
    if r.gpus > 0 {
        text.push_str(&format!(
            "  GPUs: {} × {}; {} shares of nvidia.com/gpu{}\n",
            r.gpus,
            r.gpu_model.unwrap_or("NVIDIA GPU"),
            r.gpu_shares,
            r.replicas.map(|x| format!(" ({x} per GPU)")).unwrap_or_default()
        ));
    } else {
        text.push_str("  GPUs: none\n");
    }
    text.push_str(&format!("  labels: {}\n", r.labels.join(", ")));
    text.push_str("  on the server, every node with its GPUs and shares: kstrap status\n");
    printer.stdout(&text);
}
