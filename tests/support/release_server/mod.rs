//! TEST DOUBLE: a local HTTP release server on 127.0.0.1 serving fake release files.
//!
//! It stands in for GitHub releases (or a mirror) in tests and benches, since the real ones
//! cannot be reached here. It serves bytes registered with `add` at exact request paths (as sent,
//! percent-encoding included), counts requests per path, and can misbehave per path on purpose:
//! 404, any status, a body cut short after a full `Content-Length`, a connection closed mid-stream,
//! a slow body, failures a few times before success, and 429 with `Retry-After`.
//! `release_layout` lays out the files of a fake k3s or k0s release under the URLs kstrap plans.
//! It runs on its own thread with its own tokio runtime, so it works under any test harness.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server answers requests for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    NotFound,
    Status(u16),
    /// Sends the full `Content-Length`, then only `after` bytes, then closes.
    Truncate {
        after: usize,
    },
    /// Sends `after` bytes with chunked encoding (no length), then drops the connection.
    CloseMidStream {
        after: usize,
    },
    /// Sends `chunk` bytes, then waits `delay`, and so on (full `Content-Length`).
    Slow {
        chunk: usize,
        delay: Duration,
    },
    /// Answers `status` the first `times` requests, then normally.
    FailTimes {
        times: u32,
        status: u16,
    },
    /// Answers 429 with `Retry-After: secs` the first `times` requests, then normally.
    RetryAfter {
        times: u32,
        secs: u64,
    },
}

#[derive(Default)]
struct State {
    files: HashMap<String, (Bytes, Behaviour)>,
    hits: HashMap<String, u32>,
    user_agents: Vec<String>,
}

/// TEST DOUBLE of a release download server. Dropping it stops the server.
pub struct ReleaseServer {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The files of one fake release, with the URLs kstrap plans for them.
#[derive(Debug, Clone)]
pub struct FakeRelease {
    /// Request path of the binary (percent-encoded like the URL).
    pub binary_path: String,
    pub binary_url: String,
    /// Request path of the checksum file.
    pub sums_path: String,
    pub sums_url: String,
    /// The binary's name as its checksum file lists it (`k3s`, `k0s-v1.33.4+k0s.0-amd64`).
    pub entry: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
    /// Contents of the checksum file.
    pub sums: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes one path segment the way kstrap's release URLs do (`+` → `%2B`).
pub fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Fake bytes for a binary: deterministic, `len` long, not all equal.
pub fn fake_binary(name: &str, len: usize) -> Vec<u8> {
    let seed = name.bytes().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8) ^ (i / 251) as u8)
        .collect()
}

impl ReleaseServer {
    pub fn start() -> ReleaseServer {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("release server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let state = served.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req| {
                                    let state = state.clone();
                                    async move { Ok::<_, std::convert::Infallible>(answer(&state, req)) }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        ReleaseServer {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>` (no trailing slash): use it as the release mirror.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `bytes` at `path` (starting with `/`, percent-encoded as requested).
    pub fn add(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        let mut state = self.state.lock().unwrap();
        state
            .files
            .insert(path.to_string(), (Bytes::from(bytes.into()), Behaviour::Normal));
    }

    /// Changes how `path` is answered (the path need not have a file for `NotFound`/`Status`).
    pub fn set_behaviour(&self, path: &str, behaviour: Behaviour) {
        let mut state = self.state.lock().unwrap();
        let entry = state
            .files
            .entry(path.to_string())
            .or_insert_with(|| (Bytes::new(), Behaviour::Normal));
        entry.1 = behaviour;
    }

    /// Requests received for `path` so far.
    pub fn hits(&self, path: &str) -> u32 {
        self.state.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }

    /// User-Agent headers of all requests so far.
    pub fn user_agents(&self) -> Vec<String> {
        self.state.lock().unwrap().user_agents.clone()
    }

    /// Serves a fake release of `distro` ("k3s" or "k0s") `version` for `arch` ("amd64",
    /// "arm64"): the binary and the checksum file with its real sha256, at the paths GitHub uses.
    pub fn release_layout(&self, distro: &str, version: &str, arch: &str) -> FakeRelease {
        let (repo, entry, sums_name, separator) = match distro {
            "k3s" => (
                "k3s-io/k3s",
                if arch == "amd64" {
                    "k3s".to_string()
                } else {
                    format!("k3s-{arch}")
                },
                format!("sha256sum-{arch}.txt"),
                "  ",
            ),
            "k0s" => (
                "k0sproject/k0s",
                format!("k0s-{version}-{arch}"),
                "sha256sums.txt".to_string(),
                " *",
            ),
            other => panic!("release_layout: unknown distro {other}"),
        };
        let base = format!("/{repo}/releases/download/{}", encode_segment(version));
        let bytes = fake_binary(&entry, 300 * 1024 + 17);
        let sha256 = sha256_hex(&bytes);
        // Like the real files: other assets listed around ours.
        let sums = format!(
            "{other}{separator}{entry}-airgap-extra\n{sha256}{separator}{entry}\n{other}{separator}install.sh\n",
            other = sha256_hex(b"other")
        );
        let binary_path = format!("{base}/{}", encode_segment(&entry));
        let sums_path = format!("{base}/{}", encode_segment(&sums_name));
        self.add(&binary_path, bytes.clone());
        self.add(&sums_path, sums.clone());
        FakeRelease {
            binary_url: format!("{}{binary_path}", self.url()),
            sums_url: format!("{}{sums_path}", self.url()),
            binary_path,
            sums_path,
            entry,
            bytes,
            sha256,
            sums,
        }
    }
}

impl Drop for ReleaseServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn status(code: u16) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(format!("status {code}\n"))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

/// A body from a stream of results (an `Err` makes hyper drop the connection).
fn streamed(parts: Vec<(Duration, Result<Bytes, ()>)>) -> Body {
    let stream = futures::stream::unfold(parts.into_iter(), |mut parts| async move {
        let (delay, part) = parts.next()?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let item = part
            .map(Frame::data)
            .map_err(|()| std::io::Error::other("test double: connection dropped on purpose"));
        Some((item, parts))
    });
    StreamBody::new(stream).boxed()
}

fn answer(state: &Mutex<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let mut state = state.lock().unwrap();
    if let Some(ua) = req
        .headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        state.user_agents.push(ua.to_string());
    }
    let hit = {
        let count = state.hits.entry(path.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let Some((bytes, behaviour)) = state.files.get(&path).cloned() else {
        return status(404);
    };
    let len = bytes.len();
    let with_length = |body: Body| {
        let mut r = Response::new(body);
        r.headers_mut().insert(hyper::header::CONTENT_LENGTH, len.into());
        r
    };
    match behaviour {
        Behaviour::Normal => with_length(full(bytes)),
        Behaviour::NotFound => status(404),
        Behaviour::Status(code) => status(code),
        Behaviour::FailTimes { times, status: code } if hit <= times => status(code),
        Behaviour::RetryAfter { times, secs } if hit <= times => {
            let mut r = status(429);
            r.headers_mut().insert(hyper::header::RETRY_AFTER, secs.into());
            r
        }
        Behaviour::FailTimes { .. } | Behaviour::RetryAfter { .. } => with_length(full(bytes)),
        Behaviour::Truncate { after } => {
            // The pause lets hyper flush the head and the first bytes before it drops the connection.
            with_length(streamed(vec![
                (Duration::ZERO, Ok(bytes.slice(..after.min(len)))),
                (Duration::from_millis(5), Err(())),
            ]))
        }
        Behaviour::CloseMidStream { after } => Response::new(streamed(vec![
            (Duration::ZERO, Ok(bytes.slice(..after.min(len)))),
            (Duration::from_millis(5), Err(())),
        ])),
        Behaviour::Slow { chunk, delay } => {
            let parts = bytes
                .chunks(chunk.max(1))
                .enumerate()
                .map(|(i, c)| {
                    let wait = if i == 0 { Duration::ZERO } else { delay };
                    (wait, Ok(Bytes::copy_from_slice(c)))
                })
                .collect();
            with_length(streamed(parts))
        }
    }
}
