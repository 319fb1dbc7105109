//! `kstrap down` with a state file it must not trust, and runs that must write nothing: a
//! refusal, a dry run, nothing installed. Same TEST DOUBLES as `up_e2e` (fake host, release
//! server, the real control plane where one is needed). Each case compares the whole host root (lock file included)
//! and a victim folder outside it before and after.

use crate::up_e2e::{LOCK, Machine, World, text};
use std::path::PathBuf;

const STATE: &str = "var/lib/kstrap/state.json";

/// A folder next to the host root that must survive everything.
fn victim(w: &World) -> PathBuf {
    let v = w.host.dir.path().join("victim");
    std::fs::create_dir_all(v.join("data")).unwrap();
    std::fs::write(v.join("data/precious"), "do not delete").unwrap();
    v
}

fn edit_state(w: &World, f: impl FnOnce(&mut serde_json::Value)) {
    let path = w.host.root.join(STATE);
    let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut state);
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
}

fn push(state: &mut serde_json::Value, field: &str, value: &str) {
    state[field].as_array_mut().unwrap().push(value.into());
}

#[test]
fn a_state_file_naming_paths_outside_the_list_or_the_root_is_refused_and_nothing_changes() {
    type Edit = fn(&mut serde_json::Value);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "file escaping the root",
            |s| s["files"]["/../victim/data/precious"] = serde_json::json!({"sha256": null, "mode": "0644"}),
            "files: \"/../victim/data/precious\" is not an absolute, plain path (`.` or `..` component)",
        ),
        (
            "data folder escaping the root",
            |s| push(s, "data_dirs", "/../victim/data"),
            "data_dirs: \"/../victim/data\" is not an absolute, plain path",
        ),
        (
            "relative file",
            |s| s["files"]["usr/local/bin/k3s"] = serde_json::json!({"sha256": null, "mode": "0755"}),
            "files: \"usr/local/bin/k3s\" is not an absolute, plain path (it must start with /)",
        ),
        (
            "a file upstream's uninstall does not remove",
            |s| s["files"]["/home/tester/.bashrc"] = serde_json::json!({"sha256": null, "mode": "0644"}),
            "files: \"/home/tester/.bashrc\" is not a file k3s's uninstall removes or kstrap installs for it",
        ),
        (
            "a folder that is not k3s's data",
            |s| push(s, "data_dirs", "/home/tester"),
            "data_dirs: \"/home/tester\" is not one of k3s's data folders",
        ),
        (
            "a created folder holding nothing kstrap installed",
            |s| push(s, "dirs", "/srv"),
            "dirs: \"/srv\" holds nothing kstrap installed",
        ),
        (
            "a kubeconfig outside the root",
            |s| s["kubeconfig"]["path"] = "/../victim/config".into(),
            "kubeconfig.path: \"/../victim/config\" is not an absolute, plain path",
        ),
        (
            "another service",
            |s| push(s, "services", "sshd.service"),
            "services: \"sshd.service\" is not k3s's unit (k3s.service)",
        ),
        (
            "a trailing slash",
            |s| push(s, "data_dirs", "/var/lib/rancher/k3s/"),
            "data_dirs: \"/var/lib/rancher/k3s/\" is not an absolute, plain path (empty component or trailing /)",
        ),
    ];
    for (name, edit, message) in cases {
        let Some(w) =
            World::real("a_state_file_naming_paths_outside_the_list_or_the_root_is_refused_and_nothing_changes")
        else {
            return;
        };
        let v = victim(&w);
        w.up_ok(&[]);
        edit_state(&w, *edit);
        w.host.take_log();
        let tree = w.host.tree(&[]);
        let stamps = w.host.stamps(&[]);
        for args in [
            &["down", "--dry-run"][..],
            &["down", "--yes"],
            &["down", "--yes", "--keep-data"],
        ] {
            let out = w.kstrap(args).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {}", text(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("names paths kstrap will not remove; nothing was changed"),
                "{name}: {err}"
            );
            assert!(err.contains(message), "{name}: expected {message:?} in\n{err}");
            assert!(err.contains("fix: "), "{name}: {err}");
        }
        assert_eq!(w.host.tree(&[]), tree, "{name}: the root is untouched");
        assert_eq!(w.host.stamps(&[]), stamps, "{name}: nothing was rewritten");
        assert!(w.host.take_effects().is_empty(), "{name}: no command changed anything");
        assert_eq!(
            std::fs::read_to_string(v.join("data/precious")).unwrap(),
            "do not delete",
            "{name}"
        );
        assert!(w.host.active("k3s.service"), "{name}: the cluster still runs");
    }
}

#[test]
fn links_in_the_state_or_on_the_way_to_its_paths_are_refused() {
    // A link on the way to the data folder, to a folder outside the root.
    let Some(w) = World::real("links_in_the_state_or_on_the_way_to_its_paths_are_refused") else {
        return;
    };
    let v = victim(&w);
    w.up_ok(&[]);
    std::fs::create_dir_all(v.join("rancher/k3s/server")).unwrap();
    std::fs::write(v.join("rancher/k3s/server/db"), "someone's database").unwrap();
    let rancher = w.host.root.join("var/lib/rancher");
    std::fs::remove_dir_all(&rancher).unwrap();
    std::os::unix::fs::symlink(v.join("rancher"), &rancher).unwrap();
    w.host.take_log();
    let tree = w.host.tree(&[]);
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data_dirs: \"/var/lib/rancher/k3s\" goes through /var/lib/rancher, a symbolic link (to "),
        "{err}"
    );
    assert_eq!(w.host.tree(&[]), tree);
    assert!(w.host.take_effects().is_empty());
    assert!(v.join("rancher/k3s/server/db").exists());

    // The state file itself a link: read nowhere, followed nowhere.
    drop(w);
    let Some(w) = World::real("links_in_the_state_or_on_the_way_to_its_paths_are_refused") else {
        return;
    };
    let v = victim(&w);
    w.up_ok(&[]);
    let state = w.host.root.join(STATE);
    std::fs::rename(&state, v.join("state.json")).unwrap();
    std::os::unix::fs::symlink(v.join("state.json"), &state).unwrap();
    w.host.take_log();
    let tree = w.host.tree(&[]);
    for args in [&["down", "--yes"][..], &["down", "--dry-run"]] {
        let out = w.kstrap(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("/var/lib/kstrap/state.json is a symbolic link (to "),
            "{err}"
        );
        assert!(err.contains("kstrap reads only the state file it wrote"), "{err}");
    }
    assert_eq!(w.host.tree(&[]), tree);
    assert!(w.host.take_effects().is_empty());
    assert!(w.host.active("k3s.service"));
}

#[test]
fn a_file_changed_since_kstrap_wrote_it_is_kept_with_the_reason() {
    let Some(w) = World::real("a_file_changed_since_kstrap_wrote_it_is_kept_with_the_reason") else {
        return;
    };
    w.up_ok(&[]);
    let config = w.host.root.join("etc/rancher/k3s/config.yaml");
    std::fs::write(&config, "# tuned by hand\nwrite-kubeconfig-mode: \"0600\"\n").unwrap();
    let out = w.kstrap(&["down", "--dry-run"]).output().unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("keep /etc/rancher/k3s/config.yaml: changed since kstrap wrote it (sha256 "),
        "{plan}"
    );
    assert!(
        plan.contains("remove data folder /etc/rancher/k3s (keeping /etc/rancher/k3s/config.yaml)"),
        "{plan}"
    );
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("keep /etc/rancher/k3s/config.yaml: changed since kstrap wrote it"),
        "{all}"
    );
    assert!(all.contains("kept 1 path (listed above, with the reason)"), "{all}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "# tuned by hand\nwrite-kubeconfig-mode: \"0600\"\n"
    );
    assert!(!w.host.root.join("etc/rancher/k3s/k3s.yaml").exists());
    assert!(!w.host.root.join("usr/local/bin/k3s").exists());
    assert!(
        !w.host.root.join("var/lib/kstrap").exists(),
        "the install is gone; the kept file is the user's now"
    );
}

#[test]
fn refusals_dry_runs_and_nothing_installed_write_nothing_not_even_the_lock() {
    let Some(w) = World::real("refusals_dry_runs_and_nothing_installed_write_nothing_not_even_the_lock") else {
        return;
    };
    let bare = w.host.tree(&[]);
    // Nothing installed: `down` in every form, and `up` without --yes (no terminal: refused).
    for args in [
        &["down", "--yes"][..],
        &["down", "--dry-run"],
        &["down"],
        &["down", "--keep-data", "--yes"],
    ] {
        let out = w.kstrap(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    }
    let up: Vec<String> = w.up_args(&[]).into_iter().filter(|a| a != "--yes").collect();
    let out = w
        .kstrap(&up.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(w.host.tree(&[]), bare, "no lock file, nothing else");
    assert!(!w.host.root.join(LOCK.trim_start_matches('/')).exists());

    // Installed, lock file gone (a reboot clears /run): refusals and dry runs create none.
    w.up_ok(&[]);
    std::fs::remove_file(w.host.root.join(LOCK.trim_start_matches('/'))).unwrap();
    let installed = w.host.tree(&[]);
    let out = w.kstrap(&["down"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = w.kstrap(&["down", "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = w.kstrap(&["down", "--dry-run", "-o", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = w
        .kstrap(&up.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(w.host.tree(&[]), installed, "refusals and dry runs wrote nothing");
    // Another distribution without --replace: refused (exit 3) before the lock.
    let out = w.up(&["--distro", "k0s"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    // A state file kstrap will not act on: refused (exit 2) before the lock.
    edit_state(&w, |s| push(s, "data_dirs", "/../x"));
    let refused = w.host.tree(&[]);
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(w.host.tree(&[]), refused);
    edit_state(&w, |s| {
        s["data_dirs"].as_array_mut().unwrap().pop();
    });
    assert!(
        !w.host.root.join(LOCK.trim_start_matches('/')).exists(),
        "no lock was taken"
    );

    // Agreed: the lock is taken while acting, and `down` removes it with the rest.
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(w.host.tree(&[]), bare);
}
