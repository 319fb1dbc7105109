//! `stack.yaml`: a stack's name, namespace, ordered stages, per-profile sizing and the secrets it
//! needs. Parsed strictly (unknown fields are errors with a line), because a typo in a stage list
//! or a timeout must stop kstrap rather than silently change what gets applied.

use super::StackError;
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
    #[serde(default)]
    pub secrets: Vec<SecretFile>,
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
    pub keys: Vec<String>,
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
        let message = super::yaml::bare_message(&e);
        let hint = if message.contains("unknown field") {
            "remove the field or correct its spelling; manifests/README.md lists the fields of stack.yaml"
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
        if secret.keys.is_empty() || secret.keys.iter().any(|k| !is_env_name(k)) {
            return Err(err(
                at,
                format!(
                    "secret {}: keys {:?} must be environment variable names",
                    secret.name.value, secret.keys
                ),
                "list one or more keys in UPPER_CASE letters, digits and '_'; each is read from the variable of that name",
            ));
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
    Ok(file)
}

fn is_env_name(k: &str) -> bool {
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
