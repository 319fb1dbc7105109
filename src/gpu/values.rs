//! The GPU operator chart's values as a typed model, serialized (never string-templated) into the
//! HelmChart's `valuesContent` (k3s) or the Chart's `values` (k0s).
//!
//! Only the fields kstrap must set are modelled; everything else keeps the chart's default. The
//! field names are the chart's own (`deployments/gpu-operator/values.yaml` in NVIDIA/gpu-operator);
//! a test checks every serialized leaf against the trimmed list in
//! `tests/fixtures/upstream/gpu-operator/values-fields.txt`, so a misspelt field (which Helm would silently
//! ignore) fails the build instead of a user's install.

use super::{TIME_SLICING_CONFIG, TIME_SLICING_KEY};
use crate::distro::Distro;
use crate::facts::HostFacts;
use crate::profile::{GpuDriver, Selection};
use serde::Serialize;

/// The values kstrap passes to the `gpu-operator` chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorValues {
    pub driver: Driver,
    pub toolkit: Toolkit,
    pub device_plugin: DevicePlugin,
}

/// `driver.*`: whether the operator installs its driver container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Driver {
    /// `false` unless the user chose `--gpu-driver operator`. The chart's default is `true`
    /// (`driver.enabled`, `deployments/gpu-operator/values.yaml`, NVIDIA/gpu-operator v26.3.2),
    /// which on a desktop or laptop means a second driver built in a container: it cannot load
    /// next to the host's kernel module, is unsigned (refused under Secure Boot) and fights
    /// `nouveau` and the display server for the GPU. By default kstrap only installs the
    /// operator when NVML answered, that is when a host driver is loaded; without one, preflight
    /// says how to install it (`checks`), or how to ask for the driver container.
    pub enabled: bool,
    /// Registry path of the driver image (`driver.repository`), set with the container only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Image name (`driver.image`), set with the container only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Driver version (`driver.version`), set with the container only: the chart's own default,
    /// written out so the plan names the driver it installs and a chart bump cannot change it
    /// unseen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The driver container's image as gpu-operator v26.3.2's chart defaults it
/// (`deployments/gpu-operator/values.yaml`: `driver.repository: nvcr.io/nvidia`,
/// `driver.image: driver`, `driver.version: "580.126.20"`). The image tag is the version plus
/// the node's OS (`580.126.20-ubuntu24.04`), chosen by the operator from node-feature-discovery
/// labels. 580 is newer than the 570 Blackwell needs.
pub const DRIVER_REPOSITORY: &str = "nvcr.io/nvidia";
pub const DRIVER_IMAGE: &str = "driver";
pub const DRIVER_VERSION: &str = "580.126.20";

impl Driver {
    /// The host's driver is used: the operator installs none.
    pub fn host() -> Self {
        Driver {
            enabled: false,
            repository: None,
            image: None,
            version: None,
        }
    }

    /// The operator's driver container, pinned (`--gpu-driver operator`).
    pub fn container() -> Self {
        Driver {
            enabled: true,
            repository: Some(DRIVER_REPOSITORY.to_string()),
            image: Some(DRIVER_IMAGE.to_string()),
            version: Some(DRIVER_VERSION.to_string()),
        }
    }

    /// The image the operator pulls, without its OS suffix: "nvcr.io/nvidia/driver:580.126.20".
    pub fn image_ref() -> String {
        format!("{DRIVER_REPOSITORY}/{DRIVER_IMAGE}:{DRIVER_VERSION}")
    }
}

/// `toolkit.*`: the NVIDIA container toolkit DaemonSet that registers the `nvidia` runtime with
/// the node's containerd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Toolkit {
    pub enabled: bool,
    /// Environment of the toolkit container: where the distribution's containerd lives.
    pub env: Vec<EnvVar>,
}

/// One `{name, value}` entry of a container's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// `devicePlugin.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevicePlugin {
    pub config: DevicePluginConfig,
}

/// `devicePlugin.config.*`: the ConfigMap holding the sharing configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevicePluginConfig {
    /// Name of the ConfigMap in the operator namespace.
    pub name: String,
    /// Key in that ConfigMap applied to every node. Without it nothing is applied until a node is
    /// labelled `nvidia.com/device-plugin.config=<key>`: time-slicing then silently does not
    /// happen, the most reported operator problem.
    pub default: String,
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// Toolkit environment for the distribution's own containerd.
///
/// These are set even when they look redundant, and in particular when Docker (or a standalone
/// containerd) is installed next to the distribution: the toolkit's defaults are
/// `/etc/containerd/config.toml` and `/run/containerd/containerd.sock`, which on such a host
/// belong to Docker's containerd. Left alone, the toolkit configures and signals that containerd,
/// the distribution's containerd never learns the `nvidia` runtime, and every GPU pod fails with
/// "no runtime for nvidia is configured". So the env never depends on `facts.runtimes`.
pub fn toolkit_env(distro: Distro) -> Vec<EnvVar> {
    toolkit_env_in(distro, distro.paths())
}

/// [`toolkit_env`] for the distribution's paths with its data directory (`--data-dir` moves k3s's
/// generated containerd config with it; k0s's lives in its run dir, which stays).
pub fn toolkit_env_in(distro: Distro, paths: &crate::distro::Paths) -> Vec<EnvVar> {
    match distro {
        // k3s writes `config.toml` itself at every start from its template and adds the `nvidia`
        // runtime on its own once the toolkit's binaries are in /usr/local/nvidia/toolkit. The
        // toolkit is pointed at the generated file, never at `config.toml.tmpl`: a template the
        // toolkit wrote would replace k3s's whole base template (CNI, sandbox image) at the next
        // restart and leave the node NotReady. RUNTIME_CONFIG_SOURCE (nvidia-container-toolkit
        // v1.19.1 `runtime.go`, `file=<path>` form) makes the toolkit read k3s's own file instead of running `containerd config dump` with whichever `containerd` is on
        // the host's PATH (Docker's, when Docker is installed).
        Distro::K3s => vec![
            env("CONTAINERD_SOCKET", paths.containerd_socket),
            env("CONTAINERD_CONFIG", paths.containerd_config),
            env("RUNTIME_CONFIG_SOURCE", &format!("file={}", paths.containerd_config)),
        ],
        // k0s generates /run/k0s/containerd-cri.toml (its containerd component's `criConfigPath`,
        // k0sproject/k0s `pkg/component/worker/containerd/component.go` at v1.35.3+k0s.0) and
        // imports drop-ins from /etc/k0s/containerd.d (`defaultImportsPath`, same package): the
        // toolkit writes its runtime into a drop-in there, as k0s's own recipe does
        // (`docs/runtime.md`, "Using nvidia-container-runtime", same tag). That recipe leaves the
        // toolkit's config source at its default, `command,file` (nvidia-container-toolkit
        // v1.19.1, the version gpu-operator v26.3.2's values.yaml pins,
        // `cmd/nvidia-ctk-installer/container/runtime/runtime.go`): `command` runs
        // `containerd config dump` (`pkg/config/engine/containerd/containerd.go`), which without
        // `--config` reads /etc/containerd/config.toml, Docker's on a host with Docker. So the
        // source is k0s's own generated file only, as on k3s; no `containerd` binary is run, and
        // RUNTIME_EXECUTABLE_PATH (used only by the `command` source) is not needed.
        Distro::K0s => {
            let mut out = vec![env("CONTAINERD_CONFIG", paths.containerd_config)];
            if let Some(dir) = paths.containerd_drop_in_dir {
                out.push(env("RUNTIME_DROP_IN_CONFIG", &format!("{dir}/nvidia.toml")));
            }
            out.push(env("CONTAINERD_SOCKET", paths.containerd_socket));
            out.push(env(
                "RUNTIME_CONFIG_SOURCE",
                &format!("file={}", paths.containerd_config),
            ));
            out
        }
    }
}

/// The chart values for this host and selection.
pub fn operator_values(facts: &HostFacts, sel: &Selection) -> OperatorValues {
    operator_values_in(facts, sel, sel.distro.paths())
}

/// [`operator_values`] for the distribution's paths with its data directory (`Plan::paths`).
pub fn operator_values_in(_facts: &HostFacts, sel: &Selection, paths: &crate::distro::Paths) -> OperatorValues {
    let driver = match sel.gpu_driver {
        GpuDriver::Operator => Driver::container(),
        GpuDriver::Host | GpuDriver::None => Driver::host(),
    };
    OperatorValues {
        driver,
        toolkit: Toolkit {
            enabled: true,
            env: toolkit_env_in(sel.distro, paths),
        },
        device_plugin: DevicePlugin {
            config: DevicePluginConfig {
                name: TIME_SLICING_CONFIG.to_string(),
                default: TIME_SLICING_KEY.to_string(),
            },
        },
    }
}

/// The values as YAML, for `valuesContent` / `values`.
pub fn values_yaml(values: &OperatorValues) -> String {
    crate::distro::helm::values_yaml(values)
}
