//! Release versions of k3s and k0s, validated before they go anywhere near a URL.
//!
//! A version names a GitHub release tag, so a wrong one either 404s or, worse, downloads
//! something other than what the plan showed. The k3s install script is known to resolve its
//! channel to the literal word "stable" and then build URLs from it; we refuse anything that is
//! not exactly a stable release tag of the distribution at hand:
//!
//! - k3s: `v1.35.3+k3s1` (`v` MAJOR `.` MINOR `.` PATCH `+k3s` N, N ≥ 1)
//! - k0s: `v1.35.3+k0s.0` (`v` MAJOR `.` MINOR `.` PATCH `+k0s.` N)
//!
//! Release candidates (`v1.35.0-rc1+k3s1`) are refused too: kstrap installs stable releases.

use super::{Distro, DistroError};
use serde::{Serialize, Serializer};

/// A validated release tag of one distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    distro: Distro,
    major: u32,
    minor: u32,
    patch: u32,
    /// The distribution's own build number: the `1` of `+k3s1`, the `0` of `+k0s.0`.
    build: u32,
}

impl Version {
    /// Built from parts known to be valid (the catalog); `parse` is the way in for anything else.
    pub(crate) const fn from_parts(distro: Distro, major: u32, minor: u32, patch: u32, build: u32) -> Version {
        Version {
            distro,
            major,
            minor,
            patch,
            build,
        }
    }

    /// Parses `text` as a stable release tag of `distro`.
    pub fn parse(distro: Distro, text: &str) -> Result<Version, DistroError> {
        let invalid = |why: &str| DistroError::InvalidVersion {
            distro,
            value: text.to_string(),
            why: why.to_string(),
            example: example(distro),
        };
        let Some(rest) = text.strip_prefix('v') else {
            return Err(invalid("a release tag starts with 'v'"));
        };
        let Some((kube, suffix)) = rest.split_once('+') else {
            return Err(invalid(&format!(
                "a {distro} release tag ends in the build suffix {}",
                suffix_hint(distro)
            )));
        };
        let parts: Vec<&str> = kube.split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            return Err(invalid(
                "the Kubernetes part must be MAJOR.MINOR.PATCH (pre-releases are not installed)",
            ));
        };
        let number = |s: &str, what: &str| -> Result<u32, DistroError> {
            parse_number(s).ok_or_else(|| invalid(&format!("{what} {s:?} is not a number")))
        };
        let (major, minor, patch) = (
            number(major, "major")?,
            number(minor, "minor")?,
            number(patch, "patch")?,
        );
        let build_text = match distro {
            Distro::K3s => suffix.strip_prefix("k3s"),
            Distro::K0s => suffix.strip_prefix("k0s."),
        };
        let Some(build_text) = build_text else {
            return Err(invalid(&format!(
                "the build suffix must be {}, not +{suffix}",
                suffix_hint(distro)
            )));
        };
        let build = number(build_text, "build")?;
        if distro == Distro::K3s && build == 0 {
            return Err(invalid("k3s build numbers start at 1 (+k3s1)"));
        }
        if major != 1 {
            return Err(invalid("only Kubernetes 1.x releases exist"));
        }
        Ok(Version {
            distro,
            major,
            minor,
            patch,
            build,
        })
    }

    pub fn distro(&self) -> Distro {
        self.distro
    }

    /// Kubernetes minor version (35 for v1.35.3); release asset names changed across minors.
    pub fn minor(&self) -> u32 {
        self.minor
    }

    /// The tag with `+` percent-encoded, for use as a URL path segment (`v1.35.3%2Bk3s1`).
    pub fn url_segment(&self) -> String {
        super::encode_segment(&self.to_string())
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Version {
            major,
            minor,
            patch,
            build,
            ..
        } = self;
        match self.distro {
            Distro::K3s => write!(f, "v{major}.{minor}.{patch}+k3s{build}"),
            Distro::K0s => write!(f, "v{major}.{minor}.{patch}+k0s.{build}"),
        }
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why moving an install from `from` to `to` is refused, or `None` when it is a supported step:
/// the same version, a newer patch or build of the same minor, or the next minor.
///
/// Kubernetes' version skew policy (kubernetes.io/releases/version-skew-policy, "Supported
/// component upgrade order") upgrades the API server one minor version at a time: before it
/// moves to 1.35, every instance must be at 1.34. Nothing supports going back: a newer API server
/// may already have stored objects in versions the older one cannot read. k0s says the same of
/// its releases ("upgrades proceed one minor at a time", docs.k0sproject.io
/// `version-skew-policy`), and k3s's upgrade guide follows the Kubernetes policy.
pub fn upgrade_refusal(from: &Version, to: &Version) -> Option<String> {
    if from.distro != to.distro {
        return Some(format!("{from} and {to} are releases of different distributions"));
    }
    if to < from {
        return Some(format!(
            "{to} is older than the installed {from}: Kubernetes does not support downgrades (the newer API server may have stored objects the older one cannot read); keep {from}, or `kstrap down` and install {to} afresh (its data is lost)"
        ));
    }
    if to.major == from.major && to.minor > from.minor + 1 {
        let steps: Vec<String> = upgrade_minors(from, to).iter().map(|m| format!("v1.{m}")).collect();
        return Some(format!(
            "{from} → {to} skips {} minor version(s): Kubernetes upgrades one minor at a time (version skew policy); go {} with one `kstrap up --upgrade --distro-version <the latest v1.{}.x release>` per step",
            to.minor - from.minor - 1,
            steps.join(" → "),
            from.minor + 1
        ));
    }
    None
}

/// The minors an upgrade from `from` to `to` passes through, `from`'s first and `to`'s last
/// (`[33, 34, 35]` for v1.33 → v1.35); a single entry when the minor does not change.
pub fn upgrade_minors(from: &Version, to: &Version) -> Vec<u32> {
    (from.minor..=to.minor.max(from.minor)).collect()
}

/// ASCII digits only, no sign, no leading zero (so that the tag prints back exactly as given).
fn parse_number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn suffix_hint(distro: Distro) -> &'static str {
    match distro {
        Distro::K3s => "+k3sN",
        Distro::K0s => "+k0s.N",
    }
}

fn example(distro: Distro) -> String {
    distro.default_version().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_go_forward_one_minor_at_a_time() {
        let k3s = |t: &str| Version::parse(Distro::K3s, t).unwrap();
        let from = k3s("v1.34.2+k3s1");
        for ok in ["v1.34.2+k3s1", "v1.34.2+k3s2", "v1.34.5+k3s1", "v1.35.3+k3s1"] {
            assert_eq!(upgrade_refusal(&from, &k3s(ok)), None, "{ok}");
        }
        let down = upgrade_refusal(&from, &k3s("v1.34.1+k3s1")).expect("a patch downgrade is refused");
        assert!(down.contains("older than the installed v1.34.2+k3s1"), "{down}");
        assert!(upgrade_refusal(&from, &k3s("v1.33.9+k3s1")).is_some());
        let jump = upgrade_refusal(&from, &k3s("v1.36.0+k3s1")).expect("a two-minor jump is refused");
        assert!(jump.contains("skips 1 minor"), "{jump}");
        assert!(jump.contains("v1.34 → v1.35 → v1.36"), "{jump}");
        assert_eq!(upgrade_minors(&from, &k3s("v1.36.0+k3s1")), vec![34, 35, 36]);
        let k0s = Version::parse(Distro::K0s, "v1.35.3+k0s.0").unwrap();
        assert!(
            upgrade_refusal(&from, &k0s).is_some(),
            "another distribution is not an upgrade"
        );
    }

    #[test]
    fn valid_versions_round_trip() {
        let table = [
            (Distro::K3s, "v1.33.4+k3s1"),
            (Distro::K3s, "v1.35.3+k3s1"),
            (Distro::K3s, "v1.35.0+k3s3"),
            (Distro::K3s, "v1.9.10+k3s12"),
            (Distro::K0s, "v1.33.4+k0s.0"),
            (Distro::K0s, "v1.35.3+k0s.0"),
            (Distro::K0s, "v1.32.5+k0s.1"),
        ];
        for (distro, text) in table {
            let v = Version::parse(distro, text).unwrap_or_else(|e| panic!("{text} should be valid for {distro}: {e}"));
            assert_eq!(v.to_string(), text);
            assert_eq!(v.distro(), distro);
        }
    }

    #[test]
    fn invalid_versions_are_refused_with_value_and_example() {
        let table = [
            (Distro::K3s, "stable"),
            (Distro::K3s, "latest"),
            (Distro::K3s, "1.33.4"),
            (Distro::K3s, "v1.33"),
            (Distro::K3s, ""),
            (Distro::K3s, "   "),
            (Distro::K3s, " v1.33.4+k3s1"),
            (Distro::K3s, "v1.33.4+k3s1\n"),
            (Distro::K3s, "v1.33.4+k0s.0"),
            (Distro::K3s, "v1.33.4"),
            (Distro::K3s, "v1.33.4+k3s"),
            (Distro::K3s, "v1.33.4+k3s0"),
            (Distro::K3s, "v1.33.4-rc1+k3s1"),
            (Distro::K3s, "v1.33.4+k3s1/../../x"),
            (Distro::K3s, "v1.033.4+k3s1"),
            (Distro::K3s, "v1.-3.4+k3s1"),
            (Distro::K3s, "v2.0.0+k3s1"),
            (Distro::K3s, "v1.33.4.1+k3s1"),
            (Distro::K3s, "v1.33.99999999999+k3s1"),
            (Distro::K0s, "v1.33.4+k3s1"),
            (Distro::K0s, "v1.33.4+k0s"),
            (Distro::K0s, "v1.33.4+k0s0"),
            (Distro::K0s, "1.33.4+k0s.0"),
            (Distro::K0s, "stable"),
            (Distro::K0s, "v1.33.4+k0s.x"),
        ];
        for (distro, text) in table {
            let err = match Version::parse(distro, text) {
                Ok(v) => panic!("{text:?} should be refused for {distro}, got {v}"),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains(&format!("{text:?}")),
                "error for {text:?} should show the value: {err}"
            );
            let example = distro.default_version().to_string();
            assert!(
                err.contains(&example),
                "error for {text:?} should show an example: {err}"
            );
        }
    }

    #[test]
    fn url_segment_encodes_plus() {
        let v = Version::parse(Distro::K3s, "v1.33.4+k3s1").unwrap();
        assert_eq!(v.url_segment(), "v1.33.4%2Bk3s1");
        let v = Version::parse(Distro::K0s, "v1.33.4+k0s.0").unwrap();
        assert_eq!(v.url_segment(), "v1.33.4%2Bk0s.0");
    }

    #[test]
    fn serializes_as_the_tag() {
        let v = Version::parse(Distro::K0s, "v1.35.3+k0s.0").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"v1.35.3+k0s.0\"");
    }
}
