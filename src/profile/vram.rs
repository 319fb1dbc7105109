//! A GPU profile's VRAM plan (`vram:` in the profile file): which model Ollama serves, with which
//! explicit limits, which other services hold VRAM and how much, and the headroom that must stay
//! free. `crate::budget` turns it into figures for a host's GPU.

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// Element type of Ollama's KV cache (`OLLAMA_KV_CACHE_TYPE`). The quantized types need flash
/// attention, which kstrap then turns on (ollama v0.12.10 `llm/server.go`: "quantized kv cache
/// requested but flash attention disabled" otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheType {
    F16,
    Q8_0,
    Q4_0,
}

impl KvCacheType {
    pub fn label(self) -> &'static str {
        match self {
            KvCacheType::F16 => "f16",
            KvCacheType::Q8_0 => "q8_0",
            KvCacheType::Q4_0 => "q4_0",
        }
    }

    /// Bytes per cached element: ollama v0.12.10 `fs/ggml/ggml.go` `kvCacheBytesPerElement`
    /// (f16 2, q8_0 1, q4_0 0.5).
    pub fn bytes_per_element(self) -> f64 {
        match self {
            KvCacheType::F16 => 2.0,
            KvCacheType::Q8_0 => 1.0,
            KvCacheType::Q4_0 => 0.5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VramPlan {
    /// VRAM that must stay free on each GPU (GiB); Ollama also reserves it
    /// (`OLLAMA_GPU_OVERHEAD`).
    pub headroom_gib: f64,
    pub ollama: OllamaPlan,
    /// Whisper on the GPU; `None`: on the CPU.
    pub whisper: Option<ServiceVram>,
    /// Kokoro on the GPU; `None`: on the CPU.
    pub kokoro: Option<ServiceVram>,
    /// VRAM set aside for a service that is off by default (seed 002's agent).
    pub agent: Option<ServiceVram>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OllamaPlan {
    pub model: String,
    /// `OLLAMA_CONTEXT_LENGTH`, tokens.
    pub context: u32,
    /// `OLLAMA_NUM_PARALLEL`.
    pub parallel: u32,
    pub kv_cache_type: KvCacheType,
    /// A fixed allotment (GiB) the estimate must fit in, where the profile's design gives one.
    pub reserve_gib: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceVram {
    pub gib: f64,
    /// What holds the memory, in words: "faster-whisper small, float16".
    pub what: String,
}

// ---- the file format ----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VramFile {
    headroom_gib: Spanned<f64>,
    ollama: OllamaFile,
    #[serde(default)]
    whisper: Option<ServiceFile>,
    #[serde(default)]
    kokoro: Option<ServiceFile>,
    #[serde(default)]
    agent: Option<ServiceFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OllamaFile {
    model: Spanned<String>,
    context: Spanned<u32>,
    parallel: Spanned<u32>,
    kv_cache_type: KvCacheType,
    #[serde(default)]
    reserve_gib: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    gib: Spanned<f64>,
    what: String,
}

/// A field of the vram section that is out of range: (location, field, problem, hint).
pub(super) type FieldProblem = (serde_saphyr::Location, String, String, String);

impl VramFile {
    /// Checks ranges and that the model is one kstrap has figures for.
    pub(super) fn validate(self) -> Result<VramPlan, FieldProblem> {
        let gib = |v: &Spanned<f64>, field: &str, max: f64| -> Result<f64, FieldProblem> {
            if v.value.is_finite() && v.value >= 0.0 && v.value <= max {
                Ok(v.value)
            } else {
                Err((
                    v.referenced,
                    field.to_string(),
                    format!("{} is out of range", v.value),
                    format!("give a number of GiB from 0 to {max}"),
                ))
            }
        };
        let headroom_gib = gib(&self.headroom_gib, "vram.headroom_gib", 64.0)?;
        let o = &self.ollama;
        if crate::budget::catalog::find(&o.model.value).is_none() {
            return Err((
                o.model.referenced,
                "vram.ollama.model".into(),
                format!("{:?} is not a model kstrap has figures for", o.model.value),
                format!("use one of: {}", crate::budget::catalog::names().join(", ")),
            ));
        }
        if !(512..=131072).contains(&o.context.value) {
            return Err((
                o.context.referenced,
                "vram.ollama.context".into(),
                format!("{} tokens is out of range", o.context.value),
                "give 512 to 131072 tokens".into(),
            ));
        }
        if !(1..=16).contains(&o.parallel.value) {
            return Err((
                o.parallel.referenced,
                "vram.ollama.parallel".into(),
                format!("{} is out of range", o.parallel.value),
                "give 1 to 16 parallel requests".into(),
            ));
        }
        let reserve_gib = match &o.reserve_gib {
            Some(r) => Some(gib(r, "vram.ollama.reserve_gib", 1024.0)?),
            None => None,
        };
        let service = |s: &Option<ServiceFile>, field: &str| -> Result<Option<ServiceVram>, FieldProblem> {
            match s {
                None => Ok(None),
                Some(s) => Ok(Some(ServiceVram {
                    gib: gib(&s.gib, &format!("vram.{field}.gib"), 1024.0)?,
                    what: s.what.clone(),
                })),
            }
        };
        Ok(VramPlan {
            headroom_gib,
            ollama: OllamaPlan {
                model: o.model.value.clone(),
                context: o.context.value,
                parallel: o.parallel.value,
                kv_cache_type: o.kv_cache_type,
                reserve_gib,
            },
            whisper: service(&self.whisper, "whisper")?,
            kokoro: service(&self.kokoro, "kokoro")?,
            agent: service(&self.agent, "agent")?,
        })
    }
}
