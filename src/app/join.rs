//! `kstrap join`: this machine becomes a worker of an existing cluster.
//!
//! Order: every input checked (server URL, token file, timeouts, air-gap folder); the machine's
//! facts and the worker preflight; the server checked over TCP and TLS against the CA the token
//! carries (before the token is used anywhere); the server's distribution and version; a plan of
//! steps (shown by `--dry-run`); then the same executor, lock, transaction and state as `up`,
//! recording the role `worker` so that `down` removes the agent the way the agent's own uninstall
//! does. The token is copied root-only into place and never printed, logged or put in JSON.

use super::up::host;
use super::{Exit, Failure, gather_facts, load_profiles, run_plan};
use crate::checks::{self, Finding};
use crate::cli::{GlobalArgs, JoinArgs};
use crate::distro::join_token::{self, JoinToken};
use crate::distro::worker::{self, Join, Role};
use crate::distro::{self, Distro, Version};
use crate::exec::host::Host;
use crate::exec::server_check::{self, ServerUrl};
use crate::exec::state::State;
use crate::exec::{self, ClusterStepError, Found, Outcome};
use crate::plan::step::Step;
use crate::plan::{self, Plan, Settings, Target, WorkerTarget};
use crate::profile::{self, Overrides};
use crate::ui::Printer;
use crate::ui::steps::ask;
use serde::Serialize;

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
        return Err(Failure::refused(format!(
            "preflight refused this join; nothing was changed and the token was not used:\n{}",
            run_plan::failed_checks(plan, true)
        )));
    }
    let host = host();
    let survey = |host: &Host| run_plan::survey(host, |found| admit(found, plan));
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
    let (result, seen) = runtime.block_on(async {
        let options = exec::Options {
            merge_kubeconfig: false,
        };
        let result = run_plan::execute(&host, plan, Some(state), &mut NoClusterSteps, options, printer).await;
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
        Err(e) => {
            let mut failure = run_plan::failure(e);
            failure.message = failure
                .message
                .replace("run `kstrap up` again", "run `kstrap join` again");
            Err(failure)
        }
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
    let (mirror, airgap) = run_plan::release_source(args.release_mirror.as_ref(), args.airgap.as_ref())?;
    let proxy = super::proxy_from_env()?;
    let distro = token.distro();
    let asked = match &args.distro_version {
        Some(v) => Some(Version::parse(distro, v).map_err(|e| Failure::usage(e.to_string()))?),
        None => None,
    };

    let facts = gather_facts(global)?;
    // The tier this machine meets (its node's labels, GPU replicas, disk need), on the server's
    // distribution.
    let profiles = load_profiles(global)?;
    let overrides = Overrides {
        distro: Some(distro),
        ..Overrides::default()
    };
    let selection = profile::select(&facts, &profiles, &overrides).ok();
    let mut findings = checks::worker_preflight(&facts, distro, selection.as_ref());
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

    let (usable, _) = profile::usable_gpus(&facts);
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
    let settings = Settings {
        version: Some(version.to_string()),
        mirror,
        airgap,
        cluster_timeout_s: wait_s,
        proxy,
        ..Settings::default()
    };
    let server_url = server.to_string();
    let target = WorkerTarget {
        distro,
        selection: selection.as_ref(),
        join: Join {
            server: &server_url,
            server_host: &server.host,
            token_source: &token_source,
            node_name: &node,
            labels: &labels,
            gpus,
            gpu_timeout_s: gpu_wait_s,
        },
    };
    let plan = plan::plan_for(&facts, findings, &settings, Target::Worker(target)).map_err(super::plan_error)?;
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
