//! The `databases:` section: what the loader makes of a declaration, and one bad input per rule,
//! each naming stack.yaml's line and what to do.

use super::*;
use std::fs;

const STACK: &str = "\
name: s
description: test stack
namespace: demo
namespaces: [other]
stages:
  - dir: 00-base
    name: base
    timeout_s: 60
    description: base
  - dir: 10-db
    name: db
    timeout_s: 60
    description: databases
  - dir: 20-app
    name: app
    timeout_s: 60
    description: the service
";

const DB: &str = "
databases:
  - name: app-db
    stage: 10-db
    service: Deployment/app
    database: app
    owner: app_user
    size: 1Gi
    parameters: {max_connections: \"50\"}
    requests: {cpu: 100m, memory: 256Mi}
    limits: {cpu: 500m, memory: 512Mi}
";

const APP: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app, tier: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27.0
          env: [{name: LATER, value: \"$(DATABASE_URL)\"}]
        - name: worker
          image: nginx:1.27.0
";

fn load_with(db: &str, app: &str) -> Result<Stack, StackError> {
    load_in(db, app, "20-app")
}

/// The stack with the service's YAML in stage folder `app_dir` (the other stage holds a note).
fn load_in(db: &str, app: &str, app_dir: &str) -> Result<Stack, StackError> {
    let other = if app_dir == "20-app" { "10-db" } else { "20-app" };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    for (path, text) in [
        ("stack.yaml", format!("{STACK}{db}")),
        (
            "00-base/ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n".into(),
        ),
        (&format!("{other}/README.md"), "notes".into()),
        (&format!("{app_dir}/app.yaml"), app.to_string()),
    ] {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    load("s", Some(dir.path()))
}

#[test]
fn a_database_becomes_a_cluster_two_policies_and_the_owners_url() {
    let s = load_with(DB, APP).unwrap();
    assert_eq!(s.databases.len(), 1);
    let d = &s.databases[0];
    assert_eq!((d.namespace.as_str(), d.app_secret().as_str()), ("demo", "app-db-app"));
    let stage = &s.stages[1];
    let names: Vec<String> = stage.objects.iter().map(|o| o.reference.to_string()).collect();
    assert_eq!(
        names,
        [
            "Cluster/app-db -n demo",
            "NetworkPolicy/app-db-isolation -n demo",
            "NetworkPolicy/app-db-client -n demo"
        ]
    );
    let cluster = &stage.objects[0].value;
    assert_eq!(cluster["apiVersion"], "postgresql.cnpg.io/v1");
    assert_eq!(cluster["spec"]["bootstrap"]["initdb"]["owner"], "app_user");
    assert_eq!(cluster["spec"]["storage"], serde_json::json!({"size": "1Gi"}));
    assert_eq!(cluster["spec"]["postgresql"]["parameters"]["max_connections"], "50");
    assert!(stage.objects[0].source.contains("stack.yaml"));
    // The isolation policy admits the workload's pods by its selector, not every label.
    let iso = &stage.objects[1].value;
    assert_eq!(
        iso["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"],
        serde_json::json!({"app": "app"})
    );
    // Both containers get the URL first (so $(DATABASE_URL) later in the list expands).
    let app = &s.stages[2].objects[0].value;
    for c in app["spec"]["template"]["spec"]["containers"].as_array().unwrap() {
        assert_eq!(c["env"][0]["name"], "DATABASE_URL");
        assert_eq!(c["env"][0]["valueFrom"]["secretKeyRef"]["name"], "app-db-app");
        assert_eq!(c["env"][0]["valueFrom"]["secretKeyRef"]["key"], "uri");
    }
    // Sizing per profile through the ordinary overlays: storage and instances.
    let sized = format!("{DB}profiles:\n  big:\n    Cluster/app-db: {{storage: 20Gi, replicas: 3}}\n");
    let s = load_with(&sized, APP).unwrap().sized("big");
    let cluster = &s.stages[1].objects[0].value;
    assert_eq!(cluster["spec"]["storage"]["size"], "20Gi");
    assert_eq!(cluster["spec"]["instances"], 3);
    let (cpu, mem, _) = s.total_requests();
    assert!((cpu - 0.3).abs() < 1e-9, "three instances of 100m: {cpu}");
    assert!((mem - 3.0 * 256.0 * 1048576.0).abs() < 1.0, "{mem}");
}

#[test]
fn bad_declarations_name_the_line_and_the_fix() {
    let app_sets_it = APP.replace("name: LATER", "name: DATABASE_URL");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            DB.replace("name: app-db", "name: App_DB"),
            APP,
            "is not a valid Cluster name",
        ),
        (
            DB.replace("stage: 10-db", "stage: 30-late"),
            APP,
            "stage \"30-late\" is not one of the stack's stages",
        ),
        (
            DB.replace("stage: 10-db", "namespace: nowhere\n    stage: 10-db"),
            APP,
            "namespace \"nowhere\" is not one of the stack's",
        ),
        (
            DB.replace("Deployment/app", "Deployment/missing"),
            APP,
            "no Deployment \"missing\" in namespace demo",
        ),
        (
            DB.replace("Deployment/app", "DaemonSet/app"),
            APP,
            "is not Deployment/name or StatefulSet/name",
        ),
        (
            DB.replace("database: app", "database: App-DB"),
            APP,
            "database \"App-DB\" is not a plain PostgreSQL name",
        ),
        (
            DB.replace("owner: app_user", "owner: postgres"),
            APP,
            "owner \"postgres\" is reserved",
        ),
        (DB.replace("size: 1Gi", "size: lots"), APP, "not a Kubernetes quantity"),
        (
            DB.replace("size: 1Gi", "size: 1Gi\n    instances: 0"),
            APP,
            "instances 0 is out of range",
        ),
        (
            DB.replace("cpu: 100m, memory: 256Mi}", "cpu: 1, memory: 256Mi}"),
            APP,
            "cpu request 1 exceeds its limit 500m",
        ),
        (
            DB.replace("requests: {cpu: 100m, memory: 256Mi}", "requests: {cpu: 100m}"),
            APP,
            "requests must name cpu and memory",
        ),
        (
            DB.replace("size: 1Gi", "size: 1Gi\n    storageClass: standard"),
            APP,
            "unknown field `storageClass`",
        ),
        (
            DB.to_string(),
            &app_sets_it,
            "container \"web\" already sets DATABASE_URL",
        ),
        (format!("{DB}{}", &DB[11..]), APP, "app-db is declared twice"),
    ];
    for (db, app, want) in cases {
        let msg = load_with(&db, app).unwrap_err().to_string();
        assert!(msg.starts_with("s/stack.yaml:"), "{want}: {msg}");
        assert!(msg.contains(want), "want {want:?} in: {msg}");
        assert!(msg.contains("fix:"), "{msg}");
    }
    // After the service's stage: its credentials would not exist when it starts.
    let late = DB.replace("stage: 10-db", "stage: 20-app");
    let msg = load_in(&late, APP, "10-db").unwrap_err().to_string();
    assert!(
        msg.contains("stage 20-app comes after the stage of its service (10-db)"),
        "{msg}"
    );
    // A database cannot be left out by a profile: its service reads its credentials.
    let omit = format!("{DB}profiles:\n  small:\n    Cluster/app-db: {{omit: true}}\n");
    let msg = load_with(&omit, APP).unwrap_err().to_string();
    assert!(msg.contains("a database cannot be omitted"), "{msg}");
}
