//! Preflight: the GPU (driver, usable GPUs, what the CUDA images can run on).

use super::Finding;
use crate::facts::HostFacts;
use crate::profile::{GpuDriver, Selection, describe_pci, driver_too_old, usable_gpus};
use crate::units::human_bytes;

pub(super) fn gpu(facts: &HostFacts, selection: Option<&Selection>, out: &mut Vec<Finding>) {
    let uses_gpu = selection.is_some_and(|s| s.profile.uses_gpu());
    let profile_name = selection.map(|s| s.profile.name.as_str()).unwrap_or("kstrap");

    let choice = selection.map_or(GpuDriver::Host, |s| s.gpu_driver);
    let any_gpu = !facts.gpus.is_empty() || facts.nvidia.pci_devices > 0 || !facts.nvidia.pci_gpus.is_empty();
    if choice == GpuDriver::Operator && uses_gpu {
        super::gpu_driver::operator_driver(facts, out);
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
pub(super) fn host_driver_blockers(facts: &HostFacts) -> (String, String) {
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

/// GPUs whose architecture or driver cannot run the CUDA images kstrap would put on them
/// (`budget::gpu_images`): a failure for the GPUs a GPU profile uses (a named or kept profile
/// past selection), a warning saying why the GPU sits idle otherwise.
pub(super) fn gpu_image_findings(
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
