//! A PersistentVolumeClaim whose size the stack changes (another profile sizes it otherwise).
//!
//! The API server lets only a bound claim change its requested size, and only upwards: below
//! `status.capacity` it refuses (422 `spec.resources.requests.storage: Forbidden: field can not
//! be less than status.capacity`), an unbound claim's spec is immutable ("spec is immutable after
//! creation except resources.requests and volumeAttributesClassName for bound claims"), and a
//! growth needs a StorageClass with `allowVolumeExpansion: true` (k8s.io/kubernetes v1.36
//! pkg/apis/core/validation/validation.go `ValidatePersistentVolumeClaimUpdate`;
//! plugin/pkg/admission/storage/persistentvolume/resize). k3s's local-path class does not allow
//! expansion (and does not enforce a size at all: its volumes are host folders).
//!
//! So kstrap never shrinks a claim (its data stays, at its size), grows a bound one only where the
//! class allows it, and otherwise keeps the size the claim has and says why.

use serde_json::Value;

use super::noop::parse_quantity;

/// A claim the stack asks for at another size than it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeChange {
    /// The size the live claim requests.
    pub live: String,
    /// The size the stack asks for.
    pub want: String,
    /// Whether the stack asks for more.
    pub grow: bool,
    /// Whether the claim is bound (only a bound claim can change its size).
    pub bound: bool,
    /// The claim's StorageClass (the server fills in the default one).
    pub class: Option<String>,
}

fn storage(v: &Value) -> Option<&str> {
    v.pointer("/spec/resources/requests/storage").and_then(Value::as_str)
}

/// The size change `desired` asks of the `live` claim; None when the sizes are equal (or one is
/// missing or not a quantity: the API server then judges the apply).
pub fn size_change(live: &Value, desired: &Value) -> Option<SizeChange> {
    let (have, want) = (storage(live)?, storage(desired)?);
    let (h, w) = (parse_quantity(have)?, parse_quantity(want)?);
    if h == w {
        return None;
    }
    Some(SizeChange {
        live: have.to_string(),
        want: want.to_string(),
        grow: w > h,
        bound: live.pointer("/status/phase").and_then(Value::as_str) == Some("Bound"),
        class: live
            .pointer("/spec/storageClassName")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Why the claim keeps its size, or None when the change is applied (a bound claim grows on a
/// class that allows expansion). `class_expands`: the class's `allowVolumeExpansion`.
pub fn keep_reason(change: &SizeChange, class_expands: bool) -> Option<String> {
    let SizeChange {
        live,
        want,
        grow,
        bound,
        class,
    } = change;
    if !grow {
        return Some(format!(
            "kept at {live}: the stack asks for {want}, and a claim never shrinks (its data stays)"
        ));
    }
    if !bound {
        return Some(format!(
            "kept at {live}: the stack asks for {want}, and only a bound claim can grow"
        ));
    }
    if !class_expands {
        let class = class.as_deref().unwrap_or("(none)");
        return Some(format!(
            "kept at {live}: the stack asks for {want}, and StorageClass {class} does not allow volume expansion; to get {want}, delete the claim (its data goes with it) and apply again"
        ));
    }
    None
}

/// `desired` asking for `size` instead.
pub fn with_size(desired: &Value, size: &str) -> Value {
    let mut v = desired.clone();
    if let Some(requests) = v.pointer_mut("/spec/resources/requests").and_then(Value::as_object_mut) {
        requests.insert("storage".into(), Value::String(size.to_string()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(size: &str, phase: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "m", "namespace": "d"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                        "resources": {"requests": {"storage": size}}},
               "status": {"phase": phase}})
    }

    #[test]
    fn equal_sizes_in_other_words_are_no_change() {
        assert_eq!(size_change(&claim("1Gi", "Bound"), &claim("1024Mi", "")), None);
        assert_eq!(size_change(&claim("5Gi", "Bound"), &claim("5Gi", "")), None);
    }

    #[test]
    fn a_smaller_size_keeps_the_live_one() {
        let c = size_change(&claim("20Gi", "Bound"), &claim("5Gi", "")).unwrap();
        assert!(!c.grow && c.bound);
        let why = keep_reason(&c, true).unwrap();
        assert_eq!(
            why,
            "kept at 20Gi: the stack asks for 5Gi, and a claim never shrinks (its data stays)"
        );
        let kept = with_size(&claim("5Gi", ""), &c.live);
        assert_eq!(kept["spec"]["resources"]["requests"]["storage"], "20Gi");
        assert_eq!(size_change(&claim("20Gi", "Bound"), &kept), None);
    }

    #[test]
    fn a_bigger_size_grows_only_a_bound_claim_on_an_expanding_class() {
        let c = size_change(&claim("5Gi", "Bound"), &claim("20Gi", "")).unwrap();
        assert!(c.grow);
        assert_eq!(keep_reason(&c, true), None);
        let why = keep_reason(&c, false).unwrap();
        assert!(
            why.starts_with(
                "kept at 5Gi: the stack asks for 20Gi, and StorageClass local-path does not allow volume expansion"
            ),
            "{why}"
        );
        let pending = size_change(&claim("5Gi", "Pending"), &claim("20Gi", "")).unwrap();
        assert_eq!(
            keep_reason(&pending, true).unwrap(),
            "kept at 5Gi: the stack asks for 20Gi, and only a bound claim can grow"
        );
    }

    #[test]
    fn a_size_that_is_not_a_quantity_is_left_to_the_server() {
        assert_eq!(size_change(&claim("lots", "Bound"), &claim("5Gi", "")), None);
        assert_eq!(size_change(&json!({}), &claim("5Gi", "")), None);
    }
}
