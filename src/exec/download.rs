//! Verified downloads and air-gap copies: how a release binary (or image archive) gets onto the
//! host without ever leaving a partial or unverified file where the system would run it.
//!
//! The rustup way: learn the expected sha256 first (pinned, or the release's checksum file over
//! http(s) or `file://` from an air-gap folder); skip everything if the destination already holds
//! it; otherwise stream into `.<name>.kstrap-partial-<random>` in the destination's folder while
//! hashing, check the hash, set the mode, fsync, and rename over the destination. The temporary
//! file is deleted on every error path (a guard deletes it on drop), so the existing destination is
//! untouched by any failure. Transient failures (connection errors, timeouts, stalls, 5xx, 429,
//! truncated bodies) are retried with exponential backoff and jitter, honouring `Retry-After`;
//! 4xx answers and checksum mismatches are not. Progress goes through `DownloadProgress`, which
//! only the CLI implements (`ui::download_bar`), so this module never prints.

mod checksum_file;
mod partial;

pub use checksum_file::{LookupError, lookup as lookup_checksum, normalize_sha256};
pub use partial::PARTIAL_MARKER;

use crate::plan::step::{ChecksumSource, Mode};
use futures::StreamExt;
use partial::{PartialGuard, partial_path, random_u64};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Largest checksum file kstrap reads (real ones are a few KiB).
const MAX_CHECKSUM_FILE: u64 = 1024 * 1024;
/// Buffer for hashing and copying local files.
const COPY_BUFFER: usize = 1024 * 1024;

/// Progress of one transfer; the CLI implements it (indicatif bar on a terminal, plain lines
/// otherwise), tests record it.
pub trait DownloadProgress: Send + Sync {
    /// A request was answered and the body starts; called again after each retry.
    fn started(&self, url: &str, total: Option<u64>);
    /// Bytes received so far in the current attempt.
    fn advanced(&self, bytes_so_far: u64);
    /// The last attempt failed with `why`; attempt number `attempt` (2 = first retry) starts
    /// after `wait`.
    fn retrying(&self, url: &str, attempt: u32, wait: Duration, why: &str);
    /// The whole file arrived (it is verified afterwards).
    fn finished(&self, url: &str, bytes: u64);
}

/// Progress that goes nowhere (checksum files, quiet callers).
pub struct NoProgress;

impl DownloadProgress for NoProgress {
    fn started(&self, _url: &str, _total: Option<u64>) {}
    fn advanced(&self, _bytes_so_far: u64) {}
    fn retrying(&self, _url: &str, _attempt: u32, _wait: Duration, _why: &str) {}
    fn finished(&self, _url: &str, _bytes: u64) {}
}

/// How hard to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1 is made).
    pub attempts: u32,
    /// Wait before the first retry; doubles for each further one, with jitter.
    pub base_delay: Duration,
    /// Longest computed wait between attempts.
    pub max_delay: Duration,
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for the response or for the next chunk of the body (a stall).
    pub read_timeout: Duration,
    /// Longest wait a server's `Retry-After` may impose.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `retry` (1 = the first): `base_delay * 2^(retry-1)`, capped at
    /// `max_delay`, then a random point in its upper half, so clients that failed together do
    /// not come back together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doubled = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX));
        let full = doubled.min(self.max_delay);
        let half = full / 2;
        let half_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = random_u64() % half_nanos.saturating_add(1);
        half + Duration::from_nanos(jitter)
    }
}

/// What `fetch_verified` and `copy_verified` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Lowercase hex sha256 of the file now at the destination.
    pub sha256: String,
    pub bytes: u64,
    /// False when the destination already held this file with this mode.
    pub changed: bool,
    /// False only for an air-gap copy whose plan found no checksum file.
    pub verified: bool,
}

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
    fn reason(&self) -> String {
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

    fn set_attempts(&mut self, n: u32) {
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
enum Failure {
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

fn io_error(path: &Path, action: &str) -> impl FnOnce(std::io::Error) -> DownloadError {
    let path = path.to_path_buf();
    let action = action.to_string();
    move |source| DownloadError::Io { path, action, source }
}

/// Downloads with one HTTP client and one retry policy.
#[derive(Debug, Clone)]
pub struct Downloader {
    client: reqwest::Client,
    policy: RetryPolicy,
}

impl Downloader {
    /// Installs ring as the TLS provider (if none is yet) and builds a client with the policy's
    /// connect and read timeouts and the user agent `kstrap/<version>`.
    pub fn new(policy: RetryPolicy) -> Result<Self, DownloadError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .read_timeout(policy.read_timeout)
            .user_agent(concat!("kstrap/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DownloadError::Client {
                description: error_chain(&e),
            })?;
        Ok(Downloader { client, policy })
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Make `dest` hold the verified file. If `dest` already has the expected sha256 →
    /// `Fetched { changed: false, .. }` without downloading the binary (its mode is corrected
    /// if needed, which counts as a change). Otherwise stream `url` into a temp file in dest's
    /// folder while hashing, check the sha256, set `mode`, fsync, and rename over `dest`.
    pub async fn fetch_verified(
        &self,
        url: &str,
        checksum: &ChecksumSource,
        dest: &Path,
        mode: Mode,
        progress: &dyn DownloadProgress,
    ) -> Result<Fetched, DownloadError> {
        require_http(url)?;
        let expected = self.expected_sha256(checksum).await?;
        if let Some(done) = already_in_place(dest, &expected, mode).await? {
            return Ok(done);
        }
        ensure_parent(dest).await?;
        let (guard, calculated, bytes) = self
            .with_retries(url, progress, || self.try_download(url, dest, mode, progress))
            .await?;
        progress.finished(url, bytes);
        if calculated != expected {
            return Err(DownloadError::ChecksumFailed {
                url: url.to_string(),
                expected,
                calculated,
            });
        }
        put_in_place(guard, dest).await?;
        Ok(Fetched {
            sha256: calculated,
            bytes,
            changed: true,
            verified: true,
        })
    }

    /// The expected sha256 (lowercase hex) for a `ChecksumSource`: `Pinned` → the value;
    /// `ReleaseFile` → fetch the checksum file (http(s):// or file:// for air-gap folders) and
    /// find `entry` in it.
    pub async fn expected_sha256(&self, checksum: &ChecksumSource) -> Result<String, DownloadError> {
        match checksum {
            ChecksumSource::Pinned { sha256 } => {
                normalize_sha256(sha256).ok_or_else(|| DownloadError::InvalidPinned { value: sha256.clone() })
            }
            ChecksumSource::ReleaseFile { url, entry } => {
                let bytes = if url.starts_with("file://") {
                    read_small_file(&file_url_path(url)?).await?
                } else {
                    require_http(url)?;
                    self.with_retries(url, &NoProgress, || self.try_get_small(url)).await?
                };
                let text = String::from_utf8_lossy(&bytes);
                match lookup_checksum(&text, entry) {
                    Ok(Some(sha)) => Ok(sha),
                    Ok(None) => Err(DownloadError::ChecksumEntryMissing {
                        checksum_url: url.clone(),
                        entry: entry.clone(),
                    }),
                    Err(problem) => Err(DownloadError::ChecksumFileInvalid {
                        checksum_url: url.clone(),
                        problem: format!("{problem} ({entry})"),
                    }),
                }
            }
        }
    }

    /// Runs `op` up to `policy.attempts` times, waiting between attempts.
    async fn with_retries<T, F, Fut>(
        &self,
        url: &str,
        progress: &dyn DownloadProgress,
        mut op: F,
    ) -> Result<T, DownloadError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let attempts = self.policy.attempts.max(1);
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(mut error)) => {
                    error.set_attempts(attempt);
                    return Err(error);
                }
                Err(Failure::Retry { mut error, after }) => {
                    if attempt >= attempts {
                        error.set_attempts(attempt);
                        return Err(error);
                    }
                    let wait = match after {
                        Some(after) => after.min(self.policy.max_retry_after),
                        None => self.policy.backoff(attempt),
                    };
                    progress.retrying(url, attempt + 1, wait, &error.reason());
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Sends a GET and sorts a failure into retry or not.
    async fn send(&self, url: &str) -> Result<reqwest::Response, Failure> {
        let response = match self.client.get(url).send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Err(Failure::Fatal(DownloadError::UnsupportedUrl {
                    url: url.to_string(),
                    why: error_chain(&e),
                }));
            }
            Err(e) => {
                let description = if e.is_timeout() {
                    format!("timed out: {}", error_chain(&e))
                } else if e.is_connect() {
                    format!("cannot connect: {}", error_chain(&e))
                } else {
                    error_chain(&e)
                };
                return Err(Failure::Retry {
                    error: DownloadError::Network {
                        url: url.to_string(),
                        description,
                        attempts: 1,
                    },
                    after: None,
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let code = status.as_u16();
        let error = DownloadError::Http {
            url: url.to_string(),
            status: code,
            hint: http_hint(code).to_string(),
            attempts: 1,
        };
        if code == 429 || status.is_server_error() {
            Err(Failure::Retry {
                error,
                after: retry_after(response.headers()),
            })
        } else {
            Err(Failure::Fatal(error))
        }
    }

    /// One attempt at the binary: a fresh temp file, streamed and hashed.
    async fn try_download(
        &self,
        url: &str,
        dest: &Path,
        mode: Mode,
        progress: &dyn DownloadProgress,
    ) -> Result<(PartialGuard, String, u64), Failure> {
        let response = self.send(url).await?;
        let total = response.content_length();
        progress.started(url, total);
        let dir = parent_of(dest);
        let guard = PartialGuard::new(partial_path(dest));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(guard.path())
            .await
            .map_err(io_error(dir, "create a temporary file in"))?;
        let mut writer = tokio::io::BufWriter::with_capacity(256 * 1024, file);
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        let mut body = body(self, url, total, response);
        while let Some(chunk) = body.next(got).await? {
            let chunk = chunk.as_ref();
            hasher.update(chunk);
            writer
                .write_all(chunk)
                .await
                .map_err(io_error(dir, "write a temporary file in"))?;
            got += chunk.len() as u64;
            progress.advanced(got);
        }
        writer
            .flush()
            .await
            .map_err(io_error(dir, "write a temporary file in"))?;
        let file = writer.into_inner();
        file.set_permissions(std::fs::Permissions::from_mode(mode.0))
            .await
            .map_err(io_error(dir, "set the mode of a temporary file in"))?;
        file.sync_all()
            .await
            .map_err(io_error(dir, "write a temporary file in"))?;
        Ok((guard, hex(&hasher.finalize()), got))
    }

    /// One attempt at a small file (a checksum file), kept in memory.
    async fn try_get_small(&self, url: &str) -> Result<Vec<u8>, Failure> {
        let response = self.send(url).await?;
        let total = response.content_length();
        let mut data = Vec::new();
        let mut body = body(self, url, total, response);
        while let Some(chunk) = body.next(data.len() as u64).await? {
            data.extend_from_slice(chunk.as_ref());
            if data.len() as u64 > MAX_CHECKSUM_FILE {
                return Err(Failure::Fatal(DownloadError::ChecksumFileInvalid {
                    checksum_url: url.to_string(),
                    problem: format!("larger than {MAX_CHECKSUM_FILE} bytes, so not a checksum file"),
                }));
            }
        }
        Ok(data)
    }
}

/// A response body read chunk by chunk, each read bounded by the read timeout.
struct Body<'a, S> {
    url: &'a str,
    total: Option<u64>,
    read_timeout: Duration,
    stream: S,
}

fn body<'a>(
    downloader: &Downloader,
    url: &'a str,
    total: Option<u64>,
    response: reqwest::Response,
) -> Body<'a, impl futures::Stream<Item = reqwest::Result<impl AsRef<[u8]>>> + Unpin> {
    Body {
        url,
        total,
        read_timeout: downloader.policy.read_timeout,
        stream: Box::pin(response.bytes_stream()),
    }
}

impl<S, B> Body<'_, S>
where
    S: futures::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    /// The next chunk, `None` at a complete end; `got` is what arrived so far.
    async fn next(&mut self, got: u64) -> Result<Option<B>, Failure> {
        let url = self.url.to_string();
        let truncated = |got: u64| match self.total {
            Some(expected_len) if got < expected_len => Some(DownloadError::Truncated {
                url: url.clone(),
                expected_len,
                got,
                attempts: 1,
            }),
            _ => None,
        };
        let retry = |error| Failure::Retry { error, after: None };
        match tokio::time::timeout(self.read_timeout, self.stream.next()).await {
            Err(_) => Err(retry(DownloadError::Stalled {
                url: url.clone(),
                timeout: self.read_timeout,
                attempts: 1,
            })),
            Ok(None) => match truncated(got) {
                Some(e) => Err(retry(e)),
                None => Ok(None),
            },
            Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
            Ok(Some(Err(e))) => {
                let error = if e.is_timeout() {
                    DownloadError::Stalled {
                        url: url.clone(),
                        timeout: self.read_timeout,
                        attempts: 1,
                    }
                } else if let Some(t) = truncated(got) {
                    t
                } else {
                    DownloadError::Network {
                        url: url.clone(),
                        description: format!("connection broke after {got} bytes: {}", error_chain(&e)),
                        attempts: 1,
                    }
                };
                Err(retry(error))
            }
        }
    }
}

/// Advice for an HTTP status that is not success.
fn http_hint(status: u16) -> &'static str {
    match status {
        404 | 410 => "no such release asset: check --distro-version / --release-mirror",
        401 | 403 => "the server refused access: check --release-mirror, or any proxy in between",
        429 => "the server is rate limiting downloads: wait a while, or use --release-mirror / --airgap",
        500..=599 => "the server failed: try again later, or use --release-mirror / --airgap",
        _ => "check --release-mirror and --distro-version",
    }
}

/// `Retry-After` in seconds (the HTTP-date form is read as "now": retry after the backoff).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The error and its causes, joined: reqwest's own message is often just "error sending request".
fn error_chain(error: &dyn std::error::Error) -> String {
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

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn require_http(url: &str) -> Result<(), DownloadError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(DownloadError::UnsupportedUrl {
            url: url.to_string(),
            why: "only http:// and https:// URLs are downloaded (file:// is for checksum files and air-gap copies)"
                .to_string(),
        })
    }
}

/// The local path of a `file://` URL (`file:///dir/f` or `file://localhost/dir/f`), percent-decoded.
fn file_url_path(url: &str) -> Result<PathBuf, DownloadError> {
    use std::os::unix::ffi::OsStringExt;
    let unsupported = |why: &str| DownloadError::UnsupportedUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    let rest = url
        .strip_prefix("file://")
        .ok_or_else(|| unsupported("not a file:// URL"))?;
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return Err(unsupported("a file:// URL must name an absolute path on this host"));
    }
    let raw = path.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let digits = raw.get(i + 1..i + 3).and_then(|d| std::str::from_utf8(d).ok());
            match digits.and_then(|d| u8::from_str_radix(d, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => return Err(unsupported("bad percent-encoding")),
            }
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Ok(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

async fn ensure_parent(dest: &Path) -> Result<(), DownloadError> {
    let dir = parent_of(dest);
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io_error(dir, "create the folder"))
}

/// A checksum file from an air-gap folder.
async fn read_small_file(path: &Path) -> Result<Vec<u8>, DownloadError> {
    let owned = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let file = std::fs::File::open(&owned)?;
        let mut data = Vec::new();
        file.take(MAX_CHECKSUM_FILE + 1).read_to_end(&mut data)?;
        Ok(data)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    let data = read.map_err(io_error(path, "read the air-gap checksum file"))?;
    if data.len() as u64 > MAX_CHECKSUM_FILE {
        return Err(DownloadError::ChecksumFileInvalid {
            checksum_url: path.display().to_string(),
            problem: format!("larger than {MAX_CHECKSUM_FILE} bytes, so not a checksum file"),
        });
    }
    Ok(data)
}

/// sha256 and size of a file, or `None` when it does not exist.
async fn hash_file(path: &Path) -> Result<Option<(String, u64)>, DownloadError> {
    let owned = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<Option<(String, u64)>> {
        let mut file = match std::fs::File::open(&owned) {
            Ok(f) => f,
            // Not there, or its folder is not there (a file in the way is reported when the
            // folder is created).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; COPY_BUFFER];
        let mut bytes = 0u64;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            bytes += n as u64;
        }
        Ok(Some((hex(&hasher.finalize()), bytes)))
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    result.map_err(io_error(path, "read the existing file"))
}

/// `Some` when `dest` already holds the file: its mode is corrected if needed.
async fn already_in_place(dest: &Path, expected: &str, mode: Mode) -> Result<Option<Fetched>, DownloadError> {
    let Some((sha256, bytes)) = hash_file(dest).await? else {
        return Ok(None);
    };
    if sha256 != expected {
        return Ok(None);
    }
    let changed = fix_mode(dest, mode).await?;
    Ok(Some(Fetched {
        sha256,
        bytes,
        changed,
        verified: true,
    }))
}

/// Sets `mode` on `path`; true when it was different.
async fn fix_mode(path: &Path, mode: Mode) -> Result<bool, DownloadError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(io_error(path, "read the mode of"))?;
    if meta.permissions().mode() & 0o7777 == mode.0 {
        return Ok(false);
    }
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode.0))
        .await
        .map_err(io_error(path, "set the mode of"))?;
    Ok(true)
}

/// Renames the finished temp file over `dest` and makes the rename durable.
async fn put_in_place(guard: PartialGuard, dest: &Path) -> Result<(), DownloadError> {
    tokio::fs::rename(guard.path(), dest)
        .await
        .map_err(io_error(dest, "put the file in place at"))?;
    guard.commit();
    let dir = parent_of(dest).to_path_buf();
    // Best effort: the file is complete either way; this only orders the rename on disk.
    let _ = tokio::task::spawn_blocking(move || std::fs::File::open(dir).and_then(|d| d.sync_all())).await;
    Ok(())
}

/// Air-gap: copy `source` to `dest`, verified the same way as a download. `checksum: None` means
/// the plan found no checksum file: the copy is made and `Fetched::verified` is false. Temp file
/// + rename, `mode`; an existing identical `dest` is left alone.
pub async fn copy_verified(
    downloader: &Downloader,
    source: &Path,
    checksum: Option<&ChecksumSource>,
    dest: &Path,
    mode: Mode,
) -> Result<Fetched, DownloadError> {
    let expected = match checksum {
        Some(c) => Some(downloader.expected_sha256(c).await?),
        None => None,
    };
    if let Some(expected) = &expected
        && let Some(done) = already_in_place(dest, expected, mode).await?
    {
        return Ok(done);
    }
    ensure_parent(dest).await?;
    let (guard, calculated, bytes) = copy_to_partial(source, dest, mode).await?;
    match &expected {
        Some(expected) if *expected != calculated => {
            return Err(DownloadError::ChecksumFailed {
                url: source.display().to_string(),
                expected: expected.clone(),
                calculated,
            });
        }
        Some(_) => {}
        None => {
            if let Some((existing, _)) = hash_file(dest).await?
                && existing == calculated
            {
                drop(guard);
                let changed = fix_mode(dest, mode).await?;
                return Ok(Fetched {
                    sha256: calculated,
                    bytes,
                    changed,
                    verified: false,
                });
            }
        }
    }
    put_in_place(guard, dest).await?;
    Ok(Fetched {
        sha256: calculated,
        bytes,
        changed: true,
        verified: expected.is_some(),
    })
}

/// Copies `source` into a fresh temp file beside `dest`, hashing it; mode set and fsynced.
async fn copy_to_partial(source: &Path, dest: &Path, mode: Mode) -> Result<(PartialGuard, String, u64), DownloadError> {
    let named = source.to_path_buf();
    let source = source.to_path_buf();
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<(PartialGuard, String, u64), DownloadError> {
        let mut input = std::fs::File::open(&source).map_err(io_error(&source, "read the air-gap file"))?;
        let dir = parent_of(&dest);
        let guard = PartialGuard::new(partial_path(&dest));
        let mut output = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(guard.path())
            .map_err(io_error(dir, "create a temporary file in"))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; COPY_BUFFER];
        let mut bytes = 0u64;
        loop {
            let n = input
                .read(&mut buffer)
                .map_err(io_error(&source, "read the air-gap file"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            output
                .write_all(&buffer[..n])
                .map_err(io_error(dir, "write a temporary file in"))?;
            bytes += n as u64;
        }
        output
            .set_permissions(std::fs::Permissions::from_mode(mode.0))
            .map_err(io_error(dir, "set the mode of a temporary file in"))?;
        output.sync_all().map_err(io_error(dir, "write a temporary file in"))?;
        Ok((guard, hex(&hasher.finalize()), bytes))
    })
    .await
    .map_err(|e| DownloadError::Io {
        path: named,
        action: "finish copying the air-gap file".to_string(),
        source: std::io::Error::other(e),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_the_upper_half() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(3),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(
                first >= Duration::from_millis(250) && first <= Duration::from_millis(500),
                "{first:?}"
            );
            let third = policy.backoff(3);
            assert!(
                third >= Duration::from_millis(1000) && third <= Duration::from_millis(2000),
                "{third:?}"
            );
            let capped = policy.backoff(30);
            assert!(
                capped >= Duration::from_millis(1500) && capped <= Duration::from_secs(3),
                "{capped:?}"
            );
        }
    }

    #[test]
    fn file_urls_decode_to_paths() {
        assert_eq!(
            file_url_path("file:///srv/air%20gap/sha256sums.txt").unwrap(),
            PathBuf::from("/srv/air gap/sha256sums.txt")
        );
        assert_eq!(
            file_url_path("file://localhost/a/k0s-v1.33.4%2Bk0s.0-amd64").unwrap(),
            PathBuf::from("/a/k0s-v1.33.4+k0s.0-amd64")
        );
        for bad in [
            "file://host/a",
            "file://relative",
            "file:///a%2",
            "file:///a%zz",
            "http://x/a",
        ] {
            assert!(
                matches!(file_url_path(bad), Err(DownloadError::UnsupportedUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
        // sha256 of the empty string
        assert_eq!(
            hex(&Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn pinned_values_are_normalized_or_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let d = Downloader::new(RetryPolicy::default()).unwrap();
        let upper = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        let got = rt
            .block_on(d.expected_sha256(&ChecksumSource::Pinned { sha256: upper.into() }))
            .unwrap();
        assert_eq!(got, upper.to_ascii_lowercase());
        let err = rt
            .block_on(d.expected_sha256(&ChecksumSource::Pinned { sha256: "abc".into() }))
            .unwrap_err();
        assert!(err.to_string().contains("\"abc\""), "{err}");
    }
}
