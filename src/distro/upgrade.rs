//! An upgrade of an installed k3s or k0s, planned step by step: one step per minor version on
//! the way, each saying the release it goes to, who installs it, and what happens.
//!
//! The rules, from the distributions' documentation at the pinned versions and Kubernetes':
//! - Kubernetes version skew policy (kubernetes.io/releases/version-skew-policy, release 1.35):
//!   kube-apiserver instances must be within one minor version of each other, so a cluster's
//!   API server moves one minor at a time; the kubelet must never be newer than the API server.
//!   Nothing supports a downgrade ([`super::upgrade_refusal`]).
//! - k3s "Manual Upgrades" (docs.k3s.io/upgrades/manual): upgrade by installing the binary of the
//!   desired version — copy it to /usr/local/bin/k3s, stop the old k3s, start the new one; server
//!   nodes first, one at a time, then agents; "the Kubernetes version skew policy applies. Ensure
//!   that your plan does not skip intermediate minor versions"; there is a release channel per
//!   minor (`v1.34`) that selects the latest release of that minor.
//! - k0s `docs/upgrade.md` (k0sproject/k0s, tag v1.35.3+k0s.0): the upgrade is to replace the
//!   single binary and restart the service — `k0s stop`, replace the binary, `k0s start`;
//!   `docs/autopilot.md` (same tag): controllers at the new version first, then workers, per the
//!   Kubernetes version skew policy.
//!
//! kstrap pins exactly one release of each distribution ([`super::Distro::default_version`]), so
//! it can name only that one; a release of a minor in between is the user's choice (the latest of
//! that minor), installed with `--distro-version`, which kstrap verifies like its own.

use super::{Distro, Version, upgrade_refusal};
use serde::Serialize;

/// One minor (or patch) step of an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradeStep {
    /// `v1.34.5+k3s1`, or `v1.34.x` for a release in between that kstrap does not pin.
    pub from: String,
    pub to: String,
    /// kstrap can name this release: the one asked for (or its pinned one). False for a minor in
    /// between, whose release the user picks.
    pub named: bool,
    /// The command that does this step.
    pub command: String,
    /// What happens, in order.
    pub actions: Vec<String>,
}

/// The whole upgrade from the installed release to the one asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradePlan {
    pub distro: Distro,
    pub from: Version,
    pub to: Version,
    pub steps: Vec<UpgradeStep>,
    /// Why `kstrap up --upgrade` will not do this in one run (a downgrade, a skipped minor);
    /// None when it does the whole plan.
    pub refused: Option<String>,
    /// The documented rules the plan follows, each with its source.
    pub rules: Vec<String>,
}

fn rules(distro: Distro) -> Vec<String> {
    let mut r = vec![
        "Kubernetes version skew policy (kubernetes.io/releases/version-skew-policy): the API server moves one minor version at a time; the kubelet is never newer than the API server; no downgrades".to_string(),
    ];
    r.push(match distro {
        Distro::K3s => "k3s Manual Upgrades (docs.k3s.io/upgrades/manual): install the new binary, stop the old k3s, start the new one; servers first, one at a time, then agents; do not skip intermediate minor versions (channel v1.N is the latest release of minor N)".to_string(),
        Distro::K0s => "k0s docs/upgrade.md (v1.35.3+k0s.0): stop k0s, replace its single binary, start it again; controllers before workers (docs/autopilot.md)".to_string(),
    });
    r
}

fn actions(distro: Distro, to: &str, named: bool) -> Vec<String> {
    let paths = distro.paths();
    let sums = match distro {
        Distro::K3s => "the release's sha256sum-<arch>.txt",
        Distro::K0s => "the release's sha256sums.txt",
    };
    let kube = to.split('+').next().unwrap_or(to);
    let what = if named {
        format!("{distro} {to}")
    } else {
        format!("the {distro} release you picked")
    };
    let mut a = vec![
        format!("download {what} and check it against {sums} before it is used"),
        format!(
            "put it in place as {} (written beside it, then renamed over the old one)",
            paths.binary
        ),
        format!(
            "restart {} (systemctl restart: the old {distro} stops, the new one starts with the same config and data)",
            paths.service_unit
        ),
        format!("wait until the API server answers /readyz and the node is Ready (`kstrap status` shows its kubelet at {kube})"),
        "apply the GPU operator, the add-ons and the stack again and wait until they are ready (unchanged objects are left alone)".to_string(),
    ];
    if !named {
        a.insert(
            0,
            format!(
                "pick the latest {kube} release of {distro} (https://github.com/{}/releases)",
                distro.release_repo()
            ),
        );
    }
    a
}

/// The upgrade from `from` to `to`, or None when they are the same release.
pub fn upgrade_plan(from: &Version, to: &Version) -> Option<UpgradePlan> {
    if from == to {
        return None;
    }
    let distro = to.distro();
    let refused = upgrade_refusal(from, to);
    let mut steps = Vec::new();
    // A downgrade or another distribution has no steps: only the refusal.
    if to > from && from.distro() == distro {
        let minors = super::upgrade_minors(from, to);
        let mut at = from.to_string();
        // The minors after the installed one; a patch upgrade is one step to `to`.
        let next: Vec<u32> = if minors.len() > 1 {
            minors[1..].to_vec()
        } else {
            vec![to.minor()]
        };
        for m in next {
            let last = m == to.minor();
            let (target, named) = if last {
                (to.to_string(), true)
            } else {
                (format!("v1.{m}.x"), false)
            };
            let version_arg = if named {
                target.clone()
            } else {
                match distro {
                    Distro::K3s => format!("v1.{m}.<latest>+k3s<N>"),
                    Distro::K0s => format!("v1.{m}.<latest>+k0s.<N>"),
                }
            };
            steps.push(UpgradeStep {
                from: at.clone(),
                to: target.clone(),
                named,
                command: format!("sudo kstrap up --upgrade --distro {distro} --distro-version {version_arg}"),
                actions: actions(distro, &target, named),
            });
            at = target;
        }
    }
    Some(UpgradePlan {
        distro,
        from: *from,
        to: *to,
        steps,
        refused,
        rules: rules(distro),
    })
}

/// The plan for people: the steps, then the rules and, when `up --upgrade` refuses it, why.
pub fn render(p: &UpgradePlan) -> String {
    let mut out = format!("Upgrade of {} {} → {}\n", p.distro, p.from, p.to);
    for (i, s) in p.steps.iter().enumerate() {
        let who = if s.named {
            ""
        } else {
            " (a release kstrap does not pin: by hand)"
        };
        out.push_str(&format!("  step {}: {} → {}{who}\n", i + 1, s.from, s.to));
        out.push_str(&format!("    run: {}\n", s.command));
        for a in &s.actions {
            out.push_str(&format!("    - {a}\n"));
        }
    }
    match &p.refused {
        Some(why) if p.steps.len() > 1 => out.push_str(&format!(
            "  `kstrap up --upgrade` will not jump there in one run ({why}): run the steps above one at a time\n"
        )),
        Some(why) => out.push_str(&format!("  refused: {why}\n")),
        None => {
            if let Some(s) = p.steps.last() {
                out.push_str(&format!("  one run does it: {}\n", s.command));
            }
        }
    }
    out.push_str("  rules:\n");
    for r in &p.rules {
        out.push_str(&format!("    - {r}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k3s(t: &str) -> Version {
        Version::parse(Distro::K3s, t).unwrap()
    }

    fn k0s(t: &str) -> Version {
        Version::parse(Distro::K0s, t).unwrap()
    }

    #[test]
    fn a_patch_upgrade_is_one_step_kstrap_does() {
        let p = upgrade_plan(&k3s("v1.35.2+k3s1"), &k3s("v1.35.3+k3s1")).unwrap();
        assert_eq!(p.refused, None);
        assert_eq!(p.steps.len(), 1);
        assert!(p.steps[0].named);
        assert_eq!(p.steps[0].to, "v1.35.3+k3s1");
        insta::assert_snapshot!("k3s_patch", render(&p));
    }

    #[test]
    fn the_next_minor_is_one_step_with_the_binary_checked_and_the_node_waited_for() {
        let p = upgrade_plan(&k0s("v1.34.3+k0s.0"), &k0s("v1.35.3+k0s.0")).unwrap();
        assert_eq!(p.refused, None);
        assert_eq!(p.steps.len(), 1);
        let a = p.steps[0].actions.join("\n");
        assert!(a.contains("sha256sums.txt"), "{a}");
        assert!(a.contains("/usr/local/bin/k0s"), "{a}");
        assert!(a.contains("restart k0scontroller.service"), "{a}");
        assert!(a.contains("kubelet at v1.35.3"), "{a}");
        insta::assert_snapshot!("k0s_next_minor", render(&p));
    }

    #[test]
    fn two_minors_are_two_steps_the_first_by_hand_and_up_refuses_the_jump() {
        let p = upgrade_plan(&k3s("v1.33.4+k3s1"), &k3s("v1.35.3+k3s1")).unwrap();
        let tos: Vec<&str> = p.steps.iter().map(|s| s.to.as_str()).collect();
        assert_eq!(tos, ["v1.34.x", "v1.35.3+k3s1"]);
        assert!(!p.steps[0].named && p.steps[1].named);
        assert_eq!(p.steps[1].from, "v1.34.x");
        assert!(
            p.steps[0].command.contains("--distro-version v1.34.<latest>+k3s<N>"),
            "{:?}",
            p.steps[0]
        );
        assert!(
            p.refused.as_deref().unwrap().contains("v1.33 → v1.34 → v1.35"),
            "{:?}",
            p.refused
        );
        insta::assert_snapshot!("k3s_two_minors", render(&p));
    }

    #[test]
    fn a_downgrade_has_no_steps_only_the_refusal() {
        let p = upgrade_plan(&k3s("v1.35.3+k3s1"), &k3s("v1.35.2+k3s1")).unwrap();
        assert!(p.steps.is_empty());
        assert!(render(&p).contains("refused: v1.35.2+k3s1 is older"), "{}", render(&p));
        assert_eq!(upgrade_plan(&k3s("v1.35.3+k3s1"), &k3s("v1.35.3+k3s1")), None);
    }
}
