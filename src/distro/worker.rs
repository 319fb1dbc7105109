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
//!
//! A worker gets what a server gets from the host it runs on: behind a proxy, the proxy variables
//! where its service reads them — k3s: the agent unit's environment file, which install.sh's
//! `create_env_file` fills for an agent as for a server (k3s-io/k3s `install.sh`, commit
//! 0136cf258954a458da1404858396342724b93d24: `FILE_K3S_ENV=${SYSTEMD_DIR}/${SERVICE_K3S}.env`,
//! every `NO_PROXY`/`HTTP_PROXY`/`HTTPS_PROXY` appended); k0s: the drop-in for `k0sworker.service`
//! — with `NO_PROXY` completed with the server's address as well; on an SELinux-enforcing host
//! with k3s's policy, `selinux: true` in the agent's config (preflight refuses without it).
//! The binary comes through the same verified download as a server's (`super::Release`).

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
mod tests;
