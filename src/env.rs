//! Every environment variable kstrap reads, in one place.
//!
//! Settings are resolved once, from the command line first and these variables second (clap's
//! `env` attribute reads them), before any work starts. Nothing else in the crate calls
//! `std::env::var` with a literal name.

/// Profile to use instead of the automatic choice (same as `--profile`).
pub const PROFILE: &str = "KSTRAP_PROFILE";
/// Ollama model to serve instead of the profile's (same as `--model`).
pub const MODEL: &str = "KSTRAP_MODEL";
/// Distribution to use instead of the profile's (same as `--distro`): `k3s` or `k0s`.
pub const DISTRO: &str = "KSTRAP_DISTRO";
/// Folder of profile YAML files replacing the embedded ones (same as `--profiles-dir`).
pub const PROFILES_DIR: &str = "KSTRAP_PROFILES_DIR";
/// Folder of stacks replacing the embedded `manifests/` (same as `--stack-dir`).
pub const STACK_DIR: &str = "KSTRAP_STACK_DIR";
/// Stack to install (same as `--stack`).
pub const STACK: &str = "KSTRAP_STACK";
/// Base URL of the release downloads, for mirrors and tests (same as `--release-mirror`).
pub const RELEASE_MIRROR: &str = "KSTRAP_RELEASE_MIRROR";
/// Host facts as JSON instead of probing this machine (same as `--facts`).
pub const FACTS: &str = "KSTRAP_FACTS";
/// Optional add-ons `up` and `plan` install, comma-separated (same as `--with`): `monitoring`.
pub const WITH: &str = "KSTRAP_WITH";
/// Grafana's admin password for `--with monitoring`; without it the one in the cluster is kept, or
/// one is generated. Never printed.
pub const GRAFANA_ADMIN_PASSWORD: &str = "KSTRAP_GRAFANA_ADMIN_PASSWORD";
/// Path of the NVML library to load instead of `libnvidia-ml.so.1`.
pub const NVML_LIB: &str = "KSTRAP_NVML_LIB";
/// Root of the filesystem that detection reads and `up`/`down` change (default `/`). For tests
/// and rescue shells; with another root, commands run by name from `PATH`.
pub const HOST_ROOT: &str = "KSTRAP_HOST_ROOT";
/// Kubeconfig of a real cluster for the end-to-end tests (tests only).
pub const TEST_KUBECONFIG: &str = "KSTRAP_TEST_KUBECONFIG";
/// Kubeconfig file(s) of the cluster `kstrap apply` uses when `--kubeconfig` is not given (read by
/// kube's own loader; kstrap reads it only to name the file in errors).
pub const KUBECONFIG: &str = "KUBECONFIG";
/// Disables colour when set to any value (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";
/// Set by sudo: the user whose `~/.kube/config` receives the `kstrap` context.
pub const SUDO_USER: &str = "SUDO_USER";
/// Home directory of the user running kstrap (kubeconfig destination without sudo).
pub const HOME: &str = "HOME";
/// Search path for binaries during detection.
pub const PATH: &str = "PATH";
/// HTTP proxy for the cluster (and `http_proxy`, read when this is unset): goes to the
/// distribution's service and to the stack's downloading pods.
pub const HTTP_PROXY: &str = "HTTP_PROXY";
/// HTTPS proxy for the cluster (and `https_proxy`).
pub const HTTPS_PROXY: &str = "HTTPS_PROXY";
/// Hosts, domains and CIDRs that bypass the proxy (and `no_proxy`); kstrap completes it.
pub const NO_PROXY: &str = "NO_PROXY";

/// All of the above with a one-line description, for `--help` and the README.
pub const ALL: &[(&str, &str)] = &[
    (PROFILE, "profile to use instead of the automatic choice"),
    (
        MODEL,
        "Ollama model to serve instead of the profile's (checked against the VRAM budget)",
    ),
    (DISTRO, "distribution to use instead of the profile's (k3s|k0s)"),
    (PROFILES_DIR, "folder of profile YAML files replacing the embedded ones"),
    (STACK_DIR, "folder of stacks replacing the embedded manifests/"),
    (STACK, "stack to install"),
    (RELEASE_MIRROR, "base URL for release downloads (mirrors, tests)"),
    (FACTS, "host facts JSON to use instead of probing this machine"),
    (WITH, "optional add-ons to install, comma-separated (monitoring)"),
    (
        GRAFANA_ADMIN_PASSWORD,
        "Grafana's admin password for --with monitoring (default: kept or generated)",
    ),
    (NVML_LIB, "path of the NVML library (default libnvidia-ml.so.1)"),
    (HOST_ROOT, "root of the filesystem kstrap reads and changes (default /)"),
    (TEST_KUBECONFIG, "kubeconfig of a real cluster for the end-to-end tests"),
    (
        KUBECONFIG,
        "kubeconfig for kstrap apply and status when --kubeconfig is not given",
    ),
    (NO_COLOR, "disable colour"),
    (
        SUDO_USER,
        "user whose ~/.kube/config gets the kstrap context (set by sudo)",
    ),
    (HOME, "home directory, for ~/.kube/config without sudo"),
    (PATH, "where detection looks for k3s, k0s, docker, nvidia-smi"),
    (
        HTTP_PROXY,
        "HTTP proxy (or http_proxy) for the cluster and the stack's downloading pods",
    ),
    (HTTPS_PROXY, "HTTPS proxy (or https_proxy), likewise"),
    (
        NO_PROXY,
        "what bypasses the proxy (or no_proxy); completed with the cluster's own addresses",
    ),
];
