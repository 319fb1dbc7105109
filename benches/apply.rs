//! Benchmark of the stack engine against the simulated API server (a test double; see
//! tests/support/sim). Plain `main`, std::time; run with `cargo bench --bench apply`.
//!
//! (a) apply + wait of a generated 300-object stack (ConfigMaps, Services, Deployments over 3
//!     stages): wall time, objects/s, peak RSS (VmHWM) — target < 60 MB.
//! (b) reaction latency, 100 trials: a Deployment is held not-ready by the simulator, then
//!     released; latency = the simulator's ready mark → the engine's `stage_done` callback.
//!     Targets: p50 < 20 ms, p99 < 100 ms (a 2 s poller averages ~1 s).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/support/sim/mod.rs"]
mod sim;

use kstrap::kube::{ApplyOptions, ApplyProgress, NoProgress, Outcome, apply_stack};
use sim::{SimConfig, SimulatedApiServer};
use std::path::Path;
use std::sync::Mutex;
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
fn big_stack(dir: &Path) {
    let root = dir.join("big");
    write(
        &root,
        "stack.yaml",
        &stack_yaml("big", "bench", &["00-config", "10-services", "20-apps"]),
    );
    let mut config = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n");
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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // (a) 300 objects.
    {
        let sim = SimulatedApiServer::start(SimConfig::default());
        big_stack(dir.path());
        let stack = kstrap::stack::load("big", Some(dir.path())).unwrap();
        let n: usize = stack.stages.iter().map(|s| s.objects.len()).sum();
        let started = Instant::now();
        let report = rt
            .block_on(async {
                let client = sim.client().await;
                apply_stack(client, &stack, Vec::new(), &ApplyOptions::default(), &NoProgress).await
            })
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
        rt.block_on(async {
            let client = sim.client().await;
            apply_stack(client, &stack, Vec::new(), &ApplyOptions::default(), &NoProgress).await
        })
        .unwrap();
        println!(
            "re-apply {n} unchanged objects: {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        match vm_hwm_kb() {
            Some(kb) => println!(
                "peak RSS (VmHWM, whole process incl. the simulator): {:.1} MB (target < 60 MB)",
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
            .unwrap_or(100);
        let sim = SimulatedApiServer::start(SimConfig::default());
        // The namespace exists before the trials (a stack without its Namespace, like `up`'s
        // later stacks): each trial is one Deployment only.
        rt.block_on(async {
            let client = sim.client().await;
            let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
            let obj = serde_json::from_value(serde_json::json!({"metadata": {"name": "lat"}})).unwrap();
            ns.create(&Default::default(), &obj).await.unwrap();
        });
        let mut latencies = Vec::with_capacity(trials);
        for i in 0..trials {
            let name = format!("lat{i}");
            let root = dir.path().join(&name);
            write(&root, "stack.yaml", &stack_yaml(&name, "lat", &["00-app"]));
            write(&root, "00-app/app.yaml", &deployment("d"));
            let stack = kstrap::stack::load(&name, Some(dir.path())).unwrap();
            // Each trial its own Deployment name, so the previous trial's object is not involved.
            let mut stack = stack;
            let obj = &mut stack.stages[0].objects[0];
            obj.value["metadata"]["name"] = serde_json::Value::String(format!("d{i}"));
            obj.reference.name = format!("d{i}");
            sim.hold("apps/v1", "Deployment", Some("lat"), &format!("d{i}"));
            let done = DoneAt::default();
            let opts = ApplyOptions::default();
            let latency = rt.block_on(async {
                let client = sim.client().await;
                let apply = apply_stack(client, &stack, Vec::new(), &opts, &done);
                let release = async {
                    // Let the engine apply and start watching, then release the object.
                    while sim
                        .get("apps/v1", "Deployment", Some("lat"), &format!("d{i}"))
                        .is_none()
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    sim.release("apps/v1", "Deployment", Some("lat"), &format!("d{i}"));
                };
                let (r, ()) = tokio::join!(apply, release);
                r.unwrap();
                let done_at = done.0.lock().unwrap().expect("stage_done reported");
                let mark = sim
                    .ready_marks()
                    .into_iter()
                    .filter(|(k, _)| k.kind == "Deployment" && k.name == format!("d{i}"))
                    .map(|(_, at)| at)
                    // The first time it became ready is what the engine reacts to.
                    .min()
                    .expect("the simulator marked the Deployment ready");
                assert!(
                    done_at >= mark,
                    "the engine reported the stage ready before the simulator marked the object ready"
                );
                done_at - mark
            });
            latencies.push(latency);
        }
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
