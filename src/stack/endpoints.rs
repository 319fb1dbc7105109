//! Where a user opens a stack: its NodePort and LoadBalancer Services and its Ingresses, read
//! from the sized objects. Pure: `up` turns these into the URLs it prints at the end, with the
//! node's address (read from the cluster) filled in.
//!
//! Only what the stack itself declares counts, so the URLs printed are the ones the manifests
//! promise (a NodePort without a fixed `nodePort` is reported as assigned by the cluster).

use super::Stack;
use serde::Serialize;
use serde_json::Value;

/// How the endpoint is reached from outside the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A port open on every node.
    NodePort,
    /// The Service's port on the node's address (k3s servicelb).
    LoadBalancer,
    /// An HTTP route through the distribution's ingress controller (Traefik on k3s).
    Ingress,
}

impl Via {
    pub fn label(self) -> &'static str {
        match self {
            Via::NodePort => "NodePort",
            Via::LoadBalancer => "LoadBalancer",
            Via::Ingress => "Ingress",
        }
    }
}

/// One place to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// The Service or Ingress name, with the port name when a Service has several.
    pub name: String,
    pub namespace: String,
    pub via: Via,
    pub scheme: &'static str,
    /// The port on the node; `None` when the cluster assigns it (NodePort without `nodePort`).
    pub port: Option<u16>,
    /// The host an Ingress rule matches (`None`: any host, so the node's address works).
    pub host: Option<String>,
    pub path: String,
}

impl Endpoint {
    /// The URL on `node` (an address or `localhost`). An Ingress rule with a host is reached by
    /// that name, which must resolve to the node.
    pub fn url(&self, node: &str) -> String {
        let host = self.host.as_deref().unwrap_or(node);
        let default_port = matches!((self.scheme, self.port), ("http", Some(80)) | ("https", Some(443)));
        match self.port {
            Some(_) if default_port => format!("{}://{host}{}", self.scheme, self.path),
            Some(p) => format!("{}://{host}:{p}{}", self.scheme, self.path),
            None => format!(
                "(port assigned by the cluster: kubectl -n {} get service {})",
                self.namespace, self.name
            ),
        }
    }
}

/// Every endpoint the stack declares, Ingresses first (the nicer URL), then Services, each in
/// the order the stack applies them.
pub fn endpoints(stack: &Stack) -> Vec<Endpoint> {
    let objects: Vec<&Value> = stack.stages.iter().flat_map(|s| &s.objects).map(|o| &o.value).collect();
    let namespace_of = |v: &Value| {
        v.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(&stack.namespace)
            .to_string()
    };
    let mut out = Vec::new();
    for v in objects.iter().filter(|v| is(v, "Ingress")) {
        out.extend(ingress_endpoints(v, namespace_of(v)));
    }
    for v in objects.iter().filter(|v| is(v, "Service")) {
        out.extend(service_endpoints(v, namespace_of(v)));
    }
    out
}

fn is(v: &Value, kind: &str) -> bool {
    v.get("kind").and_then(Value::as_str) == Some(kind)
}

fn name_of(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn ingress_endpoints(v: &Value, namespace: String) -> Vec<Endpoint> {
    let name = name_of(v);
    let tls_hosts: Vec<&str> = v
        .pointer("/spec/tls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("hosts").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for rule in v.pointer("/spec/rules").and_then(Value::as_array).into_iter().flatten() {
        let host = rule.get("host").and_then(Value::as_str).map(str::to_string);
        let https = host.as_deref().is_some_and(|h| tls_hosts.contains(&h));
        let paths = rule.pointer("/http/paths").and_then(Value::as_array);
        // The first path of a rule is the entry point; more paths are routes of the same site.
        let path = paths
            .and_then(|p| p.first())
            .and_then(|p| p.get("path"))
            .and_then(Value::as_str)
            .unwrap_or("/");
        out.push(Endpoint {
            name: name.clone(),
            namespace: namespace.clone(),
            via: Via::Ingress,
            scheme: if https { "https" } else { "http" },
            port: Some(if https { 443 } else { 80 }),
            host,
            path: path.to_string(),
        });
    }
    out
}

fn service_endpoints(v: &Value, namespace: String) -> Vec<Endpoint> {
    let via = match v.pointer("/spec/type").and_then(Value::as_str) {
        Some("NodePort") => Via::NodePort,
        Some("LoadBalancer") => Via::LoadBalancer,
        _ => return Vec::new(),
    };
    let name = name_of(v);
    let ports = v.pointer("/spec/ports").and_then(Value::as_array);
    let several = ports.is_some_and(|p| p.len() > 1);
    let mut out = Vec::new();
    for p in ports.into_iter().flatten() {
        let port_name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        // UDP ports (WebRTC media) are not something to open in a browser.
        if p.get("protocol").and_then(Value::as_str).is_some_and(|x| x != "TCP") {
            continue;
        }
        let number = |key: &str| p.get(key).and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok());
        let port = match via {
            Via::NodePort => number("nodePort"),
            _ => number("port"),
        };
        let https = port_name.contains("https") || number("port") == Some(443);
        out.push(Endpoint {
            name: if several && !port_name.is_empty() {
                format!("{name} ({port_name})")
            } else {
                name.clone()
            },
            namespace: namespace.clone(),
            via,
            scheme: if https { "https" } else { "http" },
            port,
            host: None,
            path: "/".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::step::ObjectRef;
    use crate::stack::{StackObject, Stage};
    use serde_json::json;

    fn stack(values: Vec<Value>) -> Stack {
        let objects = values
            .into_iter()
            .map(|value| StackObject {
                reference: ObjectRef {
                    api_version: String::new(),
                    kind: value["kind"].as_str().unwrap_or_default().into(),
                    namespace: None,
                    name: name_of(&value),
                },
                source: "test.yaml".into(),
                document: 0,
                line: 1,
                value,
            })
            .collect();
        Stack {
            name: "s".into(),
            description: String::new(),
            namespace: "ns".into(),
            stages: vec![Stage {
                dir: "00-x".into(),
                name: "x".into(),
                description: String::new(),
                timeout_s: 1,
                objects,
            }],
            profiles: Default::default(),
            distros: Default::default(),
            secrets: Vec::new(),
            images: Vec::new(),
            namespaces: Vec::new(),
            databases: Vec::new(),
            verify: None,
        }
    }

    #[test]
    fn node_port_service_gives_its_fixed_port_and_cluster_ip_services_give_nothing() {
        let s = stack(vec![
            json!({"kind": "Service", "metadata": {"name": "web"},
                   "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 8080, "nodePort": 30080}]}}),
            json!({"kind": "Service", "metadata": {"name": "db"}, "spec": {"ports": [{"port": 5432}]}}),
        ]);
        let e = endpoints(&s);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].via, Via::NodePort);
        assert_eq!(e[0].url("localhost"), "http://localhost:30080/");
        assert_eq!(e[0].url("10.0.0.5"), "http://10.0.0.5:30080/");
    }

    #[test]
    fn ingress_comes_first_without_host_uses_the_node_and_with_tls_is_https() {
        let s = stack(vec![
            json!({"kind": "Service", "metadata": {"name": "web"},
                   "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}),
            json!({"kind": "Ingress", "metadata": {"name": "open", "namespace": "other"},
                   "spec": {"rules": [{"http": {"paths": [{"path": "/app"}]}}]}}),
            json!({"kind": "Ingress", "metadata": {"name": "named"},
                   "spec": {"tls": [{"hosts": ["a.local"]}],
                            "rules": [{"host": "a.local", "http": {"paths": [{"path": "/"}]}},
                                      {"host": "b.local"}]}}),
        ]);
        let e = endpoints(&s);
        let urls: Vec<String> = e.iter().map(|e| e.url("192.168.1.2")).collect();
        assert_eq!(
            urls,
            [
                "http://192.168.1.2/app",
                "https://a.local/",
                "http://b.local/",
                "http://192.168.1.2:30080/"
            ]
        );
        assert_eq!(e[0].namespace, "other");
        assert_eq!(e[1].namespace, "ns");
    }

    #[test]
    fn several_ports_are_named_udp_is_skipped_and_an_unset_node_port_says_how_to_find_it() {
        let s = stack(vec![json!({"kind": "Service", "metadata": {"name": "rtc"},
            "spec": {"type": "NodePort", "ports": [
                {"name": "https", "port": 443},
                {"name": "signal", "port": 7880, "nodePort": 30788},
                {"name": "media", "port": 7882, "protocol": "UDP", "nodePort": 30789}]}})]);
        let e = endpoints(&s);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "rtc (https)");
        assert_eq!(e[0].scheme, "https");
        assert!(e[0].url("x").contains("kubectl -n ns get service rtc"));
        assert_eq!(e[1].url("x"), "http://x:30788/");
    }

    #[test]
    fn load_balancer_uses_the_service_port() {
        let s = stack(vec![json!({"kind": "Service", "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 31000}]}})]);
        assert_eq!(endpoints(&s)[0].url("h"), "http://h/");
    }

    #[test]
    fn the_built_in_stacks_promise_what_their_readmes_say() {
        let voice = crate::stack::load("voice-ai", None).expect("voice-ai loads");
        let urls: Vec<String> = endpoints(&voice).iter().map(|e| e.url("localhost")).collect();
        assert!(urls.contains(&"http://localhost:30080/".to_string()), "{urls:?}");
        let imagepod = crate::stack::load("imagepod", None).expect("imagepod loads");
        let e = endpoints(&imagepod);
        assert!(
            e.iter()
                .any(|e| e.via == Via::Ingress && e.host.as_deref() == Some("imagepod.local")),
            "{e:?}"
        );
    }
}
