//! `kstrap plan --upgrade` and `kstrap up --upgrade`: the upgrade of the k3s or k0s kstrap
//! installed here to this run's version, shown step by step (`crate::distro::upgrade`) before
//! anything happens.

use super::{Planned, print_plan_with};
use crate::distro::upgrade::{self, UpgradePlan};
use crate::distro::{Distro, Version};
use crate::exec::host::Host;
use crate::exec::{self, Found};
use crate::plan::Plan;
use crate::ui::Printer;

/// The distribution and release kstrap recorded installing on this host (a server), if any.
/// A state file that cannot be read is said, not fatal: `plan` changes nothing.
pub(crate) fn installed(host: &Host) -> Result<Option<(Distro, String)>, String> {
    match exec::survey(host) {
        Ok(Found::Ours(state)) if state.role.is_server() => Ok(Some((state.distro, state.version.clone()))),
        Ok(_) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The upgrade from the installed release to the plan's, when both are releases of the same
/// distribution and differ.
pub(crate) fn of(installed: Option<&(Distro, String)>, plan: &Plan) -> Option<UpgradePlan> {
    let (distro, version) = installed?;
    if *distro != plan.distro {
        return None;
    }
    let from = Version::parse(*distro, version).ok()?;
    let to = Version::parse(plan.distro, &plan.distro_version).ok()?;
    upgrade::upgrade_plan(&from, &to)
}

/// Why there is no upgrade to show.
fn none_why(installed: &Result<Option<(Distro, String)>, String>, plan: &Plan) -> String {
    match installed {
        Err(e) => format!("--upgrade: cannot read what kstrap installed here: {e}"),
        Ok(None) => "--upgrade: kstrap installed no cluster here: this plan is a fresh install".to_string(),
        Ok(Some((d, _))) if *d != plan.distro => format!(
            "--upgrade: kstrap installed {d} here and this plan installs {}: that is a replacement (--replace), not an upgrade",
            plan.distro
        ),
        Ok(Some((d, v))) if *v == plan.distro_version => {
            format!("--upgrade: {d} {v} is installed here already: nothing to upgrade")
        }
        Ok(Some((d, v))) => {
            format!("--upgrade: the installed {d} release {v:?} is not a release tag kstrap can plan from")
        }
    }
}

/// The plan, then the upgrade (human), or the plan's JSON with an `upgrade` member.
pub(crate) fn print_with_plan(
    planned: &Planned,
    installed: &Result<Option<(Distro, String)>, String>,
    printer: &Printer,
) {
    let found = installed.as_ref().ok().and_then(|i| i.as_ref());
    let plan = of(found, &planned.plan);
    let text = match &plan {
        Some(p) => format!("\n{}", upgrade::render(p)),
        None => format!("\n{}\n", none_why(installed, &planned.plan)),
    };
    let json = serde_json::to_value(&plan).unwrap_or_default();
    print_plan_with(planned, &planned.plan, printer, Some((text, ("upgrade", json))));
}

/// `up --upgrade`, before it asks: the steps of the upgrade it is about to make (or refuse).
pub(crate) fn tell_before_up(found: &Found, plan: &Plan, printer: &Printer) {
    if printer.json_mode() {
        return;
    }
    let installed = match found {
        Found::Ours(state) if state.role.is_server() => Some((state.distro, state.version.clone())),
        _ => None,
    };
    if let Some(p) = of(installed.as_ref(), plan) {
        printer.info(upgrade::render(&p).trim_end());
    }
}
