//! The real API server process stopped in the middle of a stage wait and started again: `kstrap
//! apply` says that the server has not answered ("the API server at … has not answered for
//! 12 s; retrying"), keeps waiting, and converges with exit 0 once the server is back.
//!
//! This needs a control plane of its own (it stops its API server): the test starts a second one
//! with `../shared/k8s/control-plane` (the script `KSTRAP_TEST_CONTROL_PLANE` names, else the one
//! beside the checkout) on the ports `KSTRAP_TEST_OUTAGE_PORTS` names (`API,ETCD,KCM,SCHED`;
//! default `16543,22479,20357,20359`, apart from the main test cluster's), with a node stand-in
//! of its own. It runs only when the main real cluster is configured (`KSTRAP_TEST_KUBECONFIG`),
//! so that a plain `cargo test` without `../shared` skips it, saying why.
//!
//! Why the API server is started again by this test rather than by `control-plane start`: that
//! script's `start` begins from an empty etcd (`rm -rf DIR/etcd`), so everything kstrap applied
//! would be gone; a restarted kube-apiserver process keeps etcd, as on a k3s or k0s node whose
//! server restarts. The test records the process's own command line from `/proc/PID/cmdline`
//! before it stops it, and runs that again.

use crate::real::{NodeConfig, NodeStandIn, RealCluster};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "the_api_server_restarting_in_a_stage_wait_is_reported_and_apply_converges";

fn control_plane_script() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KSTRAP_TEST_CONTROL_PLANE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // ../shared beside a checkout; ../../shared beside a worktree under wt/.
    [
        repo.join("../shared/k8s/control-plane"),
        repo.join("../../shared/k8s/control-plane"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// A second control plane in a temp dir; stopped (and its restarted API server killed) on drop.
struct SecondCluster {
    script: PathBuf,
    dir: tempfile::TempDir,
    ports: [String; 4],
    restarted: Option<Child>,
}

impl SecondCluster {
    fn start(script: PathBuf) -> SecondCluster {
        let ports = std::env::var("KSTRAP_TEST_OUTAGE_PORTS").unwrap_or_else(|_| "16543,22479,20357,20359".into());
        let ports: Vec<String> = ports.split(',').map(|p| p.trim().to_string()).collect();
        assert_eq!(ports.len(), 4, "KSTRAP_TEST_OUTAGE_PORTS: API,ETCD,KCM,SCHED");
        let c = SecondCluster {
            script,
            dir: tempfile::Builder::new().prefix("kstrap-outage-cp").tempdir().unwrap(),
            ports: [ports[0].clone(), ports[1].clone(), ports[2].clone(), ports[3].clone()],
            restarted: None,
        };
        let out = c.script_cmd("start").output().unwrap();
        assert!(
            out.status.success(),
            "{} start: {}{}",
            c.script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        c
    }

    fn script_cmd(&self, cmd: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(&self.script)
            .arg(cmd)
            .arg(self.dir.path())
            .env("KSTRAP_CP_API_PORT", &self.ports[0])
            .env("KSTRAP_CP_ETCD_PORT", &self.ports[1])
            .env("KSTRAP_CP_KCM_PORT", &self.ports[2])
            .env("KSTRAP_CP_SCHED_PORT", &self.ports[3]);
        c
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn api_server_pid(&self) -> u32 {
        let pids = std::fs::read_to_string(self.dir.path().join("pids")).unwrap();
        pids.lines()
            .find_map(|l| l.strip_prefix("kube-apiserver "))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no kube-apiserver in pids: {pids}"))
    }

    /// Kills the API server process (SIGKILL) and waits until it is gone; returns its command
    /// line.
    ///
    /// Not SIGTERM: kube-apiserver's graceful shutdown stops listening but keeps serving the
    /// watches already open until they end or its shutdown timeout passes (up to a minute,
    /// k8s.io/apiserver pkg/server/genericapiserver.go `NonBlockingRunWithContext`, the HTTP
    /// server's `Shutdown`), so its clients see no outage at all while the old process lingers,
    /// and a new one started meanwhile cannot bind the port. A killed server (a crash, an OOM
    /// kill, `k3s-killall.sh`) closes every connection at once: the outage this test is about.
    fn stop_api_server(&self) -> Vec<String> {
        let pid = self.api_server_pid();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                Instant::now() < deadline,
                "kube-apiserver {pid} still runs 20 s after SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        args
    }

    /// Starts the API server again with `args`, and records its PID for `control-plane stop`.
    fn start_api_server(&mut self, args: &[String]) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.path().join("logs/kube-apiserver.log"))
            .unwrap();
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pids = std::fs::read_to_string(self.dir.path().join("pids")).unwrap();
        let pids: String = pids
            .lines()
            .map(|l| {
                if l.starts_with("kube-apiserver ") {
                    format!("kube-apiserver {}\n", child.id())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(self.dir.path().join("pids"), pids).unwrap();
        self.restarted = Some(child);
    }
}

impl Drop for SecondCluster {
    fn drop(&mut self) {
        let _ = self.script_cmd("stop").output();
        if let Some(mut child) = self.restarted.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A stack whose last stage waits long enough (a `slow-start` image: ready after 3 s, and the
/// pod only starts once the node stand-in sees it) for the API server to be stopped in it.
fn slow_stack() -> tempfile::TempDir {
    crate::support::two_stage_stack(
        "outage",
        "a slow stage",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: slow\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: slow}\n  template:\n    metadata:\n      labels: {app: slow}\n    spec:\n      containers:\n        - name: slow\n          image: example.com/slow-start:1\n",
        "",
    )
}

#[test]
fn the_api_server_restarting_in_a_stage_wait_is_reported_and_apply_converges() {
    if RealCluster::get(TEST).is_none() {
        return;
    }
    let Some(script) = control_plane_script() else {
        let why = "no ../shared/k8s/control-plane beside the checkout (set KSTRAP_TEST_CONTROL_PLANE)";
        if std::env::var(crate::real::REQUIRE_CLUSTER).is_ok_and(|v| v == "1") {
            panic!("{TEST}: {why}");
        }
        eprintln!("skipping {TEST}: {why}");
        return;
    };
    let mut cluster = SecondCluster::start(script);
    // Its pods are slow to start (10 s), so the stage is still waiting when the server goes.
    let node = NodeStandIn::start(
        &cluster.kubeconfig(),
        NodeConfig {
            start_delay: Duration::from_secs(10),
            ..NodeConfig::default()
        },
    )
    .unwrap_or_else(|e| panic!("node stand-in on the second cluster: {e}"));

    let stacks = slow_stack();
    let child = Command::new(assert_cmd::cargo::cargo_bin("kstrap"))
        // A profile named: the test must not depend on this machine's memory or free disk.
        .args([
            "apply",
            "--stack",
            "outage",
            "--profile",
            "laptop-8gb",
            "--timeout",
            "180",
            "--stack-dir",
        ])
        .arg(stacks.path())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the Deployment exists, kstrap waits on stage app: stop the server there.
    let client_ready = {
        let kubeconfig = cluster.kubeconfig();
        tokio::runtime::Runtime::new().unwrap().block_on(async move {
            let client = kstrap::kube::client_from(Some(&kubeconfig), None).await.unwrap();
            let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(client, "outage");
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = api.get_opt("slow").await {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        })
    };
    assert!(client_ready, "kstrap never applied the Deployment");
    let args = cluster.stop_api_server();
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(14));
    cluster.start_api_server(&args);

    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let port = &cluster.ports[0];
    assert!(
        stderr.contains(&format!(
            "the API server at https://127.0.0.1:{port} has not answered for 12 s; retrying"
        )),
        "stderr:\n{stderr}"
    );
    assert!(stderr.contains("stage app: ready ("), "{stderr}");
    eprintln!("{TEST}: converged {:?} after the API server stopped", stopped.elapsed());
    drop(node);
}
