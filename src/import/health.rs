//! `healthcheck` → probes, `deploy.resources` (and the older `cpus`/`mem_limit`) → requests and
//! limits, NVIDIA device reservations → GPU shares.
//!
//! Compose health checks (compose-spec `05-services.md`, "healthcheck"): `test` is
//! `["CMD", args...]`, `["CMD-SHELL", "line"]`, a string (as CMD-SHELL) or `["NONE"]`;
//! `interval` and `timeout` default to 30s, `retries` to 3, `start_period` to 0. A check that
//! only fetches a URL of the container itself (`curl -f http://localhost:8080/health`) becomes an
//! `httpGet` probe, which needs no curl in the image; others run as `exec`.
//!
//! GPUs: `deploy.resources.reservations.devices` with `capabilities: [gpu]` (driver nvidia or
//! unset), or `gpus:`. On GPU profiles the service gets `gpu: N` in stack.yaml, which is N
//! time-sliced shares (`nvidia.com/gpu`), not N whole GPUs; `count: all` maps to one share: on a
//! time-sliced node a share is the whole GPU, taken in turns, and a pod cannot ask for "all".

use super::service::{Ctx, Service};
use super::variables::shell_text;
use super::{ImportError, Level};
use serde_json::{Map, Value, json};

/// Seconds of a compose duration (`1m30s`, `10s`, `500ms`, `1h`); None when not one.
pub fn duration_s(d: &str) -> Option<u64> {
    let mut total_ms: u64 = 0;
    let mut num = String::new();
    let mut chars = d.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let unit_ms = match c {
            'h' => 3_600_000.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1.0
            }
            'm' => 60_000.0,
            's' => 1000.0,
            'u' | 'µ' | 'n' => {
                chars.next();
                0.0
            }
            _ => return None,
        };
        total_ms += (n * unit_ms) as u64;
        any = true;
    }
    if !num.is_empty() {
        return None;
    }
    any.then(|| total_ms.div_ceil(1000))
}

pub fn health(ctx: &mut Ctx, s: &mut Service, m: &Map<String, Value>, base: &str) -> Result<(), ImportError> {
    let Some(h) = m.get("healthcheck").and_then(Value::as_object) else {
        return Ok(());
    };
    let p = format!("{base}/healthcheck");
    if h.get("disable") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    let test: Vec<String> = match h.get("test") {
        Some(Value::String(t)) => vec!["CMD-SHELL".into(), t.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(super::compose::scalar).collect(),
        None => return Ok(()),
        _ => {
            return Err(ctx.bad(
                &format!("{p}/test"),
                "healthcheck test is neither a string nor a list",
                "write [\"CMD\", ...] or [\"CMD-SHELL\", \"...\"]",
            ));
        }
    };
    let secs = |k: &str, default: u64| h.get(k).and_then(Value::as_str).and_then(duration_s).unwrap_or(default);
    let period = secs("interval", 30).max(1);
    let timeout = secs("timeout", 30).max(1);
    let start = secs("start_period", 0);
    let retries = h.get("retries").and_then(Value::as_u64).unwrap_or(3).max(1);
    let action = match test.first().map(String::as_str) {
        Some("NONE") => return Ok(()),
        Some("CMD") => {
            let mut words = Vec::new();
            let mut secret = false;
            for w in &test[1..] {
                let before = s.secret_env.len();
                let word = shell_text(ctx, s, w, &format!("{p}/test"))?;
                // A word that used a secret now holds `${NAME}`; an exec probe runs no shell, so
                // the check runs under one that expands it from the container's environment.
                secret |= s.secret_env.len() != before || crate::import::secrets::sensitive_ref(w);
                words.push(word);
            }
            match http_get(&words, s) {
                Some(g) if !secret => g,
                _ if secret => {
                    let quoted: Vec<String> = words
                        .iter()
                        .map(|w| {
                            format!(
                                "\"{}\"",
                                w.replace('\\', "\\\\").replace('"', "\\\"").replace('`', "\\`")
                            )
                        })
                        .collect();
                    json!({"exec": {"command": ["/bin/sh", "-c", quoted.join(" ")]}})
                }
                _ => json!({"exec": {"command": words}}),
            }
        }
        Some("CMD-SHELL") => {
            let line = shell_text(
                ctx,
                s,
                test.get(1).map(String::as_str).unwrap_or(""),
                &format!("{p}/test"),
            )?;
            let words = super::variables::shell_words(&line).unwrap_or_default();
            match http_get(&words, s) {
                Some(g) if !line.contains(['|', '&', ';', '>', '<']) => g,
                _ => json!({"exec": {"command": ["/bin/sh", "-c", line]}}),
            }
        }
        _ => {
            return Err(ctx.bad(
                &format!("{p}/test"),
                "healthcheck test starts with neither CMD, CMD-SHELL nor NONE",
                "write [\"CMD\", ...] or [\"CMD-SHELL\", \"...\"]",
            ));
        }
    };
    let mut probe = action.as_object().cloned().unwrap_or_default();
    probe.insert("periodSeconds".into(), json!(period));
    probe.insert("timeoutSeconds".into(), json!(timeout));
    probe.insert("failureThreshold".into(), json!(retries));
    s.readiness = Some(Value::Object(probe.clone()));
    // Liveness waits out the start period, then gives the check the same tolerance.
    probe.insert("initialDelaySeconds".into(), json!(start.max(period)));
    s.liveness = Some(Value::Object(probe));
    Ok(())
}

/// `curl -f http://localhost:8080/x` or `wget -q --spider http://127.0.0.1/x` → httpGet.
fn http_get(words: &[String], s: &Service) -> Option<Value> {
    let tool = words.first()?.rsplit('/').next()?;
    if tool != "curl" && tool != "wget" {
        return None;
    }
    let urls: Vec<&String> = words.iter().filter(|w| w.starts_with("http://")).collect();
    let [url] = urls.as_slice() else { return None };
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()?),
        None => (hostport, 80),
    };
    if !["localhost", "127.0.0.1", "0.0.0.0", "[::1]"].contains(&host) {
        return None;
    }
    let port = match s.ports.iter().find(|p| p.container == port) {
        Some(p) => json!(p.name),
        None => json!(port),
    };
    Some(json!({"httpGet": {"path": path, "port": port}}))
}

/// Compose CPUs (`0.5`, `"2"`) → a Kubernetes quantity (`500m`, `2`).
fn cpu(v: &Value) -> Option<String> {
    let n: f64 = super::compose::scalar(v)?.parse().ok()?;
    if n <= 0.0 {
        return None;
    }
    let milli = (n * 1000.0).round() as u64;
    Some(if milli % 1000 == 0 {
        format!("{}", milli / 1000)
    } else {
        format!("{milli}m")
    })
}

/// Compose byte values (`512M`, `1gb`, `1073741824`; units of 1024) → `512Mi`, `1Gi`.
pub fn memory(v: &Value) -> Option<String> {
    let s = super::compose::scalar(v)?.to_ascii_lowercase();
    let s = s.trim().trim_end_matches('b');
    let (num, mult): (&str, u64) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let bytes = (num.trim().parse::<f64>().ok()? * mult as f64) as u64;
    let mi = bytes.div_ceil(1 << 20).max(1);
    Some(if mi % 1024 == 0 {
        format!("{}Gi", mi / 1024)
    } else {
        format!("{mi}Mi")
    })
}

pub fn resources(ctx: &mut Ctx, s: &mut Service, m: &Map<String, Value>, base: &str) -> Result<(), ImportError> {
    let r = m.get("deploy").and_then(|d| d.get("resources"));
    let p = format!("{base}/deploy/resources");
    let get = |section: &str, key: &str| r.and_then(|r| r.get(section)).and_then(|x| x.get(key)).cloned();
    let set = |into: &mut Map<String, Value>, k: &str, v: Option<Value>, conv: fn(&Value) -> Option<String>| {
        if let Some(q) = v.as_ref().and_then(conv) {
            into.insert(k.into(), json!(q));
        }
    };
    set(
        &mut s.limits,
        "cpu",
        get("limits", "cpus").or_else(|| m.get("cpus").cloned()),
        cpu,
    );
    set(
        &mut s.limits,
        "memory",
        get("limits", "memory").or_else(|| m.get("mem_limit").cloned()),
        memory,
    );
    set(&mut s.requests, "cpu", get("reservations", "cpus"), cpu);
    set(
        &mut s.requests,
        "memory",
        get("reservations", "memory").or_else(|| m.get("mem_reservation").cloned()),
        memory,
    );

    let mut devices: Vec<Value> = get("reservations", "devices")
        .and_then(|d| d.as_array().cloned())
        .unwrap_or_default();
    if m.get("runtime").and_then(Value::as_str) == Some("nvidia") && devices.is_empty() && m.get("gpus").is_none() {
        devices.push(json!({"capabilities": ["gpu"], "count": 1}));
    }
    if let Some(g) = m.get("gpus") {
        devices.push(
            json!({"capabilities": ["gpu"], "count": g.as_str().map(|_| json!("all")).unwrap_or_else(|| g.clone())}),
        );
    }
    for (i, d) in devices.iter().enumerate() {
        let dp = format!("{p}/reservations/devices/{i}");
        let d = super::variables::resolve_value(ctx, d, &dp)?;
        let caps: Vec<&str> = d
            .get("capabilities")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let driver = d.get("driver").and_then(Value::as_str).unwrap_or("nvidia");
        if !caps.contains(&"gpu") || driver != "nvidia" {
            ctx.note(Level::Refusal, &s.compose, "devices", format!("device reservation (driver {driver}, capabilities {caps:?}) is not an NVIDIA GPU: kstrap carries only NVIDIA GPUs"), &dp);
            continue;
        }
        let ids = d.get("device_ids").and_then(Value::as_array).map(Vec::len);
        let count = match d.get("count").and_then(super::compose::scalar).as_deref() {
            Some("all") | None if ids.is_none() => {
                ctx.note(Level::Warning, &s.compose, "gpu", "count: all → 1 time-sliced GPU share on GPU profiles (a share is the whole GPU, taken in turns); without a GPU it runs on the CPU", &dp);
                1
            }
            None => {
                ctx.note(
                    Level::Warning,
                    &s.compose,
                    "gpu",
                    "device_ids are not carried: the scheduler picks the GPU",
                    &dp,
                );
                ids.unwrap_or(1) as u32
            }
            Some(n) => n.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ctx.bad(
                    &dp,
                    format!("GPU count {n:?} is neither a number nor all"),
                    "write count: 1 or count: all",
                )
            })?,
        };
        if count > 1 {
            ctx.note(
                Level::Warning,
                &s.compose,
                "gpu",
                format!("count: {count} → {count} time-sliced shares, which on a one-GPU node are the same GPU"),
                &dp,
            );
        }
        s.gpu = Some(s.gpu.unwrap_or(0) + count);
    }
    // Defaults where the file says nothing: every container is sized and limited.
    let (req_cpu, req_mem, lim_cpu, lim_mem) = if s.gpu.is_some() {
        ("1", "2Gi", "8", "16Gi")
    } else if s.database {
        ("250m", "256Mi", "2", "2Gi")
    } else {
        ("100m", "128Mi", "1", "1Gi")
    };
    for (k, v) in [("cpu", req_cpu), ("memory", req_mem)] {
        s.requests.entry(k.to_string()).or_insert_with(|| json!(v));
    }
    for (k, v) in [("cpu", lim_cpu), ("memory", lim_mem)] {
        s.limits.entry(k.to_string()).or_insert_with(|| json!(v));
    }
    // A request above its limit is not valid: the smaller one gives way.
    for k in ["cpu", "memory"] {
        let req = crate::stack::overlay::quantity_value(s.requests[k].as_str().unwrap_or_default());
        let lim = crate::stack::overlay::quantity_value(s.limits[k].as_str().unwrap_or_default());
        if let (Some(r), Some(l)) = (req, lim)
            && r > l
        {
            let user_limit = get("limits", if k == "cpu" { "cpus" } else { "memory" }).is_some();
            if user_limit {
                s.requests.insert(k.into(), s.limits[k].clone());
            } else {
                s.limits.insert(k.into(), s.requests[k].clone());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_like_compose() {
        assert_eq!(duration_s("1m30s"), Some(90));
        assert_eq!(duration_s("500ms"), Some(1));
        assert_eq!(duration_s("1h"), Some(3600));
        assert_eq!(duration_s("ten"), None);
        assert_eq!(memory(&json!("512M")).as_deref(), Some("512Mi"));
        assert_eq!(memory(&json!("2gb")).as_deref(), Some("2Gi"));
        assert_eq!(memory(&json!(1073741824)).as_deref(), Some("1Gi"));
        assert_eq!(cpu(&json!("0.5")).as_deref(), Some("500m"));
        assert_eq!(cpu(&json!(2)).as_deref(), Some("2"));
    }
}
