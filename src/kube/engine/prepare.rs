//! Turning a loaded stack into objects ready to apply: each labelled as a member of the stack's
//! ApplySet, with where it came from (file, document, line) for error messages, in phase order.

use serde_json::Value;
use std::time::Duration;

use super::ApplyError;
use crate::applyset::{ApplySet, GroupKind};
use crate::stack::Stack;

/// One object ready to apply: labelled, with where it came from.
#[derive(Debug, Clone)]
pub(super) struct Prepared {
    pub(super) display: String,
    pub(super) source: String,
    pub(super) document: usize,
    pub(super) line: usize,
    pub(super) api_version: String,
    pub(super) kind: String,
    pub(super) namespace: Option<String>,
    pub(super) name: String,
    pub(super) value: Value,
}

impl Prepared {
    pub(super) fn group_kind(&self) -> GroupKind {
        GroupKind::of(&self.api_version, &self.kind)
    }

    pub(super) fn is_crd(&self) -> bool {
        self.kind == "CustomResourceDefinition" && self.api_version.starts_with("apiextensions.k8s.io/")
    }

    pub(super) fn first_phase(&self) -> bool {
        self.is_crd() || (self.kind == "Namespace" && self.api_version == "v1")
    }

    pub(super) fn unknown_kind(&self) -> ApplyError {
        ApplyError::UnknownKind {
            source_file: self.source.clone(),
            document: self.document,
            line: self.line,
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
        }
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// (apiVersion, kind) pairs a CRD object defines.
pub(super) fn crd_kinds(crd: &Value) -> Vec<(String, String)> {
    let group = str_at(crd, "/spec/group");
    let kind = str_at(crd, "/spec/names/kind");
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .map(|ver| (format!("{group}/{ver}"), kind.to_string()))
        .collect()
}

/// The stack's stages as labelled objects; `extra` (the stack's Secrets) go first in stage one.
pub(super) fn prepare(
    stack: &Stack,
    extra: Vec<Value>,
    set: &ApplySet,
) -> Result<Vec<(String, Duration, Vec<Prepared>)>, ApplyError> {
    let mut stages = Vec::new();
    let mut extra = Some(extra);
    for stage in &stack.stages {
        let mut objs = Vec::new();
        let first = extra.take().unwrap_or_default();
        let extra_iter = first
            .into_iter()
            .map(|v| (true, "(a Secret the stack declares)".to_string(), 0, 0, v));
        let stage_iter = stage
            .objects
            .iter()
            .map(|o| (false, o.source.clone(), o.document, o.line, o.value.clone()));
        let mut secrets = Vec::new();
        for (is_extra, source, document, line, mut value) in extra_iter.chain(stage_iter) {
            if is_extra
                && value.pointer("/metadata/namespace").is_none()
                && let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut)
            {
                meta.insert("namespace".into(), Value::String(stack.namespace.clone()));
            }
            set.label_member(&mut value).map_err(|message| ApplyError::Invalid {
                source_file: source.clone(),
                document,
                line,
                message,
            })?;
            let namespace = value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            let kind = str_at(&value, "/kind").to_string();
            let name = str_at(&value, "/metadata/name").to_string();
            let display = match &namespace {
                Some(ns) => format!("{kind}/{name} -n {ns}"),
                None => format!("{kind}/{name}"),
            };
            let p = Prepared {
                display,
                source,
                document,
                line,
                api_version: str_at(&value, "/apiVersion").to_string(),
                kind,
                namespace,
                name,
                value,
            };
            if is_extra {
                secrets.push(p);
            } else {
                objs.push(p);
            }
        }
        // Secrets of the stack after its Namespaces (they live in one), before everything else.
        let at = objs.iter().take_while(|o| o.first_phase()).count();
        objs.splice(at..at, secrets);
        let timeout = Duration::from_secs(stage.timeout_s);
        stages.push((stage.name.clone(), timeout, objs));
    }
    Ok(stages)
}
