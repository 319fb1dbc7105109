//! kstrap's add-ons end to end: the `kstrap` binary runs `up` for real into a fake host (TEST
//! DOUBLE) against the real control plane, through the Helm controller stand-ins (TEST DOUBLES:
//! k3s's Helm controller with HelmChartConfig, k0s's chart reconciler, what `helm install` of
//! Prometheus and Grafana makes; `tests/support/real/controllers`) and the node stand-in.
//! `--with monitoring` applies the chart objects as their own stack and waits until the charts'
//! Deployments are ready; on k0s the local-path provisioner is installed first and the stack's
//! claims get its default class; a stuck Grafana pod is named on timeout (exit 4); Grafana's
//! admin password never shows.
//!
//! A Grafana pod is held back or stuck the way a cluster administrator could do it on k3s: a
//! HelmChartConfig `grafana` whose values point the chart's `image.repository` at an image the
//! node stand-in never makes ready (`never-ready`) or cannot pull (`pull-error`).

use crate::real::controllers::{dynamic_api, json_of, resource};
use crate::support::fixture_path;
use crate::up_e2e::{Machine, World, outcome, stack_up_args_for, text, tiny_stack_named};
use serde_json::{Value, json};
use std::process::Output;
use std::time::{Duration, Instant};

const CHART_K3S: &str = "helm.cattle.io/v1";
const CHART_K0S: &str = "helm.k0sproject.io/v1beta1";

fn run(w: &World, args: &[String], env: &[(&str, &str)]) -> Output {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = w.kstrap(&a);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(w: &World, args: &[String], env: &[(&str, &str)]) -> Output {
    let out = run(w, args, env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    out
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn decoded(secret: &Value, key: &str) -> String {
    let b: k8s_openapi::ByteString = serde_json::from_value(secret["data"][key].clone()).unwrap();
    String::from_utf8(b.0).unwrap()
}

/// The test's reads and writes of the real cluster (directly, not through kstrap's proxy).
struct Api {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
}

impl Api {
    fn new(w: &World) -> Api {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = rt.block_on(w.cluster().client());
        Api { rt, client }
    }

    fn dynamic(&self, api_version: &str, kind: &str, ns: Option<&str>) -> kube::Api<kube::core::DynamicObject> {
        let lower = kind.to_lowercase();
        let plural = if lower.ends_with('s') {
            format!("{lower}es")
        } else {
            format!("{lower}s")
        };
        dynamic_api(&self.client, &resource(api_version, kind, &plural), ns)
    }

    fn get(&self, api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let api = self.dynamic(api_version, kind, ns);
        self.rt
            .block_on(api.get_opt(name))
            .unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
            .map(|o| json_of(&o))
    }

    fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let api = self.dynamic(api_version, kind, None);
        let list = self.rt.block_on(api.list(&Default::default())).unwrap();
        list.items.iter().map(json_of).collect()
    }

    fn ready_replicas(&self, ns: &str, name: &str) -> i64 {
        self.get("apps/v1", "Deployment", Some(ns), name)
            .and_then(|d| d["status"]["readyReplicas"].as_i64())
            .unwrap_or(0)
    }

    /// A HelmChartConfig `grafana` in kube-system whose values set Grafana's image repository.
    fn grafana_image(&self, repository: &str) {
        let config = json!({"apiVersion": CHART_K3S, "kind": "HelmChartConfig",
            "metadata": {"name": "grafana", "namespace": "kube-system"},
            "spec": {"valuesContent": format!("image:\n  repository: {repository}\n")}});
        self.rt
            .block_on(crate::real::apply_json(&self.client, &config, "kstrap-test"))
            .unwrap();
    }

    fn delete(&self, api_version: &str, kind: &str, ns: Option<&str>, name: &str) {
        let api = self.dynamic(api_version, kind, ns);
        self.rt
            .block_on(api.delete(name, &Default::default()))
            .unwrap_or_else(|e| panic!("delete {kind} {name}: {e}"));
    }
}

fn everything(outs: &[&Output]) -> String {
    outs.iter()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .collect()
}

fn applyset_label(obj: &Value) -> String {
    obj["metadata"]["labels"]["applyset.kubernetes.io/part-of"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The mutating requests kstrap sent through the proxy since the last `clear_requests`.
fn writes(w: &World) -> Vec<String> {
    let proxy = w.proxy.as_ref().unwrap();
    proxy.mutating_requests().iter().map(ToString::to_string).collect()
}

/// `up --with monitoring` on k3s, one setup for the whole story (the `monitoring` namespace
/// takes seconds to go):
/// - Grafana's pod never pulls its image: the add-on's wait times out (exit 4) naming the
///   Deployment and why (and not Prometheus, which is ready), and the stack is not applied;
/// - Grafana's pod is held back instead: `up` waits until Prometheus's and Grafana's Deployments
///   are ready (it is still running while Grafana's is not, and the stack is not applied yet),
///   then applies the stack;
/// - the two HelmCharts are the add-on's own stack `monitoring`, Grafana's password was
///   generated into its Secret and kept, a re-run writes nothing, and the password shows in no
///   output.
#[test]
fn up_with_monitoring_installs_the_charts_and_waits_for_their_workloads() {
    let Some(w) = World::addons(
        "up_with_monitoring_installs_the_charts_and_waits_for_their_workloads",
        "k3s",
        "tiny",
    ) else {
        return;
    };
    let api = Api::new(&w);
    let stacks = tiny_stack_named(w.stack(), 30999);

    // Stuck: Grafana's image cannot be pulled.
    api.grafana_image("kstrap-test/pull-error");
    let mut stuck_args = stack_up_args_for(&w, &stacks, w.stack(), "cpu-fallback", &["--with", "monitoring"]);
    let at = stuck_args.iter().position(|a| a == "--timeout").unwrap();
    stuck_args[at + 1] = "6".into();
    let started = Instant::now();
    let stuck = run(&w, &stuck_args, &[]);
    assert_eq!(stuck.status.code(), Some(4), "{}", text(&stuck));
    assert!(started.elapsed() < Duration::from_secs(30));
    let err = String::from_utf8_lossy(&stuck.stderr);
    assert!(err.contains("addon-monitoring"), "{err}");
    assert!(err.contains("monitoring workloads"), "{err}");
    assert!(err.contains("Deployment/grafana -n monitoring"), "{err}");
    assert!(err.contains("ImagePullBackOff"), "{err}");
    let not_ready = &err[err.find("not ready:").unwrap()..];
    let not_ready = &not_ready[..not_ready.find("left on the machine").unwrap_or(not_ready.len())];
    assert!(
        !not_ready.contains("prometheus-server"),
        "only what is not ready is named: {not_ready}"
    );
    assert!(api.get("apps/v1", "Deployment", Some(w.stack()), "app").is_none());

    // Held back: Grafana's pod runs but never gets ready until the HelmChartConfig goes.
    api.grafana_image("kstrap-test/never-ready");
    let args = stack_up_args_for(
        &w,
        &stacks,
        w.stack(),
        "cpu-fallback",
        &["--with", "monitoring", "-o", "json"],
    );
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("kstrap"));
    cmd.env_clear().envs(w.host.envs()).args(&args);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();

    // Prometheus comes up, Grafana's pod exists but is not ready: up must still be waiting.
    let deadline = Instant::now() + Duration::from_secs(30);
    let grafana_running = |api: &Api| {
        api.list("v1", "Pod").iter().any(|p| {
            p["metadata"]["namespace"] == "monitoring"
                && p["spec"]["containers"][0]["image"]
                    .as_str()
                    .is_some_and(|i| i.contains("never-ready"))
                && p["status"]["phase"] == "Running"
        })
    };
    while !(api.ready_replicas("monitoring", "prometheus-server") == 1 && grafana_running(&api)) {
        assert!(Instant::now() < deadline, "the charts' workloads never appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "up ended before the charts' workloads were made"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "up finished while Grafana's Deployment was not ready"
    );
    assert!(
        api.get("apps/v1", "Deployment", Some(w.stack()), "app").is_none(),
        "the stack comes after the add-ons"
    );
    // Released: the Helm controller upgrades the release with the chart's own image.
    api.delete(CHART_K3S, "HelmChartConfig", Some("kube-system"), "grafana");
    let first = child.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let first_report = report(&first);
    // The chart objects and the admin Secret are as the stuck run left them.
    assert_eq!(outcome(&first_report, "addon-monitoring"), "unchanged");
    assert_eq!(api.ready_replicas("monitoring", "grafana"), 1);
    assert_eq!(api.ready_replicas(w.stack(), "app"), 1);

    // The chart objects, members of the add-on's own ApplySet.
    let prometheus = api
        .get(CHART_K3S, "HelmChart", Some("kube-system"), "prometheus")
        .expect("HelmChart prometheus");
    let grafana = api
        .get(CHART_K3S, "HelmChart", Some("kube-system"), "grafana")
        .expect("HelmChart grafana");
    let set = applyset_label(&prometheus);
    assert!(!set.is_empty());
    assert_eq!(applyset_label(&grafana), set);
    let tiny = api.get("apps/v1", "Deployment", Some(w.stack()), "app").unwrap();
    assert_ne!(applyset_label(&tiny), set, "the add-on has its own ApplySet");
    assert!(
        api.get("v1", "Secret", Some("kube-system"), "applyset-monitoring")
            .is_some(),
        "the add-on's ApplySet parent"
    );
    // cpu-fallback uses no GPU: no DCGM job.
    assert!(!prometheus["spec"]["valuesContent"].as_str().unwrap().contains("dcgm"));
    // Grafana on its NodePort, reading the admin Secret.
    let svc = api.get("v1", "Service", Some("monitoring"), "grafana").unwrap();
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30030);
    let secret = api
        .get("v1", "Secret", Some("monitoring"), "grafana-admin")
        .expect("the admin Secret");
    assert_eq!(decoded(&secret, "admin-user"), "admin");
    let password = decoded(&secret, "admin-password");
    assert_eq!(password.len(), 32);
    let pod_env = api.get("apps/v1", "Deployment", Some("monitoring"), "grafana").unwrap()["spec"]["template"]["spec"]
        ["containers"][0]["env"]
        .to_string();
    assert!(pod_env.contains("grafana-admin"), "{pod_env}");

    // A re-run: nothing written, the step unchanged, the password kept.
    w.proxy.as_ref().unwrap().clear_requests();
    let again = ok(&w, &args, &[]);
    let sent = writes(&w);
    assert!(
        sent.is_empty(),
        "a re-run wrote to the API server:\n{}",
        sent.join("\n")
    );
    assert_eq!(outcome(&report(&again), "addon-monitoring"), "unchanged");
    let kept = api.get("v1", "Secret", Some("monitoring"), "grafana-admin").unwrap();
    assert_eq!(decoded(&kept, "admin-password"), password);

    // Human output with -vv, the plan with -vv, the dry run: the password shows nowhere.
    let human = ok(
        &w,
        &stack_up_args_for(&w, &stacks, w.stack(), "cpu-fallback", &["--with", "monitoring", "-vv"]),
        &[],
    );
    let human_text = String::from_utf8_lossy(&human.stdout);
    // The summary says where Grafana is (on the node's address) and how to read the password.
    assert!(
        human_text.contains("grafana") && human_text.contains(":30030/"),
        "{human_text}"
    );
    assert!(
        human_text.contains("-n monitoring get secret grafana-admin"),
        "{human_text}"
    );
    let mut plan_args = stack_up_args_for(&w, &stacks, w.stack(), "cpu-fallback", &["--with", "monitoring", "-vv"]);
    plan_args[0] = "plan".into();
    plan_args.retain(|a| a != "--yes" && a != "--timeout" && a != "20");
    let plan = ok(&w, &plan_args, &[]);
    assert!(String::from_utf8_lossy(&plan.stdout).contains("grafana-admin"));
    let dry = ok(
        &w,
        &stack_up_args_for(
            &w,
            &stacks,
            w.stack(),
            "cpu-fallback",
            &["--with", "monitoring", "--dry-run", "-vv", "-o", "json"],
        ),
        &[],
    );
    let all = everything(&[&stuck, &first, &again, &human, &plan, &dry]);
    assert!(!all.contains(&password), "Grafana's password leaked into output");

    // A password the user chooses replaces it, and does not show either.
    let chosen = "chosen-Grafana-pass-8241";
    let set_by_env = ok(&w, &args, &[("KSTRAP_GRAFANA_ADMIN_PASSWORD", chosen)]);
    let now = api.get("v1", "Secret", Some("monitoring"), "grafana-admin").unwrap();
    assert_eq!(decoded(&now, "admin-password"), chosen);
    assert!(!everything(&[&set_by_env]).contains(chosen));
}

/// A two-stage stack named (and namespaced) `w.stack`: a namespace, then a claim that names no
/// StorageClass and a Deployment that mounts it.
fn claims_stack(w: &World) -> tempfile::TempDir {
    crate::support::two_stage_stack(
        w.stack(),
        "a claim and its consumer",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests: {storage: 1Gi}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: claims}\n  template:\n    metadata:\n      labels: {app: claims}\n    spec:\n      containers:\n        - name: app\n          image: registry.k8s.io/pause:3.10\n          resources:\n            limits: {cpu: 100m, memory: 64Mi}\n          volumeMounts: [{name: data, mountPath: /data}]\n      volumes:\n        - name: data\n          persistentVolumeClaim: {claimName: data}\n",
        "",
    )
}

fn k0s_args(w: &World, stacks: &tempfile::TempDir, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "up",
        "--facts",
        fixture_path("rtx5090-96gb").to_str().unwrap(),
        "--profile",
        "cpu-fallback",
        "--distro",
        "k0s",
        "--release-mirror",
        &w.releases.url(),
        "--yes",
        "--stack",
        w.stack(),
        "--stack-dir",
        stacks.path().to_str().unwrap(),
        "--timeout",
        "20",
        "-o",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// On k0s (a cluster without any StorageClass, as k0s is: the test removes the node stand-in's
/// k3s-like class), `up` installs the local-path provisioner as its own stack, waits for its
/// Deployment, and the stack's claim that names no class gets `local-path` and binds; with
/// `--with monitoring` the charts are k0s `Chart`s and Prometheus's claim gets the class too.
/// A re-run writes nothing.
#[test]
fn k0s_gets_local_path_storage_before_the_stack() {
    let Some(w) = World::addons("k0s_gets_local_path_storage_before_the_stack", "k0s", "claims") else {
        return;
    };
    let api = Api::new(&w);
    api.delete("storage.k8s.io/v1", "StorageClass", None, "local-path");
    let stacks = claims_stack(&w);
    let args = k0s_args(&w, &stacks, &["--with", "monitoring"]);
    let first = report(&ok(&w, &args, &[]));
    assert_eq!(outcome(&first, "addon-local-path-storage"), "changed");
    assert_eq!(outcome(&first, "addon-monitoring"), "changed");
    let ids: Vec<&str> = first["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    let pos = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    assert!(pos("addon-local-path-storage") < pos("addon-monitoring"));
    assert!(pos("addon-monitoring") < pos("stage-base"), "{ids:?}");

    assert_eq!(api.ready_replicas("local-path-storage", "local-path-provisioner"), 1);
    let sc = api
        .get("storage.k8s.io/v1", "StorageClass", None, "local-path")
        .expect("StorageClass local-path");
    assert_eq!(
        sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert!(!applyset_label(&sc).is_empty());
    assert!(
        api.get("v1", "Secret", Some("kube-system"), "applyset-local-path-storage")
            .is_some()
    );
    let claim = api
        .get("v1", "PersistentVolumeClaim", Some(w.stack()), "data")
        .expect("the stack's claim");
    assert_eq!(claim["spec"]["storageClassName"], "local-path", "{claim}");
    assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
    assert_eq!(api.ready_replicas(w.stack(), "app"), 1);

    // Monitoring through k0s's Helm extension, its claim on the same default class.
    assert!(api.get(CHART_K0S, "Chart", Some("kube-system"), "prometheus").is_some());
    assert!(api.get(CHART_K0S, "Chart", Some("kube-system"), "grafana").is_some());
    let prom_claim = api
        .get("v1", "PersistentVolumeClaim", Some("monitoring"), "prometheus-server")
        .unwrap();
    assert_eq!(prom_claim["spec"]["storageClassName"], "local-path");
    assert_eq!(api.ready_replicas("monitoring", "prometheus-server"), 1);
    assert_eq!(api.ready_replicas("monitoring", "grafana"), 1);

    w.proxy.as_ref().unwrap().clear_requests();
    let again = report(&ok(&w, &args, &[]));
    let sent = writes(&w);
    assert!(
        sent.is_empty(),
        "a re-run wrote to the API server:\n{}",
        sent.join("\n")
    );
    assert_eq!(outcome(&again, "addon-local-path-storage"), "unchanged");
    assert_eq!(outcome(&again, "addon-monitoring"), "unchanged");
}

/// k0s on a cluster that already has a default StorageClass kstrap did not make (the node
/// stand-in's `local-path`, as k3s bundles it): the add-on is skipped and says why; no second
/// default appears.
#[test]
fn k0s_with_another_default_class_skips_local_path() {
    let Some(w) = World::addons("k0s_with_another_default_class_skips_local_path", "k0s", "claims") else {
        return;
    };
    let api = Api::new(&w);
    let stacks = claims_stack(&w);
    let out = ok(&w, &k0s_args(&w, &stacks, &[]), &[]);
    let r = report(&out);
    let step = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "addon-local-path-storage")
        .unwrap()
        .clone();
    assert_eq!(step["outcome"], "skipped", "{step}");
    assert!(
        step["note"].as_str().unwrap().contains("already the cluster's default"),
        "{step}"
    );
    let defaults: Vec<Value> = api
        .list("storage.k8s.io/v1", "StorageClass")
        .into_iter()
        .filter(|c| c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true")
        .collect();
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    assert!(applyset_label(&defaults[0]).is_empty(), "not kstrap's");
    assert!(
        api.get(
            "apps/v1",
            "Deployment",
            Some("local-path-storage"),
            "local-path-provisioner"
        )
        .is_none()
    );
}

/// `kstrap plan --with monitoring` on a GPU workstation: the add-on step, its objects and waits,
/// and the DCGM scrape in its reason.
#[test]
fn plan_with_monitoring_on_a_gpu_workstation() {
    // The plan asks the cluster nothing.
    let w = World::host_only();
    let args: Vec<String> = [
        "plan",
        "--facts",
        fixture_path("rtx5090-96gb").to_str().unwrap(),
        "--with",
        "monitoring",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = ok(&w, &args, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    // The add-on's step: its header line up to the next step's.
    let is_header = |l: &str| {
        let t = l.trim_start();
        t.starts_with(|c: char| c.is_ascii_digit()) && t.contains(". [")
    };
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("[addons]"))
        .expect("an addons step");
    let len = lines[start + 1..].iter().position(|l| is_header(l)).unwrap();
    assert!(
        lines[start + 1 + len].contains("[gpu]"),
        "the GPU steps follow the add-on"
    );
    let block = lines[start..=start + len].join("\n");
    insta::assert_snapshot!("plan_rtx5090_with_monitoring_addon_step", block);
    // KSTRAP_WITH does the same.
    let mut plain = args.clone();
    plain.truncate(3);
    let by_env = ok(&w, &plain, &[("KSTRAP_WITH", "monitoring")]);
    assert_eq!(String::from_utf8_lossy(&by_env.stdout), stdout);
    // An unknown add-on is bad usage, naming the ones there are.
    let mut bad = plain.clone();
    bad.extend(["--with".to_string(), "logging".to_string()]);
    let out = run(&w, &bad, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("logging") && err.contains("monitoring"), "{err}");
}

/// The monitoring add-on's chart objects on the real API server, through each distribution's
/// Helm controller stand-in: the charts' Deployments kstrap waits for (`Addon::wait_for`) come up
/// ready, Grafana reads the admin Secret kstrap makes, and on k0s the Chart's status names the
/// installed release (a `chartName` URL would leave `status.error` "repository 'https:' not found
/// in cluster configuration" there, k0s v1.35.3). The cluster, exclusively: the chart objects in
/// `kube-system` and the `monitoring` namespace have fixed names.
async fn monitoring_charts_on(test: &str, distro: kstrap::distro::Distro) {
    use crate::real::{Cleanup, RealCluster};
    use kstrap::addons::monitoring;
    let Some(cluster) = RealCluster::get(test) else {
        return;
    };
    let _guard = cluster.exclusive();
    if distro == kstrap::distro::Distro::K0s {
        cluster.node().set(|c| c.kubelet_version = "v1.35.3+k0s".into());
    }
    let client = cluster.client().await;
    let mut cleanup = Cleanup::new(cluster);
    let (api_version, kind, plural) = match distro {
        kstrap::distro::Distro::K3s => (CHART_K3S, "HelmChart", "helmcharts"),
        kstrap::distro::Distro::K0s => (CHART_K0S, "Chart", "charts"),
    };
    for release in ["prometheus", "grafana"] {
        cleanup
            .object(api_version, kind, plural, "kube-system", release)
            .cluster_object(
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                "clusterrolebindings",
                &format!("helm-kube-system-{release}"),
            );
    }
    cleanup.namespace(monitoring::NAMESPACE);
    let facts = crate::support::fixture("rtx5090-96gb");
    let profiles = kstrap::profile::embedded().unwrap();
    let overrides = kstrap::profile::Overrides {
        profile: Some("cpu-fallback".into()),
        distro: Some(distro),
        force: true,
        model: None,
        kept: None,
        ..Default::default()
    };
    let sel = kstrap::profile::select(&facts, &profiles, &overrides).unwrap();
    let addon = monitoring::addon(&sel);
    let mut objects = monitoring::objects(distro, &sel);
    // The admin Secret as kstrap resolves it (a generated password) and completes it.
    let mut secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": monitoring::ADMIN_SECRET, "namespace": monitoring::NAMESPACE},
        "data": {monitoring::ADMIN_PASSWORD_KEY: serde_json::to_value(k8s_openapi::ByteString(b"not-shown".to_vec())).unwrap()}});
    monitoring::complete_admin_secret(&mut secret);
    objects.insert(1, secret);
    crate::gpu_e2e::apply(&client, &objects).await;

    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client.clone(), monitoring::NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(90);
    for r in &addon.wait_for {
        assert_eq!(r.kind, "Deployment", "{r:?}");
        loop {
            let ready = deployments
                .get_opt(&r.name)
                .await
                .unwrap()
                .and_then(|d| d.status)
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            if ready >= 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{} never became ready", r.name);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let grafana = deployments.get("grafana").await.unwrap();
    let env = crate::real::controllers::json_of(&grafana)["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    assert!(env.to_string().contains(monitoring::ADMIN_SECRET), "{env}");
    if distro == kstrap::distro::Distro::K0s {
        let charts = crate::real::controllers::dynamic_api(
            &client,
            &crate::real::controllers::k0s_chart_resource(),
            Some("kube-system"),
        );
        for (release, version) in [("prometheus", "28.13.0"), ("grafana", "11.6.1")] {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let c = crate::real::controllers::json_of(&charts.get(release).await.unwrap());
                assert!(c["status"]["error"].is_null(), "{}", c["status"]);
                if c["status"]["releaseName"] == release {
                    assert_eq!(c["status"]["version"], version);
                    break;
                }
                assert!(Instant::now() < deadline, "{release}: {}", c["status"]);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_charts_install_through_k3s_helm_controller() {
    monitoring_charts_on(
        "monitoring_charts_install_through_k3s_helm_controller",
        kstrap::distro::Distro::K3s,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_charts_install_through_k0s_chart_reconciler() {
    monitoring_charts_on(
        "monitoring_charts_install_through_k0s_chart_reconciler",
        kstrap::distro::Distro::K0s,
    )
    .await;
}
