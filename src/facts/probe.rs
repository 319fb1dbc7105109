//! Reading the host: /proc, /sys, /etc and well-known install paths, all relative to a root so
//! tests can probe a temp directory laid out like a machine. Never writes, never panics.
//!
//! Every source is optional: a file that is missing, unreadable or malformed leaves its facts at
//! a neutral default (0, `None`, "unknown", `false`) instead of failing the whole detection. The
//! parsers are pure functions of text so they can be tested (and fuzzed) without a machine.
//! Paths in the facts are host paths ("/usr/local/bin/k3s"), never the probing root's.

use super::gpu::{self, NvmlReport};
use super::{
    CgroupFacts, CpuFacts, DiskFacts, DistroInstall, ExistingInstalls, HostFacts, LaptopFacts,
    MemoryFacts, NvidiaFacts, OsFacts, PORTS, PortFacts, RuntimeFacts, SCHEMA_VERSION,
};
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
        NvmlReport::unavailable(format!(
            "NVML not probed: detection root is {}",
            opts.root.display()
        ))
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
        systemd: fs
            .symlink_metadata("/run/systemd/system")
            .is_some_and(|m| m.is_dir()),
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
    }
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
            (meta.is_file() && meta.permissions().mode() & 0o111 != 0)
                .then(|| host.display().to_string())
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
            fs.opts.probing_host_root().then(|| {
                rustix::system::uname()
                    .release()
                    .to_string_lossy()
                    .into_owned()
            })
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
    let (mut count, model) = fs
        .read("/proc/cpuinfo")
        .map(|t| parse_cpuinfo(&t))
        .unwrap_or((0, None));
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
    let (total_bytes, available_bytes) = match rustix::fs::statvfs(&fs.path(host)) {
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
    if let Some(text) = fs.read("/sys/fs/cgroup/cgroup.controllers") {
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

fn probe_existing(fs: &Root<'_>) -> ExistingInstalls {
    let k3s = DistroInstall {
        binary: fs.found("/usr/local/bin/k3s").or_else(|| fs.which("k3s")),
        service: fs
            .found("/etc/systemd/system/k3s.service")
            .or_else(|| fs.found("/etc/systemd/system/k3s-agent.service")),
        kubeconfig: fs.found("/etc/rancher/k3s/k3s.yaml"),
        data_dir: fs.found_dir("/var/lib/rancher/k3s"),
    };
    let k0s = DistroInstall {
        binary: fs.found("/usr/local/bin/k0s").or_else(|| fs.which("k0s")),
        service: fs
            .found("/etc/systemd/system/k0scontroller.service")
            .or_else(|| fs.found("/etc/systemd/system/k0sworker.service")),
        kubeconfig: fs.found("/var/lib/k0s/pki/admin.conf"),
        data_dir: fs.found_dir("/var/lib/k0s"),
    };
    ExistingInstalls {
        k3s,
        k0s,
        kstrap_state: fs.found("/var/lib/kstrap/state.json"),
    }
}

fn probe_runtimes(fs: &Root<'_>) -> RuntimeFacts {
    RuntimeFacts {
        docker: fs.which("docker").is_some()
            || fs.which("dockerd").is_some()
            || fs.exists("/var/run/docker.sock")
            || fs.exists("/run/docker.sock"),
        // k3s keeps its socket under /run/k3s/containerd, k0s under /run/k0s: neither counts.
        containerd: fs.exists("/run/containerd/containerd.sock")
            || fs.which("containerd").is_some(),
    }
}

/// Everything in `NvidiaFacts` that does not come from NVML.
fn probe_nvidia(fs: &Root<'_>) -> NvidiaFacts {
    let pci_devices = fs
        .list("/sys/bus/pci/devices")
        .iter()
        .filter(|dev| {
            let dir = Path::new("/sys/bus/pci/devices").join(dev);
            let vendor = fs.read_trimmed(dir.join("vendor"));
            let class = fs.read_trimmed(dir.join("class"));
            vendor.is_some_and(|v| v.eq_ignore_ascii_case("0x10de"))
                && class.is_some_and(|c| c.starts_with("0x03"))
        })
        .count();
    NvidiaFacts {
        pci_devices: u32::try_from(pci_devices).unwrap_or(u32::MAX),
        kernel_module: fs
            .read("/proc/driver/nvidia/version")
            .and_then(|t| parse_nvidia_version(&t)),
        nvidia_smi: fs.which("nvidia-smi"),
        container_runtime: fs
            .which("nvidia-container-runtime")
            .or_else(|| fs.found("/usr/local/nvidia/toolkit/nvidia-container-runtime")),
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
    Some(
        line.split_whitespace()
            .find(is_version)
            .unwrap_or(line)
            .to_string(),
    )
}
