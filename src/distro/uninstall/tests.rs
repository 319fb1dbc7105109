//! The uninstall data against the upstream copies in tests/fixtures/upstream/uninstall (see
//! SOURCE.md there).

use super::*;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upstream/uninstall")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Trimmed lines of the k3s scripts that change the host.
fn k3s_effect_lines() -> Vec<String> {
    let mut out = Vec::new();
    for name in ["k3s/killall.sh", "k3s/uninstall.sh"] {
        for line in fixture(name).lines() {
            let t = line.trim();
            if !t.starts_with('#') && EFFECT_WORDS.iter().any(|w| t.contains(w)) {
                out.push(t.to_string());
            }
        }
    }
    out
}

#[test]
fn every_effect_line_of_k3s_killall_and_uninstall_has_a_decision_and_no_decision_is_stale() {
    let lines = k3s_effect_lines();
    let known: Vec<&str> = UPSTREAM_K3S.iter().map(|(l, _)| *l).collect();
    let missing: Vec<&String> = lines.iter().filter(|l| !known.contains(&l.as_str())).collect();
    assert!(
        missing.is_empty(),
        "upstream lines kstrap has no decision for (add them to UPSTREAM_K3S):\n{missing:#?}"
    );
    let stale: Vec<&&str> = known.iter().filter(|k| !lines.iter().any(|l| l == *k)).collect();
    assert!(
        stale.is_empty(),
        "decisions for lines upstream no longer has:\n{stale:#?}"
    );
}

/// The word after `prefix` in each fixture line that starts with it.
fn args_after(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn k3s_folders_mounts_interfaces_and_rules_are_the_scripts_own() {
    let killall = fixture("k3s/killall.sh");
    let uninstall = fixture("k3s/uninstall.sh");
    let prefixes: Vec<String> = args_after(&killall, "do_unmount_and_remove ")
        .iter()
        .map(|a| a.trim_matches('\'').to_string())
        .collect();
    assert_eq!(prefixes, K3S.mount_prefixes);

    let links: Vec<String> = args_after(&killall, "ip link delete ")
        .into_iter()
        .filter(|a| !a.starts_with('$'))
        .collect();
    assert_eq!(links, K3S.interfaces);
    assert!(killall.contains(&format!("grep 'master {}'", K3S.bridge.unwrap())));
    assert!(killall.contains(&format!("grep {} |", K3S.netns_match.unwrap())));

    // iptables: grep -v KUBE- | grep -v CNI- | grep -iv flannel
    let rule = killall.lines().find(|l| l.starts_with("iptables-save")).unwrap();
    let case_sensitive: Vec<String> = rule
        .split('|')
        .filter_map(|p| p.trim().strip_prefix("grep -v "))
        .map(str::to_string)
        .collect();
    let any_case: Vec<String> = rule
        .split('|')
        .filter_map(|p| p.trim().strip_prefix("grep -iv "))
        .map(str::to_string)
        .collect();
    assert_eq!(case_sensitive, K3S.iptables_drop);
    assert_eq!(any_case, K3S.iptables_drop_any_case);

    // getshims: "${K3S_DATA_DIR}"'/data/[^/]*/bin/containerd-shim' with the default data dir.
    assert!(killall.contains("K3S_DATA_DIR=${K3S_DATA_DIR:-/var/lib/rancher/k3s}"));
    assert!(killall.contains("'/data/[^/]*/bin/containerd-shim'"));
    assert_eq!(K3S.shim_prefix, Some("/var/lib/rancher/k3s/data/"));

    // Folders: killall's `rm -rf /var/lib/cni/` (Always), uninstall's rm -rf + the data dir.
    let mut always: Vec<String> = args_after(&killall, "rm -rf ")
        .iter()
        .map(|a| a.trim_end_matches('/').to_string())
        .collect();
    let mut with_data: Vec<String> = args_after(&uninstall, "rm -rf ")
        .into_iter()
        .filter(|a| a.starts_with('/'))
        .collect();
    assert!(uninstall.contains("clean_mounted_directory \\${K3S_DATA_DIR}"));
    with_data.push("/var/lib/rancher/k3s".into());
    let mut ours_always: Vec<String> = K3S
        .trees
        .iter()
        .filter(|(_, w)| *w == When::Always)
        .map(|(p, _)| p.to_string())
        .collect();
    let mut ours_with_data: Vec<String> = K3S
        .trees
        .iter()
        .filter(|(_, w)| *w == When::WithData)
        .map(|(p, _)| p.to_string())
        .collect();
    for v in [&mut always, &mut with_data, &mut ours_always, &mut ours_with_data] {
        v.sort();
    }
    assert_eq!(ours_always, always);
    assert_eq!(ours_with_data, with_data);

    // Files: the unit, its env file and the binary (install.sh defaults: /etc/systemd/system,
    // /usr/local/bin, system name k3s).
    for f in [
        "rm -f ${FILE_K3S_SERVICE}",
        "rm -f ${FILE_K3S_ENV}",
        "rm -f ${BIN_DIR}/k3s",
    ] {
        assert!(uninstall.contains(f), "{f}");
    }
    let paths = Distro::K3s.paths();
    assert_eq!(K3S.files, [paths.unit_file, paths.env_file.unwrap(), paths.binary]);
}

#[test]
fn k0s_reset_folders_files_and_link_are_resets_own() {
    let reset = fixture("k0s/reset.txt");
    assert!(reset.contains("DataDirDefault = \"/var/lib/k0s\""));
    assert!(reset.contains("runDir = \"/run/k0s\""));
    assert!(reset.contains("kubeletRootDir = filepath.Join(dataDir, \"kubelet\")"));
    for call in [
        "RemoveAll(d.kubeletRootDir)",
        "RemoveAll(d.dataDir)",
        "RemoveAll(d.runDir)",
    ] {
        assert!(reset.contains(call), "{call}");
    }
    let trees: Vec<&str> = K0S.trees.iter().map(|(p, _)| *p).collect();
    assert_eq!(trees, ["/var/lib/k0s/kubelet", "/var/lib/k0s", "/run/k0s"]);
    let cni: Vec<String> = reset
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"'))
        .filter_map(|l| l.strip_suffix("\","))
        .map(str::to_string)
        .collect();
    assert_eq!(cni, K0S.files[..3]);
    assert!(reset.contains("UninstallService(role)"));
    assert_eq!(K0S.files[3], Distro::K0s.paths().unit_file);
    assert!(reset.contains("\"kube-bridge\""));
    assert_eq!(K0S.interfaces, ["kube-bridge"]);
    assert!(reset.contains("removeMount(\"run/netns\")"));
    assert!(reset.contains("please stop k0s before reset"));
    assert!(reset.contains("the k0s binary itself remains"));
    assert!(K0S.delegated && !K3S.delegated);
    // The data dir kstrap records for k0s is the one reset removes.
    assert_eq!(Distro::K0s.paths().data_dirs[0], "/var/lib/k0s");
}

#[test]
fn toolkit_leftovers_are_where_the_operator_and_toolkit_put_them() {
    let f = fixture("gpu-operator/toolkit-host-paths.txt");
    assert!(f.contains("installDir: \"/usr/local/nvidia\""));
    assert!(f.contains("defaultToolkitInstallDir = \"/usr/local/nvidia\""));
    assert!(f.contains("toolkitSubDir            = \"toolkit\""));
    assert_eq!(TOOLKIT_DIR, format!("{TOOLKIT_INSTALL_DIR}/toolkit"));
    assert!(TOOLKIT_MARK.starts_with(TOOLKIT_DIR));
    assert!(f.contains("Value:       \"/var/run/cdi\","));
    assert!(f.contains("Value:       \"management.nvidia.com/gpu\","));
    assert!(f.contains("return vendor + \"-\" + class"));
    assert_eq!(TOOLKIT_CDI_SPEC, "/var/run/cdi/management.nvidia.com-gpu.yaml");
    assert!(f.contains("DefaultContainerdDropInConfigFile = \"/etc/containerd/conf.d/99-nvidia.toml\""));
    assert_eq!(toolkit_drop_in(Distro::K3s), "/etc/containerd/conf.d/99-nvidia.toml");
    assert_eq!(toolkit_drop_in(Distro::K0s), "/etc/k0s/containerd.d/nvidia.toml");
    // The operator's toolkit version is the one the excerpt was read from.
    assert!(f.contains("version: v1.19.1"));
}
