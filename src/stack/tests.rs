//! Tests of the stack loader: the built-in stacks, the ordering and defaulting rules, and one bad
//! input per error, each with a snapshot of the message a person would read.

use super::*;
use proptest::prelude::*;
use std::fs;
use tempfile::TempDir;

const STACK_YAML: &str = "\
name: s
description: test stack
namespace: demo
stages:
  - dir: 00-base
    name: base
    timeout_s: 60
    description: everything
";

/// A folder of stacks holding stack `s`: its stack.yaml plus `files` (paths relative to `s/`).
fn stack_with(stack_yaml: Option<&str>, files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    fs::create_dir_all(&root).unwrap();
    if let Some(text) = stack_yaml {
        fs::write(root.join("stack.yaml"), text).unwrap();
    }
    for (path, text) in files {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

fn load_files(files: &[(&str, &str)]) -> Result<Stack, StackError> {
    let dir = stack_with(Some(STACK_YAML), files);
    load("s", Some(dir.path()))
}

fn error_of(files: &[(&str, &str)]) -> String {
    load_files(files).unwrap_err().to_string()
}

fn kinds(stage: &Stage) -> Vec<&str> {
    stage.objects.iter().map(|o| o.reference.kind.as_str()).collect()
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n";

// ---- the built-in stacks -------------------------------------------------------------------

#[test]
fn embedded_voice_ai_loads_with_stages_in_order() {
    assert!(embedded_names().contains(&"voice-ai".to_string()));
    let s = load("voice-ai", None).unwrap();
    assert_eq!(s.namespace, "voice-ai");
    let stages: Vec<&str> = s.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(stages, ["base", "storage", "ai", "models", "web"]);
    let dirs: Vec<&str> = s.stages.iter().map(|s| s.dir.as_str()).collect();
    assert_eq!(dirs, ["00-base", "10-storage", "20-ai", "25-models", "30-web"]);
    assert_eq!(s.stages[0].objects[0].reference.kind, "Namespace");
    let ollama = s.stages[2]
        .objects
        .iter()
        .find(|o| o.reference.kind == "Deployment" && o.reference.name == "ollama")
        .unwrap();
    assert_eq!(ollama.source, "manifests/voice-ai/20-ai/ollama.yaml");
    assert_eq!(ollama.document, 0);
    assert!(ollama.line > 1);
    assert_eq!(ollama.reference.namespace.as_deref(), Some("voice-ai"));
    assert_eq!(ollama.value["metadata"]["namespace"], "voice-ai");
}

#[test]
fn embedded_voice_ai_has_the_seed_volumes() {
    let s = load("voice-ai", None).unwrap();
    let sizes: Vec<(String, String)> = s
        .stages
        .iter()
        .flat_map(|st| &st.objects)
        .filter(|o| o.reference.kind == "PersistentVolumeClaim")
        .map(|o| {
            let size = o.value["spec"]["resources"]["requests"]["storage"].clone();
            (o.reference.name.clone(), size.as_str().unwrap().to_string())
        })
        .collect();
    for (name, size) in [
        ("ollama-models", "20Gi"),
        ("whisper-cache", "10Gi"),
        ("kokoro-voices", "5Gi"),
        ("temp", "5Gi"),
    ] {
        assert!(
            sizes.contains(&(name.to_string(), size.to_string())),
            "{name} {size} in {sizes:?}"
        );
    }
}

#[test]
fn every_embedded_container_is_pinned_limited_and_locked_down() {
    for name in embedded_names() {
        let s = load(&name, None).unwrap();
        let mut containers = 0;
        for o in s.stages.iter().flat_map(|st| &st.objects) {
            let kind = o.reference.kind.as_str();
            if let Some(pod) = o.value.pointer("/spec/template/spec") {
                assert_eq!(
                    pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                    "{}",
                    o.reference
                );
            }
            for (_, c) in check::containers(kind, &o.value) {
                containers += 1;
                let image = c["image"].as_str().unwrap();
                assert_eq!(check::image_problem(image), None, "{image}");
                assert!(!image.ends_with(":latest"), "{image}");
                for field in ["cpu", "memory"] {
                    assert!(c["resources"]["limits"][field].is_string(), "{}", o.reference);
                    assert!(c["resources"]["requests"][field].is_string(), "{}", o.reference);
                }
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", o.reference);
                assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{}", o.reference);
                // A Job runs to completion: its readiness is that it completed, not a probe.
                if kind != "Job" {
                    assert!(c["readinessProbe"].is_object(), "{}", o.reference);
                }
                // GPU requests come from a profile's overlay, never from the base YAML.
                assert!(!c["resources"].to_string().contains("nvidia.com/gpu"));
            }
        }
        assert!(containers > 0, "{name} has no containers");
    }
}

// ---- ordering and defaulting --------------------------------------------------------------

#[test]
fn objects_are_ordered_crd_namespace_cluster_scoped_namespaced() {
    let a = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: first}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
---
apiVersion: v1
kind: Namespace
metadata: {name: demo}
";
    let b = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: second}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec: {group: example.com, scope: Namespaced, names: {kind: Widget, plural: widgets}}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fast}
";
    let s = load_files(&[("00-base/a.yaml", a), ("00-base/b.yaml", b)]).unwrap();
    assert_eq!(
        kinds(&s.stages[0]),
        [
            "CustomResourceDefinition",
            "Namespace",
            "ClusterRole",
            "StorageClass",
            "Deployment",
            "ConfigMap"
        ]
    );
}

#[test]
fn namespaced_objects_get_the_stack_namespace() {
    let a = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: defaulted}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: explicit, namespace: other}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cluster-wide}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec: {group: example.com, scope: Cluster, names: {kind: Gadget, plural: gadgets}}
---
apiVersion: example.com/v1
kind: Gadget
metadata: {name: g}
";
    let with_other = STACK_YAML.replace("namespace: demo", "namespace: demo\nnamespaces: [other]");
    let dir = stack_with(Some(&with_other), &[("00-base/a.yaml", a)]);
    let s = load("s", Some(dir.path())).unwrap();
    assert_eq!(s.namespaces, ["other"]);
    let by_name = |n: &str| s.stages[0].objects.iter().find(|o| o.reference.name == n).unwrap();
    let d = by_name("defaulted");
    assert_eq!(d.reference.namespace.as_deref(), Some("demo"));
    assert_eq!(d.value["metadata"]["namespace"], "demo");
    assert_eq!(by_name("explicit").reference.namespace.as_deref(), Some("other"));
    for cluster in ["cluster-wide", "g", "gadgets.example.com"] {
        let o = by_name(cluster);
        assert_eq!(o.reference.namespace, None, "{cluster}");
        assert!(o.value["metadata"].get("namespace").is_none(), "{cluster}");
    }
}

#[test]
fn documents_count_empty_ones_and_lines_are_file_lines() {
    let a = "# leading comment\n---\n---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: third\n";
    let s = load_files(&[("00-base/a.yaml", a), ("00-base/README.md", "notes")]).unwrap();
    let o = &s.stages[0].objects[0];
    assert_eq!(o.reference.name, "third");
    assert_eq!(o.document, 3);
    assert_eq!(o.line, 6);
    assert_eq!(o.source, "s/00-base/a.yaml");
}

#[test]
fn files_are_read_in_name_order() {
    let one = CM.replace("name: cm", "name: one");
    let two = CM.replace("name: cm", "name: two");
    let s = load_files(&[("00-base/b.yaml", &two), ("00-base/a.yml", &one)]).unwrap();
    let names: Vec<&str> = s.stages[0].objects.iter().map(|o| o.reference.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
}

#[test]
fn same_name_in_other_namespaces_or_kinds_is_not_a_duplicate() {
    let a = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: x, namespace: other}
---
apiVersion: v1
kind: Secret
metadata: {name: x}
";
    let with_other = STACK_YAML.replace("namespace: demo", "namespace: demo\nnamespaces: [other]");
    let dir = stack_with(Some(&with_other), &[("00-base/a.yaml", a)]);
    assert_eq!(load("s", Some(dir.path())).unwrap().stages[0].objects.len(), 3);
}

#[test]
fn an_object_in_a_namespace_the_stack_does_not_list_is_refused() {
    let a = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: kube-system}\n";
    let msg = error_of(&[("00-base/a.yaml", a)]);
    assert!(
        msg.starts_with("s/00-base/a.yaml:1 (document 1): ConfigMap/x -n kube-system"),
        "{msg}"
    );
    assert!(
        msg.contains("list kube-system under namespaces: in s/stack.yaml"),
        "{msg}"
    );
    for (list, why) in [
        ("[demo]", "listed twice"),
        ("[Bad_Name]", "not a valid name"),
        ("[x, x]", "listed twice"),
    ] {
        let text = STACK_YAML.replace("namespace: demo", &format!("namespace: demo\nnamespaces: {list}"));
        let dir = stack_with(Some(&text), &[("00-base/a.yaml", CM)]);
        let msg = load("s", Some(dir.path())).unwrap_err().to_string();
        assert!(msg.starts_with("s/stack.yaml:4:") && msg.contains(why), "{list}: {msg}");
    }
}

#[test]
fn pinned_image_rules() {
    assert_eq!(check::image_problem("ollama/ollama:0.12.10"), None);
    assert_eq!(check::image_problem("registry:5000/x/y:1.0"), None);
    assert_eq!(check::image_problem("x@sha256:abcd"), None);
    assert!(super::reference::reference_problem("x@sha256:abcd").is_some());
    assert!(check::image_problem("registry:5000/x/y").is_some());
    assert!(check::image_problem("nginx").is_some());
    assert!(check::image_problem("nginx:latest").is_some());
    assert!(check::image_problem("nginx:").is_some());
}

// ---- errors: each names the file, the document and the line --------------------------------

#[test]
fn error_yaml_syntax() {
    let msg = error_of(&[("00-base/a.yaml", &format!("{CM}---\nkind: [unclosed\n"))]);
    assert!(msg.contains("s/00-base/a.yaml:6 (document 2)"), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_duplicate_key() {
    let msg = error_of(&[(
        "00-base/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata: {name: a}\n",
    )]);
    assert!(msg.contains("s/00-base/a.yaml:"), "{msg}");
    assert!(msg.contains("(document 1)"), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_not_a_mapping() {
    let msg = error_of(&[("00-base/a.yaml", &format!("{CM}---\n# a list\n- a\n- b\n"))]);
    assert!(msg.contains("s/00-base/a.yaml:7 (document 2)"), "{msg}");
    assert!(msg.contains("a list, not a mapping"), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_missing_kind() {
    let msg = error_of(&[("00-base/a.yaml", "apiVersion: v1\nmetadata:\n  name: a\n")]);
    assert!(msg.contains("s/00-base/a.yaml:1 (document 1)"), "{msg}");
    assert!(msg.contains("`kind`"), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_missing_name() {
    let msg = error_of(&[(
        "00-base/a.yaml",
        &format!("{CM}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {{a: b}}\n"),
    )]);
    assert!(msg.contains("s/00-base/a.yaml:"), "{msg}");
    assert!(msg.contains("(document 2)"), "{msg}");
    assert!(msg.contains("`metadata.name`"), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_missing_api_version() {
    let msg = error_of(&[("00-base/a.yaml", "kind: ConfigMap\nmetadata: {name: a}\n")]);
    assert!(msg.contains("s/00-base/a.yaml:1 (document 1)"), "{msg}");
    assert!(msg.contains("`apiVersion`"), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_invalid_name() {
    let msg = error_of(&[(
        "00-base/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: My_Config\n",
    )]);
    assert!(msg.contains("s/00-base/a.yaml:4 (document 1)"), "{msg}");
    assert!(msg.contains("\"My_Config\""), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_duplicate_object_names_both_places() {
    let msg = error_of(&[
        ("00-base/a.yaml", CM),
        ("00-base/b.yaml", &format!("# again\n---\n{CM}")),
    ]);
    assert!(msg.contains("s/00-base/a.yaml:1 (document 1)"), "{msg}");
    assert!(msg.contains("s/00-base/b.yaml:3 (document 2)"), "{msg}");
    assert!(msg.contains("ConfigMap/cm -n demo"), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_duplicate_across_stages() {
    let two = STACK_YAML.to_string() + "  - dir: 10-more\n    name: more\n    timeout_s: 60\n    description: more\n";
    let dir = stack_with(Some(&two), &[("00-base/a.yaml", CM), ("10-more/a.yaml", CM)]);
    let err = load("s", Some(dir.path())).unwrap_err();
    assert!(matches!(err, StackError::Duplicate { .. }), "{err}");
}

#[test]
fn error_secret_with_data() {
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: keys\nstringData:\n  password: hunter2\n";
    let msg = error_of(&[("00-base/a.yaml", secret)]);
    assert!(msg.contains("s/00-base/a.yaml:6 (document 1)"), "{msg}");
    assert!(msg.contains("declare it under secrets:"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    insta::assert_snapshot!(msg);
}

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: sidecar
          image: busybox:1.36.1
        - name: web
          image: IMAGE
";

#[test]
fn error_image_latest() {
    let msg = error_of(&[("00-base/a.yaml", &DEPLOYMENT.replace("IMAGE", "nginx:latest"))]);
    assert!(msg.contains("s/00-base/a.yaml:14 (document 1)"), "{msg}");
    assert!(msg.contains("container \"web\" uses image \"nginx:latest\""), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_image_without_tag() {
    let msg = error_of(&[("00-base/a.yaml", &DEPLOYMENT.replace("IMAGE", "ghcr.io/acme/web"))]);
    assert!(msg.contains("s/00-base/a.yaml:14 (document 1)"), "{msg}");
    assert!(msg.contains("no tag"), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_unknown_stack_lists_available() {
    let dir = stack_with(Some(STACK_YAML), &[("00-base/a.yaml", CM)]);
    let msg = load("nope", Some(dir.path())).unwrap_err().to_string();
    assert!(msg.contains("\"nope\"") && msg.contains("available: s"), "{msg}");
    insta::assert_snapshot!(msg);
    let msg = load("nope", None).unwrap_err().to_string();
    assert!(msg.contains("voice-ai"), "{msg}");
}

#[test]
fn error_missing_stack_yaml() {
    let dir = stack_with(None, &[("00-base/a.yaml", CM)]);
    let msg = load("s", Some(dir.path())).unwrap_err().to_string();
    assert!(msg.starts_with("s/stack.yaml: missing"), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_stage_folder_mismatch_names_both() {
    let msg = error_of(&[("00-base/a.yaml", CM), ("05-extra/b.yaml", CM)]);
    assert!(msg.contains("folders not listed: 05-extra"), "{msg}");
    insta::assert_snapshot!(msg);
    let dir = stack_with(Some(STACK_YAML), &[("01-other/a.yaml", CM)]);
    let msg = load("s", Some(dir.path())).unwrap_err().to_string();
    assert!(msg.contains("folders not listed: 01-other"), "{msg}");
    assert!(msg.contains("listed but no such folder: 00-base"), "{msg}");
}

#[test]
fn error_stack_yaml_unknown_field() {
    let text = STACK_YAML.replace("namespace: demo", "namespace: demo\nnamspace: typo");
    let dir = stack_with(Some(&text), &[("00-base/a.yaml", CM)]);
    let msg = load("s", Some(dir.path())).unwrap_err().to_string();
    assert!(msg.starts_with("s/stack.yaml:4:"), "{msg}");
    assert!(msg.contains("namspace"), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn error_stack_name_differs_from_folder() {
    let text = STACK_YAML.replace("name: s\n", "name: other\n");
    let dir = stack_with(Some(&text), &[("00-base/a.yaml", CM)]);
    let msg = load("s", Some(dir.path())).unwrap_err().to_string();
    assert!(msg.starts_with("s/stack.yaml:1:"), "{msg}");
}

#[test]
fn error_stray_file_in_stage() {
    let msg = error_of(&[("00-base/a.yaml", CM), ("00-base/a.yaml.orig", CM)]);
    assert!(msg.starts_with("s/00-base/a.yaml.orig: not a YAML file"), "{msg}");
}

// ---- robustness ----------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever a stage file holds, loading returns a stack or an error; it never panics.
    #[test]
    fn load_never_panics(text in prop_oneof![
        any::<String>(),
        "[ -~\n]{0,200}",
        // Mostly YAML-shaped text: keys, list items, separators and odd scalars.
        proptest::collection::vec(
            prop_oneof![
                Just("---\n"), Just("apiVersion: v1\n"), Just("kind: ConfigMap\n"),
                Just("metadata:\n"), Just("  name: a\n"), Just("  namespace: x\n"),
                Just("- item\n"), Just("data: {a: *b}\n"), Just("x: &b [1, 2]\n"),
                Just("image: nginx\n"), Just("kind: Secret\n"), Just("  : \n"), Just("\t\n"),
            ],
            0..12,
        ).prop_map(|parts| parts.concat()),
    ]) {
        let dir = stack_with(Some(STACK_YAML), &[("00-base/a.yaml", &text)]);
        let _ = load("s", Some(dir.path()));
    }
}

// ---- per-profile sizing overlays -------------------------------------------------------------

const WORKLOADS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: llm
spec:
  replicas: 2
  selector: {matchLabels: {app: llm}}
  template:
    metadata: {labels: {app: llm}}
    spec:
      containers:
        - name: server
          image: ollama/ollama:0.12.10
          env:
            - {name: KEEP, value: \"1\"}
            - {name: MODEL, value: big}
          resources:
            requests: {cpu: \"4\", memory: 8Gi}
            limits: {cpu: \"8\", memory: 16Gi}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: models
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 20Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: extra
spec:
  selector: {matchLabels: {app: extra}}
  template:
    metadata: {labels: {app: extra}}
    spec:
      containers:
        - {name: x, image: busybox:1.37.0}
";

fn with_profiles(profiles: &str) -> Result<Stack, StackError> {
    let text = format!("{STACK_YAML}profiles:\n{profiles}");
    let dir = stack_with(Some(&text), &[("00-base/w.yaml", WORKLOADS)]);
    load("s", Some(dir.path()))
}

fn object<'a>(stack: &'a Stack, kind: &str, name: &str) -> Option<&'a Value> {
    stack
        .stages
        .iter()
        .flat_map(|s| &s.objects)
        .find(|o| o.reference.kind == kind && o.reference.name == name)
        .map(|o| &o.value)
}

#[test]
fn overlays_size_objects_structurally() {
    let stack = with_profiles(
        "  small:
    Deployment/llm:
      replicas: 1
      containers:
        server:
          image: ollama/ollama:0.12.10-rocm
          requests: {cpu: 500m, memory: 1Gi}
          limits: {memory: 3Gi}
          env: {MODEL: small, NEW: yes-please}
    PersistentVolumeClaim/models:
      storage: 5Gi
    Deployment/extra:
      omit: true
  gpu:
    Deployment/llm:
      containers:
        server:
          gpu: 1
",
    )
    .unwrap();
    assert_eq!(stack.sized_profiles(), vec!["gpu", "small"]);

    let small = stack.sized("small");
    let llm = object(&small, "Deployment", "llm").unwrap();
    assert_eq!(llm["spec"]["replicas"], 1);
    let c = &llm["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "ollama/ollama:0.12.10-rocm");
    assert_eq!(
        c["resources"]["requests"],
        serde_json::json!({"cpu": "500m", "memory": "1Gi"})
    );
    // limits not named keep their value
    assert_eq!(
        c["resources"]["limits"],
        serde_json::json!({"cpu": "8", "memory": "3Gi"})
    );
    assert_eq!(
        c["env"],
        serde_json::json!([
            {"name": "KEEP", "value": "1"},
            {"name": "MODEL", "value": "small"},
            {"name": "NEW", "value": "yes-please"}
        ])
    );
    assert_eq!(
        object(&small, "PersistentVolumeClaim", "models").unwrap()["spec"]["resources"]["requests"]["storage"],
        "5Gi"
    );
    assert!(object(&small, "Deployment", "extra").is_none(), "omitted");
    assert!(llm["spec"]["template"]["spec"].get("runtimeClassName").is_none());

    let gpu = stack.sized("gpu");
    let spec = &object(&gpu, "Deployment", "llm").unwrap()["spec"]["template"]["spec"];
    assert_eq!(spec["runtimeClassName"], "nvidia");
    assert_eq!(spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(spec["containers"][0]["resources"]["limits"]["memory"], "16Gi");
    assert!(object(&gpu, "Deployment", "extra").is_some());

    // The stack itself is unchanged, and a profile without sizing gets the objects as written.
    assert_eq!(object(&stack, "Deployment", "llm").unwrap()["spec"]["replicas"], 2);
    assert_eq!(stack.sized("unknown-profile"), stack);
}

#[test]
fn quantities_parse_like_kubernetes() {
    use super::overlay::quantity_value;
    assert_eq!(quantity_value("500m"), Some(0.5));
    assert_eq!(quantity_value("2"), Some(2.0));
    assert_eq!(quantity_value("1.5Gi"), Some(1.5 * 1073741824.0));
    assert_eq!(quantity_value("10G"), Some(1e10));
    for bad in ["", "Gi", "1.2.3", "-1", "1 Gi", "1gb", ".5", "5."] {
        assert_eq!(quantity_value(bad), None, "{bad:?}");
    }
}

#[test]
fn overlay_errors_name_the_line_and_the_fix() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "  p:\n    Deployment/nope:\n      replicas: 1\n",
            "no Deployment named \"nope\"",
            ":12:",
        ),
        (
            "  p:\n    Deployment:\n      replicas: 1\n",
            "not of the form Kind/name",
            ":12:",
        ),
        (
            "  p:\n    PersistentVolumeClaim/models:\n      replicas: 1\n",
            "replicas does not apply",
            ":12:",
        ),
        (
            "  p:\n    Deployment/llm:\n      storage: 1Gi\n",
            "storage does not apply",
            ":12:",
        ),
        (
            "  p:\n    Deployment/llm:\n      containers:\n        srv: {gpu: 1}\n",
            "no container \"srv\" (its containers are server)",
            ":12:",
        ),
        (
            "  p:\n    Deployment/llm:\n      containers:\n        server: {image: \"ollama/ollama\"}\n",
            "not pinned",
            ":12:",
        ),
        (
            "  p:\n    Deployment/llm:\n      containers:\n        server: {limits: {nvidia.com/gpu: 1}}\n",
            "write `gpu: N`",
            ":12:",
        ),
        (
            "  p:\n    Deployment/llm:\n      containers:\n        server: {requests: {cpu: 2}, limits: {cpu: 1}}\n",
            "request 2 is above its limit 1",
            ":12:",
        ),
        (
            "  p:\n    Deployment/llm:\n      containers:\n        server: {requests: {memory: lots}}\n",
            "not a Kubernetes quantity",
            ":13:",
        ),
        (
            "  p:\n    Deployment/llm:\n      containers:\n        server: {requests: {Memory: 1Gi}}\n",
            "not a resource name",
            ":12:",
        ),
        (
            "  p:\n    Deployment/llm:\n      replicaz: 1\n",
            "unknown field",
            ":12:",
        ),
        (
            "  p:\n    Deployment/extra:\n      omit: true\n      replicas: 1\n",
            "omit: true together with sizing",
            ":12:",
        ),
    ];
    for (profiles, want, line) in cases {
        let msg = with_profiles(profiles).unwrap_err().to_string();
        assert!(msg.starts_with("s/stack.yaml"), "{msg}");
        assert!(msg.contains(want), "want {want:?} in:\n{msg}");
        assert!(msg.contains(line), "want line {line} in:\n{msg}");
        assert!(msg.contains("fix:"), "{msg}");
    }
}

#[test]
fn every_embedded_stack_sizes_for_every_profile_it_names() {
    for name in embedded_names() {
        let stack = load(&name, None).unwrap();
        for profile in stack.sized_profiles() {
            let sized = stack.sized(profile);
            for o in sized.stages.iter().flat_map(|s| &s.objects) {
                for (_, c) in super::check::containers(&o.reference.kind, &o.value) {
                    assert!(
                        c.pointer("/resources/limits/memory").is_some(),
                        "{name}/{profile}: {} has a container without a memory limit",
                        o.reference
                    );
                }
            }
        }
    }
}

// ---- per-distribution overlays (distros:) ----------------------------------------------------

/// The stack `s` of `WORKLOADS` with `tail` (profiles:, distros:) appended to its stack.yaml.
fn with_tail(tail: &str) -> Result<Stack, StackError> {
    let text = format!("{STACK_YAML}{tail}");
    let dir = stack_with(Some(&text), &[("00-base/w.yaml", WORKLOADS)]);
    load("s", Some(dir.path()))
}

fn env_of(stack: &Stack, name: &str) -> BTreeMap<String, String> {
    object(stack, "Deployment", name).unwrap()["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn distro_overlays_apply_after_the_profile_and_only_for_their_distro() {
    use crate::distro::Distro;
    let stack = with_tail(
        "profiles:
  small:
    Deployment/llm:
      containers:
        server:
          env: {MODEL: small, FROM: profile}
distros:
  k0s:
    Deployment/extra: {omit: true}
  k3s:
    Deployment/llm:
      containers:
        server:
          env: {FROM: k3s}
",
    )
    .unwrap();
    assert_eq!(
        stack.distros.keys().copied().collect::<Vec<_>>(),
        [Distro::K3s, Distro::K0s]
    );

    // k0s: the profile's sizing, and the object k0s leaves out is gone.
    let k0s = stack.sized_for("small", Some(Distro::K0s));
    assert!(object(&k0s, "Deployment", "extra").is_none());
    assert_eq!(env_of(&k0s, "llm")["MODEL"], "small");
    assert_eq!(env_of(&k0s, "llm")["FROM"], "profile");

    // k3s: both overlays; where both set a value, the distribution's wins.
    let k3s = stack.sized_for("small", Some(Distro::K3s));
    assert!(object(&k3s, "Deployment", "extra").is_some());
    assert_eq!(env_of(&k3s, "llm")["MODEL"], "small");
    assert_eq!(env_of(&k3s, "llm")["FROM"], "k3s");

    // No distribution known: exactly the profile's sizing.
    assert_eq!(stack.sized_for("small", None), stack.sized("small"));
    // A profile without sizing still gets the distribution's changes.
    let bare = stack.sized_for("unknown-profile", Some(Distro::K0s));
    assert!(object(&bare, "Deployment", "extra").is_none());
    assert_eq!(env_of(&bare, "llm")["MODEL"], "big");
}

#[test]
fn every_distribution_kstrap_installs_can_have_overlays() {
    use clap::ValueEnum;
    for d in crate::distro::Distro::value_variants() {
        let stack = with_tail(&format!(
            "distros:
  {}:
    Deployment/extra: {{omit: true}}
",
            d.name()
        ))
        .unwrap();
        assert!(stack.distros.contains_key(d), "{d}");
        assert!(
            object(&stack.sized_for("p", Some(*d)), "Deployment", "extra").is_none(),
            "{d}"
        );
    }
}

#[test]
fn distro_overlay_errors_name_the_line_and_the_fix() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "distros:\n  k8s:\n    Deployment/extra: {omit: true}\n",
            "s/stack.yaml:10:",
            "unknown field `k8s`, expected one of k3s, k0s",
        ),
        (
            "distros:\n  k0s:\n    Ingress/web: {omit: true}\n",
            "s/stack.yaml:11:",
            "distros.k0s.Ingress/web: no Ingress named \"web\" in the stack",
        ),
        (
            "distros:\n  k3s:\n    Deployment/llm:\n      containers:\n        srv: {env: {A: b}}\n",
            "s/stack.yaml:12:",
            "distros.k3s.Deployment/llm: no container \"srv\"",
        ),
        (
            "distros:\n  k3s:\n    Deployment/extra: {omit: true, replicas: 2}\n",
            "s/stack.yaml:11:",
            "omit: true together with sizing",
        ),
        (
            "distros:\n  k3s:\n    Deployment/extra: {omitt: true}\n",
            "s/stack.yaml:11:",
            "unknown field `omitt`",
        ),
        ("distros: [k3s]\n", "s/stack.yaml:9:", "expected a mapping"),
    ];
    for (tail, at, want) in cases {
        let msg = with_tail(tail).unwrap_err().to_string();
        assert!(msg.starts_with(at), "want {at} in:\n{msg}");
        assert!(msg.contains(want), "want {want:?} in:\n{msg}");
        assert!(msg.contains("fix:"), "{msg}");
    }
    let msg = with_tail(cases[0].0).unwrap_err().to_string();
    insta::assert_snapshot!(msg);
    // A distribution's overlay may not replace the user's image either.
    let app = deployment("app", "app", PLACEHOLDER);
    let text = format!(
        "{APP_IMAGE}distros:\n  k3s:\n    Deployment/app:\n      containers:\n        app: {{image: 'other:1.0'}}\n"
    );
    let msg = with_images(&text, &[("00-base/a.yaml", &app)]).unwrap_err().to_string();
    assert!(msg.starts_with("s/stack.yaml:16:"), "{msg}");
    assert!(
        msg.contains("distros.k3s.Deployment/app: container app sets image"),
        "{msg}"
    );
}

#[test]
fn secret_declaration_errors_name_the_line() {
    let cases: &[(&str, &str)] = &[
        (
            "secrets:\n  - {name: s1, description: d, keys: [lower]}\n",
            "must be environment variable names",
        ),
        (
            "secrets:\n  - {name: s1, description: d, keys: []}\n",
            "must be environment variable names",
        ),
        (
            "secrets:\n  - {name: Bad_Name, description: d, keys: [A]}\n",
            "not a valid name",
        ),
        (
            "secrets:\n  - {name: s1, description: d, keys: [A], generate: {length: 8}}\n",
            "generate needs length 16-256",
        ),
        (
            "secrets:\n  - {name: s1, description: d, keys: [A], generate: {length: 32, format: fixed}}\n",
            "a format containing {random}",
        ),
    ];
    for (secrets, want) in cases {
        let text = format!("{STACK_YAML}{secrets}");
        let dir = stack_with(Some(&text), &[("00-base/a.yaml", CM)]);
        let msg = load("s", Some(dir.path())).unwrap_err().to_string();
        assert!(msg.starts_with("s/stack.yaml:10:"), "{msg}");
        assert!(msg.contains(want), "want {want:?} in {msg}");
    }
}

// ---- images the user names (images:) ---------------------------------------------------------

const PLACEHOLDER: &str = "kstrap.invalid/required/app:unset";

fn deployment(name: &str, container: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  template:\n    spec:\n      containers:\n        - name: {container}\n          image: {image}\n"
    )
}

/// The stack `s` with `images` appended to its stack.yaml and `files`.
fn with_images(images: &str, files: &[(&str, &str)]) -> Result<Stack, StackError> {
    let text = format!("{STACK_YAML}{images}");
    let dir = stack_with(Some(&text), files);
    load("s", Some(dir.path()))
}

const APP_IMAGE: &str = "images:\n  - key: APP_IMAGE\n    description: the app\n    containers: [Deployment/app/app]\n";

#[test]
fn declared_images_load_and_resolve_structurally() {
    let app = deployment("app", "app", PLACEHOLDER);
    let side = deployment("side", "side", "nginx:1.27.3");
    let s = with_images(APP_IMAGE, &[("00-base/a.yaml", &app), ("00-base/b.yaml", &side)]).unwrap();
    assert_eq!(s.images.len(), 1);
    assert_eq!(s.images[0].containers[0].to_string(), "Deployment/app/app");

    // From the flag.
    let given = parse_image_flags(&["APP_IMAGE=registry.example.com/app:1.2.3".into()]).unwrap();
    let none = |_: &str| None;
    let out = resolve_images(&s, &given, &none).unwrap();
    let image = |st: &Stack, name: &str| {
        object(st, "Deployment", name).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"].clone()
    };
    assert_eq!(image(&out, "app"), "registry.example.com/app:1.2.3");
    assert_eq!(image(&out, "side"), "nginx:1.27.3", "other containers are untouched");
    assert_eq!(image(&s, "app"), PLACEHOLDER, "the loaded stack is not changed");

    // From the environment, and the flag wins over it.
    let env = |k: &str| {
        (k == "APP_IMAGE").then(|| {
            "env.example.com/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_string()
        })
    };
    let out = resolve_images(&s, &BTreeMap::new(), &env).unwrap();
    assert_eq!(
        image(&out, "app"),
        "env.example.com/app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    );
    let out = resolve_images(&s, &given, &env).unwrap();
    assert_eq!(image(&out, "app"), "registry.example.com/app:1.2.3");
}

#[test]
fn missing_images_are_listed_with_how_to_give_them() {
    let images = "images:\n  - {key: A_IMAGE, description: the first service, containers: [Deployment/a/a]}\n  - {key: B_IMAGE, description: the second service, containers: [Deployment/b/b]}\n";
    let files = [
        ("00-base/a.yaml", deployment("a", "a", PLACEHOLDER)),
        ("00-base/b.yaml", deployment("b", "b", PLACEHOLDER)),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    let s = with_images(images, &files).unwrap();
    let none = |_: &str| None;
    let err = resolve_images(&s, &BTreeMap::new(), &none).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("A_IMAGE: the first service (used by Deployment/a/a)"),
        "{msg}"
    );
    assert!(
        msg.contains("B_IMAGE: the second service (used by Deployment/b/b)"),
        "{msg}"
    );
    assert!(msg.contains("--image KEY=REF"), "{msg}");
    assert!(msg.contains("environment variable KEY"), "{msg}");
    // One given, one missing: only the missing one is listed.
    let given = BTreeMap::from([("A_IMAGE".to_string(), "r.example.com/a:1.0".to_string())]);
    let msg = resolve_images(&s, &given, &none).unwrap_err().to_string();
    assert!(!msg.contains("A_IMAGE"), "{msg}");
    assert!(msg.contains("B_IMAGE"), "{msg}");
    // An image whose containers the profile omits is not asked for.
    let mut sized = s.clone();
    for st in &mut sized.stages {
        st.objects.retain(|o| o.reference.name != "b");
    }
    assert!(resolve_images(&sized, &given, &none).is_ok());
}

#[test]
fn bad_image_values_and_flags_are_refused() {
    let app = deployment("app", "app", PLACEHOLDER);
    let s = with_images(APP_IMAGE, &[("00-base/a.yaml", &app)]).unwrap();
    let none = |_: &str| None;
    let give = |v: &str| BTreeMap::from([("APP_IMAGE".to_string(), v.to_string())]);
    let cases: &[(&str, &str)] = &[
        ("registry.example.com/app", "has no tag"),
        ("registry.example.com/app:latest", ":latest moves"),
        ("registry.example.com/app:", "tag is empty"),
        ("kstrap.invalid/required/app:unset", "placeholder"),
    ];
    for (value, want) in cases {
        let msg = resolve_images(&s, &give(value), &none).unwrap_err().to_string();
        assert!(msg.contains("APP_IMAGE (from --image APP_IMAGE)"), "{msg}");
        assert!(msg.contains(want), "want {want:?} in {msg}");
        assert!(msg.contains("fix:"), "{msg}");
    }
    let env = |_: &str| Some("app:latest".to_string());
    let msg = resolve_images(&s, &BTreeMap::new(), &env).unwrap_err().to_string();
    assert!(msg.contains("from the environment variable APP_IMAGE"), "{msg}");
    let env = |_: &str| Some("  ".to_string());
    assert!(matches!(
        resolve_images(&s, &BTreeMap::new(), &env),
        Err(ImageError::NotAnImage { .. })
    ));

    let unknown = BTreeMap::from([("OTHER_IMAGE".to_string(), "x:1".to_string())]);
    let msg = resolve_images(&s, &unknown, &none).unwrap_err().to_string();
    assert!(msg.contains("declares no image \"OTHER_IMAGE\""), "{msg}");
    assert!(msg.contains("it declares: APP_IMAGE"), "{msg}");

    for bad in ["APP_IMAGE", "=x:1", "APP_IMAGE=", "app_image=x:1", "A B=x:1"] {
        let err = parse_image_flags(&[bad.to_string()]).unwrap_err();
        assert!(matches!(err, ImageError::BadFlag { .. }), "{bad}: {err}");
        assert!(err.to_string().contains("KEY=REF"), "{err}");
    }
    let err = parse_image_flags(&["A=x:1".into(), "A=y:2".into()]).unwrap_err();
    assert!(matches!(err, ImageError::Twice { .. }), "{err}");
}

#[test]
fn image_declaration_errors_name_the_line() {
    let app = deployment("app", "app", PLACEHOLDER);
    let cases: &[(&str, &str, &str)] = &[
        (
            "images:\n  - {key: app_image, description: d, containers: [Deployment/app/app]}\n",
            "s/stack.yaml:10:",
            "not an environment variable name",
        ),
        (
            "images:\n  - {key: APP_IMAGE, description: d, containers: [Deployment/app]}\n",
            "s/stack.yaml:10:",
            "not of the form Kind/name/container",
        ),
        (
            "images:\n  - {key: APP_IMAGE, description: d, containers: []}\n",
            "s/stack.yaml:10:",
            "names no containers",
        ),
        (
            "images:\n  - {key: APP_IMAGE, description: '', containers: [Deployment/app/app]}\n",
            "s/stack.yaml:10:",
            "has no description",
        ),
        (
            "images:\n  - {key: APP_IMAGE, description: d, containers: [Deployment/app/app]}\n  - {key: APP_IMAGE, description: d, containers: [Deployment/x/x]}\n",
            "s/stack.yaml:11:",
            "declared twice",
        ),
        (
            "images:\n  - {key: A_IMAGE, description: d, containers: [Deployment/app/app]}\n  - {key: B_IMAGE, description: d, containers: [Deployment/app/app]}\n",
            "s/stack.yaml:11:",
            "listed twice",
        ),
        (
            "images:\n  - {key: APP_IMAGE, description: d, containers: [Deployment/app/app, Deployment/gone/gone]}\n",
            "s/stack.yaml:10:",
            "no Deployment named \"gone\"",
        ),
        (
            "images:\n  - {key: APP_IMAGE, description: d, containers: [Deployment/app/app, Deployment/app/other]}\n",
            "s/stack.yaml:10:",
            "has no container \"other\"",
        ),
        (
            "images:\n  - {key: APP_IMAGE, description: d, contianers: [Deployment/app/app]}\n",
            "s/stack.yaml:10:",
            "unknown field `contianers`",
        ),
        (
            "secrets:\n  - {name: s1, description: d, keys: [APP_IMAGE]}\nimages:\n  - {key: APP_IMAGE, description: d, containers: [Deployment/app/app]}\n",
            "s/stack.yaml:12:",
            "also a secret key",
        ),
    ];
    for (images, at, want) in cases {
        let msg = with_images(images, &[("00-base/a.yaml", &app)])
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with(at), "want {at} in:\n{msg}");
        assert!(msg.contains(want), "want {want:?} in:\n{msg}");
        assert!(msg.contains("fix:"), "{msg}");
    }
    // A profile may not replace the user's image.
    let text = format!(
        "{APP_IMAGE}profiles:\n  p:\n    Deployment/app:\n      containers:\n        app: {{image: 'other:1.0'}}\n"
    );
    let msg = with_images(&text, &[("00-base/a.yaml", &app)]).unwrap_err().to_string();
    assert!(msg.starts_with("s/stack.yaml:16:"), "{msg}");
    assert!(msg.contains("its image is the user's (APP_IMAGE)"), "{msg}");
}

#[test]
fn placeholders_only_in_declared_containers() {
    // A placeholder nobody declared: the manifest line of the image.
    let app = deployment("app", "app", PLACEHOLDER);
    let msg = with_images("", &[("00-base/a.yaml", &app)]).unwrap_err().to_string();
    assert!(msg.starts_with("s/00-base/a.yaml:10 (document 1)"), "{msg}");
    assert!(msg.contains("declares no image for Deployment/app/app"), "{msg}");
    assert!(msg.contains("fix: declare it under images:"), "{msg}");
    // A declared container with a real image: refused, pointing at the image.
    let real = deployment("app", "app", "nginx:1.27.3");
    let msg = with_images(APP_IMAGE, &[("00-base/a.yaml", &real)])
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("s/00-base/a.yaml:10 (document 1)"), "{msg}");
    assert!(msg.contains("declared under images: as APP_IMAGE"), "{msg}");
    assert!(msg.contains("kstrap.invalid/required/app:unset"), "{msg}");
    // Another container of the same object is not declared.
    let two = format!(
        "{}        - name: side\n          image: {PLACEHOLDER}\n",
        deployment("app", "app", PLACEHOLDER)
    );
    let msg = with_images(APP_IMAGE, &[("00-base/a.yaml", &two)])
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("s/00-base/a.yaml:12 (document 1)"), "{msg}");
    assert!(msg.contains("Deployment/app/side"), "{msg}");
}

#[test]
fn secret_keys_can_be_named_apart_from_their_variable() {
    let text = format!(
        "{STACK_YAML}secrets:\n  - name: api-keys\n    description: d\n    keys:\n      - PLAIN\n      - {{env: OPENROUTER_API_KEY, key: openrouter-api-key}}\n"
    );
    let dir = stack_with(Some(&text), &[("00-base/a.yaml", CM)]);
    let s = load("s", Some(dir.path())).unwrap();
    let d = &s.secrets[0];
    assert_eq!(d.keys, ["PLAIN", "OPENROUTER_API_KEY"]);
    assert_eq!(d.secret_key("PLAIN"), "PLAIN");
    assert_eq!(d.secret_key("OPENROUTER_API_KEY"), "openrouter-api-key");

    // The value is read from the variable and stored under the Secret's key; a value already in
    // the cluster is found under the Secret's key too.
    let env = |k: &str| (k == "OPENROUTER_API_KEY" || k == "PLAIN").then(|| format!("v-{k}"));
    let none = BTreeMap::new();
    let out = secrets::resolve(&s, &BTreeMap::new(), &env, &none, &mut |_| String::new()).unwrap();
    let obj = out[0].object("demo");
    assert_eq!(
        out[0].value("openrouter-api-key").unwrap().expose(),
        "v-OPENROUTER_API_KEY"
    );
    assert_eq!(out[0].value("PLAIN").unwrap().expose(), "v-PLAIN");
    assert!(obj["data"].get("OPENROUTER_API_KEY").is_none());
    assert!(obj["data"].get("openrouter-api-key").is_some());
    let existing = BTreeMap::from([(
        "api-keys".to_string(),
        BTreeMap::from([("openrouter-api-key".to_string(), secrets::SecretValue::new("kept"))]),
    )]);
    let only_plain = |k: &str| (k == "PLAIN").then(|| "p".to_string());
    let out = secrets::resolve(&s, &BTreeMap::new(), &only_plain, &existing, &mut |_| String::new()).unwrap();
    assert_eq!(out[0].value("openrouter-api-key").unwrap().expose(), "kept");

    let bad: &[(&str, &str)] = &[
        ("[{env: A, key: 'bad key'}]", "not a valid key of a Secret"),
        ("[{env: a, key: k}]", "must be environment variable names"),
        ("[{env: A, key: k}, {env: B, key: k}]", "listed twice"),
        ("[{env: A, kye: k}]", "NAME or as {env: NAME, key: secret-key}"),
    ];
    for (keys, want) in bad {
        let text = format!("{STACK_YAML}secrets:\n  - name: s1\n    description: d\n    keys: {keys}\n");
        let dir = stack_with(Some(&text), &[("00-base/a.yaml", CM)]);
        let msg = load("s", Some(dir.path())).unwrap_err().to_string();
        assert!(msg.starts_with("s/stack.yaml:1"), "{msg}");
        assert!(msg.contains(want), "want {want:?} in {msg}");
    }
}

#[test]
fn the_seed_stacks_declare_their_authors_images() {
    let mm = load("multimodal-ai", None).unwrap();
    let keys: Vec<&str> = mm.images.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "GATEWAY_IMAGE",
            "LLM_WORKER_IMAGE",
            "IMAGE_WORKER_IMAGE",
            "STT_WORKER_IMAGE",
            "TTS_WORKER_IMAGE",
            "CYCLEGAN_WORKER_IMAGE",
            "FRONTEND_IMAGE"
        ]
    );
    assert_eq!(mm.secrets[0].name, "api-keys");
    assert_eq!(mm.secrets[0].secret_key("OPENROUTER_API_KEY"), "openrouter-api-key");
    assert_eq!(mm.secrets[0].secret_key("HUGGINGFACE_API_KEY"), "huggingface-api-key");
    assert!(mm.secrets[0].generate.is_none(), "API keys cannot be made up");

    let ip = load("imagepod", None).unwrap();
    let none = |_: &str| None;
    // Without a GPU the worker is omitted, so only the API's image is asked for.
    let msg = resolve_images(&ip.sized("laptop-8gb"), &BTreeMap::new(), &none)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("API_IMAGE") && !msg.contains("GPU_WORKER_IMAGE"), "{msg}");
    let msg = resolve_images(&ip.sized("rtx-5090"), &BTreeMap::new(), &none)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("API_IMAGE") && msg.contains("GPU_WORKER_IMAGE"), "{msg}");
    assert!(ip.secrets[0].generate.is_some(), "imagepod's passwords are generated");
}
