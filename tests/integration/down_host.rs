//! `kstrap down` on a host where k3s ran: what k3s-killall.sh and k3s-uninstall.sh do (k3s-io/k3s
//! install.sh, copies in tests/fixtures/upstream/uninstall/k3s), done through the host seam
//! against the fake host's stand-ins (TEST DOUBLES: process list, mount table, network namespaces, links and
//! iptables rules kept as files, with `ps`/`kill`/`umount`/`ip`/`iptables-*` scripts that read
//! and edit them), and what the GPU operator's toolkit left.

use crate::up_e2e::{Machine, World, text};
use kstrap::distro::uninstall::{Does, UPSTREAM_K3S};

/// A k3s node as it looks while running: shims with their containers, mounts, CNI namespaces,
/// interfaces and rules, next to things that are not k3s's.
const PS: &str = "\
1 0 /sbin/init
500 1 /usr/local/bin/k3s server
600 1 /var/lib/rancher/k3s/data/8d2a/bin/containerd-shim-runc-v2 -namespace k8s.io -id aaa -address /run/k3s/containerd/containerd.sock
601 600 /pause
602 600 /usr/bin/ollama serve
603 602 /usr/bin/ollama runner --model llama
610 1 /var/lib/rancher/k3s/data/8d2a/bin/containerd-shim-runc-v2 -namespace k8s.io -id bbb
611 610 /pause
700 1 /usr/bin/containerd-shim-runc-v2 -namespace moby -id docker
701 700 nginx
";
const PS_AFTER: &str = "\
1 0 /sbin/init
500 1 /usr/local/bin/k3s server
700 1 /usr/bin/containerd-shim-runc-v2 -namespace moby -id docker
701 700 nginx
";
const NETNS: &str = "cni-5f3e (id: 1)\ncni-9a01 (id: 0)\ndocker-ns\n";
const LINKS: &str = "\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN
    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP
3: docker0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP
4: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN
5: cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP
6: veth1a2b@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue master cni0 state UP
7: veth3c4d@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue master cni0 state UP
8: flannel-v6.1: <BROADCAST> mtu 1450 state UNKNOWN
9: kube-ipvs0: <BROADCAST> mtu 1500 state DOWN
10: flannel-wg: <POINTOPOINT> mtu 1420 state UNKNOWN
11: flannel-wg-v6: <POINTOPOINT> mtu 1420 state UNKNOWN
";
const LINKS_AFTER: &str = "\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN
    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP
3: docker0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP
";
const RULES: &str = "\
*filter
:INPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD
-A FORWARD -m comment --comment \"flannel forward\" -s 10.42.0.0/16 -j ACCEPT
-A FLANNEL-FWD -j ACCEPT
-A INPUT -p tcp --dport 22 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
";
const RULES_AFTER: &str = "\
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 22 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
";
/// Mounts: an unrelated disk first (it must stay), then what k3s and its pods mounted.
const UNRELATED: &str = "/mnt/data";
const MOUNTS: &[&str] = &[
    "/run/k3s/containerd/io.containerd.grpc.v1.cri/sandboxes/aaa/shm",
    "/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/aaa/rootfs",
    "/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/bbb/rootfs",
    "/var/lib/kubelet/pods/1111/volumes/kubernetes.io~projected/kube-api-access",
    "/var/lib/kubelet/plugins/kubernetes.io/csi/x/globalmount",
    "/run/netns/cni-5f3e",
];

fn mkdirs(w: &World, dirs: &[&str]) {
    for d in dirs {
        std::fs::create_dir_all(w.host.root.join(d.trim_start_matches('/'))).unwrap();
    }
}

/// The live node around a finished `up`.
fn live_k3s(w: &World) {
    w.host.set_table("ps", PS);
    w.host.set_table("netns", NETNS);
    w.host.set_table("links", LINKS);
    w.host.set_table("iptables", RULES);
    w.host.set_table("ip6tables", RULES);
    mkdirs(w, MOUNTS);
    mkdirs(
        w,
        &["/var/lib/cni/networks/cbr0", "/run/flannel", "/var/lib/kubelet/pki"],
    );
    std::fs::write(
        w.host.root.join("run/flannel/subnet.env"),
        "FLANNEL_NETWORK=10.42.0.0/16\n",
    )
    .unwrap();
    let mut mounts = vec![UNRELATED];
    mounts.extend_from_slice(MOUNTS);
    w.host.set_mounts(&mounts);
    // What the GPU operator's toolkit leaves when its container is killed.
    mkdirs(
        w,
        &[
            "/usr/local/nvidia/toolkit/.config",
            "/etc/containerd/conf.d",
            "/run/cdi",
        ],
    );
    std::fs::write(
        w.host.root.join("usr/local/nvidia/toolkit/nvidia-container-runtime"),
        "bin",
    )
    .unwrap();
    std::fs::write(
        w.host.root.join("etc/containerd/conf.d/99-nvidia.toml"),
        "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.nvidia.options]\n  BinaryName = \"/usr/local/nvidia/toolkit/nvidia-container-runtime\"\n",
    )
    .unwrap();
    std::fs::write(
        w.host.root.join("run/cdi/management.nvidia.com-gpu.yaml"),
        "kind: management.nvidia.com/gpu\nhooks:\n- path: /usr/local/nvidia/toolkit/nvidia-cdi-hook\n",
    )
    .unwrap();
}

/// The host before `up` (its k3s or k0s handing out the real control plane's kubeconfig): bare,
/// with an unrelated mounted disk and the usual `/var/run` link. None (after printing why) without
/// a real control plane.
fn world(distro: &str, test: &str) -> Option<World> {
    let w = World::real_for(distro, test)?;
    // Folders the operator's hostPath volumes create are not shown to be kstrap's: they stay.
    mkdirs(&w, &[UNRELATED, "/etc/containerd/conf.d", "/run/cdi", "/run/netns"]);
    std::fs::write(w.host.root.join("mnt/data/keep.txt"), "user data").unwrap();
    std::os::unix::fs::symlink("../run", w.host.root.join("var/run")).unwrap();
    w.host.set_mounts(&[UNRELATED]);
    Some(w)
}

#[test]
fn down_on_a_live_k3s_node_does_what_k3s_killall_and_uninstall_do_and_leaves_the_rest() {
    let Some(w) = world(
        "k3s",
        "down_on_a_live_k3s_node_does_what_k3s_killall_and_uninstall_do_and_leaves_the_rest",
    ) else {
        return;
    };
    let before = w.host.tree(&[]);
    w.up_ok(&[]);
    live_k3s(&w);
    w.host.take_log();

    // Planned and shown first, changing nothing.
    let live = w.host.tree(&[]);
    let out = w.kstrap(&["down", "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(w.host.tree(&[]), live, "--dry-run changes nothing");
    assert!(w.host.take_effects().is_empty());
    insta::assert_snapshot!("down_dry_run_live_k3s", plan);
    // Every upstream effect kstrap claims to do is in the plan.
    for (line, does) in UPSTREAM_K3S {
        if let Does::Same(what) = does {
            let shown = what.split(" (").next().unwrap().split('<').next().unwrap().trim();
            assert!(
                plan.contains(shown),
                "upstream `{line}`: {shown:?} not in the plan:\n{plan}"
            );
        }
    }

    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let effects = w.host.take_effects();
    let mut expected: Vec<String> = [
        "systemctl disable --now k3s.service",
        "systemctl reset-failed k3s.service",
        "kill -9 600 601 602 603 610 611",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Deepest (reverse-sorted) first within each prefix, prefixes in the script's order.
    for m in [MOUNTS[2], MOUNTS[1], MOUNTS[0], MOUNTS[3], MOUNTS[4], MOUNTS[5]] {
        expected.push(format!("umount -f {m}"));
    }
    for n in ["ip netns delete cni-5f3e", "ip netns delete cni-9a01"] {
        expected.push(n.into());
    }
    for l in [
        "veth1a2b",
        "veth3c4d",
        "cni0",
        "flannel.1",
        "flannel-v6.1",
        "kube-ipvs0",
        "flannel-wg",
        "flannel-wg-v6",
    ] {
        expected.push(format!("ip link delete {l}"));
    }
    expected.extend([
        "iptables-restore ".to_string(),
        "ip6tables-restore ".into(),
        "systemctl daemon-reload".into(),
    ]);
    assert_eq!(effects, expected);

    assert_eq!(
        w.host.table("ps"),
        PS_AFTER,
        "only k3s's shims and their children were killed"
    );
    assert_eq!(w.host.mounts(), [UNRELATED], "only what k3s mounted was unmounted");
    assert_eq!(w.host.table("netns"), "docker-ns\n");
    assert_eq!(w.host.table("links"), LINKS_AFTER);
    assert_eq!(w.host.table("iptables"), RULES_AFTER);
    assert_eq!(w.host.table("ip6tables"), RULES_AFTER);
    // Files, folders, toolkit leftovers: the root is as it was before `up`.
    assert_eq!(w.host.tree(&[]), before);
    assert!(!w.host.active("k3s.service"));
}

#[test]
fn down_refuses_to_remove_a_data_folder_while_a_disk_is_mounted_under_it() {
    let Some(w) = world(
        "k3s",
        "down_refuses_to_remove_a_data_folder_while_a_disk_is_mounted_under_it",
    ) else {
        return;
    };
    w.up_ok(&[]);
    let storage = "/var/lib/rancher/k3s/storage";
    mkdirs(&w, &[storage]);
    std::fs::write(w.host.root.join("var/lib/rancher/k3s/storage/pvc.img"), "volume").unwrap();
    w.host.set_mounts(&[UNRELATED, storage]);
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("remove data folder /var/lib/rancher/k3s failed: /var/lib/rancher/k3s still has something mounted under it (/var/lib/rancher/k3s/storage)"),
        "{err}"
    );
    assert!(err.contains("still on the machine"), "{err}");
    assert_eq!(
        std::fs::read_to_string(w.host.root.join("var/lib/rancher/k3s/storage/pvc.img")).unwrap(),
        "volume",
        "nothing under the mount was deleted"
    );
    let state = std::fs::read_to_string(w.host.root.join("var/lib/kstrap/state.json")).unwrap();
    assert!(
        state.contains("\"/var/lib/rancher/k3s\""),
        "the state still names the data: {state}"
    );
    // Unmounted by the user: `down` finishes.
    w.host.set_mounts(&[UNRELATED]);
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!w.host.root.join("var/lib/rancher").exists());
}

#[test]
fn toolkit_files_another_toolkit_wrote_are_kept_and_k0s_drop_in_goes() {
    // k3s: a drop-in that does not name the operator's toolkit is a host toolkit's.
    let test = "toolkit_files_another_toolkit_wrote_are_kept_and_k0s_drop_in_goes";
    let Some(w) = world("k3s", test) else {
        return;
    };
    w.up_ok(&[]);
    mkdirs(&w, &["/etc/containerd/conf.d"]);
    let drop_in = w.host.root.join("etc/containerd/conf.d/99-nvidia.toml");
    std::fs::write(&drop_in, "BinaryName = \"/usr/bin/nvidia-container-runtime\"\n").unwrap();
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("keep /etc/containerd/conf.d/99-nvidia.toml: does not name /usr/local/nvidia/toolkit"),
        "{all}"
    );
    assert!(drop_in.exists());

    // k0s: its drop-in folder is where kstrap points the toolkit; `k0s reset` does the rest.
    drop(w); // lets go of the cluster: the k0s world holds it exclusively
    let Some(w) = world("k0s", test) else {
        return;
    };
    w.up_ok(&["--distro", "k0s"]);
    mkdirs(&w, &["/etc/k0s/containerd.d", "/usr/local/nvidia/toolkit"]);
    std::fs::write(
        w.host.root.join("etc/k0s/containerd.d/nvidia.toml"),
        "BinaryName = \"/usr/local/nvidia/toolkit/nvidia-container-runtime\"\n",
    )
    .unwrap();
    std::fs::write(
        w.host.root.join("usr/local/nvidia/toolkit/nvidia-container-runtime"),
        "bin",
    )
    .unwrap();
    w.host.take_log();
    let out = w.kstrap(&["down", "--dry-run"]).output().unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("`k0s reset` it"), "{plan}");
    assert!(
        plan.contains("remove /etc/k0s/containerd.d/nvidia.toml (left by the GPU operator's container toolkit)"),
        "{plan}"
    );
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        w.host.take_effects(),
        ["k0s stop", "k0s reset", "systemctl daemon-reload"],
        "k0s: reset does the killing, unmounting and removing"
    );
    assert!(!w.host.root.join("etc/k0s").exists());
    assert!(!w.host.root.join("usr/local/nvidia").exists());
}

#[test]
fn up_replace_over_a_k3s_kstrap_did_not_install_kills_and_unmounts_before_removing_its_data() {
    let Some(w) = world(
        "k3s",
        "up_replace_over_a_k3s_kstrap_did_not_install_kills_and_unmounts_before_removing_its_data",
    ) else {
        return;
    };
    std::fs::write(w.host.root.join("usr/local/bin/k3s"), "someone else's").unwrap();
    std::fs::write(w.host.root.join("etc/systemd/system/k3s.service"), "[Service]\n").unwrap();
    mkdirs(&w, &["/var/lib/rancher/k3s/storage", "/var/lib/rancher/k3s/server/db"]);
    live_k3s(&w);
    // A disk mounted in its data folder: --replace stops before deleting anything in it.
    let mut mounts = vec![UNRELATED, "/var/lib/rancher/k3s/storage"];
    mounts.extend_from_slice(MOUNTS);
    w.host.set_mounts(&mounts);
    w.host.take_log();
    let out = w.up(&["--replace"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/var/lib/rancher/k3s still has something mounted under it (/var/lib/rancher/k3s/storage)"),
        "{err}"
    );
    assert!(w.host.root.join("var/lib/rancher/k3s/server/db").exists());
    let effects = w.host.take_effects();
    assert_eq!(effects[0], "systemctl disable --now k3s.service", "{effects:?}");
    assert_eq!(effects[1], "kill -9 600 601 602 603 610 611", "{effects:?}");
    assert!(effects.contains(&format!("umount -f {}", MOUNTS[5])), "{effects:?}");
    assert_eq!(w.host.mounts(), [UNRELATED, "/var/lib/rancher/k3s/storage"]);
    assert_eq!(w.host.table("ps"), PS_AFTER);

    // Unmounted by the user: --replace goes on and installs.
    w.host.set_mounts(&[UNRELATED]);
    w.up_ok(&["--replace"]);
    assert!(!w.host.root.join("var/lib/rancher/k3s/server/db").exists());
    assert!(w.host.active("k3s.service"));
}
