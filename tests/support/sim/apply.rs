//! Write semantics of the simulated API server (test double): server-side apply with field
//! managers (simplified structured-merge-diff: maps merge, lists are atomic), conflicts and force,
//! removal of fields a manager stopped applying, `Update` managers for PUT/merge patches, JSON merge
//! patch, `metadata.generation` bumps, `managedFields` rendering, and the immutable fields update
//! validation refuses to change (a Job's pod template).

use serde_json::{Map, Value, json};

use super::store::{ManagerEntry, now_rfc3339};

type Path = Vec<String>;

/// Fields no manager owns (identity and server-set metadata).
const SERVER_META: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
];

/// The part of a request body a manager owns: no apiVersion/kind/identity/server metadata; no
/// status on the main resource when the kind has a status subresource; only status on `/status`.
pub fn owned_part(body: &Value, has_status: bool, to_status: bool) -> Value {
    let mut v = body.clone();
    let Some(map) = v.as_object_mut() else { return json!({}) };
    map.remove("apiVersion");
    map.remove("kind");
    if to_status {
        let status = map.remove("status");
        let mut out = Map::new();
        if let Some(st) = status {
            out.insert("status".into(), st);
        }
        return Value::Object(out);
    }
    if has_status {
        map.remove("status");
    }
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in SERVER_META {
            meta.remove(k);
        }
        meta.remove("deletionGracePeriodSeconds");
        if meta.is_empty() {
            map.remove("metadata");
        }
    }
    v
}

pub fn leaf_paths(v: &Value) -> Vec<Path> {
    fn walk(v: &Value, prefix: &mut Path, out: &mut Vec<Path>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, c) in m {
                    prefix.push(k.clone());
                    walk(c, prefix, out);
                    prefix.pop();
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.push(prefix.clone())
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

pub fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn set_path(v: &mut Value, path: &[String], value: Value) {
    let mut cur = v;
    for p in &path[..path.len() - 1] {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("object")
            .entry(p.clone())
            .or_insert_with(|| json!({}));
    }
    if !cur.is_object() {
        *cur = json!({});
    }
    cur.as_object_mut()
        .expect("object")
        .insert(path[path.len() - 1].clone(), value);
}

/// Remove a field and then any map on its path left empty (never the top-level sections).
pub fn remove_path(v: &mut Value, path: &[String]) {
    fn rec(v: &mut Value, path: &[String], depth: usize) {
        let Some(m) = v.as_object_mut() else { return };
        if path.len() == 1 {
            m.remove(&path[0]);
            return;
        }
        if let Some(child) = m.get_mut(&path[0]) {
            rec(child, &path[1..], depth + 1);
            if depth >= 1 && child.as_object().is_some_and(|c| c.is_empty()) {
                m.remove(&path[0]);
            }
        }
    }
    if !path.is_empty() {
        rec(v, path, 0);
    }
}

/// SSA merge: maps merge recursively, everything else (lists included) is replaced.
pub fn merge_apply(target: &mut Value, cfg: &Value) {
    match (target.as_object_mut(), cfg.as_object()) {
        (Some(t), Some(c)) => {
            for (k, v) in c {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge_apply(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = cfg.clone(),
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch.as_object() {
        Some(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        None => *target = patch.clone(),
    }
}

/// Everything outside metadata and status (what bumps `metadata.generation`).
pub fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// The field of `new` that kube-apiserver's update validation refuses to change from `old`, if
/// any, with its new value. A Job's `spec.template` is immutable (`ValidateJobSpecUpdate` in
/// pkg/apis/batch/validation: `field is immutable`); the scheduling directives a suspended Job
/// that never started may change are not simulated.
pub fn immutable_change(group: &str, kind: &str, old: &Value, new: &Value) -> Option<(&'static str, Value)> {
    if group == "batch" && kind == "Job" {
        let template = |v: &Value| v.pointer("/spec/template").cloned().unwrap_or(Value::Null);
        if template(old) != template(new) {
            return Some(("spec.template", template(new)));
        }
    }
    None
}

/// How a conflicting manager is printed, as `printManager` in k8s.io/apiserver's fieldmanager.
pub fn print_manager(e: &ManagerEntry) -> String {
    let mut s = format!("{:?}", e.manager);
    if let Some(sub) = &e.subresource {
        s = format!("{s} with subresource {sub:?}");
    }
    if e.operation == "Update" {
        format!("{s} using {}", e.api_version)
    } else {
        s
    }
}

pub fn dotted(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

pub struct Conflict {
    pub manager: String,
    pub field: String,
}

/// Server-side apply of `body` by `manager` onto `existing` (None: create). Updates `entries`.
#[allow(clippy::too_many_arguments)]
pub fn ssa(
    existing: Option<&Value>,
    body: &Value,
    entries: &mut Vec<ManagerEntry>,
    manager: &str,
    force: bool,
    sub: Option<&str>,
    has_status: bool,
    api_version: &str,
) -> Result<Value, Vec<Conflict>> {
    let cfg = owned_part(body, has_status, sub == Some("status"));
    let is_mine = |e: &ManagerEntry| e.manager == manager && e.operation == "Apply" && e.subresource.as_deref() == sub;
    let leaves = leaf_paths(&cfg);
    let mut conflicts = Vec::new();
    let mut stolen: Vec<(usize, Path)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if is_mine(e) {
            continue;
        }
        for leaf in &leaves {
            if let Some(theirs) = get_path(&e.fields, leaf)
                && Some(theirs) != get_path(&cfg, leaf)
            {
                conflicts.push(Conflict {
                    manager: print_manager(e),
                    field: dotted(leaf),
                });
                stolen.push((i, leaf.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for (i, leaf) in stolen {
        remove_path(&mut entries[i].fields, &leaf);
    }
    entries.retain(|e| is_mine(e) || !leaf_paths(&e.fields).is_empty());

    let mut obj = match existing {
        Some(o) => o.clone(),
        None => {
            let mut o = json!({"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": {"name": body["metadata"]["name"]}});
            if let Some(ns) = body.pointer("/metadata/namespace") {
                o["metadata"]["namespace"] = ns.clone();
            }
            o
        }
    };
    // Fields this manager applied before and no longer applies: removed unless someone else owns them.
    if let Some(prev) = entries.iter().find(|e| is_mine(e)) {
        for leaf in leaf_paths(&prev.fields) {
            if get_path(&cfg, &leaf).is_some() {
                continue;
            }
            let owned_elsewhere = entries
                .iter()
                .any(|e| !is_mine(e) && get_path(&e.fields, &leaf).is_some());
            if !owned_elsewhere {
                remove_path(&mut obj, &leaf);
            }
        }
    }
    merge_apply(&mut obj, &cfg);
    let now = now_rfc3339();
    match entries.iter_mut().find(|e| is_mine(e)) {
        Some(e) => {
            if e.fields != cfg {
                e.fields = cfg;
                e.time = now;
                e.api_version = api_version.to_string();
            }
        }
        None => entries.push(ManagerEntry {
            manager: manager.to_string(),
            operation: "Apply",
            subresource: sub.map(str::to_string),
            api_version: api_version.to_string(),
            fields: cfg,
            time: now,
        }),
    }
    Ok(obj)
}

/// Record an `Update` (PUT, merge patch) by `manager`: it takes over the fields it changed; fields
/// it removed are no longer owned by anyone.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    entries: &mut Vec<ManagerEntry>,
    manager: &str,
    sub: Option<&str>,
    has_status: bool,
    api_version: &str,
) {
    let to_status = sub == Some("status");
    let new_owned = owned_part(new, has_status, to_status);
    let old_owned = old
        .map(|o| owned_part(o, has_status, to_status))
        .unwrap_or_else(|| json!({}));
    let mut changed = Vec::new();
    for leaf in leaf_paths(&new_owned) {
        if get_path(&old_owned, &leaf) != get_path(&new_owned, &leaf) {
            changed.push(leaf);
        }
    }
    let removed: Vec<Path> = leaf_paths(&old_owned)
        .into_iter()
        .filter(|l| get_path(&new_owned, l).is_none())
        .collect();
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    let is_mine = |e: &ManagerEntry| e.manager == manager && e.operation == "Update" && e.subresource.as_deref() == sub;
    for e in entries.iter_mut() {
        for leaf in changed.iter().chain(removed.iter()) {
            if !is_mine(e) {
                remove_path(&mut e.fields, leaf);
            }
        }
    }
    let now = now_rfc3339();
    if !entries.iter().any(is_mine) {
        entries.push(ManagerEntry {
            manager: manager.to_string(),
            operation: "Update",
            subresource: sub.map(str::to_string),
            api_version: api_version.to_string(),
            fields: json!({}),
            time: now.clone(),
        });
    }
    for e in entries.iter_mut() {
        if is_mine(e) {
            for leaf in &changed {
                if let Some(v) = get_path(&new_owned, leaf) {
                    set_path(&mut e.fields, leaf, v.clone());
                }
            }
            for leaf in &removed {
                remove_path(&mut e.fields, leaf);
            }
            e.time = now.clone();
        }
    }
    entries.retain(|e| !leaf_paths(&e.fields).is_empty());
}

fn fields_v1(v: &Value, top: bool) -> Value {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            let mut out = Map::new();
            if !top {
                out.insert(".".into(), json!({}));
            }
            for (k, c) in m {
                out.insert(format!("f:{k}"), fields_v1(c, false));
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

pub fn managed_fields(entries: &[ManagerEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                let mut m = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                    "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": fields_v1(&e.fields, true)});
                if let Some(sub) = &e.subresource {
                    m["subresource"] = json!(sub);
                }
                m
            })
            .collect(),
    )
}

/// The field manager a non-apply write is recorded under when the client names none: the
/// apiserver uses the User-Agent's program name.
pub fn default_manager(user_agent: &str) -> String {
    let prog = user_agent.split('/').next().unwrap_or("").trim();
    if prog.is_empty() {
        "unknown".to_string()
    } else {
        prog.to_string()
    }
}

/// RFC 1123 subdomain check used for metadata.name (most kinds).
pub fn invalid_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        None
    } else {
        Some("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string())
    }
}
