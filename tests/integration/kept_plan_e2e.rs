//! The plan is fixed at the first install, through whole `up` runs on the fake host (TEST
//! DOUBLE of systemctl/k3s, `crate::fake_host`) against the real control plane: the first `up`
//! records the GPU tier and model in kstrap's state; a second `up` on the same host with less free
//! VRAM (a browser holding some) keeps them, says why, and changes nothing on the host.

use crate::support::fixture_path;
use crate::up_e2e::{LOCK, Machine, World, text};
use serde_json::Value;

/// The 8 GB GPU laptop's facts, with `free_gib` of free VRAM and, when `installed`, kstrap's
/// state recorded (as `kstrap detect` reports it on a host kstrap installed).
fn laptop_facts(dir: &std::path::Path, name: &str, free_gib: f64, installed: bool) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fixture_path("laptop-16gb-8gb-gpu")).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    let facts = if v.get("facts").is_some() {
        &mut v["facts"]
    } else {
        &mut v
    };
    facts["gpus"][0]["memory_free_bytes"] = Value::from((free_gib * 1024.0 * 1024.0 * 1024.0) as u64);
    if installed {
        facts["existing"]["kstrap_state"] = Value::from("/var/lib/kstrap/state.json");
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    path
}

fn up(w: &World, facts: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = [
        "up",
        "--facts",
        facts.to_str().unwrap(),
        "--release-mirror",
        &w.releases().url(),
        "--yes",
        "--cluster-only",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    w.kstrap(&args).output().unwrap()
}

fn state(w: &World) -> Value {
    let text = std::fs::read_to_string(w.host().root.join("var/lib/kstrap/state.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_second_up_with_less_free_vram_keeps_the_first_install_s_tier_and_model() {
    let Some(w) = World::real("a_second_up_with_less_free_vram_keeps_the_first_install_s_tier_and_model") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // 7.5 GiB free: the 8 GB tier's budget fits (Llama 3.1 8B).
    let first = laptop_facts(dir.path(), "first", 7.5, false);
    let out = up(&w, &first, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["profile"], "gpu-8gb", "{report}");
    let recorded = state(&w);
    assert_eq!(recorded["profile"], "gpu-8gb", "{recorded}");
    assert_eq!(recorded["model"], "llama3.1:8b", "{recorded}");

    // A browser now holds VRAM: 5 GiB free, where a fresh choice is the 6 GB tier.
    let fresh = laptop_facts(dir.path(), "fresh", 5.0, false);
    let out = up(&w, &fresh, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Plan: profile gpu-6gb (auto)"),
        "{}",
        text(&out)
    );

    // The same host as `kstrap detect` sees it after the install: the plan is kept, and says why.
    let second = laptop_facts(dir.path(), "second", 5.0, true);
    let out = up(&w, &second, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    for says in [
        "Plan: profile gpu-8gb (kept)",
        "gpu-8gb kept from the first install (/var/lib/kstrap/state.json); pass --profile (and --model) to change it",
        "model llama3.1:8b kept from the first install",
        "this host would get gpu-6gb today",
    ] {
        assert!(plan.contains(says), "missing {says:?}:\n{plan}");
    }
    w.host().take_log();
    let before = w.host().stamps(&[LOCK]);
    let out = up(&w, &second, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["profile"], "gpu-8gb", "{report}");
    assert_eq!(state(&w)["profile"], "gpu-8gb");
    assert_eq!(state(&w)["model"], "llama3.1:8b");
    // Kept means converged: no file rewritten (the profile's node label included), no restart.
    assert_eq!(w.host().stamps(&[LOCK]), before, "the kept plan rewrote a file");
    assert!(
        !w.host().take_log().iter().any(|c| c.contains("restart")),
        "the kept plan restarted the distribution"
    );
}
