//! Profile selection over real-shaped host fixtures: every host gets an answer, with a reason.

use crate::support::{all_fixtures, fixture};
use kstrap::checks::{Severity, preflight};
use kstrap::profile::{self, Overrides, SelectError, select};

fn profiles() -> Vec<kstrap::profile::Profile> {
    profile::embedded().expect("embedded profiles are valid")
}

/// (fixture, expected profile, expected GPU indexes, a phrase the reasons must contain)
const TABLE: &[(&str, &str, &[u32], &str)] = &[
    ("laptop-8gb-nogpu", "laptop-8gb", &[], "memory 7.6 GiB ≥ 7 GiB"),
    ("laptop-vpn-proxy", "laptop-8gb", &[], "memory 7.6 GiB ≥ 7 GiB"),
    // GPU laptops with 16 GB of RAM get a GPU tier (k3s), budgeted on free VRAM.
    ("laptop-16gb-6gb-gpu", "gpu-6gb", &[0], "RTX 4050 Laptop GPU 6.0 GiB"),
    ("laptop-16gb-8gb-gpu", "gpu-8gb", &[0], "RTX 4060 Laptop GPU 8.0 GiB"),
    // An 8-core desktop with a 12 GB card is not sent to the CPU laptop profile.
    ("desktop-8core-12gb", "gpu-12gb", &[0], "8 CPUs ≥ 6"),
    ("desktop-16gb-ada", "gpu-16gb", &[0], "RTX 4080 16.0 GiB"),
    ("desktop-16gb-blackwell", "gpu-16gb", &[0], "RTX 5080 15.9 GiB"),
    ("desktop-24gb", "gpu-24gb", &[0], "RTX 4090 24.0 GiB"),
    // Two or more GPUs of 16 GB and more: each used whole, no time-slicing.
    ("two-24gb-gpus", "multi-gpu", &[0, 1], "2 GPU(s) with ≥ 15 GiB VRAM"),
    (
        "three-24gb-gpus",
        "multi-gpu",
        &[0, 1, 2],
        "sharing none: each nvidia.com/gpu is one whole GPU",
    ),
    ("rtx5090-96gb", "rtx-5090", &[0], "NVIDIA GeForce RTX 5090 31.8 GiB"),
    ("workstation-48gb", "gpu-48gb", &[0], "RTX 6000 Ada Generation 48.0 GiB"),
    ("h100-80gb", "gpu-48gb", &[0], "NVIDIA H100 80GB HBM3 79.6 GiB"),
    ("two-gpus", "multi-gpu", &[0, 1], "2 GPU(s) with ≥ 15 GiB VRAM"),
    ("driver-missing", "cpu-fallback", &[], "highest-priority profile"),
    // A GPU the PCI bus shows without a driver (tests/fixtures/facts/DRIVER.md): CPU, unless
    // `--gpu-driver operator` (gpu_driver.rs).
    ("gpu-no-driver", "cpu-fallback", &[], "highest-priority profile"),
    ("gpu-nouveau", "cpu-fallback", &[], "highest-priority profile"),
    ("gpu-secure-boot", "cpu-fallback", &[], "highest-priority profile"),
    ("wsl2", "cpu-fallback", &[], "highest-priority profile"),
    ("blackwell-old-driver", "cpu-fallback", &[], "highest-priority profile"),
    ("mig-h100", "cpu-fallback", &[], "highest-priority profile"),
    // GPUs the pinned CUDA images cannot use (src/budget/gpu-images.yaml): a Pascal P40 runs
    // Ollama but not Kokoro's cu128 build, so it gets the tier that keeps speech on the CPU; a
    // Kepler card and a 470 driver run none of them.
    ("pascal-p40-24gb", "gpu-8gb", &[0], "Tesla P40 24.0 GiB"),
    ("kepler-k6000", "cpu-fallback", &[], "highest-priority profile"),
    (
        "desktop-12gb-driver-470",
        "cpu-fallback",
        &[],
        "highest-priority profile",
    ),
    // Captured with `kstrap detect -o json` on a real H100 machine: only 64 GiB free under /var/lib,
    // below what the 70B tier and rtx-5090 need (100 GiB), so it gets the 24 GB tier's plan on
    // its GPU: the model is bounded by the disk.
    ("h100-real", "gpu-24gb", &[0], "free disk 64.0 GiB ≥ 60 GiB"),
];

#[test]
fn every_fixture_gets_the_expected_profile_with_reasons() {
    let profiles = profiles();
    for (name, want, gpus, phrase) in TABLE {
        let facts = fixture(name);
        let sel = select(&facts, &profiles, &Overrides::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            sel.profile.name, *want,
            "{name}: reasons {:?}, rejected {:?}",
            sel.reasons, sel.rejected
        );
        assert_eq!(sel.gpus, gpus.to_vec(), "{name}");
        assert!(
            sel.reasons.iter().any(|r| r.contains(phrase)),
            "{name}: no reason contains {phrase:?}: {:?}",
            sel.reasons
        );
        assert_eq!(
            sel.rejected.len(),
            profiles.len() - 1,
            "{name}: every other profile gets a reason"
        );
        assert!(sel.rejected.iter().all(|r| !r.reason.is_empty()));
    }
}

#[test]
fn the_table_covers_every_fixture_but_the_refused_ones() {
    let mut covered: Vec<&str> = TABLE.iter().map(|t| t.0).collect();
    covered.push("4gb-machine");
    for f in all_fixtures() {
        assert!(
            covered.contains(&f.as_str()),
            "fixture {f} has no row in the selection table"
        );
    }
}

#[test]
fn a_4gb_machine_is_refused_with_a_reason_per_profile() {
    let facts = fixture("4gb-machine");
    let err = select(&facts, &profiles(), &Overrides::default()).unwrap_err();
    let SelectError::NoProfileFits { rejected } = &err else {
        panic!("{err}")
    };
    assert_eq!(rejected.len(), profiles().len());
    let laptop = rejected.iter().find(|r| r.profile == "laptop-8gb").unwrap();
    assert!(laptop.reason.contains("memory 3.8 GiB < 7 GiB"), "{}", laptop.reason);
    // No profile means host-wide checks only, and still no panic.
    let findings = preflight(&facts, None);
    assert!(findings.iter().any(|f| f.check == "swap"));
}

#[test]
fn gpu_hosts_explain_why_the_gpu_is_not_used() {
    let profiles = profiles();
    let cases = [
        ("driver-missing", "rtx-5090", "no usable NVIDIA GPU", "gpu-driver"),
        ("wsl2", "rtx-5090", "no usable NVIDIA GPU", "wsl2"),
        ("blackwell-old-driver", "rtx-5090", "no usable NVIDIA GPU", "gpu-driver"),
        ("mig-h100", "rtx-5090", "no usable NVIDIA GPU", "mig"),
    ];
    for (name, rejected_profile, phrase, check) in cases {
        let facts = fixture(name);
        let sel = select(&facts, &profiles, &Overrides::default()).unwrap();
        let r = sel.rejected.iter().find(|r| r.profile == rejected_profile).unwrap();
        assert!(
            r.reason.contains(phrase) || r.reason.contains("needs 1 GPU"),
            "{name}: {}",
            r.reason
        );
        let findings = preflight(&facts, Some(&sel));
        let f = findings
            .iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("{name}: no {check} finding in {findings:#?}"));
        assert_eq!(f.severity, Severity::Warn, "{name}");
        assert!(f.how_to_fix.as_deref().is_some_and(|h| !h.is_empty()));
    }
}

#[test]
fn naming_a_profile_the_host_falls_short_of_warns_or_refuses() {
    let profiles = profiles();
    // Falls short of the recommendation only: chosen, with a warning.
    let laptop = fixture("laptop-8gb-nogpu");
    let sel = select(
        &laptop,
        &profiles,
        &Overrides {
            profile: Some("laptop-8gb".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(sel.chosen_by, "--profile");
    // Falls far short (below requirements): refused without --force…
    let err = select(
        &laptop,
        &profiles,
        &Overrides {
            profile: Some("rtx-5090".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    let SelectError::Refused { profile, shortfalls } = &err else {
        panic!("{err}")
    };
    assert_eq!(profile, "rtx-5090");
    assert!(
        shortfalls.iter().any(|s| s.contains("memory 7.6 GiB < 30 GiB")),
        "{shortfalls:?}"
    );
    assert!(err.to_string().contains("--force"));
    // …and accepted with it, every shortfall turned into a warning, no GPU step possible.
    let sel = select(
        &laptop,
        &profiles,
        &Overrides {
            profile: Some("rtx-5090".into()),
            force: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(sel.profile.name, "rtx-5090");
    assert!(sel.gpus.is_empty());
    assert!(
        sel.warnings
            .iter()
            .any(|w| w.starts_with("forced past a requirement: memory")),
        "{:?}",
        sel.warnings
    );
    let findings = preflight(&laptop, Some(&sel));
    let mem = findings.iter().find(|f| f.check == "memory").unwrap();
    assert_eq!(
        mem.severity,
        Severity::Warn,
        "forced shortfalls warn instead of failing"
    );
}

#[test]
fn unknown_profile_lists_the_available_ones() {
    let err = select(
        &fixture("rtx5090-96gb"),
        &profiles(),
        &Overrides {
            profile: Some("rtx-4090".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown profile \"rtx-4090\"; available: multi-gpu, gpu-48gb, rtx-5090, gpu-24gb, gpu-16gb, gpu-12gb, gpu-8gb, gpu-6gb, cpu-fallback, laptop-8gb"
    );
}

#[test]
fn distro_override_is_explained() {
    let sel = select(
        &fixture("rtx5090-96gb"),
        &profiles(),
        &Overrides {
            distro: Some(kstrap::distro::Distro::K0s),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(sel.distro, kstrap::distro::Distro::K0s);
    assert!(
        sel.reasons
            .iter()
            .any(|r| r.contains("distribution k0s from --distro (the profile's default is k3s)"))
    );
}

#[test]
fn the_5090_threshold_does_not_demand_a_full_32_gib() {
    // 32607 MiB is what nvidia-smi shows for an RTX 5090: 31.8 GiB.
    let facts = fixture("rtx5090-96gb");
    assert_eq!(facts.gpus[0].memory_total_bytes, 32607 * 1024 * 1024);
    let sel = select(&facts, &profiles(), &Overrides::default()).unwrap();
    assert_eq!(sel.gpu_shares(), 4);
}

/// The real H100 host is turned down for the 70B tier and rtx-5090 because of its disk, gets the
/// 24 GB tier on its GPU (no GPU left idle), and `--profile rtx-5090 --force` then plans the GPU
/// operator for its one real GPU.
#[test]
fn real_h100_capture_explains_the_disk_and_can_be_forced() {
    let facts = fixture("h100-real");
    let profiles = profiles();
    let sel = select(&facts, &profiles, &Overrides::default()).unwrap();
    for tier in ["gpu-48gb", "rtx-5090"] {
        let why = sel
            .rejected
            .iter()
            .find(|r| r.profile == tier)
            .map(|r| r.reason.clone());
        assert!(
            why.as_deref().is_some_and(|w| w.contains("64.0 GiB < 100 GiB")),
            "{tier} rejected for {why:?}"
        );
    }
    assert_eq!(sel.profile.name, "gpu-24gb");
    assert_eq!(sel.gpus, vec![0]);
    let findings = preflight(&facts, Some(&sel));
    assert!(findings.iter().all(|f| f.check != "gpu-unused"), "{findings:#?}");

    let forced = Overrides {
        profile: Some("rtx-5090".into()),
        force: true,
        ..Overrides::default()
    };
    let sel = select(&facts, &profiles, &forced).unwrap();
    assert_eq!(sel.gpus, vec![0]);
    assert_eq!(sel.gpu_shares(), 4, "1 H100 × 4 time-slicing replicas");
}
