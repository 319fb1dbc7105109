//! `kstrap import compose` through the real binary on compose files of well-known projects
//! (tests/fixtures/compose/*/SOURCE): each is imported, loaded as kstrap loads a stack, sized for
//! every profile on every distribution and checked for what kstrap promises of its stacks
//! (locked-down, limited containers; default-deny network policies; requests that fit each
//! profile's smallest host; GPU shares only on GPU profiles), and planned by `kstrap plan
//! --stack-dir`. No secret value given at import reaches the folder. Bad input exits 2 naming
//! the file and line, and writes nothing.

use assert_cmd::Command;
use kstrap::distro::Distro;
use kstrap::stack::{self, Stack};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// (fixture folder, file, stack name, images the user names, has a GPU service).
pub const FIXTURES: &[(&str, &str, &str, &[&str], bool)] = &[
    (
        "voting-app",
        "docker-compose.yml",
        "voting-app",
        &["REDIS_IMAGE", "RESULT_IMAGE", "VOTE_IMAGE", "WORKER_IMAGE"],
        false,
    ),
    (
        "open-webui-gpu",
        "docker-compose.gpu.yaml",
        "open-webui-gpu",
        &["OLLAMA_IMAGE", "OPENWEBUI_IMAGE"],
        true,
    ),
    (
        "open-webui-build",
        "docker-compose.yaml",
        "open-webui-build",
        &["NGINX_IMAGE", "OPEN_WEBUI_IMAGE"],
        false,
    ),
];

/// A value given at import for a variable the fixtures treat as a secret.
pub const IMPORT_SECRET: (&str, &str) = ("OPENAI_API_KEY", "sk-IMPORTED-never-written-7c1e");

pub fn fixture(dir: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/compose")
        .join(dir)
        .join(file)
}

/// Imports a fixture into `out` with the real binary; the JSON report.
pub fn import(out: &Path, dir: &str, file: &str, extra: &[&str]) -> Value {
    let output = Command::cargo_bin("kstrap")
        .unwrap()
        .args(["import", "compose"])
        .arg(fixture(dir, file))
        .arg("--out")
        .arg(out)
        .args(extra)
        .args(["-o", "json"])
        .env(IMPORT_SECRET.0, IMPORT_SECRET.1)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{dir}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
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

fn pods(s: &Stack) -> Vec<(String, Value)> {
    s.stages
        .iter()
        .flat_map(|st| &st.objects)
        .filter_map(|o| {
            Some((
                format!("{}/{}", o.reference.kind, o.reference.name),
                o.value.pointer("/spec/template/spec")?.clone(),
            ))
        })
        .collect()
}

fn check(name: &str, variant: &str, s: &Stack, budget: (f64, f64), gpu_expected: bool) {
    let objects: Vec<&stack::StackObject> = s.stages.iter().flat_map(|st| &st.objects).collect();
    let deny = objects.iter().any(|o| {
        o.reference.kind == "NetworkPolicy"
            && o.value["spec"]["podSelector"] == serde_json::json!({})
            && o.value["spec"].get("ingress").is_none()
            && o.value["spec"].get("egress").is_none()
    });
    assert!(deny, "{name} {variant}: no default-deny policy");
    let (mut cpu, mut mem) = (0.0, 0.0);
    let mut gpu = false;
    for (who, pod) in pods(s) {
        assert_eq!(pod["automountServiceAccountToken"], false, "{name} {variant} {who}");
        assert_ne!(pod.get("hostNetwork"), Some(&Value::Bool(true)));
        gpu |= pod.get("runtimeClassName").is_some();
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name} {variant} {who}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{name} {variant} {who}"
            );
            let q = |p: &str| {
                stack::overlay::quantity_value(
                    c.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| panic!("{name} {variant} {who}: {p}")),
                )
                .unwrap()
            };
            cpu += q("/resources/requests/cpu");
            mem += q("/resources/requests/memory");
            assert!(
                q("/resources/requests/cpu") <= q("/resources/limits/cpu"),
                "{name} {variant} {who}"
            );
            assert!(
                q("/resources/requests/memory") <= q("/resources/limits/memory"),
                "{name} {variant} {who}"
            );
        }
    }
    assert_eq!(gpu, gpu_expected, "{name} {variant}: GPU");
    assert!(
        cpu <= budget.0 + 1e-9 && mem <= budget.1,
        "{name} {variant}: requests {cpu} CPU, {mem} bytes exceed {budget:?}"
    );
}

#[test]
fn well_known_compose_files_import_load_and_plan_for_every_profile() {
    let out = tempfile::tempdir().unwrap();
    let profiles = kstrap::profile::embedded().unwrap();
    let facts = |p: &str| {
        let f = if p == "rtx-5090" {
            "rtx5090-96gb.json"
        } else {
            "laptop-8gb-nogpu.json"
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/facts")
            .join(f)
    };
    for (dir, file, name, images, has_gpu) in FIXTURES {
        let report = import(out.path(), dir, file, &[]);
        assert_eq!(report["stack"], *name);
        let keys: Vec<&str> = report["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, *images, "{name}");
        let s = stack::load(name, Some(out.path())).unwrap_or_else(|e| panic!("{name}: {e}"));
        for p in &profiles {
            let budget = (
                f64::from(p.requires.cpus) - 1.0,
                (p.requires.memory_gib - 2.0) * 1073741824.0,
            );
            for d in [Distro::K3s, Distro::K0s] {
                let sized = s.sized_for(&p.name, Some(d));
                check(
                    name,
                    &format!("{} on {d}", p.name),
                    &sized,
                    budget,
                    *has_gpu && p.requires.gpu.is_some(),
                );
            }
            let mut plan = Command::cargo_bin("kstrap").unwrap();
            plan.args(["plan", "--stack-dir"])
                .arg(out.path())
                .args([
                    "--stack",
                    name,
                    "--profile",
                    &p.name,
                    "--force",
                    "-o",
                    "json",
                    "--facts",
                ])
                .arg(facts(&p.name));
            for k in *images {
                plan.args([
                    "--image",
                    &format!(
                        "{k}=registry.example.com/import/{}:1.0.0",
                        k.to_lowercase().replace('_', "-")
                    ),
                ]);
            }
            let o = plan.output().unwrap();
            assert_eq!(
                o.status.code(),
                Some(0),
                "plan {name} on {}: {}",
                p.name,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let text = folder_text(&out.path().join(name));
        assert!(
            !text.contains(IMPORT_SECRET.1),
            "{name}: a secret given at import was written"
        );
    }
    // The GPU reservation: one share on the GPU profile, with the reason in the report.
    let s = stack::load("open-webui-gpu", Some(out.path()))
        .unwrap()
        .sized("rtx-5090");
    let ollama = pods(&s).into_iter().find(|(w, _)| w.ends_with("/ollama")).unwrap().1;
    assert_eq!(
        ollama["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
            .to_string()
            .trim_matches('"'),
        "1"
    );
    // The voting app: PostgreSQL with its own volume is a StatefulSet; its password is declared.
    let s = stack::load("voting-app", Some(out.path())).unwrap();
    assert!(pods(&s).iter().any(|(w, _)| w == "StatefulSet/db"));
    assert!(
        s.secrets
            .iter()
            .any(|d| d.keys.contains(&"POSTGRES_PASSWORD".to_string()) && d.generate.is_some())
    );
    assert!(!folder_text(&out.path().join("voting-app")).contains("POSTGRES_PASSWORD: postgres"));
}

#[test]
fn bad_compose_input_exits_2_naming_the_file_and_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("services:\n  web:\n    image: nginx:1.27\n     ports: [80]\n", ":4:"),
        (
            "services:\n  web:\n    image: nginx:1.27\n    ports: ['80:99999']\n",
            ":4:",
        ),
        (
            "services:\n  web:\n    image: nginx:1.27\n    privileged: true\n",
            ":4:",
        ),
        (
            "services:\n  a: {image: 'x:1.0', depends_on: [b]}\n  b: {image: 'y:1.0', depends_on: [a]}\n",
            "cycle",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        let out = dir.path().join(format!("out{i}"));
        std::fs::create_dir(&out).unwrap();
        for json in [false, true] {
            let mut cmd = Command::cargo_bin("kstrap").unwrap();
            cmd.args(["import", "compose"]).arg(&file).arg("--out").arg(&out);
            if json {
                cmd.args(["-o", "json"]);
            }
            let o = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{text}\n{err}");
            assert!(
                err.contains(&format!("bad{i}.yaml")) && err.contains(want),
                "{want}: {err}"
            );
            if json {
                let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
                assert_eq!(doc["exit_code"], 2);
            }
            assert_eq!(
                std::fs::read_dir(&out).unwrap().count(),
                0,
                "something was written for:\n{text}"
            );
        }
    }
}
