//! What `up` finds on the machine before it changes anything, and whether it may go on.

use super::host::Host;
use super::state::{self, State, StateError};
use crate::distro::Distro;
use crate::plan::Plan;

/// What `up` found on the machine before changing anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Nothing of either distribution, no state.
    Nothing,
    /// kstrap installed this (state file).
    Ours(Box<State>),
    /// A distribution's files without kstrap's state: a cluster kstrap did not install.
    Foreign { distro: Distro, traces: Vec<String> },
}

/// Looks for kstrap's state, then for traces of either distribution at the paths kstrap uses.
pub fn survey(host: &Host) -> Result<Found, StateError> {
    if let Some(s) = State::load(host)? {
        return Ok(Found::Ours(Box::new(s)));
    }
    for distro in [Distro::K3s, Distro::K0s] {
        let p = distro.paths();
        let traces: Vec<String> = [Some(p.binary), Some(p.unit_file), p.data_dirs.first().copied()]
            .into_iter()
            .flatten()
            .filter(|x| host.exists(x))
            .map(String::from)
            .collect();
        if !traces.is_empty() {
            return Ok(Found::Foreign { distro, traces });
        }
    }
    Ok(Found::Nothing)
}

/// Why `up` will not touch the machine (exit 3).
pub fn admit(found: &Found, plan: &Plan, upgrade: bool, replace: bool) -> Result<(), String> {
    match found {
        Found::Nothing => Ok(()),
        Found::Ours(state) if !state.role.is_server() => Err(format!(
            "this machine is a {} worker that kstrap joined to a cluster (recorded in {}); a machine is a cluster's server or a worker of one, not both\n  fix: run `kstrap down` here first to make it a server of its own",
            state.distro,
            state::STATE_PATH
        )),
        Found::Ours(state) if state.distro != plan.distro => {
            if replace {
                Ok(())
            } else {
                Err(format!(
                    "kstrap installed {} {} here (recorded in {}); this run would install {}\n  fix: pass --replace to remove {} and its data first, or run `kstrap down`, or keep it with --distro {}",
                    state.distro,
                    state.version,
                    state::STATE_PATH,
                    plan.distro,
                    state.distro,
                    state.distro
                ))
            }
        }
        Found::Ours(state) if state.version != plan.distro_version && !upgrade => Err(format!(
            "{} {} is installed here by kstrap; this run would install {}\n  fix: pass --upgrade to move to {}, or --distro-version {} to stay",
            state.distro, state.version, plan.distro_version, plan.distro_version, state.version
        )),
        Found::Ours(state) if state.version != plan.distro_version => {
            // Both are tags of the same distribution here; one that does not parse (a state file
            // edited by hand) is left to the install to report.
            let refusal = crate::distro::Version::parse(state.distro, &state.version)
                .ok()
                .zip(crate::distro::Version::parse(plan.distro, &plan.distro_version).ok())
                .and_then(|(from, to)| crate::distro::upgrade_refusal(&from, &to));
            match refusal {
                Some(why) => Err(format!(
                    "--upgrade refused: {why}\n  fix: choose another --distro-version (installed: {}, recorded in {})",
                    state.version,
                    state::STATE_PATH
                )),
                None => Ok(()),
            }
        }
        Found::Ours(_) => Ok(()),
        Found::Foreign { distro, traces } => {
            if replace {
                Ok(())
            } else {
                Err(format!(
                    "{distro} is already on this machine but kstrap did not install it (found {}; no {})\n  fix: pass --replace to take it over (its data is lost), or remove it first",
                    traces.join(", "),
                    state::STATE_PATH
                ))
            }
        }
    }
}
