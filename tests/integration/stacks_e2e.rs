//! The built-in stacks (manifests/) on the real API server (see tests/support/real; without one
//! these skip, saying why): every stack × every profile (GPU tiers included) is applied by the real binary, becomes
//! ready stage by stage in the stack's order (read from the fault proxy's request log, a test
//! double between kstrap and the API server), and converges on a re-run. And the secrets a user
//! injects never show up in any output mode: human, JSON, plan, errors, -vv.
//!
//! The built-in stacks have fixed namespaces: these tests hold the cluster alone
//! ([`RealCluster::exclusive`]) and remove the stacks they applied.

use crate::proxy::{FaultProxy, Recorded};
use crate::real::{Cleanup, ClusterGuard, RealCluster, apply_json};
use assert_cmd::Command;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The images the stacks need from their authors, as `--image` values (pinned, fake registry).
fn image_flags(stack: &kstrap::stack::Stack) -> Vec<String> {
    stack
        .images
        .iter()
        .flat_map(|i| {
            [
                "--image".to_string(),
                format!("{}=registry.example.com/e2e/{}:1.0.0", i.key, i.key.to_lowercase()),
            ]
        })
        .collect()
}

/// Every built-in stack's namespace, cluster-scoped objects (multimodal-ai's PersistentVolume:
/// with reclaim policy Retain it stays Released, bound to the deleted claim, when only the
/// namespace goes) and ApplySet parent, deleted now (a run that died early may have left them)
/// and when the returned cleanup drops.
fn built_in_cleanup(cluster: &RealCluster) -> Cleanup {
    let mut c = Cleanup::new(cluster);
    for name in kstrap::stack::embedded_names() {
        let s = kstrap::stack::load(&name, None).unwrap();
        c.namespace(&s.namespace).applyset_parent(&name);
        for o in s.stages.iter().flat_map(|st| &st.objects) {
            let r = &o.reference;
            if r.namespace.is_none() && r.kind != "Namespace" {
                c.cluster_object(&r.api_version, &r.kind, &plural(&r.kind), &r.name);
            }
        }
    }
    c
}

/// The cluster held alone, set up for `profile`: for the GPU profile, GPU shares and the labels
/// GPU workloads select on the node and the `nvidia` RuntimeClass (what the GPU operator leaves
/// behind). On drop: stacks removed, node back to its defaults.
struct Alone {
    cluster: &'static RealCluster,
    _cleanup: Cleanup,
    _guard: ClusterGuard<'static>,
}

impl Alone {
    fn new(cluster: &'static RealCluster, profile: &str) -> Alone {
        Alone::for_stacks(cluster, profile, 1)
    }

    /// For `stacks` stacks applied at once: the node offers `stacks` times the profile's
    /// minimum host (CPU, memory, GPU shares), as if each stack had its own; whether one stack
    /// fits a profile's host is the sizing tests' question, not this one's.
    fn for_stacks(cluster: &'static RealCluster, profile: &str, stacks: u32) -> Alone {
        let guard = cluster.exclusive();
        drop(built_in_cleanup(cluster));
        let mut alone = Alone {
            cluster,
            _cleanup: built_in_cleanup(cluster),
            _guard: guard,
        };
        alone.size_node(profile, stacks);
        alone
    }

    /// The node as [`Alone::for_stacks`] sets it up for `profile`, from its defaults; for several
    /// stacks the GPU shares are doubled, so that a change of profile can roll its GPU pods over
    /// while the old ones run (one stack gets exactly the profile's).
    fn size_node(&mut self, profile: &str, stacks: u32) {
        let cluster = self.cluster;
        cluster.node().reset();
        let profile = kstrap::profile::embedded()
            .unwrap()
            .into_iter()
            .find(|p| p.name == profile)
            .unwrap_or_else(|| panic!("no profile {profile}"));
        if stacks > 1 {
            // At least the stand-in's defaults (16 CPUs, 64 GiB).
            let cpus = (profile.requires.cpus * stacks).max(16);
            let memory = (profile.requires.memory_gib.ceil() as u32 * stacks).max(64);
            cluster.node().set(|c| {
                c.cpu = cpus.to_string();
                c.memory = format!("{memory}Gi");
            });
        }
        if profile.uses_gpu() {
            // The profile's least GPUs, each advertised as its shares (a whole-GPU profile:
            // one nvidia.com/gpu per GPU).
            let count = profile.requires.gpu.as_ref().map_or(1, |g| g.count);
            let replicas = profile.gpu.replicas.to_string();
            let rolling = if stacks > 1 { 2 } else { 1 };
            let shares = (profile.gpu.replicas * count * stacks * rolling).to_string();
            let count = count.to_string();
            cluster.node().set(|c| {
                c.extended.insert("nvidia.com/gpu".into(), shares.clone());
                for (k, v) in [
                    ("nvidia.com/gpu.present", "true"),
                    ("nvidia.com/gpu.count", count.as_str()),
                    ("nvidia.com/gpu.replicas", replicas.as_str()),
                ] {
                    c.labels.insert(k.into(), v.into());
                }
                c.runtime_handlers = vec!["runc".into(), "nvidia".into()];
            });
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let rc = json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                    "metadata": {"name": "nvidia"}, "handler": "nvidia"});
                apply_json(&cluster.client().await, &rc, "kstrap-test").await.unwrap();
            });
            self._cleanup
                .cluster_object("node.k8s.io/v1", "RuntimeClass", "runtimeclasses", "nvidia");
        }
    }
}

impl Drop for Alone {
    fn drop(&mut self) {
        self.cluster.node().reset();
    }
}

struct Run {
    dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

impl Run {
    fn new(kubeconfig: &std::path::Path) -> Run {
        let dir = tempfile::tempdir().unwrap();
        Run {
            dir,
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    fn kstrap(&self, args: &[String], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::cargo_bin("kstrap").unwrap();
        cmd.args(args);
        if args.first().is_some_and(|a| a == "apply") {
            cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        }
        cmd.env_remove("KUBECONFIG").env("HOME", self.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `deployments` for Deployment: the resource segment of an object's API path.
fn plural(kind: &str) -> String {
    let k = kind.to_lowercase();
    if let Some(stem) = k.strip_suffix('y') {
        format!("{stem}ies")
    } else if k.ends_with('s') {
        format!("{k}es")
    } else {
        format!("{k}s")
    }
}

/// Where in the request log each stage's objects were first written (server-side apply PATCHes).
fn write_positions(requests: &[Recorded], stack: &kstrap::stack::Stack) -> Vec<(String, Vec<usize>)> {
    stack
        .stages
        .iter()
        .map(|stage| {
            let positions = stage
                .objects
                .iter()
                .map(|o| {
                    let suffix = format!("/{}/{}", plural(&o.reference.kind), o.reference.name);
                    requests
                        .iter()
                        .position(|r| r.method == "PATCH" && r.path.ends_with(&suffix))
                        .unwrap_or_else(|| panic!("{} of stage {} was never applied", suffix, stage.name))
                })
                .collect();
            (stage.name.clone(), positions)
        })
        // A stage whose objects are all left out for the profile writes nothing.
        .filter(|(_, positions): &(String, Vec<usize>)| !positions.is_empty())
        .collect()
}

/// What a write to the stack's objects would change: the resourceVersion of objects no
/// controller writes, and the spec, labels and annotations of those a controller updates
/// (workloads, claims, Services given an address).
async fn written_state(client: &kube::Client, stack: &kstrap::stack::Stack) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for o in stack.stages.iter().flat_map(|s| &s.objects) {
        let r = &o.reference;
        let (group, version) = r.api_version.rsplit_once('/').unwrap_or(("", &r.api_version));
        let gvk = kube::core::GroupVersionKind::gvk(group, version, &r.kind);
        let Ok((ar, _)) = kube::discovery::pinned_kind(client, &gvk).await else {
            continue;
        };
        let api: kube::Api<kube::core::DynamicObject> = match &r.namespace {
            Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &ar),
            None => kube::Api::all_with(client.clone(), &ar),
        };
        let v = api
            .get_opt(&r.name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
            .unwrap_or(Value::Null);
        let state = match r.kind.as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "PersistentVolumeClaim" | "Service" => {
                json!([v["spec"], v["metadata"]["labels"], v["metadata"]["annotations"]])
            }
            _ => v["metadata"]["resourceVersion"].clone(),
        };
        out.insert(r.to_string(), state);
    }
    out
}

/// Every built-in stack (but those with databases, which need the CloudNativePG operator `up`
/// installs first: databases_e2e brings those up) on every profile, GPU tiers included, applied
/// by the real binary. On the three profiles the project started from, each a fresh install:
/// ready stage by stage in the stack's order (each stack through its own fault proxy, whose
/// request log shows the order), and a re-run writes nothing. Every other profile (the GPU tiers,
/// the whole-GPU profile) is then applied over the one before, as a re-run with another profile
/// does, and must become ready; the last one converges. The stacks of a profile are applied at
/// once (they have their own namespaces), on a node the size of one minimum host per stack.
#[test]
fn every_built_in_stack_becomes_ready_on_every_profile_stage_by_stage_and_converges() {
    let Some(cluster) =
        RealCluster::get("every_built_in_stack_becomes_ready_on_every_profile_stage_by_stage_and_converges")
    else {
        return;
    };
    const FRESH: [&str; 3] = ["laptop-8gb", "cpu-fallback", "rtx-5090"];
    let changed: Vec<String> = kstrap::profile::embedded()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .filter(|p| !FRESH.contains(&p.as_str()))
        .collect();
    assert!(changed.len() >= 6, "the GPU tiers: {changed:?}");
    let names: Vec<String> = kstrap::stack::embedded_names()
        .into_iter()
        .filter(|n| kstrap::stack::load(n, None).is_ok_and(|s| s.databases.is_empty()))
        .collect();
    assert!(names.len() >= 3, "{names:?}");
    let stacks = names.len() as u32;
    // Each stack on each profile at once, one thread per stack.
    let each = |profile: &str, check: fn(&'static RealCluster, &str, &str, bool) -> usize, converge: bool| {
        let started = std::time::Instant::now();
        let results: Vec<(String, usize)> = std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .iter()
                .map(|name| scope.spawn(move || (name.clone(), check(cluster, name, profile, converge))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        eprintln!("{stacks} stacks on {profile}: ready in {:?}", started.elapsed());
        results
    };
    let mut ready = BTreeMap::new();
    for profile in FRESH {
        let _alone = Alone::for_stacks(cluster, profile, stacks);
        for (name, workloads) in each(profile, stack_on_profile, true) {
            ready.insert(format!("{name}/{profile}"), workloads);
        }
    }
    let mut alone = Alone::for_stacks(cluster, &changed[0], stacks);
    for (i, profile) in changed.iter().enumerate() {
        if i > 0 {
            alone.size_node(profile, stacks);
        }
        let converge = i + 1 == changed.len();
        let check = if i == 0 { stack_on_profile } else { stack_changed_to };
        for (name, workloads) in each(profile, check, converge) {
            ready.insert(format!("{name}/{profile}"), workloads);
        }
    }
    drop(alone);
    assert_eq!(ready.len(), names.len() * (FRESH.len() + changed.len()), "{ready:?}");
}

/// The `apply` arguments and environment for a built-in stack on a profile.
fn apply_args(
    name: &str,
    profile: &str,
    base: &kstrap::stack::Stack,
) -> (Vec<String>, [(&'static str, &'static str); 2]) {
    let mut args: Vec<String> = ["apply", "--stack", name, "--profile", profile, "-o", "json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(image_flags(base));
    let env = [
        ("OPENROUTER_API_KEY", "sk-or-e2e-openrouter"),
        ("HUGGINGFACE_API_KEY", "hf_e2e_huggingface"),
    ];
    (args, env)
}

/// The reported stages are the stack's for the profile, in order.
fn assert_stages(report: &Value, sized: &kstrap::stack::Stack, name: &str, profile: &str) {
    let reported: Vec<&str> = report["report"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let declared: Vec<&str> = sized.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(reported, declared, "{name} on {profile}");
}

/// A re-run converges: nothing changes in the cluster.
fn assert_converges(
    cluster: &'static RealCluster,
    run: &Run,
    args: &[String],
    env: &[(&str, &str)],
    sized: &kstrap::stack::Stack,
    what: &str,
) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(cluster.client());
    let before = rt.block_on(written_state(&client, sized));
    let out = run.kstrap(args, env);
    assert_eq!(out.status.code(), Some(0), "{what} again:\n{}", text(&out));
    let after = rt.block_on(written_state(&client, sized));
    let changed: Vec<&String> = before.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    assert!(changed.is_empty(), "{what}: a re-run wrote to {changed:?}");
}

/// One stack, installed on another profile, applied again for `profile` (the change of profile a
/// re-run makes): it becomes ready; with `converge`, a re-run then changes nothing.
fn stack_changed_to(cluster: &'static RealCluster, name: &str, profile: &str, converge: bool) -> usize {
    let base = kstrap::stack::load(name, None).unwrap();
    let sized = base.sized(profile);
    let run = Run::new(cluster.kubeconfig());
    let (args, env) = apply_args(name, profile, &base);
    let out = run.kstrap(&args, &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name} changed to {profile}:\n{}",
        text(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_stages(&report, &sized, name, profile);
    if converge {
        assert_converges(cluster, &run, &args, &env, &sized, &format!("{name} on {profile}"));
    }
    workload_count(&sized, name)
}

fn workload_count(sized: &kstrap::stack::Stack, name: &str) -> usize {
    let workloads = sized
        .stages
        .iter()
        .flat_map(|s| &s.objects)
        .filter(|o| matches!(o.reference.kind.as_str(), "Deployment" | "StatefulSet" | "Job"))
        .count();
    assert!(workloads > 0, "{name} has no workloads");
    workloads
}

/// One stack on one profile, freshly installed: applied in stage order until ready, then (with
/// `converge`) a re-run that changes nothing. Returns how many workloads it has.
fn stack_on_profile(cluster: &'static RealCluster, name: &str, profile: &str, converge: bool) -> usize {
    let base = kstrap::stack::load(name, None).unwrap();
    let sized = base.sized(profile);
    let proxy = FaultProxy::start(cluster.kubeconfig());
    let run = Run::new(proxy.kubeconfig());
    let (args, env) = apply_args(name, profile, &base);
    let out = run.kstrap(&args, &env);
    assert_eq!(out.status.code(), Some(0), "{name} on {profile}:\n{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    // The report's stages are the stack's, in order...
    assert_stages(&report, &sized, name, profile);
    // ...and no object of a stage was written before every object of the stage before.
    let positions = write_positions(&proxy.requests(), &sized);
    for pair in positions.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let last = before.1.iter().max().unwrap();
        let first = after.1.iter().min().unwrap();
        assert!(
            last < first,
            "{name} on {profile}: stage {} was written (request {first}) before stage {} was done (request {last})",
            after.0,
            before.0
        );
    }
    let workloads = workload_count(&sized, name);
    if converge {
        assert_converges(cluster, &run, &args, &env, &sized, &format!("{name} on {profile}"));
    }
    workloads
}

/// The voice AI stack on the whole-GPU profile, on a node stand-in offering exactly
/// `nvidia.com/gpu: 2` (two GPUs, no sharing): ready, with Ollama and Whisper each holding a
/// whole GPU and Kokoro on the CPU. Then `kstrap status` off the node (no NVML here) says per-GPU
/// use is not known, and why. (Every stack on every profile, this one included, is above.)
#[test]
fn voice_ai_on_whole_gpus_gives_ollama_and_whisper_a_gpu_each() {
    let Some(cluster) = RealCluster::get("voice_ai_on_whole_gpus_gives_ollama_and_whisper_a_gpu_each") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _alone = Alone::new(cluster, "multi-gpu");
    let run = Run::new(cluster.kubeconfig());
    let base = kstrap::stack::load("voice-ai", None).unwrap();
    let args: Vec<String> = ["apply", "--stack", "voice-ai", "--profile", "multi-gpu", "-o", "json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let started = std::time::Instant::now();
    let out = run.kstrap(&args, &[]);
    assert_eq!(out.status.code(), Some(0), "voice-ai on multi-gpu:\n{}", text(&out));
    eprintln!("voice-ai on multi-gpu: ready in {:?}", started.elapsed());
    // The whole GPUs its running pods hold.
    let mut holders: Vec<(String, i64)> = rt.block_on(async {
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(cluster.client().await, &base.namespace);
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| {
                let gpus: i64 = p
                    .spec?
                    .containers
                    .iter()
                    .filter_map(|c| {
                        c.resources
                            .as_ref()?
                            .limits
                            .as_ref()?
                            .get("nvidia.com/gpu")?
                            .0
                            .parse::<i64>()
                            .ok()
                    })
                    .sum();
                let app = p
                    .metadata
                    .name
                    .unwrap_or_default()
                    .split('-')
                    .next()
                    .unwrap_or("")
                    .to_string();
                (gpus > 0).then_some((app, gpus))
            })
            .collect()
    });
    holders.sort();
    assert_eq!(holders, [("ollama".to_string(), 1), ("whisper".to_string(), 1)]);

    let kubeconfig = cluster.kubeconfig().display().to_string();
    let out = run.kstrap(
        &["status", "--kubeconfig", &kubeconfig, "-o", "json"].map(String::from),
        &[("KSTRAP_NVML_LIB", "/nonexistent/libnvidia-ml.so.1")],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!(report["gpu_use"]["known"], false, "{}", report["gpu_use"]);
    let reason = report["gpu_use"]["reason"].as_str().unwrap();
    assert!(reason.contains("run `kstrap status` on the GPU node"), "{reason}");
    let node = &report["gpu"]["nodes"][0];
    assert_eq!(
        (node["allocatable"].as_u64(), node["held"].as_u64()),
        (Some(2), Some(2)),
        "{node}"
    );
}

/// Keys injected through the environment and a file: none of them may appear in any output,
/// whatever the mode, including a failed run and `-vv`.
#[test]
fn injected_secrets_appear_in_no_output_mode() {
    const FROM_ENV: &str = "sk-or-v1-INJECTED-env-6f1d0c";
    const FROM_FILE: &str = "hf_INJECTED_file_93ab27";
    let Some(cluster) = RealCluster::get("injected_secrets_appear_in_no_output_mode") else {
        return;
    };
    let _alone = Alone::new(cluster, "laptop-8gb");
    let base = kstrap::stack::load("multimodal-ai", None).unwrap();
    let run = Run::new(cluster.kubeconfig());
    let key_file = run.dir.path().join("hf.key");
    std::fs::write(&key_file, format!("{FROM_FILE}\n")).unwrap();
    let facts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/facts/laptop-8gb-nogpu.json");

    let mut apply: Vec<String> = ["apply", "--stack", "multimodal-ai", "--profile", "laptop-8gb"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    apply.extend(image_flags(&base));
    apply.extend([
        "--secret-file".to_string(),
        format!("HUGGINGFACE_API_KEY={}", key_file.display()),
    ]);
    let with = |extra: &[&str]| -> Vec<String> {
        let mut a = apply.clone();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let mut plan: Vec<String> = ["plan", "--stack", "multimodal-ai", "--profile", "laptop-8gb", "--facts"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    plan.push(facts.display().to_string());
    plan.extend(image_flags(&base));
    let env = [("OPENROUTER_API_KEY", FROM_ENV)];

    let mut outputs = Vec::new();
    for (what, args, code) in [
        ("apply (human)", with(&[]), 0),
        ("apply -o json", with(&["-o", "json"]), 0),
        ("apply -vv", with(&["-vv"]), 0),
        ("apply --dry-run -vv", with(&["--dry-run", "-vv"]), 0),
        ("plan -vv", plan.clone(), 0),
        (
            "plan -o json",
            [plan.clone(), vec!["-o".into(), "json".into()]].concat(),
            0,
        ),
    ] {
        let out = run.kstrap(&args, &env);
        assert_eq!(out.status.code(), Some(code), "{what}:\n{}", text(&out));
        outputs.push((what, out));
    }
    // An error: the front end's image cannot be pulled (the node stand-in cannot pull images
    // named pull-error); the timeout's diagnosis, at -vv, must not show the keys either.
    let stuck: Vec<String> = with(&["-vv", "--timeout", "5"])
        .into_iter()
        .map(|a| match a.split_once('=') {
            Some((key, _)) if key == "FRONTEND_IMAGE" => format!("{key}=registry.example.com/e2e/pull-error:1.0.0"),
            _ => a,
        })
        .collect();
    assert_ne!(
        stuck,
        with(&["-vv", "--timeout", "5"]),
        "the stack has a FRONTEND_IMAGE"
    );
    let out = run.kstrap(&stuck, &env);
    assert_eq!(
        out.status.code(),
        Some(4),
        "the stuck front end times out:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("ImagePullBackOff"), "{}", text(&out));
    outputs.push(("apply timing out -vv", out));

    // The secrets did reach the cluster (so the test could have seen them leak).
    let stored = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let api: kube::Api<kube::core::DynamicObject> = kube::Api::namespaced_with(
            cluster.client().await,
            "multimodal-ai",
            &kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
        );
        serde_json::to_value(api.get("api-keys").await.expect("api-keys")).unwrap()
    });
    // Their base64 forms (as the Secret holds them) must not leak either.
    let encoded: Vec<String> = ["huggingface-api-key", "openrouter-api-key"]
        .iter()
        .map(|k| {
            stored["data"][k]
                .as_str()
                .unwrap_or_else(|| panic!("{k} in {stored}"))
                .to_string()
        })
        .collect();

    for (what, out) in &outputs {
        let all = text(out);
        for secret in [FROM_ENV, FROM_FILE]
            .iter()
            .copied()
            .chain(encoded.iter().map(String::as_str))
        {
            assert!(!all.contains(secret), "{what} shows a secret value:\n{all}");
        }
    }
}

/// A value the stack needs from the user (an image, an API key) that is not given: exit 2, a
/// message naming it and how to give it, and nothing written to the cluster.
#[test]
fn missing_required_values_stop_before_anything_is_written() {
    let Some(cluster) = RealCluster::get("missing_required_values_stop_before_anything_is_written") else {
        return;
    };
    let _alone = Alone::new(cluster, "laptop-8gb");
    let base = kstrap::stack::load("multimodal-ai", None).unwrap();
    let proxy = FaultProxy::start(cluster.kubeconfig());
    let run = Run::new(proxy.kubeconfig());
    let mut all_images: Vec<String> = ["apply", "--stack", "multimodal-ai", "--profile", "laptop-8gb"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    all_images.extend(image_flags(&base));
    let keys = [("OPENROUTER_API_KEY", "sk-or-e2e"), ("HUGGINGFACE_API_KEY", "hf_e2e")];

    // No API key.
    let out = run.kstrap(&all_images, &keys[1..]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OPENROUTER_API_KEY"), "{err}");
    assert!(err.contains("--secret-file"), "the message says how to give it:\n{err}");

    // No image for the gateway.
    let without_gateway: Vec<String> = all_images
        .iter()
        .filter(|a| !a.starts_with("GATEWAY_IMAGE="))
        .cloned()
        .collect();
    assert_eq!(without_gateway.len(), all_images.len() - 1);
    let mut without_gateway = without_gateway;
    // Drop the now dangling `--image` flag that preceded it.
    if let Some(i) = all_images.iter().position(|a| a.starts_with("GATEWAY_IMAGE=")) {
        without_gateway.remove(i - 1);
    }
    let out = run.kstrap(&without_gateway, &keys);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GATEWAY_IMAGE"), "{err}");
    assert!(err.contains("--image"), "the message says how to give it:\n{err}");

    assert_eq!(
        proxy.mutating_requests(),
        Vec::<Recorded>::new(),
        "a refused apply wrote to the cluster"
    );
}
