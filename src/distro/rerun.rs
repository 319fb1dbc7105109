//! A re-run on a host kstrap already installed: the host's network is compared with what the
//! install recorded (kstrap's state, `network`), not with the distribution's defaults.
//!
//! **Ranges.** A running cluster's pod and service ranges are in its datastore (node pod ranges,
//! every Service's cluster IP): rewriting `cluster-cidr`/`service-cidr` (k3s) or
//! `spec.network.podCIDR`/`serviceCIDR` (k0s) under it does not move them. So a re-run keeps the
//! installed ranges even when a new route (a VPN brought up since) now overlaps them, and says
//! what to do instead.
//!
//! **The node's address.** Neither distribution is told an address by kstrap (nothing it writes
//! names the Wi-Fi address); each picks it when it starts:
//! - k3s: without `node-ip`, the address of the default route's interface
//!   (`pkg/util/net.go`, `GetHostnameAndIPs` → apimachinery `ChooseHostInterface`), which it adds
//!   to the serving certificate's SANs at every start (`pkg/cli/server/server.go`: "Ensure that we
//!   add the localhost name/ip and node name/ip to the SAN list"), and which the kubelet reports
//!   as the Node's InternalIP; its embedded flannel writes the node's
//!   `flannel.alpha.coreos.com/public-ip` annotation each time it starts (flannel-io/flannel#712).
//!   The kubeconfig it writes names 127.0.0.1. A single server keeps its data in SQLite (kine):
//!   no etcd peer address to go stale. (Read in the stored code index of k3s-io/k3s — the
//!   repository is over the fetch limit, and the index does not say which tag its copy is;
//!   the functions are the same in every copy found.)
//! - k0s (k0sproject/k0s v1.35.3+k0s.0): without `spec.api.address`, `iface.FirstPublicAddress`
//!   (`internal/pkg/iface/iface.go`: the first non-loopback IPv4 address of the host's
//!   interfaces, CNI interfaces skipped) at every start, for the API address
//!   (`pkg/apis/k0s/v1beta1/api.go`, `setDefaults`) and etcd's peer address
//!   (`pkg/apis/k0s/v1beta1/storage.go`, `DefaultEtcdConfig`); it reissues the certificates its
//!   CA signed at every start (`pkg/certificate/manager.go`, `regenerateCert`), with the address
//!   and the host's local IPs among the SANs (`cmd/controller/certificates.go`,
//!   `generateSANList`); its admin and kubelet kubeconfigs name localhost
//!   (`APISpec.LocalURL`). An existing etcd data folder is not re-joined (`etcd.go`: "etcd db
//!   file(s) already exist, not gonna run join process").
//!
//! Until the service restarts, the old address stays on the Node and in flannel's/kube-router's
//! routes, so pods lose their way out after a move. A re-run that sees the node's address changed
//! restarts the service once (and rewrites `NO_PROXY`, which names the host's addresses). Pure.

use super::Distro;
use super::network::{self, ClusterNetwork};
use crate::facts::{HostFacts, InstalledNetwork};
use crate::finding::Finding;
use crate::plan::step::{Action, Step, SystemdOp};
use serde::Serialize;

/// The node's address moved since the install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressChange {
    pub from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_iface: Option<String>,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_iface: Option<String>,
    /// What the distribution does about it, and what kstrap does.
    pub action: String,
}

/// What the install recorded, when this host has kstrap's state.
fn installed(facts: &HostFacts) -> Option<&InstalledNetwork> {
    facts
        .existing
        .kstrap_network
        .as_ref()
        .filter(|_| facts.existing.kstrap_state.is_some())
}

/// The cluster's network for this host: the installed ranges on a re-run (else the ranges
/// `network::choose` picks), the node's address now, and whether it moved since the install.
/// `proxy` says whether kstrap's environment names a proxy now.
pub fn for_host(distro: Distro, facts: &HostFacts, proxy: bool) -> ClusterNetwork {
    let net = &facts.network;
    let record = installed(facts);
    let mut out = match record {
        Some(rec) => kept(distro, rec, facts),
        None => network::choose(distro, net),
    };
    out.node_address = net.primary_address().map(String::from);
    out.iface = net.default_iface().map(String::from);
    out.node_addresses = net.addresses.clone();
    out.address_change = record.and_then(|rec| address_change(distro, rec, facts));
    out.proxy_removed = record.is_some_and(|rec| rec.proxy) && !proxy;
    out
}

/// The installed ranges, with the routes that now overlap them.
fn kept(distro: Distro, rec: &InstalledNetwork, facts: &HostFacts) -> ClusterNetwork {
    let (pod, service) = network::defaults(distro);
    let mut conflicts = network::collisions(&facts.network, &rec.pod_cidr);
    conflicts.extend(network::collisions(&facts.network, &rec.service_cidr));
    conflicts.dedup();
    let reason = if conflicts.is_empty() {
        format!(
            "the ranges {distro} was installed with, kept: a running cluster's ranges cannot be changed by rewriting its config"
        )
    } else {
        format!(
            "the ranges {distro} was installed with, kept although {} now overlaps them: a running cluster's ranges cannot be changed by rewriting its config",
            conflicts.join(", ")
        )
    };
    ClusterNetwork {
        pod_cidr: rec.pod_cidr.clone(),
        service_cidr: rec.service_cidr.clone(),
        is_default: rec.pod_cidr == pod && rec.service_cidr == service,
        reason,
        conflicts,
        kept: true,
        ..Default::default()
    }
}

fn address_change(distro: Distro, rec: &InstalledNetwork, facts: &HostFacts) -> Option<AddressChange> {
    let from = rec.node_address.as_deref()?;
    let to = facts.network.primary_address()?;
    if from == to {
        return None;
    }
    let action = match distro {
        Distro::K3s => {
            "k3s takes the node's address from the default route's interface only when it starts (and then adds it to its certificate and flannel re-announces it): kstrap restarts k3s so that the node, its certificate and pod networking use the new one"
        }
        Distro::K0s => {
            "k0s takes its API and etcd address from the host's interfaces only when it starts (and then reissues its certificates for it): kstrap restarts k0scontroller so that the node, its certificates and pod networking use the new one"
        }
    };
    Some(AddressChange {
        from: from.to_string(),
        from_iface: rec.iface.clone(),
        to: to.to_string(),
        to_iface: facts.network.default_iface().map(String::from),
        action: action.to_string(),
    })
}

/// Preflight on a re-run: the node's address moved (a warning: `up` restarts the distribution),
/// or a route now overlaps the installed ranges (a warning with what to do: `up` keeps them).
pub fn findings(distro: Distro, facts: &HostFacts) -> Vec<Finding> {
    let Some(rec) = installed(facts) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let unit = distro.paths().service_unit;
    match address_change(distro, rec, facts) {
        Some(c) => out.push(Finding::warn(
            "node-address",
            format!(
                "the node's address changed since {distro} was installed: {} → {}; {distro} still uses the old one until it restarts",
                shown(&c.from, c.from_iface.as_deref()),
                shown(&c.to, c.to_iface.as_deref())
            ),
            format!(
                "`kstrap up` restarts {unit} to take the new address (or run `sudo systemctl restart {unit}`); nothing kstrap wrote names the old address"
            ),
        )),
        None => {
            if let Some(a) = &rec.node_address {
                out.push(Finding::pass(
                    "node-address",
                    format!("the node's address is the one {distro} was installed with ({a})"),
                ));
            }
        }
    }
    let kept = kept(distro, rec, facts);
    if !kept.conflicts.is_empty() {
        out.push(Finding::warn(
            "network-ranges",
            format!(
                "the cluster's ranges (pods {}, services {}, chosen at install) now overlap {}: pods and Services are unreachable from this host while that route is up, and a running cluster's ranges cannot be moved",
                kept.pod_cidr,
                kept.service_cidr,
                kept.conflicts.join(", ")
            ),
            format!(
                "keep the VPN from routing {} and {} (exclude them from its split tunnel) or disconnect it while you use the cluster; to move the cluster to free ranges, reinstall it: `sudo kstrap down` then `sudo kstrap up` (a new cluster: its volumes are removed)",
                kept.pod_cidr, kept.service_cidr
            ),
        ));
    }
    out
}

fn shown(address: &str, iface: Option<&str>) -> String {
    match iface {
        Some(i) => format!("{address} ({i})"),
        None => address.to_string(),
    }
}

/// The distribution's start step, restarting a running service when the node's address moved
/// since the install (once: the same restart takes changed files too).
pub(super) fn start_step(ctx: &super::DistroContext, mut step: Step) -> Step {
    let Some(change) = &ctx.network.address_change else {
        return step;
    };
    if let Action::Systemd { op, .. } = &mut step.action {
        *op = SystemdOp::EnableRestart;
    }
    step.title = format!("{} (restart for the node's new address)", step.title);
    step.reason = format!(
        "{}; restarted now because the node's address changed since the install ({} → {}): {} takes it only when it starts",
        step.reason, change.from, change.to, ctx.distro
    );
    step
}

/// What `up` records at the end of a run that completed: the ranges and address the plan used.
pub fn record(network: &ClusterNetwork, proxy: bool) -> InstalledNetwork {
    InstalledNetwork {
        pod_cidr: network.pod_cidr.clone(),
        service_cidr: network.service_cidr.clone(),
        node_address: network.node_address.clone(),
        iface: network.iface.clone(),
        addresses: network.node_addresses.clone(),
        proxy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{NetworkFacts, RouteFacts};

    fn host(addresses: &[&str], routes: &[(&str, &str)], rec: Option<InstalledNetwork>) -> HostFacts {
        let mut f: HostFacts = serde_json::from_str(include_str!("../../tests/fixtures/facts/laptop-8gb-nogpu.json"))
            .expect("fixture parses");
        f.network = NetworkFacts {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            routes: routes
                .iter()
                .map(|(i, d)| RouteFacts {
                    iface: i.to_string(),
                    destination: d.to_string(),
                })
                .collect(),
        };
        f.existing.kstrap_state = rec.as_ref().map(|_| "/var/lib/kstrap/state.json".to_string());
        f.existing.kstrap_network = rec;
        f
    }

    fn installed_at_home() -> InstalledNetwork {
        InstalledNetwork {
            pod_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            node_address: Some("192.168.1.23".into()),
            iface: Some("wlp2s0".into()),
            addresses: vec!["192.168.1.23".into()],
            proxy: false,
        }
    }

    const HOME: &[(&str, &str)] = &[("wlp2s0", "0.0.0.0/0"), ("wlp2s0", "192.168.1.0/24")];

    #[test]
    fn a_first_install_chooses_and_records_the_address() {
        let f = host(&["192.168.1.23"], HOME, None);
        let n = for_host(Distro::K3s, &f, false);
        assert!(!n.kept && n.address_change.is_none() && !n.proxy_removed);
        assert_eq!(n.node_address.as_deref(), Some("192.168.1.23"));
        let rec = record(&n, false);
        assert_eq!(rec, installed_at_home());
    }

    #[test]
    fn the_same_network_changes_nothing() {
        let f = host(&["192.168.1.23"], HOME, Some(installed_at_home()));
        let n = for_host(Distro::K3s, &f, false);
        assert!(n.kept && n.is_default && n.conflicts.is_empty(), "{n:?}");
        assert_eq!(n.address_change, None);
    }

    #[test]
    fn a_new_network_is_an_address_change() {
        let f = host(
            &["10.20.30.40"],
            &[("enp0s31f6", "0.0.0.0/0"), ("enp0s31f6", "10.20.30.0/24")],
            Some(installed_at_home()),
        );
        for distro in [Distro::K3s, Distro::K0s] {
            let n = for_host(distro, &f, false);
            let c = n.address_change.expect("changed");
            assert_eq!((c.from.as_str(), c.to.as_str()), ("192.168.1.23", "10.20.30.40"));
            assert_eq!(c.to_iface.as_deref(), Some("enp0s31f6"));
            assert!(c.action.contains("restarts"), "{}", c.action);
        }
        let found = findings(Distro::K3s, &f);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, crate::finding::Severity::Warn);
        assert!(
            found[0]
                .what
                .contains("192.168.1.23 (wlp2s0) → 10.20.30.40 (enp0s31f6)"),
            "{found:?}"
        );
        // Offline (no default route): nothing to compare with, nothing claimed.
        let f = host(
            &["192.168.1.23"],
            &[("wlp2s0", "192.168.1.0/24")],
            Some(installed_at_home()),
        );
        assert_eq!(for_host(Distro::K3s, &f, false).address_change, None);
    }

    #[test]
    fn installed_ranges_stay_when_a_vpn_comes_up_and_the_collision_is_said() {
        let mut routes = HOME.to_vec();
        routes.push(("tun0", "10.0.0.0/8"));
        let f = host(&["10.8.0.5", "192.168.1.23"], &routes, Some(installed_at_home()));
        let n = for_host(Distro::K3s, &f, false);
        // A first install would move them; the installed cluster keeps them.
        assert_eq!(network::choose(Distro::K3s, &f.network).pod_cidr, "172.30.0.0/16");
        assert_eq!(
            (n.pod_cidr.as_str(), n.service_cidr.as_str()),
            ("10.42.0.0/16", "10.43.0.0/16")
        );
        assert!(n.kept && n.is_default);
        assert_eq!(n.conflicts, ["10.0.0.0/8 via tun0"]);
        assert!(n.reason.contains("cannot be changed"), "{}", n.reason);
        // The VPN brought its own address, but the node's stays the Wi-Fi one.
        assert_eq!(n.address_change, None);
        let found = findings(Distro::K3s, &f);
        let ranges = found.iter().find(|f| f.check == "network-ranges").expect("said");
        assert_eq!(ranges.severity, crate::finding::Severity::Warn);
        assert!(ranges.what.contains("10.0.0.0/8 via tun0"), "{found:?}");
        // Moved ranges recorded at install stay moved (the config keeps naming them).
        let moved = InstalledNetwork {
            pod_cidr: "172.30.0.0/16".into(),
            service_cidr: "172.31.0.0/16".into(),
            ..installed_at_home()
        };
        let f = host(&["192.168.1.23"], HOME, Some(moved));
        let n = for_host(Distro::K3s, &f, false);
        assert!(n.kept && !n.is_default);
        assert_eq!(n.pod_cidr, "172.30.0.0/16");
    }

    #[test]
    fn a_proxy_given_at_install_and_gone_now_is_removed() {
        let rec = InstalledNetwork {
            proxy: true,
            ..installed_at_home()
        };
        let f = host(&["192.168.1.23"], HOME, Some(rec));
        assert!(for_host(Distro::K0s, &f, false).proxy_removed);
        assert!(!for_host(Distro::K0s, &f, true).proxy_removed);
        let f = host(&["192.168.1.23"], HOME, Some(installed_at_home()));
        assert!(!for_host(Distro::K0s, &f, false).proxy_removed);
    }
}
