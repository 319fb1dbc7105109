//! One Compose service → the model the renderer turns into objects: image, command, variables
//! (plain ones for the ConfigMap, secret ones as Secret keys), ports, volumes, probes, sizes, the
//! GPU, and what it depends on. Anything that cannot be carried over is a `Note`.

use super::compose::{Project, scalar};
use super::image::{DATABASES, known_ports};
pub use super::image::{Image, image_base, pinned};
use super::interpolate;
use super::ports::{self, Port};
use super::secrets::Registry;
use super::{ImportError, Level, Note};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

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

pub fn convert(ctx: &mut Ctx, compose: &str, v: &Value) -> Result<Service, ImportError> {
    let base = format!("/services/{}", compose.replace('~', "~0").replace('/', "~1"));
    let Some(m) = v.as_object() else {
        return Err(ctx.bad(
            &base,
            format!("service {compose} is not a mapping"),
            "define each service as a mapping with image: and its settings",
        ));
    };
    let name = k8s_name(compose);
    if name != compose {
        ctx.note(
            Level::Warning,
            compose,
            "name",
            format!("named {name} in Kubernetes (a DNS label); its DNS name changes with it"),
            &base,
        );
    }
    super::refuse::check(ctx, compose, m, &base)?;
    let mut s = Service {
        compose: compose.to_string(),
        name: name.clone(),
        image: Image::Given(String::new()),
        workload: if ctx.jobs.contains(compose) {
            Workload::Job
        } else {
            Workload::Deployment
        },
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
    super::image::image(ctx, &mut s, m, &base)?;
    for (field, target) in [("entrypoint", 0), ("command", 1)] {
        if let Some(raw) = m.get(field) {
            let p = format!("{base}/{field}");
            let words = match raw {
                Value::String(t) => {
                    super::variables::shell_words(t).map_err(|e| ctx.bad(&p, e, "quote the words as a shell would"))?
                }
                Value::Array(a) => a.iter().filter_map(scalar).collect(),
                Value::Null => continue,
                _ => {
                    return Err(ctx.bad(
                        &p,
                        format!("{field} is neither a string nor a list"),
                        "write it as a string or a list of words",
                    ));
                }
            };
            let mut out = Vec::new();
            for w in words {
                out.push(super::variables::text(
                    ctx,
                    &mut s,
                    &w,
                    &p,
                    super::variables::Refs::Kubernetes,
                )?);
            }
            if target == 0 {
                s.command = Some(out)
            } else {
                s.args = Some(out)
            }
        }
    }
    super::variables::environment(ctx, &mut s, m, &base)?;
    let mut all_ports = Vec::new();
    for (field, parse) in [
        ("ports", ports::parse_port as fn(&Value) -> Result<Vec<Port>, String>),
        ("expose", ports::parse_expose),
    ] {
        for (i, entry) in m.get(field).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let p = format!("{base}/{field}/{i}");
            let entry = super::variables::resolve_value(ctx, entry, &p)?;
            all_ports.extend(parse(&entry).map_err(|e| {
                ctx.bad(
                    &p,
                    format!("{field}: {e}"),
                    "write ports as [HOST:]CONTAINER[/PROTOCOL], e.g. \"8080:80\" or \"53:53/udp\"",
                )
            })?);
        }
    }
    if all_ports.is_empty()
        && let Some(known) = known_ports(&image_base(&s.image.original()))
    {
        // compose lets services on one network reach every port; a Service needs them listed.
        ctx.note(
            Level::Warning,
            compose,
            "ports",
            format!("no ports in the compose file: the image's usual {known:?} are the Service's"),
            &base,
        );
        all_ports.extend(known.iter().map(|p| Port {
            container: *p,
            protocol: "TCP",
            published: None,
            host_ip: None,
            name: String::new(),
        }));
    }
    s.ports = ports::name_ports(all_ports);
    for p in s.ports.iter().filter(|p| p.published.is_some() && !p.public()) {
        ctx.notes.push(Note {
            level: Level::Warning,
            service: Some(compose.into()),
            feature: "ports".into(),
            what: format!(
                "{} is published only on {}: not published (use kubectl port-forward)",
                p.container,
                p.host_ip.clone().unwrap_or_default()
            ),
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
            None => ctx.note(
                Level::Warning,
                compose,
                "user",
                format!("user {u:?} is a name: Kubernetes needs a number; the image's user runs"),
                &format!("{base}/user"),
            ),
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
        r if r.starts_with("on-failure") && s.workload != Workload::Job => ctx.note(
            Level::Warning,
            compose,
            "restart",
            format!("restart: {r}: a Deployment's pods are always restarted"),
            &format!("{base}/restart"),
        ),
        _ => {}
    }
    s.database = DATABASES.contains(&image_base(&s.image.original()).as_str());
    Ok(s)
}

fn depends(ctx: &mut Ctx, s: &mut Service, m: &Map<String, Value>, base: &str) -> Result<(), ImportError> {
    match m.get("depends_on") {
        Some(Value::Array(a)) => {
            s.depends_on = a
                .iter()
                .filter_map(Value::as_str)
                .map(|d| (d.to_string(), "service_started".to_string()))
                .collect()
        }
        Some(Value::Object(o)) => {
            for (d, spec) in o {
                let c = spec
                    .get("condition")
                    .and_then(Value::as_str)
                    .unwrap_or("service_started");
                if !["service_started", "service_healthy", "service_completed_successfully"].contains(&c) {
                    return Err(ctx.bad(
                        &format!("{base}/depends_on/{d}/condition"),
                        format!("condition {c:?} is not one compose knows"),
                        "use service_started, service_healthy or service_completed_successfully",
                    ));
                }
                s.depends_on.push((d.clone(), c.to_string()));
            }
        }
        _ => {}
    }
    for l in m
        .get("links")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        s.links.push(l.split(':').next().unwrap_or(l).to_string());
    }
    let known: Vec<&String> = ctx.project.services().into_iter().map(|(n, _)| n).collect();
    for (d, _) in &s.depends_on {
        if !known.contains(&d) {
            return Err(ctx.bad(
                &format!("{base}/depends_on"),
                format!("{} depends on {d}, which is not a service of the project", s.compose),
                "name a service defined under services:",
            ));
        }
    }
    Ok(())
}
