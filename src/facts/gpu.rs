//! NVIDIA GPUs through NVML, loaded at run time so the binary runs on machines without a driver.
//!
//! `probe_nvml` never fails and never panics: when NVML cannot be loaded or initialised it returns
//! an empty report whose `unavailable_reason` says why in words a user can act on. A GPU that
//! cannot be read does not hide the others.

use super::{GpuFacts, MigFacts};
use nvml_wrapper::enums::device::DeviceArchitecture;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use std::path::Path;

/// The reason given when `libnvidia-ml.so.1` cannot be loaded: no NVIDIA driver is installed.
pub const REASON_NO_LIBRARY: &str = "NVML library libnvidia-ml.so.1 not found: no NVIDIA driver is installed";

/// The reason given when the library loads but the kernel module is not loaded.
pub const REASON_DRIVER_NOT_LOADED: &str =
    "the NVIDIA kernel driver is not loaded (try `sudo modprobe nvidia`, or reboot after installing the driver)";

/// The reason given when the driver refuses to talk to us.
pub const REASON_NO_PERMISSION: &str =
    "no permission to talk to the NVIDIA driver (run as root or check /dev/nvidia* permissions)";

/// `NVML_DEVICE_MIG_ENABLE` from `nvml.h`: the value of an enabled MIG mode.
const NVML_DEVICE_MIG_ENABLE: u32 = 1;

/// What NVML said about the GPUs and the driver.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NvmlReport {
    pub gpus: Vec<GpuFacts>,
    /// Driver version, e.g. "570.86.15".
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports, e.g. "12.8".
    pub cuda_driver_version: Option<String>,
    /// Why `gpus` is empty: NVML could not be loaded or initialised, or no GPU could be read.
    pub unavailable_reason: Option<String>,
}

impl NvmlReport {
    /// A report with no GPUs and the given reason.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        NvmlReport {
            unavailable_reason: Some(reason.into()),
            ..NvmlReport::default()
        }
    }
}

/// Asks NVML about every GPU. `lib` replaces the default `libnvidia-ml.so.1`.
pub fn probe_nvml(lib: Option<&Path>) -> NvmlReport {
    let init = match lib {
        Some(path) => Nvml::builder().lib_path(path.as_os_str()).init(),
        None => Nvml::init(),
    };
    let nvml = match init {
        Ok(nvml) => nvml,
        Err(e) => return NvmlReport::unavailable(init_error_reason(&e, lib)),
    };

    let driver_version = nvml.sys_driver_version().ok();
    let cuda_driver_version = nvml.sys_cuda_driver_version().ok().map(cuda_version_string);

    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(e) => {
            return NvmlReport {
                driver_version,
                cuda_driver_version,
                unavailable_reason: Some(format!("NVML could not count the GPUs: {e}")),
                gpus: Vec::new(),
            };
        }
    };

    let mut gpus = Vec::new();
    let mut errors = Vec::new();
    for index in 0..count {
        match read_device(&nvml, index) {
            Ok(gpu) => gpus.push(gpu),
            Err(e) => errors.push(format!("GPU {index}: {e}")),
        }
    }
    let unavailable_reason = if gpus.is_empty() && !errors.is_empty() {
        Some(format!("NVML could not read any GPU: {}", errors.join("; ")))
    } else {
        None
    };

    NvmlReport {
        gpus,
        driver_version,
        cuda_driver_version,
        unavailable_reason,
    }
}

/// Reads one GPU. Name, UUID and memory are required; the rest is filled where NVML knows it.
fn read_device(nvml: &Nvml, index: u32) -> Result<GpuFacts, NvmlError> {
    let device = nvml.device_by_index(index)?;
    let name = device.name()?;
    let uuid = device.uuid()?;
    let memory = device.memory_info()?;
    let cc = device
        .cuda_compute_capability()
        .ok()
        .and_then(|cc| Some((u32::try_from(cc.major).ok()?, u32::try_from(cc.minor).ok()?)));
    let architecture = architecture_name(&device, cc);
    let mig = device.mig_mode().ok().map(|mode| MigFacts {
        current: mode.current == NVML_DEVICE_MIG_ENABLE,
        pending: mode.pending == NVML_DEVICE_MIG_ENABLE,
    });
    Ok(GpuFacts {
        index,
        name,
        uuid,
        memory_total_bytes: memory.total,
        memory_free_bytes: memory.free,
        compute_capability: cc.map(|(major, minor)| format!("{major}.{minor}")),
        architecture,
        mig,
    })
}

/// NVML's name for the chip, or one derived from the compute capability when NVML does not know
/// it (an older NVML, or a chip newer than `nvml-wrapper`).
fn architecture_name(device: &Device<'_>, cc: Option<(u32, u32)>) -> String {
    let known = match device.architecture() {
        Ok(DeviceArchitecture::Kepler) => Some("Kepler"),
        Ok(DeviceArchitecture::Maxwell) => Some("Maxwell"),
        Ok(DeviceArchitecture::Pascal) => Some("Pascal"),
        Ok(DeviceArchitecture::Volta) => Some("Volta"),
        Ok(DeviceArchitecture::Turing) => Some("Turing"),
        Ok(DeviceArchitecture::Ampere) => Some("Ampere"),
        Ok(DeviceArchitecture::Ada) => Some("Ada"),
        Ok(DeviceArchitecture::Hopper) => Some("Hopper"),
        Ok(DeviceArchitecture::Blackwell) => Some("Blackwell"),
        Ok(DeviceArchitecture::Unknown) | Err(_) => None,
    };
    known
        .or_else(|| cc.map(|(major, minor)| architecture_from_cc(major, minor)))
        .unwrap_or("Unknown")
        .to_string()
}

/// The architecture a CUDA compute capability belongs to; "Unknown" for ones not listed.
pub fn architecture_from_cc(major: u32, minor: u32) -> &'static str {
    match (major, minor) {
        (3, _) => "Kepler",
        (5, _) => "Maxwell",
        (6, _) => "Pascal",
        (7, 0) | (7, 2) => "Volta",
        (7, 5) => "Turing",
        (8, 0) | (8, 6) | (8, 7) => "Ampere",
        (8, 9) => "Ada",
        (9, 0) => "Hopper",
        (10..=12, _) => "Blackwell",
        _ => "Unknown",
    }
}

/// NVML's CUDA version integer (12080) as "12.8".
fn cuda_version_string(version: i32) -> String {
    format!(
        "{}.{}",
        nvml_wrapper::cuda_driver_version_major(version),
        nvml_wrapper::cuda_driver_version_minor(version)
    )
}

/// Turns an NVML initialisation error into something a user can act on.
pub(crate) fn init_error_reason(error: &NvmlError, lib: Option<&Path>) -> String {
    match (error, lib) {
        (NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound, None) => REASON_NO_LIBRARY.to_string(),
        (NvmlError::LibloadingError(e), Some(path)) => {
            format!("NVML library {} could not be loaded: {e}", path.display())
        }
        (NvmlError::LibraryNotFound, Some(path)) => {
            format!("NVML library {} not found", path.display())
        }
        (NvmlError::FailedToLoadSymbol(symbol), _) => {
            format!("the NVML library is too old or not NVML (missing {symbol}): update the NVIDIA driver")
        }
        (NvmlError::DriverNotLoaded, _) => REASON_DRIVER_NOT_LOADED.to_string(),
        (NvmlError::NoPermission, _) => REASON_NO_PERMISSION.to_string(),
        (e, _) => format!("NVML failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_from_compute_capability() {
        let table = [
            ((3, 5), "Kepler"),
            ((3, 7), "Kepler"),
            ((5, 2), "Maxwell"),
            ((6, 1), "Pascal"),
            ((7, 0), "Volta"),
            ((7, 2), "Volta"),
            ((7, 5), "Turing"),
            ((8, 0), "Ampere"),
            ((8, 6), "Ampere"),
            ((8, 7), "Ampere"),
            ((8, 9), "Ada"),
            ((9, 0), "Hopper"),
            ((10, 0), "Blackwell"),
            ((11, 0), "Blackwell"),
            ((12, 0), "Blackwell"),
            ((12, 1), "Blackwell"),
            ((7, 1), "Unknown"),
            ((8, 8), "Unknown"),
            ((9, 1), "Unknown"),
            ((2, 1), "Unknown"),
            ((13, 0), "Unknown"),
            ((0, 0), "Unknown"),
        ];
        for ((major, minor), want) in table {
            assert_eq!(architecture_from_cc(major, minor), want, "{major}.{minor}");
        }
    }

    #[test]
    fn cuda_version_is_major_dot_minor() {
        assert_eq!(cuda_version_string(12080), "12.8");
        assert_eq!(cuda_version_string(12090), "12.9");
        assert_eq!(cuda_version_string(11040), "11.4");
    }

    /// This machine (and CI) has no NVIDIA driver: the real library lookup fails, and says so.
    /// On a machine with a driver the report must instead hold GPUs or a different reason.
    #[test]
    fn default_library_missing_gives_reason() {
        let report = probe_nvml(None);
        let has_driver = Path::new("/proc/driver/nvidia/version").exists();
        if has_driver {
            assert!(!report.gpus.is_empty() || report.unavailable_reason.is_some());
        } else {
            assert_eq!(report.unavailable_reason.as_deref(), Some(REASON_NO_LIBRARY));
            assert!(report.gpus.is_empty());
            assert_eq!(report.driver_version, None);
            assert_eq!(report.cuda_driver_version, None);
        }
    }

    #[test]
    fn non_library_file_gives_reason() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libnvidia-ml.so.1");
        std::fs::write(&fake, "this is not an ELF shared object\n").unwrap();
        let report = probe_nvml(Some(&fake));
        let reason = report.unavailable_reason.unwrap();
        assert!(reason.starts_with("NVML library "), "{reason}");
        assert!(reason.contains("could not be loaded"), "{reason}");
        assert!(reason.contains(&fake.display().to_string()), "{reason}");
        assert!(report.gpus.is_empty());
    }

    #[test]
    fn missing_custom_library_gives_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.so");
        let report = probe_nvml(Some(&missing));
        let reason = report.unavailable_reason.unwrap();
        assert!(reason.contains("nope.so"), "{reason}");
        assert!(report.gpus.is_empty());
    }

    #[test]
    fn init_errors_map_to_actionable_reasons() {
        assert_eq!(
            init_error_reason(&NvmlError::DriverNotLoaded, None),
            REASON_DRIVER_NOT_LOADED
        );
        assert_eq!(init_error_reason(&NvmlError::NoPermission, None), REASON_NO_PERMISSION);
        assert_eq!(init_error_reason(&NvmlError::LibraryNotFound, None), REASON_NO_LIBRARY);
        assert_eq!(
            init_error_reason(&NvmlError::Unknown, None),
            "NVML failed: an internal driver error occurred"
        );
        assert!(init_error_reason(&NvmlError::FailedToLoadSymbol("nvmlInit_v2".into()), None).contains("nvmlInit_v2"));
    }
}
