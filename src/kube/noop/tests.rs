//! The no-op decision against objects as a real kube-apiserver v1.36.2 returned them
//! (`src/kube/testdata/ssa-live-*.json`: applied with `kubectl apply --server-side
//! --field-manager kstrap` from `ssa-applied-*.json`, then read back with managedFields).

use super::*;
use serde_json::json;

fn fixture(name: &str) -> Value {
    let path = format!("{}/src/kube/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn deployment() -> (Value, Value) {
    (
        fixture("ssa-live-deployment.json"),
        fixture("ssa-applied-deployment.json"),
    )
}

#[test]
fn the_same_configuration_is_a_noop_despite_defaults_and_normalised_quantities() {
    let (live, applied) = deployment();
    // The server stored cpu "1000m" as "1" and defaulted imagePullPolicy, protocol, strategy.
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "1"
    );
    assert_eq!(
        applied["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "1000m"
    );
    assert!(apply_is_noop(&live, &applied, "kstrap"));
    let (live, applied) = (fixture("ssa-live-service.json"), fixture("ssa-applied-service.json"));
    assert!(apply_is_noop(&live, &applied, "kstrap"));
}

#[test]
fn a_changed_value_is_a_change() {
    let (live, mut applied) = deployment();
    applied["spec"]["replicas"] = json!(2);
    assert!(!apply_is_noop(&live, &applied, "kstrap"));
    let (live, mut applied) = deployment();
    applied["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("500m");
    assert!(!apply_is_noop(&live, &applied, "kstrap"));
    let (live, mut applied) = deployment();
    applied["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["a"]);
    assert!(!apply_is_noop(&live, &applied, "kstrap"));
    let (live, mut applied) = deployment();
    applied["spec"]["template"]["spec"]["containers"][1]["image"] = json!("pause:2");
    assert!(!apply_is_noop(&live, &applied, "kstrap"));
}

#[test]
fn a_field_dropped_from_the_configuration_is_a_change() {
    // kstrap owns args and the second container: applying without them removes them.
    let (live, mut applied) = deployment();
    applied["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("args");
    assert!(!apply_is_noop(&live, &applied, "kstrap"));
    let (live, mut applied) = deployment();
    applied["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .pop();
    assert!(!apply_is_noop(&live, &applied, "kstrap"));
}

#[test]
fn a_field_kstrap_does_not_own_yet_is_a_change_even_with_the_live_value() {
    // imagePullPolicy holds "Always" (defaulted), but applying it makes kstrap its owner.
    let (live, mut applied) = deployment();
    applied["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
    assert!(!apply_is_noop(&live, &applied, "kstrap"));
    let (live, mut applied) = deployment();
    applied["metadata"]["labels"] = json!({"extra": "x"});
    assert!(!apply_is_noop(&live, &applied, "kstrap"));
}

#[test]
fn another_manager_another_version_or_no_entry_is_a_change() {
    let (live, applied) = deployment();
    assert!(!apply_is_noop(&live, &applied, "helm"));
    let (mut live2, applied2) = deployment();
    live2["metadata"]["managedFields"][0]["apiVersion"] = json!("apps/v1beta2");
    assert!(!apply_is_noop(&live2, &applied2, "kstrap"));
    let mut bare = live.clone();
    bare["metadata"].as_object_mut().unwrap().remove("managedFields");
    assert!(!apply_is_noop(&bare, &applied, "kstrap"));
    // The same manager's Update entry (kubectl edit with --field-manager) is not an apply.
    let mut update = live.clone();
    update["metadata"]["managedFields"][0]["operation"] = json!("Update");
    assert!(!apply_is_noop(&update, &applied, "kstrap"));
}

#[test]
fn a_value_changed_by_someone_else_is_a_change() {
    // Live value changed under kstrap's ownership (a mutating webhook, a forced apply whose
    // managedFields this copy predates): the values differ, so the apply is sent.
    let (mut live, applied) = deployment();
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
    assert!(!apply_is_noop(&live, &applied, "kstrap"));
}

#[test]
fn empty_maps_the_server_dropped_match() {
    let live = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n", "managedFields": [
            {"manager": "kstrap", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}}}]},
        "data": {"k": "v"}
    });
    let mut applied = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n", "labels": {"a": "b"}}, "data": {"k": "v"}});
    // The label value differs from live (absent): a change.
    assert!(!apply_is_noop(&live, &applied, "kstrap"));
    let mut with_label = live.clone();
    with_label["metadata"]["labels"] = json!({"a": "b"});
    assert!(apply_is_noop(&with_label, &applied, "kstrap"));
    applied["data"]["k"] = json!("w");
    assert!(!apply_is_noop(&with_label, &applied, "kstrap"));
}

#[test]
fn sets_match_by_value() {
    let live = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "x", "finalizers": ["a", "b"], "managedFields": [
            {"manager": "kstrap", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:finalizers": {".": {}, "v:\"a\"": {}, "v:\"b\"": {}}}}}]}
    });
    let applied = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "finalizers": ["a", "b"]}});
    assert!(apply_is_noop(&live, &applied, "kstrap"));
    let fewer = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "finalizers": ["a"]}});
    assert!(!apply_is_noop(&live, &fewer, "kstrap"));
}

#[test]
fn quantities_compare_by_value_only_where_the_server_normalises() {
    assert_eq!(parse_quantity("1000m"), parse_quantity("1"));
    assert_eq!(parse_quantity("0.5"), parse_quantity("500m"));
    assert_eq!(parse_quantity("1Gi"), parse_quantity("1073741824"));
    assert_eq!(parse_quantity("1e3"), parse_quantity("1k"));
    assert_ne!(parse_quantity("1Gi"), parse_quantity("1G"));
    assert_eq!(parse_quantity("abc"), None);
    assert_eq!(parse_quantity("1.5n"), None);
    assert!(same_values(
        &json!({"requests": {"cpu": "1"}}),
        &json!({"requests": {"cpu": "1000m"}}),
        false
    ));
    assert!(same_values(
        &json!({"sizeLimit": "1Gi"}),
        &json!({"sizeLimit": "1024Mi"}),
        false
    ));
    assert!(same_values(
        &json!({"requests": {"cpu": "2"}}),
        &json!({"requests": {"cpu": 2}}),
        false
    ));
    // A ConfigMap value is text: "1" is not "1000m" there.
    assert!(!same_values(
        &json!({"data": {"cpu": "1"}}),
        &json!({"data": {"cpu": "1000m"}}),
        false
    ));
    assert!(same_values(&json!({"replicas": 1}), &json!({"replicas": 1.0}), false));
}
