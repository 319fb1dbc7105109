//! Preflight: what on this host would stop or hurt an install, and how to fix it.
//!
//! `preflight(&facts, &selection)` is pure. A `Fail` stops `kstrap up` with exit code 3 unless
//! `--force`; a `Warn` is printed and `up` goes on.

pub use crate::finding::{Finding, Severity};

mod gpu_driver;

use crate::distro::Distro;
use crate::facts::HostFacts;
use crate::profile::{GpuDriver, Selection, describe_pci, driver_too_old, usable_gpus};
use crate::units::{gib, human_bytes, human_gib};

/// Controllers the kubelet cannot run without.
const REQUIRED_CONTROLLERS: &[&str] = &["cpu", "memory", "pids"];

/// Ports each distribution binds, with what binds them. A port held by the same distribution's
/// existing install is expected on a re-run.
fn ports_for(distro: Distro) -> &'static [(u16, &'static str)] {
    match distro {
        Distro::K3s => &[(6443, "API server"), (10250, "kubelet")],
        Distro::K0s => &[
            (6443, "API server"),
            (9443, "k0s controller API"),
            (8132, "konnectivity"),
            (10250, "kubelet"),
        ],
    }
}

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

fn resources(facts: &HostFacts, sel: &Selection, out: &mut Vec<Finding>) {
    let p = &sel.profile;
    let forced = sel.chosen_by == "--profile";
    let mut check =
        |name: &str, have: f64, shown: String, need: f64, want: f64, unit: &dyn Fn(f64) -> String, fix: &str| {
            if have < need {
                let what = format!("{shown} is below {}'s requirement of {}", p.name, unit(need));
                if forced {
                    out.push(Finding::warn(name, format!("{what} (forced)"), fix));
                } else {
                    out.push(Finding::fail(name, what, fix));
                }
            } else if have < want {
                out.push(Finding::warn(
                    name,
                    format!("{shown} is below {}'s recommendation of {}", p.name, unit(want)),
                    fix,
                ));
            } else {
                out.push(Finding::pass(name, format!("{shown} ≥ {}", unit(want))));
            }
        };
    let g = |v: f64| human_gib(v);
    let n = |v: f64| format!("{v:.0}");
    check(
        "memory",
        gib(facts.memory.total_bytes),
        format!("memory {}", human_bytes(facts.memory.total_bytes)),
        p.requires.memory_gib,
        p.recommends.memory_gib,
        &g,
        "use a smaller profile (kstrap picks one by itself without --profile) or add memory",
    );
    check(
        "cpu",
        facts.cpu.count as f64,
        format!("{} CPUs", facts.cpu.count),
        p.requires.cpus as f64,
        p.recommends.cpus as f64,
        &n,
        "use a smaller profile, or expect slow start-up and inference",
    );
    // The partition of --data-dir when one is given, else /var/lib's.
    let disk = facts.data_disk();
    check(
        "disk",
        gib(disk.available_bytes),
        format!("free disk at {} {}", disk.path, human_bytes(disk.available_bytes)),
        p.requires.disk_gib,
        p.recommends.disk_gib,
        &g,
        "free space on that partition (models and images live there), or put the distribution's data on a larger one with --data-dir DIR",
    );
    eviction(facts, sel, "kstrap up", out);
}

/// The kubelet's default hard eviction thresholds on the partition that holds images and volumes
/// (kubernetes `pkg/kubelet/eviction/defaults_linux.go`, `DefaultEvictionHard`:
/// `imagefs.available<15%`, `nodefs.available<10%`; k3s and k0s keep them). They are percentages
/// of the partition, not sizes: a 100 GiB root with 20 GiB free passes a "20 GiB" check, and once
/// the profile's images and models fill it, the kubelet evicts the stack's pods and
/// garbage-collects images in a loop. Said only when the install would cross a threshold.
fn eviction(facts: &HostFacts, sel: &Selection, command: &str, out: &mut Vec<Finding>) {
    const IMAGEFS_PERCENT: f64 = 15.0;
    const NODEFS_PERCENT: f64 = 10.0;
    let disk = facts.data_disk();
    let total = disk.total_bytes as f64;
    if total <= 0.0 {
        return;
    }
    let need = sel.profile.requires.disk_gib * (1u64 << 30) as f64;
    let left = disk.available_bytes as f64 - need;
    let left_percent = (left / total * 100.0).max(0.0);
    if left_percent >= IMAGEFS_PERCENT {
        return;
    }
    let what = format!(
        "after {}'s {} of images and models, {} would have {:.0}% free ({} of {}): below the kubelet's eviction threshold of {:.0}% (imagefs.available; {:.0}% for nodefs.available)",
        sel.profile.name,
        human_gib(sel.profile.requires.disk_gib),
        disk.path,
        left_percent,
        human_bytes(left.max(0.0) as u64),
        human_bytes(disk.total_bytes),
        IMAGEFS_PERCENT,
        NODEFS_PERCENT
    );
    // `up` can put the data on another partition itself; a worker keeps its distribution's default.
    let fix = if command.contains("join") {
        format!(
            "free space on that partition, or put the distribution's data on a larger one (mount it at /var/lib/rancher or /var/lib/k0s) before {command}"
        )
    } else {
        "free space on that partition, or put the distribution's data on a larger one with --data-dir DIR (a new or empty folder there)".to_string()
    };
    if left_percent < NODEFS_PERCENT && sel.chosen_by != "--profile" {
        out.push(Finding::fail("disk-eviction", what, fix));
    } else {
        out.push(Finding::warn("disk-eviction", what, fix));
    }
}

fn distribution(facts: &HostFacts, sel: &Selection, out: &mut Vec<Finding>) {
    let distro = sel.distro;
    let (same, other, other_name) = match distro {
        Distro::K3s => (&facts.existing.k3s, &facts.existing.k0s, Distro::K0s),
        Distro::K0s => (&facts.existing.k0s, &facts.existing.k3s, Distro::K3s),
    };
    if other.present() {
        let traces = other.traces();
        let fix = match other_name {
            Distro::K0s => "remove it first (`sudo k0s stop && sudo k0s reset`), or keep it and use --distro k0s",
            Distro::K3s => "remove it first (`sudo /usr/local/bin/k3s-uninstall.sh`), or keep it and use --distro k3s",
        };
        out.push(Finding::fail(
            "existing-cluster",
            format!(
                "{other_name} is already installed ({}); kstrap will not install {distro} next to it",
                traces.join(", ")
            ),
            fix,
        ));
    }
    if same.present() {
        if facts.existing.kstrap_state.is_some() {
            out.push(Finding::pass(
                "existing-cluster",
                format!("{distro} was installed by kstrap: up converges it"),
            ));
        } else {
            out.push(Finding::warn(
                "existing-cluster",
                format!("{distro} is installed, but not by kstrap"),
                "kstrap will only take over a cluster it did not install when told to (--replace)",
            ));
        }
    }
    let mut taken = Vec::new();
    for (port, what) in ports_for(distro) {
        if facts.port_in_use(*port) && !same.present() {
            taken.push(format!("{port} ({what})"));
        }
    }
    if taken.is_empty() {
        out.push(Finding::pass(
            "ports",
            format!(
                "ports {} are free",
                ports_for(distro)
                    .iter()
                    .map(|(p, _)| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    } else {
        out.push(Finding::fail(
            "ports",
            format!("port(s) {} already in use", taken.join(", ")),
            "find the owner with `sudo ss -ltnp`, and stop it or move it",
        ));
    }
    if distro == Distro::K3s
        && !facts.existing.k3s.present()
        && !sel.profile.cluster.disable.iter().any(|d| d == "traefik")
    {
        let web: Vec<String> = [80u16, 443]
            .iter()
            .filter(|p| facts.port_in_use(**p))
            .map(|p| p.to_string())
            .collect();
        if !web.is_empty() {
            out.push(Finding::warn(
                "ports",
                format!(
                    "port(s) {} in use: k3s's Traefik load balancer will stay pending",
                    web.join(", ")
                ),
                "stop the web server holding them, or reach the stack through its NodePort",
            ));
        }
    }
}

fn gpu(facts: &HostFacts, selection: Option<&Selection>, out: &mut Vec<Finding>) {
    let uses_gpu = selection.is_some_and(|s| s.profile.uses_gpu());
    let profile_name = selection.map(|s| s.profile.name.as_str()).unwrap_or("kstrap");

    let choice = selection.map_or(GpuDriver::Host, |s| s.gpu_driver);
    let any_gpu = !facts.gpus.is_empty() || facts.nvidia.pci_devices > 0 || !facts.nvidia.pci_gpus.is_empty();
    if choice == GpuDriver::Operator && uses_gpu {
        gpu_driver::operator_driver(facts, out);
    } else if choice == GpuDriver::None && any_gpu {
        out.push(Finding::pass(
            "gpu-driver",
            "--gpu-driver none: the NVIDIA GPU(s) are left alone; everything runs on CPU",
        ));
    } else if facts.gpus.is_empty() && facts.nvidia.pci_devices > 0 {
        let why = facts
            .nvidia
            .unavailable_reason
            .as_deref()
            .unwrap_or("NVML reports no GPU");
        let (blockers, steps) = host_driver_blockers(facts);
        let sev_fix = format!(
            "{steps}install the NVIDIA driver on the host (570 or newer for RTX 50-series), reboot, check that `nvidia-smi` lists the GPU, then run `kstrap up` again: it will switch to a GPU profile. The other way, without a host driver: `kstrap up --gpu-driver operator` lets the GPU operator build and load its driver in a container (refused while nouveau is loaded or Secure Boot is on); kstrap never does that unless asked"
        );
        let pci = if facts.nvidia.pci_gpus.is_empty() {
            String::new()
        } else {
            format!(" (PCI {})", describe_pci(&facts.nvidia.pci_gpus))
        };
        let what = format!(
            "{} NVIDIA GPU(s) on the PCI bus{pci}, but no usable driver: {why}{blockers}; {profile_name} runs without it",
            facts.nvidia.pci_devices
        );
        out.push(if uses_gpu {
            Finding::fail("gpu-driver", what, sev_fix)
        } else {
            Finding::warn("gpu-driver", what, sev_fix)
        });
    }
    if facts.wsl2 && !facts.gpus.is_empty() {
        let what = "WSL2 with an NVIDIA GPU: the NVIDIA GPU operator does not support WSL2, so the GPU is not used"
            .to_string();
        let fix = "run kstrap on a native Linux install to use the GPU; on WSL2 the CPU profile is used";
        out.push(if uses_gpu {
            Finding::fail("wsl2", what, fix)
        } else {
            Finding::warn("wsl2", what, fix)
        });
    }
    for g in &facts.gpus {
        if let Some((min, d)) = driver_too_old(facts, g) {
            let what = format!(
                "GPU {} {} is a Blackwell GPU; driver {d} is older than the {min} it needs",
                g.index, g.name
            );
            let fix =
                "upgrade the NVIDIA driver to 570 or newer (e.g. `sudo apt install nvidia-driver-570-open`) and reboot";
            out.push(if uses_gpu {
                Finding::fail("gpu-driver", what, fix)
            } else {
                Finding::warn("gpu-driver", what, fix)
            });
        }
        if g.mig_enabled() {
            out.push(Finding::warn(
                "mig",
                format!(
                    "GPU {} {} has MIG enabled: time-slicing MIG instances is out of scope, so kstrap does not use it",
                    g.index, g.name
                ),
                format!(
                    "disable MIG to share the whole GPU: `sudo nvidia-smi -i {} -mig 0` (then reset the GPU or reboot)",
                    g.index
                ),
            ));
        }
    }
    if let Some(sel) = selection {
        let (usable, _) = usable_gpus(facts);
        gpu_image_findings(facts, sel, &usable, uses_gpu, out);
        if !sel.profile.uses_gpu() && !usable.is_empty() && sel.gpu_driver != GpuDriver::None {
            let list: Vec<String> = usable
                .iter()
                .map(|g| format!("GPU {} {} {}", g.index, g.name, human_bytes(g.memory_total_bytes)))
                .collect();
            out.push(Finding::warn(
                "gpu-unused",
                format!("{} is not used: {} runs everything on CPU", list.join(", "), sel.profile.name),
                "no GPU profile fits this GPU (see `kstrap plan` for why); to try anyway: `kstrap up --profile rtx-5090 --force`",
            ));
        }
        if uses_gpu {
            if sel.gpus.is_empty() {
                out.push(Finding::fail(
                    "gpu",
                    format!("{} needs an NVIDIA GPU and none is usable", sel.profile.name),
                    "see the gpu findings above, or choose a CPU profile",
                ));
            } else {
                out.push(Finding::pass(
                    "gpu",
                    format!(
                        "{} GPU(s) × {} shares = {} nvidia.com/gpu",
                        sel.gpus.len(),
                        sel.profile.gpu.replicas,
                        sel.gpu_shares()
                    ),
                ));
            }
            if facts.runtimes.docker {
                out.push(Finding::warn(
                    "docker",
                    "Docker is installed next to the GPU: the GPU operator's toolkit would configure Docker's containerd instead of the cluster's",
                    format!("nothing to do: kstrap points the toolkit at {}'s containerd explicitly (CONTAINERD_SOCKET/CONFIG)", sel.distro),
                ));
            }
        }
    }
}

/// What stands between this host and a loaded NVIDIA driver: words for the finding, and the
/// steps to take first (each ending in "; ").
/// - `nouveau` loaded: it holds the GPU and NVIDIA's module cannot bind it; NVIDIA's installer
///   and packages blacklist it (a modprobe.d `blacklist nouveau` plus a rebuilt initramfs), which
///   takes effect at the next boot.
/// - Secure Boot on: the kernel loads only signed modules, so a driver built on the machine
///   (DKMS, or a driver container) is refused until its key is enrolled with `mokutil --import`
///   and confirmed at the next boot; distributions' pre-signed drivers need no enrolment.
fn host_driver_blockers(facts: &HostFacts) -> (String, String) {
    let mut what = String::new();
    let mut steps = String::new();
    if facts.nvidia.nouveau_loaded {
        what.push_str("; the open-source nouveau driver is loaded and holds the GPU");
        steps.push_str("blacklist nouveau (`echo 'blacklist nouveau' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf` and `sudo update-initramfs -u`, or `sudo dracut -f` on Fedora/RHEL; NVIDIA's packages do this for you); ");
    }
    if facts.security.secure_boot {
        what.push_str("; Secure Boot is on, so only signed kernel modules load");
        steps.push_str("under Secure Boot use your distribution's signed driver (Ubuntu: `sudo ubuntu-drivers install`), or enrol the key of a driver built here with `sudo mokutil --import` and confirm it at the next boot; ");
    }
    (what, steps)
}

/// The most severe finding's severity (Pass when empty).
/// A firewall that is on: the rules the distribution documents for it, with the ranges the plan
/// chose (`distro::firewall`). Only said when one is on, so hosts without one see no change.
fn firewalls(facts: &HostFacts, sel: &Selection, out: &mut Vec<Finding>) {
    use crate::distro::firewall::{self, Firewall};
    let net = crate::distro::rerun::for_host(sel.distro, facts, false);
    for (on, fw) in [
        (facts.firewall.ufw, Firewall::Ufw),
        (facts.firewall.firewalld, Firewall::Firewalld),
    ] {
        if on {
            out.push(Finding::warn(
                "firewall",
                format!(
                    "{} is on: without {}'s rules it drops traffic from pods and Services to this host (API server, kubelet, DNS)",
                    fw.name(),
                    sel.distro
                ),
                format!(
                    "run `kstrap up --open-firewall` (kstrap adds them, `kstrap down` removes them), or add them yourself: {}",
                    firewall::shown(&firewall::open(sel.distro, fw, &net))
                ),
            ));
        }
    }
}

/// SELinux enforcing. kstrap refuses rather than installs the policy: the policy comes as RPMs
/// from a third-party repository (k3s: `k3s-selinux` from rpm.rancher.io, which k3s's install
/// script adds as a yum repo) and changes the whole machine's policy, which `kstrap down` could
/// not undo as exactly as the rest. The fix names the packages, as k3s's install script does.
/// - k3s: with `/usr/share/selinux/packages/k3s.pp` present, kstrap writes `selinux: true` to its
///   config (k3s's `--selinux` flag, "Enable SELinux in containerd"); without it, k3s's own
///   installer stops too ("Failed to find the k3s-selinux policy", `install.sh` `setup_selinux`).
/// - k0s: its SELinux guide (k0sproject/k0s v1.35.3+k0s.0 `docs/selinux.md`) needs
///   container-selinux, relabelling k0s's binaries and data with `semanage fcontext`, and a
///   containerd drop-in with `enable_selinux = true`; kstrap does none of that, so it refuses.
///
/// A worker (`kstrap join`) gets the same rule: the k3s agent runs containers through the same
/// containerd and takes the same `--selinux` flag (k3s-io/k3s `pkg/cli/cmds/agent.go`), and
/// install.sh's `setup_selinux` makes no difference between server and agent.
///
/// Permissive mode changes nothing and is not reported.
fn selinux(facts: &HostFacts, distro: Distro, worker: bool, out: &mut Vec<Finding>) {
    if !facts.security.selinux_enforcing() {
        return;
    }
    match distro {
        Distro::K3s if facts.security.k3s_selinux_policy => out.push(Finding::pass(
            "selinux",
            "SELinux is enforcing and k3s's policy (k3s-selinux) is installed: k3s runs with selinux: true",
        )),
        Distro::K3s => out.push(Finding::fail(
            "selinux",
            "SELinux is enforcing and k3s's SELinux policy (k3s-selinux, /usr/share/selinux/packages/k3s.pp) is not installed: k3s's containers would be denied",
            "install the policy, then run kstrap again: `sudo dnf install -y container-selinux` and `sudo dnf install -y k3s-selinux` from Rancher's repository (https://rpm.rancher.io/k3s/stable/common/centos/9/noarch/ on EL9/Fedora; see k3s's docs, \"SELinux Support\"); or `sudo setenforce 0` to run permissive",
        )),
        Distro::K0s => out.push(Finding::fail(
            "selinux",
            "SELinux is enforcing: k0s needs container-selinux, its binaries and data relabelled and SELinux enabled in its containerd, which kstrap does not do",
            if worker {
                // A worker runs the server's distribution: there is no other to choose.
                "follow k0s's SELinux guide (docs/selinux.md: container-selinux, semanage fcontext, /etc/k0s/containerd.d/selinux.toml) before kstrap join, or `sudo setenforce 0` to run permissive"
            } else {
                "use k3s (`--distro k3s`, with the k3s-selinux policy), follow k0s's SELinux guide (docs/selinux.md: container-selinux, semanage fcontext, /etc/k0s/containerd.d/selinux.toml) before kstrap up, or `sudo setenforce 0` to run permissive"
            },
        )),
    }
}

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
        eviction(facts, sel, "kstrap join", &mut out);
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

/// GPUs whose architecture or driver cannot run the CUDA images kstrap would put on them
/// (`budget::gpu_images`): a failure for the GPUs a GPU profile uses (a named or kept profile
/// past selection), a warning saying why the GPU sits idle otherwise.
fn gpu_image_findings(
    facts: &HostFacts,
    sel: &Selection,
    usable: &[&crate::facts::GpuFacts],
    uses_gpu: bool,
    out: &mut Vec<Finding>,
) {
    use crate::budget::gpu_images;
    let driver = facts.nvidia.driver_version.as_deref();
    let (services, gpus): (Vec<&str>, Vec<&crate::facts::GpuFacts>) = if uses_gpu {
        let chosen = usable.iter().copied().filter(|g| sel.gpus.contains(&g.index)).collect();
        (gpu_images::gpu_services(&sel.profile), chosen)
    } else {
        // The least any GPU tier runs on the GPU: the operator's validator and Ollama.
        (vec!["operator", "ollama"], usable.to_vec())
    };
    for g in gpus {
        for why in gpu_images::problems(&services, g, driver) {
            let fix = if why.starts_with("driver ") {
                "upgrade the NVIDIA driver to a current branch (570 or newer, e.g. `sudo apt install nvidia-driver-570`), reboot, and run kstrap again"
            } else if uses_gpu {
                "let kstrap choose (it picks a tier whose images this GPU runs, or the CPU), or name a tier that keeps this service on the CPU"
            } else {
                "nothing to do: the services run on the CPU; a newer GPU would let kstrap use it"
            };
            out.push(if uses_gpu {
                Finding::fail("gpu-images", why, fix)
            } else {
                Finding::warn("gpu-images", why, fix)
            });
        }
    }
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
