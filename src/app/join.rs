//! `kstrap join-command`: how to add a worker to this cluster, so a user who outgrows one machine
//! grows the same cluster.
//!
//! The join token is a secret: it is printed to stdout only, because the user asked for it, and
//! never appears in logs or error messages.

use super::up::host;
use super::{Exit, Failure};
use crate::cli::{GlobalArgs, JoinArgs};
use crate::distro::{Distro, worker_join_command};
use crate::exec::state::State;
use crate::ui::Printer;
use serde::Serialize;

/// Where the printed instructions keep the join token on the new machine (root-only files).
const K3S_AGENT_TOKEN_FILE: &str = "/etc/rancher/k3s/agent-token";
const K0S_WORKER_TOKEN_FILE: &str = "/etc/k0s/worker-token";

#[derive(Serialize)]
struct Join<'a> {
    distro: Distro,
    server_url: &'a str,
    token: &'a str,
}

/// The address other machines most likely reach this one at: the source address of the default
/// route (a UDP "connect" sends nothing).
fn local_address() -> Option<String> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then(|| ip.to_string())
}

pub fn run(_global: &GlobalArgs, args: &JoinArgs, printer: &Printer) -> Result<Exit, Failure> {
    let host = host();
    let state = State::load(&host)
        .map_err(|e| Failure::failed(e.to_string()))?
        .ok_or_else(|| Failure::failed("kstrap has not installed a cluster here\n  fix: run `kstrap up` first"))?;
    let address = match &args.address {
        Some(a) => a.clone(),
        None => local_address().ok_or_else(|| {
            Failure::failed(
                "cannot tell this machine's address\n  fix: pass --address HOST (the name or IP workers reach it at)",
            )
        })?,
    };
    let server_url = format!("https://{address}:6443");
    let paths = state.distro.paths();
    let token = match state.distro {
        Distro::K3s => {
            let path = paths.node_token.unwrap_or("/var/lib/rancher/k3s/server/node-token");
            let file = host
                .read(path)
                .map_err(|e| Failure::failed(e.to_string()))?
                .ok_or_else(|| {
                    Failure::failed(format!(
                        "{path} does not exist: k3s writes it when the server starts\n  fix: check that k3s is running (`systemctl status k3s`)"
                    ))
                })?;
            String::from_utf8_lossy(&file.bytes).trim().to_string()
        }
        Distro::K0s => {
            let args: Vec<String> = crate::distro::K0S_WORKER_TOKEN_ARGS
                .iter()
                .map(|a| a.to_string())
                .collect();
            let out = host
                .runner
                .run(paths.binary, &args)
                .map_err(|e| Failure::failed(e.to_string()))?;
            if !out.success {
                return Err(Failure::failed(format!(
                    "`k0s token create --role=worker` failed: {}\n  fix: check that k0s is running (`k0s status`)",
                    out.stderr.trim()
                )));
            }
            out.stdout.trim().to_string()
        }
    };
    if token.is_empty() {
        return Err(Failure::failed(
            "the join token is empty\n  fix: check that the cluster is running",
        ));
    }
    if printer.json_mode() {
        printer.json(&Join {
            distro: state.distro,
            server_url: &server_url,
            token: &token,
        });
        return Ok(Exit::Ok);
    }
    let text = match state.distro {
        Distro::K3s => format!(
            "To add a worker, on the new machine as root:\n\
             \x20 1. install k3s {version} at /usr/local/bin/k3s (the same release; check it against the release's sha256sum file)\n\
             \x20 2. save the token (a secret) in a root-only file:\n\
             \x20      install -m 600 /dev/null {K3S_AGENT_TOKEN_FILE} && echo '{token}' > {K3S_AGENT_TOKEN_FILE}\n\
             \x20 3. start the agent:\n\
             \x20      {agent}\n\
             \x20    (or with the upstream installer: curl -sfL https://get.k3s.io | K3S_URL={server_url} K3S_TOKEN='{token}' sh -)\n",
            version = state.version,
            agent = worker_join_command(Distro::K3s, &server_url, K3S_AGENT_TOKEN_FILE).join(" "),
        ),
        Distro::K0s => format!(
            "To add a worker, on the new machine as root:\n\
             \x20 1. install k0s {version} at /usr/local/bin/k0s (the same release; check it against the release's sha256sums.txt)\n\
             \x20 2. save the token (a secret; it names this controller, {server_url}) in a root-only file:\n\
             \x20      install -m 600 /dev/null {K0S_WORKER_TOKEN_FILE} && echo '{token}' > {K0S_WORKER_TOKEN_FILE}\n\
             \x20 3. {install} && k0s start\n",
            version = state.version,
            install = worker_join_command(Distro::K0s, &server_url, K0S_WORKER_TOKEN_FILE).join(" "),
        ),
    };
    printer.stdout(&text);
    Ok(Exit::Ok)
}
