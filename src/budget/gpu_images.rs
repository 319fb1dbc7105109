//! Whether a GPU and its driver can run the CUDA images a profile puts on it: `gpu-images.yaml`
//! (each image's CUDA version, the architectures it has kernels for, and the oldest driver that
//! runs it, read from the images' sources at the pinned versions), built into the binary and
//! parsed strictly. Pure: GPU facts and the driver version in, reasons out.

use crate::facts::GpuFacts;
use crate::profile::Profile;
use serde::Deserialize;
use std::sync::OnceLock;

static TEXT: &str = include_str!("gpu-images.yaml");

/// One CUDA image kstrap may run on a GPU.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuImage {
    /// The stack service that runs it on the GPU (`ollama`, `whisper`, `kokoro`), or `operator`
    /// for the GPU operator's own CUDA workload.
    pub service: String,
    pub image: String,
    /// What built the kernels, for messages: "PyTorch 2.8.0 cu128".
    pub built_with: String,
    /// The CUDA runtime the image carries.
    pub cuda: String,
    /// Compute capabilities with machine code (SASS); `None`: not read, not checked.
    #[serde(default)]
    pub sass: Option<Vec<String>>,
    /// Compute capabilities with PTX the driver compiles for that capability and newer.
    #[serde(default)]
    pub ptx: Option<Vec<String>>,
    /// The oldest driver that runs the image through its SASS (CUDA minor version compatibility).
    pub min_driver: String,
    /// The oldest driver that compiles its PTX (the driver of the toolkit that built it).
    #[serde(default)]
    pub ptx_min_driver: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    images: Vec<GpuImage>,
}

/// Every image of the table, in the file's order.
pub fn images() -> &'static [GpuImage] {
    static IMAGES: OnceLock<Vec<GpuImage>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        // The file is part of the source: a test parses it, so this cannot fail in a release.
        serde_saphyr::from_str::<File>(TEXT)
            .map(|f| f.images)
            .unwrap_or_default()
    })
}

/// The row for `service`.
pub fn for_service(service: &str) -> Option<&'static GpuImage> {
    images().iter().find(|i| i.service == service)
}

/// The services a profile runs on its GPUs: the GPU operator's validator on every GPU profile,
/// Ollama on every profile with a VRAM plan, Whisper and Kokoro where the plan puts them on the
/// GPU.
pub fn gpu_services(profile: &Profile) -> Vec<&'static str> {
    if !profile.uses_gpu() {
        return Vec::new();
    }
    let mut out = vec!["operator"];
    if let Some(plan) = &profile.vram {
        out.push("ollama");
        if plan.whisper.is_some() {
            out.push("whisper");
        }
        if plan.kokoro.is_some() {
            out.push("kokoro");
        }
    }
    out
}

fn capability(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// "570.86.15" → [570, 86, 15], compared part by part.
fn driver_parts(text: &str) -> Option<Vec<u32>> {
    text.split('.').map(|p| p.trim().parse().ok()).collect()
}

fn older(have: &str, need: &str) -> bool {
    match (driver_parts(have), driver_parts(need)) {
        (Some(h), Some(n)) => h < n,
        _ => false,
    }
}

/// How `image` would run on a GPU of compute capability `cc`: `Some(true)` through SASS,
/// `Some(false)` through PTX, `None` not at all.
fn kernels_for(image: &GpuImage, cc: (u32, u32)) -> Option<bool> {
    let caps = |list: &Option<Vec<String>>| -> Vec<(u32, u32)> {
        list.iter().flatten().filter_map(|c| capability(c)).collect()
    };
    // SASS runs on the same major and a minor at least as high; PTX on any capability at least
    // as high (CUDA C++ Programming Guide, "Binary Compatibility", "Application Compatibility").
    if caps(&image.sass).iter().any(|&(m, n)| m == cc.0 && n <= cc.1) {
        return Some(true);
    }
    if caps(&image.ptx).iter().any(|&p| p <= cc) {
        return Some(false);
    }
    None
}

/// Why `image` cannot run on `gpu` with driver `driver`, or `None` when it can (or when the
/// facts do not say: an unknown capability or driver is not held against the GPU).
pub fn incompatibility(image: &GpuImage, gpu: &GpuFacts, driver: Option<&str>) -> Option<String> {
    let cc_text = gpu.compute_capability.as_deref().unwrap_or("unknown");
    let how = match (&image.sass, gpu.compute_capability()) {
        (None, _) | (_, None) => Some(true),
        (Some(_), Some(cc)) => kernels_for(image, cc),
    };
    let Some(sass) = how else {
        let mut built: Vec<String> = image.sass.iter().flatten().cloned().collect();
        built.extend(image.ptx.iter().flatten().map(|p| format!("{p} (PTX)")));
        return Some(format!(
            "{}'s image {} has no kernel for GPU {} {} (compute capability {cc_text}): {} builds for compute capability {}",
            image.service,
            image.image,
            gpu.index,
            gpu.name,
            image.built_with,
            built.join(", ")
        ));
    };
    let need = if sass {
        image.min_driver.as_str()
    } else {
        image.ptx_min_driver.as_deref().unwrap_or(image.min_driver.as_str())
    };
    let have = driver?;
    older(have, need).then(|| {
        format!(
            "driver {have} is older than {need}, which {}'s image {} (CUDA {}, {}) needs on GPU {} {} (compute capability {cc_text}{})",
            image.service,
            image.image,
            image.cuda,
            image.built_with,
            gpu.index,
            gpu.name,
            if sass { "" } else { ", compiled from PTX" }
        )
    })
}

/// Every reason the GPU images of `services` cannot run on `gpu`, in service order.
pub fn problems(services: &[&str], gpu: &GpuFacts, driver: Option<&str>) -> Vec<String> {
    services
        .iter()
        .filter_map(|s| for_service(s))
        .filter_map(|image| incompatibility(image, gpu, driver))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(cc: &str) -> GpuFacts {
        GpuFacts {
            index: 0,
            name: "test GPU".into(),
            uuid: "GPU-0".into(),
            memory_total_bytes: 1 << 34,
            memory_free_bytes: 1 << 34,
            compute_capability: Some(cc.into()),
            architecture: String::new(),
            mig: None,
        }
    }

    #[test]
    fn the_table_parses_and_names_every_gpu_service() {
        let parsed: File = serde_saphyr::from_str(TEXT).unwrap();
        assert_eq!(images().len(), parsed.images.len());
        for s in ["operator", "ollama", "whisper", "kokoro"] {
            assert!(for_service(s).is_some(), "{s}");
        }
        for i in images() {
            assert!(driver_parts(&i.min_driver).is_some(), "{}", i.image);
            for c in i.sass.iter().flatten().chain(i.ptx.iter().flatten()) {
                assert!(capability(c).is_some(), "{}: {c}", i.image);
            }
        }
    }

    #[test]
    fn sass_runs_on_later_minors_of_its_major_and_ptx_on_anything_newer() {
        let kokoro = for_service("kokoro").unwrap();
        assert_eq!(kernels_for(kokoro, (8, 9)), Some(true), "Ada runs 8.6 SASS");
        assert_eq!(kernels_for(kokoro, (12, 0)), Some(true));
        assert_eq!(kernels_for(kokoro, (6, 1)), None, "no Pascal kernel in cu128");
        let whisper = for_service("whisper").unwrap();
        assert_eq!(kernels_for(whisper, (5, 2)), None, "5.3 is Jetson, not desktop Maxwell");
        assert_eq!(kernels_for(whisper, (9, 0)), Some(false), "Hopper via PTX 8.6");
        let ollama = for_service("ollama").unwrap();
        assert_eq!(kernels_for(ollama, (5, 0)), Some(true));
        assert_eq!(kernels_for(ollama, (10, 0)), Some(false));
        assert_eq!(kernels_for(ollama, (3, 5)), None);
    }

    #[test]
    fn drivers_compare_part_by_part() {
        assert!(older("470.256.02", "525.60.13"));
        assert!(older("525.60.12", "525.60.13"));
        assert!(!older("525.60.13", "525.60.13"));
        assert!(!older("570.86.15", "570.26"));
        assert!(older("535.54.02", "535.54.03"));
        assert!(
            !older("garbage", "525.60.13"),
            "an unreadable version is not held against the GPU"
        );
    }

    #[test]
    fn ptx_needs_the_building_toolkit_s_driver() {
        let whisper = for_service("whisper").unwrap();
        // Hopper runs CTranslate2 through PTX built by CUDA 12.2: 535.54.03 at least.
        let why = incompatibility(whisper, &gpu("9.0"), Some("530.30.02")).unwrap();
        assert!(why.contains("older than 535.54.03") && why.contains("PTX"), "{why}");
        assert!(incompatibility(whisper, &gpu("8.6"), Some("530.30.02")).is_none());
        assert!(incompatibility(whisper, &gpu("9.0"), None).is_none());
    }
}
