//! Tests of the GPU phase's data: snapshots of the generated objects for k3s and k0s, the values'
//! field names against the chart's, the ConfigMap's shape, readiness from JSON fixtures, the
//! verification pod, the restart patch and the workload overlay.

use super::*;
use crate::facts::HostFacts;
use crate::profile::{self, Overrides, Selection, Sharing};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

fn facts(name: &str) -> HostFacts {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/facts/{name}.json"));
    crate::facts::load(&path).expect("facts fixture")
}

fn select(facts: &HostFacts, distro: Distro) -> Selection {
    select_with(facts, distro, profile::GpuDriver::Host)
}

fn select_with(facts: &HostFacts, distro: Distro, gpu_driver: profile::GpuDriver) -> Selection {
    let profiles = profile::embedded().expect("embedded profiles");
    profile::select(
        facts,
        &profiles,
        &Overrides {
            profile: Some("rtx-5090".into()),
            distro: Some(distro),
            force: true,
            model: None,
            kept: None,
            gpu_driver,
        },
    )
    .expect("selection")
}

/// The cases the snapshots cover: distro × host driver × Docker × GPU count.
fn cases() -> Vec<(String, HostFacts, Selection)> {
    let mut out = Vec::new();
    for distro in [Distro::K3s, Distro::K0s] {
        let d = distro.to_string();
        // rtx5090-96gb: 1 GPU, host driver 575, Docker installed.
        let docker = facts("rtx5090-96gb");
        assert!(docker.runtimes.docker && docker.nvidia.driver_version.is_some());
        let mut no_docker = docker.clone();
        no_docker.runtimes.docker = false;
        no_docker.runtimes.containerd = false;
        let mut no_driver = no_docker.clone();
        no_driver.nvidia.driver_version = None;
        no_driver.nvidia.kernel_module = None;
        let two = facts("two-gpus");
        assert_eq!(two.gpus.len(), 2);
        for (case, f) in [
            ("1gpu-driver-docker", docker),
            ("1gpu-driver", no_docker),
            ("1gpu-no-driver", no_driver),
            ("2gpus-driver-docker", two),
        ] {
            let sel = select(&f, distro);
            out.push((format!("{d}-{case}"), f, sel));
        }
        // A GPU the PCI bus shows with no host driver, and `--gpu-driver operator`: the only
        // case whose values turn the operator's driver container on.
        let bare = facts("gpu-no-driver");
        assert!(bare.gpus.is_empty() && !bare.nvidia.pci_gpus.is_empty());
        let sel = select_with(&bare, distro, profile::GpuDriver::Operator);
        out.push((format!("{d}-1gpu-operator-driver"), bare, sel));
    }
    out
}

#[test]
fn objects_snapshots() {
    for (name, f, sel) in cases() {
        let objects = gpu_objects(&f, &sel);
        insta::assert_json_snapshot!(format!("objects-{name}"), objects);
        // The values as the Helm controller receives them, readable.
        let chart = objects.last().expect("chart object");
        let yaml = chart["spec"]["valuesContent"]
            .as_str()
            .or(chart["spec"]["values"].as_str())
            .expect("values string");
        insta::assert_snapshot!(format!("values-{name}"), yaml);
    }
}

#[test]
fn objects_come_in_apply_order_with_kstrap_labels() {
    for (name, f, sel) in cases() {
        let objects = gpu_objects(&f, &sel);
        let kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap_or("")).collect();
        let expected: &[&str] = match sel.distro {
            Distro::K3s => &["Namespace", "ConfigMap", "HelmChart"],
            // Never RuntimeClass `nvidia`: the operator creates it and owns it (controller
            // reference to the ClusterPolicy) on every distribution.
            Distro::K0s => &["Namespace", "ConfigMap", "Chart"],
        };
        assert_eq!(kinds, expected, "{name}");
        for o in &objects {
            assert_eq!(
                o["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kstrap",
                "{name}: {o}"
            );
        }
    }
}

#[test]
fn k3s_helmchart_and_k0s_chart_fields() {
    let f = facts("rtx5090-96gb");
    let k3s = chart(Distro::K3s, &operator_values(&f, &select(&f, Distro::K3s)));
    assert_eq!(k3s["apiVersion"], "helm.cattle.io/v1");
    assert_eq!(k3s["metadata"]["namespace"], "kube-system");
    let spec = &k3s["spec"];
    assert_eq!(spec["chart"], "gpu-operator");
    assert_eq!(spec["repo"], "https://helm.ngc.nvidia.com/nvidia");
    assert_eq!(spec["version"], CHART_VERSION);
    assert_eq!(spec["targetNamespace"], "gpu-operator");
    assert_eq!(spec["createNamespace"], true);
    assert!(spec["valuesContent"].is_string());

    let k0s = chart(Distro::K0s, &operator_values(&f, &select(&f, Distro::K0s)));
    assert_eq!(k0s["apiVersion"], "helm.k0sproject.io/v1beta1");
    assert_eq!(k0s["kind"], "Chart");
    assert_eq!(k0s["metadata"]["namespace"], "kube-system");
    let spec = &k0s["spec"];
    // `<repository>/<chart>`, never a URL (k0s v1.35.3 `extractRepositoryIdentifier`).
    assert_eq!(spec["chartName"], "nvidia/gpu-operator");
    assert_eq!(spec["repository"]["url"], "https://helm.ngc.nvidia.com/nvidia");
    assert_eq!(spec["releaseName"], "gpu-operator");
    assert_eq!(spec["namespace"], "gpu-operator");
    assert!(spec["values"].is_string());
    // Only fields of k0s's ChartSpec (pkg/apis/helm/v1beta1/chart_types.go).
    let allowed = [
        "chartName",
        "releaseName",
        "values",
        "version",
        "namespace",
        "timeout",
        "forceUpgrade",
        "order",
        "repository",
    ];
    for key in spec.as_object().expect("spec").keys() {
        assert!(allowed.contains(&key.as_str()), "k0s ChartSpec has no field {key}");
    }
    assert!(
        CHART_VERSION.starts_with('v'),
        "NVIDIA's chart versions carry a leading v"
    );
}

fn yaml_to_json(text: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).expect("valid YAML")
}

#[test]
fn values_yaml_round_trips_to_the_typed_model() {
    for (name, f, sel) in cases() {
        let values = operator_values(&f, &sel);
        let parsed = yaml_to_json(&values_yaml(&values));
        assert_eq!(parsed, serde_json::to_value(&values).expect("json"), "{name}");
    }
}

#[test]
fn the_operator_installs_its_driver_container_only_when_asked() {
    // The chart's default is `driver.enabled: true` (NVIDIA/gpu-operator v26.3.2
    // `deployments/gpu-operator/values.yaml`): kstrap must say `false` on every host, the ones
    // whose driver version NVML did not report included, unless `--gpu-driver operator` asked
    // for the container; then the driver is pinned to the chart's own default.
    let cases = cases();
    assert!(cases.iter().any(|(_, f, _)| f.nvidia.driver_version.is_none()));
    let mut asked = 0;
    for (name, f, sel) in cases {
        let values = operator_values(&f, &sel);
        let yaml = values_yaml(&values);
        if sel.gpu_driver == profile::GpuDriver::Operator {
            asked += 1;
            assert!(values.driver.enabled, "{name}");
            assert!(
                yaml.starts_with(
                    "driver:\n  enabled: true\n  repository: nvcr.io/nvidia\n  image: driver\n  version: \"580.126.20\"\n"
                ),
                "{name}: {yaml}"
            );
        } else {
            assert!(!values.driver.enabled, "{name}");
            assert!(
                yaml.starts_with("driver:\n  enabled: false\ntoolkit:"),
                "{name}: {yaml}"
            );
        }
    }
    assert_eq!(asked, 2, "one operator-driver case per distribution");
}

fn env_map(values: &OperatorValues) -> Vec<(String, String)> {
    values
        .toolkit
        .env
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

#[test]
fn toolkit_env_is_the_distributions_containerd_even_with_docker() {
    let with_docker = facts("rtx5090-96gb");
    assert!(with_docker.runtimes.docker);
    let mut without = with_docker.clone();
    without.runtimes.docker = false;
    without.runtimes.containerd = false;

    let k3s = env_map(&operator_values(&with_docker, &select(&with_docker, Distro::K3s)));
    assert_eq!(k3s, env_map(&operator_values(&without, &select(&without, Distro::K3s))));
    let get = |env: &[(String, String)], k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(
        get(&k3s, "CONTAINERD_SOCKET").as_deref(),
        Some("/run/k3s/containerd/containerd.sock")
    );
    assert_eq!(
        get(&k3s, "CONTAINERD_CONFIG").as_deref(),
        Some("/var/lib/rancher/k3s/agent/etc/containerd/config.toml")
    );
    // Never the template: the toolkit would replace k3s's whole base template with it.
    assert!(k3s.iter().all(|(_, v)| !v.ends_with(".tmpl")));
    // Never Docker's containerd.
    assert!(
        k3s.iter()
            .all(|(_, v)| !v.starts_with("/run/containerd") && !v.starts_with("/etc/containerd"))
    );

    let k0s = env_map(&operator_values(&with_docker, &select(&with_docker, Distro::K0s)));
    assert_eq!(k0s, env_map(&operator_values(&without, &select(&without, Distro::K0s))));
    assert_eq!(
        k0s,
        vec![
            (
                "CONTAINERD_CONFIG".to_string(),
                "/run/k0s/containerd-cri.toml".to_string()
            ),
            (
                "RUNTIME_DROP_IN_CONFIG".to_string(),
                "/etc/k0s/containerd.d/nvidia.toml".to_string()
            ),
            ("CONTAINERD_SOCKET".to_string(), "/run/k0s/containerd.sock".to_string()),
            (
                "RUNTIME_CONFIG_SOURCE".to_string(),
                "file=/run/k0s/containerd-cri.toml".to_string()
            ),
        ]
    );
}

/// The toolkit's config source defaults to `command,file` (nvidia-container-toolkit v1.19.1,
/// `cmd/nvidia-ctk-installer/container/runtime/runtime.go`): `command` runs `containerd config
/// dump`, which without `--config` reads `/etc/containerd/config.toml`, Docker's containerd's
/// file when Docker is installed. On every distribution the source must be only the
/// distribution's own file.
#[test]
fn the_toolkit_reads_only_the_distributions_own_containerd_config() {
    let f = facts("rtx5090-96gb");
    for distro in [Distro::K3s, Distro::K0s] {
        let env = env_map(&operator_values(&f, &select(&f, distro)));
        let source = env
            .iter()
            .find(|(n, _)| n == "RUNTIME_CONFIG_SOURCE")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            source,
            Some(format!("file={}", distro.paths().containerd_config).as_str()),
            "{distro}: {env:?}"
        );
    }
}

#[test]
fn device_plugin_config_names_the_configmap_and_its_key() {
    let f = facts("rtx5090-96gb");
    let sel = select(&f, Distro::K3s);
    let values = operator_values(&f, &sel);
    let objects = gpu_objects(&f, &sel);
    let cm = &objects[1];
    assert_eq!(cm["metadata"]["name"], values.device_plugin.config.name.as_str());
    assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
    assert!(
        cm["data"].get(&values.device_plugin.config.default).is_some(),
        "devicePlugin.config.default must be a key of the ConfigMap, or nothing is applied"
    );
    assert!(!values.device_plugin.config.default.is_empty());
}

// ---- field names against the chart's values ----------------------------------------------

fn chart_fields() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream/gpu-operator/values-fields.txt");
    let text = std::fs::read_to_string(path).expect("fields list");
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.starts_with('#') && header.contains(CHART_VERSION),
        "the field list's header must cite chart {CHART_VERSION}: {header}"
    );
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Dotted paths of every leaf (scalars, lists) of a values document (also the add-ons' values
/// tests).
pub(crate) fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(child, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn unknown_fields(values: &Value, known: &BTreeSet<String>) -> Vec<String> {
    let mut paths = Vec::new();
    leaf_paths(values, "", &mut paths);
    paths.into_iter().filter(|p| !known.contains(p)).collect()
}

#[test]
fn every_values_field_exists_in_the_chart() {
    let known = chart_fields();
    for (name, f, sel) in cases() {
        // What the Helm controller parses, not just the struct: the YAML string in the object.
        let objects = gpu_objects(&f, &sel);
        let chart = objects.last().expect("chart");
        let yaml = chart["spec"]["valuesContent"]
            .as_str()
            .or(chart["spec"]["values"].as_str());
        let parsed = yaml_to_json(yaml.expect("values"));
        assert_eq!(unknown_fields(&parsed, &known), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn a_misspelt_values_field_is_caught() {
    let known = chart_fields();
    let typo = json!({ "devicePlugin": { "configs": { "name": "x" } }, "driver": { "enabled": false } });
    assert_eq!(
        unknown_fields(&typo, &known),
        vec!["devicePlugin.configs.name".to_string()]
    );
}

// ---- the ConfigMap -----------------------------------------------------------------------

fn plugin_config(cm: &Value) -> Value {
    yaml_to_json(cm["data"][TIME_SLICING_KEY].as_str().expect("config text"))
}

#[test]
fn time_slicing_configmap_shape() {
    let cm = time_slicing_config(4, Sharing::TimeSlicing, false);
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], TIME_SLICING_CONFIG);
    assert_eq!(cm["metadata"]["namespace"], "gpu-operator");
    let config = plugin_config(&cm);
    assert_eq!(
        config,
        json!({
            "version": "v1",
            "sharing": {
                "timeSlicing": {
                    "renameByDefault": false,
                    "resources": [{ "name": "nvidia.com/gpu", "replicas": 4 }],
                },
            },
        })
    );
}

#[test]
fn rename_by_default_sits_under_sharing_time_slicing_only() {
    let config = plugin_config(&time_slicing_config(3, Sharing::TimeSlicing, true));
    assert_eq!(config["sharing"]["timeSlicing"]["renameByDefault"], true);
    assert!(config.get("renameByDefault").is_none());
    assert!(config["sharing"].get("renameByDefault").is_none());
    assert_eq!(config["sharing"]["timeSlicing"]["resources"][0]["replicas"], 3);
}

#[test]
fn mps_is_explicit_and_never_the_default() {
    let config = plugin_config(&time_slicing_config(4, Sharing::Mps, false));
    assert!(config["sharing"].get("timeSlicing").is_none());
    assert_eq!(
        config["sharing"]["mps"],
        json!({ "renameByDefault": false, "resources": [{ "name": "nvidia.com/gpu", "replicas": 4 }] })
    );
    // Every embedded profile that shares a GPU does so by time-slicing.
    for p in profile::embedded().expect("profiles") {
        assert_ne!(p.gpu.sharing, Sharing::Mps, "profile {} defaults to MPS", p.name);
    }
    // No sharing: one share per GPU, no sharing section.
    let none = plugin_config(&time_slicing_config(1, Sharing::None, false));
    assert_eq!(none, json!({ "version": "v1" }));
}

#[test]
fn shares_are_at_least_two_under_sharing() {
    let config = plugin_config(&time_slicing_config(1, Sharing::TimeSlicing, false));
    assert_eq!(config["sharing"]["timeSlicing"]["resources"][0]["replicas"], 2);
    assert_eq!(shares_per_gpu(Sharing::None, 4), 1);
}

// ---- the plan names exactly the generated objects ------------------------------------------

#[test]
fn plan_object_refs_equal_the_generated_objects() {
    for (name, f, sel) in cases() {
        let steps = steps(&f, &sel);
        let Some(Step {
            action: Action::Apply { objects },
            ..
        }) = steps.first()
        else {
            panic!("{name}: first GPU step is not an Apply: {steps:?}");
        };
        let generated: Vec<ObjectRef> = gpu_objects(&f, &sel).iter().map(object_ref).collect();
        assert_eq!(objects, &generated, "{name}");
        assert!(generated.contains(&chart_object(sel.distro)), "{name}");
        let wait = steps.iter().find(|s| s.id == "wait-gpu").expect("wait step");
        let Action::WaitGpu { expected, .. } = wait.action else {
            panic!("{name}: wait-gpu is not WaitGpu");
        };
        assert_eq!(expected, sel.gpu_shares(), "{name}");
    }
}

// ---- readiness fixtures ---------------------------------------------------------------------

fn check_expectation(file: &str, got: &GpuReadiness, expect: &Value) {
    let state = expect["state"].as_str().expect("expect.state");
    match (state, got) {
        ("ready", GpuReadiness::Ready { allocatable }) => {
            if let Some(n) = expect["allocatable"].as_u64() {
                assert_eq!(u64::from(*allocatable), n, "{file}");
            }
        }
        ("in_progress", GpuReadiness::InProgress { reason }) => {
            let want = expect["contains"].as_str().unwrap_or_default();
            assert!(reason.contains(want), "{file}: {reason:?} lacks {want:?}");
        }
        ("failed", GpuReadiness::Failed { reason, hint }) => {
            let want = expect["contains"].as_str().unwrap_or_default();
            assert!(reason.contains(want), "{file}: {reason:?} lacks {want:?}");
            assert!(!hint.is_empty(), "{file}: a failure needs a hint");
            if let Some(h) = expect["hint_contains"].as_str() {
                assert!(hint.contains(h), "{file}: hint {hint:?} lacks {h:?}");
            }
        }
        _ => panic!("{file}: expected {state}, got {got:?}"),
    }
}

#[test]
fn readiness_fixtures_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpu");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "only {} readiness fixtures", files.len());
    let mut by_check = std::collections::BTreeMap::<String, usize>::new();
    for path in &files {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let case: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        let gpus = case["gpus"].as_u64().unwrap_or(1) as u32;
        let replicas = case["replicas"].as_u64().unwrap_or(1) as u32;
        let check = case["check"].as_str().expect("check").to_string();
        let got = match check.as_str() {
            "cluster_policy" => cluster_policy_readiness(&case["object"]),
            "node" => node_gpu_readiness(&case["object"], gpus, replicas),
            "stage" => {
                let pods = case["validator_pods"].as_array().cloned().unwrap_or_default();
                let cp = case.get("cluster_policy").filter(|v| !v.is_null());
                gpu_stage_readiness(cp, &pods, &case["node"], gpus, replicas)
            }
            other => panic!("{file}: unknown check {other}"),
        };
        check_expectation(&file, &got, &case["expect"]);
        *by_check.entry(check).or_default() += 1;
    }
    for check in ["cluster_policy", "node", "stage"] {
        assert!(
            by_check.get(check).copied().unwrap_or(0) >= 3,
            "too few {check} fixtures: {by_check:?}"
        );
    }
}

#[test]
fn readiness_never_panics_on_odd_objects() {
    for odd in [
        json!(null),
        json!({}),
        json!([]),
        json!({"status": "x"}),
        json!({"status": {"allocatable": 3}}),
    ] {
        assert!(!cluster_policy_readiness(&odd).is_ready());
        assert!(!node_gpu_readiness(&odd, 1, 4).is_ready());
        assert!(!gpu_stage_readiness(Some(&odd), std::slice::from_ref(&odd), &odd, 1, 4).is_ready());
    }
}

// ---- verification pod and restart patch ----------------------------------------------------

#[test]
fn verify_pod_shape() {
    let pod = verify_pod("default", VERIFY_IMAGE);
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["namespace"], "default");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["runtimeClassName"], "nvidia");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["command"], json!(["nvidia-smi"]));
    assert_eq!(c["image"], VERIFY_IMAGE);
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], 1);
    assert_eq!(pod["spec"]["containers"].as_array().map(Vec::len), Some(1));
    // Pinned: a registry, a repository and a full version tag, never `latest`.
    let (repo, tag) = VERIFY_IMAGE.rsplit_once(':').expect("tagged");
    assert_eq!(repo, "nvcr.io/nvidia/cuda");
    assert!(
        tag.split('-').next().is_some_and(|v| v.split('.').count() == 3),
        "{tag}"
    );
    insta::assert_json_snapshot!("verify-pod", pod);
}

#[test]
fn device_plugin_restart_patch_shape() {
    let patch = device_plugin_restart_patch("2026-07-01T10:00:00Z");
    assert_eq!(
        patch,
        json!({ "spec": { "template": { "metadata": { "annotations": {
            "kubectl.kubernetes.io/restartedAt": "2026-07-01T10:00:00Z"
        } } } } })
    );
    assert_eq!(
        device_plugin_daemonset(),
        ("gpu-operator", "nvidia-device-plugin-daemonset")
    );
}

#[test]
fn restart_only_when_the_plugin_config_changes() {
    let four = time_slicing_config(4, Sharing::TimeSlicing, false);
    let eight = time_slicing_config(8, Sharing::TimeSlicing, false);
    assert!(needs_device_plugin_restart(None, &four));
    assert!(!needs_device_plugin_restart(Some(&four), &four));
    assert!(needs_device_plugin_restart(Some(&four), &eight));
    // Server-added metadata does not count as a change.
    let mut live = four.clone();
    live["metadata"]["resourceVersion"] = json!("4711");
    assert!(!needs_device_plugin_restart(Some(&live), &four));
}

fn sharing() -> impl Strategy<Value = Sharing> {
    prop_oneof![Just(Sharing::TimeSlicing), Just(Sharing::Mps), Just(Sharing::None)]
}

proptest! {
    #[test]
    fn gpu_objects_properties(
        k0s in any::<bool>(),
        operator in any::<bool>(),
        gpus in 0usize..4,
        replicas in 0u32..64,
        sharing in sharing(),
        driver in any::<bool>(),
        docker in any::<bool>(),
    ) {
        let mut f = facts("rtx5090-96gb");
        f.runtimes.docker = docker;
        if !driver {
            f.nvidia.driver_version = None;
        }
        let distro = if k0s { Distro::K0s } else { Distro::K3s };
        let mut sel = select(&f, distro);
        sel.profile.gpu.operator = operator;
        sel.profile.gpu.sharing = sharing;
        sel.profile.gpu.replicas = replicas;
        sel.gpus = (0..gpus as u32).collect();
        let objects = gpu_objects(&f, &sel);
        if !operator || gpus == 0 {
            prop_assert!(objects.is_empty());
            prop_assert!(steps(&f, &sel).is_empty());
        } else {
            let cm = objects.iter().find(|o| o["kind"] == "ConfigMap").expect("configmap");
            let config = plugin_config(cm);
            match sharing {
                Sharing::TimeSlicing => {
                    let n = config["sharing"]["timeSlicing"]["resources"][0]["replicas"].as_u64().unwrap_or(0);
                    prop_assert!(n >= 2);
                    prop_assert!(config["sharing"].get("mps").is_none());
                }
                Sharing::Mps => {
                    let n = config["sharing"]["mps"]["resources"][0]["replicas"].as_u64().unwrap_or(0);
                    prop_assert!(n >= 2);
                }
                Sharing::None => prop_assert!(config.get("sharing").is_none()),
            }
            let values = yaml_to_json(
                objects.last().and_then(|c| c["spec"]["valuesContent"].as_str().or(c["spec"]["values"].as_str())).unwrap_or_default(),
            );
            prop_assert_eq!(&values["driver"]["enabled"], &json!(false), "driver={}", driver);
            prop_assert!(!objects.iter().any(|o| o["kind"] == "RuntimeClass"), "k0s={}", k0s);
        }
    }
}
