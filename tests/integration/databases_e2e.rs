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
//! - the credentials appear in no output (JSON and human, verbose);
//! - prune reaches every namespace: an object taken out of a namespace other than the stack's
//!   first is deleted on the next apply, its namesakes elsewhere stay;
//! - `down --keep-data` keeps the databases and the `up` after it, on the GPU profile (the node
//!   has a GPU; the GPU operator comes first), takes them back (same Cluster, credentials and
//!   volume claim) and becomes ready.

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
    // A node with one GPU: the up after `down --keep-data` is the GPU profile's (the GPU
    // operator first, then the stack); the world removes what the GPU phase makes.
    let Some(w) = World::gpu("alice_comes_up_with_a_database_per_service", 1) else {
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
        .object("helm.cattle.io/v1", "HelmChart", "helmcharts", "kube-system", "cnpg")
        // What k3s's Helm controller (its stand-in) makes for the chart's install job.
        .cluster_object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "helm-kube-system-cnpg",
        );

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
        let uids: Vec<_> = uids.into_iter().map(|(c, s)| (c, s, Value::Null)).collect();
        let again: Vec<_> = identities(&client)
            .await
            .into_iter()
            .map(|(c, s, _)| (c, s, Value::Null))
            .collect();
        assert_eq!(again, uids, "a re-run made a database again");
        let all = format!("{}{}", text(&first), text(&second));
        for pw in &passwords {
            assert!(!all.contains(pw.as_str()), "a database password was printed");
        }

        prune_reaches_every_namespace(&w, &client, &kubeconfig).await;

        // `down` takes the distribution away with its datastore, which holds every namespace of
        // the stack: it needs no list of them. With `--keep-data` the data folder stays, and
        // with it the datastore and the local-path volumes (on k3s under
        // /var/lib/rancher/k3s/storage; on k0s the local-path add-on keeps them under
        // /var/lib/k0s): the databases' claims and their data. On this fake host the control
        // plane outlives `down` as the kept datastore would; what is checked is that `down`
        // keeps the data folder and that the `up` after it takes the databases back as they
        // are, recreating none.
        let before = identities(&client).await;
        let out = w.kstrap(&["down", "--yes", "--keep-data"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(w.host.root.join("var/lib/rancher/k3s").is_dir());
        assert!(!w.host.root.join("usr/local/bin/k3s").exists());
        let state = std::fs::read_to_string(w.host.root.join("var/lib/kstrap/state.json")).unwrap();
        assert!(state.contains("\"/var/lib/rancher/k3s\""), "{state}");
        // alice renders the same on rtx-5090 as on cpu-fallback (no GPU workload, the same
        // sizes): the stack must become ready again after the GPU operator, recreating nothing.
        let args = up_args(&w, "rtx-5090", &[]);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        let third = w.kstrap(&a).output().unwrap();
        eprintln!("up after down --keep-data: {:?}", started.elapsed());
        assert_eq!(third.status.code(), Some(0), "{}", text(&third));
        assert_eq!(
            identities(&client).await,
            before,
            "up after down --keep-data made a database or its claim again"
        );
        // The full stack is back: the pruned policy too.
        assert!(
            get(
                &client,
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "networkpolicies",
                Some("alice-quality"),
                "allow-dns"
            )
            .await
            .is_some()
        );
        for pw in &passwords {
            assert!(!text(&third).contains(pw.as_str()), "a database password was printed");
        }
    });
}

/// Per database (in a fixed order): the uids of its Cluster, its credentials Secret and its
/// first instance's data claim (`<cluster>-1`, as the operator names it).
async fn identities(client: &kube::Client) -> Vec<(Value, Value, Value)> {
    let mut out = Vec::new();
    for (ns, db) in [
        ("alice-interface", "alice-interface-db"),
        ("alice-assets", "alice-assets-db"),
        ("alice-quality", "alice-quality-db"),
        ("alice-metadata", "alice-metadata-db"),
    ] {
        let uid = |v: Option<Value>, what: &str| {
            v.unwrap_or_else(|| panic!("{ns}/{what} missing"))["metadata"]["uid"].clone()
        };
        let c = get(client, "postgresql.cnpg.io/v1", "Cluster", "clusters", Some(ns), db).await;
        let secret = get(client, "v1", "Secret", "secrets", Some(ns), &format!("{db}-app")).await;
        let claim = format!("{db}-1");
        let pvc = get(
            client,
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            Some(ns),
            &claim,
        )
        .await;
        out.push((uid(c, db), uid(secret, &format!("{db}-app")), uid(pvc, &claim)));
    }
    out
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// alice without `alice-quality`'s DNS policy, applied over the full stack: the ApplySet's prune
/// deletes it in that namespace (not the stack's first) and keeps `allow-dns` in the others.
async fn prune_reaches_every_namespace(w: &World, client: &kube::Client, kubeconfig: &str) {
    let dir = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_tree(&repo.join("manifests/alice"), &dir.path().join("alice"));
    let policies = dir.path().join("alice/00-base/network-policies.yaml");
    let full = std::fs::read_to_string(&policies).unwrap();
    let docs: Vec<&str> = full.split("\n---\n").collect();
    let kept: Vec<&str> = docs
        .iter()
        .copied()
        .filter(|d| !(d.contains("name: allow-dns") && d.contains("namespace: alice-quality")))
        .collect();
    assert_eq!(kept.len() + 1, docs.len(), "alice-quality's allow-dns policy, once");
    std::fs::write(&policies, kept.join("\n---\n")).unwrap();

    let stack_dir = dir.path().to_str().unwrap();
    let mut a = vec![
        "apply",
        "--stack-dir",
        stack_dir,
        "--stack",
        "alice",
        "--profile",
        "cpu-fallback",
        "--kubeconfig",
        kubeconfig,
    ];
    for i in IMAGES {
        a.push("--image");
        a.push(i);
    }
    let started = std::time::Instant::now();
    let out = w.kstrap(&a).output().unwrap();
    eprintln!("apply without one policy: {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let policy = |ns: &'static str| async move {
        get(
            client,
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "networkpolicies",
            Some(ns),
            "allow-dns",
        )
        .await
    };
    assert!(policy("alice-quality").await.is_none(), "not pruned in alice-quality");
    for ns in ["alice-interface", "alice-assets", "alice-metadata", "alice-events"] {
        assert!(policy(ns).await.is_some(), "allow-dns pruned in {ns}");
    }
}

/// Puts the node stand-in back to its defaults (and k3s's StorageClass back) when dropped, after
/// the test's cleanup removed what kstrap made.
struct NodeBack(&'static crate::real::RealCluster);

impl Drop for NodeBack {
    fn drop(&mut self) {
        self.0.node().reset();
    }
}

/// alice on the 8 GB laptop profile on k0s. k0s ships no storage provisioner, so the node
/// stand-in's k3s StorageClass is taken away first; kstrap then installs the local-path storage
/// add-on (its class the default), the operator through k0s's Helm extension (its stand-in),
/// and the stack sized for the laptop, stage by stage: each database ready on a claim of the
/// laptop's size in the add-on's class, before its service exists.
#[test]
fn alice_comes_up_on_k0s_for_the_laptop() {
    let Some(w) = World::real_k0s("alice_comes_up_on_k0s_for_the_laptop") else {
        return;
    };
    let cluster = w.cluster();
    let _node = NodeBack(cluster);
    let mut cleanup = Cleanup::new(cluster);
    for ns in NAMESPACES.iter().chain(&["cnpg-system", "local-path-storage"]) {
        cleanup.namespace(ns);
    }
    cleanup
        .applyset_parent("alice")
        .applyset_parent("cloudnative-pg")
        .applyset_parent("local-path-storage")
        .object("helm.k0sproject.io/v1beta1", "Chart", "charts", "kube-system", "cnpg")
        .cluster_object("storage.k8s.io/v1", "StorageClass", "storageclasses", "local-path")
        .cluster_object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "clusterroles",
            "local-path-provisioner-role",
        )
        .cluster_object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "local-path-provisioner-bind",
        );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = cluster.client().await;
        let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client);
        let _ = classes.delete("local-path", &Default::default()).await;
    });

    let args = up_args(&w, "laptop-8gb", &["--distro", "k0s", "-o", "json"]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let out = w.kstrap(&a).output().unwrap();
    eprintln!("up on k0s: {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(outcome(&report, "addon-local-path-storage"), "changed");
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
    assert!(pos("addon-local-path-storage") < pos("addon-cloudnative-pg"));
    assert!(pos("addon-cloudnative-pg") < pos("stage-base"));
    assert!(pos("stage-databases") < pos("stage-services"));

    rt.block_on(async {
        let client = cluster.client().await;
        for (ns, db, size) in [
            ("alice-interface", "alice-interface-db", "512Mi"),
            ("alice-assets", "alice-assets-db", "2Gi"),
            ("alice-quality", "alice-quality-db", "512Mi"),
            ("alice-metadata", "alice-metadata-db", "512Mi"),
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
            assert_eq!(c["spec"]["storage"]["size"], size, "{db}");
            let claim = format!("{db}-1");
            let pvc = get(
                &client,
                "v1",
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                Some(ns),
                &claim,
            )
            .await
            .expect("the instance's claim");
            assert_eq!(pvc["status"]["phase"], "Bound", "{claim}");
            assert_eq!(pvc["spec"]["storageClassName"], "local-path", "{claim}");
            let svc = db.trim_end_matches("-db");
            let d = get(&client, "apps/v1", "Deployment", "deployments", Some(ns), svc)
                .await
                .expect(svc);
            assert!(
                d["status"]["readyReplicas"].as_u64().unwrap_or(0) >= 1,
                "{svc}: {}",
                d["status"]
            );
        }
        // The class is kstrap's add-on's, not k3s's.
        let sc = get(
            &client,
            "storage.k8s.io/v1",
            "StorageClass",
            "storageclasses",
            None,
            "local-path",
        )
        .await
        .expect("the add-on's StorageClass");
        assert!(
            sc["metadata"]["labels"][kstrap::applyset::PART_OF_LABEL].is_string(),
            "{}",
            sc["metadata"]
        );
    });
}
