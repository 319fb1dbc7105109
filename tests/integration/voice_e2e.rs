//! End-to-end tests of what the voice-ai stack needs from the engine, against the real API
//! server (see tests/support/real; without one these skip, saying why): a Job is one run of an
//! immutable pod template, so a Job whose template changed (another model) or that failed before
//! is replaced, an unchanged one is left alone, and a stage waits until its Job is Complete. Then
//! the real voice-ai stack through the `kstrap` binary on a k3s and a k0s node (the node
//! stand-in's kubelet version): the model-pull Job and its profile's model, the Ingress only
//! where Traefik is, and a re-run with another profile replacing the Job.

use crate::real::{Cleanup, ClusterGuard, RealCluster};
use assert_cmd::Command;
use kstrap::kube::{ApplyError, ApplyOptions, ApplyReport, NoProgress, Outcome, apply_stack};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A stack in a temp dir with a unique name and namespace: a namespace, a stage with the Job
/// `pull` (its MODEL in the pod template) and a stage after it with a ConfigMap.
struct JobStack {
    dir: tempfile::TempDir,
    name: String,
    kubeconfig: std::path::PathBuf,
    _cleanup: Cleanup,
    _guard: ClusterGuard<'static>,
}

impl JobStack {
    fn new(cluster: &'static RealCluster, model: &str, image: &str) -> JobStack {
        let guard = cluster.shared();
        let name = format!(
            "jobs{}-{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let mut cleanup = Cleanup::new(cluster);
        cleanup.unique_namespace(&name).applyset_parent(&name);
        let t = JobStack {
            dir: tempfile::tempdir().unwrap(),
            name: name.clone(),
            kubeconfig: cluster.kubeconfig().to_path_buf(),
            _cleanup: cleanup,
            _guard: guard,
        };
        t.write("stack.yaml", &format!(
            "name: {name}\ndescription: a Job between two stages\nnamespace: {name}\nstages:\n  - {{dir: 00-base, name: base, timeout_s: 30, description: namespace}}\n  - {{dir: 10-job, name: job, timeout_s: 30, description: the job}}\n  - {{dir: 20-after, name: after, timeout_s: 30, description: after the job}}\n"
        ));
        t.write(
            "00-base/ns.yaml",
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
        );
        t.write(
            "20-after/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after\ndata:\n  k: v\n",
        );
        t.set_job(model, image);
        t
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(&self.name).join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// The Job's model and image (the node stand-in: `exit-1` fails, `slow-start` takes 3 s).
    fn set_job(&self, model: &str, image: &str) {
        self.write(
            "10-job/job.yaml",
            &format!(
                "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pull\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: pull\n          image: {image}\n          args: [pull, \"$(MODEL)\"]\n          env:\n            - {{name: MODEL, value: \"{model}\"}}\n"
            ),
        );
    }

    async fn client(&self) -> kube::Client {
        kstrap::kube::client_from(Some(&self.kubeconfig), None).await.unwrap()
    }

    async fn apply(&self, timeout: Duration) -> Result<ApplyReport, ApplyError> {
        let stack = kstrap::stack::load(&self.name, Some(self.dir.path())).unwrap();
        let opts = ApplyOptions {
            stage_timeout: Some(timeout),
            ..ApplyOptions::default()
        };
        apply_stack(self.client().await, &stack, Vec::new(), &opts, &NoProgress).await
    }

    async fn get(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        read(&self.client().await, api_version, kind, Some(&self.name), name).await
    }

    async fn job(&self) -> Value {
        self.get("batch/v1", "Job", "pull").await.expect("the Job exists")
    }
}

/// One object from the real API, as JSON (None when it does not exist).
async fn read(client: &kube::Client, api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
    let api: kube::Api<kube::core::DynamicObject> = match ns {
        Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &ar),
        None => kube::Api::all_with(client.clone(), &ar),
    };
    api.get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
}

const OLLAMA: &str = "ollama/ollama:0.12.10";

fn uid(v: &Value) -> String {
    v["metadata"]["uid"].as_str().unwrap().to_string()
}

fn model_of(job: &Value) -> &str {
    job["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]
        .as_str()
        .unwrap()
}

fn condition(job: &Value, kind: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

fn outcome_of(r: &ApplyReport, object: &str) -> Outcome {
    r.stages
        .iter()
        .flat_map(|s| &s.objects)
        .find(|o| o.object.starts_with(object))
        .unwrap_or_else(|| panic!("{object} not in the report"))
        .outcome
}

/// The real API server refuses a changed Job template; the engine recognises that answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_a_changed_job_template() {
    let Some(cluster) = RealCluster::get("the_api_server_refuses_a_changed_job_template") else {
        return;
    };
    let t = JobStack::new(cluster, "small", OLLAMA);
    t.apply(Duration::from_secs(60)).await.unwrap();

    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> = kube::Api::namespaced(t.client().await, &t.name);
    let mut body = t.job().await;
    body["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = json!("large");
    for key in ["status", "metadata"] {
        body.as_object_mut().unwrap().remove(key);
    }
    body["metadata"] = json!({"name": "pull", "namespace": t.name});
    let err = jobs
        .patch(
            "pull",
            &kube::api::PatchParams::apply("kstrap"),
            &kube::api::Patch::Apply(&body),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = &err else {
        panic!("{err:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"), "{status:?}");
    assert!(
        status
            .message
            .starts_with("Job.batch \"pull\" is invalid: spec.template: Invalid value: ")
            && status.message.ends_with(": field is immutable"),
        "{}",
        status.message
    );
    assert!(kstrap::kube::ops::template_immutable(&err));
    assert_eq!(model_of(&t.job().await), "small", "nothing was changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_job_is_replaced_and_an_unchanged_one_left_alone() {
    let Some(cluster) = RealCluster::get("a_changed_job_is_replaced_and_an_unchanged_one_left_alone") else {
        return;
    };
    let t = JobStack::new(cluster, "small", OLLAMA);
    let first = t.apply(Duration::from_secs(60)).await.unwrap();
    assert_eq!(outcome_of(&first, "Job/pull"), Outcome::Created);
    let created = t.job().await;
    assert!(condition(&created, "Complete"), "{created}");

    // Unchanged: the same Job (same uid), reported unchanged.
    let again = t.apply(Duration::from_secs(60)).await.unwrap();
    assert_eq!(outcome_of(&again, "Job/pull"), Outcome::Unchanged);
    assert_eq!(uid(&t.job().await), uid(&created), "an unchanged Job is not re-created");

    // Another model: the old Job is deleted and a new one runs to completion.
    t.set_job("large", OLLAMA);
    let changed = t.apply(Duration::from_secs(60)).await.unwrap();
    assert_eq!(outcome_of(&changed, "Job/pull"), Outcome::Configured);
    let replaced = t.job().await;
    assert_ne!(uid(&replaced), uid(&created), "a new Job");
    assert_eq!(model_of(&replaced), "large");
    assert!(condition(&replaced, "Complete"), "the stage waited for the new Job");
    // The old Job's pods go with it (background propagation: the real garbage collector).
    let old_uid = uid(&created);
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(t.client().await, &t.name);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let orphans: Vec<String> = pods
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| serde_json::to_string(p).unwrap().contains(&old_uid))
            .filter_map(|p| p.metadata.name)
            .collect();
        if orphans.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the old Job's pods stayed: {orphans:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Job that failed is run again by the next apply of the same manifest (a new Job), and the
/// stage after it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_failed_runs_again_on_the_next_apply() {
    let Some(cluster) = RealCluster::get("a_job_that_failed_runs_again_on_the_next_apply") else {
        return;
    };
    let t = JobStack::new(cluster, "small", "example.com/exit-1:1");
    let err = t.apply(Duration::from_secs(60)).await.unwrap_err();
    assert!(
        matches!(&err, ApplyError::Failed { stage, .. } if stage == "job"),
        "{err}"
    );
    let failed = t.job().await;
    assert!(condition(&failed, "Failed"), "{failed}");
    assert!(t.get("v1", "ConfigMap", "after").await.is_none(), "stopped at the Job");

    // The same manifest again: the failed Job is replaced by a new one (which fails the same way).
    let err = t.apply(Duration::from_secs(60)).await.unwrap_err();
    assert!(matches!(&err, ApplyError::Failed { .. }), "{err}");
    let rerun = t.job().await;
    assert_ne!(uid(&rerun), uid(&failed), "a new Job ran");

    // Fixed: the Job runs again and completes; the next stage follows.
    t.set_job("small", OLLAMA);
    let report = t.apply(Duration::from_secs(60)).await.unwrap();
    assert_eq!(outcome_of(&report, "Job/pull"), Outcome::Configured);
    let fixed = t.job().await;
    assert_ne!(uid(&fixed), uid(&rerun));
    assert!(condition(&fixed, "Complete"), "{fixed}");
    assert!(t.get("v1", "ConfigMap", "after").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_waits_until_its_job_is_complete() {
    let Some(cluster) = RealCluster::get("a_stage_waits_until_its_job_is_complete") else {
        return;
    };
    // The node stand-in runs a `slow-start` container for 3 s.
    let t = JobStack::new(cluster, "small", "example.com/slow-start:1");
    let err = t.apply(Duration::from_secs(1)).await.unwrap_err();
    match &err {
        ApplyError::Timeout { stage, .. } => assert_eq!(stage, "job"),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("Job/pull"), "{err}");
    assert!(
        t.get("v1", "ConfigMap", "after").await.is_none(),
        "the next stage did not start"
    );

    t.apply(Duration::from_secs(60)).await.unwrap();
    assert!(condition(&t.job().await, "Complete"));
    assert!(t.get("v1", "ConfigMap", "after").await.is_some());
}

// ---- the voice-ai stack through the binary ---------------------------------------------------

/// The built-in voice-ai stack has a fixed namespace (`voice-ai`) and these tests set the node's
/// distribution: they hold the cluster alone, and remove the stack when they end.
fn voice_cluster(test: &str) -> Option<(&'static RealCluster, Alone)> {
    let cluster = RealCluster::get(test)?;
    let guard = cluster.exclusive();
    // A run that died before its cleanup left the stack behind: start from nothing.
    {
        let mut earlier = Cleanup::new(cluster);
        earlier.namespace("voice-ai").applyset_parent("voice-ai");
    }
    let mut cleanup = Cleanup::new(cluster);
    cleanup.namespace("voice-ai").applyset_parent("voice-ai");
    Some((
        cluster,
        Alone {
            cluster,
            _cleanup: cleanup,
            _guard: guard,
        },
    ))
}

/// The cluster held alone; when it drops, the stack is removed and the node is back to its
/// defaults before other tests run.
struct Alone {
    cluster: &'static RealCluster,
    _cleanup: Cleanup,
    _guard: ClusterGuard<'static>,
}

impl Drop for Alone {
    fn drop(&mut self) {
        self.cluster.node().reset();
    }
}

/// `kstrap apply` of the built-in voice-ai stack for `profile`, `-v`.
fn kstrap_apply(kubeconfig: &Path, profile: &str, extra: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::cargo_bin("kstrap").unwrap();
    cmd.args([
        "apply",
        "-v",
        "--stack",
        "voice-ai",
        "--profile",
        profile,
        "--timeout",
        "90",
    ])
    .arg("--kubeconfig")
    .arg(kubeconfig)
    .args(extra);
    for var in [
        "KUBECONFIG",
        kstrap::env::DISTRO,
        kstrap::env::PROFILE,
        kstrap::env::STACK,
        kstrap::env::STACK_DIR,
        "LIVEKIT_KEYS",
        "WEBUI_SECRET_KEY",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One voice-ai object from the real API.
fn voice(cluster: &RealCluster, api_version: &str, kind: &str, name: &str) -> Option<Value> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { read(&cluster.client().await, api_version, kind, Some("voice-ai"), name).await })
}

/// The value stack.yaml gives container `container` of `object` in `profile`'s overlay.
fn overlay_env(profile: &str, object: &str, container: &str, var: &str) -> String {
    let s = kstrap::stack::load("voice-ai", None).unwrap();
    s.profiles[profile][object].overlay.containers[container].env[var].clone()
}

fn env_value(object: &Value, var: &str) -> String {
    object["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == var)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no {var}"))
        .to_string()
}

#[test]
fn voice_ai_on_k3s_pulls_the_profiles_model_serves_the_ingress_and_replaces_the_job() {
    let test = "voice_ai_on_k3s_pulls_the_profiles_model_serves_the_ingress_and_replaces_the_job";
    let Some((cluster, _alone)) = voice_cluster(test) else {
        return;
    };
    // The node stand-in's default kubelet: v1.35.3+k3s1.
    let kubeconfig = cluster.kubeconfig();
    let (code, stdout, stderr) = kstrap_apply(kubeconfig, "cpu-fallback", &[]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("the cluster runs k3s"), "{stderr}");
    assert!(stdout.contains("stage models"), "{stdout}");

    let pull = voice(cluster, "batch/v1", "Job", "ollama-model-pull").unwrap();
    assert!(condition(&pull, "Complete"));
    let model = overlay_env("cpu-fallback", "Job/ollama-model-pull", "pull", "MODEL");
    assert_eq!(env_value(&pull, "MODEL"), model);
    let webui = voice(cluster, "apps/v1", "Deployment", "open-webui").unwrap();
    assert_eq!(env_value(&webui, "DEFAULT_MODELS"), model);
    let ingress = voice(cluster, "networking.k8s.io/v1", "Ingress", "open-webui").expect("k3s gets the Ingress");
    assert_eq!(ingress["spec"]["ingressClassName"], "traefik");

    // Another profile on the same cluster: another model, so the Job is replaced.
    let (code, stdout, stderr) = kstrap_apply(kubeconfig, "laptop-8gb", &[]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("configured") && stdout.contains("Job/ollama-model-pull"),
        "{stdout}"
    );
    // The laptop sizes the model volume smaller: the bound claim keeps its size (the API server
    // refuses to shrink it), and kstrap says so.
    assert!(
        stderr.contains("note: PersistentVolumeClaim/ollama-models -n voice-ai kept at 20Gi: the stack asks for 5Gi, and a claim never shrinks"),
        "{stderr}"
    );
    let claim = voice(cluster, "v1", "PersistentVolumeClaim", "ollama-models").unwrap();
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "20Gi");
    let replaced = voice(cluster, "batch/v1", "Job", "ollama-model-pull").unwrap();
    let small = overlay_env("laptop-8gb", "Job/ollama-model-pull", "pull", "MODEL");
    assert_ne!(small, model);
    assert_eq!(env_value(&replaced, "MODEL"), small);
    assert_ne!(uid(&replaced), uid(&pull));
    assert!(condition(&replaced, "Complete"));
    assert!(
        voice(cluster, "networking.k8s.io/v1", "Ingress", "open-webui").is_some(),
        "still k3s"
    );
}

#[test]
fn voice_ai_on_k0s_has_no_ingress_and_distro_flag_wins_over_the_cluster() {
    let test = "voice_ai_on_k0s_has_no_ingress_and_distro_flag_wins_over_the_cluster";
    let Some((cluster, _alone)) = voice_cluster(test) else {
        return;
    };
    cluster.node().set(|c| c.kubelet_version = "v1.35.3+k0s".into());
    let kubeconfig = cluster.kubeconfig();
    let (code, stdout, stderr) = kstrap_apply(kubeconfig, "laptop-8gb", &[]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("the cluster runs k0s"), "{stderr}");
    assert!(voice(cluster, "networking.k8s.io/v1", "Ingress", "open-webui").is_none());
    let nodeport = voice(cluster, "v1", "Service", "open-webui").unwrap();
    assert_eq!(nodeport["spec"]["ports"][0]["nodePort"], 30080);
    let pull = voice(cluster, "batch/v1", "Job", "ollama-model-pull").unwrap();
    assert!(condition(&pull, "Complete"));
    assert_eq!(
        env_value(&pull, "MODEL"),
        overlay_env("laptop-8gb", "Job/ollama-model-pull", "pull", "MODEL")
    );

    // --distro names the distribution without asking the cluster.
    let (code, stdout, stderr) = kstrap_apply(kubeconfig, "laptop-8gb", &["--distro", "k3s"]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stderr.contains("the cluster runs"), "{stderr}");
    assert!(voice(cluster, "networking.k8s.io/v1", "Ingress", "open-webui").is_some());
}

#[test]
fn a_cluster_of_neither_distribution_gets_no_distribution_overlay() {
    let Some((cluster, _alone)) = voice_cluster("a_cluster_of_neither_distribution_gets_no_distribution_overlay")
    else {
        return;
    };
    cluster.node().set(|c| c.kubelet_version = "v1.35.3".into());
    let (code, stdout, stderr) = kstrap_apply(cluster.kubeconfig(), "laptop-8gb", &[]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("run neither k3s nor k0s") && stderr.contains(&format!("{}: v1.35.3", crate::real::NODE_NAME)),
        "{stderr}"
    );
    // As written: the Ingress stays (only k0s leaves it out).
    assert!(voice(cluster, "networking.k8s.io/v1", "Ingress", "open-webui").is_some());
}
