//! The command lines and configuration files kstrap writes for k3s and k0s, checked against the
//! flags and fields upstream defines (`tests/fixtures/upstream/k3s`, `tests/fixtures/upstream/k0s`,
//! each with a SOURCE.md naming repository, path and version). A misspelt config key or flag is
//! silently ignored by k3s (an unknown config.yaml key) or refused by k0s at install time: these
//! tests catch both before a real host does. Also the environment kstrap gives Open WebUI, against
//! the variables open-webui 0.8.5 reads (`tests/fixtures/upstream/open-webui`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kstrap::distro::{self, DEFAULT_MIRROR, Distro, DistroContext};
use kstrap::plan::step::{Action, Contents, Step};
use kstrap::profile::ClusterSettings;
use serde_json::Value;

fn fixture_text(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upstream")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// A fixture list: one name per line, `#` comments and blank lines skipped.
fn names(path: &str) -> BTreeSet<String> {
    let set: BTreeSet<String> = fixture_text(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert!(set.len() >= 3, "{path}: too few names");
    set
}

/// Cluster settings to plan with: every embedded profile's for `distro`, plus one that disables
/// every component kstrap lets a profile disable and sets a node label (so every value kstrap can
/// write is checked, not only today's profiles').
fn cluster_settings(distro: Distro) -> Vec<(String, ClusterSettings)> {
    let mut out: Vec<(String, ClusterSettings)> = kstrap::profile::embedded()
        .expect("embedded profiles")
        .into_iter()
        .filter(|p| p.distro == distro)
        .map(|p| (p.name, p.cluster))
        .collect();
    out.push((
        "every-disable".into(),
        ClusterSettings {
            disable: kstrap::profile::disableable(distro)
                .iter()
                .map(|s| s.to_string())
                .collect(),
            node_labels: BTreeMap::from([("tier".to_string(), "laptop".to_string())]),
        },
    ));
    out
}

fn steps(distro: Distro, profile: &str, cluster: &ClusterSettings) -> Vec<Step> {
    let version = distro.default_version();
    // Ranges moved off the defaults and SELinux on: every key kstrap can write is written.
    let network = kstrap::distro::network::ClusterNetwork {
        pod_cidr: "172.30.0.0/16".into(),
        service_cidr: "172.31.0.0/16".into(),
        is_default: false,
        reason: "a route overlaps the defaults".into(),
        conflicts: Vec::new(),
        ..Default::default()
    };
    let ctx = DistroContext {
        distro,
        version: &version,
        arch: "x86_64",
        mirror: DEFAULT_MIRROR,
        airgap: None,
        profile,
        cluster,
        kubeconfig_dest: "/home/ada/.kube/config",
        wait_timeout_s: 300,
        network: &network,
        node_addresses: &[],
        proxy: None,
        selinux: true,
        // Another data directory: k3s's `data-dir` key and k0s's `--data-dir` flag are written.
        data_dir: Some("/data/kstrap"),
    };
    distro::host_steps(&ctx).unwrap_or_else(|e| panic!("{distro} {profile}: {e}"))
}

fn written(steps: &[Step], id: &str) -> (String, String) {
    match steps.iter().find(|s| s.id == id).map(|s| &s.action) {
        Some(Action::WriteFile {
            path,
            contents: Contents::Text(t),
            ..
        }) => (path.clone(), t.clone()),
        other => panic!("step {id} writes no text: {other:?}"),
    }
}

fn command(steps: &[Step], id: &str) -> Vec<String> {
    match steps.iter().find(|s| s.id == id).map(|s| &s.action) {
        Some(Action::Command { args, .. }) => args.clone(),
        other => panic!("step {id} runs no command: {other:?}"),
    }
}

/// The long flag names in an argument list (`--name` or `--name=value`).
fn flags_in(args: &[String]) -> Vec<String> {
    args.iter()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split_once('=').map_or(a, |(n, _)| n).to_string())
        .collect()
}

/// What in `config.yaml` is not a `k3s server` flag (keys) or not a `--disable` item (values).
fn k3s_config_problems(text: &str, flags: &BTreeSet<String>, items: &BTreeSet<String>) -> Vec<String> {
    let doc: Value = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("config.yaml: {e}\n{text}"));
    let Some(map) = doc.as_object() else {
        return vec![format!("config.yaml is not a mapping: {text}")];
    };
    let mut out = Vec::new();
    for key in map.keys() {
        if !flags.contains(key) {
            out.push(format!("key {key:?} is not a k3s server flag"));
        }
    }
    for item in map.get("disable").and_then(Value::as_array).into_iter().flatten() {
        let item = item.as_str().unwrap_or_default();
        if !items.contains(item) {
            out.push(format!("disable item {item:?} is not one k3s knows"));
        }
    }
    out
}

#[test]
fn every_k3s_config_key_is_a_k3s_server_flag() {
    let flags = names("k3s/server-flags.txt");
    let items = names("k3s/disable-items.txt");
    let mut seen = BTreeSet::new();
    for (profile, cluster) in cluster_settings(Distro::K3s) {
        let steps = steps(Distro::K3s, &profile, &cluster);
        let (path, text) = written(&steps, "write-k3s-config");
        assert_eq!(path, "/etc/rancher/k3s/config.yaml");
        let problems = k3s_config_problems(&text, &flags, &items);
        assert!(problems.is_empty(), "{profile}: {problems:?}\n{text}");
        let doc: Value = serde_saphyr::from_str(&text).expect("yaml");
        seen.extend(doc.as_object().into_iter().flat_map(|m| m.keys().cloned()));
    }
    // The keys kstrap relies on were all checked (the settings above write every one).
    for key in ["write-kubeconfig-mode", "node-label", "disable"] {
        assert!(seen.contains(key), "no plan wrote {key}: {seen:?}");
    }
}

/// The check above can fail: a misspelt key and an unknown item are both reported.
#[test]
fn the_k3s_config_check_rejects_what_k3s_lacks() {
    let flags = names("k3s/server-flags.txt");
    let items = names("k3s/disable-items.txt");
    let bad = "write-kubeconfig-mode: \"0600\"\nnode-labels:\n- a=b\ndisable:\n- traefik\n- ingress\n";
    let problems = k3s_config_problems(bad, &flags, &items);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("node-labels"), "{problems:?}");
    assert!(problems[1].contains("ingress"), "{problems:?}");
}

/// The unit starts `k3s server` with every setting in config.yaml; any flag on its command line
/// must be a server flag too.
#[test]
fn the_k3s_unit_runs_k3s_server_with_real_flags() {
    let flags = names("k3s/server-flags.txt");
    let (_, unit) = written(
        &steps(Distro::K3s, "rtx-5090", &ClusterSettings::default()),
        "write-k3s-unit",
    );
    let exec: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(exec[..2], ["/usr/local/bin/k3s".to_string(), "server".to_string()]);
    for flag in flags_in(&exec) {
        assert!(flags.contains(&flag), "--{flag} is not a k3s server flag");
    }
}

#[test]
fn every_k0s_install_argument_is_an_install_controller_flag() {
    let flags = names("k0s/install-controller-flags.txt");
    let components = names("k0s/disable-components.txt");
    let mut seen = BTreeSet::new();
    for (profile, cluster) in cluster_settings(Distro::K0s) {
        let steps = steps(Distro::K0s, &profile, &cluster);
        let args = command(&steps, "install-k0s");
        assert_eq!(
            args[..2],
            ["install".to_string(), "controller".to_string()],
            "{profile}"
        );
        for flag in flags_in(&args) {
            assert!(
                flags.contains(&flag),
                "{profile}: --{flag} is not a flag of `k0s install controller`"
            );
            seen.insert(flag);
        }
        for value in args
            .iter()
            .filter_map(|a| a.strip_prefix("--disable-components="))
            .flat_map(|v| v.split(','))
        {
            assert!(
                components.contains(value),
                "{profile}: k0s has no component {value:?} to disable"
            );
        }
        // --config names the file kstrap writes.
        let (config_path, _) = written(&steps, "write-k0s-config");
        let at = args.iter().position(|a| a == "--config").expect("--config");
        assert_eq!(args.get(at + 1), Some(&config_path), "{profile}");
    }
    for flag in [
        "enable-worker",
        "no-taints",
        "config",
        "force",
        "labels",
        "disable-components",
    ] {
        assert!(seen.contains(flag), "no plan passed --{flag}: {seen:?}");
    }
}

/// Every component a profile may disable is one the distribution knows by that name.
#[test]
fn disableable_components_are_upstreams() {
    let k3s = names("k3s/disable-items.txt");
    for c in kstrap::profile::disableable(Distro::K3s) {
        assert!(k3s.contains(*c), "k3s --disable has no item {c:?}");
    }
    let k0s = names("k0s/disable-components.txt");
    for c in kstrap::profile::disableable(Distro::K0s) {
        assert!(k0s.contains(*c), "k0s --disable-components has no item {c:?}");
    }
}

/// What `kstrap join-command` tells the user to run on a new worker, and the k0s command it runs
/// for the token, use flags of those commands.
#[test]
fn join_commands_use_upstream_flags() {
    let agent = distro::worker_join_command(Distro::K3s, "https://10.0.0.2:6443", "/etc/rancher/k3s/agent-token");
    assert_eq!(agent[..2], ["k3s".to_string(), "agent".to_string()]);
    let k3s_agent = names("k3s/agent-flags.txt");
    let flags = flags_in(&agent);
    assert_eq!(flags, ["server", "token-file"]);
    for flag in flags {
        assert!(k3s_agent.contains(&flag), "--{flag} is not a k3s agent flag");
    }

    let worker = distro::worker_join_command(Distro::K0s, "https://10.0.0.2:6443", "/etc/k0s/worker-token");
    assert_eq!(
        worker[..3],
        ["k0s".to_string(), "install".to_string(), "worker".to_string()]
    );
    let k0s_worker = names("k0s/install-worker-flags.txt");
    for flag in flags_in(&worker) {
        assert!(
            k0s_worker.contains(&flag),
            "--{flag} is not a flag of `k0s install worker`"
        );
    }

    let token: Vec<String> = distro::K0S_WORKER_TOKEN_ARGS.iter().map(|a| a.to_string()).collect();
    assert_eq!(token[..2], ["token".to_string(), "create".to_string()]);
    let token_flags = names("k0s/token-create-flags.txt");
    for flag in flags_in(&token) {
        assert!(
            token_flags.contains(&flag),
            "--{flag} is not a flag of `k0s token create`"
        );
    }
}

/// `/etc/k0s/k0s.yaml` is a ClusterConfig of the version k0s serves, with only fields its schema
/// has (the server-side dry run in `upstream.rs` checks the same object against the CRD with a real
/// API server).
#[test]
fn k0s_yaml_is_a_cluster_config_of_the_pinned_k0s() {
    let crd: Value =
        serde_saphyr::from_str(&fixture_text("k0s/k0s.k0sproject.io_clusterconfigs.yaml")).expect("CRD yaml");
    let group = crd["spec"]["group"].as_str().expect("group");
    let kind = crd["spec"]["names"]["kind"].as_str().expect("kind");
    let (_, text) = written(
        &steps(Distro::K0s, "laptop-8gb", &ClusterSettings::default()),
        "write-k0s-config",
    );
    let doc: Value = serde_saphyr::from_str(&text).expect("k0s.yaml");
    let api_version = doc["apiVersion"].as_str().expect("apiVersion");
    let (g, v) = api_version.split_once('/').expect("group/version");
    assert_eq!(g, group);
    assert_eq!(doc["kind"], kind);
    let version = crd["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|x| x["name"] == v))
        .unwrap_or_else(|| panic!("the CRD serves no {v}"));
    assert_eq!(version["served"], true);
    let props = &version["schema"]["openAPIV3Schema"]["properties"];
    for key in doc.as_object().expect("mapping").keys() {
        assert!(props.get(key).is_some(), "ClusterConfig has no field {key}");
    }
}

/// The k0s.yaml kstrap writes, as an object the real API server can dry-run against the CRD.
pub fn k0s_cluster_config_object() -> Value {
    let (_, text) = written(
        &steps(Distro::K0s, "laptop-8gb", &ClusterSettings::default()),
        "write-k0s-config",
    );
    let mut doc: Value = serde_saphyr::from_str(&text).expect("k0s.yaml");
    // ClusterConfig is namespaced; k0s keeps its own copy in kube-system.
    doc["metadata"]["namespace"] = Value::String("kube-system".into());
    doc
}

// ---- Open WebUI's start-up downloads ----------------------------------------------------------

/// The env of the `open-webui` container of a sized voice-ai stack, and the model its pull Job pulls.
fn open_webui_env(stack: &kstrap::stack::Stack) -> (BTreeMap<String, Value>, Option<String>) {
    let mut env = BTreeMap::new();
    let mut pulled = None;
    for o in stack.stages.iter().flat_map(|s| &s.objects) {
        let v = &o.value;
        let containers = v["spec"]["template"]["spec"]["containers"].as_array();
        for c in containers.into_iter().flatten() {
            let vars = c["env"].as_array().into_iter().flatten();
            if v["kind"] == "Deployment" && v["metadata"]["name"] == "open-webui" && c["name"] == "open-webui" {
                for e in vars {
                    let name = e["name"].as_str().unwrap_or_default().to_string();
                    env.insert(name, e.get("value").cloned().unwrap_or(Value::Null));
                }
            } else if v["kind"] == "Job" && v["metadata"]["name"] == "ollama-model-pull" {
                for e in vars.filter(|e| e["name"] == "MODEL") {
                    pulled = e["value"].as_str().map(str::to_string);
                }
            }
        }
    }
    (env, pulled)
}

/// On every profile and distribution Open WebUI starts offline (no Hugging Face download, no
/// release check) and embeds with the model the stack pulled, through Ollama; every variable
/// kstrap sets on it is one open-webui 0.8.5 reads.
#[test]
fn open_webui_downloads_nothing_at_start() {
    let known = names("open-webui/env-names.txt");
    let stack = kstrap::stack::load("voice-ai", None).expect("voice-ai");
    let mut checked = 0;
    for profile in stack.sized_profiles() {
        for d in [Distro::K3s, Distro::K0s] {
            let sized = stack.sized_for(profile, Some(d));
            let (env, pulled) = open_webui_env(&sized);
            let what = format!("{profile} on {d}");
            for name in env.keys() {
                assert!(known.contains(name), "{what}: open-webui 0.8.5 reads no {name}");
            }
            assert_eq!(env.get("OFFLINE_MODE"), Some(&Value::from("true")), "{what}");
            assert_eq!(env.get("RAG_EMBEDDING_ENGINE"), Some(&Value::from("ollama")), "{what}");
            let pulled = pulled.unwrap_or_else(|| panic!("{what}: no model pull"));
            assert_eq!(
                env.get("RAG_EMBEDDING_MODEL"),
                Some(&Value::from(pulled.clone())),
                "{what}"
            );
            assert_eq!(env.get("DEFAULT_MODELS"), Some(&Value::from(pulled)), "{what}");
            // It talks to Ollama in the cluster, which the network policy allows.
            assert_eq!(
                env.get("OLLAMA_BASE_URL"),
                Some(&Value::from("http://ollama:11434")),
                "{what}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked} combinations");
}

/// What `kstrap join` writes for a worker: the k3s agent's config.yaml keys are `k3s agent`
/// flags, and `k0s install worker`'s arguments are that command's flags.
#[test]
fn worker_config_and_install_use_upstream_flags() {
    use kstrap::distro::worker::{self, Join, WorkerContext};
    let labels = vec!["kstrap.dev/role=worker".to_string()];
    let join = Join {
        server: "https://10.0.0.2:6443",
        server_host: "10.0.0.2",
        token_source: "/root/kstrap-join-token",
        node_name: "gpu-box",
        labels: &labels,
        gpus: 1,
        gpu_timeout_s: 600,
    };
    for distro in [Distro::K3s, Distro::K0s] {
        let version = distro.default_version();
        let network = kstrap::distro::network::choose(distro, &Default::default());
        // SELinux on: every key kstrap can write for an agent is written.
        let ctx = WorkerContext {
            release: kstrap::distro::Release {
                distro,
                version: &version,
                arch: "x86_64",
                mirror: distro::DEFAULT_MIRROR,
                airgap: None,
            },
            join: &join,
            wait_timeout_s: 300,
            network: &network,
            node_addresses: &[],
            proxy: None,
            selinux: true,
        };
        match distro {
            Distro::K3s => {
                let agent = names("k3s/agent-flags.txt");
                let config: serde_json::Value =
                    serde_saphyr::from_str(&worker::k3s_agent_config(&ctx).unwrap()).unwrap();
                let keys: Vec<&String> = config.as_object().unwrap().keys().collect();
                assert_eq!(keys.len(), 5, "{keys:?}");
                for k in keys {
                    assert!(agent.contains(k), "config key {k:?} is not a k3s agent flag");
                }
            }
            Distro::K0s => {
                let install = names("k0s/install-worker-flags.txt");
                let args = worker::k0s_install_args(&ctx);
                assert_eq!(args[..2], ["install".to_string(), "worker".to_string()]);
                for flag in flags_in(&args) {
                    assert!(
                        install.contains(&flag),
                        "--{flag} is not a flag of `k0s install worker`"
                    );
                }
            }
        }
    }
}
