//! Infrastructure discovery (seed 004, "Infrastructure Discovery"): the target namespace's
//! Services whose names say mongo/mongodb, redis, postgres/postgresql, qdrant or neo4j are used
//! instead of the compose file's own database of that kind. The compose service is not imported;
//! the variables and commands that name its host point at
//! `{service}.{namespace}.svc.cluster.local:{port}`, and the network policies let its clients
//! reach the cluster's pods on that port.

use super::compose::Project;
use super::policy::External;
use super::service::{Service, image_base};
use super::{Level, Note};
use serde_json::Value;

/// A Service found in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// mongo, redis, postgres, qdrant or neo4j.
    pub kind: &'static str,
    pub service: String,
    pub namespace: String,
    /// Its first port.
    pub port: u16,
    pub ports: Vec<u16>,
    /// Its pod selector (for network policies).
    pub selector: Value,
}

/// The kind a name (a Service's, or an image's) says, if any.
pub fn kind_of(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    [
        ("mongo", "mongo"),
        ("redis", "redis"),
        ("valkey", "redis"),
        ("postgres", "postgres"),
        ("pgvector", "postgres"),
        ("postgis", "postgres"),
        ("timescaledb", "postgres"),
        ("qdrant", "qdrant"),
        ("neo4j", "neo4j"),
    ]
    .iter()
    .find(|(w, _)| n.contains(w))
    .map(|(_, k)| *k)
}

/// Lists the namespace's Services and keeps those of a known kind (the first of each kind).
pub async fn scan(client: kube::Client, namespace: &str) -> Result<Vec<Found>, kube::Error> {
    use k8s_openapi::api::core::v1::Service as K8sService;
    let api: kube::Api<K8sService> = kube::Api::namespaced(client, namespace);
    let list = api.list(&Default::default()).await?;
    let mut out: Vec<Found> = Vec::new();
    for s in list.items {
        let name = s.metadata.name.clone().unwrap_or_default();
        let Some(kind) = kind_of(&name) else { continue };
        if out.iter().any(|f| f.kind == kind) {
            continue;
        }
        let spec = s.spec.unwrap_or_default();
        let ports: Vec<u16> = spec
            .ports
            .unwrap_or_default()
            .iter()
            .filter_map(|p| u16::try_from(p.port).ok())
            .collect();
        let Some(&port) = ports.first() else { continue };
        let selector = serde_json::to_value(spec.selector.unwrap_or_default()).unwrap_or(Value::Null);
        out.push(Found {
            kind,
            service: name,
            namespace: namespace.to_string(),
            port,
            ports,
            selector,
        });
    }
    Ok(out)
}

/// Takes out each compose service a found Service replaces and points its clients at it.
pub fn replace(
    services: &mut Vec<Service>,
    found: &[Found],
    _namespace: &str,
    notes: &mut Vec<Note>,
    project: &Project,
) -> Vec<External> {
    let mut external = Vec::new();
    for f in found {
        let Some(i) = services.iter().position(|s| {
            let image = image_base(&s.image.original());
            !image.is_empty() && kind_of(&image) == Some(f.kind)
        }) else {
            continue;
        };
        let old = services.remove(i);
        let host = format!("{}.{}.svc.cluster.local", f.service, f.namespace);
        let old_port = old.ports.first().map(|p| p.container);
        for s in services.iter_mut() {
            let mut touched = false;
            for (_, v) in s.config.iter_mut().chain(s.expanded.iter_mut()) {
                touched |= rewrite(v, &old.compose, old_port, &host, f.port);
            }
            for list in [&mut s.command, &mut s.args].into_iter().flatten() {
                for v in list.iter_mut() {
                    touched |= rewrite(v, &old.compose, old_port, &host, f.port);
                }
            }
            if touched {
                s.words.insert(old.compose.clone());
            }
        }
        notes.push(Note {
            level: Level::Warning,
            service: Some(old.compose.clone()),
            feature: "discover".into(),
            what: format!(
                "the cluster's {} ({host}:{}) is used instead; not imported",
                f.service, f.port
            ),
            at: project.at(&format!("/services/{}", old.compose)),
        });
        external.push(External {
            replaces: old.compose.clone(),
            selector: f.selector.clone(),
            ports: f.ports.clone(),
        });
    }
    external
}

/// Replaces the host word `from` (and `from:old_port`) in `v`; whether anything changed.
fn rewrite(v: &mut String, from: &str, old_port: Option<u16>, host: &str, port: u16) -> bool {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    let mut out = String::new();
    let mut rest = v.as_str();
    let mut changed = false;
    while let Some(i) = rest.find(from) {
        let before = if i > 0 {
            rest[..i].chars().last()
        } else {
            out.chars().last()
        };
        let after = rest[i + from.len()..].chars().next();
        out.push_str(&rest[..i]);
        if is_word(before) || is_word(after) || rest[i + from.len()..].starts_with("://") {
            out.push_str(from);
            rest = &rest[i + from.len()..];
            continue;
        }
        out.push_str(host);
        changed = true;
        rest = &rest[i + from.len()..];
        if let Some(p) = old_port
            && let Some(tail) = rest.strip_prefix(&format!(":{p}"))
            && !tail.starts_with(|c: char| c.is_ascii_digit())
        {
            out.push_str(&format!(":{port}"));
            rest = tail;
        }
    }
    out.push_str(rest);
    if changed {
        *v = out;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_are_pointed_at_the_cluster_service() {
        let mut v = "redis://redis:6379/0".to_string();
        assert!(rewrite(
            &mut v,
            "redis",
            Some(6379),
            "cache-redis.ai.svc.cluster.local",
            6380
        ));
        assert_eq!(v, "redis://cache-redis.ai.svc.cluster.local:6380/0");
        let mut v = "redis".to_string();
        assert!(rewrite(&mut v, "redis", Some(6379), "r.ai.svc.cluster.local", 6379));
        assert_eq!(v, "r.ai.svc.cluster.local");
        let mut v = "my-redis-thing and redisx".to_string();
        assert!(!rewrite(&mut v, "redis", Some(6379), "r", 1));
        assert_eq!(kind_of("postgresql-primary"), Some("postgres"));
        assert_eq!(kind_of("mongodb"), Some("mongo"));
        assert_eq!(kind_of("web"), None);
    }
}
