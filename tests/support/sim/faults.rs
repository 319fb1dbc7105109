//! Fault injection for the simulated API server (test double): request-level faults (500, 429 with
//! Retry-After, slow answers, SSA conflicts, dropped and expired watches) and cluster-level ones
//! the controller simulation acts out (pods stuck waiting, unschedulable pods, failing Jobs).

use std::time::Duration;

/// A fault to inject. Counted faults (`times`) apply to that many matching requests, then stop.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// `500 InternalError` with a Status body. `method: None` matches any method.
    ServerError {
        method: Option<String>,
        path_contains: String,
        times: u32,
    },
    /// `429 TooManyRequests` with a `Retry-After` header and `details.retryAfterSeconds`.
    TooManyRequests {
        path_contains: String,
        times: u32,
        retry_after_s: u64,
    },
    /// Server-side apply without `force=true` to this object gets `409 Conflict` naming `manager`
    /// (as an `Update` manager using the object's apiVersion) and `field` (e.g. `.spec.replicas`).
    /// A forced apply takes the field over and ends the fault.
    ApplyConflict {
        kind: String,
        name: String,
        manager: String,
        field: String,
    },
    /// Every watch stream closes after this many object events (ADDED/MODIFIED/DELETED).
    EndWatchAfter { events: u32 },
    /// The next `times` watches that resume from a resourceVersion get an ERROR event 410 Expired.
    GoneOnWatch { times: u32 },
    /// Requests whose path contains this wait `delay` before being handled.
    Slow { path_contains: String, delay: Duration },
    /// Pods of this owner (workload or bare pod name) stay not ready with this container waiting
    /// reason (`ImagePullBackOff`, `ErrImagePull`, `CrashLoopBackOff`, `CreateContainerConfigError`).
    PodWaiting {
        owner_name: String,
        reason: String,
        message: String,
    },
    /// Pods of this owner stay Pending with `PodScheduled=False` reason `Unschedulable`.
    Unschedulable { owner_name: String, message: String },
    /// This Job fails with `BackoffLimitExceeded`.
    JobFails { name: String },
    /// The GPU operator finds no GPU node: ClusterPolicy ready with reason `NoGPUNodes`.
    GpuNoNodes,
    /// The GPU operator's container toolkit crash-loops: ClusterPolicy `notReady`, a
    /// `nvidia-container-toolkit-daemonset` pod in CrashLoopBackOff, no GPU advertised.
    GpuToolkitStuck,
}
