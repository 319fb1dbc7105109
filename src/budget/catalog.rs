//! The models kstrap can budget VRAM for: `ollama-models.yaml` (sizes Ollama publishes, and the
//! architecture figures of each model), built into the binary and parsed strictly.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

static TEXT: &str = include_str!("ollama-models.yaml");

/// One model as Ollama publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// The name `ollama pull` takes: `llama3.1:8b`.
    pub name: String,
    /// Download size in decimal GB, as Ollama prints it (the weights, Q4_K_M).
    pub size_gb: f64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub embedding: u64,
    pub vocab: u64,
}

impl ModelInfo {
    pub fn size_bytes(&self) -> u64 {
        (self.size_gb * 1e9) as u64
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    models: Vec<ModelInfo>,
}

/// Every model in the catalog, in the file's order (smallest first).
pub fn models() -> &'static [ModelInfo] {
    static MODELS: OnceLock<Vec<ModelInfo>> = OnceLock::new();
    MODELS.get_or_init(|| {
        // The file is part of the source: a test parses it, so this cannot fail in a release.
        serde_saphyr::from_str::<File>(TEXT)
            .map(|f| f.models)
            .unwrap_or_default()
    })
}

/// The model called `name`, if kstrap knows its figures.
pub fn find(name: &str) -> Option<&'static ModelInfo> {
    models().iter().find(|m| m.name == name)
}

/// The names kstrap knows, for messages.
pub fn names() -> Vec<&'static str> {
    models().iter().map(|m| m.name.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_parses_and_is_sorted_by_size() {
        let parsed: File = serde_saphyr::from_str(TEXT).unwrap();
        assert!(parsed.models.len() >= 5);
        assert_eq!(models().len(), parsed.models.len());
        for w in models().windows(2) {
            assert!(w[0].size_gb < w[1].size_gb, "{} before {}", w[0].name, w[1].name);
        }
        for m in models() {
            assert!(m.layers > 0 && m.kv_heads > 0 && m.heads >= m.kv_heads, "{}", m.name);
            assert!(m.name.contains(':'), "{}: pin a tag", m.name);
        }
        assert_eq!(find("llama3.1:8b").map(|m| m.size_gb), Some(4.7));
        assert!(find("nonesuch:1b").is_none());
    }
}
