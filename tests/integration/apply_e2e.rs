//! End-to-end tests of the stack engine and `kstrap apply` on the real Kubernetes API server
//! (see tests/support/real): a 3-stage stack in a temp dir is applied, waited for, re-applied
//! (no writes), changed, pruned, and broken the ways a real cluster breaks: images the node
//! stand-in cannot pull or that crash, resource requests the real scheduler refuses, a Job that
//! exits 1, a second field manager, and, through the fault proxy (tests/support/proxy, a test
//! double between kstrap and the API server), server errors, 429s, ended and expired watches and
//! an outage. Without a real control plane every test skips, saying why.

use crate::proxy::{FaultProxy, ProxyFault};
use crate::real::{Cleanup, ClusterGuard, RealCluster, apply_json, namespace_json};
use assert_cmd::Command;
use kstrap::kube::{ApplyError, ApplyOptions, ApplyProgress, ApplyReport, Outcome, apply_stack, client_from};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

// ---- a test stack on disk ------------------------------------------------------------------

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The images of the test stack's Deployment and Job. The node stand-in reads outcomes from
/// image names (`kstrap.invalid/…` cannot be pulled, `crash-loop`, `exit-N`, `never-ready`).
struct Images {
    web: &'static str,
    init: &'static str,
    /// Extra container fields of the Deployment's container (YAML flow mapping entries).
    web_extra: &'static str,
}

const PLAIN: Images = Images {
    web: "registry.k8s.io/pause:3.10",
    init: "busybox:1.36",
    web_extra: "",
};

/// A 3-stage stack in a temp dir with a unique name, namespace and CRD group (tests run in
/// parallel against one cluster), on the real cluster; what it made is deleted when it drops
/// (the namespace, the CRD, the ApplySet parent in kube-system).
pub(crate) struct TestStack {
    dir: tempfile::TempDir,
    name: String,
    ns: String,
    group: String,
    images: Images,
    kubeconfig: PathBuf,
    _cleanup: Cleanup,
    // Last: released after the cleanup ran.
    _guard: ClusterGuard<'static>,
}

impl TestStack {
    fn new(cluster: &'static RealCluster) -> TestStack {
        TestStack::with(cluster, PLAIN)
    }

    fn with(cluster: &'static RealCluster, images: Images) -> TestStack {
        let guard = cluster.shared();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("e2e{}-{n}", std::process::id() % 100_000);
        let group = format!("{name}.e2e.kstrap.dev");
        let mut cleanup = Cleanup::new(cluster);
        cleanup
            .unique_namespace(&name)
            .cluster_object(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                &format!("widgets.{group}"),
            )
            .applyset_parent(&name);
        let t = TestStack {
            dir: tempfile::tempdir().unwrap(),
            ns: name.clone(),
            name,
            group,
            images,
            kubeconfig: cluster.kubeconfig().to_path_buf(),
            _cleanup: cleanup,
            _guard: guard,
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

    fn crd(&self) -> String {
        format!("CustomResourceDefinition/widgets.{}", self.group)
    }

    fn write_all(&self, replicas: u32, version: &str) {
        let (name, ns, group) = (&self.name, &self.ns, &self.group);
        let Images { web, init, web_extra } = &self.images;
        self.write(
            "stack.yaml",
            &format!(
                "name: {name}\ndescription: end-to-end test stack\nnamespace: {ns}\nstages:\n  - {{dir: 00-base, name: base, timeout_s: 60, description: namespace crd config}}\n  - {{dir: 10-data, name: data, timeout_s: 60, description: volume and custom resource}}\n  - {{dir: 20-app, name: app, timeout_s: 60, description: deployment service job}}\nsecrets:\n  - name: app-keys\n    description: the app's API key\n    keys: [E2E_API_KEY]\n"
            ),
        );
        self.write(
            "00-base/base.yaml",
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n"
            ),
        );
        self.write(
            "00-base/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: test\n",
        );
        self.write(
            "10-data/data.yaml",
            &format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n---\napiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n"),
        );
        self.write(
            "20-app/app.yaml",
            &format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: web\n          image: {web}\n          env:\n            - {{name: VERSION, value: \"{version}\"}}\n{web_extra}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{app: web}}\n  ports:\n    - {{port: 80, protocol: TCP, targetPort: 80}}\n---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: init\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: init\n          image: {init}\n          command: [\"true\"]\n"
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

    async fn client(&self) -> kube::Client {
        client_of(&self.kubeconfig).await
    }
}

async fn client_of(kubeconfig: &Path) -> kube::Client {
    match client_from(Some(kubeconfig), None).await {
        Ok(c) => c,
        Err(e) => panic!("{}: {e}", kubeconfig.display()),
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
    fn note(&self, object: &str, message: &str) {
        self.push(format!("note {object} {message}"));
    }
    fn server_silent(&self, silent: Duration) {
        self.push(format!("silent {}", silent.as_secs()));
    }
}

fn opts(timeout: Duration) -> ApplyOptions {
    ApplyOptions {
        stage_timeout: Some(timeout),
        ..ApplyOptions::default()
    }
}

/// Applies the stack through `client`.
async fn apply_with(
    client: kube::Client,
    t: &TestStack,
    o: &ApplyOptions,
    progress: &dyn ApplyProgress,
) -> Result<ApplyReport, ApplyError> {
    apply_stack(client, &t.load(), t.secret("s3cr3t-value"), o, progress).await
}

async fn apply(t: &TestStack, o: &ApplyOptions, progress: &dyn ApplyProgress) -> Result<ApplyReport, ApplyError> {
    apply_with(t.client().await, t, o, progress).await
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

/// The resourceVersions of the stack's objects (a write to any of them changes its own).
async fn versions(client: &kube::Client, t: &TestStack) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (av, kind, plural, ns, name) in [
        ("v1", "Namespace", "namespaces", None, t.ns.as_str()),
        ("v1", "ConfigMap", "configmaps", Some(t.ns.as_str()), "settings"),
        ("v1", "Secret", "secrets", Some(t.ns.as_str()), "app-keys"),
        (
            &format!("{}/v1", t.group),
            "Widget",
            "widgets",
            Some(t.ns.as_str()),
            "w1",
        ),
        ("v1", "Service", "services", Some(t.ns.as_str()), "web"),
        (
            "v1",
            "Secret",
            "secrets",
            Some("kube-system"),
            &format!("applyset-{}", t.name),
        ),
    ] {
        let v = get(client, av, kind, plural, ns, name).await;
        let rv = v
            .map(|v| v["metadata"]["resourceVersion"].clone())
            .unwrap_or(Value::Null);
        out.push((format!("{kind}/{name}"), rv));
    }
    // Deployments and Jobs get status writes from their controllers: their spec, labels and
    // annotations. So does the claim: kube-apiserver v1.36 also stores the first apply after a
    // PersistentVolumeClaim's creation as a new version with nothing changed in it.
    for (av, kind, plural, name) in [
        ("apps/v1", "Deployment", "deployments", "web"),
        ("batch/v1", "Job", "jobs", "init"),
        ("v1", "PersistentVolumeClaim", "persistentvolumeclaims", "data"),
    ] {
        let v = get(client, av, kind, plural, Some(&t.ns), name).await;
        let g = v
            .map(|v| json!([v["spec"], v["metadata"]["labels"], v["metadata"]["annotations"]]))
            .unwrap_or(Value::Null);
        out.push((format!("{kind}/{name}"), g));
    }
    out
}

// ---- the tests -----------------------------------------------------------------------------

/// The cluster, or `return` after printing why the test skips.
macro_rules! cluster_or_skip {
    ($test:expr) => {
        match RealCluster::get($test) {
            Some(c) => c,
            None => return,
        }
    };
}

const STAGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stages_apply_wait_and_reapply_writes_nothing() {
    let cluster = cluster_or_skip!("three_stages_apply_wait_and_reapply_writes_nothing");
    let t = TestStack::new(cluster);
    let rec = Recorder::default();
    let o = opts(STAGE);
    let report = apply(&t, &o, &rec).await.unwrap();

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
            t.crd(),
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
    let client = t.client().await;
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
        gks.contains("Deployment.apps") && gks.contains(&format!("Widget.{}", t.group)),
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

    // Re-applying the same stack changes nothing: no object's resourceVersion (or, for the
    // controllers' objects, generation and metadata) moves.
    let before = versions(&client, &t).await;
    let again = apply(&t, &o, &rec).await.unwrap();
    assert!(
        outcomes(&again).iter().all(|(_, o)| *o == Outcome::Unchanged),
        "{:?}",
        outcomes(&again)
    );
    assert_eq!(
        versions(&client, &t).await,
        before,
        "a re-apply of an unchanged stack must not write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_deployment_is_updated_and_waited_for_again() {
    let cluster = cluster_or_skip!("a_changed_deployment_is_updated_and_waited_for_again");
    let t = TestStack::new(cluster);
    let o = opts(STAGE);
    apply(&t, &o, &kstrap::kube::NoProgress).await.unwrap();
    t.write_all(2, "v2");
    let report = apply(&t, &o, &kstrap::kube::NoProgress).await.unwrap();
    let web = format!("Deployment/web -n {}", t.ns);
    let all = outcomes(&report);
    assert!(all.contains(&(web, Outcome::Configured)), "{all:?}");
    let client = t.client().await;
    let d = get(&client, "apps/v1", "Deployment", "deployments", Some(&t.ns), "web")
        .await
        .unwrap();
    assert_eq!(d["status"]["observedGeneration"], d["metadata"]["generation"], "{d}");
    assert_eq!(d["status"]["readyReplicas"], 2, "{d}");
    assert_eq!(d["status"]["updatedReplicas"], 2, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_objects_are_pruned_and_unrelated_ones_left_alone() {
    let cluster = cluster_or_skip!("removed_objects_are_pruned_and_unrelated_ones_left_alone");
    let t = TestStack::new(cluster);
    let o = opts(STAGE);
    apply(&t, &o, &kstrap::kube::NoProgress).await.unwrap();

    // Someone else's ConfigMap in the same namespace, without our label.
    let client = t.client().await;
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client.clone(), &t.ns);
    let theirs: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "theirs", "labels": {"app.kubernetes.io/managed-by": "someone"}}, "data": {"k": "v"}}))
    .unwrap();
    cms.create(&Default::default(), &theirs).await.unwrap();

    t.remove("00-base/settings.yaml");
    let rec = Recorder::default();
    let report = apply(&t, &o, &rec).await.unwrap();
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
    let again = apply(&t, &o, &kstrap::kube::NoProgress).await.unwrap();
    assert!(again.pruned.is_empty(), "{:?}", again.pruned);

    // --no-prune keeps a removed object; dry-run reports without deleting.
    t.remove("10-data/data.yaml");
    let keep = ApplyOptions {
        prune: false,
        ..o.clone()
    };
    let r = apply(&t, &keep, &kstrap::kube::NoProgress).await.unwrap();
    assert!(r.pruned.is_empty());
    let dry = ApplyOptions {
        dry_run: true,
        ..o.clone()
    };
    let r = apply(&t, &dry, &kstrap::kube::NoProgress).await.unwrap();
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

/// Applies a stack with these images; returns the result and how long it took.
async fn broken(
    test: &str,
    images: Images,
    timeout: Duration,
) -> Option<(Result<ApplyReport, ApplyError>, Duration, TestStack)> {
    let cluster = RealCluster::get(test)?;
    let t = TestStack::with(cluster, images);
    let started = Instant::now();
    let r = apply(&t, &opts(timeout), &kstrap::kube::NoProgress).await;
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
    let images = Images {
        web: "example.com/pull-error:1",
        ..PLAIN
    };
    let test = "image_pull_backoff_times_out_naming_the_deployment_and_reason";
    let Some((r, took, t)) = broken(test, images, Duration::from_secs(6)).await else {
        return;
    };
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    let text = diagnosis_text(&e);
    assert!(text.contains(&format!("Deployment/web -n {}", t.ns)), "{text}");
    assert!(
        text.contains("ImagePullBackOff") || text.contains("ErrImagePull"),
        "{text}"
    );
    assert!(text.contains("describe pod web-"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_fails_fast_with_the_exit_code() {
    let images = Images {
        web: "example.com/crash-loop:1",
        ..PLAIN
    };
    let Some((r, took, t)) = broken("crash_loop_fails_fast_with_the_exit_code", images, STAGE).await else {
        return;
    };
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 1, "{e}");
    assert!(
        matches!(e, ApplyError::Failed { ref stage, .. } if stage == "app"),
        "{e}"
    );
    assert!(
        took < Duration::from_secs(30),
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

/// More CPU than the node has (GPU fields stay out of base manifests, so CPU it is): the real
/// scheduler refuses the pod and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pods_report_the_scheduler_message() {
    let images = Images {
        web_extra: "          resources:\n            requests: {cpu: \"500\"}\n",
        ..PLAIN
    };
    let test = "unschedulable_pods_report_the_scheduler_message";
    let Some((r, _, _)) = broken(test, images, Duration::from_secs(5)).await else {
        return;
    };
    let e = r.unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    let text = diagnosis_text(&e);
    assert!(text.contains("0/1 nodes are available"), "{text}");
    assert!(text.contains("Insufficient cpu"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_fails_the_stage() {
    let images = Images {
        init: "example.com/exit-1:1",
        ..PLAIN
    };
    let Some((r, _, t)) = broken("a_failing_job_fails_the_stage", images, STAGE).await else {
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
    let cluster = cluster_or_skip!("server_errors_and_429s_are_retried");
    for fault in [
        ProxyFault::ServerError {
            method: Some("PATCH".into()),
            path_contains: "configmaps".into(),
            times: 3,
        },
        ProxyFault::TooManyRequests {
            path_contains: "deployments".into(),
            times: 2,
            retry_after_s: 1,
        },
    ] {
        let t = TestStack::new(cluster);
        let proxy = FaultProxy::start(cluster.kubeconfig());
        proxy.inject(fault.clone());
        let started = Instant::now();
        let r = apply_with(proxy.client().await, &t, &opts(STAGE), &kstrap::kube::NoProgress).await;
        let report = r.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(report.stages.len(), 3);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{fault:?}: {:?}",
            started.elapsed()
        );
        // The faults were met: the refused requests were sent again.
        let (method, what, refused) = match &fault {
            ProxyFault::ServerError { .. } => (Some("PATCH"), "configmaps", 3),
            _ => (None, "deployments", 2),
        };
        let sent = proxy
            .requests()
            .iter()
            .filter(|r| method.is_none_or(|m| r.method == m) && r.path.contains(what))
            .count();
        assert!(sent > refused, "{fault:?}: {sent} {method:?} {what}");
    }
}

/// A second field manager (another client that server-side applied the same field with its own
/// manager name) owns `.data.mode`: kstrap names it, and takes the field over when forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_name_the_other_manager_unless_forced() {
    let cluster = cluster_or_skip!("conflicts_name_the_other_manager_unless_forced");
    let t = TestStack::new(cluster);
    let client = t.client().await;
    apply_json(&client, &namespace_json(&t.ns), "someone").await.unwrap();
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": t.ns}, "data": {"mode": "theirs"}});
    apply_json(&client, &theirs, "helm").await.unwrap();

    let o = opts(STAGE);
    let e = apply(&t, &o, &kstrap::kube::NoProgress).await.unwrap_err();
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
    apply(&t, &forced, &kstrap::kube::NoProgress).await.unwrap();
    let cm = get(&client, "v1", "ConfigMap", "configmaps", Some(&t.ns), "settings")
        .await
        .unwrap();
    assert_eq!(cm["data"]["mode"], "test", "{cm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_and_expired_watches_resume() {
    let cluster = cluster_or_skip!("ended_and_expired_watches_resume");
    for fault in [
        ProxyFault::EndWatchAfter { events: 1 },
        ProxyFault::GoneOnWatch { times: 3 },
    ] {
        let t = TestStack::new(cluster);
        let proxy = FaultProxy::start(cluster.kubeconfig());
        proxy.inject(fault.clone());
        let r = apply_with(proxy.client().await, &t, &opts(STAGE), &kstrap::kube::NoProgress).await;
        let report = r.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(report.stages.len(), 3, "{fault:?}");
        let watches = proxy.requests().iter().filter(|r| r.is_watch()).count();
        assert!(watches > 1, "{fault:?}: {watches} watches");
    }
}

/// The API server goes away in the middle of a stage wait (the proxy closes every connection
/// and refuses new ones for 15 s): the wait says so every 12 s, keeps retrying, and ends ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_reported_and_the_wait_resumes() {
    let cluster = cluster_or_skip!("a_silent_server_is_reported_and_the_wait_resumes");
    let images = Images {
        web: "example.com/slow-start:1",
        ..PLAIN
    };
    let t = TestStack::with(cluster, images);
    let proxy = FaultProxy::start(cluster.kubeconfig());
    let rec = Recorder::default();
    let client = proxy.client().await;
    let o = opts(STAGE);
    let run = apply_with(client, &t, &o, &rec);
    let outage = async {
        // Once stage app waits, the server goes.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !rec.lines().iter().any(|l| l.starts_with("started app")) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        proxy.outage(Duration::from_secs(15));
    };
    let (r, ()) = tokio::join!(run, outage);
    let report = r.unwrap_or_else(|e| panic!("{e}\n{:?}", rec.lines()));
    assert_eq!(report.stages.len(), 3);
    let silent: Vec<String> = rec.lines().into_iter().filter(|l| l.starts_with("silent")).collect();
    assert!(!silent.is_empty(), "no silence reported: {:?}", rec.lines());
    // Said when the silence reached 12 s (the one-second tick may see it at 12 or 13 s).
    assert!(silent[0] == "silent 12" || silent[0] == "silent 13", "{silent:?}");
}

/// The calls before any wait (discovery, reading the ApplySet parent, applying) retry through a
/// server that is gone, and say so as the waits do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_met_by_the_apply_calls_is_reported() {
    let cluster = cluster_or_skip!("a_silent_server_met_by_the_apply_calls_is_reported");
    let t = TestStack::new(cluster);
    let proxy = FaultProxy::start(cluster.kubeconfig());
    let rec = Recorder::default();
    let client = proxy.client().await;
    // Gone before the first call.
    proxy.outage(Duration::from_secs(14));
    let report = apply_with(client, &t, &opts(STAGE), &rec)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{:?}", rec.lines()));
    assert_eq!(report.stages.len(), 3);
    let lines = rec.lines();
    let first_silent = lines.iter().position(|l| l.starts_with("silent"));
    let first_wait = lines
        .iter()
        .position(|l| l.starts_with("progress") || l.starts_with("done"));
    let Some(first_silent) = first_silent else {
        panic!("no silence reported: {lines:?}")
    };
    // Said by the calls (every wait comes after them), when the silence reached 12 s (a call's
    // retries sleep up to 2 s between attempts).
    assert!(first_wait.is_none_or(|w| first_silent < w), "{lines:?}");
    assert!(
        ["silent 12", "silent 13", "silent 14"].contains(&lines[first_silent].as_str()),
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("silent")).count(),
        1,
        "once for one period: {lines:?}"
    );
}

/// A hand-made PersistentVolume with reclaim policy Retain (multimodal-ai's data volume) stays
/// Released, naming its deleted claim, once the stack's namespace is gone; applying the stack
/// again frees it (claimRef cleared, as an administrator does) and its new claim binds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_volume_of_the_stack_is_bound_again_on_a_re_apply() {
    let cluster = cluster_or_skip!("a_released_volume_of_the_stack_is_bound_again_on_a_re_apply");
    let mut volume_cleanup = Cleanup::new(cluster);
    let t = TestStack::new(cluster);
    let pv = format!("{}-kept", t.name);
    // Dropped after the stack's namespace is gone (declared before it).
    volume_cleanup.cluster_object("v1", "PersistentVolume", "persistentvolumes", &pv);
    t.write(
        "10-data/kept.yaml",
        &format!("apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {pv}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteMany]\n  persistentVolumeReclaimPolicy: Retain\n  storageClassName: \"\"\n  hostPath: {{path: /var/lib/kstrap-e2e/{pv}, type: DirectoryOrCreate}}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: kept\nspec:\n  accessModes: [ReadWriteMany]\n  storageClassName: \"\"\n  volumeName: {pv}\n  resources:\n    requests: {{storage: 1Gi}}\n"),
    );
    let o = opts(STAGE);
    apply(&t, &o, &kstrap::kube::NoProgress).await.unwrap();
    let client = t.client().await;
    let phase = |v: Option<Value>| v.and_then(|v| v["status"]["phase"].as_str().map(str::to_string));
    assert_eq!(
        phase(get(&client, "v1", "PersistentVolume", "persistentvolumes", None, &pv).await).as_deref(),
        Some("Bound")
    );

    crate::real::delete_namespaces(&client, std::slice::from_ref(&t.ns), Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while phase(get(&client, "v1", "PersistentVolume", "persistentvolumes", None, &pv).await).as_deref()
        != Some("Released")
    {
        assert!(Instant::now() < deadline, "the volume never became Released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let rec = Recorder::default();
    let report = apply(&t, &o, &rec)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{:?}", rec.lines()));
    assert_eq!(report.stages.len(), 3);
    let note = format!(
        "note PersistentVolume/{pv} was Released (its claim {}/kept was deleted): its claim reference is cleared",
        t.ns
    );
    assert!(rec.lines().iter().any(|l| l.starts_with(&note)), "{:?}", rec.lines());
    let claim = get(
        &client,
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        Some(&t.ns),
        "kept",
    )
    .await;
    assert_eq!(phase(claim).as_deref(), Some("Bound"));
    // Bound now: a third run leaves it alone.
    let rec = Recorder::default();
    apply(&t, &o, &rec).await.unwrap();
    assert!(!rec.lines().iter().any(|l| l.starts_with("note")), "{:?}", rec.lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kind_is_refused_before_anything_is_written() {
    let cluster = cluster_or_skip!("an_unknown_kind_is_refused_before_anything_is_written");
    let t = TestStack::new(cluster);
    t.write(
        "20-app/gadget.yaml",
        "apiVersion: nowhere.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n",
    );
    let client = t.client().await;
    let e = apply(&t, &opts(Duration::from_secs(2)), &kstrap::kube::NoProgress)
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

/// Named, so that the binary's runs do not depend on this machine's memory or free disk (the
/// test stacks have no per-profile sizing).
const PROFILE: &str = "laptop-8gb";

fn kstrap_apply_to(kubeconfig: &Path, t: &TestStack, extra: &[&str]) -> std::process::Output {
    let key = t.dir.path().join("key.txt");
    std::fs::write(&key, "s3cr3t-from-file\n").unwrap();
    let mut cmd = Command::cargo_bin("kstrap").unwrap();
    cmd.args(["apply", "--profile", PROFILE, "--stack", &t.name, "--stack-dir"])
        .arg(t.dir.path())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--secret-file")
        .arg(format!("E2E_API_KEY={}", key.display()))
        .args(extra)
        .env_remove("KUBECONFIG")
        .env_remove("E2E_API_KEY");
    cmd.output().unwrap()
}

fn kstrap_apply(t: &TestStack, extra: &[&str]) -> std::process::Output {
    kstrap_apply_to(&t.kubeconfig, t, extra)
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

#[test]
fn the_binary_applies_and_reports_json_without_secret_values() {
    let cluster = cluster_or_skip!("the_binary_applies_and_reports_json_without_secret_values");
    let t = TestStack::new(cluster);
    let out = kstrap_apply(&t, &["--output", "json", "--timeout", "60"]);
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
    // The secret did reach the cluster, from the file.
    let stored = block_on(async {
        let client = t.client().await;
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, &t.ns);
        let s = api.get("app-keys").await.unwrap();
        String::from_utf8(s.data.unwrap()["E2E_API_KEY"].0.clone()).unwrap()
    });
    assert_eq!(stored.trim_end(), "s3cr3t-from-file");

    // Human output: one line per stage.
    let out = kstrap_apply(&t, &["--timeout", "60"]);
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
    let cluster = cluster_or_skip!("the_binary_exits_4_on_timeout_and_1_on_failure");
    let t = TestStack::with(
        cluster,
        Images {
            web: "example.com/never-ready:1",
            ..PLAIN
        },
    );
    let out = kstrap_apply(&t, &["--timeout", "4", "--output", "json"]);
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
    assert!(stderr.contains("not ready after 4s"), "{stderr}");

    let t2 = TestStack::with(
        cluster,
        Images {
            init: "example.com/exit-1:1",
            ..PLAIN
        },
    );
    let out = kstrap_apply(&t2, &["--timeout", "60"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stage app failed"), "{stderr}");
    assert!(stderr.contains(&format!("Job/init -n {}", t2.ns)), "{stderr}");

    // A kubeconfig that is not one: exit 2, the file named, its contents not shown.
    let bad = t.dir.path().join("bad-kubeconfig");
    std::fs::write(&bad, "users: [ {token: s3cr3t-token").unwrap();
    let out = Command::cargo_bin("kstrap")
        .unwrap()
        .args(["apply", "--profile", PROFILE, "--stack", &t.name, "--stack-dir"])
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

/// No API server at the kubeconfig's address: `apply` says so at once, naming the server and
/// the kubeconfig and what to check, as `status` does (no cluster needed).
#[test]
fn an_unreachable_server_fails_fast_naming_it_and_the_kubeconfig() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("gone.yaml");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user: {{token: s3cr3t-token}}\ncurrent-context: x\n"),
    )
    .unwrap();
    let stacks = crate::support::two_stage_stack(
        "unreach",
        "unreachable",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
        "",
    );
    let started = Instant::now();
    let out = Command::cargo_bin("kstrap")
        .unwrap()
        .args(["apply", "--profile", PROFILE, "--stack", "unreach", "--stack-dir"])
        .arg(stacks.path())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(3), "fails fast: {took:?}\n{stderr}");
    assert!(
        stderr.contains(&format!("API server at https://127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(stderr.contains(&kubeconfig.display().to_string()), "{stderr}");
    assert!(stderr.contains("is the cluster running?"), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
    assert!(!stderr.contains("cannot read Secret"), "{stderr}");
}

#[test]
fn ctrl_c_stops_cleanly_saying_what_is_left() {
    let cluster = cluster_or_skip!("ctrl_c_stops_cleanly_saying_what_is_left");
    let t = TestStack::with(
        cluster,
        Images {
            web: "example.com/never-ready:1",
            ..PLAIN
        },
    );
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kstrap"))
        .args([
            "apply",
            "--profile",
            PROFILE,
            "--stack",
            &t.name,
            "--timeout",
            "60",
            "--stack-dir",
        ])
        .arg(t.dir.path())
        .arg("--kubeconfig")
        .arg(&t.kubeconfig)
        .env("E2E_API_KEY", "s3cr3t")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the engine waits on stage app (its Deployment exists), then interrupt it.
    let deadline = Instant::now() + Duration::from_secs(60);
    block_on(async {
        let client = t.client().await;
        while get(&client, "apps/v1", "Deployment", "deployments", Some(&t.ns), "web")
            .await
            .is_none()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    std::thread::sleep(Duration::from_millis(500));
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
    let cluster = cluster_or_skip!("generated_secrets_are_made_once_and_kept");
    let _guard = cluster.shared();
    let dir = tempfile::tempdir().unwrap();
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let name = format!("gen{}-{n}", std::process::id() % 100_000);
    let mut cleanup = Cleanup::new(cluster);
    cleanup.unique_namespace(&name).applyset_parent(&name);
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
    let kubeconfig = cluster.kubeconfig().to_path_buf();
    let apply = |env: Option<&str>| {
        let mut cmd = Command::cargo_bin("kstrap").unwrap();
        cmd.args(["apply", "--stack", &name, "--stack-dir"])
            .arg(dir.path())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--timeout", "30", "--profile", PROFILE])
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
    let read = || -> (String, String) {
        block_on(async {
            let client = client_of(&kubeconfig).await;
            let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, &name);
            let s = api.get("keys").await.unwrap();
            let rv = s.metadata.resource_version.clone().unwrap_or_default();
            (String::from_utf8(s.data.unwrap()["GEN_E2E_KEY"].0.clone()).unwrap(), rv)
        })
    };
    let first_out = apply(None);
    let (first, rv) = read();
    assert!(first.starts_with("k: ") && first.len() == 27, "{first:?}");
    assert!(!first_out.contains(&first[3..]), "the generated value was printed");
    apply(None);
    assert_eq!(read(), (first, rv), "kept on re-apply, and not written");
    apply(Some("k: given-by-env"));
    assert_eq!(read().0, "k: given-by-env");
}
