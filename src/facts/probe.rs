//! Reading the host: /proc, /sys, /etc and well-known install paths, all relative to a root so
//! tests can probe a temp directory laid out like a machine. Never writes, never panics.

use super::HostFacts;
use std::path::PathBuf;

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

/// Probes everything `HostFacts` holds.
pub fn probe(_opts: &ProbeOptions) -> HostFacts {
    todo!("issue 2: probes")
}
