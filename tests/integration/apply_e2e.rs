//! End-to-end tests of the stack engine and `kstrap apply`: a 3-stage stack in a temp dir is
//! applied, waited for, re-applied (no writes), changed, pruned, and broken in every way the
//! simulated API server (a test double; see tests/support/sim) can inject.
//!
//! The same tests run against a real cluster when `KSTRAP_TEST_KUBECONFIG` names its kubeconfig
//! (`scripts/e2e.sh`); tests that need fault injection then print why they skip. The one switch
//! is [`Cluster::start`].

use crate::sim::{Fault, SimConfig, SimulatedApiServer};
use assert_cmd::Command;
use kstrap::kube::{ApplyError, ApplyOptions, ApplyProgress, ApplyReport, Outcome, apply_stack, client_from};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

// ---- the one switch: simulated API server or a real cluster --------------------------------

pub(crate) enum Cluster {
    Sim(SimulatedApiServer),
    Real(PathBuf),
}

impl Cluster {
    /// A real cluster when `KSTRAP_TEST_KUBECONFIG` is set, else a fresh simulated API server.
    pub(crate) fn start() -> Cluster {
        match std::env::var_os(kstrap::env::TEST_KUBECONFIG) {
            Some(path) if !path.is_empty() => Cluster::Real(PathBuf::from(path)),
            _ => Cluster::Sim(SimulatedApiServer::start(SimConfig::default())),
        }
    }

    /// Whether the tests run against a real cluster, saying that `test` skips there.
    pub(crate) fn is_real(test: &str) -> bool {
        let real = std::env::var_os(kstrap::env::TEST_KUBECONFIG).is_some_and(|p| !p.is_empty());
        if real {
            eprintln!("skipping {test}: it needs the simulated API server (GPU operator, faults)");
        }
        real
    }

    /// The simulator, or None (after printing why the test skips) on a real cluster.
    fn sim_or_skip(&self, test: &str) -> Option<&SimulatedApiServer> {
        match self {
            Cluster::Sim(s) => Some(s),
            Cluster::Real(_) => {
                eprintln!("skipping {test}: it needs fault injection, which only the simulated API server has");
                None
            }
        }
    }

    async fn client(&self) -> kube::Client {
        match self {
            Cluster::Sim(s) => s.client().await,
            Cluster::Real(path) => match client_from(Some(path), None).await {
                Ok(c) => c,
                Err(e) => panic!("KSTRAP_TEST_KUBECONFIG: {e}"),
            },
        }
    }

    pub(crate) fn kubeconfig(&self, dir: &Path) -> PathBuf {
        match self {
            Cluster::Sim(s) => {
                let path = dir.join("kubeconfig");
                s.write_kubeconfig(&path);
                path
            }
            Cluster::Real(path) => path.clone(),
        }
    }

    /// Stage timeouts: short against the simulator, room for image pulls on a real cluster.
    pub(crate) fn timeout(&self, sim: Duration) -> Duration {
        match self {
            Cluster::Sim(_) => sim,
            Cluster::Real(_) => Duration::from_secs(180),
        }
    }
}

// ---- a test stack on disk ------------------------------------------------------------------

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A 3-stage stack in a temp dir with a unique name and namespace (tests run in parallel, and
/// on a real cluster they must not collide).
struct TestStack {
    dir: tempfile::TempDir,
    name: String,
    ns: String,
}

impl TestStack {
    fn new() -> TestStack {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("e2e{}-{n}", std::process::id() % 100_000);
        let t = TestStack {
            dir: tempfile::tempdir().unwrap(),
            ns: name.clone(),
            name,
        };
        t.write_all(1, "v1");
        t
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(&self.name).join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path(rel)).unwrap();
    }

    fn write_all(&self, replicas: u32, version: &str) {
        let (name, ns) = (&self.name, &self.ns);
        self.write(
            "stack.yaml",
            &format!(
                "name: {name}\ndescription: end-to-end test stack\nnamespace: {ns}\nstages:\n  - {{dir: 00-base, name: base, timeout_s: 60, description: namespace crd config}}\n  - {{dir: 10-data, name: data, timeout_s: 60, description: volume and custom resource}}\n  - {{dir: 20-app, name: app, timeout_s: 60, description: deployment service job}}\nsecrets:\n  - name: app-keys\n    description: the app's API key\n    keys: [E2E_API_KEY]\n"
            ),
        );
        self.write(
            "00-base/base.yaml",
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.e2e.kstrap.dev\nspec:\n  group: e2e.kstrap.dev\n  scope: Namespaced\n  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n"
            ),
        );
        self.write(
            "00-base/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: test\n",
        );
        self.write(
            "10-data/data.yaml",
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n---\napiVersion: e2e.kstrap.dev/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n",
        );
        self.write(
            "20-app/app.yaml",
            &format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: web\n          image: registry.k8s.io/pause:3.10\n          env:\n            - {{name: VERSION, value: \"{version}\"}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{app: web}}\n  ports:\n    - {{port: 80, protocol: TCP, targetPort: 80}}\n---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: init\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: init\n          image: busybox:1.36\n          command: [\"true\"]\n"
            ),
        );
    }

    fn load(&self) -> kstrap::stack::Stack {
        match kstrap::stack::load(&self.name, Some(self.dir.path())) {
            Ok(s) => s,
            Err(e) => panic!("test stack: {e}"),
        }
    }

    fn secret(&self, value: &str) -> Vec<Value> {
        vec![json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "app-keys", "namespace": self.ns},
            "type": "Opaque", "stringData": {"E2E_API_KEY": value}})]
    }
}

// ---- progress recording --------------------------------------------------------------------

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(Instant, String)>>,
}

impl Recorder {
    fn push(&self, s: String) {
        self.events.lock().unwrap().push((Instant::now(), s));
    }
    fn lines(&self) -> Vec<String> {
        self.events.lock().unwrap().iter().map(|(_, s)| s.clone()).collect()
    }
}

impl ApplyProgress for Recorder {
    fn stage_started(&self, stage: &str, objects: usize) {
        self.push(format!("started {stage} {objects}"));
    }
    fn stage_progress(&self, stage: &str, ready: usize, total: usize, _: Duration, slowest: &[(String, String)]) {
        self.push(format!("progress {stage} {ready}/{total} {slowest:?}"));
    }
    fn stage_done(&self, stage: &str, _: Duration) {
        self.push(format!("done {stage}"));
    }
    fn applied(&self, object: &str, outcome: Outcome) {
        self.push(format!("applied {object} {outcome:?}"));
    }
    fn pruned(&self, object: &str) {
        self.push(format!("pruned {object}"));
    }
}

fn opts(timeout: Duration) -> ApplyOptions {
    ApplyOptions {
        stage_timeout: Some(timeout),
        ..ApplyOptions::default()
    }
}

async fn apply(
    cluster: &Cluster,
    t: &TestStack,
    o: &ApplyOptions,
    progress: &dyn ApplyProgress,
) -> Result<ApplyReport, ApplyError> {
    let client = cluster.client().await;
    apply_stack(client, &t.load(), t.secret("s3cr3t-value"), o, progress).await
}

fn outcomes(r: &ApplyReport) -> Vec<(String, Outcome)> {
    r.stages
        .iter()
        .flat_map(|s| s.objects.iter().map(|o| (o.object.clone(), o.outcome)))
        .collect()
}

async fn get(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Option<Value> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let ar =
        kube::core::ApiResource::from_gvk_with_plural(&kube::core::GroupVersionKind::gvk(group, version, kind), plural);
    let api: kube::Api<kube::core::DynamicObject> = match ns {
        Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &ar),
        None => kube::Api::all_with(client.clone(), &ar),
    };
    api.get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

// ---- the tests -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stages_apply_wait_and_reapply_writes_nothing() {
    let cluster = Cluster::start();
    let t = TestStack::new();
    let rec = Recorder::default();
    let o = opts(cluster.timeout(Duration::from_secs(5)));
    let report = apply(&cluster, &t, &o, &rec).await.unwrap();

    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["base", "data", "app"]);
    let all = outcomes(&report);
    assert_eq!(all.len(), 9, "{all:?}");
    assert!(all.iter().all(|(_, o)| *o == Outcome::Created), "{all:?}");
    // CRD and Namespace first, the stack's Secret right after the Namespace.
    let base: Vec<&str> = report.stages[0].objects.iter().map(|o| o.object.as_str()).collect();
    assert_eq!(
        base,
        [
            "CustomResourceDefinition/widgets.e2e.kstrap.dev".to_string(),
            format!("Namespace/{}", t.ns),
            format!("Secret/app-keys -n {}", t.ns),
            format!("ConfigMap/settings -n {}", t.ns)
        ]
    );
    let lines = rec.lines();
    let done: Vec<&String> = lines.iter().filter(|l| l.starts_with("done")).collect();
    assert_eq!(done, ["done base", "done data", "done app"]);
    assert!(report.pruned.is_empty());

    // Everything is labelled as a member of the ApplySet, and the parent records the kinds.
    let client = cluster.client().await;
    let web = get(&client, "apps/v1", "Deployment", "deployments", Some(&t.ns), "web")
        .await
        .unwrap();
    assert_eq!(
        web["metadata"]["labels"]["applyset.kubernetes.io/part-of"],
        report.applyset.as_str()
    );
    assert_eq!(web["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kstrap");
    assert!(web["status"]["readyReplicas"].as_i64() >= Some(1), "{web}");
    let parent = get(
        &client,
        "v1",
        "Secret",
        "secrets",
        Some("kube-system"),
        &format!("applyset-{}", t.name),
    )
    .await
    .unwrap();
    assert_eq!(
        parent["metadata"]["labels"]["applyset.kubernetes.io/id"],
        report.applyset.as_str()
    );
    let gks = parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"]
        .as_str()
        .unwrap();
    assert!(
        gks.contains("Deployment.apps") && gks.contains("Widget.e2e.kstrap.dev"),
        "{gks}"
    );
    let job = get(&client, "batch/v1", "Job", "jobs", Some(&t.ns), "init")
        .await
        .unwrap();
    assert!(
        job["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True"),
        "{job}"
    );

    // Re-applying the same stack changes nothing.
    let before = match &cluster {
        Cluster::Sim(s) => Some(s.mutations()),
        Cluster::Real(_) => None,
    };
    let again = apply(&cluster, &t, &o, &rec).await.unwrap();
    assert!(
        outcomes(&again).iter().all(|(_, o)| *o == Outcome::Unchanged),
        "{:?}",
        outcomes(&again)
    );
    if let (Cluster::Sim(s), Some(before)) = (&cluster, before) {
        assert_eq!(s.mutations(), before, "a re-apply of an unchanged stack must not write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_deployment_is_updated_and_waited_for_again() {
    let cluster = Cluster::start();
    let t = TestStack::new();
    let o = opts(cluster.timeout(Duration::from_secs(5)));
    apply(&cluster, &t, &o, &kstrap::kube::NoProgress).await.unwrap();
    if let Cluster::Sim(s) = &cluster {
        // Slow rollouts, so "ready" right after the write would be the stale status.
        s.set_ready_delay("Deployment", Duration::from_millis(300));
    }
    t.write_all(2, "v2");
    let report = apply(&cluster, &t, &o, &kstrap::kube::NoProgress).await.unwrap();
    let web = format!("Deployment/web -n {}", t.ns);
    let all = outcomes(&report);
    assert!(all.contains(&(web, Outcome::Configured)), "{all:?}");
    let client = cluster.client().await;
    let d = get(&client, "apps/v1", "Deployment", "deployments", Some(&t.ns), "web")
        .await
        .unwrap();
    assert_eq!(d["status"]["observedGeneration"], d["metadata"]["generation"], "{d}");
    assert_eq!(d["status"]["readyReplicas"], 2, "{d}");
    assert_eq!(d["status"]["updatedReplicas"], 2, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_objects_are_pruned_and_unrelated_ones_left_alone() {
    let cluster = Cluster::start();
    let t = TestStack::new();
    let o = opts(cluster.timeout(Duration::from_secs(5)));
    apply(&cluster, &t, &o, &kstrap::kube::NoProgress).await.unwrap();

    // Someone else's ConfigMap in the same namespace, without our label.
    let client = cluster.client().await;
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client.clone(), &t.ns);
    let theirs: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "theirs", "labels": {"app.kubernetes.io/managed-by": "someone"}}, "data": {"k": "v"}}))
    .unwrap();
    cms.create(&Default::default(), &theirs).await.unwrap();

    t.remove("00-base/settings.yaml");
    let rec = Recorder::default();
    let report = apply(&cluster, &t, &o, &rec).await.unwrap();
    assert_eq!(report.pruned, [format!("ConfigMap/settings -n {}", t.ns)]);
    assert!(rec.lines().contains(&format!("pruned ConfigMap/settings -n {}", t.ns)));
    assert!(
        get(&client, "v1", "ConfigMap", "configmaps", Some(&t.ns), "settings")
            .await
            .is_none()
    );
    assert!(
        get(&client, "v1", "ConfigMap", "configmaps", Some(&t.ns), "theirs")
            .await
            .is_some()
    );
    // Pruning twice prunes nothing more.
    let again = apply(&cluster, &t, &o, &kstrap::kube::NoProgress).await.unwrap();
    assert!(again.pruned.is_empty(), "{:?}", again.pruned);

    // --no-prune keeps a removed object; dry-run reports without deleting.
    t.remove("10-data/data.yaml");
    let keep = ApplyOptions {
        prune: false,
        ..o.clone()
    };
    let r = apply(&cluster, &t, &keep, &kstrap::kube::NoProgress).await.unwrap();
    assert!(r.pruned.is_empty());
    let dry = ApplyOptions {
        dry_run: true,
        ..o.clone()
    };
    let r = apply(&cluster, &t, &dry, &kstrap::kube::NoProgress).await.unwrap();
    assert!(
        r.pruned.contains(&format!("PersistentVolumeClaim/data -n {}", t.ns)),
        "{:?}",
        r.pruned
    );
    assert!(
        get(
            &client,
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            Some(&t.ns),
            "data"
        )
        .await
        .is_some()
    );
}

/// Applies with one fault injected; returns the result and how long it took.
async fn with_fault(fault: Fault, timeout: Duration) -> Option<(Result<ApplyReport, ApplyError>, Duration, TestStack)> {
    let cluster = Cluster::start();
    let sim = cluster.sim_or_skip("a fault test")?;
    sim.inject(fault);
    let t = TestStack::new();
    let started = Instant::now();
    let r = apply(&cluster, &t, &opts(timeout), &kstrap::kube::NoProgress).await;
    Some((r, started.elapsed(), t))
}

fn diagnosis_text(e: &ApplyError) -> String {
    e.diagnoses()
        .iter()
        .map(kstrap::kube::diagnose::render)
        .collect::<String>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_backoff_times_out_naming_the_deployment_and_reason() {
    let fault = Fault::PodWaiting {
        owner_name: "web".into(),
        reason: "ImagePullBackOff".into(),
        message: "Back-off pulling image \"registry.k8s.io/pause:3.10\"".into(),
    };
    let Some((r, took, t)) = with_fault(fault, Duration::from_secs(2)).await else {
        return;
    };
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    let text = diagnosis_text(&e);
    assert!(text.contains(&format!("Deployment/web -n {}", t.ns)), "{text}");
    assert!(text.contains("ImagePullBackOff"), "{text}");
    assert!(text.contains("describe pod web-"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_fails_fast_with_the_exit_code() {
    let fault = Fault::PodWaiting {
        owner_name: "web".into(),
        reason: "CrashLoopBackOff".into(),
        message: "back-off 10s restarting failed container".into(),
    };
    let Some((r, took, t)) = with_fault(fault, Duration::from_secs(5)).await else {
        return;
    };
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 1, "{e}");
    assert!(
        matches!(e, ApplyError::Failed { ref stage, .. } if stage == "app"),
        "{e}"
    );
    assert!(
        took < Duration::from_secs(5),
        "a crash loop fails before the timeout: {took:?}"
    );
    let text = diagnosis_text(&e);
    assert!(text.contains(&format!("Deployment/web -n {}", t.ns)), "{text}");
    assert!(
        text.contains("CrashLoopBackOff") && text.contains("last exit code 1"),
        "{text}"
    );
    assert!(text.contains("--previous"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pods_report_the_scheduler_message() {
    let fault = Fault::Unschedulable {
        owner_name: "web".into(),
        message: "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.".into(),
    };
    let Some((r, _, _)) = with_fault(fault, Duration::from_secs(2)).await else {
        return;
    };
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    let text = diagnosis_text(&e);
    assert!(
        text.contains("0/1 nodes are available: 1 Insufficient nvidia.com/gpu"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_fails_the_stage() {
    let Some((r, _, t)) = with_fault(Fault::JobFails { name: "init".into() }, Duration::from_secs(5)).await else {
        return;
    };
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 1, "{e}");
    let text = diagnosis_text(&e);
    assert!(text.contains(&format!("Job/init -n {}", t.ns)), "{text}");
    assert!(text.contains("the Job failed"), "{text}");
    assert!(text.contains("logs job/init"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_429s_are_retried() {
    for fault in [
        Fault::ServerError {
            method: Some("PATCH".into()),
            path_contains: "configmaps".into(),
            times: 3,
        },
        Fault::TooManyRequests {
            path_contains: "deployments".into(),
            times: 2,
            retry_after_s: 1,
        },
    ] {
        let Some((r, took, _)) = with_fault(fault.clone(), Duration::from_secs(5)).await else {
            return;
        };
        let report = r.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(report.stages.len(), 3);
        assert!(took < Duration::from_secs(10), "{fault:?}: {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_name_the_other_manager_unless_forced() {
    let cluster = Cluster::start();
    let Some(sim) = cluster.sim_or_skip("conflicts_name_the_other_manager_unless_forced") else {
        return;
    };
    sim.inject(Fault::ApplyConflict {
        kind: "ConfigMap".into(),
        name: "settings".into(),
        manager: "helm".into(),
        field: ".data.mode".into(),
    });
    let t = TestStack::new();
    let o = opts(Duration::from_secs(5));
    let e = apply(&cluster, &t, &o, &kstrap::kube::NoProgress).await.unwrap_err();
    match &e {
        ApplyError::Conflict { object, manager, field } => {
            assert_eq!(object, &format!("ConfigMap/settings -n {}", t.ns));
            assert_eq!(manager, "helm");
            assert_eq!(field, ".data.mode");
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("--force-conflicts"));
    let forced = ApplyOptions {
        force_conflicts: true,
        ..o
    };
    apply(&cluster, &t, &forced, &kstrap::kube::NoProgress).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_and_expired_watches_resume() {
    for fault in [Fault::EndWatchAfter { events: 1 }, Fault::GoneOnWatch { times: 3 }] {
        let cluster = Cluster::start();
        let Some(sim) = cluster.sim_or_skip("ended_and_expired_watches_resume") else {
            return;
        };
        sim.inject(fault.clone());
        // Slow controllers: the watches must outlive their first events to see readiness.
        sim.set_ready_delay("Deployment", Duration::from_millis(200));
        sim.set_ready_delay("Job", Duration::from_millis(200));
        let t = TestStack::new();
        let r = apply(&cluster, &t, &opts(Duration::from_secs(5)), &kstrap::kube::NoProgress).await;
        let report = r.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(report.stages.len(), 3, "{fault:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kind_is_refused_before_anything_is_written() {
    let cluster = Cluster::start();
    let t = TestStack::new();
    t.write(
        "20-app/gadget.yaml",
        "apiVersion: nowhere.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n",
    );
    let client = cluster.client().await;
    let e = apply(&cluster, &t, &opts(Duration::from_secs(2)), &kstrap::kube::NoProgress)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("20-app/gadget.yaml document 0"), "{text}");
    assert!(
        text.contains("Gadget") && text.contains("CustomResourceDefinition"),
        "{text}"
    );
    assert!(
        get(&client, "v1", "Namespace", "namespaces", None, &t.ns)
            .await
            .is_none()
    );
}

// ---- the binary ----------------------------------------------------------------------------

fn kstrap_apply(cluster: &Cluster, t: &TestStack, extra: &[&str]) -> std::process::Output {
    let key = t.dir.path().join("key.txt");
    std::fs::write(&key, "s3cr3t-from-file\n").unwrap();
    let kubeconfig = cluster.kubeconfig(t.dir.path());
    let mut cmd = Command::cargo_bin("kstrap").unwrap();
    cmd.args(["apply", "--stack", &t.name, "--stack-dir"])
        .arg(t.dir.path())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--secret-file")
        .arg(format!("E2E_API_KEY={}", key.display()))
        .args(extra)
        .env_remove("KUBECONFIG")
        .env_remove("E2E_API_KEY");
    cmd.output().unwrap()
}

#[test]
fn the_binary_applies_and_reports_json_without_secret_values() {
    let cluster = Cluster::start();
    let t = TestStack::new();
    let timeout = cluster.timeout(Duration::from_secs(5)).as_secs().to_string();
    let out = kstrap_apply(&cluster, &t, &["--output", "json", "--timeout", &timeout]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("one JSON document: {e}\n{stdout}"));
    assert_eq!(v["ok"], true);
    assert_eq!(v["report"]["stages"].as_array().unwrap().len(), 3);
    // Event lines on stderr are JSON too.
    assert!(
        stderr
            .lines()
            .filter(|l| l.starts_with('{'))
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );
    assert!(stderr.contains("\"event\":\"stage_done\""), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains("s3cr3t"), "a secret value leaked:\n{text}");
    }
    // The secret did reach the cluster.
    if let Cluster::Sim(s) = &cluster {
        let secret = s.get("v1", "Secret", Some(&t.ns), "app-keys").unwrap();
        let stored = secret.to_string();
        assert!(stored.contains("E2E_API_KEY"), "{stored}");
    }

    // Human output: one line per stage.
    let out = kstrap_apply(&cluster, &t, &["--timeout", &timeout]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("stage app") && stdout.contains("0 created, 0 configured, 3 unchanged"),
        "{stdout}"
    );
    // Not a terminal: plain progress lines on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stage app: ready ("), "{stderr}");
}

#[test]
fn the_binary_exits_4_on_timeout_and_1_on_failure() {
    let cluster = Cluster::start();
    let Some(sim) = cluster.sim_or_skip("the_binary_exits_4_on_timeout_and_1_on_failure") else {
        return;
    };
    let t = TestStack::new();
    sim.hold("apps/v1", "Deployment", Some(&t.ns), "web");
    let out = kstrap_apply(&cluster, &t, &["--timeout", "1", "--output", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["error"], "timeout");
    assert_eq!(v["stage"], "app");
    assert!(
        v["not_ready"][0]["object"].as_str().unwrap().contains("Deployment/web"),
        "{v}"
    );
    assert!(!stdout.contains("s3cr3t") && !stderr.contains("s3cr3t"));
    assert!(stderr.contains("not ready after 1s"), "{stderr}");
    sim.release("apps/v1", "Deployment", Some(&t.ns), "web");

    sim.inject(Fault::JobFails { name: "init".into() });
    let t2 = TestStack::new();
    let out = kstrap_apply(&cluster, &t2, &["--timeout", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stage app failed"), "{stderr}");
    assert!(stderr.contains(&format!("Job/init -n {}", t2.ns)), "{stderr}");

    // A kubeconfig that is not one: exit 2, the file named, its contents not shown.
    let bad = t.dir.path().join("bad-kubeconfig");
    std::fs::write(&bad, "users: [ {token: s3cr3t-token").unwrap();
    let out = Command::cargo_bin("kstrap")
        .unwrap()
        .args(["apply", "--stack", &t.name, "--stack-dir"])
        .arg(t.dir.path())
        .arg("--kubeconfig")
        .arg(&bad)
        .env("E2E_API_KEY", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad-kubeconfig"), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}

#[test]
fn ctrl_c_stops_cleanly_saying_what_is_left() {
    let cluster = Cluster::start();
    let Some(sim) = cluster.sim_or_skip("ctrl_c_stops_cleanly_saying_what_is_left") else {
        return;
    };
    let t = TestStack::new();
    sim.hold("apps/v1", "Deployment", Some(&t.ns), "web");
    let kubeconfig = cluster.kubeconfig(t.dir.path());
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kstrap"))
        .args(["apply", "--stack", &t.name, "--timeout", "30", "--stack-dir"])
        .arg(t.dir.path())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("E2E_API_KEY", "s3cr3t")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the engine waits on stage app, then interrupt it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.get("apps/v1", "Deployment", Some(&t.ns), "web").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted during stage app"), "{stderr}");
    assert!(stderr.contains(&format!("Deployment/web -n {}", t.ns)), "{stderr}");
}

/// A secret the stack may generate is made on the first apply, never printed, and kept (same
/// value, no write) on the next apply; a value given later through the environment replaces it.
#[test]
fn generated_secrets_are_made_once_and_kept() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let name = format!("gen{}-{n}", std::process::id() % 100_000);
    let root = dir.path().join(&name);
    std::fs::create_dir_all(root.join("00-base")).unwrap();
    std::fs::write(
        root.join("stack.yaml"),
        format!(
            "name: {name}\ndescription: generated secrets\nnamespace: {name}\nstages:\n  - {{dir: 00-base, name: base, timeout_s: 30, description: namespace}}\nsecrets:\n  - name: keys\n    description: a generated key\n    keys: [GEN_E2E_KEY]\n    generate: {{length: 24, format: \"k: {{random}}\"}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("00-base/ns.yaml"),
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
    )
    .unwrap();
    let kubeconfig = cluster.kubeconfig(dir.path());
    let apply = |env: Option<&str>| {
        let mut cmd = Command::cargo_bin("kstrap").unwrap();
        cmd.args(["apply", "--stack", &name, "--stack-dir"])
            .arg(dir.path())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--timeout", "30", "--profile", "laptop-8gb"])
            .env_remove("KUBECONFIG")
            .env_remove("GEN_E2E_KEY");
        if let Some(v) = env {
            cmd.env("GEN_E2E_KEY", v);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{text}");
        text
    };
    let read = || -> String {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let client = cluster.client().await;
            let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, &name);
            let s = api.get("keys").await.unwrap();
            String::from_utf8(s.data.unwrap()["GEN_E2E_KEY"].0.clone()).unwrap()
        })
    };
    let first_out = apply(None);
    let first = read();
    assert!(first.starts_with("k: ") && first.len() == 27, "{first:?}");
    assert!(!first_out.contains(&first[3..]), "the generated value was printed");
    let before = match &cluster {
        Cluster::Sim(s) => Some(s.mutations()),
        Cluster::Real(_) => None,
    };
    apply(None);
    assert_eq!(read(), first, "kept on re-apply");
    if let (Cluster::Sim(s), Some(before)) = (&cluster, before) {
        assert_eq!(s.mutations(), before, "re-apply wrote nothing");
    }
    apply(Some("k: given-by-env"));
    assert_eq!(read(), "k: given-by-env");
}
