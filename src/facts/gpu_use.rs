//! NVML on this machine as the source of per-GPU use (`crate::gpu::node_use`): each GPU's name
//! and memory, and the processes with a compute context on it (nvml-wrapper 0.13
//! `Device::running_compute_processes`, NVML's `nvmlDeviceGetComputeRunningProcesses_v3`: pid
//! and `UsedGpuMemory::Used(bytes)` or `Unavailable`). Loaded at run time: without a driver it
//! says why, never fails.

use crate::gpu::node_use::{GpuProcess, GpuProcessSource, NvmlGpu};
use nvml_wrapper::Nvml as Library;
use nvml_wrapper::enums::device::UsedGpuMemory;
use std::path::PathBuf;

/// The real source: the NVML library (`libnvidia-ml.so.1`, or `lib`).
pub struct Nvml {
    pub lib: Option<PathBuf>,
}

impl GpuProcessSource for Nvml {
    fn gpus(&self) -> Result<Vec<NvmlGpu>, String> {
        let nvml = match &self.lib {
            Some(path) => Library::builder().lib_path(path.as_os_str()).init(),
            None => Library::init(),
        }
        .map_err(|e| {
            format!(
                "NVML cannot be used on this machine ({}); run `kstrap status` on the GPU node to see which pod uses which GPU",
                super::gpu::init_error_reason(&e, self.lib.as_deref())
            )
        })?;
        let count = nvml
            .device_count()
            .map_err(|e| format!("NVML could not count the GPUs: {e}"))?;
        let mut out = Vec::new();
        for index in 0..count {
            let device = nvml
                .device_by_index(index)
                .map_err(|e| format!("NVML could not open GPU {index}: {e}"))?;
            let name = device.name().unwrap_or_else(|_| "unknown GPU".into());
            let memory = device
                .memory_info()
                .map_err(|e| format!("NVML could not read GPU {index}'s memory: {e}"))?;
            let processes = device
                .running_compute_processes()
                .map_err(|e| format!("NVML could not list GPU {index}'s processes: {e}"))?
                .into_iter()
                .map(|p| GpuProcess {
                    pid: p.pid,
                    used_bytes: match p.used_gpu_memory {
                        UsedGpuMemory::Used(b) => Some(b),
                        UsedGpuMemory::Unavailable => None,
                    },
                })
                .collect();
            out.push(NvmlGpu {
                index,
                name,
                memory_used_bytes: memory.used,
                memory_total_bytes: memory.total,
                processes,
            });
        }
        Ok(out)
    }
}
