//! The `cloudnative-pg` add-on: the CloudNativePG operator, which runs the PostgreSQL databases a
//! stack declares under `databases:` (`stack::databases`). `kstrap up` installs it only when the
//! stack it applies declares a database, before the stack, through the distribution's own Helm
//! controller like the monitoring add-on (no helm binary).
//!
//! Pinned: chart `cloudnative-pg` 0.29.0 from `https://cloudnative-pg.github.io/charts`
//! (cloudnative-pg/charts tag `cloudnative-pg-v0.29.0`, `charts/cloudnative-pg/Chart.yaml`:
//! appVersion 1.30.0), operator v1.30.0 (cloudnative-pg/cloudnative-pg tag v1.30.0). The chart
//! installs the CRDs itself (`templates/crds/crds.yaml`, `crds.create: true`) and the
//! webhooks (`failurePolicy: Fail`): a `Cluster` can only be admitted once the operator answers.
//! So kstrap waits, after the chart object, for the CRD `clusters.postgresql.cnpg.io` to be
//! Established and for the operator's Deployment to be available, before the stack's first
//! stage; the engine refreshes discovery when the stack is applied.
//!
//! Names: release `cnpg`, `fullnameOverride: cnpg-controller-manager` (the Deployment's name in
//! the operator's own release manifests), namespace `cnpg-system` (the chart's and the docs'
//! default), operator pods labelled `app.kubernetes.io/name: cloudnative-pg` (chart
//! `templates/_helpers.tpl`, `cloudnative-pg.selectorLabels`), which the databases' isolation
//! policies admit.

use super::{Addon, AddonKind};
use crate::distro::Distro;
use crate::distro::helm::{self, ChartSource};
use crate::plan::step::ObjectRef;
use crate::profile::Selection;
use crate::stack::{Stack, StackObject, Stage};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The add-on's stack name (and ApplySet).
pub const STACK: &str = "cloudnative-pg";
/// The operator's namespace.
pub const NAMESPACE: &str = "cnpg-system";
pub const REPO: &str = "https://cloudnative-pg.github.io/charts";
/// k0s's name for that repository (`chartName: cnpg/cloudnative-pg`).
pub const REPO_NAME: &str = "cnpg";
pub const CHART: &str = "cloudnative-pg";
/// Pinned chart version (`charts/cloudnative-pg/Chart.yaml` at tag cloudnative-pg-v0.29.0).
pub const CHART_VERSION: &str = "0.29.0";
/// The operator version that chart ships (its appVersion).
pub const OPERATOR_VERSION: &str = "1.30.0";
/// Release (and chart object) name.
pub const RELEASE: &str = "cnpg";
/// The operator's Deployment (`fullnameOverride`).
pub const DEPLOYMENT: &str = "cnpg-controller-manager";
/// `app.kubernetes.io/name` of the operator's pods (the chart's name).
pub const OPERATOR_POD_NAME: &str = "cloudnative-pg";
/// The CRD a database needs before any `Cluster` is applied.
pub const CLUSTER_CRD: &str = "clusters.postgresql.cnpg.io";
/// The operator's image (`values.yaml` image.repository, tag = appVersion).
pub const OPERATOR_IMAGE: &str = "ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0";

pub const HELM_TIMEOUT: &str = "10m";
pub const TIMEOUT_S: u64 = 600;

/// Values of the `cloudnative-pg` chart (only what kstrap sets; the rest keeps the chart's
/// defaults, checked against `tests/fixtures/upstream/cloudnative-pg/values-fields.txt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Values {
    pub fullname_override: String,
    pub crds: Crds,
    pub config: Config,
    pub resources: super::monitoring::Resources,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crds {
    pub create: bool,
}

/// `config.*`: one operator for every namespace (the stack's databases live in several).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub cluster_wide: bool,
}

/// The chart's values for this selection: a smaller operator on profiles for machines under
/// 16 GiB, like the monitoring add-on.
pub fn values(sel: &Selection) -> Values {
    let small = sel.profile.requires.memory_gib < super::monitoring::Sizing::SMALL_BELOW_GIB;
    let r = |rc: &str, rm: &str, lc: &str, lm: &str| super::monitoring::Resources {
        requests: super::monitoring::Quantities {
            cpu: rc.into(),
            memory: rm.into(),
        },
        limits: super::monitoring::Quantities {
            cpu: lc.into(),
            memory: lm.into(),
        },
    };
    Values {
        fullname_override: DEPLOYMENT.into(),
        crds: Crds { create: true },
        config: Config { cluster_wide: true },
        resources: if small {
            r("50m", "128Mi", "500m", "256Mi")
        } else {
            r("100m", "256Mi", "1", "512Mi")
        },
    }
}

fn namespace() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "kstrap"}},
    })
}

/// What the add-on applies: the operator's namespace and the chart object.
pub fn objects(distro: Distro, sel: &Selection) -> Vec<Value> {
    let chart = ChartSource {
        release: RELEASE.into(),
        repo: REPO.into(),
        repo_name: REPO_NAME.into(),
        chart: CHART.into(),
        version: CHART_VERSION.into(),
        namespace: NAMESPACE.into(),
        values: helm::values_yaml(&values(sel)),
        timeout: HELM_TIMEOUT.into(),
    };
    vec![namespace(), helm::chart_object(distro, &chart)]
}

/// What kstrap waits for after applying the chart object: the Cluster CRD Established, then the
/// operator (whose webhook admits every Cluster) available.
pub fn wait_for() -> Vec<ObjectRef> {
    vec![
        ObjectRef {
            api_version: "apiextensions.k8s.io/v1".into(),
            kind: "CustomResourceDefinition".into(),
            namespace: None,
            name: CLUSTER_CRD.into(),
        },
        ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some(NAMESPACE.into()),
            name: DEPLOYMENT.into(),
        },
    ]
}

/// The add-on for this selection; `databases` names the stack's databases, for the reason.
pub fn addon(sel: &Selection, stack: &str, databases: &[String]) -> Addon {
    let objects: Vec<StackObject> = objects(sel.distro, sel)
        .into_iter()
        .map(|value| StackObject {
            reference: crate::gpu::object_ref(&value),
            source: "(built in: cloudnative-pg add-on)".into(),
            document: 0,
            line: 0,
            value,
        })
        .collect();
    let controller = match sel.distro {
        Distro::K3s => "k3s's Helm controller",
        Distro::K0s => "k0s's Helm extension",
    };
    Addon {
        kind: AddonKind::CloudNativePg,
        title: format!(
            "Install the CloudNativePG operator {OPERATOR_VERSION} (chart {CHART_VERSION}) through {controller}"
        ),
        reason: format!(
            "stack {stack} declares PostgreSQL databases ({}); the operator runs each as a Cluster and generates its credentials; kstrap waits for the CRD {CLUSTER_CRD} and the operator before the stack",
            databases.join(", ")
        ),
        stack: Stack {
            name: STACK.into(),
            description: "the CloudNativePG operator through the distribution's Helm controller".into(),
            namespace: NAMESPACE.into(),
            stages: vec![Stage {
                dir: "00-cloudnative-pg".into(),
                name: STACK.into(),
                description: "the operator's namespace and the chart object".into(),
                timeout_s: TIMEOUT_S,
                objects,
            }],
            profiles: BTreeMap::new(),
            distros: Default::default(),
            verify: None,
            secrets: Vec::new(),
            images: Vec::new(),
            namespaces: Vec::new(),
            databases: Vec::new(),
        },
        wait_for: wait_for(),
        timeout_s: TIMEOUT_S,
    }
}
