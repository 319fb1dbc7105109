//! Removing a folder the way `down` may: inside the host root, through no link, never into or
//! through a mount, sparing the files `down` decided to keep.

use super::super::host::Host;
use super::super::mounts;
use super::super::paths;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Removes `abs` (a folder and everything in it, or a file) without following links. Refuses
/// while anything is mounted at or under it, or when a folder in it is on another device (a
/// mount the table does not show). Paths in `keep` and the folders holding them stay. Returns
/// whether something was removed.
pub fn remove_tree(host: &Host, abs: &str, keep: &[String]) -> Result<bool, String> {
    let path = paths::resolve(host, abs).map_err(|e| format!("{abs} {e}: not removed"))?;
    let live = mounts::within(&mounts::mount_points(host), abs);
    if !live.is_empty() {
        return Err(format!(
            "{abs} still has something mounted under it ({}): removing it would delete files from under the mount\n  fix: unmount {}, then run `kstrap down` again",
            live.join(", "),
            if live.len() == 1 { "it" } else { "them" }
        ));
    }
    let meta = match path.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{abs}: {e}")),
    };
    if !meta.is_dir() {
        std::fs::remove_file(&path).map_err(|e| format!("{abs}: {e}"))?;
        return Ok(true);
    }
    if walk(&path, abs, meta.dev(), keep)? {
        std::fs::remove_dir(&path).map_err(|e| format!("{abs}: {e}"))?;
    }
    Ok(true)
}

fn io(p: &str) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{p}: {e}")
}

/// Empties `dir` except kept paths; returns whether it is empty now.
fn walk(dir: &Path, host_dir: &str, dev: u64, keep: &[String]) -> Result<bool, String> {
    let mut empty = true;
    for entry in std::fs::read_dir(dir).map_err(io(host_dir))? {
        let entry = entry.map_err(io(host_dir))?;
        let name = entry.file_name();
        let host_path = format!("{host_dir}/{}", name.to_string_lossy());
        if keep.contains(&host_path) {
            empty = false;
            continue;
        }
        let p = entry.path();
        let meta = p.symlink_metadata().map_err(io(&host_path))?;
        if meta.is_dir() {
            if meta.dev() != dev {
                return Err(format!(
                    "{host_path} is on another file system (a mount point): kstrap does not delete inside it\n  fix: unmount it, then run `kstrap down` again"
                ));
            }
            if walk(&p, &host_path, dev, keep)? {
                std::fs::remove_dir(&p).map_err(io(&host_path))?;
            } else {
                empty = false;
            }
        } else {
            // Files and links alike: a link is removed itself, never followed.
            std::fs::remove_file(&p).map_err(io(&host_path))?;
        }
    }
    Ok(empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_without_following_links_and_spares_kept_files() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), "x").unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        let data = dir.path().join("etc/rancher/k3s");
        std::fs::create_dir_all(data.join("config.yaml.d")).unwrap();
        std::fs::write(data.join("config.yaml"), "mine").unwrap();
        std::fs::write(data.join("k3s.yaml"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), data.join("link")).unwrap();
        let keep = vec!["/etc/rancher/k3s/config.yaml".to_string()];
        assert!(remove_tree(&host, "/etc/rancher/k3s", &keep).unwrap());
        assert!(data.join("config.yaml").exists());
        assert!(!data.join("k3s.yaml").exists() && !data.join("config.yaml.d").exists());
        assert!(outside.path().join("precious").exists(), "the link was not followed");
        assert!(remove_tree(&host, "/etc/rancher/k3s", &[]).unwrap());
        assert!(!data.exists());
        assert!(!remove_tree(&host, "/etc/rancher/k3s", &[]).unwrap());
    }

    #[test]
    fn refuses_while_something_is_mounted_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        std::fs::create_dir_all(dir.path().join("var/lib/rancher/k3s/storage")).unwrap();
        std::fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        std::fs::write(
            dir.path().join("proc/self/mountinfo"),
            "40 22 8:17 / /var/lib/rancher/k3s/storage rw - ext4 /dev/sdb1 rw\n",
        )
        .unwrap();
        let err = remove_tree(&host, "/var/lib/rancher/k3s", &[]).unwrap_err();
        assert!(
            err.contains("still has something mounted under it (/var/lib/rancher/k3s/storage)"),
            "{err}"
        );
        assert!(dir.path().join("var/lib/rancher/k3s/storage").exists());
    }
}
