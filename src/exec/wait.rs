//! Waiting for the cluster the distribution just started: its kubeconfig appears, the API server
//! answers `/readyz` with `ok`, and a node reports Ready.
//!
//! The kubeconfig file is written by the distribution as it starts, so it is looked for on a
//! short interval; `/readyz` is retried with backoff (connection refused is normal for the first
//! seconds); nodes are watched (kube-runtime `watcher`, which re-lists on 410 Gone), never
//! polled. All of it is bounded by one timeout, and on timeout the error says which of the three
//! answered and which did not, so a hang is never silent.

use super::Interrupt;
use super::host::Host;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(
        "timed out after {waited} waiting for the cluster:\n  kubeconfig {kubeconfig}: {kubeconfig_state}\n  API server /readyz: {readyz}\n  node: {node}\n  fix: see the service's log (`journalctl -u {unit}`), then run `kstrap up` again"
    )]
    Timeout {
        /// "300s", or "0.3s" below a second.
        waited: String,
        kubeconfig: String,
        kubeconfig_state: String,
        readyz: String,
        node: String,
        unit: String,
    },
    #[error("interrupted while waiting for the cluster")]
    Interrupted,
}

/// What was seen so far, for the timeout message.
struct Seen {
    kubeconfig: String,
    readyz: String,
    node: String,
}

/// Waits until the cluster answers; returns a client for it.
pub async fn wait_cluster(
    host: &Host,
    kubeconfig_path: &str,
    unit: &str,
    timeout: Duration,
    interrupt: &Interrupt,
) -> Result<::kube::Client, WaitError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let deadline = crate::limits::deadline(timeout);
    let mut seen = Seen {
        kubeconfig: "not written yet".into(),
        readyz: "not asked (no kubeconfig yet)".into(),
        node: "not asked (API server not ready)".into(),
    };
    let work = async {
        let client = client_from_file(host, kubeconfig_path, &mut seen).await;
        readyz(&client, &mut seen).await;
        node_ready(&client, &mut seen).await;
        client
    };
    let result = tokio::select! {
        r = tokio::time::timeout_at(deadline, work) => r,
        () = interrupt.wait() => return Err(WaitError::Interrupted),
    };
    match result {
        Ok(client) => Ok(client),
        Err(_) => Err(WaitError::Timeout {
            waited: if timeout.as_secs() >= 1 {
                format!("{}s", timeout.as_secs())
            } else {
                format!("{:.1}s", timeout.as_secs_f64())
            },
            kubeconfig: kubeconfig_path.to_string(),
            kubeconfig_state: seen.kubeconfig,
            readyz: seen.readyz,
            node: seen.node,
            unit: unit.to_string(),
        }),
    }
}

async fn client_from_file(host: &Host, path: &str, seen: &mut Seen) -> ::kube::Client {
    loop {
        // Never quote the file: it holds credentials.
        match host.read(path) {
            Ok(Some(file)) => {
                let text = String::from_utf8_lossy(&file.bytes);
                match ::kube::config::Kubeconfig::from_yaml(&text) {
                    Ok(kc) => {
                        let opts = ::kube::config::KubeConfigOptions::default();
                        match ::kube::Config::from_custom_kubeconfig(kc, &opts).await {
                            Ok(mut config) => {
                                crate::kube::bypass_proxy(&mut config);
                                let url = config.cluster_url.to_string();
                                match ::kube::Client::try_from(config) {
                                    Ok(client) => {
                                        seen.kubeconfig = format!("present, server {url}");
                                        seen.readyz = format!("{url} not answered yet");
                                        return client;
                                    }
                                    Err(e) => seen.kubeconfig = format!("cannot build a client from it: {e}"),
                                }
                            }
                            Err(e) => seen.kubeconfig = format!("present but unusable: {e}"),
                        }
                    }
                    Err(_) => seen.kubeconfig = "present but not (yet) a complete kubeconfig".into(),
                }
            }
            Ok(None) => seen.kubeconfig = "not written yet (the distribution writes it once it has started)".into(),
            Err(e) => seen.kubeconfig = format!("cannot be read: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn readyz(client: &::kube::Client, seen: &mut Seen) {
    let mut delay = Duration::from_millis(50);
    loop {
        let req = http::Request::get("/readyz").body(Vec::new());
        match req {
            Ok(req) => match client.request_text(req).await {
                Ok(text) if text.trim() == "ok" => {
                    seen.readyz = "answered ok".into();
                    seen.node = "no node registered yet".into();
                    return;
                }
                Ok(text) => seen.readyz = format!("answered {:?}", text.chars().take(200).collect::<String>()),
                Err(::kube::Error::Api(status)) => {
                    seen.readyz = format!("no answer yet: HTTP {} {}", status.code, status.message)
                }
                Err(e) => seen.readyz = format!("no answer yet: {e}"),
            },
            Err(e) => seen.readyz = format!("cannot build the request: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Ready condition of a node: `Ok(())` when True, else its status and reason.
fn node_state(node: &Node) -> Result<(), String> {
    let cond = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    match cond {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(format!(
            "Ready={}{}",
            c.status,
            c.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        )),
        None => Err("no Ready condition yet".into()),
    }
}

async fn node_ready(client: &::kube::Client, seen: &mut Seen) {
    use ::kube::runtime::{WatchStreamExt, watcher};
    let api: ::kube::Api<Node> = ::kube::Api::all(client.clone());
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                match node_state(&node) {
                    Ok(()) => {
                        seen.node = format!("{name} Ready");
                        return;
                    }
                    Err(why) => seen.node = format!("{name} not Ready: {why}"),
                }
            }
            Err(e) => seen.node = format!("watch failed (retrying): {e}"),
        }
    }
    // The backoff stream never ends on its own; if it does, wait out the deadline.
    std::future::pending::<()>().await;
}
