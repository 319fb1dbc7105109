//! What `down` will do on this host: the state file checked against the one list of what the
//! distribution's own uninstall removes, then the items in upstream's order.
//!
//! The state file is outside input (a person or a program can edit it), so nothing in it is
//! trusted: every path must be plain, stay inside the host root, reach its target through no
//! link, and be one the list allows — a file or folder the distribution's uninstall removes
//! (`distro::uninstall`), a file kstrap installs for it (`Paths`), or a folder kstrap recorded
//! creating. One bad entry refuses the whole run before anything changes. A recorded file whose
//! content changed since kstrap wrote it is kept, and the plan says why.

use super::{DownError, Item};
use crate::distro::Distro;
use crate::distro::uninstall::{self, When};
use crate::exec::host::{Host, sha256_hex};
use crate::exec::killall;
use crate::exec::paths::{self, Unsafe, is_within};
use crate::exec::state::{self, State};

/// The folders and files the distribution's uninstall removes, and the files kstrap installs for
/// it: the only places `down` deletes from.
fn allowed(state: &State) -> (Vec<&'static str>, Vec<&'static str>) {
    let u = state.uninstall();
    let p = state.paths();
    let trees = u.trees.iter().map(|(t, _)| *t).collect();
    let mut files: Vec<&str> = u.files.to_vec();
    files.extend([p.binary, p.config, p.unit_file]);
    files.extend(p.env_file);
    // A worker's unit and environment file are removed as the agent's uninstall script removes
    // them (install.sh: `FILE_K3S_SERVICE`, `FILE_K3S_ENV` of `k3s-agent`; `k0s reset` uninstalls
    // the `k0sworker` service too), and the token file kstrap copied goes with them.
    if state.role == crate::distro::worker::Role::Worker {
        files.push(crate::distro::worker::token_file(state.distro));
    }
    files.extend(state.distro.extra_files());
    (trees, files)
}

/// Why the state file cannot be acted on: every bad entry, one per line.
pub fn check(host: &Host, state: &State) -> Result<(), String> {
    let (trees, files) = allowed(state);
    let paths = state.paths();
    let mut bad: Vec<String> = Vec::new();
    let mut entry = |field: &str, value: &str, why: String| {
        bad.push(format!("  - {field}: {value:?} {why}"));
    };
    let safe = |p: &str| paths::resolve(host, p).map(|_| ()).map_err(|e: Unsafe| e.to_string());
    let in_tree = |p: &str| trees.iter().any(|t| is_within(p, t));

    for f in state.files.keys() {
        if let Err(why) = safe(f) {
            entry("files", f, why);
        } else if !files.contains(&f.as_str()) && !in_tree(f) {
            entry(
                "files",
                f,
                format!(
                    "is not a file {}'s uninstall removes or kstrap installs for it",
                    state.distro
                ),
            );
        }
    }
    // A data directory from the state is outside input like the rest: one `--data-dir` would
    // refuse (`/`, `/home`, a folder of the system) is never removed.
    if let Some(d) = &state.data_dir
        && let Err(e) = crate::distro::data_dir::check(std::path::Path::new(d))
    {
        entry(
            "data_dir",
            d,
            format!("is not a data folder kstrap installs into: {}", e.problem),
        );
    }
    for d in &state.data_dirs {
        if let Err(why) = safe(d) {
            entry("data_dirs", d, why);
        } else if !paths.data_dirs.contains(&d.as_str()) {
            entry("data_dirs", d, format!("is not one of {}'s data folders", state.distro));
        }
    }
    // The kubeconfig is edited (kstrap's context taken out), and removed only when kstrap
    // created it and nothing else is left in it.
    let kube = state.kubeconfig.as_ref().map(|k| k.path.as_str());
    if let Some(k) = kube
        && let Err(why) = safe(k)
    {
        entry("kubeconfig.path", k, why);
    }
    // Folders kstrap created are removed only when empty, and only on the way to what it may
    // write: the list above, the distribution's data folders, the kubeconfig's folder or a
    // `~/.kube` (so a `down` that already removed some of those can be run again).
    let holds = |d: &str| {
        d.ends_with("/.kube")
            || kube.is_some_and(|k| is_within(k, d))
            || files
                .iter()
                .chain(trees.iter())
                .chain(paths.data_dirs.iter())
                .any(|p| is_within(p, d))
    };
    for d in &state.dirs {
        if let Err(why) = safe(d) {
            entry("dirs", d, why);
        } else if !holds(d) {
            entry("dirs", d, "holds nothing kstrap installed".into());
        }
    }
    for s in &state.services {
        if s != paths.service_unit {
            entry(
                "services",
                s,
                format!("is not {}'s unit ({})", state.distro, paths.service_unit),
            );
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} names paths kstrap will not remove; nothing was changed:\n{}\n  fix: `down` removes only what kstrap installed, inside the host root and through no symbolic link; restore the state file kstrap wrote, or remove the install by hand",
        state::STATE_PATH,
        bad.join("\n")
    ))
}

/// Marks in `State::pending` that a unit file is gone and systemd has not been reloaded yet.
pub const RELOAD: &str = "down:daemon-reload";

fn is_unit(path: &str) -> bool {
    path.starts_with("/etc/systemd/")
}

/// Why a recorded file is kept, if it is.
fn changed(host: &Host, path: &str, recorded: Option<&str>) -> Option<String> {
    let recorded = recorded?;
    let file = host.read(path).ok().flatten()?;
    let now = sha256_hex(&file.bytes);
    (now != recorded).then(|| {
        format!(
            "changed since kstrap wrote it (sha256 {}…, recorded {}…); remove it yourself if it is not needed",
            &now[..12],
            &recorded[..recorded.len().min(12)]
        )
    })
}

/// The GPU operator toolkit's files on the host, each only when it shows it is the toolkit's.
fn toolkit(host: &Host, distro: Distro) -> Vec<Item> {
    let mut out = Vec::new();
    let runtime = format!("{}/nvidia-container-runtime", uninstall::TOOLKIT_DIR);
    if host.exists(&runtime) {
        out.push(Item::Leftover(uninstall::TOOLKIT_DIR.into()));
    } else if host.exists(uninstall::TOOLKIT_DIR) {
        out.push(Item::Keep {
            path: uninstall::TOOLKIT_DIR.into(),
            why: "holds no nvidia-container-runtime: not the GPU operator's toolkit".into(),
        });
    }
    for f in [
        uninstall::toolkit_drop_in(distro),
        uninstall::TOOLKIT_CDI_SPEC.to_string(),
    ] {
        if paths::resolve(host, &f).is_err() {
            continue;
        }
        match host.read(&f) {
            Ok(Some(file)) if String::from_utf8_lossy(&file.bytes).contains(uninstall::TOOLKIT_MARK) => {
                out.push(Item::Leftover(f))
            }
            Ok(Some(_)) => out.push(Item::Keep {
                path: f,
                why: format!(
                    "does not name {}: written by another NVIDIA toolkit, not the GPU operator's",
                    uninstall::TOOLKIT_DIR
                ),
            }),
            _ => {}
        }
    }
    out
}

/// What `down` does, in order. Reads the host (the mount table, processes, network, iptables,
/// the recorded files) but changes nothing; refuses a state file `check` rejects.
pub fn plan(host: &Host, st: &State, keep_data: bool) -> Result<Vec<Item>, DownError> {
    check(host, st).map_err(DownError::Refused)?;
    let u = st.uninstall();
    let mut out: Vec<Item> = st
        .services
        .iter()
        .map(|unit| Item::StopService {
            distro: st.distro,
            unit: unit.clone(),
            reset: !keep_data,
            data_dir: st.data_dir.clone(),
        })
        .collect();
    if u.delegated {
        if keep_data {
            out.push(Item::Note(format!(
                "{} has no way to stop its containers but `{} reset`, which removes the data: they run until the next reboot",
                st.distro, st.distro
            )));
        }
    } else {
        // k3s-killall.sh, effect by effect.
        let found = killall::survey(host, u).map_err(DownError::Survey)?;
        if !found.pids.is_empty() {
            out.push(Item::KillShims { pids: found.pids });
        }
        out.extend(found.mounts.into_iter().map(Item::Unmount));
        out.extend(found.netns.into_iter().map(Item::DeleteNetns));
        out.extend(found.links.into_iter().map(Item::DeleteLink));
        for (t, _) in u.trees.iter().filter(|(_, w)| *w == When::Always) {
            if host.exists(t) {
                out.push(Item::Tree(t.to_string()));
            }
        }
        out.extend(
            found
                .rules
                .into_iter()
                .map(|(tool, count)| Item::DropRules { tool, count }),
        );
        out.extend(found.notes.into_iter().map(Item::Note));
    }
    if let Some(k) = &st.kubeconfig {
        out.push(Item::KubeconfigContext {
            path: k.path.clone(),
            context: k.context.clone(),
        });
    }
    let mut kept = Vec::new();
    for (f, rec) in st.files.iter().rev() {
        match changed(host, f, rec.sha256.as_deref()) {
            Some(why) => {
                kept.push(f.clone());
                out.push(Item::Keep { path: f.clone(), why });
            }
            None => out.push(Item::File(f.clone())),
        }
    }
    if st.files.keys().any(|f| is_unit(f)) || st.pending.contains(RELOAD) {
        out.push(Item::DaemonReload);
    }
    // The firewall rules `up --open-firewall` added, undone in reverse order (the step id names
    // the firewall: `firewall-ufw-1`, `firewall-firewalld-2`).
    for (id, args) in st.commands.iter().rev() {
        let program = match id.strip_prefix(crate::distro::firewall::STEP_PREFIX) {
            Some(rest) if rest.starts_with("ufw-") => "ufw",
            Some(rest) if rest.starts_with("firewalld-") => "firewall-cmd",
            _ => continue,
        };
        if let Some((program, args)) = crate::distro::firewall::close(program, args) {
            out.push(Item::CloseFirewall { program, args });
        }
    }
    if !keep_data {
        // The uninstall script's order: /etc/rancher/k3s, /run/k3s, /run/flannel, the data dir,
        // /var/lib/kubelet; then data folders of kstrap's own (k0s's /etc/k0s).
        for (t, _) in u.trees.iter().filter(|(_, w)| *w == When::WithData) {
            if st.data_dirs.iter().any(|d| d == t) {
                out.push(Item::DataDir {
                    path: t.to_string(),
                    keep: kept.iter().filter(|k| is_within(k, t)).cloned().collect(),
                });
            } else if !u.delegated && host.exists(t) {
                out.push(Item::Tree(t.to_string()));
            }
        }
        // A data folder the distribution's uninstall leaves (k0s's /etc/k0s) goes only when
        // kstrap created it; otherwise only kstrap's files in it went.
        for d in st.data_dirs.iter().filter(|d| !u.trees.iter().any(|(t, _)| t == d)) {
            if st.dirs.contains(d) {
                out.push(Item::DataDir {
                    path: d.clone(),
                    keep: kept.iter().filter(|k| is_within(k, d)).cloned().collect(),
                });
            } else if host.exists(d) {
                out.push(Item::Keep {
                    path: d.clone(),
                    why: format!(
                        "{}'s uninstall leaves it and it was there before kstrap; kstrap's files in it are removed",
                        st.distro
                    ),
                });
            }
        }
    }
    out.extend(toolkit(host, st.distro));
    out.push(Item::Dirs);
    // With kept data the state file stays, naming that data: `up` reuses it, `down` removes it.
    if !keep_data || st.data_dirs.is_empty() {
        out.push(Item::StateFile);
    }
    Ok(out)
}
