//! What k3s-killall.sh does, as effects through the host seam: find the containerd shims and
//! their children, the mounts, the CNI network namespaces and interfaces and the iptables rules
//! k3s left (reads only, for the plan and `down --dry-run`), and remove each one.
//!
//! The facts come from `distro::uninstall` (the upstream scripts as data). Commands run by name
//! (`ps`, `kill`, `umount`, `ip`, `iptables-save`, `iptables-restore`), so tests put stand-ins
//! first on `PATH`. A tool that is not installed means there is nothing of its kind to remove
//! (no `ip`: no namespaces or interfaces were made with it) and is said in the plan.

use super::host::{Host, HostError};
use super::mounts;
use crate::distro::uninstall::Uninstall;

/// What the host holds that the distribution's killall removes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    /// Shims and all their descendants, parents first.
    pub pids: Vec<u32>,
    /// Mount points to unmount and remove, in order.
    pub mounts: Vec<String>,
    pub netns: Vec<String>,
    pub links: Vec<String>,
    /// (`iptables`|`ip6tables`, rules to drop).
    pub rules: Vec<(String, usize)>,
    /// Parts that could not be checked, and why.
    pub notes: Vec<String>,
}

fn run(host: &Host, program: &str, args: &[&str]) -> Result<Option<String>, String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    match host.runner.run(program, &args) {
        Ok(out) if out.success => Ok(Some(out.stdout)),
        Ok(out) => Err(format!("`{program} {}`: {}", args.join(" "), out.stderr.trim())),
        Err(HostError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Looks at the host (reads only).
pub fn survey(host: &Host, u: &Uninstall) -> Result<Found, String> {
    let mut found = Found::default();
    if let Some(prefix) = u.shim_prefix {
        match processes(host)? {
            Some(procs) => found.pids = shim_tree(&procs, prefix),
            None => found.notes.push("`ps` not found: containerd shims not checked".into()),
        }
    }
    let points = mounts::mount_points(host);
    for prefix in u.mount_prefixes {
        for m in mounts::under_prefix(&points, prefix) {
            if !found.mounts.contains(&m) {
                found.mounts.push(m);
            }
        }
    }
    if u.netns_match.is_some() || u.bridge.is_some() || !u.interfaces.is_empty() {
        if let Some(want) = u.netns_match {
            match run(host, "ip", &["netns", "show"])? {
                Some(text) => found.netns = netns(&text, want),
                None => found
                    .notes
                    .push("`ip` not found: network namespaces and interfaces not checked".into()),
            }
        }
        if let Some(text) = run(host, "ip", &["link", "show"])? {
            found.links = links(&text, u.bridge, u.interfaces);
        }
    }
    if !u.iptables_drop.is_empty() || !u.iptables_drop_any_case.is_empty() {
        for tool in ["iptables", "ip6tables"] {
            if let Some(text) = run(host, &format!("{tool}-save"), &[])? {
                let (_, dropped) = filter_rules(&text, u);
                if dropped > 0 {
                    found.rules.push((tool.to_string(), dropped));
                }
            }
        }
    }
    Ok(found)
}

/// pid, parent pid, command line.
type Process = (u32, u32, String);

/// Every process: `ps -e -o pid= -o ppid= -o args=`.
fn processes(host: &Host) -> Result<Option<Vec<Process>>, String> {
    let Some(text) = run(host, "ps", &["-e", "-o", "pid=", "-o", "ppid=", "-o", "args="])? else {
        return Ok(None);
    };
    let procs = text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let pid = it.next()?.parse().ok()?;
            let ppid = it.next()?.parse().ok()?;
            Some((pid, ppid, it.collect::<Vec<_>>().join(" ")))
        })
        .collect();
    Ok(Some(procs))
}

/// k3s-killall's `getshims` (`grep -w "${K3S_DATA_DIR}"'/data/[^/]*/bin/containerd-shim'`) and
/// `killtree` (each shim, then its children, recursively).
fn shim_tree(procs: &[Process], prefix: &str) -> Vec<u32> {
    let is_shim = |args: &str| {
        args.match_indices(prefix).any(|(i, _)| {
            let rest = &args[i + prefix.len()..];
            rest.split_once('/')
                .is_some_and(|(hash, tail)| !hash.is_empty() && tail.starts_with("bin/containerd-shim"))
        })
    };
    let mut out = Vec::new();
    fn add(pid: u32, procs: &[Process], out: &mut Vec<u32>) {
        if out.contains(&pid) {
            return;
        }
        out.push(pid);
        for (child, _, _) in procs.iter().filter(|(_, ppid, _)| *ppid == pid) {
            add(*child, procs, out);
        }
    }
    for (pid, _, args) in procs {
        if is_shim(args) {
            add(*pid, procs, &mut out);
        }
    }
    out
}

/// Names from `ip netns show` (`cni-1234 (id: 0)`) containing `want`.
fn netns(text: &str, want: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.contains(want))
        .map(str::to_string)
        .collect()
}

/// From `ip link show`: the interfaces enslaved to `bridge`, then the named ones that exist.
fn links(text: &str, bridge: Option<&str>, named: &[&str]) -> Vec<String> {
    let mut present = Vec::new();
    let mut members = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with(' ')) {
        // "5: veth1a2b@if3: <BROADCAST,...> mtu 1450 master cni0 state UP ..."
        let Some(name) = line.split_whitespace().nth(1) else {
            continue;
        };
        let name = name.trim_end_matches(':');
        let name = name.split('@').next().unwrap_or(name).to_string();
        if bridge.is_some_and(|b| line.contains(&format!(" master {b} "))) {
            members.push(name.clone());
        }
        present.push(name);
    }
    members.extend(
        named
            .iter()
            .filter(|n| present.iter().any(|p| p == *n))
            .map(|n| n.to_string()),
    );
    members
}

/// The rules without the distribution's, and how many lines went.
pub fn filter_rules(text: &str, u: &Uninstall) -> (String, usize) {
    let mut kept = String::new();
    let mut dropped = 0;
    for line in text.lines() {
        let lower = line.to_lowercase();
        let drop = u.iptables_drop.iter().any(|w| line.contains(w))
            || u.iptables_drop_any_case
                .iter()
                .any(|w| lower.contains(&w.to_lowercase()));
        if drop {
            dropped += 1;
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    (kept, dropped)
}

fn act(host: &Host, program: &str, args: &[String], input: Option<&[u8]>) -> Result<(), String> {
    let out = host
        .runner
        .run_with_input(program, args, input)
        .map_err(|e| e.to_string())?;
    if out.success {
        Ok(())
    } else {
        Err(format!("`{program} {}`: {}", args.join(" "), out.stderr.trim()))
    }
}

/// Kills the shims found now (not the pids planned earlier: a pid may have been reused since).
pub fn kill_shims(host: &Host, u: &Uninstall) -> Result<(), String> {
    let Some(prefix) = u.shim_prefix else {
        return Ok(());
    };
    let Some(procs) = processes(host)? else {
        return Ok(());
    };
    let pids = shim_tree(&procs, prefix);
    if pids.is_empty() {
        return Ok(());
    }
    let mut args = vec!["-9".to_string()];
    args.extend(pids.iter().map(u32::to_string));
    act(host, "kill", &args, None)
}

/// `umount -f`; the folder itself is removed by the caller once nothing is mounted under it.
pub fn unmount(host: &Host, point: &str) -> Result<(), String> {
    act(host, "umount", &["-f".into(), point.into()], None)
}

pub fn delete_netns(host: &Host, name: &str) -> Result<(), String> {
    act(host, "ip", &["netns".into(), "delete".into(), name.into()], None)
}

pub fn delete_link(host: &Host, name: &str) -> Result<(), String> {
    act(host, "ip", &["link".into(), "delete".into(), name.into()], None)
}

/// `<tool>-save | grep -v … | <tool>-restore`, read again now; nothing is written when nothing
/// is dropped.
pub fn drop_rules(host: &Host, tool: &str, u: &Uninstall) -> Result<(), String> {
    let Some(text) = run(host, &format!("{tool}-save"), &[])? else {
        return Ok(());
    };
    let (kept, dropped) = filter_rules(&text, u);
    if dropped == 0 {
        return Ok(());
    }
    act(host, &format!("{tool}-restore"), &[], Some(kept.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distro::uninstall::K3S;

    #[test]
    fn shims_and_their_children_parents_first() {
        let procs = vec![
            (1, 0, "/sbin/init".to_string()),
            (
                100,
                1,
                "/var/lib/rancher/k3s/data/abc123/bin/containerd-shim-runc-v2 -namespace k8s.io -id x".into(),
            ),
            (101, 100, "/pause".into()),
            (102, 100, "ollama serve".into()),
            (103, 102, "ollama runner".into()),
            (200, 1, "/usr/bin/containerd-shim-runc-v2 -namespace moby".into()),
            (300, 1, "/var/lib/rancher/k3s/data/bin/containerd-shim".into()),
        ];
        assert_eq!(shim_tree(&procs, "/var/lib/rancher/k3s/data/"), [100, 101, 102, 103]);
    }

    #[test]
    fn namespaces_links_and_rules() {
        assert_eq!(netns("cni-1 (id: 0)\nother\ncni-2\n", "cni-"), ["cni-1", "cni-2"]);
        let text = "1: lo: <LOOPBACK,UP> mtu 65536 state UNKNOWN\n    link/loopback 00\n\
                    4: cni0: <BROADCAST> mtu 1450 state UP\n\
                    5: veth1@if3: <BROADCAST> mtu 1450 master cni0 state UP\n\
                    6: vethab: <BROADCAST> mtu 1450 master cni0 state UP\n\
                    7: flannel.1: <BROADCAST> mtu 1450 state UNKNOWN\n\
                    8: docker0: <BROADCAST> mtu 1500 state UP\n";
        assert_eq!(
            links(text, Some("cni0"), K3S.interfaces),
            ["veth1", "vethab", "cni0", "flannel.1"]
        );
        let rules = "*filter\n:KUBE-FORWARD - [0:0]\n-A FORWARD -j KUBE-FORWARD\n-A FORWARD -m comment --comment \"Flannel forward\" -j ACCEPT\n-A CNI-HOSTPORT -j ACCEPT\n-A INPUT -j DOCKER-USER\nCOMMIT\n";
        let (kept, dropped) = filter_rules(rules, &K3S);
        assert_eq!(dropped, 4);
        assert_eq!(kept, "*filter\n-A INPUT -j DOCKER-USER\nCOMMIT\n");
    }
}
