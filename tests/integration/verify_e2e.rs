//! The verification Job on the real API server, with the node stand-in playing the checker (it
//! runs no container: it reports the termination message the real checker wrote against the
//! stand-in APIs, or the exit the image-name conventions choose). Checked: the Job the server
//! accepts and its pod's label, the outcome parsed as the stand-in reports it, each failure (a
//! failed link, a checker that died without a report, an image that cannot be pulled until the
//! deadline), that a new verification replaces the last one, `kstrap status`'s last verification
//! and `kstrap verify`'s exit codes and messages.

use crate::real::{Cleanup, RealCluster, apply_json, namespace_json, unique};
use crate::verify_checker::run_checker;
use crate::voice_apis::{Modes, VoiceApis, Whisper};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kstrap::verify::report::LinkStatus;
use kstrap::verify::{self, LABEL, NAME};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

/// A report as check.py writes it, for machines without Python (the checker itself is tested
/// in verify_checker.rs).
const GREEN: &str = r#"{"links":[{"name":"health","service":"kokoro","status":"ok","sent":"GET http://kokoro:8880/health","got":"HTTP 200","ms":3},{"name":"speech synthesis","service":"kokoro","status":"ok","sent":"POST http://kokoro:8880/v1/audio/speech","got":"HTTP 200, 96000 bytes of audio","ms":812},{"name":"transcription","service":"whisper","status":"ok","sent":"POST http://whisper:8000/v1/audio/transcriptions","got":"heard 'x' (word error rate 0.00)","ms":640},{"name":"answer","service":"ollama","status":"ok","got":"answered '12'","ms":300,"metrics":{"ttft_ms":300,"tokens_per_s":18.5}}]}"#;

fn report_of(modes: Modes) -> String {
    let apis = VoiceApis::start(modes);
    let s = kstrap::stack::load("voice-ai", None).unwrap().sized("laptop-8gb");
    let r = verify::resolve(&s).unwrap();
    let mut config: Value = serde_json::from_str(&r.env[0].1).unwrap();
    // The front end has no stand-in here: its health check is left out.
    config["http"]
        .as_array_mut()
        .unwrap()
        .retain(|h| h["service"] != "open-webui");
    for h in config["http"].as_array_mut().unwrap() {
        let service = h["service"].as_str().unwrap().to_string();
        let base = match service.as_str() {
            "kokoro" => &apis.kokoro,
            "whisper" => &apis.whisper,
            _ => &apis.ollama,
        };
        let path = h["url"]
            .as_str()
            .unwrap()
            .splitn(4, '/')
            .nth(3)
            .unwrap_or_default()
            .to_string();
        h["url"] = json!(format!("{base}/{path}"));
    }
    config["voice"]["tts"]["url"] = json!(apis.kokoro);
    config["voice"]["stt"]["url"] = json!(apis.whisper);
    config["voice"]["llm"]["url"] = json!(apis.ollama);
    run_checker(&config)
        .map(|(_, _, message)| message)
        .unwrap_or_else(|| GREEN.to_string())
}

#[test]
fn verification_job_on_the_real_server_reports_each_outcome() {
    let Some(cluster) = RealCluster::get("verification_job_on_the_real_server_reports_each_outcome") else {
        return;
    };
    let _guard = cluster.shared();
    let ns = unique("verify");
    let stack = ns.clone();
    let mut cleanup = Cleanup::new(cluster);
    cleanup.namespace(&ns);
    let node = cluster.node().handle();
    let prefix = format!("{NAME}-");
    let green = report_of(Modes {
        whisper: Whisper::Hears(verify::SENTENCE.to_lowercase()),
        ..Modes::default()
    });
    let broken = report_of(Modes {
        whisper: Whisper::NotInstalled,
        ..Modes::default()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = cluster.client().await;
        apply_json(&client, &namespace_json(&ns), "kstrap-test").await.unwrap();
        let s = kstrap::stack::load("voice-ai", None).unwrap().sized("laptop-8gb");
        let mut r = verify::resolve(&s).unwrap();
        r.timeout_s = 30;

        // Green: the pod Succeeds with the checker's report as its termination message.
        node.script_output(&ns, &prefix, 0, &green);
        let v = verify::run::run(&client, &stack, &ns, &r).await.unwrap();
        assert!(v.ok, "{v:#?}");
        assert_eq!(v.exit_code(), 0);
        assert!(v.at.is_some(), "the Job's completion time");
        let links = verify::report::parse(&green).unwrap();
        assert_eq!(v.links, links, "the links as the checker wrote them");
        // The Job as the server keeps it: one try, the deadline, the pod's own label.
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        let job = jobs.get(&v.job).await.unwrap();
        assert!(v.job.starts_with(&prefix));
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(30));
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod = &pods
            .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={}", v.job)))
            .await
            .unwrap()
            .items[0];
        assert_eq!(pod.metadata.labels.as_ref().unwrap()[LABEL], NAME);
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/speaches-ai/speaches:0.8.3-cpu"));
        assert_eq!(c.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"));
        let first_job = v.job.clone();

        // A failed link: exit 1, the link, the next command; the last Job was replaced.
        node.script_output(&ns, &prefix, 1, &broken);
        let v = verify::run::run(&client, &stack, &ns, &r).await.unwrap();
        assert_eq!(v.exit_code(), 1, "{v:#?}");
        let l = v.first_failed().unwrap();
        assert_eq!((l.service.as_str(), l.name.as_str()), ("whisper", "transcription"));
        assert!(l.got.contains("is not installed locally"), "{l:?}");
        assert_eq!(
            l.next.as_deref(),
            Some(format!("kubectl logs -n {ns} service/whisper --tail=50").as_str())
        );
        assert!(v.failure_line().unwrap().contains("failed at transcription (whisper)"));
        let names: Vec<String> = jobs
            .list(&ListParams::default().labels(&format!("{LABEL}={NAME}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .filter_map(|j| j.metadata.name)
            .collect();
        assert_eq!(names, vec![v.job.clone()], "the earlier Job {first_job} is gone");
        // `kstrap status` reads the newest.
        let last = verify::run::all_last(&client).await.unwrap();
        let mine = last.iter().find(|l| l.stack == stack).unwrap();
        assert_eq!(mine.job, v.job);
        assert!(!mine.ok);

        // A checker that dies without a report (the image-name convention `exit-3`).
        node.unscript(&ns, &prefix);
        let mut dies = r.clone();
        dies.image = "registry.example/checker-exit-3:1".into();
        let v = verify::run::run(&client, &stack, &ns, &dies).await.unwrap();
        assert_eq!(v.exit_code(), 1, "{v:#?}");
        let l = v.first_failed().unwrap();
        assert_eq!(l.service, NAME);
        assert!(l.got.contains("the Job failed (BackoffLimitExceeded"), "{l:?}");
        assert_eq!(l.detail.as_deref(), Some("its pod: exit code 3 with no report"));
        assert_eq!(
            l.next.as_deref(),
            Some(format!("kubectl logs -n {ns} job/{}", v.job).as_str())
        );

        // An image that cannot be pulled: the Job's deadline ends it; a timeout (exit 4) that
        // says what the pod was waiting for.
        let mut stuck = r.clone();
        stuck.image = "kstrap.invalid/checker:1".into();
        stuck.timeout_s = 3;
        let v = verify::run::run(&client, &stack, &ns, &stuck).await.unwrap();
        assert_eq!(v.exit_code(), 4, "{v:#?}");
        let l = v.first_failed().unwrap();
        assert!(l.got.contains("DeadlineExceeded"), "{l:?}");
        // The Job controller deleted the pod at the deadline: its pull failure is told by its
        // event.
        let detail = l.detail.as_deref().unwrap_or_default();
        assert!(
            detail.contains("Failed to pull image \"kstrap.invalid/checker:1\""),
            "{l:?}"
        );
        assert!(v.links.iter().all(|l| l.status != LinkStatus::Ok));
    });
}

fn write(root: &std::path::Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn kstrap_verify_exits_by_the_first_failed_link_and_status_shows_the_last() {
    let Some(cluster) = RealCluster::get("kstrap_verify_exits_by_the_first_failed_link_and_status_shows_the_last")
    else {
        return;
    };
    let _guard = cluster.shared();
    let name = unique("vcli");
    let mut cleanup = Cleanup::new(cluster);
    cleanup.namespace(&name);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(&name);
    write(
        &root,
        "stack.yaml",
        &format!(
            "name: {name}\ndescription: verify test\nnamespace: {name}\nstages:\n  - {{dir: 00-base, name: base, timeout_s: 30, description: all}}\nverify:\n  checker: sh\n  image: busybox:1.37.0\n  timeout_s: 30\n  http:\n    - {{service: web, port: 80, path: /health}}\n"
        ),
    );
    write(
        &root,
        "00-base/app.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{app: web}}\n  ports:\n    - {{port: 80, targetPort: 8080}}\n"
        ),
    );
    let bare = dir.path().join("bare");
    write(
        &bare,
        "stack.yaml",
        "name: bare\ndescription: no checks\nnamespace: bare\nstages:\n  - {dir: 00-base, name: base, timeout_s: 30, description: all}\n",
    );
    write(
        &bare,
        "00-base/ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bare\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = cluster.client().await;
        apply_json(&client, &namespace_json(&name), "kstrap-test")
            .await
            .unwrap();
    });
    let node = cluster.node().handle();
    let prefix = format!("{NAME}-");
    let kstrap = |stack: &str, extra: &[&str]| {
        let mut cmd = assert_cmd::Command::cargo_bin("kstrap").unwrap();
        cmd.args(["verify", "--stack", stack, "--profile", "cpu-fallback", "--kubeconfig"])
            .arg(cluster.kubeconfig())
            .arg("--stack-dir")
            .arg(dir.path())
            .args(extra)
            .env_remove("KUBECONFIG");
        cmd.output().unwrap()
    };
    // As check.sh reports (tested in verify_checker.rs).
    node.script_output(&name, &prefix, 0, r#"{"links":[{"name":"health","service":"web","status":"ok","sent":"GET http://web:80/health","got":"HTTP/1.1 200 OK","ms":12}]}"#);
    let out = kstrap(&name, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["verification"]["links"][0]["ms"], 12);

    node.script_output(&name, &prefix, 1, r#"{"links":[{"name":"health","service":"web","status":"failed","sent":"GET http://web:80/health","got":"wget: can't connect to remote host (10.43.0.12): Connection refused","ms":3}]}"#);
    let out = kstrap(&name, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        format!("Verification of {name}: FAILED"),
        "FAILED      web: health, 3 ms".to_string(),
        "sent: GET http://web:80/health".to_string(),
        "got:  wget: can't connect to remote host".to_string(),
        format!("next: kubectl logs -n {name} service/web --tail=50"),
    ] {
        assert!(text.contains(&want), "{want:?} missing:\n{text}");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed at health (web)"));

    // `kstrap status` shows it as the last verification (its exit depends on the whole cluster).
    let mut cmd = assert_cmd::Command::cargo_bin("kstrap").unwrap();
    let out = cmd
        .args(["status", "-o", "json", "--kubeconfig"])
        .arg(cluster.kubeconfig())
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mine = doc["verifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["stack"] == name.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["ok"], false);
    assert_eq!(mine["links"][0]["status"], "failed");
    assert_eq!(out.status.code(), Some(1), "a failed last verification is not ok");
    let mut cmd = assert_cmd::Command::cargo_bin("kstrap").unwrap();
    let out = cmd
        .args(["status", "--kubeconfig"])
        .arg(cluster.kubeconfig())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("Last verification of {name}: FAILED")));

    // A stack that declares no checks: bad usage, said.
    let out = kstrap("bare", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stack bare declares no checks"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.unscript(&name, &prefix);
}
