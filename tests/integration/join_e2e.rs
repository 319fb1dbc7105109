//! `kstrap join` and `kstrap join-command` for real: the binary (assert_cmd) on a fake worker host
//! (TEST DOUBLE: temp root, fake systemctl/k3s/k0s on PATH) with a local release server (TEST
//! DOUBLE), against a k3s supervisor stand-in (TEST DOUBLE: `/cacerts` and `/version` over TLS,
//! certificates in tests/fixtures/join) and, for the end-to-end test, the real control plane with
//! a second node stand-in (TEST DOUBLE of the worker's kubelet, `crate::real::worker`).
//!
//! Checked: the CA-hash mismatch is refused before anything is written or run and with nothing
//! secret sent; `--dry-run` shows every step and never the token; bad inputs exit 2 naming the
//! flag; the join itself (files, modes, the agent unit, labels, the wait with node-only
//! credentials, the GPU shares), the server's view (`kstrap status` with both nodes, a GPU pod
//! scheduled on the worker), an idempotent re-run, `down` on the worker; and that the token is
//! never in a command's argv, kstrap's output, its JSON, or its state file.

use crate::fake_host::FakeHost;
use crate::k3s_supervisor::{Supervisor, k3s_token};
use crate::real::worker::{WorkerStandIn, wait_node};
use crate::real::{Cleanup, RealCluster, apply_json, unique};
use crate::release_server::ReleaseServer;
use crate::support::fixture_path;
use crate::up_e2e::{K3S, Machine, World};
use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

pub(crate) const PASSWORD: &str = "s3cret-join-password-7f3a";

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes the token root-only beside the fake host; returns its path.
pub(crate) fn token_file(host: &FakeHost, token: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = host.dir.path().join("join-token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

fn join_args(server: &str, token: &str, mirror: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "join",
        "--server",
        server,
        "--token-file",
        token,
        "--facts",
        fixture_path("rtx5090-96gb").to_str().unwrap(),
        "--release-mirror",
        mirror,
        "--node-name",
        "gpu-box",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run(w: &impl Machine, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    w.kstrap(&args).output().unwrap()
}

#[test]
fn join_refuses_a_server_whose_ca_is_not_the_tokens_before_the_token_is_used() {
    let w = World::host_only();
    let sup = Supervisor::k3s();
    let token = token_file(&w.host, &k3s_token(true, PASSWORD));
    let before = w.host.tree(&[]);
    let out = run(&w, &join_args(&sup.url(), &token, &w.releases.url(), &["--yes"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not the cluster the token belongs to") && stderr.contains("the token was not sent"),
        "{stderr}"
    );
    // Nothing changed on the host, nothing ran, and the server saw only the anonymous /cacerts.
    assert_eq!(w.host.tree(&[]), before);
    assert_eq!(w.host.take_log(), Vec::<String>::new());
    let requests = sup.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].starts_with("GET /cacerts HTTP/1.1\r\n"), "{requests:?}");
    assert!(!requests[0].to_ascii_lowercase().contains("authorization"));
    assert!(!requests[0].contains(PASSWORD));
    assert!(!text(&out).contains(PASSWORD));
}

#[test]
fn join_dry_run_shows_every_step_and_never_the_token() {
    let w = World::host_only();
    let sup = Supervisor::k3s();
    let token = token_file(&w.host, &k3s_token(false, PASSWORD));
    let out = run(&w, &join_args(&sup.url(), &token, &w.releases.url(), &["--dry-run"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        "k3s v1.35.3+k3s1",
        "Download k3s",
        "Copy the join token into a root-only file",
        "/etc/rancher/k3s/agent-token",
        "Write the k3s agent configuration",
        "systemctl enable --now k3s-agent.service",
        "Wait until node gpu-box is Ready",
        "advertises its 1 GPU(s)",
        "Plan: join as a worker (profile rtx-5090), k3s v1.35.3+k3s1",
        "To do it: sudo kstrap join with the same flags, without --dry-run",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let out = run(
        &w,
        &join_args(&sup.url(), &token, &w.releases.url(), &["--dry-run", "-o", "json"]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "preflight",
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
    let findings = plan["steps"][0]["action"]["findings"].to_string();
    assert!(
        findings.contains("answers over TLS with the CA the token names"),
        "{findings}"
    );
    let config = plan["steps"][3]["action"]["contents"].as_str().unwrap();
    for label in [
        "kstrap.dev/gpu-count=1",
        "kstrap.dev/gpu-model=NVIDIA-GeForce-RTX-5090",
        "kstrap.dev/gpu-vram-gib=31",
        "kstrap.dev/profile=rtx-5090",
        "kstrap.dev/role=worker",
        "kstrap.dev/tier=rtx-5090",
    ] {
        assert!(config.contains(label), "{label} not in {config}");
    }
    assert!(!text(&out).contains(PASSWORD));
    assert_eq!(w.host.take_log(), Vec::<String>::new());
}

#[test]
fn join_bad_inputs_exit_2_naming_the_flag() {
    let w = World::host_only();
    let sup = Supervisor::k3s();
    let good = token_file(&w.host, &k3s_token(false, PASSWORD));
    let missing = w.host.dir.path().join("nope").display().to_string();
    let bare = w.host.dir.path().join("bare");
    std::fs::write(&bare, format!("server:{PASSWORD}\n")).unwrap();
    let bare = bare.display().to_string();
    let http = sup.url().replace("https", "http");
    for (server, token, want) in [
        (sup.url(), missing.clone(), format!("--token-file {missing}")),
        (sup.url(), bare.clone(), "carries no CA hash".to_string()),
        (http, good.clone(), "is not an https:// URL".to_string()),
    ] {
        let out = run(&w, &join_args(&server, &token, &w.releases.url(), &["--dry-run"]));
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&want) && stderr.contains("fix:"), "{want}: {stderr}");
        assert!(!stderr.contains(PASSWORD), "{stderr}");
    }
    assert!(
        sup.requests().is_empty(),
        "bad input must be refused before the server is asked"
    );
}

/// Node-only credentials on the real cluster: a ServiceAccount allowed to get, list and watch
/// Nodes and nothing else (what the Node authorizer lets a kubelet read about nodes). Returns a
/// kubelet-style kubeconfig naming its CA by the k3s agent's file path, and that CA.
async fn node_credentials(cluster: &RealCluster, cleanup: &mut Cleanup, ns: &str) -> (String, Vec<u8>) {
    use base64::Engine;
    let client = cluster.client().await;
    let role = unique("kstrap-join-node-reader");
    for obj in [
        crate::real::namespace_json(ns),
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "kubelet", "namespace": ns}}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]}),
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "kubelet", "namespace": ns}]}),
    ] {
        apply_json(&client, &obj, "kstrap-test").await.unwrap();
    }
    cleanup
        .namespace(ns)
        .cluster_object("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", &role)
        .cluster_object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            &role,
        );
    let sa: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> = kube::Api::namespaced(client, ns);
    let req: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(serde_json::json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let token = sa
        .create_token_request("kubelet", &Default::default(), &req)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap();
    let admin = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let c = admin.clusters[0].cluster.clone().unwrap();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(c.certificate_authority_data.unwrap())
        .unwrap();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority: /var/lib/rancher/k3s/agent/server-ca.crt\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: kubelet\ncurrent-context: local\nusers:\n- name: kubelet\n  user:\n    token: {token}\n",
        c.server.unwrap()
    );
    (kubeconfig, ca)
}

/// A fake worker host whose k3s agent hands out `kubeconfig`, and a release server.
struct WorkerHost {
    host: FakeHost,
    releases: ReleaseServer,
    ca: std::path::PathBuf,
}

impl Machine for WorkerHost {
    fn host(&self) -> &FakeHost {
        &self.host
    }
    fn releases(&self) -> &ReleaseServer {
        &self.releases
    }
}

/// Runs `kstrap join` in the background; once the fake agent has started, registers the worker
/// node as its kubelet would (name and labels from the agent's config), then lets the "GPU
/// operator" advertise 1 GPU × 4 replicas. Returns the output and the stand-in.
fn join_with_node(w: &WorkerHost, args: &[String], cluster: &RealCluster) -> (Output, Option<WorkerStandIn>) {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("kstrap"));
    cmd.env_clear();
    for (k, v) in w.host.envs() {
        cmd.env(k, v);
    }
    cmd.env("FAKE_HOST_AGENT_CA", &w.ca);
    cmd.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let config = w.host.root.join("etc/rancher/k3s/config.yaml");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut standin = None;
    while Instant::now() < deadline {
        if w.host.active("k3s-agent.service") && config.exists() {
            let v: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
            let name = v["node-name"].as_str().unwrap().to_string();
            let labels: BTreeMap<String, String> = v["node-label"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|l| l.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect();
            let s = WorkerStandIn::start(cluster.kubeconfig(), &name, labels).unwrap();
            s.advertise_gpus(1, 4);
            standin = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), standin)
}

#[test]
fn join_a_gpu_worker_then_status_workload_rerun_and_down() {
    let Some(cluster) = RealCluster::get("join_a_gpu_worker_then_status_workload_rerun_and_down") else {
        return;
    };
    // A second node changes what every test sees (nodes, GPU shares): exclusive.
    let _guard = cluster.exclusive();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cleanup = Cleanup::new(cluster);
    let ns = unique("kstrap-join");
    let (kubeconfig, ca) = rt.block_on(node_credentials(cluster, &mut cleanup, &ns));
    let releases = ReleaseServer::start();
    releases.release_layout("k3s", K3S, "amd64");
    let host = FakeHost::new(&kubeconfig);
    let ca_path = host.dir.path().join("server-ca.crt");
    std::fs::write(&ca_path, &ca).unwrap();
    let w = WorkerHost {
        host,
        releases,
        ca: ca_path,
    };
    let sup = Supervisor::k3s();
    let token = token_file(&w.host, &k3s_token(false, PASSWORD));
    let args = join_args(&sup.url(), &token, &w.releases.url(), &["--yes", "-o", "json"]);

    let (out, standin) = join_with_node(&w, &args, cluster);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let _standin = standin.expect("the fake agent started");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["node"], "gpu-box");
    assert_eq!(report["role"], "worker");
    assert_eq!(report["version"], K3S);
    assert_eq!(
        (report["gpus"].as_u64(), report["gpu_shares"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(report["status_command"], "kstrap status");

    // What the worker host holds: the agent's unit, config and token file, root-only.
    let tree = w.host.tree(&["/run/kstrap.lock"]);
    for want in [
        "f 0600 /etc/rancher/k3s/agent-token",
        "f 0600 /etc/rancher/k3s/config.yaml",
        "f 0644 /etc/systemd/system/k3s-agent.service",
        "f 0600 /etc/systemd/system/k3s-agent.service.env",
        "f 0755 /usr/local/bin/k3s",
        "    | ExecStart=/usr/local/bin/k3s agent",
        "    | token-file: /etc/rancher/k3s/agent-token",
    ] {
        assert!(tree.contains(want), "missing {want:?} in:\n{tree}");
    }
    let state = std::fs::read_to_string(w.host.root.join("var/lib/kstrap/state.json")).unwrap();
    assert!(state.contains("\"role\": \"worker\""), "{state}");
    let log = w.host.take_log();
    assert!(
        log.contains(&"systemctl enable --now k3s-agent.service".to_string()),
        "{log:?}"
    );
    // The token: in its root-only file only; never in argv, output, JSON or state.
    for (what, hay) in [
        ("argv", log.join("\n")),
        ("output", text(&out)),
        ("state", state.clone()),
    ] {
        assert!(!hay.contains(PASSWORD), "token in {what}");
    }
    assert!(
        std::fs::read_to_string(w.host.root.join("etc/rancher/k3s/agent-token"))
            .unwrap()
            .contains(PASSWORD)
    );

    rt.block_on(async {
        let client = cluster.client().await;
        // The server's view: the node with kstrap's labels and 4 shares.
        let labelled = wait_node(&client, "gpu-box", Duration::from_secs(10), |n| {
            let l = n.metadata.labels.clone().unwrap_or_default();
            l.get("kstrap.dev/gpu-model").map(String::as_str) == Some("NVIDIA-GeForce-RTX-5090")
                && l.get("kstrap.dev/tier").map(String::as_str) == Some("rtx-5090")
        })
        .await;
        assert!(labelled, "the worker node lacks kstrap's labels");
        // A GPU workload lands on the worker, the only node with nvidia.com/gpu.
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu-job", "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "docker.io/library/busybox:1.37",
                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}});
        apply_json(&client, &pod, "kstrap-test").await.unwrap();
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client.clone(), &ns);
        let ready = kube::runtime::wait::await_condition(pods, "gpu-job", |p: Option<&k8s_openapi::api::core::v1::Pod>| {
            p.and_then(|p| p.status.as_ref()).and_then(|s| s.phase.as_deref()) == Some("Running")
        });
        let pod = tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .expect("the GPU pod ran")
            .unwrap()
            .unwrap();
        assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("gpu-box"));
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, &ns);
        pods.delete("gpu-job", &kube::api::DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    });

    // `kstrap status` on the server: every node, the worker with its GPU and shares.
    let status = assert_cmd::Command::cargo_bin("kstrap")
        .unwrap()
        .env_clear()
        .env("NO_COLOR", "1")
        .args(["status", "--kubeconfig", cluster.kubeconfig().to_str().unwrap()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("kstrap-test-node") && shown.contains("gpu-box"),
        "{}",
        text(&status)
    );
    let gpu_line = shown
        .lines()
        .find(|l| l.contains("gpu-box") && l.contains("nvidia.com/gpu"))
        .unwrap_or_else(|| panic!("no GPU line for gpu-box:\n{shown}"));
    assert!(
        gpu_line.contains("1 GPU") && gpu_line.contains("4 nvidia.com/gpu"),
        "{gpu_line}"
    );

    // A re-run changes nothing: no write, no restart.
    let stamps = w.host.stamps(&["/run/kstrap.lock"]);
    let out = run(&w, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in report["steps"].as_array().unwrap() {
        assert!(
            ["unchanged", "checked"].contains(&s["outcome"].as_str().unwrap()),
            "re-run changed {s}"
        );
    }
    assert_eq!(w.host.stamps(&["/run/kstrap.lock"]), stamps);
    let effects: Vec<String> = w
        .host
        .take_effects()
        .into_iter()
        .filter(|l| !l.starts_with("systemctl is-"))
        .collect();
    assert_eq!(effects, Vec::<String>::new());

    // `kstrap up` here is refused: this machine is a worker.
    let out = w.up(&[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a k3s worker"));

    // `down` on the worker removes the agent as k3s-agent-uninstall.sh does.
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = w.host.take_log();
    assert!(
        log.contains(&"systemctl disable --now k3s-agent.service".to_string()),
        "{log:?}"
    );
    let tree = w.host.tree(&["/run/kstrap.lock"]);
    for gone in [
        "/etc/systemd/system/k3s-agent.service",
        "/etc/rancher/k3s",
        "/usr/local/bin/k3s",
        "/var/lib/rancher/k3s",
        "/var/lib/kstrap/state.json",
    ] {
        assert!(!tree.contains(gone), "{gone} left:\n{tree}");
    }
    drop(cleanup);
}

#[test]
fn join_command_prints_one_command_and_never_the_token() {
    let Some(w) = World::real("join_command_prints_one_command_and_never_the_token") else {
        return;
    };
    w.up_ok(&[]);
    let out = w.kstrap(&["join-command", "--address", "10.0.0.5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("sudo kstrap join --server https://10.0.0.5:6443 --token-file /root/kstrap-join-token"),
        "{stdout}"
    );
    assert!(stdout.contains("/var/lib/rancher/k3s/server/node-token"), "{stdout}");
    assert!(!text(&out).contains("fake-node-token"), "{}", text(&out));
    let out = w
        .kstrap(&["join-command", "--address", "10.0.0.5", "-o", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "distro": "k3s",
            "version": K3S,
            "server_url": "https://10.0.0.5:6443",
            "token_file": "/var/lib/rancher/k3s/server/node-token",
            "copy_token": "ssh root@10.0.0.5 cat /var/lib/rancher/k3s/server/node-token | sudo install -m 600 /dev/stdin /root/kstrap-join-token",
            "command": "sudo kstrap join --server https://10.0.0.5:6443 --token-file /root/kstrap-join-token",
            "status_command": "kstrap status"
        })
    );
}

#[test]
fn k0s_join_command_keeps_the_worker_token_in_a_root_only_file() {
    let Some(w) = World::real_k0s("k0s_join_command_keeps_the_worker_token_in_a_root_only_file") else {
        return;
    };
    w.up_ok(&["--distro", "k0s"]);
    w.host.take_log();
    let out = w.kstrap(&["join-command", "--address", "10.0.0.5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(w.host.take_log(), vec!["k0s token create --role=worker".to_string()]);
    assert!(!text(&out).contains("fake-k0s-worker-token"), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("sudo kstrap join --server https://10.0.0.5:6443"),
        "{stdout}"
    );
    let file = w.host.root.join("var/lib/k0s/kstrap-worker-token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("fake-k0s-worker-token")
    );
}

/// A k0s worker token as k0s writes it (k0sproject/k0s v1.35.3+k0s.0 `JoinEncode` of
/// `GenerateKubeconfig`'s output): base64 of gzip of a kubeconfig with the CA and a bootstrap
/// token.
pub(crate) fn k0s_token(server: &str, ca_file: &str) -> String {
    use base64::Engine;
    use std::io::Write;
    let ca = std::fs::read(crate::k3s_supervisor::fixture(ca_file)).unwrap();
    let kc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k0s\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: k0s\n  context:\n    cluster: k0s\n    user: kubelet-bootstrap\ncurrent-context: k0s\nusers:\n- name: kubelet-bootstrap\n  user:\n    token: abcdef.{PASSWORD}\n",
        base64::engine::general_purpose::STANDARD.encode(ca)
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(kc.as_bytes()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

#[test]
fn k0s_join_plans_a_worker_and_refuses_a_server_its_token_ca_did_not_sign() {
    let w = World::host_only();
    let sup = Supervisor::start(
        std::fs::read(crate::k3s_supervisor::fixture("ca.crt")).unwrap(),
        "v1.35.3+k0s",
    );
    let token = token_file(&w.host, &k0s_token(&sup.url(), "ca.crt"));
    let out = run(
        &w,
        &join_args(&sup.url(), &token, &w.releases.url(), &["--dry-run", "-o", "json"]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["distro_version"], "v1.35.3+k0s.0");
    let ids: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "preflight",
            "download-k0s",
            "copy-join-token",
            "install-k0s-worker",
            "start-k0s-worker",
            "wait-node",
            "wait-node-gpus"
        ]
    );
    let args = plan["steps"][3]["action"]["args"].to_string();
    assert!(args.contains("\"--token-file\",\"/etc/k0s/worker-token\""), "{args}");
    assert!(!text(&out).contains(PASSWORD));
    // Only /version was asked, on a connection that verified the server against the token's CA.
    assert_eq!(sup.requests().len(), 1);
    assert!(sup.requests()[0].starts_with("GET /version "));

    let wrong = token_file(&w.host, &k0s_token(&sup.url(), "other-ca.crt"));
    let out = run(&w, &join_args(&sup.url(), &wrong, &w.releases.url(), &["--yes"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS with"),
        "{}",
        text(&out)
    );
    assert_eq!(sup.requests().len(), 1, "no request may pass an unverified handshake");
    assert_eq!(w.host.take_log(), Vec::<String>::new());
}
