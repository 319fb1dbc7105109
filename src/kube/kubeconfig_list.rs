//! `KUBECONFIG` as kubectl reads it: a list of files (`a:b`), merged first-wins, where an entry
//! that does not exist is skipped and any other unreadable entry is an error naming that file.
//!
//! From client-go at the version kubectl v1.35 vendors, tools/clientcmd/loader.go:
//! `ClientConfigLoadingRules.Load` ("if os.IsNotExist(err) { // skip missing files ... continue }",
//! other errors collected as `error loading config file "<file>"`), and `GetDefaultFilename`
//! ("first existing file from precedence ... If none exists, use the first from precedence"),
//! which is where `kubectl config set-context` writes a new context.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The entries of a `KUBECONFIG` value, in order, empty ones dropped.
pub fn entries(list: &OsStr) -> Vec<PathBuf> {
    std::env::split_paths(list)
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

/// The list for messages: the entries that exist, in order, or all of them when none does.
pub fn shown(list: &OsStr) -> String {
    let (found, missing) = existing(list);
    let names = if found.is_empty() { missing } else { found };
    names
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where kubectl would write a new context: the first entry that exists (under `root`, the
/// host root kstrap writes into), else the first entry. None for an empty list.
pub fn default_file(list: &OsStr, root: Option<&Path>) -> Option<String> {
    let all = entries(list);
    let on_host = |p: &Path| match root {
        Some(r) => r.join(p.strip_prefix("/").unwrap_or(p)),
        None => p.to_path_buf(),
    };
    all.iter()
        .find(|p| std::fs::metadata(on_host(p)).is_ok())
        .or(all.first())
        .map(|p| p.display().to_string())
}

/// The entries to read: those that exist (missing ones skipped, as kubectl does), and the
/// missing ones for the message when none exists.
pub fn existing(list: &OsStr) -> (Vec<PathBuf>, Vec<PathBuf>) {
    entries(list)
        .into_iter()
        .partition(|p| !matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound))
}

/// Remembers the credentials a kubeconfig holds (tokens, passwords, client keys) so that no
/// output shows them, even echoed back by a server (see `redact`).
pub fn remember_credentials(text: &str) {
    let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return;
    };
    let users = value.get("users").and_then(serde_json::Value::as_array);
    for user in users.into_iter().flatten() {
        let Some(u) = user.get("user") else { continue };
        for key in ["token", "password", "client-key-data"] {
            if let Some(v) = u.get(key).and_then(serde_json::Value::as_str) {
                crate::redact::remember(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_entries_are_skipped_and_the_first_existing_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&b, "").unwrap();
        let list = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(entries(&list), vec![a.clone(), b.clone()]);
        let (found, missing) = existing(&list);
        assert_eq!(found, vec![b.clone()]);
        assert_eq!(missing, vec![a.clone()]);
        assert_eq!(default_file(&list, None), Some(b.display().to_string()));
        std::fs::remove_file(&b).unwrap();
        assert_eq!(default_file(&list, None), Some(a.display().to_string()));
        assert_eq!(default_file(OsStr::new("::"), None), None);
    }
}
