//! `kstrap plan --upgrade` on a temp-root host (the fake host, TEST DOUBLE) where kstrap's state
//! file records an older k3s or k0s: the plan shows the upgrade step by step, one step per
//! minor version, the release of a minor in between left to the user; nothing is written.

use crate::fake_host::FakeHost;
use crate::support::fixture_path;
use assert_cmd::Command;
use std::process::Output;

/// A host where kstrap recorded installing `distro` `version` (its state file only).
fn installed(distro: &str, version: &str) -> FakeHost {
    let host = FakeHost::new("");
    let dir = host.root.join("var/lib/kstrap");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("state.json"),
        format!(
            r#"{{"schema": 1, "distro": "{distro}", "version": "{version}", "profile": "rtx-5090", "files": {{}}, "dirs": [], "services": [], "data_dirs": [], "kubeconfig": null, "commands": {{}}, "pending": []}}"#
        ),
    )
    .unwrap();
    host
}

fn plan(host: &FakeHost, extra: &[&str]) -> Output {
    let mut c = Command::cargo_bin("kstrap").unwrap();
    c.env_clear();
    for (k, v) in host.envs() {
        c.env(k, v);
    }
    c.args([
        "plan",
        "--facts",
        fixture_path("rtx5090-96gb").to_str().unwrap(),
        "--upgrade",
    ]);
    c.args(extra);
    c.output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The upgrade section of the human plan.
fn section(text: &str) -> String {
    let at = text
        .find("Upgrade of ")
        .unwrap_or_else(|| panic!("no upgrade section:\n{text}"));
    text[at..].to_string()
}

#[test]
fn plan_upgrade_from_two_minors_back_shows_both_steps_and_the_release_to_pick() {
    let host = installed("k3s", "v1.33.4+k3s1");
    let before = host.tree(&[]);
    let text = stdout(&plan(&host, &[]));
    insta::assert_snapshot!("plan_upgrade_k3s_two_minors", section(&text));
    assert_eq!(host.tree(&[]), before, "plan writes nothing");

    // The JSON plan carries the same steps.
    let out = plan(&host, &["-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let steps = v["upgrade"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{v}");
    assert_eq!(steps[0]["to"], "v1.34.x");
    assert_eq!(steps[0]["named"], false);
    assert_eq!(steps[1]["to"], "v1.35.3+k3s1");
    assert!(
        v["upgrade"]["refused"]
            .as_str()
            .unwrap()
            .contains("v1.33 → v1.34 → v1.35")
    );
}

#[test]
fn plan_upgrade_of_a_k0s_one_minor_back_is_one_step_up_does() {
    let host = installed("k0s", "v1.34.3+k0s.0");
    let text = stdout(&plan(&host, &["--distro", "k0s"]));
    insta::assert_snapshot!("plan_upgrade_k0s_next_minor", section(&text));
    // Nothing installed, or already there: it says so instead.
    let text = stdout(&plan(&installed("k3s", "v1.35.3+k3s1"), &[]));
    assert!(text.contains("k3s v1.35.3+k3s1 is installed here already"), "{text}");
    let text = stdout(&plan(&FakeHost::new(""), &[]));
    assert!(text.contains("kstrap installed no cluster here"), "{text}");
}
