//! k0s: its release assets, the config file kstrap writes, and its steps.
//!
//! k0s's own download script verifies nothing, so kstrap downloads the binary itself and checks it
//! against the release's `sha256sums.txt` (written by `sha256sum -b *` in k0s's release workflow,
//! so its lines read `<sha256> *<asset name>`). Then `k0s install controller` writes the systemd
//! unit (`k0scontroller.service`) and `k0s start` starts it, as the k0s quick start does.
//! `--enable-worker --no-taints` instead of `--single`: a single-node k0s can never grow, this
//! one can take workers later.

use super::{
    BinarySource, DistroContext, DistroError, KUBECONFIG_CONTEXT, Paths, Version, binary_steps, node_labels, step,
};
use crate::plan::step::{Action, Contents, Mode, Phase, Step, SystemdOp};
use serde::Serialize;

pub(super) static PATHS: Paths = Paths {
    binary: "/usr/local/bin/k0s",
    config: "/etc/k0s/k0s.yaml",
    service_unit: "k0scontroller.service",
    unit_file: "/etc/systemd/system/k0scontroller.service",
    env_file: None,
    kubeconfig: "/var/lib/k0s/pki/admin.conf",
    data_dirs: &["/var/lib/k0s", "/etc/k0s", "/run/k0s"],
    containerd_socket: "/run/k0s/containerd.sock",
    containerd_config: "/run/k0s/containerd-cri.toml",
    containerd_drop_in_dir: Some("/etc/k0s/containerd.d"),
    images_dir: "/var/lib/k0s/images",
    manifests_dir: None,
    node_token: None,
};

/// `k0s-v1.35.3+k0s.0-amd64` (k0sproject/k0s `.github/workflows/release.yml`).
pub(super) fn binary_asset_name(version: &Version, arch: &str) -> String {
    format!("k0s-{version}-{arch}")
}

pub(super) fn checksum_file_name() -> String {
    "sha256sums.txt".to_string()
}

/// The image bundle asset. Up to v1.35 it is `k0s-airgap-bundle-<v>-<arch>`
/// (k0sproject/k0s `.github/workflows/release.yml` at v1.35.3+k0s.0, `asset_name`); from v1.36 the
/// release workflow names it `k0s-airgap-bundle-<v>-linux-<arch>.tar` (same file at
/// v1.36.1+k0s.0).
pub(super) fn images_asset_name(version: &Version, arch: &str) -> String {
    if version.minor() >= 36 {
        format!("k0s-airgap-bundle-{version}-linux-{arch}.tar")
    } else {
        format!("k0s-airgap-bundle-{version}-{arch}")
    }
}

/// `/etc/k0s/k0s.yaml`: the smallest ClusterConfig; k0s fills in every default.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterConfig<'a> {
    api_version: &'a str,
    kind: &'a str,
    metadata: Metadata<'a>,
    /// Only when kstrap moved the pod and service ranges off k0s's defaults (`network`).
    #[serde(skip_serializing_if = "Option::is_none")]
    spec: Option<Spec<'a>>,
}

#[derive(Debug, Serialize)]
struct Metadata<'a> {
    name: &'a str,
}

#[derive(Debug, Serialize)]
struct Spec<'a> {
    network: NetworkSpec<'a>,
}

/// `spec.network.podCIDR` / `serviceCIDR` (k0sproject/k0s v1.35.3+k0s.0
/// `pkg/apis/k0s/v1beta1/network.go`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NetworkSpec<'a> {
    #[serde(rename = "podCIDR")]
    pod_cidr: &'a str,
    #[serde(rename = "serviceCIDR")]
    service_cidr: &'a str,
}

/// The systemd drop-in through which k0s gets proxy variables (k0s
/// `docs/environment-variables.md`, "systemd": `k0s install` takes no environment).
pub(super) const PROXY_DROP_IN: &str = "/etc/systemd/system/k0scontroller.service.d/http-proxy.conf";

pub(super) fn config_yaml(ctx: &DistroContext) -> Result<String, DistroError> {
    let config = ClusterConfig {
        api_version: "k0s.k0sproject.io/v1beta1",
        kind: "ClusterConfig",
        metadata: Metadata { name: "k0s" },
        spec: (!ctx.network.is_default).then_some(Spec {
            network: NetworkSpec {
                pod_cidr: &ctx.network.pod_cidr,
                service_cidr: &ctx.network.service_cidr,
            },
        }),
    };
    serde_saphyr::to_string(&config).map_err(|e| DistroError::Render {
        file: PATHS.config.to_string(),
        message: e.to_string(),
    })
}

/// Arguments of `k0s install controller` (flags from k0s's `install controller` and controller
/// flag set: `--enable-worker`, `--no-taints`, `--config`, `--force`, `--disable-components`,
/// `--labels`).
pub(super) fn install_args(ctx: &DistroContext) -> Result<Vec<String>, DistroError> {
    let mut args: Vec<String> = [
        "install",
        "controller",
        "--enable-worker",
        "--no-taints",
        "--config",
        PATHS.config,
        "--force",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // `--data-dir` (k0sproject/k0s v1.35.3+k0s.0 `pkg/config/cli.go`; `k0s install` writes it
    // into the unit's command line, `cmd/install/util.go`), only when not k0s's default.
    if let Some(dir) = ctx.custom_data_dir() {
        args.push(format!("--data-dir={dir}"));
    }
    if !ctx.cluster.disable.is_empty() {
        args.push(format!("--disable-components={}", ctx.cluster.disable.join(",")));
    }
    args.push(format!("--labels={}", node_labels(ctx.profile, ctx.cluster)?.join(",")));
    Ok(args)
}

pub(super) fn steps(ctx: &DistroContext) -> Result<Vec<Step>, DistroError> {
    let mut steps = binary_steps(
        &ctx.release(),
        &BinarySource {
            binary_dest: ctx.paths().binary,
            images_dir: ctx.paths().images_dir,
            download_reason: "one static binary holds the whole distribution; k0s's own script checks nothing, kstrap checks the release's sha256 file",
            images_title: "Copy the k0s image bundle",
            images_reason: "k0s imports every bundle in its images folder before it starts the kubelet, so its system pods need no registry",
        },
    )?;

    steps.push(step(
        "write-k0s-config",
        Phase::Host,
        "Write the k0s configuration",
        "k0s reads its cluster configuration from this file; 0600 because it may hold secrets later",
        Action::WriteFile {
            path: PATHS.config.into(),
            mode: Mode(0o600),
            contents: Contents::Text(config_yaml(ctx)?),
        },
    ));
    steps.push(step(
        "install-k0s",
        Phase::Host,
        "Install k0s as a controller that also runs workloads",
        "k0s writes and enables its own systemd unit; --force rewrites it on a re-run, --no-taints lets pods schedule on this node",
        Action::Command {
            program: PATHS.binary.into(),
            args: install_args(ctx)?,
            creates: vec![PATHS.unit_file.into()],
        },
    ));
    let proxy_env = ctx.proxy_env();
    let mut restart_inputs = vec![PATHS.binary.to_string(), PATHS.config.into(), PATHS.unit_file.into()];
    if !proxy_env.is_empty() {
        steps.push(step(
            "write-k0s-proxy",
            Phase::Host,
            "Write the k0s service's proxy drop-in",
            "k0s's documented way to give its components HTTP_PROXY/HTTPS_PROXY/NO_PROXY (NO_PROXY completed with the node's addresses, the cluster's ranges, .svc and .cluster.local); 0600 since a proxy URL can hold a password",
            Action::WriteFile {
                path: PROXY_DROP_IN.into(),
                mode: Mode(0o600),
                contents: Contents::Text(super::proxy::systemd_drop_in(&proxy_env)),
            },
        ));
        steps.push(step(
            "reload-systemd-k0s",
            Phase::Host,
            "Reload systemd",
            "systemd only sees a new or changed drop-in after a reload; skipped when it did not change",
            Action::Systemd {
                unit: PATHS.service_unit.into(),
                op: SystemdOp::DaemonReload,
                after_changes: vec![PROXY_DROP_IN.into()],
            },
        ));
        restart_inputs.push(PROXY_DROP_IN.into());
    } else if ctx.network.proxy_removed {
        steps.push(step(
            "remove-k0s-proxy",
            Phase::Host,
            "Remove the k0s service's proxy drop-in",
            "the proxy k0s was given at the install is no longer in kstrap's environment (no HTTP_PROXY or HTTPS_PROXY): without its drop-in, k0s restarts with no proxy",
            Action::RemoveFile {
                path: PROXY_DROP_IN.into(),
            },
        ));
        steps.push(step(
            "reload-systemd-k0s",
            Phase::Host,
            "Reload systemd",
            "systemd only forgets a removed drop-in after a reload",
            Action::Systemd {
                unit: PATHS.service_unit.into(),
                op: SystemdOp::DaemonReload,
                after_changes: vec![PROXY_DROP_IN.into()],
            },
        ));
        restart_inputs.push(PROXY_DROP_IN.into());
    }
    steps.push(super::rerun::start_step(
        ctx,
        step(
            "start-k0s",
            Phase::Cluster,
            "Start k0s",
            "starts the k0scontroller service that `k0s install` set up and enabled (what `k0s start` does); restarted once if its binary, config or unit changed",
            Action::Systemd {
                unit: PATHS.service_unit.into(),
                op: SystemdOp::EnableNow,
                after_changes: restart_inputs,
            },
        ),
    ));
    steps.push(step(
        "wait-k0s",
        Phase::Cluster,
        "Wait for the k0s API server and node",
        "nothing can be applied before the API server answers and the node is Ready",
        Action::WaitCluster {
            kubeconfig: ctx.paths().kubeconfig.into(),
            timeout_s: ctx.wait_timeout_s,
        },
    ));
    steps.push(step(
        "kubeconfig-k0s",
        Phase::Cluster,
        "Write your kubeconfig",
        "k0s keeps a root-only admin kubeconfig (what `k0s kubeconfig admin` prints); kubectl and kstrap use it as context \"kstrap\"",
        Action::Kubeconfig {
            source: ctx.paths().kubeconfig.into(),
            dest: ctx.kubeconfig_dest.into(),
            context: KUBECONFIG_CONTEXT.into(),
        },
    ));
    Ok(steps)
}
