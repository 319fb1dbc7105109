//! A worker machine of an existing cluster (`kstrap join`): the k3s agent or the k0s worker, as
//! data. Pure like the rest of this module: the planner gets steps back, the executor runs them.
//!
//! k3s: what the upstream install script (k3s-io/k3s `install.sh`, `setup_env`) does with
//! `K3S_URL` set: the command becomes `agent`, the unit `k3s-agent.service` with its environment
//! file `k3s-agent.service.env`, otherwise the same unit as a server's. kstrap gives the agent its
//! server, token file, node name and labels in `/etc/rancher/k3s/config.yaml` (keys are `k3s
//! agent` flag names: `server`, `token-file`, `node-name`, `node-label`) instead of `K3S_URL` and
//! `K3S_TOKEN` in the environment file, so the token is in one root-only file and never in an
//! environment or on a command line. The kubelet's kubeconfig is
//! `/var/lib/rancher/k3s/agent/kubelet.kubeconfig` (k3s-io/k3s `pkg/agent/config/config.go`,
//! `kubeconfigKubelet`).
//!
//! k0s: `k0s install worker --token-file FILE --labels=…` (k0sproject/k0s v1.35.3+k0s.0
//! `cmd/install/worker.go`; `--token-file` from `pkg/config/cli.go`), which writes and enables
//! `k0sworker.service`; the kubelet's kubeconfig is `/var/lib/k0s/kubelet.conf`
//! (`pkg/config/cfgvars.go`, `KubeletAuthConfigPath`).

use super::network::ClusterNetwork;
use super::proxy::{ClusterNet, Proxy};
use super::{BinarySource, Distro, DistroError, Paths, Release, binary_steps, check_label, step};
use crate::plan::step::{Action, Contents, Mode, Phase, Step, SystemdOp};
use serde::{Deserialize, Serialize};

/// What kstrap installed on a machine: a cluster's server, or a worker that joined one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Server,
    Worker,
}

impl Role {
    pub fn is_server(&self) -> bool {
        *self == Role::Server
    }
}

pub(super) static K3S_AGENT: Paths = Paths {
    binary: "/usr/local/bin/k3s",
    config: "/etc/rancher/k3s/config.yaml",
    service_unit: "k3s-agent.service",
    unit_file: "/etc/systemd/system/k3s-agent.service",
    env_file: Some("/etc/systemd/system/k3s-agent.service.env"),
    kubeconfig: "/var/lib/rancher/k3s/agent/kubelet.kubeconfig",
    data_dirs: &["/var/lib/rancher/k3s", "/etc/rancher/k3s"],
    containerd_socket: "/run/k3s/containerd/containerd.sock",
    containerd_config: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
    containerd_drop_in_dir: None,
    images_dir: "/var/lib/rancher/k3s/agent/images",
    manifests_dir: None,
    node_token: None,
};

/// The root-only copy of the join token the k3s agent reads (`token-file`).
pub const K3S_TOKEN_FILE: &str = "/etc/rancher/k3s/agent-token";

pub(super) static K0S_WORKER: Paths = Paths {
    binary: "/usr/local/bin/k0s",
    // A k0s worker has no configuration file: the file kstrap writes for it is the token.
    config: "/etc/k0s/worker-token",
    service_unit: "k0sworker.service",
    unit_file: "/etc/systemd/system/k0sworker.service",
    env_file: None,
    kubeconfig: "/var/lib/k0s/kubelet.conf",
    data_dirs: &["/var/lib/k0s", "/etc/k0s", "/run/k0s"],
    containerd_socket: "/run/k0s/containerd.sock",
    containerd_config: "/run/k0s/containerd-cri.toml",
    containerd_drop_in_dir: Some("/etc/k0s/containerd.d"),
    images_dir: "/var/lib/k0s/images",
    manifests_dir: None,
    node_token: None,
};

impl Distro {
    /// Where the distribution keeps its files on a machine of this role.
    pub fn paths_for(self, role: Role) -> &'static Paths {
        match (self, role) {
            (_, Role::Server) => self.paths(),
            (Distro::K3s, Role::Worker) => &K3S_AGENT,
            (Distro::K0s, Role::Worker) => &K0S_WORKER,
        }
    }
}

/// The token file the worker's service reads.
pub fn token_file(distro: Distro) -> &'static str {
    match distro {
        Distro::K3s => K3S_TOKEN_FILE,
        Distro::K0s => K0S_WORKER.config,
    }
}

/// The agent unit: the server's unit (`super::k3s::UNIT`, install.sh `create_systemd_service_file`)
/// with the agent's environment file and `ExecStart=… agent`, as install.sh writes it when the
/// command is `agent`.
pub fn k3s_agent_unit() -> String {
    super::k3s::UNIT
        .replace(
            "EnvironmentFile=-/etc/systemd/system/k3s.service.env",
            "EnvironmentFile=-/etc/systemd/system/k3s-agent.service.env",
        )
        .replace(
            "ExecStart=/usr/local/bin/k3s server",
            "ExecStart=/usr/local/bin/k3s agent",
        )
}

/// Everything the worker steps need.
#[derive(Debug, Clone, Copy)]
pub struct WorkerContext<'a> {
    /// The server's distribution and version, for this machine.
    pub release: Release<'a>,
    pub join: &'a Join<'a>,
    /// Seconds to wait for the node to be Ready.
    pub wait_timeout_s: u64,
    /// The cluster's pod and service ranges, for `NO_PROXY`: what `network::choose` gives on this
    /// machine, which is the server's unless the server's routes made it move off the defaults
    /// (the join token does not carry the server's ranges).
    pub network: &'a ClusterNetwork,
    /// This machine's own addresses, for `NO_PROXY`.
    pub node_addresses: &'a [String],
    /// The HTTP proxy from kstrap's environment, if any.
    pub proxy: Option<&'a Proxy>,
    /// SELinux is enforcing and k3s's policy is installed: the k3s agent runs with
    /// `selinux: true`, as the server does.
    pub selinux: bool,
}

/// What `join` was told and found out: the cluster to join, and this node.
#[derive(Debug, Clone, Copy)]
pub struct Join<'a> {
    /// The server's URL (`https://host:6443`).
    pub server: &'a str,
    /// The server's host (name or address) in that URL.
    pub server_host: &'a str,
    /// The user's token file (absolute), copied root-only into place.
    pub token_source: &'a str,
    /// The node's name (k3s `node-name`; on k0s the kubelet's default, the host name).
    pub node_name: &'a str,
    /// `key=value` labels, validated by [`node_labels`].
    pub labels: &'a [String],
    /// Physical GPUs the node will advertise (0: no GPU wait).
    pub gpus: u32,
    pub gpu_timeout_s: u64,
}

impl WorkerContext<'_> {
    /// The proxy variables the worker's service gets, empty without a proxy. `NO_PROXY` is
    /// completed as a server's is (loopback, this node's addresses, the cluster's ranges, `.svc`,
    /// `.cluster.local`) and with the server's address: the agent's calls to its server (k3s's
    /// supervisor and API server, k0s's konnectivity and API server) must never go through the
    /// proxy.
    pub fn proxy_env(&self) -> Vec<(String, String)> {
        let Some(proxy) = self.proxy else {
            return Vec::new();
        };
        let mut addresses = self.node_addresses.to_vec();
        if !addresses.iter().any(|a| a == self.join.server_host) {
            addresses.push(self.join.server_host.to_string());
        }
        proxy.service_env(&ClusterNet {
            pod_cidr: &self.network.pod_cidr,
            service_cidr: &self.network.service_cidr,
            node_addresses: &addresses,
        })
    }
}

/// A label value from free text (a GPU model): characters a label value may not hold become
/// `-`, at most 63, starting and ending alphanumeric.
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut out = String::new();
    for c in mapped.chars() {
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    let out: String = out.chars().take(63).collect();
    out.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// `key=value` labels, checked as Kubernetes label syntax and sorted by key.
pub fn node_labels(pairs: &[(String, String)]) -> Result<Vec<String>, DistroError> {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    sorted.dedup_by(|a, b| a.0 == b.0);
    sorted
        .into_iter()
        .map(|(k, v)| {
            let label = format!("{k}={v}");
            check_label(k, v).map_err(|problem| DistroError::InvalidLabel {
                label: label.clone(),
                problem,
            })?;
            Ok(label)
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct AgentConfig<'a> {
    server: &'a str,
    token_file: &'a str,
    node_name: &'a str,
    node_label: &'a [String],
    /// SELinux in the agent's containerd (`k3s agent --selinux`, k3s-io/k3s
    /// `pkg/cli/cmds/agent.go`, the same `SELinuxFlag` the server takes), only on an enforcing
    /// host with k3s's policy installed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    selinux: bool,
}

/// `/etc/rancher/k3s/config.yaml` of an agent.
pub fn k3s_agent_config(ctx: &WorkerContext) -> Result<String, DistroError> {
    let config = AgentConfig {
        server: ctx.join.server,
        token_file: K3S_TOKEN_FILE,
        node_name: ctx.join.node_name,
        node_label: ctx.join.labels,
        selinux: ctx.selinux,
    };
    serde_saphyr::to_string(&config).map_err(|e| DistroError::Render {
        file: K3S_AGENT.config.to_string(),
        message: e.to_string(),
    })
}

/// `k0s install worker` arguments.
pub fn k0s_install_args(ctx: &WorkerContext) -> Vec<String> {
    let mut args: Vec<String> = ["install", "worker", "--token-file", K0S_WORKER.config, "--force"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !ctx.join.labels.is_empty() {
        args.push(format!("--labels={}", ctx.join.labels.join(",")));
    }
    args
}

/// The systemd drop-in through which a k0s worker gets proxy variables: the controller's
/// (`super::k0s::PROXY_DROP_IN`, k0sproject/k0s v1.35.3+k0s.0 `docs/environment-variables.md`:
/// "The environment variables set in `k0scontroller` or `k0sworker` service will be inherited by
/// k0s components") for the worker's unit.
pub const K0S_WORKER_PROXY_DROP_IN: &str = "/etc/systemd/system/k0sworker.service.d/http-proxy.conf";

/// The steps that install the worker, start it and wait for its node (phases Host, Cluster).
pub fn steps(ctx: &WorkerContext) -> Result<Vec<Step>, DistroError> {
    let distro = ctx.release.distro;
    let paths = distro.paths_for(Role::Worker);
    let name = distro.name();
    let join = ctx.join;
    let mut steps = binary_steps(
        &ctx.release,
        &BinarySource {
            binary_dest: paths.binary,
            images_dir: paths.images_dir,
            download_reason: "the same release as the server's; checked against the release's sha256 file before it is put in place",
            images_title: "Copy the system images",
            images_reason: "the worker imports image archives from its images folder at start, so its system pods need no registry",
        },
    )?;
    let proxy_env = ctx.proxy_env();
    let token = token_file(distro);
    steps.push(step(
        "copy-join-token",
        Phase::Host,
        "Copy the join token into a root-only file",
        "the service reads the token from this file (0600); it is never on a command line, in the environment or in kstrap's output",
        Action::CopyLocal {
            source: join.token_source.into(),
            checksum: None,
            dest: token.into(),
            mode: Mode(0o600),
        },
    ));
    let restart_inputs: Vec<String> = match distro {
        Distro::K3s => {
            steps.push(step(
                "write-k3s-agent-config",
                Phase::Host,
                "Write the k3s agent configuration",
                "the agent reads its server, token file, node name and node labels from this file",
                Action::WriteFile {
                    path: paths.config.into(),
                    mode: Mode(0o600),
                    contents: Contents::Text(k3s_agent_config(ctx)?),
                },
            ));
            steps.push(step(
                "write-k3s-agent-unit",
                Phase::Host,
                "Write the k3s agent systemd unit",
                "systemd supervises the agent; the unit is the upstream install script's own for an agent",
                Action::WriteFile {
                    path: paths.unit_file.into(),
                    mode: Mode(0o644),
                    contents: Contents::Text(k3s_agent_unit()),
                },
            ));
            let env = paths.env_file.unwrap_or("/etc/systemd/system/k3s-agent.service.env");
            steps.push(step(
                "write-k3s-agent-env",
                Phase::Host,
                "Write the k3s agent unit's environment file",
                if proxy_env.is_empty() {
                    "the unit reads K3S_* and proxy variables from it; empty (the token is in its own file, and no HTTP_PROXY or HTTPS_PROXY in kstrap's environment), 0600"
                } else {
                    "the unit reads its proxy variables from it, as k3s's install script writes them for an agent (NO_PROXY completed with the server's address, the node's addresses, the cluster's ranges, .svc and .cluster.local); 0600 since a proxy URL can hold a password"
                },
                Action::WriteFile {
                    path: env.into(),
                    mode: Mode(0o600),
                    contents: Contents::Text(super::proxy::env_file(&proxy_env)),
                },
            ));
            steps.push(step(
                "reload-systemd-k3s-agent",
                Phase::Host,
                "Reload systemd",
                "systemd only sees a new or changed unit file after a reload; skipped when neither changed",
                Action::Systemd {
                    unit: paths.service_unit.into(),
                    op: SystemdOp::DaemonReload,
                    after_changes: vec![paths.unit_file.into(), env.into()],
                },
            ));
            vec![
                paths.binary.into(),
                paths.config.into(),
                paths.unit_file.into(),
                env.into(),
                token.into(),
            ]
        }
        Distro::K0s => {
            steps.push(step(
                "install-k0s-worker",
                Phase::Host,
                "Install k0s as a worker",
                "k0s writes and enables its own systemd unit (k0sworker.service) reading the token file; --force rewrites it on a re-run",
                Action::Command {
                    program: paths.binary.into(),
                    args: k0s_install_args(ctx),
                    creates: vec![paths.unit_file.into()],
                },
            ));
            let mut inputs = vec![paths.binary.to_string(), token.into(), paths.unit_file.into()];
            if !proxy_env.is_empty() {
                steps.push(step(
                    "write-k0s-worker-proxy",
                    Phase::Host,
                    "Write the k0s worker service's proxy drop-in",
                    "k0s's documented way to give its components HTTP_PROXY/HTTPS_PROXY/NO_PROXY (NO_PROXY completed with the server's address, the node's addresses, the cluster's ranges, .svc and .cluster.local); 0600 since a proxy URL can hold a password",
                    Action::WriteFile {
                        path: K0S_WORKER_PROXY_DROP_IN.into(),
                        mode: Mode(0o600),
                        contents: Contents::Text(super::proxy::systemd_drop_in(&proxy_env)),
                    },
                ));
                steps.push(step(
                    "reload-systemd-k0s-worker",
                    Phase::Host,
                    "Reload systemd",
                    "systemd only sees a new or changed drop-in after a reload; skipped when it did not change",
                    Action::Systemd {
                        unit: paths.service_unit.into(),
                        op: SystemdOp::DaemonReload,
                        after_changes: vec![K0S_WORKER_PROXY_DROP_IN.into()],
                    },
                ));
                inputs.push(K0S_WORKER_PROXY_DROP_IN.into());
            }
            inputs
        }
    };
    steps.push(step(
        &format!("start-{name}-worker"),
        Phase::Cluster,
        &format!("Enable and start the {name} worker ({})", paths.service_unit),
        "enabled so the node comes back after a reboot; started so it joins now; restarted once if its binary, configuration, unit or token changed",
        Action::Systemd {
            unit: paths.service_unit.into(),
            op: SystemdOp::EnableNow,
            after_changes: restart_inputs,
        },
    ));
    steps.push(step(
        "wait-node",
        Phase::Cluster,
        &format!("Wait until node {} is Ready", join.node_name),
        "read with the kubelet's own credentials, which may read only this node: the join is done when the cluster sees the node Ready",
        Action::WaitNode {
            kubeconfig: paths.kubeconfig.into(),
            node: join.node_name.into(),
            gpus: 0,
            timeout_s: ctx.wait_timeout_s,
        },
    ));
    if join.gpus > 0 {
        steps.push(step(
            "wait-node-gpus",
            Phase::Gpu,
            &format!(
                "Wait until node {} advertises its {} GPU(s) × the cluster's replicas",
                join.node_name, join.gpus
            ),
            "the GPU operator on the server deploys its toolkit and device plugin to the new node; done when allocatable nvidia.com/gpu = GPUs × the replicas its nvidia.com/gpu.replicas label says",
            Action::WaitNode {
                kubeconfig: paths.kubeconfig.into(),
                node: join.node_name.into(),
                gpus: join.gpus,
                timeout_s: join.gpu_timeout_s,
            },
        ));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distro::Version;

    #[test]
    fn agent_unit_is_the_server_unit_with_the_agent_command_and_env_file() {
        let unit = k3s_agent_unit();
        assert!(unit.contains("ExecStart=/usr/local/bin/k3s agent\n"), "{unit}");
        assert!(unit.contains("EnvironmentFile=-/etc/systemd/system/k3s-agent.service.env\n"));
        assert!(!unit.contains("k3s server") && !unit.contains("k3s.service.env"));
        assert!(unit.contains("Type=notify") && unit.contains("KillMode=process"));
    }

    #[test]
    fn label_values_from_gpu_names() {
        assert_eq!(label_value("NVIDIA GeForce RTX 5090"), "NVIDIA-GeForce-RTX-5090");
        assert_eq!(label_value(" (A100) 80GB "), "A100-80GB");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
        let labels = node_labels(&[("kstrap.dev/gpu-model".into(), label_value("NVIDIA H100 80GB HBM3"))]).unwrap();
        assert_eq!(labels, vec!["kstrap.dev/gpu-model=NVIDIA-H100-80GB-HBM3"]);
        assert!(node_labels(&[("bad key!".into(), "x".into())]).is_err());
    }

    fn join<'a>(labels: &'a [String], gpus: u32) -> Join<'a> {
        Join {
            server: "https://10.0.0.5:6443",
            server_host: "10.0.0.5",
            token_source: "/root/join-token",
            node_name: "gpu-box",
            labels,
            gpus,
            gpu_timeout_s: 600,
        }
    }

    fn ctx<'a>(
        distro: Distro,
        version: &'a Version,
        join: &'a Join<'a>,
        network: &'a ClusterNetwork,
    ) -> WorkerContext<'a> {
        WorkerContext {
            release: Release {
                distro,
                version,
                arch: "x86_64",
                mirror: super::super::DEFAULT_MIRROR,
                airgap: None,
            },
            join,
            wait_timeout_s: 300,
            network,
            node_addresses: &[],
            proxy: None,
            selinux: false,
        }
    }

    #[test]
    fn k3s_worker_steps_and_config() {
        let v = Distro::K3s.default_version();
        let labels = vec!["kstrap.dev/gpu-count=1".to_string()];
        let net = super::super::network::choose(Distro::K3s, &Default::default());
        let j = join(&labels, 1);
        let steps = steps(&ctx(Distro::K3s, &v, &j, &net)).unwrap();
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "download-k3s",
                "copy-join-token",
                "write-k3s-agent-config",
                "write-k3s-agent-unit",
                "write-k3s-agent-env",
                "reload-systemd-k3s-agent",
                "start-k3s-worker",
                "wait-node",
                "wait-node-gpus"
            ]
        );
        let config = k3s_agent_config(&ctx(Distro::K3s, &v, &j, &net)).unwrap();
        assert_eq!(
            config,
            "server: https://10.0.0.5:6443\ntoken-file: /etc/rancher/k3s/agent-token\nnode-name: gpu-box\nnode-label:\n- kstrap.dev/gpu-count=1\n"
        );
        let json = serde_json::to_string(&steps).unwrap();
        assert!(json.contains("/root/join-token") && json.contains("\"0600\""));
    }

    #[test]
    fn k0s_worker_installs_with_its_token_file() {
        let v = Distro::K0s.default_version();
        let labels = vec!["kstrap.dev/profile=laptop-8gb".to_string()];
        let net = super::super::network::choose(Distro::K0s, &Default::default());
        let j = join(&labels, 0);
        let steps = steps(&ctx(Distro::K0s, &v, &j, &net)).unwrap();
        let install = steps.iter().find(|s| s.id == "install-k0s-worker").unwrap();
        let Action::Command { args, creates, .. } = &install.action else {
            panic!("{install:?}")
        };
        assert_eq!(
            args.join(" "),
            "install worker --token-file /etc/k0s/worker-token --force --labels=kstrap.dev/profile=laptop-8gb"
        );
        assert_eq!(creates, &vec!["/etc/systemd/system/k0sworker.service".to_string()]);
        assert!(!steps.iter().any(|s| s.id == "wait-node-gpus"));
    }

    fn written<'a>(steps: &'a [Step], id: &str) -> (&'a str, u32, &'a str) {
        match steps.iter().find(|s| s.id == id).map(|s| &s.action) {
            Some(Action::WriteFile {
                path,
                mode,
                contents: Contents::Text(t),
            }) => (path.as_str(), mode.0, t.as_str()),
            other => panic!("{id}: {other:?}"),
        }
    }

    fn proxy() -> Proxy {
        let vars = |n: &str| match n {
            "HTTPS_PROXY" => Some("http://alice:w0rker-pw@10.0.0.1:3128".to_string()),
            "NO_PROXY" => Some("corp.example".to_string()),
            _ => None,
        };
        Proxy::from_vars(vars).unwrap().unwrap()
    }

    /// What `up` writes for a server behind a proxy, a k3s agent gets in its unit's environment
    /// file, with the server's address among NO_PROXY's entries; without a proxy the file stays
    /// empty.
    #[test]
    fn a_k3s_agent_behind_a_proxy_gets_it_in_its_env_file_with_the_server_bypassed() {
        let v = Distro::K3s.default_version();
        let labels = vec!["kstrap.dev/role=worker".to_string()];
        let net = super::super::network::choose(Distro::K3s, &Default::default());
        let j = join(&labels, 0);
        let p = proxy();
        let addrs = ["192.168.1.23".to_string()];
        let with = WorkerContext {
            proxy: Some(&p),
            node_addresses: &addrs,
            ..ctx(Distro::K3s, &v, &j, &net)
        };
        let planned = steps(&with).unwrap();
        let (path, mode, env) = written(&planned, "write-k3s-agent-env");
        assert_eq!((path, mode), ("/etc/systemd/system/k3s-agent.service.env", 0o600));
        assert_eq!(
            env,
            "HTTPS_PROXY=http://alice:w0rker-pw@10.0.0.1:3128\nNO_PROXY=corp.example,localhost,127.0.0.1,::1,192.168.1.23,10.0.0.5,10.42.0.0/16,10.43.0.0/16,.svc,.cluster.local\n"
        );
        // A changed env file restarts the agent (after systemd re-reads it).
        let start = planned.iter().find(|s| s.id == "start-k3s-worker").unwrap();
        assert!(
            matches!(&start.action, Action::Systemd { after_changes, .. } if after_changes.iter().any(|f| f == path))
        );
        // The server's address is added once, even when it is also this node's.
        let same = ["10.0.0.5".to_string()];
        let env = with_node(&with, &same).proxy_env();
        let no_proxy = &env.iter().find(|(k, _)| k == "NO_PROXY").unwrap().1;
        assert_eq!(no_proxy.matches("10.0.0.5").count(), 1, "{no_proxy}");

        let bare = steps(&ctx(Distro::K3s, &v, &j, &net)).unwrap();
        assert_eq!(written(&bare, "write-k3s-agent-env").2, "");
    }

    fn with_node<'a>(ctx: &WorkerContext<'a>, addresses: &'a [String]) -> WorkerContext<'a> {
        WorkerContext {
            node_addresses: addresses,
            ..*ctx
        }
    }

    /// A k0s worker gets the controller's drop-in, for its own unit: written after `k0s install
    /// worker` (which rewrites the unit), reloaded, and a restart input of the worker.
    #[test]
    fn a_k0s_worker_behind_a_proxy_gets_the_drop_in_for_its_unit() {
        let v = Distro::K0s.default_version();
        let labels = vec!["kstrap.dev/role=worker".to_string()];
        let net = super::super::network::choose(Distro::K0s, &Default::default());
        let j = join(&labels, 0);
        let p = proxy();
        let planned = steps(&WorkerContext {
            proxy: Some(&p),
            ..ctx(Distro::K0s, &v, &j, &net)
        })
        .unwrap();
        let ids: Vec<&str> = planned.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "download-k0s",
                "copy-join-token",
                "install-k0s-worker",
                "write-k0s-worker-proxy",
                "reload-systemd-k0s-worker",
                "start-k0s-worker",
                "wait-node"
            ]
        );
        let (path, mode, drop_in) = written(&planned, "write-k0s-worker-proxy");
        assert_eq!(
            (path, mode),
            ("/etc/systemd/system/k0sworker.service.d/http-proxy.conf", 0o600)
        );
        assert!(drop_in.contains("[Service]\nEnvironment=HTTPS_PROXY=http://alice:w0rker-pw@10.0.0.1:3128\n"));
        assert!(
            drop_in.contains("Environment=NO_PROXY=corp.example,localhost,127.0.0.1,::1,10.0.0.5,10.244.0.0/16,10.96.0.0/12,.svc,.cluster.local\n"),
            "{drop_in}"
        );
        let start = planned.iter().find(|s| s.id == "start-k0s-worker").unwrap();
        assert!(
            matches!(&start.action, Action::Systemd { after_changes, .. } if after_changes.iter().any(|f| f == path))
        );
        // `down` may remove it: it is one of the files kstrap writes for k0s.
        assert!(Distro::K0s.extra_files().contains(&K0S_WORKER_PROXY_DROP_IN));
        // Without a proxy: no drop-in, no reload.
        let bare = steps(&ctx(Distro::K0s, &v, &j, &net)).unwrap();
        assert!(
            !bare
                .iter()
                .any(|s| s.id.contains("proxy") || s.id.starts_with("reload"))
        );
    }

    #[test]
    fn a_k3s_agent_on_an_enforcing_host_with_the_policy_runs_with_selinux() {
        let v = Distro::K3s.default_version();
        let labels = vec!["kstrap.dev/role=worker".to_string()];
        let net = super::super::network::choose(Distro::K3s, &Default::default());
        let j = join(&labels, 0);
        let on = k3s_agent_config(&WorkerContext {
            selinux: true,
            ..ctx(Distro::K3s, &v, &j, &net)
        })
        .unwrap();
        assert!(on.ends_with("\nselinux: true\n"), "{on}");
        let off = k3s_agent_config(&ctx(Distro::K3s, &v, &j, &net)).unwrap();
        assert!(!off.contains("selinux"), "{off}");
    }
}
