//! Self-tests of the simulated API server (a test double, `tests/support/sim/`): it must behave like
//! kube-apiserver for what kstrap uses, so these tests drive it with the real `kube::Client`
//! (kube 5), `kube::runtime::watcher` and raw HTTP, and check its objects with kstrap's own
//! readiness rules.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kstrap::kube::readiness::{Context, Readiness, StorageClassInfo, readiness};
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use serde_json::{Value, json};

use crate::sim::{Fault, SimConfig, SimulatedApiServer};

fn ar(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn api(client: &kube::Client, api_version: &str, kind: &str, plural: &str, ns: Option<&str>) -> Api<DynamicObject> {
    let r = ar(api_version, kind, plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &r),
        None => Api::all_with(client.clone(), &r),
    }
}

fn dyn_obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

async fn apply(api: &Api<DynamicObject>, v: Value) -> DynamicObject {
    let name = v["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(&name, &PatchParams::apply("kstrap"), &Patch::Apply(dyn_obj(v)))
        .await
        .unwrap()
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}})
}

fn ctx() -> Context {
    let mut c = Context::default();
    c.storage_classes.insert(
        "local-path".into(),
        StorageClassInfo {
            wait_for_first_consumer: true,
        },
    );
    c.default_storage_class = Some("local-path".into());
    c.now_unix = 2_000_000_000;
    c
}

/// Poll the simulator's store (not the API) until `f` holds; panics after 3 s.
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn rv(o: &DynamicObject) -> String {
    o.metadata.resource_version.clone().unwrap()
}

/// A raw HTTP/1.1 exchange: (status, headers, body).
fn raw(sim: &SimulatedApiServer, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String, String) {
    let addr = sim.url().trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

#[tokio::test]
async fn discovery_plain_and_aggregated_find_deployments() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    let d = Discovery::new(client.clone()).run().await.unwrap();
    let (res, caps) = d
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .unwrap();
    assert_eq!(res.plural, "deployments");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(
        caps.subresources
            .iter()
            .any(|(r, _)| r.plural == "deployments/status" || r.plural == "status"),
        "{caps:?}"
    );
    let (ns, caps) = d.resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace")).unwrap();
    assert_eq!((ns.plural.as_str(), caps.scope.clone()), ("namespaces", Scope::Cluster));
    assert!(
        d.resolve_gvk(&GroupVersionKind::gvk("helm.cattle.io", "v1", "HelmChart"))
            .is_some()
    );

    let agg = Discovery::new(client.clone()).run_aggregated().await.unwrap();
    let (res, _) = agg
        .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
        .unwrap();
    assert_eq!(res.plural, "deployments");
    assert!(agg.resolve_gvk(&GroupVersionKind::gvk("", "v1", "Pod")).is_some());

    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.git_version, "v1.35.3+k3s1");
    let (code, _, body) = raw(&sim, "GET", "/apis/nope.example.com/v1", "application/json", "");
    assert_eq!(code, 404);
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (st["kind"].as_str(), st["reason"].as_str()),
        (Some("Status"), Some("NotFound"))
    );
    assert_eq!(raw(&sim, "GET", "/readyz", "text/plain", "").2, "ok");
}

#[tokio::test]
async fn ssa_generation_noop_and_label_changes() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    sim.hold("apps/v1", "Deployment", Some("default"), "web");
    let client = sim.client().await;
    let deps = api(&client, "apps/v1", "Deployment", "deployments", Some("default"));
    let created = apply(&deps, deployment("web", 1)).await;
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("kstrap"), Some("Apply"))
    );

    let before = sim.mutations();
    let again = apply(&deps, deployment("web", 1)).await;
    assert_eq!(rv(&again), rv(&created), "identical re-apply must not write");
    assert_eq!(sim.mutations(), before);

    let scaled = apply(&deps, deployment("web", 3)).await;
    assert_eq!(scaled.metadata.generation, Some(2));
    assert_ne!(rv(&scaled), rv(&created));
    assert_eq!(sim.mutations(), before + 1);

    let mut labelled = deployment("web", 3);
    labelled["metadata"]["labels"]["tier"] = json!("front");
    let relabelled = apply(&deps, labelled).await;
    assert_eq!(
        relabelled.metadata.generation,
        Some(2),
        "metadata changes do not bump generation"
    );
    assert_eq!(relabelled.labels().get("tier").map(String::as_str), Some("front"));

    // A field the manager stops applying is removed; status in an apply body is ignored.
    let mut without = deployment("web", 3);
    without["status"] = json!({"readyReplicas": 99});
    let trimmed = apply(&deps, without).await;
    assert!(!trimmed.labels().contains_key("tier"));
    assert!(
        trimmed
            .data
            .get("status")
            .is_none_or(|s| s.get("readyReplicas").is_none())
    );
}

#[tokio::test]
async fn apply_errors_look_like_the_apiservers() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let body = serde_json::to_string(&deployment("web", 1)).unwrap();
    let (code, _, text) = raw(
        &sim,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web",
        "application/apply-patch+yaml",
        &body,
    );
    assert_eq!(code, 422);
    assert!(text.contains("fieldManager: Required value"), "{text}");
    // URL namespace and object namespace disagree
    let (code, _, text) = raw(
        &sim,
        "PATCH",
        "/apis/apps/v1/namespaces/other/deployments/web?fieldManager=t",
        "application/apply-patch+yaml",
        &body,
    );
    assert_eq!(code, 400, "{text}");
    // namespace missing
    let mut d = deployment("web", 1);
    d["metadata"]["namespace"] = json!("nope");
    let (code, _, text) = raw(
        &sim,
        "PATCH",
        "/apis/apps/v1/namespaces/nope/deployments/web?fieldManager=t",
        "application/apply-patch+yaml",
        &d.to_string(),
    );
    assert_eq!(code, 404);
    assert!(text.contains(r#"namespaces \"nope\" not found"#), "{text}");
    // invalid name
    let mut d = deployment("Web", 1);
    d["metadata"]["name"] = json!("Web");
    let (code, _, text) = raw(
        &sim,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        &d.to_string(),
    );
    assert_eq!(code, 422, "{text}");
    // YAML apply body (YAML 1.1 like the apiserver's decoder: a bare `y` is a bool, not a name)
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: default\ndata:\n  k: v\n";
    let (code, _, _) = raw(
        &sim,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cfg?fieldManager=t",
        "application/apply-patch+yaml",
        yaml,
    );
    assert_eq!(code, 201);
    assert_eq!(
        sim.get("v1", "ConfigMap", Some("default"), "cfg").unwrap()["data"]["k"],
        "v"
    );
    let (code, _, text) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":true}}"#,
    );
    assert_eq!(code, 400, "{text}");
    // POST twice → AlreadyExists
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"}});
    assert_eq!(
        raw(
            &sim,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            &cm.to_string()
        )
        .0,
        201
    );
    let (code, _, text) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &cm.to_string(),
    );
    assert_eq!(code, 409);
    assert!(text.contains("AlreadyExists"));
}

#[tokio::test]
async fn conflicts_name_the_other_manager_and_force_takes_over() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    let deps = api(&client, "apps/v1", "Deployment", "deployments", Some("default"));
    apply(&deps, deployment("web", 1)).await;
    sim.inject(Fault::ApplyConflict {
        kind: "Deployment".into(),
        name: "web".into(),
        manager: "helm".into(),
        field: ".spec.replicas".into(),
    });
    let err = deps
        .patch(
            "web",
            &PatchParams::apply("kstrap"),
            &Patch::Apply(dyn_obj(deployment("web", 2))),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error")
    };
    assert_eq!(status.code, 409);
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"helm\" using apps/v1: .spec.replicas"
    );
    assert_eq!(status.reason, "Conflict");
    deps.patch(
        "web",
        &PatchParams::apply("kstrap").force(),
        &Patch::Apply(dyn_obj(deployment("web", 2))),
    )
    .await
    .unwrap();

    // A real apply-vs-apply conflict between two managers.
    let other = deps
        .patch(
            "web",
            &PatchParams::apply("someone"),
            &Patch::Apply(dyn_obj(deployment("web", 5))),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = other else { panic!() };
    assert!(
        status.message.contains("conflict with \"kstrap\""),
        "{}",
        status.message
    );
    let forced = deps
        .patch(
            "web",
            &PatchParams::apply("someone").force(),
            &Patch::Apply(dyn_obj(deployment("web", 5))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["replicas"], 5);

    // An Update manager (kubectl edit) owns what it changed.
    let patched = deps
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"minReadySeconds": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["minReadySeconds"], 3);
    let mut mine = deployment("web", 5);
    mine["spec"]["minReadySeconds"] = json!(1);
    let err = deps
        .patch("web", &PatchParams::apply("someone"), &Patch::Apply(dyn_obj(mine)))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else { panic!() };
    assert!(
        status
            .message
            .contains("\"kubectl-edit\" using apps/v1: .spec.minReadySeconds"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn status_subresource_is_separate() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    sim.hold("apps/v1", "Deployment", Some("default"), "web");
    let client = sim.client().await;
    let deps = api(&client, "apps/v1", "Deployment", "deployments", Some("default"));
    let d = apply(&deps, deployment("web", 1)).await;
    let s = deps
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1, "replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["replicas"], 7);
    assert_eq!(s.metadata.generation, d.metadata.generation);
    let got = deps.get_status("web").await.unwrap();
    assert_eq!(got.data["status"]["replicas"], 7);
    // a merge patch of the main resource cannot change status
    let p = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 1}, "metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.data["status"]["replicas"], 7);
    assert_eq!(p.annotations().get("a").map(String::as_str), Some("b"));
}

#[tokio::test]
async fn list_with_label_and_field_selectors() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    let cms = api(&client, "v1", "ConfigMap", "configmaps", Some("default"));
    for (name, app) in [("a1", Some("a")), ("b1", Some("b")), ("c1", Some("c")), ("n1", None)] {
        let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        if let Some(app) = app {
            v["metadata"]["labels"] = json!({"app": app});
        }
        cms.create(&PostParams::default(), &dyn_obj(v)).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<DynamicObject>| {
        let mut n: Vec<String> = l.items.into_iter().map(|o| o.metadata.name.unwrap()).collect();
        n.sort();
        n
    };
    assert_eq!(
        names(cms.list(&ListParams::default().labels("app=a")).await.unwrap()),
        ["a1"]
    );
    assert_eq!(
        names(cms.list(&ListParams::default().labels("app in (a,b)")).await.unwrap()),
        ["a1", "b1"]
    );
    assert_eq!(
        names(cms.list(&ListParams::default().labels("app")).await.unwrap()),
        ["a1", "b1", "c1"]
    );
    assert_eq!(
        names(cms.list(&ListParams::default().labels("app!=a")).await.unwrap()),
        ["b1", "c1", "n1"]
    );
    assert_eq!(
        names(cms.list(&ListParams::default().labels("!app")).await.unwrap()),
        ["n1"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app notin (a),app"))
                .await
                .unwrap()
        ),
        ["b1", "c1"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=c1"))
                .await
                .unwrap()
        ),
        ["c1"]
    );
    let all = api(&client, "v1", "ConfigMap", "configmaps", None);
    let l = all
        .list(&ListParams::default().fields("metadata.namespace=default"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 4);
    assert_eq!(l.metadata.resource_version, Some(sim.resource_version().to_string()));
}

#[tokio::test]
async fn watch_sees_added_modified_deleted() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    let cms = api(&client, "v1", "ConfigMap", "configmaps", Some("default"));
    let list = cms.list(&ListParams::default()).await.unwrap();
    let start = list.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &start)
        .await
        .unwrap()
        .boxed();
    cms.create(
        &PostParams::default(),
        &dyn_obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "data": {"a": "1"}})),
    )
    .await
    .unwrap();
    cms.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "2"}})))
        .await
        .unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(("ADDED", o.data["data"]["a"].clone())),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o.data["data"]["a"].clone())),
            WatchEvent::Deleted(o) => seen.push(("DELETED", o.data["data"]["a"].clone())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(
        seen,
        [("ADDED", json!("1")), ("MODIFIED", json!("2")), ("DELETED", json!("2"))]
    );
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_is_410_and_the_watcher_recovers() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    let cms = api(&client, "v1", "ConfigMap", "configmaps", Some("default"));
    let old = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    cms.create(
        &PostParams::default(),
        &dyn_obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})),
    )
    .await
    .unwrap();
    sim.compact();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &old)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(e.message.starts_with("too old resource version"), "{}", e.message);
        }
        other => panic!("expected 410, got {other:?}"),
    }
    // kube's watcher re-lists after a 410 and after dropped streams.
    sim.inject(Fault::GoneOnWatch { times: 2 });
    sim.inject(Fault::EndWatchAfter { events: 1 });
    let cfg = kube::runtime::watcher::Config::default();
    let mut w = kube::runtime::watcher(cms.clone(), cfg).boxed();
    let creator = {
        let cms = cms.clone();
        tokio::spawn(async move {
            for i in 0..5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("later-{i}")}});
                cms.create(&PostParams::default(), &dyn_obj(v)).await.unwrap();
            }
        })
    };
    let mut names = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while names.len() < 6 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
            Ok(Some(Ok(ev))) => match ev {
                kube::runtime::watcher::Event::Apply(o) | kube::runtime::watcher::Event::InitApply(o) => {
                    names.insert(o.metadata.name.unwrap());
                }
                _ => {}
            },
            Ok(Some(Err(_))) => {} // the 410: the watcher resets and re-lists
            _ => break,
        }
    }
    creator.await.unwrap();
    assert_eq!(names.len(), 6, "{names:?}");
    let watches = sim.requests().iter().filter(|r| r.query.contains("watch=true")).count();
    assert!(watches >= 3, "streams were ended and resumed: {watches}");
}

#[tokio::test]
async fn request_faults_429_and_500() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    sim.inject(Fault::TooManyRequests {
        path_contains: "/configmaps".into(),
        times: 1,
        retry_after_s: 2,
    });
    let (code, head, body) = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        "",
    );
    assert_eq!(code, 429);
    assert!(head.to_lowercase().contains("retry-after: 2"), "{head}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["reason"].as_str(), v["details"]["retryAfterSeconds"].as_u64()),
        (Some("TooManyRequests"), Some(2))
    );
    assert_eq!(
        raw(
            &sim,
            "GET",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            ""
        )
        .0,
        200
    );

    sim.inject(Fault::ServerError {
        method: Some("GET".into()),
        path_contains: "/secrets".into(),
        times: 2,
    });
    let codes: Vec<u16> = (0..3)
        .map(|_| {
            raw(
                &sim,
                "GET",
                "/api/v1/namespaces/default/secrets",
                "application/json",
                "",
            )
            .0
        })
        .collect();
    assert_eq!(codes, [500, 500, 200]);
    let recorded: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/secrets"))
        .map(|r| r.status)
        .collect();
    assert_eq!(recorded, [500, 500, 200]);
}

#[tokio::test]
async fn deployment_becomes_ready_and_rolls_on_spec_change() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    let deps = api(&client, "apps/v1", "Deployment", "deployments", Some("default"));
    apply(&deps, deployment("web", 2)).await;
    let ready = eventually("web ready", || {
        let d = sim.get("apps/v1", "Deployment", Some("default"), "web")?;
        readiness(&d, &ctx()).is_ready().then_some(d)
    })
    .await;
    assert_eq!(ready["status"]["observedGeneration"], 1);
    assert_eq!(ready["status"]["availableReplicas"], 2);
    let pods: Vec<Value> = sim.objects_of("v1", "Pod");
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(readiness(p, &ctx()), Readiness::Ready);
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(p["spec"]["nodeName"], "sim-node");
    }
    assert!(
        sim.ready_marks()
            .iter()
            .any(|(k, _)| k.kind == "Deployment" && k.name == "web")
    );

    let mut changed = deployment("web", 2);
    changed["spec"]["template"]["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/restartedAt": "now"});
    let d = apply(&deps, changed).await;
    assert_eq!(d.metadata.generation, Some(2));
    assert!(!readiness(&serde_json::to_value(&d).unwrap(), &ctx()).is_ready());
    eventually("web ready again", || {
        let d = sim.get("apps/v1", "Deployment", Some("default"), "web")?;
        (d["status"]["observedGeneration"] == 2 && readiness(&d, &ctx()).is_ready()).then_some(())
    })
    .await;
    let pods = sim.objects_of("v1", "Pod");
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter()
            .all(|p| p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == "now")
    );
}

#[tokio::test]
async fn workloads_jobs_services_become_ready() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    let tpl =
        json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default"},
        "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "x"}}, "template": tpl,
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}});
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": tpl}});
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": "default"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
    let bad = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 80}]}});
    sim.inject(Fault::JobFails { name: "bad".into() });
    apply(
        &api(&client, "apps/v1", "StatefulSet", "statefulsets", Some("default")),
        sts,
    )
    .await;
    apply(&api(&client, "apps/v1", "DaemonSet", "daemonsets", Some("default")), ds).await;
    let jobs = api(&client, "batch/v1", "Job", "jobs", Some("default"));
    apply(&jobs, job).await;
    apply(&jobs, bad).await;
    apply(&api(&client, "v1", "Service", "services", Some("default")), svc).await;
    for (av, kind, name) in [
        ("apps/v1", "StatefulSet", "db"),
        ("apps/v1", "DaemonSet", "agent"),
        ("batch/v1", "Job", "once"),
        ("v1", "Service", "lb"),
    ] {
        eventually(name, || {
            readiness(&sim.get(av, kind, Some("default"), name)?, &ctx())
                .is_ready()
                .then_some(())
        })
        .await;
    }
    let failed = eventually("bad fails", || {
        let j = sim.get("batch/v1", "Job", Some("default"), "bad")?;
        readiness(&j, &ctx()).is_failed().then_some(j)
    })
    .await;
    assert_eq!(failed["status"]["conditions"][1]["reason"], "BackoffLimitExceeded");
    let lb = sim.get("v1", "Service", Some("default"), "lb").unwrap();
    assert_eq!(lb["status"]["loadBalancer"]["ingress"][0]["ip"], "192.168.56.10");
    assert!(lb["spec"]["clusterIP"].as_str().unwrap().starts_with("10.43."));
    for i in 0..2 {
        let pvc = sim
            .get("v1", "PersistentVolumeClaim", Some("default"), &format!("data-db-{i}"))
            .unwrap();
        assert_eq!(pvc["status"]["phase"], "Bound");
    }
}

#[tokio::test]
async fn wait_for_first_consumer_claims_bind_only_when_a_pod_mounts_them() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    let pvcs = api(
        &client,
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        Some("default"),
    );
    apply(&pvcs, json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}})).await;
    // the controller ran (its WaitForFirstConsumer event appears) and the claim is still Pending
    eventually("wffc event", || {
        sim.objects_of("v1", "Event")
            .into_iter()
            .find(|e| e["reason"] == "WaitForFirstConsumer")
    })
    .await;
    let pvc = sim
        .get("v1", "PersistentVolumeClaim", Some("default"), "models")
        .unwrap();
    assert_eq!(pvc["status"]["phase"], "Pending");
    assert_eq!(pvc["spec"]["storageClassName"], "local-path");
    assert!(
        readiness(&pvc, &ctx()).is_ready(),
        "kstrap treats a WFFC Pending claim as ready"
    );
    let pods = api(&client, "v1", "Pod", "pods", Some("default"));
    apply(&pods, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "models"}}]}})).await;
    let bound = eventually("bound", || {
        let p = sim.get("v1", "PersistentVolumeClaim", Some("default"), "models")?;
        (p["status"]["phase"] == "Bound").then_some(p)
    })
    .await;
    let pv = bound["spec"]["volumeName"].as_str().unwrap();
    assert_eq!(
        sim.get("v1", "PersistentVolume", None, pv).unwrap()["spec"]["claimRef"]["name"],
        "models"
    );
}

fn crd(with_status: bool) -> Value {
    let mut version = json!({"name": "v1", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
    if with_status {
        version["subresources"] = json!({"status": {}});
    }
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "models.ai.example.com"},
        "spec": {"group": "ai.example.com", "scope": "Namespaced", "names": {"plural": "models", "singular": "model", "kind": "Model", "listKind": "ModelList"},
            "versions": [version]}})
}

#[tokio::test]
async fn crd_is_served_only_once_established() {
    let sim = SimulatedApiServer::start(SimConfig {
        ready_delay: Duration::from_millis(100),
        ..Default::default()
    });
    let client = sim.client().await;
    let crds = api(
        &client,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        None,
    );
    apply(&crds, crd(true)).await;
    let gvk = GroupVersionKind::gvk("ai.example.com", "v1", "Model");
    let d = Discovery::new(client.clone()).run().await.unwrap();
    assert!(d.resolve_gvk(&gvk).is_none(), "not served before Established");
    let established = eventually("established", || {
        let c = sim.get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "models.ai.example.com",
        )?;
        readiness(&c, &ctx()).is_ready().then_some(c)
    })
    .await;
    assert_eq!(established["status"]["acceptedNames"]["kind"], "Model");
    let d = Discovery::new(client.clone()).run().await.unwrap();
    let (res, _) = d.resolve_gvk(&gvk).unwrap();
    let models: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &res);
    let m = apply(&models, json!({"apiVersion": "ai.example.com/v1", "kind": "Model", "metadata": {"name": "llama", "namespace": "default"}, "spec": {"size": "8b"}})).await;
    assert_eq!(m.metadata.generation, Some(1));
    let s = models
        .patch_status(
            "llama",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(s.data["status"]["conditions"][0]["type"], "Ready");
    // the CRD going away takes its resources with it
    crds.delete("models.ai.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        sim.get("ai.example.com/v1", "Model", Some("default"), "llama")
            .is_none()
    );
    assert!(models.get("llama").await.is_err());
}

#[tokio::test]
async fn namespace_delete_cascades() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    let nss = api(&client, "v1", "Namespace", "namespaces", None);
    apply(
        &nss,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ai"}}),
    )
    .await;
    assert_eq!(
        sim.get("v1", "Namespace", None, "ai").unwrap()["status"]["phase"],
        "Active"
    );
    let cms = api(&client, "v1", "ConfigMap", "configmaps", Some("ai"));
    apply(
        &cms,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ai"}}),
    )
    .await;
    let deps = api(&client, "apps/v1", "Deployment", "deployments", Some("ai"));
    let mut d = deployment("web", 1);
    d["metadata"]["namespace"] = json!("ai");
    apply(&deps, d).await;
    eventually("pod", || (sim.objects_of("v1", "Pod").len() == 1).then_some(())).await;
    let deleted = nss.delete("ai", &DeleteParams::background()).await.unwrap();
    let ns = deleted
        .left()
        .expect("a namespace delete returns the Terminating namespace");
    assert_eq!(ns.data["status"]["phase"], "Terminating");
    eventually("ns gone", || {
        sim.get("v1", "Namespace", None, "ai").is_none().then_some(())
    })
    .await;
    assert!(sim.objects().iter().all(|o| o["metadata"]["namespace"] != "ai"));
}

#[tokio::test]
async fn pod_waiting_and_unschedulable_faults_show_like_the_kubelet_and_scheduler() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    sim.inject(Fault::PodWaiting {
        owner_name: "web".into(),
        reason: "ImagePullBackOff".into(),
        message: "Back-off pulling image \"nginx:nope\": ErrImagePull: not found".into(),
    });
    let deps = api(&client, "apps/v1", "Deployment", "deployments", Some("default"));
    apply(&deps, deployment("web", 1)).await;
    let pod = eventually("waiting pod", || {
        sim.objects_of("v1", "Pod")
            .into_iter()
            .find(|p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff")
    })
    .await;
    assert_eq!(pod["status"]["phase"], "Pending");
    assert!(!readiness(&pod, &ctx()).is_ready());
    let ev = eventually("warning event", || {
        sim.objects_of("v1", "Event")
            .into_iter()
            .find(|e| e["type"] == "Warning" && e["involvedObject"]["name"] == pod["metadata"]["name"])
    })
    .await;
    assert_eq!(ev["involvedObject"]["kind"], "Pod");
    let d = sim.get("apps/v1", "Deployment", Some("default"), "web").unwrap();
    assert!(!readiness(&d, &ctx()).is_ready());
    // events are found the way a diagnosis would look for them
    let events = api(&client, "v1", "Event", "events", Some("default"));
    let sel = format!(
        "involvedObject.name={},type=Warning",
        pod["metadata"]["name"].as_str().unwrap()
    );
    assert!(
        !events
            .list(&ListParams::default().fields(&sel))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // crash loop
    sim.inject(Fault::PodWaiting {
        owner_name: "crash".into(),
        reason: "CrashLoopBackOff".into(),
        message: "back-off 40s restarting failed container=app".into(),
    });
    apply(&deps, deployment("crash", 1)).await;
    let crashing = eventually("crashing pod", || {
        sim.objects_of("v1", "Pod")
            .into_iter()
            .find(|p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff")
    })
    .await;
    assert_eq!(
        crashing["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        1
    );
    assert!(readiness(&crashing, &ctx()).is_failed());

    // the scheduler: a GPU the node does not have
    let mut gpu = deployment("gpu", 1);
    gpu["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({"limits": {"nvidia.com/gpu": 1}});
    apply(&deps, gpu).await;
    let pending = eventually("unschedulable", || {
        sim.objects_of("v1", "Pod")
            .into_iter()
            .find(|p| p["status"]["conditions"][0]["reason"] == "Unschedulable")
    })
    .await;
    let msg = pending["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("0/1 nodes are available: 1 Insufficient nvidia.com/gpu."),
        "{msg}"
    );
    eventually("FailedScheduling", || {
        sim.objects_of("v1", "Event")
            .into_iter()
            .find(|e| e["reason"] == "FailedScheduling")
    })
    .await;
    sim.set_node_allocatable("nvidia.com/gpu", "1");
    eventually("gpu ready", || {
        readiness(&sim.get("apps/v1", "Deployment", Some("default"), "gpu")?, &ctx())
            .is_ready()
            .then_some(())
    })
    .await;
    let node = sim.get("v1", "Node", None, "sim-node").unwrap();
    assert_eq!(node["status"]["allocatable"]["nvidia.com/gpu"], "1");
}

#[test]
fn works_from_sync_code_with_a_kubeconfig_file() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&sim.url()) && text.contains("current-context: sim"));
    let node = sim.get("v1", "Node", None, "sim-node").unwrap();
    assert_eq!(node["status"]["conditions"][3]["type"], "Ready");
    assert_eq!(node["status"]["conditions"][3]["status"], "True");
    assert!(
        sim.get("storage.k8s.io/v1", "StorageClass", None, "local-path")
            .is_some()
    );
    let url = sim.url();
    drop(sim);
    assert!(
        std::net::TcpStream::connect(url.trim_start_matches("http://")).is_err(),
        "Drop stops the server"
    );
}

#[tokio::test]
async fn watch_bookmarks_timeouts_and_streaming_lists() {
    let sim = SimulatedApiServer::start(SimConfig {
        bookmark_interval: Duration::from_millis(30),
        ..Default::default()
    });
    let client = sim.client().await;
    let cms = api(&client, "v1", "ConfigMap", "configmaps", Some("default"));
    cms.create(
        &PostParams::default(),
        &dyn_obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pre"}})),
    )
    .await
    .unwrap();
    let now = sim.resource_version().to_string();
    let started = Instant::now();
    let events: Vec<_> = cms
        .watch(&WatchParams::default().timeout(1), &now)
        .await
        .unwrap()
        .collect()
        .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "timeoutSeconds ends the stream: {elapsed:?}"
    );
    let bookmarks = events
        .iter()
        .filter(|e| matches!(e, Ok(WatchEvent::Bookmark(_))))
        .count();
    assert!(bookmarks >= 3, "{events:?}");

    // kube's streaming-list watcher (sendInitialEvents) needs the initial-events-end bookmark
    let cfg = kube::runtime::watcher::Config::default().streaming_lists();
    let mut w = kube::runtime::watcher(cms.clone(), cfg).boxed();
    let mut saw_init_done = false;
    let mut names = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(2), w.next()).await {
        match ev.unwrap() {
            kube::runtime::watcher::Event::InitApply(o) => names.push(o.metadata.name.unwrap()),
            kube::runtime::watcher::Event::InitDone => {
                saw_init_done = true;
                break;
            }
            _ => {}
        }
    }
    assert!(saw_init_done);
    assert_eq!(names, ["pre"]);
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.query.contains("sendInitialEvents=true"))
    );
}

#[tokio::test]
async fn deletes_honour_finalizers_and_orphaning() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    let cms = api(&client, "v1", "ConfigMap", "configmaps", Some("default"));
    apply(&cms, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "namespace": "default", "finalizers": ["example.com/keep"]}})).await;
    let r = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let obj = r.left().expect("an object with finalizers is returned, not deleted");
    assert!(obj.metadata.deletion_timestamp.is_some());
    assert!(sim.get("v1", "ConfigMap", Some("default"), "held").is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        sim.get("v1", "ConfigMap", Some("default"), "held").is_none(),
        "dropping the last finalizer completes the delete"
    );
    let err = cms.get("held").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{err:?}"
    );

    let deps = api(&client, "apps/v1", "Deployment", "deployments", Some("default"));
    apply(&deps, deployment("keep", 1)).await;
    apply(&deps, deployment("drop", 1)).await;
    eventually("pods", || (sim.objects_of("v1", "Pod").len() == 2).then_some(())).await;
    let status = deps
        .delete("drop", &DeleteParams::background())
        .await
        .unwrap()
        .right()
        .expect("a Status");
    assert_eq!(status.status, Some(kube::core::response::StatusSummary::Success));
    assert_eq!(
        sim.objects_of("apps/v1", "ReplicaSet").len(),
        1,
        "dependents are garbage-collected"
    );
    deps.delete("keep", &DeleteParams::orphan()).await.unwrap();
    let rs = sim.objects_of("apps/v1", "ReplicaSet");
    assert_eq!(rs.len(), 1, "orphaned ReplicaSet stays");
    assert!(
        rs[0]["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
}

#[tokio::test]
async fn node_labels_slow_requests_helm_charts_and_explicit_unschedulable() {
    let sim = SimulatedApiServer::start(SimConfig::default());
    let client = sim.client().await;
    let deps = api(&client, "apps/v1", "Deployment", "deployments", Some("default"));
    let mut gpu = deployment("picky", 1);
    gpu["spec"]["template"]["spec"]["nodeSelector"] = json!({"nvidia.com/gpu.present": "true"});
    apply(&deps, gpu).await;
    let pending = eventually("selector mismatch", || {
        sim.objects_of("v1", "Pod")
            .into_iter()
            .find(|p| p["status"]["conditions"][0]["reason"] == "Unschedulable")
    })
    .await;
    assert!(
        pending["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("didn't match Pod's node affinity/selector")
    );
    sim.set_node_label("nvidia.com/gpu.present", "true");
    eventually("picky ready", || {
        readiness(&sim.get("apps/v1", "Deployment", Some("default"), "picky")?, &ctx())
            .is_ready()
            .then_some(())
    })
    .await;

    sim.inject(Fault::Unschedulable {
        owner_name: "never".into(),
        message: "0/1 nodes are available: 1 Insufficient memory.".into(),
    });
    apply(&deps, deployment("never", 1)).await;
    let ev = eventually("FailedScheduling", || {
        sim.objects_of("v1", "Event").into_iter().find(|e| {
            e["reason"] == "FailedScheduling" && e["involvedObject"]["name"].as_str().unwrap().starts_with("never-")
        })
    })
    .await;
    assert_eq!(ev["message"], "0/1 nodes are available: 1 Insufficient memory.");
    assert_eq!(ev["source"]["component"], "default-scheduler");

    let charts = api(
        &client,
        "helm.cattle.io/v1",
        "HelmChart",
        "helmcharts",
        Some("kube-system"),
    );
    apply(&charts, json!({"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart", "metadata": {"name": "gpu-operator", "namespace": "kube-system"},
        "spec": {"chart": "gpu-operator", "repo": "https://helm.ngc.nvidia.com/nvidia"}})).await;
    eventually("helm job", || {
        let j = sim.get("batch/v1", "Job", Some("kube-system"), "helm-install-gpu-operator")?;
        readiness(&j, &ctx()).is_ready().then_some(())
    })
    .await;
    assert_eq!(
        sim.get("helm.cattle.io/v1", "HelmChart", Some("kube-system"), "gpu-operator")
            .unwrap()["status"]["jobName"],
        "helm-install-gpu-operator"
    );

    sim.inject(Fault::Slow {
        path_contains: "/version".into(),
        delay: Duration::from_millis(200),
    });
    let t = Instant::now();
    client.apiserver_version().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
}
