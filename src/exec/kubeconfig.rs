//! The user's kubeconfig: the distribution's admin kubeconfig, renamed to context `kstrap`
//! (cluster and user named `kstrap` too), merged into `~/.kube/config` as structured YAML.
//!
//! Merging never edits text: the file is parsed (serde-saphyr) into data, the three `kstrap`
//! entries are replaced or appended, other contexts stay as they are, and `current-context` is
//! set only when none was. A malformed file is an error naming the file and line, and nothing is
//! written. Errors never quote the file: it holds client keys and tokens.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KubeconfigError {
    #[error(
        "{path}: not valid YAML at line {line}, column {column}; nothing was written\n  fix: correct that line (or move the file away), then run again"
    )]
    Syntax { path: String, line: u64, column: u64 },
    #[error("{path}: {problem}; nothing was written\n  fix: {fix}")]
    Shape {
        path: String,
        problem: String,
        fix: &'static str,
    },
}

fn parse(text: &str, path: &str) -> Result<Map<String, Value>, KubeconfigError> {
    let value: Value = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
        KubeconfigError::Syntax {
            path: path.to_string(),
            line,
            column,
        }
    })?;
    match value {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => Err(KubeconfigError::Shape {
            path: path.to_string(),
            problem: "the top level is not a mapping".into(),
            fix: "a kubeconfig is a mapping with clusters, users and contexts",
        }),
    }
}

fn list<'a>(m: &'a mut Map<String, Value>, key: &str, path: &str) -> Result<&'a mut Vec<Value>, KubeconfigError> {
    let entry = m.entry(key.to_string()).or_insert_with(|| Value::Array(Vec::new()));
    if entry.is_null() {
        *entry = Value::Array(Vec::new());
    }
    entry.as_array_mut().ok_or_else(|| KubeconfigError::Shape {
        path: path.to_string(),
        problem: format!("`{key}` is not a list"),
        fix: "each of clusters, users and contexts is a list of {name, ...} entries",
    })
}

/// The single cluster and user of the distribution's admin kubeconfig, as entries named `name`.
pub fn kstrap_entries(admin_yaml: &str, source: &str, name: &str) -> Result<[Value; 3], KubeconfigError> {
    let mut m = parse(admin_yaml, source)?;
    let first = |m: &mut Map<String, Value>, key: &str, inner: &str| -> Result<Value, KubeconfigError> {
        list(m, key, source)?
            .first()
            .and_then(|e| e.get(inner))
            .cloned()
            .ok_or_else(|| KubeconfigError::Shape {
                path: source.to_string(),
                problem: format!("it has no {key} entry"),
                fix: "the distribution writes this file when it starts; check its service logs",
            })
    };
    let cluster = first(&mut m, "clusters", "cluster")?;
    let user = first(&mut m, "users", "user")?;
    Ok([
        serde_json::json!({ "name": name, "cluster": cluster }),
        serde_json::json!({ "name": name, "user": user }),
        serde_json::json!({ "name": name, "context": { "cluster": name, "user": name } }),
    ])
}

/// `existing` (if any) with the `name` entries replaced or added. Returns the new YAML text.
pub fn merge(existing: Option<&str>, path: &str, entries: &[Value; 3], name: &str) -> Result<String, KubeconfigError> {
    let mut m = match existing {
        Some(text) => parse(text, path)?,
        None => Map::new(),
    };
    m.entry("apiVersion").or_insert_with(|| "v1".into());
    m.entry("kind").or_insert_with(|| "Config".into());
    for (key, entry) in ["clusters", "users", "contexts"].iter().zip(entries) {
        let items = list(&mut m, key, path)?;
        match items
            .iter_mut()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        {
            Some(slot) => *slot = entry.clone(),
            None => items.push(entry.clone()),
        }
    }
    let current = m.get("current-context").and_then(Value::as_str).unwrap_or("");
    if current.is_empty() {
        m.insert("current-context".into(), name.into());
    }
    render(&Value::Object(m), path)
}

/// Whether `existing` is a kubeconfig `merge` can add the `name` entries to: checked before
/// anything runs (a dry run too), so a malformed ~/.kube/config stops `up` before the cluster is
/// installed rather than after.
pub fn check_mergeable(existing: &str, path: &str) -> Result<(), KubeconfigError> {
    let mut m = parse(existing, path)?;
    for key in ["clusters", "users", "contexts"] {
        list(&mut m, key, path)?;
    }
    Ok(())
}

/// `existing` without the `name` entries. Returns the new text and whether anything else is left
/// in the file (other clusters, users or contexts).
pub fn remove(existing: &str, path: &str, name: &str) -> Result<(String, bool), KubeconfigError> {
    let mut m = parse(existing, path)?;
    let mut others = false;
    for key in ["clusters", "users", "contexts"] {
        let items = list(&mut m, key, path)?;
        items.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
        others |= !items.is_empty();
    }
    if m.get("current-context").and_then(Value::as_str) == Some(name) {
        m.remove("current-context");
    }
    Ok((render(&Value::Object(m), path)?, others))
}

fn render(v: &Value, path: &str) -> Result<String, KubeconfigError> {
    serde_saphyr::to_string(v).map_err(|e| KubeconfigError::Shape {
        path: path.to_string(),
        problem: format!("cannot be written back: {e}"),
        fix: "report this as a kstrap bug",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: Q0E=\nusers:\n- name: default\n  user:\n    token: s3cret\ncontexts:\n- name: default\n  context: {cluster: default, user: default}\ncurrent-context: default\n";

    fn parsed(text: &str) -> Value {
        serde_saphyr::from_str(text).unwrap()
    }

    #[test]
    fn merges_beside_other_contexts_without_taking_current_context() {
        let e = kstrap_entries(ADMIN, "/etc/rancher/k3s/k3s.yaml", "kstrap").unwrap();
        let mine = "apiVersion: v1\nkind: Config\nclusters:\n- name: work\n  cluster: {server: https://work:6443}\nusers:\n- name: me\n  user: {token: abc}\ncontexts:\n- name: work\n  context: {cluster: work, user: me}\ncurrent-context: work\n";
        let out = parsed(&merge(Some(mine), "~/.kube/config", &e, "kstrap").unwrap());
        assert_eq!(out["current-context"], "work");
        let names = |k: &str| -> Vec<String> {
            out[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names("contexts"), ["work", "kstrap"]);
        assert_eq!(names("clusters"), ["work", "kstrap"]);
        assert_eq!(out["clusters"][1]["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(out["users"][1]["user"]["token"], "s3cret");
        assert_eq!(
            out["contexts"][1]["context"],
            serde_json::json!({"cluster": "kstrap", "user": "kstrap"})
        );
        // Merging again changes nothing; removing gives back the other entries only.
        let text = merge(Some(mine), "p", &e, "kstrap").unwrap();
        assert_eq!(merge(Some(&text), "p", &e, "kstrap").unwrap(), text);
        let (rest, others) = remove(&text, "p", "kstrap").unwrap();
        assert!(others);
        assert_eq!(parsed(&rest), parsed(mine));
    }

    #[test]
    fn a_new_file_gets_current_context_and_removal_leaves_it_empty() {
        let e = kstrap_entries(ADMIN, "src", "kstrap").unwrap();
        let text = merge(None, "p", &e, "kstrap").unwrap();
        assert_eq!(parsed(&text)["current-context"], "kstrap");
        let (_, others) = remove(&text, "p", "kstrap").unwrap();
        assert!(!others);
    }

    #[test]
    fn malformed_existing_file_names_file_and_line_and_never_quotes_it() {
        let e = kstrap_entries(ADMIN, "src", "kstrap").unwrap();
        let bad = "apiVersion: v1\nusers:\n- name: me\n  user: {token: topsecret\n";
        let err = merge(Some(bad), "/home/ada/.kube/config", &e, "kstrap").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/home/ada/.kube/config: not valid YAML at line"),
            "{msg}"
        );
        assert!(!msg.contains("topsecret"), "{msg}");
        let err = merge(Some("clusters: 3\n"), "/k", &e, "kstrap").unwrap_err();
        assert!(err.to_string().contains("`clusters` is not a list"), "{err}");
        let err = kstrap_entries("kind: Config\n", "/etc/rancher/k3s/k3s.yaml", "kstrap").unwrap_err();
        assert!(err.to_string().contains("has no clusters entry"), "{err}");
    }
}
