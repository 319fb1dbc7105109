//! The VRAM budget of every GPU tier over facts fixtures: the model each tier serves, what each
//! service holds, the headroom, `--model` refused with figures, and the stack carrying the same
//! Ollama limits the budget counts.

use crate::support::{fixture, fixture_path};
use assert_cmd::Command;
use kstrap::profile::{self, Overrides, SelectError, select};
use kstrap::units::GIB;

fn profiles() -> Vec<kstrap::profile::Profile> {
    profile::embedded().expect("embedded profiles are valid")
}

/// (fixture, tier, model, services on the GPU, basis)
const TIERS: &[(&str, &str, &str, &[&str], &str)] = &[
    ("laptop-16gb-6gb-gpu", "gpu-6gb", "llama3.2:3b", &["ollama"], "free"),
    ("laptop-16gb-8gb-gpu", "gpu-8gb", "llama3.1:8b", &["ollama"], "free"),
    (
        "desktop-8core-12gb",
        "gpu-12gb",
        "llama3.1:8b",
        &["ollama", "whisper", "kokoro"],
        "total",
    ),
    (
        "desktop-16gb-ada",
        "gpu-16gb",
        "phi4:14b",
        &["ollama", "whisper", "kokoro"],
        "total",
    ),
    (
        "desktop-16gb-blackwell",
        "gpu-16gb",
        "phi4:14b",
        &["ollama", "whisper", "kokoro"],
        "total",
    ),
    (
        "desktop-24gb",
        "gpu-24gb",
        "gemma3:27b",
        &["ollama", "whisper", "kokoro"],
        "total",
    ),
    // Whole GPUs: Ollama on all but one (its model split over them), Whisper on the last.
    (
        "two-24gb-gpus",
        "multi-gpu",
        "gemma3:27b",
        &["ollama", "whisper"],
        "total",
    ),
    (
        "three-24gb-gpus",
        "multi-gpu",
        "llama3.3:70b",
        &["ollama", "whisper"],
        "total",
    ),
    (
        "rtx5090-96gb",
        "rtx-5090",
        "llama3.1:8b",
        &["ollama", "whisper", "kokoro", "agent (off by default)"],
        "total",
    ),
    (
        "workstation-48gb",
        "gpu-48gb",
        "llama3.3:70b",
        &["ollama", "whisper", "kokoro"],
        "total",
    ),
    (
        "h100-real",
        "gpu-24gb",
        "gemma3:27b",
        &["ollama", "whisper", "kokoro"],
        "total",
    ),
    (
        "h100-80gb",
        "gpu-48gb",
        "llama3.3:70b",
        &["ollama", "whisper", "kokoro"],
        "total",
    ),
];

#[test]
fn every_tier_fixture_gets_a_budget_that_fits_with_its_model() {
    let profiles = profiles();
    for (name, tier, model, services, basis) in TIERS {
        let facts = fixture(name);
        let sel = select(&facts, &profiles, &Overrides::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sel.profile.name, *tier, "{name}: {:?}", sel.rejected);
        let b = sel.vram_budget.as_ref().unwrap_or_else(|| panic!("{name}: no budget"));
        assert_eq!(b.kind, "estimate");
        assert_eq!(b.model, *model, "{name}");
        assert_eq!(b.basis, *basis, "{name}");
        assert!(b.fits, "{name}: {b:#?}");
        let rows: Vec<&str> = b.rows.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(rows, services.to_vec(), "{name}");
        if b.per_gpu.is_empty() {
            assert_eq!(b.used_bytes, b.rows.iter().map(|r| r.bytes).sum::<u64>());
        } else {
            // Whole GPUs: one slot per GPU, each within its VRAM; `used` is the fullest one's.
            assert_eq!(b.per_gpu.len(), sel.gpus.len(), "{name}");
            for g in &b.per_gpu {
                assert!(
                    g.fits && g.used_bytes + b.min_headroom_bytes <= g.vram_bytes,
                    "{name}: {g:?}"
                );
            }
            assert_eq!(Some(b.used_bytes), b.per_gpu.iter().map(|g| g.used_bytes).max());
        }
        assert!(b.used_bytes + b.min_headroom_bytes <= b.vram_bytes, "{name}");
        assert_eq!(b.headroom_bytes, b.vram_bytes - b.used_bytes);
        for key in [
            "OLLAMA_CONTEXT_LENGTH",
            "OLLAMA_NUM_PARALLEL",
            "OLLAMA_MAX_LOADED_MODELS",
            "OLLAMA_KV_CACHE_TYPE",
            "OLLAMA_GPU_OVERHEAD",
        ] {
            assert!(b.ollama_env.contains_key(key), "{name}: {key} not set");
        }
        let table = kstrap::budget::render(b);
        assert!(table.contains("estimate") && table.contains(model), "{table}");
    }
}

/// Seed 002's GPU memory plan stays the rtx-5090 profile's: Ollama 12, Whisper 4, Kokoro 3,
/// agent 3, 10 GB (9.3 GiB) headroom at least.
#[test]
fn rtx_5090_keeps_seed_002s_memory_plan() {
    let sel = select(&fixture("rtx5090-96gb"), &profiles(), &Overrides::default()).unwrap();
    let b = sel.vram_budget.unwrap();
    let gib: Vec<f64> = b.rows.iter().map(|r| r.bytes as f64 / GIB as f64).collect();
    assert_eq!(gib, vec![12.0, 4.0, 3.0, 3.0]);
    assert!(
        b.headroom_bytes as f64 >= 10e9,
        "{} bytes of headroom",
        b.headroom_bytes
    );
    assert!(
        b.rows[0].what.contains("allotment 12.0 GiB holds llama3.1:8b"),
        "{}",
        b.rows[0].what
    );
}

/// A laptop is budgeted on free VRAM: with the display holding more, the 8 GB tier no longer
/// fits and the host gets the 6 GB tier, with the figures in the reason.
#[test]
fn a_laptop_with_less_free_vram_drops_a_tier_with_figures() {
    let mut facts = fixture("laptop-16gb-8gb-gpu");
    facts.gpus[0].memory_free_bytes = 6 * GIB;
    let sel = select(&facts, &profiles(), &Overrides::default()).unwrap();
    assert_eq!(sel.profile.name, "gpu-6gb");
    let why = &sel.rejected.iter().find(|r| r.profile == "gpu-8gb").unwrap().reason;
    assert!(
        why.contains("VRAM budget with llama3.1:8b needs 5.6 GiB + 1.0 GiB headroom") && why.contains("6.0 GiB free"),
        "{why}"
    );
}

#[test]
fn model_flag_is_checked_against_the_budget_and_the_disk() {
    let profiles = profiles();
    let facts = fixture("desktop-8core-12gb");
    let with = |m: &str| Overrides {
        model: Some(m.into()),
        ..Overrides::default()
    };
    // A smaller model fits: chosen, said, and the budget is computed for it.
    let sel = select(&facts, &profiles, &with("llama3.2:3b")).unwrap();
    assert_eq!(sel.profile.name, "gpu-12gb");
    assert_eq!(sel.model.as_deref(), Some("llama3.2:3b"));
    assert_eq!(sel.vram_budget.as_ref().unwrap().model, "llama3.2:3b");
    assert!(sel.reasons.iter().any(|r| r == "model llama3.2:3b named with --model"));
    // Too big for the card: refused, with the figures.
    let err = select(&facts, &profiles, &with("gemma3:27b")).unwrap_err();
    let SelectError::ModelDoesNotFit { shortfalls, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        shortfalls[0].contains("VRAM budget with gemma3:27b needs 24.4 GiB + 1.5 GiB headroom; GPU 0 NVIDIA GeForce RTX 3060 has 12.0 GiB total"),
        "{shortfalls:?}"
    );
    assert!(err.to_string().contains("name a smaller model"), "{err}");
    // Bounded by free disk too: the H100 capture has the VRAM for 70B but not the disk.
    let err = select(&fixture("h100-real"), &profiles, &with("llama3.3:70b")).unwrap_err();
    assert!(
        err.to_string()
            .contains("llama3.3:70b (43 GB) with the stack's images needs"),
        "{err}"
    );
    // A model kstrap has no figures for is bad input, listing the ones it has.
    let err = select(&facts, &profiles, &with("mystery:7b")).unwrap_err();
    assert!(matches!(err, SelectError::Budget(_)), "{err}");
    assert!(err.to_string().contains("llama3.1:8b"), "{err}");
}

/// The stack's per-tier sizing carries exactly the Ollama limits and model the budget counts
/// (`kstrap apply --profile` uses the stack alone), and puts on the GPU exactly the services
/// the budget gives VRAM to.
#[test]
fn stack_sizing_matches_each_tiers_budget() {
    let stack = kstrap::stack::load("voice-ai", None).unwrap();
    for p in profiles().into_iter().filter(|p| p.vram.is_some()) {
        let facts = TIERS
            .iter()
            .find(|t| t.1 == p.name)
            .map(|t| fixture(t.0))
            .unwrap_or_else(|| panic!("{}: no fixture", p.name));
        let sel = select(
            &facts,
            &profiles(),
            &Overrides {
                profile: Some(p.name.clone()),
                ..Overrides::default()
            },
        )
        .unwrap();
        let b = sel.vram_budget.unwrap();
        let sized = stack.sized(&p.name);
        let object = |kind: &str, name: &str| {
            sized
                .stages
                .iter()
                .flat_map(|s| &s.objects)
                .find(|o| o.reference.kind == kind && o.reference.name == name)
                .map(|o| o.value.clone())
                .unwrap_or_else(|| panic!("{kind}/{name}"))
        };
        let env_of = |v: &serde_json::Value, key: &str| -> Option<String> {
            v.pointer("/spec/template/spec/containers/0/env")?
                .as_array()?
                .iter()
                .find(|e| e["name"] == key)
                .and_then(|e| e["value"].as_str().map(str::to_string))
        };
        let ollama = object("Deployment", "ollama");
        for (k, v) in &b.ollama_env {
            assert_eq!(env_of(&ollama, k).as_deref(), Some(v.as_str()), "{}: {k}", p.name);
        }
        // A whole-GPU profile's model depends on the GPUs (the plan sets it); the stack alone
        // carries the profile's own, the floor.
        let model = if b.per_gpu.is_empty() {
            b.model.clone()
        } else {
            p.vram.as_ref().unwrap().ollama.model.clone()
        };
        assert_eq!(
            env_of(&object("Job", "ollama-model-pull"), "MODEL").as_deref(),
            Some(model.as_str()),
            "{}",
            p.name
        );
        assert_eq!(
            env_of(&object("Deployment", "open-webui"), "DEFAULT_MODELS").as_deref(),
            Some(model.as_str()),
            "{}",
            p.name
        );
        for service in ["ollama", "whisper", "kokoro"] {
            let gpu = object("Deployment", service)
                .pointer("/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu")
                .is_some();
            let budgeted = b.rows.iter().any(|r| r.service == service);
            assert_eq!(
                gpu, budgeted,
                "{}: {service} on the GPU = {gpu}, in the budget = {budgeted}",
                p.name
            );
        }
    }
}

/// Whole GPUs (`multi-gpu`, sharing none): each GPU has a budget of its own; Ollama's model
/// is the largest its GPUs hold together, split over them, and its pod asks for them all.
#[test]
fn whole_gpus_split_the_largest_model_over_ollamas_gpus() {
    let sel = select(&fixture("three-24gb-gpus"), &profiles(), &Overrides::default()).unwrap();
    assert_eq!(sel.profile.name, "multi-gpu");
    assert_eq!(sel.gpu_shares(), 3, "one nvidia.com/gpu per GPU");
    let b = sel.vram_budget.as_ref().unwrap();
    assert_eq!((b.model.as_str(), b.ollama_gpus), ("llama3.3:70b", 2));
    let holders: Vec<Vec<&str>> = b
        .per_gpu
        .iter()
        .map(|g| g.rows.iter().map(|r| r.service.as_str()).collect())
        .collect();
    assert_eq!(holders, [vec!["ollama"], vec!["ollama"], vec!["whisper"]]);
    // The split: half the layers on each of Ollama's GPUs, and together at least the weights.
    assert!(
        b.per_gpu[0].rows[0].what.starts_with("40 of 80 layers of llama3.3:70b"),
        "{b:#?}"
    );
    assert!(b.rows[0].bytes >= 43_000_000_000, "{}", b.rows[0].bytes);
    insta::assert_snapshot!(kstrap::budget::render(b));

    // The plan puts Ollama on both of its GPUs, with the budget's model.
    let stack = kstrap::stack::load("voice-ai", None).unwrap();
    let mut sized = stack.sized("multi-gpu");
    sized.overlay(&kstrap::budget::stack_overlays(Some(b), None));
    let ollama = sized
        .stages
        .iter()
        .flat_map(|s| &s.objects)
        .find(|o| o.reference.kind == "Deployment" && o.reference.name == "ollama")
        .unwrap();
    let c = ollama.value.pointer("/spec/template/spec/containers/0").unwrap();
    assert_eq!(
        c.pointer("/resources/limits/nvidia.com~1gpu"),
        Some(&serde_json::json!("2")),
        "{c}"
    );
    let pull = sized
        .stages
        .iter()
        .flat_map(|s| &s.objects)
        .find(|o| o.reference.kind == "Job" && o.reference.name == "ollama-model-pull")
        .unwrap();
    assert!(
        pull.value.to_string().contains(r#""value":"llama3.3:70b""#),
        "{}",
        pull.value
    );

    // Two GPUs: Ollama keeps one whole 24 GB GPU, which holds the 27B model, not the 70B.
    let sel = select(&fixture("two-24gb-gpus"), &profiles(), &Overrides::default()).unwrap();
    let b = sel.vram_budget.unwrap();
    assert_eq!((b.model.as_str(), b.ollama_gpus), ("gemma3:27b", 1));
}

/// The whole-GPU model is bounded by the smallest GPU (the kubelet picks which GPU a pod gets)
/// and by the disk and RAM; and time-slicing stays the choice below two GPUs of 16 GB.
#[test]
fn whole_gpus_are_budgeted_on_the_smallest_and_bounded_by_disk() {
    // A 24 GB and a 16 GB card: any slot may be the 16 GB one, so Ollama gets a 16 GB model.
    let mut f = fixture("two-24gb-gpus");
    f.gpus[1].memory_total_bytes = 16376 * kstrap::units::MIB;
    let sel = select(&f, &profiles(), &Overrides::default()).unwrap();
    assert_eq!(sel.profile.name, "multi-gpu");
    let b = sel.vram_budget.unwrap();
    assert_eq!(b.model, "phi4:14b");
    assert!(b.why[0].contains("of the smallest, GPU 1"), "{:?}", b.why);

    // Two 48 GB cards with 80 GiB free: the 70B model (43 GB more than the 60 GiB the profile
    // needs with its own 9 GB model) does not fit the disk; the 27B one does.
    let mut f = fixture("two-gpus");
    f.disk.available_bytes = 80 * GIB;
    let b = select(&f, &profiles(), &Overrides::default())
        .unwrap()
        .vram_budget
        .unwrap();
    assert_eq!(b.model, "gemma3:27b");
    f.disk.available_bytes = 200 * GIB;
    let b = select(&f, &profiles(), &Overrides::default())
        .unwrap()
        .vram_budget
        .unwrap();
    assert_eq!(b.model, "llama3.3:70b");

    // --model larger than the GPUs hold is refused with the per-GPU figures.
    let f = fixture("two-24gb-gpus");
    let o = Overrides {
        model: Some("llama3.3:70b".into()),
        ..Overrides::default()
    };
    match select(&f, &profiles(), &o) {
        Err(SelectError::ModelDoesNotFit {
            profile, shortfalls, ..
        }) => {
            assert_eq!(profile, "multi-gpu");
            assert!(shortfalls.join(" ").contains("llama3.3:70b"), "{shortfalls:?}");
        }
        other => panic!("{other:?}"),
    }

    // Two 12 GB cards: below the whole-GPU threshold, both time-sliced.
    let mut f = fixture("two-24gb-gpus");
    for g in &mut f.gpus {
        g.memory_total_bytes = 12288 * kstrap::units::MIB;
    }
    let sel = select(&f, &profiles(), &Overrides::default()).unwrap();
    assert_eq!(sel.profile.name, "gpu-12gb");
    let multi = sel.rejected.iter().find(|r| r.profile == "multi-gpu").unwrap();
    assert!(
        multi.reason.contains("needs 2 GPU(s) with ≥ 15 GiB"),
        "{}",
        multi.reason
    );
}

fn kstrap() -> Command {
    let mut c = Command::cargo_bin("kstrap").unwrap();
    c.env_clear().env("NO_COLOR", "1");
    c
}

#[test]
fn plan_and_detect_print_the_budget_table_and_json() {
    let facts = fixture_path("desktop-24gb");
    let out = kstrap().args(["plan", "--facts"]).arg(&facts).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("VRAM budget (estimate, total VRAM of GPU 0 NVIDIA GeForce RTX 4090: 24.0 GiB)"),
        "{text}"
    );
    assert!(text.contains("OLLAMA_CONTEXT_LENGTH=4096"), "{text}");

    let out = kstrap()
        .args(["plan", "-o", "json", "--facts"])
        .arg(&facts)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["vram_budget"]["model"], "gemma3:27b", "{v}");
    assert_eq!(v["vram_budget"]["kind"], "estimate");

    let out = kstrap()
        .args(["detect", "-o", "json", "--facts"])
        .arg(&facts)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["profile"]["vram_budget"]["rows"][0]["service"], "ollama", "{v}");
    let out = kstrap().args(["detect", "--facts"]).arg(&facts).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("VRAM budget (estimate"));
}

#[test]
fn a_model_that_does_not_fit_is_refused_with_exit_3() {
    let out = kstrap()
        .args(["plan", "--model", "llama3.3:70b", "--facts"])
        .arg(fixture_path("desktop-16gb-ada"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--model llama3.3:70b does not fit profile gpu-16gb"),
        "{err}"
    );
    let out = kstrap()
        .args(["plan", "--model", "nonesuch:1b", "--facts"])
        .arg(fixture_path("desktop-16gb-ada"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The plan is fixed at the first install: a re-run keeps the recorded tier and model even when
/// a browser holds VRAM or the driver broke, says why, and changes only when asked.
#[test]
fn a_rerun_keeps_the_first_installs_tier_and_model() {
    let profiles = profiles();
    let kept = kstrap::profile::KeptPlan {
        profile: "gpu-8gb".into(),
        model: Some("llama3.1:8b".into()),
        source: "/var/lib/kstrap/state.json".into(),
        ..Default::default()
    };
    let rerun = Overrides {
        kept: Some(kept.clone()),
        ..Overrides::default()
    };
    // A browser holds VRAM: a fresh choice would drop to the 6 GB tier; the re-run keeps 8 GB.
    let mut facts = fixture("laptop-16gb-8gb-gpu");
    facts.gpus[0].memory_free_bytes = 6 * GIB;
    assert_eq!(
        select(&facts, &profiles, &Overrides::default()).unwrap().profile.name,
        "gpu-6gb"
    );
    let sel = select(&facts, &profiles, &rerun).unwrap();
    assert_eq!((sel.profile.name.as_str(), sel.chosen_by), ("gpu-8gb", "kept"));
    assert_eq!(sel.vram_budget.as_ref().unwrap().model, "llama3.1:8b");
    assert!(
        sel.reasons[0].contains("gpu-8gb kept from the first install (/var/lib/kstrap/state.json)"),
        "{:?}",
        sel.reasons
    );
    assert!(
        sel.reasons
            .iter()
            .any(|r| r.contains("this host would get gpu-6gb today")),
        "{:?}",
        sel.reasons
    );
    assert!(
        sel.reasons
            .iter()
            .any(|r| r == "model llama3.1:8b kept from the first install")
    );
    assert!(
        sel.warnings.iter().any(|w| w.contains("forced past the VRAM budget")),
        "{:?}",
        sel.warnings
    );

    // The driver broke: not moved to the CPU profile (images and model swapped); preflight
    // refuses the kept GPU profile with how to fix it.
    let mut broken = fixture("laptop-16gb-8gb-gpu");
    broken.gpus.clear();
    broken.nvidia.unavailable_reason = Some("the NVIDIA kernel driver is not loaded".into());
    let sel = select(&broken, &profiles, &rerun).unwrap();
    assert_eq!(sel.profile.name, "gpu-8gb");
    let findings = kstrap::checks::preflight(&broken, Some(&sel));
    assert!(
        findings
            .iter()
            .any(|f| f.check == "gpu" && f.severity == kstrap::checks::Severity::Fail),
        "{findings:#?}"
    );

    // Asked for another: --profile wins over the kept plan, and --model over the kept model.
    let asked = Overrides {
        profile: Some("gpu-6gb".into()),
        kept: Some(kept.clone()),
        ..Overrides::default()
    };
    assert_eq!(select(&facts, &profiles, &asked).unwrap().profile.name, "gpu-6gb");
    let model = Overrides {
        model: Some("llama3.2:3b".into()),
        kept: Some(kept),
        ..Overrides::default()
    };
    let sel = select(&facts, &profiles, &model).unwrap();
    assert_eq!(
        (sel.profile.name.as_str(), sel.model.as_deref()),
        ("gpu-8gb", Some("llama3.2:3b"))
    );
}
