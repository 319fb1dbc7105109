//! `kstrap verify`: runs the stack's declared checks (`crate::verify`) against the cluster of the
//! kubeconfig and reports each link. Exit 0 when everything works, 1 naming the first failed
//! link, 4 when the verification timed out, 2 for bad input (an unknown stack or profile, a stack
//! without checks, an unusable kubeconfig). `up` runs the same verification after the stack.

use super::setup::{chosen_stack, cluster_client, overlay_budget};
use super::{Exit, Failure};
use crate::cli::{GlobalArgs, VerifyArgs};
use crate::stack::Stack;
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
    let runtime = super::setup::runtime()?;
    let verification = runtime.block_on(async {
        let client = cluster_client(&args.kube).await?;
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
    // The same choice `up` made: the tier and model recorded at the first install are kept.
    let (loaded, selection, _) = chosen_stack(global, args.profile.as_deref(), args.stack.as_deref(), true)?;
    let mut sized = loaded.sized(&selection.profile.name);
    // The model the plan gave Ollama (the VRAM budget's, or the recorded one).
    overlay_budget(&mut sized, &selection);
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
