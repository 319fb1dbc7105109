//! Real machines: a corporate proxy and a VPN that routes 10.0.0.0/8, planned from the facts of
//! such a laptop (`laptop-vpn-proxy.json`: the 8 GB laptop with a `tun0` route to 10.0.0.0/8 and
//! addresses 10.8.0.5 and 192.168.1.23) with the proxy in kstrap's environment.

use crate::support::fixture_path;
use assert_cmd::Command;

const PROXY: &str = "http://alice:s3cret-pw@10.0.0.1:3128";

/// The binary with a clean environment: no KSTRAP_* and no proxy variables but the ones given.
fn kstrap(vars: &[(&str, &str)]) -> Command {
    let mut c = Command::cargo_bin("kstrap").unwrap();
    for (k, _) in std::env::vars() {
        let lower = k.to_ascii_lowercase();
        if k.starts_with("KSTRAP_")
            || k == "SUDO_USER"
            || ["http_proxy", "https_proxy", "no_proxy"].contains(&lower.as_str())
        {
            c.env_remove(k);
        }
    }
    c.env("HOME", "/home/tester").env("NO_COLOR", "1").env("COLUMNS", "100");
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

fn run(vars: &[(&str, &str)], args: &[&str], code: i32) -> (String, String) {
    let out = kstrap(vars).args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

fn vpn_laptop() -> String {
    fixture_path("laptop-vpn-proxy").display().to_string()
}

#[test]
fn plan_behind_a_proxy_on_a_vpn_moves_the_ranges_and_passes_the_proxy_on() {
    let vars = [
        ("https_proxy", PROXY),
        ("HTTP_PROXY", PROXY),
        ("NO_PROXY", "corp.example"),
    ];
    let facts = vpn_laptop();
    let (plan, _) = run(&vars, &["plan", "--facts", &facts], 0);
    insta::assert_snapshot!("plan_vpn_proxy_k0s", plan);
    assert!(
        plan.contains("Network: pods 172.30.0.0/16, services 172.31.0.0/16"),
        "{plan}"
    );
    assert!(plan.contains("10.0.0.0/8 via tun0"), "{plan}");

    // -vv: the files as they will be written, and the stack's objects; the password never shows.
    for distro in ["k0s", "k3s"] {
        let (verbose, stderr) = run(&vars, &["plan", "--facts", &facts, "--distro", distro, "-vv"], 0);
        assert!(
            !verbose.contains("s3cret-pw") && !stderr.contains("s3cret-pw"),
            "{verbose}{stderr}"
        );
        assert!(verbose.contains("http://***@10.0.0.1:3128"), "{verbose}");
        let no_proxy = "NO_PROXY=corp.example,localhost,127.0.0.1,::1,10.8.0.5,192.168.1.23,172.30.0.0/16,172.31.0.0/16,.svc,.cluster.local";
        assert!(verbose.contains(no_proxy), "{distro}: {verbose}");
        match distro {
            "k0s" => {
                assert!(
                    verbose.contains("/etc/systemd/system/k0scontroller.service.d/http-proxy.conf"),
                    "{verbose}"
                );
                assert!(verbose.contains("podCIDR: 172.30.0.0/16"), "{verbose}");
            }
            _ => {
                assert!(verbose.contains("/etc/systemd/system/k3s.service.env"), "{verbose}");
                assert!(verbose.contains("cluster-cidr: 172.30.0.0/16"), "{verbose}");
            }
        }
        let (json, _) = run(
            &vars,
            &["plan", "--facts", &facts, "--distro", distro, "-vv", "-o", "json"],
            0,
        );
        assert!(!json.contains("s3cret-pw"), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["network"]["pod_cidr"], "172.30.0.0/16");
        assert_eq!(v["network"]["is_default"], false);
        assert_eq!(v["proxy"]["https"], "http://***@10.0.0.1:3128");
    }
}

#[test]
fn the_voice_stack_behind_a_proxy_gets_it_in_its_downloading_pods() {
    let vars = [("HTTPS_PROXY", "http://10.0.0.1:3128")];
    let facts = vpn_laptop();
    let (json, _) = run(
        &vars,
        &[
            "plan", "--facts", &facts, "--stack", "voice-ai", "--force", "-vv", "-o", "json",
        ],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let objects = v["objects"].as_array().expect("objects");
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind}/{name}"))
    };
    let env = &find("Deployment", "ollama")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "https_proxy" && e["value"] == "http://10.0.0.1:3128"),
        "{env}"
    );
    let egress = &find("NetworkPolicy", "ollama")["spec"]["egress"];
    assert!(
        egress
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["to"][0]["ipBlock"]["cidr"] == "10.0.0.1/32" && r["ports"][0]["port"] == 3128),
        "{egress}"
    );
}

#[test]
fn a_proxy_variable_kstrap_cannot_pass_on_is_bad_input() {
    let facts = vpn_laptop();
    let (_, stderr) = run(&[("HTTP_PROXY", "proxy.corp:3128")], &["plan", "--facts", &facts], 2);
    assert!(
        stderr.contains("HTTP_PROXY") && stderr.contains("no scheme") && stderr.contains("fix:"),
        "{stderr}"
    );
    let (stdout, _) = run(
        &[("https_proxy", "http://p:3128\nK3S_TOKEN=x")],
        &["plan", "--facts", &facts, "-o", "json"],
        2,
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["exit_code"], 2);
    assert!(v["error"].as_str().unwrap().contains("https_proxy"), "{v}");
}

#[test]
fn without_a_proxy_or_overlap_the_plan_keeps_the_defaults() {
    let (plan, _) = run(
        &[],
        &[
            "plan",
            "--facts",
            &fixture_path("laptop-8gb-nogpu").display().to_string(),
            "-vv",
        ],
        0,
    );
    assert!(
        plan.contains("Network: pods 10.244.0.0/16, services 10.96.0.0/12"),
        "{plan}"
    );
    assert!(!plan.contains("Proxy:") && !plan.contains("http-proxy.conf"), "{plan}");
}

/// The facts of a fixture with a change, written to a temp file for `--facts`.
pub(crate) fn facts_with(fixture: &str, change: impl FnOnce(&mut serde_json::Value)) -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(fixture_path(fixture)).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    change(&mut v);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_string_pretty(&v).unwrap()).unwrap();
    file
}

#[test]
fn ufw_on_is_named_with_the_documented_rules_and_open_firewall_plans_them() {
    let facts = facts_with("laptop-vpn-proxy", |v| {
        v["firewall"] = serde_json::json!({"ufw": true, "firewalld": false})
    });
    let path = facts.path().display().to_string();
    let (plan, _) = run(&[], &["plan", "--facts", &path], 0);
    assert!(plan.contains("ufw is on"), "{plan}");
    // k0s on this laptop, with the ranges moved off 10.0.0.0/8.
    assert!(
        plan.contains("sudo ufw allow 6443/tcp; sudo ufw allow 8132/tcp; sudo ufw allow 9443/tcp; sudo ufw allow 10250/tcp; sudo ufw allow from 172.30.0.0/16 to any; sudo ufw allow from 172.31.0.0/16 to any"),
        "{plan}"
    );
    assert!(!plan.contains("Open the firewall"), "{plan}");
    let (opened, _) = run(&[], &["plan", "--facts", &path, "--open-firewall"], 0);
    insta::assert_snapshot!("plan_ufw_open_firewall_k0s", opened);
    let open_at = opened
        .find("Open the firewall: ufw allow 6443/tcp")
        .expect("firewall step");
    let start_at = opened.find("Start k0s").expect("start step");
    assert!(open_at < start_at, "the firewall opens before k0s starts");

    let (k3s, _) = run(
        &[],
        &[
            "plan",
            "--facts",
            &path,
            "--open-firewall",
            "--distro",
            "k3s",
            "-o",
            "json",
        ],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&k3s).unwrap();
    let commands: Vec<String> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["id"].as_str().unwrap().starts_with("firewall-"))
        .map(|s| {
            let a = &s["action"];
            format!(
                "{} {}",
                a["program"].as_str().unwrap(),
                a["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .collect();
    assert_eq!(
        commands,
        [
            "ufw allow 6443/tcp",
            "ufw allow from 172.30.0.0/16 to any",
            "ufw allow from 172.31.0.0/16 to any"
        ]
    );
}

#[test]
fn firewalld_on_k0s_gets_its_services_and_sources() {
    let facts = facts_with("laptop-8gb-nogpu", |v| {
        v["firewall"] = serde_json::json!({"ufw": false, "firewalld": true})
    });
    let path = facts.path().display().to_string();
    let (json, _) = run(
        &[],
        &["plan", "--facts", &path, "--open-firewall", "-o", "json", "-vv"],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ids: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .filter(|id| id.starts_with("firewall-"))
        .collect();
    assert_eq!(
        ids,
        [
            "firewall-service-1",
            "firewall-service-2",
            "firewall-firewalld-1",
            "firewall-firewalld-2",
            "firewall-firewalld-3",
            "firewall-firewalld-4",
            "firewall-firewalld-5",
            "firewall-firewalld-6"
        ]
    );
    assert!(
        json.contains("--add-source=10.244.0.0/16") && json.contains("--add-service=k0s-worker"),
        "{json}"
    );
    assert!(json.contains("/etc/firewalld/services/k0s-controller.xml"), "{json}");
}

/// On the fake host against the real control plane: `up` behind a proxy with ufw on and
/// `--open-firewall` writes the proxy into k3s's env file and adds ufw's rules before k3s starts;
/// a re-run adds nothing; `down` deletes the rules and the file.
#[test]
fn up_passes_the_proxy_and_opens_ufw_then_down_closes_it() {
    use crate::up_e2e::{Machine, World, text};
    let Some(w) = World::real("up_passes_the_proxy_and_opens_ufw_then_down_closes_it") else {
        return;
    };
    let facts = facts_with("rtx5090-96gb", |v| {
        v["firewall"] = serde_json::json!({"ufw": true, "firewalld": false})
    });
    let url = w.releases().url();
    let up = || {
        let mut c = w.kstrap(&[
            "up",
            "--facts",
            facts.path().to_str().unwrap(),
            "--release-mirror",
            &url,
            "--yes",
            "--cluster-only",
            "--open-firewall",
        ]);
        // The proxy is for the cluster; kstrap's own downloads come from 127.0.0.1 here.
        c.env("HTTPS_PROXY", PROXY).env("NO_PROXY", "127.0.0.1,localhost");
        c.output().unwrap()
    };
    let out = up();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("s3cret-pw"), "{}", text(&out));
    let env = std::fs::read_to_string(w.host.root.join("etc/systemd/system/k3s.service.env")).unwrap();
    assert!(
        env.starts_with(&format!("HTTPS_PROXY={PROXY}\nNO_PROXY=127.0.0.1,localhost,::1,")),
        "{env}"
    );
    assert!(
        env.contains(",10.42.0.0/16,10.43.0.0/16,.svc,.cluster.local\n"),
        "{env}"
    );
    let log = w.host.take_effects();
    let rules = [
        "ufw allow 6443/tcp",
        "ufw allow from 10.42.0.0/16 to any",
        "ufw allow from 10.43.0.0/16 to any",
    ];
    let at = |line: &str| {
        log.iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no {line:?} in {log:?}"))
    };
    assert!(
        at(rules[0]) < at(rules[1]) && at(rules[2]) < at("systemctl enable --now k3s.service"),
        "{log:?}"
    );

    // A re-run converges without touching the firewall again.
    let out = up();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!w.host.take_effects().iter().any(|l| l.starts_with("ufw")));

    let out = w.kstrap(&["down", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let closed: Vec<String> = w
        .host
        .take_effects()
        .into_iter()
        .filter(|l| l.starts_with("ufw"))
        .collect();
    assert_eq!(
        closed,
        [
            "ufw delete allow from 10.43.0.0/16 to any",
            "ufw delete allow from 10.42.0.0/16 to any",
            "ufw delete allow 6443/tcp"
        ]
    );
    assert!(!w.host.root.join("etc/systemd/system/k3s.service.env").exists());
}

#[test]
fn selinux_enforcing_refuses_without_the_policy_and_turns_it_on_with_it() {
    let enforcing = |policy: bool| {
        facts_with(
            "rtx5090-96gb",
            move |v| {
                v["security"] =
                    serde_json::json!({"selinux": "enforcing", "k3s_selinux_policy": policy, "apparmor": false})
            },
        )
    };
    // k3s without its policy: preflight refuses, naming the packages.
    let bare = enforcing(false);
    let (json, _) = run(
        &[],
        &["plan", "--facts", bare.path().to_str().unwrap(), "-o", "json"],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["preflight"]["refused"], true, "{json}");
    assert!(
        json.contains("k3s-selinux") && json.contains("container-selinux"),
        "{json}"
    );
    // With the policy: selinux: true in k3s's config.
    let ready = enforcing(true);
    let (plan, _) = run(&[], &["plan", "--facts", ready.path().to_str().unwrap(), "-vv"], 0);
    assert!(plan.contains("selinux: true"), "{plan}");
    assert!(!plan.contains("Preflight would refuse"), "{plan}");
    // k0s: refused, with k0s's own guide named.
    let (k0s, _) = run(
        &[],
        &[
            "plan",
            "--facts",
            ready.path().to_str().unwrap(),
            "--distro",
            "k0s",
            "-o",
            "json",
        ],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&k0s).unwrap();
    assert_eq!(v["preflight"]["refused"], true, "{k0s}");
    assert!(k0s.contains("docs/selinux.md"), "{k0s}");
}

/// Detection on a temp root laid out like a Fedora laptop on a VPN: routes, addresses, ufw's and
/// firewalld's state, SELinux, AppArmor all come from the files the kernel and the tools keep.
#[test]
fn detect_reads_routes_firewalls_and_selinux_from_the_host_root() {
    let root = tempfile::tempdir().unwrap();
    let put = |path: &str, text: &str| {
        let p = root.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put(
        "proc/net/route",
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
         wlp2s0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
         tun0\t0000000A\t00000000\t0001\t0\t0\t50\t000000FF\t0\t0\t0\n",
    );
    put(
        "proc/net/fib_trie",
        "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 192.168.1.23\n        /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\n",
    );
    put("etc/ufw/ufw.conf", "ENABLED=yes\n");
    put("etc/systemd/system/multi-user.target.wants/firewalld.service", "");
    put("sys/fs/selinux/enforce", "1");
    put("sys/module/apparmor/parameters/enabled", "Y\n");
    let (json, _) = run(
        &[("KSTRAP_HOST_ROOT", root.path().to_str().unwrap())],
        &["detect", "-o", "json"],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let f = &v["facts"];
    assert_eq!(f["network"]["addresses"], serde_json::json!(["192.168.1.23"]));
    assert_eq!(f["network"]["routes"][1]["destination"], "10.0.0.0/8");
    assert_eq!(f["firewall"], serde_json::json!({"ufw": true, "firewalld": true}));
    assert_eq!(
        f["security"],
        serde_json::json!({"selinux": "enforcing", "k3s_selinux_policy": false, "apparmor": true})
    );
}

/// A small root: enough GiB for the profile, but the kubelet evicts by percentage of the partition.
#[test]
fn a_small_disk_is_checked_against_the_kubelets_eviction_thresholds() {
    const GIB: u64 = 1 << 30;
    let finding = |available_gib: u64| {
        let facts = facts_with("laptop-8gb-nogpu", |v| {
            v["disk"]["total_bytes"] = serde_json::json!(100 * GIB);
            v["disk"]["available_bytes"] = serde_json::json!(available_gib * GIB);
        });
        let (json, _) = run(
            &[],
            &["plan", "--facts", facts.path().to_str().unwrap(), "-o", "json"],
            0,
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let findings = v["steps"][0]["action"]["findings"].as_array().unwrap().clone();
        findings.into_iter().find(|f| f["check"] == "disk-eviction")
    };
    // 60 GiB free, 20 GiB needed: 40% left, nothing to say.
    assert_eq!(finding(60), None);
    // 33 GiB free: 13% left after the install, under imagefs.available 15%: a warning.
    let warn = finding(33).expect("a warning at 13%");
    assert_eq!(warn["severity"], "warn", "{warn}");
    assert!(warn["what"].as_str().unwrap().contains("13% free"), "{warn}");
    // 28 GiB free: 8% left, under nodefs.available 10% as well: refused, though 28 GiB ≥ 20 GiB.
    let fail = finding(28).expect("a failure at 8%");
    assert_eq!(fail["severity"], "fail", "{fail}");
}
