//! Tests of the add-ons as data: the local-path manifests through the stack loader's checks, when
//! the storage add-on stands aside, the monitoring charts' objects (snapshots) and values (field
//! names against the charts' own, DCGM job only on GPU profiles, sizing, NodePort), the admin
//! Secret, and where the add-ons land in plans.

use super::monitoring::{self as m, Sizing};
use super::*;
use crate::applyset::{ApplySet, PART_OF_LABEL};
use crate::facts::HostFacts;
use crate::plan::{self, Plan, Settings};
use crate::profile::{self, Overrides};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn facts(name: &str) -> HostFacts {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/facts/{name}.json"));
    crate::facts::load(&path).expect("facts fixture")
}

fn select(facts: &HostFacts, profile: &str, distro: Option<Distro>) -> Selection {
    let profiles = profile::embedded().expect("embedded profiles");
    profile::select(
        facts,
        &profiles,
        &Overrides {
            profile: Some(profile.into()),
            distro,
            force: true,
            model: None,
            kept: None,
            gpu_driver: Default::default(),
        },
    )
    .expect("selection")
}

/// (name, selection): the profiles × distributions the tests cover.
fn cases() -> Vec<(String, Selection)> {
    let gpu = facts("rtx5090-96gb");
    let laptop = facts("laptop-8gb-nogpu");
    vec![
        ("k3s-rtx-5090".into(), select(&gpu, "rtx-5090", None)),
        ("k0s-rtx-5090".into(), select(&gpu, "rtx-5090", Some(Distro::K0s))),
        ("k3s-cpu-fallback".into(), select(&gpu, "cpu-fallback", None)),
        ("k0s-laptop-8gb".into(), select(&laptop, "laptop-8gb", None)),
    ]
}

fn yaml_to_json(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("valid YAML")
}

fn objects_of(stack: &Stack) -> Vec<&crate::stack::StackObject> {
    stack.stages.iter().flat_map(|s| &s.objects).collect()
}

fn find<'a>(stack: &'a Stack, kind: &str, name: &str) -> &'a Value {
    &objects_of(stack)
        .into_iter()
        .find(|o| o.reference.kind == kind && o.reference.name == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
        .value
}

// ---- local-path storage ------------------------------------------------------------------------

#[test]
fn every_embedded_addon_stack_passes_the_stack_loader() {
    let names: Vec<String> = storage::EMBEDDED
        .dirs()
        .filter_map(|d| d.path().file_name()?.to_str().map(str::to_string))
        .collect();
    assert!(names.contains(&storage::STACK.to_string()), "{names:?}");
    for name in names {
        let stack = crate::stack::load_embedded(&storage::EMBEDDED, storage::FOLDER, &name)
            .unwrap_or_else(|e| panic!("addons/{name}: {e}"));
        assert_eq!(stack.name, name);
        assert!(!objects_of(&stack).is_empty(), "{name}");
        for o in objects_of(&stack) {
            assert!(o.source.starts_with(&format!("addons/{name}/")), "{}", o.source);
        }
    }
}

#[test]
fn an_unknown_addon_stack_is_named_with_the_ones_there_are() {
    let e = crate::stack::load_embedded(&storage::EMBEDDED, storage::FOLDER, "nope").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("nope") && msg.contains(storage::STACK), "{msg}");
}

#[test]
fn local_path_objects_are_upstreams_with_pinned_images() {
    let stack = storage::stack().expect("local-path stack");
    let kinds: BTreeSet<(&str, &str)> = objects_of(&stack)
        .iter()
        .map(|o| (o.reference.kind.as_str(), o.reference.name.as_str()))
        .collect();
    for want in [
        ("Namespace", "local-path-storage"),
        ("ServiceAccount", "local-path-provisioner-service-account"),
        ("Role", "local-path-provisioner-role"),
        ("RoleBinding", "local-path-provisioner-bind"),
        ("ClusterRole", "local-path-provisioner-role"),
        ("ClusterRoleBinding", "local-path-provisioner-bind"),
        ("ConfigMap", "local-path-config"),
        ("Deployment", "local-path-provisioner"),
        ("StorageClass", "local-path"),
    ] {
        assert!(kinds.contains(&want), "missing {want:?} in {kinds:?}");
    }

    let sc = find(&stack, "StorageClass", storage::STORAGE_CLASS);
    assert_eq!(
        sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert_eq!(sc["provisioner"], "rancher.io/local-path");
    assert_eq!(sc["volumeBindingMode"], "WaitForFirstConsumer");
    assert_eq!(sc["reclaimPolicy"], "Delete");

    let deploy = find(&stack, "Deployment", "local-path-provisioner");
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "rancher/local-path-provisioner:v0.0.37");
    for field in ["cpu", "memory"] {
        assert!(c["resources"]["limits"][field].is_string(), "limits.{field}");
        assert!(c["resources"]["requests"][field].is_string(), "requests.{field}");
    }
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        deploy["spec"]["template"]["spec"]["serviceAccountName"],
        "local-path-provisioner-service-account"
    );

    let cm = find(&stack, "ConfigMap", "local-path-config");
    let config: Value = serde_json::from_str(cm["data"]["config.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        config["nodePathMap"],
        json!([{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [storage::VOLUME_DIR]}])
    );
    assert!(
        storage::VOLUME_DIR.starts_with("/var/lib/k0s/"),
        "volumes live in k0s's data dir, which `down` knows"
    );
    assert!(
        Distro::K0s
            .paths()
            .data_dirs
            .iter()
            .any(|d| storage::VOLUME_DIR.starts_with(&format!("{d}/")))
    );
    assert_eq!(
        storage::VOLUME_DIR,
        crate::distro::data_dir::volume_dir(Distro::K0s, None)
    );
    // With --data-dir the volumes move with k0s's data, and nothing else of the stack changes.
    let moved = storage::stack_in("/data/k0s/local-path-provisioner").unwrap();
    let mcm = find(&moved, "ConfigMap", "local-path-config");
    let mconfig: Value = serde_json::from_str(mcm["data"]["config.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        mconfig["nodePathMap"][0]["paths"],
        json!(["/data/k0s/local-path-provisioner"])
    );
    assert_eq!(mcm["data"]["setup"], cm["data"]["setup"]);
    assert_eq!(storage::stack_in(storage::VOLUME_DIR).unwrap(), stack);
    for script in ["setup", "teardown"] {
        let text = cm["data"][script].as_str().unwrap();
        assert!(text.starts_with("#!/bin/sh\nset -eu\n"), "{script}: {text}");
        assert!(text.contains("\"$VOL_DIR\""), "{script}: {text}");
    }
    // The helper pod's image sits in a string the stack checks cannot see: pinned here.
    let helper = yaml_to_json(cm["data"]["helperPod.yaml"].as_str().unwrap());
    assert_eq!(helper["kind"], "Pod");
    let image = helper["spec"]["containers"][0]["image"].as_str().unwrap();
    assert_eq!(image, "busybox:1.37.0");
}

fn class(name: &str, default: bool, ours: bool) -> Value {
    let mut labels = json!({});
    if ours {
        labels[PART_OF_LABEL] = json!(ApplySet::for_stack(storage::STACK).id);
    }
    let mut annotations = json!({});
    if default {
        annotations["storageclass.kubernetes.io/is-default-class"] = json!("true");
    }
    json!({"metadata": {"name": name, "labels": labels, "annotations": annotations}})
}

#[test]
fn storage_stands_aside_for_another_default_class_and_never_makes_a_second() {
    assert_eq!(storage::conflict(&[]), None);
    // Our own class from an earlier run: apply again (converge).
    assert_eq!(storage::conflict(&[class("local-path", true, true)]), None);
    // Other non-default classes are no reason.
    assert_eq!(storage::conflict(&[class("fast", false, false)]), None);
    let other_default = storage::conflict(&[class("openebs-hostpath", true, false), class("local-path", true, true)]);
    assert!(
        other_default
            .as_deref()
            .is_some_and(|m| m.contains("openebs-hostpath") && m.contains("default")),
        "{other_default:?}"
    );
    let beta = class("old", false, false);
    let mut beta = beta;
    beta["metadata"]["annotations"]["storageclass.beta.kubernetes.io/is-default-class"] = json!("true");
    assert!(storage::conflict(&[beta]).is_some());
    // A local-path class someone else made (k3s's, a manual install): left alone.
    let foreign = storage::conflict(&[class("local-path", false, false)]);
    assert!(
        foreign.as_deref().is_some_and(|m| m.contains("did not install")),
        "{foreign:?}"
    );
}

// ---- planned add-ons and steps -----------------------------------------------------------------

#[test]
fn storage_only_on_k0s_and_monitoring_only_when_asked() {
    for (name, sel) in cases() {
        let plain = crate::stack::load("voice-ai", None).unwrap();
        let none = planned(&sel, &[], &plain).unwrap();
        let with = planned(&sel, &[Optional::Monitoring], &plain).unwrap();
        let kinds = |a: &[Addon]| a.iter().map(|a| a.kind).collect::<Vec<_>>();
        match sel.distro {
            Distro::K0s => {
                assert_eq!(kinds(&none), [AddonKind::LocalPathStorage], "{name}");
                assert_eq!(
                    kinds(&with),
                    [AddonKind::LocalPathStorage, AddonKind::Monitoring],
                    "{name}"
                );
            }
            Distro::K3s => {
                assert_eq!(kinds(&none), [], "{name}");
                assert_eq!(kinds(&with), [AddonKind::Monitoring], "{name}");
            }
        }
    }
}

#[test]
fn steps_name_exactly_what_the_addons_apply_and_wait_for() {
    for (name, sel) in cases() {
        let alice = crate::stack::load("alice", None).unwrap();
        let addons = planned(&sel, &[Optional::Monitoring], &alice).unwrap();
        assert_eq!(addons.last().map(|a| a.kind), Some(AddonKind::CloudNativePg), "{name}");
        let steps = steps(&addons);
        assert_eq!(steps.len(), addons.len(), "{name}");
        for (step, addon) in steps.iter().zip(&addons) {
            assert_eq!(step.phase, Phase::Addons);
            assert_eq!(step.id, format!("addon-{}", addon.name()));
            let Action::ApplyAddon {
                addon: named,
                objects,
                wait_for,
                timeout_s,
            } = &step.action
            else {
                panic!("{name}: {step:?}");
            };
            assert_eq!(named, addon.name());
            let applied: Vec<ObjectRef> = objects_of(&addon.stack).iter().map(|o| o.reference.clone()).collect();
            let secrets: Vec<&ObjectRef> = objects.iter().filter(|r| r.kind == "Secret").collect();
            let rest: Vec<ObjectRef> = objects.iter().filter(|r| r.kind != "Secret").cloned().collect();
            assert_eq!(rest, applied, "{name}");
            assert_eq!(secrets.len(), addon.stack.secrets.len(), "{name}");
            assert_eq!(wait_for, &addon.wait_for);
            assert_eq!(*timeout_s, addon.timeout_s);
        }
    }
}

fn plan_for(sel: &Selection, facts: &HostFacts, with: &[Optional]) -> Plan {
    let stack = crate::stack::load(&sel.profile.stack, None)
        .expect("stack")
        .sized(&sel.profile.name);
    let settings = Settings {
        addons: with.to_vec(),
        ..Settings::default()
    };
    plan::plan(
        facts,
        sel,
        crate::checks::preflight(facts, Some(sel)),
        &stack,
        &settings,
    )
    .expect("plan")
}

fn position(p: &Plan, pred: impl Fn(&Step) -> bool) -> Option<usize> {
    p.steps.iter().position(pred)
}

#[test]
fn k0s_plans_storage_after_the_cluster_and_before_the_gpu_operator_and_the_stack() {
    let gpu = facts("rtx5090-96gb");
    for (sel, f) in [
        (select(&gpu, "rtx-5090", Some(Distro::K0s)), gpu.clone()),
        (
            select(&facts("laptop-8gb-nogpu"), "laptop-8gb", None),
            facts("laptop-8gb-nogpu"),
        ),
    ] {
        let p = plan_for(&sel, &f, &[]);
        let storage = position(&p, |s| s.id == "addon-local-path-storage").expect("storage step on k0s");
        let kubeconfig = position(&p, |s| matches!(s.action, Action::Kubeconfig { .. })).unwrap();
        let first_stage = position(&p, |s| s.phase == Phase::Stack).unwrap();
        assert!(kubeconfig < storage && storage < first_stage, "{:?}", p.steps);
        if let Some(gpu_step) = position(&p, |s| s.phase == Phase::Gpu) {
            assert!(storage < gpu_step);
        }
        assert!(position(&p, |s| s.id == "addon-monitoring").is_none());
        // Phases stay in order.
        let phases: Vec<Phase> = p.steps.iter().map(|s| s.phase).collect();
        let mut sorted = phases.clone();
        sorted.sort();
        assert_eq!(phases, sorted);
    }
}

#[test]
fn k3s_plans_no_storage_addon() {
    let gpu = facts("rtx5090-96gb");
    for profile in ["rtx-5090", "cpu-fallback"] {
        let sel = select(&gpu, profile, None);
        let p = plan_for(&sel, &gpu, &[]);
        assert!(!p.steps.iter().any(|s| s.phase == Phase::Addons), "{profile}");
        let with = plan_for(&sel, &gpu, &[Optional::Monitoring]);
        let ids: Vec<&str> = with
            .steps
            .iter()
            .filter(|s| s.phase == Phase::Addons)
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(ids, ["addon-monitoring"], "{profile}");
    }
}

#[test]
fn monitoring_follows_storage_on_k0s() {
    let laptop = facts("laptop-8gb-nogpu");
    let sel = select(&laptop, "laptop-8gb", None);
    let p = plan_for(&sel, &laptop, &[Optional::Monitoring]);
    let storage = position(&p, |s| s.id == "addon-local-path-storage").unwrap();
    let monitoring = position(&p, |s| s.id == "addon-monitoring").unwrap();
    assert_eq!(
        monitoring,
        storage + 1,
        "Prometheus's claim needs the StorageClass first"
    );
}

// ---- monitoring: objects and values ------------------------------------------------------------

fn values_of(chart: &Value) -> Value {
    let text = chart["spec"]["valuesContent"]
        .as_str()
        .or(chart["spec"]["values"].as_str())
        .expect("values string");
    yaml_to_json(text)
}

fn charts(sel: &Selection) -> (Value, Value) {
    let objects = m::objects(sel.distro, sel);
    let find = |name: &str| {
        objects
            .iter()
            .find(|o| o["metadata"]["name"] == name && o["metadata"]["namespace"] == "kube-system")
            .cloned()
            .unwrap_or_else(|| panic!("no chart object {name}"))
    };
    (find(m::PROMETHEUS_RELEASE), find(m::GRAFANA_RELEASE))
}

#[test]
fn chart_object_snapshots() {
    for (name, sel) in cases() {
        if name == "k0s-rtx-5090" {
            continue; // the same as k3s-rtx-5090 but for the kind: covered by the two below
        }
        let objects = m::objects(sel.distro, &sel);
        insta::assert_json_snapshot!(format!("monitoring-objects-{name}"), objects);
        let (prometheus, grafana) = charts(&sel);
        let text = |c: &Value| {
            c["spec"]["valuesContent"]
                .as_str()
                .or(c["spec"]["values"].as_str())
                .unwrap()
                .to_string()
        };
        insta::assert_snapshot!(format!("prometheus-values-{name}"), text(&prometheus));
        insta::assert_snapshot!(format!("grafana-values-{name}"), text(&grafana));
    }
}

#[test]
fn k3s_gets_helmcharts_and_k0s_gets_charts_naming_their_repository() {
    let gpu = facts("rtx5090-96gb");
    let (p3, g3) = charts(&select(&gpu, "rtx-5090", None));
    assert_eq!(p3["kind"], "HelmChart");
    assert_eq!(p3["spec"]["repo"], m::PROMETHEUS_REPO);
    assert_eq!(p3["spec"]["chart"], "prometheus");
    assert_eq!(p3["spec"]["version"], m::PROMETHEUS_VERSION);
    assert_eq!(p3["spec"]["targetNamespace"], m::NAMESPACE);
    assert_eq!(g3["spec"]["repo"], m::GRAFANA_REPO);
    assert_eq!(g3["spec"]["version"], m::GRAFANA_VERSION);

    let (p0, g0) = charts(&select(&gpu, "rtx-5090", Some(Distro::K0s)));
    assert_eq!(p0["kind"], "Chart");
    // k0s v1.35.3 reads the text before the first `/` of chartName as a repository name: never
    // a URL; the repository itself travels in spec.repository.
    assert_eq!(p0["spec"]["chartName"], "prometheus-community/prometheus");
    assert_eq!(p0["spec"]["repository"]["url"], m::PROMETHEUS_REPO);
    assert_eq!(g0["spec"]["chartName"], "grafana-community/grafana");
    assert_eq!(g0["spec"]["repository"]["url"], m::GRAFANA_REPO);
    for c in [&p0, &g0] {
        assert_eq!(c["spec"]["namespace"], m::NAMESPACE);
        assert_eq!(c["spec"]["releaseName"], c["metadata"]["name"]);
    }
    // Never a moving version.
    for v in [m::PROMETHEUS_VERSION, m::GRAFANA_VERSION] {
        assert!(
            v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{v}"
        );
    }
}

/// Field paths of a chart's values a fixture allows, and its free-form prefixes (`x.*`).
fn chart_fields(file: &str, version: &str) -> (BTreeSet<String>, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file);
    let text = std::fs::read_to_string(path).expect("fields list");
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.starts_with('#') && header.contains(&format!("chart {version} ")),
        "{file}'s header must cite chart {version}: {header}"
    );
    let mut exact = BTreeSet::new();
    let mut free = Vec::new();
    for l in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        match l.strip_suffix(".*") {
            Some(prefix) => free.push(format!("{prefix}.")),
            None => {
                exact.insert(l.to_string());
            }
        }
    }
    (exact, free)
}

fn unknown_fields(values: &Value, (exact, free): &(BTreeSet<String>, Vec<String>)) -> Vec<String> {
    let mut paths = Vec::new();
    crate::gpu::tests::leaf_paths(values, "", &mut paths);
    paths
        .into_iter()
        .filter(|p| !exact.contains(p) && !free.iter().any(|f| p.starts_with(f.as_str())))
        .collect()
}

#[test]
fn every_values_field_exists_in_its_chart() {
    let prometheus_fields = chart_fields("upstream/prometheus/values-fields.txt", m::PROMETHEUS_VERSION);
    let grafana_fields = chart_fields("upstream/grafana/values-fields.txt", m::GRAFANA_VERSION);
    for (name, sel) in cases() {
        // What the Helm controller parses: the YAML strings in the chart objects.
        let (prometheus, grafana) = charts(&sel);
        assert_eq!(
            unknown_fields(&values_of(&prometheus), &prometheus_fields),
            Vec::<String>::new(),
            "{name}"
        );
        assert_eq!(
            unknown_fields(&values_of(&grafana), &grafana_fields),
            Vec::<String>::new(),
            "{name}"
        );
    }
}

#[test]
fn a_misspelt_values_field_is_caught() {
    let fields = chart_fields("upstream/prometheus/values-fields.txt", m::PROMETHEUS_VERSION);
    let typo = json!({"server": {"retension": "3d", "resources": {"limits": {"memory": "1Gi"}}}, "alertmanager": {"enabled": false}});
    assert_eq!(unknown_fields(&typo, &fields), vec!["server.retension".to_string()]);
    let fields = chart_fields("upstream/grafana/values-fields.txt", m::GRAFANA_VERSION);
    let typo = json!({"admin": {"existingSecrets": "x"}, "datasources": {"datasources.yaml": {"apiVersion": 1}}});
    assert_eq!(
        unknown_fields(&typo, &fields),
        vec!["admin.existingSecrets".to_string()]
    );
}

fn scrape_jobs(prometheus: &Value) -> Vec<Value> {
    match prometheus["extraScrapeConfigs"].as_str() {
        None => Vec::new(),
        Some(text) => yaml_to_json(text).as_array().cloned().expect("a list of jobs"),
    }
}

#[test]
fn gpu_profiles_scrape_dcgm_and_cpu_profiles_do_not() {
    for (name, sel) in cases() {
        let (prometheus, _) = charts(&sel);
        let jobs = scrape_jobs(&values_of(&prometheus));
        if crate::gpu::gpu_selected(&sel) {
            assert_eq!(jobs.len(), 1, "{name}");
            let job = &jobs[0];
            assert_eq!(job["job_name"], m::DCGM_JOB);
            assert_eq!(
                job["kubernetes_sd_configs"],
                json!([{"role": "endpoints", "namespaces": {"names": [crate::gpu::NAMESPACE]}}])
            );
            assert_eq!(job["relabel_configs"][0]["action"], "keep");
            assert_eq!(job["relabel_configs"][0]["regex"], "nvidia-dcgm-exporter;gpu-metrics");
            assert_eq!(
                job["relabel_configs"][0]["source_labels"],
                json!(["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"])
            );
        } else {
            assert!(jobs.is_empty(), "{name}: {jobs:?}");
            assert!(values_of(&prometheus).get("extraScrapeConfigs").is_none(), "{name}");
        }
    }
}

#[test]
fn prometheus_is_the_server_only_and_grafana_reads_it() {
    for (name, sel) in cases() {
        let (prometheus, grafana) = charts(&sel);
        let p = values_of(&prometheus);
        for sub in [
            "alertmanager",
            "prometheus-pushgateway",
            "prometheus-node-exporter",
            "kube-state-metrics",
        ] {
            assert_eq!(p[sub]["enabled"], false, "{name}: {sub}");
        }
        assert_eq!(p["server"]["fullnameOverride"], m::PROMETHEUS_SERVER);
        let g = values_of(&grafana);
        assert_eq!(g["fullnameOverride"], m::GRAFANA_RELEASE);
        assert_eq!(
            g["admin"],
            json!({"existingSecret": m::ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"})
        );
        assert_eq!(g["service"]["type"], "NodePort");
        assert_eq!(g["service"]["nodePort"], m::GRAFANA_NODE_PORT);
        let ds = &g["datasources"]["datasources.yaml"];
        assert_eq!(ds["apiVersion"], 1);
        assert_eq!(ds["datasources"][0]["type"], "prometheus");
        assert_eq!(ds["datasources"][0]["url"], "http://prometheus-server.monitoring.svc");
        assert_eq!(ds["datasources"][0]["isDefault"], true);
        // kstrap waits for the Deployments these names make.
        let addon = monitoring::addon(&sel);
        let waited: Vec<&str> = addon.wait_for.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(waited, [m::PROMETHEUS_SERVER, m::GRAFANA_RELEASE], "{name}");
        assert!(
            addon
                .wait_for
                .iter()
                .all(|r| r.kind == "Deployment" && r.namespace.as_deref() == Some(m::NAMESPACE))
        );
    }
}

fn bytes(q: &str) -> f64 {
    crate::stack::overlay::quantity_value(q).unwrap_or_else(|| panic!("quantity {q}"))
}

#[test]
fn laptops_get_small_monitoring_and_workstations_larger() {
    let laptop = facts("laptop-8gb-nogpu");
    let gpu = facts("rtx5090-96gb");
    let small = Sizing::for_profile(&select(&laptop, "laptop-8gb", None).profile);
    for profile in ["rtx-5090", "cpu-fallback"] {
        let big = Sizing::for_profile(&select(&gpu, profile, None).profile);
        assert!(bytes(&big.prometheus.requests.memory) > bytes(&small.prometheus.requests.memory));
        assert!(bytes(big.volume) > bytes(small.volume));
        assert_ne!(big.retention, small.retention);
    }
    assert!(bytes(&small.prometheus.requests.memory) <= bytes("256Mi"));
    assert!(bytes(&small.grafana.requests.memory) <= bytes("128Mi"));
    for s in [&small, &Sizing::for_profile(&select(&gpu, "rtx-5090", None).profile)] {
        for r in [&s.prometheus, &s.grafana, &s.reloader] {
            assert!(bytes(&r.requests.memory) <= bytes(&r.limits.memory));
            assert!(bytes(&r.requests.cpu) <= bytes(&r.limits.cpu));
        }
        // Prometheus deletes old blocks before the volume fills (retentionSize is in SI units).
        let size = s.retention_size;
        let limit = if let Some(mb) = size.strip_suffix("MB") {
            mb.parse::<f64>().unwrap() * 1e6
        } else {
            size.strip_suffix("GB").unwrap().parse::<f64>().unwrap() * 1e9
        };
        assert!(limit < bytes(s.volume) * 0.9, "{size} vs {}", s.volume);
    }
}

#[test]
fn grafanas_node_port_is_free_in_every_built_in_stack() {
    let port = m::GRAFANA_NODE_PORT;
    assert!((30000..=32767).contains(&port));
    let mut taken = Vec::new();
    for name in crate::stack::embedded_names() {
        let stack = crate::stack::load(&name, None).unwrap();
        for o in objects_of(&stack).into_iter().filter(|o| o.reference.kind == "Service") {
            for p in o.value["spec"]["ports"].as_array().into_iter().flatten() {
                if let Some(n) = p["nodePort"].as_u64() {
                    taken.push(n);
                }
            }
        }
    }
    assert!(!taken.is_empty(), "the stacks' NodePorts were found");
    assert!(!taken.contains(&u64::from(port)), "{port} in {taken:?}");
}

#[test]
fn the_admin_password_is_generated_once_then_kept_and_the_user_is_admin() {
    use crate::stack::secrets::{self, SecretValue};
    let sel = select(&facts("rtx5090-96gb"), "rtx-5090", None);
    let addon = monitoring::addon(&sel);
    let mut n = 0;
    let mut random = |len: usize| {
        n += 1;
        format!("{n}").repeat(len)
    };
    let none = |_: &str| None;
    let first = secrets::resolve(&addon.stack, &BTreeMap::new(), &none, &BTreeMap::new(), &mut random).unwrap();
    assert_eq!(first.len(), 1);
    let generated = first[0].value("admin-password").unwrap().expose().to_string();
    assert_eq!(generated.len(), 32);
    let mut object = first[0].object(m::NAMESPACE);
    addon.complete_secret(&mut object);
    assert_eq!(object["metadata"]["name"], m::ADMIN_SECRET);
    let decode =
        |v: &Value| String::from_utf8(serde_json::from_value::<k8s_openapi::ByteString>(v.clone()).unwrap().0).unwrap();
    assert_eq!(decode(&object["data"]["admin-user"]), "admin");
    assert_eq!(decode(&object["data"]["admin-password"]), generated);
    // Never in the Debug form either.
    assert!(!format!("{first:?}").contains(&generated));

    // A re-run keeps the cluster's value; the environment variable wins over it.
    let existing = BTreeMap::from([(
        m::ADMIN_SECRET.to_string(),
        BTreeMap::from([("admin-password".to_string(), SecretValue::new("kept-one"))]),
    )]);
    let again = secrets::resolve(&addon.stack, &BTreeMap::new(), &none, &existing, &mut random).unwrap();
    assert_eq!(again[0].value("admin-password").unwrap().expose(), "kept-one");
    let env = |k: &str| (k == "KSTRAP_GRAFANA_ADMIN_PASSWORD").then(|| "from-env".to_string());
    let chosen = secrets::resolve(&addon.stack, &BTreeMap::new(), &env, &existing, &mut random).unwrap();
    assert_eq!(chosen[0].value("admin-password").unwrap().expose(), "from-env");

    // Other Secrets are left as they are.
    let mut other = json!({"metadata": {"name": "x"}, "data": {}});
    addon.complete_secret(&mut other);
    assert_eq!(other["data"], json!({}));
}

// ---- CloudNativePG -----------------------------------------------------------------------------

#[test]
fn cloudnative_pg_only_for_a_stack_with_databases_and_last() {
    use super::cnpg;
    let alice = crate::stack::load("alice", None).unwrap();
    let plain = crate::stack::load("imagepod", None).unwrap();
    for (name, sel) in cases() {
        assert!(
            planned(&sel, &[], &plain)
                .unwrap()
                .iter()
                .all(|a| a.kind != AddonKind::CloudNativePg),
            "{name}"
        );
        let addons = planned(&sel, &[], &alice).unwrap();
        let a = addons.last().unwrap();
        assert_eq!(a.kind, AddonKind::CloudNativePg, "{name}");
        assert!(a.reason.contains("alice-assets/alice-assets-db"), "{}", a.reason);
        // The CRD first, then the operator whose webhook admits every Cluster.
        let waited: Vec<String> = a.wait_for.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            waited,
            [
                "CustomResourceDefinition/clusters.postgresql.cnpg.io",
                "Deployment/cnpg-controller-manager -n cnpg-system"
            ],
            "{name}"
        );
        let objects = cnpg::objects(sel.distro, &sel);
        let chart = objects
            .iter()
            .find(|o| o["metadata"]["namespace"] == "kube-system")
            .unwrap();
        let spec = &chart["spec"];
        match sel.distro {
            Distro::K3s => {
                assert_eq!(spec["repo"], cnpg::REPO);
                assert_eq!(spec["chart"], "cloudnative-pg");
                assert_eq!(spec["version"], "0.29.0");
                assert_eq!(spec["targetNamespace"], "cnpg-system");
            }
            Distro::K0s => {
                assert_eq!(spec["chartName"], "cnpg/cloudnative-pg");
                assert_eq!(spec["repository"]["url"], cnpg::REPO);
                assert_eq!(spec["version"], "0.29.0");
                assert_eq!(spec["namespace"], "cnpg-system");
            }
        }
        let values = values_of(chart);
        assert_eq!(values["fullnameOverride"], cnpg::DEPLOYMENT);
        assert_eq!(values["crds"]["create"], true);
        let fields = chart_fields("upstream/cloudnative-pg/values-fields.txt", cnpg::CHART_VERSION);
        assert_eq!(unknown_fields(&values, &fields), Vec::<String>::new(), "{name}");
    }
    let fields = chart_fields("upstream/cloudnative-pg/values-fields.txt", cnpg::CHART_VERSION);
    assert_eq!(
        unknown_fields(&json!({"config": {"clusterwide": true}}), &fields),
        vec!["config.clusterwide".to_string()]
    );
}
