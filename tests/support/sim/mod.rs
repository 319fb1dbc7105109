//! `SimulatedApiServer`: a **test double** of kube-apiserver (plus the few controllers kstrap waits
//! on), used by the integration tests and benches because a real cluster cannot run here. The same
//! end-to-end tests run against a real cluster when `KSTRAP_TEST_KUBECONFIG` is set.
//!
//! It is a real HTTP/1.1 server on `127.0.0.1:0` with its own thread and tokio runtime, so sync
//! tests, async tests and subprocess tests (the `kstrap` binary with `KUBECONFIG` pointing at
//! [`SimulatedApiServer::write_kubeconfig`]) can all use it with the real `kube::Client`.
//!
//! What it does (messages and codes checked against kube-apiserver sources: `managedfields/internal/
//! conflict.go` for SSA conflicts, `apis/meta/v1/validation` for `fieldManager is required`, the
//! watch cache's `too old resource version` 410; list items without apiVersion/kind for built-in
//! kinds as in kubernetes/kubernetes#63676; kube 5's `Discovery::run`/`run_aggregated` requests):
//! - `/readyz`, `/livez`, `/version`; discovery (`/api`, `/api/v1`, `/apis`, `/apis/{g}/{v}`,
//!   plain lists and the aggregated `apidiscovery.k8s.io/v2` form when asked for it);
//! - objects: POST, PUT, GET, LIST (label/field selectors), WATCH (resourceVersions, bounded event
//!   history with `410 Expired` inside the stream, bookmarks, `timeoutSeconds`, `sendInitialEvents`),
//!   DELETE (finalizers, owner-reference garbage collection, namespace termination), `/status`;
//!   PATCH as server-side apply (field managers, conflicts, force, removal of fields a manager
//!   stopped applying), JSON merge patch, strategic merge patch (treated as merge patch);
//! - `metadata.uid/creationTimestamp/resourceVersion/generation/managedFields` like the real server;
//!   errors are `v1 Status` bodies with the real reasons and codes;
//! - a controller simulation on one node (`sim-node`): workloads get pods and ready status after a
//!   delay, Jobs complete, PVCs bind (honouring `WaitForFirstConsumer`), LoadBalancer Services get an
//!   address (like k3s servicelb), CRDs become Established and are then served, namespaces terminate,
//!   a one-node scheduler checks requests against allocatable and `nodeSelector`;
//! - a GPU-operator simulation (`gpu_operator`): a `gpu-operator` chart object (k3s HelmChart or
//!   k0s Chart) gets the ClusterPolicy CRD and object, the operator DaemonSets, and node
//!   allocatable `nvidia.com/gpu` = `SimConfig.gpus` × the time-slicing replicas once the device
//!   plugin (re)starts; bare pods with `restartPolicy: Never` run to completion;
//! - a Helm-controller simulation for kstrap's monitoring add-on (`helm_charts`): a `prometheus`
//!   or `grafana` chart object gets the Deployments (and claim, Service) its values name;
//! - fault injection ([`Fault`]).
//!
//! What it does NOT simulate: authentication/authorization (any bearer token is accepted, no RBAC),
//! admission webhooks, OpenAPI validation of object bodies (only names, namespaces, kinds), the
//! full structured-merge-diff (lists are atomic: an applied list replaces the whole list; no
//! associative list-map merging), protobuf/table output, `limit`/`continue` paging (lists are
//! returned whole), JSON patch, `dryRun`, API version conversion (each resource has the versions it
//! was registered with, objects are stored as sent), pod logs/exec, real networking/containers,
//! default ServiceAccounts and `kube-root-ca.crt` ConfigMaps in new namespaces, rollout strategies
//! (a changed template replaces all pods at once after the delay), leader election, HTTP/2, TLS.

#![allow(dead_code)]

mod apply;
mod controllers;
mod discovery;
mod faults;
mod gpu_operator;
mod helm_charts;
mod http;
mod store;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use faults::Fault;
pub use store::ObjectKey;

/// How a StorageClass binds its claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeBindingMode {
    Immediate,
    WaitForFirstConsumer,
}

impl VolumeBindingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeBindingMode::Immediate => "Immediate",
            VolumeBindingMode::WaitForFirstConsumer => "WaitForFirstConsumer",
        }
    }
}

/// Settings of one simulated cluster.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How long the controller simulation takes to make an object ready (per kind: `set_ready_delay`).
    pub ready_delay: Duration,
    pub node_name: String,
    /// The node's InternalIP, also the LoadBalancer ingress address (k3s servicelb uses node IPs).
    pub node_ip: String,
    pub node_allocatable: BTreeMap<String, String>,
    pub node_labels: BTreeMap<String, String>,
    /// (name, binding mode, is default)
    pub storage_classes: Vec<(String, VolumeBindingMode, bool)>,
    pub faults: Vec<Fault>,
    /// Send periodic BOOKMARK events to watches that allow them.
    pub watch_bookmarks: bool,
    pub bookmark_interval: Duration,
    /// How many watch events are kept for watches that resume from a resourceVersion; older ones
    /// get `410 Expired` (like the apiserver's watch cache).
    pub event_history: usize,
    /// `gitVersion` served at `/version`.
    pub git_version: String,
    /// Physical GPUs the simulated GPU operator finds on the node (`gpu_operator`).
    pub gpus: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        let node_allocatable = [
            ("cpu", "16"),
            ("memory", "64Gi"),
            ("pods", "110"),
            ("ephemeral-storage", "200Gi"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        SimConfig {
            ready_delay: Duration::from_millis(20),
            node_name: "sim-node".to_string(),
            node_ip: "192.168.56.10".to_string(),
            node_allocatable,
            node_labels: BTreeMap::new(),
            storage_classes: vec![("local-path".to_string(), VolumeBindingMode::WaitForFirstConsumer, true)],
            faults: Vec::new(),
            watch_bookmarks: true,
            bookmark_interval: Duration::from_secs(1),
            event_history: 1000,
            git_version: "v1.35.3+k3s1".to_string(),
            gpus: 0,
        }
    }
}

/// One request the server answered (watch requests are recorded when they start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    /// The `Content-Type` the client sent (empty if none).
    pub content_type: String,
}

/// Test double of kube-apiserver: see the module documentation for what it does and does not do.
pub struct SimulatedApiServer {
    shared: Arc<store::Shared>,
    addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimulatedApiServer {
    /// Binds `127.0.0.1:0` and starts serving on its own thread; `Drop` stops it.
    pub fn start(config: SimConfig) -> SimulatedApiServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(store::Shared::new(config, addr));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sim-apiserver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("sim runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let ctrl = tokio::spawn(controllers::run(thread_shared.clone()));
                    tokio::select! {
                        _ = http::serve(listener, thread_shared.clone()) => {}
                        _ = rx => {}
                    }
                    ctrl.abort();
                });
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn sim thread");
        SimulatedApiServer {
            shared,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig with cluster/user/context `sim` and a fake bearer token.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {}\nusers:\n- name: sim\n  user:\n    token: sim-fake-token\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\npreferences: {{}}\n",
            self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        std::fs::write(path, self.kubeconfig_yaml()).expect("write kubeconfig");
    }

    /// A real `kube::Client` for this server, built from [`Self::kubeconfig_yaml`].
    pub async fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml()).expect("sim kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("sim kubeconfig loads");
        kube::Client::try_from(config).expect("sim client")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, store::State> {
        self.shared.lock()
    }

    pub fn get(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<serde_json::Value> {
        self.lock()
            .objects
            .get(&ObjectKey::new(api_version, kind, namespace, name))
            .cloned()
    }

    pub fn objects(&self) -> Vec<serde_json::Value> {
        self.lock().objects.values().cloned().collect()
    }

    /// Objects of one kind (all namespaces).
    pub fn objects_of(&self, api_version: &str, kind: &str) -> Vec<serde_json::Value> {
        self.lock()
            .objects
            .iter()
            .filter(|(k, _)| k.api_version == api_version && k.kind == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Writes by clients that changed stored state (the controller simulation's writes excluded).
    pub fn mutations(&self) -> u64 {
        self.lock().mutations
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Remove every fault (injected or configured).
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn ready_marks(&self) -> Vec<(ObjectKey, Instant)> {
        self.lock().ready_marks.clone()
    }

    pub fn set_ready_delay(&self, kind: &str, delay: Duration) {
        self.lock().ready_delays.insert(kind.to_string(), delay);
    }

    pub fn set_node_allocatable(&self, resource: &str, quantity: &str) {
        let mut st = self.lock();
        st.node_allocatable.insert(resource.to_string(), quantity.to_string());
        st.refresh_node();
        st.reschedule_all();
        self.shared.notify.notify_one();
    }

    pub fn set_node_label(&self, key: &str, value: &str) {
        let mut st = self.lock();
        st.node_labels.insert(key.to_string(), value.to_string());
        st.refresh_node();
        st.reschedule_all();
        self.shared.notify.notify_one();
    }

    /// Never make this object ready (until [`Self::release`]).
    pub fn hold(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) {
        self.lock()
            .held
            .insert(ObjectKey::new(api_version, kind, namespace, name));
    }

    /// Let a held object go ready now.
    pub fn release(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) {
        let key = ObjectKey::new(api_version, kind, namespace, name);
        let mut st = self.lock();
        st.held.remove(&key);
        st.pending.insert(key, Instant::now());
        self.shared.notify.notify_one();
    }

    /// Forget the whole watch event history (like an etcd compaction): every watch that resumes
    /// from a resourceVersion older than now gets `410 Expired`.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.history.clear();
        st.history_floor = st.rv;
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Number of watch streams open now.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SimulatedApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
