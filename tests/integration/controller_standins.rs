//! Self-tests of the controller stand-ins (`tests/support/real/controllers/`): that they fail
//! the way their upstreams do, so a kstrap test that passes against them has met that behaviour.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::real::controllers::{dynamic_api, helm_chart_resource, json_of, k0s_chart_resource};
use crate::real::{Cleanup, RealCluster, apply_json, unique};

async fn until(what: &str, mut check: impl AsyncFnMut() -> Option<Value>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// k0s v1.35.3 reads the text of `chartName` before the first `/` as a repository name: an
/// archive URL names repository "https:", which k0s.yaml does not configure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k0s_reconciler_rejects_a_chart_url_as_k0s_does() {
    let Some(cluster) = RealCluster::get("k0s_reconciler_rejects_a_chart_url_as_k0s_does") else {
        return;
    };
    let _guard = cluster.shared();
    let client = cluster.client().await;
    let name = unique("urlchart");
    let mut cleanup = Cleanup::new(cluster);
    cleanup.object("helm.k0sproject.io/v1beta1", "Chart", "charts", "kube-system", &name);
    let url = "https://helm.ngc.nvidia.com/nvidia/charts/gpu-operator-v26.3.2.tgz";
    let chart = json!({"apiVersion": "helm.k0sproject.io/v1beta1", "kind": "Chart",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"chartName": url, "releaseName": name, "version": "v26.3.2", "namespace": name}});
    apply_json(&client, &chart, "test").await.unwrap();
    let api = dynamic_api(&client, &k0s_chart_resource(), Some("kube-system"));
    let status = until("status.error", async || {
        let c = json_of(&api.get(&name).await.ok()?);
        c["status"]["error"].as_str().map(|_| c["status"].clone())
    })
    .await;
    assert_eq!(
        status["error"],
        format!("can't lookup repository for chart \"{url}\": repository 'https:' not found in cluster configuration")
    );
    assert!(status["releaseName"].is_null(), "{status}");
}

/// helm-controller v0.16.17 shows a chart Helm cannot find only as its Job's pod failing
/// (restartPolicy OnFailure: CrashLoopBackOff); the HelmChart says JobCreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_controller_job_crash_loops_on_a_chart_helm_cannot_find() {
    let Some(cluster) = RealCluster::get("helm_controller_job_crash_loops_on_a_chart_helm_cannot_find") else {
        return;
    };
    let _guard = cluster.shared();
    let client = cluster.client().await;
    let name = unique("nochart");
    let mut cleanup = Cleanup::new(cluster);
    cleanup
        .object("helm.cattle.io/v1", "HelmChart", "helmcharts", "kube-system", &name)
        .cluster_object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            &format!("helm-kube-system-{name}"),
        );
    let chart = json!({"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"repo": "https://helm.ngc.nvidia.com/nvidia", "chart": "gpu-operator", "version": "v0.0.1",
            "targetNamespace": name, "createNamespace": true}});
    apply_json(&client, &chart, "test").await.unwrap();
    let api = dynamic_api(&client, &helm_chart_resource(), Some("kube-system"));
    let status = until("status.jobName", async || {
        let c = json_of(&api.get(&name).await.ok()?);
        c["status"]["jobName"].as_str().map(|_| c["status"].clone())
    })
    .await;
    assert_eq!(status["jobName"], format!("helm-install-{name}"));
    let created = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "JobCreated")
        .unwrap();
    assert_eq!(created["status"], "True", "{status}");
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client.clone(), "kube-system");
    let selector = format!("helmcharts.helm.cattle.io/chart={name}");
    let pod = until("the helm-install pod crash-looping", async || {
        let list = pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .ok()?;
        list.items
            .iter()
            .map(json_of)
            .find(|p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff")
    })
    .await;
    assert_eq!(pod["spec"]["restartPolicy"], "OnFailure");
    // Nothing of the chart was made.
    let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    assert!(ns.get_opt(&name).await.unwrap().is_none());
}
