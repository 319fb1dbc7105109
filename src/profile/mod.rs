//! Resource profiles: strict data from `profiles/*.yaml`, and the pure choice among them.
//!
//! A profile says what it needs of the host (`requires`, below which it is refused),
//! what it would like (`recommends`, below which it warns), which distribution it installs, how
//! it uses GPUs, and which stack it deploys. Files are parsed strictly: an unknown field, a wrong
//! type or an impossible value is an error naming the file, the line and the field, so a typo can
//! never silently change what gets installed.

mod gpu_source;
mod select;
pub mod vram;

pub use gpu_source::{GpuDriver, GpuSource, describe_pci, gpu_source, host_driver_loaded};
pub use select::{KeptPlan, Overrides, Rejection, SelectError, Selection, driver_too_old, select, usable_gpus};
pub use vram::{KvCacheType, VramPlan};

use crate::distro::Distro;
use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::Path;

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/profiles");

/// A validated profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Among profiles a host meets, the highest priority wins.
    pub priority: u32,
    pub distro: Distro,
    /// Stack deployed by default.
    pub stack: String,
    pub requires: Requirements,
    pub recommends: Recommendations,
    pub gpu: GpuSettings,
    pub cluster: ClusterSettings,
    /// GPU profiles: what holds VRAM and the headroom kept free (`crate::budget` computes it).
    pub vram: Option<VramPlan>,
    /// File it came from, for messages.
    #[serde(skip)]
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Requirements {
    pub memory_gib: f64,
    pub cpus: u32,
    pub disk_gib: f64,
    pub gpu: Option<GpuRequirement>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuRequirement {
    /// Usable NVIDIA GPUs needed.
    pub count: u32,
    /// VRAM each of them needs, in GiB. Keep it below the marketing figure: nvidia-smi shows a
    /// "32 GB" RTX 5090 as 32607 MiB (31.8 GiB).
    pub vram_gib: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendations {
    pub memory_gib: f64,
    pub cpus: u32,
    pub disk_gib: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sharing {
    /// CUDA time-slicing through the device plugin: `replicas` shares per GPU.
    TimeSlicing,
    /// CUDA MPS through the device plugin; only when a profile asks for it explicitly.
    Mps,
    /// One pod per GPU.
    None,
}

impl Sharing {
    pub fn label(self) -> &'static str {
        match self {
            Sharing::TimeSlicing => "time-slicing",
            Sharing::Mps => "mps",
            Sharing::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuSettings {
    /// Install the NVIDIA GPU operator.
    pub operator: bool,
    pub sharing: Sharing,
    /// Shares advertised per physical GPU (1 without sharing).
    pub replicas: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterSettings {
    /// Built-in components to disable (k3s `disable:`, k0s `--disable-components`).
    pub disable: Vec<String>,
    /// Labels put on the node.
    pub node_labels: BTreeMap<String, String>,
}

impl Profile {
    pub fn uses_gpu(&self) -> bool {
        self.requires.gpu.is_some()
    }
}

/// A profile file that could not be used: which file, where, what is wrong, what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}\n  fix: {hint}", place(.path, *.line, *.column))]
pub struct ProfileError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: String,
}

/// `path:line:column`, or the path alone for errors about the whole file (line 0).
fn place(path: &str, line: usize, column: usize) -> String {
    match (line, column) {
        (0, _) => path.to_string(),
        (l, 0) => format!("{path}:{l}"),
        (l, c) => format!("{path}:{l}:{c}"),
    }
}

// ---- the file format ----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: Spanned<String>,
    description: Spanned<String>,
    priority: u32,
    distro: Distro,
    stack: Spanned<String>,
    requires: RequiresFile,
    recommends: RecommendsFile,
    #[serde(default)]
    gpu: Option<Spanned<GpuFile>>,
    #[serde(default)]
    cluster: Option<ClusterFile>,
    #[serde(default)]
    vram: Option<Spanned<vram::VramFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequiresFile {
    memory_gib: Spanned<f64>,
    cpus: Spanned<u32>,
    disk_gib: Spanned<f64>,
    #[serde(default)]
    gpu: Option<GpuReqFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuReqFile {
    count: Spanned<u32>,
    vram_gib: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendsFile {
    memory_gib: Spanned<f64>,
    cpus: Spanned<u32>,
    disk_gib: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuFile {
    operator: bool,
    sharing: Sharing,
    replicas: Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    #[serde(default)]
    disable: Vec<Spanned<String>>,
    #[serde(default)]
    node_labels: BTreeMap<String, String>,
}

/// Components each distribution lets a profile disable (k3s `disable:` items, k0s
/// `--disable-components` items; both checked against upstream's lists in
/// `tests/integration/upstream_flags.rs`).
pub fn disableable(distro: Distro) -> &'static [&'static str] {
    match distro {
        Distro::K3s => &["traefik", "servicelb", "local-storage", "metrics-server"],
        Distro::K0s => &["konnectivity-server", "metrics-server", "helm"],
    }
}

/// Profile and stack names are DNS-1123 labels, like the Kubernetes objects named after them.
fn is_name(s: &str) -> bool {
    crate::stack::is_dns_label(s)
}

/// Parses and validates one profile. `path` names the file in errors; `stem` is the file name
/// without `.yaml`, which must equal the profile's `name`.
pub fn parse(path: &str, stem: Option<&str>, text: &str) -> Result<Profile, ProfileError> {
    let err = |line: usize, column: usize, message: String, hint: &str| ProfileError {
        path: path.to_string(),
        line,
        column,
        message,
        hint: hint.to_string(),
    };
    let file: ProfileFile = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((0, 0));
        let words = crate::yaml_words::rewrite(&bare_message(&e.without_snippet().to_string()), text, line, column);
        let message = words.message;
        let hint = if let Some(hint) = words.hint {
            hint
        } else if message.contains("unknown field") {
            "remove the field or correct its spelling; the fields a profile takes are listed in profiles/README.md"
        } else if message.contains("missing field") {
            "add the field; every profile states requires, recommends, distro, stack, priority and description"
        } else if message.contains("tabs") || message.contains(" tab") {
            "YAML does not allow tabs for indentation: indent with spaces"
        } else if message.contains("unknown variant") {
            "use one of the values the message lists"
        } else {
            "correct the value's type (numbers unquoted, lists in [ ]) or the YAML syntax at that place"
        };
        err(line, column, message, hint)
    })?;

    let at = |s: &serde_saphyr::Location| (s.line() as usize, s.column() as usize);
    let field_err = |loc: &serde_saphyr::Location, field: &str, problem: String, hint: &str| {
        let (line, column) = at(loc);
        err(line, column, format!("field `{field}`: {problem}"), hint)
    };

    let name = file.name.value.clone();
    if !is_name(&name) {
        return Err(field_err(
            &file.name.referenced,
            "name",
            format!("{name:?} is not a valid profile name"),
            "use lowercase letters, digits and '-', at most 63 characters",
        ));
    }
    if let Some(stem) = stem
        && stem != name
    {
        return Err(field_err(
            &file.name.referenced,
            "name",
            format!("{name:?} does not match the file name {stem:?}.yaml"),
            "rename the file or the profile so that they agree",
        ));
    }
    if file.description.value.trim().is_empty() {
        return Err(field_err(
            &file.description.referenced,
            "description",
            "is empty".into(),
            "say in one line which machines this profile is for",
        ));
    }
    if !is_name(&file.stack.value) {
        return Err(field_err(
            &file.stack.referenced,
            "stack",
            format!("{:?} is not a valid stack name", file.stack.value),
            "name a folder of manifests/, e.g. voice-ai",
        ));
    }

    let positive = |v: &Spanned<f64>, field: &str, max: f64| -> Result<f64, ProfileError> {
        if v.value.is_finite() && v.value > 0.0 && v.value <= max {
            Ok(v.value)
        } else {
            Err(field_err(
                &v.referenced,
                field,
                format!("{} is out of range", v.value),
                &format!("give a number of GiB above 0 and at most {max}"),
            ))
        }
    };
    let count = |v: &Spanned<u32>, field: &str, max: u32| -> Result<u32, ProfileError> {
        if (1..=max).contains(&v.value) {
            Ok(v.value)
        } else {
            Err(field_err(
                &v.referenced,
                field,
                format!("{} is out of range", v.value),
                &format!("give a whole number from 1 to {max}"),
            ))
        }
    };

    let r = &file.requires;
    let requires = Requirements {
        memory_gib: positive(&r.memory_gib, "requires.memory_gib", 4096.0)?,
        cpus: count(&r.cpus, "requires.cpus", 1024)?,
        disk_gib: positive(&r.disk_gib, "requires.disk_gib", 65536.0)?,
        gpu: match &r.gpu {
            None => None,
            Some(g) => Some(GpuRequirement {
                count: count(&g.count, "requires.gpu.count", 16)?,
                vram_gib: positive(&g.vram_gib, "requires.gpu.vram_gib", 1024.0)?,
            }),
        },
    };
    let c = &file.recommends;
    let recommends = Recommendations {
        memory_gib: positive(&c.memory_gib, "recommends.memory_gib", 4096.0)?,
        cpus: count(&c.cpus, "recommends.cpus", 1024)?,
        disk_gib: positive(&c.disk_gib, "recommends.disk_gib", 65536.0)?,
    };
    let below = "a recommendation cannot be below the requirement: raise recommends or lower requires";
    if recommends.memory_gib < requires.memory_gib {
        return Err(field_err(
            &c.memory_gib.referenced,
            "recommends.memory_gib",
            format!(
                "{} is below requires.memory_gib {}",
                recommends.memory_gib, requires.memory_gib
            ),
            below,
        ));
    }
    if recommends.cpus < requires.cpus {
        return Err(field_err(
            &c.cpus.referenced,
            "recommends.cpus",
            format!("{} is below requires.cpus {}", recommends.cpus, requires.cpus),
            below,
        ));
    }
    if recommends.disk_gib < requires.disk_gib {
        return Err(field_err(
            &c.disk_gib.referenced,
            "recommends.disk_gib",
            format!(
                "{} is below requires.disk_gib {}",
                recommends.disk_gib, requires.disk_gib
            ),
            below,
        ));
    }

    let gpu = match &file.gpu {
        None => GpuSettings {
            operator: false,
            sharing: Sharing::None,
            replicas: 1,
        },
        Some(g) => {
            let v = &g.value;
            if v.operator && requires.gpu.is_none() {
                return Err(field_err(
                    &g.referenced,
                    "gpu.operator",
                    "is true but requires.gpu is missing".into(),
                    "add requires.gpu (count, vram_gib), or set gpu.operator: false",
                ));
            }
            if !v.operator && requires.gpu.is_some() {
                return Err(field_err(
                    &g.referenced,
                    "gpu.operator",
                    "is false but requires.gpu asks for a GPU".into(),
                    "set gpu.operator: true, or remove requires.gpu",
                ));
            }
            let replicas = v.replicas.value;
            match v.sharing {
                Sharing::TimeSlicing | Sharing::Mps if !(2..=48).contains(&replicas) => {
                    return Err(field_err(
                        &v.replicas.referenced,
                        "gpu.replicas",
                        format!("{replicas} shares per GPU with {} sharing", v.sharing.label()),
                        "give 2 to 48 shares per GPU, or sharing: none with replicas: 1",
                    ));
                }
                Sharing::None if replicas != 1 => {
                    return Err(field_err(
                        &v.replicas.referenced,
                        "gpu.replicas",
                        format!("{replicas} with sharing: none"),
                        "without sharing each GPU is one share: set replicas: 1, or sharing: time-slicing",
                    ));
                }
                _ => {}
            }
            GpuSettings {
                operator: v.operator,
                sharing: v.sharing,
                replicas,
            }
        }
    };
    if requires.gpu.is_some() && file.gpu.is_none() {
        let (line, column) = at(&file.name.referenced);
        return Err(err(
            line,
            column,
            "requires.gpu is set but the gpu section is missing".into(),
            "add gpu: {operator: true, sharing: time-slicing, replicas: N}",
        ));
    }

    let mut cluster = ClusterSettings::default();
    if let Some(cf) = file.cluster {
        let allowed = disableable(file.distro);
        for d in &cf.disable {
            if !allowed.contains(&d.value.as_str()) {
                return Err(field_err(
                    &d.referenced,
                    "cluster.disable",
                    format!("{:?} is not a component {} can disable", d.value, file.distro),
                    &format!("use one of: {}", allowed.join(", ")),
                ));
            }
            cluster.disable.push(d.value.clone());
        }
        cluster.node_labels = cf.node_labels;
    }

    let vram = match file.vram {
        None => None,
        Some(v) => {
            if requires.gpu.is_none() {
                return Err(field_err(
                    &v.referenced,
                    "vram",
                    "is set but requires.gpu is missing".into(),
                    "a VRAM plan belongs to a GPU profile: add requires.gpu, or remove vram",
                ));
            }
            let plan = v
                .value
                .validate()
                .map_err(|(loc, field, problem, hint)| field_err(&loc, &field, problem, &hint))?;
            Some(plan)
        }
    };

    Ok(Profile {
        name,
        description: file.description.value,
        priority: file.priority,
        distro: file.distro,
        stack: file.stack.value,
        requires,
        recommends,
        gpu,
        cluster,
        vram,
        source: path.to_string(),
    })
}

/// serde-saphyr's message without its "error: line L column C: " prefix (we print our own).
fn bare_message(rendered: &str) -> String {
    let s = rendered.trim().strip_prefix("error: ").unwrap_or(rendered.trim());
    let s = match s.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest),
        None => s,
    };
    let first = s.lines().next().unwrap_or(s);
    // The location is printed by us in front; drop the library's copy at the end.
    match first.rfind(" at line ") {
        Some(i) if first[i..].contains(", column ") => first[..i].to_string(),
        _ => first.to_string(),
    }
}

/// The profiles built into the binary (from `profiles/` at build time), sorted by name.
pub fn embedded() -> Result<Vec<Profile>, ProfileError> {
    let mut files: Vec<(String, String, String)> = Vec::new();
    for f in EMBEDDED.files() {
        let p = f.path();
        if p.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let text = f.contents_utf8().unwrap_or_default().to_string();
        files.push((format!("profiles/{} (embedded)", p.display()), stem, text));
    }
    collect(files)
}

/// Profiles from a folder (`--profiles-dir`): every `*.yaml` in it, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Profile>, ProfileError> {
    let io_err = |path: String, e: std::io::Error| ProfileError {
        path,
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
        hint: "check the path given to --profiles-dir and its permissions".into(),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir.display().to_string(), e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir.display().to_string(), e))?;
        let p = entry.path();
        if p.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let text = crate::limits::read_text(&p).map_err(|e| io_err(p.display().to_string(), e))?;
        files.push((p.display().to_string(), stem, text));
    }
    if files.is_empty() {
        return Err(ProfileError {
            path: dir.display().to_string(),
            line: 0,
            column: 0,
            message: "no *.yaml profile in this folder".into(),
            hint: "point --profiles-dir at a folder of profile files, or leave it out to use the built-in profiles"
                .into(),
        });
    }
    collect(files)
}

fn collect(mut files: Vec<(String, String, String)>) -> Result<Vec<Profile>, ProfileError> {
    files.sort();
    let mut out: Vec<Profile> = Vec::with_capacity(files.len());
    for (path, stem, text) in &files {
        let p = parse(path, Some(stem), text)?;
        out.push(p);
    }
    Ok(out)
}
