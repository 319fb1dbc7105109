//! Every built-in stack, sized for every profile it names, checked structurally for what the
//! project promises of all of them (issue 6, seed 002's zero-trust section): a default-deny
//! network policy with DNS allowed in each namespace, locked-down containers with limits,
//! requests that fit each profile's minimum host, and references (Service selectors, claims,
//! ConfigMaps, Secrets, Ingress backends, network-policy peers) that resolve inside the stack.
//! Real stacks, real YAML parsing: nothing here is a double.

use kstrap::stack::{self, Stack};
use serde_json::Value;
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

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Every stack with each variant to check: as written, and sized for each profile it names.
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
            out.push((name.clone(), p.to_string(), s.sized(p)));
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
            let (cpu, mem, gpu) = s.sized(pname).total_requests();
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
            for path in ing
                .value
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|r| r.pointer("/http/paths").and_then(Value::as_array).into_iter().flatten())
            {
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
                    assert!(
                        pods.iter().any(|(_, _, l)| labels_match(labels, l)),
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
