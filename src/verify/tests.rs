//! Tests of the verification's pure parts: the shipped stacks' checks resolved per profile (the
//! model read from the sized objects, GPU where the profile puts the service on one), the Job,
//! the NetworkPolicies evaluated to show the checker is admitted exactly where it checks, bad
//! `verify:` sections, and the report's parsing and rendering.

use super::report::{self, LinkStatus, Verification};
use super::*;
use crate::stack::{self, Stack};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const PROFILES: [&str; 3] = ["laptop-8gb", "cpu-fallback", "rtx-5090"];

fn sized(name: &str, profile: &str) -> Stack {
    stack::load(name, None).unwrap().sized(profile)
}

fn config(r: &Resolved) -> Value {
    let (_, v) = r.env.iter().find(|(k, _)| k == "KSTRAP_VERIFY_CONFIG").unwrap();
    serde_json::from_str(v).unwrap()
}

fn env_of(s: &Stack, kind: &str, name: &str, container: &str, var: &str) -> String {
    env_value(&s.stages, &format!("{kind}/{name}/{container}/{var}")).unwrap()
}

#[test]
fn voice_ai_checks_ask_what_the_front_end_asks_with_the_profiles_model() {
    for profile in PROFILES {
        let s = sized("voice-ai", profile);
        let r = resolve(&s).unwrap();
        assert_eq!(r.checker, Checker::Python);
        // The image Whisper runs for this profile: nothing new to pull.
        assert_eq!(
            r.image,
            container(&s.stages, "Deployment/whisper/whisper").unwrap()["image"]
        );
        let c = config(&r);
        let voice = &c["voice"];
        let model = env_of(&s, "Job", "ollama-model-pull", "pull", "MODEL");
        assert_eq!(voice["llm"]["model"], model.as_str(), "{profile}");
        assert_eq!(
            voice["stt"]["model"],
            env_of(&s, "Deployment", "open-webui", "open-webui", "AUDIO_STT_MODEL").as_str()
        );
        assert_eq!(
            voice["tts"]["voice"],
            env_of(&s, "Deployment", "open-webui", "open-webui", "AUDIO_TTS_VOICE").as_str()
        );
        assert_eq!(voice["tts"]["url"], "http://kokoro:8880");
        assert_eq!(voice["sentence"], SENTENCE);
        let gpu = profile == "rtx-5090";
        for k in ["tts", "stt", "llm"] {
            assert_eq!(voice[k]["gpu"], gpu, "{profile} {k}");
        }
        let small = tag_billions(&model).unwrap() < STRICT_FROM_BILLIONS;
        assert_eq!(voice["llm"]["strict"], !small, "{profile}: {model}");
        let urls: Vec<&str> = c["http"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["url"].as_str().unwrap())
            .collect();
        assert_eq!(
            urls,
            [
                "http://open-webui:8080/health",
                "http://ollama:11434/",
                "http://whisper:8000/health",
                "http://kokoro:8880/health"
            ]
        );
    }
    // The laptop's small model only warns when it answers wrongly.
    let c = config(&resolve(&sized("voice-ai", "laptop-8gb")).unwrap());
    assert_eq!(c["voice"]["llm"]["strict"], false);
}

#[test]
fn model_sizes_come_from_the_tag() {
    assert_eq!(tag_billions("llama3.2:1b"), Some(1.0));
    assert_eq!(tag_billions("llama3.1:8b"), Some(8.0));
    assert_eq!(tag_billions("qwen2.5:0.5b-instruct"), Some(0.5));
    assert_eq!(tag_billions("llama3.2"), None);
    assert_eq!(tag_billions("llama3.2:latest"), None);
}

#[test]
fn http_checks_of_services_a_profile_leaves_out_are_dropped() {
    let lines = |profile: &str| {
        let r = resolve(&sized("imagepod", profile)).unwrap();
        assert_eq!(r.checker, Checker::Sh);
        assert_eq!(r.image, "busybox:1.37.0");
        r.env.iter().find(|(k, _)| k == "KSTRAP_VERIFY_HTTP").unwrap().1.clone()
    };
    assert_eq!(lines("cpu-fallback"), "imagepod-api http://imagepod-api:8000/health");
    assert_eq!(
        lines("rtx-5090"),
        "imagepod-api http://imagepod-api:8000/health\nimagepod-gpu-worker http://imagepod-gpu-worker:8080/health"
    );
    let r = resolve(&sized("multimodal-ai", "laptop-8gb")).unwrap();
    assert_eq!(r.image, "busybox:1.37.0", "the busybox the data stage runs");
}

#[test]
fn the_job_runs_once_unprivileged_with_the_script_and_its_label() {
    let s = sized("voice-ai", "laptop-8gb");
    let r = resolve(&s).unwrap();
    let j = job::job("voice-ai", "voice-ai", &r);
    assert_eq!(j["metadata"]["generateName"], "kstrap-verify-");
    assert_eq!(j["metadata"]["namespace"], "voice-ai");
    assert_eq!(j["spec"]["backoffLimit"], 0);
    assert_eq!(j["spec"]["activeDeadlineSeconds"], 600);
    let pod = &j["spec"]["template"]["spec"];
    assert_eq!(j["spec"]["template"]["metadata"]["labels"][LABEL], NAME);
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["command"][0], "python");
    assert_eq!(c["command"][2], script(Checker::Python));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["env"][0]["name"], "KSTRAP_VERIFY_CONFIG");
    assert!(c["resources"]["limits"]["memory"].is_string());
    let sh = job::job(
        "imagepod",
        "imagepod",
        &resolve(&sized("imagepod", "cpu-fallback")).unwrap(),
    );
    assert_eq!(sh["spec"]["template"]["spec"]["containers"][0]["command"][0], "sh");
}

// ---- NetworkPolicy evaluation -------------------------------------------------------------

type Labels = BTreeMap<String, String>;

fn labels(v: &Value) -> Labels {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A LabelSelector (matchLabels and matchExpressions) against labels; `{}` selects everything.
fn selects(selector: &Value, l: &Labels) -> bool {
    let ml = labels(&selector["matchLabels"]);
    if !ml.iter().all(|(k, v)| l.get(k) == Some(v)) {
        return false;
    }
    selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e["operator"].as_str().unwrap_or_default() {
            "In" => l.get(key).is_some_and(|v| values.contains(&v.as_str())),
            "NotIn" => l.get(key).is_none_or(|v| !values.contains(&v.as_str())),
            "Exists" => l.contains_key(key),
            "DoesNotExist" => !l.contains_key(key),
            _ => false,
        }
    })
}

/// Whether a peer list (`from` / `to`) admits a pod of the same namespace with labels `l`.
/// Peers with a namespaceSelector or ipBlock name other namespaces or addresses: not this pod.
fn peers_admit(peers: Option<&Value>, l: &Labels) -> bool {
    match peers.and_then(Value::as_array) {
        None => true,
        Some(list) if list.is_empty() => true,
        Some(list) => list.iter().any(|p| {
            p.get("namespaceSelector").is_none()
                && p.get("ipBlock").is_none()
                && p.get("podSelector").is_some_and(|s| selects(s, l))
        }),
    }
}

fn ports_admit(ports: Option<&Value>, port: u64) -> bool {
    match ports.and_then(Value::as_array) {
        None => true,
        Some(list) if list.is_empty() => true,
        Some(list) => list.iter().any(|p| p["port"].as_u64() == Some(port)),
    }
}

/// The NetworkPolicy semantics (k8s.io/api networking/v1 NetworkPolicySpec): a pod selected by a
/// policy of a direction allows that direction's traffic only as one of those policies' rules
/// says; unselected, it allows everything.
fn allowed(policies: &[&Value], direction: &str, subject: &Labels, peer: &Labels, port: u64) -> bool {
    let (rules_key, peers_key) = if direction == "Ingress" {
        ("ingress", "from")
    } else {
        ("egress", "to")
    };
    let selecting: Vec<&&Value> = policies
        .iter()
        .filter(|p| {
            selects(&p["spec"]["podSelector"], subject)
                && p["spec"]["policyTypes"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == direction))
        })
        .collect();
    if selecting.is_empty() {
        return true;
    }
    selecting.iter().any(|p| {
        p["spec"][rules_key]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| peers_admit(rule.get(peers_key), peer) && ports_admit(rule.get("ports"), port))
    })
}

/// Each workload's pod labels and container ports (number by name too).
fn pods(s: &Stack) -> Vec<(String, Labels, BTreeMap<String, u64>)> {
    let mut out = Vec::new();
    for o in s.stages.iter().flat_map(|st| &st.objects) {
        let tmpl = match o.reference.kind.as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => &o.value["spec"]["template"],
            _ => continue,
        };
        let mut ports = BTreeMap::new();
        for c in tmpl["spec"]["containers"].as_array().into_iter().flatten() {
            for p in c["ports"].as_array().into_iter().flatten() {
                let n = p["containerPort"].as_u64().unwrap();
                ports.insert(n.to_string(), n);
                if let Some(name) = p["name"].as_str() {
                    ports.insert(name.to_string(), n);
                }
            }
        }
        out.push((o.reference.name.clone(), labels(&tmpl["metadata"]["labels"]), ports));
    }
    out
}

#[test]
fn the_checker_is_admitted_exactly_where_it_checks_and_only_where_the_front_end_is() {
    for name in ["voice-ai", "imagepod", "multimodal-ai"] {
        for profile in PROFILES {
            let s = sized(name, profile);
            let spec = s.verify.clone().unwrap();
            let policies: Vec<&Value> = s
                .stages
                .iter()
                .flat_map(|st| &st.objects)
                .filter(|o| o.reference.kind == "NetworkPolicy")
                .map(|o| &o.value)
                .collect();
            let verifier: Labels = [
                (LABEL.to_string(), NAME.to_string()),
                (job::STACK_LABEL.to_string(), name.to_string()),
            ]
            .into();
            let pods = pods(&s);
            // What the checks aim at: each checked Service's pods on its target port.
            let mut wanted: BTreeSet<(String, u64)> = BTreeSet::new();
            let mut checks: Vec<(String, u16)> = spec.http.iter().map(|h| (h.service.clone(), h.port)).collect();
            if let Some(v) = &spec.voice {
                checks.extend([&v.tts, &v.stt, &v.llm].map(|e| (e.service.clone(), e.port)));
            }
            for (service, port) in checks {
                let Some(svc) = s
                    .stages
                    .iter()
                    .flat_map(|st| &st.objects)
                    .find(|o| o.reference.kind == "Service" && o.reference.name == service)
                else {
                    continue;
                };
                let sel = labels(&svc.value["spec"]["selector"]);
                let sp = svc.value["spec"]["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["port"].as_u64() == Some(u64::from(port)))
                    .unwrap();
                for (pod, l, ports) in &pods {
                    if sel.iter().all(|(k, v)| l.get(k) == Some(v)) {
                        let target = match &sp["targetPort"] {
                            Value::Number(n) => n.as_u64().unwrap(),
                            Value::String(t) => {
                                *ports.get(t).unwrap_or_else(|| panic!("{name}: {pod} has no port {t}"))
                            }
                            _ => u64::from(port),
                        };
                        wanted.insert((pod.clone(), target));
                    }
                }
            }
            assert!(!wanted.is_empty(), "{name}/{profile}");
            // What the policies let the checker reach, over every pod and port of the stack.
            let mut reached = BTreeSet::new();
            for (pod, l, ports) in &pods {
                for &port in ports.values().collect::<BTreeSet<_>>() {
                    if allowed(&policies, "Egress", &verifier, l, port)
                        && allowed(&policies, "Ingress", l, &verifier, port)
                    {
                        reached.insert((pod.clone(), port));
                    }
                }
            }
            assert_eq!(
                reached, wanted,
                "{name}/{profile}: the checker reaches exactly what it checks"
            );
            // voice-ai: wherever the checker is admitted, the front end is too.
            if name == "voice-ai" {
                let front = pods.iter().find(|(p, _, _)| p == "open-webui").unwrap().1.clone();
                for (pod, port) in &reached {
                    let l = &pods.iter().find(|(p, _, _)| p == pod).unwrap().1;
                    assert!(
                        allowed(&policies, "Ingress", l, &front, *port),
                        "{pod}:{port} admits the checker but not the front end"
                    );
                }
            }
        }
    }
}

#[test]
fn the_evaluator_sees_a_missing_admission() {
    // The same evaluation fails when a backend's policy stops admitting the checker.
    let s = sized("voice-ai", "laptop-8gb");
    let mut kokoro = s
        .stages
        .iter()
        .flat_map(|st| &st.objects)
        .find(|o| o.reference.kind == "NetworkPolicy" && o.reference.name == "kokoro")
        .unwrap()
        .value
        .clone();
    let verifier: Labels = [(LABEL.to_string(), NAME.to_string())].into();
    let pod: Labels = [("app.kubernetes.io/name".to_string(), "kokoro".to_string())].into();
    assert!(allowed(&[&kokoro], "Ingress", &pod, &verifier, 8880));
    assert!(!allowed(&[&kokoro], "Ingress", &pod, &verifier, 8000));
    kokoro["spec"]["ingress"][0]["from"]
        .as_array_mut()
        .unwrap()
        .retain(|p| !p.to_string().contains(NAME));
    assert!(!allowed(&[&kokoro], "Ingress", &pod, &verifier, 8880));
}

// ---- stack.yaml errors ----------------------------------------------------------------------

fn load_with(verify: &str) -> Result<Stack, String> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    std::fs::create_dir_all(root.join("00-base")).unwrap();
    std::fs::write(
        root.join("stack.yaml"),
        format!("name: s\ndescription: t\nnamespace: demo\nstages:\n  - {{dir: 00-base, name: base, timeout_s: 60, description: all}}\n{verify}"),
    )
    .unwrap();
    std::fs::write(
        root.join("00-base/app.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n    - {port: 80, targetPort: 8080}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n        - name: web\n          image: busybox:1.37.0\n          resources: {limits: {cpu: 100m, memory: 64Mi}}\n",
    )
    .unwrap();
    stack::load("s", Some(dir.path())).map_err(|e| e.to_string())
}

#[test]
fn bad_verify_sections_name_the_line_and_what_to_do() {
    let ok = load_with("verify:\n  checker: sh\n  image_from: Deployment/web/web\n  timeout_s: 30\n  http:\n    - {service: web, port: 80, path: /health}\n").unwrap();
    assert_eq!(resolve(&ok).unwrap().image, "busybox:1.37.0");
    for (verify, want) in [
        (
            "verify:\n  checker: sh\n  image: busybox:1.37.0\n  timeout_s: 30\n  http:\n    - {service: nope, port: 80, path: /health}\n",
            "no Service \"nope\"",
        ),
        (
            "verify:\n  checker: sh\n  image: busybox:1.37.0\n  timeout_s: 30\n  http:\n    - {service: web, port: 8080, path: /health}\n",
            "has no port 8080",
        ),
        (
            "verify:\n  checker: sh\n  image: busybox\n  timeout_s: 30\n  http:\n    - {service: web, port: 80, path: /health}\n",
            "no tag",
        ),
        (
            "verify:\n  checker: sh\n  timeout_s: 30\n  http:\n    - {service: web, port: 80, path: /health}\n",
            "exactly one of image and image_from",
        ),
        (
            "verify:\n  checker: sh\n  image: busybox:1.37.0\n  timeout_s: 0\n  http:\n    - {service: web, port: 80, path: /health}\n",
            "timeout_s 0",
        ),
        (
            "verify:\n  checker: sh\n  image: busybox:1.37.0\n  timeout_s: 30\n",
            "no checks",
        ),
        (
            "verify:\n  checker: sh\n  image: busybox:1.37.0\n  timeout_s: 30\n  http:\n    - {service: web, port: 80, path: health}\n",
            "not an absolute path",
        ),
        (
            "verify:\n  checker: perl\n  image: busybox:1.37.0\n  timeout_s: 30\n",
            "perl",
        ),
        (
            "verify:\n  checker: sh\n  image: busybox:1.37.0\n  timeout_s: 30\n  tries: 3\n",
            "unknown field",
        ),
    ] {
        let err = load_with(verify).unwrap_err();
        assert!(err.contains(want), "{want:?} not in: {err}");
        assert!(
            (6..=10).any(|l| err.contains(&format!("s/stack.yaml:{l}:"))),
            "no line of verify: in {err}"
        );
        assert!(err.contains("fix: "), "{err}");
    }
}

// ---- the report ---------------------------------------------------------------------------------

#[test]
fn a_report_names_the_first_failed_link_with_what_went_and_came_and_what_to_run() {
    let line = r#"{"links":[{"name":"health","service":"kokoro","status":"ok","sent":"GET http://kokoro:8880/health","got":"HTTP 200","ms":4},
        {"name":"transcription","service":"whisper","status":"failed","sent":"POST http://whisper:8000/v1/audio/transcriptions","got":"HTTP 404: Model 'x' is not installed locally","detail":"pull it","ms":12},
        {"name":"answer","service":"ollama","status":"warning","got":"answered '13'","detail":"expected 12","ms":900,"metrics":{"ttft_ms":900,"tokens_per_s":14.5}},
        {"name":"on CUDA","service":"kokoro","status":"not_checked","detail":"the API does not say"}]}"#
        .replace('\n', "");
    let links = report::parse(&format!("some output\n{line}\n")).unwrap();
    let v = Verification::new(
        "voice-ai",
        "voice-ai",
        "kstrap-verify-abc",
        Some("2026-01-01T00:00:00Z".into()),
        links,
    );
    assert!(!v.ok);
    assert_eq!(v.exit_code(), 1);
    let failed = v.first_failed().unwrap();
    assert_eq!(failed.service, "whisper");
    assert_eq!(
        failed.next.as_deref(),
        Some("kubectl logs -n voice-ai service/whisper --tail=50")
    );
    assert!(v.failure_line().unwrap().contains("transcription (whisper): HTTP 404"));
    let text = report::render(&v);
    for want in [
        "Verification of voice-ai: FAILED (at 2026-01-01T00:00:00Z)",
        "ok          kokoro: health, 4 ms",
        "FAILED      whisper: transcription, 12 ms",
        "      sent: POST http://whisper:8000/v1/audio/transcriptions",
        "      got:  HTTP 404: Model 'x' is not installed locally",
        "      next: kubectl logs -n voice-ai service/whisper --tail=50",
        "warning     ollama: answer, first token 900 ms, 14.5 tokens/s - answered '13' (expected 12)",
        "not checked kokoro: on CUDA (the API does not say)",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    // A timeout as the first failure is exit 4; a report without links or JSON is an error.
    let t = r#"{"links":[{"name":"answer","service":"ollama","status":"failed","got":"no answer within 120s","timeout":true}]}"#;
    let v = Verification::new("s", "n", "j", None, report::parse(t).unwrap());
    assert_eq!(v.exit_code(), 4);
    assert!(report::parse("Traceback (most recent call last)").is_err());
    assert!(report::parse(r#"{"links":[]}"#).is_err());
    let ok = Verification::new(
        "s",
        "n",
        "j",
        None,
        report::parse(r#"{"links":[{"name":"health","service":"a","status":"ok"}]}"#).unwrap(),
    );
    assert!(ok.ok && ok.exit_code() == 0);
    assert_eq!(LinkStatus::NotChecked.word(), "not checked");
}
