//! `--data-dir`: the distribution's data (images, containerd, the datastore, the local-path
//! volumes) on another partition. Planned from facts fixtures (the written k3s config and k0s
//! install arguments, the disk preflight on the data partition), refused as bad input on a fake
//! host root before anything is written, and removed (or kept) by `down` from a recorded state.

use crate::fake_host::FakeHost;
use crate::support::fixture_path;
use assert_cmd::Command;
use serde_json::{Value, json};
use std::path::Path;

/// The binary with a clean environment: no KSTRAP_* or proxy variables, plus `vars`.
fn kstrap(vars: &[(String, String)]) -> Command {
    let mut c = Command::cargo_bin("kstrap").unwrap();
    for (k, _) in std::env::vars() {
        let lower = k.to_ascii_lowercase();
        if k.starts_with("KSTRAP_")
            || k == "SUDO_USER"
            || ["http_proxy", "https_proxy", "no_proxy"].contains(&lower.as_str())
        {
            c.env_remove(k);
        }
    }
    c.env("HOME", "/home/tester").env("NO_COLOR", "1").env("COLUMNS", "100");
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

fn run(vars: &[(String, String)], args: &[&str], code: i32) -> (String, String) {
    let out = kstrap(vars).args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// A facts fixture with `/var/lib` on a disk of `root` (total, free GiB) and, when given, the
/// data directory `/data/kstrap` on a partition mounted at `/data` of `data` (total, free GiB).
fn facts(name: &str, root: (u64, u64), data: Option<(u64, u64)>) -> tempfile::NamedTempFile {
    let gib = 1u64 << 30;
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(fixture_path(name)).unwrap()).unwrap();
    v["disk"] = json!({"path": "/var/lib", "total_bytes": root.0 * gib, "available_bytes": root.1 * gib});
    if let Some((total, free)) = data {
        v["data_dir"] = json!({
            "path": "/data/kstrap",
            "exists": false,
            "is_folder": false,
            "has_entries": false,
            "existing_parent": "/data",
            "parent_is_folder": true,
            "mount_point": "/data",
            "fs_type": "xfs",
            "read_only": false,
            "total_bytes": total * gib,
            "available_bytes": free * gib,
        });
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_string_pretty(&v).unwrap()).unwrap();
    file
}

fn plan_json(facts: &Path, extra: &[&str]) -> Value {
    let f = facts.display().to_string();
    let mut args = vec!["plan", "--facts", f.as_str(), "-o", "json"];
    args.extend_from_slice(extra);
    let (out, _) = run(&[], &args, 0);
    serde_json::from_str(&out).unwrap()
}

fn step<'a>(plan: &'a Value, id: &str) -> &'a Value {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {plan:#}"))
}

fn findings(plan: &Value, check: &str) -> Vec<(String, String)> {
    step(plan, "preflight")["action"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"].as_str().is_some_and(|c| c.starts_with(check)))
        .map(|f| {
            (
                f["severity"].as_str().unwrap().to_string(),
                f["what"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn k3s_and_k0s_are_told_the_data_dir_and_every_path_under_it_follows() {
    let f = facts("rtx5090-96gb", (2000, 1500), Some((4000, 3900)));
    let airgap = tempfile::tempdir().unwrap();
    let air = airgap.path().display().to_string();
    let mut shown = String::new();
    for distro in ["k3s", "k0s"] {
        let p = plan_json(
            f.path(),
            &["--distro", distro, "--data-dir", "/data/kstrap/", "--airgap", &air],
        );
        assert_eq!(p["data_dir"], "/data/kstrap", "the trailing / is dropped");
        let images = step(&p, &format!("copy-{distro}-images"))["action"]["dest"]
            .as_str()
            .unwrap();
        let wait = step(&p, &format!("wait-{distro}"))["action"]["kubeconfig"]
            .as_str()
            .unwrap();
        shown.push_str(&format!(
            "== {distro}\nimages: {}\nkubeconfig: {wait}\n",
            images.replace(&air, "<AIRGAP>")
        ));
        match distro {
            "k3s" => {
                let config = step(&p, "write-k3s-config")["action"]["contents"].as_str().unwrap();
                shown.push_str(&format!("config.yaml:\n{config}"));
            }
            _ => {
                let args: Vec<&str> = step(&p, "install-k0s")["action"]["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                shown.push_str(&format!("k0s {}\n", args.join(" ")));
                let storage = &step(&p, "addon-local-path-storage")["reason"];
                assert!(
                    storage
                        .as_str()
                        .unwrap()
                        .contains("/data/kstrap/local-path-provisioner"),
                    "{storage}"
                );
            }
        }
    }
    insta::assert_snapshot!("data_dir_k3s_k0s", shown);

    // The human plan says where the data goes.
    let path = f.path().display().to_string();
    let (human, _) = run(&[], &["plan", "--facts", &path, "--data-dir", "/data/kstrap"], 0);
    assert!(human.contains("Data: /data/kstrap (k3s data"), "{human}");
    // Without --data-dir nothing changes: no data-dir key, the default folders.
    let p = plan_json(f.path(), &["--distro", "k3s"]);
    assert!(p.get("data_dir").is_none());
    let config = step(&p, "write-k3s-config")["action"]["contents"].as_str().unwrap();
    assert!(!config.contains("data-dir"), "{config}");
    assert_eq!(
        step(&p, "wait-k3s")["action"]["kubeconfig"],
        "/etc/rancher/k3s/k3s.yaml"
    );
}

#[test]
fn the_disk_preflight_measures_the_data_partition() {
    // A 64 GiB root with 40 GiB free, a 4 TB data partition: passes on the data partition.
    let small_root = facts("rtx5090-96gb", (64, 40), Some((4000, 3900)));
    let p = plan_json(small_root.path(), &["--data-dir", "/data/kstrap"]);
    let disk = findings(&p, "disk");
    assert!(disk.iter().all(|(s, _)| s == "pass"), "{disk:?}");
    assert!(disk.iter().any(|(_, w)| w.contains("free disk at /data")), "{disk:?}");
    assert_eq!(p["preflight"]["refused"], false);
    assert_eq!(
        p["profile"], "rtx-5090",
        "the tier is chosen with the data partition's space"
    );
    // The same root without --data-dir: a smaller tier, and still refused (the kubelet would
    // evict on /var/lib).
    let root_only = facts("rtx5090-96gb", (64, 40), None);
    let p = plan_json(root_only.path(), &[]);
    assert_ne!(p["profile"], "rtx-5090");
    let disk = findings(&p, "disk");
    assert!(
        disk.iter().any(|(s, w)| s == "fail" && w.contains("/var/lib")),
        "{disk:?}"
    );
    assert_eq!(p["preflight"]["refused"], true);

    // The reverse: a large root, a small data partition: refused, naming the data partition.
    let small_data = facts("rtx5090-96gb", (2000, 1500), Some((64, 40)));
    let p = plan_json(small_data.path(), &["--data-dir", "/data/kstrap"]);
    let disk = findings(&p, "disk");
    assert!(disk.iter().any(|(s, w)| s == "fail" && w.contains("/data")), "{disk:?}");
    assert_eq!(p["preflight"]["refused"], true);
}

/// A bare fake host root with `/data` mounted (`fs` type, `options`).
fn host_with_data(fs: &str, options: &str) -> FakeHost {
    let host = FakeHost::new("apiVersion: v1\nkind: Config\n");
    std::fs::create_dir_all(host.root.join("data")).unwrap();
    std::fs::create_dir_all(host.root.join("proc/self")).unwrap();
    std::fs::write(
        host.root.join("proc/self/mountinfo"),
        format!(
            "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n40 22 8:17 / /data {options} - {fs} /dev/sdb1 {options}\n"
        ),
    )
    .unwrap();
    host
}

#[test]
fn bad_data_dirs_are_refused_before_anything_is_written() {
    let mut shown = String::new();
    let cases: &[(&str, &str, &str, &str)] = &[
        ("relative", "data/k3s", "ext4", "rw"),
        ("inside /tmp", "/tmp/k3s", "ext4", "rw"),
        ("the whole /home", "/home", "ext4", "rw"),
        ("a tmpfs mount", "/data/k3s", "tmpfs", "rw"),
        ("a read-only mount", "/data/k3s", "ext4", "ro"),
        ("a file", "/data/file", "ext4", "rw"),
        ("a folder with something in it", "/data/used", "ext4", "rw"),
    ];
    for (name, dir, fs, options) in cases {
        let host = host_with_data(fs, options);
        std::fs::write(host.root.join("data/file"), "x").unwrap();
        std::fs::create_dir_all(host.root.join("data/used")).unwrap();
        std::fs::write(host.root.join("data/used/photos.txt"), "mine").unwrap();
        let before = host.tree(&[]);
        for cmd in [&["plan"][..], &["up", "--yes"][..], &["up", "--dry-run"][..]] {
            let mut args = cmd.to_vec();
            args.extend(["--data-dir", dir]);
            let (out, err) = run(&host.envs(), &args, 2);
            assert!(out.is_empty(), "{name}: {out}");
            assert!(
                err.contains(&format!("--data-dir {dir}")) && err.contains("fix: "),
                "{name}: {err}"
            );
            if cmd[0] == "plan" {
                shown.push_str(&format!("== {name}\n{err}"));
            }
        }
        assert_eq!(host.tree(&[]), before, "{name}: nothing written");
        assert!(host.take_effects().is_empty(), "{name}");
    }
    insta::assert_snapshot!("data_dir_bad_input", shown);
}

/// kstrap's state of a k3s install into `/data/kstrap`, as the executor records it, with the
/// data there.
fn installed_into_data(host: &FakeHost) {
    for d in [
        "data/kstrap/agent/images",
        "data/kstrap/storage/pvc-1",
        "data/kstrap/server",
        "etc/rancher/k3s",
        "var/lib/kstrap",
    ] {
        std::fs::create_dir_all(host.root.join(d)).unwrap();
    }
    std::fs::write(host.root.join("data/kstrap/storage/pvc-1/model.bin"), "weights").unwrap();
    std::fs::write(host.root.join("data/keep.txt"), "not the cluster's").unwrap();
    let state = json!({
        "schema": 1,
        "distro": "k3s",
        "version": "v1.35.3+k3s1",
        "profile": "rtx-5090",
        "files": {},
        "dirs": [],
        "services": [],
        "data_dirs": ["/data/kstrap", "/etc/rancher/k3s"],
        "data_dir": "/data/kstrap",
        "kubeconfig": null,
        "commands": {},
        "pending": [],
    });
    std::fs::write(
        host.root.join("var/lib/kstrap/state.json"),
        serde_json::to_string_pretty(&state).unwrap(),
    )
    .unwrap();
}

#[test]
fn down_removes_the_recorded_data_dir_and_keep_data_keeps_it() {
    let host = host_with_data("xfs", "rw");
    installed_into_data(&host);
    let (plan, _) = run(&host.envs(), &["down", "--dry-run"], 0);
    assert!(plan.contains("/data/kstrap"), "{plan}");
    assert!(!plan.contains("/var/lib/rancher/k3s"), "{plan}");

    let (_, _) = run(&host.envs(), &["down", "--yes", "--keep-data"], 0);
    assert!(
        host.root.join("data/kstrap/storage/pvc-1/model.bin").exists(),
        "--keep-data keeps the volumes"
    );

    installed_into_data(&host);
    let (_, _) = run(&host.envs(), &["down", "--yes"], 0);
    assert!(!host.root.join("data/kstrap").exists(), "the data directory is removed");
    assert!(host.root.join("data/keep.txt").exists(), "what is beside it stays");
    assert!(!host.root.join("var/lib/kstrap/state.json").exists());

    // A state naming a data directory `--data-dir` would refuse is refused whole (exit 2).
    installed_into_data(&host);
    let path = host.root.join("var/lib/kstrap/state.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"data_dir\": \"/data/kstrap\"", "\"data_dir\": \"/home\"");
    std::fs::write(&path, text).unwrap();
    let before = host.tree(&[]);
    let (_, err) = run(&host.envs(), &["down", "--yes"], 2);
    assert!(err.contains("data_dir: \"/home\""), "{err}");
    assert_eq!(host.tree(&[]), before);
}

#[test]
fn a_rerun_keeps_the_recorded_data_dir_and_refuses_another() {
    let host = host_with_data("xfs", "rw");
    installed_into_data(&host);
    // Without --data-dir the plan uses the recorded one (the folder is not empty: it is ours).
    let (out, _) = run(
        &host.envs(),
        &[
            "plan",
            "-o",
            "json",
            "--distro",
            "k3s",
            "--force",
            "--profile",
            "cpu-fallback",
        ],
        0,
    );
    let p: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["data_dir"], "/data/kstrap", "{p:#}");
    // Another one is refused before anything changes.
    std::fs::create_dir_all(host.root.join("data/other")).unwrap();
    let before = host.tree(&[]);
    let (_, err) = run(
        &host.envs(),
        &[
            "up",
            "--yes",
            "--distro",
            "k3s",
            "--force",
            "--profile",
            "cpu-fallback",
            "--data-dir",
            "/data/other",
        ],
        3,
    );
    assert!(err.contains("/data/kstrap") && err.contains("/data/other"), "{err}");
    assert_eq!(host.tree(&[]), before);
}
