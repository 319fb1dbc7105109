//! `down`: remove what kstrap installed, as the distribution's own uninstall does, and nothing
//! else.
//!
//! `plan` checks the state file against the one list of what the distribution's uninstall
//! removes (`distro::uninstall`) and lists the items; `run` does them. Order, after upstream's:
//! stop and disable the service (k0s: `k0s stop`, then `k0s reset` unless data is kept, which
//! stops the containers and removes k0s's folders); on k3s, what k3s-killall.sh does (kill the
//! containerd shims and their children, unmount and remove what is mounted under /run/k3s and the
//! kubelet's pods and plugins, delete the CNI namespaces and interfaces, remove /var/lib/cni, drop
//! the KUBE-/CNI-/flannel iptables rules); take the `kstrap` context out of the user's
//! kubeconfig; remove the files kstrap wrote (those changed since are kept, with the reason);
//! reload systemd if a unit went (remembered in the state until done); without `--keep-data`, the
//! data folders and the uninstall script's other folders; what the GPU operator's toolkit left
//! on the host; the folders kstrap created (when empty); the state file last (kept with
//! `--keep-data`, naming the kept data, so a later `up` takes it back and a later `down` removes
//! it). The state file is rewritten after each item, so an interrupted `down` can be run again
//! and the state names exactly what is left; the host-side items are found again from the host.

mod plan;
mod remove;

pub use plan::{check, plan};
pub use remove::remove_tree;

use super::host::{Host, HostError};
use super::kubeconfig;
use super::state::{self, State, StateError};
use super::{killall, mounts};
use crate::distro::Distro;
use crate::distro::uninstall;
use plan::RELOAD;

/// One thing `down` does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    StopService {
        distro: Distro,
        unit: String,
        reset: bool,
        /// The install's data directory when not the default (`k0s reset --data-dir`).
        data_dir: Option<String>,
    },
    /// The containerd shims and their descendants (pids as planned; found again when run).
    KillShims {
        pids: Vec<u32>,
    },
    /// A mount point to unmount, then remove.
    Unmount(String),
    DeleteNetns(String),
    DeleteLink(String),
    /// Drop the distribution's rules from `tool` (`iptables`, `ip6tables`).
    DropRules {
        tool: String,
        count: usize,
    },
    KubeconfigContext {
        path: String,
        context: String,
    },
    File(String),
    /// A file left in place, and why.
    Keep {
        path: String,
        why: String,
    },
    /// After unit files went: systemd forgets the unit.
    DaemonReload,
    /// Undo a firewall rule `up --open-firewall` added (`distro::firewall::close`).
    CloseFirewall {
        program: String,
        args: Vec<String>,
    },
    /// A folder the distribution's uninstall removes that kstrap does not record.
    Tree(String),
    /// A recorded data folder, less the files kept in it.
    DataDir {
        path: String,
        keep: Vec<String>,
    },
    /// A file or folder the GPU operator's container toolkit left on the host.
    Leftover(String),
    Dirs,
    StateFile,
    /// Said, not done.
    Note(String),
}

impl Item {
    pub fn describe(&self) -> String {
        match self {
            Item::StopService {
                distro: Distro::K0s,
                unit,
                reset,
                data_dir,
            } => {
                if *reset {
                    let data = data_dir
                        .as_deref()
                        .unwrap_or(crate::distro::data_dir::default_dir(Distro::K0s));
                    format!(
                        "stop k0s ({unit}) and `k0s reset` it (stops its containers, unmounts and removes {data} and /run/k0s, its CNI files and kube-bridge)"
                    )
                } else {
                    format!("stop k0s ({unit}) and disable it")
                }
            }
            Item::StopService { unit, .. } => format!("stop and disable {unit}"),
            Item::KillShims { pids } => format!(
                "kill k3s's containerd shims and their children (SIGKILL): {} process{} ({})",
                pids.len(),
                if pids.len() == 1 { "" } else { "es" },
                pids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
            ),
            Item::Unmount(p) => format!("unmount and remove {p}"),
            Item::DeleteNetns(n) => format!("delete network namespace {n}"),
            Item::DeleteLink(n) => format!("delete network interface {n}"),
            Item::DropRules { tool, count } => {
                format!(
                    "drop {count} KUBE-/CNI-/flannel {tool} rule{}",
                    if *count == 1 { "" } else { "s" }
                )
            }
            Item::KubeconfigContext { path, context } => format!("remove context {context} from {path}"),
            Item::File(p) => format!("remove {p}"),
            Item::Keep { path, why } => format!("keep {path}: {why}"),
            Item::DaemonReload => "reload systemd".into(),
            Item::CloseFirewall { program, args } => {
                format!("remove the firewall rule kstrap added: {program} {}", args.join(" "))
            }
            Item::Tree(p) => format!("remove {p}"),
            Item::DataDir { path, keep } if keep.is_empty() => format!("remove data folder {path}"),
            Item::DataDir { path, keep } => format!("remove data folder {path} (keeping {})", keep.join(", ")),
            Item::Leftover(p) => format!("remove {p} (left by the GPU operator's container toolkit)"),
            Item::Dirs => "remove the empty folders kstrap created".into(),
            Item::StateFile => format!("remove {}", state::STATE_PATH),
            Item::Note(n) => format!("note: {n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DownError {
    /// The state file names something `down` will not remove; nothing was changed (exit 2).
    #[error("{0}")]
    Refused(String),
    /// The host could not be looked at (a probe such as `ps` failed).
    #[error("cannot tell what is left on this machine: {0}\n  nothing was changed")]
    Survey(String),
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

/// What k3s-killall.sh does, done now: for `up --replace` over a cluster kstrap did not install,
/// before its data folders go. Nothing for a distribution whose reset does it (k0s).
pub fn killall(host: &Host, distro: Distro) -> Result<(), String> {
    let u = distro.uninstall();
    if u.delegated {
        return Ok(());
    }
    let found = killall::survey(host, u)?;
    let mut items = Vec::new();
    if !found.pids.is_empty() {
        items.push(Item::KillShims { pids: found.pids });
    }
    items.extend(found.mounts.into_iter().map(Item::Unmount));
    items.extend(found.netns.into_iter().map(Item::DeleteNetns));
    items.extend(found.links.into_iter().map(Item::DeleteLink));
    items.extend(
        found
            .rules
            .into_iter()
            .map(|(tool, count)| Item::DropRules { tool, count }),
    );
    let mut scratch = State::new(distro, "", "");
    for item in &items {
        remove(host, &mut scratch, item).map_err(|m| format!("{} failed: {m}", item.describe()))?;
    }
    Ok(())
}

/// Does everything in `plan(host, state, keep_data)`, calling `done` after each item.
pub fn run(host: &Host, mut state: State, keep_data: bool, done: &mut dyn FnMut(&Item)) -> Result<(), DownError> {
    let items = plan(host, &state, keep_data)?;
    for item in items {
        let result = remove(host, &mut state, &item);
        if let Err(message) = result {
            let left: String = match plan(host, &state, keep_data) {
                Ok(items) => items
                    .iter()
                    .filter(|i| !matches!(i, Item::Note(_) | Item::Keep { .. }))
                    .map(|i| format!("\n    - {}", i.describe()))
                    .collect(),
                Err(e) => format!("\n    (cannot tell: {e})"),
            };
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
    let u = state.uninstall();
    match item {
        Item::StopService {
            distro,
            unit,
            reset,
            data_dir,
        } => {
            let paths = distro.paths_for(state.role);
            if *distro == Distro::K0s && host.exists(paths.binary) {
                // `k0s stop` fails when it is not running; that is fine here.
                let _ = cmd(host, paths.binary, &["stop"]);
                if *reset {
                    // `k0s reset` reads the data directory from its own `--data-dir` flag
                    // (k0sproject/k0s v1.35.3+k0s.0 `cmd/reset/reset.go` adds
                    // `config.GetPersistentFlagSet()`, default /var/lib/k0s), not from the unit.
                    let flag = data_dir.as_ref().map(|d| format!("--data-dir={d}"));
                    let mut args = vec!["reset"];
                    args.extend(flag.as_deref());
                    cmd(host, paths.binary, &args)?;
                }
            }
            if host.exists(paths.unit_file) {
                cmd(host, "systemctl", &["disable", "--now", unit])?;
                // As k3s-uninstall.sh: forget a failed state (fails harmlessly when there is none).
                let _ = cmd(host, "systemctl", &["reset-failed", unit]);
            }
            state.services.retain(|u| u != unit);
            // What the commands set up is gone with the service: a later `up` runs them again.
            state.commands.clear();
        }
        Item::KillShims { .. } => killall::kill_shims(host, u)?,
        Item::Unmount(point) => {
            if mounts::mount_points(host).iter().any(|m| m == point) {
                killall::unmount(host, point)?;
            }
            remove_tree(host, point, &[])?;
        }
        Item::DeleteNetns(n) => killall::delete_netns(host, n)?,
        Item::DeleteLink(n) => killall::delete_link(host, n)?,
        Item::DropRules { tool, .. } => killall::drop_rules(host, tool, u)?,
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
            if p.starts_with("/etc/systemd/") {
                state.pending.insert(RELOAD.into());
            }
            state.files.remove(p);
        }
        Item::Keep { path, .. } => {
            // Not kstrap's any more: the state stops naming it.
            state.files.remove(path);
            state.data_dirs.retain(|d| d != path);
        }
        Item::CloseFirewall { program, args } => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cmd(host, program, &args)?;
        }
        Item::DaemonReload => {
            cmd(host, "systemctl", &["daemon-reload"])?;
            state.pending.remove(RELOAD);
        }
        Item::Tree(p) => {
            remove_tree(host, p, &[])?;
        }
        Item::DataDir { path, keep } => {
            remove_tree(host, path, keep)?;
            state.data_dirs.retain(|x| x != path);
        }
        Item::Leftover(p) => {
            remove_tree(host, p, &[])?;
            if p == uninstall::TOOLKIT_DIR {
                host.remove_dir_if_empty(uninstall::TOOLKIT_INSTALL_DIR);
            }
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
        Item::Note(_) => {}
    }
    Ok(())
}
