//! Imported compose applications made ready on the real API server (tests/support/real; without
//! one this skips, saying why): each well-known compose file of `import_compose::FIXTURES` is
//! imported by the real binary and applied with `kstrap apply --stack-dir`, unchanged, on a
//! profile of its own (the GPU one for the GPU reservation), until every stage is ready. One
//! test, one exclusive hold of the node (it is given GPUs), one apply per fixture.

use crate::import_compose::{FIXTURES, IMPORT_SECRET, import};
use crate::real::{Cleanup, RealCluster, apply_json, unique};
use assert_cmd::Command;
use serde_json::{Value, json};

#[test]
fn imported_compose_applications_become_ready_on_the_real_control_plane() {
    let Some(cluster) = RealCluster::get("imported_compose_applications_become_ready_on_the_real_control_plane") else {
        return;
    };
    let _guard = cluster.exclusive();
    let mut cleanup = Cleanup::new(cluster);
    // What the GPU operator leaves on a GPU node: time-sliced shares, its labels, the runtime.
    cluster.node().set(|c| {
        c.extended.insert("nvidia.com/gpu".into(), "4".into());
        c.labels.insert("nvidia.com/gpu.present".into(), "true".into());
        c.runtime_handlers = vec!["runc".into(), "nvidia".into()];
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let rc = json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"}, "handler": "nvidia"});
        apply_json(&cluster.client().await, &rc, "kstrap-test").await.unwrap();
    });
    cleanup.cluster_object("node.k8s.io/v1", "RuntimeClass", "runtimeclasses", "nvidia");

    let out = tempfile::tempdir().unwrap();
    let profile_of = |gpu: bool, i: usize| {
        if gpu {
            "rtx-5090"
        } else if i == 0 {
            "laptop-8gb"
        } else {
            "cpu-fallback"
        }
    };
    for (i, (dir, file, _, images, gpu)) in FIXTURES.iter().enumerate() {
        let name = unique(&dir.chars().take(12).collect::<String>());
        cleanup.namespace(&name).applyset_parent(&name);
        let report = import(out.path(), dir, file, &["--name", &name]);
        let profile = profile_of(*gpu, i);
        let mut apply = Command::cargo_bin("kstrap").unwrap();
        apply
            .args(["apply", "--stack-dir"])
            .arg(out.path())
            .args([
                "--stack",
                &name,
                "--profile",
                profile,
                "--timeout",
                "120",
                "-o",
                "json",
                "--kubeconfig",
            ])
            .arg(cluster.kubeconfig())
            .env_remove("KUBECONFIG")
            .env(IMPORT_SECRET.0, IMPORT_SECRET.1);
        for k in *images {
            apply.args([
                "--image",
                &format!(
                    "{k}=registry.example.com/e2e/{}:1.0.0",
                    k.to_lowercase().replace('_', "-")
                ),
            ]);
        }
        let started = std::time::Instant::now();
        let o = apply.output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{dir} on {profile}:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!("{dir} on {profile}: ready in {:?}", started.elapsed());
        let applied: Value = serde_json::from_slice(&o.stdout).unwrap();
        let stages: Vec<&str> = applied["report"]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            stages.len(),
            report["stages"].as_array().unwrap().len(),
            "{dir}: {stages:?}"
        );
        // The GPU service holds a share; the secret the user gave at apply reached the cluster
        // only (the folder never had it: import_compose checks).
        if *gpu {
            let pods = rt.block_on(async {
                let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
                    kube::Api::namespaced(cluster.client().await, &name);
                api.list(&Default::default()).await.unwrap()
            });
            let shares = pods.items.iter().filter(|p| {
                p.spec.as_ref().is_some_and(|s| {
                    s.containers.iter().any(|c| {
                        c.resources
                            .as_ref()
                            .and_then(|r| r.limits.as_ref())
                            .is_some_and(|l| l.contains_key("nvidia.com/gpu"))
                    })
                })
            });
            assert_eq!(shares.count(), 1, "{dir}: one pod holds a GPU share");
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!text.contains(IMPORT_SECRET.1), "{dir}: apply printed a secret");
    }

    // --discover: the namespace already has a Redis; the compose file's own is not imported and
    // the variable naming it points at the cluster's Service.
    let ns = unique("discover");
    cleanup.namespace(&ns);
    rt.block_on(async {
        let client = cluster.client().await;
        apply_json(&client, &crate::real::namespace_json(&ns), "kstrap-test").await.unwrap();
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cache-redis-master", "namespace": ns},
            "spec": {"selector": {"app": "cache-redis"}, "ports": [{"port": 6380, "targetPort": 6379}]}});
        apply_json(&client, &svc, "kstrap-test").await.unwrap();
    });
    let compose = out.path().join("discover.yaml");
    std::fs::write(&compose, "services:\n  app:\n    image: registry.example.com/app:1.0\n    environment:\n      REDIS_URL: redis://redis:6379/0\n    depends_on: [redis]\n  redis:\n    image: redis:7.4.2\n").unwrap();
    let o = Command::cargo_bin("kstrap")
        .unwrap()
        .args(["import", "compose"])
        .arg(&compose)
        .args(["--name", &ns, "--discover", "-o", "json", "--out"])
        .arg(out.path())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let s = kstrap::stack::load(&ns, Some(out.path())).unwrap();
    let names: Vec<String> = s
        .stages
        .iter()
        .flat_map(|st| &st.objects)
        .map(|o| format!("{}/{}", o.reference.kind, o.reference.name))
        .collect();
    assert!(!names.iter().any(|n| n.ends_with("/redis")), "{names:?}");
    let cm = s
        .stages
        .iter()
        .flat_map(|st| &st.objects)
        .find(|o| o.reference.name == "app-env")
        .unwrap();
    assert_eq!(
        cm.value["data"]["REDIS_URL"],
        format!("redis://cache-redis-master.{ns}.svc.cluster.local:6380/0")
    );
    let policy = s
        .stages
        .iter()
        .flat_map(|st| &st.objects)
        .find(|o| o.reference.kind == "NetworkPolicy" && o.reference.name == "app")
        .unwrap();
    assert!(
        policy.value.to_string().contains("\"app\":\"cache-redis\""),
        "{}",
        policy.value
    );
}
