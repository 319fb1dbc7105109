//! The VRAM budget: what each GPU service holds on a host's GPU, the headroom left, and why.
//!
//! Time-slicing gives the services no memory isolation (each share sees the whole GPU), so this
//! budget is the only thing that keeps them from running each other out of memory. It is pure:
//! a profile's VRAM plan (`crate::profile::VramPlan`), the model's published figures
//! (`catalog`) and the GPU facts in, figures out. Every figure is an estimate and is labelled so.
//!
//! Ollama's share follows how ollama v0.12.10 sizes a model it loads fully on a GPU:
//! - weights: the model's published download size;
//! - KV cache: context × parallel × layers × KV heads × (K + V head size) × bytes per element
//!   (`fs/ggml/ggml.go` `GraphSize`, `kvCacheBytesPerElement`);
//! - compute graph (llama formula of `GraphSize`, batch 512): max(4·b·(1 + 4·embedding +
//!   context·(1 + heads)), 4·b·(embedding + vocabulary));
//! - the runtime minimum it keeps free per CUDA device, 457 MiB (`ml/device.go` `MinimumMemory`).
//!
//! Ollama's limits are set explicitly, never left to its defaults: at v0.12.10 the default
//! context is a fixed 4096 (`envconfig/config.go`: `ContextLength = Uint("OLLAMA_CONTEXT_LENGTH",
//! 4096)`), but later releases choose it from total VRAM — 4096 below 23 GiB, 32768 from 23 GiB,
//! 262144 from 47 GiB (v0.19.0 `server/routes.go`, "vram-based default context") — which would
//! silently multiply the KV cache on an image update. `OLLAMA_MAX_LOADED_MODELS` defaults to
//! 3 per GPU (v0.12.10 `server/sched.go` `defaultModelsPerGPU`), and `OLLAMA_NUM_PARALLEL`
//! multiplies the context; both are pinned to what the budget counts.
//!
//! On more than one GPU under time-slicing every service is budgeted as if it could land on any
//! one of them: a time-sliced share may be any GPU's, so each GPU must be able to hold every
//! service. Whole-GPU profiles (`gpu.sharing: none`) are budgeted per GPU instead (`whole`).

pub mod catalog;
pub mod gpu_images;
pub mod whole;

use crate::facts::{GpuFacts, HostFacts};
use crate::profile::{KvCacheType, Profile, VramPlan};
use crate::units::{GIB, human_bytes};
use catalog::ModelInfo;
use serde::Serialize;
use std::collections::BTreeMap;

/// ollama v0.12.10 `ml/device.go` `MinimumMemory`: 457 MiB kept free on each CUDA device.
pub const OLLAMA_MINIMUM_BYTES: u64 = 457 * 1024 * 1024;
/// Ollama's default batch size (`num_batch` 512), which sizes its compute graph.
pub(crate) const BATCH: u64 = 512;

/// One service's share of a GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub service: String,
    pub bytes: u64,
    /// What holds the memory: "llama3.1:8b weights 4.4 GiB + KV cache 0.5 GiB …".
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VramBudget {
    /// Always "estimate": figures from published sizes and a formula, not a measurement.
    pub kind: &'static str,
    pub profile: String,
    /// The model Ollama serves.
    pub model: String,
    /// How the model was chosen: the profile's, or `--model`.
    pub model_from: String,
    /// GPUs the budget is for (each must hold every service).
    pub gpus: Vec<u32>,
    /// The GPU the figures are for: the one with the least VRAM on the basis below.
    pub gpu: String,
    /// "free" (laptops: the display holds some) or "total".
    pub basis: &'static str,
    pub vram_bytes: u64,
    pub rows: Vec<Row>,
    pub used_bytes: u64,
    pub headroom_bytes: u64,
    /// What the profile keeps free at least.
    pub min_headroom_bytes: u64,
    pub fits: bool,
    /// Why the figures are what they are, one line each.
    pub why: Vec<String>,
    /// Ollama's environment, set on its container.
    pub ollama_env: BTreeMap<String, String>,
    /// Free disk the model needs beyond the profile's own model (a larger `--model`).
    pub extra_disk_bytes: u64,
    /// Whole GPUs Ollama's pod asks for (`nvidia.com/gpu`); 1 under time-slicing.
    pub ollama_gpus: u32,
    /// Whole-GPU profiles (`gpu.sharing: none`): what each GPU holds. Empty under time-slicing,
    /// where every GPU must hold every service (`rows`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_gpu: Vec<GpuBudget>,
}

/// One whole GPU's budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuBudget {
    /// Which GPU, in words (a slot: the kubelet picks the physical GPU).
    pub gpu: String,
    pub vram_bytes: u64,
    pub rows: Vec<Row>,
    pub used_bytes: u64,
    pub headroom_bytes: u64,
    pub fits: bool,
}

impl VramBudget {
    /// One line with figures when the budget does not fit.
    pub fn shortfall(&self) -> Option<String> {
        if self.fits {
            return None;
        }
        let over_reserve = self.rows.iter().find(|r| r.what.contains("exceeds its allotment"));
        Some(match over_reserve {
            Some(r) => format!("{}: {}", r.service, r.what),
            None => format!(
                "VRAM budget with {} needs {} + {} headroom; GPU {} has {} {} (estimate)",
                self.model,
                human_bytes(self.used_bytes),
                human_bytes(self.min_headroom_bytes),
                self.gpu,
                human_bytes(self.vram_bytes),
                self.basis
            ),
        })
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    #[error("--model {name:?}: kstrap has no published figures for this model; it budgets: {}\n  fix: name one of those, or leave --model out to use the profile's", .known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },
}

pub(crate) fn gib_text(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

/// Bytes of Ollama's KV cache for `model` at `context` × `parallel`.
pub fn kv_cache_bytes(model: &ModelInfo, context: u32, parallel: u32, kv: KvCacheType) -> u64 {
    let tokens = context as u64 * parallel as u64;
    (tokens as f64 * model.layers as f64 * model.kv_heads as f64 * (2 * model.head_dim) as f64 * kv.bytes_per_element())
        as u64
}

/// Bytes of Ollama's compute graph on full GPU offload (the llama formula of `GraphSize`).
pub fn graph_bytes(model: &ModelInfo, context: u32, parallel: u32) -> u64 {
    let ctx = context as u64 * parallel as u64;
    let a = 4 * BATCH * (1 + 4 * model.embedding + ctx * (1 + model.heads));
    let b = 4 * BATCH * (model.embedding + model.vocab);
    a.max(b)
}

/// Ollama's total on one GPU: weights + KV cache + graph + runtime minimum.
pub fn ollama_bytes(model: &ModelInfo, plan: &VramPlan) -> (u64, String) {
    let o = &plan.ollama;
    let weights = model.size_bytes();
    let kv = kv_cache_bytes(model, o.context, o.parallel, o.kv_cache_type);
    let graph = graph_bytes(model, o.context, o.parallel) + OLLAMA_MINIMUM_BYTES;
    let what = format!(
        "{} weights {} + KV cache {} ({} tokens × {} parallel, {}) + runtime {}",
        model.name,
        gib_text(weights),
        gib_text(kv),
        o.context,
        o.parallel,
        o.kv_cache_type.label(),
        gib_text(graph)
    );
    (weights + kv + graph, what)
}

/// The budget of `profile` on `gpus` (the GPUs selection chose), with `model` instead of the
/// profile's when given. `None`: the profile has no VRAM plan (CPU profiles) or no GPU.
pub fn compute(
    facts: &HostFacts,
    profile: &Profile,
    gpus: &[&GpuFacts],
    model: Option<&str>,
) -> Result<Option<VramBudget>, BudgetError> {
    let Some(plan) = &profile.vram else {
        return Ok(None);
    };
    if profile.gpu.sharing == crate::profile::Sharing::None {
        return whole::compute(facts, profile, plan, gpus, model);
    }
    let (name, from) = match model {
        Some(m) => (m, "--model".to_string()),
        None => (plan.ollama.model.as_str(), format!("profile {}", profile.name)),
    };
    let Some(info) = catalog::find(name) else {
        return Err(BudgetError::UnknownModel {
            name: name.to_string(),
            known: catalog::names().iter().map(|s| s.to_string()).collect(),
        });
    };
    let Some((basis, vram, smallest)) = budget_vram(facts, gpus) else {
        return Ok(None);
    };
    let gib = |g: f64| (g * GIB as f64) as u64;

    let mut fits = true;
    let mut rows = Vec::new();
    let (estimate, mut what) = ollama_bytes(info, plan);
    let ollama_row = match plan.ollama.reserve_gib {
        Some(r) => {
            let reserve = gib(r);
            if estimate > reserve {
                fits = false;
                what = format!(
                    "{what} = {} exceeds its allotment of {}",
                    gib_text(estimate),
                    gib_text(reserve)
                );
            } else {
                what = format!("allotment {} holds {what} = {}", gib_text(reserve), gib_text(estimate));
            }
            reserve.max(estimate)
        }
        None => estimate,
    };
    rows.push(Row {
        service: "ollama".into(),
        bytes: ollama_row,
        what,
    });
    for (service, s) in [
        ("whisper", &plan.whisper),
        ("kokoro", &plan.kokoro),
        ("agent (off by default)", &plan.agent),
    ] {
        if let Some(s) = s {
            rows.push(Row {
                service: service.into(),
                bytes: gib(s.gib),
                what: s.what.clone(),
            });
        }
    }
    let used: u64 = rows.iter().map(|r| r.bytes).sum();
    let min_headroom = gib(plan.headroom_gib);
    let headroom = vram.saturating_sub(used);
    if used + min_headroom > vram {
        fits = false;
    }

    let mut why = vec![format!(
        "budgeted on {basis} VRAM of GPU {} {} ({}){}",
        smallest.index,
        smallest.name,
        human_bytes(vram),
        if facts.laptop.is_laptop {
            ": on a laptop the display holds some"
        } else {
            ""
        }
    )];
    if gpus.len() > 1 {
        why.push(format!(
            "{} GPUs: each must hold every service, since a time-sliced share may be any GPU's",
            gpus.len()
        ));
    }
    why.push(format!(
        "model {name} from {from}; Ollama's context, parallel requests, loaded models and KV cache type are set explicitly"
    ));
    if plan.whisper.is_none() {
        why.push("whisper runs on the CPU: the GPU holds the model".into());
    }
    if plan.kokoro.is_none() {
        why.push("kokoro runs on the CPU: the GPU holds the model".into());
    }

    let env = ollama_env(&plan.ollama, min_headroom);
    let own = catalog::find(&plan.ollama.model).map(|m| m.size_bytes()).unwrap_or(0);
    Ok(Some(VramBudget {
        kind: "estimate",
        profile: profile.name.clone(),
        model: name.to_string(),
        model_from: from,
        gpus: gpus.iter().map(|g| g.index).collect(),
        gpu: format!("{} {}", smallest.index, smallest.name),
        basis,
        vram_bytes: vram,
        rows,
        used_bytes: used,
        headroom_bytes: headroom,
        min_headroom_bytes: min_headroom,
        fits,
        why,
        ollama_env: env,
        extra_disk_bytes: info.size_bytes().saturating_sub(own),
        ollama_gpus: 1,
        per_gpu: Vec::new(),
    }))
}

/// The overlays that put a selection's model and Ollama limits on the stack's objects (those
/// the stack has): Ollama's environment, the model the pull Job fetches, the front end's default.
pub fn stack_overlays(
    budget: Option<&VramBudget>,
    model: Option<&str>,
) -> BTreeMap<String, crate::stack::overlay::PlacedOverlay> {
    use crate::stack::overlay::{ContainerOverlay, Overlay, PlacedOverlay};
    let mut out = BTreeMap::new();
    let mut put = |key: &str, container: &str, env: BTreeMap<String, String>| {
        let mut overlay = Overlay::default();
        overlay.containers.insert(
            container.to_string(),
            ContainerOverlay {
                env,
                ..ContainerOverlay::default()
            },
        );
        out.insert(key.to_string(), PlacedOverlay { overlay, line: 0 });
    };
    if let Some(b) = budget {
        put("Deployment/ollama", "ollama", b.ollama_env.clone());
    }
    if let Some(m) = model.or(budget.map(|b| b.model.as_str())) {
        put(
            "Job/ollama-model-pull",
            "pull",
            BTreeMap::from([("MODEL".to_string(), m.to_string())]),
        );
        put(
            "Deployment/open-webui",
            "open-webui",
            // Open WebUI embeds with the model the stack pulled (it downloads none of its own).
            BTreeMap::from([
                ("DEFAULT_MODELS".to_string(), m.to_string()),
                ("RAG_EMBEDDING_MODEL".to_string(), m.to_string()),
            ]),
        );
    }
    // Whole GPUs: Ollama's pod holds the GPUs its model is split over.
    if let Some(b) = budget.filter(|b| !b.per_gpu.is_empty())
        && let Some(c) = out
            .get_mut("Deployment/ollama")
            .and_then(|placed| placed.overlay.containers.get_mut("ollama"))
    {
        c.gpu = Some(b.ollama_gpus);
    }
    out
}

/// The table `plan` and `detect` print.
pub fn render(b: &VramBudget) -> String {
    if !b.per_gpu.is_empty() {
        return render_per_gpu(b);
    }
    let mut out = format!(
        "VRAM budget ({}, {} VRAM of GPU {}: {}):\n",
        b.kind,
        b.basis,
        b.gpu,
        human_bytes(b.vram_bytes)
    );
    let width = b.rows.iter().map(|r| r.service.len()).max().unwrap_or(8).max(8);
    for r in &b.rows {
        push_row(&mut out, "  ", width, &r.service, r.bytes, &r.what);
    }
    push_headroom(&mut out, "  ", width, b, b.headroom_bytes, b.fits);
    push_notes(&mut out, b);
    out
}

/// The VRAM a budget is made on: the smallest GPU's, free on laptops (the display holds some),
/// total elsewhere; with which of the two it is and that GPU.
fn budget_vram<'a>(facts: &HostFacts, gpus: &[&'a GpuFacts]) -> Option<(&'static str, u64, &'a GpuFacts)> {
    let laptop = facts.laptop.is_laptop;
    let vram_of = |g: &GpuFacts| {
        if laptop {
            g.memory_free_bytes
        } else {
            g.memory_total_bytes
        }
    };
    let smallest = gpus.iter().min_by_key(|g| vram_of(g))?;
    Some((if laptop { "free" } else { "total" }, vram_of(smallest), smallest))
}

/// Ollama's limits, set explicitly: the context, one request and one model at a time, the KV
/// cache type (a quantized one needs flash attention) and the headroom as its GPU overhead.
fn ollama_env(o: &crate::profile::vram::OllamaPlan, min_headroom: u64) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("OLLAMA_CONTEXT_LENGTH".into(), o.context.to_string());
    env.insert("OLLAMA_NUM_PARALLEL".into(), o.parallel.to_string());
    env.insert("OLLAMA_MAX_LOADED_MODELS".into(), "1".into());
    env.insert("OLLAMA_KV_CACHE_TYPE".into(), o.kv_cache_type.label().into());
    env.insert("OLLAMA_GPU_OVERHEAD".into(), min_headroom.to_string());
    if o.kv_cache_type != KvCacheType::F16 {
        env.insert("OLLAMA_FLASH_ATTENTION".into(), "1".into());
    }
    env
}

/// A row of a budget's table, indented.
fn push_row(out: &mut String, indent: &str, width: usize, service: &str, bytes: u64, what: &str) {
    out.push_str(&format!("{indent}{service:width$}  {:>9}  {what}\n", gib_text(bytes)));
}

/// The headroom row: what is kept free, or that the budget does not fit.
fn push_headroom(out: &mut String, indent: &str, width: usize, b: &VramBudget, headroom: u64, fits: bool) {
    let what = if fits {
        format!("≥ {} kept free", gib_text(b.min_headroom_bytes))
    } else {
        format!("DOES NOT FIT: {} must stay free", gib_text(b.min_headroom_bytes))
    };
    push_row(out, indent, width, "headroom", headroom, &what);
}

/// The reasons and Ollama's settings under a budget's table.
fn push_notes(out: &mut String, b: &VramBudget) {
    for w in &b.why {
        out.push_str(&format!("  - {w}\n"));
    }
    let env: Vec<String> = b.ollama_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push_str(&format!("  - Ollama: {}\n", env.join(" ")));
}

/// The table of a whole-GPU budget: each GPU, what it holds and its headroom.
fn render_per_gpu(b: &VramBudget) -> String {
    let mut out = format!(
        "VRAM budget ({}, per GPU, {} VRAM of the smallest, GPU {}: {}):\n",
        b.kind,
        b.basis,
        b.gpu,
        human_bytes(b.vram_bytes)
    );
    let width = 8;
    for g in &b.per_gpu {
        out.push_str(&format!("  {}\n", g.gpu));
        for r in &g.rows {
            push_row(&mut out, "    ", width, &r.service, r.bytes, &r.what);
        }
        push_headroom(&mut out, "    ", width, b, g.headroom_bytes, g.fits);
    }
    push_notes(&mut out, b);
    out
}
