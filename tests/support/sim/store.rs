//! The simulator's state (test double): stored objects keyed by apiVersion/kind/namespace/name,
//! the global resourceVersion counter, the bounded watch event history, field-manager records,
//! selectors, and the controller's pending work. Everything sits behind one mutex; no await
//! happens while it is held.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::discovery::{self, ResourceType};
use super::faults::Fault;
use super::{RequestRecord, SimConfig, VolumeBindingMode};

/// Identifies one stored object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    pub fn of(obj: &Value) -> ObjectKey {
        ObjectKey {
            api_version: s(obj, &["apiVersion"]).to_string(),
            kind: s(obj, &["kind"]).to_string(),
            namespace: obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string),
            name: s(obj, &["metadata", "name"]).to_string(),
        }
    }
}

/// One watch event as stored in the history and broadcast to open watches.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub etype: &'static str,
    pub key: ObjectKey,
    pub object: Value,
    /// The object before this change (MODIFIED only), so selector watches can turn a change that
    /// leaves the selection into DELETED, as the apiserver's watch cache does.
    pub prev: Option<Value>,
}

/// Who wrote: clients count as mutations; the controller simulation does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Client,
    Controller,
}

/// One field manager's record on one object: what it last applied (Apply) or last changed (Update).
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerEntry {
    pub manager: String,
    pub operation: &'static str,
    pub subresource: Option<String>,
    pub api_version: String,
    pub fields: Value,
    pub time: String,
}

pub struct Shared {
    pub state: Mutex<State>,
    pub notify: tokio::sync::Notify,
    pub open_watches: AtomicUsize,
}

impl Shared {
    pub fn new(config: SimConfig, addr: std::net::SocketAddr) -> Shared {
        Shared {
            state: Mutex::new(State::new(config, addr)),
            notify: tokio::sync::Notify::new(),
            open_watches: AtomicUsize::new(0),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

pub struct State {
    pub config: SimConfig,
    pub addr: std::net::SocketAddr,
    pub rv: u64,
    pub counter: u64,
    pub objects: BTreeMap<ObjectKey, Value>,
    pub managers: HashMap<ObjectKey, Vec<ManagerEntry>>,
    pub resources: Vec<ResourceType>,
    pub history: VecDeque<Arc<Event>>,
    /// Watches from a resourceVersion below this get 410 Expired.
    pub history_floor: u64,
    pub tx: tokio::sync::broadcast::Sender<Arc<Event>>,
    pub mutations: u64,
    pub requests: Vec<RequestRecord>,
    pub faults: Vec<Fault>,
    pub ready_marks: Vec<(ObjectKey, Instant)>,
    /// When each object was last stored, taken before its watch event is sent: a ready mark
    /// uses the time of the write that made the object ready, so no watcher can see it earlier.
    pub last_write: BTreeMap<ObjectKey, Instant>,
    pub ready_delays: HashMap<String, Duration>,
    pub held: HashSet<ObjectKey>,
    pub pending: BTreeMap<ObjectKey, Instant>,
    pub node_allocatable: BTreeMap<String, String>,
    pub node_labels: BTreeMap<String, String>,
    pub gpu: super::gpu_operator::GpuSim,
}

impl State {
    fn new(config: SimConfig, addr: std::net::SocketAddr) -> State {
        let (tx, _) = tokio::sync::broadcast::channel(4096);
        let mut st = State {
            faults: config.faults.clone(),
            node_allocatable: config.node_allocatable.clone(),
            node_labels: config.node_labels.clone(),
            config,
            addr,
            rv: 100,
            counter: 0,
            objects: BTreeMap::new(),
            managers: HashMap::new(),
            resources: discovery::builtin(),
            history: VecDeque::new(),
            history_floor: 100,
            tx,
            mutations: 0,
            requests: Vec::new(),
            ready_marks: Vec::new(),
            last_write: BTreeMap::new(),
            ready_delays: HashMap::new(),
            held: HashSet::new(),
            pending: BTreeMap::new(),
            gpu: Default::default(),
        };
        st.bootstrap();
        st
    }

    /// What a fresh k3s node has: system namespaces, the node, the storage classes.
    fn bootstrap(&mut self) {
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns,
                "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
            self.create_object(obj, Actor::Controller);
        }
        let node = self.node_object();
        self.create_object(node, Actor::Controller);
        for (name, mode, default) in self.config.storage_classes.clone() {
            let mut sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": name}, "provisioner": "rancher.io/local-path",
                "reclaimPolicy": "Delete", "volumeBindingMode": mode.as_str()});
            if default {
                sc["metadata"]["annotations"] = json!({"storageclass.kubernetes.io/is-default-class": "true"});
            }
            self.create_object(sc, Actor::Controller);
        }
    }

    fn node_object(&self) -> Value {
        let name = &self.config.node_name;
        let mut labels: BTreeMap<String, String> = [
            ("beta.kubernetes.io/arch", "amd64"),
            ("beta.kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
            ("kubernetes.io/os", "linux"),
            ("node-role.kubernetes.io/control-plane", "true"),
            ("node.kubernetes.io/instance-type", "k3s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        labels.insert("kubernetes.io/hostname".into(), name.clone());
        labels.extend(self.node_labels.clone());
        let now = now_rfc3339();
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
        "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": self.config.node_ip}, {"type": "Hostname", "address": name}],
            "allocatable": self.node_allocatable, "capacity": self.node_allocatable,
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}
            ],
            "nodeInfo": {"architecture": "amd64", "containerRuntimeVersion": "containerd://2.0.5-k3s1", "kubeletVersion": self.config.git_version, "kubeProxyVersion": self.config.git_version, "operatingSystem": "linux", "osImage": "Ubuntu 24.04.2 LTS", "kernelVersion": "6.8.0-60-generic"}
        }})
    }

    /// Rewrite the node after allocatable/labels changed.
    pub fn refresh_node(&mut self) {
        let key = ObjectKey::new("v1", "Node", None, &self.config.node_name);
        let fresh = self.node_object();
        if let Some(mut node) = self.objects.get(&key).cloned() {
            node["status"] = fresh["status"].clone();
            if let Some(labels) = node.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
                for (k, v) in &self.node_labels {
                    labels.insert(k.clone(), json!(v));
                }
            }
            self.store(node, Actor::Controller);
        }
    }

    pub fn reschedule_all(&mut self) {
        let now = Instant::now();
        let keys: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|k| super::controllers::is_controlled_kind(&k.kind))
            .cloned()
            .collect();
        for k in keys {
            self.pending.insert(k, now);
        }
    }

    pub fn next_uid(&mut self) -> String {
        self.counter += 1;
        let c = self.counter;
        let seed = (self.addr.port() as u64) << 32 | c;
        let h = mix(seed);
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            (h >> 32) as u32,
            (h >> 16) as u16,
            c & 0xfff,
            (h >> 4) & 0xfff,
            mix(h) & 0xffff_ffff_ffff
        )
    }

    /// Five characters from the apiserver's generateName alphabet.
    pub fn random_suffix(&mut self, len: usize) -> String {
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.counter += 1;
        let mut h = mix(self.counter ^ ((self.addr.port() as u64) << 40));
        let mut out = String::new();
        for _ in 0..len {
            out.push(ALPHA[(h % ALPHA.len() as u64) as usize] as char);
            h /= ALPHA.len() as u64;
        }
        out
    }

    pub fn resource_for_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.resources
            .iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
    }

    pub fn delay_for(&self, kind: &str) -> Duration {
        self.ready_delays.get(kind).copied().unwrap_or(self.config.ready_delay)
    }

    fn push_event(&mut self, etype: &'static str, key: ObjectKey, object: Value, prev: Option<Value>) {
        let ev = Arc::new(Event {
            rv: self.rv,
            etype,
            key,
            object,
            prev,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.config.event_history.max(1) {
            if let Some(old) = self.history.pop_front() {
                self.history_floor = old.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    /// Store a new object: uid, creationTimestamp, resourceVersion, generation.
    pub fn create_object(&mut self, mut obj: Value, actor: Actor) -> Value {
        let uid = self.next_uid();
        let gen_kind = self
            .resource_for_kind(s(&obj, &["apiVersion"]), s(&obj, &["kind"]))
            .map(|r| r.generation)
            .unwrap_or(true);
        let meta = ensure_object(&mut obj, "metadata");
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if gen_kind {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        self.store(obj, actor)
    }

    /// Write an object (create or update) with a new resourceVersion and broadcast the event.
    pub fn store(&mut self, mut obj: Value, actor: Actor) -> Value {
        let key = ObjectKey::of(&obj);
        self.rv += 1;
        ensure_object(&mut obj, "metadata").insert("resourceVersion".into(), json!(self.rv.to_string()));
        let prev = self.objects.insert(key.clone(), obj.clone());
        self.last_write.insert(key.clone(), Instant::now());
        let etype = if prev.is_some() { "MODIFIED" } else { "ADDED" };
        self.push_event(etype, key.clone(), obj.clone(), prev);
        if actor == Actor::Client {
            self.mutations += 1;
            super::controllers::on_client_write(self, &key, &obj);
        }
        // A write that drops the last finalizer of an object being deleted completes the delete.
        let deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
        let finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|a| a.len())
            .unwrap_or(0);
        if deleting && finalizers == 0 && key.kind != "Namespace" {
            self.remove(&key, actor, Propagation::Background);
        }
        obj
    }

    /// Delete for real: DELETED event, garbage-collect dependents.
    pub fn remove(&mut self, key: &ObjectKey, actor: Actor, propagation: Propagation) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        self.managers.remove(key);
        self.pending.remove(key);
        self.rv += 1;
        ensure_object(&mut obj, "metadata").insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.push_event("DELETED", key.clone(), obj.clone(), None);
        if actor == Actor::Client {
            self.mutations += 1;
        }
        super::controllers::on_delete(self, key, &obj, actor);
        let uid = s(&obj, &["metadata", "uid"]).to_string();
        let dependents: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(_, o)| owner_uids(o).contains(&uid))
            .map(|(k, _)| k.clone())
            .collect();
        for dk in dependents {
            if propagation == Propagation::Orphan {
                if let Some(mut d) = self.objects.get(&dk).cloned() {
                    if let Some(refs) = d.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
                        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                    }
                    self.store(d, Actor::Controller);
                }
            } else {
                let others = self.objects.get(&dk).map(|d| owner_uids(d).len()).unwrap_or(0);
                if others <= 1 {
                    self.remove(&dk, Actor::Controller, Propagation::Background);
                }
            }
        }
        Some(obj)
    }

    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.objects.contains_key(&ObjectKey::new("v1", "Namespace", None, ns))
    }

    pub fn namespace_terminating(&self, ns: &str) -> bool {
        self.objects
            .get(&ObjectKey::new("v1", "Namespace", None, ns))
            .is_some_and(|n| n.pointer("/metadata/deletionTimestamp").is_some())
    }

    pub fn storage_class_mode(&self, pvc: &Value) -> Option<(String, VolumeBindingMode)> {
        let explicit = pvc.pointer("/spec/storageClassName").and_then(Value::as_str);
        let scs: Vec<&Value> = self
            .objects
            .iter()
            .filter(|(k, _)| k.kind == "StorageClass")
            .map(|(_, v)| v)
            .collect();
        let sc = match explicit {
            Some("") => return None,
            Some(name) => scs.into_iter().find(|sc| s(sc, &["metadata", "name"]) == name)?,
            None => scs.into_iter().find(|sc| {
                sc.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                    .and_then(Value::as_str)
                    == Some("true")
            })?,
        };
        let mode = if s(sc, &["volumeBindingMode"]) == "WaitForFirstConsumer" {
            VolumeBindingMode::WaitForFirstConsumer
        } else {
            VolumeBindingMode::Immediate
        };
        Some((s(sc, &["metadata", "name"]).to_string(), mode))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

pub fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A string at `path`, or "".
pub fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

pub fn ensure_object<'a>(v: &'a mut Value, field: &str) -> &'a mut serde_json::Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    let map = v.as_object_mut().expect("object");
    let entry = map.entry(field.to_string()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("object")
}

pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

// ---------------------------------------------------------------------------------------------
// Selectors

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` (equality and set-based forms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Req>);

impl LabelSelector {
    pub fn parse(raw: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        // split on commas that are not inside parentheses
        let mut depth = 0;
        let mut cur = String::new();
        let mut parts = Vec::new();
        for c in raw.chars() {
            match c {
                '(' => {
                    depth += 1;
                    cur.push(c)
                }
                ')' => {
                    depth -= 1;
                    cur.push(c)
                }
                ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        parts.push(cur);
        for p in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let set = |rest: &str| -> Result<Vec<String>, String> {
                let rest = rest.trim();
                let inner = rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| format!("unable to parse requirement: found '{rest}', expected: '('"))?;
                Ok(inner
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect())
            };
            if let Some(k) = p.strip_prefix('!') {
                reqs.push(Req::NotExists(k.trim().to_string()));
            } else if let Some((k, v)) = p.split_once("!=") {
                reqs.push(Req::NotEq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once("==") {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once('=') {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, rest)) = p.split_once(" notin ") {
                reqs.push(Req::NotIn(k.trim().into(), set(rest)?));
            } else if let Some((k, rest)) = p.split_once(" in ") {
                reqs.push(Req::In(k.trim().into(), set(rest)?));
            } else if p.contains(' ') || p.contains('(') {
                return Err(format!("unable to parse requirement: {p}"));
            } else {
                reqs.push(Req::Exists(p.to_string()));
            }
        }
        Ok(LabelSelector(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::NotEq(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed `fieldSelector`: `path=value`, `path==value`, `path!=value` over dotted JSON paths
/// (`metadata.name`, `metadata.namespace`, `involvedObject.name`, `spec.nodeName`, `status.phase`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(raw: &str) -> Result<FieldSelector, String> {
        let mut out = Vec::new();
        for p in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((k, v)) = p.split_once("!=") {
                out.push((k.trim().to_string(), false, v.trim().to_string()));
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                out.push((k.trim().to_string(), true, v.trim().to_string()));
            } else {
                return Err(format!("invalid selector: '{raw}'; can't understand '{p}'"));
            }
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut cur = Some(obj);
            for part in path.split('.') {
                cur = cur.and_then(|c| c.get(part));
            }
            let got = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}
