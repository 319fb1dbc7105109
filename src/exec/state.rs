//! What kstrap installed on this machine: `/var/lib/kstrap/state.json` (under the host root).
//!
//! It is the only source `down` removes from, and what `up` compares with to decide between
//! converging, upgrading and refusing. It is rewritten atomically after every step (and before a
//! step that is about to claim a new path), so a run killed at any point leaves a state that
//! names everything on the machine and lets the next run carry on. It holds no secrets, no
//! times and no pids: two runs that end the same way leave the same file.

use super::host::{Host, HostError};
use crate::distro::worker::Role;
use crate::distro::{Distro, Paths};
use crate::facts::InstalledNetwork;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Host path of the state file (detection reads the same path).
pub const STATE_PATH: &str = "/var/lib/kstrap/state.json";
/// The folder kstrap keeps its own files in.
pub const STATE_DIR: &str = "/var/lib/kstrap";
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub schema: u32,
    pub distro: Distro,
    /// A cluster's server (written by `up`), or a worker that joined one (`join`). Absent in
    /// files written before workers existed: a server.
    #[serde(default, skip_serializing_if = "Role::is_server")]
    pub role: Role,
    pub version: String,
    pub profile: String,
    /// The model Ollama serves, fixed at the first install with the profile (GPU tiers);
    /// re-runs keep both unless asked for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Where the NVIDIA driver comes from (`--gpu-driver`), kept by re-runs like the profile:
    /// a re-run that forgot `--gpu-driver operator` must not remove the driver the GPUs run on.
    /// Absent in older files and for the host's driver.
    #[serde(default, skip_serializing_if = "crate::profile::GpuDriver::is_host")]
    pub gpu_driver: crate::profile::GpuDriver,
    /// Files kstrap wrote or had a command write, by host path; `sha256` is `None` for files a
    /// command wrote or a write that had not finished.
    pub files: BTreeMap<String, FileRecord>,
    /// Directories kstrap created (removed by `down` when empty), outermost first.
    pub dirs: Vec<String>,
    /// systemd units kstrap enabled.
    pub services: Vec<String>,
    /// The distribution's data folders (removed by `down` unless `--keep-data`).
    pub data_dirs: Vec<String>,
    /// The distribution's data directory when `--data-dir` moved it off the default: every path
    /// under it follows (`Distro::layout`), a re-run keeps it, `down` removes it. Absent in files
    /// written before it existed and for the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// Where the `kstrap` kubeconfig context was merged.
    pub kubeconfig: Option<KubeconfigRecord>,
    /// Arguments of each command step's last successful run, by step id.
    pub commands: BTreeMap<String, Vec<String>>,
    /// Steps that must act on the next run because a file they depend on changed before they
    /// ran (a reload or restart interrupted by a crash must not be forgotten).
    pub pending: BTreeSet<String>,
    /// The cluster's ranges, the node's address and whether the distribution got a proxy, as the
    /// last complete run left them (a re-run compares the host with these). Absent in files
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<InstalledNetwork>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    pub sha256: Option<String>,
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeconfigRecord {
    pub path: String,
    pub context: String,
    /// kstrap created the file (so `down` removes it when nothing else is left in it).
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(
        "{path} is not a state file this kstrap understands: {message}\n  fix: it records what kstrap installed; if it was edited by hand, restore it, or remove the install by hand"
    )]
    Corrupt { path: String, message: String },
    #[error(
        "{path} {message}: kstrap reads only the state file it wrote\n  fix: replace the link with the file it points to, if that is kstrap's state, or remove the install by hand"
    )]
    Unsafe { path: String, message: String },
}

impl StateError {
    /// The state file is unusable as input (corrupt, or reached through a link), as opposed to
    /// unreadable: exit 2, nothing changed.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, StateError::Corrupt { .. } | StateError::Unsafe { .. })
    }
}

impl State {
    pub fn new(distro: Distro, version: &str, profile: &str) -> Self {
        State {
            schema: SCHEMA,
            distro,
            role: Role::Server,
            version: version.to_string(),
            profile: profile.to_string(),
            model: None,
            gpu_driver: crate::profile::GpuDriver::Host,
            files: BTreeMap::new(),
            dirs: Vec::new(),
            services: Vec::new(),
            data_dirs: Vec::new(),
            data_dir: None,
            kubeconfig: None,
            commands: BTreeMap::new(),
            pending: BTreeSet::new(),
            network: None,
        }
    }

    /// Where this install's distribution keeps its files (a worker's unit differs).
    pub fn paths(&self) -> &'static Paths {
        self.distro.layout(self.role, self.data_dir.as_deref())
    }

    /// What the distribution's own uninstall does for this install (its data directory's paths).
    pub fn uninstall(&self) -> &'static crate::distro::uninstall::Uninstall {
        self.distro.uninstall_in(self.data_dir.as_deref())
    }

    pub fn load(host: &Host) -> Result<Option<State>, StateError> {
        // A link here or on the way would make kstrap act on a file it did not write.
        if let Err(why) = super::paths::resolve(host, STATE_PATH) {
            return Err(StateError::Unsafe {
                path: STATE_PATH.into(),
                message: why.to_string(),
            });
        }
        let Some(existing) = host.read(STATE_PATH)? else {
            return Ok(None);
        };
        serde_json::from_slice(&existing.bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: host.path(STATE_PATH).display().to_string(),
                message: e.to_string(),
            })
    }

    pub fn save(&self, host: &Host) -> Result<(), StateError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| StateError::Corrupt {
            path: STATE_PATH.into(),
            message: e.to_string(),
        })?;
        text.push('\n');
        // Unchanged state is not rewritten: a run that changes nothing writes nothing.
        if host
            .read(STATE_PATH)?
            .is_some_and(|e| e.bytes == text.as_bytes() && e.mode == 0o600)
        {
            return Ok(());
        }
        host.write_atomic(STATE_PATH, text.as_bytes(), 0o600)?;
        Ok(())
    }

    pub fn remove(host: &Host) -> Result<(), StateError> {
        host.remove_file(STATE_PATH)?;
        Ok(())
    }

    /// Records directories about to be created by a write.
    pub fn add_dirs(&mut self, dirs: &[String]) {
        for d in dirs {
            if !self.dirs.contains(d) && d != STATE_DIR {
                self.dirs.push(d.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_a_corrupt_file_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        assert_eq!(State::load(&host).unwrap(), None);
        let mut s = State::new(Distro::K3s, "v1.35.3+k3s1", "rtx-5090");
        s.files.insert(
            "/usr/local/bin/k3s".into(),
            FileRecord {
                sha256: Some("ab".into()),
                mode: "0755".into(),
            },
        );
        s.save(&host).unwrap();
        assert_eq!(State::load(&host).unwrap(), Some(s));
        assert_eq!(host.read(STATE_PATH).unwrap().unwrap().mode, 0o600);
        std::fs::write(dir.path().join("var/lib/kstrap/state.json"), "{\"schema\": 1").unwrap();
        let err = State::load(&host).unwrap_err().to_string();
        assert!(err.contains("var/lib/kstrap/state.json is not a state file"), "{err}");
    }

    /// `--gpu-driver operator` is recorded so a re-run keeps the driver container; the host's
    /// driver (the default) is left out, so older states read as it.
    #[test]
    fn the_gpu_driver_choice_is_kept_and_defaults_to_the_host() {
        use crate::profile::GpuDriver;
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        let mut s = State::new(Distro::K3s, "v1.35.3+k3s1", "gpu-6gb");
        s.save(&host).unwrap();
        let text = host.read(STATE_PATH).unwrap().unwrap().bytes;
        assert!(!String::from_utf8_lossy(&text).contains("gpu_driver"));
        assert_eq!(State::load(&host).unwrap().unwrap().gpu_driver, GpuDriver::Host);
        s.gpu_driver = GpuDriver::Operator;
        s.save(&host).unwrap();
        let text = host.read(STATE_PATH).unwrap().unwrap().bytes;
        assert!(String::from_utf8_lossy(&text).contains("\"gpu_driver\": \"operator\""));
        assert_eq!(State::load(&host).unwrap().unwrap().gpu_driver, GpuDriver::Operator);
    }

    /// A state file written before the network was recorded still loads (no network), and one
    /// with it round-trips.
    #[test]
    fn old_state_files_load_and_the_network_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        let old = r#"{"schema": 1, "distro": "k3s", "version": "v1.35.3+k3s1", "profile": "cpu-fallback",
            "files": {}, "dirs": [], "services": ["k3s.service"], "data_dirs": [], "kubeconfig": null,
            "commands": {}, "pending": []}"#;
        std::fs::create_dir_all(dir.path().join("var/lib/kstrap")).unwrap();
        std::fs::write(dir.path().join("var/lib/kstrap/state.json"), old).unwrap();
        let mut s = State::load(&host).unwrap().unwrap();
        assert_eq!(s.network, None);
        s.network = Some(InstalledNetwork {
            pod_cidr: "172.30.0.0/16".into(),
            service_cidr: "172.31.0.0/16".into(),
            node_address: Some("192.168.1.23".into()),
            iface: Some("wlp2s0".into()),
            addresses: vec!["10.8.0.5".into(), "192.168.1.23".into()],
            proxy: true,
        });
        s.save(&host).unwrap();
        assert_eq!(State::load(&host).unwrap(), Some(s));
    }

    #[test]
    fn the_data_dir_round_trips_and_older_files_without_it_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        // A state file written before --data-dir existed: the default data directory.
        let old = r#"{"schema":1,"distro":"k0s","version":"v1.35.3+k0s.0","profile":"laptop-8gb","files":{},"dirs":[],"services":["k0scontroller.service"],"data_dirs":["/var/lib/k0s","/etc/k0s","/run/k0s"],"kubeconfig":null,"commands":{},"pending":[]}"#;
        std::fs::create_dir_all(dir.path().join("var/lib/kstrap")).unwrap();
        std::fs::write(dir.path().join("var/lib/kstrap/state.json"), old).unwrap();
        let s = State::load(&host).unwrap().unwrap();
        assert_eq!(s.data_dir, None);
        assert_eq!(s.paths().kubeconfig, "/var/lib/k0s/pki/admin.conf");
        // Saved again, it is the same file: no `data_dir` key for the default.
        s.save(&host).unwrap();
        let text = String::from_utf8(host.read(STATE_PATH).unwrap().unwrap().bytes).unwrap();
        assert!(!text.contains("data_dir\""), "{text}");

        let mut moved = State::new(Distro::K0s, "v1.35.3+k0s.0", "laptop-8gb");
        moved.data_dir = Some("/data/k0s".into());
        moved.save(&host).unwrap();
        let back = State::load(&host).unwrap().unwrap();
        assert_eq!(back, moved);
        assert_eq!(back.paths().kubeconfig, "/data/k0s/pki/admin.conf");
        assert_eq!(back.uninstall().mount_prefixes[0], "/data/k0s");
    }
}
