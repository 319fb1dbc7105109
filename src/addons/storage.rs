//! The `local-path-storage` add-on: Rancher's local-path provisioner and the default StorageClass
//! `local-path` on k0s, which ships no storage provisioner (k3s bundles the same provisioner).
//!
//! The objects are plain YAML in `addons/local-path-storage/`, embedded in the binary and loaded
//! by the stack loader, so they get the same checks as every stack. What is decided here: when
//! the add-on would fight with storage the cluster already has ([`conflict`]).

use crate::applyset::{ApplySet, PART_OF_LABEL};
use crate::stack::{self, Stack, StackError};
use include_dir::{Dir, include_dir};
use serde_json::Value;

/// The add-ons folder of the repository, built into the binary.
pub(crate) static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/addons");
/// The repository folder of [`EMBEDDED`], for messages.
pub(crate) const FOLDER: &str = "addons";

/// The add-on's stack name (and ApplySet).
pub const STACK: &str = "local-path-storage";
/// The StorageClass it makes, the cluster's default.
pub const STORAGE_CLASS: &str = "local-path";
/// Where volumes live on the host (`config.json` of ConfigMap `local-path-config`): inside k0s's
/// data directory, so `kstrap down` removes them with it and `--keep-data` keeps them.
pub const VOLUME_DIR: &str = "/var/lib/k0s/local-path-provisioner";

const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// The add-on's stack, as checked by the stack loader.
pub fn stack() -> Result<Stack, StackError> {
    stack::load_embedded(&EMBEDDED, FOLDER, STACK)
}

/// The add-on's stack with its volumes in `volume_dir` (k0s's data directory moved with
/// `--data-dir`, `crate::distro::data_dir::volume_dir`): the one path of ConfigMap
/// `local-path-config`'s `config.json` (its `nodePathMap`, as the provisioner reads it) is
/// replaced. The default directory leaves the stack as loaded.
pub fn stack_in(volume_dir: &str) -> Result<Stack, StackError> {
    let mut stack = stack()?;
    if volume_dir == VOLUME_DIR {
        return Ok(stack);
    }
    let slot = stack
        .stages
        .iter_mut()
        .flat_map(|s| s.objects.iter_mut())
        .find(|o| o.reference.kind == "ConfigMap" && o.reference.name == "local-path-config")
        .and_then(|o| o.value.pointer_mut("/data/config.json"));
    if let Some(slot) = slot
        && let Some(text) = slot.as_str()
    {
        let moved = text.replace(&format!("\"{VOLUME_DIR}\""), &format!("\"{volume_dir}\""));
        *slot = Value::String(moved);
    }
    Ok(stack)
}

fn is_default(class: &Value) -> bool {
    let ann = |k: &str| {
        class
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
    };
    ann(DEFAULT_CLASS) == Some("true") || ann(BETA_DEFAULT_CLASS) == Some("true")
}

/// Whether kstrap applied this StorageClass as a member of the add-on's ApplySet.
fn is_ours(class: &Value) -> bool {
    let id = ApplySet::for_stack(STACK).id;
    class
        .pointer("/metadata/labels")
        .and_then(|l| l.get(PART_OF_LABEL))
        .and_then(Value::as_str)
        == Some(id.as_str())
}

/// Why the add-on must not be installed on a cluster with these StorageClasses, if it must not:
/// another default class (a second default makes the class of a claim that names none depend on
/// the API server's choice), or a class named `local-path` that kstrap did not make (applying
/// ours would take it over). The add-on's own class, from an earlier run, is no reason.
pub fn conflict(classes: &[Value]) -> Option<String> {
    let name = |c: &Value| {
        c.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let theirs: Vec<&Value> = classes.iter().filter(|c| !is_ours(c)).collect();
    if let Some(c) = theirs.iter().find(|c| is_default(c)) {
        return Some(format!(
            "StorageClass {} is already the cluster's default; kstrap adds no second default",
            name(c)
        ));
    }
    if theirs.iter().any(|c| name(c) == STORAGE_CLASS) {
        return Some(format!(
            "a StorageClass {STORAGE_CLASS} that kstrap did not install exists; kstrap leaves it alone"
        ));
    }
    None
}
