//! `kstrap import compose`: a Docker Compose application → a kstrap stack folder (stack.yaml and
//! numbered stages of plain Kubernetes YAML) that `kstrap plan/apply --stack-dir` take as it is.
//!
//! Pure up to `write`: the files are read, merged (`compose.rs`), each service converted
//! (`service.rs`, `storage.rs`, `health.rs`, `refuse.rs`), ordered into stages by `depends_on`
//! (`stages.rs`), and rendered (`render.rs`, `policy.rs`, `output.rs`). `discover.rs` asks a
//! cluster for infrastructure to use instead of the compose file's own. What cannot be carried
//! over is a [`Note`]: a warning (and what was done), or a refusal (and why); any refusal stops
//! the import, listing all of them. Format of the result: manifests/README.md; the mapping:
//! docs in `output.rs`'s README.

mod compose;
pub mod discover;
mod health;
pub mod image;
pub mod interpolate;
mod output;
mod output_readme;
pub mod policy;
pub mod ports;
mod refuse;
mod render;
pub mod secrets;
pub mod service;
mod stages;
mod storage;
mod variables;

#[cfg(test)]
mod tests;

use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

pub use output::Imported;

/// What to do with bind mounts of host folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BindMounts {
    /// An empty claim in their place (a warning says so).
    #[default]
    Claim,
    /// The host folder itself (hostPath): only for single-node clusters you trust.
    HostPath,
    /// Leave them out.
    Drop,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub files: Vec<PathBuf>,
    /// Variables files (`--env-file`); without one, `.env` next to the first file if it exists.
    pub env_files: Vec<PathBuf>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub bind_mounts: BindMounts,
    /// Infrastructure found in the cluster (`--discover`).
    pub discovered: Vec<discover::Found>,
}

/// Where something was written: file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct At {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Refusal,
}

/// A feature of the compose file and what the import did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub level: Level,
    pub service: Option<String>,
    pub feature: String,
    pub what: String,
    pub at: At,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = self.service.as_deref().map(|s| format!("{s}: ")).unwrap_or_default();
        write!(f, "{}: {who}{}: {}", self.at, self.feature, self.what)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}:{line}: {message}\n  fix: {hint}")]
    Input {
        file: String,
        line: usize,
        message: String,
        hint: String,
    },
    #[error("the compose file asks for what kstrap will not carry over:{}\n  fix: remove or change these, then import again", notes.iter().map(|n| format!("\n  {n}")).collect::<String>())]
    Refused { notes: Vec<Note> },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path} exists and was not written by kstrap import\n  fix: choose another --out or --name, or remove it")]
    Exists { path: String },
}

impl ImportError {
    pub fn input(file: &str, line: usize, message: impl Into<String>, hint: impl Into<String>) -> Self {
        ImportError::Input {
            file: file.to_string(),
            line,
            message: message.into(),
            hint: hint.into(),
        }
    }
    /// Bad input is exit 2; a folder that cannot be written is a failure (exit 1).
    pub fn is_input(&self) -> bool {
        !matches!(self, ImportError::Io { .. })
    }
}

/// Imports the compose files. `env` answers variables from the environment (which wins over
/// env files, as in `docker compose`); `profiles` are kstrap's, for sizing.
pub fn import(
    opts: &Options,
    env: &dyn Fn(&str) -> Option<String>,
    profiles: &[crate::profile::Profile],
) -> Result<Imported, ImportError> {
    let project = compose::load(&opts.files)?;
    let mut file_vars: Vec<(String, String)> = Vec::new();
    let default_env = project.dir.join(".env");
    let env_files: Vec<PathBuf> = if opts.env_files.is_empty() && default_env.is_file() {
        vec![default_env]
    } else {
        opts.env_files.clone()
    };
    for f in &env_files {
        let shown = f.display().to_string();
        let text = crate::limits::read_text(f).map_err(|e| ImportError::Io {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let vars = interpolate::parse_env_file(&text)
            .map_err(|(line, m)| ImportError::input(&shown, line, m, "write KEY=VALUE lines"))?;
        for (k, v, _) in vars {
            file_vars.retain(|(n, _)| *n != k);
            file_vars.push((k, v));
        }
    }
    let lookup = |name: &str| env(name).or_else(|| file_vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
    stages::build(&project, opts, &lookup, profiles)
}

/// Writes `out/<name>/`. A folder that exists is replaced only if an earlier import wrote it
/// (its stack.yaml starts with kstrap's header), so nothing else is ever overwritten.
pub fn write(out: &Path, imported: &Imported) -> Result<PathBuf, ImportError> {
    output::write(out, imported)
}

/// Replaces compose services with infrastructure found in the cluster; `words`-based paths
/// then lead to the cluster's Service.
pub use discover::Found;
