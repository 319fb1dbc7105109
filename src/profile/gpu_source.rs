//! Which GPUs kstrap may use and which driver runs them: `--gpu-driver host|operator|none`.
//!
//! NVML (and so every VRAM figure) needs a loaded NVIDIA driver. On a machine with an NVIDIA GPU
//! on the PCI bus but no driver, kstrap never decides on its own to let the GPU operator build a
//! driver in a container (on a desktop it fights nouveau and the display server, and Secure Boot
//! refuses its unsigned module): the host gets a CPU profile and the plan names both ways out.
//! `--gpu-driver operator` is that explicit choice; `--gpu-driver none` leaves every GPU alone.
//!
//! `gpu_source` decides, from the facts and the choice, where selection takes its GPUs from;
//! `select_operator_driver` picks the tier for GPUs that only the PCI bus knows about.

use super::select::{Rejection, SelectError, Selection, finish, host_shortfalls, named_rejections};
use super::{Overrides, Profile};
use crate::facts::{HostFacts, PciGpu};
use crate::units::{human_bytes, human_gib};
use serde::{Deserialize, Serialize};

/// Where the NVIDIA driver comes from (`--gpu-driver`). The values are explained in the flag's
/// own help (`cli.rs`), so `--help` keeps one line per flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GpuDriver {
    // Use the NVIDIA driver installed on this machine (the usual way). Without one the GPU is
    // not used, and the plan says why and how to install it.
    #[default]
    Host,
    // Let the GPU operator build and load NVIDIA's driver in a container, for a GPU with no
    // host driver. Refused while nouveau holds the GPU or Secure Boot is on; VRAM is unknown
    // without a driver, so the smallest GPU tier is used unless --profile names one.
    Operator,
    // Use no GPU, even if one is present: a CPU profile.
    None,
}

impl GpuDriver {
    /// The default, left out of kstrap's state and plans.
    pub fn is_host(&self) -> bool {
        *self == GpuDriver::Host
    }

    /// The flag as the user writes it, for reasons and findings.
    pub fn flag(self) -> &'static str {
        match self {
            GpuDriver::Host => "--gpu-driver host",
            GpuDriver::Operator => "--gpu-driver operator",
            GpuDriver::None => "--gpu-driver none",
        }
    }
}

/// Where selection takes its GPUs from.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuSource<'a> {
    /// The GPUs NVML reports (a host driver is loaded, or there is no NVIDIA GPU at all).
    Nvml,
    /// No GPU is used; the note says why (none when there is nothing to say).
    Unused(Option<String>),
    /// GPUs that only the PCI bus knows about, to be driven by the GPU operator's driver
    /// container (`--gpu-driver operator`).
    OperatorDriver(&'a [PciGpu]),
}

/// The PCI GPUs as a list for a sentence: "0000:01:00.0 10de:2684, nouveau bound; ...".
pub fn describe_pci(gpus: &[PciGpu]) -> String {
    gpus.iter().map(PciGpu::describe).collect::<Vec<_>>().join("; ")
}

/// Whether a loaded NVIDIA kernel driver was seen: NVML answered, the module reports its
/// version, or a GPU is bound to `nvidia`.
pub fn host_driver_loaded(facts: &HostFacts) -> bool {
    !facts.gpus.is_empty()
        || facts.nvidia.kernel_module.is_some()
        || facts
            .nvidia
            .pci_gpus
            .iter()
            .any(|g| g.driver.as_deref() == Some("nvidia"))
}

/// Decides where selection takes its GPUs from for this host and choice.
pub fn gpu_source(facts: &HostFacts, choice: GpuDriver) -> GpuSource<'_> {
    let pci = facts.nvidia.pci_gpus.as_slice();
    match choice {
        GpuDriver::Host => {
            if pci.is_empty() || host_driver_loaded(facts) {
                // A loaded driver that NVML cannot talk to (permissions, a broken library) is
                // explained by `usable_gpus` with NVML's own reason.
                return GpuSource::Nvml;
            }
            GpuSource::Unused(Some(format!(
                "no GPU, because no NVIDIA driver is loaded (PCI {}); two ways to use it: install the NVIDIA driver on the host (the usual way, see the gpu-driver finding), or pass --gpu-driver operator to let the GPU operator build and load its driver in a container",
                describe_pci(pci)
            )))
        }
        GpuDriver::Operator => {
            if !facts.gpus.is_empty() {
                // The host driver runs the GPUs; preflight refuses a second one.
                GpuSource::Nvml
            } else if !pci.is_empty() {
                GpuSource::OperatorDriver(pci)
            } else {
                GpuSource::Unused(Some(
                    "--gpu-driver operator: there is no NVIDIA GPU on the PCI bus, so there is nothing for the operator's driver to run; everything runs on CPU".into(),
                ))
            }
        }
        GpuDriver::None => {
            let mut seen: Vec<String> = facts
                .gpus
                .iter()
                .map(|g| format!("GPU {} {} {}", g.index, g.name, human_bytes(g.memory_total_bytes)))
                .collect();
            if seen.is_empty() {
                seen = pci.iter().map(|g| format!("PCI {}", g.describe())).collect();
            }
            if seen.is_empty() && facts.nvidia.pci_devices > 0 {
                seen.push(format!("{} NVIDIA GPU(s) on the PCI bus", facts.nvidia.pci_devices));
            }
            GpuSource::Unused((!seen.is_empty()).then(|| {
                format!(
                    "--gpu-driver none: {} not used; everything runs on CPU",
                    seen.join(", ")
                )
            }))
        }
    }
}

/// The VRAM a GPU profile asks of each GPU (0 for a CPU profile).
fn vram_gib(p: &Profile) -> f64 {
    p.requires.gpu.as_ref().map_or(0.0, |g| g.vram_gib)
}

/// Host requirements a profile states and GPUs it needs, checked without VRAM (unknown without
/// a driver): the shortfalls and, when there are none, the lines saying what is met.
fn fit_without_vram(facts: &HostFacts, p: &Profile, gpus: usize) -> (Vec<String>, Vec<String>) {
    let r = &p.requires;
    let mut short: Vec<String> = host_shortfalls(facts, r.memory_gib, r.cpus, r.disk_gib)
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    let count = r.gpu.as_ref().map_or(1, |g| g.count);
    if (gpus as u32) < count {
        short.push(format!("needs {count} GPU(s); the PCI bus shows {gpus}"));
    }
    let met = vec![
        format!(
            "memory {} ≥ {}",
            human_bytes(facts.memory.total_bytes),
            human_gib(r.memory_gib)
        ),
        format!("{} CPUs ≥ {}", facts.cpu.count, r.cpus),
        format!(
            "free disk {} ≥ {}",
            human_bytes(facts.disk.available_bytes),
            human_gib(r.disk_gib)
        ),
    ];
    (short, met)
}

/// Picks a GPU profile for GPUs the operator's driver container will run. Without a driver
/// there is no VRAM figure and kstrap has no cited table from PCI device ids to memory, so it
/// does not guess: the tier is the one named with `--profile`, or else the smallest GPU tier
/// whose memory, CPU and disk requirements the host meets, said so in the reasons.
pub(super) fn select_operator_driver(
    facts: &HostFacts,
    profiles: &[Profile],
    overrides: &Overrides,
    pci: &[PciGpu],
) -> Result<Selection, SelectError> {
    let driver_line = format!(
        "--gpu-driver operator: the GPU operator's driver container will run PCI {}",
        describe_pci(pci)
    );
    let unknown = "VRAM is unknown until a driver runs (NVML needs one)";
    let gpus: Vec<u32> = (0..u32::try_from(pci.len()).unwrap_or(u32::MAX)).collect();
    let mut tiers: Vec<&Profile> = profiles.iter().filter(|p| p.uses_gpu()).collect();
    tiers.sort_by(|a, b| {
        vram_gib(a)
            .total_cmp(&vram_gib(b))
            .then_with(|| b.priority.cmp(&a.priority))
            .then_with(|| a.name.cmp(&b.name))
    });
    let tier_names: Vec<String> = tiers.iter().map(|p| p.name.clone()).collect();

    if let Some(name) = &overrides.profile {
        let Some(p) = profiles.iter().find(|p| &p.name == name) else {
            let mut available: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
            available.sort();
            return Err(SelectError::UnknownProfile {
                name: name.clone(),
                available,
            });
        };
        if !p.uses_gpu() {
            return Err(SelectError::GpuDriverNeedsGpuProfile {
                profile: p.name.clone(),
                gpu_profiles: tier_names,
            });
        }
        let (short, met) = fit_without_vram(facts, p, pci.len());
        if !short.is_empty() && !overrides.force {
            return Err(SelectError::Refused {
                profile: p.name.clone(),
                shortfalls: short,
            });
        }
        let warnings = short
            .iter()
            .map(|s| format!("forced past a requirement: {s}"))
            .collect();
        let mut reasons = vec![
            format!("{} named with --profile", p.name),
            driver_line,
            format!(
                "{unknown}: the tier's {} per GPU is taken at your word",
                human_gib(vram_gib(p))
            ),
        ];
        if short.is_empty() {
            reasons.extend(met);
        }
        let rejected = named_rejections(profiles.iter(), p);
        return finish(
            facts,
            p,
            overrides,
            "--profile",
            reasons,
            rejected,
            gpus,
            Vec::new(),
            warnings,
        );
    }

    let mut chosen: Option<(&Profile, Vec<String>)> = None;
    let mut rejected = Vec::new();
    for p in &tiers {
        let (short, met) = fit_without_vram(facts, p, pci.len());
        match &chosen {
            None if short.is_empty() => chosen = Some((p, met)),
            Some((winner, _)) if short.is_empty() => rejected.push(Rejection {
                profile: p.name.clone(),
                reason: format!(
                    "{unknown}, so kstrap takes the smallest GPU tier, {}; if the GPU has ≥ {}, name this tier with --profile {}",
                    winner.name,
                    human_gib(vram_gib(p)),
                    p.name
                ),
            }),
            _ => rejected.push(Rejection {
                profile: p.name.clone(),
                reason: short.join("; "),
            }),
        }
    }
    let mut cpu: Vec<&Profile> = profiles.iter().filter(|p| !p.uses_gpu()).collect();
    cpu.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
    rejected.extend(cpu.iter().map(|p| Rejection {
        profile: p.name.clone(),
        reason: "uses no GPU, and --gpu-driver operator asks for one (leave the flag out, or use --gpu-driver none, for a CPU profile)".into(),
    }));
    let Some((p, met)) = chosen else {
        return Err(SelectError::NoProfileFits { rejected });
    };
    let mut reasons = vec![
        format!(
            "smallest GPU tier this host's memory, CPUs and disk meet: {unknown}, so kstrap does not guess a larger one; once `nvidia-smi` shows the GPU's memory, `kstrap up --profile <tier>` moves to the tier it holds"
        ),
        driver_line,
    ];
    reasons.extend(met);
    reasons.push(format!(
        "{} sharing: {} shares per GPU",
        p.gpu.sharing.label(),
        p.gpu.replicas
    ));
    finish(
        facts,
        p,
        overrides,
        "auto",
        reasons,
        rejected,
        gpus,
        Vec::new(),
        Vec::new(),
    )
}
