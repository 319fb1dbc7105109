//! The built-in stacks (manifests/) on the simulated API server (a test double; see
//! tests/support/sim): every stack × every profile is applied by the real binary, becomes ready
//! stage by stage in the stack's order, and converges on a re-run. And the secrets a user injects
//! never show up in any output mode: human, JSON, plan, errors, -vv.

use crate::sim::{Fault, SimConfig, SimulatedApiServer};
use assert_cmd::Command;
use serde_json::Value;
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

/// A simulated cluster that can run the profile: GPU shares on the node for the GPU profile
/// (what the GPU operator leaves behind), the labels GPU workloads select.
fn sim_for(profile: &str) -> SimulatedApiServer {
    let mut config = SimConfig::default();
    if profile == "rtx-5090" {
        config
            .node_allocatable
            .insert("nvidia.com/gpu".to_string(), "4".to_string());
        for (k, v) in [
            ("nvidia.com/gpu.present", "true"),
            ("nvidia.com/gpu.count", "1"),
            ("nvidia.com/gpu.replicas", "4"),
        ] {
            config.node_labels.insert(k.to_string(), v.to_string());
        }
    }
    SimulatedApiServer::start(config)
}

struct Run {
    dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

impl Run {
    fn new(sim: &SimulatedApiServer) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig);
        Run { dir, kubeconfig }
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
fn write_positions(sim: &SimulatedApiServer, stack: &kstrap::stack::Stack) -> Vec<(String, Vec<usize>)> {
    let requests = sim.requests();
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

#[test]
fn every_built_in_stack_becomes_ready_on_every_profile_stage_by_stage_and_converges() {
    let profiles = ["laptop-8gb", "cpu-fallback", "rtx-5090"];
    let mut ready = BTreeMap::new();
    for name in kstrap::stack::embedded_names() {
        let base = kstrap::stack::load(&name, None).unwrap();
        for profile in profiles {
            let sized = base.sized(profile);
            let sim = sim_for(profile);
            let run = Run::new(&sim);
            let mut args: Vec<String> = ["apply", "--stack", &name, "--profile", profile, "-o", "json"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            args.extend(image_flags(&base));
            let env = [
                ("OPENROUTER_API_KEY", "sk-or-e2e-openrouter"),
                ("HUGGINGFACE_API_KEY", "hf_e2e_huggingface"),
            ];
            let out = run.kstrap(&args, &env);
            assert_eq!(out.status.code(), Some(0), "{name} on {profile}:\n{}", text(&out));
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();

            // The report's stages are the stack's, in order...
            let reported: Vec<&str> = report["report"]["stages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap())
                .collect();
            let declared: Vec<&str> = sized.stages.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(reported, declared, "{name} on {profile}");
            // ...and no object of a stage was written before every object of the stage before.
            let positions = write_positions(&sim, &sized);
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
            // Every workload the sim ran is ready.
            let workloads = sized
                .stages
                .iter()
                .flat_map(|s| &s.objects)
                .filter(|o| matches!(o.reference.kind.as_str(), "Deployment" | "StatefulSet" | "Job"))
                .count();
            assert!(workloads > 0, "{name} has no workloads");
            ready.insert(format!("{name}/{profile}"), workloads);

            // A re-run converges: nothing written.
            let before = sim.mutations();
            let out = run.kstrap(&args, &env);
            assert_eq!(out.status.code(), Some(0), "{name} on {profile} again:\n{}", text(&out));
            assert_eq!(
                sim.mutations(),
                before,
                "{name} on {profile}: a re-run wrote to the API server"
            );
        }
    }
    assert_eq!(
        ready.len(),
        kstrap::stack::embedded_names().len() * profiles.len(),
        "{ready:?}"
    );
}

/// Keys injected through the environment and a file: none of them may appear in any output,
/// whatever the mode, including a failed run and `-vv`.
#[test]
fn injected_secrets_appear_in_no_output_mode() {
    const FROM_ENV: &str = "sk-or-v1-INJECTED-env-6f1d0c";
    const FROM_FILE: &str = "hf_INJECTED_file_93ab27";
    let base = kstrap::stack::load("multimodal-ai", None).unwrap();
    let sim = SimulatedApiServer::start(SimConfig::default());
    let run = Run::new(&sim);
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
    // An error: on a fresh cluster the front end never pulls its image; the timeout's diagnosis,
    // at -vv, must not show the keys either.
    let stuck = SimulatedApiServer::start(SimConfig::default());
    stuck.inject(Fault::PodWaiting {
        owner_name: "frontend-deployment".into(),
        reason: "ImagePullBackOff".into(),
        message: "Back-off pulling image".into(),
    });
    let failing = Run::new(&stuck);
    let out = failing.kstrap(&with(&["-vv", "--timeout", "2"]), &env);
    assert_eq!(
        out.status.code(),
        Some(4),
        "the stuck front end times out:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("ImagePullBackOff"), "{}", text(&out));
    outputs.push(("apply timing out -vv", out));

    // The secrets did reach the cluster (so the test could have seen them leak).
    let stored = sim
        .get("v1", "Secret", Some("multimodal-ai"), "api-keys")
        .expect("api-keys");
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
    let base = kstrap::stack::load("multimodal-ai", None).unwrap();
    let sim = SimulatedApiServer::start(SimConfig::default());
    let run = Run::new(&sim);
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

    assert_eq!(sim.mutations(), 0, "a refused apply wrote to the cluster");
}
