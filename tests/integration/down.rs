//! `kstrap down` after a real `up` into a temp root (same TEST DOUBLES as `up_e2e`), the refusals
//! `up` makes before touching a machine, the lock, and the confirmation rules.

use crate::up_e2e::{LOCK, Machine, World, text};
use kstrap::exec::host::Host;

#[test]
fn down_after_up_leaves_the_root_as_it_was() {
    for distro in ["k3s", "k0s"] {
        let Some(w) = World::real_for(distro, "down_after_up_leaves_the_root_as_it_was") else {
            return;
        };
        let before = w.host.tree(&[]);
        w.up_ok(&["--distro", distro]);
        let out = w.kstrap(&["down", "--yes"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(
            w.host.tree(&[]),
            before,
            "{distro}: down must remove exactly what up added"
        );
        let log = w.host.take_effects();
        match distro {
            "k3s" => assert!(
                log.ends_with(&[
                    "systemctl disable --now k3s.service".to_string(),
                    "systemctl reset-failed k3s.service".to_string(),
                    "systemctl daemon-reload".to_string()
                ]),
                "{log:?}"
            ),
            _ => assert!(
                log.ends_with(&[
                    "k0s stop".to_string(),
                    "k0s reset".to_string(),
                    "systemctl daemon-reload".to_string()
                ]),
                "{log:?}"
            ),
        }
        assert!(!w.host.active(&format!("{distro}.service")));
        // Again: nothing to remove.
        let out = w.kstrap(&["down", "--yes"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "nothing to remove: kstrap has not installed anything here\n"
        );
    }
}

#[test]
fn down_keep_data_keeps_the_data_dir_and_dry_run_changes_nothing() {
    let Some(w) = World::real("down_keep_data_keeps_the_data_dir_and_dry_run_changes_nothing") else {
        return;
    };
    w.up_ok(&[]);
    let tree = w.host.tree(&[LOCK]);
    let out = w.kstrap(&["down", "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("remove data folder /var/lib/rancher/k3s"), "{listed}");
    assert_eq!(w.host.tree(&[LOCK]), tree, "--dry-run changes nothing");

    let out = w.kstrap(&["down", "--yes", "--keep-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(w.host.root.join("var/lib/rancher/k3s/server/node-token").exists());
    assert!(!w.host.root.join("usr/local/bin/k3s").exists());
    assert!(!w.host.root.join("etc/systemd/system/k3s.service").exists());
    // The state file stays, naming the kept data: `up` takes it back, `down` removes it.
    let state = std::fs::read_to_string(w.host.root.join("var/lib/kstrap/state.json")).unwrap();
    assert!(state.contains("\"/var/lib/rancher/k3s\""), "{state}");
    assert!(state.contains("\"files\": {}"), "{state}");
    w.up_ok(&[]);
    assert_eq!(
        w.host.tree(&[LOCK]),
        tree,
        "up after down --keep-data is the same install again"
    );
    let out = w.kstrap(&["down", "--yes", "--keep-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!w.host.root.join("var/lib/rancher").exists());
    assert!(!w.host.root.join("var/lib/kstrap").exists());
}

#[test]
fn replace_takes_over_a_cluster_kstrap_did_not_install() {
    let Some(w) = World::real("replace_takes_over_a_cluster_kstrap_did_not_install") else {
        return;
    };
    std::fs::write(w.host.root.join("usr/local/bin/k3s"), "someone else's").unwrap();
    std::fs::write(w.host.root.join("etc/systemd/system/k3s.service"), "[Service]\n").unwrap();
    std::fs::create_dir_all(w.host.root.join("var/lib/rancher/k3s/server/db")).unwrap();
    w.up_ok(&["--replace"]);
    let log = w.host.take_log();
    assert_eq!(log[0], "systemctl disable --now k3s.service", "{log:?}");
    assert!(
        !w.host.root.join("var/lib/rancher/k3s/server/db").exists(),
        "its data is gone"
    );
    assert_ne!(
        std::fs::read(w.host.root.join("usr/local/bin/k3s")).unwrap(),
        b"someone else's"
    );
    assert!(w.host.active("k3s.service"));
}

#[test]
fn down_without_state_touches_nothing() {
    let w = World::host_only();
    std::fs::write(w.host.root.join("usr/local/bin/k3s"), "someone else's").unwrap();
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to remove"));
    assert!(w.host.root.join("usr/local/bin/k3s").exists());
    assert!(w.host.take_log().is_empty());
}

#[test]
fn up_refuses_a_cluster_kstrap_did_not_install() {
    let w = World::host_only();
    std::fs::write(w.host.root.join("usr/local/bin/k3s"), "someone else's").unwrap();
    let out = w.up(&[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("k3s is already on this machine but kstrap did not install it (found /usr/local/bin/k3s"),
        "{err}"
    );
    assert!(err.contains("--replace"), "{err}");
    assert_eq!(
        std::fs::read_to_string(w.host.root.join("usr/local/bin/k3s")).unwrap(),
        "someone else's"
    );
    assert!(w.host.take_log().is_empty());
}

#[test]
fn up_refuses_the_other_distribution_unless_replace() {
    let Some(w) = World::real_k0s("up_refuses_the_other_distribution_unless_replace") else {
        return;
    };
    w.up_ok(&["--distro", "k0s"]);
    w.host.take_log();
    let out = w.up(&["--distro", "k3s"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kstrap installed k0s v1.35.3+k0s.0 here"), "{err}");
    assert!(err.contains("pass --replace"), "{err}");
    assert!(w.host.take_log().is_empty());

    // k3s replaces k0s on the machine: its node says so.
    w.cluster()
        .node()
        .set(|c| c.kubelet_version = crate::up_e2e::K3S.into());
    w.up_ok(&["--distro", "k3s", "--replace"]);
    let log = w.host.take_log();
    assert_eq!(log[..2], ["k0s stop".to_string(), "k0s reset".to_string()], "{log:?}");
    assert!(!w.host.root.join("usr/local/bin/k0s").exists());
    assert!(w.host.active("k3s.service"));
}

#[test]
fn a_second_up_fails_at_once_while_the_lock_is_held() {
    let w = World::host_only();
    let host = Host::new(w.host.root.clone(), None);
    let held = kstrap::exec::lock::acquire(&host).unwrap();
    let out = w.up(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "another kstrap (pid {}) is changing this machine",
            std::process::id()
        )),
        "{err}"
    );
    assert!(w.host.take_log().is_empty());
    drop(held);
}

#[test]
fn without_yes_and_without_a_terminal_up_and_down_refuse_with_exit_2() {
    let Some(w) = World::real("without_yes_and_without_a_terminal_up_and_down_refuse_with_exit_2") else {
        return;
    };
    let args: Vec<String> = w.up_args(&[]).into_iter().filter(|a| a != "--yes").collect();
    let out = w
        .kstrap(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --yes"));
    assert!(!w.host.root.join("usr/local/bin/k3s").exists());

    w.up_ok(&[]);
    let out = w.kstrap(&["down"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --yes"));
    assert!(w.host.root.join("usr/local/bin/k3s").exists(), "nothing removed");
}

#[test]
fn an_interrupted_down_says_what_is_left_and_can_be_run_again() {
    let Some(w) = World::real("an_interrupted_down_says_what_is_left_and_can_be_run_again") else {
        return;
    };
    let before = w.host.tree(&[]);
    w.up_ok(&[]);
    let out = w
        .kstrap(&["down", "--yes"])
        .env("FAKE_HOST_FAIL", "systemctl daemon-reload")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reload systemd failed"), "{err}");
    assert!(
        err.contains("still on the machine (recorded in /var/lib/kstrap/state.json)"),
        "{err}"
    );
    assert!(err.contains("- remove data folder /var/lib/rancher/k3s"), "{err}");
    assert!(!err.contains("- remove /usr/local/bin/k3s"), "already removed:\n{err}");
    assert!(!w.host.root.join("usr/local/bin/k3s").exists());
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(w.host.tree(&[]), before);
}
