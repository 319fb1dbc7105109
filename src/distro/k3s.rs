//! k3s: its release assets, the config file and systemd unit kstrap writes, and its steps.
//!
//! kstrap does what the upstream install script (`get.k3s.io`, k3s-io/k3s `install.sh`) does for a
//! single server, minus the parts that verify nothing or guess: download the binary checked
//! against the release's `sha256sum-<arch>.txt`, write `/etc/rancher/k3s/config.yaml` (keys are
//! k3s flag names), write the same systemd unit the script writes, enable and start it.

use super::{BinarySource, DistroContext, DistroError, KUBECONFIG_CONTEXT, Paths, binary_steps, node_labels, step};
use crate::plan::step::{Action, Contents, Mode, Phase, Step, SystemdOp};
use serde::Serialize;

pub(super) static PATHS: Paths = Paths {
    binary: "/usr/local/bin/k3s",
    config: "/etc/rancher/k3s/config.yaml",
    service_unit: "k3s.service",
    unit_file: "/etc/systemd/system/k3s.service",
    env_file: Some("/etc/systemd/system/k3s.service.env"),
    kubeconfig: "/etc/rancher/k3s/k3s.yaml",
    data_dirs: &["/var/lib/rancher/k3s", "/etc/rancher/k3s"],
    containerd_socket: "/run/k3s/containerd/containerd.sock",
    containerd_config: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
    containerd_drop_in_dir: None,
    images_dir: "/var/lib/rancher/k3s/agent/images",
    manifests_dir: Some("/var/lib/rancher/k3s/server/manifests"),
    node_token: Some("/var/lib/rancher/k3s/server/node-token"),
};

/// `k3s` on amd64, `k3s-arm64` on arm64 (the install script's `k3s${SUFFIX}`).
pub(super) fn binary_asset_name(arch: &str) -> String {
    match arch {
        "amd64" => "k3s".to_string(),
        other => format!("k3s-{other}"),
    }
}

/// `sha256sum-amd64.txt`; its lines are `<sha256>  <asset name>`.
pub(super) fn checksum_file_name(arch: &str) -> String {
    format!("sha256sum-{arch}.txt")
}

/// `k3s-airgap-images-amd64.tar.zst` (k3s docs, "Air-Gap Install").
pub(super) fn images_asset_name(arch: &str) -> String {
    format!("k3s-airgap-images-{arch}.tar.zst")
}

/// `/etc/rancher/k3s/config.yaml`: each key is a `k3s server` flag name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Config<'a> {
    /// The admin kubeconfig is root-only; kstrap copies it for the user.
    write_kubeconfig_mode: &'a str,
    node_label: Vec<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    disable: &'a [String],
    /// Pod and service ranges, only when kstrap moved them off k3s's defaults (`network`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_cidr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_cidr: Option<&'a str>,
    /// SELinux in k3s's containerd (`--selinux`, k3s-io/k3s `pkg/cli/cmds` `SELinuxFlag`), only on
    /// an enforcing host with k3s's policy installed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    selinux: bool,
    /// `--data-dir` (k3s-io/k3s `pkg/cli/cmds/server.go`, `DataDirFlag`), only when kstrap was told
    /// another one than k3s's default (`super::data_dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<&'a str>,
}

pub(super) fn config_yaml(ctx: &DistroContext) -> Result<String, DistroError> {
    let config = Config {
        write_kubeconfig_mode: "0600",
        node_label: node_labels(ctx.profile, ctx.cluster)?,
        disable: &ctx.cluster.disable,
        cluster_cidr: (!ctx.network.is_default).then_some(ctx.network.pod_cidr.as_str()),
        service_cidr: (!ctx.network.is_default).then_some(ctx.network.service_cidr.as_str()),
        selinux: ctx.selinux,
        data_dir: ctx.custom_data_dir(),
    };
    serde_saphyr::to_string(&config).map_err(|e| DistroError::Render {
        file: PATHS.config.to_string(),
        message: e.to_string(),
    })
}

/// The unit the upstream install script writes for a server (k3s-io/k3s `install.sh`,
/// `create_systemd_service_file`), with the binary at `/usr/local/bin/k3s` and no flags: they all
/// live in config.yaml, so changing a setting never means rewriting the unit.
pub(super) const UNIT: &str = "\
[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/etc/systemd/system/k3s.service.env
KillMode=process
Delegate=yes
User=root
# Having non-zero Limit*s causes performance problems due to accounting overhead
# in the kernel. We recommend using cgroups to do container-local accounting.
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/k3s server
";

/// The files a running k3s must be restarted for when they change.
fn restart_inputs() -> Vec<String> {
    [
        Some(PATHS.binary),
        Some(PATHS.config),
        Some(PATHS.unit_file),
        PATHS.env_file,
    ]
    .into_iter()
    .flatten()
    .map(String::from)
    .collect()
}

pub(super) fn steps(ctx: &DistroContext) -> Result<Vec<Step>, DistroError> {
    let mut steps = binary_steps(
        &ctx.release(),
        &BinarySource {
            binary_dest: ctx.paths().binary,
            images_dir: ctx.paths().images_dir,
            download_reason: "one static binary holds the whole distribution; it is checked against the release's sha256 file before it is put in place",
            images_title: "Copy the k3s system images",
            images_reason: "k3s imports image archives from its images folder at start, so its system pods need no registry",
        },
    )?;

    steps.push(step(
        "write-k3s-config",
        Phase::Host,
        "Write the k3s configuration",
        "k3s reads its flags from this file; 0600 because it may hold tokens later",
        Action::WriteFile {
            path: PATHS.config.into(),
            mode: Mode(0o600),
            contents: Contents::Text(config_yaml(ctx)?),
        },
    ));
    steps.push(step(
        "write-k3s-unit",
        Phase::Host,
        "Write the k3s systemd unit",
        "systemd supervises k3s and restarts it; the unit is the upstream install script's own",
        Action::WriteFile {
            path: PATHS.unit_file.into(),
            mode: Mode(0o644),
            contents: Contents::Text(UNIT.into()),
        },
    ));
    if let Some(env_file) = PATHS.env_file {
        steps.push(step(
            "write-k3s-env",
            Phase::Host,
            "Write the k3s unit's environment file",
            if ctx.proxy.is_some() {
                "the unit reads its proxy variables from it, as k3s's install script writes them (NO_PROXY completed with the node's addresses, the cluster's ranges, .svc and .cluster.local); 0600 since a proxy URL can hold a password"
            } else if ctx.network.proxy_removed {
                "emptied: the proxy k3s was given at the install is no longer in kstrap's environment (no HTTP_PROXY or HTTPS_PROXY), so k3s restarts without it"
            } else {
                "the unit reads K3S_* and proxy variables from it; empty (no HTTP_PROXY or HTTPS_PROXY in kstrap's environment), 0600 since such variables can be secrets"
            },
            Action::WriteFile {
                path: env_file.into(),
                mode: Mode(0o600),
                contents: Contents::Text(super::proxy::env_file(&ctx.proxy_env())),
            },
        ));
    }
    steps.push(step(
        "reload-systemd-k3s",
        Phase::Host,
        "Reload systemd",
        "systemd only sees a new or changed unit file after a reload; skipped when neither changed",
        Action::Systemd {
            unit: PATHS.service_unit.into(),
            op: SystemdOp::DaemonReload,
            after_changes: [Some(PATHS.unit_file), PATHS.env_file]
                .into_iter()
                .flatten()
                .map(String::from)
                .collect(),
        },
    ));
    steps.push(super::rerun::start_step(
        ctx,
        step(
            "start-k3s",
            Phase::Cluster,
            "Enable and start k3s",
            "enabled so the cluster comes back after a reboot; started so the API server comes up now; restarted once if its binary, config or unit changed",
            Action::Systemd {
                unit: PATHS.service_unit.into(),
                op: SystemdOp::EnableNow,
                after_changes: restart_inputs(),
            },
        ),
    ));
    steps.push(step(
        "wait-k3s",
        Phase::Cluster,
        "Wait for the k3s API server and node",
        "nothing can be applied before the API server answers and the node is Ready",
        Action::WaitCluster {
            kubeconfig: ctx.paths().kubeconfig.into(),
            timeout_s: ctx.wait_timeout_s,
        },
    ));
    steps.push(step(
        "kubeconfig-k3s",
        Phase::Cluster,
        "Write your kubeconfig",
        "k3s writes a root-only admin kubeconfig; kubectl and kstrap use it as context \"kstrap\"",
        Action::Kubeconfig {
            source: ctx.paths().kubeconfig.into(),
            dest: ctx.kubeconfig_dest.into(),
            context: KUBECONFIG_CONTEXT.into(),
        },
    ));
    Ok(steps)
}
