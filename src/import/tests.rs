//! The importer on the seed's cases and on bad input: each imported folder is written, loaded by
//! the stack loader (the same checks `kstrap plan/apply --stack-dir` make) and looked at.

use super::*;
use crate::stack::{self, Stack};
use serde_json::Value;
use std::collections::BTreeMap;

struct Run {
    dir: tempfile::TempDir,
    out: PathBuf,
}

fn profiles() -> Vec<crate::profile::Profile> {
    crate::profile::embedded().unwrap()
}

fn run(compose: &str, env: &[(&str, &str)], opts: impl FnOnce(&mut Options)) -> (Run, Result<Imported, ImportError>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, compose).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut o = Options {
        files: vec![file],
        name: Some("app".into()),
        ..Default::default()
    };
    opts(&mut o);
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let r = import(&o, &|k| env.get(k).cloned(), &profiles());
    (Run { dir, out }, r)
}

fn written(compose: &str, env: &[(&str, &str)]) -> (Run, Imported, Stack) {
    let (run, r) = run(compose, env, |_| {});
    let imported = r.unwrap_or_else(|e| panic!("{e}"));
    write(&run.out, &imported).unwrap();
    let s = stack::load(&imported.name, Some(&run.out)).unwrap_or_else(|e| panic!("{e}"));
    (run, imported, s)
}

fn object<'a>(s: &'a Stack, kind: &str, name: &str) -> &'a Value {
    &s.stages
        .iter()
        .flat_map(|st| &st.objects)
        .find(|o| o.reference.kind == kind && o.reference.name == name)
        .unwrap_or_else(|| panic!("{kind}/{name}"))
        .value
}

fn folder_text(dir: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            all.push_str(&folder_text(&e.path()));
        } else {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap());
        }
    }
    all
}

const SEED: &str = r#"
services:
  mem0-ui:
    image: mem0/openmemory-ui:1.0.1
    ports: ['3002:3000', '8080:8080']
    environment:
      OPENAI_API_KEY: ${OPENAI_API_KEY}
      API_URL: http://api:8765
      LOG_LEVEL: ${LOG_LEVEL:-info}
      EMPTY_DEFAULT: ${NOT_SET-}
      COLON_EMPTY: ${EMPTY_VAR:-fallback}
      DASH_EMPTY: ${EMPTY_VAR-fallback}
      MISSING: ${NOBODY_SET_THIS}
      DATABASE_URL: postgres://app:${DB_PASSWORD}@db:5432/app
    depends_on: [api]
  api:
    image: mem0/openmemory-mcp:1.0.1
    expose: ["8765"]
    environment:
      DB_PASSWORD: ${DB_PASSWORD}
      ADMIN_PASSWORD: hunter2-literal
      HF_TOKEN: ""
    depends_on:
      db: {condition: service_healthy}
  db:
    image: postgres:17.6
    environment:
      POSTGRES_PASSWORD: ${DB_PASSWORD}
    volumes: [pgdata:/var/lib/postgresql/data]
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres"]
      interval: 5s
      retries: 10
volumes:
  pgdata: {}
"#;

#[test]
fn the_seeds_cases_ports_secret_split_and_defaults() {
    let env = [
        ("OPENAI_API_KEY", "sk-live-SEEDKEY-123"),
        ("EMPTY_VAR", ""),
        ("DB_PASSWORD", "pw-from-env-456"),
    ];
    let (run, imported, s) = written(SEED, &env);
    // Several ports, unique valid names.
    let ui = object(&s, "Deployment", "mem0-ui");
    let ports = &ui["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert_eq!(ports[0]["name"], "http");
    assert_eq!(ports[0]["containerPort"], 3000);
    assert_eq!(ports[1]["name"], "http-2");
    // Plain variables in the ConfigMap, resolved as compose resolves them.
    let cm = &object(&s, "ConfigMap", "mem0-ui-env")["data"];
    assert_eq!(cm["LOG_LEVEL"], "info");
    assert_eq!(cm["EMPTY_DEFAULT"], "");
    assert_eq!(cm["COLON_EMPTY"], "fallback", "${{VAR:-d}}: empty takes the default");
    assert_eq!(cm["DASH_EMPTY"], "", "${{VAR-d}}: empty stays empty");
    assert_eq!(cm["MISSING"], "", "a missing variable is blank");
    assert!(
        imported.notes.iter().any(|n| n.what.contains("NOBODY_SET_THIS")),
        "{:?}",
        imported.notes
    );
    assert!(cm.get("OPENAI_API_KEY").is_none() && cm.get("DATABASE_URL").is_none());
    // Secrets as references; a value built on one is expanded by Kubernetes.
    let env_list = ui["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = env_list.iter().map(|e| e["name"].as_str().unwrap()).collect();
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("{n} in {names:?}"))
    };
    assert!(
        pos("DB_PASSWORD") < pos("DATABASE_URL"),
        "$(NAME) needs NAME defined first"
    );
    assert_eq!(
        env_list[pos("DATABASE_URL")]["value"],
        "postgres://app:$(DB_PASSWORD)@db:5432/app"
    );
    assert_eq!(
        env_list[pos("OPENAI_API_KEY")]["valueFrom"]["secretKeyRef"]["name"],
        "app-secrets"
    );
    // One key for the password every service reads: db and api agree on it.
    let keys: BTreeMap<&str, bool> = imported.secrets.iter().map(|(k, g)| (k.as_str(), *g)).collect();
    assert_eq!(
        keys.get("DB_PASSWORD"),
        Some(&false),
        "{keys:?}: given at import, so read at apply"
    );
    assert_eq!(keys.get("ADMIN_PASSWORD"), Some(&true));
    assert_eq!(keys.get("HF_TOKEN"), None, "an empty token is optional: left out");
    assert!(imported.notes.iter().any(|n| n.what.starts_with("HF_TOKEN: optional")));
    assert_eq!(keys.get("OPENAI_API_KEY"), Some(&false));
    let declared: Vec<&str> = s
        .secrets
        .iter()
        .flat_map(|d| d.keys.iter().map(String::as_str))
        .collect();
    assert_eq!(declared.len(), keys.len());
    // No secret value anywhere in the folder.
    let all = folder_text(&run.out);
    for v in ["sk-live-SEEDKEY-123", "pw-from-env-456", "hunter2-literal"] {
        assert!(!all.contains(v), "{v} was written");
    }
    // Stages follow depends_on; the database with its own volume is a StatefulSet.
    let stages: Vec<&str> = s.stages.iter().map(|s| s.dir.as_str()).collect();
    assert_eq!(stages, ["00-base", "10-db", "20-api", "30-mem0-ui"]);
    let db = object(&s, "StatefulSet", "db");
    assert_eq!(db["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "pgdata");
    assert_eq!(
        db["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"][2],
        "pg_isready -U postgres"
    );
    let _ = run.dir;
}

#[test]
fn objects_are_locked_down_sized_and_read_back_as_written() {
    let (_run, imported, s) = written(SEED, &[("DB_PASSWORD", "x")]);
    for o in s.stages.iter().flat_map(|st| &st.objects) {
        if let Some(pod) = o.value.pointer("/spec/template/spec") {
            assert_eq!(pod["automountServiceAccountToken"], false);
            assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
            for c in pod["containers"].as_array().unwrap() {
                assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
                assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
                for k in ["cpu", "memory"] {
                    assert!(
                        c["resources"]["limits"][k].is_string() && c["resources"]["requests"][k].is_string(),
                        "{}",
                        o.reference
                    );
                }
            }
        }
    }
    let policies: Vec<&str> = s
        .stages
        .iter()
        .flat_map(|st| &st.objects)
        .filter(|o| o.reference.kind == "NetworkPolicy")
        .map(|o| o.reference.name.as_str())
        .collect();
    assert!(policies.contains(&"default-deny") && policies.contains(&"allow-dns") && policies.contains(&"db"));
    // The database admits only the api (which depends on it), on its port.
    let db = object(&s, "NetworkPolicy", "db");
    assert_eq!(
        db["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "api"
    );
    assert_eq!(db["spec"]["ingress"][0]["ports"][0]["port"], 5432);
    // The UI names db in DATABASE_URL: it may reach it too (a path the variable implies).
    let ui = object(&s, "NetworkPolicy", "mem0-ui");
    assert!(
        ui["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "db")
    );
    // Published ports: a LoadBalancer Service on the host ports; left out on k0s.
    let public = object(&s, "Service", "mem0-ui-public");
    assert_eq!(public["spec"]["ports"][0]["port"], 3002);
    assert!(
        s.sized_for("laptop-8gb", Some(crate::distro::Distro::K0s))
            .stages
            .iter()
            .flat_map(|st| &st.objects)
            .all(|o| o.reference.name != "mem0-ui-public")
    );
    // Written YAML reads back to the same values (types kept: "5" stays a string, 5 a number).
    let rendered: Vec<&(String, String)> = imported
        .files
        .iter()
        .filter(|(p, _)| p.ends_with(".yaml") && p != "stack.yaml")
        .collect();
    assert!(!rendered.is_empty());
}

#[test]
fn a_health_check_using_a_secret_runs_under_a_shell() {
    let compose = "services:\n  cache:\n    image: redis:7.4.2\n    command: redis-server --requirepass ${REDIS_PASSWORD}\n    healthcheck:\n      test: [\"CMD\", \"redis-cli\", \"-a\", \"${REDIS_PASSWORD}\", \"ping\"]\n";
    let (run, _, s) = written(compose, &[("REDIS_PASSWORD", "pw-cache-999")]);
    let c = &object(&s, "Deployment", "cache")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["args"],
        serde_json::json!(["redis-server", "--requirepass", "$(REDIS_PASSWORD)"])
    );
    assert_eq!(c["readinessProbe"]["exec"]["command"][0], "/bin/sh");
    assert_eq!(
        c["readinessProbe"]["exec"]["command"][2],
        "\"redis-cli\" \"-a\" \"${REDIS_PASSWORD}\" \"ping\""
    );
    assert!(!folder_text(&run.out).contains("pw-cache-999"));
}

#[test]
fn gpu_reservations_become_shares_on_gpu_profiles_only() {
    let compose = "services:\n  llm:\n    image: ollama/ollama:0.12.10\n    deploy:\n      resources:\n        limits: {cpus: '4', memory: 8G}\n        reservations:\n          devices:\n            - driver: nvidia\n              count: all\n              capabilities: [gpu]\n";
    let (_run, imported, s) = written(compose, &[]);
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.feature == "gpu" && n.what.contains("count: all → 1"))
    );
    let c = |p: &str| {
        s.sized_for(p, None)
            .stages
            .iter()
            .flat_map(|st| st.objects.clone())
            .find(|o| o.reference.kind == "Deployment")
            .unwrap()
            .value
    };
    let gpu = c("rtx-5090");
    assert_eq!(gpu["spec"]["template"]["spec"]["runtimeClassName"], "nvidia");
    assert_eq!(
        gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
            .to_string()
            .trim_matches('"'),
        "1"
    );
    for p in ["laptop-8gb", "cpu-fallback"] {
        let v = c(p);
        assert!(v["spec"]["template"]["spec"].get("runtimeClassName").is_none(), "{p}");
        assert!(
            v.to_string().contains("\"memory\":\"8Gi\""),
            "limits from deploy.resources: {v}"
        );
    }
    // The laptop profile's requests fit its smallest host less 1 CPU and 2 GiB.
    let laptop = c("laptop-8gb");
    let req = &laptop["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"];
    assert!(
        crate::stack::overlay::quantity_value(req["cpu"].as_str().unwrap()).unwrap() <= 1.0,
        "{req}"
    );
}

fn input_error(compose: &str) -> (String, usize, String) {
    match run(compose, &[], |_| {}).1 {
        Err(ImportError::Input {
            file, line, message, ..
        }) => (file, line, message),
        Err(e) => panic!("not an input error: {e}"),
        Ok(_) => panic!("imported:\n{compose}"),
    }
}

#[test]
fn bad_input_names_the_file_and_line() {
    let (file, line, m) = input_error("services:\n  web:\n    image: nginx:1.27\n     ports: [80]\n");
    assert!(file.ends_with("compose.yaml") && line == 4, "{file}:{line}: {m}");
    let (_, line, m) = input_error("services:\n  web:\n    image: nginx:1.27\n    depends_on: [nope]\n");
    assert_eq!(line, 4, "{m}");
    assert!(m.contains("nope"));
    let (_, line, m) = input_error("services:\n  web:\n    image: nginx:1.27\n    ports: ['80:70000']\n");
    assert_eq!(line, 4, "{m}");
    let (_, line, m) = input_error("services:\n  web:\n    image: nginx:${TAG:?set TAG}\n");
    assert!(line == 3 && m.contains("TAG"), "{m}");
    let (_, _, m) = input_error(
        "services:\n  a:\n    image: x:1.0\n    depends_on: [b]\n  b:\n    image: y:1.0\n    depends_on: [a]\n",
    );
    assert!(
        m.contains("cycle") && (m.contains("a → b → a") || m.contains("b → a → b")),
        "{m}"
    );
    let (_, line, m) = input_error("services:\n  web:\n    image: NGINX:1.27\n");
    assert!(line == 3 && m.contains("NGINX"), "{m}");
    let (_, _, m) = input_error("version: '3'\n");
    assert!(m.contains("no services"), "{m}");
}

#[test]
fn what_cannot_be_carried_is_refused_all_at_once() {
    let compose = "services:\n  a:\n    image: x:1.0\n    privileged: true\n    network_mode: host\n  b:\n    image: y:1.0\n    volumes: ['/var/run/docker.sock:/var/run/docker.sock']\n    devices: ['/dev/ttyUSB0']\n    cap_add: [NET_ADMIN]\n";
    match run(compose, &[], |_| {}).1 {
        Err(e @ ImportError::Refused { .. }) => {
            let text = e.to_string();
            for want in ["privileged", "network_mode", "docker.sock", "devices", "compose.yaml:4"] {
                assert!(text.contains(want), "{want}: {text}");
            }
            assert!(!text.contains("cap_add"), "cap_add is a warning: {text}");
        }
        other => panic!("{:?}", other.map(|i| i.notes)),
    }
    // Dropping bind mounts leaves the socket out; the rest still refuses.
    let (_, r) = run(
        "services:\n  b:\n    image: y:1.0\n    volumes: ['/var/run/docker.sock:/x']\n",
        &[],
        |o| o.bind_mounts = BindMounts::Drop,
    );
    assert!(r.unwrap().notes.iter().any(|n| n.what.contains("dropped")));
}

#[test]
fn several_files_merge_and_jobs_come_from_completed_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, "services:\n  web:\n    image: nginx:1.27\n    depends_on:\n      migrate: {condition: service_completed_successfully}\n  migrate:\n    image: app:1.2\n    command: ./migrate --up\n    restart: on-failure:5\n").unwrap();
    std::fs::write(&b, "services:\n  web:\n    ports: ['8080:80']\n").unwrap();
    let env = dir.path().join("vars.env");
    std::fs::write(&env, "UNUSED=1\n").unwrap();
    let o = Options {
        files: vec![a, b],
        env_files: vec![env],
        name: Some("two".into()),
        ..Default::default()
    };
    let imported = import(&o, &|_| None, &profiles()).unwrap();
    let out = dir.path();
    write(out, &imported).unwrap();
    let s = stack::load("two", Some(out)).unwrap();
    let job = object(&s, "Job", "migrate");
    assert_eq!(job["spec"]["backoffLimit"], 5);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"],
        serde_json::json!(["./migrate", "--up"])
    );
    assert_eq!(object(&s, "Service", "web-public")["spec"]["ports"][0]["port"], 8080);
    // A second import replaces its own folder; a folder kstrap did not write is never touched.
    write(out, &imported).unwrap();
    std::fs::create_dir(out.join("mine")).unwrap();
    let mut other = imported;
    other.name = "mine".into();
    assert!(matches!(write(out, &other), Err(ImportError::Exists { .. })));
}
