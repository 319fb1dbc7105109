//! `volumes` and `tmpfs` of a service (compose-spec `05-services.md`, "volumes": short syntax
//! `[SOURCE:]TARGET[:MODE]`, long syntax `{type, source, target, read_only}`): named volumes
//! become PersistentVolumeClaims (a database's, claims of its StatefulSet), bind mounts become
//! claims with a warning (their files are not copied), or hostPath / nothing when asked
//! (`--bind-mounts`), anonymous volumes and tmpfs become emptyDirs.

use super::service::{Ctx, Service, k8s_name};
use super::{BindMounts, ImportError, Level};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A claim: a named volume's, or one made for a bind mount.
    Claim {
        claim: String,
        bind: bool,
    },
    HostPath(String),
    EmptyDir {
        memory: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The pod's volume name.
    pub volume: String,
    pub path: String,
    pub read_only: bool,
    pub source: Source,
}

/// Paths whose holder is root on the host.
const HOST_CONTROL: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/",
];

pub fn volumes(ctx: &mut Ctx, s: &mut Service, m: &Map<String, Value>, base: &str) -> Result<(), ImportError> {
    let declared = ctx
        .project
        .top
        .get("volumes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (i, v) in m
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("{base}/volumes/{i}");
        let v = super::variables::resolve_value(ctx, v, &p)?;
        let (kind, source, target, ro) = match &v {
            Value::String(spec) => {
                let parts: Vec<&str> = spec.split(':').collect();
                let (src, tgt, mode) = match parts.as_slice() {
                    [t] => (None, *t, ""),
                    [a, b] if b.starts_with('/') => (Some(*a), *b, ""),
                    [a, b] => (None, *a, *b),
                    [a, b, c] => (Some(*a), *b, *c),
                    _ => {
                        return Err(ctx.bad(
                            &p,
                            format!("volume {spec:?} is not [SOURCE:]TARGET[:MODE]"),
                            "write e.g. data:/var/lib/data or ./conf:/etc/app:ro",
                        ));
                    }
                };
                let kind = match src {
                    None => "anonymous",
                    Some(x) if x.starts_with(['.', '/', '~']) => "bind",
                    Some(_) => "volume",
                };
                (
                    kind.to_string(),
                    src.map(str::to_string),
                    tgt.to_string(),
                    mode.split(',').any(|m| m == "ro"),
                )
            }
            Value::Object(o) => {
                let t = o.get("type").and_then(Value::as_str).unwrap_or("volume");
                let target = o
                    .get("target")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ctx.bad(&p, "a volume needs target:", "add target: (the path in the container)"))?;
                let src = o.get("source").and_then(Value::as_str).map(str::to_string);
                let kind = if t == "volume" && src.is_none() { "anonymous" } else { t };
                (
                    kind.to_string(),
                    src,
                    target.to_string(),
                    o.get("read_only") == Some(&Value::Bool(true)),
                )
            }
            _ => return Err(ctx.bad(&p, "a volume is a string or a mapping", "write e.g. data:/var/lib/data")),
        };
        if !target.starts_with('/') {
            return Err(ctx.bad(
                &p,
                format!("volume target {target:?} is not an absolute path"),
                "mount at an absolute path in the container",
            ));
        }
        let volume = format!(
            "v{}-{}",
            s.mounts.len(),
            k8s_name(target.rsplit('/').find(|x| !x.is_empty()).unwrap_or("root"))
        );
        let volume = volume[..volume.len().min(63)].trim_end_matches('-').to_string();
        let source = match kind.as_str() {
            "anonymous" => Source::EmptyDir { memory: false },
            "tmpfs" => Source::EmptyDir { memory: true },
            "volume" => {
                let name = source.unwrap_or_default();
                let decl = declared.get(&name);
                if decl.is_none() {
                    return Err(ctx.bad(
                        &p,
                        format!("volume {name} is not declared under the top-level volumes:"),
                        "declare it: volumes: {NAME: {}}",
                    ));
                }
                if decl.and_then(|d| d.get("external")) == Some(&Value::Bool(true)) {
                    ctx.note(Level::Warning, &s.compose, "volumes", format!("{name} is external: kstrap declares the claim {}; an existing claim of that name in the namespace is kept", k8s_name(&name)), &p);
                }
                Source::Claim {
                    claim: k8s_name(&name),
                    bind: false,
                }
            }
            "bind" => {
                let host = source.unwrap_or_default();
                let controls_host = HOST_CONTROL.contains(&host.trim_end_matches('/')) || host == "/";
                match ctx.bind_mounts {
                    BindMounts::Drop => {
                        ctx.note(
                            Level::Warning,
                            &s.compose,
                            "volumes",
                            format!("bind mount {host}:{target} dropped (--bind-mounts drop)"),
                            &p,
                        );
                        continue;
                    }
                    _ if controls_host => {
                        ctx.note(Level::Refusal, &s.compose, "volumes", format!("{host} gives whoever mounts it control of the host (and k3s/k0s run no Docker): refused; --bind-mounts drop leaves it out"), &p);
                        continue;
                    }
                    BindMounts::HostPath => {
                        ctx.note(Level::Warning, &s.compose, "volumes", format!("bind mount {host}:{target} is a hostPath (--bind-mounts host-path): the folder must exist on every node, relative paths are taken from {}", ctx.project.dir.display()), &p);
                        let abs = if host.starts_with('/') {
                            host.clone()
                        } else {
                            ctx.project.dir.join(&host).display().to_string()
                        };
                        Source::HostPath(abs)
                    }
                    BindMounts::Claim => {
                        let claim = format!(
                            "{}-{}",
                            s.name,
                            k8s_name(host.rsplit('/').find(|x| !x.is_empty() && *x != ".").unwrap_or("data"))
                        );
                        let claim = claim[..claim.len().min(63)].trim_end_matches('-').to_string();
                        ctx.note(Level::Warning, &s.compose, "volumes", format!("bind mount {host}:{target} became the empty claim {claim}: copy the files in (kubectl cp), or import with --bind-mounts drop or host-path"), &p);
                        Source::Claim { claim, bind: true }
                    }
                }
            }
            other => {
                ctx.note(
                    Level::Refusal,
                    &s.compose,
                    "volumes",
                    format!("volume type {other} cannot be carried over"),
                    &p,
                );
                continue;
            }
        };
        s.mounts.push(Mount {
            volume,
            path: target,
            read_only: ro,
            source,
        });
    }
    let tmpfs: Vec<String> = match m.get("tmpfs") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    for t in tmpfs {
        let path = t.split(':').next().unwrap_or(&t).to_string();
        s.mounts.push(Mount {
            volume: format!("v{}-tmpfs", s.mounts.len()),
            path,
            read_only: false,
            source: Source::EmptyDir { memory: true },
        });
    }
    Ok(())
}

/// Default size of a claim: models need room, databases some, the rest little.
pub fn claim_size(users: &[&Service]) -> &'static str {
    if users.iter().any(|s| s.gpu.is_some()) {
        "50Gi"
    } else if users.iter().any(|s| s.database) {
        "10Gi"
    } else {
        "5Gi"
    }
}
