//! `RecordingProxy`: a **test double** standing between kstrap and the real API server, to count
//! the requests kstrap sends (above all the mutating ones: POST, PUT, PATCH, DELETE).
//!
//! It listens on plain HTTP on 127.0.0.1 and hands out a kubeconfig pointing there (with a
//! bearer token it ignores, so tests still see that credentials never show); every request is
//! recorded (method, path, query, status) and forwarded to the real API server with the admin
//! kubeconfig's credentials, through `kube::Client::send` (kube-rs documents it for exactly this:
//! "a proxy server or application-level gateway between localhost and the API server").
//! Responses, watches included, are streamed back unchanged.
//!
//! It injects no faults: it only records. (A fault-injecting proxy with the same role may replace
//! it; the two should become one.)

#![allow(dead_code)]

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;

/// One request as the proxy forwarded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The API server's status code (502 when it could not be reached).
    pub status: u16,
}

impl Recorded {
    /// POST, PUT, PATCH or DELETE: a request that asks the API server to change something.
    pub fn is_mutating(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if !self.query.is_empty() {
            write!(f, "?{}", self.query)?;
        }
        write!(f, " → {}", self.status)
    }
}

pub struct RecordingProxy {
    port: u16,
    records: Arc<Mutex<Vec<Recorded>>>,
}

type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The token in the kubeconfig the proxy hands out: never sent on, never to be printed by kstrap.
pub const PROXY_TOKEN: &str = "recording-proxy-fake-token";

impl RecordingProxy {
    /// Starts the proxy in front of the API server that `upstream_kubeconfig` names.
    pub fn start(upstream_kubeconfig: &Path) -> RecordingProxy {
        let (tx, rx) = std::sync::mpsc::channel();
        let records: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let shared = records.clone();
        let kubeconfig = upstream_kubeconfig.to_path_buf();
        std::thread::Builder::new()
            .name("recording-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a runtime for the recording proxy");
                rt.block_on(async move {
                    let client = kstrap::kube::client_from(Some(&kubeconfig), None)
                        .await
                        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("a port for the recording proxy");
                    let _ = tx.send(listener.local_addr().map(|a| a.port()));
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let client = client.clone();
                        let records = shared.clone();
                        tokio::spawn(async move {
                            let svc =
                                hyper::service::service_fn(move |req| forward(client.clone(), records.clone(), req));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                });
            })
            .expect("the recording proxy's thread");
        let port = rx
            .recv()
            .expect("the recording proxy started")
            .expect("the recording proxy's port");
        RecordingProxy { port, records }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig for kstrap that points at the proxy.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: proxied\n  cluster:\n    server: {}\nusers:\n- name: proxied\n  user:\n    token: {PROXY_TOKEN}\ncontexts:\n- name: proxied\n  context:\n    cluster: proxied\n    user: proxied\ncurrent-context: proxied\n",
            self.url()
        )
    }

    /// Every request so far, in the order they came.
    pub fn requests(&self) -> Vec<Recorded> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The mutating requests (POST, PUT, PATCH, DELETE) so far.
    pub fn mutations(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(Recorded::is_mutating).collect()
    }
}

async fn forward(
    client: kube::Client,
    records: Arc<Mutex<Vec<Recorded>>>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let mut record = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        status: 502,
    };
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(bad_gateway(&records, record, &e.to_string())),
    };
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out = http::Request::builder()
        .method(parts.method.clone())
        .uri(path_and_query);
    for (name, value) in &parts.headers {
        // The client sets its own host, credentials and framing.
        if !matches!(
            name.as_str(),
            "host" | "authorization" | "content-length" | "transfer-encoding" | "connection"
        ) {
            out = out.header(name, value);
        }
    }
    let out = match out.body(kube::client::Body::from(bytes.to_vec())) {
        Ok(r) => r,
        Err(e) => return Ok(bad_gateway(&records, record, &e.to_string())),
    };
    match client.send(out).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            record.status = parts.status.as_u16();
            records.lock().unwrap_or_else(|e| e.into_inner()).push(record);
            let mut back = hyper::Response::builder().status(parts.status);
            for (name, value) in &parts.headers {
                if !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection") {
                    back = back.header(name, value);
                }
            }
            let body: Body = body
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .boxed_unsync();
            Ok(back.body(body).unwrap_or_else(|e| text(502, &e.to_string())))
        }
        Err(e) => Ok(bad_gateway(&records, record, &e.to_string())),
    }
}

fn bad_gateway(records: &Mutex<Vec<Recorded>>, record: Recorded, why: &str) -> hyper::Response<Body> {
    records.lock().unwrap_or_else(|e| e.into_inner()).push(record);
    text(502, &format!("recording proxy: {why}"))
}

fn text(status: u16, message: &str) -> hyper::Response<Body> {
    let mut resp = hyper::Response::new(
        Full::new(Bytes::from(message.to_string()))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    resp
}
