//! What kstrap knows about the host: plain data, serializable, loadable from JSON.
//!
//! `HostFacts` is the only input of selection and planning besides profiles and stacks, so every
//! decision kstrap makes can be reproduced from a JSON file (`--facts FILE`), including files
//! captured on real GPU machines. Probing (reading `/proc`, `/sys`, NVML) lives in `probe` and
//! `gpu`; nothing here writes anything.
//!
//! The JSON form is a stable, documented schema (`schema_version` 1, see README "Facts schema"):
//! fields are only ever added, with a default, and unknown fields are rejected so that a typo in a
//! hand-written fixture is an error rather than a silently missing fact.

pub mod data_dir;
pub mod gpu;
pub mod gpu_use;
pub mod network;
pub mod probe;

pub use network::{FirewallFacts, InstalledNetwork, NetworkFacts, RouteFacts, SecurityFacts};

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of the JSON schema written by `kstrap detect --output json`.
pub const SCHEMA_VERSION: u32 = 1;

/// Ports kstrap checks before installing: API server, kubelet, k0s's controller API and
/// konnectivity, and the HTTP/HTTPS ports k3s's Traefik binds through servicelb.
pub const PORTS: &[u16] = &[80, 443, 6443, 8132, 9443, 10250];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFacts {
    pub schema_version: u32,
    pub os: OsFacts,
    pub memory: MemoryFacts,
    pub cpu: CpuFacts,
    pub disk: DiskFacts,
    pub cgroup: CgroupFacts,
    /// systemd is the init system (PID 1) and has booted the host (`/run/systemd/system`).
    pub systemd: bool,
    /// Running inside WSL2 (kernel release mentions Microsoft, or WSL interop is registered).
    pub wsl2: bool,
    pub laptop: LaptopFacts,
    /// Each port of `PORTS` and whether something listens on it.
    pub ports: Vec<PortFacts>,
    pub existing: ExistingInstalls,
    pub runtimes: RuntimeFacts,
    pub nvidia: NvidiaFacts,
    /// Every NVIDIA GPU NVML reports. Empty when NVML is unavailable: `nvidia.unavailable_reason`
    /// then says why.
    pub gpus: Vec<GpuFacts>,
    /// IPv4 addresses and routes (added later: absent in older facts files, and left out of the
    /// JSON when nothing was read).
    #[serde(default, skip_serializing_if = "NetworkFacts::is_empty")]
    pub network: NetworkFacts,
    /// Host firewalls that are on (added later, like `network`).
    #[serde(default, skip_serializing_if = "FirewallFacts::is_empty")]
    pub firewall: FirewallFacts,
    /// SELinux and AppArmor (added later, like `network`).
    #[serde(default, skip_serializing_if = "SecurityFacts::is_empty")]
    pub security: SecurityFacts,
    /// The partition of `--data-dir`, probed only when one is given (added later, like
    /// `network`): the disk preflight reads it instead of `disk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<DataDirFacts>,
}

impl HostFacts {
    /// The partition the distribution's data goes to: `--data-dir`'s when one was probed, else
    /// `/var/lib`'s (`disk`).
    pub fn data_disk(&self) -> DiskFacts {
        match &self.data_dir {
            Some(d) => DiskFacts {
                path: d.mount_point.clone().unwrap_or_else(|| d.existing_parent.clone()),
                total_bytes: d.total_bytes,
                available_bytes: d.available_bytes,
            },
            None => self.disk.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsFacts {
    /// `ID` from os-release (`ubuntu`, `debian`, `fedora`), "unknown" when there is none.
    pub id: String,
    /// `VERSION_ID` from os-release.
    pub version_id: Option<String>,
    /// `PRETTY_NAME` from os-release.
    pub pretty_name: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Machine architecture as Rust names it: `x86_64`, `aarch64`.
    pub arch: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryFacts {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuFacts {
    /// Logical CPUs online.
    pub count: u32,
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFacts {
    /// Where k3s and k0s keep their data: `/var/lib` (or its nearest existing parent).
    pub path: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// The folder given with `--data-dir` and the partition that holds it (`data_dir::probe`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataDirFacts {
    /// The folder, as given.
    pub path: String,
    pub exists: bool,
    /// It exists and is a folder.
    pub is_folder: bool,
    /// It is a folder with something in it.
    pub has_entries: bool,
    /// The nearest existing path at or above it: the folder itself, or where it would be
    /// created. Its partition is the one measured.
    pub existing_parent: String,
    /// That path is a folder (else the data directory cannot be created).
    pub parent_is_folder: bool,
    /// The mount holding it, from `/proc/self/mountinfo` (`None` when the table is not readable).
    pub mount_point: Option<String>,
    pub fs_type: Option<String>,
    pub read_only: bool,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupFacts {
    /// 2 for the unified hierarchy, 1 for legacy or hybrid, `None` when no cgroup fs is mounted.
    pub version: Option<u8>,
    /// Controllers available to the root cgroup (v2: `cgroup.controllers`; v1: mounted hierarchies).
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaptopFacts {
    pub is_laptop: bool,
    /// What gave it away: "battery BAT0", "chassis type 10 (Notebook)".
    pub evidence: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortFacts {
    pub port: u16,
    pub in_use: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExistingInstalls {
    pub k3s: DistroInstall,
    pub k0s: DistroInstall,
    /// kstrap's own state file, present when kstrap installed the cluster on this host.
    pub kstrap_state: Option<String>,
    /// The network kstrap recorded in that state file at install (absent in facts from before it
    /// was recorded, and for installs that did not record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kstrap_network: Option<InstalledNetwork>,
}

/// Traces of an installed distribution; each field is the path found, if any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistroInstall {
    pub binary: Option<String>,
    pub service: Option<String>,
    pub kubeconfig: Option<String>,
    pub data_dir: Option<String>,
}

impl DistroInstall {
    /// Every path found, in field order.
    pub fn traces(&self) -> Vec<&str> {
        [&self.binary, &self.service, &self.kubeconfig, &self.data_dir]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    pub fn present(&self) -> bool {
        !self.traces().is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFacts {
    /// Docker engine binary or socket found.
    pub docker: bool,
    /// A standalone containerd (not k3s's or k0s's own) binary or socket found.
    pub containerd: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvidiaFacts {
    /// NVIDIA display/3D controllers on the PCI bus, whether or not a driver is loaded.
    pub pci_devices: u32,
    /// Version of the loaded kernel module (`/proc/driver/nvidia/version`), if any.
    pub kernel_module: Option<String>,
    /// Driver version as NVML reports it, e.g. "570.86.15".
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports, e.g. "12.8".
    pub cuda_driver_version: Option<String>,
    /// Why `gpus` is empty although a GPU may be present: no library, driver not loaded, no
    /// permission. `None` when NVML answered.
    pub unavailable_reason: Option<String>,
    /// Path of `nvidia-smi`, if found.
    pub nvidia_smi: Option<String>,
    /// Path of `nvidia-container-runtime`, if found.
    pub container_runtime: Option<String>,
    /// The open-source `nouveau` kernel module is loaded (`/proc/modules`): NVIDIA's driver
    /// cannot load while it holds the GPU (added later: absent in older facts files, and left
    /// out of the JSON when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nouveau_loaded: bool,
    /// Each NVIDIA display or 3D controller on the PCI bus, read from sysfs without NVML, so a GPU
    /// is seen even when no NVIDIA driver is installed (added later: absent in older facts files,
    /// and left out of the JSON when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci_gpus: Vec<PciGpu>,
}

/// One NVIDIA GPU as the PCI bus shows it (`/sys/bus/pci/devices/<address>/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciGpu {
    /// The device's PCI address, e.g. "0000:01:00.0".
    pub address: String,
    /// The PCI device id, four lowercase hex digits without `0x`, e.g. "2684" (the vendor is
    /// always NVIDIA, 10de).
    pub device_id: String,
    /// The kernel module bound to the device (the name its `driver` link points at): "nvidia",
    /// "nouveau", "vfio-pci"; `None` when no module holds it.
    pub driver: Option<String>,
}

impl PciGpu {
    /// "0000:01:00.0 10de:2684, nouveau bound" / "..., no driver bound": how `lspci -nnk` would
    /// name it, for notes and findings.
    pub fn describe(&self) -> String {
        let bound = match &self.driver {
            Some(d) => format!("{d} bound"),
            None => "no driver bound".to_string(),
        };
        format!("{} 10de:{}, {bound}", self.address, self.device_id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuFacts {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    /// "major.minor", e.g. "9.0" for Hopper, "12.0" for consumer Blackwell.
    pub compute_capability: Option<String>,
    /// NVML's architecture name, or one derived from the compute capability when NVML's enum
    /// does not know the chip: "Hopper", "Blackwell".
    pub architecture: String,
    /// MIG mode where the GPU supports it; `None` where it does not.
    pub mig: Option<MigFacts>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigFacts {
    pub current: bool,
    pub pending: bool,
}

impl HostFacts {
    /// Whether `port` was seen in use.
    pub fn port_in_use(&self, port: u16) -> bool {
        self.ports.iter().any(|p| p.port == port && p.in_use)
    }
}

impl GpuFacts {
    /// Compute capability as (major, minor), if known and well-formed.
    pub fn compute_capability(&self) -> Option<(u32, u32)> {
        let (major, minor) = self.compute_capability.as_deref()?.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }

    pub fn mig_enabled(&self) -> bool {
        self.mig.as_ref().is_some_and(|m| m.current)
    }
}

/// Errors loading facts from a file.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("cannot read facts file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}\n  the file must be JSON as written by `kstrap detect --output json`")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{path}: schema_version {found} is not supported (this kstrap reads {SCHEMA_VERSION}); capture the facts again with this version of `kstrap detect --output json`"
    )]
    Schema { path: String, found: u32 },
}

/// The JSON key whose value holds 1-based (`line`, `column`): the last `"key":` before it.
fn key_before(text: &str, line: usize, column: usize) -> Option<String> {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            offset += l
                .char_indices()
                .nth(column.saturating_sub(1))
                .map(|(b, _)| b)
                .unwrap_or(l.len());
            break;
        }
        offset += l.len();
    }
    let before = text.get(..offset.min(text.len()))?;
    let colon = before.rfind("\":").or_else(|| before.rfind("\" :"))?;
    let key_start = before[..colon].rfind('"')? + 1;
    let key = &before[key_start..colon];
    (!key.is_empty() && key.len() <= 64 && !key.contains(['{', '}', ',', '\n'])).then(|| key.to_string())
}

/// Loads facts written by `kstrap detect --output json` (or a hand-written fixture).
pub fn load(path: &Path) -> Result<HostFacts, FactsError> {
    let shown = path.display().to_string();
    let text = crate::limits::read_text(path).map_err(|source| FactsError::Read {
        path: shown.clone(),
        source,
    })?;
    from_json(&shown, &text)
}

/// The whole `kstrap detect --output json` document; only its `facts` are read back.
#[derive(Deserialize)]
struct DetectDocument {
    facts: HostFacts,
}

/// Parses facts JSON: either bare `HostFacts` or the document `kstrap detect -o json` prints
/// (facts plus profile and findings). `path` only names the source in errors.
pub fn from_json(path: &str, text: &str) -> Result<HostFacts, FactsError> {
    let parse_err = |e: serde_json::Error| {
        let message = e.to_string();
        // serde_json appends " at line L column C"; we print the location in front.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        let message = message
            .replace("expected u64", "expected a whole number of 0 or more")
            .replace("expected u32", "expected a whole number of 0 or more")
            .replace("expected u16", "expected a whole number from 0 to 65535")
            .replace("expected u8", "expected a whole number from 0 to 255")
            .replace("expected f64", "expected a number");
        // serde_json's words for the file's shape, in words about the file.
        let message = if message.starts_with("EOF while parsing") {
            "the JSON ends too early (an empty file, or one cut short)".to_string()
        } else if message == "expected value" {
            "not JSON at this place".to_string()
        } else if message == "trailing characters" {
            "text after the end of the JSON document".to_string()
        } else if message.contains("expected struct HostFacts") || message.contains("expected struct DetectDocument") {
            "the top level must be an object of host facts".to_string()
        } else {
            message
        };
        let about_a_value = message.starts_with("invalid ") || message.starts_with("unknown variant");
        let message = match (about_a_value, key_before(text, e.line(), e.column())) {
            (true, Some(key)) => format!("field `{key}`: {message}"),
            _ => message,
        };
        FactsError::Parse {
            path: path.to_string(),
            line: e.line(),
            column: e.column(),
            message,
        }
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(parse_err)?;
    let wrapped = value.get("facts").is_some() && value.get("schema_version").is_none();
    // Check the version before the fields, so a file from another kstrap says so plainly.
    let inner = if wrapped { &value["facts"] } else { &value };
    if let Some(found) = inner.get("schema_version").and_then(serde_json::Value::as_u64)
        && found != u64::from(SCHEMA_VERSION)
    {
        return Err(FactsError::Schema {
            path: path.to_string(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        });
    }
    let facts: HostFacts = if wrapped {
        serde_json::from_str::<DetectDocument>(text).map_err(parse_err)?.facts
    } else {
        serde_json::from_str(text).map_err(parse_err)?
    };
    Ok(facts)
}
