//! The partition of `--data-dir`: what the disk preflight and the `--data-dir` check read.
//!
//! Probed only when a data directory is given, under the detection root like every other fact:
//! the folder (or, when it does not exist yet, its nearest existing parent, where it would be
//! created), `statvfs` of it, and the mount that holds it from `/proc/self/mountinfo` (type and
//! read-only flag, proc(5) "mountinfo": field 5 the mount point, field 6 its options, then after
//! ` - ` the file system type, the source and the superblock options).

use super::DataDirFacts;
use std::path::{Path, PathBuf};

/// Host path of the mount table.
const MOUNTINFO: &str = "/proc/self/mountinfo";

fn under(root: &Path, host: &str) -> PathBuf {
    root.join(host.strip_prefix('/').unwrap_or(host))
}

/// Facts about the data directory `dir` (an absolute, plain host path) under `root`.
pub fn probe(root: &Path, dir: &str) -> DataDirFacts {
    let meta = |host: &str| std::fs::symlink_metadata(under(root, host)).ok();
    let own = meta(dir);
    let exists = own.is_some();
    let is_folder = own.as_ref().is_some_and(|m| m.is_dir());
    let has_entries =
        is_folder && std::fs::read_dir(under(root, dir)).is_ok_and(|mut entries| entries.next().is_some());
    let mut existing_parent = "/".to_string();
    let mut parent_is_folder = true;
    for a in Path::new(dir).ancestors() {
        let Some(text) = a.to_str() else { continue };
        if let Some(m) = meta(text) {
            existing_parent = text.to_string();
            parent_is_folder = m.is_dir();
            break;
        }
    }
    let (total_bytes, available_bytes) = if parent_is_folder {
        match rustix::fs::statvfs(under(root, &existing_parent)) {
            Ok(st) => (
                st.f_blocks.saturating_mul(st.f_frsize),
                st.f_bavail.saturating_mul(st.f_frsize),
            ),
            Err(_) => (0, 0),
        }
    } else {
        (0, 0)
    };
    let table = std::fs::read_to_string(under(root, MOUNTINFO)).unwrap_or_default();
    let mount = holding_mount(&table, &existing_parent);
    DataDirFacts {
        path: dir.to_string(),
        exists,
        is_folder,
        has_entries,
        existing_parent,
        parent_is_folder,
        mount_point: mount.as_ref().map(|m| m.point.clone()),
        fs_type: mount.as_ref().map(|m| m.fs_type.clone()),
        read_only: mount.as_ref().is_some_and(|m| m.read_only),
        total_bytes,
        available_bytes,
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Mount {
    point: String,
    fs_type: String,
    read_only: bool,
}

/// The mount that holds `path`: the deepest mount point at or above it; of two at the same
/// point, the later (it is mounted over the earlier).
fn holding_mount(table: &str, path: &str) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in table.lines() {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(point), Some(options), Some(fs_type)) = (fields.get(4), fields.get(5), right.first()) else {
            continue;
        };
        let point = crate::exec::mounts::unescape(point);
        let holds = point == "/" || path == point || path.strip_prefix(&point).is_some_and(|r| r.starts_with('/'));
        if !holds || best.as_ref().is_some_and(|b| b.point.len() > point.len()) {
            continue;
        }
        let ro = |opts: &str| opts.split(',').any(|o| o == "ro");
        best = Some(Mount {
            point,
            fs_type: fs_type.to_string(),
            read_only: ro(options) || right.get(2).is_some_and(|o| ro(o)),
        });
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 8:17 / /data rw,relatime shared:2 - xfs /dev/sdb1 rw,attr2
41 22 0:30 / /data/ram rw,nosuid shared:3 - tmpfs tmpfs rw,size=1024k
42 22 8:33 / /mnt/ro ro,relatime shared:4 - ext4 /dev/sdc1 ro
43 22 8:49 / /mnt/my\\040disk rw,relatime shared:5 - ext4 /dev/sdd1 rw
";

    #[test]
    fn the_deepest_mount_holds_the_folder() {
        let m = holding_mount(TABLE, "/data/k3s").unwrap();
        assert_eq!(
            (m.point.as_str(), m.fs_type.as_str(), m.read_only),
            ("/data", "xfs", false)
        );
        let m = holding_mount(TABLE, "/data/ram/k3s").unwrap();
        assert_eq!((m.point.as_str(), m.fs_type.as_str()), ("/data/ram", "tmpfs"));
        assert!(holding_mount(TABLE, "/mnt/ro/x").unwrap().read_only);
        assert_eq!(holding_mount(TABLE, "/database").unwrap().point, "/");
        assert_eq!(holding_mount(TABLE, "/mnt/my disk/k").unwrap().point, "/mnt/my disk");
        assert_eq!(holding_mount("", "/data"), None);
    }

    #[test]
    fn a_missing_folder_is_probed_at_its_nearest_existing_parent() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("data")).unwrap();
        std::fs::create_dir_all(root.path().join("proc/self")).unwrap();
        std::fs::write(root.path().join("proc/self/mountinfo"), TABLE).unwrap();
        let f = probe(root.path(), "/data/kstrap/k3s");
        assert!(!f.exists && !f.is_folder && !f.has_entries);
        assert_eq!(f.existing_parent, "/data");
        assert!(f.parent_is_folder);
        assert_eq!(f.mount_point.as_deref(), Some("/data"));
        assert_eq!(f.fs_type.as_deref(), Some("xfs"));
        assert!(f.total_bytes > 0, "statvfs of the temp folder's file system");

        std::fs::create_dir_all(root.path().join("data/kstrap/k3s/agent")).unwrap();
        let f = probe(root.path(), "/data/kstrap/k3s");
        assert!(f.exists && f.is_folder && f.has_entries);
        assert_eq!(f.existing_parent, "/data/kstrap/k3s");

        std::fs::write(root.path().join("data/file"), "x").unwrap();
        let f = probe(root.path(), "/data/file/k3s");
        assert_eq!(f.existing_parent, "/data/file");
        assert!(!f.parent_is_folder);
        assert_eq!(f.total_bytes, 0);
    }
}
