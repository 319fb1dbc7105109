//! End-to-end tests of `kstrap status`: the binary (assert_cmd) against the simulated API server
//! (a TEST DOUBLE, see tests/support/sim) after `kstrap apply` or a whole `kstrap up` of the
//! rtx-5090 profile, with a stuck pod, an API server that is not there, and kubeconfigs that are
//! not usable.
//!
//! `status_after_apply_reports_the_stack_ready` also runs against a real cluster when
//! `KSTRAP_TEST_KUBECONFIG` names its kubeconfig (then only its own stack is asserted: the
//! cluster may hold others); tests that need the simulator's GPU operator or fault injection
//! print why they skip there.

use crate::apply_e2e::Cluster;
use crate::sim::{Fault, SimConfig, SimulatedApiServer};
use crate::up_e2e::{Machine, SimWorld as World, text};
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
}

impl TestStack {
    fn new() -> TestStack {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("st{}-{n}", std::process::id() % 100_000);
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
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: test\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: registry.k8s.io/pause:3.10\n          resources:\n            limits: {cpu: 100m, memory: 64Mi}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n    - {port: 80, protocol: TCP, targetPort: 80}\n",
        )
        .unwrap();
        TestStack { dir, name }
    }
}

fn kstrap(args: &[&str]) -> Output {
    Command::cargo_bin("kstrap")
        .unwrap()
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("STATUS_KEY")
        .output()
        .unwrap()
}

fn apply(cluster: &Cluster, t: &TestStack, timeout: &str) -> Output {
    let kubeconfig = cluster.kubeconfig(t.dir.path());
    let (stack_dir, kc) = (t.dir.path().to_str().unwrap(), kubeconfig.to_str().unwrap());
    kstrap(&[
        "apply",
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
    let cluster = Cluster::start();
    let t = TestStack::new();
    let out = apply(
        &cluster,
        &t,
        &cluster.timeout(Duration::from_secs(10)).as_secs().to_string(),
    );
    assert_eq!(out.status.code(), Some(0), "apply: {}", text(&out));
    let kubeconfig = cluster.kubeconfig(t.dir.path());

    let out = status(&kubeconfig, &["-o", "json"]);
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
    let human = status(&kubeconfig, &[]);
    let stdout = String::from_utf8_lossy(&human.stdout).to_string();
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with(&t.name) && l.ends_with(" 5/5 ready")),
        "{stdout}"
    );

    let Cluster::Sim(sim) = &cluster else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["problems"], serde_json::json!([]));
    let node = &report["nodes"][0];
    assert_eq!(node["name"], "sim-node");
    assert_eq!(node["ready"], true);
    assert_eq!(node["distro"], "k3s");
    assert_eq!(node["kubelet_version"], "v1.35.3+k3s1");
    assert_eq!(node["cpu"], "16");
    assert_eq!(node["memory"], "64Gi");
    assert_eq!(report["gpu"]["operator"]["installed"], false);
    assert_eq!(report["gpu"]["nodes"], serde_json::json!([]));
    assert_eq!(report["stacks"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(human.status.code(), Some(0), "{}", text(&human));
    assert!(stdout.contains("operator  not installed"), "{stdout}");
    assert!(stdout.ends_with("All ready.\n"), "{stdout}");

    // The generated secret's value is in the cluster, and in no output.
    let secret = sim.get("v1", "Secret", Some(&t.name), "app-key").unwrap();
    let value = secret["data"]["STATUS_KEY"].as_str().unwrap();
    for o in [&out, &human] {
        assert!(!text(o).contains(value), "a secret value leaked:\n{}", text(o));
    }
    // The stacks were found through their ApplySet parents in kube-system.
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/api/v1/namespaces/kube-system/secrets"),
        "the ApplySet parents were listed"
    );
}

#[test]
fn gpu_shares_and_the_operator_after_up_on_the_rtx_5090_profile() {
    if Cluster::is_real("gpu_shares_and_the_operator_after_up_on_the_rtx_5090_profile") {
        return;
    }
    let w = World::with(SimConfig {
        gpus: 1,
        ..SimConfig::default()
    });
    // A stack whose three pods each hold one share (given by the profile's overlay: GPU fields
    // stay out of the base YAML).
    let stacks = tempfile::tempdir().unwrap();
    let root = stacks.path().join("gpuapp");
    std::fs::create_dir_all(root.join("00-base")).unwrap();
    std::fs::create_dir_all(root.join("10-app")).unwrap();
    std::fs::write(
        root.join("stack.yaml"),
        "name: gpuapp\ndescription: three GPU pods\nnamespace: gpuapp\nstages:\n  - {dir: 00-base, name: base, timeout_s: 30, description: namespace}\n  - {dir: 10-app, name: app, timeout_s: 30, description: app}\nprofiles:\n  rtx-5090:\n    Deployment/infer:\n      containers:\n        infer: {gpu: 1}\n",
    )
    .unwrap();
    std::fs::write(
        root.join("00-base/ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: gpuapp\n",
    )
    .unwrap();
    std::fs::write(
        root.join("10-app/infer.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: infer\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: infer}\n  template:\n    metadata:\n      labels: {app: infer}\n    spec:\n      containers:\n        - name: infer\n          image: registry.k8s.io/pause:3.10\n",
    )
    .unwrap();
    let up = w
        .kstrap(&[
            "up",
            "--facts",
            crate::support::fixture_path("rtx5090-96gb").to_str().unwrap(),
            "--profile",
            "rtx-5090",
            "--release-mirror",
            &w.releases.url(),
            "--yes",
            "--stack",
            "gpuapp",
            "--stack-dir",
            stacks.path().to_str().unwrap(),
            "--timeout",
            "20",
        ])
        .output()
        .unwrap();
    assert_eq!(up.status.code(), Some(0), "up: {}", text(&up));

    let kubeconfig = stacks.path().join("kubeconfig");
    w.sim.write_kubeconfig(&kubeconfig);
    let out = status(&kubeconfig, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = json_of(&out);
    assert_eq!(report["ok"], true, "{report}");
    let op = &report["gpu"]["operator"];
    assert_eq!(op["installed"], true);
    assert_eq!(op["state"], "ready");
    assert_eq!(op["reason"], "Reconciled");
    assert_eq!(op["readiness"]["state"], "ready");
    assert_eq!(op["readiness"]["allocatable"], 4);
    let gpu = &report["gpu"]["nodes"][0];
    assert_eq!(gpu["node"], "sim-node");
    assert_eq!(gpu["gpus"], 1);
    assert_eq!(gpu["replicas"], 4);
    assert_eq!(gpu["strategy"], "time-slicing");
    assert_eq!(gpu["allocatable"], 4);
    assert_eq!(gpu["held"], 3);
    assert_eq!(gpu["free"], 1);
    assert_eq!(gpu["readiness"]["state"], "ready");
    let pods = gpu["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 3, "{gpu}");
    for p in pods {
        assert_eq!(p["namespace"], "gpuapp");
        assert!(p["name"].as_str().unwrap().starts_with("infer-"), "{p}");
        assert_eq!(p["count"], 1);
        assert_eq!(p["phase"], "Running");
    }
    // kstrap's own operator stack and the user's, every member ready.
    for name in ["gpu-operator", "gpuapp"] {
        let s = stack(&report, name);
        assert_eq!(s["ready"], s["total"], "{s}");
        assert!(s["total"].as_u64().unwrap() >= 2, "{s}");
    }

    let human = status(&kubeconfig, &[]);
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert_eq!(human.status.code(), Some(0), "{}", text(&human));
    assert!(
        stdout.contains("sim-node  1 GPU × 4 (time-slicing) = 4 nvidia.com/gpu: 3 held, 1 free"),
        "{stdout}"
    );
    assert!(
        stdout.contains("operator  ready (ClusterPolicy cluster-policy: ready, Reconciled)"),
        "{stdout}"
    );

    // The device plugin loses its shares: the GPU is no longer ready, and status says so.
    w.sim.set_node_allocatable("nvidia.com/gpu", "1");
    let out = status(&kubeconfig, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = json_of(&out);
    let problems = report["problems"].to_string();
    assert!(problems.contains("advertises 1, expected 4"), "{problems}");
}

#[test]
fn a_stuck_pod_makes_status_exit_1_naming_the_object_and_reason() {
    if Cluster::is_real("a_stuck_pod_makes_status_exit_1_naming_the_object_and_reason") {
        return;
    }
    let cluster = Cluster::start();
    let Cluster::Sim(sim) = &cluster else {
        return;
    };
    sim.inject(Fault::PodWaiting {
        owner_name: "web".into(),
        reason: "ImagePullBackOff".into(),
        message: "Back-off pulling image \"registry.k8s.io/pause:3.10\"".into(),
    });
    let t = TestStack::new();
    let out = apply(&cluster, &t, "1");
    assert_eq!(out.status.code(), Some(4), "apply: {}", text(&out));
    let kubeconfig = cluster.kubeconfig(t.dir.path());

    let out = status(&kubeconfig, &["-o", "json"]);
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
    assert!(
        report["problems"][0].as_str().unwrap().contains("Deployment/web"),
        "{report}"
    );

    let human = status(&kubeconfig, &[]);
    assert_eq!(human.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(stdout.contains(&format!("Deployment/web -n {}: ", t.name)), "{stdout}");
    assert!(
        stdout.ends_with(&format!("Not ready: stack {} (1 of 5 objects).\n", t.name)),
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

    // A context the kubeconfig does not have.
    let sim = SimulatedApiServer::start(SimConfig::default());
    let good = dir.path().join("sim-kubeconfig");
    sim.write_kubeconfig(&good);
    let out = status(&good, &["--context", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"nope\""), "{stderr}");
    assert!(!stderr.contains("sim-fake-token"), "{stderr}");
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
