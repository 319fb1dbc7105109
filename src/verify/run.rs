//! Runs a verification on the cluster and reads its outcome, watch-based: the previous
//! verification Jobs of the stack are deleted, a new one is created, its status is watched until
//! it is Complete or Failed (or the deadline passes), and the checker's report is read from its
//! pod's termination message (`state.terminated.message`, which the kubelet fills from the file
//! the checker writes; pkg/kubelet/kuberuntime/kuberuntime_container.go). What the Job could not
//! tell — an image that cannot be pulled, a pod that never ran — becomes a failed link of its own.

use super::job::{STACK_LABEL, job};
use super::report::{Link, LinkStatus, Verification, parse};
use super::{LABEL, NAME, Resolved};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use std::time::Duration;

/// Extra time kstrap waits past the Job's own deadline for the Job controller to say so.
const GRACE: Duration = Duration::from_secs(30);

fn selector(stack: &str) -> String {
    format!("{LABEL}={NAME},{STACK_LABEL}={stack}")
}

fn api_error(what: &str, e: kube::Error) -> String {
    format!("{what}: {}", crate::kube::ops::describe(&e))
}

/// Runs the checks of `stack` (resolved for its profile) in `namespace`.
pub async fn run(client: &kube::Client, stack: &str, namespace: &str, r: &Resolved) -> Result<Verification, String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().labels(&selector(stack));
    let old = jobs
        .list_metadata(&lp)
        .await
        .map_err(|e| api_error("listing earlier verification Jobs", e))?;
    if !old.items.is_empty() {
        jobs.delete_collection(&DeleteParams::background(), &lp)
            .await
            .map_err(|e| api_error("deleting the earlier verification Job", e))?;
    }
    let body: Job = serde_json::from_value(job(stack, namespace, r)).map_err(|e| e.to_string())?;
    let created = jobs
        .create(&PostParams::default(), &body)
        .await
        .map_err(|e| api_error(&format!("creating the verification Job in namespace {namespace}"), e))?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let finished = |j: Option<&Job>| j.is_some_and(|j| finish(j).is_some());
    let wait = Duration::from_secs(r.timeout_s) + GRACE;
    let done = tokio::time::timeout(
        wait,
        kube::runtime::wait::await_condition(jobs.clone(), &name, finished),
    )
    .await;
    let job = match done {
        Ok(Ok(Some(job))) => job,
        Ok(Ok(None)) => {
            return Err(format!(
                "the verification Job {namespace}/{name} was deleted while it ran"
            ));
        }
        Ok(Err(e)) => return Err(format!("watching the verification Job {namespace}/{name}: {e}")),
        Err(_) => {
            let pod = pod_state(client, namespace, &name).await;
            let link = checker_link(format!("the Job did not finish within {} s", wait.as_secs()), pod, true);
            return Ok(Verification::new(stack, namespace, &name, None, vec![link]));
        }
    };
    outcome(client, stack, namespace, &job).await
}

/// (Complete?, when, reason, message) once the Job has finished.
fn finish(job: &Job) -> Option<(bool, Option<String>, String, String)> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            (
                c.type_ == "Complete",
                c.last_transition_time.as_ref().map(|t| t.0.to_string()),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// The verification a finished Job tells.
pub async fn outcome(client: &kube::Client, stack: &str, namespace: &str, job: &Job) -> Result<Verification, String> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let Some((complete, at, reason, message)) = finish(job) else {
        return Err(format!("the verification Job {namespace}/{name} has not finished"));
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
        .await
        .map_err(|e| api_error("listing the verification Job's pod", e))?;
    let terminated = list.items.iter().find_map(|p| {
        p.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|c| c.name == "check")?
            .state
            .as_ref()?
            .terminated
            .clone()
    });
    let links = match terminated.as_ref().and_then(|t| t.message.as_deref()).map(parse) {
        Some(Ok(links)) => {
            // A Job that failed although no link did: the checker's exit status says more.
            if !complete && !links.iter().any(|l| l.status == LinkStatus::Failed) {
                let mut links = links;
                links.push(checker_link(
                    format!("the Job failed ({reason}: {message})"),
                    terminated.as_ref().map(|t| format!("exit code {}", t.exit_code)),
                    reason == "DeadlineExceeded",
                ));
                links
            } else {
                links
            }
        }
        Some(Err(why)) => vec![checker_link(why, None, false)],
        None => {
            let state = if let Some(t) = &terminated {
                Some(format!("exit code {} with no report", t.exit_code))
            } else if list.items.is_empty() {
                // The Job controller deletes a pod that outlived the deadline: its events stay.
                last_warning(client, namespace, &name)
                    .await
                    .or_else(|| pod_state_of(&list.items))
            } else {
                pod_state_of(&list.items)
            };
            let got = if complete {
                "the Job completed without a report".to_string()
            } else {
                format!("the Job failed ({reason}: {message})")
            };
            vec![checker_link(got, state, reason == "DeadlineExceeded")]
        }
    };
    Ok(Verification::new(stack, namespace, &name, at, links))
}

fn checker_link(got: String, pod: Option<String>, timeout: bool) -> Link {
    Link {
        name: "checker".into(),
        service: NAME.into(),
        status: LinkStatus::Failed,
        ms: None,
        sent: String::new(),
        got,
        detail: pod.map(|p| format!("its pod: {p}")),
        metrics: None,
        timeout,
        next: None,
    }
}

async fn pod_state(client: &kube::Client, namespace: &str, job: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .ok()?;
    pod_state_of(&list.items)
}

/// The newest Warning event of the Job's pods (a failed image pull, a sandbox that could not be
/// made), for a pod that is gone.
async fn last_warning(client: &kube::Client, namespace: &str, job: &str) -> Option<String> {
    use k8s_openapi::api::core::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = events
        .list(&ListParams::default().fields("type=Warning,involvedObject.kind=Pod"))
        .await
        .ok()?;
    let prefix = format!("{job}-");
    list.items
        .into_iter()
        .filter(|e| {
            e.involved_object
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
        })
        .map(|e| {
            format!(
                "{} (event {}; the Job deleted the pod at its deadline)",
                e.message.unwrap_or_default(),
                e.reason.unwrap_or_default()
            )
        })
}

/// What a pod that gave no report is doing: its container's waiting reason and message, or its
/// phase and the scheduler's word.
fn pod_state_of(pods: &[Pod]) -> Option<String> {
    let Some(pod) = pods.first() else {
        return Some("no pod was created (see `kubectl describe job`)".into());
    };
    let status = pod.status.as_ref()?;
    if let Some(w) = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.iter().find_map(|c| c.state.as_ref()?.waiting.clone()))
    {
        return Some(format!(
            "{}{}",
            w.reason.unwrap_or_default(),
            w.message.map(|m| format!(": {m}")).unwrap_or_default()
        ));
    }
    let sched = status
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"))
        .and_then(|c| c.message.clone());
    Some(match sched {
        Some(m) => format!("not scheduled: {m}"),
        None => status.phase.clone().unwrap_or_else(|| "Pending".into()),
    })
}

/// The newest finished verification of `stack` in `namespace`, if any (for `kstrap status`).
pub async fn last(client: &kube::Client, stack: &str, namespace: &str) -> Result<Option<Verification>, String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let list = jobs
        .list(&ListParams::default().labels(&selector(stack)))
        .await
        .map_err(|e| api_error("listing verification Jobs", e))?;
    let newest = list
        .items
        .into_iter()
        .filter(|j| finish(j).is_some())
        .max_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
    match newest {
        Some(job) => outcome(client, stack, namespace, &job).await.map(Some),
        None => Ok(None),
    }
}

/// The newest finished verification of every stack on the cluster (for `kstrap status`), by
/// stack name.
pub async fn all_last(client: &kube::Client) -> Result<Vec<Verification>, String> {
    let jobs: Api<Job> = Api::all(client.clone());
    let list = jobs
        .list(&ListParams::default().labels(&format!("{LABEL}={NAME},{STACK_LABEL}")))
        .await
        .map_err(|e| api_error("listing verification Jobs", e))?;
    let mut newest: std::collections::BTreeMap<String, Job> = std::collections::BTreeMap::new();
    for job in list.items.into_iter().filter(|j| finish(j).is_some()) {
        let Some(stack) = job.metadata.labels.as_ref().and_then(|l| l.get(STACK_LABEL)).cloned() else {
            continue;
        };
        let created = |j: &Job| j.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if newest.get(&stack).is_none_or(|old| created(old) < created(&job)) {
            newest.insert(stack, job);
        }
    }
    let mut out = Vec::new();
    for (stack, job) in newest {
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        out.push(outcome(client, &stack, &namespace, &job).await?);
    }
    Ok(out)
}
