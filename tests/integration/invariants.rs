//! Properties of selection and planning over generated hosts: deterministic, never a GPU step
//! without a usable GPU, an automatic choice always meets its requirements, steps well-ordered.

use crate::support::fixture;
use kstrap::checks::preflight;
use kstrap::facts::{GpuFacts, HostFacts, MigFacts};
use kstrap::plan::step::Phase;
use kstrap::plan::{Settings, plan};
use kstrap::profile::{self, Overrides, select};
use kstrap::units::{GIB, MIB, gib};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Gen {
    memory_gib: u64,
    cpus: u32,
    disk_gib: u64,
    wsl2: bool,
    driver_major: u32,
    gpus: Vec<(u64, bool, bool)>, // (VRAM MiB, Blackwell, MIG on)
    pci_without_driver: bool,
}

fn host() -> impl Strategy<Value = Gen> {
    (
        1u64..512,
        1u32..128,
        1u64..4000,
        any::<bool>(),
        540u32..590,
        prop::collection::vec((2048u64..100_000, any::<bool>(), any::<bool>()), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(memory_gib, cpus, disk_gib, wsl2, driver_major, gpus, pci_without_driver)| Gen {
                memory_gib,
                cpus,
                disk_gib,
                wsl2,
                driver_major,
                gpus,
                pci_without_driver,
            },
        )
}

fn build(g: &Gen) -> HostFacts {
    let mut f = fixture("rtx5090-96gb");
    f.memory.total_bytes = g.memory_gib * GIB;
    f.memory.available_bytes = g.memory_gib * GIB / 2;
    f.cpu.count = g.cpus;
    f.disk.available_bytes = g.disk_gib * GIB;
    f.wsl2 = g.wsl2;
    f.nvidia.driver_version = Some(format!("{}.10.01", g.driver_major));
    f.gpus = g
        .gpus
        .iter()
        .enumerate()
        .map(|(i, (mib, blackwell, mig))| GpuFacts {
            index: i as u32,
            name: format!("GPU model {i}"),
            uuid: format!("GPU-{i:08}"),
            memory_total_bytes: mib * MIB,
            memory_free_bytes: mib * MIB / 2,
            compute_capability: Some(if *blackwell { "12.0" } else { "8.9" }.into()),
            architecture: if *blackwell { "Blackwell" } else { "Ada" }.into(),
            mig: Some(MigFacts {
                current: *mig,
                pending: false,
            }),
        })
        .collect();
    if f.gpus.is_empty() && g.pci_without_driver {
        f.nvidia.pci_devices = 1;
        f.nvidia.driver_version = None;
        f.nvidia.unavailable_reason = Some("NVML library libnvidia-ml.so.1 not found".into());
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn selection_and_plan_are_pure_and_safe(g in host()) {
        let facts = build(&g);
        let profiles = profile::embedded().unwrap();
        let stack = kstrap::stack::load("voice-ai", None).unwrap();
        let a = select(&facts, &profiles, &Overrides::default());
        let b = select(&facts, &profiles, &Overrides::default());
        prop_assert_eq!(&a, &b);
        let Ok(sel) = a else { return Ok(()) };

        // An automatic choice meets its requirements.
        let r = &sel.profile.requires;
        prop_assert!(gib(facts.memory.total_bytes) >= r.memory_gib);
        prop_assert!(facts.cpu.count >= r.cpus);
        if let Some(req) = &r.gpu {
            prop_assert!(sel.gpus.len() as u32 >= req.count);
        }
        // GPUs used exist, are not MIG-partitioned, have the VRAM, and never on WSL2.
        for i in &sel.gpus {
            let gpu = facts.gpus.iter().find(|x| x.index == *i).unwrap();
            prop_assert!(!gpu.mig_enabled());
            prop_assert!(!facts.wsl2);
            prop_assert!(gib(gpu.memory_total_bytes) >= r.gpu.as_ref().unwrap().vram_gib);
        }

        let settings = Settings::default();
        let p1 = plan(&facts, &sel, preflight(&facts, Some(&sel)), &stack, &settings).unwrap();
        let p2 = plan(&facts, &sel, preflight(&facts, Some(&sel)), &stack, &settings).unwrap();
        prop_assert_eq!(&p1, &p2);

        // No usable GPU ⇒ no GPU-operator step.
        let gpu_steps = p1.steps.iter().filter(|s| s.phase == Phase::Gpu).count();
        if sel.gpus.is_empty() {
            prop_assert_eq!(gpu_steps, 0);
        } else {
            prop_assert!(gpu_steps > 0);
        }
        // Phases never go backwards; ids are unique; the first step is preflight.
        prop_assert!(p1.steps.windows(2).all(|w| w[0].phase <= w[1].phase));
        let mut ids: Vec<&str> = p1.steps.iter().map(|s| s.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        prop_assert_eq!(ids.len(), p1.steps.len());
        prop_assert_eq!(p1.steps[0].phase, Phase::Preflight);
    }

    #[test]
    fn forced_profiles_never_plan_a_gpu_step_without_a_gpu(g in host(), name in prop::sample::select(vec!["laptop-8gb", "rtx-5090", "cpu-fallback"])) {
        let mut facts = build(&g);
        facts.gpus.clear();
        let profiles = profile::embedded().unwrap();
        let stack = kstrap::stack::load("voice-ai", None).unwrap();
        let sel = select(&facts, &profiles, &Overrides { profile: Some(name.into()), force: true, ..Default::default() }).unwrap();
        let p = plan(&facts, &sel, preflight(&facts, Some(&sel)), &stack, &Settings::default()).unwrap();
        prop_assert!(p.steps.iter().all(|s| s.phase != Phase::Gpu));
        prop_assert!(p.gpu.is_none());
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// No budget exceeds its GPU's VRAM (free VRAM on laptops) less the profile's headroom, and
    /// every chosen model fits: on any host, for the automatic choice and for every GPU tier
    /// forced onto the host's GPUs whose budget says it fits.
    #[test]
    fn no_budget_exceeds_its_gpus_vram_less_headroom(g in host(), laptop in any::<bool>()) {
        let mut facts = build(&g);
        facts.laptop.is_laptop = laptop;
        let profiles = profile::embedded().unwrap();
        let check = |sel: &kstrap::profile::Selection| -> Result<(), TestCaseError> {
            let Some(b) = &sel.vram_budget else {
                prop_assert!(sel.profile.vram.is_none() || sel.gpus.is_empty());
                return Ok(());
            };
            let model = kstrap::budget::catalog::find(&b.model);
            prop_assert!(model.is_some());
            prop_assert!(b.rows[0].bytes >= model.map(|m| m.size_bytes()).unwrap_or(u64::MAX));
            // Whole GPUs: every GPU's slot within the smallest GPU's VRAM less the headroom,
            // one slot per GPU, and Ollama's slots together hold the model.
            if b.fits && !b.per_gpu.is_empty() {
                let smallest = sel
                    .gpus
                    .iter()
                    .filter_map(|i| facts.gpus.iter().find(|x| x.index == *i))
                    .map(|g| if laptop { g.memory_free_bytes } else { g.memory_total_bytes })
                    .min()
                    .unwrap();
                prop_assert_eq!(b.per_gpu.len(), sel.gpus.len());
                for g in &b.per_gpu {
                    prop_assert!(g.used_bytes + b.min_headroom_bytes <= smallest, "{:?}", g);
                }
                let ollama: u64 = b.per_gpu.iter().flat_map(|g| &g.rows).filter(|r| r.service == "ollama").map(|r| r.bytes).sum();
                prop_assert!(ollama >= model.map(|m| m.size_bytes()).unwrap_or(u64::MAX));
            }
            if b.fits {
                for i in &sel.gpus {
                    let gpu = facts.gpus.iter().find(|x| x.index == *i).unwrap();
                    let vram = if laptop { gpu.memory_free_bytes } else { gpu.memory_total_bytes };
                    prop_assert!(b.used_bytes + b.min_headroom_bytes <= vram, "{} on GPU {}", b.profile, i);
                }
            }
            Ok(())
        };
        if let Ok(sel) = select(&facts, &profiles, &Overrides::default()) {
            // An automatic choice's budget always fits.
            prop_assert!(sel.vram_budget.as_ref().is_none_or(|b| b.fits));
            check(&sel)?;
        }
        for p in profiles.iter().filter(|p| p.vram.is_some()) {
            let o = Overrides { profile: Some(p.name.clone()), force: true, ..Default::default() };
            if let Ok(sel) = select(&facts, &profiles, &o) {
                check(&sel)?;
            }
        }
    }
}
