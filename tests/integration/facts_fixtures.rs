//! The facts fixtures in `tests/fixtures/facts/`: each one loads through `kstrap::facts::load`,
//! survives a JSON round trip, and says what its name promises. Selection and plan tests build on
//! these files, so a fixture that drifts from its host is caught here first.

use crate::support::fixture as load_fixture;
use kstrap::facts::gpu::{REASON_NO_LIBRARY, architecture_from_cc};
use kstrap::facts::{self, HostFacts, PORTS};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

const EXPECTED: &[&str] = &[
    "4gb-machine",
    "blackwell-old-driver",
    "driver-missing",
    "h100-80gb",
    "h100-real",
    "laptop-16gb-8gb-gpu",
    "laptop-8gb-nogpu",
    "laptop-vpn-proxy",
    "mig-h100",
    "rtx5090-96gb",
    "two-gpus",
    "wsl2",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/facts")
}

/// Every `*.json` in the fixtures directory, including ones captured on real machines later.
fn all() -> Vec<(String, HostFacts)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let facts = facts::load(&p).unwrap_or_else(|e| panic!("{e}"));
            (name, facts)
        })
        .collect()
}

/// GiB with one decimal, as the fixtures' names and descriptions use them.
fn gib(bytes: u64) -> f64 {
    (bytes as f64 / GIB as f64 * 10.0).round() / 10.0
}

#[test]
fn every_expected_fixture_is_present() {
    let names: BTreeSet<String> = all().into_iter().map(|(n, _)| n).collect();
    for want in EXPECTED {
        assert!(names.contains(*want), "missing fixture {want}.json");
    }
}

#[test]
fn every_fixture_round_trips() {
    for (name, facts) in all() {
        for json in [
            serde_json::to_string_pretty(&facts).unwrap(),
            serde_json::to_string(&facts).unwrap(),
        ] {
            let again = facts::from_json(&name, &json).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(again, facts, "{name}");
        }
    }
}

#[test]
fn every_fixture_is_consistent() {
    for (name, f) in all() {
        assert_eq!(f.schema_version, facts::SCHEMA_VERSION, "{name}");
        assert_eq!(
            f.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
            PORTS,
            "{name}: ports"
        );
        assert!(f.memory.available_bytes <= f.memory.total_bytes, "{name}");
        assert!(f.memory.swap_free_bytes <= f.memory.swap_total_bytes, "{name}");
        assert!(f.disk.available_bytes <= f.disk.total_bytes, "{name}");
        assert!(f.cpu.count > 0, "{name}");
        assert_eq!(f.laptop.is_laptop, f.laptop.evidence.is_some(), "{name}");
        if f.gpus.is_empty() {
            assert!(f.nvidia.unavailable_reason.is_some(), "{name}: no GPU, no reason");
        } else {
            assert_eq!(f.nvidia.unavailable_reason, None, "{name}");
            assert!(f.nvidia.driver_version.is_some(), "{name}");
            assert!(f.nvidia.cuda_driver_version.is_some(), "{name}");
        }
        let mut uuids = BTreeSet::new();
        for (i, gpu) in f.gpus.iter().enumerate() {
            assert_eq!(gpu.index as usize, i, "{name}: GPU indexes");
            assert!(gpu.uuid.starts_with("GPU-"), "{name}: {}", gpu.uuid);
            assert!(uuids.insert(gpu.uuid.clone()), "{name}: duplicate UUID");
            assert!(gpu.memory_free_bytes <= gpu.memory_total_bytes, "{name}");
            let (major, minor) = gpu.compute_capability().unwrap();
            assert_eq!(gpu.architecture, architecture_from_cc(major, minor), "{name}");
        }
    }
}

#[test]
fn laptops() {
    let small = load_fixture("laptop-8gb-nogpu");
    assert_eq!(gib(small.memory.total_bytes), 7.6);
    assert_eq!(small.cpu.count, 4);
    assert_eq!(small.os.id, "ubuntu");
    assert!(small.laptop.is_laptop);
    assert!(small.gpus.is_empty());
    assert_eq!(small.nvidia.pci_devices, 0);
    assert!(!small.existing.k3s.present() && !small.existing.k0s.present());
    assert!(!small.runtimes.docker && !small.runtimes.containerd);
    assert!(small.ports.iter().all(|p| !p.in_use));

    let gpu_laptop = load_fixture("laptop-16gb-8gb-gpu");
    assert_eq!(gib(gpu_laptop.memory.total_bytes), 15.4);
    assert_eq!(gpu_laptop.cpu.count, 16);
    assert!(gpu_laptop.laptop.is_laptop);
    let [gpu] = gpu_laptop.gpus.as_slice() else {
        panic!("one GPU")
    };
    assert_eq!(gpu.name, "NVIDIA GeForce RTX 4060 Laptop GPU");
    assert_eq!(gpu.memory_total_bytes, 8188 * MIB);
    assert_eq!(gpu.compute_capability(), Some((8, 9)));
    assert_eq!(gpu.architecture, "Ada");
    assert!(
        gpu_laptop
            .nvidia
            .driver_version
            .as_deref()
            .is_some_and(|v| v.starts_with("570."))
    );
}

#[test]
fn rtx5090_workstations() {
    let f = load_fixture("rtx5090-96gb");
    assert_eq!(gib(f.memory.total_bytes), 94.0);
    assert_eq!(f.cpu.count, 32);
    assert!(!f.laptop.is_laptop);
    assert_eq!(f.disk.available_bytes / (TIB / 2), 3, "1.5 TiB free");
    assert_eq!(f.nvidia.driver_version.as_deref(), Some("575.64.03"));
    assert_eq!(f.nvidia.cuda_driver_version.as_deref(), Some("12.9"));
    let [gpu] = f.gpus.as_slice() else { panic!("one GPU") };
    assert_eq!(gpu.name, "NVIDIA GeForce RTX 5090");
    assert_eq!(gpu.memory_total_bytes, 32607 * MIB);
    assert_eq!(gpu.compute_capability.as_deref(), Some("12.0"));
    assert_eq!(gpu.architecture, "Blackwell");
    assert_eq!(gpu.mig, None);

    let old = load_fixture("blackwell-old-driver");
    assert_eq!(old.nvidia.driver_version.as_deref(), Some("565.57.01"));
    assert_eq!(gib(old.memory.total_bytes), 94.0);
    assert_eq!(old.cpu.count, 32);
    assert_eq!(old.gpus[0].name, "NVIDIA GeForce RTX 5090");
    assert_eq!(old.gpus[0].architecture, "Blackwell");
}

#[test]
fn h100s() {
    let f = load_fixture("h100-80gb");
    assert_eq!(f.memory.total_bytes / TIB, 0, "just under 1 TiB visible");
    assert!(f.memory.total_bytes > 1000 * GIB);
    assert_eq!(f.cpu.count, 208);
    assert!(!f.laptop.is_laptop);
    assert_eq!(f.nvidia.driver_version.as_deref(), Some("570.172.08"));
    assert_eq!(f.nvidia.cuda_driver_version.as_deref(), Some("12.8"));
    let [gpu] = f.gpus.as_slice() else { panic!("one GPU") };
    assert_eq!(gpu.name, "NVIDIA H100 80GB HBM3");
    assert_eq!(gpu.memory_total_bytes, 81559 * MIB);
    assert_eq!(gpu.compute_capability(), Some((9, 0)));
    assert_eq!(gpu.architecture, "Hopper");
    assert!(gpu.mig.is_some(), "H100 supports MIG");
    assert!(!gpu.mig_enabled());

    let mig = load_fixture("mig-h100");
    assert!(mig.gpus[0].mig_enabled());
    assert_eq!(mig.gpus[0].name, "NVIDIA H100 80GB HBM3");
}

#[test]
fn two_gpus() {
    let f = load_fixture("two-gpus");
    assert_eq!(gib(f.memory.total_bytes).round(), 126.0);
    assert_eq!(f.cpu.count, 64);
    assert_eq!(f.nvidia.pci_devices, 2);
    assert_eq!(f.gpus.len(), 2);
    for gpu in &f.gpus {
        assert_eq!(gpu.name, "NVIDIA RTX 6000 Ada Generation");
        assert_eq!(gpu.memory_total_bytes, 49140 * MIB);
    }
}

#[test]
fn driver_missing() {
    let f = load_fixture("driver-missing");
    assert!(f.gpus.is_empty());
    assert_eq!(f.nvidia.pci_devices, 1);
    assert_eq!(f.nvidia.kernel_module, None);
    assert_eq!(f.nvidia.driver_version, None);
    assert_eq!(
        f.nvidia.unavailable_reason.as_deref(),
        Some(REASON_NO_LIBRARY),
        "the text probe_nvml gives"
    );
    assert_eq!(f.cpu.count, 32);
}

#[test]
fn wsl2() {
    let f = load_fixture("wsl2");
    assert!(f.wsl2);
    assert!(f.systemd);
    assert_eq!(f.os.kernel, "5.15.167.4-microsoft-standard-WSL2");
    assert!(f.os.kernel.to_lowercase().contains("microsoft"));
    assert_eq!(f.cpu.count, 16);
    assert!(gib(f.memory.total_bytes) > 31.0 && gib(f.memory.total_bytes) <= 32.0);
    // WSL has no PCI view of the GPU nor a kernel module; NVML still sees it through /dev/dxg.
    assert_eq!(f.nvidia.pci_devices, 0);
    assert_eq!(f.gpus[0].name, "NVIDIA GeForce RTX 4090");
    assert_eq!(f.gpus[0].memory_total_bytes, 24564 * MIB);
}

#[test]
fn four_gb_machine() {
    let f = load_fixture("4gb-machine");
    assert_eq!(gib(f.memory.total_bytes), 3.8);
    assert_eq!(f.cpu.count, 2);
    assert!(f.gpus.is_empty());
    assert_eq!(f.nvidia.pci_devices, 0);
}

#[test]
fn a_typo_in_a_fixture_is_an_error() {
    let text = std::fs::read_to_string(dir().join("4gb-machine.json")).unwrap();
    let typo = text.replacen("\"systemd\"", "\"sytemd\"", 1);
    assert_ne!(text, typo);
    let err = facts::from_json("typo.json", &typo).unwrap_err().to_string();
    assert!(err.contains("sytemd"), "{err}");
}

/// `h100-real.json` was captured by `kstrap detect -o json` on a real H100 machine, next to
/// `nvidia-smi --query-gpu=… --format=csv` (saved beside it). Every GPU field NVML gave kstrap must
/// agree with what nvidia-smi printed on the same machine at the same minute.
#[test]
fn real_h100_capture_agrees_with_nvidia_smi() {
    let f = load_fixture("h100-real");
    let csv = std::fs::read_to_string(dir().join("h100-real.nvidia-smi.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(", ").collect();
    let rows: Vec<Vec<&str>> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(", ").collect())
        .collect();
    assert_eq!(rows.len(), f.gpus.len(), "one CSV row per GPU");
    let col = |row: &Vec<&str>, name: &str| -> String {
        let i = header
            .iter()
            .position(|h| h.starts_with(name))
            .unwrap_or_else(|| panic!("no column {name}"));
        row[i].trim().to_string()
    };
    let mib = |s: String| -> u64 { s.trim_end_matches(" MiB").parse::<u64>().unwrap() * MIB };
    for (gpu, row) in f.gpus.iter().zip(&rows) {
        assert_eq!(gpu.name, col(row, "name"));
        assert_eq!(gpu.uuid, col(row, "uuid"));
        assert_eq!(gpu.memory_total_bytes, mib(col(row, "memory.total")));
        // free memory moves a little between the two commands: within 64 MiB
        assert!(gpu.memory_free_bytes.abs_diff(mib(col(row, "memory.free"))) <= 64 * MIB);
        assert_eq!(
            f.nvidia.driver_version.as_deref(),
            Some(col(row, "driver_version").as_str())
        );
        assert_eq!(
            gpu.compute_capability.as_deref(),
            Some(col(row, "compute_cap").as_str())
        );
        assert_eq!(gpu.mig_enabled(), col(row, "mig.mode.current") == "Enabled");
        assert_eq!(gpu.architecture, "Hopper");
    }
    assert_eq!(f.nvidia.pci_devices as usize, f.gpus.len());
    assert!(f.nvidia.unavailable_reason.is_none());
}
