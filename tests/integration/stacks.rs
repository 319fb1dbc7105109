//! Every built-in stack, sized for every profile it names, checked structurally for what the
//! project promises of all of them (issue 6, seed 002's zero-trust section): a default-deny
//! network policy with DNS allowed in each namespace, locked-down containers with limits,
//! requests that fit each profile's minimum host, and references (Service selectors, claims,
//! ConfigMaps, Secrets, Ingress backends, network-policy peers) that resolve inside the stack.
//! Real stacks, real YAML parsing: nothing here is a double.

use kstrap::distro::Distro;
use kstrap::stack::{self, Stack};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Pods allowed to run as root: (stack, `Kind/name`, why). The manifest says the same next to
/// the pod's securityContext.
const ROOT_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "voice-ai",
        "Deployment/ollama",
        "the image runs as root and keeps models under /root/.ollama",
    ),
    (
        "voice-ai",
        "Deployment/open-webui",
        "the image is built for uid 0; non-root is untested upstream",
    ),
    (
        "multimodal-ai",
        "Job/data-permissions",
        "hands the root-owned hostPath folder to uid 10001 (CAP_CHOWN only)",
    ),
];

/// Capabilities a container may add back after dropping ALL: (stack, `Kind/name`, capability).
const ADDED_CAPABILITIES: &[(&str, &str, &str)] = &[("multimodal-ai", "Job/data-permissions", "CHOWN")];

const HEADROOM_CPU: f64 = 1.0;
const HEADROOM_MEM: f64 = 2.0 * 1024.0 * 1024.0 * 1024.0;

fn objects(s: &Stack) -> impl Iterator<Item = &stack::StackObject> {
    s.stages.iter().flat_map(|st| &st.objects)
}

fn key(o: &stack::StackObject) -> String {
    format!("{}/{}", o.reference.kind, o.reference.name)
}

/// The pod spec of a workload and its template's labels.
fn pod(o: &stack::StackObject) -> Option<(&Value, &Value)> {
    let (spec, meta) = match o.reference.kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            ("/spec/template/spec", "/spec/template/metadata/labels")
        }
        "CronJob" => (
            "/spec/jobTemplate/spec/template/spec",
            "/spec/jobTemplate/spec/template/metadata/labels",
        ),
        "Pod" => ("/spec", "/metadata/labels"),
        _ => return None,
    };
    Some((o.value.pointer(spec)?, o.value.pointer(meta).unwrap_or(&Value::Null)))
}

fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|l| pod.get(*l).and_then(Value::as_array))
        .flatten()
        .collect()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Whether a podSelector selects every pod (`{}`).
fn selects_all(selector: Option<&Value>) -> bool {
    match selector {
        None => true,
        Some(Value::Object(m)) => m.values().all(|v| match v {
            Value::Object(x) => x.is_empty(),
            Value::Array(x) => x.is_empty(),
            Value::Null => true,
            _ => false,
        }),
        _ => false,
    }
}

/// The HTTP paths of every rule of an Ingress.
fn ingress_paths(ing: &Value) -> impl Iterator<Item = &Value> {
    ing.pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|r| r.pointer("/http/paths").and_then(Value::as_array).into_iter().flatten())
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Every stack with each variant to check: as written, and sized for each profile it names on
/// each distribution (`laptop-8gb on k0s`).
fn variants() -> Vec<(String, String, Stack)> {
    let names = stack::embedded_names();
    for want in ["voice-ai", "multimodal-ai", "imagepod"] {
        assert!(names.contains(&want.to_string()), "{want} is not built in: {names:?}");
    }
    let mut out = Vec::new();
    for name in names {
        let s = stack::load(&name, None).unwrap();
        assert!(!s.sized_profiles().is_empty(), "{name} names no profile");
        for p in s.sized_profiles() {
            for d in [Distro::K3s, Distro::K0s] {
                out.push((name.clone(), format!("{p} on {d}"), s.sized_for(p, Some(d))));
            }
        }
        out.push((name, "(as written)".to_string(), s));
    }
    out
}

#[test]
fn every_namespace_denies_by_default_and_allows_dns() {
    for (name, profile, s) in variants() {
        let mut namespaces: BTreeSet<String> = objects(&s).filter_map(|o| o.reference.namespace.clone()).collect();
        namespaces.insert(s.namespace.clone());
        for ns in namespaces {
            let policies: Vec<&Value> = objects(&s)
                .filter(|o| o.reference.kind == "NetworkPolicy")
                .filter(|o| o.reference.namespace.as_deref() == Some(ns.as_str()))
                .map(|o| &o.value)
                .collect();
            let default_deny = policies.iter().any(|p| {
                let types = strs(p.pointer("/spec/policyTypes"));
                selects_all(p.pointer("/spec/podSelector"))
                    && types.contains(&"Ingress")
                    && types.contains(&"Egress")
                    && strs(p.pointer("/spec/ingress")).is_empty()
                    && p.pointer("/spec/ingress")
                        .and_then(Value::as_array)
                        .is_none_or(|a| a.is_empty())
                    && p.pointer("/spec/egress")
                        .and_then(Value::as_array)
                        .is_none_or(|a| a.is_empty())
            });
            assert!(
                default_deny,
                "{name} ({profile}): namespace {ns} has no default-deny policy for Ingress and Egress"
            );
            let dns = policies.iter().any(|p| {
                selects_all(p.pointer("/spec/podSelector"))
                    && strs(p.pointer("/spec/policyTypes")).contains(&"Egress")
                    && p.pointer("/spec/egress")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|rule| {
                            let to_dns = rule
                                .get("to")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                                .any(|peer| {
                                    peer.pointer("/podSelector/matchLabels/k8s-app") == Some(&Value::from("kube-dns"))
                                });
                            let port_53 = rule
                                .get("ports")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                                .any(|p| {
                                    p.get("port") == Some(&Value::from(53))
                                        && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == "UDP"
                                });
                            to_dns && port_53
                        })
            });
            assert!(
                dns,
                "{name} ({profile}): namespace {ns} has no egress rule for DNS (UDP 53 to kube-dns)"
            );
        }
    }
}

#[test]
fn every_container_is_locked_down_and_limited() {
    let mut used_exceptions = BTreeSet::new();
    for (name, profile, s) in variants() {
        for o in objects(&s) {
            let Some((pod, _)) = pod(o) else { continue };
            let who = format!("{name} ({profile}): {}", key(o));
            for flag in ["hostNetwork", "hostPID", "hostIPC"] {
                assert_ne!(pod.get(flag), Some(&Value::Bool(true)), "{who}: {flag}");
            }
            // No host paths in pods: not the Docker socket, not the driver, nothing.
            for v in pod.get("volumes").and_then(Value::as_array).into_iter().flatten() {
                assert!(v.get("hostPath").is_none(), "{who}: mounts a hostPath volume {v}");
            }
            let pod_sc = pod.get("securityContext").unwrap_or(&Value::Null);
            let exception = ROOT_EXCEPTIONS.iter().find(|(st, k, _)| *st == name && *k == key(o));
            for c in containers(pod) {
                let cname = c["name"].as_str().unwrap_or("?");
                let who = format!("{who} container {cname}");
                let sc = c.get("securityContext").unwrap_or(&Value::Null);
                for res in ["cpu", "memory"] {
                    assert!(
                        c.pointer(&format!("/resources/limits/{res}")).is_some(),
                        "{who}: no {res} limit"
                    );
                }
                assert_eq!(sc.get("allowPrivilegeEscalation"), Some(&Value::Bool(false)), "{who}");
                assert_ne!(sc.get("privileged"), Some(&Value::Bool(true)), "{who}");
                assert!(
                    strs(sc.pointer("/capabilities/drop")).contains(&"ALL"),
                    "{who}: capabilities.drop lacks ALL"
                );
                for cap in strs(sc.pointer("/capabilities/add")) {
                    assert!(
                        ADDED_CAPABILITIES.contains(&(name.as_str(), key(o).as_str(), cap)),
                        "{who}: adds capability {cap} that ADDED_CAPABILITIES does not list"
                    );
                }
                let seccomp = sc
                    .pointer("/seccompProfile/type")
                    .or_else(|| pod_sc.pointer("/seccompProfile/type"));
                assert_eq!(seccomp, Some(&Value::from("RuntimeDefault")), "{who}: seccomp");
                let non_root =
                    sc.get("runAsNonRoot").or_else(|| pod_sc.get("runAsNonRoot")) == Some(&Value::Bool(true));
                match exception {
                    Some((_, _, why)) => {
                        assert!(!non_root, "{who} runs non-root: remove its exception ({why})");
                        used_exceptions.insert(key(o));
                    }
                    None => assert!(
                        non_root,
                        "{who}: not runAsNonRoot; fix it or name it in ROOT_EXCEPTIONS with the reason"
                    ),
                }
            }
        }
    }
    for (st, k, _) in ROOT_EXCEPTIONS {
        assert!(used_exceptions.contains(*k), "{st} {k}: exception names no such pod");
    }
}

#[test]
fn every_stack_fits_each_profile_it_names() {
    let profiles: BTreeMap<String, kstrap::profile::Profile> = kstrap::profile::embedded()
        .unwrap()
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    let mut checked = 0;
    for name in stack::embedded_names() {
        let s = stack::load(&name, None).unwrap();
        for pname in s.sized_profiles() {
            let p = profiles
                .get(pname)
                .unwrap_or_else(|| panic!("{name} sizes for {pname}, which is no built-in profile"));
            // On either distribution (--distro may differ from the profile's).
            let (cpu, mem, gpu) = [Distro::K3s, Distro::K0s]
                .iter()
                .map(|d| s.sized_for(pname, Some(*d)).total_requests())
                .fold((0.0f64, 0.0f64, 0u32), |a, b| {
                    (a.0.max(b.0), a.1.max(b.1), a.2.max(b.2))
                });
            let cpu_budget = p.requires.cpus as f64 - HEADROOM_CPU;
            let mem_budget = p.requires.memory_gib * 1024.0 * 1024.0 * 1024.0 - HEADROOM_MEM;
            assert!(cpu > 0.0 && mem > 0.0, "{name}/{pname}: requests nothing");
            assert!(cpu <= cpu_budget, "{name}/{pname}: requests {cpu} CPUs > {cpu_budget}");
            assert!(
                mem <= mem_budget,
                "{name}/{pname}: requests {:.2} GiB > {:.2} GiB",
                mem / 1073741824.0,
                mem_budget / 1073741824.0
            );
            let shares = p.requires.gpu.as_ref().map(|g| g.count).unwrap_or(0) * p.gpu.replicas;
            if p.gpu.operator {
                assert!(gpu <= shares, "{name}/{pname}: {gpu} GPU shares, {shares} available");
            } else {
                assert_eq!(gpu, 0, "{name}/{pname}: a profile without GPU gets GPU requests");
            }
            checked += 1;
        }
    }
    assert!(checked >= 9, "3 stacks x 3 profiles, got {checked}");
}

#[test]
fn the_gpu_worker_gets_a_share_only_where_there_is_a_gpu() {
    let s = stack::load("imagepod", None).unwrap();
    assert_eq!(s.sized("rtx-5090").total_requests().2, 1);
    for p in ["cpu-fallback", "laptop-8gb"] {
        let sized = s.sized(p);
        assert!(
            objects(&sized).all(|o| o.reference.name != "imagepod-gpu-worker"),
            "{p}: the GPU worker (or its Service/policy) is still there"
        );
    }
    let ds = objects(&s.sized("rtx-5090"))
        .find(|o| o.reference.kind == "DaemonSet")
        .map(|o| o.value.clone())
        .unwrap();
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["nodeSelector"]["nvidia.com/gpu.present"], "true");
    assert_eq!(spec["runtimeClassName"], "nvidia");
    assert_eq!(spec["tolerations"][0]["key"], "nvidia.com/gpu");
    assert_eq!(spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "1");
}

#[test]
fn references_resolve_inside_each_stack() {
    for (name, profile, s) in variants() {
        let find = |kind: &str, n: &str| objects(&s).find(|o| o.reference.kind == kind && o.reference.name == n);
        let pods: Vec<(&stack::StackObject, &Value, &Value)> =
            objects(&s).filter_map(|o| pod(o).map(|(p, l)| (o, p, l))).collect();
        // Service selectors match some pod template.
        for svc in objects(&s).filter(|o| o.reference.kind == "Service") {
            let sel = svc.value.pointer("/spec/selector").unwrap_or(&Value::Null);
            assert!(
                !selects_all(Some(sel)) && pods.iter().any(|(_, _, l)| labels_match(sel, l)),
                "{name} ({profile}): Service {} selects no pod of the stack",
                svc.reference.name
            );
        }
        // Ingress backends are Services of the stack, on a port they expose.
        for ing in objects(&s).filter(|o| o.reference.kind == "Ingress") {
            for path in ingress_paths(&ing.value) {
                let svc = path
                    .pointer("/backend/service/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let port = path.pointer("/backend/service/port/number").unwrap_or(&Value::Null);
                let svc = find("Service", svc).unwrap_or_else(|| panic!("{name}: Ingress backend {svc} missing"));
                let ports: Vec<&Value> = svc
                    .value
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|p| &p["port"])
                    .collect();
                assert!(
                    ports.contains(&port),
                    "{name}: Ingress port {port} not on {}",
                    svc.reference.name
                );
            }
        }
        // A claim bound by name names a PersistentVolume of the stack.
        for pvc in objects(&s).filter(|o| o.reference.kind == "PersistentVolumeClaim") {
            if let Some(pv) = pvc.value.pointer("/spec/volumeName").and_then(Value::as_str) {
                assert!(find("PersistentVolume", pv).is_some(), "{name}: PV {pv} missing");
            }
        }
        for (o, pod, _) in &pods {
            let who = format!("{name} ({profile}): {}", key(o));
            for v in pod.get("volumes").and_then(Value::as_array).into_iter().flatten() {
                if let Some(claim) = v.pointer("/persistentVolumeClaim/claimName").and_then(Value::as_str) {
                    assert!(
                        find("PersistentVolumeClaim", claim).is_some(),
                        "{who}: claim {claim} missing"
                    );
                }
                if let Some(cm) = v.pointer("/configMap/name").and_then(Value::as_str) {
                    assert!(find("ConfigMap", cm).is_some(), "{who}: ConfigMap {cm} missing");
                }
                if let Some(sec) = v.pointer("/secret/secretName").and_then(Value::as_str) {
                    assert!(secret_exists(&s, sec, None), "{who}: Secret {sec} missing");
                }
            }
            for c in containers(pod) {
                for from in c.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(cm) = from.pointer("/configMapRef/name").and_then(Value::as_str) {
                        assert!(find("ConfigMap", cm).is_some(), "{who}: ConfigMap {cm} missing");
                    }
                    if let Some(sec) = from.pointer("/secretRef/name").and_then(Value::as_str) {
                        assert!(secret_exists(&s, sec, None), "{who}: Secret {sec} missing");
                    }
                }
                for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
                        let (sec, k) = (r["name"].as_str().unwrap_or(""), r["key"].as_str().unwrap_or(""));
                        assert!(
                            secret_exists(&s, sec, Some(k)),
                            "{who}: Secret {sec} key {k} is not declared"
                        );
                    }
                    if let Some(r) = e.pointer("/valueFrom/configMapKeyRef") {
                        let (cm, k) = (r["name"].as_str().unwrap_or(""), r["key"].as_str().unwrap_or(""));
                        let cm = find("ConfigMap", cm).unwrap_or_else(|| panic!("{who}: ConfigMap {cm} missing"));
                        assert!(
                            cm.value.pointer(&format!("/data/{k}")).is_some(),
                            "{who}: ConfigMap key {k}"
                        );
                    }
                }
            }
        }
        // Network policies name pods that exist (checked with every object present: a policy
        // may allow traffic to a pod a profile leaves out).
        if profile == "(as written)" {
            // The verification Job's pod (src/verify) is one of the namespace's pods when the
            // stack declares checks.
            let verifier = kstrap::verify::resolve(&s).map(|r| {
                kstrap::verify::job::job(&name, &s.namespace, &r)["spec"]["template"]["metadata"]["labels"].clone()
            });
            for np in objects(&s).filter(|o| o.reference.kind == "NetworkPolicy") {
                let mut selectors = vec![np.value.pointer("/spec/podSelector")];
                for dir in ["ingress", "egress"] {
                    for rule in np
                        .value
                        .pointer(&format!("/spec/{dir}"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        for peer in ["from", "to"]
                            .iter()
                            .filter_map(|f| rule.get(*f).and_then(Value::as_array))
                            .flatten()
                        {
                            if peer.get("namespaceSelector").is_none() && peer.get("ipBlock").is_none() {
                                selectors.push(peer.get("podSelector"));
                            }
                        }
                    }
                }
                for sel in selectors.into_iter().filter(|s| !selects_all(*s)) {
                    let labels = sel.and_then(|s| s.get("matchLabels")).unwrap_or(&Value::Null);
                    // The database instances CloudNativePG starts are pods of the stack too.
                    let instances: Vec<Value> = s
                        .databases
                        .iter()
                        .map(|d| kstrap::stack::databases::instance_pod_labels(&d.name, 1))
                        .collect();
                    assert!(
                        pods.iter().any(|(_, _, l)| labels_match(labels, l))
                            || instances.iter().any(|l| labels_match(labels, l))
                            || verifier.as_ref().is_some_and(|v| labels_match(labels, v)),
                        "{name}: NetworkPolicy {} names pods {labels} that the stack does not have",
                        np.reference.name
                    );
                }
            }
        }
    }
}

/// A Secret of the stack (object or declaration) and, if given, one of its keys.
fn secret_exists(s: &Stack, name: &str, key: Option<&str>) -> bool {
    // A database's credentials: the operator generates `<name>-app` with key `uri`.
    if s.databases.iter().any(|d| d.app_secret() == name) {
        return key.is_none_or(|k| k == kstrap::stack::databases::URI_KEY);
    }
    if let Some(decl) = s.secrets.iter().find(|d| d.name == name) {
        return key.is_none_or(|k| decl.keys.iter().any(|env| decl.secret_key(env) == k));
    }
    objects(s).any(|o| o.reference.kind == "Secret" && o.reference.name == name)
}

#[test]
fn the_user_images_are_placeholders_until_resolved() {
    for name in stack::embedded_names() {
        let s = stack::load(&name, None).unwrap();
        for p in s.sized_profiles() {
            let sized = s.sized(p);
            let env = |k: &str| Some(format!("registry.example.com/{}:1.0.0", k.to_lowercase()));
            let resolved = stack::resolve_images(&sized, &BTreeMap::new(), &env).unwrap();
            for o in objects(&resolved) {
                let Some((pod, _)) = pod(o) else { continue };
                for c in containers(pod) {
                    let image = c["image"].as_str().unwrap();
                    assert!(
                        !image.starts_with("kstrap.invalid/"),
                        "{name}/{p}: {} keeps {image}",
                        key(o)
                    );
                }
            }
        }
    }
}

// ---- network paths: what must get through the default deny --------------------------------

/// Where traffic comes from or goes to, for the policy check: a pod (its namespace and labels)
/// or an address outside the cluster's pods.
#[derive(Debug, Clone)]
pub(crate) enum Peer {
    Pod { ns: String, labels: Value },
    Outside,
}

pub(crate) fn pod_peer(ns: &str, labels: Value) -> Peer {
    Peer::Pod {
        ns: ns.to_string(),
        labels,
    }
}

/// Whether a label selector (matchLabels only; `{}` selects everything) selects `labels`.
fn selects(selector: Option<&Value>, labels: &Value) -> bool {
    let Some(sel) = selector else { return true };
    assert!(
        sel.get("matchExpressions").is_none(),
        "this check reads matchLabels only: {sel}"
    );
    labels_match(sel.get("matchLabels").unwrap_or(&json!({})), labels)
}

/// Whether one `from`/`to` entry of a policy in namespace `policy_ns` matches `peer`.
fn peer_matches(entry: &Value, policy_ns: &str, peer: &Peer) -> bool {
    match peer {
        Peer::Outside => entry.pointer("/ipBlock/cidr").is_some_and(|c| c == "0.0.0.0/0"),
        Peer::Pod { ns, labels } => {
            if entry.get("ipBlock").is_some() {
                return false; // pod addresses are private; the stacks' ipBlocks except them
            }
            let ns_ok = match entry.get("namespaceSelector") {
                None => ns == policy_ns,
                Some(sel) => selects(Some(sel), &json!({"kubernetes.io/metadata.name": ns})),
            };
            ns_ok && selects(entry.get("podSelector"), labels)
        }
    }
}

/// Whether a rule's ports admit `port` (number) or `name` (a named container port), TCP.
fn port_matches(rule: &Value, port: u64, name: &str) -> bool {
    let Some(ports) = rule.get("ports").and_then(Value::as_array) else {
        return true;
    };
    ports.is_empty()
        || ports.iter().any(|p| {
            p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == "TCP"
                && match p.get("port") {
                    None => true,
                    Some(Value::Number(n)) => n.as_u64() == Some(port),
                    Some(Value::String(s)) => s == name,
                    _ => false,
                }
        })
}

/// Whether traffic from `from` to `to` on TCP `port` (`name`) gets through the stack's network
/// policies: allowed out of `from` (when it is one of the stack's pods) and into `to`. A pod no
/// policy of a direction selects is open in that direction, as in Kubernetes.
pub(crate) fn allowed(s: &Stack, from: &Peer, to: &Peer, port: u64, name: &str) -> bool {
    let policies: Vec<&stack::StackObject> = objects(s).filter(|o| o.reference.kind == "NetworkPolicy").collect();
    let direction = |pod: &Peer, other: &Peer, kind: &str, field: &str, peers: &str| -> bool {
        let Peer::Pod { ns, labels } = pod else { return true };
        let selecting: Vec<&Value> = policies
            .iter()
            .filter(|p| p.reference.namespace.as_deref() == Some(ns.as_str()))
            .map(|p| &p.value)
            .filter(|p| selects(p.pointer("/spec/podSelector"), labels))
            .filter(|p| strs(p.pointer("/spec/policyTypes")).contains(&kind))
            .collect();
        selecting.is_empty()
            || selecting.iter().any(|p| {
                p.pointer(&format!("/spec/{field}"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|rule| {
                        let who = match rule.get(peers).and_then(Value::as_array) {
                            None => true,
                            Some(list) => list.iter().any(|e| peer_matches(e, ns, other)),
                        };
                        who && port_matches(rule, port, name)
                    })
            })
    };
    direction(from, to, "Egress", "egress", "to") && direction(to, from, "Ingress", "ingress", "from")
}

/// The pods a Service selects, each as a peer, with the container port its `port` leads to:
/// (peer, port number, port name).
fn service_backends(s: &Stack, svc: &stack::StackObject, port: &Value) -> Vec<(Peer, u64, String)> {
    let ns = svc.reference.namespace.clone().unwrap_or_default();
    let sel = svc.value.pointer("/spec/selector").cloned().unwrap_or(json!({}));
    let sp = svc
        .value
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| &p["port"] == port)
        .unwrap_or_else(|| panic!("Service {} has no port {port}", svc.reference.name));
    let target = sp.get("targetPort").unwrap_or(&sp["port"]).clone();
    let mut out = Vec::new();
    for o in objects(s) {
        let Some((pod, labels)) = pod(o) else { continue };
        if !labels_match(&sel, labels) {
            continue;
        }
        for c in containers(pod) {
            for cp in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
                let name = cp.get("name").and_then(Value::as_str).unwrap_or("");
                let hit = match &target {
                    Value::String(t) => t == name,
                    t => &cp["containerPort"] == t,
                };
                if hit {
                    let number = cp["containerPort"].as_u64().unwrap();
                    out.push((pod_peer(&ns, labels.clone()), number, name.to_string()));
                }
            }
        }
    }
    out
}

/// k3s's bundled Traefik: namespace kube-system, pods labelled by its chart
/// (`app.kubernetes.io/name: {{ template "traefik.name" }}` = traefik; k3s sets no override).
fn traefik() -> Peer {
    pod_peer(
        "kube-system",
        json!({"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-kube-system"}),
    )
}

#[test]
fn ingress_backends_admit_traefik_and_node_ports_admit_anyone() {
    let mut ingresses = 0;
    let mut node_ports = 0;
    for (name, profile, s) in variants() {
        for ing in objects(&s).filter(|o| o.reference.kind == "Ingress") {
            for path in ingress_paths(&ing.value) {
                let svc_name = path["backend"]["service"]["name"].as_str().unwrap();
                let svc = objects(&s)
                    .find(|o| o.reference.kind == "Service" && o.reference.name == svc_name)
                    .unwrap();
                let backends = service_backends(&s, svc, &path["backend"]["service"]["port"]["number"]);
                assert!(
                    !backends.is_empty(),
                    "{name} ({profile}): {svc_name} selects no pod port"
                );
                for (pod, port, port_name) in backends {
                    assert!(
                        allowed(&s, &traefik(), &pod, port, &port_name),
                        "{name} ({profile}): Ingress {}: no network policy lets Traefik (kube-system) reach {svc_name}'s pods on {port}",
                        ing.reference.name
                    );
                    ingresses += 1;
                }
            }
        }
        for svc in objects(&s).filter(|o| {
            o.reference.kind == "Service"
                && matches!(
                    o.value.pointer("/spec/type").and_then(Value::as_str),
                    Some("NodePort" | "LoadBalancer")
                )
        }) {
            for sp in svc
                .value
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for (pod, port, port_name) in service_backends(&s, svc, &sp["port"]) {
                    // kube-proxy may hand the pod the client's address or the node's.
                    for from in [Peer::Outside, pod_peer("kube-system", json!({}))] {
                        assert!(
                            allowed(&s, &from, &pod, port, &port_name),
                            "{name} ({profile}): Service {} is a {}, but its pods do not admit {from:?} on {port}",
                            svc.reference.name,
                            svc.value["spec"]["type"]
                        );
                    }
                    node_ports += 1;
                }
            }
        }
    }
    assert!(
        ingresses >= 2 && node_ports >= 2,
        "{ingresses} Ingress paths, {node_ports} node ports checked"
    );
}

/// The policy check itself refuses what it should: the Traefik peer is not the front end,
/// another port is not the port, and a pod of another namespace is not one of this one.
#[test]
fn the_policy_check_refuses_paths_no_policy_opens() {
    let s = stack::load("voice-ai", None).unwrap();
    let ns = "voice-ai";
    let webui = pod_peer(ns, json!({"app.kubernetes.io/name": "open-webui"}));
    let ollama = pod_peer(ns, json!({"app.kubernetes.io/name": "ollama"}));
    let kokoro = pod_peer(ns, json!({"app.kubernetes.io/name": "kokoro"}));
    assert!(allowed(&s, &webui, &ollama, 11434, "http"));
    assert!(
        !allowed(&s, &traefik(), &ollama, 11434, "http"),
        "Traefik may not call Ollama"
    );
    assert!(!allowed(&s, &webui, &ollama, 8080, ""), "another port");
    assert!(
        !allowed(&s, &kokoro, &ollama, 11434, "http"),
        "workers do not call each other"
    );
    let elsewhere = pod_peer("default", json!({"app.kubernetes.io/name": "open-webui"}));
    assert!(
        !allowed(&s, &elsewhere, &ollama, 11434, "http"),
        "same labels, other namespace"
    );
    assert!(!allowed(&s, &kokoro, &Peer::Outside, 443, ""), "Kokoro has no way out");
}

// ---- voice-ai: the model per profile, the Ingress per distribution ----------------------------

fn env_of(o: &stack::StackObject, container: &str, var: &str) -> Option<String> {
    let (pod, _) = pod(o)?;
    containers(pod)
        .into_iter()
        .find(|c| c["name"] == container)?
        .get("env")?
        .as_array()?
        .iter()
        .find(|e| e["name"] == var)?
        .get("value")?
        .as_str()
        .map(str::to_string)
}

fn find<'a>(s: &'a Stack, kind: &str, name: &str) -> Option<&'a stack::StackObject> {
    objects(s).find(|o| o.reference.kind == kind && o.reference.name == name)
}

#[test]
fn voice_ai_pulls_each_profiles_own_model_and_open_webui_defaults_to_it() {
    let s = stack::load("voice-ai", None).unwrap();
    let mut models = BTreeMap::new();
    for p in s.sized_profiles() {
        // stack.yaml's value for this profile, and what the sized objects carry.
        let written = &s.profiles[p]["Job/ollama-model-pull"].overlay.containers["pull"].env["MODEL"];
        for d in [Distro::K3s, Distro::K0s] {
            let sized = s.sized_for(p, Some(d));
            let job = find(&sized, "Job", "ollama-model-pull").unwrap();
            let model = env_of(job, "pull", "MODEL").unwrap();
            assert_eq!(&model, written, "{p} on {d}");
            let webui = find(&sized, "Deployment", "open-webui").unwrap();
            assert_eq!(
                env_of(webui, "open-webui", "DEFAULT_MODELS").as_ref(),
                Some(&model),
                "{p} on {d}"
            );
            // The Job pulls through the Ollama Service, which the policies let it reach.
            assert_eq!(
                env_of(job, "pull", "OLLAMA_HOST").as_deref(),
                Some("http://ollama:11434")
            );
            let puller = pod_peer("voice-ai", json!({"app.kubernetes.io/name": "ollama-model-pull"}));
            let ollama = pod_peer("voice-ai", json!({"app.kubernetes.io/name": "ollama"}));
            assert!(allowed(&sized, &puller, &ollama, 11434, "http"), "{p} on {d}");
            assert!(
                allowed(&sized, &ollama, &Peer::Outside, 443, ""),
                "Ollama reaches the registry"
            );
            assert!(
                !allowed(&sized, &puller, &Peer::Outside, 443, ""),
                "the Job itself needs no internet"
            );
        }
        models.insert(p.to_string(), written.clone());
    }
    let distinct: BTreeSet<&String> = models.values().collect();
    // The three original profiles each pull their own model; GPU tiers pull their VRAM plan's.
    let originals: BTreeSet<&String> = ["laptop-8gb", "rtx-5090", "cpu-fallback"]
        .iter()
        .filter_map(|p| models.get(*p))
        .collect();
    assert_eq!(originals.len(), 3, "each original profile its own model: {models:?}");
    for p in kstrap::profile::embedded().unwrap() {
        if let Some(v) = &p.vram {
            assert_eq!(models.get(&p.name), Some(&v.ollama.model), "{}", p.name);
        }
    }
    // The base manifest's model is one of them (what a profile without sizing gets).
    let base = env_of(find(&s, "Job", "ollama-model-pull").unwrap(), "pull", "MODEL").unwrap();
    assert!(distinct.contains(&base), "{base} vs {models:?}");
}

/// speaches 0.8.x answers 404 "not installed locally" until `POST /v1/models/<id>` has fetched
/// the model (speaches v0.8.3 `src/speaches/routers/stt.py`): the voice stack pulls the front
/// end's STT model in 25-models, through Whisper's API, before the front end starts.
#[test]
fn voice_ai_pulls_the_speech_to_text_model_open_webui_uses() {
    let s = stack::load("voice-ai", None).unwrap();
    let stage_of = |st: &Stack, kind: &str, name: &str| {
        st.stages
            .iter()
            .find(|g| {
                g.objects
                    .iter()
                    .any(|o| o.reference.kind == kind && o.reference.name == name)
            })
            .map(|g| g.dir.clone())
    };
    for p in s.sized_profiles() {
        for d in [Distro::K3s, Distro::K0s] {
            let sized = s.sized_for(p, Some(d));
            let job = find(&sized, "Job", "whisper-model-pull").unwrap_or_else(|| panic!("{p} on {d}: no STT pull"));
            let webui = find(&sized, "Deployment", "open-webui").unwrap();
            assert_eq!(
                env_of(job, "pull", "MODEL"),
                env_of(webui, "open-webui", "AUDIO_STT_MODEL"),
                "{p} on {d}"
            );
            assert_eq!(
                env_of(job, "pull", "WHISPER_URL").as_deref(),
                Some("http://whisper:8000")
            );
            // Before the front end, after Whisper: readiness of 25-models means STT works.
            assert_eq!(
                stage_of(&sized, "Job", "whisper-model-pull").as_deref(),
                Some("25-models")
            );
            let puller = pod_peer("voice-ai", json!({"app.kubernetes.io/name": "whisper-model-pull"}));
            let whisper = pod_peer("voice-ai", json!({"app.kubernetes.io/name": "whisper"}));
            assert!(allowed(&sized, &puller, &whisper, 8000, "http"), "{p} on {d}");
            assert!(
                allowed(&sized, &whisper, &Peer::Outside, 443, ""),
                "Whisper reaches Hugging Face"
            );
            assert!(
                !allowed(&sized, &puller, &Peer::Outside, 443, ""),
                "the Job itself needs no internet"
            );
            // The pull runs the image Whisper runs: no second multi-gigabyte image.
            let whisper_dep = find(&sized, "Deployment", "whisper").unwrap();
            let image = |o: &stack::StackObject| o.value.pointer("/spec/template/spec/containers/0/image").cloned();
            assert_eq!(image(job), image(whisper_dep), "{p} on {d}");
            // Open WebUI downloads its embedding model from Hugging Face on first start.
            let ui = pod_peer("voice-ai", json!({"app.kubernetes.io/name": "open-webui"}));
            assert!(allowed(&sized, &ui, &Peer::Outside, 443, ""), "{p} on {d}");
        }
    }
}

/// Kokoro-FastAPI's newest release is v0.8.0 (its VERSION file and tag); its release workflow
/// publishes `kokoro-fastapi-gpu:<v>-cu128` for Blackwell (sm_120), and the GPU image's user is
/// uid 1001 (`docker/gpu/Dockerfile.optimized`), the CPU image's 1000.
#[test]
fn kokoro_runs_a_published_image_as_its_own_user() {
    let s = stack::load("voice-ai", None).unwrap();
    for p in s.sized_profiles() {
        let sized = s.sized_for(p, Some(Distro::K3s));
        let k = find(&sized, "Deployment", "kokoro").unwrap();
        let image = k
            .value
            .pointer("/spec/template/spec/containers/0/image")
            .and_then(|v| v.as_str())
            .unwrap();
        let uid = k
            .value
            .pointer("/spec/template/spec/securityContext/runAsUser")
            .and_then(|v| v.as_u64());
        let gpu = k
            .value
            .pointer("/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu")
            .is_some();
        if gpu {
            assert_eq!(image, "ghcr.io/remsky/kokoro-fastapi-gpu:v0.8.0-cu128", "{p}");
            assert_eq!(uid, Some(1001), "{p}");
        } else {
            assert_eq!(image, "ghcr.io/remsky/kokoro-fastapi-cpu:v0.8.0", "{p}");
            assert_eq!(uid, Some(1000), "{p}");
        }
    }
}

#[test]
fn voice_ai_has_its_ingress_on_k3s_only() {
    let s = stack::load("voice-ai", None).unwrap();
    for p in s.sized_profiles() {
        let k3s = s.sized_for(p, Some(Distro::K3s));
        let ing = find(&k3s, "Ingress", "open-webui").unwrap_or_else(|| panic!("{p} on k3s: no Ingress"));
        assert_eq!(ing.value["spec"]["ingressClassName"], "traefik");
        let rule = &ing.value["spec"]["rules"][0];
        assert!(rule.get("host").is_none(), "any host: http://<machine>/ works");
        assert_eq!(rule["http"]["paths"][0]["path"], "/");
        let k0s = s.sized_for(p, Some(Distro::K0s));
        assert!(find(&k0s, "Ingress", "open-webui").is_none(), "{p} on k0s");
        // Everything else is the same on both.
        let rest = |st: &Stack| -> Vec<String> {
            objects(st)
                .filter(|o| o.reference.kind != "Ingress")
                .map(|o| format!("{} {}", o.reference, o.value))
                .collect()
        };
        assert_eq!(rest(&k3s), rest(&k0s), "{p}");
        // The NodePort serves on both.
        for st in [&k3s, &k0s] {
            assert_eq!(
                find(st, "Service", "open-webui").unwrap().value["spec"]["ports"][0]["nodePort"],
                30080
            );
        }
    }
}

// ---- schema: every object is what the Kubernetes API accepts --------------------------------

/// Whether `have` holds every field of `want` with the same value (lists element by element).
fn holds(have: &Value, want: &Value, at: &str) -> Result<(), String> {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => {
            for (k, wv) in w {
                match h.get(k) {
                    Some(hv) => holds(hv, wv, &format!("{at}.{k}"))?,
                    None => return Err(format!("{at}.{k}: not a field of the API type")),
                }
            }
            Ok(())
        }
        (Value::Array(h), Value::Array(w)) if h.len() == w.len() => {
            for (i, (a, b)) in h.iter().zip(w).enumerate() {
                holds(a, b, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (h, w) if h == w => Ok(()),
        (h, w) => Err(format!("{at}: {w} became {h}")),
    }
}

/// `value` read as the k8s-openapi type `T` and written back: a field the type does not have
/// (a typo, a wrong level) is dropped on the way and reported; a wrong type fails to read.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(value: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    holds(&back, value, "")
}

fn schema_problem(kind: &str, value: &Value) -> Result<(), String> {
    use k8s_openapi::api::{apps, batch, core, networking};
    match kind {
        "Namespace" => round_trip::<core::v1::Namespace>(value),
        "ConfigMap" => round_trip::<core::v1::ConfigMap>(value),
        "Secret" => round_trip::<core::v1::Secret>(value),
        "Service" => round_trip::<core::v1::Service>(value),
        "PersistentVolumeClaim" => round_trip::<core::v1::PersistentVolumeClaim>(value),
        "PersistentVolume" => round_trip::<core::v1::PersistentVolume>(value),
        "Deployment" => round_trip::<apps::v1::Deployment>(value),
        "StatefulSet" => round_trip::<apps::v1::StatefulSet>(value),
        "DaemonSet" => round_trip::<apps::v1::DaemonSet>(value),
        "Job" => round_trip::<batch::v1::Job>(value),
        "NetworkPolicy" => round_trip::<networking::v1::NetworkPolicy>(value),
        "Ingress" => round_trip::<networking::v1::Ingress>(value),
        // No k8s-openapi type: checked against CloudNativePG's own CRD schema (databases.rs).
        "Cluster" => crate::databases::cluster_schema_problem(value),
        other => Err(format!(
            "kind {other} is not in this test's list: add its k8s-openapi type"
        )),
    }
}

#[test]
fn every_object_reads_as_its_kubernetes_api_type() {
    let mut checked = 0;
    for (name, profile, s) in variants() {
        for o in objects(&s) {
            if let Err(e) = schema_problem(&o.reference.kind, &o.value) {
                panic!("{name} ({profile}): {} ({}:{}): {e}", o.reference, o.source, o.line);
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
    // The check finds a misplaced field and a wrong type.
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "x:1", "env": [{"name": "A", "vaule": "b"}]}]}}}});
    let err = schema_problem("Job", &job).unwrap_err();
    assert!(err.contains(".spec.template.spec.containers[0].env[0].vaule"), "{err}");
    let mut bad_type = job.clone();
    bad_type["spec"]["backoffLimit"] = json!("four");
    assert!(schema_problem("Job", &bad_type).is_err());
}
