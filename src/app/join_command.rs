//! `kstrap join-command`: the one command that adds a machine to this cluster, and how to get the
//! join token there.
//!
//! The token is a secret and is printed nowhere — not on stdout, not in JSON, not in a command
//! line the user would type (where it would stay in the shell's history). The user copies the
//! root-only file that holds it: k3s's own `node-token`; for k0s, a worker token kstrap asks k0s
//! for (`k0s token create --role=worker`) and writes root-only into k0s's data folder (so `down`
//! removes it with k0s's data).

use super::up::host;
use super::{Exit, Failure};
use crate::cli::{GlobalArgs, JoinCommandArgs};
use crate::distro::Distro;
use crate::exec::state::State;
use crate::ui::Printer;
use serde::Serialize;

/// Where the worker token kstrap asked k0s for is kept on the server (root-only).
pub const K0S_TOKEN_FILE: &str = "/var/lib/k0s/kstrap-worker-token";
/// Where the instructions put the token on the new machine.
pub const WORKER_TOKEN_PATH: &str = "/root/kstrap-join-token";

#[derive(Serialize)]
struct JoinCommand<'a> {
    distro: Distro,
    version: &'a str,
    server_url: &'a str,
    /// The root-only file on this machine that holds the token.
    token_file: &'a str,
    /// How to copy it to the new machine without it passing through a command line.
    copy_token: String,
    /// What to run on the new machine.
    command: String,
    /// What to run here afterwards.
    status_command: &'static str,
}

/// The address other machines most likely reach this one at: the source address of the default
/// route (a UDP "connect" sends nothing).
fn local_address() -> Option<String> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then(|| ip.to_string())
}

pub fn run(_global: &GlobalArgs, args: &JoinCommandArgs, printer: &Printer) -> Result<Exit, Failure> {
    let host = host();
    let state = State::load(&host)
        .map_err(|e| Failure::failed(e.to_string()))?
        .ok_or_else(|| Failure::failed("kstrap has not installed a cluster here\n  fix: run `kstrap up` first"))?;
    if !state.role.is_server() {
        return Err(Failure::failed(
            "this machine is a worker that joined a cluster\n  fix: run `kstrap join-command` on the cluster's server",
        ));
    }
    let address = match &args.address {
        Some(a) => a.clone(),
        None => local_address().ok_or_else(|| {
            Failure::failed(
                "cannot tell this machine's address\n  fix: pass --address HOST (the name or IP workers reach it at)",
            )
        })?,
    };
    let server_url = if address.contains(':') && !address.starts_with('[') {
        format!("https://[{address}]:6443")
    } else {
        format!("https://{address}:6443")
    };
    let paths = state.paths();
    let token_file = match state.distro {
        Distro::K3s => {
            let path = paths.node_token.unwrap_or("/var/lib/rancher/k3s/server/node-token");
            let file = host.read(path).map_err(|e| Failure::failed(e.to_string()))?;
            if file.is_none_or(|f| String::from_utf8_lossy(&f.bytes).trim().is_empty()) {
                return Err(Failure::failed(format!(
                    "{path} is missing or empty: k3s writes it when the server starts\n  fix: check that k3s is running (`systemctl status k3s`)"
                )));
            }
            path
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
            let token = out.stdout.trim();
            if token.is_empty() {
                return Err(Failure::failed(
                    "`k0s token create --role=worker` printed no token\n  fix: check that k0s is running (`k0s status`)",
                ));
            }
            host.write_atomic(K0S_TOKEN_FILE, format!("{token}\n").as_bytes(), 0o600)
                .map_err(|e| Failure::failed(e.to_string()))?;
            K0S_TOKEN_FILE
        }
    };
    let command = format!("sudo kstrap join --server {server_url} --token-file {WORKER_TOKEN_PATH}");
    let copy_token =
        format!("ssh root@{address} cat {token_file} | sudo install -m 600 /dev/stdin {WORKER_TOKEN_PATH}");
    let out = JoinCommand {
        distro: state.distro,
        version: &state.version,
        server_url: &server_url,
        token_file,
        copy_token,
        command,
        status_command: "kstrap status",
    };
    if printer.json_mode() {
        printer.json(&out);
        return Ok(Exit::Ok);
    }
    printer.stdout(&format!(
        "To add a machine to this cluster ({} {} at {}), on the new machine:\n\
         \x20 1. copy the join token (a secret, root-only in {} here) into a root-only file, e.g.:\n\
         \x20      {}\n\
         \x20 2. join (kstrap checks the server's CA against the token before using it; the token never goes on a command line):\n\
         \x20      {}\n\
         Then, here: {}\n",
        out.distro, out.version, out.server_url, out.token_file, out.copy_token, out.command, out.status_command
    ));
    Ok(Exit::Ok)
}
