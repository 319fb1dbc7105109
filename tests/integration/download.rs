//! Verified downloads and air-gap copies against real HTTP on 127.0.0.1 (the release server test
//! double), real files in temp dirs and real sha256: happy path, skip when already in place,
//! checksum mismatch, HTTP errors, truncated/closed/slow/stalled bodies, retries, Retry-After,
//! checksum-file entries, air-gap copies and unwritable destinations.

use crate::release_server::{Behaviour, ReleaseServer, encode_segment, fake_binary, sha256_hex};
use kstrap::distro::{Distro, Version, binary_asset};
use kstrap::exec::download::{
    DownloadError, DownloadProgress, Downloader, Fetched, PARTIAL_MARKER, RetryPolicy, copy_verified,
};
use kstrap::plan::step::{ChecksumSource, Mode};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Started(Option<u64>),
    Advanced(u64),
    Retrying { attempt: u32, wait: Duration, why: String },
    Finished(u64),
}

/// Records progress events for assertions.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
    fn retries(&self) -> Vec<(u32, Duration, String)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Retrying { attempt, wait, why } => Some((attempt, wait, why)),
                _ => None,
            })
            .collect()
    }
}

impl DownloadProgress for Recorder {
    fn started(&self, _url: &str, total: Option<u64>) {
        self.0.lock().unwrap().push(Event::Started(total));
    }
    fn advanced(&self, bytes_so_far: u64) {
        self.0.lock().unwrap().push(Event::Advanced(bytes_so_far));
    }
    fn retrying(&self, _url: &str, attempt: u32, wait: Duration, why: &str) {
        self.0.lock().unwrap().push(Event::Retrying {
            attempt,
            wait,
            why: why.to_string(),
        });
    }
    fn finished(&self, _url: &str, bytes: u64) {
        self.0.lock().unwrap().push(Event::Finished(bytes));
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(300),
        max_retry_after: Duration::from_secs(5),
    }
}

fn downloader() -> Downloader {
    Downloader::new(policy()).unwrap()
}

fn sums(url: &str, entry: &str) -> ChecksumSource {
    ChecksumSource::ReleaseFile {
        url: url.to_string(),
        entry: entry.to_string(),
    }
}

/// Names of temporary files left in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(PARTIAL_MARKER))
                .collect()
        })
        .unwrap_or_default()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

const EXEC: Mode = Mode(0o755);

#[tokio::test]
async fn k3s_happy_path_verifies_installs_and_reports_progress_in_order() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    // The planner's URLs are the ones the layout serves.
    let version = Version::parse(Distro::K3s, "v1.33.4+k3s1").unwrap();
    let (url, checksum) = binary_asset(Distro::K3s, &version, "x86_64", &server.url()).unwrap();
    assert_eq!(url, release.binary_url);
    assert_eq!(checksum, sums(&release.sums_url, "k3s"));

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("usr/local/bin/k3s"); // parent folders do not exist yet
    let rec = Recorder::default();
    let fetched = downloader()
        .fetch_verified(&url, &checksum, &dest, EXEC, &rec)
        .await
        .unwrap();

    let len = release.bytes.len() as u64;
    assert_eq!(
        fetched,
        Fetched {
            sha256: release.sha256.clone(),
            bytes: len,
            changed: true,
            verified: true
        }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), release.bytes);
    assert_eq!(sha256_hex(&std::fs::read(&dest).unwrap()), release.sha256);
    assert_eq!(mode_of(&dest), 0o755);
    assert!(leftovers(dest.parent().unwrap()).is_empty());
    assert_eq!(server.hits(&release.binary_path), 1);
    assert_eq!(server.hits(&release.sums_path), 1);
    assert!(
        server.user_agents().iter().all(|ua| ua.starts_with("kstrap/")),
        "{:?}",
        server.user_agents()
    );

    let events = rec.events();
    assert_eq!(events.first(), Some(&Event::Started(Some(len))));
    assert_eq!(events.last(), Some(&Event::Finished(len)));
    let advanced: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Advanced(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert!(!advanced.is_empty());
    assert!(advanced.windows(2).all(|w| w[0] < w[1]), "not increasing: {advanced:?}");
    assert_eq!(advanced.last(), Some(&len));
    assert_eq!(events.len(), advanced.len() + 2, "no retries expected: {events:?}");
}

#[tokio::test]
async fn k0s_star_entries_and_plus_in_the_version_work() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k0s", "v1.33.4+k0s.0", "amd64");
    assert!(
        release
            .sums
            .contains(&format!("{} *k0s-v1.33.4+k0s.0-amd64\n", release.sha256))
    );
    assert!(
        release
            .binary_path
            .ends_with("/v1.33.4%2Bk0s.0/k0s-v1.33.4%2Bk0s.0-amd64")
    );
    let version = Version::parse(Distro::K0s, "v1.33.4+k0s.0").unwrap();
    let (url, checksum) = binary_asset(Distro::K0s, &version, "x86_64", &server.url()).unwrap();
    assert_eq!(url, release.binary_url);
    assert_eq!(checksum, sums(&release.sums_url, "k0s-v1.33.4+k0s.0-amd64"));

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("k0s");
    let fetched = downloader()
        .fetch_verified(&url, &checksum, &dest, EXEC, &Recorder::default())
        .await
        .unwrap();
    assert_eq!(fetched.sha256, release.sha256);
    assert_eq!(std::fs::read(&dest).unwrap(), release.bytes);
}

#[tokio::test]
async fn a_correct_destination_is_not_downloaded_again() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("k3s");
    std::fs::write(&dest, &release.bytes).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rec = Recorder::default();
    let checksum = sums(&release.sums_url, &release.entry);

    let fetched = downloader()
        .fetch_verified(&release.binary_url, &checksum, &dest, EXEC, &rec)
        .await
        .unwrap();
    assert!(!fetched.changed);
    assert!(fetched.verified);
    assert_eq!(fetched.sha256, release.sha256);
    assert_eq!(server.hits(&release.binary_path), 0);
    assert_eq!(server.hits(&release.sums_path), 1);
    assert!(rec.events().is_empty());

    // Same bytes, wrong mode: the mode is fixed (a change), still without a download.
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();
    let fetched = downloader()
        .fetch_verified(&release.binary_url, &checksum, &dest, EXEC, &rec)
        .await
        .unwrap();
    assert!(fetched.changed);
    assert_eq!(mode_of(&dest), 0o755);
    assert_eq!(server.hits(&release.binary_path), 0);
}

#[tokio::test]
async fn a_checksum_mismatch_installs_nothing_and_keeps_the_old_file() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    let wrong = sha256_hex(b"a different binary");
    server.add(&release.sums_path, format!("{wrong}  k3s\n"));
    let dir = tempfile::tempdir().unwrap();
    let checksum = sums(&release.sums_url, "k3s");

    // No previous file: none afterwards.
    let dest = dir.path().join("k3s");
    let err = downloader()
        .fetch_verified(&release.binary_url, &checksum, &dest, EXEC, &Recorder::default())
        .await
        .unwrap_err();
    match &err {
        DownloadError::ChecksumFailed {
            url,
            expected,
            calculated,
        } => {
            assert_eq!(url, &release.binary_url);
            assert_eq!(expected, &wrong);
            assert_eq!(calculated, &release.sha256);
        }
        other => panic!("expected ChecksumFailed, got {other:?}"),
    }
    let message = err.to_string();
    for part in [release.binary_url.as_str(), &wrong, &release.sha256, "not installed"] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
    assert!(!dest.exists());
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
    // A mismatch is not retried.
    assert_eq!(server.hits(&release.binary_path), 1);

    // A previous file stays as it was.
    std::fs::write(&dest, b"previous k3s").unwrap();
    downloader()
        .fetch_verified(&release.binary_url, &checksum, &dest, EXEC, &Recorder::default())
        .await
        .unwrap_err();
    assert_eq!(std::fs::read(&dest).unwrap(), b"previous k3s");
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test]
async fn not_found_is_an_http_error_with_a_hint_and_no_retry() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    server.set_behaviour(&release.binary_path, Behaviour::NotFound);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("k3s");
    let err = downloader()
        .fetch_verified(
            &release.binary_url,
            &sums(&release.sums_url, "k3s"),
            &dest,
            EXEC,
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    match &err {
        DownloadError::Http { url, status, hint, .. } => {
            assert_eq!(url, &release.binary_url);
            assert_eq!(*status, 404);
            assert!(hint.contains("no such release asset"), "{hint}");
        }
        other => panic!("expected Http, got {other:?}"),
    }
    assert!(err.to_string().contains("--distro-version"), "{err}");
    assert_eq!(server.hits(&release.binary_path), 1);
    assert!(!dest.exists());
    assert!(leftovers(dir.path()).is_empty());

    // A missing checksum file is reported against its own URL, before the binary is asked for.
    let missing = format!(
        "{}/k3s-io/k3s/releases/download/v9.9.9%2Bk3s1/sha256sum-amd64.txt",
        server.url()
    );
    let err = downloader()
        .fetch_verified(
            &release.binary_url,
            &sums(&missing, "k3s"),
            &dest,
            EXEC,
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DownloadError::Http { url, status: 404, .. } if *url == missing),
        "{err:?}"
    );
    assert_eq!(server.hits(&release.binary_path), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried_server_errors_are() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("k3s");
    let checksum = sums(&release.sums_url, "k3s");

    server.set_behaviour(&release.binary_path, Behaviour::Status(403));
    let err = downloader()
        .fetch_verified(&release.binary_url, &checksum, &dest, EXEC, &Recorder::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DownloadError::Http {
                status: 403,
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.hits(&release.binary_path), 1);

    server.set_behaviour(&release.binary_path, Behaviour::Status(500));
    let rec = Recorder::default();
    let err = downloader()
        .fetch_verified(&release.binary_url, &checksum, &dest, EXEC, &rec)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DownloadError::Http {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("tried 3 times"), "{err}");
    assert_eq!(server.hits(&release.binary_path), 1 + 3);
    let retries = rec.retries();
    assert_eq!(retries.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 3]);
    assert!(
        retries
            .iter()
            .all(|r| r.2 == "HTTP 500" && r.1 <= Duration::from_millis(40))
    );
    assert!(!dest.exists());
}

#[tokio::test]
async fn fails_twice_with_503_then_succeeds_on_the_third_try() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    server.set_behaviour(&release.binary_path, Behaviour::FailTimes { times: 2, status: 503 });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("k3s");
    let rec = Recorder::default();
    let fetched = downloader()
        .fetch_verified(&release.binary_url, &sums(&release.sums_url, "k3s"), &dest, EXEC, &rec)
        .await
        .unwrap();
    assert_eq!(fetched.sha256, release.sha256);
    assert_eq!(server.hits(&release.binary_path), 3);
    assert_eq!(rec.retries().len(), 2);
    assert_eq!(std::fs::read(&dest).unwrap(), release.bytes);
}

#[tokio::test]
async fn retry_after_is_honoured_on_429() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    server.set_behaviour(&release.binary_path, Behaviour::RetryAfter { times: 1, secs: 1 });
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let began = Instant::now();
    downloader()
        .fetch_verified(
            &release.binary_url,
            &sums(&release.sums_url, "k3s"),
            &dir.path().join("k3s"),
            EXEC,
            &rec,
        )
        .await
        .unwrap();
    // The policy's own backoff is at most 40 ms: the 1 s wait comes from the header.
    assert!(began.elapsed() >= Duration::from_secs(1), "{:?}", began.elapsed());
    assert_eq!(rec.retries(), [(2, Duration::from_secs(1), "HTTP 429".to_string())]);
    assert_eq!(server.hits(&release.binary_path), 2);
}

#[tokio::test]
async fn a_truncated_body_is_retried_then_reported() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    server.set_behaviour(&release.binary_path, Behaviour::Truncate { after: 1000 });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("k3s");
    std::fs::write(&dest, b"previous").unwrap();
    let rec = Recorder::default();
    let err = downloader()
        .fetch_verified(&release.binary_url, &sums(&release.sums_url, "k3s"), &dest, EXEC, &rec)
        .await
        .unwrap_err();
    match &err {
        DownloadError::Truncated {
            url,
            expected_len,
            got,
            attempts,
        } => {
            assert_eq!(url, &release.binary_url);
            assert_eq!(*expected_len, release.bytes.len() as u64);
            assert!(*got <= 1000, "{got}");
            assert_eq!(*attempts, 3);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert_eq!(server.hits(&release.binary_path), 3);
    assert_eq!(rec.retries().len(), 2);
    assert!(
        rec.retries()[0].2.contains("connection ended after"),
        "{:?}",
        rec.retries()
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"previous");
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test]
async fn a_connection_closed_mid_stream_is_a_network_error_after_retries() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    server.set_behaviour(&release.binary_path, Behaviour::CloseMidStream { after: 4096 });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("k3s");
    let err = downloader()
        .fetch_verified(
            &release.binary_url,
            &sums(&release.sums_url, "k3s"),
            &dest,
            EXEC,
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DownloadError::Network { attempts: 3, description, .. } if description.contains("connection broke")),
        "{err:?}"
    );
    assert_eq!(server.hits(&release.binary_path), 3);
    assert!(!dest.exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test]
async fn a_slow_body_within_the_read_timeout_succeeds() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    // ~300 KiB in 64 KiB pieces, 40 ms apart (read timeout 300 ms).
    server.set_behaviour(
        &release.binary_path,
        Behaviour::Slow {
            chunk: 64 * 1024,
            delay: Duration::from_millis(40),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("k3s");
    let rec = Recorder::default();
    let fetched = downloader()
        .fetch_verified(&release.binary_url, &sums(&release.sums_url, "k3s"), &dest, EXEC, &rec)
        .await
        .unwrap();
    assert_eq!(fetched.sha256, release.sha256);
    assert!(rec.retries().is_empty());
    assert_eq!(server.hits(&release.binary_path), 1);
}

#[tokio::test]
async fn a_stall_longer_than_the_read_timeout_fails() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    server.set_behaviour(
        &release.binary_path,
        Behaviour::Slow {
            chunk: 100 * 1024,
            delay: Duration::from_millis(800),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("k3s");
    let policy = RetryPolicy {
        attempts: 2,
        read_timeout: Duration::from_millis(150),
        ..policy()
    };
    let err = Downloader::new(policy)
        .unwrap()
        .fetch_verified(
            &release.binary_url,
            &sums(&release.sums_url, "k3s"),
            &dest,
            EXEC,
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::Stalled { attempts: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("stalled"), "{err}");
    assert_eq!(server.hits(&release.binary_path), 2);
    assert!(!dest.exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test]
async fn a_missing_checksum_entry_names_the_file_and_entry_and_downloads_nothing() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "arm64");
    let dir = tempfile::tempdir().unwrap();
    let err = downloader()
        .fetch_verified(
            &release.binary_url,
            &sums(&release.sums_url, "k3s-riscv64"),
            &dir.path().join("k3s"),
            EXEC,
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    match &err {
        DownloadError::ChecksumEntryMissing { checksum_url, entry } => {
            assert_eq!(checksum_url, &release.sums_url);
            assert_eq!(entry, "k3s-riscv64");
        }
        other => panic!("expected ChecksumEntryMissing, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&release.sums_url) && message.contains("k3s-riscv64"),
        "{message}"
    );
    assert_eq!(server.hits(&release.binary_path), 0);
}

#[tokio::test]
async fn a_pinned_checksum_needs_no_checksum_file() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    let dir = tempfile::tempdir().unwrap();
    let pinned = ChecksumSource::Pinned {
        sha256: release.sha256.to_ascii_uppercase(),
    };
    let fetched = downloader()
        .fetch_verified(
            &release.binary_url,
            &pinned,
            &dir.path().join("k3s"),
            EXEC,
            &Recorder::default(),
        )
        .await
        .unwrap();
    assert_eq!(fetched.sha256, release.sha256);
    assert_eq!(server.hits(&release.sums_path), 0);
}

#[tokio::test]
async fn only_http_urls_are_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    let err = downloader()
        .fetch_verified(
            "ftp://example.invalid/k3s",
            &ChecksumSource::Pinned { sha256: "0".repeat(64) },
            &dir.path().join("k3s"),
            EXEC,
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DownloadError::UnsupportedUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unwritable_destination_is_an_io_error_naming_the_path() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    let dir = tempfile::tempdir().unwrap();
    let checksum = sums(&release.sums_url, "k3s");

    // A file where the destination's folder should be (fails even as root).
    let blocker = dir.path().join("bin");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let err = downloader()
        .fetch_verified(
            &release.binary_url,
            &checksum,
            &blocker.join("k3s"),
            EXEC,
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    match &err {
        DownloadError::Io { path, action, .. } => {
            assert_eq!(path, &blocker);
            assert_eq!(action, "create the folder");
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains(&blocker.display().to_string()), "{err}");
    assert!(err.to_string().contains("fix:"), "{err}");

    // A read-only folder (only meaningful when not running as root).
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let root_ignores_modes = std::fs::write(locked.join("probe"), b"").is_ok();
    if !root_ignores_modes {
        let err = downloader()
            .fetch_verified(
                &release.binary_url,
                &checksum,
                &locked.join("k3s"),
                EXEC,
                &Recorder::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DownloadError::Io { path, .. } if *path == locked),
            "{err:?}"
        );
        assert!(err.to_string().contains("sudo"), "{err}");
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An air-gap folder as a user prepares it: the k0s binary and `sha256sums.txt`, in a folder
/// whose name needs percent-encoding in a `file://` URL.
struct Airgap {
    _dir: tempfile::TempDir,
    folder: std::path::PathBuf,
    entry: String,
    bytes: Vec<u8>,
    checksum: ChecksumSource,
}

fn airgap() -> Airgap {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("air gap+1");
    std::fs::create_dir(&folder).unwrap();
    let entry = "k0s-v1.33.4+k0s.0-amd64".to_string();
    let bytes = fake_binary(&entry, 200_000);
    std::fs::write(folder.join(&entry), &bytes).unwrap();
    std::fs::write(
        folder.join("sha256sums.txt"),
        format!("{} *{entry}\r\n{} *other\r\n", sha256_hex(&bytes), sha256_hex(b"x")),
    )
    .unwrap();
    let encoded: Vec<String> = folder.to_str().unwrap().split('/').map(encode_segment).collect();
    let checksum = sums(&format!("file://{}/sha256sums.txt", encoded.join("/")), &entry);
    Airgap {
        _dir: dir,
        folder,
        entry,
        bytes,
        checksum,
    }
}

#[tokio::test]
async fn air_gap_copies_are_verified_through_a_file_url() {
    let air = airgap();
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("usr/local/bin/k0s");
    let d = downloader();
    let source = air.folder.join(&air.entry);

    let fetched = copy_verified(&d, &source, Some(&air.checksum), &dest, EXEC)
        .await
        .unwrap();
    assert_eq!(
        fetched,
        Fetched {
            sha256: sha256_hex(&air.bytes),
            bytes: air.bytes.len() as u64,
            changed: true,
            verified: true
        }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), air.bytes);
    assert_eq!(mode_of(&dest), 0o755);

    let again = copy_verified(&d, &source, Some(&air.checksum), &dest, EXEC)
        .await
        .unwrap();
    assert!(!again.changed);

    // No checksum file in the plan: copied, flagged unverified; a second copy changes nothing.
    let plain = target.path().join("images/k0s.tar");
    let unverified = copy_verified(&d, &source, None, &plain, Mode(0o644)).await.unwrap();
    assert!(!unverified.verified && unverified.changed);
    assert_eq!(mode_of(&plain), 0o644);
    let again = copy_verified(&d, &source, None, &plain, Mode(0o644)).await.unwrap();
    assert!(!again.verified && !again.changed);
    assert!(leftovers(dest.parent().unwrap()).is_empty());
}

#[tokio::test]
async fn an_air_gap_mismatch_keeps_the_installed_file() {
    let air = airgap();
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("k0s");
    std::fs::write(&dest, b"installed k0s").unwrap();
    let source = air.folder.join(&air.entry);
    std::fs::write(&source, b"tampered").unwrap();

    let err = copy_verified(&downloader(), &source, Some(&air.checksum), &dest, EXEC)
        .await
        .unwrap_err();
    match &err {
        DownloadError::ChecksumFailed {
            url,
            expected,
            calculated,
        } => {
            assert_eq!(url, &source.display().to_string());
            assert_eq!(expected, &sha256_hex(&air.bytes));
            assert_eq!(calculated, &sha256_hex(b"tampered"));
        }
        other => panic!("expected ChecksumFailed, got {other:?}"),
    }
    assert_eq!(std::fs::read(&dest).unwrap(), b"installed k0s");
    assert!(leftovers(target.path()).is_empty());
}

#[tokio::test]
async fn air_gap_missing_files_are_named() {
    let air = airgap();
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("k0s");
    let d = downloader();

    // The binary is missing from the folder.
    let missing = air.folder.join("k0s-v1.33.4+k0s.0-arm64");
    let err = copy_verified(&d, &missing, None, &dest, EXEC).await.unwrap_err();
    assert!(
        matches!(&err, DownloadError::Io { path, .. } if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("--airgap"), "{err}");
    assert!(!dest.exists());
    assert!(leftovers(target.path()).is_empty());

    // The checksum file is missing.
    std::fs::remove_file(air.folder.join("sha256sums.txt")).unwrap();
    let err = copy_verified(&d, &air.folder.join(&air.entry), Some(&air.checksum), &dest, EXEC)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DownloadError::Io { path, .. } if *path == air.folder.join("sha256sums.txt")),
        "{err:?}"
    );
    assert!(!dest.exists());
}

#[tokio::test]
async fn a_cancelled_download_leaves_no_temporary_file() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    server.set_behaviour(
        &release.binary_path,
        Behaviour::Slow {
            chunk: 16 * 1024,
            delay: Duration::from_millis(20),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("k3s");
    let rec = Recorder::default();
    let d = downloader();
    let checksum = sums(&release.sums_url, "k3s");
    let transfer = d.fetch_verified(&release.binary_url, &checksum, &dest, EXEC, &rec);
    // Stop it part way (Ctrl-C in the CLI drops the future the same way).
    let outcome = tokio::time::timeout(Duration::from_millis(150), transfer).await;
    assert!(outcome.is_err(), "the transfer should still have been running");
    assert!(
        rec.events().iter().any(|e| matches!(e, Event::Advanced(_))),
        "it had started writing: {:?}",
        rec.events()
    );
    assert!(!dest.exists());
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
}

#[tokio::test]
async fn retry_after_is_capped_by_the_policy() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    server.set_behaviour(&release.binary_path, Behaviour::RetryAfter { times: 1, secs: 3600 });
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let policy = RetryPolicy {
        max_retry_after: Duration::from_millis(50),
        ..policy()
    };
    Downloader::new(policy)
        .unwrap()
        .fetch_verified(
            &release.binary_url,
            &sums(&release.sums_url, "k3s"),
            &dir.path().join("k3s"),
            EXEC,
            &rec,
        )
        .await
        .unwrap();
    assert_eq!(rec.retries(), [(2, Duration::from_millis(50), "HTTP 429".to_string())]);
}

#[tokio::test]
async fn a_folder_in_place_of_the_destination_is_named() {
    let server = ReleaseServer::start();
    let release = server.release_layout("k3s", "v1.33.4+k3s1", "amd64");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("k3s");
    std::fs::create_dir(&dest).unwrap();
    let err = downloader()
        .fetch_verified(
            &release.binary_url,
            &sums(&release.sums_url, "k3s"),
            &dest,
            EXEC,
            &Recorder::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DownloadError::Io { path, .. } if *path == dest),
        "{err:?}"
    );
    assert!(err.to_string().contains("a folder is in the way"), "{err}");
    assert!(dest.is_dir());
    assert!(leftovers(dir.path()).is_empty());
}
