//! Seed 003's `alice` end to end on the real control plane: the `kstrap` binary runs `up` into a
//! fake host (TEST DOUBLE) whose k3s hands out the real API server's kubeconfig; the Helm
//! controller and the CloudNativePG operator are the stand-ins of `tests/support/real/controllers/`
//! (TEST DOUBLES, `cnpg.rs` citing the operator's status conventions at v1.30.0).
//!
//! One test, one setup, several assertions (each real-cluster test costs CI time):
//! - every object of alice, sized for every profile on both distributions, passes the real API
//!   server's server-side dry run with strict field validation, the Clusters against
//!   CloudNativePG's own CRD;
//! - `up --stack alice` installs the operator (its chart object, the CRD Established, the
//!   Deployment available) before the stack, then the stages in order: the databases are ready
//!   (readyInstances = instances, healthy phase, Ready=True) before any service exists;
//! - the ApplySet covers every namespace of the stack;
//! - a re-run (`kstrap apply`) recreates no database (same uids, same credentials);
//! - the credentials appear in no output (JSON and human, verbose).

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::real::Cleanup;
use crate::real::controllers::resource as resource_for;
use crate::up_e2e::{Machine, World, outcome, text};

const NAMESPACES: [&str; 5] = [
    "alice-interface",
    "alice-assets",
    "alice-quality",
    "alice-metadata",
    "alice-events",
];
const IMAGES: [&str; 4] = [
    "INTERFACE_IMAGE=registry.example.com/alice/interface:1.0.0",
    "ASSETS_IMAGE=registry.example.com/alice/assets:1.0.0",
    "QUALITY_IMAGE=registry.example.com/alice/quality:1.0.0",
    "METADATA_IMAGE=registry.example.com/alice/metadata:1.0.0",
];

fn up_args(w: &World, profile: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "up",
        "--facts",
        crate::support::fixture_path("rtx5090-96gb").to_str().unwrap(),
        "--profile",
        profile,
        "--release-mirror",
        &w.releases.url(),
        "--yes",
        "--stack",
        "alice",
        "--timeout",
        "120",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in IMAGES {
        a.push("--image".into());
        a.push(i.into());
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

async fn get(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Option<Value> {
    let ar = resource_for(api_version, kind, plural);
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .map(|o| serde_json::to_value(o).unwrap())
}

/// Server-side dry run of every object of alice for every profile and distribution (each a
/// create under another name: nothing is stored).
async fn dry_run_every_profile(client: &kube::Client) {
    let s = kstrap::stack::load("alice", None).unwrap();
    let mut checked = 0;
    let mut resources: std::collections::HashMap<String, kube::discovery::ApiResource> =
        std::collections::HashMap::new();
    for p in ["laptop-8gb", "cpu-fallback", "rtx-5090"] {
        for d in [kstrap::distro::Distro::K3s, kstrap::distro::Distro::K0s] {
            let sized = s.sized_for(p, Some(d));
            for o in sized.stages.iter().flat_map(|st| &st.objects) {
                // The namespaces exist (up made them); a dry run of the rest needs them.
                if o.reference.kind == "Namespace" {
                    continue;
                }
                let (group, version) = o
                    .reference
                    .api_version
                    .split_once('/')
                    .unwrap_or(("", &o.reference.api_version));
                let gvk = kube::api::GroupVersionKind::gvk(group, version, &o.reference.kind);
                let key = format!("{}/{}", o.reference.api_version, o.reference.kind);
                let ar = match resources.get(&key) {
                    Some(ar) => ar.clone(),
                    None => {
                        let (ar, _) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
                        resources.insert(key, ar.clone());
                        ar
                    }
                };
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), o.reference.namespace.as_deref().unwrap(), &ar);
                let mut pp = PatchParams::apply("kstrap-dry-run").force();
                pp.dry_run = true;
                pp.field_validation = Some(kube::api::ValidationDirective::Strict);
                // Under a name of its own: a create, checked in full, whatever this profile's
                // sizes are next to the live objects' (a claim cannot shrink).
                let name = format!("{}-d", o.reference.name);
                let mut value = o.value.clone();
                value["metadata"]["name"] = Value::String(name.clone());
                api.patch(&name, &pp, &Patch::Apply(&value))
                    .await
                    .unwrap_or_else(|e| panic!("alice ({p} on {d}): {}: {e}", o.reference));
                checked += 1;
            }
        }
    }
    assert!(checked >= 6 * 35, "{checked}");
}

#[test]
fn alice_comes_up_with_a_database_per_service() {
    let Some(w) = World::real_exclusive("alice_comes_up_with_a_database_per_service") else {
        return;
    };
    let cluster = w.cluster();
    let mut cleanup = Cleanup::new(cluster);
    for ns in NAMESPACES.iter().chain(&["cnpg-system"]) {
        cleanup.namespace(ns);
    }
    cleanup
        .applyset_parent("alice")
        .applyset_parent("cloudnative-pg")
        .object("helm.cattle.io/v1", "HelmChart", "helmcharts", "kube-system", "cnpg");

    let args = up_args(&w, "cpu-fallback", &["-o", "json"]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let first = w.kstrap(&a).output().unwrap();
    eprintln!("up: {:?}", started.elapsed());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let report: Value = serde_json::from_slice(&first.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&first)));
    assert_eq!(outcome(&report, "addon-cloudnative-pg"), "changed");
    let ids: Vec<&str> = report["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|x| x["id"].as_str()).collect())
        .unwrap_or_default();
    let pos = |id: &str| {
        ids.iter()
            .position(|x| *x == id)
            .unwrap_or_else(|| panic!("no step {id}: {ids:?}"))
    };
    assert!(pos("addon-cloudnative-pg") < pos("stage-base"));
    assert!(pos("stage-databases") < pos("stage-services"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = cluster.client().await;
        // The operator came first: its CRD Established and its Deployment available.
        let crd = get(
            &client,
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            None,
            "clusters.postgresql.cnpg.io",
        )
        .await
        .expect("the chart installed the Cluster CRD");
        assert!(
            crd["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        );
        let op = get(
            &client,
            "apps/v1",
            "Deployment",
            "deployments",
            Some("cnpg-system"),
            "cnpg-controller-manager",
        )
        .await
        .expect("the operator's Deployment");
        assert_eq!(op["status"]["availableReplicas"], 1);

        // Each database ready as CloudNativePG says, before its service was made.
        let mut uids = Vec::new();
        let mut passwords = Vec::new();
        for (ns, db, svc) in [
            ("alice-interface", "alice-interface-db", "alice-interface"),
            ("alice-assets", "alice-assets-db", "alice-assets"),
            ("alice-quality", "alice-quality-db", "alice-quality"),
            ("alice-metadata", "alice-metadata-db", "alice-metadata"),
        ] {
            let c = get(&client, "postgresql.cnpg.io/v1", "Cluster", "clusters", Some(ns), db)
                .await
                .expect(db);
            assert_eq!(
                c["status"]["phase"], "Cluster in healthy state",
                "{db}: {}",
                c["status"]
            );
            assert_eq!(c["status"]["readyInstances"], c["spec"]["instances"], "{db}");
            assert!(c["spec"]["storage"].get("storageClass").is_none());
            let ready_at = c["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["type"] == "Ready")
                .unwrap()["lastTransitionTime"]
                .as_str()
                .unwrap()
                .to_string();
            let d = get(&client, "apps/v1", "Deployment", "deployments", Some(ns), svc)
                .await
                .expect(svc);
            let made = d["metadata"]["creationTimestamp"].as_str().unwrap().to_string();
            assert!(ready_at <= made, "{db} ready at {ready_at}, {svc} made at {made}");
            assert_eq!(
                d["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"],
                format!("{db}-app")
            );
            let secret = get(&client, "v1", "Secret", "secrets", Some(ns), &format!("{db}-app"))
                .await
                .expect("app secret");
            let pw: k8s_openapi::ByteString = serde_json::from_value(secret["data"]["password"].clone()).unwrap();
            passwords.push(String::from_utf8(pw.0).unwrap());
            uids.push((c["metadata"]["uid"].clone(), secret["metadata"]["uid"].clone()));
        }

        // The ApplySet covers every namespace of the stack.
        let parent = get(
            &client,
            "v1",
            "Secret",
            "secrets",
            Some("kube-system"),
            "applyset-alice",
        )
        .await
        .unwrap();
        let listed = parent["metadata"]["annotations"]["applyset.kubernetes.io/additional-namespaces"]
            .as_str()
            .unwrap();
        for ns in NAMESPACES {
            assert!(listed.split(',').any(|x| x == ns), "{ns} not in {listed}");
        }
        let kinds = parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"]
            .as_str()
            .unwrap();
        assert!(kinds.contains("Cluster.postgresql.cnpg.io"), "{kinds}");

        // Every profile's objects pass the real server's validation (the CRD is installed now).
        dry_run_every_profile(&client).await;

        // A re-run (`apply`, human and verbose): no database made again, nothing printed.
        let kubeconfig = cluster.kubeconfig().to_str().unwrap().to_string();
        let mut a = vec![
            "apply",
            "--stack",
            "alice",
            "--profile",
            "cpu-fallback",
            "--kubeconfig",
            &kubeconfig,
            "-v",
        ];
        for i in IMAGES {
            a.push("--image");
            a.push(i);
        }
        let started = std::time::Instant::now();
        let second = w.kstrap(&a).output().unwrap();
        eprintln!("re-run: {:?}", started.elapsed());
        assert_eq!(second.status.code(), Some(0), "{}", text(&second));
        let mut again = Vec::new();
        for (ns, db) in [
            ("alice-interface", "alice-interface-db"),
            ("alice-assets", "alice-assets-db"),
            ("alice-quality", "alice-quality-db"),
            ("alice-metadata", "alice-metadata-db"),
        ] {
            let c = get(&client, "postgresql.cnpg.io/v1", "Cluster", "clusters", Some(ns), db)
                .await
                .unwrap();
            let secret = get(&client, "v1", "Secret", "secrets", Some(ns), &format!("{db}-app"))
                .await
                .unwrap();
            again.push((c["metadata"]["uid"].clone(), secret["metadata"]["uid"].clone()));
        }
        assert_eq!(again, uids, "a re-run made a database again");
        let all = format!("{}{}", text(&first), text(&second));
        for pw in &passwords {
            assert!(!all.contains(pw.as_str()), "a database password was printed");
        }
    });
}
