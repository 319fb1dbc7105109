//! End-to-end tests of `kstrap status`: the binary (assert_cmd) against the real API server (see
//! tests/support/real; without one these skip, saying why) after `kstrap apply`, with a pod
//! whose image cannot be pulled, an API server that is not there, and kubeconfigs that are not
//! usable. The cluster is shared with other tests running at the same time: only this test's
//! stack and the test node are asserted.

use crate::proxy::FaultProxy;
use crate::real::{Cleanup, ClusterGuard, NODE_NAME, RealCluster};
use crate::up_e2e::text;
use assert_cmd::Command;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A two-stage stack in a temp dir, unique per test (and per run, on a real cluster): a
/// namespace, then a ConfigMap, a Deployment `web`, a Service and a generated Secret.
struct TestStack {
    dir: tempfile::TempDir,
    name: String,
    _cleanup: Cleanup,
    // Last: released after the cleanup ran.
    _guard: ClusterGuard<'static>,
}

impl TestStack {
    fn new(cluster: &'static RealCluster, image: &str) -> TestStack {
        let guard = cluster.shared();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("st{}-{n}", std::process::id() % 100_000);
        let mut cleanup = Cleanup::new(cluster);
        cleanup.unique_namespace(&name).applyset_parent(&name);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(&name);
        std::fs::create_dir_all(root.join("00-base")).unwrap();
        std::fs::create_dir_all(root.join("10-app")).unwrap();
        std::fs::write(
            root.join("stack.yaml"),
            format!(
                "name: {name}\ndescription: status test stack\nnamespace: {name}\nstages:\n  - {{dir: 00-base, name: base, timeout_s: 30, description: namespace}}\n  - {{dir: 10-app, name: app, timeout_s: 30, description: app}}\nsecrets:\n  - name: app-key\n    description: the app's key\n    keys: [STATUS_KEY]\n    generate: {{length: 32}}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("00-base/ns.yaml"),
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
        )
        .unwrap();
        std::fs::write(
            root.join("10-app/app.yaml"),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: test\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: web\n          image: {image}\n          resources:\n            limits: {{cpu: 100m, memory: 64Mi}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{app: web}}\n  ports:\n    - {{port: 80, protocol: TCP, targetPort: 80}}\n"),
        )
        .unwrap();
        TestStack {
            dir,
            name,
            _cleanup: cleanup,
            _guard: guard,
        }
    }
}

fn kstrap(args: &[&str]) -> Output {
    Command::cargo_bin("kstrap")
        .unwrap()
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("STATUS_KEY")
        // Off the node: no NVML, even on a machine that has one.
        .env("KSTRAP_NVML_LIB", "/nonexistent/libnvidia-ml.so.1")
        .output()
        .unwrap()
}

fn apply(kubeconfig: &Path, t: &TestStack, timeout: &str) -> Output {
    let (stack_dir, kc) = (t.dir.path().to_str().unwrap(), kubeconfig.to_str().unwrap());
    kstrap(&[
        "apply",
        // Named: the run must not depend on this machine's memory or free disk.
        "--profile",
        "laptop-8gb",
        "--stack",
        &t.name,
        "--stack-dir",
        stack_dir,
        "--kubeconfig",
        kc,
        "--timeout",
        timeout,
    ])
}

fn status(kubeconfig: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["status", "--kubeconfig", kubeconfig.to_str().unwrap()];
    args.extend(extra);
    kstrap(&args)
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("one JSON document on stdout: {e}\n{}", text(out)))
}

fn stack<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stack {name} in {report}"))
}

#[test]
fn status_after_apply_reports_the_stack_ready() {
    let Some(cluster) = RealCluster::get("status_after_apply_reports_the_stack_ready") else {
        return;
    };
    let t = TestStack::new(cluster, "registry.k8s.io/pause:3.10");
    let out = apply(cluster.kubeconfig(), &t, "60");
    assert_eq!(out.status.code(), Some(0), "apply: {}", text(&out));
    // Through the fault proxy (no faults): it records what status asks.
    let proxy = FaultProxy::start(cluster.kubeconfig());
    let kubeconfig = proxy.kubeconfig();

    let out = status(kubeconfig, &["-o", "json"]);
    let report = json_of(&out);
    let mine = stack(&report, &t.name);
    // Namespace, generated Secret, ConfigMap, Deployment, Service.
    assert_eq!(mine["total"], 5, "{mine}");
    assert_eq!(mine["ready"], 5, "{mine}");
    assert_eq!(mine["not_ready"], serde_json::json!([]));
    assert_eq!(
        mine["applyset"],
        kstrap::applyset::ApplySet::for_stack(&t.name).id.as_str()
    );
    let human = status(kubeconfig, &[]);
    let stdout = String::from_utf8_lossy(&human.stdout).to_string();
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with(&t.name) && l.ends_with(" 5/5 ready")),
        "{stdout}"
    );
    // The test node, as the node stand-in registered it.
    let node = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == NODE_NAME)
        .unwrap_or_else(|| panic!("no node {NODE_NAME}: {report}"));
    assert_eq!(node["ready"], true, "{node}");
    assert_eq!(node["distro"], "k3s");
    assert_eq!(node["kubelet_version"], "v1.35.3+k3s1");
    assert_eq!(node["cpu"], "16");
    assert_eq!(node["memory"], "64Gi");
    assert!(stdout.contains(NODE_NAME), "{stdout}");

    // The generated secret's value is in the cluster, and in no output.
    let value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = cluster.client().await;
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, &t.name);
        let s = api.get("app-key").await.unwrap();
        String::from_utf8(s.data.unwrap()["STATUS_KEY"].0.clone()).unwrap()
    });
    assert_eq!(value.len(), 32, "generated");
    for o in [&out, &human] {
        assert!(!text(o).contains(&value), "a secret value leaked:\n{}", text(o));
    }
    // The stacks were found through their ApplySet parents in kube-system.
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/api/v1/namespaces/kube-system/secrets"),
        "the ApplySet parents were listed: {:?}",
        proxy.requests()
    );
    assert!(
        proxy.mutating_requests().is_empty(),
        "status writes nothing: {:?}",
        proxy.mutating_requests()
    );
}

/// After the GPU phase (the chart object through k3s's Helm controller stand-in, the operator
/// stand-in's operands on the node) and a stack whose three pods each hold one share, `status`
/// shows the operator, the node's sharing and who holds the shares; when the device plugin loses
/// its shares, status fails naming it. Real API server only (the cluster, exclusively).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_shares_and_the_operator_after_up_on_the_rtx_5090_profile() {
    let Some(g) = crate::gpu_e2e::gpu_cluster(
        "gpu_shares_and_the_operator_after_up_on_the_rtx_5090_profile",
        kstrap::distro::Distro::K3s,
        1,
    )
    .await
    else {
        return;
    };
    let facts = crate::support::fixture("rtx5090-96gb");
    let profiles = kstrap::profile::embedded().unwrap();
    let overrides = kstrap::profile::Overrides {
        profile: Some("rtx-5090".into()),
        distro: Some(kstrap::distro::Distro::K3s),
        force: false,
        model: None,
        kept: None,
        ..Default::default()
    };
    let sel = kstrap::profile::select(&facts, &profiles, &overrides).unwrap();
    crate::gpu_e2e::apply(&g.client, &kstrap::gpu::gpu_objects(&facts, &sel)).await;
    assert_eq!(
        kstrap::gpu::wait::wait_for_gpus(&g.client, 1, 4, Duration::from_secs(90)).await,
        Ok(4)
    );

    // A stack whose three pods each hold one share (given by the profile's overlay: GPU fields
    // stay out of the base YAML).
    let name = crate::real::unique("gpuapp");
    let mut cleanup = crate::real::Cleanup::new(g.cluster);
    cleanup.unique_namespace(&name);
    let stacks = crate::support::two_stage_stack(
        &name,
        "three GPU pods",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: infer\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: infer}\n  template:\n    metadata:\n      labels: {app: infer}\n    spec:\n      containers:\n        - name: infer\n          image: registry.k8s.io/pause:3.10\n",
        "profiles:\n  rtx-5090:\n    Deployment/infer:\n      containers:\n        infer: {gpu: 1}\n",
    );
    let kubeconfig = g.cluster.kubeconfig().to_path_buf();
    let out = kstrap(&[
        "apply",
        "--stack",
        &name,
        "--stack-dir",
        stacks.path().to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--profile",
        "rtx-5090",
        "--facts",
        crate::support::fixture_path("rtx5090-96gb").to_str().unwrap(),
        "--timeout",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(0), "apply: {}", text(&out));

    let out = status(&kubeconfig, &["-o", "json"]);
    let report = json_of(&out);
    let op = &report["gpu"]["operator"];
    assert_eq!(op["installed"], true, "{report}");
    assert_eq!(op["state"], "ready");
    assert_eq!(op["reason"], "Reconciled");
    assert_eq!(op["readiness"]["state"], "ready");
    assert_eq!(op["readiness"]["allocatable"], 4);
    let gpu = &report["gpu"]["nodes"][0];
    assert_eq!(gpu["node"], crate::real::NODE_NAME);
    assert_eq!(gpu["gpus"], 1);
    assert_eq!(gpu["replicas"], 4);
    assert_eq!(gpu["strategy"], "time-slicing");
    assert_eq!(gpu["allocatable"], 4);
    assert_eq!(gpu["held"], 3, "{gpu}");
    assert_eq!(gpu["free"], 1);
    assert_eq!(gpu["readiness"]["state"], "ready");
    let pods = gpu["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 3, "{gpu}");
    for p in pods {
        assert_eq!(p["namespace"], name.as_str());
        assert!(p["name"].as_str().unwrap().starts_with("infer-"), "{p}");
        assert_eq!(p["count"], 1);
        assert_eq!(p["phase"], "Running");
    }
    let s = stack(&report, &name);
    assert_eq!(s["ready"], s["total"], "{s}");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let human = status(&kubeconfig, &[]);
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert_eq!(human.status.code(), Some(0), "{}", text(&human));
    // Columns are padded to the longest name: compare words.
    let words = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains(&format!(
            "{} 1 GPU × 4 (time-slicing) = 4 nvidia.com/gpu: 3 held, 1 free",
            crate::real::NODE_NAME
        )),
        "{stdout}"
    );
    assert!(
        words.contains("operator ready (ClusterPolicy cluster-policy: ready, Reconciled)"),
        "{stdout}"
    );
    // Which GPU each pod holds is read on the node (NVML); here there is none, and status
    // says so rather than guessing.
    assert!(words.contains("per-GPU use is not known:"), "{stdout}");

    // The device plugin loses its shares: the GPU is no longer ready, and status says so.
    g.cluster.node().set(|c| {
        c.extended.insert("nvidia.com/gpu".into(), "1".into());
    });
    let out = status(&kubeconfig, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = json_of(&out);
    let problems = report["problems"].to_string();
    assert!(problems.contains("advertises 1, expected 4"), "{problems}");
}

#[test]
fn a_stuck_pod_makes_status_exit_1_naming_the_object_and_reason() {
    let Some(cluster) = RealCluster::get("a_stuck_pod_makes_status_exit_1_naming_the_object_and_reason") else {
        return;
    };
    // The node stand-in cannot pull an image named `pull-error` (kstrap itself refuses the
    // placeholder registry kstrap.invalid in a stack).
    let t = TestStack::new(cluster, "registry.example.com/e2e/pull-error:1.0.0");
    let kubeconfig = cluster.kubeconfig();
    let out = apply(kubeconfig, &t, "5");
    assert_eq!(out.status.code(), Some(4), "apply: {}", text(&out));

    let out = status(kubeconfig, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = json_of(&out);
    assert_eq!(report["ok"], false);
    let mine = stack(&report, &t.name);
    assert_eq!(
        (mine["ready"].as_u64(), mine["total"].as_u64()),
        (Some(4), Some(5)),
        "{mine}"
    );
    let o = &mine["not_ready"][0];
    assert_eq!(o["object"], format!("Deployment/web -n {}", t.name));
    let reason = o["reason"].as_str().unwrap();
    assert!(reason.contains("ImagePullBackOff"), "{reason}");
    assert!(o["next_command"].as_str().unwrap().contains("describe pod web-"), "{o}");
    let problems = report["problems"].to_string();
    assert!(problems.contains(&format!("Deployment/web -n {}", t.name)), "{report}");

    let human = status(kubeconfig, &[]);
    assert_eq!(human.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(stdout.contains(&format!("Deployment/web -n {}: ", t.name)), "{stdout}");
    assert!(
        stdout.contains(&format!("stack {} (1 of 5 objects)", t.name)),
        "{stdout}"
    );
}

#[test]
fn an_api_server_that_is_not_there_exits_1_saying_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = dir.path().join("closed-port");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: s3cr3t-t0ken\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let out = status(&kubeconfig, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr.contains("cannot reach the cluster's API server"), "{stderr}");
    assert!(stderr.contains("closed-port"), "{stderr}");
    assert!(stderr.contains("is the cluster running?"), "{stderr}");
    assert!(stderr.contains("sudo systemctl status k3s"), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out));

    let out = status(&kubeconfig, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["exit_code"], 1);
    assert!(v["error"].as_str().unwrap().contains("cannot reach"), "{v}");
}

#[test]
fn an_unusable_kubeconfig_exits_2_naming_the_file_not_its_contents() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage-kubeconfig");
    std::fs::write(&garbage, "users: [ {token: s3cr3t-token").unwrap();
    let out = status(&garbage, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr.contains("garbage-kubeconfig"), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");

    let missing = dir.path().join("no-such-file");
    let out = status(&missing, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-file"));

    // A context the kubeconfig does not have (refused before any connection).
    let good = dir.path().join("good-kubeconfig");
    std::fs::write(
        &good,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: s3cr3t-t0ken}\ncurrent-context: x\n",
    )
    .unwrap();
    let out = status(&good, &["--context", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"nope\""), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}

#[test]
fn help_documents_the_exit_codes() {
    let out = kstrap(&["status", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(help.contains("0  every node is Ready"), "{help}");
    assert!(help.contains("1  something is not ready"), "{help}");
    assert!(help.contains("2  the kubeconfig or context cannot be used"), "{help}");
}
