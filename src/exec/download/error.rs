//! Why a download or air-gap copy failed: the error people see (with what to do), and whether an
//! attempt is worth repeating.

use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "sha256 of {url} does not match the expected value\n  expected:   {expected}\n  calculated: {calculated}\n  the file was not installed\n  fix: run again (the transfer may have been damaged); if it repeats, the mirror or air-gap folder holds a different file than its checksum file names"
    )]
    ChecksumFailed {
        url: String,
        expected: String,
        calculated: String,
    },
    #[error("{url}: HTTP {status}{}\n  fix: {hint}", tries(*.attempts))]
    Http {
        url: String,
        status: u16,
        hint: String,
        attempts: u32,
    },
    #[error(
        "{url}: the server announced {expected_len} bytes but the connection ended after {got}{}\n  fix: check the network connection, or use --release-mirror / --airgap",
        tries(*.attempts)
    )]
    Truncated {
        url: String,
        expected_len: u64,
        got: u64,
        attempts: u32,
    },
    #[error(
        "{url}: {description}{}\n  fix: check the network connection and proxy settings, or use --release-mirror / --airgap",
        tries(*.attempts)
    )]
    Network {
        url: String,
        description: String,
        attempts: u32,
    },
    #[error(
        "{url}: no data for {}s, the transfer stalled{}\n  fix: check the network connection, or use --release-mirror / --airgap",
        .timeout.as_secs_f32(), tries(*.attempts)
    )]
    Stalled {
        url: String,
        timeout: Duration,
        attempts: u32,
    },
    #[error(
        "checksum file {checksum_url} has no entry for {entry:?}\n  fix: check --distro-version and --release-mirror (or that the air-gap folder holds the checksum file of the same release)"
    )]
    ChecksumEntryMissing { checksum_url: String, entry: String },
    #[error(
        "checksum file {checksum_url}: {problem}\n  fix: use the checksum file published with the release, unmodified"
    )]
    ChecksumFileInvalid { checksum_url: String, problem: String },
    #[error("pinned sha256 {value:?} is not 64 hexadecimal digits\n  fix: correct the pinned checksum")]
    InvalidPinned { value: String },
    #[error("cannot fetch {url:?}: {why}")]
    UnsupportedUrl { url: String, why: String },
    #[error("cannot build the HTTP client: {description}")]
    Client { description: String },
    #[error("cannot {action} {}: {source}\n  fix: {}", .path.display(), io_hint(.source, .action))]
    Io {
        path: PathBuf,
        action: String,
        source: std::io::Error,
    },
}

fn tries(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (tried {attempts} times)")
    } else {
        String::new()
    }
}

fn io_hint(source: &std::io::Error, action: &str) -> &'static str {
    use std::io::ErrorKind;
    match source.kind() {
        ErrorKind::PermissionDenied => "run kstrap as root (sudo), or check the folder's permissions",
        ErrorKind::NotFound if action.contains("air-gap") => {
            "put the release file in the air-gap folder given with --airgap"
        }
        ErrorKind::NotFound => "check that the path exists",
        ErrorKind::ReadOnlyFilesystem => "the file system is read-only; remount it read-write",
        ErrorKind::StorageFull => "free some disk space and run again",
        ErrorKind::AlreadyExists | ErrorKind::NotADirectory => {
            "a file is in the way where a folder is needed; move it aside"
        }
        ErrorKind::IsADirectory => "a folder is in the way where the file goes; move it aside",
        _ => "check the path and its permissions",
    }
}

impl DownloadError {
    /// One line for a retry notice.
    pub(super) fn reason(&self) -> String {
        match self {
            DownloadError::Http { status, .. } => format!("HTTP {status}"),
            DownloadError::Truncated { expected_len, got, .. } => {
                format!("connection ended after {got} of {expected_len} bytes")
            }
            DownloadError::Network { description, .. } => description.clone(),
            DownloadError::Stalled { timeout, .. } => format!("no data for {}s", timeout.as_secs_f32()),
            other => other.to_string(),
        }
    }

    pub(super) fn set_attempts(&mut self, n: u32) {
        match self {
            DownloadError::Http { attempts, .. }
            | DownloadError::Truncated { attempts, .. }
            | DownloadError::Network { attempts, .. }
            | DownloadError::Stalled { attempts, .. } => *attempts = n,
            _ => {}
        }
    }
}

/// The outcome of one failed attempt.
pub(super) enum Failure {
    /// Worth another attempt; `after` is the server's `Retry-After`.
    Retry {
        error: DownloadError,
        after: Option<Duration>,
    },
    Fatal(DownloadError),
}

impl From<DownloadError> for Failure {
    fn from(e: DownloadError) -> Self {
        Failure::Fatal(e)
    }
}

pub(super) fn io_error(path: &Path, action: &str) -> impl FnOnce(std::io::Error) -> DownloadError {
    let path = path.to_path_buf();
    let action = action.to_string();
    move |source| DownloadError::Io { path, action, source }
}

/// The error and its causes, joined: reqwest's own message is often just "error sending request".
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}
