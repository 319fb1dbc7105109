//! What a Compose service asks for that a locked-down Kubernetes pod cannot give (a refusal: the
//! import stops and says why) or that kstrap leaves out (a warning saying what was done). Every
//! service field of the Compose specification (compose-spec `05-services.md`) is either carried
//! over by the importer, or listed here; a field in neither list is reported as not carried.

use super::service::Ctx;
use super::{ImportError, Level, Note};
use serde_json::{Map, Value};

/// Fields the importer carries over (service.rs, storage.rs, health.rs).
const CARRIED: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "healthcheck",
    "deploy",
    "cpus",
    "mem_limit",
    "mem_reservation",
    "gpus",
    "depends_on",
    "links",
    "user",
    "working_dir",
    "stop_grace_period",
    "read_only",
    "tty",
    "pull_policy",
    "restart",
    "cap_drop",
    "profiles",
];

/// Fields left out, and what that means.
const LEFT_OUT: &[(&str, &str)] = &[
    (
        "container_name",
        "Kubernetes names the pods; the Service keeps the service's name",
    ),
    (
        "networks",
        "pods share the namespace's network; network policies allow the paths depends_on, links and variables imply",
    ),
    (
        "extra_hosts",
        "not carried: host.docker.internal has no Kubernetes equivalent; point the variable at a Service",
    ),
    ("hostname", "the pod's hostname is its name"),
    ("domainname", "not carried"),
    ("labels", "container labels are not carried"),
    ("logging", "the cluster's runtime keeps the logs (kubectl logs)"),
    ("stdin_open", "not carried"),
    ("init", "not carried: the image's entrypoint is PID 1"),
    ("shm_size", "not carried: /dev/shm keeps the runtime's size"),
    ("ulimits", "not carried: the node's limits apply"),
    ("dns", "the cluster DNS is used"),
    ("dns_search", "the cluster DNS is used"),
    ("stop_signal", "not carried: Kubernetes sends SIGTERM"),
    ("platform", "the node's platform is used"),
    ("mem_swappiness", "not carried"),
    ("oom_score_adj", "not carried"),
    (
        "security_opt",
        "not carried: pods run under the RuntimeDefault seccomp profile",
    ),
    (
        "cap_add",
        "not added: pods run without extra capabilities (add one to the manifest yourself if the service needs it)",
    ),
    (
        "secrets",
        "compose secrets are not carried: declare the value as a variable instead",
    ),
    ("configs", "compose configs are not carried: mount a ConfigMap yourself"),
    ("sysctls", "not carried"),
    ("annotations", "not carried"),
    ("scale", "one replica"),
    ("develop", "not carried (docker compose watch)"),
    ("attach", "not carried"),
];

/// Fields that cannot be given to a locked-down pod, with the reason.
const REFUSED: &[(&str, &str)] = &[
    ("privileged", "a privileged container is root on the node"),
    (
        "extends",
        "extends is not resolved: flatten the file first (`docker compose config > flat.yaml`) and import that",
    ),
    (
        "devices",
        "host devices other than NVIDIA GPUs (deploy.resources.reservations.devices) cannot be given to a pod",
    ),
    ("pid", "sharing the host's or another container's PID namespace"),
    ("ipc", "sharing the host's or another container's IPC namespace"),
    ("userns_mode", "the host's user namespace"),
    ("cgroup_parent", "a cgroup of the host"),
    (
        "volumes_from",
        "another container's volumes: mount the same named volume instead",
    ),
    ("runtime", "another container runtime"),
    ("isolation", "another isolation technology"),
];

pub fn check(ctx: &mut Ctx, service: &str, m: &Map<String, Value>, base: &str) -> Result<(), ImportError> {
    for (k, v) in m {
        let p = format!("{base}/{k}");
        if k.starts_with("x-") || CARRIED.contains(&k.as_str()) {
            continue;
        }
        if k == "network_mode" {
            let mode = v.as_str().unwrap_or_default();
            if mode != "bridge" && mode != "default" {
                note(
                    ctx,
                    Level::Refusal,
                    service,
                    k,
                    format!(
                        "network_mode: {mode} (the host's or another container's network) cannot be given to a pod"
                    ),
                    &p,
                );
            }
            continue;
        }
        if k == "privileged" && v == &Value::Bool(false) {
            continue;
        }
        if k == "runtime" && v.as_str() == Some("nvidia") {
            note(
                ctx,
                Level::Warning,
                service,
                k,
                "runtime: nvidia → runtimeClassName nvidia with one GPU share on GPU profiles (gpu: 1)".into(),
                &p,
            );
            continue;
        }
        if let Some((_, why)) = REFUSED.iter().find(|(f, _)| f == k) {
            note(ctx, Level::Refusal, service, k, (*why).into(), &p);
        } else if let Some((_, what)) = LEFT_OUT.iter().find(|(f, _)| f == k) {
            let what = if k == "cap_add" {
                format!("{}: {}", list(v), what)
            } else {
                (*what).to_string()
            };
            note(ctx, Level::Warning, service, k, what, &p);
        } else {
            note(ctx, Level::Warning, service, k, "not carried over".into(), &p);
        }
    }
    let deploy = m.get("deploy").and_then(Value::as_object);
    for (k, _) in deploy.into_iter().flatten() {
        if !["resources", "restart_policy", "replicas"].contains(&k.as_str()) {
            note(
                ctx,
                Level::Warning,
                service,
                &format!("deploy.{k}"),
                "not carried over".into(),
                &format!("{base}/deploy/{k}"),
            );
        }
    }
    Ok(())
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn note(ctx: &mut Ctx, level: Level, service: &str, feature: &str, what: String, pointer: &str) {
    ctx.notes.push(Note {
        level,
        service: Some(service.to_string()),
        feature: feature.to_string(),
        what,
        at: ctx.project.at(pointer),
    });
}

/// Top-level sections: `include` is refused, the rest carried or ignored.
pub fn top(project: &super::compose::Project, notes: &mut Vec<Note>) {
    for (k, _) in &project.top {
        let (level, what) = match k.as_str() {
            "services" | "volumes" | "name" | "version" => continue,
            k if k.starts_with("x-") => continue,
            "include" => (
                Level::Refusal,
                "include is not resolved: flatten the project first (`docker compose config > flat.yaml`) and import that",
            ),
            "networks" => (
                Level::Warning,
                "networks are not carried: network policies allow the paths depends_on, links and variables imply",
            ),
            "secrets" | "configs" => (Level::Warning, "not carried: declare values as variables instead"),
            _ => (Level::Warning, "not carried over"),
        };
        notes.push(Note {
            level,
            service: None,
            feature: k.clone(),
            what: what.to_string(),
            at: project.at(&format!("/{k}")),
        });
    }
}
