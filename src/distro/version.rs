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
