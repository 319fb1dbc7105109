//! One Compose service → the model the renderer turns into objects: image, command, variables
//! (plain ones for the ConfigMap, secret ones as Secret keys), ports, volumes, probes, sizes, the
//! GPU, and what it depends on. Anything that cannot be carried over is a `Note`.

use super::compose::{Project, as_name_map, scalar};
use super::interpolate::{self, Piece};
use super::ports::{self, Port};
use super::secrets::{self, Registry};
use super::{ImportError, Level, Note};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Deployment,
    StatefulSet,
    Job,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub compose: String,
    /// The Kubernetes name (a DNS label).
    pub name: String,
    pub image: Image,
    pub workload: Workload,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    /// Plain variables: the service's ConfigMap.
    pub config: Vec<(String, String)>,
    /// Variables read from the stack's Secrets: (variable, secret key's env name).
    pub secret_env: Vec<(String, String)>,
    /// Variables whose value refers to a secret (`$(NAME)`, expanded by Kubernetes).
    pub expanded: Vec<(String, String)>,
    pub ports: Vec<Port>,
    pub mounts: Vec<super::storage::Mount>,
    pub readiness: Option<Value>,
    pub liveness: Option<Value>,
    pub requests: Map<String, Value>,
    pub limits: Map<String, Value>,
    /// Time-sliced GPU shares on GPU profiles.
    pub gpu: Option<u32>,
    /// (service, condition).
    pub depends_on: Vec<(String, String)>,
    pub links: Vec<String>,
    /// Words of its variables and command (to find the services it talks to).
    pub words: BTreeSet<String>,
    pub user: Option<(i64, Option<i64>)>,
    pub read_only: bool,
    pub tty: bool,
    pub working_dir: Option<String>,
    pub grace_s: Option<u64>,
    pub pull_always: bool,
    pub restart: String,
    pub database: bool,
    /// Set when stages are rendered: a database whose claims are its own.
    pub statefulset: bool,
}

/// Images that are databases: with a volume they become a StatefulSet.
const DATABASES: &[&str] = &[
    "postgres", "postgis", "pgvector", "timescaledb", "mysql", "mariadb", "mongo", "mongodb", "redis", "valkey",
    "redis-stack", "qdrant", "neo4j", "elasticsearch", "opensearch", "clickhouse-server", "cassandra", "couchdb",
    "influxdb", "milvus", "weaviate", "chroma", "memgraph", "surrealdb", "keydb", "dragonfly",
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

/// A DNS label from a compose service name (`my_app.v2` → `my-app-v2`).
pub fn k8s_name(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-');
    let out = &out[..out.len().min(55)];
    let out = out.trim_end_matches('-');
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("s-{out}")
    } else {
        out.to_string()
    }
}

pub struct Ctx<'a> {
    pub project: &'a Project,
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    pub secrets: &'a mut Registry,
    pub notes: &'a mut Vec<Note>,
    pub bind_mounts: super::BindMounts,
    /// Services some other waits for with `condition: service_completed_successfully`.
    pub jobs: &'a BTreeSet<String>,
}

impl Ctx<'_> {
    pub(super) fn note(&mut self, level: Level, service: &str, feature: &str, what: impl Into<String>, pointer: &str) {
        self.notes.push(Note {
            level,
            service: Some(service.to_string()),
            feature: feature.to_string(),
            what: what.into(),
            at: self.project.at(pointer),
        });
    }
    pub(super) fn bad(&self, pointer: &str, message: impl Into<String>, hint: &str) -> ImportError {
        let at = self.project.at(pointer);
        ImportError::input(&at.file, at.line, message, hint)
    }
}

/// What a variable reference becomes in a place that is not a variable's value.
#[derive(Clone, Copy, PartialEq)]
enum Refs {
    /// Kubernetes expands `$(NAME)` in env values, command and args.
    Kubernetes,
    /// A shell expands `$NAME` (CMD-SHELL health checks).
    Shell,
}

pub fn convert(ctx: &mut Ctx, compose: &str, v: &Value) -> Result<Service, ImportError> {
    let base = format!("/services/{}", compose.replace('~', "~0").replace('/', "~1"));
    let Some(m) = v.as_object() else {
        return Err(ctx.bad(&base, format!("service {compose} is not a mapping"), "define each service as a mapping with image: and its settings"));
    };
    let name = k8s_name(compose);
    if name != compose {
        ctx.note(Level::Warning, compose, "name", format!("named {name} in Kubernetes (a DNS label); its DNS name changes with it"), &base);
    }
    super::refuse::check(ctx, compose, m, &base)?;
    let mut s = Service {
        compose: compose.to_string(),
        name: name.clone(),
        image: Image::Given(String::new()),
        workload: if ctx.jobs.contains(compose) { Workload::Job } else { Workload::Deployment },
        command: None,
        args: None,
        config: Vec::new(),
        secret_env: Vec::new(),
        expanded: Vec::new(),
        ports: Vec::new(),
        mounts: Vec::new(),
        readiness: None,
        liveness: None,
        requests: Map::new(),
        limits: Map::new(),
        gpu: None,
        depends_on: Vec::new(),
        links: Vec::new(),
        words: BTreeSet::new(),
        user: None,
        read_only: m.get("read_only") == Some(&Value::Bool(true)),
        tty: m.get("tty") == Some(&Value::Bool(true)),
        working_dir: None,
        grace_s: None,
        pull_always: m.get("pull_policy").and_then(Value::as_str) == Some("always"),
        restart: m.get("restart").and_then(scalar).unwrap_or_else(|| "no".into()),
        database: false,
        statefulset: false,
    };
    image(ctx, &mut s, m, &base)?;
    for (field, target) in [("entrypoint", 0), ("command", 1)] {
        if let Some(raw) = m.get(field) {
            let p = format!("{base}/{field}");
            let words = match raw {
                Value::String(t) => shell_words(t).map_err(|e| ctx.bad(&p, e, "quote the words as a shell would"))?,
                Value::Array(a) => a.iter().filter_map(scalar).collect(),
                Value::Null => continue,
                _ => return Err(ctx.bad(&p, format!("{field} is neither a string nor a list"), "write it as a string or a list of words")),
            };
            let mut out = Vec::new();
            for w in words {
                out.push(text(ctx, &mut s, &w, &p, Refs::Kubernetes)?);
            }
            if target == 0 { s.command = Some(out) } else { s.args = Some(out) }
        }
    }
    environment(ctx, &mut s, m, &base)?;
    let mut all_ports = Vec::new();
    for (field, parse) in [("ports", ports::parse_port as fn(&Value) -> Result<Vec<Port>, String>), ("expose", ports::parse_expose)] {
        for (i, entry) in m.get(field).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let p = format!("{base}/{field}/{i}");
            let entry = resolve_value(ctx, entry, &p)?;
            all_ports.extend(parse(&entry).map_err(|e| ctx.bad(&p, format!("{field}: {e}"), "write ports as [HOST:]CONTAINER[/PROTOCOL], e.g. \"8080:80\" or \"53:53/udp\""))?);
        }
    }
    if all_ports.is_empty()
        && let Some(known) = known_ports(&image_base(&s.image.original()))
    {
        // compose lets services on one network reach every port; a Service needs them listed.
        ctx.note(Level::Warning, compose, "ports", format!("no ports in the compose file: the image's usual {known:?} are the Service's"), &base);
        all_ports.extend(known.iter().map(|p| Port { container: *p, protocol: "TCP", published: None, host_ip: None, name: String::new() }));
    }
    s.ports = ports::name_ports(all_ports);
    for p in s.ports.iter().filter(|p| p.published.is_some() && !p.public()) {
        ctx.notes.push(Note {
            level: Level::Warning,
            service: Some(compose.into()),
            feature: "ports".into(),
            what: format!("{} is published only on {}: not published (use kubectl port-forward)", p.container, p.host_ip.clone().unwrap_or_default()),
            at: ctx.project.at(&format!("{base}/ports")),
        });
    }
    super::storage::volumes(ctx, &mut s, m, &base)?;
    super::health::health(ctx, &mut s, m, &base)?;
    super::health::resources(ctx, &mut s, m, &base)?;
    depends(ctx, &mut s, m, &base)?;
    if let Some(u) = m.get("user").and_then(scalar) {
        let u = interpolate::resolve(&u, ctx.lookup).map(|r| r.0).unwrap_or(u);
        let mut parts = u.split(':');
        let uid = parts.next().and_then(|x| x.parse::<i64>().ok());
        let gid = parts.next().and_then(|x| x.parse::<i64>().ok());
        match uid {
            Some(uid) => s.user = Some((uid, gid)),
            None => ctx.note(Level::Warning, compose, "user", format!("user {u:?} is a name: Kubernetes needs a number; the image's user runs"), &format!("{base}/user")),
        }
    }
    if let Some(w) = m.get("working_dir").and_then(Value::as_str) {
        s.working_dir = Some(w.to_string());
    }
    if let Some(g) = m.get("stop_grace_period").and_then(Value::as_str) {
        s.grace_s = super::health::duration_s(g);
    }
    match s.restart.as_str() {
        "no" | "always" | "unless-stopped" => {}
        r if r.starts_with("on-failure") && s.workload != Workload::Job => ctx.note(Level::Warning, compose, "restart", format!("restart: {r}: a Deployment's pods are always restarted"), &format!("{base}/restart")),
        _ => {}
    }
    s.database = DATABASES.contains(&image_base(&s.image.original()).as_str());
    Ok(s)
}

fn image(ctx: &mut Ctx, s: &mut Service, m: &Map<String, Value>, base: &str) -> Result<(), ErrorImport> {
    let key = format!("{}_IMAGE", secrets::env_word(&s.name));
    let raw = m.get("image").and_then(Value::as_str);
    match (raw, m.get("build")) {
        (None, None) => Err(ctx.bad(base, format!("service {} has neither image: nor build:", s.compose), "give the service an image")),
        (None, Some(build)) => {
            let context = match build {
                Value::String(c) => c.clone(),
                Value::Object(b) => b.get("context").and_then(Value::as_str).unwrap_or(".").to_string(),
                _ => ".".into(),
            };
            ctx.note(Level::Warning, &s.compose, "build", format!("built from {context} in the compose file: build and push it, then name it with --image {key}=REF"), &format!("{base}/build"));
            s.image = Image::Declared { key, description: format!("{}: built from {context} in the compose file (build it and push it to a registry the cluster can pull from)", s.compose), original: None };
            Ok(())
        }
        (Some(raw), build) => {
            let p = format!("{base}/image");
            let (image, _) = interpolate::resolve(raw, ctx.lookup).map_err(|e| ctx.bad(&p, e, "set the variable, or give a default: ${VAR:-value}"))?;
            if build.is_some() {
                ctx.note(Level::Warning, &s.compose, "build", format!("ignored; the image {image} is used"), &format!("{base}/build"));
            }
            if let Some(why) = crate::stack::reference::reference_problem(&image) {
                return Err(ctx.bad(&p, format!("image {image:?} is not a valid reference: {why}"), "write [registry/]path/name:tag in lowercase"));
            }
            if !pinned(&image) {
                ctx.note(Level::Warning, &s.compose, "image", format!("{image} is not pinned (no tag, `latest`, or a moving tag): name a release with --image {key}=REF"), &p);
                s.image = Image::Declared { key, description: format!("{}: {image} in the compose file; name a release tag or digest of it", s.compose), original: Some(image) };
            } else {
                s.image = Image::Given(image);
            }
            Ok(())
        }
    }
}

type ErrorImport = ImportError;

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

fn environment(ctx: &mut Ctx, s: &mut Service, m: &Map<String, Value>, base: &str) -> Result<(), ImportError> {
    // env_file first: `environment` wins over it (compose-spec, "env_file").
    let mut vars: Vec<(String, Option<String>, String)> = Vec::new();
    let files: Vec<Value> = match m.get("env_file") {
        Some(Value::Array(a)) => a.clone(),
        Some(v @ (Value::String(_) | Value::Object(_))) => vec![v.clone()],
        _ => Vec::new(),
    };
    for (i, f) in files.iter().enumerate() {
        let p = format!("{base}/env_file/{i}");
        let (path, required) = match f {
            Value::String(x) => (x.clone(), true),
            Value::Object(o) => (o.get("path").and_then(Value::as_str).unwrap_or_default().to_string(), o.get("required") != Some(&Value::Bool(false))),
            _ => continue,
        };
        let full = ctx.project.dir.join(&path);
        let text = match crate::limits::read_text(&full) {
            Ok(t) => t,
            Err(_) if !required => continue,
            Err(e) => return Err(ctx.bad(&p, format!("env_file {path}: {e}"), "create the file, or mark it required: false")),
        };
        let parsed = interpolate::parse_env_file(&text).map_err(|(line, msg)| ImportError::input(&full.display().to_string(), line, msg, "write KEY=VALUE lines"))?;
        for (k, v, _) in parsed {
            vars.retain(|(n, _, _)| *n != k);
            vars.push((k, Some(v), p.clone()));
        }
    }
    if let Some(env) = m.get("environment") {
        for (k, v) in as_name_map(env) {
            vars.retain(|(n, _, _)| *n != k);
            vars.push((k.clone(), scalar(&v), format!("{base}/environment/{k}")));
        }
    }
    for (name, raw, p) in vars {
        // A bare name takes its value from the environment (compose), and is dropped if unset.
        let raw = match raw {
            Some(r) => r,
            None if (ctx.lookup)(&name).is_some() => format!("${{{name}}}"),
            None => continue,
        };
        s.words.extend(words(&raw));
        if secrets::sensitive(&name) {
            secret_var(ctx, s, &name, &raw, &p)?;
            continue;
        }
        let pieces = interpolate::pieces(&raw, ctx.lookup).map_err(|e| ctx.bad(&p, e, "set the variable, or give a default: ${VAR:-value}"))?;
        let refers = pieces.iter().any(|x| matches!(x, Piece::Var(v) if secrets::sensitive(&v.name)));
        let value = join(ctx, s, pieces, &p, if refers { Some(Refs::Kubernetes) } else { None })?;
        s.words.extend(words(&value));
        if refers { s.expanded.push((name, value)) } else { s.config.push((name, value)) }
    }
    Ok(())
}

/// A sensitive variable: a key of the stack's Secrets, never its value.
fn secret_var(ctx: &mut Ctx, s: &mut Service, name: &str, raw: &str, p: &str) -> Result<(), ImportError> {
    let pieces = interpolate::pieces(raw, ctx.lookup).map_err(|e| ctx.bad(p, e, "set the variable, or give a default: ${VAR:-value}"))?;
    let gen_ok = secrets::generatable(name);
    let env = match pieces.as_slice() {
        [Piece::Var(v)] => {
            let has_default = v.default.as_deref().is_some_and(|d| !d.is_empty());
            let explicit_empty = v.default.as_deref() == Some("");
            if !v.set && explicit_empty && !(gen_ok || secrets::generatable(&v.name)) {
                ctx.note(Level::Warning, &s.compose, "environment", format!("{name}: optional (empty default) and not set: left out; set {} when importing to carry it as a secret", v.name), p);
                return Ok(());
            }
            if v.missing {
                ctx.note(Level::Warning, &s.compose, "environment", format!("{name}: variable {} is not set; declared as a secret to give when applying", v.name), p);
            }
            if has_default && !v.set {
                ctx.note(Level::Warning, &s.compose, "environment", format!("{name}: the default in the compose file is not copied; give {} when applying{}", v.name, if gen_ok { ", or kstrap generates one" } else { "" }), p);
            }
            let generate = !v.set && (gen_ok || secrets::generatable(&v.name));
            ctx.secrets.add(&v.name, generate, &s.compose)
        }
        [] | [Piece::Text(_)] => {
            let literal: String = pieces.iter().map(|x| if let Piece::Text(t) = x { t.as_str() } else { "" }).collect();
            if literal.is_empty() && !gen_ok {
                ctx.note(Level::Warning, &s.compose, "environment", format!("{name}: optional (empty) and not set: left out; set it when applying by editing the stack, or give it a value when importing"), p);
                return Ok(());
            }
            if !literal.is_empty() {
                ctx.note(Level::Warning, &s.compose, "environment", format!("{name}: the value written in the compose file is not copied into the stack; give it when applying{}", if gen_ok { ", or kstrap generates one" } else { "" }), p);
            }
            ctx.secrets.add_literal(name, &literal, gen_ok, &s.compose)
        }
        _ => {
            ctx.note(Level::Warning, &s.compose, "environment", format!("{name}: a value built from several parts is a secret as a whole: give {name} when applying"), p);
            ctx.secrets.add(&format!("{}_{name}", secrets::env_word(&s.compose)), false, &s.compose)
        }
    };
    s.secret_env.retain(|(n, _)| n != name);
    s.secret_env.push((name.to_string(), env));
    Ok(())
}

/// A value with its references resolved; references to secrets become `$(NAME)` or `$NAME`
/// (`refs`), with NAME added to the container from the stack's Secrets. Without `refs`, a
/// reference to a secret is refused.
fn join(ctx: &mut Ctx, s: &mut Service, pieces: Vec<Piece>, p: &str, refs: Option<Refs>) -> Result<String, ImportError> {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Var(v) if secrets::sensitive(&v.name) => {
                let Some(refs) = refs else {
                    return Err(ctx.bad(p, format!("{} looks like a secret and is used here; kstrap does not write secret values into a stack", v.name), "use it in environment:, command: or a health check only"));
                };
                if !s.secret_env.iter().any(|(n, _)| *n == v.name) {
                    let key = ctx.secrets.add(&v.name, !v.set && secrets::generatable(&v.name), &s.compose);
                    s.secret_env.push((v.name.clone(), key));
                }
                out.push_str(&match refs {
                    Refs::Kubernetes => format!("$({})", v.name),
                    Refs::Shell => format!("${{{}}}", v.name),
                });
            }
            Piece::Var(v) => {
                if v.missing {
                    ctx.note(Level::Warning, &s.compose, "variables", format!("variable {} is not set: a blank string is used (as docker compose does)", v.name), p);
                }
                out.push_str(&v.value);
            }
        }
    }
    Ok(out)
}

/// Resolves a command word or health-check text.
fn text(ctx: &mut Ctx, s: &mut Service, raw: &str, p: &str, refs: Refs) -> Result<String, ImportError> {
    let pieces = interpolate::pieces(raw, ctx.lookup).map_err(|e| ctx.bad(p, e, "set the variable, or give a default: ${VAR:-value}"))?;
    let v = join(ctx, s, pieces, p, Some(refs))?;
    s.words.extend(words(&v));
    Ok(v)
}

pub(super) fn shell_text(ctx: &mut Ctx, s: &mut Service, raw: &str, p: &str) -> Result<String, ImportError> {
    text(ctx, s, raw, p, Refs::Shell)
}

/// Any scalar (or list of scalars) with references resolved; a secret is refused.
pub(super) fn resolve_value(ctx: &mut Ctx, v: &Value, p: &str) -> Result<Value, ImportError> {
    match v {
        Value::String(raw) => {
            let pieces = interpolate::pieces(raw, ctx.lookup).map_err(|e| ctx.bad(p, e, "set the variable, or give a default: ${VAR:-value}"))?;
            if let Some(Piece::Var(v)) = pieces.iter().find(|x| matches!(x, Piece::Var(v) if secrets::sensitive(&v.name))) {
                return Err(ctx.bad(p, format!("{} looks like a secret and is used here; kstrap does not write secret values into a stack", v.name), "use it in environment:, command: or a health check only"));
            }
            let out: String = pieces.into_iter().map(|x| match x { Piece::Text(t) => t, Piece::Var(v) => v.value }).collect();
            Ok(Value::String(out))
        }
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                out.insert(k.clone(), resolve_value(ctx, x, &format!("{p}/{k}"))?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => Ok(Value::Array(a.iter().enumerate().map(|(i, x)| resolve_value(ctx, x, &format!("{p}/{i}"))).collect::<Result<_, _>>()?)),
        other => Ok(other.clone()),
    }
}

fn depends(ctx: &mut Ctx, s: &mut Service, m: &Map<String, Value>, base: &str) -> Result<(), ImportError> {
    match m.get("depends_on") {
        Some(Value::Array(a)) => s.depends_on = a.iter().filter_map(Value::as_str).map(|d| (d.to_string(), "service_started".to_string())).collect(),
        Some(Value::Object(o)) => {
            for (d, spec) in o {
                let c = spec.get("condition").and_then(Value::as_str).unwrap_or("service_started");
                if !["service_started", "service_healthy", "service_completed_successfully"].contains(&c) {
                    return Err(ctx.bad(&format!("{base}/depends_on/{d}/condition"), format!("condition {c:?} is not one compose knows"), "use service_started, service_healthy or service_completed_successfully"));
                }
                s.depends_on.push((d.clone(), c.to_string()));
            }
        }
        _ => {}
    }
    for l in m.get("links").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        s.links.push(l.split(':').next().unwrap_or(l).to_string());
    }
    let known: Vec<&String> = ctx.project.services().into_iter().map(|(n, _)| n).collect();
    for (d, _) in &s.depends_on {
        if !known.contains(&d) {
            return Err(ctx.bad(&format!("{base}/depends_on"), format!("{} depends on {d}, which is not a service of the project", s.compose), "name a service defined under services:"));
        }
    }
    Ok(())
}

/// The words of a value that could be host names (`postgres://db:5432/x` → db, 5432, x, ...).
pub fn words(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
}

/// Splits a command line into words as a POSIX shell does (quotes, backslashes), which is what
/// compose does with a string `command`/`entrypoint` (compose-go uses shellwords).
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed ' in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unclosed \" in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed \" in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}
