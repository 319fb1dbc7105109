//! The step model: what `plan` prints and what the executor runs.
//!
//! A step is a title, a one-line reason, and an `Action` that is pure data. The planner builds
//! steps; `--dry-run` prints them; the executor (issue "up installs k3s or k0s") performs them
//! through the host seam. Nothing in this file performs anything.

use crate::finding::Finding;
use serde::{Serialize, Serializer};

/// Where in the flow a step belongs; steps are ordered by phase, then by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Preflight,
    Host,
    Cluster,
    /// kstrap's built-in add-ons (k0s storage, --with monitoring), before the GPU operator.
    Addons,
    Gpu,
    Stack,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Preflight => "preflight",
            Phase::Host => "host",
            Phase::Cluster => "cluster",
            Phase::Addons => "addons",
            Phase::Gpu => "gpu",
            Phase::Stack => "stack",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Stable identifier, unique within a plan: "download-k3s", "write-k3s-config".
    pub id: String,
    pub phase: Phase,
    /// What the step does, in a few words.
    pub title: String,
    /// Why the step is there, in one line.
    pub reason: String,
    pub action: Action,
}

/// File permission bits, shown and serialized in octal ("0600").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Where the expected sha256 of a download comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChecksumSource {
    /// A checksum file published with the release; `entry` is the file name to look up in it.
    ReleaseFile { url: String, entry: String },
    /// A sha256 pinned in kstrap's catalog for this exact version and architecture.
    Pinned { sha256: String },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A Kubernetes object named by a step.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{} -n {}", self.kind, self.name, ns),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// Contents of a file the plan writes. Secret contents are never shown nor serialized.
#[derive(Debug, Clone, PartialEq)]
pub enum Contents {
    Text(String),
    /// Generated or read at execution time and never printed (tokens, keys).
    Secret {
        description: String,
    },
}

impl Serialize for Contents {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Contents::Text(t) => s.serialize_str(t),
            Contents::Secret { description } => s.serialize_str(&format!("<secret: {description}>")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SystemdOp {
    DaemonReload,
    EnableNow,
    /// `EnableNow`, and a running unit is restarted even when none of its files changed: the
    /// node's address moved since the install, and the distribution takes it only at start.
    EnableRestart,
    Restart,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Host checks for the selected profile; any `Fail` stops `up` (exit 3) unless `--force`.
    Preflight { findings: Vec<Finding> },
    /// Stream `url` into `dest` while hashing; rename into place only when the sha256 matches.
    Download {
        url: String,
        checksum: ChecksumSource,
        dest: String,
        mode: Mode,
    },
    /// Copy a file from an air-gap folder, verified like a download.
    CopyLocal {
        source: String,
        checksum: Option<ChecksumSource>,
        dest: String,
        mode: Mode,
    },
    /// Write `contents` to `path` atomically (temp file + rename) with `mode`.
    WriteFile {
        path: String,
        mode: Mode,
        contents: Contents,
    },
    /// Remove a file kstrap wrote before and no longer writes (a proxy drop-in whose proxy is
    /// gone); nothing when it is already absent. A unit that depends on it names it in its
    /// `after_changes`, so removing it reloads systemd and restarts the unit.
    RemoveFile { path: String },
    /// Run a program with arguments (no shell). The executor runs it again only when its
    /// arguments differ from the last successful run's (kept in kstrap's state) or a file in
    /// `creates` is missing.
    Command {
        program: String,
        args: Vec<String>,
        /// Files the command itself writes (the unit `k0s install` creates): kstrap records them
        /// as its own, so `down` removes them.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        creates: Vec<String>,
    },
    /// A systemctl operation on a unit.
    ///
    /// `after_changes` names the files the operation depends on. `daemon-reload` runs only when
    /// one of them changed (empty: always). `enable-now` starts a stopped unit; a running one is
    /// restarted exactly once when one of them changed, and left alone otherwise.
    Systemd {
        unit: String,
        op: SystemdOp,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        after_changes: Vec<String>,
    },
    /// Wait until the API server answers `/readyz` and the node is Ready.
    WaitCluster { kubeconfig: String, timeout_s: u64 },
    /// On a worker: wait, with the kubelet's own credentials (`kubeconfig`), until node `node` is
    /// Ready, or with `gpus` > 0 until it advertises `gpus` × the replicas its
    /// `nvidia.com/gpu.replicas` label says as allocatable `nvidia.com/gpu`.
    WaitNode {
        kubeconfig: String,
        node: String,
        #[serde(skip_serializing_if = "is_zero")]
        gpus: u32,
        timeout_s: u64,
    },
    /// Write the admin kubeconfig for the user and merge it as context `context`.
    Kubeconfig {
        source: String,
        dest: String,
        context: String,
    },
    /// Server-side apply objects (no stage wait of their own).
    Apply { objects: Vec<ObjectRef> },
    /// Wait until the node advertises `expected` allocatable `nvidia.com/gpu`.
    WaitGpu {
        gpus: u32,
        replicas: u32,
        expected: u32,
        timeout_s: u64,
    },
    /// Apply one of kstrap's built-in add-ons as a stack of its own (its own ApplySet) and wait
    /// until its objects are ready, then until `wait_for` (objects its controllers make, such as
    /// a chart's Deployments) are ready, each wait at most `timeout_s`.
    ApplyAddon {
        addon: String,
        objects: Vec<ObjectRef>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        wait_for: Vec<ObjectRef>,
        timeout_s: u64,
    },
    /// Apply one stage of a stack and wait until every object in it is ready.
    ApplyStage {
        stack: String,
        stage: String,
        objects: Vec<ObjectRef>,
        timeout_s: u64,
    },
}
