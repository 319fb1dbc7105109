//! Preflight checks one by one: each finding appears when its condition holds, with its severity
//! and a fix, and disappears when it does not.

use crate::support::fixture;
use kstrap::checks::{Finding, Severity, preflight, worst};
use kstrap::facts::HostFacts;
use kstrap::profile::{self, Overrides, select};

fn run(facts: &HostFacts) -> Vec<Finding> {
    let sel = select(facts, &profile::embedded().unwrap(), &Overrides::default()).unwrap();
    preflight(facts, Some(&sel))
}

fn find<'a>(findings: &'a [Finding], check: &str, severity: Severity) -> Option<&'a Finding> {
    findings.iter().find(|f| f.check == check && f.severity == severity)
}

fn base() -> HostFacts {
    let mut f = fixture("rtx5090-96gb");
    f.memory.swap_total_bytes = 0;
    f.runtimes.docker = false;
    f
}

#[test]
fn a_clean_workstation_passes_everything() {
    let findings = run(&base());
    assert_eq!(worst(&findings), Severity::Pass, "{findings:#?}");
    for check in [
        "arch", "memory", "cpu", "disk", "swap", "cgroups", "systemd", "ports", "gpu",
    ] {
        assert!(find(&findings, check, Severity::Pass).is_some(), "no pass for {check}");
    }
}

#[test]
fn swap_warns() {
    let mut f = base();
    f.memory.swap_total_bytes = 8 << 30;
    let w = find(&run(&f), "swap", Severity::Warn).cloned().unwrap();
    assert!(w.what.contains("8.0 GiB") && w.how_to_fix.unwrap().contains("swapoff"));
}

#[test]
fn cgroups_v1_warns_and_missing_controllers_fail() {
    let mut f = base();
    f.cgroup.version = Some(1);
    assert!(find(&run(&f), "cgroups", Severity::Warn).is_some());
    f.cgroup.controllers.retain(|c| c != "memory" && c != "pids");
    let fail = find(&run(&f), "cgroups", Severity::Fail).cloned().unwrap();
    assert!(fail.what.contains("memory, pids"), "{}", fail.what);
    f.cgroup.version = None;
    assert!(
        find(&run(&f), "cgroups", Severity::Fail)
            .unwrap()
            .what
            .contains("no cgroup")
    );
}

#[test]
fn no_systemd_fails_with_a_wsl_specific_fix() {
    let mut f = base();
    f.systemd = false;
    let fail = find(&run(&f), "systemd", Severity::Fail).cloned().unwrap();
    assert!(!fail.how_to_fix.unwrap().contains("wsl.conf"));
    let mut w = fixture("wsl2");
    w.systemd = false;
    let fail = find(&run(&w), "systemd", Severity::Fail).cloned().unwrap();
    assert!(fail.how_to_fix.unwrap().contains("/etc/wsl.conf"));
}

#[test]
fn taken_ports_fail_unless_held_by_the_same_distribution() {
    let mut f = base();
    f.ports
        .iter_mut()
        .filter(|p| p.port == 6443)
        .for_each(|p| p.in_use = true);
    let fail = find(&run(&f), "ports", Severity::Fail).cloned().unwrap();
    assert!(fail.what.contains("6443 (API server)"), "{}", fail.what);
    // k3s already here (installed by kstrap): its own ports are expected.
    f.existing.k3s.binary = Some("/usr/local/bin/k3s".into());
    f.existing.kstrap_state = Some("/var/lib/kstrap/state.json".into());
    let findings = run(&f);
    assert!(find(&findings, "ports", Severity::Fail).is_none(), "{findings:#?}");
    assert!(find(&findings, "existing-cluster", Severity::Pass).is_some());
    // The same distribution installed by someone else: a warning, not a takeover.
    f.existing.kstrap_state = None;
    assert!(find(&run(&f), "existing-cluster", Severity::Warn).is_some());
}

#[test]
fn web_ports_taken_warn_about_traefik_on_k3s() {
    let mut f = base();
    f.ports
        .iter_mut()
        .filter(|p| p.port == 80)
        .for_each(|p| p.in_use = true);
    let w = run(&f)
        .into_iter()
        .find(|x| x.check == "ports" && x.severity == Severity::Warn)
        .unwrap();
    assert!(w.what.contains("Traefik"), "{}", w.what);
}

#[test]
fn another_distribution_fails_with_how_to_remove_it() {
    let mut f = base();
    f.existing.k0s.service = Some("/etc/systemd/system/k0scontroller.service".into());
    let fail = find(&run(&f), "existing-cluster", Severity::Fail).cloned().unwrap();
    assert!(fail.what.contains("k0scontroller.service"));
    assert!(fail.how_to_fix.unwrap().contains("k0s reset"));
}

#[test]
fn docker_next_to_a_gpu_warns_only_on_gpu_profiles() {
    let mut f = base();
    f.runtimes.docker = true;
    let w = find(&run(&f), "docker", Severity::Warn).cloned().unwrap();
    assert!(w.how_to_fix.unwrap().contains("k3s's containerd"));
    let mut cpu = fixture("laptop-8gb-nogpu");
    cpu.runtimes.docker = true;
    assert!(run(&cpu).iter().all(|x| x.check != "docker"));
}

#[test]
fn forced_gpu_profile_on_a_gpu_host_that_cannot_use_it_fails() {
    // WSL2 with a GPU, rtx-5090 forced: the operator cannot run there.
    let f = fixture("wsl2");
    let sel = select(
        &f,
        &profile::embedded().unwrap(),
        &Overrides {
            profile: Some("rtx-5090".into()),
            force: true,
            ..Default::default()
        },
    )
    .unwrap();
    let findings = preflight(&f, Some(&sel));
    assert!(find(&findings, "wsl2", Severity::Fail).is_some(), "{findings:#?}");
    assert!(find(&findings, "gpu", Severity::Fail).is_some());
}

#[test]
fn unsupported_architecture_fails() {
    let mut f = base();
    f.os.arch = "riscv64".into();
    assert!(find(&run(&f), "arch", Severity::Fail).is_some());
}
