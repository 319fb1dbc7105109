//! HTTP layer of the simulated API server (test double): a hyper 1 HTTP/1.1 server, URL routing
//! like kube-apiserver's (`/api/v1/...`, `/apis/{group}/{version}/...`, namespaced and cluster
//! paths, `/status`), request-level faults, request recording, and the verbs (get, list, create,
//! update, patch, delete, deletecollection); watches are handed to `watch`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

use super::apply;
use super::discovery::{self, ResourceType};
use super::faults::Fault;
use super::store::{
    Actor, FieldSelector, LabelSelector, ObjectKey, Propagation, Shared, State, ensure_object, now_rfc3339, s,
};
use super::watch;
use super::{RequestRecord, controllers};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

pub struct Req {
    pub method: String,
    pub path: String,
    pub raw_query: String,
    pub query: HashMap<String, String>,
    pub content_type: String,
    pub accept: String,
    pub user_agent: String,
    pub body: Bytes,
}

pub enum Reply {
    Json(u16, Value, Vec<(&'static str, String)>),
    Text(u16, String),
    Watch(Box<watch::WatchParams>),
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = header(hyper::header::CONTENT_TYPE);
    let accept = header(hyper::header::ACCEPT);
    let user_agent = header(hyper::header::USER_AGENT);
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query: HashMap<String, String> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let r = Req {
        method,
        path,
        raw_query,
        query,
        content_type,
        accept,
        user_agent,
        body,
    };

    let delay = {
        let st = shared.lock();
        st.faults
            .iter()
            .filter_map(|f| match f {
                Fault::Slow { path_contains, delay } if r.path.contains(path_contains.as_str()) => Some(*delay),
                _ => None,
            })
            .max()
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }

    let reply = {
        let mut st = shared.lock();
        let reply = match request_fault(&mut st, &r) {
            Some(reply) => reply,
            None => route(&mut st, &r),
        };
        if !matches!(reply, Reply::Watch(_)) {
            let code = match &reply {
                Reply::Json(c, _, _) | Reply::Text(c, _) => *c,
                Reply::Watch(_) => 200,
            };
            record(&mut st, &r, code);
        } else {
            record(&mut st, &r, 200);
        }
        reply
    };
    shared.notify.notify_one();
    let resp = match reply {
        Reply::Json(code, v, headers) => {
            let mut b = Response::builder()
                .status(code)
                .header("Content-Type", "application/json");
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(full(serde_json::to_vec(&v).unwrap_or_default()))
        }
        Reply::Text(code, t) => Response::builder()
            .status(code)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(full(t)),
        Reply::Watch(params) => Ok(watch::start(shared.clone(), *params)),
    };
    Ok(resp.unwrap_or_else(|_| Response::new(full("response build error"))))
}

fn record(st: &mut State, r: &Req, status: u16) {
    st.requests.push(RequestRecord {
        method: r.method.clone(),
        path: r.path.clone(),
        query: r.raw_query.clone(),
        status,
        content_type: r.content_type.clone(),
    });
}

fn request_fault(st: &mut State, r: &Req) -> Option<Reply> {
    for f in st.faults.iter_mut() {
        match f {
            Fault::ServerError {
                method,
                path_contains,
                times,
            } if *times > 0
                && r.path.contains(path_contains.as_str())
                && method.as_ref().is_none_or(|m| m.eq_ignore_ascii_case(&r.method)) =>
            {
                *times -= 1;
                return Some(Reply::Json(
                    500,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "Internal error occurred: simulated server error (injected fault)",
                        "reason": "InternalError", "details": {"causes": [{"message": "simulated server error (injected fault)"}]},
                        "code": 500}),
                    vec![],
                ));
            }
            Fault::TooManyRequests {
                path_contains,
                times,
                retry_after_s,
            } if *times > 0 && r.path.contains(path_contains.as_str()) => {
                *times -= 1;
                return Some(Reply::Json(
                    429,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "Too many requests, please try again later.", "reason": "TooManyRequests",
                        "details": {"retryAfterSeconds": *retry_after_s}, "code": 429}),
                    vec![("Retry-After", retry_after_s.to_string())],
                ));
            }
            _ => {}
        }
    }
    None
}

pub fn status_reply(code: u16, reason: &str, message: &str, details: Option<Value>) -> Reply {
    let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    if let Some(d) = details {
        v["details"] = d;
    }
    Reply::Json(code, v, vec![])
}

pub fn status_json(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    match status_reply(code, reason, message, details) {
        Reply::Json(_, v, _) => v,
        _ => Value::Null,
    }
}

fn not_found_resource() -> Reply {
    status_reply(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

fn details(rt: &ResourceType, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": rt.plural});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    d
}

fn not_found(rt: &ResourceType, name: &str) -> Reply {
    status_reply(
        404,
        "NotFound",
        &format!("{} {:?} not found", rt.qualified(), name),
        Some(details(rt, name)),
    )
}

fn bad_request(msg: &str) -> Reply {
    status_reply(400, "BadRequest", msg, None)
}

fn invalid(rt: &ResourceType, name: &str, field: &str, value: &str, msg: &str) -> Reply {
    let kind_q = if rt.group.is_empty() {
        rt.kind.clone()
    } else {
        format!("{}.{}", rt.kind, rt.group)
    };
    let cause = format!("Invalid value: {value:?}: {msg}");
    let mut d = json!({"name": name, "kind": rt.kind,
        "causes": [{"reason": "FieldValueInvalid", "message": cause, "field": field}]});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    status_reply(
        422,
        "Invalid",
        &format!("{kind_q} {name:?} is invalid: {field}: {cause}"),
        Some(d),
    )
}

/// Update validation of immutable fields (`apply::immutable_change`): 422 Invalid as
/// kube-apiserver answers, `Job.batch "x" is invalid: spec.template: Invalid value: ...: field
/// is immutable`.
fn immutable(t: &Target, name: &str, old: &Value, new: &Value) -> Option<Reply> {
    let (field, value) = apply::immutable_change(&t.rt.group, &t.rt.kind, old, new)?;
    Some(invalid(&t.rt, name, field, &value.to_string(), "field is immutable"))
}

fn ok_json(v: Value) -> Reply {
    Reply::Json(200, v, vec![])
}

struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn route(st: &mut State, r: &Req) -> Reply {
    let segs: Vec<&str> = r.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["readyz"] | ["livez"] | ["healthz"] => return Reply::Text(200, "ok".into()),
        ["version"] => {
            let minor = st.config.git_version.split('.').nth(1).unwrap_or("35").to_string();
            return ok_json(
                json!({"major": "1", "minor": minor, "emulationMajor": "1", "emulationMinor": minor,
                "gitVersion": st.config.git_version, "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.11",
                "compiler": "gc", "platform": "linux/amd64"}),
            );
        }
        ["api"] => {
            if discovery::wants_aggregated(&r.accept) {
                return Reply::Json(
                    200,
                    discovery::aggregated(&st.resources, true),
                    vec![("Content-Type", discovery::AGGREGATED_CONTENT_TYPE.to_string())],
                );
            }
            return ok_json(discovery::api_versions(&st.addr));
        }
        ["apis"] => {
            if discovery::wants_aggregated(&r.accept) {
                return Reply::Json(
                    200,
                    discovery::aggregated(&st.resources, false),
                    vec![("Content-Type", discovery::AGGREGATED_CONTENT_TYPE.to_string())],
                );
            }
            return ok_json(discovery::api_group_list(&st.resources));
        }
        ["api", v] => {
            return discovery::resource_list(&st.resources, "", v)
                .map(ok_json)
                .unwrap_or_else(not_found_resource);
        }
        ["apis", g] => {
            return discovery::api_group(&st.resources, g)
                .map(ok_json)
                .unwrap_or_else(not_found_resource);
        }
        ["apis", g, v] => {
            return discovery::resource_list(&st.resources, g, v)
                .map(ok_json)
                .unwrap_or_else(not_found_resource);
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return not_found_resource(),
    };
    let (ns, plural, name, sub) = if rest.len() >= 3 && rest[0] == "namespaces" {
        (Some(rest[1]), rest[2], rest.get(3).copied(), rest.get(4).copied())
    } else {
        (None, rest[0], rest.get(1).copied(), rest.get(2).copied())
    };
    if rest.len() > 5 || (ns.is_none() && rest.len() > 3) {
        return not_found_resource();
    }
    let Some(rt) = st
        .resources
        .iter()
        .find(|x| x.group == group && x.version == version && x.plural == plural)
        .cloned()
    else {
        return not_found_resource();
    };
    if (!rt.namespaced && ns.is_some()) || sub.is_some_and(|s| s != "status" || !rt.status) {
        return not_found_resource();
    }
    let t = Target {
        rt,
        namespace: ns.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    };
    let watching = matches!(r.query.get("watch").map(String::as_str), Some("true") | Some("1"));
    match (r.method.as_str(), t.name.is_some()) {
        ("GET", _) if watching => watch_params(st, r, &t),
        ("GET", true) => get(st, &t),
        ("GET", false) => list(st, r, &t),
        ("POST", false) => create(st, r, &t),
        ("PUT", true) => replace(st, r, &t),
        ("PATCH", true) => patch(st, r, &t),
        ("DELETE", true) => delete(st, r, &t),
        ("DELETE", false) => delete_collection(st, r, &t),
        _ => status_reply(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            Some(json!({})),
        ),
    }
}

fn key_for(t: &Target, name: &str) -> ObjectKey {
    ObjectKey::new(
        &t.rt.api_version(),
        &t.rt.kind,
        if t.rt.namespaced { t.namespace.as_deref() } else { None },
        name,
    )
}

fn get(st: &mut State, t: &Target) -> Reply {
    let name = t.name.as_deref().unwrap_or("");
    if t.rt.namespaced && t.namespace.is_none() {
        return not_found_resource();
    }
    match st.objects.get(&key_for(t, name)) {
        Some(o) => ok_json(o.clone()),
        None => not_found(&t.rt, name),
    }
}

fn selectors(r: &Req) -> Result<(LabelSelector, FieldSelector), Reply> {
    let ls = LabelSelector::parse(r.query.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| bad_request(&format!("unable to parse requirement: {e}")))?;
    let fs = FieldSelector::parse(r.query.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| bad_request(&e))?;
    Ok((ls, fs))
}

pub fn matching<'a>(
    st: &'a State,
    rt: &'a ResourceType,
    ns: Option<&'a str>,
    ls: &'a LabelSelector,
    fs: &'a FieldSelector,
) -> impl Iterator<Item = &'a Value> + 'a {
    let av = rt.api_version();
    st.objects
        .iter()
        .filter(move |(k, _)| {
            k.api_version == av && k.kind == rt.kind && (ns.is_none() || k.namespace.as_deref() == ns)
        })
        .map(|(_, v)| v)
        .filter(move |v| ls.matches(v) && fs.matches(v))
}

fn list(st: &mut State, r: &Req, t: &Target) -> Reply {
    let (ls, fs) = match selectors(r) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let items: Vec<Value> = matching(st, &t.rt, t.namespace.as_deref(), &ls, &fs)
        .map(|o| {
            let mut o = o.clone();
            // Typed lists of built-in kinds carry apiVersion/kind on the list only.
            if t.rt.crd.is_none()
                && let Some(m) = o.as_object_mut()
            {
                m.remove("apiVersion");
                m.remove("kind");
            }
            o
        })
        .collect();
    ok_json(
        json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(),
        "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
    )
}

fn watch_params(st: &mut State, r: &Req, t: &Target) -> Reply {
    let (ls, fs) = match selectors(r) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let mut fs = fs;
    if let Some(name) = &t.name {
        // GET .../{name}?watch=true (legacy single-object watch)
        fs = FieldSelector::parse(&format!("metadata.name={name}")).unwrap_or_default();
    }
    let truthy = |k: &str| matches!(r.query.get(k).map(String::as_str), Some("true") | Some("1"));
    Reply::Watch(Box::new(watch::WatchParams {
        rt: t.rt.clone(),
        namespace: t.namespace.clone(),
        resource_version: r.query.get("resourceVersion").cloned().filter(|s| !s.is_empty()),
        bookmarks: truthy("allowWatchBookmarks") && st.config.watch_bookmarks,
        bookmark_interval: st.config.bookmark_interval,
        timeout: r
            .query
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs),
        label: ls,
        field: fs,
        send_initial_events: truthy("sendInitialEvents"),
    }))
}

fn parse_body(r: &Req) -> Result<Value, Reply> {
    let text = std::str::from_utf8(&r.body).map_err(|_| bad_request("body is not UTF-8"))?;
    let v: Value = if r.content_type.contains("yaml") {
        match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => {
                serde_saphyr::from_str::<Value>(text).map_err(|e| bad_request(&format!("error decoding YAML: {e}")))?
            }
        }
    } else {
        serde_json::from_str(text)
            .map_err(|e| bad_request(&format!("couldn't get version/kind; json parse error: {e}")))?
    };
    if !v.is_object() {
        return Err(bad_request(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
        ));
    }
    Ok(v)
}

/// Checks common to writes of whole objects: apiVersion/kind, name, namespace.
fn check_object(
    st: &State,
    t: &Target,
    body: &mut Value,
    url_name: Option<&str>,
    creating: bool,
) -> Result<String, Reply> {
    let av = s(body, &["apiVersion"]).to_string();
    let kind = s(body, &["kind"]).to_string();
    if kind.is_empty() {
        return Err(bad_request(&format!("Object 'Kind' is missing in '{}'", body)));
    }
    if av != t.rt.api_version() {
        return Err(bad_request(&format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            t.rt.api_version()
        )));
    }
    if kind != t.rt.kind {
        return Err(bad_request(&format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            t.rt.kind
        )));
    }
    if let Some(bad) = body.pointer("/metadata/name").filter(|n| !n.is_string()) {
        let ty = match bad {
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            _ => "null",
        };
        return Err(bad_request(&format!(
            "json: cannot unmarshal {ty} into Go struct field ObjectMeta.metadata.name of type string"
        )));
    }
    let meta = ensure_object(body, "metadata");
    let mut name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() {
        if let Some(u) = url_name {
            name = u.to_string();
        } else if let Some(g) = meta.get("generateName").and_then(Value::as_str).map(str::to_string) {
            name = g;
            name.push_str("GENERATE");
        }
    }
    if let Some(u) = url_name
        && name != u
    {
        return Err(bad_request(&format!(
            "the name of the object ({name}) does not match the name on the URL ({u})"
        )));
    }
    if t.rt.namespaced {
        let url_ns = t.namespace.clone().unwrap_or_default();
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    if name.is_empty() {
        let kind_q = if t.rt.group.is_empty() {
            t.rt.kind.clone()
        } else {
            format!("{}.{}", t.rt.kind, t.rt.group)
        };
        let mut d = json!({"kind": t.rt.kind, "causes": [{"reason": "FieldValueRequired",
            "message": "Required value: name or generateName is required", "field": "metadata.name"}]});
        if !t.rt.group.is_empty() {
            d["group"] = json!(t.rt.group);
        }
        return Err(status_reply(
            422,
            "Invalid",
            &format!("{kind_q} \"\" is invalid: metadata.name: Required value: name or generateName is required"),
            Some(d),
        ));
    }
    if !name.ends_with("GENERATE")
        && let Some(msg) = apply::invalid_name(&name)
    {
        return Err(invalid(&t.rt, &name, "metadata.name", &name, &msg));
    }
    if creating && t.rt.namespaced {
        let ns = t.namespace.as_deref().unwrap_or("");
        if !st.namespace_exists(ns) {
            return Err(status_reply(
                404,
                "NotFound",
                &format!("namespaces {ns:?} not found"),
                Some(json!({"name": ns, "kind": "namespaces"})),
            ));
        }
        if st.namespace_terminating(ns) {
            let mut d = details(&t.rt, &name);
            d["causes"] = json!([{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]);
            return Err(status_reply(
                403,
                "Forbidden",
                &format!(
                    "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    t.rt.qualified(),
                    name
                ),
                Some(d),
            ));
        }
    }
    Ok(name)
}

/// Store an update after the common metadata bookkeeping; returns (object, changed).
fn finish_update(
    st: &mut State,
    t: &Target,
    key: &ObjectKey,
    old: &Value,
    mut new: Value,
    entries: Vec<super::store::ManagerEntry>,
) -> (Value, bool) {
    {
        let meta = ensure_object(&mut new, "metadata");
        for k in [
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old.pointer(&format!("/metadata/{k}")) {
                Some(v) => {
                    meta.insert(k.into(), v.clone());
                }
                None => {
                    meta.remove(k);
                }
            }
        }
        meta.insert("managedFields".into(), apply::managed_fields(&entries));
    }
    controllers::defaults_on_update(old, &mut new);
    if t.rt.generation && apply::spec_part(old) != apply::spec_part(&new) {
        let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        new["metadata"]["generation"] = json!(g);
    }
    if new == *old {
        return (old.clone(), false);
    }
    st.managers.insert(key.clone(), entries);
    (st.store(new, Actor::Client), true)
}

fn do_create(
    st: &mut State,
    t: &Target,
    key: ObjectKey,
    mut obj: Value,
    entries: Vec<super::store::ManagerEntry>,
) -> Value {
    if t.rt.status && t.rt.kind != "Namespace" {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    {
        let meta = ensure_object(&mut obj, "metadata");
        for k in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "managedFields",
        ] {
            meta.remove(k);
        }
        meta.insert("managedFields".into(), apply::managed_fields(&entries));
    }
    controllers::defaults_on_create(st, &mut obj);
    st.managers.insert(key, entries);
    st.create_object(obj, Actor::Client)
}

fn create(st: &mut State, r: &Req, t: &Target) -> Reply {
    if t.rt.namespaced && t.namespace.is_none() {
        return not_found_resource();
    }
    let mut body = match parse_body(r) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut name = match check_object(st, t, &mut body, None, true) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if let Some(prefix) = name.strip_suffix("GENERATE") {
        name = format!("{prefix}{}", st.random_suffix(5));
        body["metadata"]["name"] = json!(name);
    }
    let key = key_for(t, &name);
    if st.objects.contains_key(&key) {
        return status_reply(
            409,
            "AlreadyExists",
            &format!("{} {:?} already exists", t.rt.qualified(), name),
            Some(details(&t.rt, &name)),
        );
    }
    let manager = r
        .query
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| apply::default_manager(&r.user_agent));
    let mut entries = Vec::new();
    let mut stripped = body.clone();
    if t.rt.status && t.rt.kind != "Namespace" {
        if let Some(m) = stripped.as_object_mut() {
            m.remove("status");
        }
    }
    apply::record_update(
        None,
        &stripped,
        &mut entries,
        &manager,
        None,
        t.rt.status,
        &t.rt.api_version(),
    );
    let obj = do_create(st, t, key, body, entries);
    Reply::Json(201, obj, vec![])
}

fn replace(st: &mut State, r: &Req, t: &Target) -> Reply {
    let url_name = t.name.clone().unwrap_or_default();
    let mut body = match parse_body(r) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Err(e) = check_object(st, t, &mut body, Some(&url_name), false) {
        return e;
    }
    let key = key_for(t, &url_name);
    let Some(old) = st.objects.get(&key).cloned() else {
        return not_found(&t.rt, &url_name);
    };
    if let Some(rv) = body.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        && !rv.is_empty()
        && Some(rv) != old.pointer("/metadata/resourceVersion").and_then(Value::as_str)
    {
        return conflict_modified(t, &url_name);
    }
    let to_status = t.sub.as_deref() == Some("status");
    let new = if to_status {
        let mut n = old.clone();
        n["status"] = body.get("status").cloned().unwrap_or(json!({}));
        n
    } else {
        let mut n = body;
        if t.rt.status {
            match old.get("status") {
                Some(st_) => n["status"] = st_.clone(),
                None => {
                    if let Some(m) = n.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        n
    };
    let manager = r
        .query
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| apply::default_manager(&r.user_agent));
    if let Some(refused) = immutable(t, &url_name, &old, &new) {
        return refused;
    }
    let mut entries = st.managers.get(&key).cloned().unwrap_or_default();
    apply::record_update(
        Some(&old),
        &new,
        &mut entries,
        &manager,
        t.sub.as_deref(),
        t.rt.status,
        &t.rt.api_version(),
    );
    let (obj, _) = finish_update(st, t, &key, &old, new, entries);
    ok_json(obj)
}

fn conflict_modified(t: &Target, name: &str) -> Reply {
    status_reply(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again",
            t.rt.qualified(),
            name
        ),
        Some(details(&t.rt, name)),
    )
}

fn patch(st: &mut State, r: &Req, t: &Target) -> Reply {
    let url_name = t.name.clone().unwrap_or_default();
    if t.rt.namespaced && t.namespace.is_none() {
        return not_found_resource();
    }
    let ct = r.content_type.split(';').next().unwrap_or("").trim().to_string();
    let is_apply = ct == "application/apply-patch+yaml" || ct == "application/apply-patch+cbor";
    let force = r.query.get("force").is_some_and(|v| v == "true" || v == "1");
    if is_apply {
        if r.query.get("fieldManager").is_none_or(|m| m.is_empty()) {
            return status_reply(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                Some(
                    json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueRequired",
                    "message": "Required value: is required for apply patch", "field": "fieldManager"}]}),
                ),
            );
        }
    } else if r.query.contains_key("force") {
        return status_reply(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
            Some(
                json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{"reason": "FieldValueForbidden",
                "message": "Forbidden: may not be specified for non-apply patch", "field": "force"}]}),
            ),
        );
    }
    let mut body = match parse_body(r) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let key = key_for(t, &url_name);
    let existing = st.objects.get(&key).cloned();
    if is_apply {
        let manager = r.query.get("fieldManager").cloned().unwrap_or_default();
        if let Err(e) = check_object(st, t, &mut body, Some(&url_name), existing.is_none()) {
            return e;
        }
        if let Some(rv) = body.pointer("/metadata/resourceVersion").and_then(Value::as_str)
            && let Some(old) = &existing
            && Some(rv) != old.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        {
            return conflict_modified(t, &url_name);
        }
        if existing.is_none() && t.sub.is_some() {
            return not_found(&t.rt, &url_name);
        }
        // Injected conflict with another manager.
        if let Some(pos) = st.faults.iter().position(
            |f| matches!(f, Fault::ApplyConflict { kind, name, .. } if *kind == t.rt.kind && *name == url_name),
        ) {
            if let Fault::ApplyConflict {
                manager: other, field, ..
            } = st.faults[pos].clone()
            {
                if !force {
                    let who = format!("{other:?} using {}", t.rt.api_version());
                    return status_reply(
                        409,
                        "Conflict",
                        &format!("Apply failed with 1 conflict: conflict with {who}: {field}"),
                        Some(
                            json!({"causes": [{"type": "FieldManagerConflict", "message": format!("conflict with {who}"), "field": field}]}),
                        ),
                    );
                }
                st.faults.remove(pos);
            }
        }
        let mut entries = st.managers.get(&key).cloned().unwrap_or_default();
        let result = apply::ssa(
            existing.as_ref(),
            &body,
            &mut entries,
            &manager,
            force,
            t.sub.as_deref(),
            t.rt.status,
            &t.rt.api_version(),
        );
        let new = match result {
            Ok(n) => n,
            Err(conflicts) => {
                let msg = if conflicts.len() == 1 {
                    format!(
                        "Apply failed with 1 conflict: conflict with {}: {}",
                        conflicts[0].manager, conflicts[0].field
                    )
                } else {
                    let mut lines = Vec::new();
                    let mut managers: Vec<&String> = conflicts.iter().map(|c| &c.manager).collect();
                    managers.sort();
                    managers.dedup();
                    for m in managers {
                        lines.push(format!("conflicts with {m}:"));
                        for c in conflicts.iter().filter(|c| &c.manager == m) {
                            lines.push(format!("- {}", c.field));
                        }
                    }
                    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
                };
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"type": "FieldManagerConflict", "message": format!("conflict with {}", c.manager), "field": c.field}))
                    .collect();
                return status_reply(409, "Conflict", &msg, Some(json!({"causes": causes})));
            }
        };
        return match existing {
            None => {
                let obj = do_create(st, t, key, new, entries);
                Reply::Json(201, obj, vec![])
            }
            Some(old) => {
                if let Some(refused) = immutable(t, &url_name, &old, &new) {
                    return refused;
                }
                let (obj, _) = finish_update(st, t, &key, &old, new, entries);
                ok_json(obj)
            }
        };
    }
    if !matches!(
        ct.as_str(),
        "application/merge-patch+json" | "application/strategic-merge-patch+json"
    ) {
        return status_reply(
            415,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (simulator: JSON patch is not simulated; got {ct:?})"
            ),
            Some(json!({})),
        );
    }
    let Some(old) = existing else {
        return not_found(&t.rt, &url_name);
    };
    let mut new = old.clone();
    apply::merge_patch(&mut new, &body);
    if ObjectKey::of(&new) != key {
        return bad_request("the patch changes the object's identity (apiVersion, kind, name or namespace)");
    }
    if let Some(rv) = body.pointer("/metadata/resourceVersion").and_then(Value::as_str)
        && Some(rv) != old.pointer("/metadata/resourceVersion").and_then(Value::as_str)
    {
        return conflict_modified(t, &url_name);
    }
    let to_status = t.sub.as_deref() == Some("status");
    if to_status {
        let status = new.get("status").cloned();
        new = old.clone();
        match status {
            Some(s_) => new["status"] = s_,
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    } else if t.rt.status {
        match old.get("status") {
            Some(s_) => new["status"] = s_.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    let manager = r
        .query
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| apply::default_manager(&r.user_agent));
    if let Some(refused) = immutable(t, &url_name, &old, &new) {
        return refused;
    }
    let mut entries = st.managers.get(&key).cloned().unwrap_or_default();
    apply::record_update(
        Some(&old),
        &new,
        &mut entries,
        &manager,
        t.sub.as_deref(),
        t.rt.status,
        &t.rt.api_version(),
    );
    let (obj, _) = finish_update(st, t, &key, &old, new, entries);
    ok_json(obj)
}

fn propagation(r: &Req) -> Propagation {
    let from_body = serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v.get("propagationPolicy").and_then(Value::as_str).map(str::to_string));
    match r.query.get("propagationPolicy").cloned().or(from_body).as_deref() {
        Some("Orphan") => Propagation::Orphan,
        Some("Foreground") => Propagation::Foreground,
        _ => Propagation::Background,
    }
}

fn delete(st: &mut State, r: &Req, t: &Target) -> Reply {
    let name = t.name.clone().unwrap_or_default();
    if t.rt.namespaced && t.namespace.is_none() || t.sub.is_some() {
        return not_found_resource();
    }
    let key = key_for(t, &name);
    let Some(mut obj) = st.objects.get(&key).cloned() else {
        return not_found(&t.rt, &name);
    };
    let prop = propagation(r);
    let has_finalizers = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if t.rt.kind == "Namespace" {
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            obj["status"] = json!({"phase": "Terminating"});
            obj = st.store(obj, Actor::Client);
            let delay = st.delay_for("Namespace");
            st.pending.insert(key, std::time::Instant::now() + delay);
        }
        return ok_json(obj);
    }
    if has_finalizers {
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            obj = st.store(obj, Actor::Client);
        }
        return ok_json(obj);
    }
    let uid = s(&obj, &["metadata", "uid"]).to_string();
    let removed = st.remove(&key, Actor::Client, prop);
    if t.rt.kind == "Pod" {
        let mut pod = removed.unwrap_or(obj);
        pod["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        return ok_json(pod);
    }
    let mut d = details(&t.rt, &name);
    d["uid"] = json!(uid);
    ok_json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d}))
}

fn delete_collection(st: &mut State, r: &Req, t: &Target) -> Reply {
    let (ls, fs) = match selectors(r) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let keys: Vec<ObjectKey> = matching(st, &t.rt, t.namespace.as_deref(), &ls, &fs)
        .map(ObjectKey::of)
        .collect();
    let prop = propagation(r);
    let mut items = Vec::new();
    for k in keys {
        if let Some(o) = st.remove(&k, Actor::Client, prop) {
            items.push(o);
        }
    }
    ok_json(
        json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(),
        "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
    )
}
