//! Join tokens, as the distributions write them, and what each says about the server's CA.
//!
//! The token is a secret: nothing here prints it, and `JoinToken`'s `Debug` shows only what is
//! not secret (the CA hash, the server URL).
//!
//! - k3s (k3s-io/k3s `pkg/clientaccess/token.go`, `parseToken`, `hashCA`; read from the stored
//!   blob of that file, the tag v1.35.3+k3s1 itself being beyond the snapshot limit — see
//!   tests/fixtures/upstream/join/SOURCE.md): `K10<ca hash>::<user>:<password>` or
//!   `K10<ca hash>::<bootstrap token>`. The hash is 64 hex digits (`caHashLength = sha256.Size
//!   * 2`): the sha256 of the CA bundle the server serves at `/cacerts` — of its literal bytes
//!   when it holds one certificate, else of the DER of the root the first certificate chains to.
//!   A token without the `K10` prefix carries no hash; k3s then only warns, kstrap refuses it.
//! - k0s (k0sproject/k0s v1.35.3+k0s.0 `pkg/token/joinencode.go` `JoinEncode`,
//!   `joindecode.go` `DecodeJoinToken`, `kubeconfig.go` `GenerateKubeconfig`): standard base64
//!   of a gzip stream of a kubeconfig whose cluster holds `server` (the API address) and
//!   `certificate-authority-data` (the cluster CA) and whose user `kubelet-bootstrap` holds a
//!   bootstrap token.

use super::Distro;
use sha2::{Digest, Sha256};

/// The `K10` prefix of a full k3s token (`tokenPrefix`).
const K3S_PREFIX: &str = "K10";
/// Hex digits of a sha256 (`caHashLength`).
const CA_HASH_LEN: usize = 64;
/// A k0s token inflates to a kubeconfig: far below this.
const K0S_MAX_INFLATED: u64 = 1 << 20;

/// What a join token says before it is used.
#[derive(Clone, PartialEq, Eq)]
pub enum JoinToken {
    /// k3s: the CA hash the server's `/cacerts` must match.
    K3s { ca_hash: String },
    /// k0s: the API server URL and the CA (PEM) its serving certificate must chain to.
    K0s { server: String, ca_pem: Vec<u8> },
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinToken::K3s { ca_hash } => write!(f, "K3s {{ ca_hash: {ca_hash} }}"),
            JoinToken::K0s { server, .. } => write!(f, "K0s {{ server: {server} }}"),
        }
    }
}

impl JoinToken {
    pub fn distro(&self) -> Distro {
        match self {
            JoinToken::K3s { .. } => Distro::K3s,
            JoinToken::K0s { .. } => Distro::K0s,
        }
    }
}

/// Why a token cannot be used. The messages never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token file is empty")]
    Empty,
    #[error(
        "the token carries no CA hash (it does not start with K10<64 hex digits>::), so the server cannot be checked before the token is sent to it"
    )]
    NoCaHash,
    #[error("the token's CA hash is not 64 hex digits")]
    BadHash,
    #[error("the token has no credentials after its CA hash (K10<hash>::<user>:<password>)")]
    NoCredentials,
    #[error("the token is neither a k3s token (K10…) nor a k0s join token (base64 of a gzipped kubeconfig): {0}")]
    Unknown(String),
    #[error("the k0s join token's kubeconfig {0}")]
    K0sKubeconfig(String),
}

/// Parses a token as read from its file (surrounding whitespace ignored, as both distributions'
/// token-file readers trim it).
pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if let Some(rest) = token.strip_prefix(K3S_PREFIX) {
        return parse_k3s(rest);
    }
    match parse_k0s(token) {
        Ok(t) => Ok(t),
        Err(TokenError::Unknown(why)) => {
            // A bare k3s password or bootstrap token ("<user>:<password>", "abcdef.0123…"):
            // k3s accepts it with a warning; kstrap cannot check the server with it.
            if token.contains(':') || token.contains('.') {
                Err(TokenError::NoCaHash)
            } else {
                Err(TokenError::Unknown(why))
            }
        }
        Err(e) => Err(e),
    }
}

fn parse_k3s(rest: &str) -> Result<JoinToken, TokenError> {
    let Some((hash, creds)) = rest.split_once("::") else {
        return Err(TokenError::NoCaHash);
    };
    if hash.is_empty() {
        return Err(TokenError::NoCaHash);
    }
    if hash.len() != CA_HASH_LEN || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::BadHash);
    }
    // `<user>:<password>` with a non-empty password, or a bootstrap token `<id>.<secret>`.
    let ok = match creds.split_once(':') {
        Some((_, password)) => !password.is_empty(),
        None => creds.contains('.') && !creds.starts_with('.') && !creds.ends_with('.'),
    };
    if !ok {
        return Err(TokenError::NoCredentials);
    }
    Ok(JoinToken::K3s {
        ca_hash: hash.to_ascii_lowercase(),
    })
}

fn parse_k0s(token: &str) -> Result<JoinToken, TokenError> {
    use base64::Engine;
    use std::io::Read;
    let gz = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|e| TokenError::Unknown(format!("not base64 ({e})")))?;
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .take(K0S_MAX_INFLATED)
        .read_to_end(&mut text)
        .map_err(|e| TokenError::Unknown(format!("not gzip ({e})")))?;
    let text = String::from_utf8(text).map_err(|_| TokenError::K0sKubeconfig("is not UTF-8 text".into()))?;
    let kc = ::kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|_| TokenError::K0sKubeconfig("is not a kubeconfig".into()))?;
    let cluster = kc
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| TokenError::K0sKubeconfig("names no cluster".into()))?;
    let server = cluster
        .server
        .clone()
        .ok_or_else(|| TokenError::K0sKubeconfig("names no server".into()))?;
    let ca = cluster
        .certificate_authority_data
        .as_deref()
        .ok_or_else(|| TokenError::K0sKubeconfig("holds no certificate-authority-data".into()))?;
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(ca.trim())
        .map_err(|_| TokenError::K0sKubeconfig("has certificate-authority-data that is not base64".into()))?;
    if certificates(&ca_pem).is_empty() {
        return Err(TokenError::K0sKubeconfig(
            "has certificate-authority-data without a PEM certificate".into(),
        ));
    }
    Ok(JoinToken::K0s { server, ca_pem })
}

/// The DER of each `CERTIFICATE` block of a PEM bundle.
pub fn certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect()
}

/// Why a CA bundle cannot be hashed the way k3s hashes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("the server's CA bundle holds no PEM certificate")]
    NoCertificate,
    #[error(
        "the server's CA bundle holds {0} certificates; kstrap checks a single-certificate cluster CA (what k3s generates) and cannot yet find the root of a chain"
    )]
    Chain(usize),
}

/// k3s's `hashCA` for a bundle of one certificate: the hex sha256 of the bundle's literal bytes.
/// For a longer bundle k3s hashes the DER of the root the first certificate verifies to; kstrap
/// refuses such a bundle rather than guess its root.
pub fn hash_ca(bundle: &[u8]) -> Result<String, HashError> {
    match certificates(bundle).len() {
        0 => Err(HashError::NoCertificate),
        1 => Ok(hex(&Sha256::digest(bundle))),
        n => Err(HashError::Chain(n)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = include_str!("../../tests/fixtures/join/ca.crt");

    fn k0s_token(kubeconfig: &str) -> String {
        use base64::Engine;
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(kubeconfig.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
    }

    #[test]
    fn k3s_full_token_gives_its_hash_and_hides_the_password() {
        let hash = "ab".repeat(32);
        let t = parse(&format!("K10{hash}::server:s3cret-password\n")).unwrap();
        assert_eq!(t, JoinToken::K3s { ca_hash: hash.clone() });
        assert_eq!(t.distro(), Distro::K3s);
        assert!(!format!("{t:?}").contains("s3cret"));
        // A bootstrap token after the hash (k3s `kubeadm.NewBootstrapTokenString`).
        assert!(parse(&format!("K10{hash}::abcdef.0123456789abcdef")).is_ok());
    }

    #[test]
    fn k3s_tokens_without_a_usable_hash_are_refused() {
        assert_eq!(parse("K10::server:pw"), Err(TokenError::NoCaHash));
        assert_eq!(parse("server:pw"), Err(TokenError::NoCaHash));
        assert_eq!(parse("abcdef.0123456789abcdef"), Err(TokenError::NoCaHash));
        assert_eq!(parse("K10abc::server:pw"), Err(TokenError::BadHash));
        assert_eq!(
            parse(&format!("K10{}::server:", "a".repeat(64))),
            Err(TokenError::NoCredentials)
        );
        assert_eq!(parse("  \n"), Err(TokenError::Empty));
        assert!(matches!(parse("hello"), Err(TokenError::Unknown(_))));
    }

    #[test]
    fn hash_of_a_single_certificate_is_the_sha256_of_the_file() {
        // `sha256sum tests/fixtures/join/ca.crt`, as k3s's `hashCA` computes it for one cert.
        let expected = include_str!("../../tests/fixtures/join/ca.crt.sha256").trim();
        assert_eq!(hash_ca(CA.as_bytes()).unwrap(), expected);
        let two = format!("{CA}{CA}");
        assert_eq!(hash_ca(two.as_bytes()), Err(HashError::Chain(2)));
        assert_eq!(hash_ca(b"nothing"), Err(HashError::NoCertificate));
    }

    #[test]
    fn k0s_token_gives_server_and_ca() {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(CA);
        // The shape of k0s `GenerateKubeconfig` (pkg/token/kubeconfig.go at v1.35.3+k0s.0).
        let kc = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k0s\n  cluster:\n    server: https://10.0.0.5:6443\n    certificate-authority-data: {ca}\ncontexts:\n- name: k0s\n  context:\n    cluster: k0s\n    user: kubelet-bootstrap\ncurrent-context: k0s\nusers:\n- name: kubelet-bootstrap\n  user:\n    token: abcdef.0123456789abcdef\n"
        );
        let t = parse(&k0s_token(&kc)).unwrap();
        assert_eq!(
            t,
            JoinToken::K0s {
                server: "https://10.0.0.5:6443".into(),
                ca_pem: CA.as_bytes().to_vec()
            }
        );
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
        let no_ca = "apiVersion: v1\nkind: Config\nclusters:\n- name: k0s\n  cluster:\n    server: https://x:6443\n";
        assert!(matches!(parse(&k0s_token(no_ca)), Err(TokenError::K0sKubeconfig(_))));
    }
}
