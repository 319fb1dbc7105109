//! `kstrap up --verify-gpu`: a short pod that takes one GPU share through RuntimeClass `nvidia`
//! and runs `nvidia-smi`, as NVIDIA's own validation does. It succeeding proves scheduling
//! (a share is allocatable), the runtime (the driver is injected) and the driver (NVML answers).

use super::{MANAGED_BY, RUNTIME_CLASS};
use serde_json::{Value, json};

/// Name of the verification pod.
pub const VERIFY_POD: &str = "kstrap-verify-gpu";

/// A pinned CUDA base image that carries `nvidia-smi`'s dependencies and nothing else: the image
/// NVIDIA's own GPU test workload runs at the pinned operator version (NVIDIA/gpu-operator v26.3.2,
/// `tests/e2e/helpers/workload.go`). Its CUDA version does not matter here: `nvidia-smi` is the
/// host driver's, put into the container by the toolkit, and the image's CUDA requirement is
/// switched off (below), so the same pod verifies Blackwell (RTX 50xx) GPUs too.
pub const VERIFY_IMAGE: &str = "nvcr.io/nvidia/cuda:12.6.0-base-ubuntu22.04";

/// Seconds after which the kubelet kills the pod (a hung driver must not hang `up`).
pub const VERIFY_DEADLINE_S: u64 = 300;

/// The verification pod: `restartPolicy: Never`, RuntimeClass `nvidia`, one `nvidia.com/gpu`,
/// command `nvidia-smi`. `NVIDIA_DISABLE_REQUIRE` turns off the image's CUDA-version driver check:
/// `nvidia-smi` needs no CUDA runtime, and the check would fail on an older (still supported)
/// host driver for a reason unrelated to the GPU stack.
pub fn verify_pod(namespace: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": VERIFY_POD,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "app.kubernetes.io/name": VERIFY_POD,
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "runtimeClassName": RUNTIME_CLASS,
            "activeDeadlineSeconds": VERIFY_DEADLINE_S,
            "tolerations": [
                { "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" },
            ],
            "containers": [{
                "name": "nvidia-smi",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["nvidia-smi"],
                "env": [{ "name": "NVIDIA_DISABLE_REQUIRE", "value": "true" }],
                "resources": { "limits": { "nvidia.com/gpu": 1 } },
            }],
        },
    })
}
