//! The executor: the only place that changes the host. It runs a `Plan`'s steps in order through
//! one host seam (file writes under a root, commands, systemctl), downloads with verification,
//! and reports progress through a small trait the CLI implements.
//!
//! Every step first looks at what is there and returns `Unchanged` when it already matches, so a
//! re-run converges instead of reinstalling. Host and cluster steps run inside a `Transaction`
//! that undoes what is safe to undo when a step fails, and `state.json` is rewritten after each
//! step so that a killed run can be carried on. GPU and stack steps go to a `ClusterSteps`
//! implementation (the apply engine) with a client for the cluster the earlier steps brought up.

pub mod down;
pub mod download;
pub mod host;
pub mod killall;
pub mod kubeconfig;
pub mod lock;
pub mod mounts;
pub mod paths;
pub mod server_check;
pub mod state;
pub mod txn;
pub mod wait;
pub mod wait_node;

use crate::distro::Distro;
use crate::plan::Plan;
use crate::plan::step::{Action, Contents, Phase, Step, SystemdOp};
use host::{Host, HostError, sha256_hex};
use serde::Serialize;
use state::{FileRecord, KubeconfigRecord, State, StateError};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use txn::{Transaction, Undo};

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "note", rename_all = "snake_case")]
pub enum Outcome {
    /// The host or cluster was changed.
    Changed,
    /// Everything was already as the plan says; nothing was written or restarted.
    Unchanged,
    /// A check or wait that passed.
    Checked,
    /// Not run, and why.
    Skipped(String),
}

/// Progress of a run, for people or scripts. Implemented by the CLI (`ui::steps`).
pub trait StepProgress {
    fn started(&self, step: &Step);
    fn finished(&self, step: &Step, outcome: &Outcome, elapsed: Duration);
    fn failed(&self, step: &Step, message: &str, elapsed: Duration);
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a GPU or stack step failed.
#[derive(Debug, Clone)]
pub struct ClusterStepError {
    pub message: String,
    /// Waiting for readiness ran out of time (exit code 4).
    pub timed_out: bool,
}

/// Runs the steps of phases Addons, Gpu and Stack (`ApplyAddon`, `Apply`, `WaitGpu`, `ApplyStage`)
/// against the cluster.
pub trait ClusterSteps {
    fn run<'a>(
        &'a mut self,
        client: &'a ::kube::Client,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<Outcome, ClusterStepError>>;
}

/// Ctrl-C: set once, seen between steps and by waits.
#[derive(Debug, Default)]
pub struct Interrupt {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Interrupt {
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
    /// Resolves once `trigger` was called.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Merge the `kstrap` context into the user's kubeconfig (off with --no-merge-kubeconfig).
    pub merge_kubeconfig: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub id: String,
    pub title: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Failed,
    TimedOut,
    Interrupted,
}

/// A run that did not finish: which step, why, what was undone, what is left.
#[derive(Debug)]
pub struct ExecError {
    pub kind: FailureKind,
    pub step: String,
    pub title: String,
    pub message: String,
    pub undone: Vec<String>,
    pub left: Vec<String>,
    pub report: Vec<StepReport>,
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            FailureKind::Interrupted => write!(
                f,
                "interrupted at step {:?} ({}): the steps before it are done, it and the rest did not run",
                self.step, self.title
            )?,
            _ => write!(f, "step {:?} ({}) failed: {}", self.step, self.title, self.message)?,
        }
        if !self.undone.is_empty() {
            write!(f, "\n  undone:")?;
            for u in &self.undone {
                write!(f, "\n    - {u}")?;
            }
        }
        if self.left.is_empty() {
            write!(f, "\n  nothing kstrap did in this run is left on the machine")?;
        } else {
            write!(f, "\n  left on the machine:")?;
            for l in &self.left {
                write!(f, "\n    - {l}")?;
            }
            write!(
                f,
                "\n  fix: run `kstrap up` again to carry on from here, or `kstrap down` to remove what kstrap installed"
            )?;
        }
        Ok(())
    }
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

    /// Records a path as kstrap's (and the folders its write will create) before it is written,
    /// so a run killed mid-write still knows about it.
    fn claim_file(&self, run: &mut Run, path: &str, mode: u32) -> Result<(), StepError> {
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

    fn record_file(&self, run: &mut Run, path: &str, sha256: Option<String>, mode: u32) {
        run.state.files.insert(
            path.to_string(),
            FileRecord {
                sha256,
                mode: format!("{mode:04o}"),
            },
        );
    }

    fn before_write(&self, run: &mut Run, path: &str) -> Result<(), StepError> {
        if let Some(txn) = run.txn.as_mut() {
            txn.before_write(self.host, path)?;
        }
        Ok(())
    }

    /// Every later step that reloads or restarts because of `path` must act, in this run or,
    /// if this one dies first, the next.
    fn mark_pending(&self, run: &mut Run, path: &str) -> Result<Vec<String>, StepError> {
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

    fn after_fetch(
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

    fn run_checked(&self, program: &str, args: &[String]) -> Result<String, StepError> {
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

    fn systemctl_ok(&self, args: &[&str]) -> Result<bool, StepError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Ok(self.host.runner.run("systemctl", &args)?.success)
    }

    fn systemd(
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

    fn kubeconfig(&self, run: &mut Run, source: &str, dest: &str, context: &str) -> Result<Outcome, StepError> {
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
fn fresh_roots(host: &Host, dirs: &[&str]) -> Vec<String> {
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

/// What `up` found on the machine before changing anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Nothing of either distribution, no state.
    Nothing,
    /// kstrap installed this (state file).
    Ours(Box<State>),
    /// A distribution's files without kstrap's state: a cluster kstrap did not install.
    Foreign { distro: Distro, traces: Vec<String> },
}

/// Looks for kstrap's state, then for traces of either distribution at the paths kstrap uses.
pub fn survey(host: &Host) -> Result<Found, StateError> {
    if let Some(s) = State::load(host)? {
        return Ok(Found::Ours(Box::new(s)));
    }
    for distro in [Distro::K3s, Distro::K0s] {
        let p = distro.paths();
        let traces: Vec<String> = [Some(p.binary), Some(p.unit_file), p.data_dirs.first().copied()]
            .into_iter()
            .flatten()
            .filter(|x| host.exists(x))
            .map(String::from)
            .collect();
        if !traces.is_empty() {
            return Ok(Found::Foreign { distro, traces });
        }
    }
    Ok(Found::Nothing)
}

/// Why `up` will not touch the machine (exit 3).
pub fn admit(found: &Found, plan: &Plan, upgrade: bool, replace: bool) -> Result<(), String> {
    match found {
        Found::Nothing => Ok(()),
        Found::Ours(state) if !state.role.is_server() => Err(format!(
            "this machine is a {} worker that kstrap joined to a cluster (recorded in {}); a machine is a cluster's server or a worker of one, not both\n  fix: run `kstrap down` here first to make it a server of its own",
            state.distro,
            state::STATE_PATH
        )),
        Found::Ours(state) if state.distro != plan.distro => {
            if replace {
                Ok(())
            } else {
                Err(format!(
                    "kstrap installed {} {} here (recorded in {}); this run would install {}\n  fix: pass --replace to remove {} and its data first, or run `kstrap down`, or keep it with --distro {}",
                    state.distro,
                    state.version,
                    state::STATE_PATH,
                    plan.distro,
                    state.distro,
                    state.distro
                ))
            }
        }
        Found::Ours(state) if state.version != plan.distro_version && !upgrade => Err(format!(
            "{} {} is installed here by kstrap; this run would install {}\n  fix: pass --upgrade to move to {}, or --distro-version {} to stay",
            state.distro, state.version, plan.distro_version, plan.distro_version, state.version
        )),
        Found::Ours(state) if state.version != plan.distro_version => {
            // Both are tags of the same distribution here; one that does not parse (a state file
            // edited by hand) is left to the install to report.
            let refusal = crate::distro::Version::parse(state.distro, &state.version)
                .ok()
                .zip(crate::distro::Version::parse(plan.distro, &plan.distro_version).ok())
                .and_then(|(from, to)| crate::distro::upgrade_refusal(&from, &to));
            match refusal {
                Some(why) => Err(format!(
                    "--upgrade refused: {why}\n  fix: choose another --distro-version (installed: {}, recorded in {})",
                    state.version,
                    state::STATE_PATH
                )),
                None => Ok(()),
            }
        }
        Found::Ours(_) => Ok(()),
        Found::Foreign { distro, traces } => {
            if replace {
                Ok(())
            } else {
                Err(format!(
                    "{distro} is already on this machine but kstrap did not install it (found {}; no {})\n  fix: pass --replace to take it over (its data is lost), or remove it first",
                    traces.join(", "),
                    state::STATE_PATH
                ))
            }
        }
    }
}
