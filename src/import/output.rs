//! The stack folder: `stack.yaml` (stages, per-profile sizing, GPU shares, the secrets and
//! images the user gives), `00-base` (namespace, default-deny and DNS policies), a folder per
//! stage with a file per service, and a README with the import report. YAML is written by
//! serde-saphyr from the objects, never by text templating.

use super::policy::{self, External};
use super::render;
use super::secrets::Registry;
use super::service::{Image, Service};
use super::{ImportError, Note};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// The first line of every stack.yaml the importer writes: a folder holding one is its own to
/// replace on the next import.
pub const HEADER: &str = "# Imported by `kstrap import compose`";

pub struct StageOut {
    pub dir: String,
    pub name: String,
    pub services: Vec<String>,
    pub gpu: bool,
    /// (file name, objects).
    pub files: Vec<(String, Vec<Value>)>,
    /// LoadBalancer Services (left out on k0s, which has no load balancer).
    pub public: Vec<String>,
    pub statefulsets: Vec<String>,
}

/// An imported stack, ready to write.
#[derive(Debug, Serialize)]
pub struct Imported {
    pub name: String,
    pub namespace: String,
    /// Relative path in the stack folder → text.
    #[serde(skip)]
    pub files: Vec<(String, String)>,
    pub notes: Vec<Note>,
    /// (key, description) of each image the user names with --image.
    pub images: Vec<(String, String)>,
    /// Variables read at apply (from the environment or --secret-file), and whether kstrap
    /// generates them when not given.
    pub secrets: Vec<(String, bool)>,
    pub stages: Vec<String>,
}

fn yaml(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_saphyr::to_string(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Sizing per profile: on GPU profiles each GPU service gets its shares; where the requests of
/// all services exceed the smallest host the profile admits less 1 CPU and 2 GiB (the rule the
/// built-in stacks follow), every request is scaled down to fit (limits stay).
fn profiles_overlays(services: &[Service], profiles: &[crate::profile::Profile]) -> Map<String, Value> {
    let kind = |s: &Service| match s.workload {
        super::service::Workload::Job => "Job",
        _ => "",
    };
    let mut out = Map::new();
    let total = |k: &str| -> f64 {
        services
            .iter()
            .filter_map(|s| {
                s.requests
                    .get(k)?
                    .as_str()
                    .and_then(crate::stack::overlay::quantity_value)
            })
            .sum()
    };
    let (cpu, mem) = (total("cpu"), total("memory"));
    for p in profiles {
        let gpu = p.requires.gpu.is_some();
        let budget_cpu = (f64::from(p.requires.cpus) - 1.0).max(0.5);
        let budget_mem = (p.requires.memory_gib - 2.0).max(1.0) * 1024.0 * 1024.0 * 1024.0;
        let factor = (budget_cpu / cpu).min(budget_mem / mem).min(1.0);
        let mut overlays = Map::new();
        for s in services {
            let mut c = Map::new();
            if factor < 1.0 {
                let cpu_m = s
                    .requests
                    .get("cpu")
                    .and_then(Value::as_str)
                    .and_then(crate::stack::overlay::quantity_value)
                    .unwrap_or(0.1)
                    * 1000.0
                    * factor;
                let mem_mi = s
                    .requests
                    .get("memory")
                    .and_then(Value::as_str)
                    .and_then(crate::stack::overlay::quantity_value)
                    .unwrap_or(0.0)
                    / 1048576.0
                    * factor;
                c.insert("requests".into(), json!({"cpu": format!("{}m", (cpu_m.floor() as u64).max(10)), "memory": format!("{}Mi", (mem_mi.floor() as u64).max(16))}));
            }
            if gpu && let Some(n) = s.gpu {
                c.insert("gpu".into(), json!(n));
            }
            if !c.is_empty() {
                let key = format!("{}/{}", object_kind(s, kind(s)), s.name);
                overlays.insert(key, json!({"containers": {s.name.clone(): c}}));
            }
        }
        if !overlays.is_empty() {
            out.insert(p.name.clone(), Value::Object(overlays));
        }
    }
    out
}

fn object_kind(s: &Service, job: &str) -> String {
    if !job.is_empty() {
        return job.to_string();
    }
    if s.statefulset {
        "StatefulSet".into()
    } else {
        "Deployment".into()
    }
}

#[allow(clippy::too_many_arguments)]
pub fn assemble(
    name: String,
    namespace: String,
    mut services: Vec<Service>,
    stages: Vec<StageOut>,
    registry: Registry,
    notes: Vec<Note>,
    profiles: &[crate::profile::Profile],
    external: &[External],
) -> Result<Imported, ImportError> {
    for st in &stages {
        for s in services.iter_mut().filter(|s| st.statefulsets.contains(&s.name)) {
            s.statefulset = true;
        }
    }
    let mut files: Vec<(String, String)> = Vec::new();
    files.push((
        "00-base/namespace.yaml".into(),
        yaml(&[render::namespace(&namespace, &name)]),
    ));
    files.push(("00-base/network-policies.yaml".into(), yaml(&policy::default_deny())));
    let mut stage_list = vec![
        json!({"dir": "00-base", "name": "base", "timeout_s": 60, "description": "the namespace, default-deny network policy and DNS"}),
    ];
    for st in &stages {
        for (file, objects) in &st.files {
            files.push((format!("{}/{file}", st.dir), yaml(objects)));
        }
        stage_list.push(
            json!({"dir": st.dir, "name": st.name, "timeout_s": if st.gpu { 1800 } else { 900 },
            "description": format!("compose services: {}", st.services.join(", "))}),
        );
    }
    let mut stack = json!({"name": name, "description": format!("imported from Docker Compose: {}", services.iter().map(|s| s.compose.as_str()).collect::<Vec<_>>().join(", ")),
        "namespace": namespace, "stages": stage_list});
    let profile_overlays = profiles_overlays(&services, profiles);
    if !profile_overlays.is_empty() {
        stack["profiles"] = Value::Object(profile_overlays);
    }
    let public: Vec<&String> = stages.iter().flat_map(|s| &s.public).collect();
    if !public.is_empty() {
        let omit: Map<String, Value> = public
            .iter()
            .map(|p| (format!("Service/{p}"), json!({"omit": true})))
            .collect();
        stack["distros"] = json!({"k0s": omit});
    }
    let mut secrets_out = Vec::new();
    let mut decls = Vec::new();
    for generate in [false, true] {
        let keys: Vec<&super::secrets::Key> = registry.keys.values().filter(|k| k.generate == generate).collect();
        if keys.is_empty() {
            continue;
        }
        let who: std::collections::BTreeSet<&String> = keys.iter().flat_map(|k| &k.services).collect();
        let mut d = json!({"name": render::secret_name(&name, generate),
            "description": format!("{} of {}", if generate { "passwords and signing keys (generated when not given)" } else { "keys and tokens you give" }, who.into_iter().cloned().collect::<Vec<_>>().join(", ")),
            "keys": keys.iter().map(|k| k.env.clone()).collect::<Vec<_>>()});
        if generate {
            d["generate"] = json!({"length": 32});
        }
        decls.push(d);
        secrets_out.extend(keys.iter().map(|k| (k.env.clone(), generate)));
    }
    if !decls.is_empty() {
        stack["secrets"] = Value::Array(decls);
    }
    let mut images = Vec::new();
    for s in &services {
        if let Image::Declared { key, description, .. } = &s.image {
            let kind = if s.workload == super::service::Workload::Job {
                "Job"
            } else if s.statefulset {
                "StatefulSet"
            } else {
                "Deployment"
            };
            images.push(json!({"key": key, "description": description, "containers": [format!("{kind}/{}/{}", s.name, s.name)]}));
        }
    }
    let image_list: Vec<(String, String)> = images
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap_or_default().to_string(),
                i["description"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    if !images.is_empty() {
        stack["images"] = Value::Array(images);
    }
    let header = format!(
        "{HEADER}. Edit freely; re-importing replaces this folder.\n# Values of secrets are never written here: they come from the environment or --secret-file at apply.\n"
    );
    files.insert(
        0,
        (
            "stack.yaml".into(),
            format!("{header}{}", serde_saphyr::to_string(&stack).unwrap_or_default()),
        ),
    );
    let _ = external;
    let stages_names = std::iter::once("00-base".to_string())
        .chain(stages.iter().map(|s| s.dir.clone()))
        .collect();
    files.push((
        "README.md".into(),
        super::output_readme::readme(&name, &namespace, &services, &notes, &image_list, &secrets_out),
    ));
    Ok(Imported {
        name,
        namespace,
        files,
        notes,
        images: image_list,
        secrets: secrets_out,
        stages: stages_names,
    })
}

pub fn write(out: &Path, imported: &Imported) -> Result<PathBuf, ImportError> {
    let dir = out.join(&imported.name);
    let io = |p: &Path, e: std::io::Error| ImportError::Io {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    if dir.exists() {
        let ours = std::fs::read_to_string(dir.join("stack.yaml")).is_ok_and(|t| t.starts_with(HEADER));
        if !ours {
            return Err(ImportError::Exists {
                path: dir.display().to_string(),
            });
        }
        std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    // Written next to the target and renamed into place: a failed import leaves no half folder.
    let tmp = out.join(format!(".{}.importing", imported.name));
    let _ = std::fs::remove_dir_all(&tmp);
    for (rel, text) in &imported.files {
        let path = tmp.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
    Ok(dir)
}
