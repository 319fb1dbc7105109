//! `kstrap status`: which pod uses which GPU, read back on the node (`crate::gpu::node_use`).
//! NVML is asked first; only when it answers are the cluster's pods listed to match the
//! processes' cgroups with.

use crate::gpu::node_use::{self, GpuProcessSource, NodeGpuUse, PodRef};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::path::{Path, PathBuf};

/// Per-GPU use of this machine's GPUs, matched with the pods of the cluster of `client`.
pub async fn gather(client: &kube::Client) -> NodeGpuUse {
    let source = crate::facts::gpu_use::Nvml {
        lib: std::env::var_os(crate::env::NVML_LIB).map(PathBuf::from),
    };
    gather_with(client, &source, Path::new("/")).await
}

/// [`gather`] with another NVML source and filesystem root (tests).
pub async fn gather_with(client: &kube::Client, source: &dyn GpuProcessSource, root: &Path) -> NodeGpuUse {
    let answer = source.gpus();
    if answer.is_err() {
        return node_use::gather_from(answer, root, &[]);
    }
    let pods = match Api::<Pod>::all(client.clone()).list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter_map(|p| {
                Some(PodRef {
                    uid: p.metadata.uid?,
                    namespace: p.metadata.namespace?,
                    name: p.metadata.name?,
                })
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            return NodeGpuUse::unknown(format!(
                "the cluster's pods could not be listed to match the GPUs' processes with: {}",
                crate::redact::text(&e.to_string())
            ));
        }
    };
    node_use::gather_from(answer, root, &pods)
}
