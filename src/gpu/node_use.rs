//! Which pods use which GPU, read back from the node (`kstrap status`).
//!
//! The API server does not say which GPU a pod holds (only the kubelet knows, through its device
//! manager). On the node, NVML lists the processes with a compute context on each GPU
//! (`nvmlDeviceGetComputeRunningProcesses`: pid and the GPU memory it uses), and the kernel says
//! which cgroup each process is in (`/proc/<pid>/cgroup`); the kubelet names every pod's cgroup
//! `pod<uid>` (kubernetes `pkg/kubelet/cm/pod_container_manager_linux.go`,
//! `podCgroupNamePrefix`), under the systemd cgroup driver as `kubepods-…-pod<uid>.slice` with
//! the UID's `-` written `_` (`pkg/kubelet/cm/cgroup_manager_linux.go`,
//! `escapeSystemdCgroupName`). Both are read here; the pod UIDs are matched with the cluster's
//! pods. Off the node, or without NVML, per-GPU use is not known, and status says why.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One process with a compute context on a GPU, as NVML lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProcess {
    pub pid: u32,
    /// GPU memory it uses; None where NVML cannot say (`NVML_VALUE_NOT_AVAILABLE`).
    pub used_bytes: Option<u64>,
}

/// One GPU as NVML reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlGpu {
    pub index: u32,
    pub name: String,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub processes: Vec<GpuProcess>,
}

/// Where the GPUs and their processes come from: NVML on this machine
/// (`crate::facts::gpu_use::Nvml`), or a test double.
pub trait GpuProcessSource {
    /// The GPUs of this machine with their processes, or why they cannot be listed.
    fn gpus(&self) -> Result<Vec<NvmlGpu>, String>;
}

/// A pod of the cluster, for matching cgroups to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// A pod found on a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodOnGpu {
    pub namespace: String,
    pub name: String,
    /// GPU memory its processes use on this GPU (None: NVML cannot say).
    pub used_bytes: Option<u64>,
}

/// One GPU's use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuUse {
    pub index: u32,
    pub name: String,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub pods: Vec<PodOnGpu>,
    /// Processes on the GPU that are not in a pod of the cluster (a desktop, another program),
    /// or whose cgroup could not be read.
    pub other_processes: u32,
}

/// Per-GPU use, or why it is not known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeGpuUse {
    /// Whether NVML on this machine could list its GPUs.
    pub known: bool,
    /// Why per-GPU use is not known (when `known` is false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub gpus: Vec<GpuUse>,
}

impl NodeGpuUse {
    pub fn unknown(reason: impl Into<String>) -> Self {
        NodeGpuUse {
            known: false,
            reason: Some(reason.into()),
            gpus: Vec::new(),
        }
    }
}

/// The pod UID a process's cgroup file names (`/proc/<pid>/cgroup` text), if it is in a pod.
pub fn pod_uid_from_cgroup(text: &str) -> Option<String> {
    for line in text.lines() {
        // `hierarchy-ID:controllers:path`; the path may itself hold ':' only in odd setups.
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        if !path.contains("kubepods") {
            continue;
        }
        for segment in path.split('/') {
            let segment = segment.strip_suffix(".slice").unwrap_or(segment);
            // cgroupfs: `pod<uid>`; systemd: `kubepods-burstable-pod<uid_with_underscores>`.
            let candidate = match segment.rfind("-pod") {
                Some(i) => &segment[i + 4..],
                None => match segment.strip_prefix("pod") {
                    Some(rest) => rest,
                    None => continue,
                },
            };
            let uid = candidate.replace('_', "-");
            if is_uid(&uid) {
                return Some(uid);
            }
        }
    }
    None
}

/// A Kubernetes UID as the API server makes them: a UUID, 8-4-4-4-12 hexadecimal digits.
fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Reads each process's cgroup under `root` (`/` on the node) and matches it with `pods`.
pub fn gather(source: &dyn GpuProcessSource, root: &Path, pods: &[PodRef]) -> NodeGpuUse {
    gather_from(source.gpus(), root, pods)
}

/// [`gather`] with NVML's answer already in hand (status asks NVML before it lists pods).
pub fn gather_from(answer: Result<Vec<NvmlGpu>, String>, root: &Path, pods: &[PodRef]) -> NodeGpuUse {
    let gpus = match answer {
        Ok(g) => g,
        Err(reason) => return NodeGpuUse::unknown(reason),
    };
    if gpus.is_empty() {
        return NodeGpuUse::unknown("NVML on this machine lists no GPU");
    }
    let by_uid: BTreeMap<&str, &PodRef> = pods.iter().map(|p| (p.uid.as_str(), p)).collect();
    let mut out = Vec::new();
    for g in gpus {
        let mut pods_here: BTreeMap<(String, String), Option<u64>> = BTreeMap::new();
        let mut other = 0;
        for p in &g.processes {
            let cgroup = crate::limits::read_text(&root.join(format!("proc/{}/cgroup", p.pid))).ok();
            let pod = cgroup
                .as_deref()
                .and_then(pod_uid_from_cgroup)
                .and_then(|uid| by_uid.get(uid.as_str()).copied());
            match pod {
                Some(pod) => {
                    let used = pods_here
                        .entry((pod.namespace.clone(), pod.name.clone()))
                        .or_insert(Some(0));
                    *used = match (*used, p.used_bytes) {
                        (Some(a), Some(b)) => Some(a + b),
                        _ => None,
                    };
                }
                None => other += 1,
            }
        }
        out.push(GpuUse {
            index: g.index,
            name: g.name,
            memory_used_bytes: g.memory_used_bytes,
            memory_total_bytes: g.memory_total_bytes,
            pods: pods_here
                .into_iter()
                .map(|((namespace, name), used_bytes)| PodOnGpu {
                    namespace,
                    name,
                    used_bytes,
                })
                .collect(),
            other_processes: other,
        });
    }
    out.sort_by_key(|g| g.index);
    NodeGpuUse {
        known: true,
        reason: None,
        gpus: out,
    }
}

/// The human lines of `kstrap status` for per-GPU use.
pub fn render(u: &NodeGpuUse) -> String {
    use crate::units::human_bytes;
    match u {
        NodeGpuUse {
            known: false, reason, ..
        } => format!(
            "GPUs on this machine\n  per-GPU use is not known: {}\n",
            reason.as_deref().unwrap_or("NVML did not answer")
        ),
        NodeGpuUse { gpus, .. } => {
            let mut s = String::from("GPUs on this machine (NVML; pods matched by their cgroups)\n");
            for g in gpus {
                s.push_str(&format!(
                    "  GPU {}  {}  {} of {} used\n",
                    g.index,
                    g.name,
                    human_bytes(g.memory_used_bytes),
                    human_bytes(g.memory_total_bytes)
                ));
                if g.pods.is_empty() && g.other_processes == 0 {
                    s.push_str("    no process\n");
                }
                for p in &g.pods {
                    let used = p
                        .used_bytes
                        .map(human_bytes)
                        .unwrap_or_else(|| "memory not reported".into());
                    s.push_str(&format!("    {}/{}  {used}\n", p.namespace, p.name));
                }
                if g.other_processes > 0 {
                    s.push_str(&format!(
                        "    {} other process(es), not in a pod of this cluster\n",
                        g.other_processes
                    ));
                }
            }
            s
        }
    }
}

#[cfg(test)]
#[path = "node_use_tests.rs"]
mod tests;
