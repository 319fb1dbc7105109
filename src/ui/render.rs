//! Human renderings of facts, findings, selections and plans. Pure: data in, text out.

use crate::checks::{Finding, Severity};
use crate::facts::HostFacts;
use crate::plan::Plan;
use crate::plan::step::{Action, ChecksumSource, Contents, SystemdOp};
use crate::profile::{SelectError, Selection};
use crate::units::human_bytes;
use std::fmt::Write;

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("none")
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `kstrap detect`: facts, the profile kstrap would choose, and the preflight findings.
pub fn facts(f: &HostFacts, selection: Result<&Selection, &SelectError>, findings: &[Finding]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Host");
    let ver = f.os.version_id.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
    let _ = writeln!(
        s,
        "  os          {} ({}{ver}), kernel {}, {}",
        f.os.pretty_name, f.os.id, f.os.kernel, f.os.arch
    );
    let _ = writeln!(
        s,
        "  cpu         {} × {}",
        f.cpu.count,
        f.cpu.model.as_deref().unwrap_or("unknown model")
    );
    let swap = if f.memory.swap_total_bytes == 0 {
        "swap off".to_string()
    } else {
        format!("swap {}", human_bytes(f.memory.swap_total_bytes))
    };
    let _ = writeln!(
        s,
        "  memory      {} total, {} available, {swap}",
        human_bytes(f.memory.total_bytes),
        human_bytes(f.memory.available_bytes)
    );
    let _ = writeln!(
        s,
        "  disk        {} free of {} at {}",
        human_bytes(f.disk.available_bytes),
        human_bytes(f.disk.total_bytes),
        f.disk.path
    );
    let cg = match f.cgroup.version {
        Some(v) => format!("v{v} ({})", f.cgroup.controllers.join(", ")),
        None => "none mounted".into(),
    };
    let _ = writeln!(s, "  cgroups     {cg}");
    let _ = writeln!(s, "  systemd     {}", yes_no(f.systemd));
    let _ = writeln!(s, "  wsl2        {}", yes_no(f.wsl2));
    let laptop = match (&f.laptop.is_laptop, &f.laptop.evidence) {
        (true, Some(e)) => format!("yes ({e})"),
        (b, _) => yes_no(*b).to_string(),
    };
    let _ = writeln!(s, "  laptop      {laptop}");
    let used: Vec<String> = f
        .ports
        .iter()
        .filter(|p| p.in_use)
        .map(|p| p.port.to_string())
        .collect();
    let _ = writeln!(
        s,
        "  ports       {}",
        if used.is_empty() {
            "none of the checked ports in use".to_string()
        } else {
            format!("in use: {}", used.join(", "))
        }
    );
    for (name, d) in [("k3s", &f.existing.k3s), ("k0s", &f.existing.k0s)] {
        let traces = d.traces();
        let _ = writeln!(
            s,
            "  {name:<11} {}",
            if traces.is_empty() {
                "not installed".to_string()
            } else {
                traces.join(", ")
            }
        );
    }
    let mut rt = Vec::new();
    if f.runtimes.docker {
        rt.push("docker");
    }
    if f.runtimes.containerd {
        rt.push("containerd");
    }
    let _ = writeln!(
        s,
        "  runtimes    {}",
        if rt.is_empty() {
            "none".to_string()
        } else {
            rt.join(", ")
        }
    );

    let _ = writeln!(s, "NVIDIA");
    let n = &f.nvidia;
    let driver = match (&n.driver_version, &n.cuda_driver_version) {
        (Some(d), Some(c)) => format!("{d} (CUDA {c})"),
        (Some(d), None) => d.clone(),
        _ => "none".into(),
    };
    let _ = writeln!(
        s,
        "  driver      {driver}; PCI devices {}; nvidia-smi {}; container runtime {}",
        n.pci_devices,
        opt(&n.nvidia_smi),
        opt(&n.container_runtime)
    );
    if f.gpus.is_empty() {
        let why = n.unavailable_reason.as_deref().unwrap_or("NVML reports no GPU");
        let _ = writeln!(s, "  gpus        none, because {why}");
    }
    for g in &f.gpus {
        let mig = match &g.mig {
            Some(m) if m.current => "MIG on",
            Some(m) if m.pending => "MIG pending",
            Some(_) => "MIG off",
            None => "no MIG",
        };
        let _ = writeln!(
            s,
            "  gpu {:<7} {} · {} ({} free) · {} cc {} · {mig} · {}",
            g.index,
            g.name,
            human_bytes(g.memory_total_bytes),
            human_bytes(g.memory_free_bytes),
            g.architecture,
            g.compute_capability.as_deref().unwrap_or("?"),
            g.uuid
        );
    }

    let _ = writeln!(s, "Profile");
    match selection {
        Ok(sel) => {
            let _ = writeln!(s, "  {} ({}), {}", sel.profile.name, sel.chosen_by, sel.distro);
            for r in &sel.reasons {
                let _ = writeln!(s, "    - {r}");
            }
            if let Some(b) = &sel.vram_budget {
                s.push_str(&crate::budget::render(b));
            }
        }
        Err(e) => {
            for line in e.to_string().lines() {
                let _ = writeln!(s, "  {line}");
            }
        }
    }
    let _ = writeln!(s, "Preflight");
    s.push_str(&findings_block(findings, "  "));
    s
}

/// Findings, one per line, with how to fix under each non-pass.
pub fn findings_block(findings: &[Finding], indent: &str) -> String {
    let mut s = String::new();
    for f in findings {
        let _ = writeln!(s, "{indent}{:<4}  {:<16} {}", f.severity.label(), f.check, f.what);
        if let (Some(fix), true) = (&f.how_to_fix, f.severity != Severity::Pass) {
            let _ = writeln!(s, "{indent}      {:<16} fix: {fix}", "");
        }
    }
    s
}

/// Objects as YAML documents, for `plan -vv`: exactly what will be sent (Secret values are
/// redacted by the caller).
pub fn objects_yaml(objects: &[serde_json::Value]) -> String {
    let mut s = String::from("\nObjects, as they will be applied:\n");
    for o in objects {
        s.push_str("---\n");
        // A JSON value always serializes; the JSON text is valid YAML should it not.
        let text = serde_saphyr::to_string(o)
            .or_else(|_| serde_json::to_string_pretty(o))
            .unwrap_or_default();
        s.push_str(&text);
        if !text.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// `kstrap plan` / `up --dry-run`. `verbose` ≥ 2 shows file contents.
pub fn plan(p: &Plan, verbose: i8) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Plan: profile {} ({}), {} {}, stack {}",
        p.profile, p.chosen_by, p.distro, p.distro_version, p.stack
    );
    let _ = writeln!(s, "Why {}", p.profile);
    for r in &p.reasons {
        let _ = writeln!(s, "  - {r}");
    }
    if !p.rejected.is_empty() {
        let _ = writeln!(s, "Not chosen");
        for r in &p.rejected {
            let _ = writeln!(s, "  - {}: {}", r.profile, r.reason);
        }
    }
    for w in &p.warnings {
        let _ = writeln!(s, "Warning: {w}");
    }
    for n in &p.gpu_notes {
        let _ = writeln!(s, "GPU note: {n}");
    }
    match &p.gpu {
        Some(g) => {
            let _ = writeln!(
                s,
                "GPU sharing: {} GPU(s) × {} shares = {} nvidia.com/gpu",
                g.gpus.len(),
                g.replicas,
                g.allocatable
            );
        }
        None => {
            let _ = writeln!(s, "GPU sharing: none (everything runs on CPU)");
        }
    }
    if let Some(b) = &p.vram_budget {
        s.push_str(&crate::budget::render(b));
    }
    let _ = writeln!(
        s,
        "Network: pods {}, services {} ({})",
        p.network.pod_cidr, p.network.service_cidr, p.network.reason
    );
    if !p.network.conflicts.is_empty() {
        let _ = writeln!(
            s,
            "Warning: the cluster's ranges overlap {}: pods and Services may be unreachable while that route is up",
            p.network.conflicts.join(", ")
        );
    }
    if let Some(c) = &p.network.address_change {
        let at = |a: &str, i: &Option<String>| match i {
            Some(i) => format!("{a} ({i})"),
            None => a.to_string(),
        };
        let _ = writeln!(
            s,
            "Address: the node's address changed since the install, {} → {}: {}",
            at(&c.from, &c.from_iface),
            at(&c.to, &c.to_iface),
            c.action
        );
    }
    if p.network.proxy_removed {
        let _ = writeln!(
            s,
            "Proxy: none in kstrap's environment now, but the install gave {} one: {}, and {} restarts without it",
            p.distro,
            match p.distro {
                crate::distro::Distro::K3s => "its env file is emptied",
                crate::distro::Distro::K0s => "its proxy drop-in is removed",
            },
            p.distro.paths().service_unit
        );
    }
    if let Some(proxy) = &p.proxy {
        let urls: Vec<String> = [("HTTP_PROXY", &proxy.http), ("HTTPS_PROXY", &proxy.https)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        let _ = writeln!(s, "Proxy: {}; NO_PROXY={}", urls.join(", "), proxy.no_proxy);
    }
    if let Some(dir) = &p.data_dir {
        let _ = writeln!(
            s,
            "Data: {dir} ({} data, containerd images and the volumes; kept for re-runs, removed by `kstrap down` unless --keep-data)",
            p.distro
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Steps");
    for (i, st) in p.steps.iter().enumerate() {
        let _ = writeln!(s, "{:>3}. [{}] {}", i + 1, st.phase.label(), st.title);
        let _ = writeln!(s, "       why: {}", st.reason);
        action_detail(&mut s, &st.action, verbose);
    }
    let _ = writeln!(s);
    if p.preflight.refused {
        let _ = writeln!(
            s,
            "Preflight would refuse this host ({} failed check(s) above): `kstrap up` would stop before changing anything.",
            p.preflight.fail
        );
    }
    let _ = writeln!(s, "Nothing was changed. To do it: sudo kstrap up");
    s
}

fn action_detail(s: &mut String, a: &Action, verbose: i8) {
    let pad = "       ";
    match a {
        Action::Preflight { findings } => {
            let shown: Vec<Finding> = findings
                .iter()
                .filter(|f| verbose >= 1 || f.severity != Severity::Pass)
                .cloned()
                .collect();
            s.push_str(&findings_block(&shown, pad));
        }
        Action::Download {
            url,
            checksum,
            dest,
            mode,
        } => {
            let _ = writeln!(s, "{pad}get {url}");
            let _ = writeln!(s, "{pad}  → {dest} ({mode}), {}", checksum_text(checksum));
        }
        Action::CopyLocal {
            source,
            checksum,
            dest,
            mode,
        } => {
            let sum = checksum
                .as_ref()
                .map(checksum_text)
                .unwrap_or_else(|| "size and format checked".into());
            let _ = writeln!(s, "{pad}copy {source}");
            let _ = writeln!(s, "{pad}  → {dest} ({mode}), {sum}");
        }
        Action::RemoveFile { path } => {
            let _ = writeln!(s, "{pad}remove {path}");
        }
        Action::WriteFile { path, mode, contents } => {
            let _ = writeln!(s, "{pad}file {path} ({mode})");
            if verbose >= 2 {
                match contents {
                    Contents::Text(t) => {
                        for line in t.lines() {
                            let _ = writeln!(s, "{pad}  | {line}");
                        }
                    }
                    Contents::Secret { description } => {
                        let _ = writeln!(s, "{pad}  | <secret: {description}>");
                    }
                }
            }
        }
        Action::Command { program, args, .. } => {
            let _ = writeln!(s, "{pad}run {program} {}", args.join(" "));
        }
        Action::Systemd { unit, op, .. } => {
            let cmd = match op {
                SystemdOp::DaemonReload => "systemctl daemon-reload".to_string(),
                SystemdOp::EnableNow => format!("systemctl enable --now {unit}"),
                SystemdOp::EnableRestart => format!("systemctl enable {unit}; systemctl restart {unit}"),
                SystemdOp::Restart => format!("systemctl restart {unit}"),
            };
            let _ = writeln!(s, "{pad}{cmd}");
        }
        Action::WaitCluster { kubeconfig, timeout_s } => {
            let _ = writeln!(
                s,
                "{pad}wait ≤ {timeout_s}s for /readyz and node Ready via {kubeconfig}"
            );
        }
        Action::WaitNode {
            kubeconfig,
            node,
            gpus,
            timeout_s,
        } => {
            let what = if *gpus == 0 {
                "Ready".to_string()
            } else {
                format!("advertising {gpus} GPU(s) × replicas as nvidia.com/gpu")
            };
            let _ = writeln!(
                s,
                "{pad}wait ≤ {timeout_s}s for node {node} {what}, reading only it via {kubeconfig}"
            );
        }
        Action::Kubeconfig { source, dest, context } => {
            let _ = writeln!(s, "{pad}kubeconfig {source} → {dest} (context {context}, 0600)");
        }
        Action::Apply { objects } => {
            for o in objects {
                let _ = writeln!(s, "{pad}apply {o}");
            }
        }
        Action::WaitGpu {
            expected, timeout_s, ..
        } => {
            let _ = writeln!(
                s,
                "{pad}wait ≤ {timeout_s}s for node allocatable nvidia.com/gpu = {expected}"
            );
        }
        Action::ApplyAddon {
            objects,
            wait_for,
            timeout_s,
            ..
        } => {
            for o in objects {
                let _ = writeln!(s, "{pad}apply {o}");
            }
            if !wait_for.is_empty() {
                let names: Vec<String> = wait_for.iter().map(ToString::to_string).collect();
                let _ = writeln!(s, "{pad}then wait ≤ {timeout_s}s until ready: {}", names.join(", "));
            }
        }
        Action::ApplyStage { objects, .. } => {
            for o in objects {
                let _ = writeln!(s, "{pad}apply {o}");
            }
        }
    }
}

fn checksum_text(c: &ChecksumSource) -> String {
    match c {
        ChecksumSource::ReleaseFile { url, entry } => format!("sha256 checked against {entry} in {url}"),
        ChecksumSource::Pinned { sha256 } => format!("sha256 pinned: {sha256}"),
    }
}
