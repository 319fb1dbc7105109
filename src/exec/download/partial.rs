//! The temporary file a download or air-gap copy is written to before it is renamed over its
//! destination. It lives in the destination's own folder (so the rename is atomic, same file
//! system), is named `.<name>.kstrap-partial-<random>`, and is deleted when dropped unless it was
//! committed: every error path, a cancelled future and a panic all leave the folder clean.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

/// Marker in the names of temporary files, so people (and tests) can recognize leftovers.
pub const PARTIAL_MARKER: &str = ".kstrap-partial-";

/// A random 64-bit number from the standard library's per-process hash keys (no extra crate).
pub fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// The temporary path for `dest`: `<dir>/.<name>.kstrap-partial-<16 hex digits>`.
pub fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".to_string());
    let file = format!(".{name}{PARTIAL_MARKER}{:016x}", random_u64());
    match dest.parent() {
        Some(dir) => dir.join(file),
        None => PathBuf::from(file),
    }
}

/// Deletes its path on drop unless `commit` was called.
#[derive(Debug)]
pub struct PartialGuard {
    path: PathBuf,
    armed: bool,
}

impl PartialGuard {
    pub fn new(path: PathBuf) -> Self {
        PartialGuard { path, armed: true }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file was renamed into place: nothing left to delete.
    pub fn commit(mut self) {
        self.armed = false;
    }
}

impl Drop for PartialGuard {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: it may never have been created.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hidden_in_the_same_folder_and_differ() {
        let a = partial_path(Path::new("/usr/local/bin/k3s"));
        let b = partial_path(Path::new("/usr/local/bin/k3s"));
        assert_eq!(a.parent(), Some(Path::new("/usr/local/bin")));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".k3s.kstrap-partial-"), "{name}");
        assert_eq!(name.len(), ".k3s.kstrap-partial-".len() + 16);
        assert_ne!(a, b);
    }

    #[test]
    fn guard_deletes_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let dropped = dir.path().join("a");
        std::fs::write(&dropped, b"x").unwrap();
        drop(PartialGuard::new(dropped.clone()));
        assert!(!dropped.exists());

        let kept = dir.path().join("b");
        std::fs::write(&kept, b"x").unwrap();
        PartialGuard::new(kept.clone()).commit();
        assert!(kept.exists());
    }
}
