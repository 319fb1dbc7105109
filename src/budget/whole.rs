//! The VRAM budget of a whole-GPU profile (`gpu.sharing: none`): a budget per GPU.
//!
//! Without sharing, the device plugin advertises each GPU once and the kubelet's device manager
//! hands each device to one container only (NVIDIA/k8s-device-plugin v0.19.2: without a
//! `sharing` section no device is replicated, `internal/rm/rm.go` builds one device per GPU;
//! kubernetes `pkg/kubelet/cm/devicemanager/manager.go` `devicesToAllocate` takes only devices
//! not in `allocatedDevices`). A pod asking for `nvidia.com/gpu: 2` therefore holds two distinct
//! GPUs that nothing else runs on: placement is enforced, and each GPU can be budgeted alone.
//!
//! The plan: Whisper takes one whole GPU, Ollama the others and splits one model across them,
//! Kokoro runs on the CPU. Which physical GPU goes to which pod is the kubelet's choice, so
//! every slot is budgeted on the smallest GPU selected.
//!
//! Ollama's split follows ollama v0.12.10. `llm/memory.go` `estimateGPULayers` (llama.cpp
//! runner): on each GPU it uses, the runtime minimum (`MinimumMemory`, 457 MiB on CUDA), one
//! layer as a buffer, the compute graph, and its share of the layers, each with its KV cache;
//! the layers go round-robin over the GPUs, and on more than one GPU the graph is the partial
//! offload size ("multigpu should always use the partial graph size"); `OLLAMA_GPU_OVERHEAD` is
//! kept free on every GPU. `llm/server.go` `buildLayout` (Ollama's own engine) reserves the
//! minimum, the overhead and the graph on each GPU the same way and balances the layers
//! (`findBestFit`). Both pack a model into as few GPUs as hold it
//! (`pickBestFullFitByLibrary`, `assignLayers`), so the model is chosen to need all of them.

use super::catalog::{self, ModelInfo};
use super::{
    BATCH, BudgetError, GpuBudget, OLLAMA_MINIMUM_BYTES, Row, VramBudget, budget_vram, gib_text, graph_bytes,
    kv_cache_bytes, ollama_env,
};
use crate::facts::{GpuFacts, HostFacts};
use crate::profile::{Profile, VramPlan};
use crate::units::{GIB, gib, human_bytes};

/// Ollama's compute graph when a model is split over several GPUs: the llama formula's partial
/// offload size (ollama v0.12.10 `fs/ggml/ggml.go` `GraphSize`, `case "llama"`), on each GPU.
pub fn partial_graph_bytes(model: &ModelInfo, context: u32, parallel: u32) -> u64 {
    let ctx = context as u64 * parallel as u64;
    let b = BATCH.min(ctx);
    let (e, v, h, hkv, eh) = (
        model.embedding,
        model.vocab,
        model.heads,
        model.kv_heads,
        model.head_dim,
    );
    let a = 4 * b * (1 + e + ctx.max(e)) + e * e * 9 / 16 + 4 * ctx * (b * h + eh * hkv);
    let c = 4 * b * (e + v) + e * v * 105 / 128;
    4 * b * e + a.max(c)
}

/// What Ollama holds on each of `gpus` GPUs it splits `model` over: (bytes on the fullest GPU,
/// layers on it, the words).
pub fn split_bytes(model: &ModelInfo, plan: &VramPlan, gpus: u32) -> (u64, u64, String) {
    let o = &plan.ollama;
    let gpus = gpus.max(1) as u64;
    let layers = model.layers.max(1);
    // Weights spread by layer (the published size includes the output layer and embeddings,
    // which Ollama puts on one GPU: counting them evenly is part of the estimate).
    let per_layer = (model.size_bytes() + kv_cache_bytes(model, o.context, o.parallel, o.kv_cache_type)) / layers;
    let on_fullest = layers.div_ceil(gpus);
    let graph = if gpus > 1 {
        partial_graph_bytes(model, o.context, o.parallel)
    } else {
        graph_bytes(model, o.context, o.parallel)
    };
    let bytes = on_fullest * per_layer + per_layer + graph + OLLAMA_MINIMUM_BYTES;
    let what = format!(
        "{on_fullest} of {layers} layers of {} with their KV cache ({} tokens × {}, {}) {} + a layer's buffer + graph {} + runtime {}",
        model.name,
        o.context,
        o.parallel,
        o.kv_cache_type.label(),
        gib_text(on_fullest * per_layer),
        gib_text(graph),
        gib_text(OLLAMA_MINIMUM_BYTES)
    );
    (bytes, on_fullest, what)
}

/// GPUs Whisper takes whole (1 when it is on the GPU and there are two GPUs or more).
pub fn whisper_gpus(plan: &VramPlan, gpus: usize) -> u32 {
    u32::from(plan.whisper.is_some() && gpus >= 2)
}

/// The whole-GPU budget of `profile` on `gpus`; the model is `model`, else the largest of the
/// catalog (not below the profile's own) that Ollama's GPUs hold together and the free disk
/// holds, else the profile's (then the budget says it does not fit).
pub fn compute(
    facts: &HostFacts,
    profile: &Profile,
    plan: &VramPlan,
    gpus: &[&GpuFacts],
    model: Option<&str>,
) -> Result<Option<VramBudget>, BudgetError> {
    let Some((basis, vram, smallest)) = budget_vram(facts, gpus) else {
        return Ok(None);
    };
    let min_headroom = (plan.headroom_gib * GIB as f64) as u64;
    let whisper = whisper_gpus(plan, gpus.len());
    let ollama_gpus = (gpus.len() as u32).saturating_sub(whisper).max(1);
    let floor = catalog::find(&plan.ollama.model);
    let floor_size = floor.map(|m| m.size_bytes()).unwrap_or(0);

    let (info, from) = match model {
        Some(m) => match catalog::find(m) {
            Some(i) => (i, "--model".to_string()),
            None => {
                return Err(BudgetError::UnknownModel {
                    name: m.to_string(),
                    known: catalog::names().iter().map(|s| s.to_string()).collect(),
                });
            }
        },
        None => {
            // A larger model than the profile's needs its extra size free on disk and in RAM
            // (Ollama reads it in), beyond what the profile requires.
            let (disk_free, ram) = (gib(facts.disk.available_bytes), gib(facts.memory.total_bytes));
            let fits_host = |m: &ModelInfo| {
                let extra = gib(m.size_bytes().saturating_sub(floor_size));
                profile.requires.disk_gib + extra <= disk_free && profile.requires.memory_gib + extra <= ram
            };
            let fits_vram = |m: &ModelInfo| split_bytes(m, plan, ollama_gpus).0 + min_headroom <= vram;
            let chosen = catalog::models()
                .iter()
                .rev()
                .filter(|m| m.size_bytes() >= floor_size)
                .find(|m| fits_vram(m) && fits_host(m));
            match (chosen, floor) {
                (Some(m), _) => (
                    m,
                    format!(
                        "the largest model of the catalog that Ollama's {ollama_gpus} GPU(s) hold with {} free on each, and the free disk and RAM hold",
                        gib_text(min_headroom)
                    ),
                ),
                (None, Some(f)) => (f, format!("profile {} (no model of the catalog fits)", profile.name)),
                (None, None) => {
                    return Err(BudgetError::UnknownModel {
                        name: plan.ollama.model.clone(),
                        known: catalog::names().iter().map(|s| s.to_string()).collect(),
                    });
                }
            }
        }
    };

    let (ollama_each, on_fullest, ollama_what) = split_bytes(info, plan, ollama_gpus);
    let mut per_gpu = Vec::new();
    let label = |slot: u32| {
        format!(
            "GPU slot {slot} (any GPU the device plugin allocates; {})",
            human_bytes(vram)
        )
    };
    for slot in 1..=ollama_gpus {
        per_gpu.push(gpu_budget(
            label(slot),
            vram,
            min_headroom,
            vec![Row {
                service: "ollama".into(),
                bytes: ollama_each,
                what: ollama_what.clone(),
            }],
        ));
    }
    if let (1, Some(w)) = (whisper, &plan.whisper) {
        per_gpu.push(gpu_budget(
            label(ollama_gpus + 1),
            vram,
            min_headroom,
            vec![Row {
                service: "whisper".into(),
                bytes: (w.gib * GIB as f64) as u64,
                what: format!("{} (the whole GPU)", w.what),
            }],
        ));
    }
    let fits = per_gpu.iter().all(|g| g.fits);
    let used = per_gpu.iter().map(|g| g.used_bytes).max().unwrap_or(0);

    let mut rows = vec![Row {
        service: "ollama".into(),
        bytes: ollama_each * ollama_gpus as u64,
        what: format!(
            "{} split over {ollama_gpus} whole GPU(s): {} on each (up to {on_fullest} of {} layers)",
            info.name,
            gib_text(ollama_each),
            info.layers
        ),
    }];
    if let (1, Some(w)) = (whisper, &plan.whisper) {
        rows.push(Row {
            service: "whisper".into(),
            bytes: (w.gib * GIB as f64) as u64,
            what: format!("{} on a whole GPU of its own", w.what),
        });
    }

    let mut why = vec![
        format!(
            "budgeted per GPU on {basis} VRAM of the smallest, GPU {} {} ({}): the kubelet picks which GPU each pod gets",
            smallest.index,
            smallest.name,
            human_bytes(vram)
        ),
        format!(
            "sharing none: each nvidia.com/gpu is one whole GPU no other pod gets, so placement is enforced; Ollama asks for {ollama_gpus}, Whisper for {whisper}"
        ),
        format!("model {} from {from}", info.name),
        "Ollama splits the model's layers over its GPUs (ollama v0.12.10: graph, runtime minimum and OLLAMA_GPU_OVERHEAD on each)".into(),
    ];
    if plan.kokoro.is_none() {
        why.push("kokoro runs on the CPU: every GPU is held whole by Ollama or Whisper".into());
    }

    let env = ollama_env(&plan.ollama, min_headroom);
    Ok(Some(VramBudget {
        kind: "estimate",
        profile: profile.name.clone(),
        model: info.name.clone(),
        model_from: from,
        gpus: gpus.iter().map(|g| g.index).collect(),
        gpu: format!("{} {}", smallest.index, smallest.name),
        basis,
        vram_bytes: vram,
        rows,
        used_bytes: used,
        headroom_bytes: vram.saturating_sub(used),
        min_headroom_bytes: min_headroom,
        fits,
        why,
        ollama_env: env,
        extra_disk_bytes: info.size_bytes().saturating_sub(floor_size),
        ollama_gpus,
        per_gpu,
    }))
}

fn gpu_budget(gpu: String, vram: u64, min_headroom: u64, rows: Vec<Row>) -> GpuBudget {
    let used: u64 = rows.iter().map(|r| r.bytes).sum();
    GpuBudget {
        gpu,
        vram_bytes: vram,
        used_bytes: used,
        headroom_bytes: vram.saturating_sub(used),
        fits: used + min_headroom <= vram,
        rows,
    }
}
