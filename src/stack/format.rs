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
    /// profile name → object (`Kind/name`) → overlay; kept as data, applied by a later step.
    #[serde(default)]
    pub profiles: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
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
    pub name: String,
    pub description: String,
    pub keys: Vec<String>,
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
    Ok(file)
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
