//! The model → Kubernetes objects: per service a workload (Deployment; StatefulSet for a
//! database whose volumes are its own; Job for a service others wait on to complete), its
//! ConfigMap of plain variables, a ClusterIP Service under the service's own name (so `db:5432`
//! keeps working), a LoadBalancer Service `<name>-public` for ports the compose file publishes
//! (k3s' servicelb binds them on the node, as `docker compose` binds them on the host), and
//! claims for its volumes.
//!
//! Every pod is locked down where kompose leaves pods as the images want them (kompose's
//! `InitPodSpec` sets only the image; pkg/transformer/kubernetes/kubernetes.go at v1.38.0): no
//! service-account token, no service-link variables (`REDIS_PORT=tcp://...` would shadow the
//! compose file's own), RuntimeDefault seccomp, no privilege escalation, every capability
//! dropped except, for an image that starts as root (no numeric `user:`), the five official
//! database and server images need to step down to their own user (CHOWN, DAC_OVERRIDE, FOWNER,
//! SETGID, SETUID), and NET_BIND_SERVICE below port 1024. Every container has requests and
//! limits.

use super::service::{Image, Service, Workload};
use super::storage::Source;
use serde_json::{Map, Value, json};

pub fn labels(s: &Service, stack: &str) -> Value {
    json!({"app.kubernetes.io/name": s.name, "app.kubernetes.io/part-of": stack})
}

pub fn placeholder(s: &Service) -> String {
    format!("kstrap.invalid/required/{}:unset", s.name)
}

/// The Secret holding a key: generated keys and keys the user gives are apart, because
/// `generate:` is per Secret.
pub fn secret_name(stack: &str, generate: bool) -> String {
    if generate {
        format!("{stack}-generated")
    } else {
        format!("{stack}-secrets")
    }
}

fn config_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The objects of one service, in apply order within its stage.
pub fn service_objects(
    s: &Service,
    stack: &str,
    claims: &[(String, &'static str)],
    secrets: &super::secrets::Registry,
    statefulset: bool,
) -> Vec<Value> {
    let mut out = Vec::new();
    let lbl = labels(s, stack);
    let config: Vec<&(String, String)> = s.config.iter().filter(|(k, _)| config_key_ok(k)).collect();
    if !config.is_empty() {
        let data: Map<String, Value> = config.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        out.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{}-env", s.name), "labels": lbl}, "data": data}));
    }
    if !statefulset {
        for (claim, size) in claims {
            out.push(claim_object(claim, size, stack));
        }
    }
    let mut env: Vec<Value> = Vec::new();
    for (name, key) in &s.secret_env {
        let generate = secrets.keys.get(key).is_some_and(|k| k.generate);
        env.push(
            json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name(stack, generate), "key": key}}}),
        );
    }
    for (k, v) in s.config.iter().filter(|(k, _)| !config_key_ok(k)).chain(&s.expanded) {
        env.push(json!({"name": k, "value": v}));
    }
    let mut container = Map::new();
    container.insert("name".into(), json!(s.name));
    container.insert(
        "image".into(),
        json!(match &s.image {
            Image::Given(i) => i.clone(),
            Image::Declared { .. } => placeholder(s),
        }),
    );
    if let Some(c) = &s.command {
        container.insert("command".into(), json!(c));
    }
    if let Some(a) = &s.args {
        container.insert("args".into(), json!(a));
    }
    if let Some(w) = &s.working_dir {
        container.insert("workingDir".into(), json!(w));
    }
    if s.tty {
        container.insert("tty".into(), json!(true));
    }
    if s.pull_always {
        container.insert("imagePullPolicy".into(), json!("Always"));
    }
    if !config.is_empty() {
        container.insert(
            "envFrom".into(),
            json!([{"configMapRef": {"name": format!("{}-env", s.name)}}]),
        );
    }
    if !env.is_empty() {
        container.insert("env".into(), Value::Array(env));
    }
    if !s.ports.is_empty() {
        container.insert(
            "ports".into(),
            Value::Array(
                s.ports
                    .iter()
                    .map(|p| json!({"name": p.name, "containerPort": p.container, "protocol": p.protocol}))
                    .collect(),
            ),
        );
    }
    if s.workload != Workload::Job {
        if let Some(r) = &s.readiness {
            container.insert("readinessProbe".into(), r.clone());
        }
        if let Some(l) = &s.liveness {
            container.insert("livenessProbe".into(), l.clone());
        }
    }
    container.insert("resources".into(), json!({"requests": s.requests, "limits": s.limits}));
    let mut caps = json!({"drop": ["ALL"]});
    let mut sc = json!({"allowPrivilegeEscalation": false});
    if s.user.is_none() {
        let mut add = vec!["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"];
        if s.ports.iter().any(|p| p.container < 1024) {
            add.push("NET_BIND_SERVICE");
        }
        caps["add"] = json!(add);
    } else if s.ports.iter().any(|p| p.container < 1024) {
        caps["add"] = json!(["NET_BIND_SERVICE"]);
    }
    sc["capabilities"] = caps;
    if s.read_only {
        sc["readOnlyRootFilesystem"] = json!(true);
    }
    container.insert("securityContext".into(), sc);
    let mounts: Vec<Value> = s
        .mounts
        .iter()
        .map(|m| {
            let name = match &m.source {
                Source::Claim { claim, .. } if statefulset => claim.clone(),
                _ => m.volume.clone(),
            };
            let mut v = json!({"name": name, "mountPath": m.path});
            if m.read_only {
                v["readOnly"] = json!(true);
            }
            v
        })
        .collect();
    if !mounts.is_empty() {
        container.insert("volumeMounts".into(), Value::Array(mounts));
    }

    let mut pod = json!({"automountServiceAccountToken": false, "enableServiceLinks": false,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "containers": [container]});
    if let Some((uid, gid)) = s.user {
        pod["securityContext"]["runAsUser"] = json!(uid);
        pod["securityContext"]["runAsNonRoot"] = json!(uid != 0);
        if let Some(g) = gid {
            pod["securityContext"]["runAsGroup"] = json!(g);
            pod["securityContext"]["fsGroup"] = json!(g);
        }
    }
    if let Some(g) = s.grace_s {
        pod["terminationGracePeriodSeconds"] = json!(g);
    }
    let volumes: Vec<Value> = s
        .mounts
        .iter()
        .filter_map(|m| match &m.source {
            Source::Claim { .. } if statefulset => None,
            Source::Claim { claim, .. } => {
                Some(json!({"name": m.volume, "persistentVolumeClaim": {"claimName": claim}}))
            }
            Source::HostPath(p) => Some(json!({"name": m.volume, "hostPath": {"path": p}})),
            Source::EmptyDir { memory: true } => Some(json!({"name": m.volume, "emptyDir": {"medium": "Memory"}})),
            Source::EmptyDir { memory: false } => Some(json!({"name": m.volume, "emptyDir": {}})),
        })
        .collect();
    if !volumes.is_empty() {
        pod["volumes"] = Value::Array(volumes);
    }
    let template = json!({"metadata": {"labels": lbl}, "spec": pod});
    let selector = json!({"matchLabels": {"app.kubernetes.io/name": s.name}});
    let meta = json!({"name": s.name, "labels": lbl});
    let workload = match s.workload {
        Workload::Job => {
            let mut t = template;
            let retries = s
                .restart
                .strip_prefix("on-failure:")
                .and_then(|n| n.parse::<u32>().ok());
            t["spec"]["restartPolicy"] = json!(if s.restart.starts_with("on-failure") {
                "OnFailure"
            } else {
                "Never"
            });
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {"backoffLimit": retries.unwrap_or(3), "template": t}})
        }
        _ if statefulset => {
            let templates: Vec<Value> = claims
                .iter()
                .map(|(c, size)| {
                    json!({"metadata": {"name": c, "labels": {"app.kubernetes.io/part-of": stack}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})
                })
                .collect();
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": {"serviceName": s.name, "replicas": 1,
                "selector": selector, "template": template, "volumeClaimTemplates": templates}})
        }
        _ => {
            let mut spec = json!({"replicas": 1, "selector": selector, "template": template});
            // A claim is ReadWriteOnce: the old pod lets go before the new one starts.
            if !claims.is_empty() {
                spec["strategy"] = json!({"type": "Recreate"});
            }
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec})
        }
    };
    out.push(workload);
    if !s.ports.is_empty() {
        let ports: Vec<Value> = s
            .ports
            .iter()
            .map(|p| json!({"name": p.name, "port": p.container, "targetPort": p.name, "protocol": p.protocol}))
            .collect();
        out.push(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": s.name, "labels": lbl},
            "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": s.name}, "ports": ports}}),
        );
    }
    out
}

/// The LoadBalancer Service for the ports `published` (already free of clashes), if any.
pub fn public_service(s: &Service, stack: &str, published: &[&super::ports::Port]) -> Option<Value> {
    if published.is_empty() {
        return None;
    }
    let ports: Vec<Value> = published
        .iter()
        .map(|p| json!({"name": p.name, "port": p.published, "targetPort": p.name, "protocol": p.protocol}))
        .collect();
    Some(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("{}-public", s.name), "labels": labels(s, stack)},
        "spec": {"type": "LoadBalancer", "selector": {"app.kubernetes.io/name": s.name}, "ports": ports}}),
    )
}

pub fn claim_object(claim: &str, size: &str, stack: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "labels": {"app.kubernetes.io/part-of": stack}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})
}

/// The namespace: Pod Security `baseline` enforced (images that start as root still run),
/// `restricted` warned about, so `kubectl` says which pods fall short of it.
pub fn namespace(name: &str, stack: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
        "app.kubernetes.io/part-of": stack,
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted"}}})
}
