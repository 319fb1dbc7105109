//! `kstrap join` on real machines: a worker behind a corporate proxy and one on an
//! SELinux-enforcing host. The binary (assert_cmd) runs on a fake worker host (TEST DOUBLE: temp
//! root, fake systemctl/k3s/k0s on PATH) with a local release server (TEST DOUBLE), against the
//! k3s supervisor stand-in (TEST DOUBLE: `/cacerts` and `/version` over TLS). No control plane
//! is needed: the files are read while the join waits for its node (the fake agent's kubelet
//! kubeconfig names a port that closes every connection), then the wait times out (exit 4) and
//! the run rolls back what it wrote.
//!
//! Checked: the k3s agent's environment file and the k0s worker's drop-in, as `up` writes them
//! for a server, with `NO_PROXY` completed (this node's addresses, the server's, the cluster's
//! ranges); the proxy password in no output (plan, JSON, progress, errors) nor in kstrap's state;
//! SELinux enforcing without k3s's policy refused before anything is written, and with it the
//! agent running with `selinux: true`.

use crate::hosts::facts_with;
use crate::join_e2e::{PASSWORD, k0s_token, token_file};
use crate::k3s_supervisor::{Supervisor, k3s_token};
use crate::up_e2e::{Machine, World, text};
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::{Duration, Instant};

const PROXY_PASSWORD: &str = "pr0xy-w0rker-pw";
const PROXY: &str = "http://alice:pr0xy-w0rker-pw@10.0.0.1:3128";
/// kstrap's own downloads (from the release server on 127.0.0.1) go direct.
const NO_PROXY: &str = "127.0.0.1,localhost";

/// The join arguments, with these facts (a file) and `extra`.
fn args(server: &str, token: &str, mirror: &str, facts: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "join",
        "--server",
        server,
        "--token-file",
        token,
        "--facts",
        facts,
        "--release-mirror",
        mirror,
        "--node-name",
        "edge-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The GPU workstation's facts with a LAN address (for `NO_PROXY`).
fn facts_with_address() -> tempfile::NamedTempFile {
    facts_with("rtx5090-96gb", |v| {
        v["network"] = serde_json::json!({"addresses": ["192.168.1.23"], "routes": []});
    })
}

/// `kstrap join` with the proxy in its environment; while it waits for its node (after the
/// worker's service `unit` started), reads `file` from the host: its mode and contents.
fn join_reading(w: &World, args: &[String], unit: &str, file: &str) -> (Output, Option<(u32, String)>) {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("kstrap"));
    cmd.env_clear();
    for (k, v) in w.host.envs() {
        cmd.env(k, v);
    }
    cmd.env("HTTPS_PROXY", PROXY).env("NO_PROXY", NO_PROXY);
    cmd.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let path = w.host.root.join(file.trim_start_matches('/'));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = None;
    while Instant::now() < deadline && seen.is_none() {
        if w.host.active(unit)
            && let (Ok(meta), Ok(text)) = (std::fs::metadata(&path), std::fs::read_to_string(&path))
        {
            seen = Some((meta.permissions().mode() & 0o7777, text));
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), seen)
}

/// The proxy in `kstrap join --dry-run` (human with -vv, and JSON): masked, `NO_PROXY` as the
/// worker's service gets it.
fn dry_run(w: &World, args: &[String]) -> (String, serde_json::Value) {
    let mut all = Vec::new();
    let mut json = serde_json::Value::Null;
    for extra in [&["--dry-run", "-vv"][..], &["--dry-run", "-o", "json"][..]] {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(extra);
        let out = w
            .kstrap(&a)
            .env("HTTPS_PROXY", PROXY)
            .env("NO_PROXY", NO_PROXY)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        if extra.contains(&"json") {
            json = serde_json::from_slice(&out.stdout).unwrap();
        }
        all.push(text(&out));
    }
    (all.join("\n"), json)
}

fn never_secret(what: &str, hay: &str) {
    assert!(!hay.contains(PROXY_PASSWORD), "proxy password in {what}:\n{hay}");
    assert!(!hay.contains(PASSWORD), "join token in {what}:\n{hay}");
}

#[test]
fn a_k3s_worker_behind_a_proxy_gets_it_in_its_agent_env_file_and_never_shows_the_password() {
    let w = World::host_only();
    let sup = Supervisor::k3s();
    let token = token_file(&w.host, &k3s_token(false, PASSWORD));
    let facts = facts_with_address();
    let a = args(
        &sup.url(),
        &token,
        &w.releases.url(),
        facts.path().to_str().unwrap(),
        &["--yes", "--cluster-timeout", "3"],
    );
    let expected_no_proxy = "127.0.0.1,localhost,::1,192.168.1.23,10.42.0.0/16,10.43.0.0/16,.svc,.cluster.local";

    let (shown, plan) = dry_run(&w, &a);
    never_secret("the dry run", &shown);
    assert_eq!(plan["proxy"]["https"], "http://***@10.0.0.1:3128", "{plan}");
    assert_eq!(plan["proxy"]["no_proxy"], expected_no_proxy, "{plan}");
    assert!(shown.contains("k3s-agent.service.env"), "{shown}");

    let (out, env) = join_reading(&w, &a, "k3s-agent.service", "/etc/systemd/system/k3s-agent.service.env");
    // No node ever registers here: the wait times out and the run rolls back.
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let (mode, env) = env.expect("the agent's env file while it waited");
    assert_eq!(mode, 0o600);
    assert_eq!(env, format!("HTTPS_PROXY={PROXY}\nNO_PROXY={expected_no_proxy}\n"));
    never_secret("the join's output", &text(&out));
    let log = w.host.take_log();
    never_secret("argv", &log.join("\n"));
    assert!(
        !w.host.root.join("etc/systemd/system/k3s-agent.service.env").exists(),
        "rolled back"
    );
}

#[test]
fn a_k0s_worker_behind_a_proxy_gets_the_drop_in_for_its_unit() {
    let w = World::host_only();
    let sup = Supervisor::start(
        std::fs::read(crate::k3s_supervisor::fixture("ca.crt")).unwrap(),
        "v1.35.3+k0s",
    );
    let token = token_file(&w.host, &k0s_token(&sup.url(), "ca.crt"));
    let facts = facts_with_address();
    let a = args(
        &sup.url(),
        &token,
        &w.releases.url(),
        facts.path().to_str().unwrap(),
        &["--yes", "--cluster-timeout", "3"],
    );
    let (shown, plan) = dry_run(&w, &a);
    never_secret("the dry run", &shown);
    let ids: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids[..6],
        [
            "preflight",
            "download-k0s",
            "copy-join-token",
            "install-k0s-worker",
            "write-k0s-worker-proxy",
            "reload-systemd-k0s-worker"
        ]
    );

    let drop_in = "/etc/systemd/system/k0sworker.service.d/http-proxy.conf";
    let (out, seen) = join_reading(&w, &a, "k0sworker.service", drop_in);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let (mode, seen) = seen.expect("the worker's drop-in while it waited");
    assert_eq!(mode, 0o600);
    assert!(
        seen.ends_with(&format!(
            "[Service]\nEnvironment=HTTPS_PROXY={PROXY}\nEnvironment=NO_PROXY=127.0.0.1,localhost,::1,192.168.1.23,10.244.0.0/16,10.96.0.0/12,.svc,.cluster.local\n"
        )),
        "{seen}"
    );
    never_secret("the join's output", &text(&out));
    // k0s rewrites its unit first, systemd re-reads the drop-in, then the worker starts.
    let log = w.host.take_log();
    never_secret("argv", &log.join("\n"));
    let at = |prefix: &str| {
        log.iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {log:?}"))
    };
    assert!(
        at("k0s install worker") < at("systemctl daemon-reload")
            && at("systemctl daemon-reload") < at("systemctl enable --now k0sworker.service"),
        "{log:?}"
    );
}

#[test]
fn a_worker_on_selinux_enforcing_needs_k3s_selinux_and_then_runs_with_it() {
    let w = World::host_only();
    let sup = Supervisor::k3s();
    let token = token_file(&w.host, &k3s_token(false, PASSWORD));
    let enforcing = |policy: bool| {
        facts_with(
            "rtx5090-96gb",
            move |v| {
                v["security"] =
                    serde_json::json!({"selinux": "enforcing", "k3s_selinux_policy": policy, "apparmor": false})
            },
        )
    };
    // Without k3s's policy: refused (exit 3) before anything is written or the token is used.
    let bare = enforcing(false);
    let before = w.host.tree(&[]);
    let a = args(
        &sup.url(),
        &token,
        &w.releases.url(),
        bare.path().to_str().unwrap(),
        &["--yes"],
    );
    let out = w
        .kstrap(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("selinux") && stderr.contains("k3s-selinux") && stderr.contains("the token was not used"),
        "{stderr}"
    );
    assert_eq!(w.host.tree(&[]), before);
    assert_eq!(w.host.take_log(), Vec::<String>::new());

    // With it: the agent runs with SELinux in its containerd.
    let ready = enforcing(true);
    let a = args(
        &sup.url(),
        &token,
        &w.releases.url(),
        ready.path().to_str().unwrap(),
        &["--dry-run", "-o", "json"],
    );
    let out = w
        .kstrap(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["preflight"]["refused"], false, "{plan}");
    let config = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "write-k3s-agent-config")
        .and_then(|s| s["action"]["contents"].as_str())
        .unwrap_or_default();
    assert!(config.ends_with("selinux: true\n"), "{config}");
}
