//! Readiness rules from JSON fixtures, property tests that they never panic, and timestamps.

use super::*;
use proptest::prelude::*;
use serde_json::json;
use std::path::PathBuf;

/// 2025-01-01T00:00:20Z: fixtures' timestamps are at 00:00:00 and 00:00:10.
const NOW: i64 = 1_735_689_620;

fn ctx() -> Context {
    let mut storage_classes = BTreeMap::new();
    storage_classes.insert(
        "local-path".to_string(),
        StorageClassInfo {
            wait_for_first_consumer: true,
        },
    );
    storage_classes.insert(
        "standard".to_string(),
        StorageClassInfo {
            wait_for_first_consumer: false,
        },
    );
    Context {
        storage_classes,
        default_storage_class: Some("local-path".to_string()),
        now_unix: NOW,
        unschedulable_grace_s: 15,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Ready,
    Progress,
    Fail,
}
use Want::{Fail, Progress, Ready};

/// (fixture, expected variant, substring of the reason; "" for Ready).
const TABLE: &[(&str, Want, &str)] = &[
    ("deployment-ready", Ready, ""),
    (
        "deployment-rolling-old-replicas",
        Progress,
        "1 old replicas pending termination (4 running, 3 updated)",
    ),
    (
        "deployment-generation-lag",
        Progress,
        "waiting for the controller to observe generation 4 (observed 3)",
    ),
    (
        "deployment-progress-deadline",
        Fail,
        "progress deadline exceeded (ReplicaSet \"ollama-7b9\" has timed out",
    ),
    ("deployment-zero-replicas", Ready, ""),
    ("deployment-too-few-available", Progress, "2/3 replicas available"),
    ("deployment-too-few-ready", Progress, "1/2 replicas ready"),
    ("deployment-no-status", Progress, "no status yet"),
    ("deployment-paused", Ready, ""),
    (
        "deployment-not-available",
        Progress,
        "not Available (MinimumReplicasUnavailable",
    ),
    ("deployment-being-deleted", Progress, "the Deployment is being deleted"),
    ("statefulset-ready", Ready, ""),
    (
        "statefulset-revision-mismatch",
        Progress,
        "revision qdrant-6b7 → qdrant-8c1, 1/3 replicas updated",
    ),
    ("statefulset-partition-done", Ready, ""),
    (
        "statefulset-partition-pending",
        Progress,
        "1/2 replicas updated (partition 1)",
    ),
    ("statefulset-ondelete-ready", Ready, ""),
    ("statefulset-ondelete-not-ready", Progress, "1/2 replicas ready"),
    ("daemonset-ready", Ready, ""),
    ("daemonset-desired-zero", Ready, ""),
    ("daemonset-updating", Progress, "1/2 pods updated"),
    ("daemonset-no-observed-generation", Progress, "observe the DaemonSet"),
    ("job-complete", Ready, ""),
    (
        "job-failed-backoff",
        Fail,
        "the Job failed (5 failed pods) (BackoffLimitExceeded: Job has reached",
    ),
    ("job-running", Progress, "0/1 completions succeeded, 1 active"),
    (
        "job-retrying",
        Progress,
        "0/2 completions succeeded, 1 active, 2 failed (retrying)",
    ),
    ("pod-ready", Ready, ""),
    ("pod-succeeded", Ready, ""),
    (
        "pod-failed",
        Fail,
        "the Pod failed (Evicted: The node was low on resource: memory.)",
    ),
    (
        "pod-crashloop",
        Fail,
        "container app is in CrashLoopBackOff (3 restarts, last exit code 137: OOMKilled)",
    ),
    (
        "pod-init-crashloop",
        Fail,
        "container init-model is in CrashLoopBackOff (2 restarts, last exit code 1",
    ),
    (
        "pod-image-pull-backoff",
        Progress,
        "container app is waiting: ImagePullBackOff: Back-off pulling image",
    ),
    (
        "pod-create-config-error",
        Progress,
        "CreateContainerConfigError: secret \"hf-token\" not found",
    ),
    (
        "pod-unschedulable-10s",
        Progress,
        "not scheduled yet: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
    ),
    (
        "pod-unschedulable-20s",
        Fail,
        "unschedulable for 20 s: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
    ),
    ("pod-running-not-ready", Progress, "the Pod is Running and not Ready"),
    ("pvc-bound", Ready, ""),
    ("pvc-wffc-explicit-class", Ready, ""),
    ("pvc-wffc-default-class", Ready, ""),
    (
        "pvc-immediate-pending",
        Progress,
        "Pending, not Bound (storage class standard binds immediately)",
    ),
    ("pvc-empty-class-pending", Progress, "not Bound (no storage class)"),
    ("pvc-lost", Fail, "phase Lost"),
    ("crd-established", Ready, ""),
    (
        "crd-names-conflict",
        Fail,
        "names not accepted (MultipleNameConflicts: \"models\" is already in use)",
    ),
    ("crd-installing", Progress, "waiting for the CRD to be established"),
    ("service-clusterip", Ready, ""),
    ("service-loadbalancer-with-ingress", Ready, ""),
    (
        "service-loadbalancer-without-ingress",
        Progress,
        "waiting for a load-balancer address",
    ),
    ("service-externalname", Ready, ""),
    ("namespace-active", Ready, ""),
    ("namespace-terminating", Progress, "terminating"),
    ("pv-available", Ready, ""),
    ("pv-released", Progress, "the volume is Released"),
    ("cr-ready", Ready, ""),
    (
        "cr-not-ready",
        Progress,
        "not Ready (ModelDownloading: downloaded 12 of 40 GiB)",
    ),
    (
        "cr-stalled",
        Fail,
        "stalled (SourceNotFound: repository example/model does not exist)",
    ),
    ("cr-no-conditions", Ready, ""),
    ("cr-generation-lag", Progress, "observe generation 2 (observed 1)"),
    ("cr-lookalike-deployment", Ready, ""),
    (
        "clusterpolicy-reconciling",
        Progress,
        "reconciling (Progressing: waiting for the driver daemonset)",
    ),
    (
        "k0s-chart-error",
        Fail,
        "failed to install chart grafana: can't lookup repository",
    ),
    ("k0s-chart-no-status", Progress, "has not installed the chart yet"),
    ("k0s-chart-installed", Ready, ""),
    ("k0s-chart-values-pending", Progress, "new values"),
    ("helmchart-failed", Fail, "Job create failed: Failed to generate Job"),
    ("helmchart-job-created", Ready, ""),
    ("configmap", Ready, ""),
    ("secret", Ready, ""),
    ("serviceaccount", Ready, ""),
    ("role", Ready, ""),
    ("clusterrolebinding", Ready, ""),
    ("networkpolicy", Ready, ""),
    ("ingress-no-status", Ready, ""),
    ("runtimeclass", Ready, ""),
    ("storageclass", Ready, ""),
    ("garbage-no-kind", Fail, "no kind"),
    ("garbage-array", Fail, "not a Kubernetes object"),
    ("garbage-deployment-wrong-types", Progress, "no status yet"),
    ("garbage-pod-wrong-types", Progress, "not Ready"),
];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/readiness")
}

fn load(name: &str) -> Value {
    let path = fixture_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn fixtures_match_the_table() {
    let ctx = ctx();
    let mut failures = Vec::new();
    for (name, want, needle) in TABLE {
        let got = readiness(&load(name), &ctx);
        let variant = match &got {
            Readiness::Ready => Ready,
            Readiness::InProgress { .. } => Progress,
            Readiness::Failed { .. } => Fail,
        };
        let reason_ok = got.reason().unwrap_or("").contains(needle);
        if variant != *want || !reason_ok {
            failures.push(format!("{name}: want {want:?} containing {needle:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_has_a_row_and_every_row_a_fixture() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
        .collect();
    on_disk.sort();
    let mut in_table: Vec<String> = TABLE.iter().map(|(n, _, _)| n.to_string()).collect();
    in_table.sort();
    assert_eq!(on_disk, in_table);
    assert!(in_table.len() >= 40);
}

#[test]
fn unschedulable_grace_is_the_callers() {
    let pod = load("pod-unschedulable-10s");
    let mut ctx = ctx();
    assert!(!readiness(&pod, &ctx).is_failed());
    ctx.unschedulable_grace_s = 5;
    assert!(readiness(&pod, &ctx).is_failed());
    // Exactly at the grace boundary is not yet a failure.
    ctx.unschedulable_grace_s = 10;
    assert!(!readiness(&pod, &ctx).is_failed());
}

#[test]
fn unschedulable_falls_back_to_creation_time_and_waits_when_unknown() {
    let mut pod = load("pod-unschedulable-10s");
    pod["status"]["conditions"][0]["lastTransitionTime"] = json!("not a time");
    // creationTimestamp is 00:00:00, 20 s before NOW.
    assert!(readiness(&pod, &ctx()).is_failed());
    pod["metadata"]["creationTimestamp"] = json!(null);
    assert!(matches!(readiness(&pod, &ctx()), Readiness::InProgress { .. }));
}

#[test]
fn pvc_without_class_and_without_default_is_in_progress() {
    let pvc = load("pvc-wffc-default-class");
    let ctx = Context {
        default_storage_class: None,
        ..ctx()
    };
    assert_eq!(
        readiness(&pvc, &ctx),
        Readiness::InProgress {
            reason: "the claim is Pending, not Bound (no storage class)".into()
        }
    );
}

#[test]
fn generation_ahead_of_observed_only_blocks_when_behind() {
    let mut dep = load("deployment-ready");
    dep["status"]["observedGeneration"] = json!(2);
    assert!(readiness(&dep, &ctx()).is_ready());
    dep["metadata"]["generation"] = json!(3);
    assert!(!readiness(&dep, &ctx()).is_ready());
}

#[test]
fn extreme_counts_do_not_overflow() {
    let patches = [
        (
            "deployment-rolling-old-replicas",
            json!({"spec": {"replicas": i64::MIN}, "status": {"replicas": i64::MAX, "updatedReplicas": i64::MIN}}),
        ),
        (
            "statefulset-ready",
            json!({"spec": {"replicas": i64::MIN}, "status": {"replicas": i64::MAX}}),
        ),
        (
            "statefulset-partition-pending",
            json!({"spec": {"replicas": -2, "updateStrategy": {"rollingUpdate": {"partition": i64::MAX}}}, "status": {"replicas": -2}}),
        ),
    ];
    for (name, patch) in patches {
        let mut obj = load(name);
        merge(&mut obj, &patch);
        let _ = readiness(&obj, &ctx());
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[test]
fn serializes_with_a_state_tag() {
    let v = serde_json::to_value(Readiness::Failed { reason: "x".into() }).expect("serialize");
    assert_eq!(v, json!({"state": "failed", "reason": "x"}));
    assert_eq!(
        serde_json::to_value(Readiness::Ready).expect("serialize"),
        json!({"state": "ready"})
    );
}

#[test]
fn parses_rfc3339() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339("2025-01-01T00:00:20Z"), Some(NOW));
    assert_eq!(parse_rfc3339("2025-01-01T01:00:20.123456+01:00"), Some(NOW));
    assert_eq!(parse_rfc3339("2024-12-31T23:00:20-01:00"), Some(NOW));
    assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
    for bad in [
        "",
        "2025-01-01",
        "2025-13-01T00:00:00Z",
        "2025-01-01T00:00:00",
        "2025-01-01T00:00:00.Z",
        "2025-01-01T00:00:00+0100",
        "2025-01-01T00:00:00Zjunk",
        "२०२५-01-01T00:00:00Z",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("True".to_string()),
            Just("False".to_string()),
            Just("Pending".to_string()),
            Just("2025-01-01T00:00:00Z".to_string()),
            ".{0,8}"
        ]
        .prop_map(Value::String),
    ];
    let keys = prop_oneof![
        Just("apiVersion"),
        Just("kind"),
        Just("metadata"),
        Just("spec"),
        Just("status"),
        Just("generation"),
        Just("observedGeneration"),
        Just("conditions"),
        Just("type"),
        Just("status"),
        Just("reason"),
        Just("phase"),
        Just("replicas"),
        Just("containerStatuses"),
        Just("state"),
        Just("waiting"),
        Just("lastTransitionTime"),
        Just("storageClassName"),
    ]
    .prop_map(str::to_string);
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_kind() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        Just(("apps/v1", "Deployment")),
        Just(("apps/v1", "StatefulSet")),
        Just(("apps/v1", "DaemonSet")),
        Just(("apps/v1", "ReplicaSet")),
        Just(("batch/v1", "Job")),
        Just(("v1", "Pod")),
        Just(("v1", "PersistentVolumeClaim")),
        Just(("v1", "PersistentVolume")),
        Just(("v1", "Service")),
        Just(("v1", "Namespace")),
        Just(("apiextensions.k8s.io/v1", "CustomResourceDefinition")),
        Just(("ai.example.com/v1", "Model")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let _ = readiness(&v, &ctx());
    }

    #[test]
    fn arbitrary_objects_of_known_kinds_never_panic(
        (api, kind) in arb_kind(),
        metadata in arb_json(),
        spec in arb_json(),
        status in arb_json(),
        now in any::<i64>(),
        grace in any::<i64>(),
    ) {
        let obj = json!({"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec, "status": status});
        let ctx = Context { now_unix: now, unschedulable_grace_s: grace, ..ctx() };
        let _ = readiness(&obj, &ctx);
    }

    #[test]
    fn arbitrary_strings_never_panic_the_time_parser(s in ".{0,40}") {
        let _ = parse_rfc3339(&s);
    }
}

#[test]
fn readiness_of_a_dynamic_object_matches_the_json_rules() {
    let json = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "d", "generation": 2},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                   "availableReplicas": 1, "conditions": [{"type": "Available", "status": "True"}]}});
    let obj: ::kube::api::DynamicObject = serde_json::from_value(json.clone()).unwrap();
    let ctx = Context::default();
    let r = readiness_of(&obj, &ctx);
    assert_eq!(r, readiness(&json, &ctx));
    assert!(r.reason().unwrap().contains("generation 2"), "{r:?}");
}
