//! A request-counting kube client (a test double of the client's transport, not of the server):
//! a tower layer between `kube::Client` and its HTTP stack that records the method and path of
//! every request, then passes it on unchanged. Built from a kubeconfig, so the same assertions
//! ("a no-op re-apply sends no PATCH, POST, PUT or DELETE") hold against the simulated API server
//! and a real kube-apiserver alike.

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// What the client sent, in order: (method, path).
#[derive(Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<(String, String)>>>);

impl RequestLog {
    pub fn all(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The requests that can change stored state: POST, PUT, PATCH, DELETE.
    pub fn mutating(&self) -> Vec<(String, String)> {
        self.all()
            .into_iter()
            .filter(|(m, _)| matches!(m.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
            .collect()
    }
}

pub struct Counting<S> {
    inner: S,
    log: RequestLog,
}

impl<S, B> tower::Service<http::Request<B>> for Counting<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.log
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((req.method().to_string(), req.uri().path().to_string()));
        self.inner.call(req)
    }
}

/// A client for `kubeconfig` whose every request lands in the returned log.
pub async fn client(kubeconfig: &Path) -> (kube::Client, RequestLog) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let log = RequestLog::default();
    let layer_log = log.clone();
    let layer = tower::layer::layer_fn(move |inner| Counting {
        inner,
        log: layer_log.clone(),
    });
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&layer)
        .build();
    (client, log)
}
