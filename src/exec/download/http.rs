//! Downloads over http(s): one client, retries with backoff, each body streamed into a temporary
//! file while it is hashed, and checksum files fetched into memory.

use super::error::{DownloadError, Failure, error_chain, io_error};
use super::local::{already_in_place, ensure_parent, file_url_path, hex, parent_of, put_in_place, read_small_file};
use super::partial::{PartialGuard, partial_path};
use super::{DownloadProgress, Fetched, MAX_CHECKSUM_FILE, NoProgress, RetryPolicy, lookup_checksum, normalize_sha256};
use crate::plan::step::{ChecksumSource, Mode};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
