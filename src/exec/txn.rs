//! A transaction over the host, in the rustup sense: every effect that is safe to undo records
//! how, and a failure undoes them in reverse; success commits (drops the backups).
//!
//! - a file that did not exist is removed again;
//! - a replaced file is restored from a backup: a hard link to the old file taken before the
//!   atomic rename (free, since the rename gives the path a new inode), or a copy when the backup
//!   folder is on another filesystem;
//! - a directory the run created is removed when empty;
//! - a service the run started that was neither enabled nor running before is stopped and
//!   disabled, and systemd reloaded after unit files went back.
//!
//! Backups live in `/var/lib/kstrap/txn/`. A run killed before it could commit or roll back leaves
//! them there; the next run deletes them on start (its state file says what is on the machine,
//! and that run converges from there).

use super::host::{Host, HostError};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Host path of the backup folder.
pub const TXN_DIR: &str = "/var/lib/kstrap/txn";

#[derive(Debug)]
pub enum Undo {
    RemoveFile(String),
    Restore {
        path: String,
        backup: PathBuf,
        mode: u32,
    },
    RemoveDir(String),
    /// A folder tree that did not exist before the run (a service's data).
    RemoveTree(String),
    DisableNow(String),
    DaemonReload,
}

#[derive(Debug, Default)]
pub struct Transaction {
    undo: Vec<Undo>,
    n: usize,
}

/// What a rollback did and could not do.
#[derive(Debug, Default)]
pub struct Rollback {
    pub undone: Vec<String>,
    pub failed: Vec<String>,
}

impl Transaction {
    /// Starts a transaction, deleting backups a killed run left behind.
    pub fn begin(host: &Host) -> Self {
        let _ = host.remove_tree(TXN_DIR);
        Transaction::default()
    }

    pub fn is_empty(&self) -> bool {
        self.undo.is_empty()
    }

    /// Call before `path` is (re)written: records how to put back what is there now.
    pub fn before_write(&mut self, host: &Host, path: &str) -> Result<(), HostError> {
        let p = host.path(path);
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                for dir in host.missing_parents(path) {
                    self.undo.push(Undo::RemoveDir(dir));
                }
                self.undo.push(Undo::RemoveFile(path.to_string()));
                return Ok(());
            }
            Err(e) => return Err(HostError::io(&p)(e)),
        };
        let dir = host.path(TXN_DIR);
        std::fs::create_dir_all(&dir).map_err(HostError::io(&dir))?;
        self.n += 1;
        let backup = dir.join(format!("{}", self.n));
        if std::fs::hard_link(&p, &backup).is_err() {
            std::fs::copy(&p, &backup).map_err(HostError::io(&backup))?;
        }
        self.undo.push(Undo::Restore {
            path: path.to_string(),
            backup,
            mode: meta.permissions().mode() & 0o7777,
        });
        Ok(())
    }

    /// The write recorded by the last `before_write` did not happen (the file was already right).
    pub fn nothing_written(&mut self) {
        match self.undo.pop() {
            Some(Undo::Restore { backup, .. }) => {
                let _ = std::fs::remove_file(backup);
            }
            Some(Undo::RemoveFile(_)) => {
                // Its parent folders, if any were recorded, go with it.
                while matches!(self.undo.last(), Some(Undo::RemoveDir(_))) {
                    self.undo.pop();
                }
            }
            Some(other) => self.undo.push(other),
            None => {}
        }
    }

    pub fn push(&mut self, undo: Undo) {
        self.undo.push(undo);
    }

    /// Keeps everything: deletes the backups.
    pub fn commit(self, host: &Host) {
        let _ = host.remove_tree(TXN_DIR);
    }

    /// Undoes everything recorded, newest first.
    pub fn rollback(self, host: &Host) -> Rollback {
        let mut out = Rollback::default();
        for undo in self.undo.into_iter().rev() {
            let (what, result): (String, Result<(), String>) = match undo {
                Undo::RemoveFile(path) => (
                    format!("removed {path} (new in this run)"),
                    host.remove_file(&path).map(|_| ()).map_err(|e| e.to_string()),
                ),
                Undo::RemoveDir(dir) => {
                    let gone = host.remove_dir_if_empty(&dir);
                    if !gone {
                        continue;
                    }
                    (format!("removed folder {dir}"), Ok(()))
                }
                Undo::Restore { path, backup, mode } => (
                    format!("restored the previous {path}"),
                    std::fs::read(&backup)
                        .map_err(|e| format!("{}: {e}", backup.display()))
                        .and_then(|bytes| host.write_atomic(&path, &bytes, mode).map_err(|e| e.to_string())),
                ),
                Undo::RemoveTree(dir) => {
                    if !host.exists(&dir) {
                        continue;
                    }
                    (
                        format!("removed {dir} (created by the service started in this run)"),
                        host.remove_tree(&dir).map(|_| ()).map_err(|e| e.to_string()),
                    )
                }
                Undo::DisableNow(unit) => (
                    format!("stopped and disabled {unit} (started in this run)"),
                    run_ok(host, &["disable", "--now", &unit]),
                ),
                Undo::DaemonReload => ("reloaded systemd".to_string(), run_ok(host, &["daemon-reload"])),
            };
            match result {
                Ok(()) => out.undone.push(what),
                Err(e) => out.failed.push(format!("could not undo ({what}): {e}")),
            }
        }
        let _ = host.remove_tree(TXN_DIR);
        out
    }
}

fn run_ok(host: &Host, args: &[&str]) -> Result<(), String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    match host.runner.run("systemctl", &args) {
        Ok(o) if o.success => Ok(()),
        Ok(o) => Err(format!("systemctl {} failed: {}", args.join(" "), o.stderr.trim())),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_removes_new_files_and_dirs_and_restores_replaced_ones() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        host.write_atomic("/etc/old.conf", b"old", 0o640).unwrap();
        let mut txn = Transaction::begin(&host);
        txn.before_write(&host, "/etc/old.conf").unwrap();
        host.write_atomic("/etc/old.conf", b"new", 0o600).unwrap();
        txn.before_write(&host, "/opt/kstrap/new.conf").unwrap();
        host.write_atomic("/opt/kstrap/new.conf", b"x", 0o600).unwrap();
        txn.before_write(&host, "/etc/same.conf").unwrap();
        txn.nothing_written();
        let rb = txn.rollback(&host);
        assert!(rb.failed.is_empty(), "{:?}", rb.failed);
        assert_eq!(
            rb.undone,
            [
                "removed /opt/kstrap/new.conf (new in this run)",
                "removed folder /opt/kstrap",
                "removed folder /opt",
                "restored the previous /etc/old.conf"
            ]
        );
        let old = host.read("/etc/old.conf").unwrap().unwrap();
        assert_eq!((old.bytes.as_slice(), old.mode), (&b"old"[..], 0o640));
        assert!(!host.exists("/opt"));
        assert!(!host.exists(TXN_DIR));
    }

    #[test]
    fn commit_keeps_changes_and_drops_backups() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        host.write_atomic("/etc/a", b"1", 0o644).unwrap();
        let mut txn = Transaction::begin(&host);
        txn.before_write(&host, "/etc/a").unwrap();
        host.write_atomic("/etc/a", b"2", 0o644).unwrap();
        assert!(host.exists(TXN_DIR));
        txn.commit(&host);
        assert_eq!(host.read("/etc/a").unwrap().unwrap().bytes, b"2");
        assert!(!host.exists(TXN_DIR));
    }
}
