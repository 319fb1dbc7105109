//! Host paths that `down` may act on: never outside the host root, never through a link.
//!
//! A path read from kstrap's state file is outside input. Before anything is removed, it must be
//! absolute and plain (no `.`, `..`, empty or trailing components, no control characters), and
//! every folder on the way to it under the host root must be a real folder, not a symbolic link:
//! `/../x` or a link planted at `/var/lib/rancher` would otherwise take a removal out of the root
//! or onto another file. The one link allowed on the way is `/var/run` → `/run`, which systemd
//! hosts have (FHS 3.0 §5.13; the NVIDIA toolkit names its CDI folder `/var/run/cdi`).

use super::host::Host;
use std::path::{Path, PathBuf};

/// Why a path is not one `down` may act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsafe {
    #[error("is not an absolute, plain path ({0})")]
    NotPlain(&'static str),
    #[error("goes through {link}, a symbolic link (to {target})")]
    Link { link: String, target: String },
    #[error("is a symbolic link (to {target}); kstrap never writes links")]
    IsLink { target: String },
}

/// Checks the spelling of `abs`: absolute, plain components only.
pub fn check_plain(abs: &str) -> Result<(), Unsafe> {
    if !abs.starts_with('/') {
        return Err(Unsafe::NotPlain("it must start with /"));
    }
    if abs == "/" {
        return Err(Unsafe::NotPlain("it is the root itself"));
    }
    if abs.chars().any(char::is_control) {
        return Err(Unsafe::NotPlain("it holds a control character"));
    }
    for part in abs[1..].split('/') {
        match part {
            "" => return Err(Unsafe::NotPlain("empty component or trailing /")),
            "." | ".." => return Err(Unsafe::NotPlain("`.` or `..` component")),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `path` is `base` or below it (by whole components).
pub fn is_within(path: &str, base: &str) -> bool {
    path == base || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
}

/// The file under the host root that `abs` names, when neither it nor any folder on the way is a
/// symbolic link (`/var/run` → `/run` excepted). A part of the path that does not exist ends the
/// walk: nothing below it can be a link either.
pub fn resolve(host: &Host, abs: &str) -> Result<PathBuf, Unsafe> {
    check_plain(abs)?;
    let abs = alias(host, abs);
    let mut cur = host.root.clone();
    let parts: Vec<&str> = abs[1..].split('/').collect();
    let mut exists = true;
    for (i, part) in parts.iter().enumerate() {
        cur.push(part);
        if !exists {
            continue;
        }
        let Ok(meta) = cur.symlink_metadata() else {
            exists = false;
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&cur)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            if i + 1 == parts.len() {
                return Err(Unsafe::IsLink { target });
            }
            return Err(Unsafe::Link {
                link: format!("/{}", parts[..=i].join("/")),
                target,
            });
        }
    }
    Ok(cur)
}

/// `/var/run/...` → `/run/...` when `/var/run` under the root is the usual link to `/run`.
fn alias(host: &Host, abs: &str) -> String {
    let Some(rest) = abs.strip_prefix("/var/run/") else {
        return abs.to_string();
    };
    let link = host.path("/var/run");
    match std::fs::read_link(&link) {
        Ok(t) if t == Path::new("/run") || t == Path::new("../run") => format!("/run/{rest}"),
        _ => abs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_only() {
        for bad in [
            "", "x", "/", "/../x", "/a/../b", "/a/./b", "//a", "/a/", "/a//b", "/a\nb",
        ] {
            assert!(check_plain(bad).is_err(), "{bad:?}");
        }
        assert!(check_plain("/var/lib/rancher/k3s").is_ok());
        assert!(is_within("/var/lib/k0s/kubelet", "/var/lib/k0s"));
        assert!(is_within("/var/lib/k0s", "/var/lib/k0s"));
        assert!(!is_within("/var/lib/k0sx", "/var/lib/k0s"));
    }

    #[test]
    fn links_on_the_way_are_refused_except_var_run() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("var/lib/rancher")).unwrap();
        let err = resolve(&host, "/var/lib/rancher/k3s").unwrap_err();
        assert!(
            matches!(&err, Unsafe::Link { link, .. } if link == "/var/lib/rancher"),
            "{err:?}"
        );
        assert!(matches!(
            resolve(&host, "/var/lib/rancher").unwrap_err(),
            Unsafe::IsLink { .. }
        ));
        assert_eq!(
            resolve(&host, "/var/lib/nothing/here").unwrap(),
            dir.path().join("var/lib/nothing/here")
        );
        std::fs::create_dir_all(dir.path().join("run/cdi")).unwrap();
        std::os::unix::fs::symlink("../run", dir.path().join("var/run")).unwrap();
        assert_eq!(
            resolve(&host, "/var/run/cdi/x.yaml").unwrap(),
            dir.path().join("run/cdi/x.yaml")
        );
    }
}
