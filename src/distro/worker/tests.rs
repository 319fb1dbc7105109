//! The worker's steps, files and labels, from data.

use super::*;
use crate::distro::Version;

#[test]
fn agent_unit_is_the_server_unit_with_the_agent_command_and_env_file() {
    let unit = k3s_agent_unit();
    assert!(unit.contains("ExecStart=/usr/local/bin/k3s agent\n"), "{unit}");
    assert!(unit.contains("EnvironmentFile=-/etc/systemd/system/k3s-agent.service.env\n"));
    assert!(!unit.contains("k3s server") && !unit.contains("k3s.service.env"));
    assert!(unit.contains("Type=notify") && unit.contains("KillMode=process"));
}

#[test]
fn label_values_from_gpu_names() {
    assert_eq!(label_value("NVIDIA GeForce RTX 5090"), "NVIDIA-GeForce-RTX-5090");
    assert_eq!(label_value(" (A100) 80GB "), "A100-80GB");
    assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    let labels = node_labels(&[("kstrap.dev/gpu-model".into(), label_value("NVIDIA H100 80GB HBM3"))]).unwrap();
    assert_eq!(labels, vec!["kstrap.dev/gpu-model=NVIDIA-H100-80GB-HBM3"]);
    assert!(node_labels(&[("bad key!".into(), "x".into())]).is_err());
}

fn join<'a>(labels: &'a [String], gpus: u32) -> Join<'a> {
    Join {
        server: "https://10.0.0.5:6443",
        server_host: "10.0.0.5",
        token_source: "/root/join-token",
        node_name: "gpu-box",
        labels,
        gpus,
        gpu_timeout_s: 600,
    }
}

fn ctx<'a>(distro: Distro, version: &'a Version, join: &'a Join<'a>, network: &'a ClusterNetwork) -> WorkerContext<'a> {
    WorkerContext {
        release: Release {
            distro,
            version,
            arch: "x86_64",
            mirror: super::super::DEFAULT_MIRROR,
            airgap: None,
        },
        join,
        wait_timeout_s: 300,
        network,
        node_addresses: &[],
        proxy: None,
        selinux: false,
    }
}

#[test]
fn k3s_worker_steps_and_config() {
    let v = Distro::K3s.default_version();
    let labels = vec!["kstrap.dev/gpu-count=1".to_string()];
    let net = super::super::network::choose(Distro::K3s, &Default::default());
    let j = join(&labels, 1);
    let steps = steps(&ctx(Distro::K3s, &v, &j, &net)).unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "download-k3s",
            "copy-join-token",
            "write-k3s-agent-config",
            "write-k3s-agent-unit",
            "write-k3s-agent-env",
            "reload-systemd-k3s-agent",
            "start-k3s-worker",
            "wait-node",
            "wait-node-gpus"
        ]
    );
    let config = k3s_agent_config(&ctx(Distro::K3s, &v, &j, &net)).unwrap();
    assert_eq!(
        config,
        "server: https://10.0.0.5:6443\ntoken-file: /etc/rancher/k3s/agent-token\nnode-name: gpu-box\nnode-label:\n- kstrap.dev/gpu-count=1\n"
    );
    let json = serde_json::to_string(&steps).unwrap();
    assert!(json.contains("/root/join-token") && json.contains("\"0600\""));
}

#[test]
fn k0s_worker_installs_with_its_token_file() {
    let v = Distro::K0s.default_version();
    let labels = vec!["kstrap.dev/profile=laptop-8gb".to_string()];
    let net = super::super::network::choose(Distro::K0s, &Default::default());
    let j = join(&labels, 0);
    let steps = steps(&ctx(Distro::K0s, &v, &j, &net)).unwrap();
    let install = steps.iter().find(|s| s.id == "install-k0s-worker").unwrap();
    let Action::Command { args, creates, .. } = &install.action else {
        panic!("{install:?}")
    };
    assert_eq!(
        args.join(" "),
        "install worker --token-file /etc/k0s/worker-token --force --labels=kstrap.dev/profile=laptop-8gb"
    );
    assert_eq!(creates, &vec!["/etc/systemd/system/k0sworker.service".to_string()]);
    assert!(!steps.iter().any(|s| s.id == "wait-node-gpus"));
}

fn written<'a>(steps: &'a [Step], id: &str) -> (&'a str, u32, &'a str) {
    match steps.iter().find(|s| s.id == id).map(|s| &s.action) {
        Some(Action::WriteFile {
            path,
            mode,
            contents: Contents::Text(t),
        }) => (path.as_str(), mode.0, t.as_str()),
        other => panic!("{id}: {other:?}"),
    }
}

fn proxy() -> Proxy {
    let vars = |n: &str| match n {
        "HTTPS_PROXY" => Some("http://alice:w0rker-pw@10.0.0.1:3128".to_string()),
        "NO_PROXY" => Some("corp.example".to_string()),
        _ => None,
    };
    Proxy::from_vars(vars).unwrap().unwrap()
}

/// What `up` writes for a server behind a proxy, a k3s agent gets in its unit's environment
/// file, with the server's address among NO_PROXY's entries; without a proxy the file stays
/// empty.
#[test]
fn a_k3s_agent_behind_a_proxy_gets_it_in_its_env_file_with_the_server_bypassed() {
    let v = Distro::K3s.default_version();
    let labels = vec!["kstrap.dev/role=worker".to_string()];
    let net = super::super::network::choose(Distro::K3s, &Default::default());
    let j = join(&labels, 0);
    let p = proxy();
    let addrs = ["192.168.1.23".to_string()];
    let with = WorkerContext {
        proxy: Some(&p),
        node_addresses: &addrs,
        ..ctx(Distro::K3s, &v, &j, &net)
    };
    let planned = steps(&with).unwrap();
    let (path, mode, env) = written(&planned, "write-k3s-agent-env");
    assert_eq!((path, mode), ("/etc/systemd/system/k3s-agent.service.env", 0o600));
    assert_eq!(
        env,
        "HTTPS_PROXY=http://alice:w0rker-pw@10.0.0.1:3128\nNO_PROXY=corp.example,localhost,127.0.0.1,::1,192.168.1.23,10.0.0.5,10.42.0.0/16,10.43.0.0/16,.svc,.cluster.local\n"
    );
    // A changed env file restarts the agent (after systemd re-reads it).
    let start = planned.iter().find(|s| s.id == "start-k3s-worker").unwrap();
    assert!(matches!(&start.action, Action::Systemd { after_changes, .. } if after_changes.iter().any(|f| f == path)));
    // The server's address is added once, even when it is also this node's.
    let same = ["10.0.0.5".to_string()];
    let env = with_node(&with, &same).proxy_env();
    let no_proxy = &env.iter().find(|(k, _)| k == "NO_PROXY").unwrap().1;
    assert_eq!(no_proxy.matches("10.0.0.5").count(), 1, "{no_proxy}");

    let bare = steps(&ctx(Distro::K3s, &v, &j, &net)).unwrap();
    assert_eq!(written(&bare, "write-k3s-agent-env").2, "");
}

fn with_node<'a>(ctx: &WorkerContext<'a>, addresses: &'a [String]) -> WorkerContext<'a> {
    WorkerContext {
        node_addresses: addresses,
        ..*ctx
    }
}

/// A k0s worker gets the controller's drop-in, for its own unit: written after `k0s install
/// worker` (which rewrites the unit), reloaded, and a restart input of the worker.
#[test]
fn a_k0s_worker_behind_a_proxy_gets_the_drop_in_for_its_unit() {
    let v = Distro::K0s.default_version();
    let labels = vec!["kstrap.dev/role=worker".to_string()];
    let net = super::super::network::choose(Distro::K0s, &Default::default());
    let j = join(&labels, 0);
    let p = proxy();
    let planned = steps(&WorkerContext {
        proxy: Some(&p),
        ..ctx(Distro::K0s, &v, &j, &net)
    })
    .unwrap();
    let ids: Vec<&str> = planned.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "download-k0s",
            "copy-join-token",
            "install-k0s-worker",
            "write-k0s-worker-proxy",
            "reload-systemd-k0s-worker",
            "start-k0s-worker",
            "wait-node"
        ]
    );
    let (path, mode, drop_in) = written(&planned, "write-k0s-worker-proxy");
    assert_eq!(
        (path, mode),
        ("/etc/systemd/system/k0sworker.service.d/http-proxy.conf", 0o600)
    );
    assert!(drop_in.contains("[Service]\nEnvironment=HTTPS_PROXY=http://alice:w0rker-pw@10.0.0.1:3128\n"));
    assert!(
        drop_in.contains("Environment=NO_PROXY=corp.example,localhost,127.0.0.1,::1,10.0.0.5,10.244.0.0/16,10.96.0.0/12,.svc,.cluster.local\n"),
        "{drop_in}"
    );
    let start = planned.iter().find(|s| s.id == "start-k0s-worker").unwrap();
    assert!(matches!(&start.action, Action::Systemd { after_changes, .. } if after_changes.iter().any(|f| f == path)));
    // `down` may remove it: it is one of the files kstrap writes for k0s.
    assert!(Distro::K0s.extra_files().contains(&K0S_WORKER_PROXY_DROP_IN));
    // Without a proxy: no drop-in, no reload.
    let bare = steps(&ctx(Distro::K0s, &v, &j, &net)).unwrap();
    assert!(
        !bare
            .iter()
            .any(|s| s.id.contains("proxy") || s.id.starts_with("reload"))
    );
}

#[test]
fn a_k3s_agent_on_an_enforcing_host_with_the_policy_runs_with_selinux() {
    let v = Distro::K3s.default_version();
    let labels = vec!["kstrap.dev/role=worker".to_string()];
    let net = super::super::network::choose(Distro::K3s, &Default::default());
    let j = join(&labels, 0);
    let on = k3s_agent_config(&WorkerContext {
        selinux: true,
        ..ctx(Distro::K3s, &v, &j, &net)
    })
    .unwrap();
    assert!(on.ends_with("\nselinux: true\n"), "{on}");
    let off = k3s_agent_config(&ctx(Distro::K3s, &v, &j, &net)).unwrap();
    assert!(!off.contains("selinux"), "{off}");
}
