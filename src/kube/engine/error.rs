//! Why the stack engine stopped ([`ApplyError`], with its exit codes) and building a client from
//! a kubeconfig, whose errors name the file and never quote it.

use std::path::Path;
use std::time::Duration;

use crate::kube::diagnose::Diagnosis;

/// Why applying stopped. [`exit_code`](ApplyError::exit_code) maps each to kstrap's exit codes.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("stage {stage}: not ready after {}s: {}", timeout.as_secs(), names(not_ready))]
    Timeout {
        stage: String,
        timeout: Duration,
        not_ready: Vec<Diagnosis>,
    },
    #[error("stage {stage}: failed: {}", names(failed))]
    Failed { stage: String, failed: Vec<Diagnosis> },
    #[error(
        "{object}: field {field} is owned by field manager \"{manager}\"; rerun with --force-conflicts to take it over, or remove the field from the manifest"
    )]
    Conflict {
        object: String,
        manager: String,
        field: String,
    },
    #[error("kubeconfig {file}: {message}")]
    Kubeconfig { file: String, message: String },
    #[error(
        "{source_file} document {document} (line {line}): the cluster has no kind {kind} in {api_version}; is its CustomResourceDefinition (or the operator that installs it) missing?"
    )]
    UnknownKind {
        source_file: String,
        document: usize,
        line: usize,
        api_version: String,
        kind: String,
    },
    #[error("{source_file} document {document} (line {line}): {message}")]
    Invalid {
        source_file: String,
        document: usize,
        line: usize,
        message: String,
    },
    #[error("inventory {parent}: {message}")]
    Inventory { parent: String, message: String },
    #[error("{object}: {message}")]
    Api { object: String, message: String },
    #[error("cannot reach the cluster: {message}")]
    Network { message: String },
    #[error("interrupted during stage {stage}; not done: {}", left.join(", "))]
    Interrupted { stage: String, left: Vec<String> },
}

fn names(d: &[Diagnosis]) -> String {
    d.iter()
        .map(|d| format!("{} ({})", d.object, d.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ApplyError {
    /// 4 timed out, 2 bad input (kubeconfig, manifests), 1 everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ApplyError::Timeout { .. } => 4,
            ApplyError::Kubeconfig { .. } | ApplyError::Invalid { .. } => 2,
            _ => 1,
        }
    }

    /// The objects not ready, for timeouts and failures.
    pub fn diagnoses(&self) -> &[Diagnosis] {
        match self {
            ApplyError::Timeout { not_ready, .. } => not_ready,
            ApplyError::Failed { failed, .. } => failed,
            _ => &[],
        }
    }
}

/// A client for the cluster of a kubeconfig: `kubeconfig` if given, else `$KUBECONFIG` or
/// `~/.kube/config` (kube's own loader); `context` instead of the current one. Errors name the
/// file and never show its contents.
pub async fn client_from(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<::kube::Client, ApplyError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = ::kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let file = match kubeconfig {
        Some(p) => p.display().to_string(),
        None => match std::env::var_os(crate::env::KUBECONFIG) {
            Some(v) if !crate::kube::kubeconfig_list::entries(&v).is_empty() => crate::kube::kubeconfig_list::shown(&v),
            _ => "~/.kube/config".to_string(),
        },
    };
    let err = |message: String| ApplyError::Kubeconfig {
        file: file.clone(),
        message,
    };
    // The files to read: --kubeconfig, else KUBECONFIG's entries that exist (kubectl skips
    // missing ones), else kube's default (~/.kube/config). Each error names its own file.
    let files: Vec<std::path::PathBuf> = match kubeconfig {
        Some(p) => vec![p.to_path_buf()],
        None => match std::env::var_os(crate::env::KUBECONFIG) {
            Some(list) if !crate::kube::kubeconfig_list::entries(&list).is_empty() => {
                let (found, missing) = crate::kube::kubeconfig_list::existing(&list);
                if found.is_empty() {
                    return Err(err(format!(
                        "none of the {} files KUBECONFIG lists exists; pass --kubeconfig FILE, or set KUBECONFIG to the cluster's kubeconfig",
                        missing.len()
                    )));
                }
                found
            }
            _ => Vec::new(),
        },
    };
    let mut config = if files.is_empty() {
        ::kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| err(kubeconfig_message(&e)))?
    } else {
        let mut merged = ::kube::config::Kubeconfig::default();
        for path in &files {
            let one = |message: String| ApplyError::Kubeconfig {
                file: path.display().to_string(),
                message,
            };
            let text = crate::limits::read_text(path).map_err(|e| one(format!("cannot read it: {e}")))?;
            crate::kube::kubeconfig_list::remember_credentials(&text);
            let kc = ::kube::config::Kubeconfig::read_from(path).map_err(|e| one(kubeconfig_message(&e)))?;
            merged = merged.merge(kc).map_err(|e| one(kubeconfig_message(&e)))?;
        }
        ::kube::Config::from_custom_kubeconfig(merged, &options)
            .await
            .map_err(|e| err(kubeconfig_message(&e)))?
    };
    crate::kube::bypass_proxy(&mut config);
    ::kube::Client::try_from(config).map_err(|e| err(format!("cannot build a client: {e}")))
}

/// A kubeconfig error in words that never quote the file (it holds credentials).
fn kubeconfig_message(e: &::kube::config::KubeconfigError) -> String {
    use ::kube::config::KubeconfigError as K;
    match e {
        K::ReadConfig(io, _) => format!("cannot read it: {io}"),
        K::Parse(_) => "not a valid kubeconfig (YAML parse error); check the file with `kubectl config view`".into(),
        K::CurrentContextNotSet => "no current context; pass --context NAME".into(),
        K::LoadContext(name) => format!("no context named {name:?}; see `kubectl config get-contexts`"),
        K::LoadClusterOfContext(name) => format!("the cluster of context {name:?} is not defined"),
        K::FindPath => "no kubeconfig found; pass --kubeconfig FILE or set KUBECONFIG".into(),
        K::MissingClusterUrl => "the selected cluster has no server URL".into(),
        K::ParseClusterUrl(_) => "the selected cluster's server URL is not valid".into(),
        K::LoadCertificateAuthority(_) => "cannot load the certificate authority data".into(),
        K::LoadClientCertificate(_) => "cannot load the client certificate".into(),
        K::LoadClientKey(_) => "cannot load the client key".into(),
        K::ParseCertificates(_) => "the certificates are not valid PEM".into(),
        _ => "not usable (kind or version mismatch, or bad proxy settings)".into(),
    }
}
