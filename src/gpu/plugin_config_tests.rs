//! The device plugin's config that kstrap renders, checked against the fields and rules of the
//! plugin version the GPU operator ships (`tests/fixtures/upstream/k8s-device-plugin/`, derived
//! from NVIDIA/k8s-device-plugin `api/config/v1/` at v0.19.2). Besides what the plugin refuses,
//! the check flags what it silently ignores: per-GPU `devices` and `rename`, which
//! `DisableResourceNamingInConfig` resets at that version. kstrap's multi-GPU design relies on
//! neither, and these tests keep it so.

use super::*;
use crate::facts::HostFacts;
use crate::profile::{self, Overrides, Sharing};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

/// The fixture's rules.
struct Rules {
    fields: BTreeSet<String>,
    required: Vec<String>,
    min: Vec<(String, u64)>,
    ignored: Vec<(String, String)>,
}

fn rules() -> Rules {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream/k8s-device-plugin/config-v1-sharing.txt");
    let text = std::fs::read_to_string(&path).expect("device plugin config fixture");
    let mut r = Rules {
        fields: BTreeSet::new(),
        required: Vec::new(),
        min: Vec::new(),
        ignored: Vec::new(),
    };
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["field", p] => {
                r.fields.insert((*p).to_string());
            }
            ["required", p] => r.required.push((*p).to_string()),
            ["min", p, n] => r.min.push(((*p).to_string(), n.parse().expect("min n"))),
            ["ignored", p, allowed] => r.ignored.push(((*p).to_string(), (*allowed).to_string())),
            _ => panic!("unreadable fixture line: {line}"),
        }
    }
    r
}

/// Every node of `v` with its dotted path; the items of a list get `[]` appended to its path.
fn walk(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    out.push((path.to_string(), v.clone()));
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(child, &p, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// What the pinned device plugin would refuse or silently ignore in `config`.
fn violations(config: &Value, r: &Rules) -> Vec<String> {
    let mut nodes = Vec::new();
    walk(config, "", &mut nodes);
    let mut known: BTreeSet<String> = BTreeSet::from([String::new()]);
    for f in &r.fields {
        let mut p = f.as_str();
        known.insert(p.to_string());
        while let Some(cut) = p.rfind(['.', '[']) {
            p = &p[..cut];
            known.insert(p.to_string());
        }
    }
    let mut out = Vec::new();
    for (path, value) in &nodes {
        if !known.contains(path) {
            out.push(format!("{path}: not a field of the plugin's config"));
        }
        for (p, n) in &r.min {
            if p == path && value.as_u64().is_none_or(|v| v < *n) {
                out.push(format!("{path}: {value} is below the plugin's minimum {n}"));
            }
        }
        for (p, allowed) in &r.ignored {
            if p != path {
                continue;
            }
            if allowed == "all" && value != "all" {
                out.push(format!("{path}: {value} is ignored by the plugin (it uses every GPU)"));
            }
        }
    }
    for req in &r.required {
        let (parent, key) = req.rsplit_once('.').unwrap_or(("", req));
        for (path, value) in &nodes {
            if path == parent && value.is_object() && value.get(key).is_none() {
                out.push(format!("{req}: required by the plugin"));
            }
        }
        if req.ends_with("resources") {
            for (path, value) in &nodes {
                if path == req && value.as_array().is_some_and(Vec::is_empty) {
                    out.push(format!("{req}: the plugin refuses an empty list"));
                }
            }
        }
    }
    // `rename`: only `<name>.shared` under `renameByDefault` survives DisableResourceNamingInConfig.
    if r.ignored.iter().any(|(p, _)| p.ends_with("[].rename")) {
        for mode in ["timeSlicing", "mps"] {
            let section = &config["sharing"][mode];
            let by_default = section["renameByDefault"].as_bool().unwrap_or(false);
            for item in section["resources"].as_array().into_iter().flatten() {
                let Some(rename) = item.get("rename") else { continue };
                let default = format!("{}.shared", item["name"].as_str().unwrap_or_default());
                if !(by_default && rename == default.as_str()) {
                    out.push(format!(
                        "sharing.{mode}.resources[].rename: {rename} is ignored by the plugin"
                    ));
                }
            }
        }
    }
    out
}

fn config_text(cm: &Value) -> Value {
    let text = cm["data"][TIME_SLICING_KEY].as_str().expect("config text");
    serde_saphyr::from_str(text).expect("config is YAML")
}

fn facts(name: &str) -> HostFacts {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/facts/{name}.json"));
    crate::facts::load(&path).expect("facts fixture")
}

#[test]
fn every_rendered_config_is_one_the_pinned_plugin_applies_as_written() {
    let r = rules();
    for sharing in [Sharing::TimeSlicing, Sharing::Mps, Sharing::None] {
        for replicas in [1, 2, 4, 8, 48] {
            for rename_by_default in [false, true] {
                let config = config_text(&time_slicing_config(replicas, sharing, rename_by_default));
                let bad = violations(&config, &r);
                assert!(
                    bad.is_empty(),
                    "{sharing:?} ×{replicas} rename {rename_by_default}: {bad:?}"
                );
            }
        }
    }
}

#[test]
fn two_gpu_hosts_get_one_resource_for_every_gpu() {
    let r = rules();
    let profiles = profile::embedded().expect("embedded profiles");
    for name in ["two-gpus", "two-24gb-gpus"] {
        let f = facts(name);
        assert_eq!(f.gpus.len(), 2, "{name}");
        // Whole GPUs (the automatic choice): no sharing section, so the plugin advertises each
        // GPU once under nvidia.com/gpu.
        let whole = profile::select(&f, &profiles, &Overrides::default()).expect("selection");
        assert_eq!(whole.profile.name, "multi-gpu", "{name}");
        let objects = gpu_objects(&f, &whole);
        let cm = objects.iter().find(|o| o["kind"] == "ConfigMap").expect("ConfigMap");
        let config = config_text(cm);
        assert_eq!(violations(&config, &r), Vec::<String>::new(), "{name}");
        assert!(config.get("sharing").is_none(), "{name}: {config}");
        // Time-sliced (a tier named): one resource for every GPU.
        let o = Overrides {
            profile: Some("gpu-16gb".into()),
            ..Overrides::default()
        };
        let sel = profile::select(&f, &profiles, &o).expect("selection");
        let objects = gpu_objects(&f, &sel);
        let cm = objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap")
            .unwrap_or_else(|| panic!("{name}: no device plugin ConfigMap in {objects:?}"));
        let config = config_text(cm);
        assert_eq!(violations(&config, &r), Vec::<String>::new(), "{name}");
        // One resource, every GPU: no per-GPU `devices` or `rename` (the pinned plugin ignores them).
        let resources = &config["sharing"]["timeSlicing"]["resources"];
        assert_eq!(resources.as_array().map(Vec::len), Some(1), "{name}: {config}");
        assert_eq!(resources[0]["name"], "nvidia.com/gpu", "{name}");
        assert!(resources[0].get("devices").is_none() && resources[0].get("rename").is_none());
    }
}

#[test]
fn per_gpu_names_and_bad_configs_are_caught() {
    let r = rules();
    // The design the pinned plugin cannot honour: GPU 0 in four shares, GPU 1 whole, by name.
    let per_gpu = json!({
        "version": "v1",
        "sharing": { "timeSlicing": { "resources": [
            { "name": "nvidia.com/gpu", "rename": "nvidia.com/gpu-0", "devices": ["0"], "replicas": 4 },
        ]}},
    });
    let bad = violations(&per_gpu, &r);
    assert!(bad.iter().any(|b| b.contains("devices")), "{bad:?}");
    assert!(bad.iter().any(|b| b.contains("rename")), "{bad:?}");
    // The default rename survives only under renameByDefault.
    let shared = json!({ "version": "v1", "sharing": { "timeSlicing": { "resources": [
        { "name": "nvidia.com/gpu", "rename": "nvidia.com/gpu.shared", "replicas": 2 },
    ]}}});
    assert_eq!(violations(&shared, &r).len(), 1, "{:?}", violations(&shared, &r));
    let mut by_default = shared.clone();
    by_default["sharing"]["timeSlicing"]["renameByDefault"] = json!(true);
    assert!(violations(&by_default, &r).is_empty());
    // Refused by the plugin: one replica, a missing name, an empty list, an unknown field.
    for (config, why) in [
        (
            json!({ "version": "v1", "sharing": { "timeSlicing": { "resources": [{ "name": "nvidia.com/gpu", "replicas": 1 }] }}}),
            "minimum",
        ),
        (
            json!({ "version": "v1", "sharing": { "timeSlicing": { "resources": [{ "replicas": 2 }] }}}),
            "resources[].name",
        ),
        (
            json!({ "version": "v1", "sharing": { "timeSlicing": { "resources": [] }}}),
            "empty",
        ),
        (
            json!({ "version": "v1", "sharing": { "timeSlicing": { "replica": 2, "resources": [{ "name": "nvidia.com/gpu", "replicas": 2 }] }}}),
            "not a field",
        ),
        (json!({ "sharing": {} }), "version"),
    ] {
        let bad = violations(&config, &r);
        assert!(bad.iter().any(|b| b.contains(why)), "{config}: want {why}, got {bad:?}");
    }
}

#[test]
fn unequal_gpus_are_budgeted_on_the_smaller_one() {
    // Any share may be any GPU's (nothing pins placement), so the budget must hold on the
    // smallest GPU: with one of two 24 GB cards replaced by a 16 GB one, the 16 GB card decides.
    // Among the time-sliced tiers (two GPUs of 16 GB and more get whole GPUs otherwise, budgeted
    // on the smaller one too: crate::budget::whole).
    let profiles: Vec<_> = profile::embedded()
        .expect("embedded profiles")
        .into_iter()
        .filter(|p| p.gpu.sharing != profile::Sharing::None)
        .collect();
    let mut f = facts("two-24gb-gpus");
    let equal = profile::select(&f, &profiles, &Overrides::default()).expect("selection");
    let sixteen = 16 * 1024 * 1024 * 1024_u64;
    f.gpus[1].memory_total_bytes = sixteen;
    f.gpus[1].memory_free_bytes = sixteen - 512 * 1024 * 1024;
    let unequal = profile::select(&f, &profiles, &Overrides::default()).expect("selection");
    let b = unequal.vram_budget.as_ref().expect("a VRAM budget");
    assert_eq!(b.vram_bytes, sixteen, "{b:?}");
    assert!(b.gpu.starts_with("1 "), "budget for GPU {}", b.gpu);
    assert!(b.fits && b.used_bytes + b.min_headroom_bytes <= sixteen, "{b:?}");
    assert_eq!(unequal.gpus, vec![0, 1], "both GPUs stay in use");
    assert_eq!(equal.profile.name, "gpu-24gb");
    assert_eq!(unequal.profile.name, "gpu-16gb", "the smaller card sets the tier");
    let why = unequal
        .rejected
        .iter()
        .find(|r| r.profile == "gpu-24gb")
        .expect("gpu-24gb rejected");
    assert!(
        why.reason.contains("GPU 1") && why.reason.contains("any of them"),
        "{}",
        why.reason
    );
}
