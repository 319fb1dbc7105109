//! `stack.yaml`: a stack's name, namespace, ordered stages, per-profile sizing and the secrets it
//! needs. Parsed strictly (unknown fields are errors with a line), because a typo in a stage list
//! or a timeout must stop kstrap rather than silently change what gets applied.

use super::StackError;
use crate::distro::Distro;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StackFile {
    pub name: Spanned<String>,
    pub description: String,
    pub namespace: Spanned<String>,
    pub stages: Vec<Spanned<StageFile>>,
    /// profile name → object (`Kind/name`) → sizing overlay (see `overlay.rs`).
    #[serde(default)]
    pub profiles: BTreeMap<String, BTreeMap<String, Spanned<super::overlay::Overlay>>>,
    /// distribution → object (`Kind/name`) → overlay, applied after the profile's.
    #[serde(default)]
    pub distros: DistrosFile,
    #[serde(default)]
    pub secrets: Vec<SecretFile>,
    /// Images only a service's authors have: the user names them (`--image KEY=REF`).
    #[serde(default)]
    pub images: Vec<Spanned<ImageFile>>,
    /// More namespaces the stack's objects and databases live in, besides `namespace`.
    #[serde(default)]
    pub namespaces: Vec<Spanned<String>>,
    /// PostgreSQL databases run by CloudNativePG (see `databases.rs`).
    #[serde(default)]
    pub databases: Vec<Spanned<super::databases::DatabaseFile>>,
    /// What proves the stack works once it is ready (`crate::verify::VerifySpec`).
    pub verify: Option<Spanned<crate::verify::VerifySpec>>,
}

/// Overlays per distribution. A field per distribution kstrap installs (not a map), so that a
/// misspelt one is an unknown field with its line, like any other typo in stack.yaml.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct DistrosFile {
    #[serde(default)]
    pub k3s: BTreeMap<String, Spanned<super::overlay::Overlay>>,
    #[serde(default)]
    pub k0s: BTreeMap<String, Spanned<super::overlay::Overlay>>,
}

impl DistrosFile {
    /// The overlays for each distribution that has any.
    pub fn into_map(self) -> BTreeMap<Distro, BTreeMap<String, Spanned<super::overlay::Overlay>>> {
        let DistrosFile { k3s, k0s } = self;
        [(Distro::K3s, k3s), (Distro::K0s, k0s)]
            .into_iter()
            .filter(|(_, o)| !o.is_empty())
            .collect()
    }
}

/// One required image: its key (also the environment variable it is read from), what it is,
/// and the containers (`Kind/name/container`) that run it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImageFile {
    pub key: String,
    pub description: String,
    pub containers: Vec<String>,
}

/// A secret key: `NAME` (the environment variable and the key in the Secret), or
/// `{env: NAME, key: secret-key}` when the Secret's key must be spelled otherwise.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum KeyFile {
    Plain(String),
    Mapped(MappedKey),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MappedKey {
    pub env: String,
    pub key: String,
}

impl KeyFile {
    /// (environment variable, key in the Secret).
    pub fn names(&self) -> (&str, &str) {
        match self {
            KeyFile::Plain(k) => (k, k),
            KeyFile::Mapped(m) => (&m.env, &m.key),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StageFile {
    pub dir: String,
    pub name: String,
    pub timeout_s: u64,
    pub description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretFile {
    pub name: Spanned<String>,
    pub description: String,
    pub keys: Vec<KeyFile>,
    /// When no value is given, kstrap may generate one (and keeps it on re-runs).
    #[serde(default)]
    pub generate: Option<super::Generate>,
}

/// Parses `stack.yaml` and checks what can be checked without the stage folders.
pub(crate) fn parse(path: &str, folder: &str, text: &str) -> Result<StackFile, StackError> {
    let err = |line: usize, message: String, hint: &str| StackError::StackFile {
        path: path.to_string(),
        line,
        message,
        hint: hint.to_string(),
    };
    let file: StackFile = serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line() as usize).unwrap_or(0);
        let column = e.location().map(|l| l.column() as usize).unwrap_or(0);
        let words = crate::yaml_words::rewrite(&super::yaml::bare_message(&e), text, line, column);
        let message = words.message;
        let hint = if let Some(hint) = words.hint {
            hint
        } else if message.contains("expected one of k3s, k0s") {
            "distros: takes the distributions kstrap installs, k3s and k0s"
        } else if message.contains("unknown field") {
            "remove the field or correct its spelling; manifests/README.md lists the fields of stack.yaml"
        } else if message.contains("untagged enum KeyFile") {
            "write each secret key as NAME or as {env: NAME, key: secret-key}"
        } else if message.contains("missing field") {
            "add the field; a stack states name, description, namespace and stages"
        } else {
            "correct the value's type or the YAML syntax at that place"
        };
        err(line, message, hint)
    })?;
    let line = |s: &serde_saphyr::Location| s.line() as usize;
    if file.name.value != folder {
        return Err(err(
            line(&file.name.referenced),
            format!("name {:?} does not match the folder {folder:?}", file.name.value),
            "rename the folder or the stack so that they agree",
        ));
    }
    if !super::check::is_dns_label(&file.namespace.value) {
        return Err(err(
            line(&file.namespace.referenced),
            format!("namespace {:?} is not a valid name", file.namespace.value),
            "use lowercase letters, digits and '-', at most 63 characters",
        ));
    }
    for (i, ns) in file.namespaces.iter().enumerate() {
        if !super::check::is_dns_label(&ns.value) {
            return Err(err(
                line(&ns.referenced),
                format!("namespaces: {:?} is not a valid name", ns.value),
                "use lowercase letters, digits and '-', at most 63 characters",
            ));
        }
        if ns.value == file.namespace.value || file.namespaces[..i].iter().any(|o| o.value == ns.value) {
            return Err(err(
                line(&ns.referenced),
                format!("namespaces: {} is listed twice (or is the stack's namespace)", ns.value),
                "list each further namespace once; the stack's own is `namespace`",
            ));
        }
    }
    if file.stages.is_empty() {
        return Err(err(
            line(&file.name.referenced),
            "no stages".into(),
            "list the stage folders under stages:, in the order they are applied",
        ));
    }
    for (i, stage) in file.stages.iter().enumerate() {
        let at = line(&stage.referenced);
        let s = &stage.value;
        if !is_stage_dir(&s.dir) {
            return Err(err(
                at,
                format!("stage dir {:?} is not of the form NN-name", s.dir),
                "name stage folders with two digits, '-', and a name: 00-base, 10-storage",
            ));
        }
        if s.timeout_s == 0 || s.timeout_s > 3600 {
            return Err(err(
                at,
                format!("stage {:?}: timeout_s {} is out of range", s.name, s.timeout_s),
                "give the seconds a stage may take to become ready, 1 to 3600",
            ));
        }
        if file.stages[..i]
            .iter()
            .any(|o| o.value.dir == s.dir || o.value.name == s.name)
        {
            return Err(err(
                at,
                format!("stage {:?} ({}) is listed twice", s.name, s.dir),
                "list each stage folder once, with a name of its own",
            ));
        }
    }
    for secret in &file.secrets {
        let at = line(&secret.name.referenced);
        if !super::check::is_dns_label(&secret.name.value) {
            return Err(err(
                at,
                format!("secret name {:?} is not a valid name", secret.name.value),
                "use lowercase letters, digits and '-'",
            ));
        }
        let envs: Vec<&str> = secret.keys.iter().map(|k| k.names().0).collect();
        if envs.is_empty() || envs.iter().any(|k| !is_env_name(k)) {
            return Err(err(
                at,
                format!(
                    "secret {}: keys {envs:?} must be environment variable names",
                    secret.name.value
                ),
                "list one or more keys in UPPER_CASE letters, digits and '_'; each is read from the variable of that name",
            ));
        }
        let mut in_secret: Vec<&str> = Vec::new();
        for k in &secret.keys {
            let key = k.names().1;
            if !is_secret_key(key) {
                return Err(err(
                    at,
                    format!("secret {}: {key:?} is not a valid key of a Secret", secret.name.value),
                    "a Secret's key has letters, digits, '-', '_' and '.', at most 253 characters",
                ));
            }
            if in_secret.contains(&key) {
                return Err(err(
                    at,
                    format!("secret {}: key {key:?} is listed twice", secret.name.value),
                    "list each key of a Secret once",
                ));
            }
            in_secret.push(key);
        }
        if let Some(g) = &secret.generate
            && (!(16..=256).contains(&g.length) || !g.format.contains("{random}"))
        {
            return Err(err(
                at,
                format!(
                    "secret {}: generate needs length 16-256 and a format containing {{random}}",
                    secret.name.value
                ),
                "e.g. generate: {length: 32, format: \"kstrap: {random}\"}",
            ));
        }
    }
    let mut seen_keys: Vec<&str> = file.secrets.iter().flat_map(|s| &s.keys).map(|k| k.names().0).collect();
    let mut seen_containers: Vec<&str> = Vec::new();
    for image in &file.images {
        let at = line(&image.referenced);
        let i = &image.value;
        if !is_env_name(&i.key) {
            return Err(err(
                at,
                format!("images: key {:?} is not an environment variable name", i.key),
                "name the image in UPPER_CASE letters, digits and '_', e.g. GATEWAY_IMAGE; the user gives it as --image KEY=REF or in that variable",
            ));
        }
        if seen_keys.contains(&i.key.as_str()) {
            return Err(err(
                at,
                format!("images: key {} is declared twice (or is also a secret key)", i.key),
                "give each image and each secret a key of its own",
            ));
        }
        seen_keys.push(&i.key);
        if i.description.trim().is_empty() {
            return Err(err(
                at,
                format!("images: {} has no description", i.key),
                "say what the image is and where its users get it: the text is shown when it is missing",
            ));
        }
        if i.containers.is_empty() {
            return Err(err(
                at,
                format!("images: {} names no containers", i.key),
                "list the containers that run it as Kind/name/container, e.g. Deployment/gateway/gateway",
            ));
        }
        for c in &i.containers {
            let parts: Vec<&str> = c.split('/').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                return Err(err(
                    at,
                    format!(
                        "images: {}: container {c:?} is not of the form Kind/name/container",
                        i.key
                    ),
                    "name each container as Kind/name/container, e.g. Deployment/gateway/gateway",
                ));
            }
            if seen_containers.contains(&c.as_str()) {
                return Err(err(
                    at,
                    format!("images: container {c} is listed twice"),
                    "a container runs one image: list it under one key, once",
                ));
            }
            seen_containers.push(c);
        }
    }
    Ok(file)
}

/// A key of a Secret's data: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn is_secret_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(crate) fn is_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `NN-name`: two digits, '-', then lowercase letters, digits and '-'.
pub(crate) fn is_stage_dir(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 3
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && b[2] == b'-'
        && super::check::is_dns_label(&name[3..])
}
