//! The binary as a user runs it: help, detect and plan from fixtures, errors and exit codes.

use crate::support::fixture_path;
use assert_cmd::Command;

/// The binary with a clean, deterministic environment.
fn kstrap() -> Command {
    let mut c = Command::cargo_bin("kstrap").unwrap();
    for (k, _) in std::env::vars() {
        if k.starts_with("KSTRAP_")
            || k == "SUDO_USER"
            || k.eq_ignore_ascii_case("http_proxy")
            || k.eq_ignore_ascii_case("https_proxy")
            || k.eq_ignore_ascii_case("no_proxy")
        {
            c.env_remove(k);
        }
    }
    c.env("HOME", "/home/tester").env("NO_COLOR", "1").env("COLUMNS", "100");
    c
}

fn stdout_of(args: &[&str], code: i32) -> String {
    let out = kstrap().args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "args {args:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn stderr_of(args: &[&str], code: i32) -> String {
    let out = kstrap().args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "args {args:?}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn fx(name: &str) -> String {
    fixture_path(name).display().to_string()
}

#[test]
fn help_texts() {
    insta::assert_snapshot!("help", stdout_of(&["--help"], 0));
    for cmd in ["detect", "plan", "up", "join", "completions"] {
        insta::assert_snapshot!(format!("help_{cmd}"), stdout_of(&[cmd, "--help"], 0));
    }
}

#[test]
fn detect_from_facts_human_and_json() {
    insta::assert_snapshot!(
        "detect_rtx5090",
        stdout_of(&["detect", "--facts", &fx("rtx5090-96gb")], 0)
    );
    insta::assert_snapshot!(
        "detect_driver_missing",
        stdout_of(&["detect", "--facts", &fx("driver-missing")], 0)
    );
    let json = stdout_of(&["detect", "--facts", &fx("rtx5090-96gb"), "--output", "json"], 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["facts"]["gpus"][0]["name"], "NVIDIA GeForce RTX 5090");
    assert_eq!(v["profile"]["profile"]["name"], "rtx-5090");
    insta::assert_json_snapshot!("detect_rtx5090_json", v);
}

#[test]
fn detect_json_feeds_back_into_facts() {
    let json = stdout_of(&["detect", "--facts", &fx("h100-80gb"), "-o", "json"], 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("captured.json");
    std::fs::write(&path, &json).unwrap();
    let again = stdout_of(&["detect", "--facts", path.to_str().unwrap(), "-o", "json"], 0);
    assert_eq!(
        json, again,
        "detect output read back through --facts must give the same document"
    );
}

#[test]
fn plan_from_facts_human_and_json() {
    insta::assert_snapshot!("plan_rtx5090", stdout_of(&["plan", "--facts", &fx("rtx5090-96gb")], 0));
    insta::assert_snapshot!(
        "plan_laptop",
        stdout_of(&["up", "--dry-run", "--facts", &fx("laptop-8gb-nogpu")], 0)
    );
    let json = stdout_of(&["plan", "--facts", &fx("two-gpus"), "-o", "json"], 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    // Two 48 GB GPUs get whole GPUs (multi-gpu): one nvidia.com/gpu per GPU.
    assert_eq!(v["gpu"]["allocatable"], 2);
    insta::assert_json_snapshot!("plan_two_gpus_json", v);
}

/// `plan -vv` shows the objects themselves as they will be sent: the GPU operator's chart object
/// with its values, the add-ons' chart objects, the stack's objects (YAML; JSON under `-o json`).
#[test]
fn plan_vv_shows_every_object_as_it_will_be_sent() {
    let human = stdout_of(
        &[
            "plan",
            "--facts",
            &fx("rtx5090-96gb"),
            "--distro",
            "k0s",
            "--with",
            "monitoring",
            "-vv",
        ],
        0,
    );
    assert!(human.contains("Objects, as they will be applied:"), "{human}");
    // The GPU operator's k0s Chart, with its repository and values.
    assert!(human.contains("chartName: nvidia/gpu-operator"), "{human}");
    assert!(human.contains("url: https://helm.ngc.nvidia.com/nvidia"), "{human}");
    assert!(human.contains("RUNTIME_CONFIG_SOURCE"), "{human}");
    // The monitoring add-on's charts and the stack's own objects.
    assert!(human.contains("chartName: prometheus-community/prometheus"), "{human}");
    assert!(human.contains("name: whisper-model-pull"), "{human}");
    let json = stdout_of(&["plan", "--facts", &fx("rtx5090-96gb"), "-o", "json", "-vv"], 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let objects = v["objects"].as_array().expect("objects under -vv");
    assert!(
        objects
            .iter()
            .any(|o| o["kind"] == "HelmChart" && o["metadata"]["name"] == "gpu-operator")
    );
    assert!(
        objects
            .iter()
            .any(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "kokoro")
    );
    // Without -vv the JSON plan is as before: no objects.
    let plain = stdout_of(&["plan", "--facts", &fx("rtx5090-96gb"), "-o", "json"], 0);
    let v: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert!(v.get("objects").is_none());
}

#[test]
fn dry_run_and_plan_print_the_same_steps() {
    let a = stdout_of(&["plan", "--facts", &fx("h100-80gb"), "-o", "json"], 0);
    let b = stdout_of(&["up", "--dry-run", "--facts", &fx("h100-80gb"), "-o", "json"], 0);
    assert_eq!(a, b);
}

#[test]
fn json_mode_prints_only_json_even_on_errors() {
    let out = kstrap()
        .args(["plan", "--facts", &fx("4gb-machine"), "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_code"], 3);
    assert!(v["error"].as_str().unwrap().contains("no profile fits this host"));
}

#[test]
fn errors_and_exit_codes() {
    // 3: the host is refused, with a reason per profile.
    insta::assert_snapshot!("err_4gb", stderr_of(&["plan", "--facts", &fx("4gb-machine")], 3));
    insta::assert_snapshot!(
        "err_forced_short",
        stderr_of(
            &["plan", "--facts", &fx("laptop-8gb-nogpu"), "--profile", "rtx-5090"],
            3
        )
    );
    // 2: bad input of every kind.
    insta::assert_snapshot!(
        "err_unknown_profile",
        stderr_of(&["plan", "--facts", &fx("rtx5090-96gb"), "--profile", "rtx-4090"], 2)
    );
    let missing = stderr_of(&["detect", "--facts", "/nonexistent/facts.json"], 2);
    assert!(
        missing.contains("cannot read facts file /nonexistent/facts.json"),
        "{missing}"
    );
    insta::assert_snapshot!(
        "err_bad_mirror",
        stderr_of(
            &[
                "plan",
                "--facts",
                &fx("rtx5090-96gb"),
                "--release-mirror",
                "ftp://mirror"
            ],
            2
        )
    );
    let version = stderr_of(
        &["plan", "--facts", &fx("rtx5090-96gb"), "--distro-version", "stable"],
        2,
    );
    assert!(version.contains("stable"), "{version}");
    let stack = stderr_of(&["plan", "--facts", &fx("rtx5090-96gb"), "--stack", "nope"], 2);
    assert!(stack.contains("nope"), "{stack}");
    let airgap = stderr_of(&["plan", "--facts", &fx("rtx5090-96gb"), "--airgap", "/nonexistent"], 2);
    assert!(airgap.contains("--airgap /nonexistent: not a folder"), "{airgap}");
    let flag = stderr_of(&["plan", "--distro", "k8s"], 2);
    assert!(flag.contains("k8s"), "{flag}");
}

#[test]
fn bad_facts_file_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    let text =
        std::fs::read_to_string(fixture_path("rtx5090-96gb"))
            .unwrap()
            .replacen("\"systemd\"", "\"systemdd\"", 1);
    std::fs::write(&bad, text).unwrap();
    let err = stderr_of(&["detect", "--facts", bad.to_str().unwrap()], 2);
    assert!(
        err.contains("bad.json:") && err.contains("unknown field `systemdd`"),
        "{err}"
    );
    std::fs::write(&bad, "{\"schema_version\": 99}").unwrap();
    let err = stderr_of(&["detect", "--facts", bad.to_str().unwrap()], 2);
    assert!(err.contains("schema_version 99 is not supported"), "{err}");
}

#[test]
fn env_vars_are_read() {
    let out = kstrap()
        .env("KSTRAP_FACTS", fx("rtx5090-96gb"))
        .env("KSTRAP_PROFILE", "cpu-fallback")
        .args(["plan", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["profile"], "cpu-fallback");
    assert_eq!(v["chosen_by"], "--profile");
}

#[test]
fn profiles_dir_override_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/laptop-8gb.yaml")).unwrap();
    std::fs::write(
        dir.path().join("laptop-8gb.yaml"),
        text.replace("priority: 10", "priority: 10\nflavour: mint"),
    )
    .unwrap();
    let err = stderr_of(
        &[
            "detect",
            "--facts",
            &fx("laptop-8gb-nogpu"),
            "--profiles-dir",
            dir.path().to_str().unwrap(),
        ],
        2,
    );
    assert!(
        err.contains("laptop-8gb.yaml:") && err.contains("unknown field `flavour`"),
        "{err}"
    );
}

#[test]
fn up_without_dry_run_refuses_a_host_that_fails_preflight() {
    // The 5090 fixture has no failing check; the WSL2 one lacks nothing either, so build one that
    // fails: an existing k0s next to a k3s profile.
    let text = std::fs::read_to_string(fixture_path("rtx5090-96gb")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["existing"]["k0s"]["binary"] = "/usr/local/bin/k0s".into();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k0s-present.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let err = stderr_of(&["up", "--yes", "--facts", path.to_str().unwrap()], 3);
    assert!(err.contains("existing-cluster: k0s is already installed"), "{err}");
}

#[test]
fn completions_are_generated() {
    let out = stdout_of(&["completions", "bash"], 0);
    assert!(out.contains("_kstrap()") && out.contains("--dry-run"));
}

#[test]
fn dry_run_on_this_machine_needs_no_root_and_changes_nothing() {
    // The README's first command: detect this machine for real, select, print the plan.
    // A machine that fits no profile (a CI runner with little free disk) is refused the way
    // preflight refuses: exit 3, each profile with the figure that missed, and what to do.
    let out = kstrap().args(["up", "--dry-run"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) && stderr.contains("no profile fits this host") {
        assert!(stderr.contains("laptop-8gb: "), "{stderr}");
        assert!(stderr.contains("fix: "), "{stderr}");
        assert!(out.stdout.is_empty(), "no plan after a refusal");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Plan: profile "), "{text}");
    assert!(text.contains("Nothing was changed"));
}

/// A stack that runs its authors' own images is refused (exit 2) until each is named, by flag or
/// environment; once named, the plan applies the given image.
#[test]
fn user_images_are_required_then_used() {
    let err = stderr_of(&["plan", "--facts", &fx("rtx5090-96gb"), "--stack", "imagepod"], 2);
    assert!(err.contains("API_IMAGE"), "{err}");
    assert!(err.contains("--image KEY=REF"), "{err}");
    let err = stderr_of(
        &[
            "plan",
            "--facts",
            &fx("rtx5090-96gb"),
            "--stack",
            "imagepod",
            "--image",
            "API_IMAGE=x:latest",
        ],
        2,
    );
    assert!(err.contains("not pinned"), "{err}");
    let out = kstrap()
        .args([
            "plan",
            "--facts",
            &fx("rtx5090-96gb"),
            "--stack",
            "imagepod",
            "-o",
            "json",
        ])
        .args(["--image", "API_IMAGE=registry.example.com/imagepod/api:1.0.0"])
        .env("GPU_WORKER_IMAGE", "registry.example.com/imagepod/worker:1.0.0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["stack"], "imagepod", "{plan}");
}
