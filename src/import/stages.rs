//! The whole import: services converted, infrastructure from the cluster put in their place,
//! refusals gathered, stages ordered by `depends_on` (a service's stage comes after the stages
//! of everything it depends on; a cycle is an error naming it), workloads chosen, objects
//! rendered into stage folders.

use super::compose::Project;
use super::output::{Imported, StageOut};
use super::policy;
use super::secrets::Registry;
use super::service::{self, Ctx, Service, Workload};
use super::storage::{self, Source};
use super::{ImportError, Level, Note, Options, refuse, render};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub fn build(
    project: &Project,
    opts: &Options,
    lookup: &dyn Fn(&str) -> Option<String>,
    profiles: &[crate::profile::Profile],
) -> Result<Imported, ImportError> {
    let mut notes: Vec<Note> = Vec::new();
    refuse::top(project, &mut notes);
    let first = project.sources.first().map(|s| s.path.clone()).unwrap_or_default();
    let raw_name = opts.name.clone().or_else(|| project.name.clone()).unwrap_or_else(|| {
        project
            .dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "compose".into())
    });
    let name = service::k8s_name(&raw_name);
    if opts.name.as_deref().is_some_and(|n| n != name) {
        return Err(ImportError::input(
            &first,
            1,
            format!("--name {raw_name:?} is not a valid stack name"),
            "use lowercase letters, digits and '-', starting with a letter",
        ));
    }
    let namespace = opts.namespace.clone().unwrap_or_else(|| name.clone());
    if !crate::stack::is_dns_label(&namespace) {
        return Err(ImportError::input(
            &first,
            1,
            format!("--namespace {namespace:?} is not a valid namespace"),
            "use lowercase letters, digits and '-', at most 63 characters",
        ));
    }
    let all = project.services();
    let jobs: BTreeSet<String> = all
        .iter()
        .filter_map(|(_, v)| v.get("depends_on")?.as_object())
        .flat_map(|m| m.iter())
        .filter(|(_, c)| c.get("condition").and_then(Value::as_str) == Some("service_completed_successfully"))
        .map(|(k, _)| k.clone())
        .collect();
    let mut registry = Registry::default();
    let mut services: Vec<Service> = Vec::new();
    let mut skipped: BTreeSet<String> = BTreeSet::new();
    for (compose, v) in &all {
        let base = format!("/services/{compose}");
        if v.get("profiles")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            notes.push(Note {
                level: Level::Warning,
                service: Some((*compose).clone()),
                feature: "profiles".into(),
                what: "in a compose profile (not started by default): not imported".into(),
                at: project.at(&format!("{base}/profiles")),
            });
            skipped.insert((*compose).clone());
            continue;
        }
        let mut ctx = Ctx {
            project,
            lookup,
            secrets: &mut registry,
            notes: &mut notes,
            bind_mounts: opts.bind_mounts,
            jobs: &jobs,
        };
        services.push(service::convert(&mut ctx, compose, v)?);
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for s in &services {
        if let Some(other) = seen.insert(s.name.clone(), s.compose.clone()) {
            let at = project.at(&format!("/services/{}", s.compose));
            return Err(ImportError::input(
                &at.file,
                at.line,
                format!(
                    "services {other} and {} both become {} in Kubernetes",
                    s.compose, s.name
                ),
                "rename one of them",
            ));
        }
    }
    let external = super::discover::replace(&mut services, &opts.discovered, &namespace, &mut notes, project);
    let refusals: Vec<Note> = notes.iter().filter(|n| n.level == Level::Refusal).cloned().collect();
    if !refusals.is_empty() {
        return Err(ImportError::Refused { notes: refusals });
    }
    let gone: BTreeSet<String> = skipped
        .iter()
        .cloned()
        .chain(external.iter().map(|e| e.replaces.clone()))
        .collect();
    for s in &mut services {
        s.depends_on.retain(|(d, _)| !gone.contains(d));
    }
    let levels = levels(project, &services)?;
    let mut stages = order(&services, &levels);

    // Claims: who uses each; a database with claims of its own is a StatefulSet.
    let mut users: BTreeMap<String, Vec<&Service>> = BTreeMap::new();
    for s in &services {
        for m in &s.mounts {
            if let Source::Claim { claim, .. } = &m.source {
                users.entry(claim.clone()).or_default().push(s);
            }
        }
    }
    let mut placed_claims: BTreeSet<String> = BTreeSet::new();
    let mut published: BTreeSet<(u16, &str)> = BTreeSet::new();
    let refs: Vec<&Service> = services.iter().collect();
    for stage in &mut stages {
        for svc in stage.services.clone() {
            let Some(s) = services.iter().find(|s| s.name == svc) else {
                continue;
            };
            let claims: Vec<(String, &'static str)> = s
                .mounts
                .iter()
                .filter_map(|m| match &m.source {
                    Source::Claim { claim, .. } => Some(claim.clone()),
                    _ => None,
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|c| {
                    let size = storage::claim_size(users.get(&c).map(Vec::as_slice).unwrap_or(&[]));
                    (c, size)
                })
                .collect();
            let own = claims.iter().all(|(c, _)| users.get(c).is_some_and(|u| u.len() == 1));
            let statefulset = s.database && s.workload == Workload::Deployment && !claims.is_empty() && own;
            let fresh: Vec<(String, &'static str)> = claims
                .iter()
                .filter(|(c, _)| statefulset || placed_claims.insert(c.clone()))
                .cloned()
                .collect();
            let mut objects = render::service_objects(s, &name, &fresh, &registry, statefulset);
            let public: Vec<&super::ports::Port> = s
                .ports
                .iter()
                .filter(|p| p.public())
                .filter(|p| {
                    let ok = published.insert((p.published.unwrap_or(0), p.protocol));
                    if !ok {
                        notes.push(Note {
                            level: Level::Warning,
                            service: Some(s.compose.clone()),
                            feature: "ports".into(),
                            what: format!(
                                "host port {} is published by another service too: not published",
                                p.published.unwrap_or(0)
                            ),
                            at: project.at(&format!("/services/{}/ports", s.compose)),
                        });
                    }
                    ok
                })
                .collect();
            if let Some(lb) = render::public_service(s, &name, &public) {
                stage.public.push(format!("{}-public", s.name));
                objects.push(lb);
            }
            objects.push(policy::for_service(s, &refs, &external));
            if statefulset {
                stage.statefulsets.push(s.name.clone());
            }
            stage.files.push((format!("{}.yaml", s.name), objects));
        }
    }
    super::output::assemble(name, namespace, services, stages, registry, notes, profiles, &external)
}

/// Each service's stage index: 0 for those that depend on nothing, else one after the latest
/// of what they depend on. A cycle is an error that names it.
fn levels(project: &Project, services: &[Service]) -> Result<BTreeMap<String, usize>, ImportError> {
    let deps = |s: &Service| -> Vec<String> {
        s.depends_on
            .iter()
            .map(|(d, _)| d.clone())
            .filter(|d| services.iter().any(|o| &o.compose == d))
            .collect()
    };
    let mut level: BTreeMap<String, usize> = BTreeMap::new();
    fn visit(
        n: &str,
        services: &[Service],
        deps: &dyn Fn(&Service) -> Vec<String>,
        level: &mut BTreeMap<String, usize>,
        path: &mut Vec<String>,
    ) -> Result<usize, Vec<String>> {
        if let Some(l) = level.get(n) {
            return Ok(*l);
        }
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut cycle = path[i..].to_vec();
            cycle.push(n.to_string());
            return Err(cycle);
        }
        path.push(n.to_string());
        let s = services.iter().find(|s| s.compose == n);
        let mut l = 0;
        for d in s.map(deps).unwrap_or_default() {
            l = l.max(visit(&d, services, deps, level, path)? + 1);
        }
        path.pop();
        level.insert(n.to_string(), l);
        Ok(l)
    }
    for s in services {
        let mut path = Vec::new();
        visit(&s.compose, services, &deps, &mut level, &mut path).map_err(|cycle| {
            let at = project.at(&format!("/services/{}/depends_on", cycle[0]));
            ImportError::input(
                &at.file,
                at.line,
                format!("depends_on forms a cycle: {}", cycle.join(" → ")),
                "remove one of the dependencies: services start in the order depends_on gives",
            )
        })?;
    }
    Ok(level)
}

/// Stage folders from the levels: `10-<services>`, `20-...`, after `00-base`.
fn order(services: &[Service], levels: &BTreeMap<String, usize>) -> Vec<StageOut> {
    let count = levels.values().max().map_or(1, |m| m + 1);
    let step = (89 / count).clamp(1, 10);
    (0..count)
        .map(|i| {
            let members: Vec<&Service> = services.iter().filter(|s| levels.get(&s.compose) == Some(&i)).collect();
            let joined = members.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join("-");
            let short = if joined.len() <= 40 {
                joined
            } else {
                format!("tier-{}", i + 1)
            };
            StageOut {
                dir: format!("{:02}-{short}", step * (i + 1)),
                name: short,
                services: members.iter().map(|s| s.name.clone()).collect(),
                gpu: members.iter().any(|s| s.gpu.is_some()),
                files: Vec::new(),
                public: Vec::new(),
                statefulsets: Vec::new(),
            }
        })
        .collect()
}
