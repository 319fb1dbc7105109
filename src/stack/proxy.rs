//! The HTTP proxy for a stack's downloading pods: behind a corporate proxy, Ollama, Whisper and
//! Open WebUI cannot fetch a model unless they get the proxy variables, and their egress
//! NetworkPolicies (which admit the internet but not the private ranges a proxy usually lives in)
//! must admit the proxy's address and port.
//!
//! Which pods download is read from the stack itself: a NetworkPolicy with an egress rule to
//! `0.0.0.0/0` marks the pods its `podSelector` selects as talking to the internet. Those pods'
//! containers get `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` in both cases (a variable a manifest sets
//! itself is kept), and each such policy gets one more egress rule per proxy endpoint. `NO_PROXY`
//! names the stack's Services too, since pods call them by their short names (`http://ollama:11434`).
//! Pure: objects in, objects out; `plan -vv` shows the result.

use super::Stack;
use crate::distro::proxy::{ClusterNet, Proxy, ProxyEndpoint};
use serde_json::{Value, json};

/// Kinds whose pod template is at `spec.template` (Job's too) or `spec.jobTemplate.spec.template`.
fn pod_spec_mut(obj: &mut Value) -> Option<&mut Value> {
    let kind = obj.get("kind")?.as_str()?.to_string();
    match kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => obj.pointer_mut("/spec/template/spec"),
        "CronJob" => obj.pointer_mut("/spec/jobTemplate/spec/template/spec"),
        "Pod" => obj.pointer_mut("/spec"),
        _ => None,
    }
}

fn pod_labels(obj: &Value) -> Option<&serde_json::Map<String, Value>> {
    let path = match obj.get("kind")?.as_str()? {
        "CronJob" => "/spec/jobTemplate/spec/template/metadata/labels",
        "Pod" => "/metadata/labels",
        _ => "/spec/template/metadata/labels",
    };
    obj.pointer(path)?.as_object()
}

/// Whether a NetworkPolicy lets its pods reach the internet (`ipBlock.cidr: 0.0.0.0/0`).
fn internet_egress(policy: &Value) -> bool {
    policy
        .pointer("/spec/egress")
        .and_then(Value::as_array)
        .is_some_and(|rules| {
            rules.iter().any(|r| {
                r.get("to").and_then(Value::as_array).is_some_and(|to| {
                    to.iter()
                        .any(|peer| peer.pointer("/ipBlock/cidr").and_then(Value::as_str) == Some("0.0.0.0/0"))
                })
            })
        })
}

/// `matchLabels` of a policy's podSelector (`{}` selects every pod; `matchExpressions` are not
/// read: such a policy is left alone).
fn selects(policy: &Value, labels: &serde_json::Map<String, Value>) -> bool {
    let Some(selector) = policy.pointer("/spec/podSelector") else {
        return false;
    };
    if selector.get("matchExpressions").is_some() {
        return false;
    }
    match selector.get("matchLabels").and_then(Value::as_object) {
        None => true,
        Some(m) => m.iter().all(|(k, v)| labels.get(k) == Some(v)),
    }
}

/// Gives the stack's internet-facing pods the proxy variables (`pod_env`, without the stack's
/// Service names: they are added here) and lets their egress policies reach `endpoints`.
/// Returns how many workloads and policies it changed.
pub fn apply(
    stack: &mut Stack,
    pod_env: impl Fn(&[String]) -> Vec<(String, String)>,
    endpoints: &[ProxyEndpoint],
) -> (usize, usize) {
    let objects = || stack.stages.iter().flat_map(|s| &s.objects);
    let services: Vec<String> = objects()
        .filter(|o| o.reference.kind == "Service")
        .map(|o| o.reference.name.clone())
        .collect();
    let policies: Vec<Value> = objects()
        .filter(|o| o.reference.kind == "NetworkPolicy" && internet_egress(&o.value))
        .map(|o| o.value.clone())
        .collect();
    if policies.is_empty() {
        return (0, 0);
    }
    let env = pod_env(&services);
    let mut workloads = 0;
    let mut changed_policies = 0;
    for obj in stack.stages.iter_mut().flat_map(|s| &mut s.objects) {
        if obj.reference.kind == "NetworkPolicy" && internet_egress(&obj.value) {
            if let Some(rules) = obj.value.pointer_mut("/spec/egress").and_then(Value::as_array_mut) {
                for e in endpoints {
                    let cidr = match e.ip {
                        std::net::IpAddr::V4(ip) => format!("{ip}/32"),
                        std::net::IpAddr::V6(ip) => format!("{ip}/128"),
                    };
                    rules.push(json!({
                        "to": [{"ipBlock": {"cidr": cidr}}],
                        "ports": [{"protocol": "TCP", "port": e.port}],
                    }));
                }
                if !endpoints.is_empty() {
                    changed_policies += 1;
                }
            }
            continue;
        }
        let Some(labels) = pod_labels(&obj.value).cloned() else {
            continue;
        };
        if !policies.iter().any(|p| selects(p, &labels)) {
            continue;
        }
        let Some(spec) = pod_spec_mut(&mut obj.value) else {
            continue;
        };
        for list in ["initContainers", "containers"] {
            let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for c in containers {
                let Some(c) = c.as_object_mut() else { continue };
                let vars = c.entry("env").or_insert_with(|| json!([]));
                let Some(vars) = vars.as_array_mut() else { continue };
                for (k, v) in &env {
                    if !vars.iter().any(|e| e.get("name").and_then(Value::as_str) == Some(k)) {
                        vars.push(json!({"name": k, "value": v}));
                    }
                }
            }
        }
        workloads += 1;
    }
    (workloads, changed_policies)
}

/// Where the stack runs, for `NO_PROXY`: the cluster's ranges (`None` when they are not known,
/// e.g. `apply` to a cluster of unknown make), and the node's addresses when the cluster is this
/// host.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub ranges: Option<(&'a str, &'a str)>,
    pub node_addresses: &'a [String],
}

/// The proxy from kstrap's environment given to a stack's downloading pods, and their egress
/// policies opened to it: what `up` and `apply` both do, through this one function. Returns a
/// warning when pods need the proxy but its host name did not resolve (their policies cannot
/// admit a name).
pub fn for_cluster(stack: &mut Stack, proxy: &Proxy, target: &Target<'_>) -> Option<String> {
    let (pod_cidr, service_cidr) = target.ranges.unwrap_or(("", ""));
    let net = ClusterNet {
        pod_cidr,
        service_cidr,
        node_addresses: target.node_addresses,
    };
    let (workloads, _) = apply(stack, |services| proxy.pod_env(&net, services), &proxy.addresses);
    (proxy.addresses.is_empty() && workloads > 0).then(|| {
        format!(
            "the proxy's host name ({}) did not resolve to an address: the stack's egress NetworkPolicies cannot admit it, so its pods' downloads will be blocked; give the proxy as an IP address (HTTP_PROXY=http://10.0.0.1:3128) or fix name resolution",
            proxy
                .names()
                .iter()
                .map(|(h, p)| format!("{h}:{p}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object<'a>(stack: &'a Stack, kind: &str, name: &str) -> &'a Value {
        &stack
            .stages
            .iter()
            .flat_map(|s| &s.objects)
            .find(|o| o.reference.kind == kind && o.reference.name == name)
            .unwrap_or_else(|| panic!("no {kind}/{name}"))
            .value
    }

    fn env_names(obj: &Value) -> Vec<String> {
        obj.pointer("/spec/template/spec/containers/0/env")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(|v| v["name"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn voice_ai_downloaders_get_the_proxy_and_their_policies_admit_it() {
        let mut stack = crate::stack::load("voice-ai", None).unwrap();
        let proxy = Proxy::from_vars(|k| (k == "HTTPS_PROXY").then(|| "http://u:secretpw@10.9.8.7:3128".to_string()))
            .unwrap()
            .unwrap();
        let net = ClusterNet {
            pod_cidr: "10.42.0.0/16",
            service_cidr: "10.43.0.0/16",
            node_addresses: &[],
        };
        let (workloads, policies) = apply(&mut stack, |s| proxy.pod_env(&net, s), &proxy.addresses);
        for name in ["ollama", "whisper", "open-webui"] {
            let names = env_names(object(&stack, "Deployment", name));
            assert!(
                names.iter().any(|n| n == "HTTPS_PROXY") && names.iter().any(|n| n == "https_proxy"),
                "{name}: {names:?}"
            );
            let policy = object(&stack, "NetworkPolicy", name);
            let rules = policy["spec"]["egress"].as_array().unwrap();
            assert!(
                rules
                    .iter()
                    .any(|r| r["to"][0]["ipBlock"]["cidr"] == "10.9.8.7/32" && r["ports"][0]["port"] == 3128),
                "{name}: {rules:?}"
            );
        }
        assert!(workloads >= 3 && policies >= 3, "{workloads} {policies}");
        // The model-pull Jobs only call Ollama and Whisper inside the cluster: left alone.
        let job = object(&stack, "Job", "whisper-model-pull");
        assert!(!env_names(job).iter().any(|n| n.contains("PROXY")), "{job}");
        // Pods call Services by short name: NO_PROXY names them.
        let ollama = object(&stack, "Deployment", "ollama");
        let no_proxy = ollama["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "NO_PROXY")
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            no_proxy.split(',').any(|e| e == "ollama") && no_proxy.contains(".svc"),
            "{no_proxy}"
        );
    }

    fn no_proxy_of(stack: &Stack) -> String {
        let ollama = object(stack, "Deployment", "ollama");
        ollama["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "NO_PROXY")
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn for_cluster_names_the_ranges_it_knows_and_warns_about_an_unresolved_name() {
        let proxy = Proxy::from_vars(|k| (k == "HTTP_PROXY").then(|| "http://10.9.8.7:3128".to_string()))
            .unwrap()
            .unwrap();
        let mut stack = crate::stack::load("voice-ai", None).unwrap();
        let addrs = ["192.168.1.23".to_string()];
        let target = Target {
            ranges: Some(("172.30.0.0/16", "172.31.0.0/16")),
            node_addresses: &addrs,
        };
        assert_eq!(for_cluster(&mut stack, &proxy, &target), None);
        let no_proxy = no_proxy_of(&stack);
        assert!(
            no_proxy.contains("192.168.1.23,172.30.0.0/16,172.31.0.0/16,.svc"),
            "{no_proxy}"
        );
        // Ranges unknown: no empty entries.
        let mut stack = crate::stack::load("voice-ai", None).unwrap();
        let target = Target {
            ranges: None,
            node_addresses: &[],
        };
        for_cluster(&mut stack, &proxy, &target);
        let no_proxy = no_proxy_of(&stack);
        assert!(!no_proxy.contains(",,") && no_proxy.contains("::1,.svc"), "{no_proxy}");
        // A name that did not resolve: pods get the variables, the policies cannot admit it.
        let named = Proxy::from_vars(|k| (k == "HTTP_PROXY").then(|| "http://proxy.invalid:3128".to_string()))
            .unwrap()
            .unwrap();
        let mut stack = crate::stack::load("voice-ai", None).unwrap();
        let warning = for_cluster(&mut stack, &named, &target).expect("warned");
        assert!(warning.contains("proxy.invalid:3128"), "{warning}");
    }

    #[test]
    fn a_variable_the_manifest_sets_is_kept_and_stacks_without_internet_egress_are_untouched() {
        let mut stack = crate::stack::load("voice-ai", None).unwrap();
        let before = stack.clone();
        let (w, p) = apply(&mut stack, |_| vec![("OLLAMA_HOST".into(), "x".into())], &[]);
        assert!(w > 0 && p == 0);
        let ollama = object(&stack, "Deployment", "ollama");
        let hosts: Vec<&Value> = ollama["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "OLLAMA_HOST")
            .collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0]["value"], "0.0.0.0:11434");
        for stage in &mut stack.stages {
            stage.objects.retain(|o| o.reference.kind != "NetworkPolicy");
        }
        let mut no_policies = before.clone();
        for stage in &mut no_policies.stages {
            stage.objects.retain(|o| o.reference.kind != "NetworkPolicy");
        }
        let copy = no_policies.clone();
        assert_eq!(apply(&mut no_policies, |_| vec![("A".into(), "b".into())], &[]), (0, 0));
        assert_eq!(no_policies, copy);
    }
}
