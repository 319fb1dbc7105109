//! The host's IPv4 addresses and routes: what the cluster's pod and service ranges must not
//! overlap (a corporate VPN routing 10.0.0.0/8), and what `NO_PROXY` must name.
//!
//! Read from the kernel's text tables under the probing root, so tests probe temp dirs:
//! `/proc/net/route` (routes: interface, destination and mask in hex, host byte order) and
//! `/proc/net/fib_trie` (the local table: each `/32 host LOCAL` leaf is one of the host's
//! addresses).

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFacts {
    /// The host's IPv4 addresses, loopback excluded, sorted.
    pub addresses: Vec<String>,
    /// The IPv4 routes (`/proc/net/route`), in the kernel's order.
    pub routes: Vec<RouteFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFacts {
    pub iface: String,
    /// `a.b.c.d/len`; `0.0.0.0/0` is the default route.
    pub destination: String,
}

impl NetworkFacts {
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.routes.is_empty()
    }

    /// The interface of the default route, if there is one.
    pub fn default_iface(&self) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| r.destination == "0.0.0.0/0")
            .map(|r| r.iface.as_str())
    }

    /// The node's primary address: the host's address on the default route's interface (in a
    /// range that interface routes), which is the address k3s takes as its node address when none
    /// is configured (k3s-io/k3s `pkg/util/net.go`, `GetHostnameAndIPs`: apimachinery's
    /// `ChooseHostInterface`, the default route's interface). `None` without a default route.
    pub fn primary_address(&self) -> Option<&str> {
        let iface = self.default_iface()?;
        let links: Vec<Cidr> = self
            .routes
            .iter()
            .filter(|r| r.iface == iface && r.destination != "0.0.0.0/0")
            .filter_map(|r| Cidr::parse(&r.destination))
            .collect();
        self.addresses.iter().map(String::as_str).find(|a| {
            a.parse::<Ipv4Addr>().is_ok_and(|ip| {
                let one = Cidr {
                    base: u32::from(ip),
                    len: 32,
                };
                links.iter().any(|l| l.overlaps(&one))
            })
        })
    }
}

/// What kstrap recorded about the cluster's network when it installed it (its state file,
/// `network`), so that a re-run compares the host with the install rather than with the
/// distribution's defaults: the ranges a running cluster uses cannot be changed by rewriting its
/// config, and the node's address is taken by the distribution only when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledNetwork {
    pub pod_cidr: String,
    pub service_cidr: String,
    /// The node's primary address at install (`NetworkFacts::primary_address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_address: Option<String>,
    /// The default route's interface at install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// Every IPv4 address the host had at install (what `NO_PROXY` was completed with).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// The distribution was given an HTTP proxy (k3s's env file, k0s's drop-in).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy: bool,
}

/// Host firewalls that are on. ufw records its state in `/etc/ufw/ufw.conf` (`ENABLED=yes`,
/// what `ufw enable` writes); firewalld is on when systemd starts it at boot
/// (`/etc/systemd/system/multi-user.target.wants/firewalld.service`, what `systemctl enable
/// firewalld` links).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallFacts {
    pub ufw: bool,
    pub firewalld: bool,
}

impl FirewallFacts {
    pub fn is_empty(&self) -> bool {
        !self.ufw && !self.firewalld
    }
}

/// Mandatory access control on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityFacts {
    /// SELinux mode from `/sys/fs/selinux/enforce`: "enforcing" (1) or "permissive" (0); `None`
    /// when SELinux is off.
    pub selinux: Option<String>,
    /// k3s's SELinux policy is installed: `/usr/share/selinux/packages/k3s.pp`, the file k3s's
    /// install script checks for (k3s-io/k3s `install.sh`, `setup_selinux`).
    pub k3s_selinux_policy: bool,
    /// AppArmor is enabled (`/sys/module/apparmor/parameters/enabled` is `Y`).
    pub apparmor: bool,
    /// UEFI Secure Boot is on: the last byte of the `SecureBoot` EFI global variable is 1
    /// (added later: absent in older facts files, and left out of the JSON when off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure_boot: bool,
}

impl SecurityFacts {
    pub fn is_empty(&self) -> bool {
        self == &SecurityFacts::default()
    }

    pub fn selinux_enforcing(&self) -> bool {
        self.selinux.as_deref() == Some("enforcing")
    }
}

/// Whether ufw.conf says the firewall is enabled (`ENABLED=yes`, quotes allowed).
pub fn ufw_enabled(conf: &str) -> bool {
    conf.lines().any(|l| {
        l.trim()
            .strip_prefix("ENABLED=")
            .is_some_and(|v| v.trim().trim_matches(['"', '\'']).eq_ignore_ascii_case("yes"))
    })
}

/// An IPv4 range `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = s.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
        Some(Cidr {
            base: u32::from(ip) & Cidr::mask(len),
            len,
        })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) }
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let len = self.len.min(other.len);
        self.base & Cidr::mask(len) == other.base & Cidr::mask(len)
    }
}

/// Parses `/proc/net/route`: a header line, then `Iface Destination Gateway Flags RefCnt Use
/// Metric Mask ...` with addresses as 8 hex digits in host byte order (little-endian here).
pub fn parse_routes(text: &str) -> Vec<RouteFacts> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, mask) = (cols.first()?, cols.get(1)?, cols.get(7)?);
            let dest = u32::from_str_radix(dest, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(mask, 16).ok()?.swap_bytes();
            // A route's mask is contiguous; its length is the number of leading ones.
            let len = mask.leading_ones() as u8;
            Some(RouteFacts {
                iface: iface.to_string(),
                destination: format!("{}/{len}", Ipv4Addr::from(dest)),
            })
        })
        .collect()
}

/// The host's addresses from `/proc/net/fib_trie`: an address line `|-- a.b.c.d` followed by
/// `/32 host LOCAL`. Loopback (127.0.0.0/8) is left out.
pub fn parse_fib_trie(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(ip) = t.strip_prefix("|-- ") {
            last = ip.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
        {
            let s = ip.to_string();
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out.sort_by_key(|s| s.parse::<Ipv4Addr>().map(u32::from).unwrap_or(0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a laptop on Wi-Fi with a corporate VPN (tun0 routes 10.0.0.0/8).
    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlp2s0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
tun0\t0000000A\t00000000\t0001\t0\t0\t50\t000000FF\t0\t0\t0
wlp2s0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0
";

    const FIB: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 192.168.1.0
        /24 link UNICAST
     |-- 192.168.1.23
        /32 host LOCAL
     |-- 10.8.0.5
        /32 host LOCAL
Local:
     |-- 192.168.1.23
        /32 host LOCAL
";

    #[test]
    fn routes_and_addresses_parse() {
        let routes = parse_routes(ROUTE);
        let dests: Vec<(&str, &str)> = routes
            .iter()
            .map(|r| (r.iface.as_str(), r.destination.as_str()))
            .collect();
        assert_eq!(
            dests,
            [
                ("wlp2s0", "0.0.0.0/0"),
                ("tun0", "10.0.0.0/8"),
                ("wlp2s0", "192.168.1.0/24")
            ]
        );
        assert_eq!(parse_fib_trie(FIB), ["10.8.0.5", "192.168.1.23"]);
        let net = NetworkFacts {
            addresses: vec![],
            routes,
        };
        assert_eq!(net.default_iface(), Some("wlp2s0"));
        // The VPN's address is the host's too, but the node's is the Wi-Fi one.
        let net = NetworkFacts {
            addresses: parse_fib_trie(FIB),
            routes: net.routes,
        };
        assert_eq!(net.primary_address(), Some("192.168.1.23"));
        let offline = NetworkFacts {
            routes: net
                .routes
                .iter()
                .filter(|r| r.destination != "0.0.0.0/0")
                .cloned()
                .collect(),
            ..net.clone()
        };
        assert_eq!(offline.primary_address(), None);
    }

    #[test]
    fn ufw_state_is_read_from_its_conf() {
        assert!(ufw_enabled("# comment\nENABLED=yes\nLOGLEVEL=low\n"));
        assert!(ufw_enabled("ENABLED=\"yes\"\n"));
        assert!(!ufw_enabled("ENABLED=no\n"));
        assert!(!ufw_enabled("#ENABLED=yes\n"));
    }

    #[test]
    fn cidr_overlap() {
        let c = |s| Cidr::parse(s).unwrap();
        assert!(c("10.0.0.0/8").overlaps(&c("10.42.0.0/16")));
        assert!(c("10.42.0.0/16").overlaps(&c("10.0.0.0/8")));
        assert!(!c("10.42.0.0/16").overlaps(&c("10.43.0.0/16")));
        assert!(c("0.0.0.0/0").overlaps(&c("172.30.0.0/16")));
        assert!(!c("192.168.1.0/24").overlaps(&c("192.168.128.0/18")));
        assert_eq!(Cidr::parse("10.1.2.3/33"), None);
    }
}
