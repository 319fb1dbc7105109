//! Before a join token goes anywhere: does the server answer, and is it the cluster the token
//! names? A real TCP connection and TLS handshake, and the server's CA checked against what the
//! token carries. Nothing here sends the token or any other credential.
//!
//! k3s (k3s-io/k3s `pkg/clientaccess/token.go`, `getCACerts` and `validateCAHash`): fetch
//! `/cacerts` over TLS without verifying the server (the agent cannot know the CA yet), hash the
//! bundle as `hashCA` does and compare it with the token's hash, then connect again trusting only
//! that bundle: the server's certificate must chain to it. k3s does this inside the agent, after
//! the token is already configured; kstrap does it first, so a wrong server never gets a token.
//!
//! k0s (k0sproject/k0s v1.35.3+k0s.0 `pkg/token/kubeconfig.go`): the token is a kubeconfig with
//! the cluster CA in it; the server's certificate must chain to that CA.
//!
//! After the check, the server's version is read from `/version` on the verified connection,
//! without credentials (the `system:public-info-viewer` role grants it to everyone on a default
//! cluster). When that is refused the version stays unknown and `join` says so.

use crate::distro::join_token::{self, JoinToken};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// How long to wait to connect and for each answer (k3s's `defaultClientTimeout`).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// A CA bundle or a version document is far below this.
const MAX_BODY: usize = 1 << 20;

/// A server URL as `join` needs it: `https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

/// Parses `https://host[:port][/]` (port 6443 when absent, as the API server's).
pub fn parse_url(url: &str) -> Result<ServerUrl, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url:?} is not an https:// URL (k3s and k0s serve joins only over TLS)"))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.chars().any(char::is_whitespace) {
        return Err(format!("{url:?} is not of the form https://HOST[:PORT]"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed [ in the address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("{url:?} is not of the form https://HOST[:PORT]")),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{url:?}: port {p:?} is not a number from 1 to 65535"))?,
        None => 6443,
    };
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok(ServerUrl { host, port })
}

/// Why the server did not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("cannot reach {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("TLS with {url} failed: {why}")]
    Tls { url: String, why: String },
    #[error("{url}/cacerts did not give a CA bundle: {why}")]
    NoCaBundle { url: String, why: String },
    #[error(
        "{url} is not the cluster the token belongs to: its CA hashes to {served}, the token says {expected}; the token was not sent"
    )]
    CaMismatch {
        url: String,
        served: String,
        expected: String,
    },
    #[error("{url}: {why}")]
    Bundle { url: String, why: String },
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// `gitVersion` from `/version` (`v1.35.3+k3s1`), if the server told it.
    pub version: Option<String>,
    /// Why the version is unknown, if it is.
    pub version_note: Option<String>,
}

/// Checks the server against the token; sends no credential.
pub fn check(url: &ServerUrl, token: &JoinToken) -> Result<Checked, CheckError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shown = url.to_string();
    let ca_pem = match token {
        JoinToken::K3s { ca_hash } => {
            let (status, body) = get(url, insecure_config(), "/cacerts")?;
            if status != 200 {
                return Err(CheckError::NoCaBundle {
                    url: shown,
                    why: format!("HTTP {status} (is this a k3s server's supervisor port, usually 6443?)"),
                });
            }
            let served = join_token::hash_ca(&body).map_err(|e| CheckError::Bundle {
                url: shown.clone(),
                why: e.to_string(),
            })?;
            if &served != ca_hash {
                return Err(CheckError::CaMismatch {
                    url: shown,
                    served,
                    expected: ca_hash.clone(),
                });
            }
            body
        }
        JoinToken::K0s { ca_pem, .. } => ca_pem.clone(),
    };
    let verified = verified_config(&ca_pem).map_err(|why| CheckError::Bundle {
        url: shown.clone(),
        why,
    })?;
    let (status, body) = get(url, verified, "/version")?;
    if status != 200 {
        return Ok(Checked {
            version: None,
            version_note: Some(format!("{shown}/version answered HTTP {status} without credentials")),
        });
    }
    let version = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("gitVersion").and_then(|g| g.as_str()).map(str::to_string));
    Ok(Checked {
        version_note: version.is_none().then(|| format!("{shown}/version has no gitVersion")),
        version,
    })
}

/// One `GET path` over a fresh TLS connection; returns the status and body.
fn get(url: &ServerUrl, config: Arc<ClientConfig>, path: &str) -> Result<(u16, Vec<u8>), CheckError> {
    let shown = url.to_string();
    let unreachable = |why: String| CheckError::Unreachable {
        url: shown.clone(),
        why,
    };
    let tls = |why: String| CheckError::Tls {
        url: shown.clone(),
        why,
    };
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve {}: {e}", url.host)))?
        .collect();
    let mut last = String::from("no address");
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, TIMEOUT) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    let tcp = tcp.ok_or_else(|| unreachable(last))?;
    let _ = tcp.set_read_timeout(Some(TIMEOUT));
    let _ = tcp.set_write_timeout(Some(TIMEOUT));
    let name = ServerName::try_from(url.host.clone()).map_err(|e| tls(format!("bad server name: {e}")))?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| tls(e.to_string()))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let host_header = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: kstrap\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|e| tls(e.to_string()))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_BODY {
                    return Err(tls(format!("{path}: answer larger than {MAX_BODY} bytes")));
                }
            }
            // A server that closes without close_notify: what came is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(tls(e.to_string())),
        }
    }
    parse_response(&raw).map_err(|why| tls(format!("{path}: {why}")))
}

/// Status and body of an HTTP/1.1 response (Content-Length, chunked, or until close).
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP header")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("no HTTP status line")?;
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                length = v.trim().parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk")?;
            let size_text = String::from_utf8_lossy(&rest[..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "bad chunk size")?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                return Ok((status, out));
            }
            if rest.len() < size {
                return Err("truncated chunk".into());
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or(&[]);
        }
    }
    match length {
        Some(n) if body.len() >= n => Ok((status, body[..n].to_vec())),
        Some(_) => Err("truncated body".into()),
        None => Ok((status, body.to_vec())),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Trusts only the CA bundle `pem`: the server's certificate must chain to it.
fn verified_config(pem: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for der in join_token::certificates(pem) {
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| format!("the CA bundle holds a certificate that cannot be a root: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the CA bundle holds no certificate".into());
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Verifies nothing about the server (k3s's `insecureClient` for the first `/cacerts`): used only
/// to read the CA bundle, which is then checked against the token's hash. Handshake signatures
/// are still checked, so the peer holds the key of the certificate it showed.
fn insecure_config() -> Arc<ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(AcceptAnyCert(provider.clone()));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        });
    match config {
        Ok(c) => Arc::new(c),
        // The ring provider supports the default versions; never reached.
        Err(_) => Arc::new(
            ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))))
                .with_no_client_auth(),
        ),
    }
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://10.0.0.5:6443").unwrap(),
            ServerUrl {
                host: "10.0.0.5".into(),
                port: 6443
            }
        );
        assert_eq!(parse_url("https://srv/").unwrap().port, 6443);
        assert_eq!(
            parse_url("https://[fd00::1]:7443").unwrap().to_string(),
            "https://[fd00::1]:7443"
        );
        for bad in [
            "http://x:6443",
            "https://",
            "https://x:0",
            "https://x:6443/path",
            "https://u:p@x",
            "x:6443",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").unwrap(),
            (200, b"ok".to_vec())
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .unwrap(),
            (200, b"abcde".to_vec())
        );
        assert_eq!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n").unwrap().0, 404);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}
