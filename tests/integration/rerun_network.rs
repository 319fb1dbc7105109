//! Re-runs on a machine whose network changed since kstrap installed the cluster: a laptop that
//! moved to another network, a VPN brought up since, a proxy that went away. The facts carry what
//! the install recorded (`existing.kstrap_network`, read from kstrap's state file), so each case
//! is a facts fixture changed here; the plan, its preflight findings and its JSON say what `up`
//! does.

use crate::hosts::{facts_with, run};
use serde_json::{Value, json};

/// The 8 GB laptop (k0s) as kstrap installed it at home: Wi-Fi 192.168.1.23 on wlp2s0, k0s's own
/// ranges, then `network` as it is now.
fn installed_laptop(network: Value, proxy: bool) -> tempfile::NamedTempFile {
    facts_with("laptop-8gb-nogpu", |v| {
        v["existing"]["k0s"] = json!({
            "binary": "/usr/local/bin/k0s",
            "service": "/etc/systemd/system/k0scontroller.service",
            "kubeconfig": "/var/lib/k0s/pki/admin.conf",
            "data_dir": "/var/lib/k0s"
        });
        v["existing"]["kstrap_state"] = json!("/var/lib/kstrap/state.json");
        v["existing"]["kstrap_network"] = json!({
            "pod_cidr": "10.244.0.0/16",
            "service_cidr": "10.96.0.0/12",
            "node_address": "192.168.1.23",
            "iface": "wlp2s0",
            "addresses": ["192.168.1.23"],
            "proxy": proxy
        });
        v["network"] = network;
    })
}

fn home() -> Value {
    json!({
        "addresses": ["192.168.1.23"],
        "routes": [
            {"iface": "wlp2s0", "destination": "0.0.0.0/0"},
            {"iface": "wlp2s0", "destination": "192.168.1.0/24"}
        ]
    })
}

fn plan_json(facts: &tempfile::NamedTempFile, vars: &[(&str, &str)]) -> Value {
    let (json, _) = run(
        vars,
        &["plan", "--facts", facts.path().to_str().unwrap(), "-o", "json"],
        0,
    );
    serde_json::from_str(&json).unwrap()
}

fn finding<'a>(plan: &'a Value, check: &str) -> Option<&'a Value> {
    plan["steps"][0]["action"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
}

fn step<'a>(plan: &'a Value, id: &str) -> Option<&'a Value> {
    plan["steps"].as_array().unwrap().iter().find(|s| s["id"] == id)
}

/// The office network the laptop moved to.
fn moved_network() -> Value {
    json!({
        "addresses": ["10.20.30.40"],
        "routes": [
            {"iface": "enp0s31f6", "destination": "0.0.0.0/0"},
            {"iface": "enp0s31f6", "destination": "10.20.30.0/24"}
        ]
    })
}

#[test]
fn a_laptop_on_another_network_restarts_the_distribution_to_take_its_new_address() {
    let facts = installed_laptop(moved_network(), false);
    let (plan, _) = run(&[], &["plan", "--facts", facts.path().to_str().unwrap()], 0);
    insta::assert_snapshot!("plan_rerun_moved_laptop_k0s", plan);
    assert!(
        plan.contains(
            "Address: the node's address changed since the install, 192.168.1.23 (wlp2s0) → 10.20.30.40 (enp0s31f6)"
        ),
        "{plan}"
    );
    let v = plan_json(&facts, &[]);
    assert_eq!(
        v["network"]["address_change"]["from"], "192.168.1.23",
        "{}",
        v["network"]
    );
    assert_eq!(v["network"]["address_change"]["to"], "10.20.30.40");
    // The office network is 10.20.30.0/24, inside none of k0s's ranges: they stay, said so.
    assert_eq!(v["network"]["kept"], true);
    let warn = finding(&v, "node-address").expect("a node-address finding");
    assert_eq!(warn["severity"], "warn", "{warn}");
    assert!(
        warn["how_to_fix"]
            .as_str()
            .unwrap()
            .contains("systemctl restart k0scontroller.service"),
        "{warn}"
    );
    // The same network again: nothing to say but that it is the same.
    let v = plan_json(&installed_laptop(home(), false), &[]);
    assert!(v["network"].get("address_change").is_none(), "{}", v["network"]);
    assert_eq!(finding(&v, "node-address").unwrap()["severity"], "pass");
}

#[test]
fn a_vpn_brought_up_since_the_install_keeps_the_installed_ranges_and_says_what_to_do() {
    let mut vpn = home();
    vpn["addresses"] = json!(["10.8.0.5", "192.168.1.23"]);
    vpn["routes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"iface": "tun0", "destination": "10.0.0.0/8"}));
    let facts = installed_laptop(vpn.clone(), false);
    let v = plan_json(&facts, &[]);
    // A first install here would move them off 10.0.0.0/8; the running cluster keeps its own.
    assert_eq!(v["network"]["pod_cidr"], "10.244.0.0/16", "{}", v["network"]);
    assert_eq!(v["network"]["service_cidr"], "10.96.0.0/12");
    assert_eq!(v["network"]["conflicts"], json!(["10.0.0.0/8 via tun0"]));
    let warn = finding(&v, "network-ranges").expect("a network-ranges finding");
    assert_eq!(warn["severity"], "warn", "{warn}");
    assert!(warn["how_to_fix"].as_str().unwrap().contains("kstrap down"), "{warn}");
    // The written k0s config names no ranges (k0s's own), as at the install.
    let config = step(&v, "write-k0s-config").unwrap()["action"]["contents"]
        .as_str()
        .unwrap();
    assert!(!config.contains("CIDR"), "{config}");
    // The VPN's address is not the node's: no restart for it.
    assert!(v["network"].get("address_change").is_none(), "{}", v["network"]);

    let fresh = facts_with("laptop-8gb-nogpu", |f| f["network"] = vpn);
    let v = plan_json(&fresh, &[]);
    assert_eq!(v["network"]["pod_cidr"], "172.30.0.0/16", "{}", v["network"]);
    assert!(finding(&v, "network-ranges").is_none());
}

/// Detection reads what the install recorded from kstrap's state file.
#[test]
fn detect_reads_the_recorded_network_from_the_state_file() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("var/lib/kstrap/state.json");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(
        &state,
        r#"{"schema": 1, "distro": "k3s", "version": "v1.35.3+k3s1", "profile": "cpu-fallback",
            "files": {}, "dirs": [], "services": [], "data_dirs": [], "kubeconfig": null,
            "commands": {}, "pending": [],
            "network": {"pod_cidr": "172.30.0.0/16", "service_cidr": "172.31.0.0/16",
                        "node_address": "192.168.1.23", "iface": "wlp2s0", "addresses": ["192.168.1.23"]}}"#,
    )
    .unwrap();
    let (json, _) = run(
        &[("KSTRAP_HOST_ROOT", root.path().to_str().unwrap())],
        &["detect", "-o", "json"],
        0,
    );
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["facts"]["existing"]["kstrap_network"]["pod_cidr"], "172.30.0.0/16",
        "{}",
        v["facts"]["existing"]
    );
    assert_eq!(v["facts"]["existing"]["kstrap_network"]["iface"], "wlp2s0");
    // A state file from before the network was recorded: nothing read, nothing refused.
    std::fs::write(
        &state,
        r#"{"schema": 1, "distro": "k3s", "version": "v1.35.3+k3s1", "profile": "cpu-fallback",
            "files": {}, "dirs": [], "services": [], "data_dirs": [], "kubeconfig": null,
            "commands": {}, "pending": []}"#,
    )
    .unwrap();
    let (json, _) = run(
        &[("KSTRAP_HOST_ROOT", root.path().to_str().unwrap())],
        &["detect", "-o", "json"],
        0,
    );
    let v: Value = serde_json::from_str(&json).unwrap();
    assert!(
        v["facts"]["existing"].get("kstrap_network").is_none(),
        "{}",
        v["facts"]["existing"]
    );
}

/// On the fake host against the real control plane (k0s): `up` behind a proxy writes k0s's
/// drop-in; `up` again with the proxy gone (the facts carrying what the first run recorded in
/// kstrap's state, as detection reads it) removes the drop-in, reloads systemd and restarts
/// k0s once; a third run changes nothing; on another network, one more run restarts k0s once
/// for the new address and records it.
#[test]
fn a_proxy_gone_or_a_new_address_on_a_rerun_restarts_k0s_once() {
    use crate::up_e2e::{Machine, World, text};
    let Some(w) = World::real_k0s("a_proxy_gone_or_a_new_address_on_a_rerun_restarts_k0s_once") else {
        return;
    };
    let drop_in = w
        .host
        .root
        .join("etc/systemd/system/k0scontroller.service.d/http-proxy.conf");
    let url = w.releases().url();
    let up = |facts: &std::path::Path, proxy: bool| {
        let mut c = w.kstrap(&[
            "up",
            "--facts",
            facts.to_str().unwrap(),
            "--distro",
            "k0s",
            "--release-mirror",
            &url,
            "--yes",
            "--cluster-only",
        ]);
        if proxy {
            // The proxy is for the cluster; kstrap's own downloads come from 127.0.0.1 here.
            c.env("HTTPS_PROXY", "http://10.0.0.1:3128")
                .env("NO_PROXY", "127.0.0.1,localhost");
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        out
    };
    // The workstation at home, then (below) as detection reads it after each run.
    let facts_at = |network: Value, state: Option<&Value>| {
        facts_with("rtx5090-96gb", |v| {
            v["network"] = network;
            if let Some(state) = state {
                v["existing"]["kstrap_state"] = json!("/var/lib/kstrap/state.json");
                v["existing"]["kstrap_network"] = state["network"].clone();
            }
        })
    };
    up(facts_at(home(), None).path(), true);
    assert!(drop_in.exists());
    w.host.take_effects();
    // What detection would read on this host now: the state's network.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(w.host.root.join("var/lib/kstrap/state.json")).unwrap()).unwrap();
    assert_eq!(state["network"]["proxy"], true, "{}", state["network"]);
    assert_eq!(state["network"]["node_address"], "192.168.1.23", "{}", state["network"]);
    let again = facts_at(home(), Some(&state));
    let out = up(again.path(), false);
    assert!(
        text(&out).contains("Remove the k0s service's proxy drop-in"),
        "{}",
        text(&out)
    );
    assert!(!drop_in.exists());
    let log = w.host.take_effects();
    let at = |line: &str| {
        log.iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no {line:?} in {log:?}"))
    };
    assert!(
        at("systemctl daemon-reload") < at("systemctl restart k0scontroller.service"),
        "{log:?}"
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(w.host.root.join("var/lib/kstrap/state.json")).unwrap()).unwrap();
    assert!(state["network"].get("proxy").is_none(), "{}", state["network"]);
    assert!(
        state["files"]
            .get("/etc/systemd/system/k0scontroller.service.d/http-proxy.conf")
            .is_none()
    );
    // Converged: the recorded network says no proxy, nothing to remove or restart.
    let settled = facts_at(home(), Some(&state));
    up(settled.path(), false);
    let log = w.host.take_effects();
    assert!(
        !log.iter().any(|l| l.contains("restart") || l.contains("daemon-reload")),
        "{log:?}"
    );
    // The machine moved to another network: k0s is restarted once for its new address, which
    // the state then records; the run after that restarts nothing.
    let moved = facts_at(moved_network(), Some(&state));
    up(moved.path(), false);
    let log = w.host.take_effects();
    let restarts = log
        .iter()
        .filter(|l| *l == "systemctl restart k0scontroller.service")
        .count();
    assert_eq!(restarts, 1, "{log:?}");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(w.host.root.join("var/lib/kstrap/state.json")).unwrap()).unwrap();
    assert_eq!(state["network"]["node_address"], "10.20.30.40", "{}", state["network"]);
    assert_eq!(state["network"]["iface"], "enp0s31f6");
    let settled = facts_at(moved_network(), Some(&state));
    up(settled.path(), false);
    assert!(!w.host.take_effects().iter().any(|l| l.contains("restart")));
    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
