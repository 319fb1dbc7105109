//! Images only a service's authors have, named by the user when the stack is applied.
//!
//! Design §8 wants public images pinned by tag, but seed 000's gateway and workers and seed 001's
//! API and GPU worker run their authors' own images, which no registry serves to us. Such a
//! stack declares those containers under `images:` in `stack.yaml`, and its YAML gives them a
//! placeholder image under the reserved `.invalid` domain (RFC 2606), e.g.
//! `kstrap.invalid/required/gateway:unset`, which no registry can ever serve. The loader accepts
//! the placeholder only in declared containers and demands it there, so a stack cannot forget
//! one. `resolve_images` then puts the user's image into every declared container, structurally
//! on the parsed objects, or refuses, before anything reaches the cluster, with one message
//! naming every missing image and how to give it (`--image KEY=REF` or the environment variable
//! `KEY`). Images given must be pinned like every other image of a stack.

use super::check::{containers, image_problem};
use super::error::{Place, StackError};
use super::overlay::PlacedOverlay;
use super::{Stack, Stage};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Every placeholder image starts with this: the reserved `.invalid` domain cannot resolve.
pub const PLACEHOLDER_PREFIX: &str = "kstrap.invalid/";

/// Whether `image` is a placeholder for an image the user names.
pub fn is_placeholder(image: &str) -> bool {
    image.starts_with(PLACEHOLDER_PREFIX)
}

/// One required image, as declared under `images:` in `stack.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDecl {
    /// `GATEWAY_IMAGE`: the `--image` key and the environment variable read.
    pub key: String,
    pub description: String,
    pub containers: Vec<ContainerRef>,
}

/// A container of a workload: `Deployment/gateway/gateway`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerRef {
    pub kind: String,
    pub name: String,
    pub container: String,
}

impl ContainerRef {
    /// Parses `Kind/name/container` (format.rs has checked the shape).
    pub(crate) fn parse(s: &str) -> Option<ContainerRef> {
        let mut parts = s.splitn(3, '/');
        let (kind, name, container) = (parts.next()?, parts.next()?, parts.next()?);
        Some(ContainerRef {
            kind: kind.to_string(),
            name: name.to_string(),
            container: container.to_string(),
        })
    }

    fn matches(&self, kind: &str, name: &str, container: &str) -> bool {
        self.kind == kind && self.name == name && self.container == container
    }
}

impl fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.name, self.container)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    #[error(
        "--image {arg:?}: not of the form KEY=REF\n  fix: name the key the stack declares and a pinned image, e.g. --image GATEWAY_IMAGE=registry.example.com/team/gateway:1.4.2"
    )]
    BadFlag { arg: String },
    #[error("--image {key}=... is given twice\n  fix: give each image once")]
    Twice { key: String },
    #[error(
        "--image {key}=...: stack {stack} declares no image {key:?} ({})\n  fix: use one of the declared keys",
        if declared.is_empty() { "it needs no image from you".to_string() } else { format!("it declares: {}", declared.join(", ")) }
    )]
    UnknownKey {
        stack: String,
        key: String,
        declared: Vec<String>,
    },
    #[error(
        "{key} (from {from}) is {image:?}, which is not pinned: {reason}\n  fix: name an exact release tag (name:1.2.3) or a digest (name@sha256:...)"
    )]
    Unpinned {
        key: String,
        from: String,
        image: String,
        reason: &'static str,
    },
    #[error(
        "{key} (from {from}) is {image:?}, which is not a valid image reference: {reason}\n  fix: write [registry/]path/name:tag (path and name in lowercase) or name@sha256:<64 hex digits>"
    )]
    Invalid {
        key: String,
        from: String,
        image: String,
        reason: String,
    },
    #[error(
        "{key} (from {from}) is empty or the placeholder {image:?}\n  fix: name the image the service's authors publish, e.g. --image {key}=registry.example.com/team/name:1.2.3"
    )]
    NotAnImage { key: String, from: String, image: String },
    #[error(
        "stack {stack} runs images that only their authors have; name each one:{}\n  fix: pass --image KEY=REF for each (repeatable), or set the environment variable KEY; pin each to a tag or digest",
        missing.iter().map(|(k, d, c)| format!("\n    {k}: {d} (used by {c})")).collect::<String>()
    )]
    Missing {
        stack: String,
        /// (key, description, the containers that run it)
        missing: Vec<(String, String, String)>,
    },
}

/// Parses `--image KEY=REF` flags (the same key twice is an error).
pub fn parse_image_flags(args: &[String]) -> Result<BTreeMap<String, String>, ImageError> {
    let mut out = BTreeMap::new();
    for arg in args {
        match arg.split_once('=') {
            Some((k, r)) if super::format::is_env_name(k) && !r.trim().is_empty() => {
                if out.insert(k.to_string(), r.trim().to_string()).is_some() {
                    return Err(ImageError::Twice { key: k.to_string() });
                }
            }
            _ => return Err(ImageError::BadFlag { arg: arg.clone() }),
        }
    }
    Ok(out)
}

/// The stack with the user's image in every declared container. Call it on the stack sized for
/// the profile (`Stack::sized`): an image whose containers the profile omits is not asked for.
/// Per key: `given` (from `--image`) first, then the environment variable of that name.
pub fn resolve_images(
    stack: &Stack,
    given: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Stack, ImageError> {
    let declared: Vec<String> = stack.images.iter().map(|i| i.key.clone()).collect();
    if let Some(key) = given.keys().find(|k| !declared.contains(k)) {
        return Err(ImageError::UnknownKey {
            stack: stack.name.clone(),
            key: key.clone(),
            declared,
        });
    }
    let mut out = stack.clone();
    let mut missing = Vec::new();
    for decl in &stack.images {
        let present: Vec<&ContainerRef> = decl.containers.iter().filter(|c| container_present(stack, c)).collect();
        if present.is_empty() {
            continue; // every container that runs it is omitted for this profile
        }
        let (image, from) = match given.get(&decl.key) {
            Some(v) => (v.clone(), format!("--image {}", decl.key)),
            None => match env(&decl.key) {
                Some(v) => (v.trim().to_string(), format!("the environment variable {}", decl.key)),
                None => {
                    let used_by: Vec<String> = present.iter().map(|c| c.to_string()).collect();
                    missing.push((decl.key.clone(), decl.description.clone(), used_by.join(", ")));
                    continue;
                }
            },
        };
        if image.is_empty() || is_placeholder(&image) {
            return Err(ImageError::NotAnImage {
                key: decl.key.clone(),
                from,
                image,
            });
        }
        if let Some(reason) = super::reference::reference_problem(&image) {
            return Err(ImageError::Invalid {
                key: decl.key.clone(),
                from,
                image,
                reason,
            });
        }
        if let Some(reason) = image_problem(&image) {
            return Err(ImageError::Unpinned {
                key: decl.key.clone(),
                from,
                image,
                reason,
            });
        }
        for c in &present {
            set_image(&mut out, c, &image);
        }
    }
    if !missing.is_empty() {
        return Err(ImageError::Missing {
            stack: stack.name.clone(),
            missing,
        });
    }
    Ok(out)
}

fn container_present(stack: &Stack, c: &ContainerRef) -> bool {
    stack
        .stages
        .iter()
        .flat_map(|s| &s.objects)
        .filter(|o| o.reference.kind == c.kind && o.reference.name == c.name)
        .any(|o| {
            containers(&o.reference.kind, &o.value)
                .iter()
                .any(|(_, v)| v.get("name").and_then(Value::as_str) == Some(c.container.as_str()))
        })
}

fn set_image(stack: &mut Stack, c: &ContainerRef, image: &str) {
    for o in stack.stages.iter_mut().flat_map(|s| &mut s.objects) {
        if o.reference.kind != c.kind || o.reference.name != c.name {
            continue;
        }
        let pointers: Vec<String> = containers(&o.reference.kind, &o.value)
            .into_iter()
            .filter(|(_, v)| v.get("name").and_then(Value::as_str) == Some(c.container.as_str()))
            .map(|(p, _)| p)
            .collect();
        for p in pointers {
            if let Some(Value::Object(map)) = o.value.pointer_mut(&p) {
                map.insert("image".into(), Value::String(image.to_string()));
            }
        }
    }
}

/// The placeholder rule for one container while its file is parsed: a declared container must
/// carry a placeholder, any other must not. Returns (message, hint) when broken.
pub(crate) fn container_rule(
    declared: &[(ContainerRef, String)],
    kind: &str,
    name: &str,
    container: &str,
    image: Option<&str>,
) -> Option<(String, String)> {
    let key = declared
        .iter()
        .find(|(c, _)| c.matches(kind, name, container))
        .map(|(_, k)| k);
    let placeholder = image.is_some_and(is_placeholder);
    match (key, placeholder) {
        (Some(key), false) => Some((
            format!(
                "container {container:?} is declared under images: as {key} in stack.yaml, but its image is {:?}, not a placeholder",
                image.unwrap_or_default()
            ),
            format!(
                "write image: {PLACEHOLDER_PREFIX}required/{container}:unset here (the user names the image as --image {key}=REF), or remove the container from images:"
            ),
        )),
        (None, true) => Some((
            format!(
                "container {container:?} uses the placeholder image {:?} but stack.yaml declares no image for {kind}/{name}/{container}",
                image.unwrap_or_default()
            ),
            format!(
                "declare it under images: in stack.yaml ({{key: SOME_IMAGE, description: ..., containers: [{kind}/{name}/{container}]}}), or use a public pinned image"
            ),
        )),
        _ => None,
    }
}

/// Checks, once every object is loaded, that each declared container exists and that no
/// profile's overlay replaces a user-named image.
pub(crate) fn check(
    path: &str,
    images: &[(ImageDecl, usize)],
    stages: &[Stage],
    sections: &[(String, &BTreeMap<String, PlacedOverlay>)],
) -> Result<(), StackError> {
    for (decl, line) in images {
        for c in &decl.containers {
            let objects: Vec<&Value> = stages
                .iter()
                .flat_map(|s| &s.objects)
                .filter(|o| o.reference.kind == c.kind && o.reference.name == c.name)
                .map(|o| &o.value)
                .collect();
            let found = objects.iter().any(|v| {
                containers(&c.kind, v)
                    .iter()
                    .any(|(_, x)| x.get("name").and_then(Value::as_str) == Some(c.container.as_str()))
            });
            if !found {
                let what = if objects.is_empty() {
                    format!("no {} named {:?} in the stack", c.kind, c.name)
                } else {
                    format!("{}/{} has no container {:?}", c.kind, c.name, c.container)
                };
                return Err(StackError::StackFile {
                    path: path.to_string(),
                    line: *line,
                    message: format!("images: {}: {what}", decl.key),
                    hint: "name a container of the stack's workloads as Kind/name/container".into(),
                });
            }
            for (section, overlays) in sections {
                let key = format!("{}/{}", c.kind, c.name);
                if let Some(placed) = overlays.get(&key)
                    && placed
                        .overlay
                        .containers
                        .get(&c.container)
                        .is_some_and(|o| o.image.is_some())
                {
                    return Err(StackError::StackFile {
                        path: path.to_string(),
                        line: placed.line,
                        message: format!(
                            "{section}.{key}: container {} sets image, but its image is the user's ({})",
                            c.container, decl.key
                        ),
                        hint: "leave image out of the overlay: the user names this image with --image".into(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Builds a `Place`-carrying loader error for the placeholder rule.
pub(crate) fn rule_error(at: Place, message: String, hint: String) -> StackError {
    StackError::Image { at, message, hint }
}
