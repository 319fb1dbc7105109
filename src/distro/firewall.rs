//! Host firewalls (ufw, firewalld) and the rules each distribution documents for them.
//!
//! Without these rules a firewall that is on drops what the cluster sends itself: pods cannot
//! reach Services (kube-proxy's rules are evaluated after ufw's), the API server cannot reach the
//! kubelet, workers cannot join. The rules, from the distributions' docs at the pinned versions:
//!
//! - k3s (k3s-io/docs `docs/installation/requirements.md`, "Operating Systems", for v1.35):
//!   ufw: `ufw allow 6443/tcp`, `ufw allow from <pod CIDR> to any`, `ufw allow from <service CIDR>
//!   to any`; firewalld: `firewall-cmd --permanent --add-port=6443/tcp`, `--zone=trusted
//!   --add-source=<pod CIDR>`, `--zone=trusted --add-source=<service CIDR>`, `--reload` ("If you
//!   change the default CIDR for pods or services, you will need to update the firewall rules
//!   accordingly": kstrap uses the ranges it chose).
//! - k0s (k0sproject/k0s v1.35.3+k0s.0 `docs/networking.md`, "Required ports and protocols" and
//!   "Firewalld & k0s"): firewalld services `k0s-controller` (tcp 2380, 6443, 8132, 9443) and
//!   `k0s-worker` (tcp 179, udp 4789, tcp 10250) from `hack/ostests/modules/os/*.firewalld-service.xml`,
//!   both enabled on a controller that runs workloads, plus `--add-masquerade`, the pod and
//!   service CIDRs as sources, and `--reload`. k0s documents no ufw rules; kstrap opens the ports
//!   of the same table a single controller+worker listens on from outside (6443, 8132, 9443,
//!   10250) and allows "all traffic to and from the podCIDR and serviceCIDR subnets".
//!
//! `open` gives the commands `up --open-firewall` runs through the host seam; `close` gives, for
//! one of them, the command that undoes it (what `down` runs for the commands kstrap ran).

use super::Distro;
use super::network::ClusterNetwork;
use serde::Serialize;

/// A host firewall kstrap knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firewall {
    Ufw,
    Firewalld,
}

impl Firewall {
    pub fn name(self) -> &'static str {
        match self {
            Firewall::Ufw => "ufw",
            Firewall::Firewalld => "firewalld",
        }
    }
}

/// Plan step ids of the commands that open a firewall: `firewall-ufw-1`, `firewall-firewalld-3`.
pub const STEP_PREFIX: &str = "firewall-";

/// The plan steps that open `firewall` (`up --open-firewall`): k0s's firewalld service files,
/// then each command. Run through the host seam; recorded in the state file, so `down` undoes
/// them and a re-run does not repeat them.
pub fn steps(distro: Distro, firewall: Firewall, net: &ClusterNetwork) -> Vec<crate::plan::step::Step> {
    use crate::plan::step::{Action, Contents, Mode, Phase, Step};
    let mut out = Vec::new();
    if (distro, firewall) == (Distro::K0s, Firewall::Firewalld) {
        for (i, (path, xml)) in K0S_FIREWALLD_SERVICES.iter().enumerate() {
            out.push(Step {
                id: format!("{STEP_PREFIX}service-{}", i + 1),
                phase: Phase::Host,
                title: format!("Write the firewalld service {path}"),
                reason: "k0s's docs define its ports as firewalld services (k0s-controller, k0s-worker)".into(),
                action: Action::WriteFile {
                    path: path.to_string(),
                    mode: Mode(0o644),
                    contents: Contents::Text(xml.to_string()),
                },
            });
        }
    }
    for (i, (program, args)) in open(distro, firewall, net).into_iter().enumerate() {
        out.push(Step {
            id: format!("{STEP_PREFIX}{}-{}", firewall.name(), i + 1),
            phase: Phase::Host,
            title: format!("Open the firewall: {program} {}", args.join(" ")),
            reason: format!(
                "{} is on; this is one of the rules {distro}'s docs require (--open-firewall); `kstrap down` removes it",
                firewall.name()
            ),
            action: Action::Command {
                program,
                args,
                creates: Vec::new(),
            },
        });
    }
    out
}

/// One command: program and arguments.
pub type Command = (String, Vec<String>);

fn cmd(program: &str, args: &[&str]) -> Command {
    (program.to_string(), args.iter().map(|s| s.to_string()).collect())
}

/// k0s's firewalld service definitions (k0sproject/k0s v1.35.3+k0s.0
/// `hack/ostests/modules/os/k0s-{controller,worker}.firewalld-service.xml`, comments dropped).
pub const K0S_FIREWALLD_SERVICES: &[(&str, &str)] = &[
    (
        "/etc/firewalld/services/k0s-controller.xml",
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<service>\n  <short>k0s-controller</short>\n  <description>k0s - The Zero Friction Kubernetes (controller node)</description>\n  <port protocol=\"tcp\" port=\"2380\" />\n  <port protocol=\"tcp\" port=\"6443\" />\n  <port protocol=\"tcp\" port=\"8132\" />\n  <port protocol=\"tcp\" port=\"9443\" />\n</service>\n",
    ),
    (
        "/etc/firewalld/services/k0s-worker.xml",
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<service>\n  <short>k0s-worker</short>\n  <description>k0s - The Zero Friction Kubernetes (worker node)</description>\n  <port protocol=\"tcp\" port=\"179\" />\n  <port protocol=\"udp\" port=\"4789\" />\n  <port protocol=\"tcp\" port=\"10250\" />\n</service>\n",
    ),
];

/// The commands that open `firewall` for `distro` with the cluster's ranges, in order.
pub fn open(distro: Distro, firewall: Firewall, net: &ClusterNetwork) -> Vec<Command> {
    let (pod, svc) = (net.pod_cidr.as_str(), net.service_cidr.as_str());
    match (distro, firewall) {
        (Distro::K3s, Firewall::Ufw) => vec![
            cmd("ufw", &["allow", "6443/tcp"]),
            cmd("ufw", &["allow", "from", pod, "to", "any"]),
            cmd("ufw", &["allow", "from", svc, "to", "any"]),
        ],
        (Distro::K0s, Firewall::Ufw) => vec![
            cmd("ufw", &["allow", "6443/tcp"]),
            cmd("ufw", &["allow", "8132/tcp"]),
            cmd("ufw", &["allow", "9443/tcp"]),
            cmd("ufw", &["allow", "10250/tcp"]),
            cmd("ufw", &["allow", "from", pod, "to", "any"]),
            cmd("ufw", &["allow", "from", svc, "to", "any"]),
        ],
        (Distro::K3s, Firewall::Firewalld) => vec![
            cmd("firewall-cmd", &["--permanent", "--add-port=6443/tcp"]),
            cmd(
                "firewall-cmd",
                &["--permanent", "--zone=trusted", &format!("--add-source={pod}")],
            ),
            cmd(
                "firewall-cmd",
                &["--permanent", "--zone=trusted", &format!("--add-source={svc}")],
            ),
            cmd("firewall-cmd", &["--reload"]),
        ],
        (Distro::K0s, Firewall::Firewalld) => vec![
            cmd("firewall-cmd", &["--permanent", "--add-service=k0s-controller"]),
            cmd("firewall-cmd", &["--permanent", "--add-service=k0s-worker"]),
            cmd("firewall-cmd", &["--permanent", "--add-masquerade"]),
            cmd("firewall-cmd", &["--permanent", &format!("--add-source={pod}")]),
            cmd("firewall-cmd", &["--permanent", &format!("--add-source={svc}")]),
            cmd("firewall-cmd", &["--reload"]),
        ],
    }
}

/// The command that undoes one `open` command (`ufw delete allow ...`, `firewall-cmd
/// --remove-...`); `--reload` is its own undo (it applies the permanent set). `None` for a
/// command `open` never gives.
pub fn close(program: &str, args: &[String]) -> Option<Command> {
    match program {
        "ufw" => {
            let rest = args.strip_prefix(&["allow".to_string()])?;
            let mut out = vec!["delete".to_string(), "allow".to_string()];
            out.extend(rest.iter().cloned());
            Some(("ufw".into(), out))
        }
        "firewall-cmd" => {
            if args == ["--reload"] {
                return Some(cmd("firewall-cmd", &["--reload"]));
            }
            let out: Vec<String> = args
                .iter()
                .map(|a| match a.strip_prefix("--add-") {
                    Some(rest) => format!("--remove-{rest}"),
                    None => a.clone(),
                })
                .collect();
            (out != args).then(|| ("firewall-cmd".into(), out))
        }
        _ => None,
    }
}

/// The commands as one shell line each (for preflight's "how to fix").
pub fn shown(commands: &[Command]) -> String {
    commands
        .iter()
        .map(|(p, a)| format!("sudo {p} {}", a.join(" ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::NetworkFacts;

    #[test]
    fn k3s_rules_are_the_documented_ones_with_the_chosen_ranges() {
        let net = super::super::network::choose(Distro::K3s, &NetworkFacts::default());
        assert_eq!(
            shown(&open(Distro::K3s, Firewall::Ufw, &net)),
            "sudo ufw allow 6443/tcp; sudo ufw allow from 10.42.0.0/16 to any; sudo ufw allow from 10.43.0.0/16 to any"
        );
        assert_eq!(
            shown(&open(Distro::K3s, Firewall::Firewalld, &net)),
            "sudo firewall-cmd --permanent --add-port=6443/tcp; sudo firewall-cmd --permanent --zone=trusted --add-source=10.42.0.0/16; sudo firewall-cmd --permanent --zone=trusted --add-source=10.43.0.0/16; sudo firewall-cmd --reload"
        );
    }

    #[test]
    fn every_open_command_has_an_undo() {
        for distro in [Distro::K3s, Distro::K0s] {
            let net = super::super::network::choose(distro, &NetworkFacts::default());
            for fw in [Firewall::Ufw, Firewall::Firewalld] {
                for (p, a) in open(distro, fw, &net) {
                    let (q, b) = close(&p, &a).unwrap_or_else(|| panic!("no undo for {p} {a:?}"));
                    assert_eq!(p, q);
                    if a != ["--reload"] {
                        assert_ne!(a, b);
                    }
                }
            }
        }
        assert_eq!(
            close(
                "ufw",
                &[
                    "allow".into(),
                    "from".into(),
                    "10.42.0.0/16".into(),
                    "to".into(),
                    "any".into()
                ]
            ),
            Some(cmd("ufw", &["delete", "allow", "from", "10.42.0.0/16", "to", "any"]))
        );
        assert_eq!(
            close(
                "firewall-cmd",
                &[
                    "--permanent".into(),
                    "--zone=trusted".into(),
                    "--add-source=10.43.0.0/16".into()
                ]
            ),
            Some(cmd(
                "firewall-cmd",
                &["--permanent", "--zone=trusted", "--remove-source=10.43.0.0/16"]
            ))
        );
        assert_eq!(close("rm", &["-rf".into()]), None);
        assert_eq!(close("ufw", &["disable".into()]), None);
    }
}
