//! `WorkerStandIn`: a **test double** of a second machine's kubelet — the worker `kstrap join`
//! set up — and, on it, of what the GPU operator's device plugin and GPU feature discovery
//! report. It exists beside [`super::node::NodeStandIn`] (the server's node, which every other
//! suite uses) and is removed when dropped, so the cluster has one node again.
//!
//! What it does, after the upstream components at the versions [`super::node`] cites:
//! - **Registers a Node** named as the worker's k3s agent would (`node-name` of its config) with
//!   the labels of its `node-label` list (the kubelet's `--node-labels`, applied at
//!   registration; pkg/kubelet/kubelet_node_status.go `initialNode`), kubelet version
//!   `v1.35.3+k3s1`, conditions Ready/MemoryPressure/DiskPressure/PIDPressure.
//! - **Renews its Lease** in `kube-node-lease` every 10 s (pkg/kubelet/nodelease).
//! - **Runs the pods the scheduler binds to it**: Running and Ready after 300 ms
//!   (pkg/kubelet/status/status_manager.go), one containerStatuses entry per container; a pod
//!   being deleted is removed with grace period 0 once its "containers stopped".
//! - [`WorkerStandIn::advertise_gpus`]: what the operator's device plugin and GFD do once their
//!   DaemonSets run on the node: allocatable/capacity `nvidia.com/gpu` = GPUs × replicas, labels
//!   `nvidia.com/gpu.count`, `nvidia.com/gpu.replicas`, `nvidia.com/gpu.sharing-strategy`
//!   (NVIDIA/k8s-device-plugin time-slicing, as `controllers::gpu_operator` follows).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

const MANAGER: &str = "kstrap-test-worker-standin";

#[derive(Debug, Clone, PartialEq)]
struct Config {
    name: String,
    labels: BTreeMap<String, String>,
    /// `nvidia.com/gpu` advertised, and the replicas label (None: no device plugin yet).
    gpu: Option<(u32, u32)>,
}

pub struct WorkerStandIn {
    config: Arc<Mutex<Config>>,
    handle: tokio::runtime::Handle,
    client: kube::Client,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WorkerStandIn {
    /// Registers node `name` with `labels` and starts its loops.
    pub fn start(kubeconfig: &Path, name: &str, labels: BTreeMap<String, String>) -> Result<WorkerStandIn, String> {
        let config = Arc::new(Mutex::new(Config {
            name: name.to_string(),
            labels,
            gpu: None,
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        let kubeconfig = kubeconfig.to_path_buf();
        let shared = config.clone();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("worker-standin-{name}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let client = match kstrap::kube::client_from(Some(&kubeconfig), None).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let c = shared.lock().map(|c| c.clone()).unwrap_or_else(|e| e.into_inner().clone());
                    if let Err(e) = register(&client, &c).await {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    let _ = tx.send(Ok((tokio::runtime::Handle::current(), client.clone())));
                    tokio::select! {
                        _ = async { tokio::join!(renew_lease(client.clone(), c.name.clone()), drive_pods(client.clone(), c.name.clone())) } => {}
                        () = stopped.notified() => {}
                    }
                    let dp = DeleteParams::default();
                    let _ = Api::<Node>::all(client.clone()).delete(&c.name, &dp).await;
                    let _ = Api::<Lease>::namespaced(client, "kube-node-lease").delete(&c.name, &dp).await;
                });
            })
            .map_err(|e| e.to_string())?;
        let (handle, client) = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "the worker stand-in did not start within 60 s".to_string())??;
        Ok(WorkerStandIn {
            config,
            handle,
            client,
            stop,
            thread: Some(thread),
        })
    }

    /// The device plugin and GFD ran: `gpus` × `replicas` shares.
    pub fn advertise_gpus(&self, gpus: u32, replicas: u32) {
        let c = {
            let mut c = self.config.lock().unwrap_or_else(|e| e.into_inner());
            c.gpu = Some((gpus, replicas));
            c.clone()
        };
        self.block_on(move |client| async move { register(&client, &c).await });
    }

    fn block_on<F>(&self, f: impl FnOnce(kube::Client) -> F + Send)
    where
        F: std::future::Future<Output = Result<(), String>> + Send,
    {
        let client = self.client.clone();
        let result = std::thread::scope(|s| s.spawn(|| self.handle.block_on(f(client))).join());
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("worker stand-in: {e}"),
            Err(_) => panic!("worker stand-in panicked"),
        }
    }
}

impl Drop for WorkerStandIn {
    /// The machine leaves: its loops stop, then its Node and Lease go (on the stand-in's own
    /// runtime, which ends after that).
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn register(client: &kube::Client, c: &Config) -> Result<(), String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), c.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("kstrap.dev/test-double".to_string(), "worker-standin".to_string()),
    ]);
    labels.extend(c.labels.clone());
    let mut capacity = BTreeMap::from([
        ("cpu".to_string(), "8".to_string()),
        ("memory".to_string(), "32Gi".to_string()),
        ("pods".to_string(), "110".to_string()),
        ("ephemeral-storage".to_string(), "100Gi".to_string()),
    ]);
    if let Some((gpus, replicas)) = c.gpu {
        capacity.insert("nvidia.com/gpu".into(), (gpus * replicas).to_string());
        labels.insert("nvidia.com/gpu.count".into(), gpus.to_string());
        labels.insert("nvidia.com/gpu.replicas".into(), replicas.to_string());
        labels.insert(
            "nvidia.com/gpu.sharing-strategy".into(),
            if replicas > 1 { "time-slicing" } else { "none" }.into(),
        );
    }
    let api: Api<Node> = Api::all(client.clone());
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": c.name, "labels": labels}});
    api.patch(&c.name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&node))
        .await
        .map_err(|e| format!("register node {}: {e}", c.name))?;
    let t = now();
    let cond = |kind: &str, status: &str, reason: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": reason,
               "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    let status = json!({"status": {
        "capacity": capacity, "allocatable": capacity,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID"),
            cond("Ready", "True", "KubeletReady"),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.2"}, {"type": "Hostname", "address": c.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"machineID": "1", "systemUUID": "1", "bootID": "1", "kernelVersion": "6.8.0",
            "osImage": "Ubuntu 24.04 LTS", "containerRuntimeVersion": "containerd://2.1.5",
            "kubeletVersion": "v1.35.3+k3s1", "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": "amd64"},
    }});
    api.patch_status(&c.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(|e| format!("node {} status: {e}", c.name))?;
    Ok(())
}

async fn renew_lease(client: kube::Client, name: String) {
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                     "renewTime": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()}});
        let _ = api
            .patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&lease))
            .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// Pods bound here become Running and Ready, as a kubelet's status manager reports them.
async fn drive_pods(client: kube::Client, name: String) {
    let api: Api<Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={name}"));
    let mut stream = watcher(api, cfg).boxed();
    while let Some(event) = stream.next().await {
        let pods: Vec<Pod> = match event {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => vec![p],
            _ => continue,
        };
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() {
                // Its containers stopped: the kubelet deletes it with grace period 0
                // (pkg/kubelet/status `canBeDeleted`).
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let _ = Api::<Pod>::namespaced(client.clone(), &ns)
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await;
                continue;
            }
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running {
                continue;
            }
            let client = client.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = run_pod(&client, &pod).await;
            });
        }
    }
}

async fn run_pod(client: &kube::Client, pod: &Pod) -> Result<(), kube::Error> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let t = now();
    let containers: Vec<Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({"name": c.name, "image": c.image, "imageID": format!("{}@sha256:{}", c.image.clone().unwrap_or_default(), "0".repeat(64)),
                   "containerID": format!("containerd://{}", "1".repeat(64)), "ready": true, "started": true,
                   "restartCount": 0, "state": {"running": {"startedAt": t}}})
        })
        .collect();
    let cond = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": t});
    let status = json!({"status": {
        "phase": "Running", "hostIP": "127.0.0.2", "podIP": "10.42.1.10", "startTime": t,
        "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("ContainersReady"), cond("Ready"), cond("PodScheduled")],
        "containerStatuses": containers,
    }});
    Api::<Pod>::namespaced(client.clone(), &ns)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map(|_| ())
}

/// Waits until `f` holds for node `name` (watch-based), at most `within`.
pub async fn wait_node(client: &kube::Client, name: &str, within: Duration, f: impl Fn(&Node) -> bool) -> bool {
    let api: Api<Node> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, cfg).boxed();
    tokio::time::timeout(within, async {
        while let Some(Ok(ev)) = stream.next().await {
            if let watcher::Event::Apply(n) | watcher::Event::InitApply(n) = ev
                && f(&n)
            {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}
