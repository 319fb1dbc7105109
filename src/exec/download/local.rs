//! Files on this host: hashing what is already there, putting a finished temporary file in place,
//! `file://` URLs, and verified air-gap copies.

use super::error::{DownloadError, io_error};
use super::partial::{PartialGuard, partial_path};
use super::{Downloader, Fetched, MAX_CHECKSUM_FILE};
use crate::plan::step::{ChecksumSource, Mode};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Buffer for hashing and copying local files.
const COPY_BUFFER: usize = 1024 * 1024;

pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The local path of a `file://` URL (`file:///dir/f` or `file://localhost/dir/f`), percent-decoded.
pub(super) fn file_url_path(url: &str) -> Result<PathBuf, DownloadError> {
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

pub(super) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

pub(super) async fn ensure_parent(dest: &Path) -> Result<(), DownloadError> {
    let dir = parent_of(dest);
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io_error(dir, "create the folder"))
}

/// A checksum file from an air-gap folder.
pub(super) async fn read_small_file(path: &Path) -> Result<Vec<u8>, DownloadError> {
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
pub(super) async fn already_in_place(
    dest: &Path,
    expected: &str,
    mode: Mode,
) -> Result<Option<Fetched>, DownloadError> {
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
pub(super) async fn put_in_place(guard: PartialGuard, dest: &Path) -> Result<(), DownloadError> {
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
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
        // sha256 of the empty string
        assert_eq!(
            hex(&Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
