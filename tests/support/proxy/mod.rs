//! `FaultProxy`: a **test double** standing between kstrap and the real API server. It forwards
//! every request to the API server of an admin kubeconfig (with that kubeconfig's client
//! certificate, through a `kube::Client`), records it, and injects the faults a test asks for.
//!
//! Usage:
//! ```ignore
//! let proxy = FaultProxy::start(cluster.kubeconfig());   // listens on 127.0.0.1:<free port>
//! proxy.inject(ProxyFault::ServerError { method: Some("PATCH".into()), path_contains: "configmaps".into(), times: 3 });
//! run_kstrap_with(proxy.kubeconfig());                   // a kubeconfig pointing at the proxy
//! assert_eq!(proxy.mutating_requests().len(), 0);        // POST/PUT/PATCH/DELETE seen
//! proxy.clear_requests();                                // start counting afresh
//! ```
//!
//! - It listens on plain HTTP (`http://127.0.0.1:PORT`); its kubeconfig carries only a fake
//!   bearer token ([`PROXY_TOKEN`]), which the proxy drops: only the proxy holds the client
//!   certificate, and a test can check that kstrap never prints the token.
//! - [`FaultProxy::requests`] is every request forwarded or answered by a fault, in order:
//!   method, path and raw query (`watch=true&resourceVersion=…`). [`FaultProxy::mutating_requests`]
//!   is the subset whose method writes (POST, PUT, PATCH, DELETE); a server-side apply is a PATCH
//!   even when it changes nothing.
//! - Faults follow what the real API server sends (k8s.io/apiserver v1.36, pkg/endpoints/handlers/
//!   responsewriters/status.go for Status bodies; pkg/server/filters/maxinflight.go for a 429 with
//!   `Retry-After` and `details.retryAfterSeconds`; the watch cache's `410 Expired` ERROR event,
//!   pkg/storage/cacher/cacher.go `newErrWatcher` / `errors.NewResourceExpired`):
//!   [`ProxyFault`] lists them. [`FaultProxy::outage`] plays an API server that is gone: open
//!   connections (watches too) are closed and the port refuses connections until it ends.
//!
//! The proxy runs on its own thread and tokio runtime; dropping it stops it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A fault to inject. Counted faults (`times`) apply to that many matching requests, then stop.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyFault {
    /// `500 InternalError` with a Status body. `method: None` matches any method.
    ServerError {
        method: Option<String>,
        path_contains: String,
        times: u32,
    },
    /// `429 TooManyRequests` with `Retry-After` and `details.retryAfterSeconds`.
    TooManyRequests {
        path_contains: String,
        times: u32,
        retry_after_s: u64,
    },
    /// Every watch stream is closed after this many events (BOOKMARKs not counted), as when a
    /// load balancer or the server's own `timeoutSeconds` ends it.
    EndWatchAfter { events: u32 },
    /// The next `times` watches that resume from a resourceVersion get one ERROR event
    /// `410 Expired` ("too old resource version") and end, as the watch cache answers when that
    /// version was compacted.
    GoneOnWatch { times: u32 },
    /// Requests whose path contains this are held `delay` before they are forwarded.
    Slow { path_contains: String, delay: Duration },
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string (`""` when none).
    pub query: String,
    /// The status code answered (0 until the answer's head came back; 503 when the API server
    /// did not answer).
    pub status: u16,
}

impl Recorded {
    /// POST, PUT, PATCH or DELETE.
    pub fn is_mutating(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }

    pub fn is_watch(&self) -> bool {
        self.query.split('&').any(|p| p == "watch=true" || p == "watch=1")
    }
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.query.is_empty() {
            write!(f, "{} {}", self.method, self.path)
        } else {
            write!(f, "{} {}?{}", self.method, self.path, self.query)
        }
    }
}

#[derive(Default)]
struct State {
    faults: Vec<ProxyFault>,
    log: Vec<Recorded>,
    /// How many records were cleared before `log[0]`: a request's number minus this is its index.
    cleared: usize,
    outage_until: Option<Instant>,
}

impl State {
    /// Records the status answered to request number `n` (if it was not cleared since).
    fn answered(&mut self, n: usize, status: u16) {
        if let Some(r) = n.checked_sub(self.cleared).and_then(|i| self.log.get_mut(i)) {
            r.status = status;
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Bumped when an outage starts: open connections close.
    outage: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running proxy (see the module documentation).
pub struct FaultProxy {
    shared: Arc<Shared>,
    url: String,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    _stop: crate::real::background::Stop,
}

impl FaultProxy {
    /// Starts a proxy in front of the API server of `upstream` (an admin kubeconfig).
    pub fn start(upstream: &Path) -> FaultProxy {
        let (outage_tx, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            outage: outage_tx,
        });
        let for_thread = shared.clone();
        let started = crate::real::background::in_background(
            "fault-proxy",
            upstream,
            Duration::from_secs(60),
            move |client: kube::Client| async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| format!("bind: {e}"))?;
                let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                Ok((port, serve(listener, client, for_thread)))
            },
        );
        let (port, stop) = started.unwrap_or_else(|e| panic!("fault proxy: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("fault proxy: {e}"));
        let kubeconfig = dir.path().join("kubeconfig");
        let text = kubeconfig_yaml(&url);
        std::fs::write(&kubeconfig, text).unwrap_or_else(|e| panic!("fault proxy kubeconfig: {e}"));
        FaultProxy {
            shared,
            url,
            kubeconfig,
            _dir: dir,
            _stop: stop,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kubeconfig whose server is this proxy (with a token the proxy drops: [`PROXY_TOKEN`]).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The text of [`FaultProxy::kubeconfig`].
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url)
    }

    /// A client of the proxy.
    pub async fn client(&self) -> kube::Client {
        match kstrap::kube::client_from(Some(&self.kubeconfig), None).await {
            Ok(c) => c,
            Err(e) => panic!("fault proxy client: {e}"),
        }
    }

    pub fn inject(&self, fault: ProxyFault) {
        self.shared.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Plays an API server that is gone for `length`: open connections close now, and nothing
    /// listens on the port (connections are refused) until `length` has passed.
    pub fn outage(&self, length: Duration) {
        self.shared.lock().outage_until = Some(Instant::now() + length);
        self.shared.outage.send_modify(|n| *n += 1);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().log.clone()
    }

    /// The requests so far that write (POST, PUT, PATCH, DELETE).
    pub fn mutating_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(Recorded::is_mutating).collect()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        let mut st = self.shared.lock();
        st.cleared += st.log.len();
        st.log.clear();
    }
}

/// The token in the kubeconfig the proxy hands out: the proxy drops it (it talks to the API server
/// with the admin kubeconfig's client certificate), and kstrap must never print it.
pub const PROXY_TOKEN: &str = "fault-proxy-fake-token";

/// A kubeconfig whose server is the proxy at `url`, with [`PROXY_TOKEN`].
fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster:\n    server: {url}\nusers:\n- name: proxy\n  user:\n    token: {PROXY_TOKEN}\ncontexts:\n- name: proxy\n  context: {{cluster: proxy, user: proxy}}\ncurrent-context: proxy\n"
    )
}

async fn serve(listener: tokio::net::TcpListener, client: kube::Client, shared: Arc<Shared>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut listener = Some(listener);
    let mut outages = shared.outage.subscribe();
    loop {
        let Some(l) = listener.as_ref() else {
            // An outage: nothing listens (connections are refused, as from a stopped API
            // server) until it ends; then the same port again.
            let until = shared.lock().outage_until.unwrap_or_else(Instant::now);
            tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            continue;
        };
        let accepted = tokio::select! {
            a = l.accept() => a,
            _ = outages.changed() => {
                listener = None;
                continue;
            }
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let client = client.clone();
        let shared = shared.clone();
        let mut outage = shared.outage.subscribe();
        tokio::spawn(async move {
            let for_svc = shared.clone();
            let svc = hyper::service::service_fn(move |req| handle(client.clone(), for_svc.clone(), req));
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = outage.changed() => {}
            }
        });
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

fn status_reply(code: u16, reason: &str, message: &str, retry_after: Option<u64>) -> Response<Body> {
    let mut status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    if let Some(s) = retry_after {
        status["details"] = serde_json::json!({"retryAfterSeconds": s});
    }
    let mut b = Response::builder()
        .status(code)
        .header("content-type", "application/json");
    if let Some(s) = retry_after {
        b = b.header("retry-after", s.to_string());
    }
    b.body(full(status.to_string()))
        .unwrap_or_else(|_| Response::new(full("")))
}

/// What the faults decide for one request.
enum Decision {
    Reply(Response<Body>),
    Forward { delay: Duration, end_after: Option<u32> },
}

/// Records `rec` (its number is the returned one) and decides what to do with it.
fn decide(shared: &Shared, rec: &Recorded) -> (usize, Decision) {
    let mut st = shared.lock();
    let n = st.cleared + st.log.len();
    st.log.push(rec.clone());
    (n, decide_faults(&mut st, rec))
}

fn decide_faults(st: &mut State, rec: &Recorded) -> Decision {
    let mut delay = Duration::ZERO;
    let mut end_after = None;
    let resuming = rec.is_watch()
        && rec
            .query
            .split('&')
            .any(|p| p.starts_with("resourceVersion=") && p != "resourceVersion=" && p != "resourceVersion=0");
    for f in st.faults.iter_mut() {
        match f {
            ProxyFault::ServerError {
                method,
                path_contains,
                times,
            } if *times > 0
                && rec.path.contains(path_contains.as_str())
                && method.as_deref().is_none_or(|m| m == rec.method) =>
            {
                *times -= 1;
                return Decision::Reply(status_reply(
                    500,
                    "InternalError",
                    "Internal error occurred: injected by the fault proxy",
                    None,
                ));
            }
            ProxyFault::TooManyRequests {
                path_contains,
                times,
                retry_after_s,
            } if *times > 0 && rec.path.contains(path_contains.as_str()) => {
                *times -= 1;
                return Decision::Reply(status_reply(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                    Some(*retry_after_s),
                ));
            }
            ProxyFault::GoneOnWatch { times } if *times > 0 && resuming => {
                *times -= 1;
                let event = serde_json::json!({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "too old resource version", "reason": "Expired", "code": 410}});
                let reply = Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(full(format!("{event}\n")))
                    .unwrap_or_else(|_| Response::new(full("")));
                return Decision::Reply(reply);
            }
            ProxyFault::EndWatchAfter { events } if rec.is_watch() => end_after = Some(*events),
            ProxyFault::Slow {
                path_contains,
                delay: d,
            } if rec.path.contains(path_contains.as_str()) => delay = delay.max(*d),
            _ => {}
        }
    }
    Decision::Forward { delay, end_after }
}

async fn handle(
    client: kube::Client,
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let rec = Recorded {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
        status: 0,
    };
    let (n, decision) = decide(&shared, &rec);
    let response = forward(client, decision, req).await;
    shared.lock().answered(n, response.status().as_u16());
    Ok(response)
}

async fn forward(client: kube::Client, decision: Decision, req: Request<Incoming>) -> Response<Body> {
    let (delay, end_after) = match decision {
        Decision::Reply(r) => return r,
        Decision::Forward { delay, end_after } => (delay, end_after),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return status_reply(400, "BadRequest", &format!("reading the body: {e}"), None),
    };
    let mut up = Request::builder().method(parts.method).uri(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
    );
    for (k, v) in parts.headers.iter() {
        if !matches!(k.as_str(), "host" | "connection" | "content-length" | "authorization") {
            up = up.header(k, v);
        }
    }
    let up = match up.body(kube::client::Body::from(body.to_vec())) {
        Ok(r) => r,
        Err(e) => return status_reply(400, "BadRequest", &e.to_string(), None),
    };
    let resp = match client.send(up).await {
        Ok(r) => r,
        Err(e) => {
            return status_reply(
                503,
                "ServiceUnavailable",
                &format!("fault proxy: the API server did not answer: {e}"),
                None,
            );
        }
    };
    let (parts, body) = resp.into_parts();
    let body = EndAfter {
        inner: Box::pin(body),
        left: end_after,
        line: Vec::new(),
        done: false,
    }
    .boxed_unsync();
    Response::from_parts(parts, body)
}

/// The upstream body, passed through; it ends when the upstream one ends or fails (the client
/// sees the stream end, as when the server goes away), or, for a watch with `left` set, after
/// that many events (lines that are not BOOKMARKs).
struct EndAfter {
    inner: Pin<Box<kube::client::Body>>,
    left: Option<u32>,
    line: Vec<u8>,
    done: bool,
}

impl hyper::body::Body for EndAfter {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => Poll::Ready(None),
            Poll::Ready(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::new()))));
                };
                // Pass bytes through up to the end of the event that uses the last one up.
                let Some(mut left) = self.left else {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                };
                let mut cut = None;
                for (i, b) in data.iter().enumerate() {
                    if *b == b'\n' {
                        let is_bookmark = self.line.windows(10).any(|w| w == b"\"BOOKMARK\"");
                        self.line.clear();
                        if !is_bookmark {
                            left = left.saturating_sub(1);
                            if left == 0 {
                                cut = Some(i + 1);
                                break;
                            }
                        }
                    } else {
                        self.line.push(*b);
                    }
                }
                self.left = Some(left);
                match cut {
                    Some(end) => {
                        self.done = true;
                        Poll::Ready(Some(Ok(Frame::data(data.slice(..end)))))
                    }
                    None => Poll::Ready(Some(Ok(Frame::data(data)))),
                }
            }
        }
    }
}

/// Request counts by method, for messages.
pub fn by_method(requests: &[Recorded]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in requests {
        *m.entry(r.method.clone()).or_insert(0) += 1;
    }
    m
}
