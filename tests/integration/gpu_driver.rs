//! `--gpu-driver host|operator|none` on machines whose NVIDIA GPU has no host driver: the
//! selection, the preflight, the plan and the refusals, from the `gpu-*` facts fixtures
//! (tests/fixtures/facts/DRIVER.md).

use crate::support::{fixture, fixture_path};
use assert_cmd::Command;
use kstrap::checks::{Finding, Severity, preflight, worst};
use kstrap::facts::HostFacts;
use kstrap::profile::{self, GpuDriver, Overrides, SelectError, Selection, select};

fn choose(facts: &HostFacts, gpu_driver: GpuDriver, named: Option<&str>) -> Result<Selection, SelectError> {
    let profiles = profile::embedded().unwrap();
    select(
        facts,
        &profiles,
        &Overrides {
            profile: named.map(str::to_string),
            gpu_driver,
            ..Overrides::default()
        },
    )
}

fn driver_findings(facts: &HostFacts, sel: &Selection) -> Vec<Finding> {
    preflight(facts, Some(sel))
        .into_iter()
        .filter(|f| f.check == "gpu-driver")
        .collect()
}

/// The smallest VRAM any built-in GPU tier asks for, and the tiers that ask for it.
fn smallest_tiers() -> (f64, Vec<String>) {
    let profiles = profile::embedded().unwrap();
    let vram = |p: &profile::Profile| p.requires.gpu.as_ref().map(|g| g.vram_gib);
    let min = profiles.iter().filter_map(vram).fold(f64::INFINITY, f64::min);
    let names = profiles
        .iter()
        .filter(|p| vram(p) == Some(min))
        .map(|p| p.name.clone())
        .collect();
    (min, names)
}

#[test]
fn without_the_flag_a_gpu_without_a_driver_gets_a_cpu_profile_and_both_ways_out() {
    for (name, bound) in [("gpu-no-driver", "no driver bound"), ("gpu-nouveau", "nouveau bound")] {
        let f = fixture(name);
        let sel = choose(&f, GpuDriver::Host, None).unwrap();
        assert!(!sel.profile.uses_gpu(), "{name}: {}", sel.profile.name);
        assert!(sel.gpus.is_empty());
        let note = sel.gpu_notes.join("\n");
        assert!(
            note.contains(&format!(
                "no GPU, because no NVIDIA driver is loaded (PCI 0000:01:00.0 10de:2684, {bound})"
            )),
            "{name}: {note}"
        );
        assert!(
            note.contains("install the NVIDIA driver on the host (the usual way"),
            "{note}"
        );
        assert!(note.contains("--gpu-driver operator"), "{note}");
        // Preflight warns (the CPU profile runs) and names both ways as well.
        let found = driver_findings(&f, &sel);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].severity, Severity::Warn);
        assert!(found[0].what.contains("10de:2684"), "{}", found[0].what);
        let fix = found[0].how_to_fix.as_deref().unwrap();
        assert!(fix.contains("install the NVIDIA driver on the host") && fix.contains("--gpu-driver operator"));
    }
}

#[test]
fn operator_picks_the_smallest_gpu_tier_and_says_vram_is_unknown() {
    let f = fixture("gpu-no-driver");
    let sel = choose(&f, GpuDriver::Operator, None).unwrap();
    let (min, tiers) = smallest_tiers();
    assert!(
        tiers.contains(&sel.profile.name),
        "{} not in {tiers:?}",
        sel.profile.name
    );
    assert_eq!(sel.profile.requires.gpu.as_ref().unwrap().vram_gib, min);
    assert_eq!(sel.chosen_by, "auto");
    assert_eq!(sel.gpus, vec![0]);
    assert_eq!(sel.gpu_driver, GpuDriver::Operator);
    assert!(sel.vram_budget.is_none(), "no VRAM figure to budget against");
    let reasons = sel.reasons.join("\n");
    assert!(reasons.contains("VRAM is unknown until a driver runs"), "{reasons}");
    assert!(reasons.contains("PCI 0000:01:00.0 10de:2684"), "{reasons}");
    // Larger tiers are named with how to choose them; CPU profiles with why not.
    let larger = sel
        .rejected
        .iter()
        .find(|r| r.profile == "gpu-24gb")
        .expect("gpu-24gb rejected");
    assert!(larger.reason.contains("--profile gpu-24gb"), "{}", larger.reason);
    let cpu = sel.rejected.iter().find(|r| r.profile == "cpu-fallback").unwrap();
    assert!(
        cpu.reason.contains("--gpu-driver operator asks for one"),
        "{}",
        cpu.reason
    );
    // Nothing stands in the way on this host: the driver finding passes and says what it does.
    let found = driver_findings(&f, &sel);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].severity, Severity::Pass);
    assert!(found[0].what.contains("580.126.20") && found[0].what.contains("kernel headers"));
    assert_ne!(worst(&preflight(&f, Some(&sel))), Severity::Fail);
}

#[test]
fn operator_takes_a_named_tier_at_its_word_and_refuses_a_cpu_profile() {
    let f = fixture("gpu-no-driver");
    let sel = choose(&f, GpuDriver::Operator, Some("gpu-24gb")).unwrap();
    assert_eq!(sel.profile.name, "gpu-24gb");
    assert_eq!(sel.chosen_by, "--profile");
    assert!(
        sel.reasons.iter().any(|r| r.contains("taken at your word")),
        "{:?}",
        sel.reasons
    );
    let err = choose(&f, GpuDriver::Operator, Some("cpu-fallback")).unwrap_err();
    assert!(matches!(err, SelectError::GpuDriverNeedsGpuProfile { .. }), "{err}");
    assert!(err.to_string().contains("gpu-24gb"), "{err}");
    // A named tier beyond the host's memory is refused like any other.
    let mut small = fixture("gpu-no-driver");
    small.memory.total_bytes = 4 << 30;
    let err = choose(&small, GpuDriver::Operator, Some("gpu-24gb")).unwrap_err();
    assert!(matches!(err, SelectError::Refused { .. }), "{err}");
}

#[test]
fn operator_is_refused_with_nouveau_secure_boot_vfio_a_host_driver_or_no_driver_image() {
    let check = |f: &HostFacts, want: &str, fix: &str| {
        let sel = choose(f, GpuDriver::Operator, None).unwrap();
        assert!(sel.profile.uses_gpu());
        let found = driver_findings(f, &sel);
        let fail = found
            .iter()
            .find(|x| x.severity == Severity::Fail && x.what.contains(want))
            .unwrap_or_else(|| panic!("no failure naming {want:?}: {found:#?}"));
        assert!(fail.how_to_fix.as_deref().unwrap().contains(fix), "{fail:#?}");
        assert!(!found.iter().any(|x| x.severity == Severity::Pass), "{found:#?}");
    };
    check(
        &fixture("gpu-nouveau"),
        "nouveau driver is loaded (PCI 0000:01:00.0",
        "blacklist nouveau",
    );
    check(&fixture("gpu-secure-boot"), "Secure Boot is on", "signed NVIDIA driver");
    let mut vfio = fixture("gpu-no-driver");
    vfio.nvidia.pci_gpus[0].driver = Some("vfio-pci".into());
    check(&vfio, "bound to vfio-pci", "vfio-pci.ids");
    let mut fedora = fixture("gpu-no-driver");
    fedora.os.id = "fedora".into();
    fedora.os.version_id = Some("42".into());
    fedora.os.pretty_name = "Fedora Linux 42 (Workstation Edition)".into();
    check(
        &fedora,
        "Fedora Linux 42",
        "install the NVIDIA driver from your distribution",
    );
    // A host driver that works: the GPU profile comes from NVML, and the second driver is refused.
    let host = fixture("rtx5090-96gb");
    let sel = choose(&host, GpuDriver::Operator, None).unwrap();
    assert_eq!(sel.profile.name, "rtx-5090");
    let found = driver_findings(&host, &sel);
    assert!(
        found
            .iter()
            .any(|x| x.severity == Severity::Fail && x.what.contains("host NVIDIA driver")),
        "{found:#?}"
    );
}

#[test]
fn none_leaves_every_gpu_alone() {
    for name in ["rtx5090-96gb", "gpu-no-driver"] {
        let f = fixture(name);
        let sel = choose(&f, GpuDriver::None, None).unwrap();
        assert!(!sel.profile.uses_gpu(), "{name}: {}", sel.profile.name);
        assert!(sel.gpus.is_empty());
        assert!(
            sel.gpu_notes.iter().any(|n| n.starts_with("--gpu-driver none:")),
            "{name}: {:?}",
            sel.gpu_notes
        );
        let all = preflight(&f, Some(&sel));
        assert!(!all.iter().any(|x| x.check == "gpu-unused"), "{all:#?}");
        let found: Vec<_> = all.iter().filter(|x| x.check == "gpu-driver").collect();
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].severity, Severity::Pass);
    }
    // Without any NVIDIA GPU the flags change nothing worth a note, and operator says why.
    let bare = fixture("laptop-8gb-nogpu");
    assert!(choose(&bare, GpuDriver::None, None).unwrap().gpu_notes.is_empty());
    let op = choose(&bare, GpuDriver::Operator, None).unwrap();
    assert!(!op.profile.uses_gpu());
    assert!(
        op.gpu_notes[0].contains("no NVIDIA GPU on the PCI bus"),
        "{:?}",
        op.gpu_notes
    );
}

// ---- the binary ------------------------------------------------------------------------------

fn kstrap() -> Command {
    let mut c = Command::cargo_bin("kstrap").unwrap();
    for (k, _) in std::env::vars() {
        if k.starts_with("KSTRAP_") || k == "SUDO_USER" || k.to_ascii_lowercase().ends_with("_proxy") {
            c.env_remove(k);
        }
    }
    c.env("HOME", "/home/tester").env("NO_COLOR", "1").env("COLUMNS", "100");
    c
}

fn run(args: &[&str], code: i32) -> (String, String) {
    let out = kstrap().args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(code), "{args:?}\n{stdout}\n{stderr}");
    (stdout, stderr)
}

fn fx(name: &str) -> String {
    fixture_path(name).display().to_string()
}

#[test]
fn plans_for_each_choice() {
    let f = fx("gpu-no-driver");
    let (host, _) = run(&["plan", "--facts", &f], 0);
    insta::assert_snapshot!("plan_gpu_no_driver_host", host);
    let (operator, _) = run(&["plan", "--facts", &f, "--gpu-driver", "operator"], 0);
    insta::assert_snapshot!("plan_gpu_no_driver_operator", operator);
    let (json, _) = run(&["plan", "--facts", &f, "--gpu-driver", "operator", "-o", "json"], 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let wait = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "wait-gpu")
        .expect("wait-gpu step");
    // The driver pod's startup probe (60 s + 120 × 10 s) on top of the usual 900 s.
    assert_eq!(wait["action"]["timeout_s"], 900 + 60 + 1200, "{wait}");
    let (none, _) = run(&["plan", "--facts", &fx("rtx5090-96gb"), "--gpu-driver", "none"], 0);
    assert!(none.contains("GPU note: --gpu-driver none: GPU 0"), "{none}");
    assert!(none.contains("GPU sharing: none"), "{none}");
    assert!(!none.contains("install-gpu-operator"), "{none}");
}

#[test]
fn refused_choices_exit_3_and_write_nothing() {
    for (fixture, want) in [("gpu-nouveau", "nouveau"), ("gpu-secure-boot", "Secure Boot")] {
        let root = tempfile::tempdir().unwrap();
        let out = kstrap()
            .env("KSTRAP_HOST_ROOT", root.path())
            .args(["up", "--yes", "--facts", &fx(fixture), "--gpu-driver", "operator"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{fixture}: {stderr}");
        assert!(
            stderr.contains("preflight refused") && stderr.contains(want),
            "{stderr}"
        );
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            0,
            "{fixture}: something was written"
        );
        // The plan shows the same refusal and exits 0.
        let (plan, _) = run(&["plan", "--facts", &fx(fixture), "--gpu-driver", "operator"], 0);
        assert!(plan.contains(want), "{plan}");
    }
}

#[test]
fn bad_gpu_driver_input_is_exit_2_naming_the_flag() {
    let (_, err) = run(
        &["plan", "--facts", &fx("gpu-no-driver"), "--gpu-driver", "container"],
        2,
    );
    assert!(
        err.contains("--gpu-driver") && err.contains("host, operator, none"),
        "{err}"
    );
    let (out, _) = run(
        &[
            "-o",
            "json",
            "plan",
            "--facts",
            &fx("gpu-no-driver"),
            "--gpu-driver",
            "yes",
        ],
        2,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["exit_code"], 2);
    assert!(v["error"].as_str().unwrap().contains("--gpu-driver"), "{v}");
    let (_, err) = run(
        &[
            "plan",
            "--facts",
            &fx("gpu-no-driver"),
            "--gpu-driver",
            "operator",
            "--profile",
            "cpu-fallback",
        ],
        2,
    );
    assert!(err.contains("profile cpu-fallback uses no GPU"), "{err}");
}
