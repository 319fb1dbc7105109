//! Network policies: the namespace denies everything by default and allows DNS (as every
//! built-in stack does, manifests/README.md "Security by default"); each service then gets one
//! policy that admits the services with a path to it on its ports, and lets it reach the
//! services it has a path to, plus HTTPS and HTTP to addresses outside the cluster's private
//! ranges (model and package downloads, hosted APIs). A path from A to B is what the compose
//! file implies: A `depends_on` B, A `links` B, or a variable or command word of A names B's
//! host (`postgres://db:5432/app`). Ports the file publishes admit any source.
//! kompose turns each `networks:` entry into an ingress-only policy admitting every pod of the
//! network on every port (`CreateNetworkPolicy`, pkg/transformer/kubernetes/kubernetes.go at
//! v1.38.0), with no default deny and no egress rule.

use super::service::Service;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A service of the cluster that stands in for a compose service (`--discover`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    /// The compose service it replaces.
    pub replaces: String,
    pub selector: Value,
    pub ports: Vec<u16>,
}

pub fn default_deny() -> Vec<Value> {
    vec![
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "default-deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "allow-dns"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}}),
    ]
}

/// The compose services `s` has a path to (its own name excluded).
pub fn targets(s: &Service, all: &[&Service], external: &[External]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = s
        .depends_on
        .iter()
        .map(|(d, _)| d.clone())
        .chain(s.links.iter().cloned())
        .collect();
    for t in all {
        if s.words.contains(&t.compose) || s.words.contains(&t.name) {
            out.insert(t.compose.clone());
        }
    }
    for e in external {
        if s.words.contains(&e.replaces) {
            out.insert(e.replaces.clone());
        }
    }
    out.remove(&s.compose);
    out
}

fn port_list(ports: impl Iterator<Item = (u16, &'static str)>) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    ports
        .filter(|p| seen.insert(*p))
        .map(|(port, protocol)| json!({"protocol": protocol, "port": port}))
        .collect()
}

/// The policy of service `s`.
pub fn for_service(s: &Service, all: &[&Service], external: &[External]) -> Value {
    let by_name = |n: &str| all.iter().find(|t| t.compose == n).copied();
    let own = port_list(s.ports.iter().map(|p| (p.container, p.protocol)));
    let mut ingress: Vec<Value> = Vec::new();
    if !own.is_empty() {
        let peers: Vec<Value> = all
            .iter()
            .filter(|o| o.compose != s.compose && targets(o, all, external).contains(&s.compose))
            .map(|o| json!({"podSelector": {"matchLabels": {"app.kubernetes.io/name": o.name}}}))
            .collect();
        if !peers.is_empty() {
            ingress.push(json!({"from": peers, "ports": own}));
        }
        let public = port_list(s.ports.iter().filter(|p| p.public()).map(|p| (p.container, p.protocol)));
        if !public.is_empty() {
            // Clients of a published port arrive from anywhere (or from the node, via servicelb).
            ingress.push(json!({"ports": public}));
        }
    }
    let mut egress: Vec<Value> = Vec::new();
    for t in targets(s, all, external) {
        if let Some(t) = by_name(&t) {
            let ports = port_list(t.ports.iter().map(|p| (p.container, p.protocol)));
            if !ports.is_empty() {
                egress.push(json!({"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": t.name}}}], "ports": ports}));
            }
        } else if let Some(e) = external.iter().find(|e| e.replaces == t) {
            egress.push(json!({"to": [{"podSelector": {"matchLabels": e.selector}}], "ports": port_list(e.ports.iter().map(|p| (*p, "TCP")))}));
        }
    }
    egress.push(json!({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]}}],
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 80}]}));
    let mut spec = json!({"podSelector": {"matchLabels": {"app.kubernetes.io/name": s.name}}, "policyTypes": ["Ingress", "Egress"], "egress": egress});
    if !ingress.is_empty() {
        spec["ingress"] = Value::Array(ingress);
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": s.name}, "spec": spec})
}
