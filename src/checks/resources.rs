//! Preflight: memory, CPUs, disk, and the disk against the kubelet's eviction thresholds.

use super::Finding;
use crate::facts::HostFacts;
use crate::profile::Selection;
use crate::units::{gib, human_bytes, human_gib};

pub(super) fn resources(facts: &HostFacts, sel: &Selection, out: &mut Vec<Finding>) {
    let p = &sel.profile;
    let forced = sel.chosen_by == "--profile";
    let mut check =
        |name: &str, have: f64, shown: String, need: f64, want: f64, unit: &dyn Fn(f64) -> String, fix: &str| {
            if have < need {
                let what = format!("{shown} is below {}'s requirement of {}", p.name, unit(need));
                if forced {
                    out.push(Finding::warn(name, format!("{what} (forced)"), fix));
                } else {
                    out.push(Finding::fail(name, what, fix));
                }
            } else if have < want {
                out.push(Finding::warn(
                    name,
                    format!("{shown} is below {}'s recommendation of {}", p.name, unit(want)),
                    fix,
                ));
            } else {
                out.push(Finding::pass(name, format!("{shown} ≥ {}", unit(want))));
            }
        };
    let g = |v: f64| human_gib(v);
    let n = |v: f64| format!("{v:.0}");
    check(
        "memory",
        gib(facts.memory.total_bytes),
        format!("memory {}", human_bytes(facts.memory.total_bytes)),
        p.requires.memory_gib,
        p.recommends.memory_gib,
        &g,
        "use a smaller profile (kstrap picks one by itself without --profile) or add memory",
    );
    check(
        "cpu",
        facts.cpu.count as f64,
        format!("{} CPUs", facts.cpu.count),
        p.requires.cpus as f64,
        p.recommends.cpus as f64,
        &n,
        "use a smaller profile, or expect slow start-up and inference",
    );
    // The partition of --data-dir when one is given, else /var/lib's.
    let disk = facts.data_disk();
    check(
        "disk",
        gib(disk.available_bytes),
        format!("free disk at {} {}", disk.path, human_bytes(disk.available_bytes)),
        p.requires.disk_gib,
        p.recommends.disk_gib,
        &g,
        "free space on that partition (models and images live there), or put the distribution's data on a larger one with --data-dir DIR",
    );
    eviction(facts, sel, false, out);
}

/// The kubelet's default hard eviction thresholds on the partition that holds images and volumes
/// (kubernetes `pkg/kubelet/eviction/defaults_linux.go`, `DefaultEvictionHard`:
/// `imagefs.available<15%`, `nodefs.available<10%`; k3s and k0s keep them). They are percentages
/// of the partition, not sizes: a 100 GiB root with 20 GiB free passes a "20 GiB" check, and once
/// the profile's images and models fill it, the kubelet evicts the stack's pods and
/// garbage-collects images in a loop. Said only when the install would cross a threshold.
pub(super) fn eviction(facts: &HostFacts, sel: &Selection, worker: bool, out: &mut Vec<Finding>) {
    const IMAGEFS_PERCENT: f64 = 15.0;
    const NODEFS_PERCENT: f64 = 10.0;
    let disk = facts.data_disk();
    let total = disk.total_bytes as f64;
    if total <= 0.0 {
        return;
    }
    let need = sel.profile.requires.disk_gib * (1u64 << 30) as f64;
    let left = disk.available_bytes as f64 - need;
    let left_percent = (left / total * 100.0).max(0.0);
    if left_percent >= IMAGEFS_PERCENT {
        return;
    }
    let what = format!(
        "after {}'s {} of images and models, {} would have {:.0}% free ({} of {}): below the kubelet's eviction threshold of {:.0}% (imagefs.available; {:.0}% for nodefs.available)",
        sel.profile.name,
        human_gib(sel.profile.requires.disk_gib),
        disk.path,
        left_percent,
        human_bytes(left.max(0.0) as u64),
        human_bytes(disk.total_bytes),
        IMAGEFS_PERCENT,
        NODEFS_PERCENT
    );
    // `up` can put the data on another partition itself; a worker keeps its distribution's default.
    let fix = if worker {
        "free space on that partition, or put the distribution's data on a larger one (mount it at /var/lib/rancher or /var/lib/k0s) before kstrap join".to_string()
    } else {
        "free space on that partition, or put the distribution's data on a larger one with --data-dir DIR (a new or empty folder there)".to_string()
    };
    if left_percent < NODEFS_PERCENT && sel.chosen_by != "--profile" {
        out.push(Finding::fail("disk-eviction", what, fix));
    } else {
        out.push(Finding::warn("disk-eviction", what, fix));
    }
}
