//! The host seam: every file the executor reads or writes and every command it runs goes
//! through `Host`, so the same code acts on `/` for real and on a temp folder in tests.
//!
//! Paths in a plan are absolute host paths (`/etc/rancher/k3s/config.yaml`); `Host::path` maps
//! them under `root` (`/` normally, `KSTRAP_HOST_ROOT` for rescue shells and tests). Writes are
//! atomic: a temp file in the same directory, fsync, chmod, rename, then fsync of the directory,
//! so a crash leaves the old file or the new one, never half of one. Commands run through duct
//! with stdout and stderr captured, so a failure can say what the program said.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Runs programs by name. Programs the plan names by absolute path run from that path when the
/// host root is `/`; with another root (a mounted system, a test folder) the host's own binaries
/// cannot run from here, so the program's file name is looked up on `PATH` instead.
#[derive(Debug, Clone)]
pub struct CommandRunner {
    path: Option<OsString>,
    root_is_slash: bool,
}

/// What a command printed; stdout may carry secrets (tokens) and is only handed back.
#[derive(Debug)]
pub struct CommandOutput {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} not found on PATH")]
    NotFound { program: String },
}

impl HostError {
    pub fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> HostError {
        let path = path.as_ref().display().to_string();
        move |source| HostError::Io { path, source }
    }
}

impl CommandRunner {
    pub fn new(path: Option<OsString>, root_is_slash: bool) -> Self {
        CommandRunner { path, root_is_slash }
    }

    /// The file that runs for `program`.
    pub fn resolve(&self, program: &str) -> Result<PathBuf, HostError> {
        let p = Path::new(program);
        if p.is_absolute() && self.root_is_slash {
            return Ok(p.to_path_buf());
        }
        let name = p.file_name().unwrap_or(p.as_os_str());
        let dirs = self.path.as_deref().map(std::env::split_paths);
        dirs.into_iter()
            .flatten()
            .map(|d| d.join(name))
            .find(|c| std::fs::metadata(c).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
            .ok_or_else(|| HostError::NotFound {
                program: program.to_string(),
            })
    }

    /// Runs `program args…` to completion, capturing its output; a non-zero exit is not an error
    /// here (callers decide), a program that cannot start is.
    pub fn run(&self, program: &str, args: &[String]) -> Result<CommandOutput, HostError> {
        self.run_with_input(program, args, None)
    }

    /// `run`, with `input` on the program's stdin (`iptables-restore` reads the rules there).
    pub fn run_with_input(
        &self,
        program: &str,
        args: &[String],
        input: Option<&[u8]>,
    ) -> Result<CommandOutput, HostError> {
        let exe = self.resolve(program)?;
        let cmd = duct::cmd(&exe, args);
        let cmd = match input {
            Some(bytes) => cmd.stdin_bytes(bytes.to_vec()),
            None => cmd.stdin_null(),
        };
        let out = cmd
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .map_err(|source| HostError::Spawn {
                program: program.to_string(),
                source,
            })?;
        Ok(CommandOutput {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// The machine kstrap changes: a filesystem root and a command runner.
#[derive(Debug, Clone)]
pub struct Host {
    pub root: PathBuf,
    pub runner: CommandRunner,
}

/// An existing file's bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub bytes: Vec<u8>,
    pub mode: u32,
}

impl Host {
    pub fn new(root: PathBuf, path: Option<OsString>) -> Self {
        let root_is_slash = root == Path::new("/");
        Host {
            root,
            runner: CommandRunner::new(path, root_is_slash),
        }
    }

    /// The host path `abs` under this root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    pub fn exists(&self, abs: &str) -> bool {
        self.path(abs).symlink_metadata().is_ok()
    }

    /// The file at `abs`, or `None` when there is none.
    pub fn read(&self, abs: &str) -> Result<Option<Existing>, HostError> {
        let p = self.path(abs);
        match std::fs::read(&p) {
            Ok(bytes) => {
                let mode = std::fs::metadata(&p).map_err(HostError::io(&p))?.permissions().mode() & 0o7777;
                Ok(Some(Existing { bytes, mode }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::io(&p)(e)),
        }
    }

    /// The directories above `abs` that do not exist yet, outermost first (what a write creates).
    pub fn missing_parents(&self, abs: &str) -> Vec<String> {
        let mut missing = Vec::new();
        let mut cur = Path::new(abs).parent();
        while let Some(dir) = cur {
            if dir == Path::new("/") || self.exists(&dir.to_string_lossy()) {
                break;
            }
            missing.push(dir.to_string_lossy().into_owned());
            cur = dir.parent();
        }
        missing.reverse();
        missing
    }

    /// Writes `bytes` to `abs` atomically with `mode`. A replaced file keeps its owner and group;
    /// a new file gets the owner of its directory (so `~/.kube/config` written under sudo belongs
    /// to the user whose home it is in).
    pub fn write_atomic(&self, abs: &str, bytes: &[u8], mode: u32) -> Result<(), HostError> {
        let dest = self.path(abs);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        self.create_dirs(abs)?;
        let owner = std::fs::metadata(&dest)
            .or_else(|_| std::fs::metadata(&dir))
            .map(|m| (m.uid(), m.gid()))
            .ok();
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.kstrap-tmp"));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(HostError::io(&tmp))?;
            f.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(HostError::io(&tmp))?;
            f.write_all(bytes).map_err(HostError::io(&tmp))?;
            let ours = f.metadata().map(|m| (m.uid(), m.gid())).ok();
            if let Some((uid, gid)) = owner
                && ours != Some((uid, gid))
            {
                // Only root may give a file away; anyone else keeps it as their own.
                let (uid, gid) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
                let _ = rustix::fs::fchown(&f, Some(uid), Some(gid));
            }
            f.sync_all().map_err(HostError::io(&tmp))?;
            std::fs::rename(&tmp, &dest).map_err(HostError::io(&dest))?;
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Creates the folders above `abs`, each owned like the nearest folder that already existed
    /// (so `~/.kube` created under sudo belongs to the user).
    fn create_dirs(&self, abs: &str) -> Result<(), HostError> {
        let missing = self.missing_parents(abs);
        let Some(first) = missing.first() else {
            return Ok(());
        };
        let anchor = Path::new(first).parent().map(|p| self.path(&p.to_string_lossy()));
        let owner = anchor
            .and_then(|a| std::fs::metadata(a).ok())
            .map(|m| (m.uid(), m.gid()));
        for d in &missing {
            let p = self.path(d);
            match std::fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(HostError::io(&p)(e)),
            }
            if let Some((uid, gid)) = owner {
                let (uid, gid) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
                let _ = rustix::fs::chown(&p, Some(uid), Some(gid));
            }
        }
        Ok(())
    }

    /// Removes a file; a missing one is fine. Returns whether something was removed.
    pub fn remove_file(&self, abs: &str) -> Result<bool, HostError> {
        let p = self.path(abs);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(HostError::io(&p)(e)),
        }
    }

    /// Removes a directory tree; a missing one is fine.
    pub fn remove_tree(&self, abs: &str) -> Result<bool, HostError> {
        let p = self.path(abs);
        match std::fs::remove_dir_all(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(HostError::io(&p)(e)),
        }
    }

    /// Removes a directory only if it is empty (or missing). Returns whether it is gone.
    pub fn remove_dir_if_empty(&self, abs: &str) -> bool {
        let p = self.path(abs);
        match std::fs::remove_dir(&p) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        (dir, host)
    }

    #[test]
    fn atomic_write_creates_parents_sets_mode_and_leaves_no_temp_file() {
        let (dir, host) = host();
        assert_eq!(
            host.missing_parents("/etc/rancher/k3s/config.yaml"),
            ["/etc", "/etc/rancher", "/etc/rancher/k3s"]
        );
        host.write_atomic("/etc/rancher/k3s/config.yaml", b"a: 1\n", 0o600)
            .unwrap();
        let got = host.read("/etc/rancher/k3s/config.yaml").unwrap().unwrap();
        assert_eq!(
            got,
            Existing {
                bytes: b"a: 1\n".to_vec(),
                mode: 0o600
            }
        );
        let names: Vec<_> = std::fs::read_dir(dir.path().join("etc/rancher/k3s"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.yaml"]);
        host.write_atomic("/etc/rancher/k3s/config.yaml", b"b: 2\n", 0o644)
            .unwrap();
        let got = host.read("/etc/rancher/k3s/config.yaml").unwrap().unwrap();
        assert_eq!((got.bytes.as_slice(), got.mode), (&b"b: 2\n"[..], 0o644));
        assert!(host.missing_parents("/etc/rancher/k3s/other").is_empty());
    }

    #[test]
    fn read_and_remove_missing_files_are_not_errors() {
        let (_dir, host) = host();
        assert_eq!(host.read("/nope").unwrap(), None);
        assert!(!host.remove_file("/nope").unwrap());
        assert!(!host.remove_tree("/nope/dir").unwrap());
        assert!(host.remove_dir_if_empty("/nope/dir"));
    }

    #[test]
    fn commands_resolve_on_path_and_capture_output() {
        let (dir, _host) = host();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let script = bin.join("say");
        std::fs::write(&script, "#!/bin/sh\necho out \"$@\"\necho err >&2\nexit 3\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let runner = CommandRunner::new(Some(bin.clone().into_os_string()), false);
        assert_eq!(runner.resolve("/usr/local/bin/say").unwrap(), script);
        let out = runner.run("/usr/local/bin/say", &["hi".into()]).unwrap();
        assert!(!out.success);
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (Some(3), "out hi\n", "err\n")
        );
        assert!(matches!(runner.run("missing", &[]), Err(HostError::NotFound { .. })));
    }
}
