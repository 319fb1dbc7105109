//! Reference data from upstream at the pinned versions (`tests/fixtures/upstream/`, each folder
//! with a SOURCE.md naming repository, path and tag), checked against what kstrap writes and
//! waits on. A version bump means refreshing that data; these tests then say what broke.
//!
//! - The custom resources kstrap generates (k3s `HelmChart`, k0s `Chart`, and k0s.yaml, a k0s
//!   `ClusterConfig`) are validated by a real
//!   API server: upstream's own CRDs are applied to it (server-side apply, one field manager,
//!   idempotent: other suites on the same cluster apply the same CRDs, and none deletes them),
//!   then every object is applied with a server-side dry run and strict field validation. That
//!   test runs when `KSTRAP_TEST_KUBECONFIG` names a kubeconfig and otherwise says it skips.
//! - The ClusterPolicy objects the tests feed kstrap (fixtures, the GPU-operator stand-in) are
//!   checked the same way for their spec, and their status against upstream's status type.
//! - The toolkit env names and the ClusterPolicy condition reasons kstrap relies on are the
//!   upstream's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kstrap::distro::Distro;
use kstrap::profile::{self, Overrides, Selection, select};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::fixture;

/// Field manager the CRDs are applied with; the same in every suite that installs them.
const CRD_MANAGER: &str = "kstrap-test-upstream-crds";

fn upstream(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upstream")
        .join(path)
}

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(upstream(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The CRDs, as upstream ships them.
const CRDS: &[&str] = &[
    "helm-controller/helm.cattle.io_helmcharts.yaml",
    "k0s/helm.k0sproject.io_charts.yaml",
    "k0s/k0s.k0sproject.io_clusterconfigs.yaml",
    "gpu-operator/nvidia.com_clusterpolicies.yaml",
];

fn selection(
    facts: kstrap::facts::HostFacts,
    profile_name: &str,
    distro: Distro,
) -> (kstrap::facts::HostFacts, Selection) {
    let profiles = profile::embedded().expect("embedded profiles");
    let overrides = Overrides {
        profile: Some(profile_name.into()),
        distro: Some(distro),
        force: false,
        model: None,
        kept: None,
        ..Default::default()
    };
    let sel = select(&facts, &profiles, &overrides).expect("profile fits the fixture");
    (facts, sel)
}

/// Every chart object kstrap can write: the GPU operator's (with and without a host driver) and
/// the monitoring add-on's, on both distributions.
fn chart_objects() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for distro in [Distro::K3s, Distro::K0s] {
        // With the host's driver version known and not (driver.enabled=false either way).
        for host_driver in [true, false] {
            let mut facts = fixture("rtx5090-96gb");
            if !host_driver {
                facts.nvidia.driver_version = None;
            }
            let (f, sel) = selection(facts, "rtx-5090", distro);
            for o in kstrap::gpu::gpu_objects(&f, &sel) {
                if o["kind"] == "HelmChart" || o["kind"] == "Chart" {
                    out.push((format!("gpu operator chart (host driver {host_driver}, {distro})"), o));
                }
            }
        }
        let (_, sel) = selection(fixture("rtx5090-96gb"), "rtx-5090", distro);
        for o in kstrap::addons::cnpg::objects(distro, &sel) {
            if o["kind"] == "HelmChart" || o["kind"] == "Chart" {
                out.push((format!("cloudnative-pg chart ({distro})"), o));
            }
        }
        for o in kstrap::addons::monitoring::objects(distro, &sel) {
            if o["kind"] == "HelmChart" || o["kind"] == "Chart" {
                out.push((format!("monitoring chart {} ({distro})", o["metadata"]["name"]), o));
            }
        }
    }
    out
}

/// The ClusterPolicy objects the tests put in front of kstrap's readiness rules.
fn cluster_policy_fixtures() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpu");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("gpu fixtures")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let candidates = [case.get("object"), case.get("cluster_policy")];
        for o in candidates.into_iter().flatten() {
            if o["kind"] == "ClusterPolicy" {
                out.push((name.clone(), o.clone()));
            }
        }
    }
    assert!(out.len() >= 5, "too few ClusterPolicy fixtures: {}", out.len());
    out
}

fn crd_schema<'a>(crd: &'a Value, version: &str) -> &'a Value {
    crd["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == version))
        .map(|v| &v["schema"]["openAPIV3Schema"])
        .unwrap_or(&Value::Null)
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// ClusterPolicyStatus at v26.3.2 has `state`, `namespace` and `conditions`: a fixture with any
/// other status field (an `observedGeneration`, say) tests something the operator never writes.
/// The status is not validated by a dry run (the CRD's status subresource drops it on create), so
/// its field names are compared with the CRD's status properties here, and each condition's with
/// the condition type's.
#[test]
fn cluster_policy_fixtures_only_carry_status_fields_upstream_writes() {
    let crd = yaml_file("gpu-operator/nvidia.com_clusterpolicies.yaml");
    let status = &crd_schema(&crd, "v1")["properties"]["status"];
    let fields = property_names(status);
    assert_eq!(
        fields,
        BTreeSet::from(["conditions".to_string(), "namespace".to_string(), "state".to_string()]),
        "ClusterPolicyStatus changed upstream: review gpu::readiness"
    );
    let condition_fields = property_names(&status["properties"]["conditions"]["items"]);
    let reasons = std::fs::read_to_string(upstream("gpu-operator/condition-reasons.txt")).expect("reasons");
    let known = |prefix: &str, v: &str| reasons.lines().any(|l| l == format!("{prefix}:{v}"));
    for (name, cp) in cluster_policy_fixtures() {
        let Some(st) = cp.get("status").and_then(Value::as_object) else {
            continue;
        };
        for k in st.keys() {
            assert!(fields.contains(k), "{name}: ClusterPolicy status has no field {k}");
        }
        for c in st.get("conditions").and_then(Value::as_array).into_iter().flatten() {
            for k in c.as_object().into_iter().flat_map(|m| m.keys()) {
                assert!(condition_fields.contains(k), "{name}: a condition has no field {k}");
            }
            // The operator sets no observedGeneration on its conditions either
            // (internal/conditions/clusterpolicy.go: Type, Status, Reason, Message).
            assert!(
                c.get("observedGeneration").is_none(),
                "{name}: the operator never writes it"
            );
            let t = c["type"].as_str().unwrap_or_default();
            assert!(known("type", t), "{name}: condition type {t} is not the operator's");
            let r = c["reason"].as_str().unwrap_or_default();
            // The Error condition's reason is "Ready" when not in error (updateConditions).
            assert!(
                known("reason", r) || r == "Ready" || r == "Error",
                "{name}: reason {r} is not the operator's"
            );
        }
    }
}

/// The reasons kstrap's GPU readiness rules act on are reasons the operator sets.
#[test]
fn readiness_acts_on_reasons_the_operator_sets() {
    let reasons = std::fs::read_to_string(upstream("gpu-operator/condition-reasons.txt")).expect("reasons");
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gpu/readiness.rs"))
        .expect("readiness.rs");
    for reason in ["Reconciled", "NoGPUNodes", "NFDLabelsMissing"] {
        assert!(
            reasons.lines().any(|l| l == format!("reason:{reason}")),
            "{reason} is not the operator's"
        );
        assert!(
            source.contains(&format!("\"{reason}\"")),
            "gpu::readiness no longer handles {reason}"
        );
    }
}

/// Every env var kstrap sets on the toolkit is one the toolkit reads (a misspelt name is silently
/// ignored, and the toolkit then configures the wrong containerd).
#[test]
fn toolkit_env_names_are_the_toolkits() {
    let names: BTreeSet<String> = std::fs::read_to_string(upstream("nvidia-container-toolkit/env-names.txt"))
        .expect("env names")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    for distro in [Distro::K3s, Distro::K0s] {
        for env in kstrap::gpu::toolkit_env(distro) {
            assert!(names.contains(&env.name), "{distro}: the toolkit reads no {}", env.name);
        }
    }
}

// ---- against a real API server --------------------------------------------------------------

/// The kubeconfig of a real API server, or `None` after saying the test skips.
fn real_client_config(test: &str) -> Option<PathBuf> {
    match std::env::var_os("KSTRAP_TEST_KUBECONFIG") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            eprintln!("skipping {test}: no real API server (set KSTRAP_TEST_KUBECONFIG)");
            None
        }
    }
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("client config");
    kube::Client::try_from(cfg).expect("client")
}

fn crd_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    )
}

/// Applies upstream's CRDs (server-side apply, forced, one field manager: idempotent when they
/// exist already, whoever applied them) and waits until each is Established. Never deletes them.
async fn install_crds(client: &kube::Client) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd_resource());
    for path in CRDS {
        let crd = yaml_file(path);
        let name = crd["metadata"]["name"].as_str().expect("CRD name").to_string();
        api.patch(&name, &PatchParams::apply(CRD_MANAGER).force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("applying {path}: {e}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let live = serde_json::to_value(api.get(&name).await.expect("CRD")).expect("json");
            let established = live["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
            if established {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} not Established after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn resource_of(object: &Value, plural: &str) -> ApiResource {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or_default();
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Server-side apply, dry run, strict field validation: an unknown or mistyped field fails.
async fn dry_run(client: &kube::Client, what: &str, object: &Value, plural: &str) -> Result<(), String> {
    let ar = resource_of(object, plural);
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let params = PatchParams::apply("kstrap").dry_run().validation_strict();
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map(|_| ())
        .map_err(|e| format!("{what}: {e}"))
}

#[tokio::test]
async fn upstream_crds_accept_every_object_kstrap_writes() {
    let test = "upstream_crds_accept_every_object_kstrap_writes";
    let Some(kubeconfig) = real_client_config(test) else {
        return;
    };
    let client = client(&kubeconfig).await;
    install_crds(&client).await;
    let mut failures = Vec::new();
    let charts = chart_objects();
    assert!(charts.len() >= 8, "{} chart objects", charts.len());
    for (what, object) in &charts {
        let plural = if object["kind"] == "HelmChart" {
            "helmcharts"
        } else {
            "charts"
        };
        if let Err(e) = dry_run(&client, what, object, plural).await {
            failures.push(e);
        }
    }
    // The k0s.yaml kstrap writes (k0s reads it itself, but its schema is this CRD's).
    let k0s_yaml = crate::upstream_flags::k0s_cluster_config_object();
    if let Err(e) = dry_run(&client, "k0s.yaml", &k0s_yaml, "clusterconfigs").await {
        failures.push(e);
    }
    // The ClusterPolicy fixtures' spec (status is the status subresource's: see the offline test).
    for (what, cp) in cluster_policy_fixtures() {
        let mut cp = cp;
        if let Some(m) = cp.as_object_mut() {
            m.remove("status");
        }
        cp["metadata"] = json!({"name": format!("kstrap-dry-run-{}", std::process::id())});
        if cp
            .get("spec")
            .is_none_or(|s| s.as_object().is_none_or(|m| m.is_empty()))
        {
            continue; // an empty spec says nothing about the schema
        }
        if let Err(e) = dry_run(&client, &what, &cp, "clusterpolicies").await {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "rejected by upstream's CRDs:\n{}",
        failures.join("\n")
    );
}

/// The dry run can fail: an object with a field the CRD lacks is rejected (what a URL-only k0s
/// Chart with a made-up field would meet).
#[tokio::test]
async fn the_dry_run_rejects_a_field_upstream_lacks() {
    let test = "the_dry_run_rejects_a_field_upstream_lacks";
    let Some(kubeconfig) = real_client_config(test) else {
        return;
    };
    let client = client(&kubeconfig).await;
    install_crds(&client).await;
    let bad = json!({"apiVersion": "helm.k0sproject.io/v1beta1", "kind": "Chart",
        "metadata": {"name": "kstrap-bad", "namespace": "kube-system"},
        "spec": {"chartName": "nvidia/gpu-operator", "repo": "https://helm.ngc.nvidia.com/nvidia"}});
    let got = dry_run(&client, "bad chart", &bad, "charts").await;
    assert!(got.as_ref().is_err_and(|e| e.contains("repo")), "{got:?}");
}

// ---- images ---------------------------------------------------------------------------------

/// Image references in an object: every `image` string field, and `image:` lines inside string
/// values (a ConfigMap carrying a pod template, as local-path-provisioner's helper pod).
fn images_in(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    // A CloudNativePG Cluster's PostgreSQL image.
                    ("image" | "imageName", Value::String(s)) => {
                        out.insert(s.clone());
                    }
                    _ => images_in(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| images_in(v, out)),
        Value::String(s) if s.contains("image:") => {
            for line in s.lines() {
                if let Some(rest) = line.trim().trim_start_matches("- ").strip_prefix("image:") {
                    let image = rest.trim().trim_matches('"').trim_matches('\'');
                    if !image.is_empty() {
                        out.insert(image.to_string());
                    }
                }
            }
        }
        _ => {}
    }
}

/// The images `manifests/IMAGES.md` lists (first column, in backticks).
fn image_table() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/IMAGES.md")).expect("IMAGES.md");
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            l.split_once('`')
                .map(|(image, rest)| (image.to_string(), rest.to_string()))
        })
        .map(|(image, rest)| {
            let cells: Vec<&str> = rest.split('|').map(str::trim).collect();
            // | image | used by | evidence | checked |
            assert!(
                cells.len() >= 4 && !cells[2].is_empty(),
                "{image}: no evidence in IMAGES.md"
            );
            image
        })
        .collect()
}

fn chart_images(chart: &str) -> Vec<String> {
    std::fs::read_to_string(upstream(&format!("{chart}/images.txt")))
        .expect("images.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Every image kstrap can deploy: each stack's sized objects for every profile and distribution
/// (and as written), the add-ons, the `--verify-gpu` pod, and what the charts pull.
fn deployable_images() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in kstrap::stack::embedded_names() {
        let s = kstrap::stack::load(&name, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut variants = vec![s.clone()];
        for p in s.sized_profiles() {
            for d in [Distro::K3s, Distro::K0s] {
                variants.push(s.sized_for(p, Some(d)));
            }
        }
        for v in &variants {
            for stage in &v.stages {
                for o in &stage.objects {
                    images_in(&o.value, &mut out);
                }
            }
        }
    }
    let storage = kstrap::addons::storage::stack().expect("local-path-storage add-on");
    for stage in &storage.stages {
        for o in &stage.objects {
            images_in(&o.value, &mut out);
        }
    }
    out.insert(kstrap::gpu::VERIFY_IMAGE.to_string());
    for chart in ["gpu-operator", "prometheus", "grafana", "cloudnative-pg"] {
        out.extend(chart_images(chart));
    }
    // Images the user names are exempt.
    out.retain(|i| !kstrap::stack::images::is_placeholder(i));
    out
}

#[test]
fn every_image_kstrap_can_deploy_is_listed() {
    let table = image_table();
    let deployable = deployable_images();
    assert!(deployable.len() >= 15, "{deployable:?}");
    let missing: Vec<&String> = deployable.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "images kstrap can deploy that manifests/IMAGES.md lacks: {missing:?}"
    );
    let stale: Vec<&String> = table.difference(&deployable).collect();
    assert!(
        stale.is_empty(),
        "rows of manifests/IMAGES.md nothing deploys: {stale:?}"
    );
}

/// The image walk finds what it must (so that the test above can fail).
#[test]
fn the_image_walk_finds_containers_and_embedded_pod_templates() {
    let mut found = BTreeSet::new();
    images_in(
        &json!({"spec": {"template": {"spec": {"containers": [{"image": "a:1"}], "initContainers": [{"image": "b:2"}]}}},
            "data": {"helperPod.yaml": "spec:\n  containers:\n  - name: helper\n    image: c:3\n"}}),
        &mut found,
    );
    assert_eq!(
        found,
        BTreeSet::from(["a:1".to_string(), "b:2".to_string(), "c:3".to_string()])
    );
}
