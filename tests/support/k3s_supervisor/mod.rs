//! TEST DOUBLE of the part of a k3s server that a joining agent talks to before it has
//! credentials: the supervisor's HTTPS port (6443 on a real server) serving `/cacerts` (the
//! cluster CA bundle, to anyone: k3s-io/k3s `pkg/server/router.go`, `cacerts` handler) and the API
//! server's `/version` (to anyone: the `system:public-info-viewer` ClusterRole), over TLS with a
//! serving certificate signed by that CA.
//!
//! Certificates: tests/fixtures/join/ (`ca.crt`, `server.crt` and `server.key` for 127.0.0.1 and
//! localhost; `other-ca.crt`, a CA of another cluster; see SOURCE.md there). It records the head
//! of every request, so tests can show that nothing secret reached it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/join")
        .join(name)
}

pub struct Supervisor {
    pub port: u16,
    /// Every request's bytes up to the end of its headers.
    requests: Arc<Mutex<Vec<String>>>,
}

impl Supervisor {
    /// Serves `cacerts` (the bundle) and `/version` with `git_version`, over TLS with the
    /// fixture serving certificate.
    pub fn start(cacerts: Vec<u8>, git_version: &str) -> Supervisor {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(fixture("server.crt"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let version = format!("{{\"major\":\"1\",\"minor\":\"35\",\"gitVersion\":\"{git_version}\"}}");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(tcp) = stream else { continue };
                let config = config.clone();
                let seen = seen.clone();
                let cacerts = cacerts.clone();
                let version = version.clone();
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    seen.lock().unwrap().push(head.clone());
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (status, body) = match path.as_str() {
                        "/cacerts" => ("200 OK", cacerts),
                        "/version" => ("200 OK", version.into_bytes()),
                        _ => ("404 Not Found", b"404 page not found\n".to_vec()),
                    };
                    let _ = write!(
                        tls,
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(&body);
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        Supervisor { port, requests }
    }

    /// The k3s supervisor of the fixture cluster: `/cacerts` is `ca.crt`.
    pub fn k3s() -> Supervisor {
        Supervisor::start(std::fs::read(fixture("ca.crt")).unwrap(), "v1.35.3+k3s1")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// A k3s token for the fixture cluster (its CA's hash) or, with `other`, for another cluster.
pub fn k3s_token(other: bool, password: &str) -> String {
    let file = if other { "other-ca.crt.sha256" } else { "ca.crt.sha256" };
    let hash = std::fs::read_to_string(fixture(file)).unwrap();
    format!("K10{}::server:{password}", hash.trim())
}
