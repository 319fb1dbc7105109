//! What each distribution's own uninstall removes from a host, as data: the one list `down` may
//! delete from, and the host-side effects it performs before deleting.
//!
//! k3s: the `k3s-killall.sh` and `k3s-uninstall.sh` scripts that k3s-io/k3s `install.sh` writes
//! (`create_killall`, `create_uninstall`; copies in tests/fixtures/upstream/uninstall/k3s/,
//! provenance in tests/fixtures/upstream/uninstall/SOURCE.md). The unit has `KillMode=process`,
//! so stopping it leaves every containerd shim and container running; killall kills them,
//! unmounts what they mounted, and removes the CNI namespaces, interfaces and iptables rules. kstrap does the same, effect by
//! effect, through the host seam, so each one is planned and shown by `down --dry-run`.
//!
//! k0s: `k0s reset` (k0sproject/k0s v1.35.3+k0s.0 `pkg/cleanup`) stops every container through
//! the CRI, unmounts what is mounted under the data and kubelet folders, and removes the data,
//! kubelet and run folders, three CNI files and the `kube-bridge` link. kstrap delegates to it
//! (after `k0s stop`: reset refuses a running k0s) and removes what reset leaves and kstrap
//! installed: the binary ("the k0s binary itself remains", docs/reset.md) and `/etc/k0s/k0s.yaml`.
//!
//! GPU operator: its container toolkit (NVIDIA/gpu-operator v26.3.2 pins nvidia-container-toolkit
//! v1.19.1) installs under `/usr/local/nvidia/toolkit`, writes a containerd drop-in and a CDI spec
//! on the host, and undoes only its runtime configuration, and only when stopped by a signal it
//! handles; killall's SIGKILL leaves all three.
//!
//! `UPSTREAM_K3S` maps every effect line of the upstream scripts to what kstrap does with it (the
//! same, or skipped and why); the tests fail when the scripts and this table drift apart.

use super::Distro;

/// How a folder in the list is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Also with `--keep-data` (k3s-killall.sh removes it).
    Always,
    /// Only when the data goes too (the uninstall script or `k0s reset` removes it).
    WithData,
}

/// A distribution's uninstall, as data.
#[derive(Debug)]
pub struct Uninstall {
    /// Processes whose command line starts with this and then `<hash>/bin/containerd-shim` are
    /// killed with all their descendants (SIGKILL), as `getshims` + `killtree` do.
    pub shim_prefix: Option<&'static str>,
    /// Every mount point starting with one of these is unmounted (`umount -f`, deepest first) and
    /// then removed (`do_unmount_and_remove`).
    pub mount_prefixes: &'static [&'static str],
    /// Network namespaces whose name contains this are deleted.
    pub netns_match: Option<&'static str>,
    /// Interfaces enslaved to this bridge are deleted (`ip link show | grep 'master cni0'`).
    pub bridge: Option<&'static str>,
    /// Interfaces deleted by name, when present.
    pub interfaces: &'static [&'static str],
    /// iptables rules containing one of these (case-sensitive) are dropped.
    pub iptables_drop: &'static [&'static str],
    /// iptables rules containing one of these (any case) are dropped.
    pub iptables_drop_any_case: &'static [&'static str],
    /// Folders removed, and when.
    pub trees: &'static [(&'static str, When)],
    /// Files removed (with the unit, or by `k0s reset`).
    pub files: &'static [&'static str],
    /// The distribution's own reset command does the killing, unmounting and removing (k0s).
    pub delegated: bool,
}

/// k3s-killall.sh and k3s-uninstall.sh (k3s-io/k3s install.sh; copies in
/// tests/fixtures/upstream/uninstall/k3s).
pub static K3S: Uninstall = Uninstall {
    // getshims: grep -w "${K3S_DATA_DIR}"'/data/[^/]*/bin/containerd-shim'
    shim_prefix: Some("/var/lib/rancher/k3s/data/"),
    // do_unmount_and_remove '/run/k3s' '/var/lib/kubelet/pods' '/var/lib/kubelet/plugins'
    // '/run/netns/cni-' (a text prefix: `case "$path" in $1*)`).
    mount_prefixes: &[
        "/run/k3s",
        "/var/lib/kubelet/pods",
        "/var/lib/kubelet/plugins",
        "/run/netns/cni-",
    ],
    // ip netns show | grep cni- | xargs -n 1 ip netns delete
    netns_match: Some("cni-"),
    // remove_interfaces
    bridge: Some("cni0"),
    interfaces: &[
        "cni0",
        "flannel.1",
        "flannel-v6.1",
        "kube-ipvs0",
        "flannel-wg",
        "flannel-wg-v6",
    ],
    // iptables-save | grep -v KUBE- | grep -v CNI- | grep -iv flannel | iptables-restore
    iptables_drop: &["KUBE-", "CNI-"],
    iptables_drop_any_case: &["flannel"],
    trees: &[
        // killall: rm -rf /var/lib/cni/
        ("/var/lib/cni", When::Always),
        // uninstall: rm -rf /etc/rancher/k3s /run/k3s /run/flannel; clean_mounted_directory
        // ${K3S_DATA_DIR}; rm -rf /var/lib/kubelet
        ("/etc/rancher/k3s", When::WithData),
        ("/run/k3s", When::WithData),
        ("/run/flannel", When::WithData),
        ("/var/lib/rancher/k3s", When::WithData),
        ("/var/lib/kubelet", When::WithData),
    ],
    // uninstall: rm -f ${FILE_K3S_SERVICE} ${FILE_K3S_ENV} ${BIN_DIR}/k3s
    files: &[
        "/etc/systemd/system/k3s.service",
        "/etc/systemd/system/k3s.service.env",
        "/usr/local/bin/k3s",
    ],
    delegated: false,
};

/// `k0s reset` (k0sproject/k0s v1.35.3+k0s.0 pkg/cleanup; excerpts in
/// tests/fixtures/upstream/uninstall/k0s).
pub static K0S: Uninstall = Uninstall {
    shim_prefix: None,
    // directories.Run: everything mounted under the data dir and the kubelet root dir;
    // containers_linux.go: removeMount("run/netns").
    mount_prefixes: &["/var/lib/k0s", "/run/netns"],
    netns_match: None,
    bridge: None,
    // bridge_linux.go
    interfaces: &["kube-bridge"],
    iptables_drop: &[],
    iptables_drop_any_case: &[],
    trees: &[
        // directories.Run: RemoveAll(kubeletRootDir) (default <data dir>/kubelet), dataDir, runDir
        ("/var/lib/k0s/kubelet", When::WithData),
        ("/var/lib/k0s", When::WithData),
        ("/run/k0s", When::WithData),
    ],
    files: &[
        // cni_linux.go
        "/etc/cni/net.d/10-calico.conflist",
        "/etc/cni/net.d/calico-kubeconfig",
        "/etc/cni/net.d/10-kuberouter.conflist",
        // services.go: install.UninstallService("controller")
        "/etc/systemd/system/k0scontroller.service",
    ],
    delegated: true,
};

impl Distro {
    /// What the distribution's own uninstall does.
    pub fn uninstall(self) -> &'static Uninstall {
        match self {
            Distro::K3s => &K3S,
            Distro::K0s => &K0S,
        }
    }
}

/// The GPU operator's toolkit install folder on the host: `toolkit.installDir` (gpu-operator
/// v26.3.2 values.yaml) + `toolkitSubDir` (nvidia-container-toolkit v1.19.1
/// cmd/nvidia-ctk-installer/main.go).
pub const TOOLKIT_DIR: &str = "/usr/local/nvidia/toolkit";
/// `toolkit.installDir`, the hostPath the operator mounts; removed when empty.
pub const TOOLKIT_INSTALL_DIR: &str = "/usr/local/nvidia";
/// The CDI spec the toolkit generates: `--cdi-output-dir` default `/var/run/cdi`, kind
/// `management.nvidia.com/gpu` → `management.nvidia.com-gpu` (CDI `GenerateSpecName`) + `.yaml`.
pub const TOOLKIT_CDI_SPEC: &str = "/var/run/cdi/management.nvidia.com-gpu.yaml";
/// Text that marks a file as the operator toolkit's: it names binaries in `TOOLKIT_DIR`. A file
/// without it (a toolkit installed on the host by its package) is kept.
pub const TOOLKIT_MARK: &str = "/usr/local/nvidia/toolkit/";

/// The containerd drop-in the toolkit writes for this distribution: on k0s kstrap sets
/// `RUNTIME_DROP_IN_CONFIG` (src/gpu/values.rs); on k3s the operator's default,
/// `DefaultContainerdDropInConfigFile` (gpu-operator v26.3.2 controllers/object_controls.go).
pub fn toolkit_drop_in(distro: Distro) -> String {
    match distro.paths().containerd_drop_in_dir {
        Some(dir) => format!("{dir}/nvidia.toml"),
        None => "/etc/containerd/conf.d/99-nvidia.toml".to_string(),
    }
}

/// What kstrap does with one line of an upstream uninstall script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Does {
    /// The same effect, named as `down` describes it.
    Same(&'static str),
    /// Not done, and why.
    Skipped(&'static str),
}

/// Every line of k3s-killall.sh and k3s-uninstall.sh that changes the host, and what kstrap does
/// with it. Lines are as in the scripts, trimmed.
pub const UPSTREAM_K3S: &[(&str, Does)] = &[
    // k3s-killall.sh
    (
        "[ -s $service ] && systemctl stop $(basename $service)",
        Does::Same("stop and disable k3s.service (kstrap's own unit only: another k3s unit is not kstrap's)"),
    ),
    (
        "[ -x $service ] && $service stop",
        Does::Skipped("OpenRC: kstrap installs a systemd unit only"),
    ),
    (
        "kill -9 $(",
        Does::Same("kill k3s's containerd shims and their children (SIGKILL)"),
    ),
    (
        "[ -z \"$iface\" ] || ip link delete $iface",
        Does::Same("delete network interface <member of cni0>"),
    ),
    ("ip link delete cni0", Does::Same("delete network interface cni0")),
    (
        "ip link delete flannel.1",
        Does::Same("delete network interface flannel.1"),
    ),
    (
        "ip link delete flannel-v6.1",
        Does::Same("delete network interface flannel-v6.1"),
    ),
    (
        "ip link delete kube-ipvs0",
        Does::Same("delete network interface kube-ipvs0"),
    ),
    (
        "ip link delete flannel-wg",
        Does::Same("delete network interface flannel-wg"),
    ),
    (
        "ip link delete flannel-wg-v6",
        Does::Same("delete network interface flannel-wg-v6"),
    ),
    (
        "tailscale set --advertise-routes=",
        Does::Skipped(
            "kstrap never enables k3s's tailscale integration; clearing the routes would undo the user's own",
        ),
    ),
    (
        "done < /proc/self/mounts | sort -r | xargs -r -t -n 1 sh -c 'umount -f \"$0\" && rm -rf \"$0\"'",
        Does::Same("unmount and remove <mount point>"),
    ),
    (
        "do_unmount_and_remove '/run/k3s'",
        Does::Same("unmount and remove /run/k3s"),
    ),
    (
        "do_unmount_and_remove '/var/lib/kubelet/pods'",
        Does::Same("unmount and remove /var/lib/kubelet/pods"),
    ),
    (
        "do_unmount_and_remove '/var/lib/kubelet/plugins'",
        Does::Same("unmount and remove /var/lib/kubelet/plugins"),
    ),
    (
        "do_unmount_and_remove '/run/netns/cni-'",
        Does::Same("unmount and remove /run/netns/cni-"),
    ),
    (
        "ip netns show 2>/dev/null | grep cni- | xargs -r -t -n 1 ip netns delete",
        Does::Same("delete network namespace <cni-…>"),
    ),
    ("rm -rf /var/lib/cni/", Does::Same("remove /var/lib/cni")),
    (
        "iptables-save | grep -v KUBE- | grep -v CNI- | grep -iv flannel | iptables-restore",
        Does::Same("drop <n> KUBE-/CNI-/flannel iptables rules"),
    ),
    (
        "ip6tables-save | grep -v KUBE- | grep -v CNI- | grep -iv flannel | ip6tables-restore",
        Does::Same("drop <n> KUBE-/CNI-/flannel ip6tables rules"),
    ),
    // k3s-uninstall.sh
    (
        "${KILLALL_K3S_SH}",
        Does::Same("kill k3s's containerd shims and their children (SIGKILL) (all of k3s-killall.sh, first)"),
    ),
    (
        "systemctl disable ${SYSTEM_NAME}",
        Does::Same("stop and disable k3s.service"),
    ),
    (
        "systemctl reset-failed ${SYSTEM_NAME}",
        Does::Same("stop and disable k3s.service (then `systemctl reset-failed`)"),
    ),
    ("systemctl daemon-reload", Does::Same("reload systemd")),
    (
        "rc-update delete ${SYSTEM_NAME} default",
        Does::Skipped("OpenRC: kstrap installs a systemd unit only"),
    ),
    (
        "rm -f ${FILE_K3S_SERVICE}",
        Does::Same("remove /etc/systemd/system/k3s.service"),
    ),
    (
        "rm -f ${FILE_K3S_ENV}",
        Does::Same("remove /etc/systemd/system/k3s.service.env"),
    ),
    (
        "rm -f ${UNINSTALL_K3S_SH}",
        Does::Skipped("kstrap does not write the uninstall script"),
    ),
    (
        "rm -f ${BIN_DIR}/\\$cmd",
        Does::Skipped("kstrap does not create the kubectl/crictl/ctr links, so it does not remove them"),
    ),
    (
        "rm -rf \"\\$1\"",
        Does::Same("remove data folder /var/lib/rancher/k3s (refused while anything is mounted under it)"),
    ),
    (
        "clean_mounted_directory \"\\$path\"",
        Does::Skipped("kstrap does not delete inside a mount it did not unmount: it refuses and names the mount"),
    ),
    (
        "rm -rf \"\\$path\"",
        Does::Same("remove data folder /var/lib/rancher/k3s"),
    ),
    ("rm \"\\$path\"", Does::Same("remove data folder /var/lib/rancher/k3s")),
    (
        "rm -rf /etc/rancher/k3s",
        Does::Same("remove data folder /etc/rancher/k3s"),
    ),
    ("rm -rf /run/k3s", Does::Same("remove /run/k3s")),
    ("rm -rf /run/flannel", Does::Same("remove /run/flannel")),
    (
        "clean_mounted_directory \\${K3S_DATA_DIR}",
        Does::Same("remove data folder /var/lib/rancher/k3s"),
    ),
    ("rm -rf /var/lib/kubelet", Does::Same("remove /var/lib/kubelet")),
    ("rm -f ${BIN_DIR}/k3s", Does::Same("remove /usr/local/bin/k3s")),
    (
        "rm -f ${KILLALL_K3S_SH}",
        Does::Skipped("kstrap does not write the killall script"),
    ),
    (
        "yum remove -y k3s-selinux",
        Does::Skipped("kstrap does not install the k3s-selinux package"),
    ),
    (
        "rm -f /etc/yum.repos.d/rancher-k3s-common*.repo",
        Does::Skipped("kstrap does not add the k3s-selinux package repository"),
    ),
    (
        "rpm-ostree uninstall k3s-selinux",
        Does::Skipped("kstrap does not install the k3s-selinux package"),
    ),
    (
        "uninstall_cmd=\"zypper remove -y k3s-selinux\"",
        Does::Skipped("kstrap does not install the k3s-selinux package"),
    ),
    (
        "uninstall_cmd=\"transactional-update --no-selfupdate -d run \\$uninstall_cmd\"",
        Does::Skipped("kstrap does not install the k3s-selinux package"),
    ),
    (
        "$SUDO \\$uninstall_cmd",
        Does::Skipped("kstrap does not install the k3s-selinux package"),
    ),
    (
        "rm -f /etc/zypp/repos.d/rancher-k3s-common*.repo",
        Does::Skipped("kstrap does not add the k3s-selinux package repository"),
    ),
];

/// Words that make a script line one that changes the host (the lines `UPSTREAM_K3S` must cover).
pub const EFFECT_WORDS: &[&str] = &[
    "systemctl ",
    "$service stop",
    "kill ",
    "kill -9",
    "umount",
    "rm ",
    "ip link delete",
    "ip netns delete",
    "-restore",
    "do_unmount_and_remove '",
    "clean_mounted_directory ",
    "tailscale set",
    "rc-update delete",
    "yum remove",
    "rpm-ostree uninstall",
    "uninstall_cmd",
    "${KILLALL_K3S_SH}",
];

#[cfg(test)]
mod tests;
