//! Choosing a profile for a host: pure, deterministic, and able to say why.
//!
//! Profiles are tried from the highest priority down (ties by name); the first whose
//! requirements the host meets wins, and every other profile gets the reason it was passed over.
//! A profile named by the user is checked the same way: below `recommends` it warns, below
//! `requires` it is refused unless forced.

use super::Profile;
use super::gpu_source::{self, GpuDriver, GpuSource};
use crate::distro::Distro;
use crate::facts::{GpuFacts, HostFacts};
use crate::units::{gib, human_bytes, human_gib};
use serde::Serialize;

/// What the user asked for instead of the automatic choice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub profile: Option<String>,
    pub distro: Option<Distro>,
    /// Accept a profile the host falls far short of.
    pub force: bool,
    /// The model Ollama serves instead of the profile's (`--model`); refused when it does not
    /// fit the profile's VRAM budget.
    pub model: Option<String>,
    /// The tier and model recorded at the first install (kstrap's state): kept unless the user
    /// names another profile or model.
    pub kept: Option<KeptPlan>,
    /// Where the NVIDIA driver comes from (`--gpu-driver`).
    pub gpu_driver: GpuDriver,
}

/// What the first install decided, as kstrap's state records it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeptPlan {
    pub profile: String,
    pub model: Option<String>,
    /// Where it was read from, for the reason.
    pub source: String,
    /// The `--gpu-driver` choice of the first install.
    pub gpu_driver: GpuDriver,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub profile: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    pub profile: Profile,
    pub distro: Distro,
    /// "auto", or "--profile" when the user named it.
    pub chosen_by: &'static str,
    /// Why this profile, one line each, with figures.
    pub reasons: Vec<String>,
    /// The other profiles and why they were not chosen.
    pub rejected: Vec<Rejection>,
    /// Indexes of the GPUs the cluster will use (empty unless the profile uses GPUs).
    pub gpus: Vec<u32>,
    /// Why GPUs present on the host are not used, if any.
    pub gpu_notes: Vec<String>,
    /// Where the host falls short of a profile the user named.
    pub warnings: Vec<String>,
    /// GPU profiles: the VRAM budget on the chosen GPUs (an estimate).
    pub vram_budget: Option<crate::budget::VramBudget>,
    /// The model named with `--model` (checked against the budget), if any.
    pub model: Option<String>,
    /// Where the NVIDIA driver comes from (`--gpu-driver`): `operator` turns on the GPU
    /// operator's driver container.
    pub gpu_driver: GpuDriver,
}

impl Selection {
    /// Shares the node will advertise: GPUs × replicas (0 without GPUs).
    pub fn gpu_shares(&self) -> u32 {
        self.gpus.len() as u32 * self.profile.gpu.replicas
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectError {
    #[error("unknown profile {name:?}; available: {}", .available.join(", "))]
    UnknownProfile { name: String, available: Vec<String> },
    #[error(
        "no profile fits this host:\n{}\n  fix: run kstrap on a machine that meets one of these, or force one with --profile NAME --force",
        format_rejections(.rejected)
    )]
    NoProfileFits { rejected: Vec<Rejection> },
    #[error(transparent)]
    Budget(#[from] crate::budget::BudgetError),
    #[error(
        "--model {model} does not fit profile {profile} on this host:\n{}\n  fix: name a smaller model, or leave --model out to use the profile's",
        .shortfalls.iter().map(|s| format!("  - {s}")).collect::<Vec<_>>().join("\n")
    )]
    ModelDoesNotFit {
        model: String,
        profile: String,
        shortfalls: Vec<String>,
    },
    #[error(
        "--gpu-driver operator installs an NVIDIA driver for a GPU profile, but profile {profile} uses no GPU\n  fix: name a GPU profile ({}), or leave out --gpu-driver operator",
        .gpu_profiles.join(", ")
    )]
    GpuDriverNeedsGpuProfile { profile: String, gpu_profiles: Vec<String> },
    #[error(
        "profile {profile} needs more than this host has:\n{}\n  use --force to install it anyway (services may not start), or let kstrap choose",
        .shortfalls.iter().map(|s| format!("  - {s}")).collect::<Vec<_>>().join("\n")
    )]
    Refused { profile: String, shortfalls: Vec<String> },
}

fn format_rejections(r: &[Rejection]) -> String {
    r.iter()
        .map(|r| format!("  - {}: {}", r.profile, r.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lowest NVIDIA driver branch an architecture needs: Blackwell (compute capability 10 and up)
/// needs 570.
const BLACKWELL_MIN_DRIVER: u32 = 570;

/// `Some((needed, installed))` when `gpu` needs a newer driver than the host's.
pub fn driver_too_old(facts: &HostFacts, gpu: &GpuFacts) -> Option<(u32, u32)> {
    let blackwell = gpu.architecture.eq_ignore_ascii_case("blackwell")
        || gpu.compute_capability().is_some_and(|(major, _)| major >= 10);
    let have: u32 = facts
        .nvidia
        .driver_version
        .as_deref()?
        .split('.')
        .next()?
        .parse()
        .ok()?;
    (blackwell && have < BLACKWELL_MIN_DRIVER).then_some((BLACKWELL_MIN_DRIVER, have))
}

/// The GPUs kstrap can put under the operator with time-slicing, and notes on those it cannot.
pub fn usable_gpus(facts: &HostFacts) -> (Vec<&GpuFacts>, Vec<String>) {
    let mut notes = Vec::new();
    if facts.gpus.is_empty() {
        match (&facts.nvidia.unavailable_reason, facts.nvidia.pci_devices) {
            (Some(why), n) if n > 0 => notes.push(format!("{n} NVIDIA GPU(s) on the PCI bus are not usable: {why}")),
            (_, n) if n > 0 => notes.push(format!("{n} NVIDIA GPU(s) on the PCI bus, but NVML reports none")),
            _ => {}
        }
        return (Vec::new(), notes);
    }
    if facts.wsl2 {
        notes.push("this is WSL2, which the NVIDIA GPU operator does not support: GPUs are not used".into());
        return (Vec::new(), notes);
    }
    let mut usable = Vec::new();
    for g in &facts.gpus {
        if g.mig_enabled() {
            notes.push(format!(
                "GPU {} ({}) has MIG enabled; time-slicing MIG instances is out of scope",
                g.index, g.name
            ));
            continue;
        }
        if let Some((min, have)) = driver_too_old(facts, g) {
            notes.push(format!(
                "GPU {} ({}, {}) needs driver {min} or newer; the host has {have}",
                g.index, g.name, g.architecture
            ));
            continue;
        }
        usable.push(g);
    }
    (usable, notes)
}

/// The host resources a profile states figures for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resource {
    Memory,
    Cpus,
    Disk,
}

/// Requirements the host does not meet: which resource, and a sentence with figures.
pub(super) fn host_shortfalls(facts: &HostFacts, memory_gib: f64, cpus: u32, disk_gib: f64) -> Vec<(Resource, String)> {
    let mut out = Vec::new();
    if gib(facts.memory.total_bytes) < memory_gib {
        let text = format!(
            "memory {} < {}",
            human_bytes(facts.memory.total_bytes),
            human_gib(memory_gib)
        );
        out.push((Resource::Memory, text));
    }
    if facts.cpu.count < cpus {
        out.push((Resource::Cpus, format!("{} CPUs < {cpus}", facts.cpu.count)));
    }
    // The partition of --data-dir when one is given, else /var/lib's.
    let disk = facts.data_disk();
    if gib(disk.available_bytes) < disk_gib {
        let text = format!(
            "free disk at {} {} < {}",
            disk.path,
            human_bytes(disk.available_bytes),
            human_gib(disk_gib)
        );
        out.push((Resource::Disk, text));
    }
    out
}

struct Fit<'a> {
    shortfalls: Vec<String>,
    /// Resources among `shortfalls` (the GPU shortfall has none).
    short_resources: Vec<Resource>,
    satisfied: Vec<String>,
    gpus: Vec<&'a GpuFacts>,
    /// Why usable GPUs cannot run the profile's CUDA images (architecture or driver).
    incompatible: Vec<String>,
}

fn fit<'a>(facts: &HostFacts, usable: &[&'a GpuFacts], p: &Profile) -> Fit<'a> {
    let r = &p.requires;
    let host = host_shortfalls(facts, r.memory_gib, r.cpus, r.disk_gib);
    let short_resources = host.iter().map(|(res, _)| *res).collect();
    let mut shortfalls: Vec<String> = host.into_iter().map(|(_, text)| text).collect();
    let mut satisfied = Vec::new();
    let mut gpus = Vec::new();
    let mut incompatible = Vec::new();
    if let Some(g) = &r.gpu {
        gpus = usable
            .iter()
            .copied()
            .filter(|x| gib(x.memory_total_bytes) >= g.vram_gib)
            .collect();
        // A GPU above the threshold must run the CUDA images the profile puts on it (their
        // architectures and driver floor: `budget::gpu_images`); a tier whose images it cannot
        // run is passed over for one that runs fewer services on the GPU, or the CPU.
        let services = crate::budget::gpu_images::gpu_services(p);
        let driver = facts.nvidia.driver_version.as_deref();
        gpus.retain(|x| {
            let why = crate::budget::gpu_images::problems(&services, x, driver);
            incompatible.extend(why.iter().cloned());
            why.is_empty()
        });
        // A GPU above the threshold must also hold the profile's VRAM budget (free VRAM on
        // laptops, where the display holds some).
        let mut over_budget = Vec::new();
        if p.gpu.sharing == super::Sharing::None {
            // Whole GPUs: one budget per GPU slot over all of them (crate::budget::whole).
            if gpus.len() as u32 >= g.count
                && let Ok(Some(b)) = crate::budget::compute(facts, p, &gpus, None)
                && !b.fits
            {
                over_budget.extend(b.shortfall());
                gpus.clear();
            }
        } else {
            gpus.retain(|x| match crate::budget::compute(facts, p, &[*x], None) {
                Ok(Some(b)) if !b.fits => {
                    over_budget.extend(b.shortfall());
                    false
                }
                _ => true,
            });
        }
        if !incompatible.is_empty() && ((gpus.len() as u32) < g.count || gpus.len() < usable.len()) {
            shortfalls.extend(incompatible.iter().cloned());
        } else if (gpus.len() as u32) < g.count && !over_budget.is_empty() {
            shortfalls.extend(over_budget);
        } else if (gpus.len() as u32) < g.count {
            let have = if usable.is_empty() {
                "no usable NVIDIA GPU".to_string()
            } else {
                let list: Vec<String> = usable
                    .iter()
                    .map(|x| format!("GPU {} {} {}", x.index, x.name, human_bytes(x.memory_total_bytes)))
                    .collect();
                format!(
                    "{} with at least {} ({})",
                    gpus.len(),
                    human_gib(g.vram_gib),
                    list.join(", ")
                )
            };
            shortfalls.push(format!(
                "needs {} GPU(s) with ≥ {} VRAM; host has {have}",
                g.count,
                human_gib(g.vram_gib)
            ));
        } else if gpus.len() < usable.len() {
            // The device plugin shares every GPU of the node under one resource name and cannot
            // be told to leave one out or to name GPUs apart (NVIDIA/k8s-device-plugin v0.19.2,
            // `DisableResourceNamingInConfig` in api/config/v1/config.go resets `devices` and
            // `rename`): any share may land on any usable GPU, so the tier must fit all of them.
            let left_out: Vec<String> = usable
                .iter()
                .filter(|x| !gpus.iter().any(|y| y.index == x.index))
                .map(|x| format!("GPU {} {} {}", x.index, x.name, human_bytes(x.memory_total_bytes)))
                .collect();
            shortfalls.push(format!(
                "every GPU of the node is shared and a share may land on any of them; {} does not hold this tier (≥ {} VRAM and its budget)",
                left_out.join(", "),
                human_gib(g.vram_gib)
            ));
        } else {
            let list: Vec<String> = gpus
                .iter()
                .map(|x| format!("{} {}", x.name, human_bytes(x.memory_total_bytes)))
                .collect();
            satisfied.push(format!(
                "{} GPU(s) with ≥ {} VRAM: {}",
                gpus.len(),
                human_gib(g.vram_gib),
                list.join(", ")
            ));
        }
    }
    satisfied.push(format!(
        "memory {} ≥ {}",
        human_bytes(facts.memory.total_bytes),
        human_gib(r.memory_gib)
    ));
    satisfied.push(format!("{} CPUs ≥ {}", facts.cpu.count, r.cpus));
    satisfied.push(format!(
        "free disk {} ≥ {}",
        human_bytes(facts.data_disk().available_bytes),
        human_gib(r.disk_gib)
    ));
    Fit {
        shortfalls,
        short_resources,
        satisfied,
        gpus,
        incompatible,
    }
}

/// Picks a profile for `facts` among `profiles`, or explains why none fits.
/// Every other profile, not chosen because `--profile` named `named`.
pub(super) fn named_rejections<'a>(others: impl Iterator<Item = &'a Profile>, named: &Profile) -> Vec<Rejection> {
    others
        .filter(|o| o.name != named.name)
        .map(|o| Rejection {
            profile: o.name.clone(),
            reason: format!("not chosen: --profile {} was given", named.name),
        })
        .collect()
}

pub fn select(facts: &HostFacts, profiles: &[Profile], overrides: &Overrides) -> Result<Selection, SelectError> {
    if let (None, Some(kept)) = (&overrides.profile, &overrides.kept)
        && profiles.iter().any(|p| p.name == kept.profile)
    {
        return select_kept(facts, profiles, overrides, kept);
    }
    let (usable, gpu_notes) = match gpu_source::gpu_source(facts, overrides.gpu_driver) {
        GpuSource::OperatorDriver(pci) => {
            return gpu_source::select_operator_driver(facts, profiles, overrides, pci);
        }
        GpuSource::Unused(note) => (Vec::new(), note.into_iter().collect()),
        GpuSource::Nvml => usable_gpus(facts),
    };
    let mut ranked: Vec<&Profile> = profiles.iter().collect();
    ranked.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));

    if let Some(name) = &overrides.profile {
        let Some(p) = profiles.iter().find(|p| &p.name == name) else {
            return Err(SelectError::UnknownProfile {
                name: name.clone(),
                available: ranked.iter().map(|p| p.name.clone()).collect(),
            });
        };
        let f = fit(facts, &usable, p);
        if !f.shortfalls.is_empty() && !overrides.force {
            return Err(SelectError::Refused {
                profile: p.name.clone(),
                shortfalls: f.shortfalls,
            });
        }
        let mut warnings: Vec<String> = f
            .shortfalls
            .iter()
            .map(|s| format!("forced past a requirement: {s}"))
            .collect();
        let c = &p.recommends;
        warnings.extend(
            host_shortfalls(facts, c.memory_gib, c.cpus, c.disk_gib)
                .into_iter()
                .filter(|(res, _)| !f.short_resources.contains(res))
                .map(|(_, s)| format!("below the recommendation: {s}")),
        );
        let mut reasons = vec![format!("{} named with --profile", p.name)];
        if f.shortfalls.is_empty() {
            reasons.extend(f.satisfied);
        }
        let rejected = named_rejections(ranked.iter().copied(), p);
        // A forced GPU profile still only uses GPUs that exist and are usable.
        let gpus: Vec<u32> = if p.uses_gpu() {
            if f.gpus.is_empty() {
                usable.iter().map(|g| g.index).collect()
            } else {
                f.gpus.iter().map(|g| g.index).collect()
            }
        } else {
            Vec::new()
        };
        return finish(
            facts,
            p,
            overrides,
            "--profile",
            reasons,
            rejected,
            gpus,
            gpu_notes,
            warnings,
        );
    }

    let mut rejected = Vec::new();
    let mut chosen: Option<(&Profile, Fit)> = None;
    let mut incompatible_seen: Vec<String> = Vec::new();
    for p in &ranked {
        let f = fit(facts, &usable, p);
        for why in &f.incompatible {
            if !incompatible_seen.contains(why) {
                incompatible_seen.push(why.clone());
            }
        }
        if let Some((winner, _)) = &chosen {
            let reason = if f.shortfalls.is_empty() && winner.priority == p.priority {
                format!(
                    "fits too, with the same priority {} as {}; a tie goes to the name first in alphabetical order (give the profiles different priorities to choose)",
                    p.priority, winner.name
                )
            } else if f.shortfalls.is_empty() {
                format!(
                    "fits too, but {} ranks higher (priority {} > {})",
                    winner.name, winner.priority, p.priority
                )
            } else {
                f.shortfalls.join("; ")
            };
            rejected.push(Rejection {
                profile: p.name.clone(),
                reason,
            });
        } else if f.shortfalls.is_empty() {
            chosen = Some((p, f));
        } else {
            rejected.push(Rejection {
                profile: p.name.clone(),
                reason: f.shortfalls.join("; "),
            });
        }
    }
    let Some((p, f)) = chosen else {
        return Err(SelectError::NoProfileFits { rejected });
    };
    let mut gpu_notes = gpu_notes;
    if !p.uses_gpu() {
        // Say why the GPU sits idle when its architecture or driver kept it from every tier.
        for why in incompatible_seen {
            if !gpu_notes.contains(&why) {
                gpu_notes.push(why);
            }
        }
    }
    let mut reasons = f.satisfied;
    let c = &p.recommends;
    let warnings = host_shortfalls(facts, c.memory_gib, c.cpus, c.disk_gib)
        .into_iter()
        .map(|(_, s)| format!("below the recommendation: {s}"))
        .collect();
    if p.gpu.sharing == super::Sharing::None && p.uses_gpu() {
        reasons.push(
            "sharing none: each nvidia.com/gpu is one whole GPU, held by one pod only, so where each service runs is enforced and no service can run another out of VRAM (time-slicing enforces neither)"
                .into(),
        );
    } else if p.uses_gpu() {
        reasons.push(format!(
            "{} sharing: {} shares per GPU",
            p.gpu.sharing.label(),
            p.gpu.replicas
        ));
    }
    let gpus = f.gpus.iter().map(|g| g.index).collect();
    reasons.insert(
        0,
        format!("highest-priority profile this host meets (priority {})", p.priority),
    );
    finish(
        facts, p, overrides, "auto", reasons, rejected, gpus, gpu_notes, warnings,
    )
}

/// A re-run keeps the first install's tier and model: a browser holding VRAM or a driver that
/// broke after an update must not move the machine to another tier (or the CPU) and swap its
/// images and model. The host is still checked against the kept profile (preflight refuses a GPU
/// profile without a usable GPU, with how to fix it); the re-run says what it kept and why.
fn select_kept(
    facts: &HostFacts,
    profiles: &[Profile],
    overrides: &Overrides,
    kept: &KeptPlan,
) -> Result<Selection, SelectError> {
    let fresh = Overrides {
        kept: None,
        ..overrides.clone()
    };
    let auto = select(facts, profiles, &fresh).ok().map(|s| s.profile.name);
    let named = Overrides {
        profile: Some(kept.profile.clone()),
        force: true,
        model: overrides.model.clone().or_else(|| kept.model.clone()),
        kept: None,
        ..overrides.clone()
    };
    let mut sel = select(facts, profiles, &named)?;
    sel.chosen_by = "kept";
    sel.reasons[0] = format!(
        "{} kept from the first install ({}); pass --profile (and --model) to change it",
        kept.profile, kept.source
    );
    if overrides.model.is_none()
        && let Some(m) = &kept.model
    {
        sel.reasons.retain(|r| !r.ends_with("named with --model"));
        sel.reasons.push(format!("model {m} kept from the first install"));
    }
    match auto {
        Some(a) if a != kept.profile => sel.reasons.push(format!(
            "this host would get {a} today (see `kstrap plan --profile {a}`); the plan is kept until you ask for another"
        )),
        None => sel
            .reasons
            .push("no profile fits this host today; the plan is kept until you ask for another".into()),
        _ => {}
    }
    for r in &mut sel.rejected {
        r.reason = format!("not chosen: {} is kept from the first install", kept.profile);
    }
    Ok(sel)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    facts: &HostFacts,
    p: &Profile,
    overrides: &Overrides,
    chosen_by: &'static str,
    mut reasons: Vec<String>,
    rejected: Vec<Rejection>,
    gpus: Vec<u32>,
    gpu_notes: Vec<String>,
    mut warnings: Vec<String>,
) -> Result<Selection, SelectError> {
    let distro = overrides.distro.unwrap_or(p.distro);
    if distro != p.distro {
        reasons.push(format!(
            "distribution {distro} from --distro (the profile's default is {})",
            p.distro
        ));
    }
    let chosen: Vec<&GpuFacts> = facts.gpus.iter().filter(|g| gpus.contains(&g.index)).collect();
    let model = overrides.model.as_deref();
    let vram_budget = crate::budget::compute(facts, p, &chosen, model)?;
    if let Some(name) = model {
        let Some(info) = crate::budget::catalog::find(name) else {
            return Err(crate::budget::BudgetError::UnknownModel {
                name: name.to_string(),
                known: crate::budget::catalog::names().iter().map(|s| s.to_string()).collect(),
            }
            .into());
        };
        let mut shortfalls: Vec<String> = vram_budget.iter().filter_map(|b| b.shortfall()).collect();
        // The model is bounded by free disk too: the profile's disk figure holds its own model.
        let own = p
            .vram
            .as_ref()
            .and_then(|v| crate::budget::catalog::find(&v.ollama.model))
            .map(|m| m.size_bytes())
            .unwrap_or(0);
        let extra = info.size_bytes().saturating_sub(own);
        let need = p.requires.disk_gib + gib(extra);
        let disk = facts.data_disk();
        if extra > 0 && gib(disk.available_bytes) < need {
            shortfalls.push(format!(
                "{name} ({} GB) with the stack's images needs {} free at {}; the host has {}",
                info.size_gb,
                human_gib((need * 10.0).ceil() / 10.0),
                disk.path,
                human_bytes(disk.available_bytes)
            ));
        }
        if !shortfalls.is_empty() {
            if !overrides.force {
                return Err(SelectError::ModelDoesNotFit {
                    model: name.to_string(),
                    profile: p.name.clone(),
                    shortfalls,
                });
            }
            warnings.extend(
                shortfalls
                    .into_iter()
                    .map(|s| format!("forced past the VRAM budget: {s}")),
            );
        }
        reasons.push(format!("model {name} named with --model"));
    }
    Ok(Selection {
        profile: p.clone(),
        distro,
        chosen_by,
        reasons,
        rejected,
        gpus,
        gpu_notes,
        warnings,
        vram_budget,
        model: overrides.model.clone(),
        gpu_driver: overrides.gpu_driver,
    })
}
