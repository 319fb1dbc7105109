//! Reading the host: /proc, /sys, /etc and well-known install paths, all relative to a root so
//! tests can probe a temp directory laid out like a machine. Never writes, never panics.
//!
//! Every source is optional: a file that is missing, unreadable or malformed leaves its facts at
//! a neutral default (0, `None`, "unknown", `false`) instead of failing the whole detection. The
//! parsers are pure functions of text so they can be tested (and fuzzed) without a machine.
//! Paths in the facts are host paths ("/usr/local/bin/k3s"), never the probing root's.
//!
//! Symbolic links are followed as the kernel follows them, so an absolute link inside a test root
//! points at the real host: lay test roots out with real files or relative links.

use super::gpu::{self, NvmlReport};
use super::{
    CgroupFacts, CpuFacts, DiskFacts, DistroInstall, ExistingInstalls, HostFacts, InstalledNetwork, LaptopFacts,
    MemoryFacts, NetworkFacts, NvidiaFacts, OsFacts, PORTS, PortFacts, RuntimeFacts, SCHEMA_VERSION,
};
use crate::distro::Distro;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Directories searched for binaries after `PATH`, where installers put them.
pub const DEFAULT_PATH_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The most kstrap reads of any one file; /proc/net/tcp on a busy host is the largest.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Where and how to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Filesystem root to read (`/` on a real host, a temp dir in tests).
    pub root: PathBuf,
    /// NVML library to load instead of `libnvidia-ml.so.1`.
    pub nvml_lib: Option<PathBuf>,
    /// Directories searched for binaries (`PATH` plus the usual install dirs), relative to root.
    pub path_dirs: Vec<PathBuf>,
    /// The data directory asked for with `--data-dir` (checked): its partition is probed too.
    pub data_dir: Option<String>,
}

impl ProbeOptions {
    /// Options for probing `root`: binaries are searched in the absolute directories of
    /// `path_env` (the value of `PATH`), then in `DEFAULT_PATH_DIRS`, each directory once.
    pub fn for_host(root: PathBuf, nvml_lib: Option<PathBuf>, path_env: Option<&OsStr>) -> Self {
        let from_env = path_env
            .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut path_dirs: Vec<PathBuf> = Vec::new();
        // Relative entries ("", ".") mean the current directory, which says nothing about the host.
        let candidates = from_env
            .into_iter()
            .filter(|d| d.is_absolute())
            .chain(DEFAULT_PATH_DIRS.iter().map(PathBuf::from));
        for dir in candidates {
            if !path_dirs.contains(&dir) {
                path_dirs.push(dir);
            }
        }
        ProbeOptions {
            root,
            nvml_lib,
            path_dirs,
            data_dir: None,
        }
    }

    fn probing_host_root(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// Probes everything `HostFacts` holds.
pub fn probe(opts: &ProbeOptions) -> HostFacts {
    let fs = Root::new(opts);
    let os_release_kernel = fs.read("/proc/sys/kernel/osrelease");
    let nvml = if opts.probing_host_root() || opts.nvml_lib.is_some() {
        gpu::probe_nvml(opts.nvml_lib.as_deref())
    } else {
        NvmlReport::unavailable(format!("NVML not probed: detection root is {}", opts.root.display()))
    };
    let mut nvidia = probe_nvidia(&fs);
    nvidia.driver_version = nvml.driver_version;
    nvidia.cuda_driver_version = nvml.cuda_driver_version;
    nvidia.unavailable_reason = nvml.unavailable_reason;

    HostFacts {
        schema_version: SCHEMA_VERSION,
        os: probe_os(&fs, os_release_kernel.as_deref()),
        memory: fs
            .read("/proc/meminfo")
            .map(|t| parse_meminfo(&t))
            .unwrap_or(MemoryFacts {
                total_bytes: 0,
                available_bytes: 0,
                swap_total_bytes: 0,
                swap_free_bytes: 0,
            }),
        cpu: probe_cpu(&fs),
        disk: probe_disk(&fs),
        cgroup: probe_cgroup(&fs),
        systemd: fs.symlink_metadata("/run/systemd/system").is_some_and(|m| m.is_dir()),
        wsl2: os_release_kernel
            .as_deref()
            .is_some_and(|k| k.to_ascii_lowercase().contains("microsoft"))
            || fs.exists("/proc/sys/fs/binfmt_misc/WSLInterop")
            || fs.exists("/proc/sys/fs/binfmt_misc/WSLInterop-late"),
        laptop: probe_laptop(&fs),
        ports: probe_ports(&fs),
        existing: probe_existing(&fs),
        runtimes: probe_runtimes(&fs),
        nvidia,
        gpus: nvml.gpus,
        network: NetworkFacts {
            addresses: fs
                .read("/proc/net/fib_trie")
                .map(|t| super::network::parse_fib_trie(&t))
                .unwrap_or_default(),
            routes: fs
                .read("/proc/net/route")
                .map(|t| super::network::parse_routes(&t))
                .unwrap_or_default(),
        },
        firewall: super::FirewallFacts {
            ufw: fs
                .read("/etc/ufw/ufw.conf")
                .is_some_and(|t| super::network::ufw_enabled(&t)),
            firewalld: fs.exists("/etc/systemd/system/multi-user.target.wants/firewalld.service"),
        },
        security: super::SecurityFacts {
            selinux: fs.read("/sys/fs/selinux/enforce").and_then(|t| match t.trim() {
                "1" => Some("enforcing".to_string()),
                "0" => Some("permissive".to_string()),
                _ => None,
            }),
            k3s_selinux_policy: fs.exists("/usr/share/selinux/packages/k3s.pp"),
            apparmor: fs
                .read("/sys/module/apparmor/parameters/enabled")
                .is_some_and(|t| t.trim() == "Y"),
            secure_boot: fs.read_bytes(SECURE_BOOT_VAR).is_some_and(|b| secure_boot_on(&b)),
        },
        data_dir: opts.data_dir.as_deref().map(|d| super::data_dir::probe(&opts.root, d)),
    }
}

/// The `SecureBoot` variable under efivarfs. Its GUID is the UEFI global variable GUID,
/// `EFI_GLOBAL_VARIABLE` {8be4df61-93ca-11d2-aa0d-00e098032b8c} (UEFI specification, "Globally
/// Defined Variables"; the path systemd's `efi_get_secure_boot` and mokutil read).
pub const SECURE_BOOT_VAR: &str = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// An efivarfs file is 4 bytes of attributes followed by the value; `SecureBoot` is one byte,
/// 1 when Secure Boot is on.
pub fn secure_boot_on(bytes: &[u8]) -> bool {
    bytes.len() > 4 && bytes.last() == Some(&1)
}

/// Whether `/proc/modules` lists `nouveau` (the module name is the first field of each line).
pub fn nouveau_loaded(modules: &str) -> bool {
    modules.lines().any(|l| l.split_whitespace().next() == Some("nouveau"))
}

/// Reads host paths under the probing root.
struct Root<'a> {
    opts: &'a ProbeOptions,
}

impl<'a> Root<'a> {
    fn new(opts: &'a ProbeOptions) -> Self {
        Root { opts }
    }

    /// The real location of host path `host` ("/proc/meminfo") under the root.
    fn path(&self, host: impl AsRef<Path>) -> PathBuf {
        let host = host.as_ref();
        self.opts.root.join(host.strip_prefix("/").unwrap_or(host))
    }

    /// Text of a file, lossily decoded, at most `MAX_FILE_BYTES`; `None` if it cannot be read.
    fn read(&self, host: impl AsRef<Path>) -> Option<String> {
        let file = std::fs::File::open(self.path(host)).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES).read_to_end(&mut bytes).ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Bytes of a small binary file (an EFI variable), at most `MAX_FILE_BYTES`.
    fn read_bytes(&self, host: impl AsRef<Path>) -> Option<Vec<u8>> {
        let file = std::fs::File::open(self.path(host)).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Trimmed text of a small file such as a sysfs attribute.
    fn read_trimmed(&self, host: impl AsRef<Path>) -> Option<String> {
        self.read(host).map(|s| s.trim().to_string())
    }

    fn exists(&self, host: impl AsRef<Path>) -> bool {
        self.path(host).exists()
    }

    fn is_dir(&self, host: impl AsRef<Path>) -> bool {
        self.path(host).is_dir()
    }

    fn symlink_metadata(&self, host: impl AsRef<Path>) -> Option<std::fs::Metadata> {
        std::fs::symlink_metadata(self.path(host)).ok()
    }

    /// `host` as a string if it exists.
    fn found(&self, host: &str) -> Option<String> {
        self.exists(host).then(|| host.to_string())
    }

    /// `host` as a string if it is a directory.
    fn found_dir(&self, host: &str) -> Option<String> {
        self.is_dir(host).then(|| host.to_string())
    }

    /// Names of the entries of a directory, sorted; empty if it cannot be read.
    fn list(&self, host: impl AsRef<Path>) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.path(host)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Host path of the first executable file `name` in the search directories, like `which`.
    fn which(&self, name: &str) -> Option<String> {
        self.opts.path_dirs.iter().find_map(|dir| {
            let host = dir.join(name);
            let meta = std::fs::metadata(self.path(&host)).ok()?;
            (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then(|| host.display().to_string())
        })
    }
}

fn probe_os(fs: &Root<'_>, kernel: Option<&str>) -> OsFacts {
    let release = fs
        .read("/etc/os-release")
        .or_else(|| fs.read("/usr/lib/os-release"))
        .map(|t| parse_os_release(&t));
    let kernel = kernel
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .or_else(|| {
            // /proc may be missing inside odd containers; uname answers for the running kernel.
            fs.opts
                .probing_host_root()
                .then(|| rustix::system::uname().release().to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let (id, version_id, pretty_name) = match release {
        Some(r) => (
            r.id.unwrap_or_else(|| "linux".to_string()),
            r.version_id,
            r.pretty_name.unwrap_or_else(|| "Linux".to_string()),
        ),
        None => ("unknown".to_string(), None, "unknown".to_string()),
    };
    OsFacts {
        id,
        version_id,
        pretty_name,
        kernel,
        arch: std::env::consts::ARCH.to_string(),
    }
}

fn probe_cpu(fs: &Root<'_>) -> CpuFacts {
    let (mut count, model) = fs.read("/proc/cpuinfo").map(|t| parse_cpuinfo(&t)).unwrap_or((0, None));
    if count == 0 && fs.opts.probing_host_root() {
        count = std::thread::available_parallelism()
            .ok()
            .and_then(|n| u32::try_from(n.get()).ok())
            .unwrap_or(0);
    }
    CpuFacts { count, model }
}

fn probe_disk(fs: &Root<'_>) -> DiskFacts {
    // The nearest existing ancestor of /var/lib: on a bare root that is "/" itself.
    let host = Path::new("/var/lib")
        .ancestors()
        .find(|p| fs.is_dir(p))
        .unwrap_or(Path::new("/"));
    let (total_bytes, available_bytes) = match rustix::fs::statvfs(fs.path(host)) {
        Ok(st) => (
            st.f_blocks.saturating_mul(st.f_frsize),
            st.f_bavail.saturating_mul(st.f_frsize),
        ),
        Err(_) => (0, 0),
    };
    DiskFacts {
        path: host.display().to_string(),
        total_bytes,
        available_bytes,
    }
}

/// cgroup v1 controllers kstrap reports when it finds them mounted.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

fn probe_cgroup(fs: &Root<'_>) -> CgroupFacts {
    if fs.exists("/sys/fs/cgroup/cgroup.controllers") {
        // An unreadable list still means the unified hierarchy is mounted.
        let text = fs.read("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        return CgroupFacts {
            version: Some(2),
            controllers: text.split_whitespace().map(str::to_string).collect(),
        };
    }
    if fs.is_dir("/sys/fs/cgroup/memory") || fs.is_dir("/sys/fs/cgroup/cpu") {
        // Hierarchies are mounted as "cpu,cpuacct" with "cpu" and "cpuacct" links beside them.
        let found: BTreeSet<String> = fs
            .list("/sys/fs/cgroup")
            .iter()
            .filter(|name| fs.is_dir(Path::new("/sys/fs/cgroup").join(name)))
            .flat_map(|name| name.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|c| V1_CONTROLLERS.contains(&c.as_str()))
            .collect();
        return CgroupFacts {
            version: Some(1),
            controllers: found.into_iter().collect(),
        };
    }
    CgroupFacts {
        version: None,
        controllers: Vec::new(),
    }
}

fn probe_laptop(fs: &Root<'_>) -> LaptopFacts {
    for supply in fs.list("/sys/class/power_supply") {
        let dir = Path::new("/sys/class/power_supply").join(&supply);
        let is_battery = fs.read_trimmed(dir.join("type")).as_deref() == Some("Battery");
        // Batteries of mice and keyboards have scope "Device"; the machine's own have none.
        let device_scope = fs.read_trimmed(dir.join("scope")).as_deref() == Some("Device");
        if is_battery && !device_scope {
            return LaptopFacts {
                is_laptop: true,
                evidence: Some(format!("battery {supply}")),
            };
        }
    }
    let chassis = fs
        .read_trimmed("/sys/class/dmi/id/chassis_type")
        .and_then(|t| t.parse::<u32>().ok());
    if let Some((kind, name)) = chassis.and_then(|k| portable_chassis(k).map(|n| (k, n))) {
        return LaptopFacts {
            is_laptop: true,
            evidence: Some(format!("chassis type {kind} ({name})")),
        };
    }
    LaptopFacts {
        is_laptop: false,
        evidence: None,
    }
}

/// The SMBIOS name of a chassis type that means a portable machine; `None` for the others.
pub fn portable_chassis(kind: u32) -> Option<&'static str> {
    Some(match kind {
        8 => "Portable",
        9 => "Laptop",
        10 => "Notebook",
        11 => "Hand Held",
        14 => "Sub Notebook",
        30 => "Tablet",
        31 => "Convertible",
        32 => "Detachable",
        _ => return None,
    })
}

fn probe_ports(fs: &Root<'_>) -> Vec<PortFacts> {
    let mut listening = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Some(text) = fs.read(table) {
            listening.extend(parse_listening_ports(&text));
        }
    }
    PORTS
        .iter()
        .map(|&port| PortFacts {
            port,
            in_use: listening.contains(&port),
        })
        .collect()
}

/// Traces of one distribution at the paths kstrap itself installs to (`distro::Paths`), plus the
/// agent/worker unit that other installs of it use.
fn probe_install(fs: &Root<'_>, distro: Distro, other_unit: &str) -> DistroInstall {
    let p = distro.paths();
    DistroInstall {
        binary: fs.found(p.binary).or_else(|| fs.which(distro.name())),
        service: fs.found(p.unit_file).or_else(|| fs.found(other_unit)),
        kubeconfig: fs.found(p.kubeconfig),
        data_dir: p.data_dirs.first().and_then(|d| fs.found_dir(d)),
    }
}

fn probe_existing(fs: &Root<'_>) -> ExistingInstalls {
    let k3s = probe_install(fs, Distro::K3s, "/etc/systemd/system/k3s-agent.service");
    let k0s = probe_install(fs, Distro::K0s, "/etc/systemd/system/k0sworker.service");
    ExistingInstalls {
        k3s,
        k0s,
        kstrap_state: fs.found("/var/lib/kstrap/state.json"),
        kstrap_network: installed_network(fs.read("/var/lib/kstrap/state.json").as_deref()),
    }
}

/// The `network` kstrap's state file recorded at install. Detection only reads it: a state file
/// that does not parse is reported by `up` itself (with how to fix it), not here.
fn installed_network(state: Option<&str>) -> Option<InstalledNetwork> {
    let value: serde_json::Value = serde_json::from_str(state?).ok()?;
    serde_json::from_value(value.get("network")?.clone()).ok()
}

fn probe_runtimes(fs: &Root<'_>) -> RuntimeFacts {
    RuntimeFacts {
        docker: fs.which("docker").is_some()
            || fs.which("dockerd").is_some()
            || fs.exists("/var/run/docker.sock")
            || fs.exists("/run/docker.sock"),
        // k3s keeps its socket under /run/k3s/containerd, k0s under /run/k0s: neither counts.
        containerd: fs.exists("/run/containerd/containerd.sock") || fs.which("containerd").is_some(),
    }
}

/// The PCI vendor id of NVIDIA, `PCI_VENDOR_ID_NVIDIA` (torvalds/linux `include/linux/pci_ids.h`).
const PCI_VENDOR_NVIDIA: &str = "0x10de";

/// PCI class codes of the controllers a GPU shows as (torvalds/linux `include/linux/pci_ids.h`,
/// commit 009ef05f: `PCI_CLASS_DISPLAY_VGA` 0x0300, `PCI_CLASS_DISPLAY_3D` 0x0302). sysfs `class`
/// holds the 24-bit code with the programming interface as its last byte ("0x030000"), so the
/// first four hex digits are the class and subclass. A GeForce shows as VGA, a data-centre GPU
/// without display outputs (H100) as 3D; the GPU's HDMI audio function (0x0403) is not a GPU.
const PCI_CLASSES_GPU: &[&str] = &["0300", "0302"];

/// The NVIDIA GPUs on the PCI bus, in address order, with the module bound to each.
fn probe_pci_gpus(fs: &Root<'_>) -> Vec<crate::facts::PciGpu> {
    let devices = Path::new("/sys/bus/pci/devices");
    fs.list(devices)
        .into_iter()
        .filter_map(|address| {
            let dir = devices.join(&address);
            let vendor = fs.read_trimmed(dir.join("vendor"))?;
            let class = fs.read_trimmed(dir.join("class"))?;
            let class = class.strip_prefix("0x").unwrap_or(&class).to_ascii_lowercase();
            let is_gpu = vendor.eq_ignore_ascii_case(PCI_VENDOR_NVIDIA)
                && class.len() == 6
                && PCI_CLASSES_GPU.iter().any(|c| class.starts_with(c));
            if !is_gpu {
                return None;
            }
            let device_id = fs
                .read_trimmed(dir.join("device"))
                .map(|d| d.strip_prefix("0x").unwrap_or(&d).to_ascii_lowercase())
                .filter(|d| d.len() == 4 && d.chars().all(|c| c.is_ascii_hexdigit()))
                .unwrap_or_else(|| "????".to_string());
            // `driver` is a link to /sys/bus/pci/drivers/<module>; its last component names it.
            let driver = std::fs::read_link(fs.path(dir.join("driver")))
                .ok()
                .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()));
            Some(crate::facts::PciGpu {
                address,
                device_id,
                driver,
            })
        })
        .collect()
}

/// Everything in `NvidiaFacts` that does not come from NVML.
fn probe_nvidia(fs: &Root<'_>) -> NvidiaFacts {
    let pci_gpus = probe_pci_gpus(fs);
    NvidiaFacts {
        pci_devices: u32::try_from(pci_gpus.len()).unwrap_or(u32::MAX),
        kernel_module: fs
            .read("/proc/driver/nvidia/version")
            .and_then(|t| parse_nvidia_version(&t)),
        nvidia_smi: fs.which("nvidia-smi"),
        container_runtime: fs
            .which("nvidia-container-runtime")
            .or_else(|| fs.found("/usr/local/nvidia/toolkit/nvidia-container-runtime")),
        nouveau_loaded: fs.read("/proc/modules").is_some_and(|t| nouveau_loaded(&t)),
        pci_gpus,
        ..NvidiaFacts::default()
    }
}

/// Memory from `/proc/meminfo`; fields not found (or not numbers) stay 0.
pub fn parse_meminfo(text: &str) -> MemoryFacts {
    let mut facts = MemoryFacts {
        total_bytes: 0,
        available_bytes: 0,
        swap_total_bytes: 0,
        swap_free_bytes: 0,
    };
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let Some(value) = words.next().and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = match words.next() {
            Some(unit) if unit.eq_ignore_ascii_case("kB") => value.saturating_mul(1024),
            Some(_) => continue,
            None => value,
        };
        match key.trim() {
            "MemTotal" => facts.total_bytes = bytes,
            "MemAvailable" => facts.available_bytes = bytes,
            "SwapTotal" => facts.swap_total_bytes = bytes,
            "SwapFree" => facts.swap_free_bytes = bytes,
            _ => {}
        }
    }
    facts
}

/// (logical CPUs, model) from `/proc/cpuinfo`. The model is `model name` on x86, `Model` (the
/// board, e.g. a Raspberry Pi) or else `Hardware` on ARM.
pub fn parse_cpuinfo(text: &str) -> (u32, Option<String>) {
    let mut count: u32 = 0;
    let (mut model_name, mut model, mut hardware) = (None, None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let keep = |slot: &mut Option<String>| {
            if slot.is_none() && !value.is_empty() {
                *slot = Some(value.to_string());
            }
        };
        match key.trim() {
            "processor" => count = count.saturating_add(1),
            "model name" => keep(&mut model_name),
            "Model" => keep(&mut model),
            "Hardware" => keep(&mut hardware),
            _ => {}
        }
    }
    (count, model_name.or(model).or(hardware))
}

/// The fields of os-release kstrap uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OsRelease {
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

/// Parses os-release(5): `KEY=value` lines, values optionally quoted with `"` or `'`.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut release = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        if value.is_empty() {
            continue;
        }
        match key.trim() {
            "ID" => release.id = Some(value),
            "VERSION_ID" => release.version_id = Some(value),
            "PRETTY_NAME" => release.pretty_name = Some(value),
            _ => {}
        }
    }
    release
}

/// Removes matching surrounding quotes and shell backslash escapes.
fn unquote(value: &str) -> String {
    let inner = match value.as_bytes() {
        [b'"', .., b'"'] | [b'\'', .., b'\''] if value.len() >= 2 => &value[1..value.len() - 1],
        _ => value,
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Local ports of the LISTEN sockets (state `0A`) in `/proc/net/tcp` or `/proc/net/tcp6`.
/// The header and malformed lines are skipped.
pub fn parse_listening_ports(text: &str) -> BTreeSet<u16> {
    text.lines()
        .filter_map(|line| {
            // "  0: 00000000:1F90 00000000:0000 0A ..." (sl, local, remote, state, ...)
            let mut fields = line.split_whitespace();
            let _slot = fields.next()?;
            let local = fields.next()?;
            let _remote = fields.next()?;
            let state = fields.next()?;
            if !state.eq_ignore_ascii_case("0A") {
                return None;
            }
            let (address, port) = local.rsplit_once(':')?;
            if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

/// The driver version in `/proc/driver/nvidia/version`'s first line ("NVRM version: NVIDIA UNIX
/// x86_64 Kernel Module  570.86.15  Wed Jan ..."), or that line when no version is in it.
pub fn parse_nvidia_version(text: &str) -> Option<String> {
    let line = text.lines().next()?.trim();
    if line.is_empty() {
        return None;
    }
    let is_version = |word: &&str| {
        let parts: Vec<&str> = word.split('.').collect();
        parts.len() >= 2
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    Some(line.split_whitespace().find(is_version).unwrap_or(line).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A temp directory laid out like a machine.
    struct TestRoot {
        dir: tempfile::TempDir,
    }

    impl TestRoot {
        fn new() -> Self {
            TestRoot {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn at(&self, host: &str) -> PathBuf {
            self.dir.path().join(host.trim_start_matches('/'))
        }

        fn file(&self, host: &str, content: impl AsRef<[u8]>) -> &Self {
            let path = self.at(host);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
            self
        }

        fn exe(&self, host: &str) -> &Self {
            self.file(host, "#!/bin/sh\n");
            std::fs::set_permissions(self.at(host), std::fs::Permissions::from_mode(0o755)).unwrap();
            self
        }

        /// A symbolic link at `host` pointing at `target` (relative, as sysfs writes them; the
        /// target need not exist).
        fn link(&self, host: &str, target: &str) -> &Self {
            let path = self.at(host);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, path).unwrap();
            self
        }

        fn dir(&self, host: &str) -> &Self {
            std::fs::create_dir_all(self.at(host)).unwrap();
            self
        }

        fn options(&self) -> ProbeOptions {
            ProbeOptions::for_host(self.dir.path().to_path_buf(), None, None)
        }

        fn probe(&self) -> HostFacts {
            probe(&self.options())
        }

        fn not_probed_reason(&self) -> String {
            format!("NVML not probed: detection root is {}", self.dir.path().display())
        }
    }

    const GIB: u64 = 1024 * 1024 * 1024;

    const WORKSTATION_MEMINFO: &str = "\
MemTotal:       65794196 kB
MemFree:        40123456 kB
MemAvailable:   58654320 kB
Buffers:          512340 kB
Cached:         16234512 kB
SwapCached:            0 kB
SwapTotal:       8388604 kB
SwapFree:        8388000 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    fn x86_cpuinfo(count: usize, model: &str) -> String {
        (0..count)
            .map(|i| {
                format!(
                    "processor\t: {i}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\
                     model\t\t: 97\nmodel name\t: {model}\nflags\t\t: fpu vme de pse\n\n"
                )
            })
            .collect()
    }

    const UBUNTU_OS_RELEASE: &str = r#"PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
"#;

    /// sshd on 0.0.0.0:22 listening, an outgoing connection to :443 and a connection to the local
    /// :80 that is established, not listening.
    const WORKSTATION_TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 24567 1 0000000000000000 100 0 0 10 0
   2: 6501A8C0:D4A2 2206B85D:01BB 01 00000000:00000000 02:000A7E3C 00000000  1000        0 98765 2 0000000000000000 20 4 30 10 -1
   3: 0100007F:0050 0100007F:E1A4 01 00000000:00000000 00:00000000 00000000     0        0 98766 1 0000000000000000 20 4 30 10 -1
";

    /// The API server on [::]:6443 and the kubelet on [::]:10250, both listening.
    const WORKSTATION_TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:192B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 45678 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:280A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 45679 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00006501A8C0:192B 0000000000000000FFFF00006701A8C0:C350 01 00000000:00000000 02:00000A1B 00000000     0        0 45680 2 0000000000000000 20 4 30 10 -1
";

    const NVIDIA_PROC_VERSION: &str = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Jan  9 00:15:07 UTC 2025
GCC version:  gcc version 13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)
";

    fn workstation() -> TestRoot {
        let root = TestRoot::new();
        root.file("/proc/meminfo", WORKSTATION_MEMINFO)
            .file("/proc/cpuinfo", x86_cpuinfo(4, "AMD Ryzen 9 7950X 16-Core Processor"))
            .file("/proc/sys/kernel/osrelease", "6.8.0-51-generic\n")
            .file("/etc/os-release", UBUNTU_OS_RELEASE)
            .file(
                "/sys/fs/cgroup/cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma misc\n",
            )
            .dir("/run/systemd/system")
            .file("/sys/class/dmi/id/chassis_type", "3\n")
            // The AC adapter and a wireless mouse's battery do not make a laptop.
            .file("/sys/class/power_supply/AC/type", "Mains\n")
            .file("/sys/class/power_supply/hidpp_battery_0/type", "Battery\n")
            .file("/sys/class/power_supply/hidpp_battery_0/scope", "Device\n")
            .file("/proc/net/tcp", WORKSTATION_TCP)
            .file("/proc/net/tcp6", WORKSTATION_TCP6)
            // Two GPUs (VGA and 3D controller), the first one's HDMI audio, and an Intel iGPU.
            .file("/sys/bus/pci/devices/0000:01:00.0/vendor", "0x10de\n")
            .file("/sys/bus/pci/devices/0000:01:00.0/class", "0x030000\n")
            .file("/sys/bus/pci/devices/0000:01:00.0/device", "0x2684\n")
            .link(
                "/sys/bus/pci/devices/0000:01:00.0/driver",
                "../../../bus/pci/drivers/nvidia",
            )
            .file("/sys/bus/pci/devices/0000:01:00.1/vendor", "0x10de\n")
            .file("/sys/bus/pci/devices/0000:01:00.1/class", "0x040300\n")
            .file("/sys/bus/pci/devices/0000:02:00.0/vendor", "0x10de\n")
            .file("/sys/bus/pci/devices/0000:02:00.0/class", "0x030200\n")
            .file("/sys/bus/pci/devices/0000:02:00.0/device", "0x2330\n")
            .link(
                "/sys/bus/pci/devices/0000:02:00.0/driver",
                "../../../bus/pci/drivers/nvidia",
            )
            .file("/sys/bus/pci/devices/0000:00:02.0/vendor", "0x8086\n")
            .file("/sys/bus/pci/devices/0000:00:02.0/class", "0x030000\n")
            .file("/proc/driver/nvidia/version", NVIDIA_PROC_VERSION)
            .exe("/usr/bin/nvidia-smi")
            .exe("/usr/bin/nvidia-container-runtime")
            .exe("/usr/local/bin/k3s")
            .file("/etc/systemd/system/k3s.service", "[Unit]\n")
            .file("/etc/rancher/k3s/k3s.yaml", "apiVersion: v1\n")
            .dir("/var/lib/rancher/k3s/server")
            .file("/var/run/docker.sock", "");
        root
    }

    #[test]
    fn workstation_root() {
        let root = workstation();
        let facts = root.probe();

        assert_eq!(facts.schema_version, SCHEMA_VERSION);
        assert_eq!(
            facts.os,
            OsFacts {
                id: "ubuntu".into(),
                version_id: Some("24.04".into()),
                pretty_name: "Ubuntu 24.04.1 LTS".into(),
                kernel: "6.8.0-51-generic".into(),
                arch: std::env::consts::ARCH.into(),
            }
        );
        assert_eq!(
            facts.memory,
            MemoryFacts {
                total_bytes: 65794196 * 1024,
                available_bytes: 58654320 * 1024,
                swap_total_bytes: 8388604 * 1024,
                swap_free_bytes: 8388000 * 1024,
            }
        );
        assert_eq!(facts.cpu.count, 4);
        assert_eq!(facts.cpu.model.as_deref(), Some("AMD Ryzen 9 7950X 16-Core Processor"));
        assert_eq!(facts.disk.path, "/var/lib");
        assert!(facts.disk.total_bytes > 0);
        assert!(facts.disk.available_bytes <= facts.disk.total_bytes);
        assert_eq!(facts.cgroup.version, Some(2));
        assert_eq!(
            facts.cgroup.controllers,
            ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"]
        );
        assert!(facts.systemd);
        assert!(!facts.wsl2);
        assert_eq!(
            facts.laptop,
            LaptopFacts {
                is_laptop: false,
                evidence: None
            }
        );
        let in_use: Vec<u16> = facts.ports.iter().filter(|p| p.in_use).map(|p| p.port).collect();
        assert_eq!(in_use, [6443, 10250]);
        assert_eq!(facts.ports.iter().map(|p| p.port).collect::<Vec<_>>(), PORTS);
        assert_eq!(
            facts.existing.k3s,
            DistroInstall {
                binary: Some("/usr/local/bin/k3s".into()),
                service: Some("/etc/systemd/system/k3s.service".into()),
                kubeconfig: Some("/etc/rancher/k3s/k3s.yaml".into()),
                data_dir: Some("/var/lib/rancher/k3s".into()),
            }
        );
        assert!(!facts.existing.k0s.present());
        assert_eq!(facts.existing.kstrap_state, None);
        assert_eq!(
            facts.runtimes,
            RuntimeFacts {
                docker: true,
                containerd: false
            }
        );
        assert_eq!(
            facts.nvidia,
            NvidiaFacts {
                pci_devices: 2,
                kernel_module: Some("570.86.15".into()),
                driver_version: None,
                cuda_driver_version: None,
                unavailable_reason: Some(root.not_probed_reason()),
                nvidia_smi: Some("/usr/bin/nvidia-smi".into()),
                container_runtime: Some("/usr/bin/nvidia-container-runtime".into()),
                nouveau_loaded: false,
                pci_gpus: vec![
                    crate::facts::PciGpu {
                        address: "0000:01:00.0".into(),
                        device_id: "2684".into(),
                        driver: Some("nvidia".into()),
                    },
                    crate::facts::PciGpu {
                        address: "0000:02:00.0".into(),
                        device_id: "2330".into(),
                        driver: Some("nvidia".into()),
                    },
                ],
            }
        );
        assert!(facts.gpus.is_empty());
        // The facts survive their own JSON form.
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(super::super::from_json("probe", &json).unwrap(), facts);
    }

    fn laptop() -> TestRoot {
        let root = TestRoot::new();
        root.file(
            "/proc/meminfo",
            "MemTotal:        7989012 kB\nMemAvailable:    5123456 kB\nSwapTotal:       2097148 kB\nSwapFree:        2097148 kB\n",
        )
        .file("/proc/cpuinfo", x86_cpuinfo(8, "11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz"))
        .file("/proc/sys/kernel/osrelease", "5.15.167.4-microsoft-standard-WSL2\n")
        .file(
            "/usr/lib/os-release",
            "NAME='Debian GNU/Linux'\nID=debian\nVERSION_ID='12'\nPRETTY_NAME='Debian GNU/Linux 12 (bookworm)'\n",
        )
        .file("/sys/class/power_supply/AC/type", "Mains\n")
        .file("/sys/class/power_supply/BAT0/type", "Battery\n")
        .file("/sys/class/power_supply/BAT0/capacity", "87\n")
        .file("/sys/class/dmi/id/chassis_type", "10\n")
        // cgroup v1 as systemd mounts it: joint hierarchies with links to them, plus its own.
        .dir("/sys/fs/cgroup/memory")
        .dir("/sys/fs/cgroup/cpu,cpuacct")
        .dir("/sys/fs/cgroup/pids")
        .dir("/sys/fs/cgroup/systemd")
        .dir("/sys/fs/cgroup/unified")
        .exe("/opt/k0s/bin/k0s")
        .dir("/var/lib/k0s/pki")
        .file("/var/lib/kstrap/state.json", "{}")
        .file("/run/containerd/containerd.sock", "")
        .file("/proc/net/tcp", "  sl  local_address rem_address   st\n")
        .dir("/run/systemd");
        symlink("cpu,cpuacct", root.at("/sys/fs/cgroup/cpu")).unwrap();
        symlink("cpu,cpuacct", root.at("/sys/fs/cgroup/cpuacct")).unwrap();
        root
    }

    #[test]
    fn laptop_root() {
        let root = laptop();
        let opts = ProbeOptions::for_host(
            root.dir.path().to_path_buf(),
            None,
            Some(OsStr::new("/opt/k0s/bin:bin:/usr/bin")),
        );
        let facts = probe(&opts);

        assert_eq!(facts.memory.total_bytes, 7989012 * 1024);
        assert_eq!(facts.memory.available_bytes, 5123456 * 1024);
        assert_eq!(facts.cpu.count, 8);
        assert_eq!(facts.os.id, "debian");
        assert_eq!(facts.os.version_id.as_deref(), Some("12"));
        assert_eq!(facts.os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(facts.os.kernel, "5.15.167.4-microsoft-standard-WSL2");
        assert!(facts.wsl2);
        assert!(!facts.systemd, "/run/systemd without system/ is not a booted systemd");
        assert_eq!(
            facts.laptop,
            LaptopFacts {
                is_laptop: true,
                evidence: Some("battery BAT0".into())
            }
        );
        assert_eq!(facts.cgroup.version, Some(1));
        assert_eq!(facts.cgroup.controllers, ["cpu", "cpuacct", "memory", "pids"]);
        // /var/lib exists (k0s and kstrap left traces there).
        assert_eq!(facts.disk.path, "/var/lib");
        assert!(facts.ports.iter().all(|p| !p.in_use));
        assert_eq!(
            facts.existing.k0s,
            DistroInstall {
                binary: Some("/opt/k0s/bin/k0s".into()),
                service: None,
                kubeconfig: None,
                data_dir: Some("/var/lib/k0s".into()),
            }
        );
        assert!(!facts.existing.k3s.present());
        assert_eq!(
            facts.existing.kstrap_state.as_deref(),
            Some("/var/lib/kstrap/state.json")
        );
        assert_eq!(
            facts.runtimes,
            RuntimeFacts {
                docker: false,
                containerd: true
            }
        );
        assert_eq!(facts.nvidia.pci_devices, 0);
        assert_eq!(facts.nvidia.kernel_module, None);
        assert_eq!(facts.nvidia.nvidia_smi, None);
    }

    #[test]
    fn chassis_alone_marks_a_laptop() {
        let root = TestRoot::new();
        root.file("/sys/class/dmi/id/chassis_type", "10\n");
        assert_eq!(
            root.probe().laptop.evidence.as_deref(),
            Some("chassis type 10 (Notebook)")
        );
        root.file("/sys/class/dmi/id/chassis_type", "31\n");
        assert_eq!(
            root.probe().laptop.evidence.as_deref(),
            Some("chassis type 31 (Convertible)")
        );
        for desktop in ["3", "4", "17", "23", "35"] {
            root.file("/sys/class/dmi/id/chassis_type", desktop);
            assert!(!root.probe().laptop.is_laptop, "chassis {desktop}");
        }
    }

    #[test]
    fn wsl_interop_marks_wsl2() {
        let root = TestRoot::new();
        root.file("/proc/sys/kernel/osrelease", "6.6.36.6-custom\n")
            .file("/proc/sys/fs/binfmt_misc/WSLInterop", "enabled\n");
        let facts = root.probe();
        assert!(facts.wsl2);
        assert_eq!(facts.os.kernel, "6.6.36.6-custom");
    }

    #[test]
    fn container_runtime_from_gpu_operator_toolkit_dir() {
        let root = TestRoot::new();
        root.exe("/usr/local/nvidia/toolkit/nvidia-container-runtime")
            .exe("/usr/bin/dockerd")
            // Not executable: not a binary `which` would find.
            .file("/usr/bin/nvidia-smi", "");
        let facts = root.probe();
        assert_eq!(
            facts.nvidia.container_runtime.as_deref(),
            Some("/usr/local/nvidia/toolkit/nvidia-container-runtime")
        );
        assert_eq!(facts.nvidia.nvidia_smi, None);
        assert!(facts.runtimes.docker);
    }

    #[test]
    fn empty_root_gives_defaults() {
        let root = TestRoot::new();
        let facts = root.probe();
        assert_eq!(
            facts.os,
            OsFacts {
                id: "unknown".into(),
                version_id: None,
                pretty_name: "unknown".into(),
                kernel: "unknown".into(),
                arch: std::env::consts::ARCH.into(),
            }
        );
        assert_eq!(facts.memory.total_bytes, 0);
        assert_eq!(facts.memory.available_bytes, 0);
        assert_eq!(facts.cpu, CpuFacts { count: 0, model: None });
        assert_eq!(facts.disk.path, "/");
        assert!(facts.disk.total_bytes > 0, "the temp dir's filesystem");
        assert_eq!(
            facts.cgroup,
            CgroupFacts {
                version: None,
                controllers: vec![]
            }
        );
        assert!(!facts.systemd);
        assert!(!facts.wsl2);
        assert!(!facts.laptop.is_laptop);
        assert_eq!(facts.ports.len(), PORTS.len());
        assert!(facts.ports.iter().all(|p| !p.in_use));
        assert_eq!(facts.existing, ExistingInstalls::default());
        assert_eq!(facts.runtimes, RuntimeFacts::default());
        assert_eq!(
            facts.nvidia,
            NvidiaFacts {
                unavailable_reason: Some(root.not_probed_reason()),
                ..NvidiaFacts::default()
            }
        );
        assert!(facts.gpus.is_empty());
    }

    /// GPUs without NVML: each NVIDIA VGA or 3D controller with its device id and the module its
    /// `driver` link names; other classes (the GPU's audio function, class 0x0380) and vendors
    /// are left out.
    #[test]
    fn pci_gpus_are_read_without_nvml_with_the_module_bound_to_each() {
        let root = TestRoot::new();
        let dev = |addr: &str, vendor: &str, class: &str, device: &str| {
            root.file(&format!("/sys/bus/pci/devices/{addr}/vendor"), format!("{vendor}\n"))
                .file(&format!("/sys/bus/pci/devices/{addr}/class"), format!("{class}\n"))
                .file(&format!("/sys/bus/pci/devices/{addr}/device"), format!("{device}\n"));
        };
        dev("0000:01:00.0", "0x10de", "0x030000", "0x2684");
        dev("0000:01:00.1", "0x10de", "0x040300", "0x22ba");
        dev("0000:02:00.0", "0x10DE", "0x030200", "0x2330");
        dev("0000:03:00.0", "0x10de", "0x030000", "0x2B85");
        dev("0000:04:00.0", "0x10de", "0x038000", "0x1234");
        dev("0000:00:02.0", "0x8086", "0x030000", "0xa780");
        root.link(
            "/sys/bus/pci/devices/0000:01:00.0/driver",
            "../../../bus/pci/drivers/nouveau",
        )
        .link(
            "/sys/bus/pci/devices/0000:02:00.0/driver",
            "../../../../bus/pci/drivers/vfio-pci",
        )
        .link(
            "/sys/bus/pci/devices/0000:00:02.0/driver",
            "../../../bus/pci/drivers/i915",
        );
        let facts = root.probe();
        let got: Vec<(String, String, Option<String>)> = facts
            .nvidia
            .pci_gpus
            .iter()
            .map(|g| (g.address.clone(), g.device_id.clone(), g.driver.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("0000:01:00.0".into(), "2684".into(), Some("nouveau".into())),
                ("0000:02:00.0".into(), "2330".into(), Some("vfio-pci".into())),
                ("0000:03:00.0".into(), "2b85".into(), None),
            ]
        );
        assert_eq!(facts.nvidia.pci_devices, 3);
        assert_eq!(
            facts.nvidia.pci_gpus[0].describe(),
            "0000:01:00.0 10de:2684, nouveau bound"
        );
        assert_eq!(
            facts.nvidia.pci_gpus[2].describe(),
            "0000:03:00.0 10de:2b85, no driver bound"
        );
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(super::super::from_json("probe", &json).unwrap(), facts);
        // None on the bus: the field stays out of the JSON, as older readers expect.
        let json = serde_json::to_string(&TestRoot::new().probe()).unwrap();
        assert!(!json.contains("pci_gpus"), "{json}");
    }

    #[test]
    fn secure_boot_and_nouveau_are_read_from_the_host_root() {
        let root = TestRoot::new();
        // efivarfs: 4 attribute bytes (NV|BS|RT = 0x06) then the value.
        root.file(SECURE_BOOT_VAR, [6u8, 0, 0, 0, 1]);
        root.file(
            "/proc/modules",
            "snd_hda_intel 57344 3 - Live 0x0000000000000000\nnouveau 2875392 1 - Live 0x0000000000000000\n",
        );
        let facts = root.probe();
        assert!(facts.security.secure_boot);
        assert!(facts.nvidia.nouveau_loaded);
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(super::super::from_json("probe", &json).unwrap(), facts);

        let off = TestRoot::new();
        off.file(SECURE_BOOT_VAR, [6u8, 0, 0, 0, 0]);
        // A module that merely mentions nouveau in its dependencies is not nouveau.
        off.file("/proc/modules", "drm_ttm_helper 16384 1 nouveau, Live 0x0\n");
        let facts = off.probe();
        assert!(!facts.security.secure_boot);
        assert!(!facts.nvidia.nouveau_loaded);
        // Off is left out of the JSON, so older readers see the same document.
        let json = serde_json::to_string(&facts).unwrap();
        assert!(
            !json.contains("secure_boot") && !json.contains("nouveau_loaded"),
            "{json}"
        );
        assert!(!secure_boot_on(&[1]), "attributes alone are not a value");
    }

    #[test]
    fn missing_root_gives_defaults() {
        let root = TestRoot::new();
        let opts = ProbeOptions::for_host(root.at("/does/not/exist"), None, None);
        let facts = probe(&opts);
        assert_eq!(facts.disk.path, "/");
        assert_eq!(facts.disk.total_bytes, 0);
        assert_eq!(facts.memory.total_bytes, 0);
        assert_eq!(facts.os.id, "unknown");
    }

    #[test]
    fn nvml_is_asked_when_a_library_is_given() {
        let root = TestRoot::new();
        root.file("/lib/libnvidia-ml.so.1", "not a library");
        let opts = ProbeOptions {
            nvml_lib: Some(root.at("/lib/libnvidia-ml.so.1")),
            ..root.options()
        };
        let reason = probe(&opts).nvidia.unavailable_reason.unwrap();
        assert!(reason.contains("could not be loaded"), "{reason}");
    }

    #[test]
    fn malformed_files_give_defaults() {
        let root = TestRoot::new();
        root.file(
            "/proc/meminfo",
            b"MemTotal: lots kB\nMemAvailable 12 kB\n\xff\xfe\x00garbage\nSwapTotal: 12 MB\n:::\n".as_slice(),
        )
        .file("/proc/cpuinfo", b"\x00\x01\x02 processors galore\nmodel name\n:::\n".as_slice())
        .file(
            "/proc/net/tcp",
            "sl local rem st\n 0: nothex:192B 0:0 0A\n 1: 00000000:ZZZZ 0:0 0A\n 2: 00000000:1FFFF 0:0 0A\n 3: 00000000 0 0A\n 4:\n\n",
        )
        .file("/proc/net/tcp6", b"\xff\xff\xff".as_slice())
        .file("/etc/os-release", "this is = not\n\"=\"\nID\n=\n")
        .file("/proc/sys/kernel/osrelease", "\n\n")
        .file("/sys/class/dmi/id/chassis_type", "notebook\n")
        .file("/sys/class/power_supply/BAT0/type", b"\xffBattery".as_slice())
        .file("/sys/bus/pci/devices/0000:01:00.0/vendor", b"\x00\x10\xde".as_slice())
        .file("/sys/bus/pci/devices/0000:01:00.0/class", "")
        .file("/sys/fs/cgroup/cgroup.controllers", "")
        .file("/proc/driver/nvidia/version", "\n");
        let facts = root.probe();
        assert_eq!(facts.memory.total_bytes, 0);
        assert_eq!(facts.memory.available_bytes, 0);
        assert_eq!(facts.memory.swap_total_bytes, 0);
        assert_eq!(facts.cpu, CpuFacts { count: 0, model: None });
        assert!(facts.ports.iter().all(|p| !p.in_use));
        assert_eq!(facts.os.id, "linux");
        assert_eq!(facts.os.pretty_name, "Linux");
        assert_eq!(facts.os.kernel, "unknown");
        assert!(!facts.laptop.is_laptop);
        assert_eq!(facts.nvidia.pci_devices, 0);
        assert_eq!(facts.nvidia.kernel_module, None);
        assert_eq!(facts.cgroup.version, Some(2));
        assert!(facts.cgroup.controllers.is_empty());
    }

    #[test]
    fn real_host_probe_is_sane() {
        if !Path::new("/proc/meminfo").exists() {
            return;
        }
        let opts = ProbeOptions::for_host(PathBuf::from("/"), None, None);
        let facts = probe(&opts);
        assert!(facts.memory.total_bytes > 0);
        assert!(facts.cpu.count > 0);
        assert_ne!(facts.os.kernel, "unknown");
        assert!(facts.disk.total_bytes > 0);
        assert_eq!(facts.ports.len(), PORTS.len());
        if facts.gpus.is_empty() {
            assert!(facts.nvidia.unavailable_reason.is_some());
        }
    }

    #[test]
    fn tcp_parser_ipv4_and_ipv6_listen_only() {
        let ports = parse_listening_ports(WORKSTATION_TCP);
        assert_eq!(ports.into_iter().collect::<Vec<_>>(), [22, 3306]);
        let ports = parse_listening_ports(WORKSTATION_TCP6);
        assert_eq!(ports.into_iter().collect::<Vec<_>>(), [6443, 10250]);
        // Lower-case state, IPv4 loopback, a port at the top of the range.
        let ports = parse_listening_ports("0: 0100007F:FFFF 00000000:0000 0a 0 0 0\n");
        assert_eq!(ports.into_iter().collect::<Vec<_>>(), [65535]);
        // ESTABLISHED (01), TIME_WAIT (06) and CLOSE_WAIT (08) sockets are not listeners.
        let ports = parse_listening_ports(
            "0: 00000000:0050 0100007F:1234 01\n1: 00000000:01BB 0100007F:1234 06\n2: 00000000:192B 0100007F:1 08\n",
        );
        assert!(ports.is_empty());
    }

    #[test]
    fn meminfo_units() {
        let m = parse_meminfo("MemTotal: 1 kB\nMemAvailable:2 kB\nSwapTotal: 0 kB\nSwapFree: 7\n");
        assert_eq!(
            m,
            MemoryFacts {
                total_bytes: 1024,
                available_bytes: 2048,
                swap_total_bytes: 0,
                swap_free_bytes: 7,
            }
        );
        // Overflow saturates instead of wrapping or panicking.
        let m = parse_meminfo("MemTotal: 18446744073709551615 kB\n");
        assert_eq!(m.total_bytes, u64::MAX);
        assert_eq!(parse_meminfo(WORKSTATION_MEMINFO).total_bytes / GIB, 62);
    }

    #[test]
    fn cpuinfo_models() {
        let pi = "processor\t: 0\nBogoMIPS\t: 108.00\n\nprocessor\t: 1\n\n\
                  Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(parse_cpuinfo(pi), (2, Some("Raspberry Pi 4 Model B Rev 1.4".into())));
        let arm_board = "processor : 0\nprocessor : 1\nprocessor : 2\nHardware : Qualcomm SM8250\n";
        assert_eq!(parse_cpuinfo(arm_board), (3, Some("Qualcomm SM8250".into())));
        let graviton = "processor\t: 0\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\n";
        assert_eq!(parse_cpuinfo(graviton), (1, None));
        assert_eq!(
            parse_cpuinfo(&x86_cpuinfo(3, "Intel(R) Xeon(R) Platinum 8480+")),
            (3, Some("Intel(R) Xeon(R) Platinum 8480+".into()))
        );
    }

    #[test]
    fn os_release_quotes_and_comments() {
        let r = parse_os_release(
            "# comment\nID=\"fedora\"\nVERSION_ID=41\nPRETTY_NAME=\"Fedora Linux 41 (Workstation \\\"Edition\\\")\"\n",
        );
        assert_eq!(
            r,
            OsRelease {
                id: Some("fedora".into()),
                version_id: Some("41".into()),
                pretty_name: Some("Fedora Linux 41 (Workstation \"Edition\")".into()),
            }
        );
        assert_eq!(parse_os_release("ID=\"\n").id.as_deref(), Some("\""));
        assert_eq!(parse_os_release("ID=''\n").id, None);
    }

    #[test]
    fn nvidia_versions() {
        assert_eq!(parse_nvidia_version(NVIDIA_PROC_VERSION).as_deref(), Some("570.86.15"));
        assert_eq!(
            parse_nvidia_version(
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
            )
            .as_deref(),
            Some("535.183.01")
        );
        assert_eq!(
            parse_nvidia_version("NVRM version: something new\n").as_deref(),
            Some("NVRM version: something new")
        );
        assert_eq!(parse_nvidia_version(""), None);
    }

    #[test]
    fn path_dirs_from_env_then_defaults_once() {
        let opts = ProbeOptions::for_host(
            PathBuf::from("/"),
            None,
            Some(OsStr::new(
                "/home/me/.cargo/bin:/usr/bin::.:bin:/usr/local/bin:/home/me/.cargo/bin",
            )),
        );
        let dirs: Vec<&str> = opts.path_dirs.iter().map(|d| d.to_str().unwrap()).collect();
        assert_eq!(
            dirs,
            [
                "/home/me/.cargo/bin",
                "/usr/bin",
                "/usr/local/bin",
                "/usr/local/sbin",
                "/usr/sbin",
                "/sbin",
                "/bin"
            ]
        );
        let opts = ProbeOptions::for_host(PathBuf::from("/"), None, None);
        assert_eq!(opts.path_dirs.len(), DEFAULT_PATH_DIRS.len());
    }

    #[test]
    fn chassis_names() {
        assert_eq!(portable_chassis(9), Some("Laptop"));
        assert_eq!(portable_chassis(14), Some("Sub Notebook"));
        assert_eq!(portable_chassis(32), Some("Detachable"));
        assert_eq!(portable_chassis(3), None);
        assert_eq!(portable_chassis(0), None);
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        /// Lines built from the words the parsers look for, so the interesting branches run.
        fn procish() -> impl Strategy<Value = String> {
            let word = prop::sample::select(vec![
                "processor",
                "model name",
                "Model",
                "Hardware",
                "MemTotal",
                "MemAvailable",
                "SwapTotal",
                "SwapFree",
                ":",
                "=",
                "\"",
                "'",
                "\\",
                "kB",
                "0A",
                "01",
                "00000000:192B",
                "0:",
                "ID",
                "PRETTY_NAME",
                "VERSION_ID",
                "18446744073709551616",
                "-1",
                " ",
                "\t",
                "\n",
                "é",
                "\u{0}",
            ]);
            prop::collection::vec(word, 0..40).prop_map(|w| w.concat())
        }

        fn all_parsers(text: &str) {
            let _ = parse_meminfo(text);
            let _ = parse_cpuinfo(text);
            let _ = parse_os_release(text);
            let _ = parse_listening_ports(text);
            let _ = parse_nvidia_version(text);
        }

        proptest! {
            #[test]
            fn parsers_never_panic_on_any_string(text in ".*") {
                all_parsers(&text);
            }

            #[test]
            fn parsers_never_panic_on_procish_text(text in procish()) {
                all_parsers(&text);
            }

            #[test]
            fn parsers_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                all_parsers(&String::from_utf8_lossy(&bytes));
            }

            #[test]
            fn listening_ports_are_found(port in any::<u16>(), v6 in any::<bool>()) {
                let address = if v6 { "0".repeat(32) } else { "0".repeat(8) };
                let line = format!("   0: {address}:{port:04X} {address}:0000 0A 0 0 0\n");
                let ports = parse_listening_ports(&line);
                prop_assert_eq!(ports.into_iter().collect::<Vec<_>>(), vec![port]);
            }
        }
    }
}
