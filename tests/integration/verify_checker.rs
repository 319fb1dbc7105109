//! kstrap's verification checkers (src/verify/check.py, check.sh) run as real processes against
//! local stand-ins of the APIs they call (tests/support/voice_apis.rs, test doubles of Kokoro-
//! FastAPI v0.8.0, speaches v0.8.3 and Ollama v0.12.10), green and in each way those APIs fail;
//! their report is read by the same code that reads it from the Job (`verify::report::parse`).

use crate::voice_apis::{Kokoro, Modes, Ollama, VoiceApis, Whisper};
use kstrap::verify::report::{self, Link, LinkStatus, Verification};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn python() -> Option<&'static str> {
    ["python3", "python"].into_iter().find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn config(apis: &VoiceApis, model: &str, gpu: bool, strict: bool, timeout_s: u64) -> Value {
    json!({
        "request_timeout_s": timeout_s,
        "http": [{"service": "kokoro", "url": format!("{}/health", apis.kokoro)},
                 {"service": "whisper", "url": format!("{}/health", apis.whisper)},
                 {"service": "ollama", "url": format!("{}/", apis.ollama)}],
        "voice": {
            "sentence": kstrap::verify::SENTENCE,
            "threshold": kstrap::verify::THRESHOLD,
            "tts": {"service": "kokoro", "url": apis.kokoro, "model": "kokoro", "voice": "af_bella", "gpu": gpu},
            "stt": {"service": "whisper", "url": apis.whisper, "model": "Systran/faster-whisper-small", "gpu": gpu},
            "llm": {"service": "ollama", "url": apis.ollama, "model": model, "gpu": gpu, "strict": strict,
                    "question": kstrap::verify::QUESTION, "answers": kstrap::verify::ANSWERS},
        }
    })
}

/// Runs check.py with `config`; (exit code, the report as kstrap reads it, termination message).
pub fn run_checker(config: &Value) -> Option<(i32, Verification, String)> {
    let Some(py) = python() else {
        eprintln!("skipping: no python3 on this machine to run the checker");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/verify/check.py");
    let out = Command::new(py)
        .arg(&script)
        .env("KSTRAP_VERIFY_CONFIG", config.to_string())
        .env("KSTRAP_VERIFY_TERMINATION_LOG", &log)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let message = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(message.len() <= 4096, "the kubelet keeps 4096 bytes: {}", message.len());
    assert_eq!(stdout.trim(), message, "stdout and the termination message agree");
    let links =
        report::parse(&message).unwrap_or_else(|e| panic!("{e}\nstderr: {}", String::from_utf8_lossy(&out.stderr)));
    let v = Verification::new("voice-ai", "voice-ai", "kstrap-verify-test", None, links);
    Some((out.status.code().unwrap_or(-1), v, message))
}

fn link<'a>(v: &'a Verification, service: &str, name: &str) -> &'a Link {
    v.links
        .iter()
        .find(|l| l.service == service && l.name == name)
        .unwrap_or_else(|| panic!("no link {service}: {name} in {:#?}", v.links))
}

/// The sentence as Whisper writes it: other case and punctuation, same words.
fn heard_right() -> String {
    kstrap::verify::SENTENCE
        .to_uppercase()
        .replace(' ', ", ")
        .replace('.', "!")
}

#[test]
fn checker_green_round_trip_records_every_links_latency() {
    let apis = VoiceApis::start(Modes {
        whisper: Whisper::Hears(heard_right()),
        ollama: Ollama::Answers("The answer is 12.".into()),
        ..Modes::default()
    });
    let Some((code, v, _)) = run_checker(&config(&apis, "llama3.2:1b", false, false, 10)) else {
        return;
    };
    assert_eq!(code, 0, "{v:#?}");
    assert!(v.ok && v.exit_code() == 0);
    for service in ["kokoro", "whisper", "ollama"] {
        assert_eq!(link(&v, service, "health").status, LinkStatus::Ok);
    }
    let synth = link(&v, "kokoro", "speech synthesis");
    assert_eq!(synth.status, LinkStatus::Ok);
    assert!(synth.ms.is_some() && synth.got.contains("bytes of audio"), "{synth:?}");
    let stt = link(&v, "whisper", "transcription");
    assert_eq!(stt.status, LinkStatus::Ok, "{stt:?}");
    assert!(stt.ms.is_some() && stt.got.contains("word error rate 0.00"), "{stt:?}");
    let answer = link(&v, "ollama", "answer");
    assert_eq!(answer.status, LinkStatus::Ok);
    let m = answer.metrics.as_ref().unwrap();
    assert!(m.ttft_ms.is_some());
    // eval_count 40 over eval_duration 2 s.
    assert_eq!(m.tokens_per_s, Some(20.0));
    // No GPU: nothing about devices is claimed.
    assert!(
        v.links
            .iter()
            .all(|l| l.status != LinkStatus::NotChecked && l.name != "model in GPU memory")
    );
}

#[test]
fn checker_transcript_threshold_passes_near_misses_and_fails_another_sentence() {
    let apis = VoiceApis::start(Modes::default());
    // Two of thirteen words misheard: 85% right, above the 80% threshold.
    let near = kstrap::verify::SENTENCE
        .replace("quick", "quack")
        .replace("river", "liver");
    for (heard, ok) in [
        (near.as_str(), true),
        (
            "Please leave a message after the tone and we will call you back.",
            false,
        ),
        ("The quick brown fox.", false),
        ("", false),
    ] {
        apis.set(|m| m.whisper = Whisper::Hears(heard.into()));
        let Some((code, v, _)) = run_checker(&config(&apis, "llama3.2:1b", false, false, 10)) else {
            return;
        };
        let stt = link(&v, "whisper", "transcription");
        assert_eq!(stt.status == LinkStatus::Ok, ok, "{heard:?}: {stt:?}");
        assert_eq!(code == 0, ok);
        if !ok {
            assert!(
                stt.detail.as_deref().unwrap_or_default().contains("at least 80%"),
                "{stt:?}"
            );
            assert_eq!(v.first_failed().unwrap().name, "transcription");
        }
    }
}

#[test]
fn checker_failures_name_the_service_what_was_sent_and_what_came_back() {
    let apis = VoiceApis::start(Modes {
        whisper: Whisper::Hears(heard_right()),
        ..Modes::default()
    });
    let check = |change: &dyn Fn(&mut Modes)| {
        apis.set(|m| {
            *m = Modes {
                whisper: Whisper::Hears(heard_right()),
                ..Modes::default()
            };
            change(m);
        });
        run_checker(&config(&apis, "llama3.2:1b", false, false, 2))
    };
    // Speech-to-text model never pulled: speaches' 404.
    let Some((code, v, _)) = check(&|m| m.whisper = Whisper::NotInstalled) else {
        return;
    };
    assert_eq!(code, 1);
    let l = v.first_failed().unwrap();
    assert_eq!((l.service.as_str(), l.name.as_str()), ("whisper", "transcription"));
    assert!(
        l.sent.contains("/v1/audio/transcriptions") && l.sent.contains("faster-whisper-small"),
        "{l:?}"
    );
    assert!(
        l.got.contains("HTTP 404") && l.got.contains("is not installed locally"),
        "{l:?}"
    );
    assert!(l.detail.as_deref().unwrap().contains("model-pull Job"), "{l:?}");
    assert_eq!(
        l.next.as_deref(),
        Some("kubectl logs -n voice-ai service/whisper --tail=50")
    );
    assert_eq!(v.exit_code(), 1);
    // Kokoro's 500: synthesis fails, the transcription is not tried, the LLM still is.
    let Some((_, v, _)) = check(&|m| m.kokoro = Kokoro::Fails(500)) else {
        return;
    };
    let l = v.first_failed().unwrap();
    assert_eq!((l.service.as_str(), l.name.as_str()), ("kokoro", "speech synthesis"));
    assert!(l.got.contains("HTTP 500") && l.got.contains("out of memory"), "{l:?}");
    assert_eq!(link(&v, "whisper", "transcription").status, LinkStatus::Skipped);
    assert_eq!(link(&v, "ollama", "answer").status, LinkStatus::Ok);
    // Ollama without the model: 404 "model 'x' not found".
    let Some((_, v, _)) = check(&|m| m.ollama = Ollama::NotFound) else {
        return;
    };
    let l = v.first_failed().unwrap();
    assert_eq!((l.service.as_str(), l.name.as_str()), ("ollama", "answer"));
    assert!(l.got.contains("HTTP 404: model 'llama3.2:1b' not found"), "{l:?}");
    assert!(
        l.detail.as_deref().unwrap().contains("ollama pull llama3.2:1b"),
        "{l:?}"
    );
    // Ollama's 500 and an error in the stream.
    let Some((_, v, _)) = check(&|m| m.ollama = Ollama::Fails(500)) else {
        return;
    };
    assert!(
        v.first_failed()
            .unwrap()
            .got
            .contains("HTTP 500: llama runner process has terminated")
    );
    let Some((_, v, _)) = check(&|m| m.ollama = Ollama::ErrorInStream) else {
        return;
    };
    assert!(
        v.first_failed()
            .unwrap()
            .got
            .contains("error in the stream: an error was encountered")
    );
    // A health path that answers 503.
    let Some((_, v, _)) = check(&|m| m.health = 503) else {
        return;
    };
    let l = v.first_failed().unwrap();
    assert_eq!((l.service.as_str(), l.name.as_str()), ("kokoro", "health"));
    assert!(l.got.starts_with("HTTP 503"), "{l:?}");
    // Slow: no answer within the request timeout is a failed link that timed out (exit 4).
    let Some((code, v, _)) = check(&|m| m.ollama = Ollama::Slow(Duration::from_secs(4))) else {
        return;
    };
    assert_eq!(code, 1);
    let l = v.first_failed().unwrap();
    assert_eq!(l.service, "ollama");
    assert!(l.timeout && l.got.contains("no answer within 2s"), "{l:?}");
    assert_eq!(v.exit_code(), 4);
    let Some((_, v, _)) = check(&|m| m.kokoro = Kokoro::Slow(Duration::from_secs(4))) else {
        return;
    };
    assert!(v.first_failed().unwrap().timeout);
    // Nothing listening at all.
    let mut cfg = config(&apis, "llama3.2:1b", false, false, 2);
    cfg["voice"]["llm"]["url"] = json!("http://127.0.0.1:1");
    let Some((_, v, _)) = run_checker(&cfg) else { return };
    assert!(link(&v, "ollama", "answer").got.contains("no connection"), "{v:#?}");
}

#[test]
fn checker_wrong_answer_warns_for_a_small_model_and_fails_for_a_large_one() {
    let apis = VoiceApis::start(Modes {
        whisper: Whisper::Hears(heard_right()),
        ollama: Ollama::Answers("Thirteen.".into()),
        ..Modes::default()
    });
    let Some((code, v, _)) = run_checker(&config(&apis, "llama3.2:1b", false, false, 10)) else {
        return;
    };
    assert_eq!(code, 0);
    assert!(v.ok, "a warning is not a failure");
    let l = link(&v, "ollama", "answer");
    assert_eq!(l.status, LinkStatus::Warning);
    assert!(l.got.contains("Thirteen"), "the answer is shown: {l:?}");
    let text = report::render(&v);
    assert!(
        text.contains("warning     ollama: answer") && text.contains("Thirteen"),
        "{text}"
    );
    let Some((code, v, _)) = run_checker(&config(&apis, "llama3.1:8b", false, true, 10)) else {
        return;
    };
    assert_eq!(code, 1);
    assert_eq!(link(&v, "ollama", "answer").status, LinkStatus::Failed);
}

#[test]
fn checker_on_gpu_requires_the_model_in_vram_and_says_not_checked_where_apis_do_not_tell() {
    let apis = VoiceApis::start(Modes {
        whisper: Whisper::Hears(heard_right()),
        ..Modes::default()
    });
    let Some((code, v, _)) = run_checker(&config(&apis, "llama3.2:1b", true, false, 10)) else {
        return;
    };
    assert_eq!(code, 0, "{v:#?}");
    assert_eq!(link(&v, "ollama", "model in GPU memory").status, LinkStatus::Ok);
    for service in ["kokoro", "whisper"] {
        let l = link(&v, service, "on CUDA");
        assert_eq!(l.status, LinkStatus::NotChecked, "never ok: {l:?}");
        assert!(l.detail.as_deref().unwrap().contains("does not say"), "{l:?}");
    }
    // Ollama put a third of the model on the CPU.
    apis.set(|m| m.ps = (3_000_000_000, 2_000_000_000));
    let Some((code, v, _)) = run_checker(&config(&apis, "llama3.2:1b", true, false, 10)) else {
        return;
    };
    assert_eq!(code, 1);
    let l = v.first_failed().unwrap();
    assert_eq!(l.name, "model in GPU memory");
    assert!(l.got.contains("size 3000000000, size_vram 2000000000"), "{l:?}");
    assert!(l.detail.as_deref().unwrap().contains("67%"), "{l:?}");
    // Loaded under another name: not loaded at all.
    let Some((_, v, _)) = run_checker(&config(&apis, "llama3.1:8b", true, true, 10)) else {
        return;
    };
    let l = link(&v, "ollama", "model in GPU memory");
    assert!(
        l.got.contains("llama3.1:8b is not loaded (loaded: llama3.2:1b)"),
        "{l:?}"
    );
}

#[test]
fn checker_report_fits_the_kubelets_termination_message() {
    let apis = VoiceApis::start(Modes {
        whisper: Whisper::Hears("x ".repeat(3000)),
        ..Modes::default()
    });
    let mut cfg = config(&apis, "llama3.2:1b", true, false, 10);
    let many: Vec<Value> = (0..40)
        .map(|i| json!({"service": format!("service-with-a-long-name-{i}"), "url": format!("{}/nope/{}", apis.ollama, "p".repeat(100))}))
        .collect();
    cfg["http"] = json!(many);
    let Some((code, v, message)) = run_checker(&cfg) else {
        return;
    };
    assert_eq!(code, 1);
    assert!(message.len() <= 4096);
    // The first failed link is kept whole; the others (40 health paths answering 404, and the
    // transcription) are kept or counted.
    let first = v.first_failed().unwrap();
    assert_eq!(first.service, "service-with-a-long-name-0");
    assert!(first.sent.starts_with("GET ") && first.got.contains("404"), "{first:?}");
    let failed = v
        .links
        .iter()
        .filter(|l| l.status == LinkStatus::Failed && l.service != "kstrap-verify")
        .count();
    let counted = v
        .links
        .iter()
        .find(|l| l.name.contains("more failed links"))
        .expect("failed links left out are counted");
    let n: usize = counted.name.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(failed + n, 41, "{v:#?}");
}

#[test]
fn sh_checker_reports_each_health_path_like_the_python_one() {
    let (Ok(sh), Ok(_)) = (which("sh"), which("wget")) else {
        eprintln!("skipping: sh and wget are needed to run check.sh here");
        return;
    };
    let apis = VoiceApis::start(Modes::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/verify/check.sh");
    let checks = format!(
        "kokoro {}/health\nollama {}/nope\nnothing http://127.0.0.1:1/health",
        apis.kokoro, apis.ollama
    );
    let out = Command::new(sh)
        .arg(&script)
        .env("KSTRAP_VERIFY_HTTP", checks)
        .env("KSTRAP_VERIFY_TIMEOUT_S", "2")
        .env("KSTRAP_VERIFY_TERMINATION_LOG", &log)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = std::fs::read_to_string(&log).unwrap();
    let v = Verification::new("s", "ns", "j", None, report::parse(&message).unwrap());
    assert_eq!(v.links.len(), 3);
    assert_eq!(v.links[0].status, LinkStatus::Ok);
    assert!(v.links[0].ms.is_some());
    assert_eq!(v.links[1].status, LinkStatus::Failed);
    assert!(v.links[1].got.contains("404"), "{:?}", v.links[1]);
    assert_eq!(v.first_failed().unwrap().service, "ollama");
    assert_eq!(v.links[2].status, LinkStatus::Failed);
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
        .ok_or(())
}
