//! Unit tests of the stack engine's pure parts: preparing objects, CRD kinds, error wording.

use super::*;
use crate::kube::diagnose::Diagnosis;
use crate::plan::step::ObjectRef;
use crate::stack::{StackObject, Stage};
use serde_json::json;

fn obj(source: &str, v: Value) -> StackObject {
    StackObject {
        reference: ObjectRef {
            api_version: v["apiVersion"].as_str().unwrap().into(),
            kind: v["kind"].as_str().unwrap().into(),
            namespace: v["metadata"]["namespace"].as_str().map(str::to_string),
            name: v["metadata"]["name"].as_str().unwrap().into(),
        },
        source: source.into(),
        document: 0,
        line: 1,
        value: v,
    }
}

fn stack(objects: Vec<StackObject>) -> Stack {
    Stack {
        name: "demo".into(),
        description: String::new(),
        namespace: "demo".into(),
        stages: vec![Stage {
            dir: "00-base".into(),
            name: "base".into(),
            description: String::new(),
            timeout_s: 30,
            objects,
        }],
        profiles: Default::default(),
        distros: Default::default(),
        secrets: Vec::new(),
        images: Vec::new(),
        namespaces: Vec::new(),
        databases: Vec::new(),
        verify: None,
    }
}

#[test]
fn prepare_labels_everything_and_puts_secrets_after_namespaces() {
    let s = stack(vec![
        obj(
            "demo/00-base/ns.yaml",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}),
        ),
        obj(
            "demo/00-base/cm.yaml",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "demo"}}),
        ),
    ]);
    let set = ApplySet::for_stack("demo");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"}, "stringData": {"k": "v"}});
    let stages = prepare(&s, vec![secret], &set).unwrap();
    let names: Vec<&str> = stages[0].2.iter().map(|o| o.display.as_str()).collect();
    assert_eq!(names, ["Namespace/demo", "Secret/keys -n demo", "ConfigMap/c -n demo"]);
    for o in &stages[0].2 {
        assert_eq!(o.value["metadata"]["labels"][applyset::PART_OF_LABEL], set.id.as_str());
        assert_eq!(o.value["metadata"]["labels"][applyset::MANAGED_BY_LABEL], "kstrap");
    }
    assert_eq!(stages[0].1, Duration::from_secs(30));
}

#[test]
fn prepare_refuses_an_object_of_another_applyset_naming_its_file() {
    let s = stack(vec![obj(
        "demo/00-base/cm.yaml",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "namespace": "demo", "labels": {"applyset.kubernetes.io/part-of": "applyset-x-v1"}}}),
    )]);
    let err = prepare(&s, Vec::new(), &ApplySet::for_stack("demo")).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(text.contains("demo/00-base/cm.yaml document 0 (line 1)"), "{text}");
    assert!(text.contains("applyset-x-v1"), "{text}");
}

#[test]
fn crd_kinds_lists_every_version() {
    let crd = json!({"spec": {"group": "example.com", "names": {"kind": "Widget"},
        "versions": [{"name": "v1"}, {"name": "v1beta1"}]}});
    assert_eq!(
        crd_kinds(&crd),
        [
            ("example.com/v1".to_string(), "Widget".to_string()),
            ("example.com/v1beta1".to_string(), "Widget".to_string())
        ]
    );
}

#[test]
fn errors_map_to_exit_codes_and_say_what_to_do() {
    let d = Diagnosis {
        object: "Deployment/web -n demo".into(),
        reason: "0/1 replicas ready".into(),
        details: vec![],
        events: vec![],
        next_command: None,
    };
    let timeout = ApplyError::Timeout {
        stage: "ai".into(),
        timeout: Duration::from_secs(5),
        not_ready: vec![d.clone()],
    };
    assert_eq!(timeout.exit_code(), 4);
    assert_eq!(
        timeout.to_string(),
        "stage ai: not ready after 5s: Deployment/web -n demo (0/1 replicas ready)"
    );
    assert_eq!(timeout.diagnoses().len(), 1);
    let failed = ApplyError::Failed {
        stage: "ai".into(),
        failed: vec![d],
    };
    assert_eq!(failed.exit_code(), 1);
    let conflict = ApplyError::Conflict {
        object: "Deployment/web -n demo".into(),
        manager: "helm".into(),
        field: ".spec.replicas".into(),
    };
    assert_eq!(conflict.exit_code(), 1);
    assert!(conflict.to_string().contains("\"helm\""));
    assert!(conflict.to_string().contains("--force-conflicts"));
    let kc = ApplyError::Kubeconfig {
        file: "/tmp/k".into(),
        message: "x".into(),
    };
    assert_eq!(kc.exit_code(), 2);
    let unknown = ApplyError::UnknownKind {
        source_file: "s/10-x/w.yaml".into(),
        document: 2,
        line: 9,
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
    };
    assert_eq!(unknown.exit_code(), 1);
    assert!(unknown.to_string().contains("s/10-x/w.yaml document 2 (line 9)"));
    assert!(unknown.to_string().contains("CustomResourceDefinition"));
    assert_eq!(ApplyError::Network { message: "x".into() }.exit_code(), 1);
}

#[tokio::test]
async fn client_from_names_the_file_and_never_its_contents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(
        &path,
        "apiVersion: v1\nusers:\n- name: u\n  user:\n    token: s3cr3t-t0ken\n  [broken",
    )
    .unwrap();
    let err = client_from(Some(&path), None).await.err().unwrap();
    let text = err.to_string();
    assert_eq!(err.exit_code(), 2);
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");

    let missing = dir.path().join("nope");
    let err = client_from(Some(&missing), None).await.err().unwrap();
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(err.to_string().contains("cannot read it"), "{err}");

    let good = dir.path().join("good");
    std::fs::write(
        &good,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: s3cr3t\ncurrent-context: x\n",
    )
    .unwrap();
    assert!(client_from(Some(&good), None).await.is_ok());
    let err = client_from(Some(&good), Some("other")).await.err().unwrap();
    assert!(err.to_string().contains("\"other\""), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}
