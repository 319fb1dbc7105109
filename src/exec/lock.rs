//! One kstrap changing a machine at a time.
//!
//! `up` and `down` take an exclusive `flock` on `/run/kstrap.lock` (under the host root) and
//! write their pid into it. A second run fails at once, naming the holder's pid. The lock lives
//! as long as the open file: when the process dies, even by SIGKILL, the kernel releases it, so
//! there is never a stale lock to clean up by hand.

use super::host::{Host, HostError};
use rustix::fs::{FlockOperation, flock};
use std::io::{Read, Seek, Write};

/// Host path of the lock file.
pub const LOCK_PATH: &str = "/run/kstrap.lock";

/// Held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another kstrap (pid {pid}) is changing this machine (it holds {path}); wait for it to finish, or stop it")]
    Held { pid: String, path: String },
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Takes the lock or fails at once.
pub fn acquire(host: &Host) -> Result<Lock, LockError> {
    let path = host.path(LOCK_PATH);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(HostError::io(dir))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(HostError::io(&path))?;
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = pid.trim();
        return Err(LockError::Held {
            pid: if pid.is_empty() {
                "unknown".into()
            } else {
                pid.to_string()
            },
            path: LOCK_PATH.into(),
        });
    }
    let io = HostError::io(&path);
    (|| {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()
    })()
    .map_err(io)?;
    Ok(Lock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_naming_the_pid_and_is_free_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path().to_path_buf(), None);
        let first = acquire(&host).unwrap();
        // flock is per open file description: a second open in this process conflicts too.
        match acquire(&host) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        assert!(acquire(&host).is_ok());
    }
}
