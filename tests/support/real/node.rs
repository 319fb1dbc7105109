//! `NodeStandIn`: a **test double** of one kubelet (and of what k3s runs beside it: the
//! local-path provisioner and servicelb), talking to the real API server. No container runs
//! here; the stand-in writes what a kubelet would report.
//!
//! What it does, each following the upstream component at the version noted:
//! - **Registers a Node** (kubelet `registerWithAPIServer`, pkg/kubelet/kubelet_node_status.go,
//!   v1.36): capacity = allocatable (cpu, memory, pods, ephemeral-storage and extended resources
//!   such as `nvidia.com/gpu` that a device plugin registered), labels `kubernetes.io/hostname`,
//!   `kubernetes.io/os`, `kubernetes.io/arch` and k3s's `node-role.kubernetes.io/control-plane`,
//!   `nodeInfo.kubeletVersion` with the distribution's suffix (`v1.35.3+k3s1`, `v1.35.3+k0s`),
//!   `status.runtimeHandlers`, conditions Ready/MemoryPressure/DiskPressure/PIDPressure.
//! - **Renews its Lease** in `kube-node-lease` every 10 s (pkg/kubelet/nodelease, duration 40 s),
//!   so the node lifecycle controller keeps it Ready and untainted.
//! - **Drives the pods the scheduler binds to it** (pkg/kubelet/status/status_manager.go): after a
//!   short delay a pod is Running with conditions PodReadyToStartContainers, Initialized,
//!   ContainersReady, Ready and one `containerStatuses` entry per container (containerID,
//!   imageID, started, ready, restartCount, state.running); init containers end `Completed`; a
//!   pod whose restartPolicy is not Always (Job pods) ends `Succeeded` with exit code 0. A pod
//!   being deleted is removed with grace period 0 once its "containers stopped", as a kubelet
//!   does after the grace period (pkg/kubelet/status: `canBeDeleted` → delete with 0).
//! - **Fails pods the way a kubelet would from what the API holds**:
//!   - a Secret or ConfigMap, or a key of one, named by `env[].valueFrom` / `envFrom` and not
//!     optional, that does not exist: waiting `CreateContainerConfigError` with the kubelet's
//!     messages (`secret "x" not found`, `couldn't find key K in Secret ns/x`;
//!     pkg/kubelet/kubelet_pods.go `makeEnvironmentVariables`);
//!   - `runAsNonRoot: true` with no numeric `runAsUser` (the stand-in cannot read an image's
//!     USER, so it assumes root, as an image without USER runs) or with `runAsUser: 0`:
//!     `CreateContainerConfigError` "container has runAsNonRoot and image will run as root"
//!     (pkg/kubelet/kuberuntime/security_context_others.go `verifyRunAsNonRoot`);
//!   - a RuntimeClass whose handler the node's runtime does not have (no `nvidia` before the GPU
//!     operator's toolkit ran): stays ContainerCreating with a Warning `FailedCreatePodSandBox`
//!     event (containerd CRI: `no runtime for "nvidia" is configured`) until the runtime gains
//!     the handler, as the kubelet retries the sandbox on every sync. A RuntimeClass that does
//!     not exist at all is refused by the API server's own RuntimeClass admission plugin;
//!   - `runAsNonRoot` is checked against the image's own USER where the stand-in knows it
//!     ([`image_user`]: k3s's klipper-helm runs as 1000).
//! - **Rejects GPU pods at admission after a "reboot"** when a test asks
//!   ([`NodeStandIn::reject_gpu_pods_as_after_a_reboot`]): phase `Failed`, reason
//!   `UnexpectedAdmissionError`, the device manager's "Requested: 1, Available: 0" message, as a
//!   kubelet that came back before the GPU device plugin registered (pkg/kubelet/kubelet.go
//!   `rejectPod`).
//! - **Programs that a controller stand-in plays** can be told to fail: [`NodeHandle::script_exit`]
//!   makes the containers of pods with a name prefix exit with a code (a `helm install` that
//!   cannot find its chart, a GPU toolkit that cannot configure containerd).
//!   [`NodeHandle::script_output`] also says what the program writes to its
//!   `terminationMessagePath`: the kubelet reports that file's content (at most 4096 bytes) as
//!   `state.terminated.message`, exit code 0 or not
//!   (pkg/kubelet/kuberuntime/kuberuntime_container.go `getTerminationMessage`, v1.36); a test
//!   plays kstrap's verification checker this way, with the report the real script wrote.
//! - **Image name conventions** choose other outcomes (they stand for what a runtime would meet):
//!   an image under `kstrap.invalid/` or with `pull-error` in its name cannot be pulled
//!   (`ErrImagePull`, then `ImagePullBackOff`, pkg/kubelet/images/types.go); `crash-loop` exits 1
//!   and is in `CrashLoopBackOff` (pkg/kubelet/container/sync_result.go) with `restartCount` and
//!   `lastState.terminated`; `exit-N` exits with code N (a Job pod fails; others crash-loop);
//!   `never-ready` runs but its readiness probe never passes; `slow-start` is ready after 3 s.
//! - **Provisions claims** of the `rancher.io/local-path` provisioner (the one k3s bundles and
//!   kstrap installs on k0s; rancher/local-path-provisioner v0.0.37 `provisioner.go`): once the PV
//!   controller hands a claim to it (annotation `volume.kubernetes.io/storage-provisioner`, set
//!   only after the scheduler picked a node for WaitForFirstConsumer classes), it creates a PV
//!   `pvc-<uid>` with the claim's size, a node affinity to this node and the claimRef; the real
//!   PV controller binds them. Released PVs of that provisioner are deleted (reclaim Delete).
//! - **Gives LoadBalancer Services an address**, the node's, as k3s servicelb does.
//! - Makes sure k3s's default StorageClass `local-path` (WaitForFirstConsumer) exists, as k3s's
//!   bundled `local-storage.yaml` does.
//!
//! It runs on its own thread and tokio runtime for the whole test process.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use super::NODE_NAME;

const MANAGER: &str = "kstrap-test-node-standin";
const PROVISIONER: &str = "rancher.io/local-path";

/// What the node reports. `Default` is a k3s server node of a 16-CPU, 64 GiB workstation.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// `v1.35.3+k3s1` or `v1.35.3+k0s`: kstrap reads the distribution from the suffix.
    pub kubelet_version: String,
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    /// Extended resources a device plugin registered (`nvidia.com/gpu` → count).
    pub extended: BTreeMap<String, String>,
    /// Labels beside the ones every node has.
    pub labels: BTreeMap<String, String>,
    /// Runtime handlers of the node's containerd (`runc`; `nvidia` once the toolkit ran).
    pub runtime_handlers: Vec<String>,
    /// How long a pod takes from bound to running.
    pub start_delay: Duration,
    /// NVIDIA GPUs on the node's PCI bus (hardware: what node-feature-discovery finds and the
    /// device plugin advertises, see `controllers::gpu_operator`). Not a resource by itself.
    pub gpus: u32,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            kubelet_version: "v1.35.3+k3s1".to_string(),
            cpu: "16".to_string(),
            memory: "64Gi".to_string(),
            pods: "110".to_string(),
            extended: BTreeMap::new(),
            labels: BTreeMap::new(),
            runtime_handlers: vec!["runc".to_string()],
            start_delay: Duration::from_millis(300),
            gpus: 0,
        }
    }
}

/// The running stand-in. Changing it (`set`) rewrites the Node at once.
pub struct NodeStandIn {
    config: Arc<Mutex<NodeConfig>>,
    scripts: Scripts,
    handle: tokio::runtime::Handle,
    client: kube::Client,
}

/// Exit codes that programs in pods will end with, decided by a controller stand-in that plays
/// the program (a `helm install` that cannot find its chart): `(namespace, pod name prefix, code)`.
type Scripts = Arc<Mutex<Vec<(String, String, i32, Option<String>)>>>;

/// What the controller stand-ins use to change the node from their own runtime (a device plugin
/// registering `nvidia.com/gpu`, the toolkit adding containerd's `nvidia` runtime).
#[derive(Clone)]
pub struct NodeHandle {
    config: Arc<Mutex<NodeConfig>>,
    scripts: Scripts,
    client: kube::Client,
}

impl NodeHandle {
    pub fn config(&self) -> NodeConfig {
        self.config.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Changes what the node reports and rewrites the Node; labels others wrote stay.
    pub async fn set(&self, change: impl FnOnce(&mut NodeConfig)) -> Result<(), String> {
        let (before, after) = {
            let mut c = self.config.lock().unwrap_or_else(|e| e.into_inner());
            let before = c.clone();
            change(&mut c);
            (before, c.clone())
        };
        register(&self.client, &after, Prune::Removed(&before.labels)).await
    }

    /// Containers of pods in `namespace` whose name starts with `prefix` exit with `code`.
    pub fn script_exit(&self, namespace: &str, prefix: &str, code: i32) {
        self.script(namespace, prefix, code, None);
    }

    /// Containers of pods in `namespace` whose name starts with `prefix` write `message` to their
    /// termination-message file and exit with `code` (0: the pod Succeeds).
    pub fn script_output(&self, namespace: &str, prefix: &str, code: i32, message: &str) {
        self.script(namespace, prefix, code, Some(message.to_string()));
    }

    fn script(&self, namespace: &str, prefix: &str, code: i32, message: Option<String>) {
        if let Ok(mut s) = self.scripts.lock() {
            s.retain(|(ns, p, _, _)| !(ns == namespace && p == prefix));
            s.push((namespace.to_string(), prefix.to_string(), code, message));
        }
    }

    /// Forgets what [`NodeHandle::script_exit`] said for `namespace`/`prefix`.
    pub fn unscript(&self, namespace: &str, prefix: &str) {
        if let Ok(mut s) = self.scripts.lock() {
            s.retain(|(ns, p, _, _)| !(ns == namespace && p == prefix));
        }
    }
}

/// Which labels a rewrite of the Node removes: all but ours (a reset), or only those the
/// previous configuration had and this one does not (labels the operator, NFD and GFD stand-ins
/// wrote through the API stay, as on a real node whose kubelet never touches them).
enum Prune<'a> {
    All,
    Removed(&'a BTreeMap<String, String>),
}

impl NodeStandIn {
    /// Registers the node and starts its loops; fails when the API server does not answer.
    pub fn start(kubeconfig: &Path, config: NodeConfig) -> Result<NodeStandIn, String> {
        let config = Arc::new(Mutex::new(config));
        let shared = config.clone();
        let scripts: Scripts = Arc::default();
        let shared_scripts = scripts.clone();
        let ((handle, client), stop) = super::background::in_background(
            "node-standin",
            kubeconfig,
            Duration::from_secs(60),
            move |client: kube::Client| async move {
                let c = shared.lock().map(|c| c.clone()).unwrap_or_default();
                register(&client, &c, Prune::All).await?;
                let reported = (tokio::runtime::Handle::current(), client.clone());
                let work = async move {
                    tokio::join!(
                        renew_lease(client.clone()),
                        drive_pods(client.clone(), shared.clone(), shared_scripts.clone()),
                        provision_claims(client.clone()),
                        reclaim_volumes(client.clone()),
                        balance_services(client.clone()),
                    );
                };
                Ok((reported, work))
            },
        )?;
        // The node lives as long as the process (tests share it).
        stop.detach();
        Ok(NodeStandIn {
            config,
            scripts,
            handle,
            client,
        })
    }

    /// A handle for the controller stand-ins (cloneable, async).
    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            config: self.config.clone(),
            scripts: self.scripts.clone(),
            client: self.client.clone(),
        }
    }

    pub fn config(&self) -> NodeConfig {
        self.config.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Changes what the node reports and rewrites the Node (labels, capacity, kubelet version).
    pub fn set(&self, change: impl FnOnce(&mut NodeConfig)) {
        self.rewrite(change, false);
    }

    fn rewrite(&self, change: impl FnOnce(&mut NodeConfig), reset: bool) {
        let (before, config) = {
            let mut c = self.config.lock().unwrap_or_else(|e| e.into_inner());
            let before = c.clone();
            change(&mut c);
            (before, c.clone())
        };
        let client = self.client.clone();
        let prune = if reset {
            Prune::All
        } else {
            Prune::Removed(&before.labels)
        };
        let result = std::thread::scope(|s| {
            s.spawn(|| self.handle.block_on(async { register(&client, &config, prune).await }))
                .join()
        });
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("node stand-in: {e}"),
            Err(_) => panic!("node stand-in: rewriting the node panicked"),
        }
    }

    /// Plays a reboot whose kubelet came back before the GPU device plugin registered again:
    /// the kubelet admits every pod bound to the node anew (`HandlePodAdditions` → `canAdmitPod`),
    /// the device manager cannot allocate a GPU pod's `nvidia.com/gpu` (`requested number of
    /// devices unavailable for nvidia.com/gpu. Requested: N, Available: 0`, devicemanager
    /// manager.go `devicesToAllocate`), the admission handler calls it `UnexpectedAdmissionError`
    /// with `Allocate failed due to …, which is unexpected` (cm/admission/errors.go), and
    /// `rejectPod` (pkg/kubelet/kubelet.go) records a Warning event of that reason and writes
    /// phase `Failed`, `status.reason` the reason and `status.message` `Pod was rejected: …`
    /// (kubernetes/kubernetes; see `kstrap::kube::admission`). Every running pod on the node
    /// that asks for `nvidia.com/gpu` is rejected so; pods bound later start as usual (the
    /// device plugin is back). Returns `namespace/name` of the pods it rejected.
    pub fn reject_gpu_pods_as_after_a_reboot(&self) -> Vec<String> {
        let client = self.client.clone();
        let result = std::thread::scope(|s| {
            s.spawn(|| self.handle.block_on(async { reject_gpu_pods(&client).await }))
                .join()
        });
        match result {
            Ok(Ok(rejected)) => rejected,
            Ok(Err(e)) => panic!("node stand-in: {e}"),
            Err(_) => panic!("node stand-in: rejecting GPU pods panicked"),
        }
    }

    /// Back to the defaults (and the default StorageClass back), after a test that changed them.
    pub fn reset(&self) {
        // Always: labels the GPU stand-ins wrote through the API go too.
        self.rewrite(|c| *c = NodeConfig::default(), true);
        if let Ok(mut s) = self.scripts.lock() {
            s.clear();
        }
        let client = self.client.clone();
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                self.handle
                    .block_on(async move { ensure_local_path_class(&client).await })
            })
            .join()
        });
    }
}

// ---- the Node and its Lease ----------------------------------------------------------------

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn node_json(c: &NodeConfig) -> Value {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), NODE_NAME.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("node-role.kubernetes.io/control-plane".to_string(), "true".to_string()),
        ("kstrap.dev/test-double".to_string(), "node-standin".to_string()),
    ]);
    labels.extend(c.labels.clone());
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": labels},
        "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]},
    })
}

fn node_status(c: &NodeConfig) -> Value {
    let mut capacity = BTreeMap::from([
        ("cpu".to_string(), c.cpu.clone()),
        ("memory".to_string(), c.memory.clone()),
        ("pods".to_string(), c.pods.clone()),
        ("ephemeral-storage".to_string(), "200Gi".to_string()),
    ]);
    capacity.extend(c.extended.clone());
    let t = now();
    let cond = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": "0", "systemUUID": "0", "bootID": "0",
            "kernelVersion": "6.8.0", "osImage": "Ubuntu 24.04 LTS",
            "containerRuntimeVersion": "containerd://2.1.5",
            "kubeletVersion": c.kubelet_version, "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": "amd64",
        },
        "runtimeHandlers": c.runtime_handlers.iter().map(|h| json!({"name": h, "features": {"recursiveReadOnlyMounts": true, "userNamespaces": false}})).collect::<Vec<_>>(),
    })
}

/// Creates or rewrites the Node: labels (exactly the configured ones) and status.
async fn register(client: &kube::Client, c: &NodeConfig, prune: Prune<'_>) -> Result<(), String> {
    let api: Api<Node> = Api::all(client.clone());
    let desired = node_json(c);
    match api.get_opt(NODE_NAME).await.map_err(|e| e.to_string())? {
        None => {
            let mut body = desired.clone();
            body["status"] = node_status(c);
            let node: Node = serde_json::from_value(body).map_err(|e| e.to_string())?;
            api.create(&PostParams::default(), &node)
                .await
                .map_err(|e| e.to_string())?;
        }
        Some(live) => {
            // Labels: on a reset exactly ours (a label another test's GPU operator added goes);
            // otherwise only those this configuration dropped.
            let mut labels: serde_json::Map<String, Value> = serde_json::Map::new();
            let live_labels = live.metadata.labels.unwrap_or_default();
            let removed: Vec<&String> = match prune {
                Prune::All => live_labels.keys().collect(),
                Prune::Removed(before) => before
                    .keys()
                    .filter(|k| !c.labels.contains_key(*k) && live_labels.contains_key(*k))
                    .collect(),
            };
            for k in removed {
                labels.insert(k.clone(), Value::Null);
            }
            if let Some(l) = desired["metadata"]["labels"].as_object() {
                labels.extend(l.clone());
            }
            let patch = json!({"metadata": {"labels": labels}, "spec": {"taints": null, "unschedulable": null}});
            api.patch(NODE_NAME, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    // Status: replace capacity/allocatable wholly (a removed extended resource goes); on a
    // conflict (the node lifecycle controller wrote meanwhile) read again and retry.
    let mut attempt = 0;
    loop {
        let live = api.get_status(NODE_NAME).await.map_err(|e| e.to_string())?;
        let mut body = serde_json::to_value(&live).map_err(|e| e.to_string())?;
        body["status"] = node_status(c);
        let live: Node = serde_json::from_value(body).map_err(|e| e.to_string())?;
        match api.replace_status(NODE_NAME, &PostParams::default(), &live).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    ensure_local_path_class(client).await;
    Ok(())
}

/// k3s's bundled default class (k3s `manifests/local-storage.yaml`, v1.35.3+k3s1).
async fn ensure_local_path_class(client: &kube::Client) {
    let sc = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete",
    });
    let _ = super::apply_json(client, &sc, MANAGER).await;
}

async fn renew_lease(client: kube::Client) {
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": NODE_NAME, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": NODE_NAME, "leaseDurationSeconds": 40,
                     "renewTime": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()},
        });
        let _ = api
            .patch(NODE_NAME, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&lease))
            .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

// ---- pods ----------------------------------------------------------------------------------

async fn drive_pods(client: kube::Client, config: Arc<Mutex<NodeConfig>>, scripts: Scripts) {
    let api: Api<Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={NODE_NAME}"));
    let started: Arc<Mutex<HashSet<String>>> = Arc::default();
    let deleting: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
            _ => continue,
        };
        let Some(uid) = pod.metadata.uid.clone() else { continue };
        if pod.metadata.deletion_timestamp.is_some() {
            if deleting.lock().map(|mut d| d.insert(uid.clone())).unwrap_or(false) {
                let client = client.clone();
                tokio::spawn(async move { finish_deletion(client, pod, uid).await });
            }
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        if started.lock().map(|mut s| s.insert(uid)).unwrap_or(false) {
            let client = client.clone();
            let delay = config.lock().map(|c| c.start_delay).unwrap_or_default();
            let config = config.clone();
            let scripts = scripts.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                run_pod(client, pod, config, scripts).await;
            });
        }
    }
}

/// A kubelet deletes a terminating pod with grace period 0 once its containers stopped.
async fn finish_deletion(client: kube::Client, pod: Pod, uid: String) {
    let (Some(ns), Some(name)) = (pod.metadata.namespace.clone(), pod.metadata.name.clone()) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    for _ in 0..20 {
        match api.delete(&name, &dp).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// What happens to a container, decided as a kubelet and runtime would.
#[derive(Debug, Clone, PartialEq)]
enum Fate {
    Runs {
        ready: bool,
        delay: Duration,
    },
    Exits(i32),
    Waiting {
        reason: String,
        message: String,
        event: Option<(String, String)>,
    },
}

fn image_fate(image: &str) -> Option<Fate> {
    let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
    if image.starts_with("kstrap.invalid/") || repo.contains("pull-error") {
        let message = format!(
            "Back-off pulling image \"{image}\": ErrImagePull: failed to pull and unpack image \"{image}\": failed to resolve reference: not found"
        );
        return Some(Fate::Waiting {
            reason: "ImagePullBackOff".into(),
            message,
            event: Some(("Failed".into(), format!("Failed to pull image \"{image}\": not found"))),
        });
    }
    if repo.contains("crash-loop") {
        return Some(Fate::Exits(1));
    }
    if let Some(code) = repo
        .split("exit-")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
    {
        if let Ok(code) = code.parse() {
            return Some(Fate::Exits(code));
        }
    }
    if repo.contains("never-ready") {
        return Some(Fate::Runs {
            ready: false,
            delay: Duration::ZERO,
        });
    }
    if repo.contains("slow-start") {
        return Some(Fate::Runs {
            ready: true,
            delay: Duration::from_secs(3),
        });
    }
    None
}

/// The numeric USER of images whose configuration the stand-in knows (a runtime reads it from
/// the image): `rancher/klipper-helm`, the image of k3s's helm-install Jobs, runs as 1000
/// (k3s-io/klipper-helm `Dockerfile`, `USER 1000`, v0.9.10-build20251111).
fn image_user(image: &str) -> Option<i64> {
    let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
    let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
    (repo == "rancher/klipper-helm").then_some(1000)
}

/// `CreateContainerConfigError` from what the API holds, as the kubelet decides it.
async fn config_error(client: &kube::Client, ns: &str, pod: &Pod, c: &Container) -> Option<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for from in c.env_from.iter().flatten() {
        if let Some(s) = &from.secret_ref
            && !s.optional.unwrap_or(false)
            && !matches!(secrets.get_opt(&s.name).await, Ok(Some(_)))
        {
            return Some(format!("secret \"{}\" not found", s.name));
        }
        if let Some(m) = &from.config_map_ref
            && !m.optional.unwrap_or(false)
            && !matches!(maps.get_opt(&m.name).await, Ok(Some(_)))
        {
            return Some(format!("configmap \"{}\" not found", m.name));
        }
    }
    for env in c.env.iter().flatten() {
        let Some(from) = &env.value_from else { continue };
        if let Some(k) = &from.secret_key_ref {
            if k.optional.unwrap_or(false) {
                continue;
            }
            match secrets.get_opt(&k.name).await {
                Ok(Some(s)) => {
                    let has = s.data.as_ref().is_some_and(|d| d.contains_key(&k.key))
                        || s.string_data.as_ref().is_some_and(|d| d.contains_key(&k.key));
                    if !has {
                        return Some(format!("couldn't find key {} in Secret {ns}/{}", k.key, k.name));
                    }
                }
                _ => return Some(format!("secret \"{}\" not found", k.name)),
            }
        }
        if let Some(k) = &from.config_map_key_ref {
            if k.optional.unwrap_or(false) {
                continue;
            }
            match maps.get_opt(&k.name).await {
                Ok(Some(m)) => {
                    let has = m.data.as_ref().is_some_and(|d| d.contains_key(&k.key))
                        || m.binary_data.as_ref().is_some_and(|d| d.contains_key(&k.key));
                    if !has {
                        return Some(format!("couldn't find key {} in ConfigMap {ns}/{}", k.key, k.name));
                    }
                }
                _ => return Some(format!("configmap \"{}\" not found", k.name)),
            }
        }
    }
    // verifyRunAsNonRoot: container settings win over the pod's.
    let spec = pod.spec.as_ref()?;
    let psc = spec.security_context.as_ref();
    let csc = c.security_context.as_ref();
    let non_root = csc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| psc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if non_root {
        let user = csc
            .and_then(|s| s.run_as_user)
            .or_else(|| psc.and_then(|s| s.run_as_user))
            .or_else(|| image_user(c.image.as_deref().unwrap_or_default()));
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        match user {
            Some(0) => {
                return Some(format!(
                    "container's runAsUser breaks non-root policy (pod: \"{pod_name}_{ns}\", container: {})",
                    c.name
                ));
            }
            None => {
                return Some(format!(
                    "container has runAsNonRoot and image will run as root (pod: \"{pod_name}_{ns}\", container: {})",
                    c.name
                ));
            }
            Some(_) => {}
        }
    }
    None
}

async fn event(client: &kube::Client, pod: &Pod, kind: &str, reason: &str, message: &str) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    let t = now();
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{:x}", rand_suffix()), "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns,
                           "uid": pod.metadata.uid, "fieldPath": "spec.containers{main}"},
        "reason": reason, "message": message, "type": kind,
        "source": {"component": "kubelet", "host": NODE_NAME},
        "firstTimestamp": t, "lastTimestamp": t, "count": 1,
        "reportingComponent": "kubelet", "reportingInstance": NODE_NAME,
    });
    if let Ok(ev) = serde_json::from_value(ev) {
        let _ = api.create(&PostParams::default(), &ev).await;
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}

fn container_id(pod_uid: &str, name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (pod_uid, name).hash(&mut h);
    format!("containerd://{:016x}{:016x}", h.finish(), h.finish().rotate_left(17))
}

fn image_id(image: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    image.hash(&mut h);
    let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
    format!(
        "{repo}@sha256:{:016x}{:016x}{:016x}{:016x}",
        h.finish(),
        h.finish() ^ 1,
        h.finish() ^ 2,
        h.finish() ^ 3
    )
}

/// The exit code a controller stand-in scripted for this pod's programs, if any.
fn scripted(scripts: &Scripts, ns: &str, name: &str) -> Option<(i32, Option<String>)> {
    let s = scripts.lock().ok()?;
    s.iter()
        .find(|(sns, prefix, _, _)| sns == ns && name.starts_with(prefix.as_str()))
        .map(|(_, _, code, message)| (*code, message.clone()))
}

/// The `nvidia.com/gpu` a pod asks for (requests, or limits, which are the same for extended
/// resources), summed over its containers and init containers.
fn pod_gpus(spec: &k8s_openapi::api::core::v1::PodSpec) -> i64 {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter_map(|c| c.resources.as_ref())
        .filter_map(|r| {
            r.requests
                .as_ref()
                .and_then(|q| q.get("nvidia.com/gpu"))
                .or_else(|| r.limits.as_ref().and_then(|q| q.get("nvidia.com/gpu")))
        })
        .filter_map(|q| q.0.trim().parse::<i64>().ok())
        .sum()
}

/// See [`NodeStandIn::reject_gpu_pods_as_after_a_reboot`].
async fn reject_gpu_pods(client: &kube::Client) -> Result<Vec<String>, String> {
    let all: Api<Pod> = Api::all(client.clone());
    let lp = kube::api::ListParams::default().fields(&format!("spec.nodeName={NODE_NAME}"));
    let pods = all
        .list(&lp)
        .await
        .map_err(|e| format!("listing the node's pods: {e}"))?;
    let mut rejected = Vec::new();
    for pod in pods.items {
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        let (Some(ns), Some(name), Some(spec)) = (
            pod.metadata.namespace.clone(),
            pod.metadata.name.clone(),
            pod.spec.as_ref(),
        ) else {
            continue;
        };
        let gpus = pod_gpus(spec);
        if gpus == 0 || phase == "Succeeded" || phase == "Failed" || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let message = format!(
            "Allocate failed due to requested number of devices unavailable for nvidia.com/gpu. Requested: {gpus}, Available: 0, which is unexpected"
        );
        event(client, &pod, "Warning", "UnexpectedAdmissionError", &message).await;
        let t = now();
        let status = json!({
            "phase": "Failed", "reason": "UnexpectedAdmissionError",
            "message": format!("Pod was rejected: {message}"),
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": t, "lastProbeTime": null},
                {"type": "ContainersReady", "status": "False", "reason": "PodFailed", "lastTransitionTime": t, "lastProbeTime": null},
                {"type": "Ready", "status": "False", "reason": "PodFailed", "lastTransitionTime": t, "lastProbeTime": null},
            ],
            "containerStatuses": null, "initContainerStatuses": null,
        });
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        patch_status(&api, &name, status)
            .await
            .map_err(|e| format!("rejecting pod {ns}/{name}: {e}"))?;
        rejected.push(format!("{ns}/{name}"));
    }
    Ok(rejected)
}

/// What the kubelet reports of a termination-message file: its first 4096 bytes
/// (kuberuntime_container.go `maxMsgSize`).
fn termination_message(message: &str) -> String {
    let mut end = message.len().min(4096);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}

async fn run_pod(client: kube::Client, pod: Pod, config: Arc<Mutex<NodeConfig>>, scripts: Scripts) {
    let (Some(ns), Some(name), Some(uid), Some(spec)) = (
        pod.metadata.namespace.clone(),
        pod.metadata.name.clone(),
        pod.metadata.uid.clone(),
        pod.spec.clone(),
    ) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let t = now();
    let pod_ip = format!("10.42.0.{}", 2 + (rand_suffix() % 250));
    let restart_always = spec.restart_policy.as_deref().unwrap_or("Always") == "Always";
    let base = |phase: &str, ready: bool, reason: Option<&str>| {
        let cond = |kind: &str, ok: bool| {
            let mut c = json!({"type": kind, "status": if ok {"True"} else {"False"}, "lastTransitionTime": t, "lastProbeTime": null});
            if let (false, Some(r)) = (ok, reason) {
                c["reason"] = json!(r);
            }
            c
        };
        json!({
            "phase": phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": t,
            "conditions": [
                cond("PodReadyToStartContainers", true), cond("Initialized", true),
                cond("ContainersReady", ready), cond("Ready", ready),
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": t, "lastProbeTime": null},
            ],
        })
    };
    // Sandbox: the RuntimeClass's handler must be one the node's runtime has. The kubelet retries
    // the sandbox on every sync (pkg/kubelet/kuberuntime `SyncPod`), so the pod starts once the
    // runtime gains the handler (the GPU operator's toolkit adding `nvidia`).
    if let Some(rc) = &spec.runtime_class_name {
        let rcs: Api<k8s_openapi::api::node::v1::RuntimeClass> = Api::all(client.clone());
        let mut reported = false;
        loop {
            let handlers = config.lock().map(|c| c.runtime_handlers.clone()).unwrap_or_default();
            let Ok(Some(class)) = rcs.get_opt(rc).await else { break };
            if handlers.contains(&class.handler) {
                break;
            }
            if !reported {
                reported = true;
                let msg = format!(
                    "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: no runtime for \"{}\" is configured",
                    class.handler
                );
                event(&client, &pod, "Warning", "FailedCreatePodSandBox", &msg).await;
                let mut status = base("Pending", false, Some("ContainersNotReady"));
                status["conditions"][0]["status"] = json!("False");
                status["containerStatuses"] = json!(
                    spec.containers.iter().map(|c| json!({"name": c.name, "image": c.image, "imageID": "", "ready": false, "started": false, "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}}})).collect::<Vec<_>>()
                );
                let _ = patch_status(&api, &name, status).await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            match api.get_opt(&name).await {
                Ok(Some(p))
                    if p.metadata.uid.as_deref() == Some(uid.as_str()) && p.metadata.deletion_timestamp.is_none() => {}
                _ => return,
            }
        }
    }
    let init: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            json!({"name": c.name, "image": image, "imageID": image_id(&image), "containerID": container_id(&uid, &c.name),
                   "ready": true, "started": false, "restartCount": 0,
                   "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t, "containerID": container_id(&uid, &c.name)}}})
        })
        .collect();
    let mut statuses = Vec::new();
    let mut all_ready = true;
    let mut failed_exit: Option<i32> = None;
    let mut waiting = false;
    let mut longest = Duration::ZERO;
    for c in &spec.containers {
        let image = c.image.clone().unwrap_or_default();
        let cid = container_id(&uid, &c.name);
        let script = scripted(&scripts, &ns, &name);
        let message = script.as_ref().and_then(|(_, m)| m.as_deref()).map(termination_message);
        let mut fate = script
            .map(|(code, _)| match code {
                0 => Fate::Runs {
                    ready: true,
                    delay: Duration::ZERO,
                },
                code => Fate::Exits(code),
            })
            .or_else(|| image_fate(&image))
            .unwrap_or(Fate::Runs {
                ready: true,
                delay: Duration::ZERO,
            });
        if let Some(msg) = config_error(&client, &ns, &pod, c).await {
            fate = Fate::Waiting {
                reason: "CreateContainerConfigError".into(),
                message: msg.clone(),
                event: Some(("Failed".into(), format!("Error: {msg}"))),
            };
        }
        let mut st = match &fate {
            Fate::Runs { ready, delay } => {
                all_ready &= *ready;
                longest = longest.max(*delay);
                if restart_always {
                    json!({"name": c.name, "image": image, "imageID": image_id(&image), "containerID": cid,
                           "ready": ready, "started": true, "restartCount": 0, "state": {"running": {"startedAt": t}}})
                } else {
                    json!({"name": c.name, "image": image, "imageID": image_id(&image), "containerID": cid,
                           "ready": false, "started": false, "restartCount": 0,
                           "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t, "containerID": cid}}})
                }
            }
            Fate::Exits(code) => {
                all_ready = false;
                if restart_always || spec.restart_policy.as_deref() == Some("OnFailure") {
                    waiting = true;
                    let msg = format!(
                        "back-off 40s restarting failed container={} pod={name}_{ns}({uid})",
                        c.name
                    );
                    event(
                        &client,
                        &pod,
                        "Warning",
                        "BackOff",
                        "Back-off restarting failed container",
                    )
                    .await;
                    json!({"name": c.name, "image": image, "imageID": image_id(&image), "containerID": cid,
                           "ready": false, "started": false, "restartCount": 3,
                           "state": {"waiting": {"reason": "CrashLoopBackOff", "message": msg}},
                           "lastState": {"terminated": {"exitCode": code, "reason": "Error", "startedAt": t, "finishedAt": t, "containerID": cid}}})
                } else {
                    failed_exit = Some(*code);
                    json!({"name": c.name, "image": image, "imageID": image_id(&image), "containerID": cid,
                           "ready": false, "started": false, "restartCount": 0,
                           "state": {"terminated": {"exitCode": code, "reason": "Error", "startedAt": t, "finishedAt": t, "containerID": cid}}})
                }
            }
            Fate::Waiting {
                reason,
                message,
                event: ev,
            } => {
                all_ready = false;
                waiting = true;
                if let Some((r, m)) = ev {
                    event(&client, &pod, "Warning", r, m).await;
                }
                json!({"name": c.name, "image": image, "imageID": "", "ready": false, "started": false, "restartCount": 0,
                       "state": {"waiting": {"reason": reason, "message": message}}})
            }
        };
        for state in ["state", "lastState"] {
            if let (Some(m), true) = (&message, st[state]["terminated"].is_object()) {
                st[state]["terminated"]["message"] = json!(m);
            }
        }
        statuses.push(st);
    }
    let mut status = if waiting {
        base("Pending", false, Some("ContainersNotReady"))
    } else if let Some(_code) = failed_exit {
        base("Failed", false, Some("PodFailed"))
    } else if !restart_always {
        base("Succeeded", false, Some("PodCompleted"))
    } else if longest > Duration::ZERO {
        base("Running", false, Some("ContainersNotReady"))
    } else {
        base("Running", all_ready, Some("ContainersNotReady"))
    };
    if waiting && statuses.iter().any(|s| s["lastState"]["terminated"].is_object()) {
        status["phase"] = json!("Running");
    }
    status["containerStatuses"] = json!(statuses);
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init);
    }
    let _ = patch_status(&api, &name, status.clone()).await;
    if longest > Duration::ZERO && !waiting {
        tokio::time::sleep(longest).await;
        let mut later = base("Running", all_ready, Some("ContainersNotReady"));
        later["containerStatuses"] = json!(
            statuses
                .into_iter()
                .map(|mut s| {
                    s["ready"] = json!(all_ready);
                    s
                })
                .collect::<Vec<_>>()
        );
        if !init.is_empty() {
            later["initContainerStatuses"] = json!(init);
        }
        let _ = patch_status(&api, &name, later).await;
    }
}

/// Writes a pod's status. Like the kubelet's status manager, which keeps the status it means to
/// write and syncs it until the API server takes it (pkg/kubelet/status/status_manager.go,
/// `syncBatch` every 10 s), a server that does not answer (restarting) is retried for as long as
/// two minutes; errors the server answers with, ten times.
async fn patch_status(api: &Api<Pod>, name: &str, status: Value) -> Result<(), kube::Error> {
    let patch = json!({"status": status});
    let mut last = None;
    let mut answered_errors = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while answered_errors < 10 && tokio::time::Instant::now() < deadline {
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 422 => {
                last = Some(kube::Error::Api(e));
                break;
            }
            Err(e) => {
                if matches!(e, kube::Error::Api(_)) {
                    answered_errors += 1;
                }
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    if let Some(e) = &last {
        eprintln!("node stand-in: cannot report pod {name}'s status: {e}");
    }
    last.map_or(Ok(()), Err)
}

// ---- volumes and load balancers ------------------------------------------------------------

async fn provision_claims(client: kube::Client) {
    let api: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let pvc = match event {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
            _ => continue,
        };
        let ann = pvc.metadata.annotations.clone().unwrap_or_default();
        let ours = ann.get("volume.kubernetes.io/storage-provisioner").map(String::as_str) == Some(PROVISIONER)
            || ann
                .get("volume.beta.kubernetes.io/storage-provisioner")
                .map(String::as_str)
                == Some(PROVISIONER);
        let bound = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .is_some_and(|v| !v.is_empty());
        if !ours || bound || pvc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let (Some(uid), Some(ns), Some(name), Some(spec)) = (
            pvc.metadata.uid.clone(),
            pvc.metadata.namespace.clone(),
            pvc.metadata.name.clone(),
            pvc.spec.clone(),
        ) else {
            continue;
        };
        let size = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "1Gi".to_string());
        let pv_name = format!("pvc-{uid}");
        let pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER, "local.path.provisioner/selected-node": NODE_NAME}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": spec.storage_class_name,
                "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
                "hostPath": {"path": format!("/var/lib/rancher/k3s/storage/{pv_name}_{ns}_{name}"), "type": "DirectoryOrCreate"},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "uid": uid},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}]}]}},
            },
        });
        if let Ok(pv) = serde_json::from_value::<PersistentVolume>(pv) {
            let _ = pvs.create(&PostParams::default(), &pv).await;
        }
    }
}

async fn reclaim_volumes(client: kube::Client) {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let pv = match event {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
            _ => continue,
        };
        let ours = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
            .is_some_and(|p| p == PROVISIONER);
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        if ours
            && released
            && let Some(name) = pv.metadata.name.clone()
        {
            let _ = api.delete(&name, &DeleteParams::default()).await;
        }
    }
}

async fn balance_services(client: kube::Client) {
    let api: Api<Service> = Api::all(client.clone());
    let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let svc = match event {
            Ok(watcher::Event::Apply(s)) | Ok(watcher::Event::InitApply(s)) => s,
            _ => continue,
        };
        let lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        let has = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .is_some_and(|i| !i.is_empty());
        if !lb || has {
            continue;
        }
        let (Some(ns), Some(name)) = (svc.metadata.namespace.clone(), svc.metadata.name.clone()) else {
            continue;
        };
        let api: Api<Service> = Api::namespaced(client.clone(), &ns);
        let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ipMode": "VIP"}]}}});
        let _ = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }
}
