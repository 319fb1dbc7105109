//! The real Kubernetes control plane for the end-to-end suites: kube-apiserver, etcd,
//! kube-controller-manager and kube-scheduler v1.36.2 (`../shared/k8s/control-plane`, started by
//! `.ci/run`), plus the **test doubles** that stand in for what cannot run here: a node
//! ([`node::NodeStandIn`], kubelet behaviour) with k3s's local-path provisioner and servicelb.
//!
//! Where the real server answers, it is right: validation, defaulting, server-side apply field
//! ownership, watches, garbage collection, the Deployment → ReplicaSet → Pod controllers, the
//! scheduler. The stand-ins only play the parts of a node.
//!
//! How a suite gets the cluster: [`RealCluster::get`] returns `None` (after printing why the test
//! skips) when no real control plane was named, so `cargo test` passes on a machine without
//! `../shared`. It is named by:
//! - `KSTRAP_TEST_KUBECONFIG=PATH`: the admin kubeconfig of a running control plane (what
//!   `.ci/run` sets after `../shared/k8s/control-plane start target/k8s`);
//! - with `KSTRAP_TEST_REQUIRE_CLUSTER=1` (set by `.ci/run`), a missing or unreachable control
//!   plane fails the test instead of skipping it.
//!
//! Isolation: tests run in parallel threads of one process against one cluster. Each test uses
//! its own namespace(s) and unique names for cluster-scoped objects ([`unique`]) and removes them
//! when it ends ([`Cleanup`]). Tests that change what the whole cluster shares — the node's
//! distribution or GPUs, the GPU operator's singleton ClusterPolicy, default StorageClasses —
//! take [`RealCluster::exclusive`]; all others take [`RealCluster::shared`].

#![allow(dead_code)]

pub mod background;
pub mod controllers;
pub mod node;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

pub use node::{NodeConfig, NodeStandIn};

/// The variable `.ci/run` sets so that a missing control plane fails instead of skipping.
pub const REQUIRE_CLUSTER: &str = "KSTRAP_TEST_REQUIRE_CLUSTER";

/// The node every suite's pods land on (one per test process; see [`node`]).
pub const NODE_NAME: &str = "kstrap-test-node";

/// The one real cluster of this test process.
pub struct RealCluster {
    kubeconfig: PathBuf,
    /// Shared for tests that touch only their own objects; exclusive for those that change what
    /// every test sees (node distribution, GPUs, the GPU operator, default StorageClass).
    lock: RwLock<()>,
    node: NodeStandIn,
}

static CLUSTER: OnceLock<Option<RealCluster>> = OnceLock::new();

impl RealCluster {
    /// The cluster, or `None` after printing why `test` skips. Panics when the control plane is
    /// required (`KSTRAP_TEST_REQUIRE_CLUSTER=1`) but missing, or named but not answering.
    pub fn get(test: &str) -> Option<&'static RealCluster> {
        let cluster = CLUSTER.get_or_init(|| {
            let path = std::env::var_os(kstrap::env::TEST_KUBECONFIG).filter(|p| !p.is_empty())?;
            let kubeconfig = PathBuf::from(path);
            let node = match NodeStandIn::start(&kubeconfig, NodeConfig::default()) {
                Ok(n) => n,
                Err(e) => panic!(
                    "{}={}: the control plane does not answer: {e}",
                    kstrap::env::TEST_KUBECONFIG,
                    kubeconfig.display()
                ),
            };
            if let Err(e) = controllers::start(&kubeconfig, node.handle()) {
                panic!("the controller stand-ins did not start: {e}");
            }
            Some(RealCluster {
                kubeconfig,
                lock: RwLock::new(()),
                node,
            })
        });
        match cluster {
            Some(c) => Some(c),
            None => {
                if std::env::var(REQUIRE_CLUSTER).is_ok_and(|v| v == "1") {
                    panic!(
                        "{test}: {REQUIRE_CLUSTER}=1 but {} is not set: start ../shared/k8s/control-plane first",
                        kstrap::env::TEST_KUBECONFIG
                    );
                }
                eprintln!(
                    "skipping {test}: no real Kubernetes API server (run `bash .ci/run`, or start one with \
                     `../shared/k8s/control-plane start DIR` and set {}=DIR/kubeconfig)",
                    kstrap::env::TEST_KUBECONFIG
                );
                None
            }
        }
    }

    /// Whether a real control plane was named (without starting anything or printing).
    pub fn configured() -> bool {
        std::env::var_os(kstrap::env::TEST_KUBECONFIG).is_some_and(|p| !p.is_empty())
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The admin kubeconfig's text (for fake hosts whose k3s/k0s hand it out).
    pub fn kubeconfig_yaml(&self) -> String {
        match std::fs::read_to_string(&self.kubeconfig) {
            Ok(s) => s,
            Err(e) => panic!("{}: {e}", self.kubeconfig.display()),
        }
    }

    pub async fn client(&self) -> kube::Client {
        match kstrap::kube::client_from(Some(&self.kubeconfig), None).await {
            Ok(c) => c,
            Err(e) => panic!("{}: {e}", self.kubeconfig.display()),
        }
    }

    /// For tests that touch only objects of their own (namespaces, uniquely named objects).
    /// Held for the whole test, across awaits: each test has its own runtime, and the lock only
    /// orders tests against the exclusive ones.
    pub fn shared(&self) -> ClusterGuard<'_> {
        let asked = std::time::Instant::now();
        let guard = self.lock.read().unwrap_or_else(|e| e.into_inner());
        ClusterGuard::new(Hold::Shared(guard), asked)
    }

    /// For tests that change what every test sees. The node is back to its defaults when this
    /// is taken (a test that changed it and panicked does not leak its changes).
    pub fn exclusive(&self) -> ClusterGuard<'_> {
        let asked = std::time::Instant::now();
        let guard = self.lock.write().unwrap_or_else(|e| e.into_inner());
        self.node.reset();
        ClusterGuard::new(Hold::Exclusive(guard, &self.node), asked)
    }

    /// The node stand-in (to switch its distribution, GPUs, runtime handlers; only under
    /// [`RealCluster::exclusive`]).
    pub fn node(&self) -> &NodeStandIn {
        &self.node
    }
}

/// A test's hold on the cluster: shared with other tests, or exclusive.
pub struct ClusterGuard<'a> {
    hold: Hold<'a>,
    /// When the test asked for the hold, and how long it waited for it.
    asked: std::time::Instant,
    waited: Duration,
}

enum Hold<'a> {
    Shared(RwLockReadGuard<'a, ()>),
    /// Resets the node to its defaults again when it ends (before the lock is released), so
    /// shared tests never see the distribution, GPUs or labels an exclusive test left.
    Exclusive(RwLockWriteGuard<'a, ()>, &'a NodeStandIn),
}

/// Where each test's wait for and hold of the cluster go, one tab-separated line per hold
/// (`test`, `shared`/`exclusive`, waited ms, held ms), when this variable names a file: to see
/// where the suite spends its time.
pub const TIMINGS: &str = "KSTRAP_TEST_TIMINGS";

impl<'a> ClusterGuard<'a> {
    fn new(hold: Hold<'a>, asked: std::time::Instant) -> ClusterGuard<'a> {
        ClusterGuard {
            hold,
            asked,
            waited: asked.elapsed(),
        }
    }
}

impl Drop for ClusterGuard<'_> {
    fn drop(&mut self) {
        let kind = match &self.hold {
            Hold::Exclusive(_, node) => {
                node.reset();
                "exclusive"
            }
            Hold::Shared(_) => "shared",
        };
        if let Some(path) = std::env::var_os(TIMINGS).filter(|p| !p.is_empty()) {
            use std::io::Write;
            let test = std::thread::current().name().unwrap_or("?").to_string();
            let held = self.asked.elapsed().saturating_sub(self.waited);
            let line = format!("{test}\t{kind}\t{}\t{}\n", self.waited.as_millis(), held.as_millis());
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name no other test of this run or of an earlier run uses: `prefix-<pid>-<n>` (DNS-1123).
pub fn unique(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id() % 100_000)
}

/// Deletes what a test made when it ends, passed or failed: namespaces (with everything in them,
/// waited for so their pods leave the node) and cluster-scoped objects.
pub struct Cleanup {
    kubeconfig: PathBuf,
    namespaces: Vec<String>,
    unique_namespaces: Vec<String>,
    cluster_scoped: Vec<(ApiResource, String)>,
    /// Namespaced objects outside the test's namespaces: (resource, namespace, name).
    namespaced: Vec<(ApiResource, String, String)>,
}

impl Cleanup {
    pub fn new(cluster: &RealCluster) -> Cleanup {
        Cleanup {
            kubeconfig: cluster.kubeconfig.clone(),
            namespaces: Vec::new(),
            unique_namespaces: Vec::new(),
            cluster_scoped: Vec::new(),
            namespaced: Vec::new(),
        }
    }

    /// The ApplySet parent kstrap keeps for `stack` (a Secret `applyset-<stack>` in
    /// `kube-system`), so that `kstrap status` on the shared cluster lists no stack of a test
    /// that ended.
    pub fn applyset_parent(&mut self, stack: &str) -> &mut Cleanup {
        self.object("v1", "Secret", "secrets", "kube-system", &format!("applyset-{stack}"))
    }

    /// A namespace, deleted and waited for until it is gone (a later test may make it again).
    pub fn namespace(&mut self, ns: &str) -> &mut Cleanup {
        self.namespaces.push(ns.to_string());
        self
    }

    /// A namespace no other test makes ([`unique`] names): deleted, its pods at once, but not
    /// waited for (the namespace controller takes seconds to finish, and nothing needs the name).
    pub fn unique_namespace(&mut self, ns: &str) -> &mut Cleanup {
        self.unique_namespaces.push(ns.to_string());
        self
    }

    /// A cluster-scoped object, e.g. `("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)`.
    pub fn cluster_object(&mut self, api_version: &str, kind: &str, plural: &str, name: &str) -> &mut Cleanup {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        self.cluster_scoped
            .push((ApiResource::from_gvk_with_plural(&gvk, plural), name.to_string()));
        self
    }

    /// One object in a namespace the test shares with others (a chart object in `kube-system`).
    pub fn object(&mut self, api_version: &str, kind: &str, plural: &str, ns: &str, name: &str) -> &mut Cleanup {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        self.namespaced.push((
            ApiResource::from_gvk_with_plural(&gvk, plural),
            ns.to_string(),
            name.to_string(),
        ));
        self
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let namespaces = std::mem::take(&mut self.namespaces);
        let unique_namespaces = std::mem::take(&mut self.unique_namespaces);
        let cluster_scoped = std::mem::take(&mut self.cluster_scoped);
        let namespaced = std::mem::take(&mut self.namespaced);
        let kubeconfig = self.kubeconfig.clone();
        // Its own thread and runtime: Drop can run inside a test's runtime.
        let done = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(_) => return,
            };
            rt.block_on(async move {
                let Ok(client) = kstrap::kube::client_from(Some(&kubeconfig), None).await else {
                    return;
                };
                for (ar, ns, name) in &namespaced {
                    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
                    let _ = api.delete(name, &DeleteParams::background()).await;
                }
                for (ar, name) in &cluster_scoped {
                    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
                    let _ = api.delete(name, &DeleteParams::background()).await;
                }
                for (ar, ns, name) in &namespaced {
                    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
                    let _ = api.delete(name, &DeleteParams::background()).await;
                }
                delete_namespaces(&client, &unique_namespaces, Duration::ZERO).await;
                delete_namespaces(&client, &namespaces, Duration::from_secs(60)).await;
            });
        });
        let _ = done.join();
    }
}

/// Deletes namespaces and waits (bounded) until they are gone.
///
/// Their pods go first, at once: the namespace controller, finding pods still terminating after
/// its first pass, waits half their grace period plus a second (16 s for the default 30 s,
/// k8s.io/kubernetes v1.36 pkg/controller/namespace/namespace_controller.go
/// `ResourcesRemainingError`, `estimate/2 + 1`) before it looks again, although the node stand-in
/// ends them within a moment. So the workload controllers are deleted leaving their pods
/// (orphaned: nothing makes them again), then the pods with grace period 0 (as `kubectl delete
/// --force --grace-period=0`), then the namespace, which then goes in a second or two.
pub async fn delete_namespaces(client: &kube::Client, namespaces: &[String], within: Duration) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for ns in namespaces {
        remove_pods_at_once(client, ns).await;
        let _ = api.delete(ns, &DeleteParams::background()).await;
    }
    let deadline = tokio::time::Instant::now() + within;
    for ns in namespaces {
        while tokio::time::Instant::now() < deadline {
            match api.get_opt(ns).await {
                Ok(None) => break,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

/// Server-side applies `obj` (a whole object as JSON) with field manager `manager`, forced.
pub async fn apply_json(client: &kube::Client, obj: &Value, manager: &str) -> Result<DynamicObject, kube::Error> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let ns = obj["metadata"]["namespace"].as_str();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let (ar, _caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(name, &PatchParams::apply(manager).force(), &Patch::Apply(obj))
        .await
}

/// A namespace object, for [`apply_json`].
pub fn namespace_json(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// Deletes `ns`'s workload controllers (orphaning their pods), then its pods with grace period 0.
async fn remove_pods_at_once(client: &kube::Client, ns: &str) {
    let orphan = DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    let everything = kube::api::ListParams::default();
    for (group, version, kind, plural) in [
        ("apps", "v1", "Deployment", "deployments"),
        ("apps", "v1", "StatefulSet", "statefulsets"),
        ("apps", "v1", "DaemonSet", "daemonsets"),
        ("apps", "v1", "ReplicaSet", "replicasets"),
        ("batch", "v1", "CronJob", "cronjobs"),
        ("batch", "v1", "Job", "jobs"),
    ] {
        let ar = ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let _ = api.delete_collection(&orphan, &everything).await;
    }
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let _ = pods
        .delete_collection(
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
            &everything,
        )
        .await;
}
