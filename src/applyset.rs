//! The inventory of what kstrap applied, following the ApplySet convention (KEP-3659), so that a
//! re-apply can prune objects that left the stack and `down` can remove exactly what was applied.
//!
//! The parent is a Secret `applyset-<stack>` in `kube-system` carrying the label
//! `applyset.kubernetes.io/id` = `applyset-<base64url(sha256("<name>.<namespace>.<kind>.<group>"))>-v1`
//! and the annotations `applyset.kubernetes.io/tooling` (`kstrap/v<version>`),
//! `applyset.kubernetes.io/contains-group-kinds` (sorted `Kind.group` list) and
//! `applyset.kubernetes.io/additional-namespaces` (sorted). Every member carries
//! `applyset.kubernetes.io/part-of=<id>` and `app.kubernetes.io/managed-by=kstrap`; pruning only
//! ever lists by that label, so objects kstrap did not apply are never touched.
//!
//! Why `kube-system` and not the stack's namespace: the stack creates its namespace itself (in
//! its first stage), so a parent inside it could not be written before the first member, and
//! pruning that namespace would delete the inventory with it. With the parent outside, every
//! namespace the stack uses (its own included) is listed in `additional-namespaces`, which the
//! KEP allows. Everything here is pure: names, labels, annotations and set arithmetic.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

pub const ID_LABEL: &str = "applyset.kubernetes.io/id";
pub const PART_OF_LABEL: &str = "applyset.kubernetes.io/part-of";
pub const TOOLING_ANNOTATION: &str = "applyset.kubernetes.io/tooling";
pub const GROUP_KINDS_ANNOTATION: &str = "applyset.kubernetes.io/contains-group-kinds";
pub const NAMESPACES_ANNOTATION: &str = "applyset.kubernetes.io/additional-namespaces";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "kstrap";
/// The namespace the parent Secret lives in (always present on k3s, k0s and every conformant
/// cluster).
pub const PARENT_NAMESPACE: &str = "kube-system";

/// `kstrap/v0.1.0`: the tooling annotation value (`<tool>/<semver>`).
pub fn tooling() -> String {
    format!("kstrap/v{}", env!("CARGO_PKG_VERSION"))
}

/// The group and kind of an object type, as the ApplySet annotations write it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

impl GroupKind {
    pub fn new(group: &str, kind: &str) -> Self {
        GroupKind {
            group: group.to_string(),
            kind: kind.to_string(),
        }
    }

    /// From an object's `apiVersion` and `kind`.
    pub fn of(api_version: &str, kind: &str) -> Self {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        GroupKind::new(group, kind)
    }

    /// `Deployment.apps`, `ConfigMap` (core group: no suffix).
    pub fn encode(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The inverse of [`encode`](Self::encode): the kind is everything before the first dot.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        Some(match s.split_once('.') {
            Some((kind, group)) => GroupKind::new(group, kind),
            None => GroupKind::new("", s),
        })
    }
}

/// The parent object of one stack's ApplySet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplySet {
    pub name: String,
    pub namespace: String,
    pub id: String,
}

impl ApplySet {
    /// The ApplySet of stack `stack`.
    pub fn for_stack(stack: &str) -> Self {
        let name = format!("applyset-{stack}");
        let namespace = PARENT_NAMESPACE.to_string();
        let id = applyset_id(&name, &namespace, "Secret", "");
        ApplySet { name, namespace, id }
    }

    /// `applyset.kubernetes.io/part-of=<id>`: the selector for every member.
    pub fn member_selector(&self) -> String {
        format!("{PART_OF_LABEL}={}", self.id)
    }

    /// The parent Secret as it is server-side applied: labels and annotations only, no data.
    pub fn parent_object(&self, group_kinds: &BTreeSet<GroupKind>, namespaces: &BTreeSet<String>) -> Value {
        let gks: Vec<String> = group_kinds.iter().map(GroupKind::encode).collect();
        let mut sorted_gks = gks;
        sorted_gks.sort();
        let ns: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": { ID_LABEL: self.id, MANAGED_BY_LABEL: MANAGED_BY },
                "annotations": {
                    TOOLING_ANNOTATION: tooling(),
                    GROUP_KINDS_ANNOTATION: sorted_gks.join(","),
                    NAMESPACES_ANNOTATION: ns.join(","),
                }
            },
            "type": "Opaque"
        })
    }

    /// Adds the member labels to an object about to be applied. An object that already names
    /// another ApplySet is refused (the KEP forbids one object in two sets).
    pub fn label_member(&self, obj: &mut Value) -> Result<(), String> {
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Err("the object has no metadata".into());
        };
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if labels.is_null() {
            *labels = json!({});
        }
        let Some(labels) = labels.as_object_mut() else {
            return Err("metadata.labels is not a mapping".into());
        };
        if let Some(existing) = labels.get(PART_OF_LABEL).and_then(Value::as_str)
            && existing != self.id
        {
            return Err(format!(
                "it already carries the label {PART_OF_LABEL}={existing}; remove that label from the manifest (kstrap sets it)"
            ));
        }
        labels.insert(PART_OF_LABEL.into(), Value::String(self.id.clone()));
        labels.insert(MANAGED_BY_LABEL.into(), Value::String(MANAGED_BY.into()));
        Ok(())
    }
}

/// What an existing parent records: the group kinds and namespaces of the last apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    pub group_kinds: BTreeSet<GroupKind>,
    pub namespaces: BTreeSet<String>,
}

/// Why an existing object cannot serve as our parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentProblem {
    /// Another tool owns it (KEP: tooling must refuse to mutate another tool's ApplySet).
    OtherTooling(String),
    /// It exists without our id label, or with another id.
    WrongId(Option<String>),
}

/// Reads a parent object fetched from the cluster.
pub fn read_parent(set: &ApplySet, parent: &Value) -> Result<Recorded, ParentProblem> {
    let meta = parent.get("metadata");
    let label = meta
        .and_then(|m| m.get("labels"))
        .and_then(|l| l.get(ID_LABEL))
        .and_then(Value::as_str);
    if label != Some(set.id.as_str()) {
        return Err(ParentProblem::WrongId(label.map(str::to_string)));
    }
    let ann = |key: &str| {
        meta.and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    };
    if let Some(tool) = ann(TOOLING_ANNOTATION) {
        let base = tool.rsplit_once('/').map(|(b, _)| b).unwrap_or(tool);
        if base != "kstrap" {
            return Err(ParentProblem::OtherTooling(tool.to_string()));
        }
    }
    let group_kinds = ann(GROUP_KINDS_ANNOTATION)
        .unwrap_or("")
        .split(',')
        .filter_map(GroupKind::parse)
        .collect();
    let namespaces = ann(NAMESPACES_ANNOTATION)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Ok(Recorded {
        group_kinds,
        namespaces,
    })
}

/// Whether the live parent (as read) already is `desired` (from [`ApplySet::parent_object`]):
/// its type, labels and annotations all there with the same values. A parent always carries the
/// same label and annotation keys, so nothing could be removed by applying it: applying it again
/// would change nothing, and kstrap sends no request.
pub fn parent_is_current(live: Option<&Value>, desired: &Value) -> bool {
    let Some(live) = live else {
        return false;
    };
    let same = |key: &str| {
        let want = desired["metadata"][key].as_object();
        let have = live["metadata"][key].as_object();
        match (want, have) {
            (Some(want), Some(have)) => want.iter().all(|(k, v)| have.get(k) == Some(v)),
            (None, _) => true,
            (Some(want), None) => want.is_empty(),
        }
    };
    live["type"] == desired["type"] && same("labels") && same("annotations")
}

/// `applyset-<base64url(sha256("<name>.<namespace>.<kind>.<group>"))>-v1`, as kubectl computes it.
pub fn applyset_id(name: &str, namespace: &str, kind: &str, group: &str) -> String {
    let digest = Sha256::digest(format!("{name}.{namespace}.{kind}.{group}").as_bytes());
    format!("applyset-{}-v1", base64url(&digest))
}

/// RFC 4648 §5 base64 with the URL-safe alphabet and no padding (Go's `RawURLEncoding`).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
}

/// One object found in the cluster with our part-of label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub group_kind: GroupKind,
    pub namespace: Option<String>,
    pub name: String,
}

/// The members found in the cluster that the current stack no longer has, in deletion order:
/// namespaced objects, then cluster-scoped ones, then Namespaces, then CRDs last (their custom
/// resources go first).
pub fn to_prune(found: &[Member], keep: &BTreeSet<Member>) -> Vec<Member> {
    let rank = |m: &Member| match (m.group_kind.group.as_str(), m.group_kind.kind.as_str(), &m.namespace) {
        (_, _, Some(_)) => 0,
        ("apiextensions.k8s.io", "CustomResourceDefinition", None) => 3,
        ("", "Namespace", None) => 2,
        _ => 1,
    };
    let mut out: Vec<Member> = found.iter().filter(|m| !keep.contains(m)).cloned().collect();
    out.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        // RFC 4648 §10 test vectors, without padding.
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(b"fooba"), "Zm9vYmE");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        // URL-safe alphabet: 0xfb 0xff → "-_8" (standard would be "+/8").
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn id_follows_the_kep_formula() {
        // sha256("applyset-voice-ai.kube-system.Secret.") computed independently:
        // printf 'applyset-voice-ai.kube-system.Secret.' | sha256sum | xxd -r -p | base64 | tr '+/' '-_' | tr -d =
        let id = ApplySet::for_stack("voice-ai").id;
        assert_eq!(id, "applyset-".to_string() + EXPECTED_VOICE_AI + "-v1");
        assert!(id.len() <= 63, "a label value is at most 63 characters: {id}");
        // A different stack gets a different id.
        assert_ne!(ApplySet::for_stack("other").id, id);
    }

    const EXPECTED_VOICE_AI: &str = include_str!("testdata/voice-ai-applyset-id.txt");

    #[test]
    fn group_kinds_encode_and_parse() {
        let gk = GroupKind::of("apps/v1", "Deployment");
        assert_eq!(gk.encode(), "Deployment.apps");
        assert_eq!(GroupKind::parse("Deployment.apps"), Some(gk));
        let core = GroupKind::of("v1", "ConfigMap");
        assert_eq!(core.encode(), "ConfigMap");
        assert_eq!(GroupKind::parse("ConfigMap"), Some(core));
        let crd = GroupKind::parse("CustomResourceDefinition.apiextensions.k8s.io");
        assert_eq!(
            crd,
            Some(GroupKind::new("apiextensions.k8s.io", "CustomResourceDefinition"))
        );
        assert_eq!(GroupKind::parse(" "), None);
    }

    #[test]
    fn parent_round_trips_through_read_parent() {
        let set = ApplySet::for_stack("demo");
        let gks: BTreeSet<_> = [GroupKind::of("apps/v1", "Deployment"), GroupKind::of("v1", "ConfigMap")]
            .into_iter()
            .collect();
        let ns: BTreeSet<_> = ["demo".to_string(), "extra".to_string()].into_iter().collect();
        let parent = set.parent_object(&gks, &ns);
        assert_eq!(parent["metadata"]["namespace"], "kube-system");
        assert_eq!(
            parent["metadata"]["annotations"][GROUP_KINDS_ANNOTATION],
            "ConfigMap,Deployment.apps"
        );
        assert_eq!(parent["metadata"]["annotations"][NAMESPACES_ANNOTATION], "demo,extra");
        assert!(
            parent["metadata"]["annotations"][TOOLING_ANNOTATION]
                .as_str()
                .unwrap()
                .starts_with("kstrap/v")
        );
        let rec = read_parent(&set, &parent).unwrap();
        assert_eq!(rec.group_kinds, gks);
        assert_eq!(rec.namespaces, ns);
    }

    #[test]
    fn read_parent_refuses_other_tools_and_ids() {
        let set = ApplySet::for_stack("demo");
        let mut parent = set.parent_object(&BTreeSet::new(), &BTreeSet::new());
        parent["metadata"]["annotations"][TOOLING_ANNOTATION] = json!("kubectl/v1.33");
        assert_eq!(
            read_parent(&set, &parent),
            Err(ParentProblem::OtherTooling("kubectl/v1.33".into()))
        );
        parent["metadata"]["labels"][ID_LABEL] = json!("applyset-other-v1");
        assert_eq!(
            read_parent(&set, &parent),
            Err(ParentProblem::WrongId(Some("applyset-other-v1".into())))
        );
        let empty = set.parent_object(&BTreeSet::new(), &BTreeSet::new());
        assert_eq!(read_parent(&set, &empty).unwrap(), Recorded::default());
    }

    #[test]
    fn label_member_adds_labels_and_refuses_a_foreign_set() {
        let set = ApplySet::for_stack("demo");
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
        set.label_member(&mut obj).unwrap();
        assert_eq!(obj["metadata"]["labels"][PART_OF_LABEL], set.id.as_str());
        assert_eq!(obj["metadata"]["labels"][MANAGED_BY_LABEL], "kstrap");
        // Idempotent, and keeps the user's labels.
        obj["metadata"]["labels"]["app"] = json!("x");
        set.label_member(&mut obj).unwrap();
        assert_eq!(obj["metadata"]["labels"]["app"], "x");

        let mut foreign = json!({"metadata": {"name": "b", "labels": {PART_OF_LABEL: "applyset-x-v1"}}});
        let err = set.label_member(&mut foreign).unwrap_err();
        assert!(err.contains("applyset-x-v1"), "{err}");
        let mut bad = json!({"metadata": {"name": "c", "labels": ["x"]}});
        assert!(set.label_member(&mut bad).is_err());
        let mut none = json!({"kind": "ConfigMap"});
        assert!(set.label_member(&mut none).is_err());
    }

    #[test]
    fn to_prune_keeps_current_members_and_orders_deletions() {
        let m = |g: &str, k: &str, ns: Option<&str>, n: &str| Member {
            group_kind: GroupKind::new(g, k),
            namespace: ns.map(str::to_string),
            name: n.into(),
        };
        let found = vec![
            m(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                None,
                "widgets.example.com",
            ),
            m("", "Namespace", None, "old"),
            m("", "ConfigMap", Some("demo"), "keep"),
            m("", "ConfigMap", Some("demo"), "gone"),
            m("rbac.authorization.k8s.io", "ClusterRole", None, "gone-role"),
        ];
        let keep: BTreeSet<_> = [m("", "ConfigMap", Some("demo"), "keep")].into_iter().collect();
        let names: Vec<_> = to_prune(&found, &keep).into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["gone", "gone-role", "old", "widgets.example.com"]);
    }

    #[test]
    fn a_parent_with_the_same_labels_and_annotations_is_current() {
        let set = ApplySet::for_stack("tiny");
        let gks: BTreeSet<GroupKind> = ["Deployment", "Namespace"]
            .iter()
            .filter_map(|k| GroupKind::parse(k))
            .collect();
        let ns: BTreeSet<String> = ["tiny".to_string()].into();
        let desired = set.parent_object(&gks, &ns);
        assert!(!parent_is_current(None, &desired), "no parent yet");
        // As read back: the server adds metadata of its own.
        let mut live = desired.clone();
        live["metadata"]["resourceVersion"] = json!("42");
        live["metadata"]["labels"]["other"] = json!("x");
        assert!(parent_is_current(Some(&live), &desired));
        let fewer = set.parent_object(&gks, &BTreeSet::new());
        assert!(!parent_is_current(Some(&live), &fewer), "a namespace left the stack");
        let mut other = live.clone();
        other["metadata"]["annotations"][TOOLING_ANNOTATION] = json!("kstrap/v0.0.0-older");
        assert!(!parent_is_current(Some(&other), &desired), "another kstrap version");
        other = live.clone();
        other["type"] = json!("kubernetes.io/tls");
        assert!(!parent_is_current(Some(&other), &desired));
    }
}
