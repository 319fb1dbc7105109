//! Bounds on what kstrap accepts from outside: how long any wait may be, and how large a file it
//! reads. A bound turns a hostile or mistyped value (`--timeout 18446744073709551615`, a 50 MB
//! "profile") into a plain refusal instead of an overflow or a parser's resource limit.

use std::path::Path;
use std::time::Duration;

/// The longest wait a flag may ask for: a day. Longer is a typo, and an `Instant` cannot hold
/// `now + u64::MAX seconds`.
pub const MAX_WAIT_S: u64 = 86_400;

/// The largest file kstrap reads as input (profile, stack.yaml, manifest, facts, kubeconfig,
/// secret): 8 MiB. The biggest manifests in practice are CRDs of a few hundred KiB.
pub const MAX_INPUT_BYTES: u64 = 8 * 1024 * 1024;

/// The instant `timeout` from now, or a day from now when the sum does not fit (a library caller
/// that bypassed the flag checks still gets a wait, never a panic).
pub fn deadline(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(MAX_WAIT_S)))
        .unwrap_or(now)
}

/// The error for a file over [`MAX_INPUT_BYTES`], in kstrap's words.
pub fn too_large(len: u64) -> std::io::Error {
    std::io::Error::other(format!(
        "the file is {:.1} MiB; kstrap reads input files of at most {} MiB (is it the right file?)",
        len as f64 / (1024.0 * 1024.0),
        MAX_INPUT_BYTES / (1024 * 1024)
    ))
}

/// Reads a whole file of at most [`MAX_INPUT_BYTES`]; a larger one is refused before reading.
pub fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::other("it is a folder, not a file"));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut out = Vec::new();
    // A device or pipe reports no length: read one byte past the bound to tell.
    file.take(MAX_INPUT_BYTES + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large(out.len() as u64));
    }
    Ok(out)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// Checks a `--timeout`-like flag: at least 1 second, at most [`MAX_WAIT_S`].
pub fn wait_flag(flag: &str, value: Option<u64>) -> Result<Option<Duration>, String> {
    match value {
        None => Ok(None),
        Some(0) => Err(format!(
            "{flag} 0: give the seconds to wait, at least 1\n  fix: leave {flag} out for the default, or give a number of seconds from 1 to {MAX_WAIT_S}"
        )),
        Some(s) if s > MAX_WAIT_S => Err(format!(
            "{flag} {s}: at most {MAX_WAIT_S} seconds (a day)\n  fix: give a number of seconds from 1 to {MAX_WAIT_S}"
        )),
        Some(s) => Ok(Some(Duration::from_secs(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_never_overflows() {
        let far = deadline(Duration::from_secs(u64::MAX));
        assert!(far > tokio::time::Instant::now());
        let near = deadline(Duration::from_secs(5));
        assert!(near <= tokio::time::Instant::now() + Duration::from_secs(5));
    }

    #[test]
    fn wait_flags_are_bounded() {
        assert_eq!(wait_flag("--timeout", None), Ok(None));
        assert_eq!(wait_flag("--timeout", Some(7)), Ok(Some(Duration::from_secs(7))));
        assert!(wait_flag("--timeout", Some(0)).unwrap_err().contains("at least 1"));
        assert!(
            wait_flag("--timeout", Some(u64::MAX))
                .unwrap_err()
                .contains("at most 86400")
        );
        assert!(wait_flag("--timeout", Some(MAX_WAIT_S)).is_ok());
    }

    #[test]
    fn large_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_INPUT_BYTES + 1).unwrap();
        assert!(read_bounded(&big).unwrap_err().to_string().contains("at most 8 MiB"));
        assert!(read_bounded(dir.path()).unwrap_err().to_string().contains("folder"));
    }
}
