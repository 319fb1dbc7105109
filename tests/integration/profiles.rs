//! Profile files: the shipped ones are valid, and every kind of mistake is an error naming the
//! file, the line and the field, with what to do.

use kstrap::profile::{self, parse};

const GOOD: &str = "\
name: bad
description: a test profile
priority: 5
distro: k3s
stack: voice-ai
requires:
  memory_gib: 8
  cpus: 2
  disk_gib: 20
recommends:
  memory_gib: 16
  cpus: 4
  disk_gib: 40
";

fn with_gpu(replicas: &str, sharing: &str) -> String {
    format!("{GOOD}gpu:\n  operator: true\n  sharing: {sharing}\n  replicas: {replicas}\n").replace(
        "  disk_gib: 20\n",
        "  disk_gib: 20\n  gpu:\n    count: 1\n    vram_gib: 30\n",
    )
}

/// (case name, file text, line the error must point at)
fn bad_cases() -> Vec<(&'static str, String, usize)> {
    vec![
        ("unknown_top_level_field", format!("{GOOD}colour: red\n"), 14),
        (
            "misspelled_requirement",
            GOOD.replace("memory_gib: 8", "memroy_gib: 8"),
            7,
        ),
        ("cpus_not_a_number", GOOD.replace("cpus: 2", "cpus: two"), 8),
        ("unknown_distro", GOOD.replace("distro: k3s", "distro: k8s"), 4),
        (
            "missing_requires",
            GOOD.split("requires:").next().unwrap().to_string()
                + "recommends:\n  memory_gib: 16\n  cpus: 4\n  disk_gib: 40\n",
            6,
        ),
        ("negative_memory", GOOD.replace("memory_gib: 8", "memory_gib: -8"), 7),
        ("zero_cpus", GOOD.replace("cpus: 2", "cpus: 0"), 8),
        (
            "recommendation_below_requirement",
            GOOD.replace("  memory_gib: 16", "  memory_gib: 4"),
            11,
        ),
        ("name_differs_from_file", GOOD.replace("name: bad", "name: other"), 1),
        ("invalid_name", GOOD.replace("name: bad", "name: Bad_Name"), 1),
        (
            "empty_description",
            GOOD.replace("description: a test profile", "description: \"\""),
            2,
        ),
        ("time_slicing_one_replica", with_gpu("1", "time-slicing"), 20),
        ("no_sharing_four_replicas", with_gpu("4", "none"), 20),
        ("unknown_sharing", with_gpu("4", "slicing"), 19),
        (
            "operator_without_gpu_requirement",
            format!("{GOOD}gpu:\n  operator: true\n  sharing: time-slicing\n  replicas: 4\n"),
            15,
        ),
        (
            "disable_unknown_component",
            format!("{GOOD}cluster:\n  disable: [traefik, coredns]\n"),
            15,
        ),
        ("yaml_syntax", GOOD.replace("cpus: 2", "cpus: [2"), 8),
        ("tab_indentation", GOOD.replace("  cpus: 2", "\tcpus: 2"), 7),
    ]
}

#[test]
fn shipped_profiles_are_valid_and_named_after_their_files() {
    let all = profile::embedded().unwrap();
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu-fallback",
            "gpu-12gb",
            "gpu-16gb",
            "gpu-24gb",
            "gpu-48gb",
            "gpu-6gb",
            "gpu-8gb",
            "laptop-8gb",
            "multi-gpu",
            "rtx-5090"
        ]
    );
    // Every GPU tier states its VRAM plan; no CPU profile does.
    for p in &all {
        assert_eq!(p.vram.is_some(), p.uses_gpu(), "{}", p.name);
    }
    let rtx = all.iter().find(|p| p.name == "rtx-5090").unwrap();
    assert_eq!(rtx.requires.gpu.as_ref().map(|g| g.vram_gib), Some(30.0));
    assert!(rtx.gpu.operator && rtx.gpu.replicas == 4);
    let laptop = all.iter().find(|p| p.name == "laptop-8gb").unwrap();
    assert_eq!(laptop.distro, kstrap::distro::Distro::K0s);
    assert!(!laptop.uses_gpu());
}

#[test]
fn good_profile_parses() {
    let p = parse("profiles/bad.yaml", Some("bad"), GOOD).unwrap();
    assert_eq!(p.requires.memory_gib, 8.0);
    let g = parse("profiles/bad.yaml", Some("bad"), &with_gpu("4", "time-slicing")).unwrap();
    assert_eq!(g.gpu.replicas, 4);
}

#[test]
fn every_bad_profile_names_file_line_and_fix() {
    let cases = bad_cases();
    assert!(cases.len() >= 10);
    for (name, text, line) in cases {
        let err = match parse("profiles/bad.yaml", Some("bad"), &text) {
            Ok(_) => panic!("{name}: accepted:\n{text}"),
            Err(e) => e,
        };
        assert_eq!(err.path, "profiles/bad.yaml", "{name}");
        assert_eq!(err.line, line, "{name}: {err}");
        assert!(!err.hint.is_empty(), "{name}");
        insta::assert_snapshot!(name, err.to_string());
    }
}

#[test]
fn a_bad_file_in_a_profiles_dir_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yaml"), GOOD.replace("name: bad", "name: good")).unwrap();
    std::fs::write(dir.path().join("bad.yaml"), GOOD.replace("cpus: 2", "cpus: -1")).unwrap();
    let err = profile::load_dir(dir.path()).unwrap_err();
    assert!(err.path.ends_with("bad.yaml"), "{err}");
    assert_eq!(err.line, 8);

    let empty = tempfile::tempdir().unwrap();
    let err = profile::load_dir(empty.path()).unwrap_err();
    assert!(err.message.contains("no *.yaml profile"), "{err}");

    let err = profile::load_dir(&empty.path().join("missing")).unwrap_err();
    assert!(err.message.starts_with("cannot read"), "{err}");
}

/// Issue 6: every built-in profile's stack, sized for that profile, fits the smallest host the
/// profile accepts, less what the distribution and the system need (1 CPU, 2 GiB); GPU shares fit
/// the GPUs × replicas the profile advertises.
#[test]
fn each_profile_sizes_its_stack_to_fit_its_minimum_host() {
    const HEADROOM_CPU: f64 = 1.0;
    const HEADROOM_MEM: f64 = 2.0 * 1024.0 * 1024.0 * 1024.0;
    for p in kstrap::profile::embedded().unwrap() {
        let stack = kstrap::stack::load(&p.stack, None).unwrap();
        assert!(
            stack.sized_profiles().contains(&p.name.as_str()),
            "stack {} has no sizing for profile {}",
            p.stack,
            p.name
        );
        let (cpu, mem, gpu) = stack.sized(&p.name).total_requests();
        let cpu_budget = p.requires.cpus as f64 - HEADROOM_CPU;
        let mem_budget = p.requires.memory_gib * 1024.0 * 1024.0 * 1024.0 - HEADROOM_MEM;
        assert!(cpu <= cpu_budget, "{}: requests {cpu} CPUs > {cpu_budget}", p.name);
        assert!(
            mem <= mem_budget,
            "{}: requests {:.1} GiB > {:.1} GiB",
            p.name,
            mem / 1073741824.0,
            mem_budget / 1073741824.0
        );
        let shares = p.requires.gpu.as_ref().map(|g| g.count).unwrap_or(0) * p.gpu.replicas;
        if p.gpu.operator {
            assert!(
                gpu >= 1 && gpu <= shares,
                "{}: {gpu} GPU shares, {shares} available",
                p.name
            );
        } else {
            assert_eq!(gpu, 0, "{}: a CPU profile requests GPUs", p.name);
        }
    }
}
