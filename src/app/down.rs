//! `kstrap down`: remove what kstrap installed, and nothing else (from its state file only).

use super::up::host;
use super::{Exit, Failure};
use crate::cli::{DownArgs, GlobalArgs};
use crate::exec::down::{self, Item};
use crate::exec::lock;
use crate::exec::state::State;
use crate::ui::Printer;
use crate::ui::steps::{confirm, removed};
use serde::Serialize;

const NOTHING: &str = "nothing to remove: kstrap has not installed anything here";

#[derive(Serialize)]
struct DownReport<'a> {
    dry_run: bool,
    removed: &'a [String],
    message: Option<&'a str>,
}

pub fn run(_global: &GlobalArgs, args: &DownArgs, printer: &Printer) -> Result<Exit, Failure> {
    let host = host();
    let _lock = lock::acquire(&host).map_err(|e| Failure::failed(e.to_string()))?;
    let Some(state) = State::load(&host).map_err(|e| Failure::failed(e.to_string()))? else {
        if printer.json_mode() {
            printer.json(&DownReport {
                dry_run: args.dry_run,
                removed: &[],
                message: Some(NOTHING),
            });
        } else {
            printer.stdout(&format!("{NOTHING}\n"));
        }
        return Ok(Exit::Ok);
    };
    let items: Vec<String> = down::items(&state, args.keep_data).iter().map(Item::describe).collect();
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
    if !args.yes {
        let keep = if args.keep_data {
            ", keeping its data"
        } else {
            ", with its data"
        };
        match confirm(&format!("Remove {} {}{keep}?", state.distro, state.version)) {
            Ok(true) => {}
            Ok(false) => return Err(Failure::failed("stopped: nothing was removed")),
            Err(why) => return Err(Failure::usage(why)),
        }
    }
    let mut done = Vec::new();
    down::run(&host, state, args.keep_data, &mut |item| {
        removed(printer, &item.describe());
        done.push(item.describe());
    })
    .map_err(|e| Failure::failed(e.to_string()))?;
    if printer.json_mode() {
        printer.json(&DownReport {
            dry_run: false,
            removed: &done,
            message: None,
        });
    } else {
        printer.stdout("removed everything kstrap installed\n");
    }
    Ok(Exit::Ok)
}
