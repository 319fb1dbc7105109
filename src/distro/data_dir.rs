//! `--data-dir`: the distribution's data (images, containerd, etcd/kine, the local-path volumes)
//! on another partition, and every path that follows from it.
//!
//! Both distributions take one data directory and derive the rest from it:
//! - k3s `--data-dir` (config key `data-dir`, default `/var/lib/rancher/k3s`; k3s-io/k3s
//!   `pkg/cli/cmds/server.go` and `agent.go`, in tests/fixtures/upstream/k3s/server-flags.txt and
//!   agent-flags.txt). Under it: `agent/images` (air-gap archives), `agent/etc/containerd/config.toml`
//!   (the generated containerd config), `agent/containerd` (containerd's root: the images),
//!   `agent/kubelet.kubeconfig` (k3s-io/k3s `pkg/agent/config/config.go`, `get`: `nodeConfig.Images`,
//!   `Containerd.Config`, `Containerd.Root`, `kubeconfigKubelet`), `server/manifests` and
//!   `server/node-token` (`pkg/server/server.go`: `stageFiles`, `printTokens`, under the server's
//!   data dir `<data-dir>/server`), and the local-path provisioner's volumes at
//!   `<data-dir>/storage` unless `--default-local-storage-path` says otherwise
//!   (`pkg/cli/server/server.go`: `DefaultLocalStoragePath = filepath.Join(dataDir, "/storage")`).
//!   Read from stored versions of those files (commit 001a6d94 for config.go), not at the tag
//!   v1.35.3+k3s1 itself: the k3s repository is over the snapshot tool's limit (see
//!   tests/fixtures/upstream/k3s/SOURCE.md). `k3s-killall.sh` follows the same directory
//!   (`K3S_DATA_DIR=${K3S_DATA_DIR:-/var/lib/rancher/k3s}`, tests/fixtures/upstream/uninstall/k3s).
//!   The admin kubeconfig (`/etc/rancher/k3s/k3s.yaml`) and the containerd socket (`/run/k3s`)
//!   do not move.
//! - k0s `k0s install controller --data-dir DIR` (k0sproject/k0s v1.35.3+k0s.0 `pkg/config/cli.go`,
//!   default `constant.DataDirDefault = "/var/lib/k0s"`; `cmd/install/util.go` `cmdFlagsToArgs`
//!   writes it into the unit's command line). `pkg/config/cfgvars.go` `NewCfgVars` derives from it
//!   `pki/admin.conf`, `bin`, `images`, `kubelet` (the kubelet root), `kubelet.conf`, `etcd`,
//!   `manifests`; containerd's root is `<data-dir>/containerd`
//!   (`pkg/component/worker/containerd/component.go`). The run dir stays `/run/k0s` for root, and
//!   with it the containerd socket and its generated config.
//!
//! So a data directory moves every path under the distribution's default one and nothing else:
//! [`Distro::layout`] rebases them. It is the one place that knows this; a worker's layout comes
//! from the same function with its role.

use super::uninstall::Uninstall;
use super::worker::Role;
use super::{Distro, Paths};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// Folders a data directory may not be, nor be inside: the kernel's and systemd's volatile file
/// systems (emptied at boot, or not files at all), folders cleaned on a timer
/// (systemd-tmpfiles: `/tmp` after 10 days, `/var/tmp` after 30), and the system's own software
/// and configuration, which `kstrap down` would delete with the data.
const NEVER_WITHIN: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var/tmp",
    "/etc",
    "/usr",
    "/boot",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/var/lib/kstrap",
];

/// Folders a data directory may be below but not be: `kstrap down` removes the whole data
/// directory, and these hold what is not the cluster's.
const NEVER_EXACTLY: &[&str] = &[
    "/", "/home", "/root", "/var", "/var/lib", "/var/log", "/opt", "/srv", "/mnt", "/media",
];

/// Why a `--data-dir` value is refused (bad input: exit 2, nothing written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--data-dir {value}: {problem}\n  fix: {fix}")]
pub struct DataDirError {
    pub value: String,
    pub problem: String,
    pub fix: String,
}

impl DataDirError {
    fn new(value: &str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        DataDirError {
            value: value.to_string(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

const NEW_FOLDER: &str =
    "give a new or empty folder of its own on the partition for the cluster's data, such as /data/kstrap";

/// The distribution's own data directory when none is given.
pub fn default_dir(distro: Distro) -> &'static str {
    match distro {
        Distro::K3s => "/var/lib/rancher/k3s",
        Distro::K0s => "/var/lib/k0s",
    }
}

/// The data directory a `--data-dir` value names, checked by its spelling alone (the host is
/// asked later, see [`check_on_host`]): absolute, plain (no `.`, `..`, empty components or
/// whitespace: k0s writes it into its unit's command line), and not a folder of the system. A
/// trailing `/` is dropped.
pub fn check(value: &Path) -> Result<String, DataDirError> {
    let shown = value.display().to_string();
    let Some(text) = value.to_str() else {
        return Err(DataDirError::new(
            &shown,
            "the path is not valid UTF-8",
            "give a folder whose name is plain text",
        ));
    };
    if !text.starts_with('/') {
        return Err(DataDirError::new(
            text,
            "the path is relative",
            "give the folder as an absolute path, such as /data/kstrap",
        ));
    }
    let trimmed = if text.len() > 1 {
        text.trim_end_matches('/')
    } else {
        text
    };
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DataDirError::new(
            text,
            "the path holds a space or control character, which the distribution's service command line cannot carry",
            "give a folder whose name has no spaces",
        ));
    }
    if trimmed != "/" && trimmed[1..].split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(DataDirError::new(
            text,
            "the path has an empty, `.` or `..` component",
            "give the folder's plain absolute path, such as /data/kstrap",
        ));
    }
    if let Some(base) = NEVER_WITHIN.iter().find(|b| within(trimmed, b)) {
        return Err(DataDirError::new(
            text,
            format!(
                "it is inside {base}, which is not a place for the cluster's data (volatile, cleaned on a timer, or the system's own)"
            ),
            NEW_FOLDER,
        ));
    }
    if NEVER_EXACTLY.contains(&trimmed) {
        return Err(DataDirError::new(
            text,
            "`kstrap down` removes the whole data folder, and this one holds more than the cluster",
            NEW_FOLDER,
        ));
    }
    Ok(trimmed.to_string())
}

/// What the host says about a data directory (`facts::DataDirFacts`), as far as `--data-dir` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnHost<'a> {
    /// It exists and is not a folder.
    pub not_a_folder: bool,
    /// It exists and holds something.
    pub not_empty: bool,
    /// The nearest existing folder at or above it (where it would be created).
    pub existing_parent: &'a str,
    /// That parent is not a folder (a file on the way): the folder cannot be created.
    pub parent_not_a_folder: bool,
    pub mount_point: Option<&'a str>,
    pub fs_type: Option<&'a str>,
    pub read_only: bool,
}

/// File system types that live in memory: a cluster's data there is gone at the next boot.
const MEMORY_FS: &[&str] = &["tmpfs", "ramfs", "devtmpfs"];

/// The host-dependent half of the check: the folder exists or can be created, is not on a
/// read-only or in-memory mount, and, on a first install (`installed` false), is new or empty —
/// `kstrap down` removes it whole, so it must hold nothing but the cluster's data.
pub fn check_on_host(dir: &str, host: &OnHost, installed: bool) -> Result<(), DataDirError> {
    if host.not_a_folder {
        return Err(DataDirError::new(dir, "it exists and is not a folder", NEW_FOLDER));
    }
    if host.parent_not_a_folder {
        return Err(DataDirError::new(
            dir,
            format!("it cannot be created: {} is not a folder", host.existing_parent),
            NEW_FOLDER,
        ));
    }
    let on = host.mount_point.unwrap_or(host.existing_parent);
    if let Some(fs) = host.fs_type.filter(|fs| MEMORY_FS.contains(fs)) {
        return Err(DataDirError::new(
            dir,
            format!("it is on {on}, a {fs} mount: the cluster's data would be lost at the next boot"),
            "give a folder on a disk partition (see `findmnt -T DIR`)",
        ));
    }
    if host.read_only {
        return Err(DataDirError::new(
            dir,
            format!("it is on {on}, which is mounted read-only"),
            "give a folder on a writable partition, or remount it read-write",
        ));
    }
    if host.mount_point == Some(dir) && !installed {
        return Err(DataDirError::new(
            dir,
            "it is a mount point itself, and `kstrap down` never removes a folder with something mounted at it",
            format!("give a folder inside it, such as {dir}/kstrap"),
        ));
    }
    if host.not_empty && !installed {
        return Err(DataDirError::new(
            dir,
            "the folder is not empty, and `kstrap down` removes the data folder whole",
            format!("give a new or empty folder, such as {dir}/kstrap"),
        ));
    }
    Ok(())
}

/// Why a re-run must not go on: kstrap installed `distro` with its data in `installed` (`None`:
/// the default) and this run asks for `asked`. Moving a cluster's data is not kstrap's job (k0s's
/// own flag says "DO NOT CHANGE for an existing setup, things will break!", `pkg/config/cli.go`).
pub fn rerun_refusal(distro: Distro, installed: Option<&str>, asked: Option<&str>, state_path: &str) -> Option<String> {
    let default = default_dir(distro);
    let (installed, asked) = (installed.unwrap_or(default), asked.unwrap_or(default));
    (installed != asked).then(|| {
        format!(
            "kstrap installed {distro} here with its data in {installed} (recorded in {state_path}); this run asks for {asked}, and kstrap does not move a cluster's data\n  fix: run without --data-dir (or with --data-dir {installed}) to keep it; to start over in {asked}, `kstrap down` first (the cluster's data is lost) or move the data yourself"
        )
    })
}

fn within(path: &str, base: &str) -> bool {
    path == base || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
}

/// `path` moved from under `from` to under `to`; other paths unchanged.
fn rebase(path: &'static str, from: &str, to: &str) -> &'static str {
    match path.strip_prefix(from) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => leak(format!("{to}{rest}")),
        _ => path,
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn rebase_all(paths: &'static [&'static str], from: &str, to: &str) -> &'static [&'static str] {
    let v: Vec<&'static str> = paths.iter().map(|p| rebase(p, from, to)).collect();
    Box::leak(v.into_boxed_slice())
}

type Key = (&'static str, bool, String);

/// Layouts derived for a data directory, made once per process and kept: a run knows one data
/// directory (two in tests), so what is kept is a few hundred bytes, and every caller keeps the
/// `&'static` paths it always had.
fn layouts() -> &'static Mutex<HashMap<Key, &'static Paths>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, &'static Paths>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn uninstalls() -> &'static Mutex<HashMap<(&'static str, String), &'static Uninstall>> {
    static CACHE: OnceLock<Mutex<HashMap<(&'static str, String), &'static Uninstall>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Distro {
    /// Where the distribution keeps its files on a machine of this role whose data directory is
    /// `data_dir` (`None`: the distribution's default). Every path under the default data
    /// directory moves under `data_dir`; the rest stay.
    pub fn layout(self, role: Role, data_dir: Option<&str>) -> &'static Paths {
        let base = self.paths_for(role);
        let from = default_dir(self);
        let Some(to) = data_dir.filter(|d| *d != from) else {
            return base;
        };
        let key = (self.name(), role.is_server(), to.to_string());
        let mut cache = layouts().lock().unwrap_or_else(|e| e.into_inner());
        cache.entry(key).or_insert_with(|| {
            let r = |p: &'static str| rebase(p, from, to);
            Box::leak(Box::new(Paths {
                binary: base.binary,
                config: base.config,
                service_unit: base.service_unit,
                unit_file: base.unit_file,
                env_file: base.env_file,
                kubeconfig: r(base.kubeconfig),
                data_dirs: rebase_all(base.data_dirs, from, to),
                containerd_socket: base.containerd_socket,
                containerd_config: r(base.containerd_config),
                containerd_drop_in_dir: base.containerd_drop_in_dir,
                images_dir: r(base.images_dir),
                manifests_dir: base.manifests_dir.map(r),
                node_token: base.node_token.map(r),
            }))
        })
    }

    /// What the distribution's own uninstall does when its data directory is `data_dir`: the
    /// same effects with every path under the default data directory moved.
    pub fn uninstall_in(self, data_dir: Option<&str>) -> &'static Uninstall {
        let base = self.uninstall();
        let from = default_dir(self);
        let Some(to) = data_dir.filter(|d| *d != from) else {
            return base;
        };
        let mut cache = uninstalls().lock().unwrap_or_else(|e| e.into_inner());
        cache.entry((self.name(), to.to_string())).or_insert_with(|| {
            let trees: Vec<_> = base.trees.iter().map(|(t, w)| (rebase(t, from, to), *w)).collect();
            Box::leak(Box::new(Uninstall {
                shim_prefix: base.shim_prefix.map(|p| rebase(p, from, to)),
                mount_prefixes: rebase_all(base.mount_prefixes, from, to),
                netns_match: base.netns_match,
                bridge: base.bridge,
                interfaces: base.interfaces,
                iptables_drop: base.iptables_drop,
                iptables_drop_any_case: base.iptables_drop_any_case,
                trees: Box::leak(trees.into_boxed_slice()),
                files: base.files,
                delegated: base.delegated,
            }))
        })
    }
}

/// Where the local-path provisioner keeps volumes: k3s's own default `<data-dir>/storage` (see
/// the module notes); on k0s, where kstrap installs the provisioner, `<data-dir>/local-path-provisioner`
/// (`crate::addons::storage`). Inside the data directory, so `down` removes them with it and
/// `down --keep-data` keeps them.
pub fn volume_dir(distro: Distro, data_dir: Option<&str>) -> String {
    let dir = data_dir.unwrap_or(default_dir(distro));
    match distro {
        Distro::K3s => format!("{dir}/storage"),
        Distro::K0s => format!("{dir}/local-path-provisioner"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_layout_is_the_static_one() {
        for d in [Distro::K3s, Distro::K0s] {
            assert!(std::ptr::eq(d.layout(Role::Server, None), d.paths()));
            assert!(std::ptr::eq(d.layout(Role::Server, Some(default_dir(d))), d.paths()));
            assert!(std::ptr::eq(d.uninstall_in(None), d.uninstall()));
            assert_eq!(d.paths().data_dirs[0], default_dir(d));
        }
    }

    #[test]
    fn k3s_paths_under_the_data_dir_move_and_the_rest_stay() {
        let p = Distro::K3s.layout(Role::Server, Some("/data/k3s"));
        assert_eq!(p.data_dirs, ["/data/k3s", "/etc/rancher/k3s"]);
        assert_eq!(p.images_dir, "/data/k3s/agent/images");
        assert_eq!(p.containerd_config, "/data/k3s/agent/etc/containerd/config.toml");
        assert_eq!(p.manifests_dir, Some("/data/k3s/server/manifests"));
        assert_eq!(p.node_token, Some("/data/k3s/server/node-token"));
        assert_eq!(p.kubeconfig, "/etc/rancher/k3s/k3s.yaml");
        assert_eq!(p.containerd_socket, "/run/k3s/containerd/containerd.sock");
        assert_eq!(p.config, "/etc/rancher/k3s/config.yaml");
        // Asked again: the same layout, not a second one.
        assert!(std::ptr::eq(p, Distro::K3s.layout(Role::Server, Some("/data/k3s"))));
        let agent = Distro::K3s.layout(Role::Worker, Some("/data/k3s"));
        assert_eq!(agent.kubeconfig, "/data/k3s/agent/kubelet.kubeconfig");
        assert_eq!(agent.service_unit, "k3s-agent.service");
    }

    #[test]
    fn k0s_paths_under_the_data_dir_move_and_the_run_dir_stays() {
        let p = Distro::K0s.layout(Role::Server, Some("/srv/k0s"));
        assert_eq!(p.data_dirs, ["/srv/k0s", "/etc/k0s", "/run/k0s"]);
        assert_eq!(p.kubeconfig, "/srv/k0s/pki/admin.conf");
        assert_eq!(p.images_dir, "/srv/k0s/images");
        assert_eq!(p.containerd_config, "/run/k0s/containerd-cri.toml");
        assert_eq!(
            Distro::K0s.layout(Role::Worker, Some("/srv/k0s")).kubeconfig,
            "/srv/k0s/kubelet.conf"
        );
    }

    #[test]
    fn uninstall_follows_the_data_dir() {
        let k3s = Distro::K3s.uninstall_in(Some("/data/k3s"));
        assert_eq!(k3s.shim_prefix, Some("/data/k3s/data/"));
        assert!(
            k3s.trees
                .iter()
                .any(|(t, w)| *t == "/data/k3s" && *w == super::super::uninstall::When::WithData)
        );
        assert!(!k3s.trees.iter().any(|(t, _)| t.starts_with("/var/lib/rancher")));
        let k0s = Distro::K0s.uninstall_in(Some("/data/k0s"));
        assert_eq!(k0s.mount_prefixes, ["/data/k0s", "/run/netns"]);
        let trees: Vec<&str> = k0s.trees.iter().map(|(t, _)| *t).collect();
        assert_eq!(trees, ["/data/k0s/kubelet", "/data/k0s", "/run/k0s"]);
    }

    #[test]
    fn a_prefix_that_is_not_a_whole_component_does_not_move() {
        assert_eq!(rebase("/var/lib/k0sx/a", "/var/lib/k0s", "/d"), "/var/lib/k0sx/a");
        assert_eq!(rebase("/var/lib/k0s", "/var/lib/k0s", "/d"), "/d");
        assert_eq!(rebase("/var/lib/k0s/a", "/var/lib/k0s", "/d"), "/d/a");
    }

    #[test]
    fn values_are_checked_by_their_spelling() {
        let ok = |v: &str| check(Path::new(v));
        assert_eq!(ok("/data/k3s/").unwrap(), "/data/k3s");
        assert_eq!(ok("/mnt/ssd/kstrap").unwrap(), "/mnt/ssd/kstrap");
        assert_eq!(ok("/var/lib/rancher/k3s").unwrap(), "/var/lib/rancher/k3s");
        for (bad, why) in [
            ("data/k3s", "relative"),
            ("/data/../etc", "`..`"),
            ("/data//k3s", "empty"),
            ("/data/my disk", "space"),
            ("/", "holds more than the cluster"),
            ("/home", "holds more than the cluster"),
            ("/var/lib", "holds more than the cluster"),
            ("/tmp/k3s", "inside /tmp"),
            ("/run/k3s", "inside /run"),
            ("/etc/k3s", "inside /etc"),
            ("/var/lib/kstrap", "inside /var/lib/kstrap"),
        ] {
            let e = ok(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert!(e.to_string().starts_with("--data-dir "), "{e}");
            assert!(e.to_string().contains("fix: "), "{e}");
        }
    }

    fn on<'a>(parent: &'a str) -> OnHost<'a> {
        OnHost {
            not_a_folder: false,
            not_empty: false,
            existing_parent: parent,
            parent_not_a_folder: false,
            mount_point: Some("/data"),
            fs_type: Some("ext4"),
            read_only: false,
        }
    }

    #[test]
    fn the_host_must_hold_it_on_a_writable_disk() {
        assert!(check_on_host("/data/k3s", &on("/data"), false).is_ok());
        let tmpfs = OnHost {
            fs_type: Some("tmpfs"),
            ..on("/data")
        };
        assert!(
            check_on_host("/data/k3s", &tmpfs, false)
                .unwrap_err()
                .to_string()
                .contains("tmpfs")
        );
        let ro = OnHost {
            read_only: true,
            ..on("/data")
        };
        assert!(
            check_on_host("/data/k3s", &ro, false)
                .unwrap_err()
                .to_string()
                .contains("read-only")
        );
        let file = OnHost {
            not_a_folder: true,
            ..on("/data")
        };
        assert!(
            check_on_host("/data/k3s", &file, false)
                .unwrap_err()
                .to_string()
                .contains("not a folder")
        );
        let blocked = OnHost {
            parent_not_a_folder: true,
            ..on("/data/file")
        };
        assert!(
            check_on_host("/data/file/k3s", &blocked, true)
                .unwrap_err()
                .to_string()
                .contains("cannot be created")
        );
        let full = OnHost {
            not_empty: true,
            ..on("/data")
        };
        assert!(
            check_on_host("/data/k3s", &full, false)
                .unwrap_err()
                .to_string()
                .contains("not empty")
        );
        let mounted = OnHost {
            mount_point: Some("/data/k3s"),
            existing_parent: "/data/k3s",
            ..on("/data")
        };
        assert!(
            check_on_host("/data/k3s", &mounted, false)
                .unwrap_err()
                .to_string()
                .contains("/data/k3s/kstrap")
        );
        // Once installed, the folder holds the cluster's own data.
        assert!(check_on_host("/data/k3s", &full, true).is_ok());
    }

    #[test]
    fn a_rerun_keeps_its_data_dir() {
        let s = "/var/lib/kstrap/state.json";
        assert_eq!(rerun_refusal(Distro::K3s, None, None, s), None);
        assert_eq!(rerun_refusal(Distro::K3s, None, Some("/var/lib/rancher/k3s"), s), None);
        assert_eq!(rerun_refusal(Distro::K0s, Some("/d/k0s"), Some("/d/k0s"), s), None);
        let why = rerun_refusal(Distro::K3s, Some("/data/kstrap"), Some("/data/other"), s).unwrap();
        assert!(
            why.contains("data in /data/kstrap") && why.contains("asks for /data/other") && why.contains("fix: "),
            "{why}"
        );
        assert!(
            rerun_refusal(Distro::K0s, None, Some("/data/k0s"), s)
                .unwrap()
                .contains("/var/lib/k0s")
        );
    }

    #[test]
    fn volumes_live_inside_the_data_dir() {
        assert_eq!(volume_dir(Distro::K3s, None), "/var/lib/rancher/k3s/storage");
        assert_eq!(volume_dir(Distro::K3s, Some("/data/k3s")), "/data/k3s/storage");
        assert_eq!(volume_dir(Distro::K0s, None), "/var/lib/k0s/local-path-provisioner");
        assert_eq!(volume_dir(Distro::K0s, Some("/d")), "/d/local-path-provisioner");
    }
}
