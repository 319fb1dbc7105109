//! Runs a plan's steps in order: the run's bookkeeping (state file, transaction, report), the
//! dispatch of each step's action, and what a failure undoes and leaves.

mod effects;

use super::host::{Host, HostError, sha256_hex};
use super::state::{self, State, StateError};
use super::txn::Transaction;
use super::{
    ClusterSteps, ExecError, FailureKind, Interrupt, Outcome, StepProgress, StepReport, download, kubeconfig, wait,
    wait_node,
};
use crate::plan::Plan;
use crate::plan::step::{Action, Contents, Phase, Step};
use effects::fresh_roots;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Merge the `kstrap` context into the user's kubeconfig (off with --no-merge-kubeconfig).
    pub merge_kubeconfig: bool,
}

/// Why a step failed (before undo bookkeeping).
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Download(#[from] download::DownloadError),
    #[error(transparent)]
    Kubeconfig(#[from] kubeconfig::KubeconfigError),
    #[error("{0}")]
    Command(String),
    #[error(transparent)]
    Wait(Box<wait::WaitError>),
    #[error("{0}")]
    Cluster(String),
    #[error("{0}")]
    ClusterTimeout(String),
}

impl From<wait::WaitError> for StepError {
    fn from(e: wait::WaitError) -> Self {
        StepError::Wait(Box::new(e))
    }
}

/// Runs a plan's steps on a host.
pub struct Executor<'a> {
    pub host: &'a Host,
    pub progress: &'a dyn StepProgress,
    /// Progress of downloads (a bar on a terminal).
    pub download: &'a dyn download::DownloadProgress,
    pub cluster: &'a mut dyn ClusterSteps,
    pub options: Options,
    pub interrupt: &'a Interrupt,
}

/// Mutable bookkeeping of one run.
struct Run<'p> {
    plan: &'p Plan,
    state: State,
    /// Host paths changed in this run.
    changed: BTreeSet<String>,
    txn: Option<Transaction>,
    client: Option<::kube::Client>,
    /// What changed and cannot be undone, for the failure message.
    irreversible: Vec<String>,
    report: Vec<StepReport>,
    /// The outermost missing folder of each data folder when the run started: everything under
    /// it is created by the service.
    fresh_data_dirs: Vec<String>,
    /// Units this run added to the state (dropped from it again by a rollback).
    services_added: Vec<String>,
}

impl Executor<'_> {
    /// Runs every step of `plan`, starting from `state` (what an earlier run recorded, if any).
    pub async fn execute(&mut self, plan: &Plan, state: Option<State>) -> Result<Vec<StepReport>, ExecError> {
        let paths = plan.distro.paths();
        let mut state = state.unwrap_or_else(|| State::new(plan.distro, &plan.distro_version, &plan.profile));
        state.version = plan.distro_version.clone();
        state.profile = plan.profile.clone();
        state.model = plan.vram_budget.as_ref().map(|b| b.model.clone());
        for d in paths.data_dirs {
            let parents = self.host.missing_parents(&format!("{d}/x"));
            let parents: Vec<String> = parents.into_iter().filter(|p| p != d).collect();
            state.add_dirs(&parents);
            if !state.data_dirs.iter().any(|x| x == d) {
                state.data_dirs.push(d.to_string());
            }
        }
        let txn = Transaction::begin(self.host);
        let mut run = Run {
            plan,
            state,
            changed: BTreeSet::new(),
            txn: Some(txn),
            client: None,
            irreversible: Vec::new(),
            report: Vec::new(),
            fresh_data_dirs: fresh_roots(self.host, paths.data_dirs),
            services_added: Vec::new(),
        };
        if let Err(e) = run.state.save(self.host) {
            return Err(self.fail(&mut run, &plan.steps[0], FailureKind::Failed, e.to_string()));
        }
        for step in &plan.steps {
            if self.interrupt.is_set() {
                return Err(self.fail(&mut run, step, FailureKind::Interrupted, String::new()));
            }
            if matches!(step.phase, Phase::Addons | Phase::Gpu | Phase::Stack) {
                self.commit(&mut run);
            }
            self.progress.started(step);
            let started = Instant::now();
            let result = self.step(&mut run, step).await;
            let elapsed = started.elapsed();
            let result = match result {
                Ok(outcome) => run.state.save(self.host).map(|()| outcome).map_err(StepError::from),
                Err(e) => Err(e),
            };
            match result {
                Ok(outcome) => {
                    if matches!(step.action, Action::WaitCluster { .. } | Action::WaitNode { .. }) {
                        // The cluster is up: from here a failure leaves it running and says so.
                        self.commit(&mut run);
                    }
                    self.progress.finished(step, &outcome, elapsed);
                    run.report.push(StepReport {
                        id: step.id.clone(),
                        title: step.title.clone(),
                        outcome,
                        elapsed_ms: elapsed.as_millis() as u64,
                    });
                }
                Err(e) => {
                    let kind = match &e {
                        StepError::Wait(w) if matches!(**w, wait::WaitError::Interrupted) => FailureKind::Interrupted,
                        StepError::Wait(_) | StepError::ClusterTimeout(_) => FailureKind::TimedOut,
                        _ => FailureKind::Failed,
                    };
                    let message = e.to_string();
                    self.progress.failed(step, &message, elapsed);
                    return Err(self.fail(&mut run, step, kind, message));
                }
            }
        }
        self.commit(&mut run);
        Ok(run.report)
    }

    fn commit(&self, run: &mut Run) {
        if let Some(txn) = run.txn.take() {
            txn.commit(self.host);
        }
    }

    /// Undoes what is safe (not on Ctrl-C: then the run stops between steps and the next one
    /// carries on), and builds the error.
    fn fail(&self, run: &mut Run, step: &Step, kind: FailureKind, message: String) -> ExecError {
        let mut undone = Vec::new();
        let mut left = Vec::new();
        if let Some(txn) = run.txn.take() {
            if kind == FailureKind::Interrupted {
                txn.commit(self.host);
            } else {
                let rb = txn.rollback(self.host);
                undone = rb.undone;
                left.extend(rb.failed);
                // The state file forgets what was undone.
                let host = self.host;
                run.state.files.retain(|path, _| host.exists(path));
                // A unit added in this run was stopped by the rollback, or never started.
                let added = std::mem::take(&mut run.services_added);
                run.state.services.retain(|u| !added.contains(u));
            }
        }
        left.extend(run.irreversible.iter().cloned());
        let nothing_left =
            run.state.files.is_empty() && run.state.services.is_empty() && run.state.kubeconfig.is_none();
        if nothing_left && run.state.commands.is_empty() {
            let _ = State::remove(self.host);
            let _ = self.host.remove_dir_if_empty(state::STATE_DIR);
        } else {
            let _ = run.state.save(self.host);
            for path in run.state.files.keys() {
                if !left.iter().any(|l| l.contains(path.as_str())) {
                    left.push(format!("{path} (installed by kstrap)"));
                }
            }
        }
        ExecError {
            kind,
            step: step.id.clone(),
            title: step.title.clone(),
            message,
            undone,
            left,
            report: std::mem::take(&mut run.report),
        }
    }

    async fn step(&mut self, run: &mut Run<'_>, step: &Step) -> Result<Outcome, StepError> {
        match &step.action {
            Action::Preflight { .. } => Ok(Outcome::Checked),
            Action::Download {
                url,
                checksum,
                dest,
                mode,
            } => {
                self.claim_file(run, dest, mode.0)?;
                self.before_write(run, dest)?;
                let dl = download::Downloader::new(download::RetryPolicy::default())?;
                let fetched = dl
                    .fetch_verified(url, checksum, &self.host.path(dest), *mode, self.download)
                    .await;
                self.after_fetch(run, dest, mode.0, fetched)
            }
            Action::CopyLocal {
                source,
                checksum,
                dest,
                mode,
            } => {
                self.claim_file(run, dest, mode.0)?;
                self.before_write(run, dest)?;
                let dl = download::Downloader::new(download::RetryPolicy::default())?;
                let fetched = download::copy_verified(
                    &dl,
                    std::path::Path::new(source),
                    checksum.as_ref(),
                    &self.host.path(dest),
                    *mode,
                )
                .await;
                self.after_fetch(run, dest, mode.0, fetched)
            }
            Action::WriteFile { path, mode, contents } => {
                let Contents::Text(text) = contents else {
                    return Err(StepError::Command(format!(
                        "{path}: secret file contents are not supported by this executor"
                    )));
                };
                let existing = self.host.read(path)?;
                if existing
                    .as_ref()
                    .is_some_and(|e| e.bytes == text.as_bytes() && e.mode == mode.0)
                {
                    let sha = sha256_hex(text.as_bytes());
                    // Written by a run that died before recording it: dependents must still act.
                    if run.state.files.get(path).and_then(|r| r.sha256.as_deref()) != Some(sha.as_str()) {
                        let _ = self.mark_pending(run, path)?;
                    }
                    self.record_file(run, path, Some(sha), mode.0);
                    return Ok(Outcome::Unchanged);
                }
                let _ = self.mark_pending(run, path)?;
                self.claim_file(run, path, mode.0)?;
                self.before_write(run, path)?;
                self.host.write_atomic(path, text.as_bytes(), mode.0)?;
                self.record_file(run, path, Some(sha256_hex(text.as_bytes())), mode.0);
                run.changed.insert(path.clone());
                Ok(Outcome::Changed)
            }
            Action::Command { program, args, creates } => {
                let missing = creates.iter().any(|c| !self.host.exists(c));
                let same = run.state.commands.get(&step.id) == Some(args);
                if same && !missing && !run.state.pending.contains(&step.id) {
                    return Ok(Outcome::Unchanged);
                }
                for c in creates {
                    let _ = self.mark_pending(run, c)?;
                    self.claim_file(run, c, 0o644)?;
                    if let Some(r) = run.state.files.get_mut(c) {
                        r.sha256 = None;
                    }
                }
                run.state.save(self.host)?;
                self.run_checked(program, args)?;
                run.irreversible.push(format!("ran {} {}", program, args.join(" ")));
                run.state.commands.insert(step.id.clone(), args.clone());
                run.state.pending.remove(&step.id);
                for c in creates {
                    run.changed.insert(c.clone());
                }
                Ok(Outcome::Changed)
            }
            Action::Systemd {
                unit,
                op,
                after_changes,
            } => self.systemd(run, step, unit, *op, after_changes),
            Action::WaitCluster { kubeconfig, timeout_s } => {
                let unit = run.plan.distro.paths().service_unit;
                let client = wait::wait_cluster(
                    self.host,
                    kubeconfig,
                    unit,
                    Duration::from_secs(*timeout_s),
                    self.interrupt,
                )
                .await?;
                run.client = Some(client);
                Ok(Outcome::Checked)
            }
            Action::WaitNode {
                kubeconfig,
                node,
                gpus,
                timeout_s,
            } => {
                let unit = run.state.paths().service_unit;
                match wait_node::wait_node(
                    self.host,
                    kubeconfig,
                    node,
                    *gpus,
                    unit,
                    Duration::from_secs(*timeout_s),
                    self.interrupt,
                )
                .await
                {
                    Ok(_) => Ok(Outcome::Checked),
                    Err(wait_node::NodeWaitError::Interrupted(_)) => Err(wait::WaitError::Interrupted.into()),
                    Err(e) => Err(StepError::ClusterTimeout(e.to_string())),
                }
            }
            Action::Kubeconfig { source, dest, context } => self.kubeconfig(run, source, dest, context),
            Action::Apply { .. } | Action::WaitGpu { .. } | Action::ApplyAddon { .. } | Action::ApplyStage { .. } => {
                let Some(client) = run.client.clone() else {
                    return Err(StepError::Cluster(
                        "no cluster to talk to: the plan has no wait step before this one".into(),
                    ));
                };
                match self.cluster.run(&client, step).await {
                    Ok(o) => Ok(o),
                    Err(e) if e.timed_out => Err(StepError::ClusterTimeout(e.message)),
                    Err(e) => Err(StepError::Cluster(e.message)),
                }
            }
        }
    }
}
