//! Stacks: folders of plain Kubernetes YAML in numbered stages, plus `stack.yaml`.
//!
//! `load` reads a stack (built into the binary, or from `--stack-dir`), checks it, and returns
//! its stages in order with their objects in the order they are applied: CRDs, then Namespaces,
//! then other cluster-scoped objects, then namespaced ones, each group in file order. Namespaced
//! objects without a namespace get the stack's. Everything here is pure data work on text; the
//! objects stay `serde_json::Value`s (what a `DynamicObject` deserializes from) so that sizing
//! overlays and server-side apply can work on them later. Format: `manifests/README.md`.

pub(crate) mod check;
pub mod databases;
pub mod endpoints;
mod error;
mod format;
pub mod images;
pub mod overlay;
mod overlay_check;
pub mod proxy;
pub mod reference;
pub mod secrets;
pub(crate) mod yaml;

#[cfg(test)]
mod databases_tests;
#[cfg(test)]
mod tests;

pub(crate) use check::is_dns_label;
pub use error::{Place, StackError};
pub use images::{ImageDecl, ImageError, parse_image_flags, resolve_images};

use crate::distro::Distro;
use crate::plan::step::ObjectRef;
use include_dir::{Dir, include_dir};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/manifests");

/// A loaded, checked stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    pub name: String,
    pub description: String,
    pub namespace: String,
    pub stages: Vec<Stage>,
    /// Per-profile sizing: profile name → object (`Kind/name`) → overlay, checked against the
    /// objects; `Stack::sized` applies them.
    pub profiles: BTreeMap<String, BTreeMap<String, overlay::PlacedOverlay>>,
    /// Per-distribution overlays (what differs between k3s and k0s clusters), checked like the
    /// profiles'; `Stack::sized_for` applies them after the profile's.
    pub distros: BTreeMap<Distro, BTreeMap<String, overlay::PlacedOverlay>>,
    /// Secrets the stack's objects refer to; their values come from the environment or files
    /// when the stack is applied, never from the repository.
    pub secrets: Vec<SecretDecl>,
    /// Images only a service's authors have: the user names them when the stack is applied
    /// (`images::resolve_images`); until then those containers carry a placeholder.
    pub images: Vec<ImageDecl>,
    /// Namespaces besides `namespace` that the stack's objects live in (`namespaces:`).
    pub namespaces: Vec<String>,
    /// PostgreSQL databases (`databases:`); their Clusters and policies are in `stages`.
    pub databases: Vec<databases::Database>,
    /// What proves the stack works once it is ready (stack.yaml `verify:`, `crate::verify`).
    pub verify: Option<crate::verify::VerifySpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Folder name, `10-storage`.
    pub dir: String,
    /// Short name, `storage`.
    pub name: String,
    pub description: String,
    /// How long the stage may take to become ready.
    pub timeout_s: u64,
    /// In the order they are applied.
    pub objects: Vec<StackObject>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StackObject {
    pub reference: ObjectRef,
    /// File it came from, relative to the folder of stacks: `voice-ai/20-ai/ollama.yaml`
    /// (`manifests/voice-ai/20-ai/ollama.yaml` for a built-in stack).
    pub source: String,
    /// 0-based position of its document in the file, empty documents counted.
    pub document: usize,
    /// 1-based line where the object starts.
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecretDecl {
    pub name: String,
    pub description: String,
    /// The environment variables (and `--secret-file` keys) the values are read from.
    pub keys: Vec<String>,
    /// Environment variable → key in the Secret, for each of `keys` (the same name unless
    /// stack.yaml maps it: `{env: OPENROUTER_API_KEY, key: openrouter-api-key}`).
    pub secret_keys: BTreeMap<String, String>,
    pub generate: Option<Generate>,
}

impl SecretDecl {
    /// The key in the Secret that holds the value of environment variable `env`.
    pub fn secret_key<'a>(&'a self, env: &'a str) -> &'a str {
        self.secret_keys.get(env).map(String::as_str).unwrap_or(env)
    }
}

/// How to make a value nobody gave: `length` random letters and digits put into `format` at
/// `{random}` (so a value can have the shape a program expects, e.g. LiveKit's `key: secret`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    pub length: usize,
    #[serde(default = "random_only")]
    pub format: String,
}

fn random_only() -> String {
    "{random}".to_string()
}

/// Names of the stacks built into the binary, sorted.
pub fn embedded_names() -> Vec<String> {
    names_in(&EMBEDDED)
}

/// Names of the stacks in a folder embedded in the binary (its sub-folders with a stack.yaml).
fn names_in(root: &Dir<'_>) -> Vec<String> {
    let mut names: Vec<String> = root
        .dirs()
        .filter(|d| d.get_file(d.path().join("stack.yaml")).is_some())
        .filter_map(|d| d.path().file_name()?.to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Loads stack `name`: the built-in one when `dir` is None, else `<dir>/<name>/`.
pub fn load(name: &str, dir: Option<&Path>) -> Result<Stack, StackError> {
    let raw = match dir {
        None => read_embedded(name)?,
        Some(dir) => read_dir(name, dir)?,
    };
    build(name, raw)
}

/// Loads stack `name` from a folder of stacks embedded in the binary other than `manifests/`
/// (kstrap's built-in add-ons in `addons/`), with the same checks as [`load`]; `folder` is the
/// folder's name in the repository, for messages.
pub fn load_embedded(root: &Dir<'_>, folder: &str, name: &str) -> Result<Stack, StackError> {
    build(name, read_embedded_in(root, folder, name)?)
}

// ---- reading the files ----------------------------------------------------------------------

/// A stack's files, wherever they came from.
struct RawStack {
    /// Prefix of every path shown: `voice-ai/` or `manifests/voice-ai/`.
    prefix: String,
    stack_file: Option<String>,
    /// Stage folders (`NN-*`) by name, each with its files sorted by name.
    stages: BTreeMap<String, Vec<RawFile>>,
}

struct RawFile {
    name: String,
    /// None when the file is not UTF-8.
    text: Option<String>,
}

fn read_embedded(name: &str) -> Result<RawStack, StackError> {
    read_embedded_in(&EMBEDDED, "manifests", name)
}

fn read_embedded_in(stacks: &Dir<'_>, folder: &str, name: &str) -> Result<RawStack, StackError> {
    let Some(root) = stacks
        .get_dir(name)
        .filter(|d| d.get_file(d.path().join("stack.yaml")).is_some())
    else {
        return Err(StackError::UnknownStack {
            name: name.to_string(),
            available: names_in(stacks),
        });
    };
    let file_name = |p: &Path| p.file_name().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    let mut stages = BTreeMap::new();
    for d in root.dirs() {
        let dir_name = file_name(d.path());
        if !is_stage_like(&dir_name) {
            continue;
        }
        let mut files: Vec<RawFile> = d
            .files()
            .map(|f| RawFile {
                name: file_name(f.path()),
                text: f.contents_utf8().map(str::to_string),
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        stages.insert(dir_name, files);
    }
    Ok(RawStack {
        prefix: format!("{folder}/{name}/"),
        stack_file: root
            .get_file(root.path().join("stack.yaml"))
            .map(|f| f.contents_utf8().unwrap_or_default().to_string()),
        stages,
    })
}

fn read_dir(name: &str, dir: &Path) -> Result<RawStack, StackError> {
    let io = |p: &Path, e: std::io::Error| StackError::Io {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let root = dir.join(name);
    if !dir.is_dir() {
        return Err(StackError::Io {
            path: dir.display().to_string(),
            message: "no such folder".into(),
        });
    }
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') || !root.is_dir() {
        return Err(StackError::UnknownStack {
            name: name.to_string(),
            available: dir_names(dir),
        });
    }
    let stack_path = root.join("stack.yaml");
    let stack_file = match crate::limits::read_bounded(&stack_path) {
        Ok(bytes) => Some(String::from_utf8(bytes).map_err(|_| StackError::NotUtf8 {
            path: format!("{name}/stack.yaml"),
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&stack_path, e)),
    };
    let mut stages = BTreeMap::new();
    for entry in std::fs::read_dir(&root).map_err(|e| io(&root, e))? {
        let entry = entry.map_err(|e| io(&root, e))?;
        let dir_name = entry.file_name().to_string_lossy().into_owned();
        if !is_stage_like(&dir_name) {
            continue;
        }
        // Followed like `cat` would (a link to a folder is a folder); a link that leads nowhere
        // or in a loop is an error naming it, never skipped.
        let meta = std::fs::metadata(entry.path()).map_err(|e| io(&entry.path(), e))?;
        if !meta.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        for f in std::fs::read_dir(entry.path()).map_err(|e| io(&entry.path(), e))? {
            let f = f.map_err(|e| io(&entry.path(), e))?;
            let meta = std::fs::metadata(f.path()).map_err(|e| io(&f.path(), e))?;
            if meta.is_dir() {
                continue;
            }
            let bytes = crate::limits::read_bounded(&f.path()).map_err(|e| io(&f.path(), e))?;
            files.push(RawFile {
                name: f.file_name().to_string_lossy().into_owned(),
                text: String::from_utf8(bytes).ok(),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        stages.insert(dir_name, files);
    }
    Ok(RawStack {
        prefix: format!("{name}/"),
        stack_file,
        stages,
    })
}

/// Stacks in a `--stack-dir`: its sub-folders that hold a stack.yaml.
fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("stack.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Folders that are meant as stages: two digits and a '-'. Anything else (docs/) is not ours.
fn is_stage_like(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 3 && b[0].is_ascii_digit() && b[1].is_ascii_digit() && b[2] == b'-'
}

// ---- building the stack ---------------------------------------------------------------------

fn build(name: &str, raw: RawStack) -> Result<Stack, StackError> {
    let stack_path = format!("{}stack.yaml", raw.prefix);
    let Some(text) = &raw.stack_file else {
        return Err(StackError::MissingStackFile { path: stack_path });
    };
    let file = format::parse(&stack_path, name, text)?;
    let namespace = file.namespace.value.clone();
    let images: Vec<(ImageDecl, usize)> = file
        .images
        .iter()
        .map(|i| {
            let decl = ImageDecl {
                key: i.value.key.clone(),
                description: i.value.description.clone(),
                containers: i
                    .value
                    .containers
                    .iter()
                    .filter_map(|c| images::ContainerRef::parse(c))
                    .collect(),
            };
            (decl, i.referenced.line() as usize)
        })
        .collect();
    let declared: Vec<(images::ContainerRef, String)> = images
        .iter()
        .flat_map(|(d, _)| d.containers.iter().map(|c| (c.clone(), d.key.clone())))
        .collect();

    let listed: Vec<&str> = file.stages.iter().map(|s| s.value.dir.as_str()).collect();
    let unlisted: Vec<String> = raw
        .stages
        .keys()
        .filter(|d| !listed.contains(&d.as_str()))
        .cloned()
        .collect();
    let missing: Vec<String> = listed
        .iter()
        .filter(|d| !raw.stages.contains_key(**d))
        .map(|d| d.to_string())
        .collect();
    if !unlisted.is_empty() || !missing.is_empty() {
        return Err(StackError::StageMismatch {
            path: stack_path,
            unlisted,
            missing,
        });
    }

    // Parse every document first: the scope of custom resources comes from the stack's CRDs.
    let mut parsed: Vec<Vec<Parsed>> = Vec::new();
    for stage in &file.stages {
        let mut objects = Vec::new();
        let files = raw.stages.get(&stage.value.dir).map(Vec::as_slice).unwrap_or(&[]);
        for f in files {
            let path = format!("{}{}/{}", raw.prefix, stage.value.dir, f.name);
            let is_yaml = f.name.ends_with(".yaml") || f.name.ends_with(".yml");
            if !is_yaml {
                if f.name.ends_with(".md") {
                    continue;
                }
                return Err(StackError::UnexpectedFile { path });
            }
            let Some(text) = &f.text else {
                return Err(StackError::NotUtf8 { path });
            };
            objects.extend(parse_file(&path, text, &declared)?);
        }
        parsed.push(objects);
    }
    let crd_scopes = crd_scopes(parsed.iter().flatten());

    let mut seen: HashMap<(String, String, Option<String>, String), Place> = HashMap::new();
    let mut stages = Vec::with_capacity(file.stages.len());
    for (stage, objects) in file.stages.into_iter().zip(parsed) {
        let mut out = Vec::with_capacity(objects.len());
        for mut p in objects {
            let rank = rank(&p.reference, &crd_scopes);
            if rank == Rank::Namespaced && p.reference.namespace.is_none() {
                p.reference.namespace = Some(namespace.clone());
                if let Some(meta) = p.value.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("namespace".into(), Value::String(namespace.clone()));
                }
            }
            let r = &p.reference;
            let key = (
                group(&r.api_version).to_string(),
                r.kind.clone(),
                r.namespace.clone(),
                r.name.clone(),
            );
            let here = Place {
                path: p.source.clone(),
                document: p.document,
                line: p.line,
            };
            if let Some(first) = seen.get(&key) {
                return Err(StackError::Duplicate {
                    object: r.to_string(),
                    first: first.clone(),
                    second: here,
                });
            }
            seen.insert(key, here);
            out.push((rank, p));
        }
        // Stable: file order is kept within each group.
        out.sort_by_key(|(rank, _)| *rank);
        stages.push(Stage {
            dir: stage.value.dir,
            name: stage.value.name,
            description: stage.value.description,
            timeout_s: stage.value.timeout_s,
            objects: out
                .into_iter()
                .map(|(_, p)| StackObject {
                    reference: p.reference,
                    source: p.source,
                    document: p.document,
                    line: p.line,
                    value: p.value,
                })
                .collect(),
        });
    }

    let placed = |overlays: BTreeMap<String, serde_saphyr::Spanned<overlay::Overlay>>| {
        overlays
            .into_iter()
            .map(|(key, o)| {
                let line = o.referenced.line() as usize;
                (key, overlay::PlacedOverlay { overlay: o.value, line })
            })
            .collect::<BTreeMap<_, _>>()
    };
    let profiles: BTreeMap<String, BTreeMap<String, overlay::PlacedOverlay>> = file
        .profiles
        .into_iter()
        .map(|(profile, overlays)| (profile, placed(overlays)))
        .collect();
    let distros: BTreeMap<Distro, BTreeMap<String, overlay::PlacedOverlay>> = file
        .distros
        .into_map()
        .into_iter()
        .map(|(distro, overlays)| (distro, placed(overlays)))
        .collect();
    // Every namespace an object names is the stack's or one it lists under `namespaces:`.
    let mut all_namespaces = vec![namespace.clone()];
    all_namespaces.extend(file.namespaces.iter().map(|n| n.value.clone()));
    for o in stages.iter().flat_map(|s| &s.objects) {
        if let Some(ns) = &o.reference.namespace
            && !all_namespaces.contains(ns)
        {
            return Err(StackError::ForeignNamespace {
                at: Place {
                    path: o.source.clone(),
                    document: o.document,
                    line: o.line,
                },
                object: o.reference.to_string(),
                namespace: ns.clone(),
                stack_file: stack_path.clone(),
            });
        }
    }
    let databases = databases::expand(&stack_path, file.databases, &all_namespaces, &mut stages)?;

    let sections = overlay::sections(&profiles, &distros);
    overlay::check(&stack_path, &stages, &sections)?;
    images::check(&stack_path, &images, &stages, &sections)?;
    if let Some(v) = &file.verify {
        crate::verify::check(&v.value, &stages).map_err(|(message, hint)| StackError::StackFile {
            path: stack_path.clone(),
            line: v.referenced.line() as usize,
            message,
            hint: hint.to_string(),
        })?;
    }

    Ok(Stack {
        name: name.to_string(),
        description: file.description,
        namespace,
        stages,
        profiles,
        distros,
        secrets: file
            .secrets
            .into_iter()
            .map(|s| SecretDecl {
                name: s.name.value,
                description: s.description,
                keys: s.keys.iter().map(|k| k.names().0.to_string()).collect(),
                secret_keys: s
                    .keys
                    .iter()
                    .map(|k| (k.names().0.to_string(), k.names().1.to_string()))
                    .collect(),
                generate: s.generate,
            })
            .collect(),
        images: images.into_iter().map(|(d, _)| d).collect(),
        namespaces: all_namespaces[1..].to_vec(),
        databases,
        verify: file.verify.map(|v| v.value),
    })
}

/// An object read from a file, before namespace defaulting and ordering.
struct Parsed {
    reference: ObjectRef,
    source: String,
    document: usize,
    line: usize,
    value: Value,
}

fn parse_file(path: &str, text: &str, declared: &[(images::ContainerRef, String)]) -> Result<Vec<Parsed>, StackError> {
    let docs = yaml::documents(text).map_err(|e| StackError::Yaml {
        at: Place {
            path: path.to_string(),
            document: e.index,
            line: e.line,
        },
        message: e.message,
        hint: e.hint.to_string(),
    })?;
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        let place = |line: usize| Place {
            path: path.to_string(),
            document: doc.index,
            line,
        };
        if !doc.value.is_object() {
            return Err(StackError::NotMapping {
                at: place(doc.line),
                found: type_name(&doc.value),
            });
        }
        let field = |pointer: &str, field: &'static str| -> Result<String, StackError> {
            match doc.value.pointer(pointer) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(StackError::MissingField {
                    at: place(doc.line_of(pointer)),
                    field,
                }),
            }
        };
        let api_version = field("/apiVersion", "apiVersion")?;
        let kind = field("/kind", "kind")?;
        let name = field("/metadata/name", "metadata.name")?;
        if let Some(reason) = check::subdomain_problem(&name) {
            return Err(StackError::InvalidName {
                at: place(doc.line_of("/metadata/name")),
                kind,
                name,
                reason,
            });
        }
        let namespace = match doc.value.pointer("/metadata/namespace") {
            None | Some(Value::Null) => None,
            Some(Value::String(ns)) if check::is_dns_label(ns) => Some(ns.clone()),
            Some(other) => {
                return Err(StackError::InvalidName {
                    at: place(doc.line_of("/metadata/namespace")),
                    kind: "Namespace".into(),
                    name: other.as_str().unwrap_or_default().to_string(),
                    reason: "a namespace is a DNS label: lowercase letters, digits and '-', at most 63 characters",
                });
            }
        };
        check::object(&doc, &place, &kind, &name, declared)?;
        out.push(Parsed {
            reference: ObjectRef {
                api_version,
                kind,
                namespace,
                name,
            },
            source: path.to_string(),
            document: doc.index,
            line: doc.line,
            value: doc.value,
        });
    }
    Ok(out)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The API group of an apiVersion: `apps` for `apps/v1`, empty for the core `v1`.
fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// Where an object goes within its stage; also says whether it is namespaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Crd,
    Namespace,
    ClusterScoped,
    Namespaced,
}

/// Built-in cluster-scoped kinds by (group, kind). Anything else is taken as namespaced, unless
/// the stack's own CRDs say `scope: Cluster`.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("", "PersistentVolume"),
    ("node.k8s.io", "RuntimeClass"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("networking.k8s.io", "IngressClass"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("apiregistration.k8s.io", "APIService"),
];

fn rank(r: &ObjectRef, crd_scopes: &HashMap<(String, String), bool>) -> Rank {
    let g = group(&r.api_version);
    match (g, r.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Rank::Crd,
        ("", "Namespace") => Rank::Namespace,
        _ if CLUSTER_SCOPED.contains(&(g, r.kind.as_str())) => Rank::ClusterScoped,
        _ if crd_scopes.get(&(g.to_string(), r.kind.clone())) == Some(&true) => Rank::ClusterScoped,
        _ => Rank::Namespaced,
    }
}

/// (group, kind) → cluster-scoped?, from the CustomResourceDefinitions in the stack.
fn crd_scopes<'a>(objects: impl Iterator<Item = &'a Parsed>) -> HashMap<(String, String), bool> {
    objects
        .filter(|p| p.reference.kind == "CustomResourceDefinition")
        .filter_map(|p| {
            let spec = p.value.get("spec")?;
            let g = spec.get("group")?.as_str()?.to_string();
            let kind = spec.pointer("/names/kind")?.as_str()?.to_string();
            let cluster = spec.get("scope").and_then(Value::as_str) == Some("Cluster");
            Some(((g, kind), cluster))
        })
        .collect()
}
