//! Stand-ins (test doubles) of the three APIs voice-ai's verification talks to, on 127.0.0.1,
//! answering as they document at the versions the stack pins, and failing as they do:
//!
//! - Kokoro-FastAPI v0.8.0 (`api/src/routers/openai_compatible.py` `create_speech`, `api/src/main.py`
//!   `/health`): POST /v1/audio/speech {model, input, voice, response_format} → 200 audio/wav;
//!   400 `{"detail": {"error": "invalid_model", ...}}` for a model other than kokoro/tts-1;
//!   500 `{"detail": {"error": "processing_error", ...}}`; GET /health → {"status": "healthy"}.
//! - speaches v0.8.3 (`src/speaches/routers/stt.py` `transcribe_file`, `dependencies.py`
//!   `audio_file_dependency`, `routers/misc.py` `/health`): POST /v1/audio/transcriptions
//!   (multipart: file, model, ...) → {"text": ...}; 404 `{"detail": "Model '<id>' is not
//!   installed locally. You can download the model using `POST /v1/models`"}`; 500; 400 "Failed
//!   to decode audio" for a file that is not audio. The stand-in "hears" a transcript the test
//!   chose, and only in the audio the Kokoro stand-in made (anything else does not decode).
//! - Ollama v0.12.10 (`server/routes.go` `GenerateHandler`, `PsHandler`; `api/types.go`): POST
//!   /api/generate streams JSON lines {model, created_at, response, done} and a last line with
//!   done, eval_count, eval_duration (ns); 404 {"error": "model '<m>' not found"}; 500
//!   {"error": ...}; an {"error": ...} line in the stream. GET /api/ps → {"models": [{name,
//!   model, size, size_vram, ...}]}. GET / → "Ollama is running".

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Kokoro {
    Speaks,
    Fails(u16),
    Slow(Duration),
}

#[derive(Clone, Debug)]
pub enum Whisper {
    Hears(String),
    NotInstalled,
    Fails(u16),
}

#[derive(Clone, Debug)]
pub enum Ollama {
    Answers(String),
    NotFound,
    Fails(u16),
    Slow(Duration),
    ErrorInStream,
}

#[derive(Clone, Debug)]
pub struct Modes {
    pub kokoro: Kokoro,
    pub whisper: Whisper,
    pub ollama: Ollama,
    /// What /api/ps says of the loaded model: (size, size_vram).
    pub ps: (u64, u64),
    /// /health of every service answers this status.
    pub health: u16,
}

impl Default for Modes {
    fn default() -> Self {
        Modes {
            kokoro: Kokoro::Speaks,
            whisper: Whisper::Hears(String::new()),
            ollama: Ollama::Answers("12".into()),
            ps: (2_019_377_376, 2_019_377_376),
            health: 200,
        }
    }
}

pub struct VoiceApis {
    pub kokoro: String,
    pub whisper: String,
    pub ollama: String,
    modes: Arc<Mutex<Modes>>,
    /// The audio the Kokoro stand-in made last.
    audio: Arc<Mutex<Vec<u8>>>,
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { method, path, body })
}

fn respond(mut s: &TcpStream, status: u16, ctype: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
}

fn json(s: &TcpStream, status: u16, v: serde_json::Value) {
    respond(s, status, "application/json", v.to_string().as_bytes());
}

fn serve(handler: impl Fn(&TcpStream, Request) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || {
                if let Some(req) = read_request(&stream) {
                    handler(&stream, req);
                }
            });
        }
    });
    url
}

fn health(s: &TcpStream, status: u16, body: &str) {
    if status == 200 {
        respond(s, 200, "application/json", body.as_bytes());
    } else {
        json(s, status, serde_json::json!({"detail": "unhealthy"}));
    }
}

impl VoiceApis {
    pub fn start(modes: Modes) -> VoiceApis {
        let modes = Arc::new(Mutex::new(modes));
        let audio: Arc<Mutex<Vec<u8>>> = Arc::default();
        let (m, a) = (modes.clone(), audio.clone());
        let kokoro = serve(move |s, req| {
            let modes = m.lock().unwrap().clone();
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/health") => health(s, modes.health, r#"{"status":"healthy"}"#),
                ("POST", "/v1/audio/speech") => {
                    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
                    if !["kokoro", "tts-1", "tts-1-hd"].contains(&body["model"].as_str().unwrap_or_default()) {
                        return json(
                            s,
                            400,
                            serde_json::json!({"detail": {"error": "invalid_model", "message": format!("Unsupported model: {}", body["model"]), "type": "invalid_request_error"}}),
                        );
                    }
                    match modes.kokoro {
                        Kokoro::Fails(code) => json(
                            s,
                            code,
                            serde_json::json!({"detail": {"error": "processing_error", "message": "CUDA error: out of memory", "type": "server_error"}}),
                        ),
                        Kokoro::Slow(d) => {
                            std::thread::sleep(d);
                            respond(s, 200, "audio/wav", b"RIFF");
                        }
                        Kokoro::Speaks => {
                            // A WAV header and samples standing for the sentence spoken.
                            let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\xc0\x5d\x00\x00\x80\xbb\x00\x00\x02\x00\x10\x00data".to_vec();
                            wav.extend(body["input"].as_str().unwrap_or_default().bytes().map(|b| b ^ 0x5a));
                            *a.lock().unwrap() = wav.clone();
                            respond(s, 200, "audio/wav", &wav);
                        }
                    }
                }
                _ => json(s, 404, serde_json::json!({"detail": "Not Found"})),
            }
        });
        let (m, a) = (modes.clone(), audio.clone());
        let whisper = serve(move |s, req| {
            let modes = m.lock().unwrap().clone();
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/health") => health(s, modes.health, "OK"),
                ("POST", "/v1/audio/transcriptions") => {
                    let model = multipart_field(&req.body, "model").unwrap_or_default();
                    match modes.whisper {
                        Whisper::NotInstalled => json(
                            s,
                            404,
                            serde_json::json!({"detail": format!("Model '{model}' is not installed locally. You can download the model using `POST /v1/models`")}),
                        ),
                        Whisper::Fails(code) => json(s, code, serde_json::json!({"detail": "Internal Server Error"})),
                        Whisper::Hears(text) => {
                            let made = a.lock().unwrap().clone();
                            if made.is_empty() || !contains(&req.body, &made) {
                                return json(
                                    s,
                                    400,
                                    serde_json::json!({"detail": "Failed to decode audio. The provided file type is not supported."}),
                                );
                            }
                            json(s, 200, serde_json::json!({"text": text}))
                        }
                    }
                }
                _ => json(s, 404, serde_json::json!({"detail": "Not Found"})),
            }
        });
        let m = modes.clone();
        let ollama = serve(move |s, req| {
            let modes = m.lock().unwrap().clone();
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/") => health(s, modes.health, "Ollama is running"),
                ("GET", "/api/ps") => json(
                    s,
                    200,
                    serde_json::json!({"models": [{"name": "llama3.2:1b", "model": "llama3.2:1b", "size": modes.ps.0, "size_vram": modes.ps.1, "digest": "baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878", "expires_at": "2026-11-30T12:00:00Z", "context_length": 4096}]}),
                ),
                ("POST", "/api/generate") => {
                    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
                    let model = body["model"].as_str().unwrap_or_default().to_string();
                    match modes.ollama {
                        Ollama::NotFound => json(
                            s,
                            404,
                            serde_json::json!({"error": format!("model '{model}' not found")}),
                        ),
                        Ollama::Fails(code) => json(
                            s,
                            code,
                            serde_json::json!({"error": "llama runner process has terminated: exit status 2"}),
                        ),
                        Ollama::Slow(d) => {
                            std::thread::sleep(d);
                            json(
                                s,
                                200,
                                serde_json::json!({"model": model, "response": "12", "done": true}),
                            );
                        }
                        Ollama::ErrorInStream => stream(
                            s,
                            &[
                                serde_json::json!({"model": model, "created_at": "2026-11-30T11:00:00Z", "response": "1", "done": false}),
                                serde_json::json!({"error": "an error was encountered while running the model: unexpected EOF"}),
                            ],
                        ),
                        Ollama::Answers(text) => {
                            let mut lines: Vec<serde_json::Value> = text
                                .split_inclusive(' ')
                                .map(|t| serde_json::json!({"model": model, "created_at": "2026-11-30T11:00:00Z", "response": t, "done": false}))
                                .collect();
                            lines.push(serde_json::json!({"model": model, "created_at": "2026-11-30T11:00:00Z", "response": "", "done": true, "done_reason": "stop",
                                "total_duration": 400_000_000u64, "load_duration": 10_000_000u64, "prompt_eval_count": 30, "prompt_eval_duration": 50_000_000u64,
                                "eval_count": 40, "eval_duration": 2_000_000_000u64}));
                            stream(s, &lines)
                        }
                    }
                }
                _ => respond(s, 404, "text/plain", b"404 page not found"),
            }
        });
        VoiceApis {
            kokoro,
            whisper,
            ollama,
            modes,
            audio,
        }
    }

    pub fn set(&self, change: impl FnOnce(&mut Modes)) {
        change(&mut self.modes.lock().unwrap());
        self.audio.lock().unwrap().clear();
    }
}

/// NDJSON, as Ollama streams it (application/x-ndjson, one object per line, flushed).
fn stream(mut s: &TcpStream, lines: &[serde_json::Value]) {
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n");
    for l in lines {
        let _ = s.write_all(format!("{l}\n").as_bytes());
        let _ = s.flush();
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn multipart_field(body: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let marker = format!("name=\"{name}\"\r\n\r\n");
    let start = text.find(&marker)? + marker.len();
    let end = text[start..].find("\r\n")? + start;
    Some(text[start..end].to_string())
}
