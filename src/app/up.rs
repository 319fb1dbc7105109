//! `kstrap up`: plan, check that the machine is ours to change, confirm, then execute the plan.
//!
//! Refusals come before anything changes: preflight failures and a cluster kstrap did not
//! install (or another distribution, or another version without --upgrade) end with exit 3.

use super::cluster_steps::EngineSteps;
use super::summary::{Inputs, Summary, summarize};
use super::{Exit, Failure, build, run_plan};
use crate::cli::{GlobalArgs, UpArgs};
use crate::exec::host::Host;
use crate::exec::{self, Found};
use crate::plan::Plan;
use crate::plan::step::Phase;
use crate::ui::Printer;
use crate::ui::steps::ask;
use crate::{env, exec::lock};
use serde::Serialize;
use std::path::PathBuf;

/// The machine to change: `/`, or `KSTRAP_HOST_ROOT` (a mounted system, a test folder).
pub(crate) fn host() -> Host {
    let root = std::env::var_os(env::HOST_ROOT)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    Host::new(root, std::env::var_os(env::PATH))
}

#[derive(Serialize)]
struct UpReport<'a> {
    result: &'static str,
    distro: String,
    version: &'a str,
    profile: &'a str,
    kubeconfig_context: Option<&'a str>,
    steps: &'a [exec::StepReport],
    /// What runs now and where to open it (the human summary, as data).
    summary: &'a Summary,
}

pub fn run(global: &GlobalArgs, up: &UpArgs, printer: &Printer) -> Result<Exit, Failure> {
    // Every input the run reads is checked first, the dry run included.
    let stage_timeout = crate::limits::wait_flag("--timeout", up.timeout).map_err(Failure::usage)?;
    let planned = build(global, &up.plan)?;
    check_inputs(up, &planned)?;
    let mut plan = planned.plan.clone();
    if up.cluster_only {
        plan.steps.retain(|s| !matches!(s.phase, Phase::Gpu | Phase::Stack));
    }
    if up.dry_run {
        super::print_plan(&planned, &plan, printer);
        return Ok(Exit::Ok);
    }
    if let Some(why) = &planned.data_dir_refusal {
        return Err(Failure::refused(why.clone()));
    }
    if plan.preflight.refused {
        return Err(Failure::refused(format!(
            "preflight refused this host; nothing was changed:\n{}\n  see `kstrap plan` for how to fix each",
            run_plan::failed_checks(&plan, false)
        )));
    }

    let host = host();
    let survey = |host: &Host, first: bool| {
        run_plan::survey(host, |found| {
            // The upgrade's steps, before it is refused or the user is asked.
            if first && up.upgrade {
                super::upgrade::tell_before_up(&found, &plan, printer);
            }
            exec::admit(&found, &plan, up.upgrade, up.replace).map_err(Failure::refused)?;
            Ok(found)
        })
    };
    // Refusals write nothing: the machine is looked at, and the user asked, before the lock.
    survey(&host, true)?;

    let question = format!(
        "Install {} {} with profile {} on this machine ({} steps)?",
        plan.distro,
        plan.distro_version,
        plan.profile,
        plan.steps.len()
    );
    ask(up.yes, &question, "stopped: nothing was changed")?;

    // Agreed and about to act: take the lock, then look again under it (another run may have
    // changed the machine in between).
    let _lock = lock::acquire(&host).map_err(|e| Failure::failed(e.to_string()))?;
    let found = survey(&host, false)?;

    let runtime = super::setup::runtime()?;
    let state = replace_first(&host, found, &plan, printer)?;

    let (result, applied, node_address, verification) = runtime.block_on(async {
        let mut cluster = EngineSteps::new(
            planned.stack.clone(),
            crate::gpu::gpu_objects_in(&planned.facts, &planned.selection, plan.paths()),
            printer,
        );
        cluster.stage_timeout = stage_timeout;
        cluster.verify_gpu = up.verify_gpu;
        cluster.secret_files = up.secret_files.clone();
        cluster.addons = planned.addons;
        let options = exec::Options {
            merge_kubeconfig: !up.no_merge_kubeconfig,
        };
        let result = run_plan::execute(&host, &plan, state, &mut cluster, options, printer).await;
        // The stack is up: prove it works (reads, and the verification Job, which is not one of
        // the stack's objects).
        let verification = match (&result, &cluster.client) {
            (Ok(_), Some(client)) if cluster.applied.is_some() => {
                super::verify::verify_stack(client, &cluster.stack, None).await
            }
            _ => None,
        };
        (
            result,
            cluster.applied.take(),
            cluster.node_address.take(),
            verification,
        )
    });
    runtime.shutdown_background();
    match result {
        Ok(steps) => {
            let context = (!up.no_merge_kubeconfig).then_some(crate::distro::KUBECONFIG_CONTEXT);
            let mut summary = summarize(&Inputs {
                plan: &plan,
                steps: &steps,
                stack: &planned.stack,
                applied: applied.as_ref(),
                node_address: node_address.as_deref(),
                kubeconfig_context: context,
            });
            let verification = verification.transpose()?;
            summary.verification = verification.clone();
            report(&plan, &steps, &summary, printer);
            // A stack that is Ready but does not work is a failed `up`: the summary above shows
            // every link; the error names the first that failed.
            // (With -o json the report is the one document: its result says so.)
            match verification {
                Some(v) if !v.ok => {
                    if !printer.json_mode() {
                        printer.error(
                            &v.failure_line()
                                .unwrap_or_else(|| format!("verification of stack {} failed", v.stack)),
                        );
                    }
                    Ok(if v.timed_out { Exit::Timeout } else { Exit::Failed })
                }
                _ => Ok(Exit::Ok),
            }
        }
        Err(e) => Err(run_plan::failure(e)),
    }
}

/// What the run reads later, checked now (a dry run too): the secret files and secret variables
/// of the stack and the add-ons, and the kubeconfig the `kstrap` context is merged into.
fn check_inputs(up: &UpArgs, planned: &super::Planned) -> Result<(), Failure> {
    use crate::stack::secrets;
    let env = |k: &str| std::env::var(k).ok();
    let usage = |e: secrets::SecretError| Failure::usage(e.to_string());
    secrets::check_files(&planned.stack, &up.secret_files).map_err(usage)?;
    if !up.cluster_only {
        secrets::check_env(&planned.stack, &up.secret_files, &env).map_err(usage)?;
    }
    for addon in &planned.addons {
        secrets::check_env(&addon.stack, &[], &env).map_err(usage)?;
    }
    if up.no_merge_kubeconfig {
        return Ok(());
    }
    let host = host();
    for step in &planned.plan.steps {
        if let crate::plan::step::Action::Kubeconfig { dest, .. } = &step.action
            && let Some(existing) = host.read(dest).map_err(|e| Failure::usage(e.to_string()))?
        {
            crate::exec::kubeconfig::check_mergeable(&String::from_utf8_lossy(&existing.bytes), dest)
                .map_err(|e| Failure::usage(e.to_string()))?;
        }
    }
    Ok(())
}

/// With --replace: removes kstrap's install of the other distribution, or stops a cluster kstrap
/// did not install, before installing. Returns the state to carry on from.
fn replace_first(
    host: &Host,
    found: Found,
    plan: &Plan,
    printer: &Printer,
) -> Result<Option<exec::state::State>, Failure> {
    match found {
        Found::Nothing => Ok(None),
        Found::Ours(state) if state.distro == plan.distro => Ok(Some(*state)),
        Found::Ours(state) => {
            printer.info(&format!(
                "removing {} {} first (--replace)",
                state.distro, state.version
            ));
            exec::down::run(host, *state, false, &mut |item| {
                crate::ui::steps::removed(printer, &item.describe())
            })
            .map_err(super::down::down_failure)?;
            Ok(None)
        }
        Found::Foreign { distro, .. } => {
            let paths = distro.paths();
            printer.info(&format!(
                "stopping the {distro} kstrap did not install and removing its data (--replace)"
            ));
            if host.exists(paths.unit_file) {
                let args = vec!["disable".to_string(), "--now".into(), paths.service_unit.into()];
                let out = host
                    .runner
                    .run("systemctl", &args)
                    .map_err(|e| Failure::failed(e.to_string()))?;
                if !out.success {
                    return Err(Failure::failed(format!(
                        "--replace: `systemctl disable --now {}` failed: {}",
                        paths.service_unit,
                        out.stderr.trim()
                    )));
                }
            }
            // What k3s-killall.sh does, then the data: never through a live mount.
            exec::down::killall(host, distro).map_err(Failure::failed)?;
            for d in paths.data_dirs {
                exec::down::remove_tree(host, d, &[]).map_err(Failure::failed)?;
            }
            Ok(None)
        }
    }
}

fn report(plan: &Plan, steps: &[exec::StepReport], summary: &Summary, printer: &Printer) {
    if printer.json_mode() {
        let verified = summary.verification.as_ref().is_none_or(|v| v.ok);
        printer.json(&UpReport {
            result: if verified { "ok" } else { "verification_failed" },
            distro: plan.distro.to_string(),
            version: &plan.distro_version,
            profile: &plan.profile,
            kubeconfig_context: summary.kubeconfig_context.as_deref(),
            steps,
            summary,
        });
        return;
    }
    printer.stdout(&crate::ui::summary::render(summary));
}
