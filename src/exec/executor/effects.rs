//! The effects of single steps: recording files in the state before and after they are written,
//! marking the restarts they make pending, commands, systemd units and the merged kubeconfig.

use super::{Executor, Run, StepError};
use crate::exec::host::Host;
use crate::exec::state::{FileRecord, KubeconfigRecord};
use crate::exec::txn::Undo;
use crate::exec::{Outcome, download, kubeconfig};
use crate::plan::step::{Action, Step, SystemdOp};

impl Executor<'_> {
    /// Records a path as kstrap's (and the folders its write will create) before it is written,
    /// so a run killed mid-write still knows about it.
    pub(super) fn claim_file(&self, run: &mut Run, path: &str, mode: u32) -> Result<(), StepError> {
        if !run.state.files.contains_key(path) {
            let parents = self.host.missing_parents(path);
            run.state.add_dirs(&parents);
            run.state.files.insert(
                path.to_string(),
                FileRecord {
                    sha256: None,
                    mode: format!("{mode:04o}"),
                },
            );
            run.state.save(self.host)?;
        }
        Ok(())
    }

    pub(super) fn record_file(&self, run: &mut Run, path: &str, sha256: Option<String>, mode: u32) {
        run.state.files.insert(
            path.to_string(),
            FileRecord {
                sha256,
                mode: format!("{mode:04o}"),
            },
        );
    }

    pub(super) fn before_write(&self, run: &mut Run, path: &str) -> Result<(), StepError> {
        if let Some(txn) = run.txn.as_mut() {
            txn.before_write(self.host, path)?;
        }
        Ok(())
    }

    /// Every later step that reloads or restarts because of `path` must act, in this run or,
    /// if this one dies first, the next.
    pub(super) fn mark_pending(&self, run: &mut Run, path: &str) -> Result<Vec<String>, StepError> {
        let mut added = Vec::new();
        for s in &run.plan.steps {
            if let Action::Systemd { after_changes, .. } = &s.action
                && after_changes.iter().any(|p| p == path)
                && run.state.pending.insert(s.id.clone())
            {
                added.push(s.id.clone());
            }
        }
        if !added.is_empty() {
            run.state.save(self.host)?;
        }
        Ok(added)
    }

    pub(super) fn after_fetch(
        &self,
        run: &mut Run,
        dest: &str,
        mode: u32,
        fetched: Result<download::Fetched, download::DownloadError>,
    ) -> Result<Outcome, StepError> {
        let fetched = fetched?;
        if !fetched.changed {
            if let Some(txn) = run.txn.as_mut() {
                txn.nothing_written();
            }
            // A file that differs from what the state recorded was replaced by a run that died
            // before it could record it (or restart for it): what depends on it must still act.
            let recorded = run.state.files.get(dest).and_then(|r| r.sha256.clone());
            if recorded.as_deref() != Some(fetched.sha256.as_str()) {
                let _ = self.mark_pending(run, dest)?;
            }
            self.record_file(run, dest, Some(fetched.sha256), mode);
            return Ok(Outcome::Unchanged);
        }
        let _ = self.mark_pending(run, dest)?;
        self.record_file(run, dest, Some(fetched.sha256), mode);
        run.changed.insert(dest.to_string());
        Ok(Outcome::Changed)
    }

    pub(super) fn run_checked(&self, program: &str, args: &[String]) -> Result<String, StepError> {
        let out = self.host.runner.run(program, args)?;
        if out.success {
            Ok(out.stdout)
        } else {
            let tail: Vec<&str> = out.stderr.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(StepError::Command(format!(
                "`{} {}` exited with {}{}",
                program,
                args.join(" "),
                out.code
                    .map(|c| format!("code {c}"))
                    .unwrap_or_else(|| "a signal".into()),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(":\n    {}", tail.join("\n    "))
                }
            )))
        }
    }

    pub(super) fn systemctl_ok(&self, args: &[&str]) -> Result<bool, StepError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Ok(self.host.runner.run("systemctl", &args)?.success)
    }

    pub(super) fn systemd(
        &self,
        run: &mut Run,
        step: &Step,
        unit: &str,
        op: SystemdOp,
        after_changes: &[String],
    ) -> Result<Outcome, StepError> {
        let triggered = after_changes.iter().any(|p| run.changed.contains(p)) || run.state.pending.contains(&step.id);
        let s = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let outcome = match op {
            SystemdOp::DaemonReload => {
                if !after_changes.is_empty() && !triggered {
                    Outcome::Unchanged
                } else {
                    self.run_checked("systemctl", &s(&["daemon-reload"]))?;
                    if let Some(txn) = run.txn.as_mut() {
                        txn.push(Undo::DaemonReload);
                    }
                    Outcome::Changed
                }
            }
            SystemdOp::EnableNow => {
                if !run.state.services.iter().any(|u| u == unit) {
                    run.state.services.push(unit.to_string());
                    run.services_added.push(unit.to_string());
                    run.state.save(self.host)?;
                }
                let active = self.systemctl_ok(&["is-active", "--quiet", unit])?;
                if !active {
                    let enabled = self.systemctl_ok(&["is-enabled", "--quiet", unit])?;
                    self.run_checked("systemctl", &s(&["enable", "--now", unit]))?;
                    match run.txn.as_mut() {
                        Some(txn) if !enabled => {
                            // Undone in reverse: stop the service, then remove what it created.
                            for d in &run.fresh_data_dirs {
                                txn.push(Undo::RemoveTree(d.clone()));
                            }
                            txn.push(Undo::DisableNow(unit.to_string()));
                        }
                        _ => run.irreversible.push(format!("started {unit}")),
                    }
                    Outcome::Changed
                } else if triggered {
                    self.run_checked("systemctl", &s(&["restart", unit]))?;
                    run.irreversible.push(format!("restarted {unit} with the new files"));
                    Outcome::Changed
                } else if !self.systemctl_ok(&["is-enabled", "--quiet", unit])? {
                    self.run_checked("systemctl", &s(&["enable", unit]))?;
                    run.irreversible.push(format!("enabled {unit}"));
                    Outcome::Changed
                } else {
                    Outcome::Unchanged
                }
            }
            SystemdOp::Restart => {
                self.run_checked("systemctl", &s(&["restart", unit]))?;
                run.irreversible.push(format!("restarted {unit}"));
                Outcome::Changed
            }
        };
        run.state.pending.remove(&step.id);
        Ok(outcome)
    }

    pub(super) fn kubeconfig(
        &self,
        run: &mut Run,
        source: &str,
        dest: &str,
        context: &str,
    ) -> Result<Outcome, StepError> {
        if !self.options.merge_kubeconfig {
            return Ok(Outcome::Skipped(format!(
                "--no-merge-kubeconfig: use the admin kubeconfig at {source} (root only)"
            )));
        }
        let admin = self
            .host
            .read(source)?
            .ok_or_else(|| StepError::Command(format!("{source} is missing: the distribution did not write it")))?;
        let entries = kubeconfig::kstrap_entries(&String::from_utf8_lossy(&admin.bytes), source, context)?;
        let existing = self.host.read(dest)?;
        let existing_text = existing
            .as_ref()
            .map(|e| String::from_utf8_lossy(&e.bytes).into_owned());
        let merged = kubeconfig::merge(existing_text.as_deref(), dest, &entries, context)?;
        let created = match &run.state.kubeconfig {
            Some(k) if k.path == dest => k.created,
            _ => existing.is_none(),
        };
        let record = KubeconfigRecord {
            path: dest.to_string(),
            context: context.to_string(),
            created,
        };
        if run.state.kubeconfig.as_ref() != Some(&record) {
            if existing.is_none() {
                let parents = self.host.missing_parents(dest);
                run.state.add_dirs(&parents);
            }
            run.state.kubeconfig = Some(record);
            run.state.save(self.host)?;
        }
        if existing
            .as_ref()
            .is_some_and(|e| e.bytes == merged.as_bytes() && e.mode == 0o600)
        {
            return Ok(Outcome::Unchanged);
        }
        self.before_write(run, dest)?;
        self.host.write_atomic(dest, merged.as_bytes(), 0o600)?;
        Ok(Outcome::Changed)
    }
}

/// For each folder in `dirs` that does not exist, its outermost missing ancestor (or itself).
pub(super) fn fresh_roots(host: &Host, dirs: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in dirs {
        if host.exists(d) {
            continue;
        }
        let root = host
            .missing_parents(&format!("{d}/x"))
            .into_iter()
            .next()
            .unwrap_or_else(|| d.to_string());
        if !out.contains(&root) {
            out.push(root);
        }
    }
    out
}
