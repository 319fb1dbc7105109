//! Preflight: the distribution (an existing cluster, its ports), firewalls and SELinux.

use super::Finding;
use crate::distro::Distro;
use crate::facts::HostFacts;
use crate::profile::Selection;

/// Ports each distribution binds, with what binds them. A port held by the same distribution's
/// existing install is expected on a re-run.
pub(super) fn ports_for(distro: Distro) -> &'static [(u16, &'static str)] {
    match distro {
        Distro::K3s => &[(6443, "API server"), (10250, "kubelet")],
        Distro::K0s => &[
            (6443, "API server"),
            (9443, "k0s controller API"),
            (8132, "konnectivity"),
            (10250, "kubelet"),
        ],
    }
}

pub(super) fn distribution(facts: &HostFacts, sel: &Selection, out: &mut Vec<Finding>) {
    let distro = sel.distro;
    let (same, other, other_name) = match distro {
        Distro::K3s => (&facts.existing.k3s, &facts.existing.k0s, Distro::K0s),
        Distro::K0s => (&facts.existing.k0s, &facts.existing.k3s, Distro::K3s),
    };
    if other.present() {
        let traces = other.traces();
        let fix = match other_name {
            Distro::K0s => "remove it first (`sudo k0s stop && sudo k0s reset`), or keep it and use --distro k0s",
            Distro::K3s => "remove it first (`sudo /usr/local/bin/k3s-uninstall.sh`), or keep it and use --distro k3s",
        };
        out.push(Finding::fail(
            "existing-cluster",
            format!(
                "{other_name} is already installed ({}); kstrap will not install {distro} next to it",
                traces.join(", ")
            ),
            fix,
        ));
    }
    if same.present() {
        if facts.existing.kstrap_state.is_some() {
            out.push(Finding::pass(
                "existing-cluster",
                format!("{distro} was installed by kstrap: up converges it"),
            ));
        } else {
            out.push(Finding::warn(
                "existing-cluster",
                format!("{distro} is installed, but not by kstrap"),
                "kstrap will only take over a cluster it did not install when told to (--replace)",
            ));
        }
    }
    let mut taken = Vec::new();
    for (port, what) in ports_for(distro) {
        if facts.port_in_use(*port) && !same.present() {
            taken.push(format!("{port} ({what})"));
        }
    }
    if taken.is_empty() {
        out.push(Finding::pass(
            "ports",
            format!(
                "ports {} are free",
                ports_for(distro)
                    .iter()
                    .map(|(p, _)| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    } else {
        out.push(Finding::fail(
            "ports",
            format!("port(s) {} already in use", taken.join(", ")),
            "find the owner with `sudo ss -ltnp`, and stop it or move it",
        ));
    }
    if distro == Distro::K3s
        && !facts.existing.k3s.present()
        && !sel.profile.cluster.disable.iter().any(|d| d == "traefik")
    {
        let web: Vec<String> = [80u16, 443]
            .iter()
            .filter(|p| facts.port_in_use(**p))
            .map(|p| p.to_string())
            .collect();
        if !web.is_empty() {
            out.push(Finding::warn(
                "ports",
                format!(
                    "port(s) {} in use: k3s's Traefik load balancer will stay pending",
                    web.join(", ")
                ),
                "stop the web server holding them, or reach the stack through its NodePort",
            ));
        }
    }
}

/// A firewall that is on: the rules the distribution documents for it, with the ranges the plan
/// chose (`distro::firewall`). Only said when one is on, so hosts without one see no change.
pub(super) fn firewalls(facts: &HostFacts, sel: &Selection, out: &mut Vec<Finding>) {
    use crate::distro::firewall::{self, Firewall};
    let net = crate::distro::rerun::for_host(sel.distro, facts, false);
    for (on, fw) in [
        (facts.firewall.ufw, Firewall::Ufw),
        (facts.firewall.firewalld, Firewall::Firewalld),
    ] {
        if on {
            out.push(Finding::warn(
                "firewall",
                format!(
                    "{} is on: without {}'s rules it drops traffic from pods and Services to this host (API server, kubelet, DNS)",
                    fw.name(),
                    sel.distro
                ),
                format!(
                    "run `kstrap up --open-firewall` (kstrap adds them, `kstrap down` removes them), or add them yourself: {}",
                    firewall::shown(&firewall::open(sel.distro, fw, &net))
                ),
            ));
        }
    }
}

/// SELinux enforcing. kstrap refuses rather than installs the policy: the policy comes as RPMs
/// from a third-party repository (k3s: `k3s-selinux` from rpm.rancher.io, which k3s's install
/// script adds as a yum repo) and changes the whole machine's policy, which `kstrap down` could
/// not undo as exactly as the rest. The fix names the packages, as k3s's install script does.
/// - k3s: with `/usr/share/selinux/packages/k3s.pp` present, kstrap writes `selinux: true` to its
///   config (k3s's `--selinux` flag, "Enable SELinux in containerd"); without it, k3s's own
///   installer stops too ("Failed to find the k3s-selinux policy", `install.sh` `setup_selinux`).
/// - k0s: its SELinux guide (k0sproject/k0s v1.35.3+k0s.0 `docs/selinux.md`) needs
///   container-selinux, relabelling k0s's binaries and data with `semanage fcontext`, and a
///   containerd drop-in with `enable_selinux = true`; kstrap does none of that, so it refuses.
///
/// A worker (`kstrap join`) gets the same rule: the k3s agent runs containers through the same
/// containerd and takes the same `--selinux` flag (k3s-io/k3s `pkg/cli/cmds/agent.go`), and
/// install.sh's `setup_selinux` makes no difference between server and agent.
///
/// Permissive mode changes nothing and is not reported.
pub(super) fn selinux(facts: &HostFacts, distro: Distro, worker: bool, out: &mut Vec<Finding>) {
    if !facts.security.selinux_enforcing() {
        return;
    }
    match distro {
        Distro::K3s if facts.security.k3s_selinux_policy => out.push(Finding::pass(
            "selinux",
            "SELinux is enforcing and k3s's policy (k3s-selinux) is installed: k3s runs with selinux: true",
        )),
        Distro::K3s => out.push(Finding::fail(
            "selinux",
            "SELinux is enforcing and k3s's SELinux policy (k3s-selinux, /usr/share/selinux/packages/k3s.pp) is not installed: k3s's containers would be denied",
            "install the policy, then run kstrap again: `sudo dnf install -y container-selinux` and `sudo dnf install -y k3s-selinux` from Rancher's repository (https://rpm.rancher.io/k3s/stable/common/centos/9/noarch/ on EL9/Fedora; see k3s's docs, \"SELinux Support\"); or `sudo setenforce 0` to run permissive",
        )),
        Distro::K0s => out.push(Finding::fail(
            "selinux",
            "SELinux is enforcing: k0s needs container-selinux, its binaries and data relabelled and SELinux enabled in its containerd, which kstrap does not do",
            if worker {
                // A worker runs the server's distribution: there is no other to choose.
                "follow k0s's SELinux guide (docs/selinux.md: container-selinux, semanage fcontext, /etc/k0s/containerd.d/selinux.toml) before kstrap join, or `sudo setenforce 0` to run permissive"
            } else {
                "use k3s (`--distro k3s`, with the k3s-selinux policy), follow k0s's SELinux guide (docs/selinux.md: container-selinux, semanage fcontext, /etc/k0s/containerd.d/selinux.toml) before kstrap up, or `sudo setenforce 0` to run permissive"
            },
        )),
    }
}
