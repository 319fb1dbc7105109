//! From parsed arguments to an exit code: resolve settings once, gather facts, select, plan,
//! print. The binary's `main` is a thin wrapper around `run`.

use crate::checks::{self, Finding};
use crate::cli::{Cli, Command, GlobalArgs, PlanArgs};
use crate::facts::{self, HostFacts};
use crate::plan::{self, Plan, Settings};
use crate::profile::{self, Overrides, Profile, SelectError, Selection};
use crate::stack;
use crate::ui::{Printer, render};
use crate::{distro, env};
use serde::Serialize;
use std::path::PathBuf;

mod apply;
mod cluster_steps;
mod down;
mod import;
mod join;
mod join_command;
mod rejected;
mod run_plan;
mod setup;
mod status;
mod status_gpus;
pub(crate) mod summary;
mod up;
mod upgrade;
mod verify;

/// Documented exit codes (see `kstrap --help` and README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    Refused = 3,
    Timeout = 4,
}

/// An error that ends the command, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            exit: Exit::Usage,
            message: message.into(),
        }
    }
    pub(crate) fn refused(message: impl Into<String>) -> Self {
        Failure {
            exit: Exit::Refused,
            message: message.into(),
        }
    }
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Failure {
            exit: Exit::Failed,
            message: message.into(),
        }
    }
}

/// Runs the command; the error carries its exit code and a message for people.
pub fn run(cli: Cli, printer: &Printer) -> Result<Exit, Failure> {
    match cli.command {
        Command::Detect => detect(&cli.global, printer),
        Command::Plan(args) => show_plan(&cli.global, &args, printer),
        Command::Up(up) => up::run(&cli.global, &up, printer),
        Command::Apply(args) => apply::run(&cli.global, &args, printer),
        Command::Status(args) => status::run(&cli.global, &args, printer),
        Command::Verify(args) => verify::run(&cli.global, &args, printer),
        Command::Down(args) => down::run(&cli.global, &args, printer),
        Command::JoinCommand(args) => join_command::run(&cli.global, &args, printer),
        Command::Join(args) => join::run(&cli.global, &args, printer),
        Command::Import(args) => import::run(&cli.global, &args, printer),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "kstrap", &mut buf);
            printer.stdout(&String::from_utf8_lossy(&buf));
            Ok(Exit::Ok)
        }
    }
}

pub(crate) fn plan_findings(plan: &Plan) -> Vec<Finding> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.action {
            plan::step::Action::Preflight { findings } => Some(findings.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Facts from `--facts FILE`, or probed from this host.
pub fn gather_facts(global: &GlobalArgs) -> Result<HostFacts, Failure> {
    gather_facts_with(global, None)
}

/// [`gather_facts`], probing also the partition of the data directory `data_dir` (`--data-dir`).
pub fn gather_facts_with(global: &GlobalArgs, data_dir: Option<&str>) -> Result<HostFacts, Failure> {
    if let Some(path) = &global.facts {
        return facts::load(path).map_err(|e| Failure::usage(e.to_string()));
    }
    let root = std::env::var_os(env::HOST_ROOT)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let nvml = std::env::var_os(env::NVML_LIB).map(PathBuf::from);
    let path = std::env::var_os(env::PATH);
    let mut opts = facts::probe::ProbeOptions::for_host(root, nvml, path.as_deref());
    opts.data_dir = data_dir.map(str::to_string);
    Ok(facts::probe::probe(&opts))
}

pub(crate) fn load_profiles(global: &GlobalArgs) -> Result<Vec<Profile>, Failure> {
    let loaded = match &global.profiles_dir {
        Some(dir) => profile::load_dir(dir),
        None => profile::embedded(),
    };
    loaded.map_err(|e| Failure::usage(e.to_string()))
}

#[derive(Serialize)]
struct DetectOutput<'a> {
    facts: &'a HostFacts,
    profile: Option<&'a Selection>,
    profile_error: Option<String>,
    findings: &'a [Finding],
}

fn detect(global: &GlobalArgs, printer: &Printer) -> Result<Exit, Failure> {
    let facts = gather_facts(global)?;
    let profiles = load_profiles(global)?;
    let selection = profile::select(&facts, &profiles, &Overrides::default());
    let findings = checks::preflight(&facts, selection.as_ref().ok());
    if printer.json_mode() {
        printer.json(&DetectOutput {
            facts: &facts,
            profile: selection.as_ref().ok(),
            profile_error: selection.as_ref().err().map(ToString::to_string),
            findings: &findings,
        });
    } else {
        printer.stdout(&render::facts(&facts, selection.as_ref(), &findings));
    }
    Ok(Exit::Ok)
}

/// A plan that cannot be made: a host the distribution does not run on is a preflight refusal
/// (exit 3, as the README says); anything else is bad input (a version, a mirror).
pub(crate) fn plan_error(e: plan::PlanError) -> Failure {
    match e {
        plan::PlanError::Distro(distro::DistroError::UnsupportedArch { .. }) => Failure::refused(e.to_string()),
        _ => Failure::usage(e.to_string()),
    }
}

pub(crate) fn select_error(e: SelectError) -> Failure {
    match e {
        SelectError::UnknownProfile { .. } | SelectError::Budget(_) | SelectError::GpuDriverNeedsGpuProfile { .. } => {
            Failure::usage(e.to_string())
        }
        SelectError::ModelDoesNotFit { .. } => Failure::refused(e.to_string()),
        SelectError::NoProfileFits { .. } | SelectError::Refused { .. } => Failure::refused(e.to_string()),
    }
}

/// Where the `kstrap` kubeconfig context goes. With `KUBECONFIG` set (a list, as kubectl reads
/// it), the first entry that exists, else the first entry: what kubectl writes a new context to
/// (client-go tools/clientcmd/loader.go, `ClientConfigLoadingRules.GetDefaultFilename`: "first
/// existing file from precedence ... If none exists, use the first from precedence"). Without it,
/// the sudo user's ~/.kube/config, else $HOME's.
fn kubeconfig_dest() -> String {
    let root = std::env::var_os(env::HOST_ROOT).map(PathBuf::from);
    if let Some(list) = std::env::var_os(env::KUBECONFIG)
        && let Some(dest) = crate::kube::kubeconfig_list::default_file(&list, root.as_deref())
    {
        return dest;
    }
    if let Some(user) = std::env::var_os(env::SUDO_USER)
        .and_then(|u| u.into_string().ok())
        .filter(|u| !u.is_empty() && u != "root")
    {
        return format!("/home/{user}/.kube/config");
    }
    match std::env::var_os(env::HOME).and_then(|h| h.into_string().ok()) {
        Some(home) if !home.is_empty() => format!("{}/.kube/config", home.trim_end_matches('/')),
        _ => "/root/.kube/config".to_string(),
    }
}

/// Resolves settings from flags and environment; rejects bad values before any work.
pub fn settings(args: &PlanArgs) -> Result<Settings, Failure> {
    let (mirror, airgap) = run_plan::release_source(args.release_mirror.as_ref(), args.airgap.as_ref())?;
    Ok(Settings {
        version: args.distro_version.clone(),
        mirror,
        airgap,
        kubeconfig_dest: kubeconfig_dest(),
        cluster_timeout_s: crate::limits::wait_flag("--cluster-timeout", args.cluster_timeout)
            .map_err(Failure::usage)?
            .map_or(Settings::default().cluster_timeout_s, |d| d.as_secs()),
        addons: args.with.clone(),
        proxy: proxy_settings()?,
        open_firewall: args.open_firewall,
        data_dir: args
            .data_dir
            .as_deref()
            .map(distro::data_dir::check)
            .transpose()
            .map_err(|e| Failure::usage(e.to_string()))?,
    })
}

/// The proxy from kstrap's environment (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, either case),
/// checked.
pub(crate) fn proxy_from_env() -> Result<Option<distro::proxy::Proxy>, Failure> {
    use distro::proxy::{Proxy, VARIABLES};
    // Only the proxy variables are read here (`env::HTTP_PROXY` and friends, either case).
    debug_assert!(VARIABLES.iter().any(|(u, _)| *u == env::HTTP_PROXY));
    debug_assert!(VARIABLES.iter().any(|(u, _)| *u == env::HTTPS_PROXY));
    debug_assert!(VARIABLES.iter().any(|(u, _)| *u == env::NO_PROXY));
    Proxy::from_vars(|name| std::env::var(name).ok()).map_err(|e| Failure::usage(e.to_string()))
}

/// The proxy from kstrap's environment, its host names resolved (here, before planning, so the
/// plan stays pure) for the stack's egress NetworkPolicies.
pub(crate) fn proxy_settings() -> Result<Option<distro::proxy::Proxy>, Failure> {
    use distro::proxy::ProxyEndpoint;
    let Some(mut proxy) = proxy_from_env()? else {
        return Ok(None);
    };
    for (host, port) in proxy.names() {
        use std::net::ToSocketAddrs;
        if let Ok(found) = (host.as_str(), port).to_socket_addrs() {
            proxy.add_addresses(found.map(|a| ProxyEndpoint { ip: a.ip(), port }));
        }
    }
    Ok(Some(proxy))
}

/// Everything `up` decides before acting: the plan and what it was made from.
pub(crate) struct Planned {
    pub plan: Plan,
    pub facts: HostFacts,
    pub selection: Selection,
    /// The stack as it will be applied (sized, images filled in).
    pub stack: stack::Stack,
    /// kstrap's add-ons the plan installs (what its `ApplyAddon` steps name).
    pub addons: Vec<crate::addons::Addon>,
    /// Why `up` must not act: kstrap's install here keeps its data in another directory than
    /// this run's `--data-dir` (exit 3, nothing changed).
    pub data_dir_refusal: Option<String>,
}

/// The tier and model the first install recorded, when the facts say the host has kstrap's
/// state (probed, or a facts file that records it: `up --facts` installs on this host) and the
/// state is there on the host kstrap acts on. A facts file of another machine that had kstrap
/// names no state here, or finds none.
fn kept_plan(facts: &HostFacts) -> Option<profile::KeptPlan> {
    facts.existing.kstrap_state.as_ref()?;
    // An unreadable or corrupt state is reported by `up` itself, with how to fix it.
    let state = crate::exec::state::State::load(&up::host()).ok().flatten()?;
    Some(profile::KeptPlan {
        profile: state.profile,
        model: state.model,
        source: crate::exec::state::STATE_PATH.to_string(),
        gpu_driver: state.gpu_driver,
    })
}

/// kstrap's state on this host, when `up` is about to act on it (never for facts read from a
/// file: they describe another machine). Unreadable or corrupt: `None` here, reported by `up`.
fn installed_state(global: &GlobalArgs) -> Option<crate::exec::state::State> {
    if global.facts.is_some() {
        return None;
    }
    crate::exec::state::State::load(&up::host()).ok().flatten()
}

/// The data directory to plan with: `--data-dir`, else the one the install recorded (a re-run
/// keeps it). Given, it must suit the host (`data_dir::check_on_host`: exit 2 otherwise).
/// Returns kstrap's state on this host, when there is one.
fn resolve_data_dir(
    global: &GlobalArgs,
    settings: &mut Settings,
    facts: &HostFacts,
) -> Result<Option<crate::exec::state::State>, Failure> {
    let installed = installed_state(global);
    let recorded = installed.as_ref().and_then(|s| s.data_dir.clone());
    let Some(dir) = settings.data_dir.clone() else {
        settings.data_dir = recorded;
        return Ok(installed);
    };
    let Some(found) = facts.data_dir.as_ref().filter(|f| f.path == dir) else {
        return Ok(installed);
    };
    let on_host = distro::data_dir::OnHost {
        not_a_folder: found.exists && !found.is_folder,
        not_empty: found.has_entries,
        existing_parent: &found.existing_parent,
        parent_not_a_folder: !found.parent_is_folder,
        mount_point: found.mount_point.as_deref(),
        fs_type: found.fs_type.as_deref(),
        read_only: found.read_only,
    };
    // The folder kstrap installed into holds the cluster's data already.
    let ours = installed
        .as_ref()
        .is_some_and(|st| recorded.as_deref().unwrap_or(distro::data_dir::default_dir(st.distro)) == dir.as_str());
    distro::data_dir::check_on_host(&dir, &on_host, ours).map_err(|e| Failure::usage(e.to_string()))?;
    Ok(installed)
}

pub(crate) fn build(global: &GlobalArgs, args: &PlanArgs) -> Result<Planned, Failure> {
    let mut settings = settings(args)?;
    let facts = gather_facts_with(global, settings.data_dir.as_deref())?;
    let installed = resolve_data_dir(global, &mut settings, &facts)?;
    let kept = kept_plan(&facts);
    // `--gpu-driver` left out: the first install's choice, else the host's driver.
    let kept_driver = kept.as_ref().map(|k| k.gpu_driver).filter(|d| !d.is_host());
    let overrides = Overrides {
        profile: args.profile.clone(),
        distro: args.distro,
        force: args.force,
        model: args.model.clone(),
        kept,
        gpu_driver: args.gpu_driver.or(kept_driver).unwrap_or_default(),
    };
    let mut selection = setup::select(global, &facts, &overrides)?;
    if let (None, Some(d)) = (args.gpu_driver, kept_driver) {
        selection.reasons.push(format!(
            "{} kept from the first install ({}); pass --gpu-driver to change it",
            d.flag(),
            crate::exec::state::STATE_PATH
        ));
    }
    let findings = checks::preflight(&facts, Some(&selection));
    let stack_name = args.stack.clone().unwrap_or_else(|| selection.profile.stack.clone());
    let mut stack = apply::prepared_stack(
        global,
        &stack_name,
        &selection.profile.name,
        Some(selection.distro),
        &args.images,
    )?;
    // The model and Ollama's limits come from the selection's VRAM budget (and --model).
    setup::overlay_budget(&mut stack, &selection);
    let mut proxy_warning = None;
    if let Some(proxy) = &settings.proxy {
        // The ranges the plan uses: the installed ones on a re-run.
        let network = distro::rerun::for_host(selection.distro, &facts, true);
        let target = stack::proxy::Target {
            ranges: Some((&network.pod_cidr, &network.service_cidr)),
            node_addresses: &facts.network.addresses,
        };
        proxy_warning = stack::proxy::for_cluster(&mut stack, proxy, &target);
    }
    let mut plan = plan::plan(&facts, &selection, findings, &stack, &settings).map_err(plan_error)?;
    plan.warnings.extend(proxy_warning);
    let addons = crate::addons::planned_in(&selection, &settings.addons, &stack, plan.data_dir.as_deref())
        .map_err(|e| Failure::failed(e.to_string()))?;
    let data_dir_refusal = installed
        .filter(|st| st.distro == plan.distro && st.role.is_server())
        .and_then(|st| {
            distro::data_dir::rerun_refusal(
                plan.distro,
                st.data_dir.as_deref(),
                plan.data_dir.as_deref(),
                crate::exec::state::STATE_PATH,
            )
        });
    Ok(Planned {
        plan,
        facts,
        selection,
        stack,
        addons,
        data_dir_refusal,
    })
}

pub(crate) fn show_plan(
    global: &GlobalArgs,
    args: &crate::cli::PlanCommandArgs,
    printer: &Printer,
) -> Result<Exit, Failure> {
    let planned = build(global, &args.plan)?;
    if args.upgrade {
        let installed = upgrade::installed(&up::host());
        upgrade::print_with_plan(&planned, &installed, printer);
    } else {
        print_plan(&planned, &planned.plan, printer);
    }
    Ok(Exit::Ok)
}

/// Prints a plan (human or JSON). With `-vv` it also shows every object kstrap will apply, as it
/// will be sent (YAML in human output, an `objects` list in JSON), Secret values redacted.
pub(crate) fn print_plan(planned: &Planned, plan: &Plan, printer: &Printer) {
    print_plan_with(planned, plan, printer, None);
}

/// [`print_plan`], with a section after the human plan and a member of the JSON document.
pub(crate) fn print_plan_with(
    planned: &Planned,
    plan: &Plan,
    printer: &Printer,
    extra: Option<(String, (&str, serde_json::Value))>,
) {
    let objects = if printer.verbosity >= 2 {
        planned_objects(planned, plan)
    } else {
        Vec::new()
    };
    if printer.json_mode() {
        let mut value = serde_json::to_value(plan).unwrap_or_default();
        if printer.verbosity >= 2
            && let Some(m) = value.as_object_mut()
        {
            m.insert("objects".into(), serde_json::Value::Array(objects));
        }
        if let (Some((_, (key, extra))), Some(m)) = (&extra, value.as_object_mut()) {
            m.insert((*key).into(), extra.clone());
        }
        printer.json(&value);
    } else {
        let mut text = render::plan(plan, printer.verbosity);
        if !objects.is_empty() {
            text.push_str(&render::objects_yaml(&objects));
        }
        if let Some((section, _)) = &extra {
            text.push_str(section);
        }
        printer.stdout(&text);
    }
}

/// Every object the plan's steps apply, in step order, as it will be sent: the GPU phase's
/// (`gpu::gpu_objects`), each add-on's, the stack's. Secret values are redacted.
pub(crate) fn planned_objects(planned: &Planned, plan: &Plan) -> Vec<serde_json::Value> {
    use crate::plan::step::Phase;
    let phases: Vec<Phase> = plan.steps.iter().map(|s| s.phase).collect();
    let mut out = Vec::new();
    if phases.contains(&Phase::Gpu) {
        out.extend(crate::gpu::gpu_objects_in(
            &planned.facts,
            &planned.selection,
            plan.paths(),
        ));
    }
    for addon in &planned.addons {
        out.extend(
            addon
                .stack
                .stages
                .iter()
                .flat_map(|s| s.objects.iter().map(|o| o.value.clone())),
        );
    }
    if phases.contains(&Phase::Stack) {
        out.extend(
            planned
                .stack
                .stages
                .iter()
                .flat_map(|s| s.objects.iter().map(|o| o.value.clone())),
        );
    }
    out.iter_mut().for_each(redact_secret);
    out
}

/// A Secret's values replaced by `<redacted>` (keys kept, so a reader sees what it holds).
fn redact_secret(object: &mut serde_json::Value) {
    if object.get("kind").and_then(serde_json::Value::as_str) != Some("Secret") {
        return;
    }
    for field in ["data", "stringData"] {
        if let Some(m) = object.get_mut(field).and_then(serde_json::Value::as_object_mut) {
            for v in m.values_mut() {
                *v = serde_json::Value::String("<redacted>".into());
            }
        }
    }
}

#[cfg(test)]
mod plan_objects_tests {
    use super::redact_secret;
    use serde_json::json;

    #[test]
    fn secret_values_are_redacted_and_keys_kept() {
        let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"},
            "data": {"password": "c2VjcmV0"}, "stringData": {"token": "hunter2"}});
        redact_secret(&mut s);
        assert_eq!(s["data"]["password"], "<redacted>");
        assert_eq!(s["stringData"]["token"], "<redacted>");
        assert!(!s.to_string().contains("hunter2") && !s.to_string().contains("c2VjcmV0"));
        let mut cm = json!({"kind": "ConfigMap", "data": {"a": "b"}});
        redact_secret(&mut cm);
        assert_eq!(cm["data"]["a"], "b");
    }
}
