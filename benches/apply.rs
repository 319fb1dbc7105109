//! Benchmark of the stack engine against the real Kubernetes control plane named by
//! `KSTRAP_TEST_KUBECONFIG` (`../shared/k8s/control-plane start DIR`), whose node is the test
//! suites' node stand-in (a test double of the kubelet, `tests/support/real/node.rs`: a pod is
//! ready 300 ms after the scheduler binds it). Without a control plane it prints why and ends.
//! Plain `main`, std::time; run with `KSTRAP_TEST_KUBECONFIG=DIR/kubeconfig cargo bench --bench
//! apply`.
//!
//! (a) apply + wait of a generated 300-object stack (ConfigMaps, Services, Deployments over 3
//!     stages): wall time, objects/s, peak RSS (VmHWM, the stand-ins included) — target < 60 MB.
//! (b) reaction latency (`KSTRAP_BENCH_TRIALS`, default 30): one Deployment per trial; latency =
//!     the moment a separate watch of the bench first sees the Deployment ready → the engine's
//!     `stage_done` callback. Targets: p50 < 20 ms, p99 < 100 ms (a 2 s poller averages ~1 s).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/support/real/mod.rs"]
mod real;

use futures::StreamExt;
use kstrap::kube::{ApplyOptions, ApplyProgress, NoProgress, Outcome, apply_stack};
use kube::runtime::{WatchStreamExt, watcher};
use real::{Cleanup, RealCluster};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn stack_yaml(name: &str, ns: &str, stages: &[&str]) -> String {
    let mut s = format!("name: {name}\ndescription: bench\nnamespace: {ns}\nstages:\n");
    for st in stages {
        let short = st.split_once('-').map(|(_, n)| n).unwrap_or(st);
        s.push_str(&format!(
            "  - {{dir: {st}, name: {short}, timeout_s: 120, description: bench}}\n"
        ));
    }
    s
}

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: c\n          image: registry.k8s.io/pause:3.10\n"
    )
}

/// 300 objects: the Namespace and 99 ConfigMaps, 100 Services, 100 Deployments.
fn big_stack(dir: &Path, ns: &str) {
    let root = dir.join("big");
    write(
        &root,
        "stack.yaml",
        &stack_yaml("big", ns, &["00-config", "10-services", "20-apps"]),
    );
    let mut config = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n");
    for i in 0..99 {
        config.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  key: value-{i}\n"
        ));
    }
    write(&root, "00-config/config.yaml", &config);
    let mut svcs = String::new();
    for i in 0..100 {
        svcs.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\nspec:\n  selector: {{app: app-{i}}}\n  ports:\n    - port: 80\n"
        ));
    }
    write(&root, "10-services/services.yaml", &svcs);
    let mut apps = String::new();
    for i in 0..100 {
        apps.push_str("---\n");
        apps.push_str(&deployment(&format!("app-{i}")));
    }
    write(&root, "20-apps/apps.yaml", &apps);
}

fn vm_hwm_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Records when each stage was reported done.
#[derive(Default)]
struct DoneAt(Mutex<Option<Instant>>);

impl ApplyProgress for DoneAt {
    fn stage_started(&self, _: &str, _: usize) {}
    fn stage_progress(&self, _: &str, _: usize, _: usize, _: Duration, _: &[(String, String)]) {}
    fn stage_done(&self, _: &str, _: Duration) {
        *self.0.lock().unwrap() = Some(Instant::now());
    }
    fn applied(&self, _: &str, _: Outcome) {}
    fn pruned(&self, _: &str) {}
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// When a watch first sees each Deployment of `ns` ready (ready replicas = wanted).
async fn watch_ready(client: kube::Client, ns: String, marks: Arc<Mutex<HashMap<String, Instant>>>) {
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(client, &ns);
    let mut stream = watcher(api, watcher::Config::default()).applied_objects().boxed();
    while let Some(Ok(d)) = stream.next().await {
        let want = d.spec.replicas.unwrap_or(1);
        let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready >= want {
            let name = d.metadata.name.clone().unwrap_or_default();
            marks.lock().unwrap().entry(name).or_insert_with(Instant::now);
        }
    }
}

fn main() {
    let Some(cluster) = RealCluster::get("benches/apply.rs") else {
        return;
    };
    let _shared = cluster.shared();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = rt.block_on(cluster.client());

    // (a) 300 objects.
    {
        let ns = real::unique("bench");
        let mut cleanup = Cleanup::new(cluster);
        cleanup.unique_namespace(&ns).applyset_parent("big");
        big_stack(dir.path(), &ns);
        let stack = kstrap::stack::load("big", Some(dir.path())).unwrap();
        let n: usize = stack.stages.iter().map(|s| s.objects.len()).sum();
        let started = Instant::now();
        let report = rt
            .block_on(apply_stack(
                client.clone(),
                &stack,
                Vec::new(),
                &ApplyOptions::default(),
                &NoProgress,
            ))
            .unwrap();
        let took = started.elapsed();
        let per_stage: Vec<String> = report
            .stages
            .iter()
            .map(|s| format!("{} {} ms", s.name, s.elapsed_ms))
            .collect();
        println!(
            "apply+wait {n} objects: {:.0} ms, {:.0} objects/s ({})",
            took.as_secs_f64() * 1000.0,
            n as f64 / took.as_secs_f64(),
            per_stage.join(", ")
        );
        let started = Instant::now();
        rt.block_on(apply_stack(
            client.clone(),
            &stack,
            Vec::new(),
            &ApplyOptions::default(),
            &NoProgress,
        ))
        .unwrap();
        println!(
            "re-apply {n} unchanged objects: {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        match vm_hwm_kb() {
            Some(kb) => println!(
                "peak RSS (VmHWM, whole process incl. the node and controller stand-ins): {:.1} MB (target < 60 MB)",
                kb as f64 / 1024.0
            ),
            None => println!("peak RSS: /proc/self/status not readable"),
        }
    }

    // (b) reaction latency.
    {
        let trials: usize = std::env::var("KSTRAP_BENCH_TRIALS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        let ns = real::unique("bench-lat");
        let mut cleanup = Cleanup::new(cluster);
        cleanup.unique_namespace(&ns);
        // The namespace exists before the trials (a stack without its Namespace, like `up`'s
        // later stacks): each trial is one Deployment only.
        rt.block_on(real::apply_json(&client, &real::namespace_json(&ns), "kstrap-bench"))
            .unwrap();
        let marks: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let watch = rt.spawn(watch_ready(client.clone(), ns.clone(), marks.clone()));
        let mut latencies = Vec::with_capacity(trials);
        for i in 0..trials {
            let name = format!("lat{i}");
            cleanup.applyset_parent(&name);
            let root = dir.path().join(&name);
            write(&root, "stack.yaml", &stack_yaml(&name, &ns, &["00-app"]));
            write(&root, "00-app/app.yaml", &deployment("d"));
            let stack = kstrap::stack::load(&name, Some(dir.path())).unwrap();
            // Each trial its own Deployment name, so the previous trial's object is not involved.
            let mut stack = stack;
            let obj = &mut stack.stages[0].objects[0];
            obj.value["metadata"]["name"] = serde_json::Value::String(format!("d{i}"));
            obj.reference.name = format!("d{i}");
            let done = DoneAt::default();
            rt.block_on(apply_stack(
                client.clone(),
                &stack,
                Vec::new(),
                &ApplyOptions::default(),
                &done,
            ))
            .unwrap();
            let done_at = done.0.lock().unwrap().expect("stage_done reported");
            // The bench's own watch may see the ready status a moment after the engine did.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mark = loop {
                if let Some(at) = marks.lock().unwrap().get(&format!("d{i}")) {
                    break *at;
                }
                assert!(Instant::now() < deadline, "the bench's watch never saw d{i} ready");
                std::thread::sleep(Duration::from_millis(1));
            };
            latencies.push(done_at.saturating_duration_since(mark));
        }
        watch.abort();
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "reaction latency over {trials} trials: min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (targets p50 < 20 ms, p99 < 100 ms)",
            ms(latencies[0]),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(*latencies.last().unwrap())
        );
    }
}
