//! An HTTP proxy for the cluster: read from kstrap's own environment, checked, and handed on
//! where each distribution reads it.
//!
//! - k3s: the unit's environment file `/etc/systemd/system/k3s.service.env`, as its install
//!   script writes it (k3s-io/k3s `install.sh`, `create_env_file`: every `NO_PROXY`,
//!   `HTTP_PROXY`, `HTTPS_PROXY` of the installer's environment, either case, appended to the
//!   0600 file the unit names in `EnvironmentFile=-...`).
//! - k0s: `k0s install` takes no environment (k0sproject/k0s v1.35.3+k0s.0
//!   `docs/environment-variables.md`: "`k0s install` does not support environment variables"); its
//!   documented way is a systemd drop-in `/etc/systemd/system/k0scontroller.service.d/http-proxy.conf`
//!   with `[Service]` `Environment=HTTP_PROXY=...`, which every k0s component inherits
//!   (`pkg/supervisor/supervisor.go`, `getEnv`).
//!
//! `NO_PROXY` is completed with what must never go through the proxy: loopback, the node's
//! addresses, the cluster's pod and service ranges, `.svc` and `.cluster.local`; otherwise the
//! kubelet's probes, the API server's calls to webhooks and the pods' calls to Services are sent to
//! the proxy. Go's proxy rules (golang.org/x/net/http/httpproxy, which k3s, k0s and containerd use)
//! read the upper-case name first, then the lower-case one, and accept CIDRs in `NO_PROXY`.
//!
//! A proxy URL may carry credentials (`http://user:password@proxy:3128`): the password is
//! remembered by `crate::redact`, so no output shows it, and the URL is printed with its userinfo
//! masked. The files holding it are 0600.

use serde::Serialize;
use std::net::IpAddr;

/// The environment variable names kstrap reads, upper-case first (the one that wins).
pub const VARIABLES: &[(&str, &str)] = &[
    ("HTTP_PROXY", "http_proxy"),
    ("HTTPS_PROXY", "https_proxy"),
    ("NO_PROXY", "no_proxy"),
];

/// The proxy settings kstrap found in its environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Proxy {
    /// `HTTP_PROXY` (or `http_proxy`), as given.
    pub http: Option<String>,
    /// `HTTPS_PROXY` (or `https_proxy`), as given.
    pub https: Option<String>,
    /// The user's own `NO_PROXY` entries, in order.
    pub no_proxy: Vec<String>,
    /// The proxies' addresses, for egress NetworkPolicies: IP literals from the URLs, or what
    /// the host names resolved to before planning (`resolve`). Empty when a name did not resolve.
    pub addresses: Vec<ProxyEndpoint>,
}

/// Where a proxy listens.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ProxyEndpoint {
    pub ip: IpAddr,
    pub port: u16,
}

/// A proxy variable kstrap cannot pass on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name}: {problem}\n  fix: {hint}")]
pub struct ProxyError {
    pub name: String,
    pub problem: String,
    pub hint: String,
}

/// The parts of a proxy URL kstrap needs: host and port (default 80 for http, 443 for https,
/// 1080 for socks5).
fn host_port(name: &str, url: &str) -> Result<(String, u16), ProxyError> {
    let err = |problem: &str| ProxyError {
        name: name.to_string(),
        problem: problem.to_string(),
        hint: "give a URL such as http://proxy.example:3128 (credentials as http://user:password@proxy.example:3128)"
            .to_string(),
    };
    if url
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        return Err(err("contains a space, quote, backslash or control character"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| err("has no scheme (http://, https://)"))?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        "socks5" | "socks5h" => 1080,
        _ => return Err(err("has a scheme other than http, https, socks5")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| err("has an unclosed [IPv6] address"))?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(err("names no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| err("has a port that is not 1 to 65535"))?,
        None => default_port,
    };
    Ok((host, port))
}

impl Proxy {
    /// Reads the proxy variables through `var` (upper-case name first, as Go's proxy rules do).
    /// `None` when neither `HTTP_PROXY` nor `HTTPS_PROXY` is set: `NO_PROXY` alone changes nothing.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Proxy>, ProxyError> {
        let read = |(upper, lower): (&str, &str)| -> Option<(String, String)> {
            [upper, lower].into_iter().find_map(|n| {
                var(n)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (n.to_string(), v.trim().to_string()))
            })
        };
        let http = read(VARIABLES[0]);
        let https = read(VARIABLES[1]);
        if http.is_none() && https.is_none() {
            return Ok(None);
        }
        let mut addresses = Vec::new();
        for (name, url) in [&http, &https].into_iter().flatten() {
            let (host, port) = host_port(name, url)?;
            remember_credentials(url);
            if let Ok(ip) = host.parse::<IpAddr>() {
                addresses.push(ProxyEndpoint { ip, port });
            }
        }
        let no_proxy = match read(VARIABLES[2]) {
            Some((name, list)) => {
                let entries: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(String::from)
                    .collect();
                if let Some(bad) = entries.iter().find(|e| {
                    e.chars()
                        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
                }) {
                    return Err(ProxyError {
                        name,
                        problem: format!("entry {bad:?} contains a space, quote, backslash or control character"),
                        hint: "give comma-separated host names, domains (.example.com), IP addresses or CIDRs".into(),
                    });
                }
                entries
            }
            None => Vec::new(),
        };
        addresses.sort();
        addresses.dedup();
        Ok(Some(Proxy {
            http: http.map(|(_, v)| v),
            https: https.map(|(_, v)| v),
            no_proxy,
            addresses,
        }))
    }

    /// The proxies' host names that are not IP literals, with their ports (to resolve before
    /// planning, so that the plan stays pure).
    pub fn names(&self) -> Vec<(String, u16)> {
        [("HTTP_PROXY", &self.http), ("HTTPS_PROXY", &self.https)]
            .into_iter()
            .filter_map(|(n, u)| u.as_deref().and_then(|u| host_port(n, u).ok()))
            .filter(|(h, _)| h.parse::<IpAddr>().is_err())
            .collect()
    }

    /// Adds resolved addresses of the proxies' host names.
    pub fn add_addresses(&mut self, found: impl IntoIterator<Item = ProxyEndpoint>) {
        self.addresses.extend(found);
        self.addresses.sort();
        self.addresses.dedup();
    }

    /// `NO_PROXY` completed: the user's entries first, then loopback, the node's addresses, the
    /// cluster's ranges and in-cluster names, then `extra` (e.g. a stack's Service names, which
    /// pods call without a domain); each entry once.
    pub fn completed_no_proxy(&self, net: &ClusterNet<'_>, extra: &[String]) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut push = |e: &str| {
            if !out.iter().any(|o| o == e) {
                out.push(e.to_string());
            }
        };
        for e in &self.no_proxy {
            push(e);
        }
        for e in ["localhost", "127.0.0.1", "::1"] {
            push(e);
        }
        for a in net.node_addresses {
            push(a);
        }
        // Empty when the ranges are not known (`apply` to a cluster of unknown make).
        for range in [net.pod_cidr, net.service_cidr] {
            if !range.is_empty() {
                push(range);
            }
        }
        for e in [".svc", ".cluster.local"] {
            push(e);
        }
        for e in extra {
            push(e);
        }
        out.join(",")
    }

    /// The variables as the distribution's service gets them: upper-case names (the ones Go
    /// reads first), `NO_PROXY` completed.
    pub fn service_env(&self, net: &ClusterNet<'_>) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(v) = &self.http {
            env.push(("HTTP_PROXY".to_string(), v.clone()));
        }
        if let Some(v) = &self.https {
            env.push(("HTTPS_PROXY".to_string(), v.clone()));
        }
        env.push(("NO_PROXY".to_string(), self.completed_no_proxy(net, &[])));
        env
    }

    /// The variables as a stack's downloading pods get them: both cases (curl and Python's
    /// urllib read `http_proxy` in lower case; Go and most others read upper case).
    pub fn pod_env(&self, net: &ClusterNet<'_>, service_names: &[String]) -> Vec<(String, String)> {
        let no_proxy = self.completed_no_proxy(net, service_names);
        let mut env = Vec::new();
        for (upper, lower, value) in [
            ("HTTP_PROXY", "http_proxy", self.http.clone()),
            ("HTTPS_PROXY", "https_proxy", self.https.clone()),
            ("NO_PROXY", "no_proxy", Some(no_proxy)),
        ] {
            if let Some(v) = value {
                env.push((upper.to_string(), v.clone()));
                env.push((lower.to_string(), v));
            }
        }
        env
    }
}

/// Whether `host` bypasses the proxy by `no_proxy` entries, as Go's proxy rules read them
/// (golang.org/x/net/http/httpproxy): `*`, an exact name or IP, a domain (`.example.com` or
/// `example.com` matching its subdomains too), or a CIDR. Loopback always bypasses.
pub fn bypasses(host: &str, no_proxy: &[String]) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    no_proxy.iter().any(|entry| {
        let e = entry.trim().to_ascii_lowercase();
        let e = e
            .split_once(':')
            .filter(|_| !e.contains("::"))
            .map_or(e.as_str(), |(h, _)| h)
            .to_string();
        if e == "*" || e == host {
            return true;
        }
        if let (Some(IpAddr::V4(ip)), Some(cidr)) = (ip, crate::facts::network::Cidr::parse(&e)) {
            let one = crate::facts::network::Cidr {
                base: u32::from(ip),
                len: 32,
            };
            return cidr.overlaps(&one);
        }
        let domain = e.trim_start_matches('.');
        !domain.is_empty() && ip.is_none() && (host == domain || host.ends_with(&format!(".{domain}")))
    })
}

/// The user's `NO_PROXY` (or `no_proxy`) entries, read through `var`.
pub fn no_proxy_entries(var: impl Fn(&str) -> Option<String>) -> Vec<String> {
    var("NO_PROXY")
        .or_else(|| var("no_proxy"))
        .map(|l| {
            l.split(',')
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// What `NO_PROXY` is completed with.
#[derive(Debug, Clone, Copy)]
pub struct ClusterNet<'a> {
    pub pod_cidr: &'a str,
    pub service_cidr: &'a str,
    /// The node's own addresses.
    pub node_addresses: &'a [String],
}

/// Remembers the password of a proxy URL's userinfo (and the whole userinfo) so that no output
/// shows them, whatever form they appear in.
fn remember_credentials(url: &str) {
    let Some((_, rest)) = url.split_once("://") else { return };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        crate::redact::remember(userinfo);
        if let Some((_, password)) = userinfo.split_once(':') {
            crate::redact::remember(password);
        }
    }
}

/// The k3s unit's environment file: `NAME=value` lines, the format systemd's `EnvironmentFile=`
/// reads (values checked above: no spaces, quotes or backslashes, so none needs quoting).
pub fn env_file(env: &[(String, String)]) -> String {
    env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// The k0s drop-in: `[Service]` and one `Environment=` line per variable (k0s
/// `docs/environment-variables.md`, "systemd").
pub fn systemd_drop_in(env: &[(String, String)]) -> String {
    let mut out = String::from(
        "# Written by kstrap from its proxy environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY).\n[Service]\n",
    );
    for (k, v) in env {
        out.push_str(&format!("Environment={k}={v}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const NET: ClusterNet<'static> = ClusterNet {
        pod_cidr: "10.42.0.0/16",
        service_cidr: "10.43.0.0/16",
        node_addresses: &[],
    };

    #[test]
    fn no_proxy_variables_means_no_proxy() {
        assert_eq!(Proxy::from_vars(vars(&[])).unwrap(), None);
        assert_eq!(Proxy::from_vars(vars(&[("NO_PROXY", "corp.example")])).unwrap(), None);
    }

    #[test]
    fn upper_case_wins_and_lower_case_is_read() {
        let p = Proxy::from_vars(vars(&[
            ("HTTP_PROXY", "http://upper:3128"),
            ("http_proxy", "http://lower:3128"),
            ("https_proxy", "http://10.1.2.3:8080"),
            ("no_proxy", "corp.example, .internal,,10.0.0.0/8"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(p.http.as_deref(), Some("http://upper:3128"));
        assert_eq!(p.https.as_deref(), Some("http://10.1.2.3:8080"));
        assert_eq!(p.no_proxy, ["corp.example", ".internal", "10.0.0.0/8"]);
        assert_eq!(
            p.addresses,
            [ProxyEndpoint {
                ip: "10.1.2.3".parse().unwrap(),
                port: 8080
            }]
        );
        assert_eq!(p.names(), [("upper".to_string(), 3128)]);
    }

    #[test]
    fn no_proxy_is_completed_once_each() {
        let p = Proxy::from_vars(vars(&[
            ("HTTPS_PROXY", "http://p:3128"),
            ("NO_PROXY", "localhost,corp.example"),
        ]))
        .unwrap()
        .unwrap();
        let addrs = ["192.168.1.20".to_string()];
        let net = ClusterNet {
            node_addresses: &addrs,
            ..NET
        };
        assert_eq!(
            p.completed_no_proxy(&net, &["ollama".into()]),
            "localhost,corp.example,127.0.0.1,::1,192.168.1.20,10.42.0.0/16,10.43.0.0/16,.svc,.cluster.local,ollama"
        );
        assert_eq!(
            env_file(&p.service_env(&net)),
            "HTTPS_PROXY=http://p:3128\nNO_PROXY=localhost,corp.example,127.0.0.1,::1,192.168.1.20,10.42.0.0/16,10.43.0.0/16,.svc,.cluster.local\n"
        );
        let pod = p.pod_env(&net, &[]);
        let names: Vec<&str> = pod.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"]);
    }

    #[test]
    fn bypass_follows_gos_rules() {
        let list: Vec<String> = ["corp.example", ".internal", "10.0.0.0/8", "192.168.1.5:6443"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (host, expected) in [
            ("127.0.0.1", true),
            ("localhost", true),
            ("[::1]", true),
            ("corp.example", true),
            ("api.corp.example", true),
            ("notcorp.example", false),
            ("k.internal", true),
            ("10.42.0.1", true),
            ("192.168.1.5", true),
            ("192.168.1.6", false),
            ("github.com", false),
        ] {
            assert_eq!(bypasses(host, &list), expected, "{host}");
        }
        assert!(bypasses("anything", &["*".to_string()]));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value, problem) in [
            ("HTTP_PROXY", "proxy:3128", "no scheme"),
            ("https_proxy", "ftp://p:21", "scheme other than"),
            ("HTTP_PROXY", "http://p:99999", "port"),
            ("HTTP_PROXY", "http://p:3128\nK3S_TOKEN=x", "control character"),
            ("HTTP_PROXY", "http://:3128", "no host"),
        ] {
            let e = Proxy::from_vars(vars(&[(name, value)])).unwrap_err();
            assert_eq!(e.name, name);
            assert!(e.problem.contains(problem), "{value}: {e}");
            assert!(e.to_string().contains("fix:"), "{e}");
        }
        let e = Proxy::from_vars(vars(&[("HTTP_PROXY", "http://p:1"), ("NO_PROXY", "a b")])).unwrap_err();
        assert_eq!(e.name, "NO_PROXY");
    }

    #[test]
    fn credentials_are_remembered_for_redaction() {
        let p = Proxy::from_vars(vars(&[("HTTP_PROXY", "http://alice:pr0xy-pass@[fd00::1]:3128/")]))
            .unwrap()
            .unwrap();
        assert_eq!(p.addresses[0].port, 3128);
        let shown = crate::redact::text(&systemd_drop_in(&p.service_env(&NET)));
        assert!(!shown.contains("pr0xy-pass"), "{shown}");
        assert!(
            shown.contains("Environment=HTTP_PROXY=http://***@[fd00::1]:3128/"),
            "{shown}"
        );
        assert!(!crate::redact::text("password was pr0xy-pass").contains("pr0xy-pass"));
    }
}
