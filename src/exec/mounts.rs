//! The host's mount table, read from `/proc/self/mountinfo` under the host root.
//!
//! `down` unmounts what the distribution mounted before it removes folders, and refuses to remove
//! a folder while anything is still mounted under it: removing through a live mount deletes files
//! from under running containers, or a disk the user mounted there. With the root at `/` this is
//! the kernel's table; with `KSTRAP_HOST_ROOT` it is the file under that root (a mounted system
//! has no live mounts of its own there; tests put a stand-in there). A missing table is an empty
//! one; the removal itself also stops at any folder on another device (see `remove_tree`).

use super::host::Host;
use super::paths::is_within;

/// Host path of the mount table.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Mount points, in the table's order (mount order).
pub fn mount_points(host: &Host) -> Vec<String> {
    let Ok(Some(file)) = host.read(MOUNTINFO) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&file.bytes)
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .collect()
}

/// Mount points under `prefix`, deepest first (k3s-killall's `sort -r`), so that nested mounts go
/// before the ones they sit on. k3s-killall matches the prefix as text (`case "$path" in $1*)`);
/// kstrap does so only for a name prefix ending in `-` (`/run/netns/cni-`) and otherwise matches
/// whole components, so `/run/k3s` does not take `/run/k3sx` along.
pub fn under_prefix(points: &[String], prefix: &str) -> Vec<String> {
    let matches = |p: &String| {
        if prefix.ends_with('-') {
            p.starts_with(prefix)
        } else {
            is_within(p, prefix)
        }
    };
    let mut out: Vec<String> = points.iter().filter(|p| matches(p)).cloned().collect();
    out.sort();
    out.dedup();
    out.reverse();
    out
}

/// Mount points at or below the folder `dir` (whole components).
pub fn within(points: &[String], dir: &str) -> Vec<String> {
    points.iter().filter(|p| is_within(p, dir)).cloned().collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mount_points_and_orders_them_deepest_first() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        assert!(mount_points(&host).is_empty());
        std::fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        std::fs::write(
            dir.path().join("proc/self/mountinfo"),
            "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n\
             30 22 0:25 / /run/k3s/containerd/a rw - overlay overlay rw\n\
             31 30 0:26 / /run/k3s/containerd/a/rootfs rw - overlay overlay rw\n\
             32 22 0:27 / /var/lib/kubelet/pods/p/volumes/my\\040vol rw - tmpfs tmpfs rw\n\
             33 22 0:28 / /run/k3sx rw - tmpfs tmpfs rw\n",
        )
        .unwrap();
        let points = mount_points(&host);
        assert_eq!(points[3], "/var/lib/kubelet/pods/p/volumes/my vol");
        assert_eq!(
            under_prefix(&points, "/run/k3s"),
            ["/run/k3s/containerd/a/rootfs", "/run/k3s/containerd/a"]
        );
        assert_eq!(
            within(&points, "/run/k3s"),
            ["/run/k3s/containerd/a", "/run/k3s/containerd/a/rootfs"]
        );
    }
}
