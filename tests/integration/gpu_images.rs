//! The CUDA images' GPU architectures and driver floors (`src/budget/gpu-images.yaml`) against
//! what the stacks run on the GPU and what selection and preflight make of a host's GPU.

use crate::support::fixture;
use kstrap::budget::gpu_images::{self, for_service, gpu_services, problems};
use kstrap::checks::{Severity, preflight};
use kstrap::profile::{self, Overrides, SelectError, select};
use kstrap::stack;
use serde_json::Value;
use std::collections::BTreeSet;

fn profiles() -> Vec<kstrap::profile::Profile> {
    profile::embedded().expect("embedded profiles are valid")
}

/// (Deployment or Job name, container, image) for every container that holds a GPU share.
fn gpu_containers(s: &stack::Stack) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for o in s.stages.iter().flat_map(|st| &st.objects) {
        let Some(spec) = o.value.pointer("/spec/template/spec") else {
            continue;
        };
        for c in ["initContainers", "containers"]
            .iter()
            .filter_map(|l| spec.get(*l).and_then(Value::as_array))
            .flatten()
        {
            if c.pointer("/resources/limits/nvidia.com~1gpu").is_some() {
                out.push((
                    o.reference.name.clone(),
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["image"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn every_image_a_stack_runs_on_a_gpu_has_its_architectures_and_driver_floor() {
    let gpu_profiles: Vec<_> = profiles().into_iter().filter(|p| p.uses_gpu()).collect();
    let known: BTreeSet<&str> = gpu_images::images().iter().map(|i| i.image.as_str()).collect();
    let mut checked = 0;
    for name in stack::embedded_names() {
        let s = stack::load(&name, None).unwrap();
        for p in s
            .sized_profiles()
            .iter()
            .filter(|p| gpu_profiles.iter().any(|g| &g.name == *p))
        {
            for (object, container, image) in gpu_containers(&s.sized(p)) {
                // Images the user names are not known before `--image`: nothing to read.
                if image.starts_with("kstrap.invalid/") {
                    continue;
                }
                assert!(
                    known.contains(image.as_str()),
                    "{name} on {p}: {object}/{container} runs {image} on the GPU; add it to src/budget/gpu-images.yaml"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} GPU containers checked");
}

#[test]
fn the_table_s_services_are_what_voice_ai_puts_on_the_gpu_for_each_tier() {
    let s = stack::load("voice-ai", None).unwrap();
    for p in profiles().iter().filter(|p| p.uses_gpu()) {
        let on_gpu: BTreeSet<String> = gpu_containers(&s.sized(&p.name))
            .into_iter()
            .filter(|(object, _, _)| !object.ends_with("-pull"))
            .map(|(object, _, image)| {
                let row = for_service(&object).unwrap_or_else(|| panic!("{}: no row for {object}", p.name));
                assert_eq!(row.image, image, "{}: {object}", p.name);
                object
            })
            .collect();
        let expected: BTreeSet<String> = gpu_services(p)
            .into_iter()
            .filter(|s| *s != "operator")
            .map(str::to_string)
            .collect();
        assert_eq!(on_gpu, expected, "{}: services on the GPU", p.name);
    }
}

#[test]
fn a_pascal_gpu_gets_the_tier_whose_images_it_runs() {
    let facts = fixture("pascal-p40-24gb");
    let sel = select(&facts, &profiles(), &Overrides::default()).unwrap();
    assert_eq!(sel.profile.name, "gpu-8gb");
    for tier in ["gpu-24gb", "gpu-16gb", "gpu-12gb"] {
        let r = sel.rejected.iter().find(|r| r.profile == tier).unwrap();
        assert!(
            r.reason.contains("kokoro's image ghcr.io/remsky/kokoro-fastapi-gpu:v0.8.0-cu128 has no kernel for GPU 0 Tesla P40 (compute capability 6.1)")
                && r.reason.contains("PyTorch 2.8.0 cu128 builds for compute capability 7.0"),
            "{tier}: {}",
            r.reason
        );
        // Whisper's CTranslate2 has Pascal kernels: only Kokoro is named.
        assert!(!r.reason.contains("whisper's image"), "{tier}: {}", r.reason);
    }
    // Named, the 24 GB tier is refused (exit 3) with the same reason, unless forced.
    let named = Overrides {
        profile: Some("gpu-24gb".into()),
        ..Overrides::default()
    };
    let err = select(&facts, &profiles(), &named).unwrap_err();
    assert!(matches!(err, SelectError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("compute capability 6.1"), "{err}");
    let forced = select(&facts, &profiles(), &Overrides { force: true, ..named }).unwrap();
    let findings = preflight(&facts, Some(&forced));
    let f = findings.iter().find(|f| f.check == "gpu-images").unwrap();
    assert_eq!(f.severity, Severity::Fail, "{f:?}");
}

#[test]
fn a_kepler_gpu_and_a_470_driver_leave_the_gpu_idle_and_say_why() {
    let profiles = profiles();
    let kepler = fixture("kepler-k6000");
    let sel = select(&kepler, &profiles, &Overrides::default()).unwrap();
    assert!(!sel.profile.uses_gpu(), "{}", sel.profile.name);
    let notes = sel.gpu_notes.join("\n");
    assert!(
        notes.contains(
            "ollama's image ollama/ollama:0.12.10 has no kernel for GPU 0 Quadro K6000 (compute capability 3.5)"
        ),
        "{notes}"
    );
    let old = fixture("desktop-12gb-driver-470");
    let sel = select(&old, &profiles, &Overrides::default()).unwrap();
    assert_eq!(sel.profile.name, "cpu-fallback");
    let r = sel.rejected.iter().find(|r| r.profile == "gpu-12gb").unwrap();
    assert!(
        r.reason.contains("driver 470.256.02 is older than 525.60.13"),
        "{}",
        r.reason
    );
    assert!(sel.gpu_notes.iter().any(|n| n.contains("older than 525.60.13")));
    let findings = preflight(&old, Some(&sel));
    let f = findings
        .iter()
        .find(|f| f.check == "gpu-images")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(f.severity, Severity::Warn);
    assert!(
        f.how_to_fix
            .as_deref()
            .is_some_and(|h| h.contains("upgrade the NVIDIA driver"))
    );
}

#[test]
fn a_blackwell_card_needs_the_cu128_kokoro_image() {
    let facts = fixture("desktop-16gb-blackwell");
    let sel = select(&facts, &profiles(), &Overrides::default()).unwrap();
    assert_eq!(sel.profile.name, "gpu-16gb");
    let gpu = &facts.gpus[0];
    let driver = facts.nvidia.driver_version.as_deref();
    assert!(problems(&gpu_services(&sel.profile), gpu, driver).is_empty());
    // The release's plain GPU tag (cu126) has no sm_120 kernel: the reason the cu128 tag is pinned.
    let why = problems(&["kokoro-cu126"], gpu, driver).join("\n");
    assert!(
        why.contains("no kernel for GPU 0 NVIDIA GeForce RTX 5080 (compute capability 12.0)"),
        "{why}"
    );
    // Whisper's CTranslate2 runs on Blackwell through PTX built by CUDA 12.2.
    assert!(problems(&["whisper"], gpu, Some("535.54.02")).join("").contains("PTX"));
}
