//! `kstrap verify`: runs the stack's declared checks (`crate::verify`) against the cluster of the
//! kubeconfig and reports each link. Exit 0 when everything works, 1 naming the first failed
//! link, 4 when the verification timed out, 2 for bad input (an unknown stack or profile, a stack
//! without checks, an unusable kubeconfig). `up` runs the same verification after the stack.

use super::{Exit, Failure, gather_facts, load_profiles, select_error};
use crate::cli::{GlobalArgs, VerifyArgs};
use crate::kube::client_from;
use crate::profile::{self, Overrides};
use crate::stack::{self, Stack};
use crate::ui::Printer;
use crate::verify::report::{self, Verification};
use serde::Serialize;
use std::time::Duration;

#[derive(Serialize)]
struct VerifyReport<'a> {
    ok: bool,
    exit_code: u8,
    verification: &'a Verification,
}

pub fn run(global: &GlobalArgs, args: &VerifyArgs, printer: &Printer) -> Result<Exit, Failure> {
    let timeout = crate::limits::wait_flag("--timeout", args.timeout).map_err(Failure::usage)?;
    let stack = sized_stack(global, args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
    let verification = runtime.block_on(async {
        let client = client_from(args.kube.kubeconfig.as_deref(), args.kube.context.as_deref())
            .await
            .map_err(|e| match e.exit_code() {
                2 => Failure::usage(e.to_string()),
                _ => Failure::failed(e.to_string()),
            })?;
        verify_stack(&client, &stack, timeout)
            .await
            .unwrap_or_else(|| Err(Failure::usage(no_checks(&stack.name))))
    })?;
    runtime.shutdown_background();
    if printer.json_mode() {
        printer.json(&VerifyReport {
            ok: verification.ok,
            exit_code: verification.exit_code(),
            verification: &verification,
        });
    } else {
        printer.stdout(&report::render(&verification));
        if let Some(line) = verification.failure_line() {
            printer.error(&line);
        }
    }
    Ok(match verification.exit_code() {
        0 => Exit::Ok,
        4 => Exit::Timeout,
        _ => Exit::Failed,
    })
}

fn no_checks(stack: &str) -> String {
    format!(
        "stack {stack} declares no checks\n  fix: add a verify: section to its stack.yaml (manifests/README.md: an HTTP request through each Service to its health path)"
    )
}

/// The stack as applied for the profile (named, or this host's choice): its models and GPU use
/// decide what is asked. Images the user names do not matter to the checks.
fn sized_stack(global: &GlobalArgs, args: &VerifyArgs) -> Result<Stack, Failure> {
    let facts = gather_facts(global)?;
    let profiles = load_profiles(global)?;
    // The same choice `up` made: the tier and model recorded at the first install are kept.
    let overrides = Overrides {
        profile: args.profile.clone(),
        distro: None,
        force: args.profile.is_some(),
        model: None,
        kept: super::kept_plan(global, &facts),
        // The driver's source does not change the stack's sizing for a GPU the host reports.
        gpu_driver: Default::default(),
    };
    let selection = profile::select(&facts, &profiles, &overrides).map_err(select_error)?;
    let name = args.stack.clone().unwrap_or_else(|| selection.profile.stack.clone());
    let loaded = stack::load(&name, global.stack_dir.as_deref()).map_err(|e| Failure::usage(e.to_string()))?;
    let mut sized = loaded.sized(&selection.profile.name);
    // The model the plan gave Ollama (the VRAM budget's, or the recorded one).
    sized.overlay(&crate::budget::stack_overlays(
        selection.vram_budget.as_ref(),
        selection.model.as_deref(),
    ));
    Ok(sized)
}

/// Runs the checks `stack` declares (None when it declares none); `timeout` replaces the
/// stack's own. Problems talking to the cluster are failures (exit 1).
pub(crate) async fn verify_stack(
    client: &::kube::Client,
    stack: &Stack,
    timeout: Option<Duration>,
) -> Option<Result<Verification, Failure>> {
    let mut resolved = crate::verify::resolve(stack)?;
    if let Some(t) = timeout {
        resolved.timeout_s = t.as_secs();
    }
    Some(
        crate::verify::run::run(client, &stack.name, &stack.namespace, &resolved)
            .await
            .map_err(|e| Failure::failed(format!("verification of stack {}: {e}", stack.name))),
    )
}
