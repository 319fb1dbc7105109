//! Tests of the distribution module: URLs, rendered files and step lists. Rendered texts and
//! steps are also kept as insta snapshots in `snapshots/`, so a change shows up in review.

use super::*;
use crate::plan::step::{Action, Contents, Phase};
use serde_json::{Value, json};

pub(super) fn cluster(disable: &[&str], labels: &[(&str, &str)]) -> ClusterSettings {
    ClusterSettings {
        disable: disable.iter().map(|s| s.to_string()).collect(),
        node_labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

pub(super) fn ctx<'a>(
    distro: Distro,
    version: &'a Version,
    airgap: Option<&'a Path>,
    cluster: &'a ClusterSettings,
) -> DistroContext<'a> {
    DistroContext {
        distro,
        version,
        arch: "x86_64",
        mirror: DEFAULT_MIRROR,
        airgap,
        profile: "rtx-5090",
        cluster,
        kubeconfig_dest: "/home/ada/.kube/config",
        wait_timeout_s: 300,
        network: default_network(distro),
        node_addresses: &[],
        proxy: None,
        selinux: false,
        data_dir: None,
    }
}

/// The distribution's default ranges, as `network::choose` gives them on a host without overlaps.
fn default_network(distro: Distro) -> &'static network::ClusterNetwork {
    use std::sync::OnceLock;
    static K3S: OnceLock<network::ClusterNetwork> = OnceLock::new();
    static K0S: OnceLock<network::ClusterNetwork> = OnceLock::new();
    let cell = match distro {
        Distro::K3s => &K3S,
        Distro::K0s => &K0S,
    };
    cell.get_or_init(|| network::choose(distro, &crate::facts::NetworkFacts::default()))
}

pub(super) fn written(steps: &[Step], id: &str) -> String {
    let step = steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id}"));
    match &step.action {
        Action::WriteFile {
            contents: Contents::Text(t),
            ..
        } => t.clone(),
        other => panic!("step {id} writes no text: {other:?}"),
    }
}

pub(super) fn ids(steps: &[Step]) -> Vec<&str> {
    steps.iter().map(|s| s.id.as_str()).collect()
}

// ---- versions and catalog ---------------------------------------------------------------------

#[test]
fn default_versions_are_valid_tags_of_their_distribution() {
    for distro in [Distro::K3s, Distro::K0s] {
        let v = distro.default_version();
        assert_eq!(v.distro(), distro);
        assert_eq!(Version::parse(distro, &v.to_string()), Ok(v));
    }
    assert_eq!(Distro::K3s.default_version().to_string(), "v1.35.3+k3s1");
    assert_eq!(Distro::K0s.default_version().to_string(), "v1.35.3+k0s.0");
}

#[test]
fn a_version_of_the_other_distribution_is_refused() {
    let v = Distro::K0s.default_version();
    let err = binary_asset(Distro::K3s, &v, "x86_64", DEFAULT_MIRROR).unwrap_err();
    assert!(matches!(err, DistroError::VersionMismatch { .. }), "{err}");
    let settings = ClusterSettings::default();
    let err = host_steps(&ctx(Distro::K3s, &v, None, &settings)).unwrap_err();
    assert!(err.to_string().contains("v1.35.3+k3s1"), "{err}");
}

// ---- release assets ---------------------------------------------------------------------------

#[test]
fn binary_urls_for_both_distributions_arches_and_mirrors() {
    let k3s = Version::parse(Distro::K3s, "v1.33.4+k3s1").unwrap();
    let k0s = Version::parse(Distro::K0s, "v1.33.4+k0s.0").unwrap();
    let gh = "https://github.com/k3s-io/k3s/releases/download/v1.33.4%2Bk3s1";
    let mirror = "https://mirror.example.org/gh/k3s-io/k3s/releases/download/v1.33.4%2Bk3s1";
    let gh0 = "https://github.com/k0sproject/k0s/releases/download/v1.33.4%2Bk0s.0";
    let mirror0 = "https://mirror.example.org/gh/k0sproject/k0s/releases/download/v1.33.4%2Bk0s.0";
    let table: &[(Distro, &Version, &str, &str, String, String, &str)] = &[
        (
            Distro::K3s,
            &k3s,
            "x86_64",
            DEFAULT_MIRROR,
            format!("{gh}/k3s"),
            format!("{gh}/sha256sum-amd64.txt"),
            "k3s",
        ),
        (
            Distro::K3s,
            &k3s,
            "aarch64",
            DEFAULT_MIRROR,
            format!("{gh}/k3s-arm64"),
            format!("{gh}/sha256sum-arm64.txt"),
            "k3s-arm64",
        ),
        (
            Distro::K3s,
            &k3s,
            "x86_64",
            "https://mirror.example.org/gh/",
            format!("{mirror}/k3s"),
            format!("{mirror}/sha256sum-amd64.txt"),
            "k3s",
        ),
        (
            Distro::K3s,
            &k3s,
            "aarch64",
            "https://mirror.example.org/gh",
            format!("{mirror}/k3s-arm64"),
            format!("{mirror}/sha256sum-arm64.txt"),
            "k3s-arm64",
        ),
        (
            Distro::K0s,
            &k0s,
            "x86_64",
            DEFAULT_MIRROR,
            format!("{gh0}/k0s-v1.33.4%2Bk0s.0-amd64"),
            format!("{gh0}/sha256sums.txt"),
            "k0s-v1.33.4+k0s.0-amd64",
        ),
        (
            Distro::K0s,
            &k0s,
            "aarch64",
            DEFAULT_MIRROR,
            format!("{gh0}/k0s-v1.33.4%2Bk0s.0-arm64"),
            format!("{gh0}/sha256sums.txt"),
            "k0s-v1.33.4+k0s.0-arm64",
        ),
        (
            Distro::K0s,
            &k0s,
            "x86_64",
            "https://mirror.example.org/gh/",
            format!("{mirror0}/k0s-v1.33.4%2Bk0s.0-amd64"),
            format!("{mirror0}/sha256sums.txt"),
            "k0s-v1.33.4+k0s.0-amd64",
        ),
        (
            Distro::K0s,
            &k0s,
            "aarch64",
            "https://mirror.example.org/gh",
            format!("{mirror0}/k0s-v1.33.4%2Bk0s.0-arm64"),
            format!("{mirror0}/sha256sums.txt"),
            "k0s-v1.33.4+k0s.0-arm64",
        ),
    ];
    for (distro, version, arch, mirror, url, sums, entry) in table {
        let (got_url, checksum) =
            binary_asset(*distro, version, arch, mirror).unwrap_or_else(|e| panic!("{distro} {arch} {mirror}: {e}"));
        assert_eq!(&got_url, url);
        assert_eq!(
            checksum,
            ChecksumSource::ReleaseFile {
                url: sums.clone(),
                entry: entry.to_string()
            }
        );
    }
}

#[test]
fn unsupported_arch_names_the_arch_and_the_supported_ones() {
    for arch in ["armv7l", "riscv64", "s390x", "amd64", ""] {
        for distro in [Distro::K3s, Distro::K0s] {
            let err = binary_asset(distro, &distro.default_version(), arch, DEFAULT_MIRROR).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, DistroError::UnsupportedArch { .. }), "{text}");
            assert!(text.contains(&format!("{arch:?}")), "{text}");
            assert!(text.contains("x86_64") && text.contains("aarch64"), "{text}");
        }
    }
}

#[test]
fn mirrors_must_be_http_base_urls() {
    let v = Distro::K3s.default_version();
    for mirror in [
        "",
        "github.com",
        "ftp://mirror.example.org",
        "https://",
        "https:///path",
        "https://mirror.example.org/a b",
        "https://mirror.example.org/?x=1",
    ] {
        let err = binary_asset(Distro::K3s, &v, "x86_64", mirror).unwrap_err();
        assert!(matches!(err, DistroError::InvalidMirror { .. }), "{mirror:?}: {err}");
        assert!(err.to_string().contains(DEFAULT_MIRROR), "{err}");
    }
    let (url, _) = binary_asset(Distro::K3s, &v, "x86_64", "http://127.0.0.1:8080").unwrap();
    assert_eq!(
        url,
        "http://127.0.0.1:8080/k3s-io/k3s/releases/download/v1.35.3%2Bk3s1/k3s"
    );
}

#[test]
fn k0s_airgap_bundle_name_follows_the_release_naming() {
    let old = Version::parse(Distro::K0s, "v1.35.3+k0s.0").unwrap();
    let new = Version::parse(Distro::K0s, "v1.36.3+k0s.2").unwrap();
    assert_eq!(
        k0s::images_asset_name(&old, "amd64"),
        "k0s-airgap-bundle-v1.35.3+k0s.0-amd64"
    );
    assert_eq!(
        k0s::images_asset_name(&new, "arm64"),
        "k0s-airgap-bundle-v1.36.3+k0s.2-linux-arm64.tar"
    );
}

// ---- rendered files ---------------------------------------------------------------------------

#[test]
fn k3s_config_parses_back_with_mode_sorted_labels_and_disable() {
    let settings = cluster(
        &["traefik", "servicelb"],
        &[("zeta", "1"), ("alpha.example.com/gpu", "true")],
    );
    let v = Distro::K3s.default_version();
    let text = k3s::config_yaml(&ctx(Distro::K3s, &v, None, &settings)).unwrap();
    let parsed: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(parsed["write-kubeconfig-mode"], json!("0600"));
    assert_eq!(
        parsed["node-label"],
        json!(["alpha.example.com/gpu=true", "kstrap.dev/profile=rtx-5090", "zeta=1"])
    );
    assert_eq!(parsed["disable"], json!(["traefik", "servicelb"]));
    assert_eq!(parsed.as_object().map(|o| o.len()), Some(3), "{text}");
    insta::assert_snapshot!("k3s_config_yaml", text);
}

#[test]
fn k3s_config_leaves_out_an_empty_disable_list() {
    let settings = ClusterSettings::default();
    let v = Distro::K3s.default_version();
    let text = k3s::config_yaml(&ctx(Distro::K3s, &v, None, &settings)).unwrap();
    let parsed: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(parsed["node-label"], json!(["kstrap.dev/profile=rtx-5090"]));
    assert!(parsed.get("disable").is_none(), "{text}");
}

#[test]
fn kstrap_profile_label_wins_over_a_profile_label_of_the_same_key() {
    let settings = cluster(&[], &[("kstrap.dev/profile", "other")]);
    let labels = node_labels("rtx-5090", &settings).unwrap();
    assert_eq!(labels, ["kstrap.dev/profile=rtx-5090"]);
}

#[test]
fn bad_node_labels_are_refused() {
    for (k, v) in [
        ("a,b", "1"),
        ("ok", "x,y"),
        ("ok", "has space"),
        ("-lead", "1"),
        ("Upper.Example/x", "1"),
        ("/x", "1"),
        ("x/", "1"),
        ("ok", "trailing-"),
    ] {
        let settings = cluster(&[], &[(k, v)]);
        let err = node_labels("p", &settings).unwrap_err();
        assert!(matches!(err, DistroError::InvalidLabel { .. }), "{k}={v}: {err}");
        let v = Distro::K0s.default_version();
        assert!(host_steps(&ctx(Distro::K0s, &v, None, &settings)).is_err());
    }
    let settings = cluster(&[], &[("nvidia.com/gpu.present", ""), ("tier", "gpu_1.a")]);
    assert!(node_labels("p", &settings).is_ok());
}

#[test]
fn k3s_unit_has_the_upstream_essentials() {
    for line in [
        "Type=notify",
        "EnvironmentFile=-/etc/systemd/system/k3s.service.env",
        "KillMode=process",
        "Delegate=yes",
        "LimitNOFILE=1048576",
        "LimitNPROC=infinity",
        "LimitCORE=infinity",
        "TasksMax=infinity",
        "TimeoutStartSec=0",
        "Restart=always",
        "RestartSec=5s",
        "ExecStartPre=-/sbin/modprobe br_netfilter",
        "ExecStartPre=-/sbin/modprobe overlay",
        "ExecStart=/usr/local/bin/k3s server",
    ] {
        assert!(k3s::UNIT.lines().any(|l| l == line), "missing {line}");
    }
    insta::assert_snapshot!("k3s_unit", k3s::UNIT);
}

#[test]
fn k0s_config_parses_back() {
    let v = Distro::K0s.default_version();
    let c = cluster(&[], &[]);
    let text = k0s::config_yaml(&ctx(Distro::K0s, &v, None, &c)).unwrap();
    let parsed: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        parsed,
        json!({
            "apiVersion": "k0s.k0sproject.io/v1beta1",
            "kind": "ClusterConfig",
            "metadata": {"name": "k0s"}
        })
    );
    insta::assert_snapshot!("k0s_config_yaml", text);
}

#[test]
fn k0s_install_args_carry_disable_and_labels() {
    let settings = cluster(&["metrics-server", "helm"], &[("tier", "laptop")]);
    let v = Distro::K0s.default_version();
    let args = k0s::install_args(&ctx(Distro::K0s, &v, None, &settings)).unwrap();
    assert_eq!(
        args,
        [
            "install",
            "controller",
            "--enable-worker",
            "--no-taints",
            "--config",
            "/etc/k0s/k0s.yaml",
            "--force",
            "--disable-components=metrics-server,helm",
            "--labels=kstrap.dev/profile=rtx-5090,tier=laptop",
        ]
    );
    let plain = ClusterSettings::default();
    let args = k0s::install_args(&ctx(Distro::K0s, &v, None, &plain)).unwrap();
    assert!(!args.iter().any(|a| a.starts_with("--disable-components")));
}

// ---- steps ------------------------------------------------------------------------------------

fn check_phases(steps: &[Step]) {
    let phases: Vec<Phase> = steps.iter().map(|s| s.phase).collect();
    assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{phases:?}");
    assert_eq!(phases.first(), Some(&Phase::Host));
    assert_eq!(phases.last(), Some(&Phase::Cluster));
    let mut seen = std::collections::BTreeSet::new();
    for s in steps {
        assert!(seen.insert(&s.id), "duplicate id {}", s.id);
        assert!(!s.title.is_empty() && !s.reason.is_empty(), "{}", s.id);
        assert!(!s.reason.contains('\n'), "{}", s.id);
    }
}

#[test]
fn k3s_steps_in_order() {
    let settings = cluster(&["traefik"], &[]);
    let v = Distro::K3s.default_version();
    let steps = host_steps(&ctx(Distro::K3s, &v, None, &settings)).unwrap();
    assert_eq!(
        ids(&steps),
        [
            "download-k3s",
            "write-k3s-config",
            "write-k3s-unit",
            "write-k3s-env",
            "reload-systemd-k3s",
            "start-k3s",
            "wait-k3s",
            "kubeconfig-k3s",
        ]
    );
    check_phases(&steps);
    assert_eq!(written(&steps, "write-k3s-env"), "");
    assert_eq!(written(&steps, "write-k3s-unit"), k3s::UNIT);
    insta::assert_json_snapshot!("k3s_steps", steps);
}

#[test]
fn k3s_airgap_steps_copy_binary_and_images() {
    let settings = ClusterSettings::default();
    let v = Distro::K3s.default_version();
    let dir = Path::new("/media/usb/kstrap airgap/");
    let mut c = ctx(Distro::K3s, &v, Some(dir), &settings);
    c.arch = "aarch64";
    let steps = host_steps(&c).unwrap();
    assert_eq!(
        ids(&steps),
        [
            "copy-k3s",
            "copy-k3s-images",
            "write-k3s-config",
            "write-k3s-unit",
            "write-k3s-env",
            "reload-systemd-k3s",
            "start-k3s",
            "wait-k3s",
            "kubeconfig-k3s",
        ]
    );
    check_phases(&steps);
    match &steps[1].action {
        Action::CopyLocal {
            source, dest, checksum, ..
        } => {
            assert_eq!(source, "/media/usb/kstrap airgap/k3s-airgap-images-arm64.tar.zst");
            assert_eq!(
                dest,
                "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-arm64.tar.zst"
            );
            assert_eq!(
                checksum,
                &Some(ChecksumSource::ReleaseFile {
                    url: "file:///media/usb/kstrap%20airgap/sha256sum-arm64.txt".into(),
                    entry: "k3s-airgap-images-arm64.tar.zst".into(),
                })
            );
        }
        other => panic!("{other:?}"),
    }
    insta::assert_json_snapshot!("k3s_airgap_steps", steps);
}

#[test]
fn k0s_steps_in_order() {
    let settings = cluster(&["metrics-server"], &[("tier", "laptop")]);
    let v = Distro::K0s.default_version();
    let steps = host_steps(&ctx(Distro::K0s, &v, None, &settings)).unwrap();
    assert_eq!(
        ids(&steps),
        [
            "download-k0s",
            "write-k0s-config",
            "install-k0s",
            "start-k0s",
            "wait-k0s",
            "kubeconfig-k0s",
        ]
    );
    check_phases(&steps);
    insta::assert_json_snapshot!("k0s_steps", steps);
}

#[test]
fn k0s_airgap_steps_copy_binary_and_bundle() {
    let settings = ClusterSettings::default();
    let v = Distro::K0s.default_version();
    let steps = host_steps(&ctx(Distro::K0s, &v, Some(Path::new("/srv/airgap")), &settings)).unwrap();
    assert_eq!(
        ids(&steps),
        [
            "copy-k0s",
            "copy-k0s-images",
            "write-k0s-config",
            "install-k0s",
            "start-k0s",
            "wait-k0s",
            "kubeconfig-k0s",
        ]
    );
    check_phases(&steps);
    match &steps[0].action {
        Action::CopyLocal { source, dest, .. } => {
            assert_eq!(source, "/srv/airgap/k0s-v1.35.3+k0s.0-amd64");
            assert_eq!(dest, "/usr/local/bin/k0s");
        }
        other => panic!("{other:?}"),
    }
    insta::assert_json_snapshot!("k0s_airgap_steps", steps);
}

#[test]
fn relative_airgap_folder_is_refused() {
    let settings = ClusterSettings::default();
    for distro in [Distro::K3s, Distro::K0s] {
        let v = distro.default_version();
        let err = host_steps(&ctx(distro, &v, Some(Path::new("airgap")), &settings)).unwrap_err();
        assert!(matches!(err, DistroError::Airgap { .. }), "{err}");
        assert!(err.to_string().contains("absolute"), "{err}");
    }
}

#[test]
fn paths_match_the_design() {
    let k3s = Distro::K3s.paths();
    assert_eq!(k3s.kubeconfig, "/etc/rancher/k3s/k3s.yaml");
    assert_eq!(k3s.containerd_socket, "/run/k3s/containerd/containerd.sock");
    assert_eq!(
        k3s.containerd_config,
        "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
    );
    assert_eq!(k3s.node_token, Some("/var/lib/rancher/k3s/server/node-token"));
    let k0s = Distro::K0s.paths();
    assert_eq!(k0s.containerd_socket, "/run/k0s/containerd.sock");
    assert_eq!(k0s.containerd_config, "/run/k0s/containerd-cri.toml");
    assert_eq!(k0s.containerd_drop_in_dir, Some("/etc/k0s/containerd.d"));
    assert_eq!(k0s.service_unit, "k0scontroller.service");
}
