//! `kstrap apply`: apply a stack to the cluster of the current kubeconfig, stage by stage, wait
//! until each stage is ready, prune what left the stack, and report.
//!
//! Settings are resolved before any cluster call: the stack (named, or the chosen profile's),
//! the secrets it declares (from `--secret-file KEY=PATH` or the environment variable KEY; never
//! printed), the options. The engine (`crate::kube::engine`) runs on a tokio runtime made here;
//! its errors map to exit codes 4 (timed out), 2 (bad kubeconfig or manifests) and 1.

use super::setup::chosen_stack;
use super::{Exit, Failure};
use crate::cli::{ApplyArgs, GlobalArgs};
use crate::distro::Distro;
use crate::distro::proxy::Proxy;
use crate::facts::InstalledNetwork;
use crate::kube::{ApplyError, ApplyOptions, apply_stack, client_from};
use crate::stack::{self, Stack};
use crate::ui::Printer;
use crate::ui::stage_progress::{self, Mode, StageProgress};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn run(global: &GlobalArgs, args: &ApplyArgs, printer: &Printer) -> Result<Exit, Failure> {
    let opts = options(args)?;
    let (loaded, profile, here) = load_stack(global, args)?;
    let proxy = super::proxy_settings()?;
    let cluster = Cluster {
        proxy: proxy.as_ref(),
        installed: here.as_ref(),
    };
    let images = stack::parse_image_flags(&args.images).map_err(|e| Failure::usage(e.to_string()))?;
    // Every input is checked before the cluster is asked anything.
    stack::secrets::check_files(&loaded, &args.secret_files).map_err(|e| Failure::usage(e.to_string()))?;
    // With --distro the stack is complete before any cluster call; else the cluster says.
    let ready = match args.distro {
        Some(d) => Some(cluster.stack(&loaded, &profile, Some(d), &images, printer)?),
        None => None,
    };

    let runtime = super::setup::runtime()?;
    let (kubeconfig, context) = (args.kube.kubeconfig.as_deref(), args.kube.context.as_deref());
    let server = runtime.block_on(crate::kube::reach::server_url(kubeconfig, context));
    let progress =
        StageProgress::new(Mode::for_printer(printer), printer.verbosity, opts.dry_run).with_server(server.clone());
    let result = runtime.block_on(async {
        let client = client_from(kubeconfig, context).await.map_err(Prepare::Apply)?;
        // A server that does not answer is said at once (naming it and the kubeconfig), not
        // after the first calls' retries.
        if let Some(server) = &server {
            let file = kubeconfig_name(kubeconfig, context);
            crate::kube::reach::probe(&client, server, &file)
                .await
                .map_err(|m| Prepare::Failure(Failure::failed(m)))?;
        }
        let stack = match ready {
            Some(stack) => stack,
            None => {
                let distro = cluster_distro(&client, printer).await;
                cluster
                    .stack(&loaded, &profile, distro, &images, printer)
                    .map_err(Prepare::Failure)?
            }
        };
        // Pods of kstrap's stacks the kubelet rejected at admission (after a reboot) go first.
        if !opts.dry_run {
            super::rejected::clear(&client, printer).await;
        }
        let extra = secret_objects(&client, &stack, &args.secret_files)
            .await
            .map_err(Prepare::Failure)?;
        apply_stack(client, &stack, extra, &opts, &progress)
            .await
            .map_err(Prepare::Apply)
    });
    drop(progress);

    match result {
        Ok(report) => {
            if printer.json_mode() {
                printer.json(&json!({ "ok": true, "report": report }));
            } else {
                printer.stdout(&stage_progress::report(&report, printer.verbosity));
            }
            Ok(Exit::Ok)
        }
        Err(Prepare::Failure(f)) => Err(f),
        Err(Prepare::Apply(e)) => {
            let exit = exit_of(&e);
            printer.error(&stage_progress::failure(&e));
            if printer.json_mode() {
                printer.json(&failure_json(&loaded.name, &e));
            }
            Ok(exit)
        }
    }
}

/// The kubeconfig used, for messages (its name only: it holds credentials).
fn kubeconfig_name(kubeconfig: Option<&std::path::Path>, context: Option<&str>) -> String {
    let file = match kubeconfig {
        Some(p) => p.display().to_string(),
        None => match std::env::var_os(crate::env::KUBECONFIG) {
            Some(v) if !v.is_empty() => v.to_string_lossy().into_owned(),
            _ => "~/.kube/config".to_string(),
        },
    };
    match context {
        Some(c) => format!("{file}, context {c}"),
        None => file,
    }
}

/// What can stop `apply` once the runtime runs: preparing its input, or the engine.
enum Prepare {
    Failure(Failure),
    Apply(ApplyError),
}

fn exit_of(e: &ApplyError) -> Exit {
    match e.exit_code() {
        4 => Exit::Timeout,
        2 => Exit::Usage,
        _ => Exit::Failed,
    }
}

/// The one JSON document on stdout when applying failed.
fn failure_json(stack: &str, e: &ApplyError) -> Value {
    let (kind, stage) = match e {
        ApplyError::Timeout { stage, .. } => ("timeout", Some(stage.as_str())),
        ApplyError::Failed { stage, .. } => ("failed", Some(stage.as_str())),
        ApplyError::Interrupted { stage, .. } => ("interrupted", Some(stage.as_str())),
        ApplyError::Conflict { .. } => ("conflict", None),
        ApplyError::Kubeconfig { .. } => ("kubeconfig", None),
        ApplyError::UnknownKind { .. } => ("unknown_kind", None),
        ApplyError::Invalid { .. } => ("invalid", None),
        ApplyError::Inventory { .. } => ("inventory", None),
        ApplyError::Api { .. } => ("api", None),
        ApplyError::Network { .. } => ("network", None),
    };
    json!({
        "ok": false,
        "stack": stack,
        "error": kind,
        "stage": stage,
        "message": e.to_string(),
        "exit_code": e.exit_code(),
        "not_ready": e.diagnoses(),
    })
}

/// What `apply` knows of the cluster beyond its kubeconfig: the proxy from kstrap's environment
/// and, when kstrap installed a cluster on this host, the network it recorded.
struct Cluster<'a> {
    proxy: Option<&'a Proxy>,
    installed: Option<&'a InstalledNetwork>,
}

impl Cluster<'_> {
    /// The stack as applied: sized for `profile` and `distro`, images filled in, and its
    /// downloading pods given the proxy the same way `up` gives it (`stack::proxy::for_cluster`).
    /// `NO_PROXY` names the ranges this host's install recorded, else the distribution's own
    /// (none when the distribution is not known), and this host's addresses when it holds the
    /// install.
    fn stack(
        &self,
        loaded: &Stack,
        profile: &str,
        distro: Option<Distro>,
        images: &BTreeMap<String, String>,
        printer: &Printer,
    ) -> Result<Stack, Failure> {
        let mut stack = prepare(loaded, profile, distro, images)?;
        if let Some(proxy) = self.proxy {
            let ranges = match self.installed {
                Some(n) => Some((n.pod_cidr.as_str(), n.service_cidr.as_str())),
                None => distro.map(crate::distro::network::defaults),
            };
            let target = stack::proxy::Target {
                ranges,
                node_addresses: self.installed.map_or(&[], |n| n.addresses.as_slice()),
            };
            if let Some(warning) = stack::proxy::for_cluster(&mut stack, proxy, &target) {
                printer.warn(&warning);
            }
        }
        Ok(stack)
    }
}

/// The stack to apply, as loaded (named, or the chosen profile's), the profile to size it for
/// (the named `--profile`, else this host's choice), and the network kstrap recorded when it
/// installed a cluster on this host.
fn load_stack(global: &GlobalArgs, args: &ApplyArgs) -> Result<(Stack, String, Option<InstalledNetwork>), Failure> {
    // The cluster may be another machine: a named profile is taken as asked.
    let (stack, selection, facts) = chosen_stack(global, args.profile.as_deref(), args.stack.as_deref(), false)?;
    let installed = facts
        .existing
        .kstrap_network
        .clone()
        .filter(|_| facts.existing.kstrap_state.is_some());
    Ok((stack, selection.profile.name, installed))
}

/// A stack as it is applied: loaded, sized for `profile` and the cluster's `distro`, the user's
/// images filled in (after sizing, so an image of a service left out is not asked for).
pub(crate) fn prepared_stack(
    global: &GlobalArgs,
    name: &str,
    profile: &str,
    distro: Option<Distro>,
    images: &[String],
) -> Result<Stack, Failure> {
    let stack = stack::load(name, global.stack_dir.as_deref()).map_err(|e| Failure::usage(e.to_string()))?;
    let given = stack::parse_image_flags(images).map_err(|e| Failure::usage(e.to_string()))?;
    prepare(&stack, profile, distro, &given)
}

/// A loaded stack sized for `profile` and `distro`, with the user's images (`given`, else the
/// environment) filled in.
fn prepare(
    stack: &Stack,
    profile: &str,
    distro: Option<Distro>,
    given: &BTreeMap<String, String>,
) -> Result<Stack, Failure> {
    let sized = stack.sized_for(profile, distro);
    stack::resolve_images(&sized, given, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .map_err(|e| Failure::usage(e.to_string()))
}

/// The distribution the cluster runs, told by its nodes' kubelet versions (`v1.35.3+k3s1`,
/// `v1.35.3+k0s`), for the stack's per-distribution overlays. None, said at -v (or as a warning
/// when the nodes cannot be read), when no node names k3s or k0s: then only the profile's
/// overlays apply, and `--distro` chooses.
async fn cluster_distro(client: &::kube::Client, printer: &Printer) -> Option<Distro> {
    use k8s_openapi::api::core::v1::Node;
    let api: ::kube::Api<Node> = ::kube::Api::all(client.clone());
    let params = ::kube::api::ListParams::default();
    let nodes = match crate::kube::ops::retry(|| api.list(&params)).await {
        Ok(list) => list.items,
        Err(e) => {
            printer.warn(&format!(
                "cannot read the cluster's nodes to tell its distribution ({}); applying no distribution's changes (pass --distro k3s or --distro k0s)",
                crate::kube::ops::describe(&e)
            ));
            return None;
        }
    };
    let kubelets: Vec<(String, String)> = nodes
        .iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            let version = n
                .status
                .as_ref()
                .and_then(|s| s.node_info.as_ref())
                .map(|i| i.kubelet_version.clone())
                .unwrap_or_default();
            (name, version)
        })
        .collect();
    let found = kubelets
        .iter()
        .find_map(|(node, version)| distro_of_kubelet(version).map(|d| (d, node, version)));
    if printer.verbosity >= 1 {
        match &found {
            Some((d, node, version)) => printer.info(&format!(
                "the cluster runs {d} (node {node}: kubelet {version}): applying the stack's {d} changes"
            )),
            None => {
                let seen: Vec<String> = kubelets.iter().map(|(n, v)| format!("{n}: {v}")).collect();
                printer.info(&format!(
                    "the cluster's nodes ({}) run neither k3s nor k0s: applying no distribution's changes (pass --distro to choose)",
                    if seen.is_empty() { "none listed".to_string() } else { seen.join(", ") }
                ));
            }
        }
    }
    found.map(|(d, _, _)| d)
}

/// The distribution a kubelet version names: k3s builds say `+k3s1`, k0s builds `+k0s`.
fn distro_of_kubelet(version: &str) -> Option<Distro> {
    if version.contains("+k3s") {
        Some(Distro::K3s)
    } else if version.contains("+k0s") {
        Some(Distro::K0s)
    } else {
        None
    }
}

fn options(args: &ApplyArgs) -> Result<ApplyOptions, Failure> {
    let stage_timeout = crate::limits::wait_flag("--timeout", args.timeout).map_err(Failure::usage)?;
    Ok(ApplyOptions {
        force_conflicts: args.force_conflicts,
        prune: !args.no_prune,
        stage_timeout,
        dry_run: args.dry_run,
        ..ApplyOptions::default()
    })
}

/// The Secrets the stack declares, as objects to apply: each key from `--secret-file KEY=PATH`,
/// the environment variable KEY, the Secret already in the cluster, or generated (see
/// `stack::secrets`). Errors name the flag, file or variable; values never appear in them.
pub(crate) async fn secret_objects(
    client: &::kube::Client,
    stack: &Stack,
    secret_files: &[String],
) -> Result<Vec<Value>, Failure> {
    use crate::stack::secrets::{self, SecretValue};
    use k8s_openapi::api::core::v1::Secret;
    let files = secrets::parse_secret_files(secret_files).map_err(|e| Failure::usage(e.to_string()))?;
    let mut existing: BTreeMap<String, BTreeMap<String, SecretValue>> = BTreeMap::new();
    let api: ::kube::Api<Secret> = ::kube::Api::namespaced(client.clone(), &stack.namespace);
    for decl in &stack.secrets {
        let found = api.get_opt(&decl.name).await.map_err(|e| {
            Failure::failed(format!(
                "cannot read Secret {}/{} to keep its values: {e}",
                stack.namespace, decl.name
            ))
        })?;
        let data = found.and_then(|s| s.data).unwrap_or_default();
        let values = data
            .into_iter()
            .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, SecretValue::new(v))))
            .collect();
        existing.insert(decl.name.clone(), values);
    }
    let env = |k: &str| std::env::var(k).ok();
    let mut random_error = None;
    let mut random = |n: usize| match secrets::random_alphanumeric(n) {
        Ok(v) => v,
        Err(e) => {
            random_error = Some(e.to_string());
            String::new()
        }
    };
    let resolved =
        secrets::resolve(stack, &files, &env, &existing, &mut random).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(e) = random_error {
        return Err(Failure::failed(format!(
            "cannot read random bytes for generated secrets: {e}"
        )));
    }
    Ok(resolved.iter().map(|r| r.object(&stack.namespace)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_kubelet_version_names_the_distribution() {
        assert_eq!(distro_of_kubelet("v1.35.3+k3s1"), Some(Distro::K3s));
        assert_eq!(distro_of_kubelet("v1.31.4+k3s2"), Some(Distro::K3s));
        assert_eq!(distro_of_kubelet("v1.35.3+k0s"), Some(Distro::K0s));
        for other in ["v1.35.3", "v1.30.2-eks-1552ad0", "v1.29.1+rke2r1", ""] {
            assert_eq!(distro_of_kubelet(other), None, "{other}");
        }
    }

    fn env_of(stack: &Stack, deployment: &str) -> Vec<(String, String)> {
        let obj = stack
            .stages
            .iter()
            .flat_map(|s| &s.objects)
            .find(|o| o.reference.kind == "Deployment" && o.reference.name == deployment)
            .expect("deployment");
        obj.value["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|v| {
                        (
                            v["name"].as_str().unwrap_or_default().to_string(),
                            v["value"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `apply` gives the stack's downloading pods the proxy as `up` does (they share
    /// `stack::proxy::for_cluster`), with the ranges this host's install recorded.
    #[test]
    fn apply_gives_the_downloading_pods_the_proxy() {
        let loaded = stack::load("voice-ai", None).unwrap();
        let printer = Printer::new(crate::cli::OutputFormat::Human, 0, true, false);
        let proxy = Proxy::from_vars(|k| (k == "HTTPS_PROXY").then(|| "http://10.9.8.7:3128".to_string()))
            .unwrap()
            .unwrap();
        let installed = InstalledNetwork {
            pod_cidr: "172.30.0.0/16".into(),
            service_cidr: "172.31.0.0/16".into(),
            addresses: vec!["192.168.1.23".into()],
            ..Default::default()
        };
        let none = Cluster {
            proxy: None,
            installed: None,
        };
        let plain = none
            .stack(&loaded, "cpu-fallback", Some(Distro::K3s), &BTreeMap::new(), &printer)
            .unwrap();
        assert!(!env_of(&plain, "ollama").iter().any(|(k, _)| k.contains("PROXY")));
        let cluster = Cluster {
            proxy: Some(&proxy),
            installed: Some(&installed),
        };
        let given = cluster
            .stack(&loaded, "cpu-fallback", Some(Distro::K3s), &BTreeMap::new(), &printer)
            .unwrap();
        let env = env_of(&given, "ollama");
        assert!(
            env.contains(&("HTTPS_PROXY".into(), "http://10.9.8.7:3128".into())),
            "{env:?}"
        );
        let no_proxy = &env.iter().find(|(k, _)| k == "NO_PROXY").expect("NO_PROXY").1;
        assert!(
            no_proxy.contains("192.168.1.23,172.30.0.0/16,172.31.0.0/16"),
            "{no_proxy}"
        );
        // Without this host's install: the distribution's own ranges.
        let elsewhere = Cluster {
            proxy: Some(&proxy),
            installed: None,
        };
        let given = elsewhere
            .stack(&loaded, "cpu-fallback", Some(Distro::K0s), &BTreeMap::new(), &printer)
            .unwrap();
        let env = env_of(&given, "ollama");
        let no_proxy = &env.iter().find(|(k, _)| k == "NO_PROXY").expect("NO_PROXY").1;
        assert!(no_proxy.contains("10.244.0.0/16,10.96.0.0/12"), "{no_proxy}");
    }

    #[test]
    fn options_follow_the_flags() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "kstrap",
            "apply",
            "--timeout",
            "7",
            "--force-conflicts",
            "--no-prune",
            "--dry-run",
        ])
        .unwrap();
        let crate::cli::Command::Apply(args) = cli.command else {
            panic!("not apply")
        };
        let o = options(&args).unwrap();
        assert_eq!(o.stage_timeout, Some(Duration::from_secs(7)));
        assert!(o.force_conflicts && !o.prune && o.dry_run);
        assert_eq!(o.field_manager, "kstrap");
        assert_eq!(o.concurrency, 8);
        let cli = crate::cli::Cli::try_parse_from(["kstrap", "apply", "--timeout", "0"]).unwrap();
        let crate::cli::Command::Apply(args) = cli.command else {
            panic!("not apply")
        };
        assert_eq!(options(&args).unwrap_err().exit, Exit::Usage);
    }
}
