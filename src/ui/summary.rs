//! The last screen of `kstrap up`: what runs now and where to open it (pure text from
//! `app::summary::Summary`).

use super::stage_progress::elapsed;
use crate::app::summary::Summary;
use std::fmt::Write;
use std::time::Duration;

pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} is up with profile {}; stack {} ({} of {} steps changed something).",
        s.distro, s.distro_version, s.profile, s.stack, s.changed_steps, s.total_steps
    );
    if let Some(g) = &s.gpu {
        let _ = writeln!(
            out,
            "GPU sharing: {} GPU(s) × {} time-sliced shares = {} nvidia.com/gpu; the stack uses {}.",
            g.gpus, g.replicas, g.allocatable, g.requested_by_stack
        );
    }
    if !s.stages.is_empty() {
        let width = s.stages.iter().map(|t| t.name.len()).max().unwrap_or(0);
        let _ = writeln!(out, "Stages (all ready):");
        for t in &s.stages {
            let what = match (t.objects, t.changed) {
                (0, _) => t.outcome.to_string(),
                (n, 0) => format!("{n} objects, {}", t.outcome),
                (n, c) => format!("{n} objects, {c} changed"),
            };
            let _ = writeln!(
                out,
                "  {:<width$}  {:>7}  {what}",
                t.name,
                elapsed(Duration::from_millis(t.elapsed_ms))
            );
        }
    }
    if !s.workloads.is_empty() {
        let names: Vec<String> = s
            .workloads
            .iter()
            .map(|w| match w.kind.as_str() {
                "Job" => format!("{} (job complete)", w.name),
                _ => w.name.clone(),
            })
            .collect();
        let _ = writeln!(out, "Ready: {}", names.join(", "));
    }
    if !s.open.is_empty() {
        let _ = writeln!(out, "Open:");
        let width = s.open.iter().map(|o| o.name.len()).max().unwrap_or(0);
        let url_width = s.open.iter().map(|o| o.url.len()).max().unwrap_or(0);
        for o in &s.open {
            let _ = write!(out, "  {:<width$}  {:<url_width$}  ({}", o.name, o.url, o.via.label());
            if let Some(local) = &o.local_url {
                let _ = write!(out, "; on this machine {local}");
            }
            let _ = writeln!(out, ")");
            if let Some(note) = &o.note {
                let _ = writeln!(out, "  {:<width$}  note: {note}", "");
            }
        }
    }
    if let Some(v) = &s.verification {
        out.push_str(&crate::verify::report::render(v));
    }
    match (&s.kubeconfig_context, &s.admin_kubeconfig) {
        (Some(c), _) if s.workloads.is_empty() => {
            let _ = writeln!(out, "Try: kubectl --context {c} get nodes");
        }
        (Some(c), _) => {
            let _ = writeln!(out, "Try: kubectl --context {c} get pods -A   ·   kstrap status");
        }
        (None, Some(admin)) => {
            let _ = writeln!(
                out,
                "Your kubeconfig was left alone (--no-merge-kubeconfig); the admin one is {admin} (root only)."
            );
        }
        (None, None) => {}
    }
    out
}
