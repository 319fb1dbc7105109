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
mod error;
mod http;
mod local;
mod partial;

pub use checksum_file::{LookupError, lookup as lookup_checksum, normalize_sha256};
pub use error::DownloadError;
pub use http::Downloader;
pub use local::copy_verified;
pub use partial::PARTIAL_MARKER;

use partial::random_u64;
use std::time::Duration;

/// Largest checksum file kstrap reads (real ones are a few KiB).
const MAX_CHECKSUM_FILE: u64 = 1024 * 1024;

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
}
