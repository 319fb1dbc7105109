//! The end of `kstrap up`: what is running now and where to open it — profile, distribution,
//! GPU sharing, each stage with how long it took, each workload of the stack, and the URLs.
//!
//! Built from what `up` already holds (the plan, the executor's step reports, the engine's
//! stack report, the sized stack and the node's address), so it costs no extra wait. `up`
//! prints it only on success, when every workload has passed its readiness wait; the JSON
//! report carries the same data under `summary`.

use crate::exec::{Outcome, StepReport};
use crate::kube::ApplyReport;
use crate::plan::Plan;
use crate::plan::step::{Action, Phase};
use crate::stack::Stack;
use crate::stack::endpoints::{Via, endpoints};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub profile: String,
    pub distro: String,
    pub distro_version: String,
    pub stack: String,
    /// Steps that changed something, out of all steps.
    pub changed_steps: usize,
    pub total_steps: usize,
    pub gpu: Option<GpuSharing>,
    /// The cluster-side phases in order, with how long each took.
    pub stages: Vec<StageTime>,
    /// The stack's workloads; all passed their readiness wait.
    pub workloads: Vec<Workload>,
    pub open: Vec<OpenUrl>,
    /// `kubectl --context` to use, when the user's kubeconfig got one.
    pub kubeconfig_context: Option<String>,
    /// The admin kubeconfig (root only), when the user's was left alone.
    pub admin_kubeconfig: Option<String>,
    /// The stack's verification at the end of the run (absent when it declares no checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<crate::verify::report::Verification>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuSharing {
    pub gpus: usize,
    pub replicas: u32,
    pub allocatable: u32,
    /// Shares the stack's workloads request.
    pub requested_by_stack: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTime {
    /// `gpu-operator`, or the stack's stage name.
    pub name: String,
    pub objects: usize,
    /// Created or configured objects (0 on a re-run that found everything in place).
    pub changed: usize,
    /// `changed`, `unchanged`, `checked` (a wait that applies nothing) or `skipped`.
    pub outcome: &'static str,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub stage: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenUrl {
    pub name: String,
    pub via: Via,
    /// The URL from other machines (the node's address), or on this machine when unknown.
    pub url: String,
    /// The same on this machine (`localhost`), when it differs.
    pub local_url: Option<String>,
    /// What the user must do first (a host name to resolve), if anything.
    pub note: Option<String>,
}

/// Everything `summarize` is made from.
pub struct Inputs<'a> {
    pub plan: &'a Plan,
    pub steps: &'a [StepReport],
    pub stack: &'a Stack,
    /// The engine's report of the stack (absent with --cluster-only).
    pub applied: Option<&'a ApplyReport>,
    /// The node's InternalIP, when the cluster told it.
    pub node_address: Option<&'a str>,
    pub kubeconfig_context: Option<&'a str>,
}

pub fn summarize(i: &Inputs) -> Summary {
    let plan = i.plan;
    let mut stages: Vec<StageTime> = Vec::new();
    // GPU and add-on phases: their steps' own timings (apply plus wait).
    for (step, report) in plan.steps.iter().zip(i.steps) {
        if step.phase == Phase::Stack
            || !matches!(
                step.action,
                Action::Apply { .. } | Action::WaitGpu { .. } | Action::ApplyAddon { .. }
            )
        {
            continue;
        }
        let objects = match &step.action {
            Action::Apply { objects } | Action::ApplyAddon { objects, .. } => objects.len(),
            _ => 0,
        };
        let outcome = match report.outcome {
            Outcome::Changed => "changed",
            Outcome::Unchanged => "unchanged",
            Outcome::Checked => "checked",
            Outcome::Skipped(_) => "skipped",
        };
        stages.push(StageTime {
            name: step.id.clone(),
            objects,
            // The step reports whether anything changed, not how many objects did.
            changed: 0,
            outcome,
            elapsed_ms: report.elapsed_ms,
        });
    }
    // The stack's stages: the engine's timings (the stage steps after the first only report).
    if let Some(applied) = i.applied {
        for s in &applied.stages {
            stages.push(StageTime {
                name: s.name.clone(),
                objects: s.objects.len(),
                changed: s.created + s.configured,
                outcome: if s.created + s.configured > 0 {
                    "changed"
                } else {
                    "unchanged"
                },
                elapsed_ms: s.elapsed_ms,
            });
        }
    }

    let applied_stages: Vec<&str> = i
        .applied
        .map(|a| a.stages.iter().map(|s| s.name.as_str()).collect())
        .unwrap_or_default();
    let mut workloads = Vec::new();
    let mut requested = 0u32;
    for stage in i
        .stack
        .stages
        .iter()
        .filter(|s| applied_stages.contains(&s.name.as_str()))
    {
        for o in &stage.objects {
            let kind = o.reference.kind.as_str();
            if matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet" | "Job") {
                workloads.push(Workload {
                    kind: kind.to_string(),
                    name: o.reference.name.clone(),
                    stage: stage.name.clone(),
                });
                requested += gpu_requests(&o.value);
            }
        }
    }

    let open = if i.applied.is_some() {
        endpoints(i.stack)
            .into_iter()
            .map(|e| {
                let local = e.url("localhost");
                let remote = i.node_address.map(|a| e.url(a));
                let note = e.host.as_ref().map(|h| {
                    format!(
                        "{h} must resolve to this machine (e.g. a line `{} {h}` in /etc/hosts)",
                        i.node_address.unwrap_or("127.0.0.1")
                    )
                });
                match remote {
                    Some(r) if r != local => OpenUrl {
                        name: e.name.clone(),
                        via: e.via,
                        url: r,
                        local_url: Some(local),
                        note,
                    },
                    _ => OpenUrl {
                        name: e.name.clone(),
                        via: e.via,
                        url: local,
                        local_url: None,
                        note,
                    },
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut open = open;
    open.extend(grafana(plan, i.steps, i.node_address, i.kubeconfig_context));

    Summary {
        profile: plan.profile.clone(),
        distro: plan.distro.to_string(),
        distro_version: plan.distro_version.clone(),
        stack: i.stack.name.clone(),
        changed_steps: i.steps.iter().filter(|s| s.outcome == Outcome::Changed).count(),
        total_steps: i.steps.len(),
        gpu: plan.gpu.as_ref().map(|g| GpuSharing {
            gpus: g.gpus.len(),
            replicas: g.replicas,
            allocatable: g.allocatable,
            requested_by_stack: requested,
        }),
        stages,
        workloads,
        open,
        kubeconfig_context: i.kubeconfig_context.map(str::to_string),
        admin_kubeconfig: i
            .kubeconfig_context
            .is_none()
            .then(|| plan.paths().kubeconfig.to_string()),
        verification: None,
    }
}

/// Grafana's NodePort and how to read its admin password, when the monitoring add-on ran.
fn grafana(plan: &Plan, steps: &[StepReport], node: Option<&str>, context: Option<&str>) -> Option<OpenUrl> {
    use crate::addons::monitoring as m;
    let id = format!("addon-{}", m::STACK);
    let ran = plan
        .steps
        .iter()
        .zip(steps)
        .any(|(step, report)| step.id == id && !matches!(report.outcome, Outcome::Skipped(_)));
    if !ran {
        return None;
    }
    let url = |host: &str| format!("http://{host}:{}/", m::GRAFANA_NODE_PORT);
    let context = context.map(|c| format!("--context {c} ")).unwrap_or_default();
    Some(OpenUrl {
        name: "grafana".into(),
        via: Via::NodePort,
        url: url(node.unwrap_or("localhost")),
        local_url: node.map(|_| url("localhost")),
        note: Some(format!(
            "user {}; password: kubectl {context}-n {} get secret {} -o jsonpath='{{.data.{}}}' | base64 -d",
            m::ADMIN_USER,
            m::NAMESPACE,
            m::ADMIN_SECRET,
            m::ADMIN_PASSWORD_KEY
        )),
    })
}

/// The first node's InternalIP (single-node clusters: the machine's address on its network),
/// or None when it cannot be read; the summary then shows `localhost` URLs only.
pub async fn node_address(client: &::kube::Client) -> Option<String> {
    use k8s_openapi::api::core::v1::Node;
    let nodes: ::kube::Api<Node> = ::kube::Api::all(client.clone());
    let list = nodes.list(&::kube::api::ListParams::default()).await.ok()?;
    list.items.iter().find_map(|n| {
        n.status
            .as_ref()?
            .addresses
            .as_ref()?
            .iter()
            .find(|a| a.type_ == "InternalIP")
            .map(|a| a.address.clone())
    })
}

/// `nvidia.com/gpu` a workload's pod template asks for (counted as the scheduler counts a
/// pod's), times its replicas.
fn gpu_requests(workload: &serde_json::Value) -> u32 {
    let Some(template) = workload.pointer("/spec/template") else {
        return 0;
    };
    let replicas = workload
        .pointer("/spec/replicas")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1) as u32;
    crate::kube::status::pod_gpu_count(template) * replicas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::engine::{AppliedObject, Outcome as ObjOutcome, StageReport};
    use serde_json::json;

    fn gpu_stack() -> (crate::app::Planned, ApplyReport) {
        planned_with(Vec::new())
    }

    fn planned_with(with: Vec<crate::addons::Optional>) -> (crate::app::Planned, ApplyReport) {
        let global = crate::cli::GlobalArgs {
            output: crate::cli::OutputFormat::Human,
            verbose: 0,
            quiet: false,
            facts: Some(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/facts/rtx5090-96gb.json"),
            ),
            profiles_dir: None,
            stack_dir: None,
        };
        let args = crate::cli::PlanArgs {
            profile: None,
            distro: None,
            distro_version: None,
            stack: None,
            force: false,
            model: None,
            gpu_driver: None,
            release_mirror: None,
            airgap: None,
            images: Vec::new(),
            cluster_timeout: None,
            with,
            open_firewall: false,
            data_dir: None,
        };
        let planned = match crate::app::build(&global, &args) {
            Ok(p) => p,
            Err(f) => panic!("plan: {}", f.message),
        };
        let stages = planned
            .stack
            .stages
            .iter()
            .enumerate()
            .map(|(n, s)| StageReport {
                name: s.name.clone(),
                created: s.objects.len(),
                configured: 0,
                unchanged: 0,
                objects: s
                    .objects
                    .iter()
                    .map(|o| AppliedObject {
                        object: o.reference.name.clone(),
                        outcome: ObjOutcome::Created,
                    })
                    .collect(),
                elapsed_ms: 1000 * (n as u64 + 1),
            })
            .collect();
        let report = ApplyReport {
            stack: planned.stack.name.clone(),
            applyset: "applyset-x".into(),
            dry_run: false,
            stages,
            pruned: Vec::new(),
            elapsed_ms: 10_000,
        };
        (planned, report)
    }

    fn of(
        planned: &crate::app::Planned,
        steps: &[StepReport],
        applied: Option<&ApplyReport>,
        node_address: Option<&str>,
        kubeconfig_context: Option<&str>,
    ) -> Summary {
        summarize(&Inputs {
            plan: &planned.plan,
            steps,
            stack: &planned.stack,
            applied,
            node_address,
            kubeconfig_context,
        })
    }

    fn step_reports(plan: &Plan) -> Vec<StepReport> {
        plan.steps
            .iter()
            .map(|s| StepReport {
                id: s.id.clone(),
                title: s.title.clone(),
                outcome: Outcome::Changed,
                elapsed_ms: 500,
            })
            .collect()
    }

    #[test]
    fn gpu_profile_summary_counts_the_stacks_gpu_shares_and_lists_every_workload_and_url() {
        let (planned, report) = gpu_stack();
        let steps = step_reports(&planned.plan);
        let s = of(&planned, &steps, Some(&report), Some("192.168.1.20"), Some("kstrap"));
        let gpu = s.gpu.as_ref().expect("GPU profile");
        assert_eq!((gpu.gpus, gpu.replicas, gpu.allocatable), (1, 4, 4));
        // Ollama, Whisper and Kokoro each hold one share on rtx-5090 (stack.yaml).
        assert_eq!(gpu.requested_by_stack, 3);
        let workloads: Vec<&str> = s.workloads.iter().map(|w| w.name.as_str()).collect();
        for name in ["ollama", "whisper", "kokoro", "livekit", "open-webui"] {
            assert!(workloads.contains(&name), "{name} missing from {workloads:?}");
        }
        // GPU phase first, then every stack stage in order, with the engine's timings.
        assert_eq!(s.stages[0].name, "install-gpu-operator", "{:?}", s.stages);
        let names: Vec<&str> = s.stages.iter().map(|t| t.name.as_str()).collect();
        let stack_stages: Vec<&str> = planned.stack.stages.iter().map(|t| t.name.as_str()).collect();
        assert!(names.ends_with(&stack_stages), "{names:?}");
        let web = s
            .open
            .iter()
            .find(|o| o.url.contains(":30080"))
            .expect("the front end's NodePort");
        assert_eq!(web.url, "http://192.168.1.20:30080/");
        assert_eq!(web.local_url.as_deref(), Some("http://localhost:30080/"));
        assert_eq!(s.admin_kubeconfig, None);
        insta::assert_snapshot!(crate::ui::summary::render(&s));
    }

    #[test]
    fn cluster_only_has_no_workloads_or_urls_and_without_context_names_the_admin_kubeconfig() {
        let (planned, _) = gpu_stack();
        let steps = step_reports(&planned.plan);
        let s = of(&planned, &steps, None, None, None);
        assert!(s.workloads.is_empty() && s.open.is_empty());
        assert_eq!(s.admin_kubeconfig.as_deref(), Some("/etc/rancher/k3s/k3s.yaml"));
        let text = crate::ui::summary::render(&s);
        assert!(text.contains("/etc/rancher/k3s/k3s.yaml"), "{text}");
    }

    #[test]
    fn with_monitoring_the_summary_has_its_stage_and_grafanas_url_and_how_to_read_the_password() {
        let (planned, report) = planned_with(vec![crate::addons::Optional::Monitoring]);
        let steps = step_reports(&planned.plan);
        let s = of(&planned, &steps, Some(&report), Some("10.1.2.3"), Some("kstrap"));
        assert!(s.stages.iter().any(|t| t.name == "addon-monitoring"), "{:?}", s.stages);
        let grafana = s.open.iter().find(|o| o.name == "grafana").expect("grafana");
        assert_eq!(grafana.url, "http://10.1.2.3:30030/");
        let note = grafana.note.as_deref().unwrap_or_default();
        assert!(
            note.contains("--context kstrap -n monitoring get secret grafana-admin"),
            "{note}"
        );

        // A skipped add-on step (another default StorageClass, say) promises no URL.
        let mut skipped = steps.clone();
        for (step, r) in planned.plan.steps.iter().zip(skipped.iter_mut()) {
            if step.id == "addon-monitoring" {
                r.outcome = Outcome::Skipped("test".into());
            }
        }
        let s = of(&planned, &skipped, Some(&report), None, None);
        assert!(s.open.iter().all(|o| o.name != "grafana"), "{:?}", s.open);
    }

    #[test]
    fn gpu_requests_counts_the_template_like_a_pod_times_replicas() {
        let w = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"resources": {"limits": {"nvidia.com/gpu": 1}}},
            {"resources": {"requests": {"nvidia.com/gpu": "1"}}},
            {"resources": {}}]}}}});
        assert_eq!(gpu_requests(&w), 4);
        assert_eq!(gpu_requests(&json!({"kind": "Service"})), 0);
    }
}
