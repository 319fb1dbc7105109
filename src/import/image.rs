//! The image of a service: given and pinned, or declared for the user to name (unpinned, or
//! built from a Dockerfile), and what the image says about the service (a database, the ports
//! it listens on).

use super::interpolate;
use super::service::{Ctx, Service};
use super::{ImportError, Level, secrets};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    Given(String),
    /// The user names it at apply (`images:` in stack.yaml): key and why.
    Declared {
        key: String,
        description: String,
        /// The image the compose file named (unpinned), if it named one.
        original: Option<String>,
    },
}

impl Image {
    /// The image the compose file named (empty for one built from a Dockerfile).
    pub fn original(&self) -> String {
        match self {
            Image::Given(i) => i.clone(),
            Image::Declared { original, .. } => original.clone().unwrap_or_default(),
        }
    }
}

/// Images that are databases: with a volume they become a StatefulSet.
pub(super) const DATABASES: &[&str] = &[
    "postgres",
    "postgis",
    "pgvector",
    "timescaledb",
    "mysql",
    "mariadb",
    "mongo",
    "mongodb",
    "redis",
    "valkey",
    "redis-stack",
    "qdrant",
    "neo4j",
    "elasticsearch",
    "opensearch",
    "clickhouse-server",
    "cassandra",
    "couchdb",
    "influxdb",
    "milvus",
    "weaviate",
    "chroma",
    "memgraph",
    "surrealdb",
    "keydb",
    "dragonfly",
];

/// The ports the official images of common servers listen on (their Dockerfiles' EXPOSE).
pub fn known_ports(base: &str) -> Option<&'static [u16]> {
    Some(match base {
        "postgres" | "postgis" | "pgvector" | "timescaledb" => &[5432],
        "mysql" | "mariadb" => &[3306],
        "redis" | "valkey" | "redis-stack-server" | "keydb" | "dragonfly" => &[6379],
        "mongo" | "mongodb" => &[27017],
        "qdrant" => &[6333, 6334],
        "neo4j" => &[7474, 7687],
        "elasticsearch" | "opensearch" => &[9200],
        "memcached" => &[11211],
        "rabbitmq" => &[5672],
        "nats" => &[4222],
        "ollama" => &[11434],
        "clickhouse-server" => &[8123, 9000],
        "minio" => &[9000],
        _ => return None,
    })
}

/// `docker.io/library/postgres:15-alpine` → `postgres`.
pub fn image_base(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last).to_string()
}

pub(super) fn image(ctx: &mut Ctx, s: &mut Service, m: &Map<String, Value>, base: &str) -> Result<(), ImportError> {
    let key = format!("{}_IMAGE", secrets::env_word(&s.name));
    let raw = m.get("image").and_then(Value::as_str);
    match (raw, m.get("build")) {
        (None, None) => Err(ctx.bad(
            base,
            format!("service {} has neither image: nor build:", s.compose),
            "give the service an image",
        )),
        (None, Some(build)) => {
            let context = match build {
                Value::String(c) => c.clone(),
                Value::Object(b) => b.get("context").and_then(Value::as_str).unwrap_or(".").to_string(),
                _ => ".".into(),
            };
            ctx.note(
                Level::Warning,
                &s.compose,
                "build",
                format!(
                    "built from {context} in the compose file: build and push it, then name it with --image {key}=REF"
                ),
                &format!("{base}/build"),
            );
            s.image = Image::Declared {
                key,
                description: format!(
                    "{}: built from {context} in the compose file (build it and push it to a registry the cluster can pull from)",
                    s.compose
                ),
                original: None,
            };
            Ok(())
        }
        (Some(raw), build) => {
            let p = format!("{base}/image");
            let (image, _) = interpolate::resolve(raw, ctx.lookup)
                .map_err(|e| ctx.bad(&p, e, "set the variable, or give a default: ${VAR:-value}"))?;
            if build.is_some() {
                ctx.note(
                    Level::Warning,
                    &s.compose,
                    "build",
                    format!("ignored; the image {image} is used"),
                    &format!("{base}/build"),
                );
            }
            if let Some(why) = crate::stack::reference::reference_problem(&image) {
                return Err(ctx.bad(
                    &p,
                    format!("image {image:?} is not a valid reference: {why}"),
                    "write [registry/]path/name:tag in lowercase",
                ));
            }
            if !pinned(&image) {
                ctx.note(Level::Warning, &s.compose, "image", format!("{image} is not pinned (no tag, `latest`, or a moving tag): name a release with --image {key}=REF"), &p);
                s.image = Image::Declared {
                    key,
                    description: format!(
                        "{}: {image} in the compose file; name a release tag or digest of it",
                        s.compose
                    ),
                    original: Some(image),
                };
            } else {
                s.image = Image::Given(image);
            }
            Ok(())
        }
    }
}

/// A digest, or a tag with a digit in it (a release: `15-alpine`, `v0.5.1`) other than `latest`.
/// Tags without one (`latest`, `alpine`, `main`, `stable`) move.
pub fn pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
        None => false,
    }
}
