//! Per-GPU use from a test double of NVML and a temp root holding `/proc/<pid>/cgroup` files
//! written as the kubelet's cgroup drivers name pod cgroups (see the module's sources).

use super::*;
use crate::units::{GIB, MIB};
use std::fs;

/// Test double of NVML (`crate::facts::gpu_use::Nvml`): answers what a real node with two
/// 24 GB GPUs would list, or NVML's failure.
struct FakeNvml(Result<Vec<NvmlGpu>, String>);

impl GpuProcessSource for FakeNvml {
    fn gpus(&self) -> Result<Vec<NvmlGpu>, String> {
        self.0.clone()
    }
}

const OLLAMA: &str = "0b0e6a52-8f7e-4c52-9d1c-6b2f4c1b7e01";
const WHISPER: &str = "7d3c1e9a-2b4f-4a6e-8c5d-1f0e9b8a7c02";

fn two_gpus() -> Vec<NvmlGpu> {
    vec![
        NvmlGpu {
            index: 1,
            name: "NVIDIA GeForce RTX 4090".into(),
            memory_used_bytes: 1800 * MIB,
            memory_total_bytes: 24564 * MIB,
            processes: vec![GpuProcess {
                pid: 4242,
                used_bytes: Some(1500 * MIB),
            }],
        },
        NvmlGpu {
            index: 0,
            name: "NVIDIA GeForce RTX 4090".into(),
            memory_used_bytes: 20 * GIB,
            memory_total_bytes: 24564 * MIB,
            processes: vec![
                // Ollama's server and its runner: two processes of one pod.
                GpuProcess {
                    pid: 100,
                    used_bytes: Some(300 * MIB),
                },
                GpuProcess {
                    pid: 101,
                    used_bytes: Some(19 * GIB),
                },
                // The desktop's compositor: not in a pod.
                GpuProcess {
                    pid: 900,
                    used_bytes: Some(200 * MIB),
                },
                // Gone before its cgroup was read.
                GpuProcess {
                    pid: 901,
                    used_bytes: None,
                },
            ],
        },
    ]
}

fn root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let put = |pid: u32, text: &str| {
        let d = dir.path().join(format!("proc/{pid}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("cgroup"), text).unwrap();
    };
    // systemd cgroup driver, cgroup v2 (the UID's '-' written '_').
    let systemd = format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-5f1c.scope\n",
        OLLAMA.replace('-', "_")
    );
    put(100, &systemd);
    put(101, &systemd);
    // cgroupfs driver, cgroup v1 lines.
    put(
        4242,
        &format!(
            "12:memory:/kubepods/besteffort/pod{WHISPER}/9a8b7c\n11:cpu,cpuacct:/kubepods/besteffort/pod{WHISPER}/9a8b7c\n"
        ),
    );
    put(900, "0::/user.slice/user-1000.slice/session-2.scope\n");
    dir
}

fn pods() -> Vec<PodRef> {
    vec![
        PodRef {
            uid: OLLAMA.into(),
            namespace: "voice-ai".into(),
            name: "ollama-6d9f7c8b5-x2k4q".into(),
        },
        PodRef {
            uid: WHISPER.into(),
            namespace: "voice-ai".into(),
            name: "whisper-7f5b9c6d4-m8n2p".into(),
        },
    ]
}

#[test]
fn cgroup_paths_of_both_drivers_name_the_pod() {
    assert_eq!(
        pod_uid_from_cgroup(&format!(
            "0::/kubepods.slice/kubepods-pod{}.slice/cri-containerd-1.scope",
            OLLAMA.replace('-', "_")
        ))
        .as_deref(),
        Some(OLLAMA)
    );
    assert_eq!(
        pod_uid_from_cgroup(&format!("0::/kubepods/burstable/pod{WHISPER}/abc")).as_deref(),
        Some(WHISPER)
    );
    assert_eq!(
        pod_uid_from_cgroup("0::/user.slice/user-1000.slice/session-2.scope"),
        None
    );
    // Not a UID after `pod`: not a pod cgroup.
    assert_eq!(pod_uid_from_cgroup("0::/kubepods/podcast/x"), None);
    assert_eq!(pod_uid_from_cgroup(""), None);
}

#[test]
fn each_gpu_lists_its_pods_and_other_processes() {
    let dir = root();
    let u = gather(&FakeNvml(Ok(two_gpus())), dir.path(), &pods());
    assert!(u.known);
    assert_eq!(u.gpus.iter().map(|g| g.index).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(u.gpus[0].pods.len(), 1);
    assert_eq!(u.gpus[0].pods[0].name, "ollama-6d9f7c8b5-x2k4q");
    assert_eq!(u.gpus[0].pods[0].used_bytes, Some(300 * MIB + 19 * GIB));
    assert_eq!(u.gpus[0].other_processes, 2);
    assert_eq!(u.gpus[1].pods[0].name, "whisper-7f5b9c6d4-m8n2p");
    insta::assert_snapshot!(render(&u));
}

#[test]
fn a_pod_of_another_cluster_is_not_claimed() {
    let dir = root();
    let u = gather(&FakeNvml(Ok(two_gpus())), dir.path(), &pods()[1..]);
    assert!(u.gpus[0].pods.is_empty());
    assert_eq!(u.gpus[0].other_processes, 4);
}

#[test]
fn without_nvml_per_gpu_use_is_not_known_and_says_why() {
    let dir = root();
    let u = gather(
        &FakeNvml(Err("NVML cannot be used on this machine (NVML library libnvidia-ml.so.1 not found); run `kstrap status` on the GPU node to see which pod uses which GPU".into())),
        dir.path(),
        &pods(),
    );
    assert!(!u.known);
    let text = render(&u);
    assert!(text.contains("per-GPU use is not known: NVML cannot be used"), "{text}");
    let json = serde_json::to_value(&u).unwrap();
    assert_eq!(json["known"], false);
    assert!(json["reason"].as_str().unwrap().contains("on the GPU node"));
    let none = gather(&FakeNvml(Ok(Vec::new())), dir.path(), &pods());
    assert_eq!(none.reason.as_deref(), Some("NVML on this machine lists no GPU"));
}

#[test]
fn the_real_nvml_source_says_why_without_a_library() {
    let missing = crate::facts::gpu_use::Nvml {
        lib: Some("/nonexistent/libnvidia-ml.so.1".into()),
    };
    let u = gather(&missing, std::path::Path::new("/"), &[]);
    assert!(!u.known);
    assert!(u.reason.unwrap().contains("NVML cannot be used on this machine"));
}
