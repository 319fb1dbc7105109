//! k3s and k0s as data: release assets, config files, services, paths, uninstall.
//!
//! The planner asks this module what installing a distribution means for a given context and
//! gets plan steps back; nothing here touches the host (no files, no network, no clock), so every
//! decision is visible in `--dry-run` and testable from data. The executor performs the steps.
//!
//! - `version`: release tags, validated (the catalog's defaults live on `Distro`).
//! - `k3s`, `k0s`: each distribution's files, commands and steps.
//! - here: what both share — paths, release asset URLs, architecture names, the step list.

pub mod data_dir;
pub mod firewall;
pub mod helm;
pub mod join_token;
mod k0s;
mod k3s;
pub mod network;
pub mod proxy;
pub mod rerun;
pub mod uninstall;
mod version;
pub mod worker;

pub mod upgrade;
pub use version::{Version, upgrade_minors, upgrade_refusal};

use crate::plan::step::{Action, ChecksumSource, Mode, Phase, Step};
use crate::profile::ClusterSettings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Distro {
    K3s,
    K0s,
}

impl Distro {
    pub fn name(self) -> &'static str {
        match self {
            Distro::K3s => "k3s",
            Distro::K0s => "k0s",
        }
    }

    /// The release kstrap installs unless told otherwise.
    ///
    /// Both pin Kubernetes v1.35.3 so that a stack behaves the same on either distribution.
    /// Checked against stored copies of public sources (not live):
    /// - k3s v1.35.3+k3s1: k3s-io/docs `docs/release-notes/v1.35.X.md` (released 2026-03-28);
    ///   asset names from k3s-io/k3s `install.sh` (`k3s${SUFFIX}`, `sha256sum-${ARCH}.txt`).
    /// - k0s v1.35.3+k0s.0: named by k0s's AI-conformance evidence page ("captured test runs on
    ///   k0s v1.35.3+k0s.0") and by a Nix package listing its assets `k0s-v1.35.3+k0s.0-amd64` /
    ///   `-arm64` under `github.com/k0sproject/k0s/releases/download/v1.35.3+k0s.0/`; asset and
    ///   `sha256sums.txt` names from k0sproject/k0s `.github/workflows/release.yml`.
    ///
    /// No sha256 is pinned: none was found in an upstream source for these exact versions, so the
    /// checksum comes from each release's own checksum file (`ChecksumSource::ReleaseFile`).
    pub fn default_version(self) -> Version {
        match self {
            Distro::K3s => Version::from_parts(Distro::K3s, 1, 35, 3, 1),
            Distro::K0s => Version::from_parts(Distro::K0s, 1, 35, 3, 0),
        }
    }

    /// Where the distribution keeps its files on the host.
    pub fn paths(self) -> &'static Paths {
        match self {
            Distro::K3s => &k3s::PATHS,
            Distro::K0s => &k0s::PATHS,
        }
    }

    /// Files kstrap may write for the distribution beyond `Paths` (a proxy drop-in, firewalld
    /// services): `down` removes them like the others.
    pub fn extra_files(self) -> Vec<&'static str> {
        match self {
            Distro::K3s => Vec::new(),
            Distro::K0s => {
                let mut v = vec![k0s::PROXY_DROP_IN, worker::K0S_WORKER_PROXY_DROP_IN];
                v.extend(firewall::K0S_FIREWALLD_SERVICES.iter().map(|(p, _)| *p));
                v
            }
        }
    }

    /// GitHub `owner/repo` of the releases; kept under a mirror so it can serve the same layout.
    pub fn release_repo(self) -> &'static str {
        match self {
            Distro::K3s => "k3s-io/k3s",
            Distro::K0s => "k0sproject/k0s",
        }
    }
}

impl std::fmt::Display for Distro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Files, directories and sockets of one distribution on the host. `None` where the
/// distribution has no such thing (or no stable path for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Paths {
    /// The single binary kstrap installs.
    pub binary: &'static str,
    /// The configuration file kstrap writes.
    pub config: &'static str,
    /// systemd unit name.
    pub service_unit: &'static str,
    /// The unit file (k3s: written by kstrap; k0s: written by `k0s install`).
    pub unit_file: &'static str,
    /// Environment file of the unit (k3s only).
    pub env_file: Option<&'static str>,
    /// Admin kubeconfig the distribution writes.
    pub kubeconfig: &'static str,
    /// Directories holding the distribution's state (what `down` removes).
    pub data_dirs: &'static [&'static str],
    pub containerd_socket: &'static str,
    /// The containerd configuration the distribution generates (never hand-edit it).
    pub containerd_config: &'static str,
    /// Where containerd drop-ins go (k0s `containerd.d`).
    pub containerd_drop_in_dir: Option<&'static str>,
    /// Air-gap image archives placed here are imported at start.
    pub images_dir: &'static str,
    /// Manifests placed here are applied by the distribution itself (k3s).
    pub manifests_dir: Option<&'static str>,
    /// Token agents join with (k3s).
    pub node_token: Option<&'static str>,
}

/// Why the distribution module could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistroError {
    #[error("{value:?} is not a {distro} release version: {why}\n  fix: give a release tag such as {example}")]
    InvalidVersion {
        distro: Distro,
        value: String,
        why: String,
        example: String,
    },
    #[error(
        "version {version} is a {version_distro} version, but the distribution is {distro}\n  fix: give a {distro} release tag such as {example}"
    )]
    VersionMismatch {
        distro: Distro,
        version_distro: Distro,
        version: String,
        example: String,
    },
    #[error(
        "architecture {arch:?} is not supported by kstrap's {distro} install\n  fix: use a machine whose architecture is one of: {supported}"
    )]
    UnsupportedArch {
        distro: Distro,
        arch: String,
        supported: String,
    },
    #[error(
        "mirror {value:?} is not an http(s) base URL\n  fix: give the base under which {repo}/releases/download/... is served, e.g. {DEFAULT_MIRROR}"
    )]
    InvalidMirror { value: String, repo: String },
    #[error("air-gap folder {path:?}: {problem}\n  fix: {hint}")]
    Airgap {
        path: String,
        problem: String,
        hint: String,
    },
    #[error(
        "node label {label:?}: {problem}\n  fix: use Kubernetes label syntax: [prefix/]name=value, name and value at most 63 of [A-Za-z0-9-_.], starting and ending alphanumeric"
    )]
    InvalidLabel { label: String, problem: String },
    #[error("cannot render {file}: {message}")]
    Render { file: String, message: String },
}

/// The arguments of `k0s token create` that make a worker's join token (k0sproject/k0s
/// `cmd/token/create.go` at v1.35.3+k0s.0: `--role`, "Either worker or controller").
pub const K0S_WORKER_TOKEN_ARGS: [&str; 3] = ["token", "create", "--role=worker"];

/// The command a new machine runs to join this cluster as a worker, with the join token in
/// `token_file`:
/// - k3s: `k3s agent --server URL --token-file FILE` (k3s-io/k3s `pkg/cli/cmds/agent.go`,
///   `NewAgentCommand`: `server,s`, `token-file`);
/// - k0s: `k0s install worker --token-file FILE` (k0sproject/k0s `cmd/install/worker.go` with
///   `GetWorkerFlags` in `pkg/config/cli.go` at v1.35.3+k0s.0: `token-file`); the worker finds the
///   controller through the token.
///
/// Every flag is checked against upstream's flag lists (`tests/fixtures/upstream/k3s`, `k0s`).
pub fn worker_join_command(distro: Distro, server_url: &str, token_file: &str) -> Vec<String> {
    let args: &[&str] = match distro {
        Distro::K3s => &["k3s", "agent", "--server", server_url, "--token-file", token_file],
        Distro::K0s => &["k0s", "install", "worker", "--token-file", token_file],
    };
    args.iter().map(|a| a.to_string()).collect()
}

/// Base URL under which release assets are served as `{mirror}/{owner}/{repo}/releases/download/...`.
pub const DEFAULT_MIRROR: &str = "https://github.com";

/// The label every node kstrap installs carries, naming the profile it was installed with.
pub const PROFILE_LABEL: &str = "kstrap.dev/profile";

/// Name of the kubeconfig context kstrap writes for the user.
pub const KUBECONFIG_CONTEXT: &str = "kstrap";

/// Host architectures (`uname -m`) kstrap installs on, and the release name of each.
const ARCHES: &[(&str, &str)] = &[("x86_64", "amd64"), ("aarch64", "arm64")];

/// The release asset architecture (`amd64`, `arm64`) for a host architecture (`uname -m`).
pub fn release_arch(distro: Distro, arch: &str) -> Result<&'static str, DistroError> {
    ARCHES
        .iter()
        .find(|(host, _)| *host == arch)
        .map(|(_, release)| *release)
        .ok_or_else(|| DistroError::UnsupportedArch {
            distro,
            arch: arch.to_string(),
            supported: ARCHES
                .iter()
                .map(|(host, release)| format!("{host} ({release})"))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Everything `host_steps` needs to know.
#[derive(Debug, Clone, Copy)]
pub struct DistroContext<'a> {
    pub distro: Distro,
    pub version: &'a Version,
    /// Host architecture as `uname -m` gives it (`x86_64`, `aarch64`).
    pub arch: &'a str,
    /// Base URL of release downloads, normally `DEFAULT_MIRROR`.
    pub mirror: &'a str,
    /// An absolute folder holding the binary, the image archive and the checksum file, for hosts
    /// without internet access.
    pub airgap: Option<&'a Path>,
    /// Name of the selected profile (becomes the `kstrap.dev/profile` node label).
    pub profile: &'a str,
    pub cluster: &'a ClusterSettings,
    /// Where the user's kubeconfig goes.
    pub kubeconfig_dest: &'a str,
    pub wait_timeout_s: u64,
    /// The cluster's pod and service ranges (`network::choose`).
    pub network: &'a network::ClusterNetwork,
    /// The node's own addresses (for `NO_PROXY`).
    pub node_addresses: &'a [String],
    /// The HTTP proxy from kstrap's environment, if any.
    pub proxy: Option<&'a proxy::Proxy>,
    /// SELinux is enforcing and the distribution's policy is installed: turn SELinux on in its
    /// containerd (k3s `selinux: true`).
    pub selinux: bool,
    /// The distribution's data directory (`--data-dir`, checked by `data_dir::check`); `None`:
    /// its default.
    pub data_dir: Option<&'a str>,
}

/// Which release of a distribution, for which machine, from where: all that the binary's
/// download (or air-gap copy) reads. A server's and a worker's install share it.
#[derive(Debug, Clone, Copy)]
pub struct Release<'a> {
    pub distro: Distro,
    pub version: &'a Version,
    /// Host architecture as `uname -m` gives it (`x86_64`, `aarch64`).
    pub arch: &'a str,
    /// Base URL of release downloads, normally `DEFAULT_MIRROR`.
    pub mirror: &'a str,
    /// An absolute folder holding the binary, the image archive and the checksum file, for hosts
    /// without internet access.
    pub airgap: Option<&'a Path>,
}

impl Release<'_> {
    /// The release's asset names for this machine: the binary, the checksum file naming it, and
    /// the images archive.
    fn assets(&self) -> Result<ReleaseAssets, DistroError> {
        check_version(self.distro, self.version)?;
        let arch = release_arch(self.distro, self.arch)?;
        Ok(match self.distro {
            Distro::K3s => ReleaseAssets {
                binary: k3s::binary_asset_name(arch),
                sums: k3s::checksum_file_name(arch),
                images: k3s::images_asset_name(arch),
            },
            Distro::K0s => ReleaseAssets {
                binary: k0s::binary_asset_name(self.version, arch),
                sums: k0s::checksum_file_name(),
                images: k0s::images_asset_name(self.version, arch),
            },
        })
    }
}

/// Asset names of one release for one architecture.
struct ReleaseAssets {
    binary: String,
    sums: String,
    images: String,
}

impl DistroContext<'_> {
    /// The server's paths with this data directory (`Distro::layout`).
    pub fn paths(&self) -> &'static Paths {
        self.distro.layout(worker::Role::Server, self.data_dir)
    }

    /// The data directory when it is not the distribution's default (what its config must say).
    pub fn custom_data_dir(&self) -> Option<&str> {
        self.data_dir.filter(|d| *d != data_dir::default_dir(self.distro))
    }

    /// The release this context installs.
    pub fn release(&self) -> Release<'_> {
        Release {
            distro: self.distro,
            version: self.version,
            arch: self.arch,
            mirror: self.mirror,
            airgap: self.airgap,
        }
    }

    /// The proxy variables the distribution's service gets (`NO_PROXY` completed); empty without
    /// a proxy.
    pub fn proxy_env(&self) -> Vec<(String, String)> {
        self.proxy
            .map(|p| {
                p.service_env(&proxy::ClusterNet {
                    pod_cidr: &self.network.pod_cidr,
                    service_cidr: &self.network.service_cidr,
                    node_addresses: self.node_addresses,
                })
            })
            .unwrap_or_default()
    }
}

/// The release binary's URL and where its expected sha256 comes from.
pub fn binary_asset(
    distro: Distro,
    version: &Version,
    arch: &str,
    mirror: &str,
) -> Result<(String, ChecksumSource), DistroError> {
    let release = Release {
        distro,
        version,
        arch,
        mirror,
        airgap: None,
    };
    let ReleaseAssets { binary, sums, .. } = release.assets()?;
    let base = release_base(distro, version, mirror)?;
    let url = format!("{base}/{}", encode_segment(&binary));
    let checksum = ChecksumSource::ReleaseFile {
        url: format!("{base}/{}", encode_segment(&sums)),
        entry: binary,
    };
    Ok((url, checksum))
}

/// The steps that install and start the distribution and hand its kubeconfig to the user:
/// `Phase::Host` (binary, images, config, service files) then `Phase::Cluster` (start, wait,
/// kubeconfig).
pub fn host_steps(ctx: &DistroContext) -> Result<Vec<Step>, DistroError> {
    check_version(ctx.distro, ctx.version)?;
    match ctx.distro {
        Distro::K3s => k3s::steps(ctx),
        Distro::K0s => k0s::steps(ctx),
    }
}

fn check_version(distro: Distro, version: &Version) -> Result<(), DistroError> {
    if version.distro() == distro {
        Ok(())
    } else {
        Err(DistroError::VersionMismatch {
            distro,
            version_distro: version.distro(),
            version: version.to_string(),
            example: distro.default_version().to_string(),
        })
    }
}

/// `{mirror}/{owner}/{repo}/releases/download/{tag}` with the tag percent-encoded.
fn release_base(distro: Distro, version: &Version, mirror: &str) -> Result<String, DistroError> {
    let trimmed = mirror.trim_end_matches('/');
    let host = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    let valid = match host {
        Some(h) => {
            !h.is_empty()
                && !h.starts_with('/')
                && !h.chars().any(|c| c.is_whitespace() || c.is_control())
                && !h.contains(['?', '#'])
        }
        None => false,
    };
    if !valid {
        return Err(DistroError::InvalidMirror {
            value: mirror.to_string(),
            repo: distro.release_repo().to_string(),
        });
    }
    Ok(format!(
        "{trimmed}/{}/releases/download/{}",
        distro.release_repo(),
        version.url_segment()
    ))
}

/// Percent-encodes one URL path segment: everything but RFC 3986 unreserved characters.
/// GitHub release URLs spell the `+` of `v1.35.3+k3s1` as `%2B`.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An air-gap file: its path on the host, and where its sha256 comes from (the release checksum
/// file copied into the same folder, read through a `file://` URL).
struct AirgapFile {
    source: String,
    checksum: ChecksumSource,
}

fn airgap_file(dir: &Path, file: &str, checksum_file: &str, entry: &str) -> Result<AirgapFile, DistroError> {
    let Some(dir_text) = dir.to_str() else {
        return Err(DistroError::Airgap {
            path: dir.display().to_string(),
            problem: "the path is not valid UTF-8".into(),
            hint: "move the air-gap files to a folder whose name is plain text".into(),
        });
    };
    if !dir.is_absolute() {
        return Err(DistroError::Airgap {
            path: dir_text.to_string(),
            problem: "the path is relative".into(),
            hint: "give the air-gap folder as an absolute path".into(),
        });
    }
    let dir_text = dir_text.trim_end_matches('/');
    let encoded_dir: Vec<String> = dir_text.split('/').map(encode_segment).collect();
    Ok(AirgapFile {
        source: format!("{dir_text}/{file}"),
        checksum: ChecksumSource::ReleaseFile {
            url: format!("file://{}/{}", encoded_dir.join("/"), encode_segment(checksum_file)),
            entry: entry.to_string(),
        },
    })
}

/// The node's labels: the profile's, plus `kstrap.dev/profile=<profile>`, sorted by key and
/// validated (k0s takes them comma-separated on its command line, so syntax matters).
fn node_labels(profile: &str, cluster: &ClusterSettings) -> Result<Vec<String>, DistroError> {
    let mut labels: BTreeMap<&str, &str> = cluster
        .node_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    labels.insert(PROFILE_LABEL, profile);
    labels
        .into_iter()
        .map(|(k, v)| {
            let label = format!("{k}={v}");
            check_label(k, v).map_err(|problem| DistroError::InvalidLabel {
                label: label.clone(),
                problem,
            })?;
            Ok(label)
        })
        .collect()
}

fn check_label(key: &str, value: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err(format!("prefix {prefix:?} is not a DNS subdomain"));
        }
    }
    if name.is_empty() || !label_word(name) {
        return Err(format!("name {name:?} is not a valid label name"));
    }
    if !value.is_empty() && !label_word(value) {
        return Err(format!("value {value:?} is not a valid label value"));
    }
    Ok(())
}

fn label_word(s: &str) -> bool {
    let alnum = |c: Option<u8>| c.is_some_and(|b| b.is_ascii_alphanumeric());
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && alnum(s.bytes().next())
        && alnum(s.bytes().last())
}

/// What differs between the distributions (and roles) when their binary (and, air-gapped, their
/// images) is put in place: the wording, and where the files go.
struct BinarySource<'a> {
    /// Where the binary goes.
    binary_dest: &'a str,
    /// The folder image archives are imported from at start.
    images_dir: &'a str,
    download_reason: &'a str,
    images_title: &'a str,
    images_reason: &'a str,
}

/// A verified download of the binary, or verified copies of the binary and the images archive
/// from the air-gap folder.
fn binary_steps(release: &Release, src: &BinarySource) -> Result<Vec<Step>, DistroError> {
    let name = release.distro.name();
    let assets = release.assets()?;
    let Some(dir) = release.airgap else {
        let (url, checksum) = binary_asset(release.distro, release.version, release.arch, release.mirror)?;
        return Ok(vec![step(
            &format!("download-{name}"),
            Phase::Host,
            &format!("Download {name} {}", release.version),
            src.download_reason,
            Action::Download {
                url,
                checksum,
                dest: src.binary_dest.into(),
                mode: Mode(0o755),
            },
        )]);
    };
    let AirgapFile { source, checksum } = airgap_file(dir, &assets.binary, &assets.sums, &assets.binary)?;
    let binary = step(
        &format!("copy-{name}"),
        Phase::Host,
        &format!("Copy {name} {} from the air-gap folder", release.version),
        "no internet here: the binary comes from the air-gap folder, checked against the release's sha256 file beside it",
        Action::CopyLocal {
            source,
            checksum: Some(checksum),
            dest: src.binary_dest.into(),
            mode: Mode(0o755),
        },
    );
    let AirgapFile { source, checksum } = airgap_file(dir, &assets.images, &assets.sums, &assets.images)?;
    let images = step(
        &format!("copy-{name}-images"),
        Phase::Host,
        src.images_title,
        src.images_reason,
        Action::CopyLocal {
            source,
            checksum: Some(checksum),
            dest: format!("{}/{}", src.images_dir, assets.images),
            mode: Mode(0o644),
        },
    );
    Ok(vec![binary, images])
}

fn step(id: &str, phase: Phase, title: &str, reason: &str, action: Action) -> Step {
    Step {
        id: id.into(),
        phase,
        title: title.into(),
        reason: reason.into(),
        action,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
use tests as tests_support;
#[cfg(test)]
mod host_tests;
