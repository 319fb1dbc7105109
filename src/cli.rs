//! Command-line types (clap derive) and nothing else: parsing lives here, behaviour in `run`.
//!
//! Each flag is documented next to its definition; `--help` is the user's first manual.

use crate::distro::Distro;
use crate::env;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  failed (an error while working)
  2  bad usage or input (flags, profile or manifest YAML, facts file)
  3  preflight refused (the host does not meet the profile; nothing was changed)
  4  timed out waiting for readiness

Examples:
  kstrap detect                      what kstrap sees on this machine
  kstrap up --dry-run                the plan for this machine, changing nothing
  kstrap plan --facts host.json      the plan for another machine, from its facts
  sudo kstrap up --yes               install unattended

Environment: KSTRAP_PROFILE, KSTRAP_DISTRO, KSTRAP_STACK, KSTRAP_PROFILES_DIR, KSTRAP_STACK_DIR,
KSTRAP_RELEASE_MIRROR, KSTRAP_FACTS, KSTRAP_NVML_LIB, KSTRAP_HOST_ROOT, KSTRAP_WITH,
KSTRAP_GRAFANA_ADMIN_PASSWORD, NO_COLOR (see README).";

/// Turn this Linux laptop or GPU workstation into a single-node Kubernetes cluster running a
/// local AI stack, and bring it back to that state on every re-run.
#[derive(Debug, Parser)]
#[command(name = "kstrap", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Output format: `human` for people, `json` for scripts (only JSON on stdout).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Human, global = true)]
    pub output: OutputFormat,

    /// More detail (repeat for more: -vv shows file contents in plans).
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Use host facts from this JSON file (written by `kstrap detect -o json`) instead of probing
    /// this machine: plan for another machine, or reproduce a decision.
    #[arg(long, value_name = "FILE", env = env::FACTS, global = true)]
    pub facts: Option<PathBuf>,

    /// Use the profile YAML files in DIR instead of the built-in ones.
    #[arg(long, value_name = "DIR", env = env::PROFILES_DIR, global = true)]
    pub profiles_dir: Option<PathBuf>,

    /// Use the stacks in DIR (DIR/<stack>/stack.yaml) instead of the built-in ones.
    #[arg(long, value_name = "DIR", env = env::STACK_DIR, global = true)]
    pub stack_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what kstrap sees on this host (memory, CPUs, disk, OS, cgroups, systemd, WSL2,
    /// laptop, ports, existing clusters, NVIDIA GPUs) and the preflight findings.
    Detect,
    /// Print the steps `kstrap up` would run on this host, with a reason for each. Changes
    /// nothing and needs no root. Same as `kstrap up --dry-run`.
    Plan(PlanCommandArgs),
    /// Install or converge: the distribution, the GPU operator (GPU profiles) and the stack.
    Up(UpArgs),
    /// Apply only the stack to the cluster of the current kubeconfig, stage by stage, waiting
    /// until each stage is ready; objects that left the stack are pruned.
    Apply(ApplyArgs),
    /// Show the cluster, the GPU operator and GPU sharing, and the stack's readiness.
    Status(StatusArgs),
    /// Prove the stack works: run its declared checks (voice-ai: Kokoro speaks, Whisper hears,
    /// Ollama answers; other stacks: each Service's health path) in a Job in its namespace and
    /// report each link with its latency.
    Verify(VerifyArgs),
    /// Remove what kstrap installed (stack, GPU operator, distribution), and nothing else.
    Down(DownArgs),
    /// Print the one command that adds a machine to this cluster (`kstrap join`), and how to copy
    /// the join token there. The token itself is never printed; with `-o json` the output is
    /// {"distro", "version", "server_url", "token_file", "copy_token", "command", "status_command"}.
    JoinCommand(JoinCommandArgs),
    /// Join this machine to a cluster as a worker: the server's distribution and version, checked
    /// against the join token before the token is used, then wait until the node is Ready (and
    /// advertises its GPUs).
    Join(JoinArgs),
    /// Turn an application defined for another tool into a kstrap stack folder.
    Import(ImportArgs),
    /// Print a shell completion script, e.g. `kstrap completions bash > /etc/bash_completion.d/kstrap`.
    Completions {
        /// The shell to generate completions for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What decides the plan: profile, distribution, stack, versions, sources.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// Use this profile instead of the automatic choice (laptop-8gb, rtx-5090, cpu-fallback, or
    /// one from --profiles-dir). Below the profile's requirements it is refused without --force.
    #[arg(long, short = 'p', value_name = "NAME", env = env::PROFILE)]
    pub profile: Option<String>,

    /// Install this distribution instead of the profile's.
    #[arg(long, value_enum, env = env::DISTRO)]
    pub distro: Option<Distro>,

    /// Install this distribution version instead of kstrap's pinned one, e.g. v1.35.3+k3s1 or
    /// v1.35.3+k0s.0.
    #[arg(long = "distro-version", value_name = "VERSION")]
    pub distro_version: Option<String>,

    /// Deploy this stack instead of the profile's (a folder of manifests/ or of --stack-dir).
    #[arg(long, short = 's', value_name = "NAME", env = env::STACK)]
    pub stack: Option<String>,

    /// Accept a profile the host falls short of (warnings instead of refusal).
    #[arg(long)]
    pub force: bool,

    /// Serve this Ollama model instead of the profile's (e.g. llama3.1:8b). Refused, with the
    /// figures, when it does not fit the profile's VRAM budget or the free disk.
    #[arg(long, value_name = "NAME", env = env::MODEL)]
    pub model: Option<String>,

    /// Where the NVIDIA driver comes from. `host` (default; a re-run keeps the first install's
    /// choice): the driver installed on this machine; a GPU without one is not used, and the
    /// plan says why. `operator`: the GPU operator builds and loads NVIDIA's driver in a
    /// container (refused while nouveau is loaded or Secure Boot is on). `none`: no GPU, a CPU
    /// profile.
    #[arg(long = "gpu-driver", value_name = "FROM", value_enum)]
    pub gpu_driver: Option<crate::profile::GpuDriver>,

    /// Download releases from this base URL instead of https://github.com (same layout:
    /// <base>/k3s-io/k3s/releases/download/<version>/k3s).
    #[arg(long, value_name = "URL", env = env::RELEASE_MIRROR)]
    pub release_mirror: Option<String>,

    /// Install without network: take the distribution binary (and images tarball, if present)
    /// from DIR, verified like a download.
    #[arg(long, value_name = "DIR")]
    pub airgap: Option<PathBuf>,

    /// An image the stack needs from you (its authors' own): KEY=REF, pinned to a tag or digest
    /// (repeatable). Without it, the image is read from the environment variable KEY.
    #[arg(long = "image", value_name = "KEY=REF")]
    pub images: Vec<String>,

    /// Wait at most this many seconds for the API server and the node after starting the
    /// distribution (default 300; slow disks and air-gapped image imports may need more).
    #[arg(long, value_name = "SECONDS")]
    pub cluster_timeout: Option<u64>,

    /// Also install an optional add-on (repeatable): `monitoring` is Prometheus and Grafana
    /// (Grafana on NodePort 30030, admin password generated into Secret monitoring/grafana-admin).
    #[arg(long = "with", value_name = "ADDON", value_enum, env = env::WITH, value_delimiter = ',')]
    pub with: Vec<crate::addons::Optional>,

    /// When ufw or firewalld is on, add the rules the distribution documents (API server,
    /// kubelet, the pod and service ranges); `kstrap down` removes them.
    #[arg(long)]
    pub open_firewall: bool,

    /// Keep the distribution's data (images, containers, the cluster's datastore, the volumes)
    /// in DIR instead of /var/lib/rancher/k3s or /var/lib/k0s: a new or empty folder on a larger
    /// partition. Re-runs and `kstrap down` use the folder recorded at install.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `kstrap plan`: the plan's inputs, and whether to show an upgrade of the install found here.
#[derive(Debug, Args)]
pub struct PlanCommandArgs {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// With a k3s or k0s that kstrap installed here at another version: also show the upgrade
    /// to this run's version, one step per minor version on the way (`kstrap up --upgrade` does
    /// it; a minor in between is a release you install first).
    #[arg(long)]
    pub upgrade: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// Print the plan and stop; change nothing (no root needed).
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (for scripts).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Upgrade an existing kstrap install to another distribution version (one minor at a
    /// time; the steps are shown before it asks, and by `kstrap plan --upgrade`).
    #[arg(long)]
    pub upgrade: bool,

    /// Replace a cluster kstrap did not install, or one of the other distribution (its data is lost).
    #[arg(long)]
    pub replace: bool,

    /// Do not merge the `kstrap` context into the invoking user's ~/.kube/config.
    #[arg(long)]
    pub no_merge_kubeconfig: bool,

    /// After the GPU operator is ready, run a short pod that requests one GPU share and runs
    /// nvidia-smi, and wait for it to succeed.
    #[arg(long)]
    pub verify_gpu: bool,

    /// Wait at most this many seconds per stack stage (and per add-on wait) instead of the stack's
    /// own timeouts.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// A secret value the stack declares, from a file: KEY=PATH (repeatable). Without it, the
    /// value is read from the environment variable KEY, kept from the cluster, or generated.
    #[arg(long = "secret-file", value_name = "KEY=PATH")]
    pub secret_files: Vec<String>,

    /// Stop once the cluster is up and your kubeconfig has the `kstrap` context: no GPU
    /// operator, no stack (add them later with `kstrap up` or `kstrap apply`). Add-ons still
    /// come: k0s's default StorageClass, and those asked for with --with.
    #[arg(long)]
    pub cluster_only: bool,
}

/// Which cluster to talk to.
#[derive(Debug, Args, Clone)]
pub struct KubeArgs {
    /// Kubeconfig file to use instead of $KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use instead of the current one.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The stack to apply (a folder of manifests/ or of --stack-dir); default: the profile's.
    #[arg(long, short = 's', value_name = "NAME", env = env::STACK)]
    pub stack: Option<String>,

    /// Size the stack for this profile instead of the automatic choice for this host.
    #[arg(long, short = 'p', value_name = "NAME", env = env::PROFILE)]
    pub profile: Option<String>,

    /// Apply the stack's changes for this distribution (k0s has no Ingress controller) instead of
    /// the one the cluster's nodes report.
    #[arg(long, value_enum, env = env::DISTRO)]
    pub distro: Option<Distro>,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// Wait at most this many seconds per stage instead of the stack's own timeouts.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// Take over fields another field manager owns (kubectl, helm) instead of reporting the
    /// conflict.
    #[arg(long)]
    pub force_conflicts: bool,

    /// A secret value the stack declares, from a file: KEY=PATH (repeatable). Without it, the
    /// value is read from the environment variable KEY.
    #[arg(long = "secret-file", value_name = "KEY=PATH")]
    pub secret_files: Vec<String>,

    /// An image the stack needs from you (its authors' own): KEY=REF, pinned to a tag or digest
    /// (repeatable). Without it, the image is read from the environment variable KEY.
    #[arg(long = "image", value_name = "KEY=REF")]
    pub images: Vec<String>,

    /// Keep objects that left the stack instead of deleting them.
    #[arg(long)]
    pub no_prune: bool,

    /// Print what would be applied and pruned; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

const STATUS_AFTER_HELP: &str = "\
Exit codes:
  0  every node is Ready, every object of every stack kstrap applied is ready, and (with the GPU
     operator installed) each GPU node advertises GPUs × replicas nvidia.com/gpu
  1  something is not ready (the output says what and why), a stack's last verification failed
     (`kstrap verify`; the output shows each link), or the API server cannot be reached
  2  the kubeconfig or context cannot be used";

const VERIFY_AFTER_HELP: &str = "\
Exit codes:
  0  every link works (a small model's wrong answer is a warning; a device the API does not
     report is \"not checked\")
  1  a link failed: the output names the first, what was sent, what came back, and what to run
  2  bad usage, an unknown stack or profile, a stack that declares no checks, or an unusable
     kubeconfig
  4  a link, or the whole verification, timed out";

#[derive(Debug, Args)]
#[command(after_help = VERIFY_AFTER_HELP)]
pub struct VerifyArgs {
    /// The stack to verify; default: the profile's.
    #[arg(long, short = 's', value_name = "NAME", env = env::STACK)]
    pub stack: Option<String>,

    /// The profile the stack was applied for (its model, its GPU use) instead of the automatic
    /// choice for this host.
    #[arg(long, short = 'p', value_name = "NAME", env = env::PROFILE)]
    pub profile: Option<String>,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// Seconds the whole verification may take instead of the stack's own.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
#[command(after_help = STATUS_AFTER_HELP)]
pub struct StatusArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Keep the data directories and volumes (models, databases); remove everything else.
    #[arg(long)]
    pub keep_data: bool,

    /// Print what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (for scripts).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct JoinCommandArgs {
    /// The address workers use to reach this machine (default: its first non-loopback address).
    #[arg(long, value_name = "HOST")]
    pub address: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub what: ImportCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Turn a Docker Compose application into a stack: writes OUT/<name>/ (stack.yaml and stage
    /// folders) for `kstrap plan/apply --stack-dir OUT --stack <name>`. Secret values are never
    /// written: sensitive variables become declared secrets given at apply (or generated).
    /// Features that cannot be carried over are reported; refused ones stop the import (exit 2).
    Compose(ComposeArgs),
}

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// Compose files, merged in order as `docker compose -f A -f B` merges them.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Variables for ${VAR} in the files (KEY=VALUE lines; repeatable). Default: .env next to
    /// the first file, if there is one. The environment wins over the file, as in compose.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,

    /// The stack's name (default: the project's `name:`, else the first file's folder).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The namespace the stack deploys into (default: the stack's name).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,

    /// Where to write the stack folder OUT/<name>/ (default: the current folder).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,

    /// What bind mounts of host folders become: an empty claim (with a warning), a hostPath,
    /// or nothing.
    #[arg(long, value_enum, default_value_t = crate::import::BindMounts::Claim)]
    pub bind_mounts: crate::import::BindMounts,

    /// Use the target namespace's mongo, redis, postgres, qdrant and neo4j Services (from the
    /// current kubeconfig) instead of the compose file's own, pointing variables at
    /// {service}.{namespace}.svc.cluster.local:{port}.
    #[arg(long)]
    pub discover: bool,

    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The cluster's server: https://HOST[:PORT] (what `kstrap join-command` prints there).
    #[arg(long, value_name = "URL")]
    pub server: String,

    /// A root-only file holding the join token (k3s `K10…` token, or a k0s worker token). The
    /// token is never given on the command line.
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,

    /// The node's name (default: this machine's host name, lowercased, as the kubelet names it).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// Install this distribution version when the server does not tell its own (it must be the
    /// server's).
    #[arg(long = "distro-version", value_name = "VERSION")]
    pub distro_version: Option<String>,

    /// Download releases from this base URL instead of https://github.com.
    #[arg(long, value_name = "URL", env = env::RELEASE_MIRROR)]
    pub release_mirror: Option<String>,

    /// Install without network: the distribution binary (and images) from DIR, verified.
    #[arg(long, value_name = "DIR")]
    pub airgap: Option<PathBuf>,

    /// Wait at most this many seconds for the node to be Ready (default 300).
    #[arg(long, value_name = "SECONDS")]
    pub cluster_timeout: Option<u64>,

    /// Wait at most this many seconds for the node to advertise its GPUs (default 600).
    #[arg(long, value_name = "SECONDS")]
    pub gpu_timeout: Option<u64>,

    /// Print the plan and stop; change nothing (the server is still checked).
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (for scripts).
    #[arg(long, short = 'y')]
    pub yes: bool,
}
