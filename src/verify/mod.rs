//! Verification: proof that a stack works, not only that its objects are Ready. A stack declares
//! its checks in stack.yaml (`verify:`, parsed here as [`VerifySpec`]); kstrap runs them as a Job
//! in the stack's namespace (`job.rs`) with a checker script of this folder (`check.py`: voice
//! round trip and HTTP health; `check.sh`: HTTP health with busybox), reads the Job's outcome from
//! its pod's termination message (`run.rs`), and reports each link (`report.rs`).
//!
//! The Job is not an object of the stack: it is not in the stack's ApplySet, so `apply` never
//! prunes it and a converged re-run's "nothing to write" is about the stack's own objects. Each
//! verification deletes the previous verification Jobs of the namespace (by their label) and
//! creates a new one (`generateName`), so the last outcome stays readable by `kstrap status` until
//! the next run. The pod carries its own label ([`LABEL`]: [`NAME`]), which each checked service's
//! ingress policy admits next to its real client's, and a `kstrap-verify` egress policy of the
//! stack lets it reach exactly the checked ports.

pub mod job;
pub mod report;
pub mod run;

use crate::stack::{Stack, Stage};
use serde::Deserialize;
use serde_json::{Value, json};

/// Name (prefix) of the verification Job and the value of its pods' [`LABEL`].
pub const NAME: &str = "kstrap-verify";
/// The label the verification pods carry; policies admit them by it.
pub const LABEL: &str = "app.kubernetes.io/name";

/// What the voice round trip has Kokoro say and Whisper hear. Plain words without numbers or
/// names, so a transcript is compared word for word after normalising case and punctuation.
pub const SENTENCE: &str = "The quick brown fox jumps over the lazy dog near the quiet river bank.";
/// Share of the sentence's words a transcript must get right (1 - word error rate): 0.8 lets
/// Whisper mishear two of the thirteen words; a transcript of another sentence scores far below
/// (tests/integration/verify_checker.rs checks both).
pub const THRESHOLD: f64 = 0.8;
/// The question for the LLM, and the answers that count as right (any word of the answer).
pub const QUESTION: &str = "What is seven plus five? Answer with the number only.";
pub const ANSWERS: [&str; 2] = ["12", "twelve"];
/// A wrong answer fails only from a model of this many billion parameters or more (its tag says
/// so: `llama3.1:8b`); a smaller model's wrong answer is a warning with the answer shown.
pub const STRICT_FROM_BILLIONS: f64 = 3.0;
/// Seconds each HTTP request of the checker may take.
pub const REQUEST_TIMEOUT_S: u64 = 120;

const CHECK_PY: &str = include_str!("check.py");
const CHECK_SH: &str = include_str!("check.sh");

/// The checker's script, as the Job runs it.
pub fn script(checker: Checker) -> &'static str {
    match checker {
        Checker::Python => CHECK_PY,
        Checker::Sh => CHECK_SH,
    }
}

/// stack.yaml `verify:` — what proves the stack works.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// `python` (check.py: HTTP checks and the voice round trip) or `sh` (check.sh: HTTP checks
    /// with busybox's wget).
    pub checker: Checker,
    /// The checker's image, pinned; or `image_from`.
    #[serde(default)]
    pub image: Option<String>,
    /// `Kind/name/container` of the stack whose image (as sized for the profile) the checker
    /// runs: an image the node already has.
    #[serde(default)]
    pub image_from: Option<String>,
    /// How long the whole verification may take (the Job's activeDeadlineSeconds).
    pub timeout_s: u64,
    /// An HTTP GET through each Service to its health path.
    #[serde(default)]
    pub http: Vec<HttpCheck>,
    /// The voice round trip (checker python only).
    #[serde(default)]
    pub voice: Option<VoiceSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Checker {
    Python,
    Sh,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub service: String,
    pub port: u16,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceSpec {
    /// Text to speech (Kokoro's OpenAI-compatible API).
    pub tts: Endpoint,
    /// Speech to text (speaches' OpenAI-compatible API).
    pub stt: Endpoint,
    /// The LLM (Ollama's API).
    pub llm: Endpoint,
}

/// A service of the voice round trip; the model (and voice) come from the stack's own objects as
/// sized for the profile (`Kind/name/container/ENV`), so the check asks what the front end asks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub service: String,
    pub port: u16,
    pub model_from: String,
    #[serde(default)]
    pub voice_from: Option<String>,
    /// The container that serves it: on the GPU when the sized container requests
    /// `nvidia.com/gpu`.
    pub gpu_from: String,
}

/// What the verification Job runs, resolved against the sized stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub checker: Checker,
    pub image: String,
    pub timeout_s: u64,
    /// Environment of the checker container.
    pub env: Vec<(String, String)>,
}

/// Why a `verify:` section cannot be used (the caller adds stack.yaml's path and line).
pub(crate) fn check(spec: &VerifySpec, stages: &[Stage]) -> Result<(), (String, &'static str)> {
    match (&spec.image, &spec.image_from) {
        (Some(image), None) => {
            if let Some(p) = crate::stack::reference::reference_problem(image) {
                return Err((format!("verify: image {image:?}: {p}"), "name a pinned public image"));
            }
            if let Some(p) = crate::stack::check::image_problem(image) {
                return Err((
                    format!("verify: image {image:?}: {p}"),
                    "pin the image to a release tag",
                ));
            }
        }
        (None, Some(from)) => {
            container(stages, from).ok_or_else(|| {
                (
                    format!("verify: image_from {from:?} names no container of the stack"),
                    "write Kind/name/container of a container the stack runs, e.g. Deployment/whisper/whisper",
                )
            })?;
        }
        _ => {
            return Err((
                "verify: give exactly one of image and image_from".into(),
                "image_from reuses an image the stack already pulls; image names a small pinned one",
            ));
        }
    }
    if spec.timeout_s == 0 || spec.timeout_s > 3600 {
        return Err((
            format!("verify: timeout_s {} is out of range", spec.timeout_s),
            "give the seconds the whole verification may take, 1 to 3600",
        ));
    }
    if spec.http.is_empty() && spec.voice.is_none() {
        return Err((
            "verify: no checks".into(),
            "list http checks (service, port, path) or a voice round trip",
        ));
    }
    for h in &spec.http {
        service_port(stages, &h.service, h.port)?;
        if !h.path.starts_with('/') || h.path.chars().any(char::is_whitespace) {
            return Err((
                format!(
                    "verify: http path {:?} of {} is not an absolute path",
                    h.path, h.service
                ),
                "write the health path as the service serves it, e.g. /health",
            ));
        }
    }
    if let Some(voice) = &spec.voice {
        if spec.checker != Checker::Python {
            return Err((
                "verify: the voice round trip needs checker: python".into(),
                "use checker: python",
            ));
        }
        for e in [&voice.tts, &voice.stt, &voice.llm] {
            service_port(stages, &e.service, e.port)?;
            for r in std::iter::once(&e.model_from).chain(e.voice_from.as_ref()) {
                env_value(stages, r).ok_or_else(|| {
                    (
                        format!("verify: {r:?} names no literal environment value of a container of the stack"),
                        "write Kind/name/container/VARIABLE of a variable with a value, e.g. Job/ollama-model-pull/pull/MODEL",
                    )
                })?;
            }
            container(stages, &e.gpu_from).ok_or_else(|| {
                (
                    format!("verify: gpu_from {:?} names no container of the stack", e.gpu_from),
                    "write Kind/name/container of the container that serves it",
                )
            })?;
        }
        if voice.tts.voice_from.is_none() {
            return Err((
                "verify: voice.tts needs voice_from".into(),
                "name the variable the front end's TTS voice is in",
            ));
        }
    }
    Ok(())
}

fn service_port(stages: &[Stage], service: &str, port: u16) -> Result<(), (String, &'static str)> {
    let svc = objects(stages)
        .find(|o| o.reference.kind == "Service" && o.reference.name == service)
        .ok_or_else(|| {
            (
                format!("verify: no Service {service:?} in the stack"),
                "check each Service of the stack by its name",
            )
        })?;
    let ports: Vec<u64> = svc
        .value
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("port").and_then(Value::as_u64))
                .collect()
        })
        .unwrap_or_default();
    if !ports.contains(&u64::from(port)) {
        return Err((
            format!("verify: Service {service} has no port {port} (it has {ports:?})"),
            "use the Service's port, not the container's",
        ));
    }
    Ok(())
}

fn objects(stages: &[Stage]) -> impl Iterator<Item = &crate::stack::StackObject> {
    stages.iter().flat_map(|s| &s.objects)
}

/// The container `Kind/name/container`.
fn container<'a>(stages: &'a [Stage], r: &str) -> Option<&'a Value> {
    let mut parts = r.splitn(3, '/');
    let (kind, name, container) = (parts.next()?, parts.next()?, parts.next()?);
    let o = objects(stages).find(|o| o.reference.kind == kind && o.reference.name == name)?;
    crate::stack::check::containers(kind, &o.value)
        .into_iter()
        .map(|(_, c)| c)
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))
}

/// The literal value of `Kind/name/container/VARIABLE`.
fn env_value(stages: &[Stage], r: &str) -> Option<String> {
    let (container_ref, var) = r.rsplit_once('/')?;
    let c = container(stages, container_ref)?;
    c.get("env")?
        .as_array()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(var))?
        .get("value")?
        .as_str()
        .map(str::to_string)
}

fn on_gpu(stages: &[Stage], r: &str) -> bool {
    let Some(c) = container(stages, r) else { return false };
    ["limits", "requests"].iter().any(|k| {
        c.pointer(&format!("/resources/{k}/nvidia.com~1gpu")).is_some_and(|v| {
            v.as_u64()
                .map_or_else(|| v.as_str().is_some_and(|s| s != "0"), |n| n > 0)
        })
    })
}

/// Billions of parameters an Ollama model tag states (`llama3.2:1b` → 1, `qwen2.5:0.5b` → 0.5).
pub fn tag_billions(model: &str) -> Option<f64> {
    let tag = model.rsplit_once(':')?.1;
    let head = tag.split(['-', '_']).next()?;
    head.strip_suffix('b')?.parse().ok()
}

fn url(service: &str, port: u16, path: &str) -> String {
    format!("http://{service}:{port}{path}")
}

/// The checker's image and input for `stack` as sized for the profile; None when the stack
/// declares no checks.
pub fn resolve(stack: &Stack) -> Option<Resolved> {
    let spec = stack.verify.as_ref()?;
    let stages = &stack.stages;
    // A Service the profile leaves out (imagepod's GPU worker on CPU profiles) is not checked.
    let present = |service: &str| objects(stages).any(|o| o.reference.kind == "Service" && o.reference.name == service);
    let http: Vec<&HttpCheck> = spec.http.iter().filter(|h| present(&h.service)).collect();
    let image = match (&spec.image, &spec.image_from) {
        (Some(i), _) => i.clone(),
        (None, Some(from)) => container(stages, from)?.get("image")?.as_str()?.to_string(),
        (None, None) => return None,
    };
    let env = match spec.checker {
        Checker::Sh => vec![
            (
                "KSTRAP_VERIFY_HTTP".to_string(),
                http.iter()
                    .map(|h| format!("{} {}", h.service, url(&h.service, h.port, &h.path)))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            (
                "KSTRAP_VERIFY_TIMEOUT_S".to_string(),
                REQUEST_TIMEOUT_S.min(spec.timeout_s).to_string(),
            ),
        ],
        Checker::Python => {
            let http: Vec<Value> = http
                .iter()
                .map(|h| json!({"service": h.service, "url": url(&h.service, h.port, &h.path)}))
                .collect();
            let mut config = json!({"request_timeout_s": REQUEST_TIMEOUT_S.min(spec.timeout_s), "http": http});
            if let Some(v) = &spec.voice {
                let endpoint = |e: &Endpoint| {
                    json!({"service": e.service, "url": url(&e.service, e.port, ""),
                           "model": env_value(stages, &e.model_from).unwrap_or_default(),
                           "gpu": on_gpu(stages, &e.gpu_from)})
                };
                let mut tts = endpoint(&v.tts);
                tts["voice"] = json!(
                    v.tts
                        .voice_from
                        .as_deref()
                        .and_then(|r| env_value(stages, r))
                        .unwrap_or_default()
                );
                let mut llm = endpoint(&v.llm);
                let model = llm["model"].as_str().unwrap_or_default().to_string();
                llm["strict"] = json!(tag_billions(&model).is_some_and(|b| b >= STRICT_FROM_BILLIONS));
                llm["question"] = json!(QUESTION);
                llm["answers"] = json!(ANSWERS);
                config["voice"] = json!({"sentence": SENTENCE, "threshold": THRESHOLD,
                    "tts": tts, "stt": endpoint(&v.stt), "llm": llm});
            }
            vec![("KSTRAP_VERIFY_CONFIG".to_string(), config.to_string())]
        }
    };
    Some(Resolved {
        checker: spec.checker,
        image,
        timeout_s: spec.timeout_s,
        env,
    })
}

#[cfg(test)]
mod tests;
