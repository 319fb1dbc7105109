//! Preflight: what on this host would stop or hurt an install, and how to fix it.
//!
//! `preflight(&facts, &selection)` is pure. A `Fail` stops `kstrap up` with exit code 3 unless
//! `--force`; a `Warn` is printed and `up` goes on.

pub use crate::finding::{Finding, Severity};

mod distribution;
mod gpu;
mod gpu_driver;
mod resources;

use distribution::{distribution, firewalls, selinux};
use gpu::gpu;
use resources::{eviction, resources};

use crate::distro::Distro;
use crate::facts::HostFacts;
use crate::profile::Selection;
use crate::units::human_bytes;

/// Controllers the kubelet cannot run without.
const REQUIRED_CONTROLLERS: &[&str] = &["cpu", "memory", "pids"];

/// Everything kstrap checks before installing. With a selection, resource checks compare the host
/// with the chosen profile and distribution-specific checks apply; without one (no profile fits),
/// only host-wide checks run.
pub fn preflight(facts: &HostFacts, selection: Option<&Selection>) -> Vec<Finding> {
    let mut out = Vec::new();

    match facts.os.arch.as_str() {
        "x86_64" | "aarch64" => out.push(Finding::pass("arch", format!("architecture {}", facts.os.arch))),
        other => out.push(Finding::fail(
            "arch",
            format!("architecture {other} has no k3s or k0s release kstrap installs"),
            "use an x86_64 or aarch64 machine",
        )),
    }

    if let Some(sel) = selection {
        resources(facts, sel, &mut out);
        firewalls(facts, sel, &mut out);
        out.extend(crate::distro::rerun::findings(sel.distro, facts));
        selinux(facts, sel.distro, false, &mut out);
    }

    if facts.memory.swap_total_bytes > 0 {
        out.push(Finding::warn(
            "swap",
            format!("swap is on ({})", human_bytes(facts.memory.swap_total_bytes)),
            "the kubelet's memory limits assume no swap: `sudo swapoff -a` and remove swap from /etc/fstab",
        ));
    } else {
        out.push(Finding::pass("swap", "swap is off"));
    }

    match facts.cgroup.version {
        None => out.push(Finding::fail(
            "cgroups",
            "no cgroup filesystem is mounted",
            "mount cgroup2 at /sys/fs/cgroup (every systemd distribution does this at boot)",
        )),
        Some(v) => {
            let missing: Vec<&str> = REQUIRED_CONTROLLERS
                .iter()
                .copied()
                .filter(|c| !facts.cgroup.controllers.iter().any(|h| h == c))
                .collect();
            if !missing.is_empty() {
                out.push(Finding::fail(
                    "cgroups",
                    format!("cgroup v{v} lacks the {} controller(s)", missing.join(", ")),
                    "enable them on the kernel command line (e.g. cgroup_enable=memory on Raspberry Pi OS) and reboot",
                ));
            } else if v == 1 {
                out.push(Finding::warn(
                    "cgroups",
                    "cgroup v1: Kubernetes keeps it only in maintenance mode and recent kubelets refuse it by default",
                    "boot with systemd.unified_cgroup_hierarchy=1 (or upgrade the distribution) to get cgroup v2",
                ));
            } else {
                out.push(Finding::pass(
                    "cgroups",
                    format!("cgroup v2 with {}", REQUIRED_CONTROLLERS.join(", ")),
                ));
            }
        }
    }

    if facts.systemd {
        out.push(Finding::pass("systemd", "systemd is the init system"));
    } else {
        let fix = if facts.wsl2 {
            "add `[boot]` `systemd=true` to /etc/wsl.conf, run `wsl --shutdown` from Windows, and start the distribution again"
        } else {
            "kstrap installs k3s/k0s as systemd services: use a systemd-based host (containers and chroots have no systemd)"
        };
        out.push(Finding::fail("systemd", "systemd is not running as PID 1", fix));
    }

    if let Some(sel) = selection {
        distribution(facts, sel, &mut out);
    }
    gpu(facts, selection, &mut out);
    out
}

/// The most severe finding's severity (Pass when empty).
pub fn worst(findings: &[Finding]) -> Severity {
    findings.iter().map(|f| f.severity).max().unwrap_or(Severity::Pass)
}

/// Preflight for a machine joining a cluster as a worker (`kstrap join`): the host-wide checks of
/// `preflight` (architecture, swap, cgroups, systemd, GPUs), SELinux as for a server of the same
/// distribution, the kubelet's port, and, when the machine meets a tier (`tier`, the profile its
/// node is labelled with), the disk check a server of that tier gets: the scheduler sends that
/// tier's GPU workloads here, so their images and models land on this machine's data partition
/// and must leave it above the kubelet's eviction thresholds. A worker runs no API server, so 6443
/// may be in use.
pub fn worker_preflight(facts: &HostFacts, distro: Distro, tier: Option<&Selection>) -> Vec<Finding> {
    let mut out = preflight(facts, None);
    selinux(facts, distro, true, &mut out);
    if let Some(sel) = tier {
        eviction(facts, sel, true, &mut out);
    }
    let same = match distro {
        Distro::K3s => &facts.existing.k3s,
        Distro::K0s => &facts.existing.k0s,
    };
    if facts.port_in_use(10250) && !same.present() {
        out.push(Finding::fail(
            "ports",
            "port 10250 (kubelet) already in use",
            "find the owner with `sudo ss -ltnp`, and stop it or move it",
        ));
    } else {
        out.push(Finding::pass("ports", "port 10250 (kubelet) is free"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver_missing() -> HostFacts {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/facts/driver-missing.json");
        crate::facts::load(&path).expect("facts fixture")
    }

    fn gpu_driver(findings: &[Finding]) -> &Finding {
        findings
            .iter()
            .find(|f| f.check == "gpu-driver")
            .expect("gpu-driver finding")
    }

    fn fix(f: &Finding) -> &str {
        f.how_to_fix.as_deref().unwrap_or_default()
    }

    #[test]
    fn a_gpu_without_a_driver_names_secure_boot_and_nouveau_and_how_to_get_past_them() {
        let plain = driver_missing();
        assert!(plain.nvidia.pci_devices > 0 && plain.gpus.is_empty());
        let found = preflight(&plain, None);
        let f = gpu_driver(&found);
        assert!(
            !f.what.contains("nouveau") && !f.what.contains("Secure Boot"),
            "{}",
            f.what
        );
        assert!(fix(f).contains("kstrap never does that unless asked"), "{}", fix(f));
        assert!(fix(f).contains("--gpu-driver operator"), "{}", fix(f));

        let mut blocked = driver_missing();
        blocked.nvidia.nouveau_loaded = true;
        blocked.security.secure_boot = true;
        let found = preflight(&blocked, None);
        let f = gpu_driver(&found);
        assert!(f.what.contains("nouveau driver is loaded"), "{}", f.what);
        assert!(f.what.contains("Secure Boot is on"), "{}", f.what);
        assert!(fix(f).contains("blacklist nouveau"), "{}", fix(f));
        assert!(fix(f).contains("mokutil --import"), "{}", fix(f));
        // The driver comes first: the blockers' steps precede installing it.
        assert!(fix(f).find("blacklist").unwrap() < fix(f).find("install the NVIDIA driver").unwrap());
    }

    /// A worker on an SELinux-enforcing host: the server's rule, for the server's distribution.
    #[test]
    fn a_worker_gets_the_servers_selinux_rule() {
        let mut facts = driver_missing();
        let selinux = |f: &[Finding]| f.iter().find(|x| x.check == "selinux").cloned();
        assert_eq!(selinux(&worker_preflight(&facts, Distro::K3s, None)), None);
        facts.security.selinux = Some("enforcing".into());
        let bare = selinux(&worker_preflight(&facts, Distro::K3s, None)).expect("selinux finding");
        assert_eq!(bare.severity, Severity::Fail);
        assert!(fix(&bare).contains("k3s-selinux") && fix(&bare).contains("container-selinux"));
        facts.security.k3s_selinux_policy = true;
        let ready = selinux(&worker_preflight(&facts, Distro::K3s, None)).expect("selinux finding");
        assert_eq!(ready.severity, Severity::Pass);
        // k0s: refused whatever k3s's policy; a worker cannot switch distributions.
        let k0s = selinux(&worker_preflight(&facts, Distro::K0s, None)).expect("selinux finding");
        assert_eq!(k0s.severity, Severity::Fail);
        assert!(
            fix(&k0s).contains("before kstrap join") && !fix(&k0s).contains("--distro"),
            "{}",
            fix(&k0s)
        );
    }

    /// A worker that meets a tier gets that tier's eviction check: its GPU workloads' images and
    /// models would land here.
    #[test]
    fn a_worker_of_a_tier_gets_the_servers_eviction_check() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/facts/rtx5090-96gb.json");
        let mut facts = crate::facts::load(&path).expect("facts fixture");
        let profiles = crate::profile::embedded().expect("profiles");
        let overrides = crate::profile::Overrides {
            distro: Some(Distro::K3s),
            ..Default::default()
        };
        let sel = crate::profile::select(&facts, &profiles, &overrides).expect("a tier");
        let need = (sel.profile.requires.disk_gib * (1u64 << 30) as f64) as u64;
        // 1 TiB partition; after the tier's images and models 5% would be left.
        facts.disk.total_bytes = 1 << 40;
        facts.disk.available_bytes = need + (1u64 << 40) / 20;
        let eviction = |f: &[Finding]| f.iter().find(|x| x.check == "disk-eviction").cloned();
        let found = eviction(&worker_preflight(&facts, Distro::K3s, Some(&sel))).expect("eviction finding");
        assert_eq!(found.severity, Severity::Fail);
        assert!(found.what.contains(&sel.profile.name), "{}", found.what);
        assert!(fix(&found).ends_with("before kstrap join"), "{}", fix(&found));
        // No tier, no estimate of what lands here: nothing said.
        assert_eq!(eviction(&worker_preflight(&facts, Distro::K3s, None)), None);
        // Plenty of room: nothing said either.
        facts.disk.available_bytes = 1 << 40;
        assert_eq!(eviction(&worker_preflight(&facts, Distro::K3s, Some(&sel))), None);
    }
}
