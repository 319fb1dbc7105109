//! `kstrap up`: plan, then execute the plan (or only print it with --dry-run).

use super::{Exit, Failure, build_plan, plan_findings, show_plan};
use crate::checks;
use crate::cli::{GlobalArgs, UpArgs};
use crate::ui::Printer;

pub fn run(global: &GlobalArgs, up: &UpArgs, printer: &Printer) -> Result<Exit, Failure> {
    if up.dry_run {
        return show_plan(global, &up.plan, printer);
    }
    let plan = build_plan(global, &up.plan)?;
    if plan.preflight.refused {
        let fails: Vec<String> = plan_findings(&plan)
            .iter()
            .filter(|f| f.severity == checks::Severity::Fail)
            .map(|f| format!("  - {}: {}", f.check, f.what))
            .collect();
        return Err(Failure::refused(format!(
            "preflight refused this host; nothing was changed:\n{}\n  see `kstrap plan` for how to fix each",
            fails.join("\n")
        )));
    }
    Err(Failure::failed(
        "this kstrap build plans but does not execute yet: the executor (installing k3s/k0s) is a separate issue. Use `kstrap up --dry-run` to see the plan",
    ))
}
