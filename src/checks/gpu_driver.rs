//! Preflight for `--gpu-driver operator`: what the GPU operator's driver container needs from
//! the host, checked before anything is installed.
//!
//! Facts behind each check (NVIDIA/gpu-operator v26.3.2 and its documentation for 26.3,
//! NVIDIA/cloud-native-docs `gpu-operator/` at commit 52dcb7b8, whose `versions.json` names 26.3
//! the current version):
//! - The conventional driver container builds NVIDIA's kernel module on the node: it downloads
//!   the kernel headers, GCC and OS packages (`precompiled-drivers.rst`, "About Precompiled
//!   Driver Containers": precompiled containers are the ones that do *not* need them).
//! - A module built there is unsigned: under Secure Boot the kernel refuses it ("Loading of
//!   unsigned module is rejected", NVIDIA/gpu-operator issues #1726 and #497); only signed,
//!   precompiled drivers get past it, and the docs validate those for Ubuntu's data-centre
//!   kernels only (`platform-support.rst`, "Supported Precompiled Drivers").
//! - With `nouveau` loaded the driver fails to initialise the GPU and every operator pod stays
//!   in `Init` (`troubleshooting.rst`, "The nouveau driver fails to initialize the GPU").
//! - Driver containers are published for the operating systems of `platform-support.rst`
//!   ("Supported Operating Systems and Kubernetes Platforms"): Ubuntu 22.04, 24.04 and 26.04 LTS,
//!   Red Hat Enterprise Linux 8, 9 and 10, Rocky Linux 8, 9 and 10 (and Red Hat CoreOS, which
//!   kstrap does not install on). Elsewhere the operator finds no image for the node.

use super::Finding;
use crate::facts::HostFacts;
use crate::gpu::values::{DRIVER_VERSION, Driver};
use crate::profile::describe_pci;

/// `os-release` IDs and major versions the operator publishes driver containers for.
const DRIVER_CONTAINER_OSES: &[(&str, &[&str])] = &[
    ("ubuntu", &["22.04", "24.04", "26.04"]),
    ("rhel", &["8", "9", "10"]),
    ("rocky", &["8", "9", "10"]),
];

/// Whether the operator publishes a driver container for this OS release.
pub fn driver_container_published(os_id: &str, version_id: Option<&str>) -> bool {
    let Some(version) = version_id else {
        return false;
    };
    DRIVER_CONTAINER_OSES.iter().any(|(id, versions)| {
        *id == os_id
            && versions.iter().any(|v| {
                // Ubuntu is matched on the whole release, RHEL and Rocky on the major version.
                version == *v || (os_id != "ubuntu" && version.split('.').next() == Some(v))
            })
    })
}

/// Findings for a GPU profile whose driver the operator's container is to provide.
pub fn operator_driver(facts: &HostFacts, out: &mut Vec<Finding>) {
    let before = out.len();
    let pci = &facts.nvidia.pci_gpus;
    if !facts.gpus.is_empty() {
        let version = facts.nvidia.driver_version.as_deref().unwrap_or("of unknown version");
        out.push(Finding::fail(
            "gpu-driver",
            format!(
                "--gpu-driver operator, but a host NVIDIA driver {version} is loaded and runs the GPU(s): the operator's driver container cannot load its module next to it"
            ),
            "leave out --gpu-driver operator: kstrap then uses the host's driver (the usual way)",
        ));
    } else if let Some(v) = &facts.nvidia.kernel_module {
        out.push(Finding::warn(
            "gpu-driver",
            format!(
                "an NVIDIA kernel module {v} is loaded but no host driver library answers: after an earlier `--gpu-driver operator` install this is the operator's own driver; otherwise its driver container unloads the module first"
            ),
            "nothing to do after an earlier operator install; otherwise remove the partial host driver",
        ));
    }
    let nouveau: Vec<_> = pci
        .iter()
        .filter(|g| g.driver.as_deref() == Some("nouveau"))
        .cloned()
        .collect();
    if facts.nvidia.nouveau_loaded || !nouveau.is_empty() {
        let held = if nouveau.is_empty() {
            String::new()
        } else {
            format!(" (PCI {})", describe_pci(&nouveau))
        };
        out.push(Finding::fail(
            "gpu-driver",
            format!(
                "--gpu-driver operator, but the open-source nouveau driver is loaded{held}: the operator's driver cannot take the GPU from it, and every operator pod stays in Init"
            ),
            "blacklist nouveau (`echo 'blacklist nouveau' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf`, then `sudo update-initramfs -u`, or `sudo dracut -f` on Fedora/RHEL), reboot, and run kstrap again",
        ));
    }
    if facts.security.secure_boot {
        out.push(Finding::fail(
            "gpu-driver",
            "--gpu-driver operator, but Secure Boot is on: the driver container builds NVIDIA's kernel module on this machine, unsigned, and the kernel refuses to load it",
            "install your distribution's signed NVIDIA driver on the host instead (Ubuntu: `sudo ubuntu-drivers install`) and leave out --gpu-driver operator; or turn Secure Boot off in the firmware settings",
        ));
    }
    let vfio: Vec<_> = pci
        .iter()
        .filter(|g| g.driver.as_deref() == Some("vfio-pci"))
        .cloned()
        .collect();
    if !vfio.is_empty() {
        out.push(Finding::fail(
            "gpu-driver",
            format!(
                "PCI {} is bound to vfio-pci, reserved for passing it to a virtual machine: no driver on this host can use it",
                describe_pci(&vfio)
            ),
            "take the GPU away from vfio-pci (remove its id from `vfio-pci.ids=` on the kernel command line or /etc/modprobe.d) and reboot",
        ));
    }
    if !driver_container_published(&facts.os.id, facts.os.version_id.as_deref()) {
        out.push(Finding::fail(
            "gpu-driver",
            format!(
                "--gpu-driver operator, but NVIDIA publishes its driver container only for Ubuntu 22.04, 24.04 and 26.04, RHEL 8-10 and Rocky Linux 8-10; {} has none, so the driver pod would never start",
                facts.os.pretty_name
            ),
            "install the NVIDIA driver from your distribution on the host and leave out --gpu-driver operator",
        ));
    }
    if out.len() == before {
        out.push(Finding::pass(
            "gpu-driver",
            format!(
                "--gpu-driver operator: the GPU operator builds NVIDIA driver {DRIVER_VERSION} ({}) for kernel {} in a container; it downloads the kernel headers and compiler from {}'s package repositories, so it needs internet access and takes several minutes",
                Driver::image_ref(),
                facts.os.kernel,
                facts.os.pretty_name
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::driver_container_published;

    #[test]
    fn driver_containers_exist_for_the_documented_releases_only() {
        for (id, version, want) in [
            ("ubuntu", Some("24.04"), true),
            ("ubuntu", Some("22.04"), true),
            ("ubuntu", Some("26.04"), true),
            ("ubuntu", Some("20.04"), false),
            ("ubuntu", Some("24.10"), false),
            ("rhel", Some("9.6"), true),
            ("rhel", Some("10.1"), true),
            ("rhel", Some("7.9"), false),
            ("rocky", Some("8.10"), true),
            ("fedora", Some("42"), false),
            ("debian", Some("12"), false),
            ("arch", None, false),
            ("ubuntu", None, false),
        ] {
            assert_eq!(driver_container_published(id, version), want, "{id} {version:?}");
        }
    }
}
