//! What `up` and `join` share between their plan and their summary: the release settings both
//! read from flags, refusing on a failed preflight, looking at the machine (before the question
//! and again under the lock), and running the plan's steps through the executor with Ctrl-C and
//! download progress wired up.

use super::{Exit, Failure};
use crate::exec::download::{DownloadProgress, NoProgress};
use crate::exec::host::Host;
use crate::exec::{self, ClusterSteps, ExecError, FailureKind, Found, Interrupt, StepReport};
use crate::finding::Severity;
use crate::plan::Plan;
use crate::ui::Printer;
use crate::ui::download_bar::DownloadBar;
use crate::ui::steps::StepLines;
use std::path::PathBuf;
use std::sync::Arc;

/// `--release-mirror` (default GitHub) and `--airgap` (must be a folder), as `up` and `join` read
/// them. The mirror URL itself is validated by the distribution module with the release data.
pub(crate) fn release_source(
    mirror: Option<&String>,
    airgap: Option<&PathBuf>,
) -> Result<(String, Option<PathBuf>), Failure> {
    let mirror = mirror
        .cloned()
        .unwrap_or_else(|| crate::distro::DEFAULT_MIRROR.to_string());
    if let Some(dir) = airgap
        && !dir.is_dir()
    {
        return Err(Failure::usage(format!(
            "--airgap {}: not a folder; give the folder holding the distribution binary (and images tarball)",
            dir.display()
        )));
    }
    Ok((mirror, airgap.cloned()))
}

/// The plan's failed preflight checks, one per line (with how to fix each when `fixes`).
pub(crate) fn failed_checks(plan: &Plan, fixes: bool) -> String {
    super::plan_findings(plan)
        .iter()
        .filter(|f| f.severity == Severity::Fail)
        .map(|f| match (&f.how_to_fix, fixes) {
            (Some(fix), true) => format!("  - {}: {}\n    fix: {fix}", f.check, f.what),
            _ => format!("  - {}: {}", f.check, f.what),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What is on the machine, judged by `admit` (whether this command may act on it). Refusals
/// come before anything is written: callers look once before asking, and again under the lock.
pub(crate) fn survey<T>(host: &Host, admit: impl Fn(Found) -> Result<T, Failure>) -> Result<T, Failure> {
    let found = exec::survey(host).map_err(|e| {
        if e.is_bad_input() {
            Failure::usage(e.to_string())
        } else {
            Failure::failed(e.to_string())
        }
    })?;
    admit(found)
}

/// Runs the plan's steps: step lines and (outside JSON mode) a download bar on the printer,
/// Ctrl-C stops between steps.
pub(crate) async fn execute(
    host: &Host,
    plan: &Plan,
    state: Option<exec::state::State>,
    cluster: &mut dyn ClusterSteps,
    options: exec::Options,
    printer: &Printer,
) -> Result<Vec<StepReport>, ExecError> {
    let interrupt = Arc::new(Interrupt::default());
    let on_ctrl_c = interrupt.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.trigger();
        }
    });
    let progress = StepLines { printer: *printer };
    // JSON mode keeps stderr to JSON lines: no download bar or lines there.
    let bar: Box<dyn DownloadProgress> = if printer.json_mode() {
        Box::new(NoProgress)
    } else {
        Box::new(DownloadBar::new(printer))
    };
    let mut executor = exec::Executor {
        host,
        progress: &progress,
        download: bar.as_ref(),
        cluster,
        options,
        interrupt: &interrupt,
    };
    executor.execute(plan, state).await
}

/// The exit code and message of a failed run.
pub(crate) fn failure(e: ExecError) -> Failure {
    let exit = match e.kind {
        FailureKind::TimedOut => Exit::Timeout,
        FailureKind::Failed | FailureKind::Interrupted => Exit::Failed,
    };
    Failure {
        exit,
        message: e.to_string(),
    }
}
