//! `kstrap status`: the cluster, GPU sharing and the stacks at a glance.
//!
//! One read of the cluster of the kubeconfig (`crate::kube::status::gather`), judged by pure rules
//! (`evaluate`), shown by `ui::status` or as one JSON document. Exit 0 when everything is ready,
//! 1 when something is not (the output says what) or the API server cannot be reached, 2 for a
//! kubeconfig or context that cannot be used (named, never shown: it holds credentials).

use super::setup::cluster_client;
use super::{Exit, Failure};
use crate::cli::{GlobalArgs, KubeArgs, StatusArgs};
use crate::kube::status::{self, StatusError};
use crate::ui::Printer;

/// `-o json`: the status report, and the last verification of each stack that has one.
#[derive(serde::Serialize)]
struct StatusOutput<'a> {
    #[serde(flatten)]
    report: &'a status::StatusReport,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    verifications: &'a [crate::verify::report::Verification],
    /// Which pod uses which GPU of this machine (NVML), or why that is not known; absent when
    /// neither this machine nor the cluster has a GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu_use: Option<&'a crate::gpu::node_use::NodeGpuUse>,
}

pub fn run(_global: &GlobalArgs, args: &StatusArgs, printer: &Printer) -> Result<Exit, Failure> {
    let runtime = super::setup::runtime()?;
    let (report, verifications, gpu_use) = runtime.block_on(async {
        let client = cluster_client(&args.kube).await?;
        let report = status::gather(&client)
            .await
            .map(|g| status::evaluate(&g))
            .map_err(|e| gather_failure(&args.kube, e))?;
        // The last verification of each stack (its Job stays until the next one).
        let verifications = crate::verify::run::all_last(&client).await.map_err(Failure::failed)?;
        let gpu_use = super::status_gpus::gather(&client).await;
        // A machine without NVML in a cluster without GPUs: nothing to say about GPUs.
        let gpu_use = (gpu_use.known || !report.gpu.nodes.is_empty()).then_some(gpu_use);
        Ok::<_, Failure>((report, verifications, gpu_use))
    })?;
    let verified = verifications.iter().all(|v| v.ok);
    if printer.json_mode() {
        printer.json(&StatusOutput {
            report: &report,
            verifications: &verifications,
            gpu_use: gpu_use.as_ref(),
        });
    } else {
        let mut text = crate::ui::status::report(&report, printer.verbosity);
        if let Some(u) = &gpu_use {
            text.push_str(&crate::gpu::node_use::render(u));
        }
        for v in &verifications {
            text.push_str(&crate::verify::report::render_as(v, "Last verification"));
        }
        printer.stdout(&text);
    }
    Ok(if report.ok && verified { Exit::Ok } else { Exit::Failed })
}

/// Which kubeconfig was used, for messages (its name only).
fn kubeconfig_name(kube: &KubeArgs) -> String {
    match &kube.kubeconfig {
        Some(p) => p.display().to_string(),
        None => match std::env::var_os(crate::env::KUBECONFIG) {
            Some(v) if !crate::kube::kubeconfig_list::entries(&v).is_empty() => crate::kube::kubeconfig_list::shown(&v),
            _ => "~/.kube/config".to_string(),
        },
    }
}

fn gather_failure(kube: &KubeArgs, e: StatusError) -> Failure {
    let file = kubeconfig_name(kube);
    let context = kube
        .context
        .as_deref()
        .map(|c| format!(", context {c}"))
        .unwrap_or_default();
    match e {
        StatusError::Unreachable { message } => {
            let fix = if message.contains("certificate") {
                "the kubeconfig's certificate authority does not match the server: take the kubeconfig again from this cluster (`sudo kstrap up` merges it as context kstrap)".to_string()
            } else {
                "is the cluster running? try `sudo systemctl status k3s` (k3s) or `sudo systemctl status k0scontroller` (k0s), and check that the kubeconfig's server address is this cluster's".to_string()
            };
            Failure::failed(format!(
                "cannot reach the cluster's API server (kubeconfig {file}{context}): {message}\n  fix: {fix}"
            ))
        }
        StatusError::Api { .. } => Failure::failed(format!("{e} (kubeconfig {file}{context})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn failures_name_the_kubeconfig_and_say_what_to_try() {
        let kube = KubeArgs {
            kubeconfig: Some(PathBuf::from("/tmp/k.yaml")),
            context: Some("kstrap".into()),
        };
        let f = gather_failure(
            &kube,
            StatusError::Unreachable {
                message: "client error (Connect): Connection refused".into(),
            },
        );
        assert_eq!(f.exit, Exit::Failed);
        assert!(f.message.contains("/tmp/k.yaml, context kstrap"), "{}", f.message);
        assert!(f.message.contains("cannot reach"), "{}", f.message);
        assert!(f.message.contains("sudo systemctl status k3s"), "{}", f.message);
        assert!(f.message.contains("k0scontroller"), "{}", f.message);
        let f = gather_failure(
            &kube,
            StatusError::Unreachable {
                message: "invalid peer certificate: UnknownIssuer".into(),
            },
        );
        assert!(f.message.contains("certificate authority"), "{}", f.message);
        let f = gather_failure(
            &kube,
            StatusError::Api {
                what: "listing nodes".into(),
                message: "403 Forbidden: nodes is forbidden".into(),
            },
        );
        assert_eq!(f.exit, Exit::Failed);
        assert!(f.message.starts_with("listing nodes: 403 Forbidden"), "{}", f.message);
    }
}
