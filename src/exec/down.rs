//! `down`: remove what kstrap installed, from its state file only, never anything else.
//!
//! Order: stop and disable the service (k0s: `k0s stop`, then `k0s reset` unless data is kept),
//! take the `kstrap` context out of the user's kubeconfig, remove the files kstrap wrote, reload
//! systemd if a unit went (remembered in the state until done), remove the data folders (unless `--keep-data`), the folders kstrap
//! created (when empty), and the state file last (kept with `--keep-data`, naming the kept data,
//! so a later `up` takes it back and a later `down` removes it). The state file is rewritten after each item,
//! so an interrupted `down` can be run again and the state names exactly what is left.

use super::host::{Host, HostError};
use super::kubeconfig;
use super::state::{self, State, StateError};
use crate::distro::Distro;

/// One thing `down` removes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    StopService {
        distro: Distro,
        unit: String,
        reset: bool,
    },
    KubeconfigContext {
        path: String,
        context: String,
    },
    File(String),
    /// After unit files went: systemd forgets the unit.
    DaemonReload,
    DataDir(String),
    Dirs,
    StateFile,
}

impl Item {
    pub fn describe(&self) -> String {
        match self {
            Item::StopService {
                distro: Distro::K0s,
                unit,
                reset,
            } => {
                if *reset {
                    format!("stop k0s ({unit}) and `k0s reset` it")
                } else {
                    format!("stop k0s ({unit}) and disable it")
                }
            }
            Item::StopService { unit, .. } => format!("stop and disable {unit}"),
            Item::KubeconfigContext { path, context } => format!("remove context {context} from {path}"),
            Item::File(p) => format!("remove {p}"),
            Item::DaemonReload => "reload systemd".into(),
            Item::DataDir(d) => format!("remove data folder {d}"),
            Item::Dirs => "remove the empty folders kstrap created".into(),
            Item::StateFile => format!("remove {}", state::STATE_PATH),
        }
    }
}

/// Marks in `State::pending` that a unit file is gone and systemd has not been reloaded yet.
const RELOAD: &str = "down:daemon-reload";

fn is_unit(path: &str) -> bool {
    path.starts_with("/etc/systemd/")
}

/// What `down` would remove, in order.
pub fn items(state: &State, keep_data: bool) -> Vec<Item> {
    let mut out: Vec<Item> = state
        .services
        .iter()
        .map(|u| Item::StopService {
            distro: state.distro,
            unit: u.clone(),
            reset: !keep_data,
        })
        .collect();
    if let Some(k) = &state.kubeconfig {
        out.push(Item::KubeconfigContext {
            path: k.path.clone(),
            context: k.context.clone(),
        });
    }
    out.extend(state.files.keys().rev().map(|f| Item::File(f.clone())));
    if state.files.keys().any(|f| is_unit(f)) || state.pending.contains(RELOAD) {
        out.push(Item::DaemonReload);
    }
    if !keep_data {
        out.extend(state.data_dirs.iter().map(|d| Item::DataDir(d.clone())));
    }
    out.push(Item::Dirs);
    // With kept data the state file stays, naming that data: `up` reuses it, `down` removes it.
    if keep_data && !state.data_dirs.is_empty() {
        return out;
    }
    out.push(Item::StateFile);
    out
}

#[derive(Debug, thiserror::Error)]
pub enum DownError {
    #[error(
        "{what} failed: {message}\n  still on the machine (recorded in {state}):{left}\n  fix: correct the cause, then run `kstrap down` again"
    )]
    Item {
        what: String,
        message: String,
        state: &'static str,
        left: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

/// Removes everything in `items(state, keep_data)`, calling `done` after each.
pub fn run(host: &Host, mut state: State, keep_data: bool, done: &mut dyn FnMut(&Item)) -> Result<(), DownError> {
    for item in items(&state, keep_data) {
        let result = remove(host, &mut state, &item);
        if let Err(message) = result {
            let left: String = items(&state, keep_data)
                .iter()
                .map(|i| format!("\n    - {}", i.describe()))
                .collect();
            return Err(DownError::Item {
                what: item.describe(),
                message,
                state: state::STATE_PATH,
                left,
            });
        }
        if item != Item::StateFile {
            state.save(host)?;
        }
        done(&item);
    }
    Ok(())
}

fn cmd(host: &Host, program: &str, args: &[&str]) -> Result<(), String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = host.runner.run(program, &args).map_err(|e| e.to_string())?;
    if out.success {
        Ok(())
    } else {
        Err(format!("`{program} {}`: {}", args.join(" "), out.stderr.trim()))
    }
}

fn remove(host: &Host, state: &mut State, item: &Item) -> Result<(), String> {
    let e = |e: HostError| e.to_string();
    match item {
        Item::StopService { distro, unit, reset } => {
            let paths = distro.paths();
            if *distro == Distro::K0s && host.exists(paths.binary) {
                // `k0s stop` fails when it is not running; that is fine here.
                let _ = cmd(host, paths.binary, &["stop"]);
                if *reset {
                    cmd(host, paths.binary, &["reset"])?;
                }
            }
            if host.exists(paths.unit_file) {
                cmd(host, "systemctl", &["disable", "--now", unit])?;
            }
            state.services.retain(|u| u != unit);
            // What the commands set up is gone with the service: a later `up` runs them again.
            state.commands.clear();
        }
        Item::KubeconfigContext { path, context } => {
            if let Some(existing) = host.read(path).map_err(e)? {
                let text = String::from_utf8_lossy(&existing.bytes);
                let created = state.kubeconfig.as_ref().is_some_and(|k| k.created);
                let (rest, others) = kubeconfig::remove(&text, path, context).map_err(|e| e.to_string())?;
                if !others && created {
                    host.remove_file(path).map_err(e)?;
                } else {
                    host.write_atomic(path, rest.as_bytes(), existing.mode).map_err(e)?;
                }
            }
            state.kubeconfig = None;
        }
        Item::File(p) => {
            host.remove_file(p).map_err(e)?;
            if is_unit(p) {
                state.pending.insert(RELOAD.into());
            }
            state.files.remove(p);
        }
        Item::DaemonReload => {
            cmd(host, "systemctl", &["daemon-reload"])?;
            state.pending.remove(RELOAD);
        }
        Item::DataDir(d) => {
            host.remove_tree(d).map_err(e)?;
            state.data_dirs.retain(|x| x != d);
        }
        Item::Dirs => {
            for d in state.dirs.iter().rev() {
                host.remove_dir_if_empty(d);
            }
            state.dirs.retain(|d| host.exists(d));
        }
        Item::StateFile => {
            State::remove(host).map_err(|e| e.to_string())?;
            let _ = host.remove_tree(super::txn::TXN_DIR);
            host.remove_dir_if_empty(state::STATE_DIR);
            let _ = host.remove_file(super::lock::LOCK_PATH);
        }
    }
    Ok(())
}
