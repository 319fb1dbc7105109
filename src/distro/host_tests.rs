//! Tests of what real machines change in the distribution's files: an HTTP proxy (k3s's env
//! file, k0s's systemd drop-in) and pod/service ranges moved off the defaults. The written files
//! are insta snapshots.

use super::tests_support::{cluster, ctx, ids, written};
use super::*;
use crate::facts::{NetworkFacts, RouteFacts};
use crate::plan::step::{Action, Contents};

fn vpn_network(distro: Distro) -> network::ClusterNetwork {
    network::choose(
        distro,
        &NetworkFacts {
            addresses: vec!["192.168.1.23".into()],
            routes: vec![
                RouteFacts {
                    iface: "wlp2s0".into(),
                    destination: "0.0.0.0/0".into(),
                },
                RouteFacts {
                    iface: "tun0".into(),
                    destination: "10.0.0.0/8".into(),
                },
            ],
        },
    )
}

fn proxy() -> proxy::Proxy {
    proxy::Proxy::from_vars(|k| match k {
        "http_proxy" => Some("http://alice:s3cret-pw@10.0.0.1:3128".into()),
        "HTTPS_PROXY" => Some("http://alice:s3cret-pw@10.0.0.1:3128".into()),
        "NO_PROXY" => Some("corp.example".into()),
        _ => None,
    })
    .unwrap()
    .unwrap()
}

const ADDRESSES: &[String] = &[];

#[test]
fn k3s_gets_the_proxy_in_its_env_file_and_moved_ranges_in_its_config() {
    let settings = cluster(&["traefik"], &[]);
    let v = Distro::K3s.default_version();
    let net = vpn_network(Distro::K3s);
    let addrs = ["192.168.1.23".to_string()];
    let p = proxy();
    let c = DistroContext {
        network: &net,
        node_addresses: &addrs,
        proxy: Some(&p),
        ..ctx(Distro::K3s, &v, None, &settings)
    };
    let steps = host_steps(&c).unwrap();
    let env = written(&steps, "write-k3s-env");
    assert_eq!(
        env,
        "HTTP_PROXY=http://alice:s3cret-pw@10.0.0.1:3128\nHTTPS_PROXY=http://alice:s3cret-pw@10.0.0.1:3128\n\
         NO_PROXY=corp.example,localhost,127.0.0.1,::1,192.168.1.23,172.30.0.0/16,172.31.0.0/16,.svc,.cluster.local\n"
    );
    // The config names the moved ranges; nothing in it depends on the proxy.
    let config = written(&steps, "write-k3s-config");
    assert!(
        config.contains("cluster-cidr: 172.30.0.0/16") && config.contains("service-cidr: 172.31.0.0/16"),
        "{config}"
    );
    insta::assert_snapshot!("k3s_config_vpn", config);
    // The env file is 0600 and a change restarts k3s.
    let env_step = steps.iter().find(|s| s.id == "write-k3s-env").unwrap();
    assert!(matches!(&env_step.action, Action::WriteFile { mode, .. } if mode.0 == 0o600));
    let start = steps.iter().find(|s| s.id == "start-k3s").unwrap();
    assert!(
        matches!(&start.action, Action::Systemd { after_changes, .. } if after_changes.iter().any(|p| p.ends_with("k3s.service.env")))
    );
    // Shown to a person, the password is masked.
    let shown = crate::redact::text(&env);
    assert!(!shown.contains("s3cret-pw"), "{shown}");
}

#[test]
fn k3s_without_proxy_or_overlap_writes_what_it_always_did() {
    let settings = cluster(&[], &[]);
    let v = Distro::K3s.default_version();
    let steps = host_steps(&ctx(Distro::K3s, &v, None, &settings)).unwrap();
    assert_eq!(written(&steps, "write-k3s-env"), "");
    let config = written(&steps, "write-k3s-config");
    assert!(!config.contains("cidr"), "{config}");
}

#[test]
fn k0s_gets_the_proxy_as_a_systemd_drop_in_and_moved_ranges_in_its_config() {
    let settings = cluster(&[], &[]);
    let v = Distro::K0s.default_version();
    let net = vpn_network(Distro::K0s);
    let p = proxy();
    let c = DistroContext {
        network: &net,
        node_addresses: ADDRESSES,
        proxy: Some(&p),
        ..ctx(Distro::K0s, &v, None, &settings)
    };
    let steps = host_steps(&c).unwrap();
    assert_eq!(
        ids(&steps),
        [
            "download-k0s",
            "write-k0s-config",
            "install-k0s",
            "write-k0s-proxy",
            "reload-systemd-k0s",
            "start-k0s",
            "wait-k0s",
            "kubeconfig-k0s"
        ]
    );
    let drop_in = written(&steps, "write-k0s-proxy");
    assert!(
        drop_in.contains("[Service]\nEnvironment=HTTP_PROXY=http://alice:s3cret-pw@10.0.0.1:3128\n"),
        "{drop_in}"
    );
    let start = steps.iter().find(|s| s.id == "start-k0s").unwrap();
    assert!(
        matches!(&start.action, Action::Systemd { after_changes, .. } if after_changes.iter().any(|p| p == k0s::PROXY_DROP_IN))
    );
    let config = written(&steps, "write-k0s-config");
    let parsed: serde_json::Value = serde_saphyr::from_str(&config).unwrap();
    assert_eq!(parsed["spec"]["network"]["podCIDR"], "172.30.0.0/16");
    assert_eq!(parsed["spec"]["network"]["serviceCIDR"], "172.31.0.0/16");
    insta::assert_snapshot!("k0s_proxy_drop_in", crate::redact::text(&drop_in));
}

#[test]
fn k0s_without_proxy_has_no_drop_in() {
    let settings = cluster(&[], &[]);
    let v = Distro::K0s.default_version();
    let steps = host_steps(&ctx(Distro::K0s, &v, None, &settings)).unwrap();
    assert!(!ids(&steps).contains(&"write-k0s-proxy"));
}

/// A laptop's Wi-Fi address changes with every network it joins: nothing kstrap writes for the
/// distribution may name it, or the cluster breaks at the next café. (With a proxy, the env
/// file's NO_PROXY lists the node's addresses: that one file follows the address, and a re-run
/// rewrites it.)
#[test]
fn written_files_do_not_name_the_wifi_address() {
    let wlan = ["192.168.178.57".to_string()];
    for distro in [Distro::K3s, Distro::K0s] {
        let settings = cluster(&["traefik"], &[("kstrap.dev/profile", "rtx-5090")]);
        let v = distro.default_version();
        let c = DistroContext {
            node_addresses: &wlan,
            ..ctx(distro, &v, None, &settings)
        };
        let steps = host_steps(&c).unwrap();
        let mut files = 0;
        for s in &steps {
            if let Action::WriteFile {
                path,
                contents: Contents::Text(t),
                ..
            } = &s.action
            {
                files += 1;
                assert!(
                    !t.contains("192.168.178.57"),
                    "{distro}: {path} names the Wi-Fi address:\n{t}"
                );
            }
        }
        assert!(files >= 1, "{distro}: no file written");
        // The address is there to be found when it is given (the test can fail).
        let p = proxy();
        let with_proxy = host_steps(&DistroContext { proxy: Some(&p), ..c }).unwrap();
        assert!(with_proxy.iter().any(|s| matches!(&s.action,
            Action::WriteFile { contents: Contents::Text(t), .. } if t.contains("192.168.178.57"))));
    }
}

/// A re-run whose proxy is gone: k3s's env file is emptied (and says why), k0s's drop-in is
/// removed, systemd reloaded and the service restarted through the files it depends on.
#[test]
fn a_proxy_gone_since_the_install_is_taken_away() {
    let settings = cluster(&[], &[]);
    for distro in [Distro::K3s, Distro::K0s] {
        let v = distro.default_version();
        let net = network::ClusterNetwork {
            proxy_removed: true,
            ..network::choose(distro, &NetworkFacts::default())
        };
        let steps = host_steps(&DistroContext {
            network: &net,
            ..ctx(distro, &v, None, &settings)
        })
        .unwrap();
        match distro {
            Distro::K3s => {
                assert_eq!(written(&steps, "write-k3s-env"), "");
                let env = steps.iter().find(|s| s.id == "write-k3s-env").unwrap();
                assert!(env.reason.contains("restarts without it"), "{}", env.reason);
            }
            Distro::K0s => {
                let i = |id: &str| {
                    ids(&steps)
                        .iter()
                        .position(|s| *s == id)
                        .unwrap_or_else(|| panic!("no {id}"))
                };
                assert!(i("remove-k0s-proxy") < i("reload-systemd-k0s") && i("reload-systemd-k0s") < i("start-k0s"));
                let remove = &steps[i("remove-k0s-proxy")];
                assert!(matches!(&remove.action, Action::RemoveFile { path } if path == k0s::PROXY_DROP_IN));
                let start = &steps[i("start-k0s")];
                assert!(
                    matches!(&start.action, Action::Systemd { after_changes, .. } if after_changes.iter().any(|p| p == k0s::PROXY_DROP_IN))
                );
            }
        }
    }
    // Without a proxy at the install either: nothing to remove.
    let v = Distro::K0s.default_version();
    let steps = host_steps(&ctx(Distro::K0s, &v, None, &settings)).unwrap();
    assert!(!ids(&steps).contains(&"remove-k0s-proxy"));
}

/// A re-run after the node's address changed restarts the running service once (its start
/// step), and writes no address anywhere.
#[test]
fn a_changed_address_restarts_the_service_through_its_start_step() {
    use crate::plan::step::SystemdOp;
    let settings = cluster(&[], &[]);
    for distro in [Distro::K3s, Distro::K0s] {
        let v = distro.default_version();
        let plain = host_steps(&ctx(distro, &v, None, &settings)).unwrap();
        let net = network::ClusterNetwork {
            address_change: Some(rerun::AddressChange {
                from: "192.168.1.23".into(),
                from_iface: Some("wlp2s0".into()),
                to: "10.20.30.40".into(),
                to_iface: Some("enp0s31f6".into()),
                action: "restart".into(),
            }),
            ..network::choose(distro, &NetworkFacts::default())
        };
        let moved = host_steps(&DistroContext {
            network: &net,
            ..ctx(distro, &v, None, &settings)
        })
        .unwrap();
        assert_eq!(ids(&plain), ids(&moved), "{distro}: the same steps");
        let start = moved.iter().find(|s| s.id == format!("start-{distro}")).unwrap();
        assert!(
            matches!(
                &start.action,
                Action::Systemd {
                    op: SystemdOp::EnableRestart,
                    ..
                }
            ),
            "{distro}: {start:?}"
        );
        assert!(start.reason.contains("192.168.1.23 → 10.20.30.40"), "{}", start.reason);
        let plain_start = plain.iter().find(|s| s.id == format!("start-{distro}")).unwrap();
        assert!(matches!(
            &plain_start.action,
            Action::Systemd {
                op: SystemdOp::EnableNow,
                ..
            }
        ));
        for s in &moved {
            if let Action::WriteFile {
                contents: Contents::Text(t),
                ..
            } = &s.action
            {
                assert!(!t.contains("10.20.30.40") && !t.contains("192.168.1.23"), "{t}");
            }
        }
    }
}
