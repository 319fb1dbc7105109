//! Reading Compose files: YAML through the stack loader's line-keeping reader (serde-saphyr;
//! anchors and `<<` merge keys included), several files merged the way `docker compose -f a -f
//! b` merges them (compose-spec `13-merge.md`: mappings merge key by key, later wins; `ports`,
//! `expose`, `volumes`, `env_file`, `dns`, `extra_hosts` and `secrets` append; `command`,
//! `entrypoint` and `healthcheck.test` are replaced; `environment` and `labels` merge by name
//! whether written as lists or mappings).
//!
//! Why not a Compose crate: `docker-compose-types` 0.24 (the maintained one on crates.io) needs
//! serde_yaml (deprecated), serde_yml or serde_norway as its value type, and its typed structs
//! keep no lines; kstrap's errors must name the file and line of each bad field.

use super::{At, ImportError};
use crate::stack::yaml::{self, Doc};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One Compose file as read.
pub struct Source {
    pub path: String,
    pub(crate) doc: Doc,
}

/// The merged project: each service's definition and the files it came from.
pub struct Project {
    pub sources: Vec<Source>,
    /// The folder relative paths (build contexts, env files, bind mounts) are resolved from:
    /// the first file's folder, as compose does.
    pub dir: PathBuf,
    /// `name:` of the project, if a file sets it.
    pub name: Option<String>,
    /// The merged top level (services included).
    pub top: Map<String, Value>,
}

impl Project {
    /// Where a field of the merged document was written: the last file that has it (later
    /// files win), else the nearest ancestor's line there.
    pub fn at(&self, pointer: &str) -> At {
        for s in self.sources.iter().rev() {
            if s.doc.lines.contains_key(pointer) {
                return At {
                    file: s.path.clone(),
                    line: s.doc.line_of(pointer),
                };
            }
        }
        let s = self
            .sources
            .iter()
            .rev()
            .find(|s| s.doc.value.pointer(pointer).is_some());
        let s = s.or(self.sources.last());
        match s {
            Some(s) => At {
                file: s.path.clone(),
                line: s.doc.line_of(pointer),
            },
            None => At {
                file: String::new(),
                line: 0,
            },
        }
    }

    pub fn services(&self) -> Vec<(&String, &Value)> {
        self.top
            .get("services")
            .and_then(Value::as_object)
            .map(|m| m.iter().collect())
            .unwrap_or_default()
    }
}

/// Reads and merges the files, in order.
pub fn load(files: &[PathBuf]) -> Result<Project, ImportError> {
    let mut sources = Vec::new();
    for path in files {
        let shown = path.display().to_string();
        let bytes = crate::limits::read_bounded(path).map_err(|e| ImportError::Io {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ImportError::input(&shown, 1, "the file is not UTF-8 text", "save it as UTF-8"))?;
        let docs = yaml::documents(&text).map_err(|e| ImportError::input(&shown, e.line, e.message, e.hint))?;
        let mut docs = docs.into_iter();
        let Some(doc) = docs.next() else {
            return Err(ImportError::input(
                &shown,
                1,
                "the file is empty",
                "give a Compose file with a services: section",
            ));
        };
        if let Some(extra) = docs.next() {
            return Err(ImportError::input(
                &shown,
                extra.line,
                "a second YAML document: a Compose file holds one",
                "put each project in a file of its own",
            ));
        }
        if !doc.value.is_object() {
            return Err(ImportError::input(
                &shown,
                doc.line,
                "the file is not a mapping",
                "a Compose file is a mapping with a services: section",
            ));
        }
        sources.push(Source { path: shown, doc });
    }
    let mut top = Map::new();
    for s in &sources {
        if let Value::Object(m) = &s.doc.value {
            merge_map(&mut top, m, "");
        }
    }
    let first = sources.first().map(|s| s.path.clone()).unwrap_or_default();
    match top.get("services") {
        Some(Value::Object(m)) if !m.is_empty() => {}
        _ => {
            return Err(ImportError::input(
                &first,
                1,
                "no services: a Compose file for kstrap defines at least one service",
                "add a services: mapping, or name the right file",
            ));
        }
    }
    let dir = files
        .first()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let name = top.get("name").and_then(Value::as_str).map(str::to_string);
    Ok(Project {
        sources,
        dir,
        name,
        top,
    })
}

/// Sequences that `docker compose` appends when files are merged.
const APPENDED: &[&str] = &[
    "ports",
    "expose",
    "volumes",
    "env_file",
    "dns",
    "extra_hosts",
    "secrets",
    "configs",
    "cap_add",
];
/// Fields whose list form is a mapping by name.
const BY_NAME: &[&str] = &["environment", "labels"];

fn merge_map(into: &mut Map<String, Value>, from: &Map<String, Value>, path: &str) {
    for (k, v) in from {
        let here = format!("{path}/{k}");
        let in_service = path.starts_with("/services/") && path.matches('/').count() == 2;
        match (into.get_mut(k), v) {
            (Some(old), new) if in_service && BY_NAME.contains(&k.as_str()) => {
                let mut merged = as_name_map(old);
                merged.extend(as_name_map(new));
                *old = Value::Object(merged);
            }
            (Some(Value::Array(old)), Value::Array(new)) if in_service && APPENDED.contains(&k.as_str()) => {
                for item in new {
                    if !old.contains(item) {
                        old.push(item.clone());
                    }
                }
            }
            (Some(Value::Object(old)), Value::Object(new)) if k != "command" && k != "entrypoint" => {
                merge_map(old, new, &here)
            }
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `environment`/`labels` as a mapping: `[A=1, B]` → `{A: "1", B: null}`.
pub fn as_name_map(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| match s.split_once('=') {
                Some((k, v)) => (k.to_string(), Value::String(v.to_string())),
                None => (s.to_string(), Value::Null),
            })
            .collect(),
        _ => Map::new(),
    }
}

/// A scalar as compose reads it: strings, numbers and booleans as text.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_merge_over_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, "services:\n  web:\n    image: nginx:1.27\n    ports: ['80:80']\n    environment: [A=1, B=2]\n    command: [a, b]\n").unwrap();
        std::fs::write(
            &b,
            "services:\n  web:\n    ports: ['443:443']\n    environment: {B: '3'}\n    command: [c]\n",
        )
        .unwrap();
        let p = load(&[a, b]).unwrap();
        let web = &p.top["services"]["web"];
        assert_eq!(web["ports"], serde_json::json!(["80:80", "443:443"]));
        assert_eq!(web["environment"], serde_json::json!({"A": "1", "B": "3"}));
        assert_eq!(web["command"], serde_json::json!(["c"]));
        assert_eq!(p.at("/services/web/command").line, 5);
        assert!(p.at("/services/web/command").file.ends_with("b.yaml"));
        assert_eq!(p.at("/services/web/image").line, 3);
    }
}
