//! Controller simulation of the simulated API server (test double): what the controllers, the
//! scheduler and the kubelet of a one-node k3s cluster do to the objects kstrap applies, after a
//! configurable delay. Deployments (via a ReplicaSet), StatefulSets (with volumeClaimTemplates),
//! DaemonSets, ReplicaSets and Jobs get pods; pods are scheduled against the node's allocatable and
//! labels and turn Running/Ready (or stay waiting/unschedulable under faults, with Warning
//! Events); PVCs bind (WaitForFirstConsumer waits for a scheduled pod); LoadBalancer Services get
//! the node IP (k3s servicelb); CRDs become NamesAccepted/Established and are then served;
//! terminating namespaces are emptied and removed; k3s HelmCharts get a `helm-install-*` Job.
//! Every write here is `Actor::Controller` (not counted in `mutations()`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::discovery;
use super::faults::Fault;
use super::store::{Actor, ObjectKey, Propagation, Shared, State, now_rfc3339, owner_uids, s};

const CONTROLLED: [&str; 13] = [
    "PersistentVolume",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "Pod",
    "PersistentVolumeClaim",
    "Service",
    "CustomResourceDefinition",
    "Namespace",
    "HelmChart",
    "Chart",
];

pub fn is_controlled_kind(kind: &str) -> bool {
    CONTROLLED.contains(&kind)
}

pub async fn run(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut st = shared.lock();
            let now = Instant::now();
            let due: Vec<ObjectKey> = st
                .pending
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in due {
                st.pending.remove(&k);
                if st.held.contains(&k) {
                    continue;
                }
                reconcile(&mut st, &k);
            }
            st.pending.values().min().copied()
        };
        let notified = shared.notify.notified();
        match next {
            Some(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(t)) => {}
                    _ = notified => {}
                }
            }
            None => notified.await,
        }
    }
}

fn schedule(st: &mut State, key: &ObjectKey) {
    let delay = st.delay_for(&key.kind);
    st.pending.insert(key.clone(), Instant::now() + delay);
}

/// A client wrote `obj`: the controllers react after the kind's delay.
pub fn on_client_write(st: &mut State, key: &ObjectKey, obj: &Value) {
    if key.kind == "Namespace" && obj.pointer("/metadata/deletionTimestamp").is_none() {
        return;
    }
    if key.kind == "ConfigMap" {
        super::gpu_operator::on_configmap(st, key);
    }
    if is_controlled_kind(&key.kind) {
        if let Some(owner) = controller_owner(st, obj)
            && key.kind == "Pod"
        {
            // a pod of a workload is the workload's business
            schedule(st, &owner);
            return;
        }
        schedule(st, key);
    }
}

pub fn on_delete(st: &mut State, key: &ObjectKey, obj: &Value, actor: Actor) {
    if actor == Actor::Client
        && let Some(owner) = controller_owner(st, obj)
    {
        schedule(st, &owner);
    }
    if key.kind == "CustomResourceDefinition" {
        st.resources.retain(|r| r.crd.as_deref() != Some(key.name.as_str()));
        let group = s(obj, &["spec", "group"]).to_string();
        let kind = s(obj, &["spec", "names", "kind"]).to_string();
        let crs: Vec<ObjectKey> = st
            .objects
            .keys()
            .filter(|k| k.kind == kind && k.api_version.split_once('/').map(|(g, _)| g) == Some(group.as_str()))
            .cloned()
            .collect();
        for k in crs {
            st.remove(&k, Actor::Controller, Propagation::Background);
        }
    }
}

fn controller_owner(st: &State, obj: &Value) -> Option<ObjectKey> {
    let refs = obj.pointer("/metadata/ownerReferences")?.as_array()?;
    let r = refs
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
    let uid = r.get("uid")?.as_str()?;
    st.objects
        .iter()
        .find(|(_, o)| s(o, &["metadata", "uid"]) == uid)
        .map(|(k, _)| k.clone())
}

/// What the registries set on create (namespace phase, service cluster IP, pod/pvc Pending).
pub fn defaults_on_create(st: &mut State, obj: &mut Value) {
    let kind = s(obj, &["kind"]).to_string();
    match kind.as_str() {
        "Namespace" => {
            let name = s(obj, &["metadata", "name"]).to_string();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
            obj["status"] = json!({"phase": "Active"});
        }
        "Service" => {
            st.counter += 1;
            let n = st.counter;
            let spec = obj
                .as_object_mut()
                .and_then(|o| o.get_mut("spec"))
                .and_then(Value::as_object_mut);
            if let Some(spec) = spec {
                let ty = spec
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("ClusterIP")
                    .to_string();
                spec.insert("type".into(), json!(ty));
                if ty != "ExternalName" && spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                    let ip = format!("10.43.{}.{}", (n / 250) % 250, n % 250 + 2);
                    spec.insert("clusterIP".into(), json!(ip));
                    spec.insert("clusterIPs".into(), json!([ip]));
                }
                spec.entry("sessionAffinity").or_insert(json!("None"));
                spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
                spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
                spec.entry("internalTrafficPolicy").or_insert(json!("Cluster"));
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for (i, p) in ports.iter_mut().enumerate() {
                        if p.get("protocol").is_none() {
                            p["protocol"] = json!("TCP");
                        }
                        if p.get("targetPort").is_none() {
                            p["targetPort"] = p.get("port").cloned().unwrap_or(json!(80));
                        }
                        if (ty == "LoadBalancer" || ty == "NodePort") && p.get("nodePort").is_none() {
                            p["nodePort"] = json!(30000 + (n as usize * 7 + i) % 2768);
                        }
                    }
                }
                if ty == "LoadBalancer" {
                    spec.entry("externalTrafficPolicy").or_insert(json!("Cluster"));
                    spec.entry("allocateLoadBalancerNodePorts").or_insert(json!(true));
                }
            }
            obj["status"] = json!({"loadBalancer": {}});
        }
        "Pod" => obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(obj)}),
        "PersistentVolumeClaim" => {
            if obj.pointer("/spec/storageClassName").is_none()
                && let Some((sc, _)) = st.storage_class_mode(obj)
            {
                obj["spec"]["storageClassName"] = json!(sc);
            }
            obj["spec"]["volumeMode"] = obj.pointer("/spec/volumeMode").cloned().unwrap_or(json!("Filesystem"));
            obj["status"] = json!({"phase": "Pending"});
        }
        _ => {}
    }
}

/// Defaulting the API server repeats on every write: a Service whose manifest leaves out a
/// port's protocol or targetPort gets them again on update, and keeps the node port it was
/// given, so re-applying an unchanged manifest changes nothing (as on a real cluster).
pub fn defaults_on_update(old: &Value, new: &mut Value) {
    if s(new, &["kind"]) != "Service" {
        return;
    }
    let old_ports = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
        return;
    };
    for p in ports.iter_mut() {
        if p.get("protocol").is_none() {
            p["protocol"] = json!("TCP");
        }
        if p.get("targetPort").is_none() {
            p["targetPort"] = p.get("port").cloned().unwrap_or(json!(80));
        }
        if p.get("nodePort").is_none()
            && let Some(was) = old_ports
                .iter()
                .find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"))
                .and_then(|o| o.get("nodePort"))
        {
            p["nodePort"] = was.clone();
        }
    }
}

fn qos_class(pod: &Value) -> &'static str {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let any = containers.iter().any(|c| {
        c.pointer("/resources/requests")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
            || c.pointer("/resources/limits")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
    });
    if any { "Burstable" } else { "BestEffort" }
}

fn reconcile(st: &mut State, key: &ObjectKey) {
    let Some(obj) = st.objects.get(key).cloned() else {
        return;
    };
    if obj.pointer("/metadata/deletionTimestamp").is_some() && key.kind != "Namespace" {
        return;
    }
    match key.kind.as_str() {
        "Deployment" => deployment(st, key, &obj),
        "StatefulSet" => statefulset(st, key, &obj),
        "DaemonSet" => {
            daemonset(st, key, &obj);
            super::gpu_operator::after_daemonset(st, key);
        }
        "ReplicaSet" if owner_uids(&obj).is_empty() => {
            let name = key.name.clone();
            replicaset(st, key, &obj, &name);
        }
        "ReplicaSet" => {
            if let Some(owner) = controller_owner(st, &obj) {
                schedule_now(st, &owner);
            }
        }
        "Job" => job(st, key, &obj),
        "Pod" => match controller_owner(st, &obj) {
            Some(owner) => schedule_now(st, &owner),
            None => {
                let name = key.name.clone();
                // A bare pod that is never restarted runs to completion (the verification pod).
                let mode = if s(&obj, &["spec", "restartPolicy"]) == "Never" {
                    PodMode::Succeed
                } else {
                    PodMode::Run
                };
                settle_pod(st, key, &name, mode);
                bind_claims_of(st, key);
            }
        },
        "PersistentVolumeClaim" => bind_pvc(st, key),
        "PersistentVolume" => static_pv(st, key, &obj),
        "Service" => service(st, key, &obj),
        "CustomResourceDefinition" => crd(st, key, &obj),
        "Namespace" => namespace(st, key, &obj),
        "HelmChart" => {
            helmchart(st, key, &obj);
            super::gpu_operator::on_chart(st, key);
            super::helm_charts::on_chart(st, key);
        }
        "Chart" if k0s_chart(st, key, &obj) => {
            super::gpu_operator::on_chart(st, key);
            super::helm_charts::on_chart(st, key);
        }
        _ => {}
    }
}

fn schedule_now(st: &mut State, key: &ObjectKey) {
    st.pending.insert(key.clone(), Instant::now());
}

// ------------------------------------------------------------------------------------------------
// helpers

fn short_hash(v: &Value, len: usize) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let text = serde_json::to_string(v).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..len)
        .map(|_| {
            let c = ALPHA[(h % ALPHA.len() as u64) as usize] as char;
            h /= ALPHA.len() as u64;
            c
        })
        .collect()
}

fn strip_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !(k.ends_with("Time") || k.ends_with("Timestamp") || *k == "startedAt" || *k == "finishedAt")
                })
                .map(|(k, v)| (k.clone(), strip_times(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_times).collect()),
        other => other.clone(),
    }
}

/// Write a new status if it differs (timestamps aside); returns true if written.
fn write_status(st: &mut State, key: &ObjectKey, status: Value) -> bool {
    let Some(mut obj) = st.objects.get(key).cloned() else {
        return false;
    };
    if strip_times(obj.get("status").unwrap_or(&Value::Null)) == strip_times(&status) {
        return false;
    }
    obj["status"] = status;
    st.store(obj, Actor::Controller);
    true
}

/// Records when `key` became ready: the moment of its last write (the status that made it
/// ready), which precedes the watch event any client sees.
fn mark_ready(st: &mut State, key: &ObjectKey) {
    let at = st.last_write.get(key).copied().unwrap_or_else(Instant::now);
    st.ready_marks.push((key.clone(), at));
}

fn insert_nonzero(m: &mut Map<String, Value>, k: &str, v: i64) {
    if v != 0 {
        m.insert(k.into(), json!(v));
    }
}

fn cond(ty: &str, status: bool, reason: &str, message: &str) -> Value {
    let now = now_rfc3339();
    json!({"type": ty, "status": if status { "True" } else { "False" }, "reason": reason, "message": message,
        "lastUpdateTime": now, "lastTransitionTime": now})
}

fn owner_ref(owner: &Value) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

fn owned_by(st: &State, kind: &str, ns: &str, uid: &str) -> Vec<(ObjectKey, Value)> {
    st.objects
        .iter()
        .filter(|(k, o)| k.kind == kind && k.namespace.as_deref() == Some(ns) && owner_uids(o).iter().any(|u| u == uid))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect()
}

fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1)
}

fn replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

/// Parse a Kubernetes quantity into a number (cpu in cores, memory in bytes).
pub fn quantity(q: &str) -> f64 {
    let q = q.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suf, mult) in suffixes {
        if let Some(num) = q.strip_suffix(suf) {
            return num.parse::<f64>().unwrap_or(0.0) * mult;
        }
    }
    q.parse::<f64>().unwrap_or(0.0)
}

fn pod_requests(pod: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let req = c
            .pointer("/resources/requests")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let lim = c
            .pointer("/resources/limits")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut names: Vec<&String> = req.keys().chain(lim.keys()).collect();
        names.sort();
        names.dedup();
        for n in names {
            let v = req.get(n).or_else(|| lim.get(n));
            let qty = match v {
                Some(Value::String(s)) => quantity(s),
                Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
                _ => 0.0,
            };
            *out.entry(n.clone()).or_insert(0.0) += qty;
        }
    }
    out
}

/// Whether the node's labels match a pod's (or pod template's) `spec.nodeSelector`.
fn node_selects(st: &State, pod: &Value) -> bool {
    let node = st
        .objects
        .get(&ObjectKey::new("v1", "Node", None, &st.config.node_name));
    let labels = node.and_then(|n| n.pointer("/metadata/labels"));
    pod.pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The one-node scheduler: Err(message) if the pod does not fit.
fn fits(st: &State, pod: &Value) -> Result<(), String> {
    if !node_selects(st, pod) {
        return Err("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".into());
    }
    let want = pod_requests(pod);
    let me = s(pod, &["metadata", "uid"]);
    let mut used: BTreeMap<String, f64> = BTreeMap::new();
    for (k, o) in &st.objects {
        if k.kind != "Pod" || s(o, &["metadata", "uid"]) == me || s(o, &["spec", "nodeName"]).is_empty() {
            continue;
        }
        if matches!(s(o, &["status", "phase"]), "Succeeded" | "Failed") {
            continue;
        }
        for (r, q) in pod_requests(o) {
            *used.entry(r).or_insert(0.0) += q;
        }
    }
    let mut short = Vec::new();
    for (r, q) in &want {
        if *q <= 0.0 {
            continue;
        }
        let alloc = st.node_allocatable.get(r).map(|a| quantity(a)).unwrap_or(0.0);
        if used.get(r).copied().unwrap_or(0.0) + q > alloc + 1e-9 {
            short.push(format!("1 Insufficient {r}"));
        }
    }
    if short.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "0/1 nodes are available: {}. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
            short.join(", ")
        ))
    }
}

/// Record (or bump) an Event about `involved`, as the kubelet/scheduler/controllers do.
pub fn record_event(st: &mut State, involved: &Value, etype: &str, reason: &str, message: &str, component: &str) {
    let ns = involved
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let iname = s(involved, &["metadata", "name"]).to_string();
    let name = format!(
        "{iname}.{}",
        short_hash(&json!([s(involved, &["metadata", "uid"]), reason, message]), 10)
    );
    let key = ObjectKey::new("v1", "Event", Some(&ns), &name);
    let now = now_rfc3339();
    if let Some(mut ev) = st.objects.get(&key).cloned() {
        let count = ev.get("count").and_then(Value::as_i64).unwrap_or(1);
        if count >= 1 && ev["lastTimestamp"] == json!(now) {
            return;
        }
        ev["count"] = json!(count + 1);
        ev["lastTimestamp"] = json!(now);
        st.store(ev, Actor::Controller);
        return;
    }
    let ev = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": iname,
            "namespace": ns, "uid": involved["metadata"]["uid"], "resourceVersion": involved["metadata"]["resourceVersion"]},
        "reason": reason, "message": message, "type": etype, "count": 1,
        "firstTimestamp": now, "lastTimestamp": now, "eventTime": null,
        "source": {"component": component, "host": if component == "kubelet" { json!(st.config.node_name) } else { Value::Null }},
        "reportingComponent": component, "reportingInstance": if component == "kubelet" { st.config.node_name.clone() } else { String::new() }});
    st.create_object(ev, Actor::Controller);
}

// ------------------------------------------------------------------------------------------------
// pods

#[derive(Debug, Clone, Copy, PartialEq)]
enum PodMode {
    Run,
    Succeed,
    Fail,
}

fn make_pod(st: &State, owner: &Value, name: &str, template: &Value, extra_labels: &[(&str, String)]) -> Value {
    let ns = s(owner, &["metadata", "namespace"]).to_string();
    let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    let mut meta = json!({"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner_ref(owner)]});
    if let Some(a) = template.pointer("/metadata/annotations") {
        meta["annotations"] = a.clone();
    }
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    if spec.get("restartPolicy").is_none() {
        spec["restartPolicy"] = json!("Always");
    }
    spec["schedulerName"] = spec.get("schedulerName").cloned().unwrap_or(json!("default-scheduler"));
    spec["serviceAccountName"] = spec.get("serviceAccountName").cloned().unwrap_or(json!("default"));
    let _ = st;
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
    pod["status"] = json!({"phase": "Pending", "qosClass": qos_class(&pod)});
    pod
}

fn fault_for(st: &State, owner_name: &str) -> Option<Fault> {
    st.faults
        .iter()
        .find(|f| match f {
            Fault::PodWaiting { owner_name: o, .. } | Fault::Unschedulable { owner_name: o, .. } => o == owner_name,
            _ => false,
        })
        .cloned()
}

/// Schedule and run (or fail) one pod; returns whether it is Ready (or Succeeded for Succeed).
fn settle_pod(st: &mut State, key: &ObjectKey, owner_name: &str, mode: PodMode) -> bool {
    let Some(mut pod) = st.objects.get(key).cloned() else {
        return false;
    };
    let now = now_rfc3339();
    let node = st.config.node_name.clone();
    let node_ip = st.config.node_ip.clone();
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let unready_names: Vec<String> = containers.iter().map(|c| s(c, &["name"]).to_string()).collect();
    let not_ready_msg = format!("containers with unready status: [{}]", unready_names.join(" "));
    let fault = fault_for(st, owner_name);
    let scheduled_already = !s(&pod, &["spec", "nodeName"]).is_empty();
    let unschedulable = match &fault {
        Some(Fault::Unschedulable { message, .. }) if !scheduled_already => Some(message.clone()),
        _ if scheduled_already => None,
        _ => fits(st, &pod).err(),
    };
    if let Some(message) = unschedulable {
        let status = json!({"phase": "Pending", "qosClass": qos_class(&pod), "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": now}]});
        write_status(st, key, status);
        let pod = st.objects.get(key).cloned().unwrap_or(pod);
        record_event(st, &pod, "Warning", "FailedScheduling", &message, "default-scheduler");
        return false;
    }
    if !scheduled_already {
        pod["spec"]["nodeName"] = json!(node);
        pod = st.store(pod, Actor::Controller);
    }
    st.counter += 1;
    let pod_ip = match pod.pointer("/status/podIP").and_then(Value::as_str) {
        Some(ip) => ip.to_string(),
        None => format!("10.42.0.{}", st.counter % 250 + 2),
    };
    let started = pod.pointer("/status/startTime").cloned().unwrap_or(json!(now));
    let base_conds = |ready: bool, reason: &str| {
        let mut c = vec![
            json!({"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}),
            json!({"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}),
        ];
        for ty in ["Ready", "ContainersReady"] {
            if ready {
                c.push(json!({"type": ty, "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
            } else {
                c.push(json!({"type": ty, "status": "False", "reason": reason, "message": not_ready_msg, "lastProbeTime": null, "lastTransitionTime": now}));
            }
        }
        c.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        c
    };
    let image_of = |c: &Value| s(c, &["image"]).to_string();
    let cid = |c: &Value| format!("containerd://{}", short_hash(&json!([key.name, s(c, &["name"])]), 24));
    let (phase, ready, statuses, conditions) = match (&fault, mode) {
        (Some(Fault::PodWaiting { reason, message, .. }), _) => {
            let crash = reason == "CrashLoopBackOff";
            let statuses: Vec<Value> = containers
                .iter()
                .map(|c| {
                    let mut cs = json!({"name": c["name"], "image": image_of(c), "imageID": "", "ready": false, "started": false,
                        "restartCount": if crash { 3 } else { 0 },
                        "state": {"waiting": {"reason": reason, "message": message}}});
                    if crash {
                        cs["imageID"] = json!(format!("{}@sha256:{}", image_of(c), short_hash(&c["image"], 32)));
                        cs["containerID"] = json!(cid(c));
                        cs["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now, "containerID": cid(c)}});
                    }
                    cs
                })
                .collect();
            (
                if crash { "Running" } else { "Pending" },
                false,
                statuses,
                base_conds(false, "ContainersNotReady"),
            )
        }
        (_, PodMode::Run) => {
            let statuses: Vec<Value> = containers
                .iter()
                .map(|c| json!({"name": c["name"], "image": image_of(c), "imageID": format!("{}@sha256:{}", image_of(c), short_hash(&c["image"], 32)),
                    "containerID": cid(c), "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": now}}}))
                .collect();
            ("Running", true, statuses, base_conds(true, ""))
        }
        (_, PodMode::Succeed) | (_, PodMode::Fail) => {
            let ok = mode == PodMode::Succeed;
            let statuses: Vec<Value> = containers
                .iter()
                .map(|c| json!({"name": c["name"], "image": image_of(c), "imageID": format!("{}@sha256:{}", image_of(c), short_hash(&c["image"], 32)),
                    "containerID": cid(c), "ready": false, "started": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": if ok { 0 } else { 1 }, "reason": if ok { "Completed" } else { "Error" }, "startedAt": now, "finishedAt": now, "containerID": cid(c)}}}))
                .collect();
            (
                if ok { "Succeeded" } else { "Failed" },
                ok,
                statuses,
                base_conds(false, "PodCompleted"),
            )
        }
    };
    let status = json!({"phase": phase, "conditions": conditions, "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": started, "qosClass": qos_class(&pod),
        "containerStatuses": statuses});
    let written = write_status(st, key, status);
    if written {
        let pod = st.objects.get(key).cloned().unwrap_or(pod);
        if let Some(Fault::PodWaiting { reason, message, .. }) = &fault {
            let c0 = containers.first().cloned().unwrap_or(json!({}));
            let cname = s(&c0, &["name"]).to_string();
            match reason.as_str() {
                "CrashLoopBackOff" => {
                    let msg = format!(
                        "Back-off restarting failed container {cname} in pod {}_{}({})",
                        key.name,
                        key.namespace.clone().unwrap_or_default(),
                        s(&pod, &["metadata", "uid"])
                    );
                    record_event(st, &pod, "Warning", "BackOff", &msg, "kubelet");
                }
                "ImagePullBackOff" | "ErrImagePull" => {
                    record_event(st, &pod, "Warning", "Failed", message, "kubelet");
                    let msg = format!("Back-off pulling image {:?}", image_of(&c0));
                    record_event(st, &pod, "Warning", "BackOff", &msg, "kubelet");
                }
                _ => record_event(st, &pod, "Warning", "Failed", &format!("Error: {reason}"), "kubelet"),
            }
        }
        if ready && mode == PodMode::Run {
            mark_ready(st, key);
        }
    }
    ready
}

#[allow(clippy::too_many_arguments)]
/// Keep `count` pods owned by `owner` (names from `names` if given, else `{prefix}{random}`).
fn sync_pods(
    st: &mut State,
    owner: &Value,
    top_name: &str,
    template: &Value,
    names: Option<Vec<String>>,
    count: usize,
    prefix: &str,
    extra_labels: &[(&str, String)],
    mode: PodMode,
) -> (usize, usize) {
    let ns = s(owner, &["metadata", "namespace"]).to_string();
    let uid = s(owner, &["metadata", "uid"]).to_string();
    let mut existing: Vec<ObjectKey> = owned_by(st, "Pod", &ns, &uid).into_iter().map(|(k, _)| k).collect();
    let wanted: Vec<String> = match names {
        Some(n) => n,
        None => {
            let mut keep: Vec<String> = existing.iter().take(count).map(|k| k.name.clone()).collect();
            while keep.len() < count {
                let n = format!("{prefix}{}", st.random_suffix(5));
                keep.push(n);
            }
            keep
        }
    };
    existing.retain(|k| !wanted.contains(&k.name));
    for k in existing {
        st.remove(&k, Actor::Controller, Propagation::Background);
    }
    let mut total = 0;
    let mut ready = 0;
    for name in wanted {
        let key = ObjectKey::new("v1", "Pod", Some(&ns), &name);
        if !st.objects.contains_key(&key) {
            let pod = make_pod(st, owner, &name, template, extra_labels);
            st.create_object(pod, Actor::Controller);
        }
        total += 1;
        if settle_pod(st, &key, top_name, mode) {
            ready += 1;
        }
        bind_claims_of(st, &key);
    }
    (total, ready)
}

// ------------------------------------------------------------------------------------------------
// workloads

fn deployment(st: &mut State, key: &ObjectKey, d: &Value) {
    let ns = key.namespace.clone().unwrap_or_default();
    let uid = s(d, &["metadata", "uid"]).to_string();
    let want = replicas(d).max(0);
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = short_hash(&template, 10);
    let rs_name = format!("{}-{hash}", key.name);
    for (k, _) in owned_by(st, "ReplicaSet", &ns, &uid) {
        if k.name != rs_name {
            st.remove(&k, Actor::Controller, Propagation::Background);
        }
    }
    let rs_key = ObjectKey::new("apps/v1", "ReplicaSet", Some(&ns), &rs_name);
    let mut rs_template = template.clone();
    rs_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = d
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or(json!({"matchLabels": {}}));
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let revision = st
        .objects
        .get(&rs_key)
        .and_then(|r| {
            r.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                .cloned()
        })
        .unwrap_or(json!("1"));
    let rs_spec = json!({"replicas": want, "selector": selector, "template": rs_template});
    let rs = match st.objects.get(&rs_key).cloned() {
        Some(mut rs) => {
            if rs["spec"] != rs_spec {
                rs["spec"] = rs_spec;
                rs["metadata"]["generation"] = json!(generation(&rs) + 1);
                st.store(rs, Actor::Controller)
            } else {
                rs
            }
        }
        None => {
            let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": rs_name, "namespace": ns, "labels": rs_template["metadata"]["labels"],
                    "annotations": {"deployment.kubernetes.io/desired-replicas": want.to_string(), "deployment.kubernetes.io/max-replicas": (want + 1).to_string(), "deployment.kubernetes.io/revision": revision},
                    "ownerReferences": [owner_ref(d)]},
                "spec": rs_spec});
            st.create_object(rs, Actor::Controller)
        }
    };
    let (total, ready) = replicaset(st, &rs_key, &rs, &key.name);
    let observed = generation(d);
    let was_ready = d.pointer("/status/observedGeneration").and_then(Value::as_i64) == Some(observed)
        && d.pointer("/status/availableReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            >= want;
    let now_ready = ready as i64 >= want;
    let mut status = Map::new();
    status.insert("observedGeneration".into(), json!(observed));
    insert_nonzero(&mut status, "replicas", total as i64);
    insert_nonzero(&mut status, "updatedReplicas", total as i64);
    insert_nonzero(&mut status, "readyReplicas", ready as i64);
    insert_nonzero(&mut status, "availableReplicas", ready as i64);
    insert_nonzero(&mut status, "unavailableReplicas", (want - ready as i64).max(0));
    let conditions = vec![
        if now_ready {
            cond(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        } else {
            cond(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        },
        if now_ready {
            cond(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                &format!("ReplicaSet {rs_name:?} has successfully progressed."),
            )
        } else {
            cond(
                "Progressing",
                true,
                "ReplicaSetUpdated",
                &format!("ReplicaSet {rs_name:?} is progressing."),
            )
        },
    ];
    status.insert("conditions".into(), json!(conditions));
    write_status(st, key, Value::Object(status));
    if now_ready && !was_ready {
        mark_ready(st, key);
    }
}

/// Returns (pods, ready pods).
fn replicaset(st: &mut State, key: &ObjectKey, rs: &Value, top_name: &str) -> (usize, usize) {
    let want = replicas(rs).max(0) as usize;
    let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let (total, ready) = sync_pods(
        st,
        rs,
        top_name,
        &template,
        None,
        want,
        &format!("{}-", key.name),
        &[],
        PodMode::Run,
    );
    let mut status = Map::new();
    status.insert("observedGeneration".into(), json!(generation(rs)));
    status.insert("replicas".into(), json!(total));
    insert_nonzero(&mut status, "fullyLabeledReplicas", total as i64);
    insert_nonzero(&mut status, "readyReplicas", ready as i64);
    insert_nonzero(&mut status, "availableReplicas", ready as i64);
    let was = rs.pointer("/status/observedGeneration").and_then(Value::as_i64) == Some(generation(rs))
        && rs.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0) as usize >= want;
    write_status(st, key, Value::Object(status));
    if ready >= want && !was && owner_uids(rs).is_empty() {
        mark_ready(st, key);
    }
    (total, ready)
}

fn statefulset(st: &mut State, key: &ObjectKey, sts: &Value) {
    let ns = key.namespace.clone().unwrap_or_default();
    let want = replicas(sts).max(0);
    let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let revision = format!("{}-{}", key.name, short_hash(&template, 10));
    // volumeClaimTemplates: one claim per pod, mounted as a volume named after the template
    let claim_templates = sts
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let selector_labels = sts.pointer("/spec/selector/matchLabels").cloned().unwrap_or(json!({}));
    let names: Vec<String> = (0..want).map(|i| format!("{}-{i}", key.name)).collect();
    for pod_name in &names {
        for ct in &claim_templates {
            let tname = s(ct, &["metadata", "name"]).to_string();
            let claim = format!("{tname}-{pod_name}");
            let ck = ObjectKey::new("v1", "PersistentVolumeClaim", Some(&ns), &claim);
            if !st.objects.contains_key(&ck) {
                let mut pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": ns, "labels": selector_labels},
                    "spec": ct.get("spec").cloned().unwrap_or(json!({}))});
                defaults_on_create(st, &mut pvc);
                st.create_object(pvc, Actor::Controller);
            }
        }
    }
    // pods of an old revision are replaced
    for name in &names {
        let pk = ObjectKey::new("v1", "Pod", Some(&ns), name);
        if let Some(p) = st.objects.get(&pk)
            && s(p, &["metadata", "labels", "controller-revision-hash"]) != revision
        {
            st.remove(&pk, Actor::Controller, Propagation::Background);
        }
    }
    let tpl_now = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut tpl_with_vols = tpl_now.clone();
    if !claim_templates.is_empty() {
        let mut vols = tpl_with_vols["spec"]["volumes"].as_array().cloned().unwrap_or_default();
        for ct in &claim_templates {
            let tname = s(ct, &["metadata", "name"]).to_string();
            vols.push(json!({"name": tname, "persistentVolumeClaim": {"claimName": format!("{tname}-PODNAME")}}));
        }
        tpl_with_vols["spec"]["volumes"] = json!(vols);
    }
    // recreate removed pods with per-pod claim names
    let mut total = 0i64;
    let mut ready = 0i64;
    for (i, pod_name) in names.iter().enumerate() {
        let pk = ObjectKey::new("v1", "Pod", Some(&ns), pod_name);
        if !st.objects.contains_key(&pk) {
            let mut tpl = tpl_with_vols.clone();
            let text = serde_json::to_string(&tpl)
                .unwrap_or_default()
                .replace("PODNAME", pod_name);
            tpl = serde_json::from_str(&text).unwrap_or(tpl);
            let pod = make_pod(
                st,
                sts,
                pod_name,
                &tpl,
                &[
                    ("controller-revision-hash", revision.clone()),
                    ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                    ("apps.kubernetes.io/pod-index", i.to_string()),
                ],
            );
            st.create_object(pod, Actor::Controller);
        }
        total += 1;
        if settle_pod(st, &pk, &key.name, PodMode::Run) {
            ready += 1;
        }
        bind_claims_of(st, &pk);
    }
    // scale down
    let uid = s(sts, &["metadata", "uid"]).to_string();
    for (k, _) in owned_by(st, "Pod", &ns, &uid) {
        if !names.contains(&k.name) {
            st.remove(&k, Actor::Controller, Propagation::Background);
        }
    }
    let observed = generation(sts);
    let was_ready = sts.pointer("/status/observedGeneration").and_then(Value::as_i64) == Some(observed)
        && sts
            .pointer("/status/readyReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            >= want;
    let mut status = Map::new();
    status.insert("observedGeneration".into(), json!(observed));
    status.insert("replicas".into(), json!(total));
    insert_nonzero(&mut status, "readyReplicas", ready);
    insert_nonzero(&mut status, "currentReplicas", total);
    insert_nonzero(&mut status, "updatedReplicas", total);
    insert_nonzero(&mut status, "availableReplicas", ready);
    status.insert("currentRevision".into(), json!(revision));
    status.insert("updateRevision".into(), json!(revision));
    status.insert("collisionCount".into(), json!(0));
    write_status(st, key, Value::Object(status));
    if ready >= want && !was_ready {
        mark_ready(st, key);
    }
}

fn daemonset(st: &mut State, key: &ObjectKey, ds: &Value) {
    let template = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = short_hash(&template, 10);
    let on_node = node_selects(st, &template);
    let ns = key.namespace.clone().unwrap_or_default();
    let uid = s(ds, &["metadata", "uid"]).to_string();
    for (k, p) in owned_by(st, "Pod", &ns, &uid) {
        if s(&p, &["metadata", "labels", "controller-revision-hash"]) != hash {
            st.remove(&k, Actor::Controller, Propagation::Background);
        }
    }
    let want = if on_node { 1 } else { 0 };
    let (total, ready) = sync_pods(
        st,
        ds,
        &key.name,
        &template,
        None,
        want,
        &format!("{}-", key.name),
        &[
            ("controller-revision-hash", hash),
            ("pod-template-generation", generation(ds).to_string()),
        ],
        PodMode::Run,
    );
    let observed = generation(ds);
    let was_ready = ds.pointer("/status/observedGeneration").and_then(Value::as_i64) == Some(observed)
        && ds.pointer("/status/numberReady").and_then(Value::as_i64).unwrap_or(0) >= want as i64;
    let mut status = Map::new();
    status.insert("observedGeneration".into(), json!(observed));
    status.insert("desiredNumberScheduled".into(), json!(want));
    status.insert("currentNumberScheduled".into(), json!(total));
    status.insert("numberMisscheduled".into(), json!(0));
    status.insert("numberReady".into(), json!(ready));
    insert_nonzero(&mut status, "updatedNumberScheduled", total as i64);
    insert_nonzero(&mut status, "numberAvailable", ready as i64);
    insert_nonzero(&mut status, "numberUnavailable", want as i64 - ready as i64);
    write_status(st, key, Value::Object(status));
    if ready >= want && !was_ready {
        mark_ready(st, key);
    }
}

fn job(st: &mut State, key: &ObjectKey, j: &Value) {
    if j.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if j.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
        })
    {
        return;
    }
    let fails = st
        .faults
        .iter()
        .any(|f| matches!(f, Fault::JobFails { name } if *name == key.name));
    let uid = s(j, &["metadata", "uid"]).to_string();
    let template = j.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let completions = j
        .pointer("/spec/completions")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(1);
    let labels = [
        ("batch.kubernetes.io/controller-uid", uid.clone()),
        ("batch.kubernetes.io/job-name", key.name.clone()),
        ("controller-uid", uid.clone()),
        ("job-name", key.name.clone()),
    ];
    let mode = if fails { PodMode::Fail } else { PodMode::Succeed };
    let (_, done) = sync_pods(
        st,
        j,
        &key.name,
        &template,
        None,
        1,
        &format!("{}-", key.name),
        &labels,
        mode,
    );
    let start = j.pointer("/status/startTime").cloned().unwrap_or(json!(now_rfc3339()));
    let now = now_rfc3339();
    let pod_finished = {
        let ns = key.namespace.clone().unwrap_or_default();
        owned_by(st, "Pod", &ns, &uid)
            .iter()
            .any(|(_, p)| matches!(s(p, &["status", "phase"]), "Succeeded" | "Failed"))
    };
    let status = if fails && pod_finished {
        let backoff = j.pointer("/spec/backoffLimit").and_then(Value::as_i64).unwrap_or(6);
        let msg = "Job has reached the specified backoff limit";
        json!({"startTime": start, "failed": backoff + 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": msg, "lastProbeTime": now, "lastTransitionTime": now},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": msg, "lastProbeTime": now, "lastTransitionTime": now}]})
    } else if done > 0 && pod_finished {
        let msg = "Reached expected number of succeeded pods";
        json!({"startTime": start, "completionTime": now, "succeeded": completions, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": msg, "lastProbeTime": now, "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": msg, "lastProbeTime": now, "lastTransitionTime": now}]})
    } else {
        json!({"startTime": start, "active": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}})
    };
    let failed = fails && pod_finished;
    let complete = !fails && done > 0 && pod_finished;
    write_status(st, key, status);
    if failed {
        let j = st.objects.get(key).cloned().unwrap_or(j.clone());
        record_event(
            st,
            &j,
            "Warning",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            "job-controller",
        );
    }
    if complete {
        mark_ready(st, key);
    }
}

// ------------------------------------------------------------------------------------------------
// storage, services, CRDs, namespaces, helm charts

fn claims_of(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| {
                    v.pointer("/persistentVolumeClaim/claimName")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn bind_claims_of(st: &mut State, pod_key: &ObjectKey) {
    let Some(pod) = st.objects.get(pod_key).cloned() else {
        return;
    };
    for claim in claims_of(&pod) {
        let ck = ObjectKey::new("v1", "PersistentVolumeClaim", pod_key.namespace.as_deref(), &claim);
        bind_pvc(st, &ck);
    }
}

/// A PersistentVolume made by hand (not by the provisioner): Available until a claim that names
/// it binds it, as the persistentvolume-controller does.
fn static_pv(st: &mut State, key: &ObjectKey, pv: &Value) {
    if pv.pointer("/status/phase").is_none() && write_status(st, key, json!({"phase": "Available"})) {
        mark_ready(st, key);
    }
    // A claim that was waiting for this volume binds now.
    let waiting: Vec<ObjectKey> = st
        .objects
        .iter()
        .filter(|(k, c)| k.kind == "PersistentVolumeClaim" && s(c, &["spec", "volumeName"]) == key.name)
        .map(|(k, _)| k.clone())
        .collect();
    for claim in waiting {
        bind_pvc(st, &claim);
    }
}

/// A claim naming its volume (`spec.volumeName`) binds to it when it exists: both go Bound.
fn bind_static(st: &mut State, key: &ObjectKey, pvc: &Value, volume: &str) {
    let pv_key = ObjectKey::new("v1", "PersistentVolume", None, volume);
    let Some(mut pv) = st.objects.get(&pv_key).cloned() else {
        record_event(
            st,
            pvc,
            "Warning",
            "FailedBinding",
            &format!("volume \"{volume}\" not found"),
            "persistentvolume-controller",
        );
        return;
    };
    let ns = key.namespace.clone().unwrap_or_default();
    pv["spec"]["claimRef"] = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": key.name,
        "namespace": ns, "uid": s(pvc, &["metadata", "uid"])});
    pv["status"] = json!({"phase": "Bound"});
    st.store(pv, Actor::Controller);
    let mut pvc = pvc.clone();
    pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] = json!("yes");
    let capacity = st
        .objects
        .get(&pv_key)
        .and_then(|v| v.pointer("/spec/capacity").cloned())
        .unwrap_or(json!({}));
    pvc["status"] = json!({"phase": "Bound", "accessModes": pvc.pointer("/spec/accessModes").cloned().unwrap_or(json!([])),
        "capacity": capacity});
    st.store(pvc, Actor::Controller);
    mark_ready(st, key);
}

fn bind_pvc(st: &mut State, key: &ObjectKey) {
    let Some(pvc) = st.objects.get(key).cloned() else {
        return;
    };
    if s(&pvc, &["status", "phase"]) == "Bound" {
        return;
    }
    let volume = s(&pvc, &["spec", "volumeName"]).to_string();
    if !volume.is_empty()
        && pvc
            .pointer("/metadata/annotations/pv.kubernetes.io~1bind-completed")
            .is_none()
    {
        bind_static(st, key, &pvc, &volume);
        return;
    }
    let Some((sc, mode)) = st.storage_class_mode(&pvc) else {
        record_event(
            st,
            &pvc,
            "Normal",
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
            "persistentvolume-controller",
        );
        return;
    };
    let ns = key.namespace.clone().unwrap_or_default();
    if mode == super::VolumeBindingMode::WaitForFirstConsumer {
        let consumer = st.objects.iter().any(|(k, p)| {
            k.kind == "Pod"
                && k.namespace.as_deref() == Some(ns.as_str())
                && !s(p, &["spec", "nodeName"]).is_empty()
                && claims_of(p).contains(&key.name)
        });
        if !consumer {
            record_event(
                st,
                &pvc,
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
                "persistentvolume-controller",
            );
            return;
        }
    }
    let uid = s(&pvc, &["metadata", "uid"]).to_string();
    let pv_name = format!("pvc-{uid}");
    let size = pvc
        .pointer("/spec/resources/requests/storage")
        .cloned()
        .unwrap_or(json!("1Gi"));
    let modes = pvc
        .pointer("/spec/accessModes")
        .cloned()
        .unwrap_or(json!(["ReadWriteOnce"]));
    let node = st.config.node_name.clone();
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"},
            "finalizers": ["kubernetes.io/pv-protection"]},
        "spec": {"capacity": {"storage": size}, "accessModes": modes, "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": sc, "volumeMode": "Filesystem",
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": key.name, "namespace": ns, "uid": uid},
            "hostPath": {"path": format!("/var/lib/rancher/k3s/storage/{pv_name}_{ns}_{}", key.name), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
        "status": {"phase": "Bound"}});
    if !st
        .objects
        .contains_key(&ObjectKey::new("v1", "PersistentVolume", None, &pv_name))
    {
        st.create_object(pv, Actor::Controller);
    }
    let mut pvc = pvc;
    pvc["spec"]["volumeName"] = json!(pv_name);
    pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] = json!("yes");
    pvc["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] = json!("yes");
    pvc["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-provisioner"] = json!("rancher.io/local-path");
    pvc["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] = json!("rancher.io/local-path");
    if mode == super::VolumeBindingMode::WaitForFirstConsumer {
        pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] = json!(node);
    }
    pvc["status"] = json!({"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}});
    st.store(pvc, Actor::Controller);
    mark_ready(st, key);
}

fn service(st: &mut State, key: &ObjectKey, svc: &Value) {
    if s(svc, &["spec", "type"]) != "LoadBalancer" {
        return;
    }
    let ip = st.config.node_ip.clone();
    if write_status(
        st,
        key,
        json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}),
    ) {
        mark_ready(st, key);
    }
}

pub fn crd(st: &mut State, key: &ObjectKey, c: &Value) {
    let types = discovery::from_crd(c);
    if types.is_empty() || s(c, &["spec", "group"]).is_empty() {
        return;
    }
    st.resources.retain(|r| r.crd.as_deref() != Some(key.name.as_str()));
    st.resources.extend(types);
    let mut accepted = c.pointer("/spec/names").cloned().unwrap_or(json!({}));
    if accepted.get("singular").is_none() {
        accepted["singular"] = json!(s(c, &["spec", "names", "kind"]).to_lowercase());
    }
    if accepted.get("listKind").is_none() {
        accepted["listKind"] = json!(format!("{}List", s(c, &["spec", "names", "kind"])));
    }
    let stored: Vec<Value> = c
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    let now = now_rfc3339();
    let status = json!({"acceptedNames": accepted, "storedVersions": stored, "conditions": [
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now}]});
    if write_status(st, key, status) {
        mark_ready(st, key);
    }
}

fn namespace(st: &mut State, key: &ObjectKey, ns: &Value) {
    if ns.pointer("/metadata/deletionTimestamp").is_none() {
        return;
    }
    let inside: Vec<ObjectKey> = st
        .objects
        .keys()
        .filter(|k| k.namespace.as_deref() == Some(key.name.as_str()))
        .cloned()
        .collect();
    for k in inside {
        st.remove(&k, Actor::Controller, Propagation::Background);
    }
    st.remove(key, Actor::Controller, Propagation::Background);
}

fn helmchart(st: &mut State, key: &ObjectKey, hc: &Value) {
    let ns = key.namespace.clone().unwrap_or_default();
    let job_name = format!("helm-install-{}", key.name);
    let jk = ObjectKey::new("batch/v1", "Job", Some(&ns), &job_name);
    if !st.objects.contains_key(&jk) {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name, "namespace": ns, "ownerReferences": [owner_ref(hc)],
                "labels": {"helmcharts.helm.cattle.io/chart": key.name}},
            "spec": {"backoffLimit": 1000, "template": {"metadata": {"labels": {"helmcharts.helm.cattle.io/chart": key.name}},
                "spec": {"restartPolicy": "OnFailure", "serviceAccountName": format!("helm-{}", key.name),
                    "containers": [{"name": "helm", "image": "rancher/klipper-helm:v0.9.8-build20250709", "args": ["install"]}]}}}});
        st.create_object(job, Actor::Controller);
    }
    job(st, &jk, &st.objects.get(&jk).cloned().unwrap_or(json!({})));
    let mut status = hc.get("status").cloned().unwrap_or(json!({}));
    status["jobName"] = json!(job_name);
    if write_status(st, key, status) {
        mark_ready(st, key);
    }
}

/// k0s's Helm extension installs the chart itself (no Job) and reports the release in the status.
/// Like k0s v1.35.3's `ChartReconciler.updateOrInstallChart`
/// (k0sproject/k0s `pkg/component/controller/extensions_controller.go` at v1.35.3+k0s.0): without
/// `spec.repository` the text of `chartName` before the first `/` must name a repository of
/// k0s.yaml (the simulated cluster configures none), else `status.error` says so and nothing is
/// installed. `status.valuesHash` is `ChartSpec.HashValues` (sha256 of releaseName + values).
/// Returns whether the chart was installed.
fn k0s_chart(st: &mut State, key: &ObjectKey, chart: &Value) -> bool {
    let chart_name = s(chart, &["spec", "chartName"]).to_string();
    let hash = kstrap::distro::helm::k0s_values_hash(chart);
    if chart.pointer("/spec/repository").is_none() {
        let repo_id = chart_name.split_once('/').map(|(r, _)| r).unwrap_or_default();
        let error = if repo_id.is_empty() {
            format!(
                "can't lookup repository for chart {chart_name:?}: invalid chart name {chart_name:?}: expected format 'repository/chart' for non-OCI charts"
            )
        } else {
            format!(
                "can't lookup repository for chart {chart_name:?}: repository '{repo_id}' not found in cluster configuration"
            )
        };
        let status = json!({"updated": now_rfc3339(), "valuesHash": hash, "error": error});
        write_status(st, key, status);
        return false;
    }
    let status = json!({"releaseName": s(chart, &["spec", "releaseName"]), "namespace": s(chart, &["spec", "namespace"]),
        "version": s(chart, &["spec", "version"]), "appVersion": s(chart, &["spec", "version"]), "revision": 1,
        "status": "deployed", "updated": now_rfc3339(), "valuesHash": hash});
    if write_status(st, key, status) {
        mark_ready(st, key);
    }
    true
}
