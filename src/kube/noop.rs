//! Would a server-side apply change anything? Decided from the live object kstrap already read,
//! so that a re-run sends no write for an object that would not change (an apply that changes
//! nothing is still a request, and on a converged cluster it is nearly all of kstrap's work).
//!
//! A server-side apply of configuration `C` by manager `M` leaves an object as it is exactly when
//! (1) every field of `C` already holds `C`'s value, and (2) the fields `M` owns (its `Apply`
//! entry in `metadata.managedFields`, at `C`'s apiVersion) are exactly the fields of `C`: a field
//! `M` owns but `C` no longer names would be removed, a field `C` names that `M` does not own
//! would be taken into `M`'s set (a managedFields change, a new resourceVersion). Both are checked
//! here; anything unexpected answers "would change", so the apply is sent and the server decides.
//!
//! What the server adds or rewrites must not read as a change, or every run would write again:
//! - defaults on fields `C` does not name (`imagePullPolicy`, a port's `protocol`) are ignored:
//!   only `C`'s fields are compared;
//! - resource quantities are compared by value (`1000m` is stored as `1`; `requests`, `limits`,
//!   `capacity`, `hard`, `podFixed`, `sizeLimit` and LimitRange bounds): k8s.io/apimachinery
//!   `resource.Quantity` keeps the canonical form;
//! - numbers are compared by value (`replicas: 1.0` in YAML is stored as `1`);
//! - an empty map, list or null in `C` matches a field the server dropped (`labels: {}`).
//!
//! The fieldsV1 format (k8s.io/apimachinery `metav1.FieldsV1`, structured-merge-diff): `f:<name>`
//! for a field, `k:{...}` for an item of an associative list by its keys, `v:<json>` for an item
//! of a set, `.` for "the item or map itself"; a leaf `{}` on a map or list is an atomic one
//! (a selector, `args`), owned whole.

use serde_json::{Map, Value};

/// Metadata fields no manager owns: identity and what the server sets.
const SERVER_META: [&str; 9] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "selfLink",
];

/// Map keys whose values are `resource.Quantity` maps in the built-in kinds.
const QUANTITY_MAPS: [&str; 10] = [
    "requests",
    "limits",
    "capacity",
    "hard",
    "podFixed",
    "default",
    "defaultRequest",
    "max",
    "min",
    "maxLimitRequestRatio",
];

/// Whether applying `applied` (the configuration kstrap sends) as field manager `manager` to
/// the live object `live` (as the API server returned it, with `metadata.managedFields`) would
/// leave it unchanged. `false` whenever in doubt.
pub fn apply_is_noop(live: &Value, applied: &Value, manager: &str) -> bool {
    let Some(api_version) = applied.get("apiVersion").and_then(Value::as_str) else {
        return false;
    };
    let entries = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mine: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e.get("manager").and_then(Value::as_str) == Some(manager)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
                && e.get("subresource").and_then(Value::as_str).unwrap_or("").is_empty()
        })
        .collect();
    let [entry] = mine.as_slice() else {
        return false;
    };
    if entry.get("apiVersion").and_then(Value::as_str) != Some(api_version)
        || entry.get("fieldsType").and_then(Value::as_str) != Some("FieldsV1")
    {
        return false;
    }
    let Some(fields) = entry.get("fieldsV1").and_then(Value::as_object) else {
        return false;
    };
    let config = owned_part(applied);
    let mut fields = fields.clone();
    if let Some(Value::Object(meta)) = fields.get_mut("f:metadata") {
        for k in SERVER_META {
            meta.remove(&format!("f:{k}"));
        }
        if meta.keys().all(|k| k == ".") {
            fields.remove("f:metadata");
        }
    }
    same_values(live, &config, false) && owns_exactly(&fields, &config, live)
}

/// The fields of `applied` a manager owns: no apiVersion, kind, identity or server metadata.
fn owned_part(applied: &Value) -> Value {
    let mut v = applied.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        map.remove("status");
        let empty_meta = match map.get_mut("metadata").and_then(Value::as_object_mut) {
            Some(meta) => {
                for k in SERVER_META {
                    meta.remove(k);
                }
                meta.is_empty()
            }
            None => false,
        };
        if empty_meta {
            map.remove("metadata");
        }
    }
    v
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Whether every field of `want` holds the same value in `have` (see the module notes on what
/// "the same" allows). `quantity`: the values here are resource quantities.
fn same_values(have: &Value, want: &Value, quantity: bool) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, wv)| match h.get(k) {
            Some(hv) => {
                // Inside a map of quantities every value is one; so is a `sizeLimit`; and a map
                // under one of QUANTITY_MAPS holds them.
                let q = quantity || k == "sizeLimit";
                match (hv, wv) {
                    (Value::Object(_), Value::Object(_)) => same_values(hv, wv, QUANTITY_MAPS.contains(&k.as_str())),
                    _ => same_values(hv, wv, q),
                }
            }
            None => is_empty(wv),
        }),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(a, b)| same_values(a, b, false))
        }
        (Value::Number(h), Value::Number(w)) => h == w || h.as_f64().is_some_and(|h| Some(h) == w.as_f64()),
        (h, w) if h == w => true,
        (Value::Null, w) => is_empty(w),
        (h, w) if quantity => match (quantity_text(h), quantity_text(w)) {
            (Some(h), Some(w)) => matches!((parse_quantity(&h), parse_quantity(&w)), (Some(a), Some(b)) if a == b),
            _ => false,
        },
        _ => false,
    }
}

fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether the fieldsV1 set `node` names exactly the fields of `want` (`have`: the live value at
/// the same place, whose defaulted list keys the set's `k:{...}` entries carry).
fn owns_exactly(node: &Map<String, Value>, want: &Value, have: &Value) -> bool {
    let children: Vec<(&String, &Value)> = node.iter().filter(|(k, _)| k.as_str() != ".").collect();
    match want {
        Value::Object(w) => {
            if children.is_empty() {
                // An atomic map owned whole, or an empty one.
                return true;
            }
            if children.len() != w.len() {
                return false;
            }
            children.iter().all(|(k, sub)| {
                let (Some(name), Some(sub)) = (k.strip_prefix("f:"), sub.as_object()) else {
                    return false;
                };
                match w.get(name) {
                    Some(wv) => owns_exactly(sub, wv, have.get(name).unwrap_or(&Value::Null)),
                    None => false,
                }
            })
        }
        Value::Array(w) => {
            if children.is_empty() {
                // An atomic list owned whole (or an empty one).
                return true;
            }
            if children.len() != w.len() {
                return false;
            }
            let live = have.as_array().map(Vec::as_slice).unwrap_or_default();
            let mut used = vec![false; children.len()];
            w.iter().enumerate().all(|(i, item)| {
                let live_item = live.get(i).unwrap_or(&Value::Null);
                let found = children
                    .iter()
                    .enumerate()
                    .position(|(j, (k, _))| !used[j] && list_key_matches(k, item, live_item));
                let Some(j) = found else { return false };
                used[j] = true;
                match children[j].1.as_object() {
                    Some(sub) => owns_exactly(sub, item, live_item),
                    None => false,
                }
            })
        }
        // A scalar: owned, with nothing below it.
        _ => children.is_empty(),
    }
}

/// Whether the fieldsV1 list-item key `key` (`k:{"name":"c"}`, `v:"x"`) names this item.
fn list_key_matches(key: &str, want: &Value, have: &Value) -> bool {
    if let Some(json) = key.strip_prefix("k:") {
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(json) else {
            return false;
        };
        keys.iter().all(|(k, v)| {
            let got = have.get(k).or_else(|| want.get(k));
            got.is_some_and(|g| same_values(g, v, false))
        })
    } else if let Some(json) = key.strip_prefix("v:") {
        serde_json::from_str::<Value>(json).is_ok_and(|v| v == *want || v == *have)
    } else {
        false
    }
}

/// A `resource.Quantity` ("1", "1000m", "0.5", "1Gi", "1e3") in nano-units (binary suffixes
/// multiplied out); None if it is not one or is finer than a nano-unit.
pub fn parse_quantity(s: &str) -> Option<i128> {
    let s = s.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number.len() > 30 {
        return None;
    }
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other => {
            let e = other.strip_prefix('e').or_else(|| other.strip_prefix('E'))?;
            (e.parse::<i32>().ok().filter(|e| e.abs() <= 18)?, 0)
        }
    };
    let scale = exp10 + 9 - i32::try_from(frac.len()).ok()?;
    let mut value = digits.checked_mul(1i128.checked_shl(exp2)?)?;
    if scale >= 0 {
        value = value.checked_mul(10i128.checked_pow(scale.unsigned_abs())?)?;
    } else {
        let div = 10i128.checked_pow(scale.unsigned_abs())?;
        if value % div != 0 {
            return None;
        }
        value /= div;
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests;
