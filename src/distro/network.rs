//! The cluster's pod and service ranges, chosen so that they do not collide with the host's
//! routes (a corporate VPN that routes 10.0.0.0/8 makes k3s's 10.42.0.0/16 unreachable from the
//! host and breaks every Service behind it).
//!
//! Defaults, from each distribution's source at the pinned version:
//! - k3s v1.35.3+k3s1: `--cluster-cidr` 10.42.0.0/16, `--service-cidr` 10.43.0.0/16
//!   (k3s-io/k3s `pkg/cli/cmds/server.go`, `ClusterCIDR`/`ServiceCIDR` usage texts); without
//!   `cluster-dns`, CoreDNS gets the service range's 10th address (`pkg/cli/server/server.go`,
//!   `GetIndexedIP(ServiceIPRange, 10)`), so moving the range moves DNS with it.
//! - k0s v1.35.3+k0s.0: `spec.network.podCIDR` 10.244.0.0/16, `serviceCIDR` 10.96.0.0/12
//!   (k0sproject/k0s `pkg/apis/k0s/v1beta1/network.go`, `DefaultNetwork`); DNS is the service
//!   range's 10th address too (`DNSAddress`).
//!
//! The choice is pure: the first candidate pair whose ranges overlap no route of the host (the
//! default route aside, and the routes the cluster's own network makes: `cni0`, `flannel.*`,
//! `kube-bridge`, Calico's interfaces) wins. When every candidate collides, the distribution's
//! defaults stay and the plan says which route is in the way.

use super::Distro;
use crate::facts::network::{Cidr, NetworkFacts};
use serde::Serialize;

/// The ranges the cluster uses, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterNetwork {
    pub pod_cidr: String,
    pub service_cidr: String,
    /// The ranges are the distribution's own defaults (nothing to write in its config).
    pub is_default: bool,
    /// Why these ranges: "no route overlaps ..." or which route pushed kstrap off the defaults.
    pub reason: String,
    /// Routes that overlap the chosen ranges (when every candidate collided, or when the ranges
    /// kept from the install now collide with a new route).
    pub conflicts: Vec<String>,
    /// The ranges are the ones the cluster was installed with (kstrap's state), kept whatever the
    /// routes say now (`rerun`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
    /// The node's primary address now, and the default route's interface (`rerun`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// The host's addresses now (`NO_PROXY` names them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_addresses: Vec<String>,
    /// The node's address is not the one the cluster was installed with: the distribution is
    /// restarted to take the new one (`rerun`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_change: Option<super::rerun::AddressChange>,
    /// The install gave the distribution an HTTP proxy that kstrap's environment no longer
    /// names: k3s's env file is emptied, k0s's drop-in removed, the service restarted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub proxy_removed: bool,
}

/// (pod range, service range) pairs kstrap tries after the distribution's defaults: private
/// ranges away from the usual VPN (10.0.0.0/8), Docker (172.17.0.0/16 and up) and home-router
/// (192.168.0.0/24, 192.168.1.0/24) ones. A /16 of pods gives each node a /24, as both
/// distributions expect; a /18 of services holds 16k Services.
const ALTERNATIVES: &[(&str, &str)] = &[
    ("172.30.0.0/16", "172.31.0.0/16"),
    ("192.168.128.0/18", "192.168.192.0/18"),
];

/// The distribution's own (pod, service) ranges.
pub fn defaults(distro: Distro) -> (&'static str, &'static str) {
    match distro {
        Distro::K3s => ("10.42.0.0/16", "10.43.0.0/16"),
        Distro::K0s => ("10.244.0.0/16", "10.96.0.0/12"),
    }
}

/// Interfaces whose routes belong to the cluster itself (on a re-run they route its ranges).
fn cluster_iface(iface: &str) -> bool {
    iface == "cni0"
        || iface == "kube-bridge"
        || iface == "kube-ipvs0"
        || iface == "tunl0"
        || iface == "vxlan.calico"
        || iface.starts_with("flannel")
        || iface.starts_with("cali")
}

/// The host routes that collide with `range`: "10.0.0.0/8 via tun0".
pub(super) fn collisions(net: &NetworkFacts, range: &str) -> Vec<String> {
    let Some(range) = Cidr::parse(range) else {
        return Vec::new();
    };
    net.routes
        .iter()
        .filter(|r| r.destination != "0.0.0.0/0" && !cluster_iface(&r.iface))
        .filter(|r| Cidr::parse(&r.destination).is_some_and(|d| d.overlaps(&range)))
        .map(|r| format!("{} via {}", r.destination, r.iface))
        .collect()
}

/// Chooses the cluster's ranges for this host.
pub fn choose(distro: Distro, net: &NetworkFacts) -> ClusterNetwork {
    let (pod, service) = defaults(distro);
    let both = |p: &str, s: &str| {
        let mut c = collisions(net, p);
        c.extend(collisions(net, s));
        c.dedup();
        c
    };
    let default_conflicts = both(pod, service);
    if default_conflicts.is_empty() {
        return ClusterNetwork {
            pod_cidr: pod.into(),
            service_cidr: service.into(),
            is_default: true,
            reason: format!("{distro}'s own ranges; no route of this host overlaps them"),
            conflicts: Vec::new(),
            ..Default::default()
        };
    }
    for (p, s) in ALTERNATIVES {
        if both(p, s).is_empty() {
            return ClusterNetwork {
                pod_cidr: p.to_string(),
                service_cidr: s.to_string(),
                is_default: false,
                reason: format!(
                    "{distro}'s own ranges ({pod}, {service}) overlap {}: pods and Services there would be unreachable from this host",
                    default_conflicts.join(", ")
                ),
                conflicts: Vec::new(),
                ..Default::default()
            };
        }
    }
    ClusterNetwork {
        pod_cidr: pod.into(),
        service_cidr: service.into(),
        is_default: true,
        reason: format!("every candidate range overlaps a route of this host; {distro}'s own ranges are kept"),
        conflicts: default_conflicts,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::RouteFacts;

    fn routes(rs: &[(&str, &str)]) -> NetworkFacts {
        NetworkFacts {
            addresses: vec![],
            routes: rs
                .iter()
                .map(|(i, d)| RouteFacts {
                    iface: i.to_string(),
                    destination: d.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn defaults_stay_without_overlap_and_own_routes_do_not_count() {
        let net = routes(&[
            ("wlp2s0", "0.0.0.0/0"),
            ("wlp2s0", "192.168.1.0/24"),
            ("cni0", "10.42.0.0/24"),
            ("flannel.1", "10.42.1.0/24"),
        ]);
        let c = choose(Distro::K3s, &net);
        assert!(c.is_default, "{c:?}");
        assert_eq!(
            (c.pod_cidr.as_str(), c.service_cidr.as_str()),
            ("10.42.0.0/16", "10.43.0.0/16")
        );
        let c = choose(Distro::K0s, &net);
        assert_eq!(
            (c.pod_cidr.as_str(), c.service_cidr.as_str()),
            ("10.244.0.0/16", "10.96.0.0/12")
        );
    }

    #[test]
    fn a_vpn_on_ten_slash_eight_moves_the_ranges() {
        let net = routes(&[
            ("wlp2s0", "0.0.0.0/0"),
            ("tun0", "10.0.0.0/8"),
            ("wlp2s0", "192.168.1.0/24"),
        ]);
        let c = choose(Distro::K3s, &net);
        assert!(!c.is_default);
        assert_eq!(
            (c.pod_cidr.as_str(), c.service_cidr.as_str()),
            ("172.30.0.0/16", "172.31.0.0/16")
        );
        assert!(c.reason.contains("10.0.0.0/8 via tun0"), "{}", c.reason);
        // Docker's networks on 172.16.0.0/12 as well: the next candidate.
        let net = routes(&[("tun0", "10.0.0.0/8"), ("br-1", "172.16.0.0/12")]);
        let c = choose(Distro::K0s, &net);
        assert_eq!(c.pod_cidr, "192.168.128.0/18");
    }

    #[test]
    fn everything_taken_keeps_defaults_and_names_the_routes() {
        let net = routes(&[
            ("tun0", "10.0.0.0/8"),
            ("tun1", "172.16.0.0/12"),
            ("tun2", "192.168.0.0/16"),
        ]);
        let c = choose(Distro::K3s, &net);
        assert!(c.is_default);
        assert_eq!(c.conflicts, ["10.0.0.0/8 via tun0"]);
    }
}
