//! `kstrap down`: remove what kstrap installed, and nothing else (from its state file only).
//!
//! Nothing is written before the user agreed and `down` is about to act: a dry run, a refusal
//! (no `--yes` without a terminal, a state file naming paths kstrap will not remove) and a
//! machine with nothing installed leave the host as they found it, the lock file included. The
//! lock is taken after consent, and the state is read again under it.

use super::up::host;
use super::{Exit, Failure};
use crate::cli::{DownArgs, GlobalArgs};
use crate::exec::down::{self, DownError, Item};
use crate::exec::host::Host;
use crate::exec::lock;
use crate::exec::state::{State, StateError};
use crate::ui::Printer;
use crate::ui::steps::{ask, removed};
use serde::Serialize;

const NOTHING: &str = "nothing to remove: kstrap has not installed anything here";

#[derive(Serialize)]
struct DownReport<'a> {
    dry_run: bool,
    removed: &'a [String],
    message: Option<&'a str>,
}

fn state_failure(e: StateError) -> Failure {
    if e.is_bad_input() {
        Failure::usage(e.to_string())
    } else {
        Failure::failed(e.to_string())
    }
}

pub(crate) fn down_failure(e: DownError) -> Failure {
    match e {
        DownError::Refused(m) => Failure::usage(m),
        DownError::State(e) => state_failure(e),
        other => Failure::failed(other.to_string()),
    }
}

fn nothing(args: &DownArgs, printer: &Printer) -> Result<Exit, Failure> {
    if printer.json_mode() {
        printer.json(&DownReport {
            dry_run: args.dry_run,
            removed: &[],
            message: Some(NOTHING),
        });
    } else {
        printer.stdout(&format!("{NOTHING}\n"));
    }
    Ok(Exit::Ok)
}

fn load(host: &Host) -> Result<Option<State>, Failure> {
    State::load(host).map_err(state_failure)
}

pub fn run(_global: &GlobalArgs, args: &DownArgs, printer: &Printer) -> Result<Exit, Failure> {
    let host = host();
    let Some(state) = load(&host)? else {
        return nothing(args, printer);
    };
    let items: Vec<String> = down::plan(&host, &state, args.keep_data)
        .map_err(down_failure)?
        .iter()
        .map(Item::describe)
        .collect();
    if args.dry_run {
        if printer.json_mode() {
            printer.json(&DownReport {
                dry_run: true,
                removed: &items,
                message: None,
            });
        } else {
            let mut text = format!("`kstrap down` would remove {} {}:\n", state.distro, state.version);
            for i in &items {
                text.push_str(&format!("  - {i}\n"));
            }
            printer.stdout(&text);
        }
        return Ok(Exit::Ok);
    }
    let keep = if args.keep_data {
        ", keeping its data"
    } else {
        ", with its data"
    };
    let question = format!("Remove {} {}{keep}?", state.distro, state.version);
    ask(args.yes, &question, "stopped: nothing was removed")?;
    // Agreed and about to act: take the lock, then read the state again under it (another run
    // may have finished in between).
    let _lock = lock::acquire(&host).map_err(|e| Failure::failed(e.to_string()))?;
    let Some(state) = load(&host)? else {
        return nothing(args, printer);
    };
    let mut done = Vec::new();
    down::run(&host, state, args.keep_data, &mut |item| {
        removed(printer, &item.describe());
        done.push(item.describe());
    })
    .map_err(down_failure)?;
    if printer.json_mode() {
        printer.json(&DownReport {
            dry_run: false,
            removed: &done,
            message: None,
        });
    } else {
        let kept = done.iter().filter(|d| d.starts_with("keep ")).count();
        if kept == 0 {
            printer.stdout("removed everything kstrap installed\n");
        } else {
            printer.stdout(&format!(
                "removed what kstrap installed; kept {kept} path{} (listed above, with the reason)\n",
                if kept == 1 { "" } else { "s" }
            ));
        }
    }
    Ok(Exit::Ok)
}
