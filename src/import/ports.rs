//! `ports` and `expose` (compose-spec `05-services.md`, "ports": short syntax
//! `[HOST:]CONTAINER[/PROTOCOL]`, HOST = `[IP:](port | range)`, ranges on both sides; long
//! syntax `{target, published, host_ip, protocol, name}`) into container ports with names
//! Kubernetes accepts: an IANA_SVC_NAME, `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 15
//! characters, at least one letter, unique in the pod (k8s.io/apimachinery
//! `validation.IsValidPortName`). kompose names a Service's ports by the host port number
//! (`ConfigServicePorts`, pkg/transformer/kubernetes/kubernetes.go at v1.38.0) and leaves
//! container ports unnamed; kstrap names them after what usually listens there.

use serde_json::Value;

/// Ports above this many from one entry (a range) are refused: a Service is not a port scanner.
pub const MAX_RANGE: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub container: u16,
    pub protocol: &'static str,
    /// Published on the host (compose `HOST:CONTAINER`); None for `expose` and bare ports.
    pub published: Option<u16>,
    /// Published only on this address (`127.0.0.1:9229:9229`).
    pub host_ip: Option<String>,
    pub name: String,
}

impl Port {
    /// Published on every address: what a LoadBalancer Service can do (k3s' servicelb binds the
    /// port on the node).
    pub fn public(&self) -> bool {
        self.published.is_some()
            && !matches!(self.host_ip.as_deref(), Some(ip) if ip.starts_with("127.") || ip == "::1" || ip == "localhost")
    }
}

fn protocol(p: &str) -> Result<&'static str, String> {
    match p.to_ascii_lowercase().as_str() {
        "" | "tcp" => Ok("TCP"),
        "udp" => Ok("UDP"),
        "sctp" => Ok("SCTP"),
        other => Err(format!("protocol {other:?} is not tcp, udp or sctp")),
    }
}

fn range(s: &str) -> Result<(u16, u16), String> {
    let num = |x: &str| {
        x.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{x:?} is not a port number (1-65535)"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if b < a {
                return Err(format!("range {s:?} ends before it starts"));
            }
            if u32::from(b - a) + 1 > MAX_RANGE {
                return Err(format!("range {s:?} has more than {MAX_RANGE} ports"));
            }
            Ok((a, b))
        }
        None => num(s).map(|n| (n, n)),
    }
}

/// One `ports` entry → its ports (unnamed yet).
pub fn parse_port(v: &Value) -> Result<Vec<Port>, String> {
    let port = |container, protocol, published, host_ip: Option<String>| Port {
        container,
        protocol,
        published,
        host_ip,
        name: String::new(),
    };
    match v {
        Value::Number(n) => {
            let c = n
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{n} is not a port number (1-65535)"))?;
            Ok(vec![port(c, "TCP", None, None)])
        }
        Value::Object(m) => {
            let target = m
                .get("target")
                .and_then(super::compose::scalar)
                .ok_or("the long syntax needs target: (the container's port)")?;
            let (c, _) = range(&target)?;
            let proto = protocol(m.get("protocol").and_then(Value::as_str).unwrap_or(""))?;
            let published = match m.get("published").and_then(super::compose::scalar) {
                Some(p) if !p.is_empty() => Some(range(&p)?.0),
                _ => None,
            };
            let ip = m.get("host_ip").and_then(Value::as_str).map(str::to_string);
            let mut p = port(c, proto, published, ip);
            if let Some(n) = m.get("name").and_then(Value::as_str) {
                p.name = n.to_string();
            }
            Ok(vec![p])
        }
        Value::String(s) => {
            let (spec, proto) = match s.rsplit_once('/') {
                Some((a, b)) => (a, protocol(b)?),
                None => (s.as_str(), "TCP"),
            };
            // An IPv6 host address is bracketed: `[::1]:80:80`.
            let (ip, rest) = match spec.strip_prefix('[') {
                Some(r) => {
                    let (ip, rest) = r.split_once("]:").ok_or("an IPv6 address needs `]:` after it")?;
                    (Some(ip.to_string()), rest)
                }
                None => (None, spec),
            };
            let parts: Vec<&str> = rest.split(':').collect();
            let (ip, host, container) = match parts.as_slice() {
                [c] => (ip, None, *c),
                [h, c] => (ip, Some(*h), *c),
                [i, h, c] if ip.is_none() => (Some(i.to_string()), Some(*h), *c),
                _ => return Err(format!("{s:?} is not [HOST:]CONTAINER[/PROTOCOL]")),
            };
            let (c0, c1) = range(container)?;
            let host = match host {
                Some(h) if !h.is_empty() => Some(range(h)?),
                _ => None,
            };
            if let Some((h0, h1)) = host
                && h1 - h0 != c1 - c0
                && h0 != h1
            {
                return Err(format!(
                    "{s:?}: the host range and the container range differ in length"
                ));
            }
            Ok((c0..=c1)
                .enumerate()
                .map(|(i, c)| {
                    let published = host.map(|(h0, h1)| if h0 == h1 { h0 } else { h0 + i as u16 });
                    port(c, proto, published, ip.clone())
                })
                .collect())
        }
        _ => Err("a port is a number, a string or a mapping".into()),
    }
}

/// One `expose` entry: container ports only.
pub fn parse_expose(v: &Value) -> Result<Vec<Port>, String> {
    let s = super::compose::scalar(v).ok_or("an exposed port is a number or a string")?;
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, b)) => (a.to_string(), protocol(b)?),
        None => (s.clone(), "TCP"),
    };
    let (a, b) = range(&spec)?;
    Ok((a..=b)
        .map(|c| Port {
            container: c,
            protocol: proto,
            published: None,
            host_ip: None,
            name: String::new(),
        })
        .collect())
}

/// The usual name for what listens on a port (the seed's `http`, `http-2`, ... for the rest).
fn base_name(p: &Port) -> &'static str {
    match (p.protocol, p.container) {
        ("UDP", 53) | ("TCP", 53) => "dns",
        ("UDP", _) => "udp",
        ("SCTP", _) => "sctp",
        (_, 443 | 8443) => "https",
        (_, 5432) => "postgres",
        (_, 3306) => "mysql",
        (_, 6379) => "redis",
        (_, 27017) => "mongo",
        (_, 7687) => "bolt",
        (_, 6334) => "grpc",
        (_, 9229) => "debug",
        _ => "http",
    }
}

/// Whether `name` is a valid port name (IANA_SVC_NAME).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !name.contains("--")
        && b.iter().any(u8::is_ascii_lowercase)
}

/// Drops repeated (container port, protocol) pairs, keeping the first (which carries the
/// publication), and gives each port a unique valid name: its own if valid, else the usual
/// name, `-2`, `-3`, ... on repeats.
pub fn name_ports(ports: Vec<Port>) -> Vec<Port> {
    let mut out: Vec<Port> = Vec::new();
    for p in ports {
        if let Some(have) = out
            .iter_mut()
            .find(|o| o.container == p.container && o.protocol == p.protocol)
        {
            if have.published.is_none() {
                have.published = p.published;
                have.host_ip = p.host_ip;
            }
            continue;
        }
        out.push(p);
    }
    let mut used: Vec<String> = Vec::new();
    for p in &mut out {
        let base = if valid_name(&p.name) {
            p.name.clone()
        } else {
            base_name(p).to_string()
        };
        let mut name = base.clone();
        let mut n = 2;
        while used.contains(&name) {
            let suffix = format!("-{n}");
            name = format!("{}{suffix}", &base[..base.len().min(15 - suffix.len())]);
            n += 1;
        }
        used.push(name.clone());
        p.name = name;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(entries: Value) -> Vec<Port> {
        name_ports(
            entries
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|e| parse_port(e).unwrap())
                .collect(),
        )
    }

    #[test]
    fn several_ports_get_unique_valid_names() {
        // The seed's case: ['3002:3000', '8080:8080'] → http, http-2.
        let p = all(json!(["3002:3000", "8080:8080"]));
        let names: Vec<(&str, u16, Option<u16>)> =
            p.iter().map(|p| (p.name.as_str(), p.container, p.published)).collect();
        assert_eq!(names, [("http", 3000, Some(3002)), ("http-2", 8080, Some(8080))]);
        let many = all(json!(["9000-9011:9000-9011"]));
        assert_eq!(many.len(), 12);
        assert_eq!(many[11].name, "http-12");
        assert_eq!(many[11].published, Some(9011));
        for p in &many {
            assert!(valid_name(&p.name), "{}", p.name);
        }
    }

    #[test]
    fn protocols_addresses_and_long_syntax() {
        let p = all(json!([
            "127.0.0.1:9229:9229",
            "53:53/udp",
            "5432",
            {"target": 8080, "published": "8081", "name": "web"},
            "[::1]:6000:6000",
            80
        ]));
        assert_eq!(p[0].name, "debug");
        assert!(!p[0].public());
        assert_eq!((p[1].protocol, p[1].name.as_str()), ("UDP", "dns"));
        assert_eq!((p[2].name.as_str(), p[2].published), ("postgres", None));
        assert_eq!((p[3].name.as_str(), p[3].published), ("web", Some(8081)));
        assert!(p[3].public());
        assert_eq!(p[4].host_ip.as_deref(), Some("::1"));
        assert_eq!(p[5].name, "http-2");
    }

    #[test]
    fn bad_ports_are_refused_with_a_reason() {
        for bad in [
            json!("0:80"),
            json!("abc"),
            json!("80/icmp"),
            json!("1-500:1-500"),
            json!("90-80"),
            json!("1:2:3:4"),
            json!({"published": 80}),
        ] {
            assert!(parse_port(&bad).is_err(), "{bad}");
        }
        assert!(parse_expose(&json!("8000-8002")).unwrap().len() == 3);
    }

    #[test]
    fn names_are_at_most_15_characters() {
        let mut ports = vec![Port {
            container: 1,
            protocol: "TCP",
            published: None,
            host_ip: None,
            name: "averyverylongnm".into(),
        }];
        ports.push(Port {
            name: "averyverylongnm".into(),
            container: 2,
            ..ports[0].clone()
        });
        let named = name_ports(ports);
        assert_eq!(named[1].name, "averyverylong-2");
        assert!(named.iter().all(|p| valid_name(&p.name)));
    }
}
