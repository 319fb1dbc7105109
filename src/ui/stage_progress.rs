//! Progress of `kstrap apply` (and the stack phase of `up`) while stages are applied and waited
//! for, and the report at the end.
//!
//! Three ways to show the same events, chosen once: a live line per stage (indicatif) on a
//! terminal; plain lines otherwise (one when the ready count changes, else at most every 10 s, so
//! logs stay short); JSON event lines on stderr with `--output json` (stdout keeps the one JSON
//! report). The text is made by pure functions below so it can be tested; only this module and
//! the `Printer` write.

#![allow(clippy::print_stderr)]

use crate::kube::diagnose;
use crate::kube::{ApplyError, ApplyProgress, ApplyReport, Outcome};
use crate::ui::Printer;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::collections::HashMap;
use std::fmt::Write;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live line per stage on a terminal.
    Live,
    /// Plain lines (not a terminal).
    Plain,
    /// JSON event lines on stderr.
    Json,
    /// Nothing (-q).
    Quiet,
}

impl Mode {
    pub fn for_printer(printer: &Printer) -> Self {
        if printer.json_mode() {
            Mode::Json
        } else if printer.verbosity < 0 {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

/// `1.2s`, `42s`, `3m05s`.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// `stage ai: 3/5 ready (12s); waiting for Deployment/ollama -n ai (0/1 replicas ready), …`
pub fn progress_line(stage: &str, ready: usize, total: usize, took: Duration, slowest: &[(String, String)]) -> String {
    let mut line = format!("stage {stage}: {ready}/{total} ready ({})", elapsed(took));
    if !slowest.is_empty() {
        let names: Vec<String> = slowest
            .iter()
            .map(|(o, r)| if r.is_empty() { o.clone() } else { format!("{o} ({r})") })
            .collect();
        let _ = write!(line, "; waiting for {}", names.join(", "));
    }
    line
}

/// One JSON event line (stderr, `--output json`).
pub fn event_line(event: &str, fields: serde_json::Value) -> String {
    let mut v = json!({ "event": event });
    if let (Some(map), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
        for (k, val) in extra {
            map.insert(k.clone(), val.clone());
        }
    }
    v.to_string()
}

fn outcome_word(o: Outcome, dry_run: bool) -> &'static str {
    match (o, dry_run) {
        (Outcome::Created, false) => "created",
        (Outcome::Configured, false) => "configured",
        (Outcome::Unchanged, _) => "unchanged",
        (Outcome::Created, true) => "would create",
        (Outcome::Configured, true) => "would configure",
    }
}

/// The human report: one line per stage with counts and time, then what was pruned.
pub fn report(r: &ApplyReport, verbosity: i8) -> String {
    let mut s = String::new();
    let head = if r.dry_run { "Dry run of stack" } else { "Applied stack" };
    let _ = writeln!(
        s,
        "{head} {} ({})",
        r.stack,
        elapsed(Duration::from_millis(r.elapsed_ms))
    );
    for st in &r.stages {
        let (c, u) = if r.dry_run {
            ("would create", "would configure")
        } else {
            ("created", "configured")
        };
        let _ = writeln!(
            s,
            "  stage {:<10} {} {c}, {} {u}, {} unchanged{}",
            st.name,
            st.created,
            st.configured,
            st.unchanged,
            if r.dry_run {
                String::new()
            } else {
                format!(", ready in {}", elapsed(Duration::from_millis(st.elapsed_ms)))
            }
        );
        if verbosity > 0 {
            for o in &st.objects {
                let _ = writeln!(s, "    {:<16} {}", outcome_word(o.outcome, r.dry_run), o.object);
            }
        }
    }
    let verb = if r.dry_run { "would prune" } else { "pruned" };
    if r.pruned.is_empty() {
        let _ = writeln!(s, "  {verb} nothing");
    } else {
        let _ = writeln!(s, "  {verb} {}:", r.pruned.len());
        for p in &r.pruned {
            let _ = writeln!(s, "    {p}");
        }
    }
    s
}

/// The error for people: the headline, then each object not ready with its diagnosis.
pub fn failure(e: &ApplyError) -> String {
    let mut s = match e {
        ApplyError::Timeout { stage, timeout, .. } => format!(
            "stage {stage} was not ready after {}s (raise it with --timeout SECONDS); not ready:\n",
            timeout.as_secs()
        ),
        ApplyError::Failed { stage, .. } => format!("stage {stage} failed:\n"),
        other => return other.to_string(),
    };
    for d in e.diagnoses() {
        s.push_str(&diagnose::render(d));
    }
    s.trim_end().to_string()
}

/// The CLI's [`ApplyProgress`]: draws what the engine reports.
pub struct StageProgress {
    mode: Mode,
    verbosity: i8,
    dry_run: bool,
    bar: Mutex<Option<ProgressBar>>,
    /// Per stage: last ready count printed and when (plain mode).
    last: Mutex<HashMap<String, (usize, Instant)>>,
    /// The API server's URL, for "has not answered" lines.
    server: Option<String>,
}

impl StageProgress {
    pub fn new(mode: Mode, verbosity: i8, dry_run: bool) -> Self {
        StageProgress {
            mode,
            verbosity,
            dry_run,
            bar: Mutex::new(None),
            last: Mutex::new(HashMap::new()),
            server: None,
        }
    }

    /// Names the API server in "has not answered" lines.
    pub fn with_server(mut self, server: Option<String>) -> Self {
        self.server = server;
        self
    }

    fn line(&self, text: &str) {
        if let Ok(bar) = self.bar.lock()
            && let Some(bar) = bar.as_ref()
        {
            bar.println(crate::redact::text(text));
            return;
        }
        eprintln_redacted!("{text}");
    }
}

impl ApplyProgress for StageProgress {
    fn stage_started(&self, stage: &str, objects: usize) {
        match self.mode {
            Mode::Json => eprintln_redacted!(
                "{}",
                event_line("stage_started", json!({"stage": stage, "objects": objects}))
            ),
            Mode::Plain => eprintln_redacted!("stage {stage}: applying {objects} objects"),
            Mode::Live => {
                let bar = ProgressBar::new_spinner();
                if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
                    bar.set_style(style);
                }
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message(format!("stage {stage}: applying {objects} objects"));
                if let Ok(mut b) = self.bar.lock() {
                    *b = Some(bar);
                }
            }
            Mode::Quiet => {}
        }
    }

    fn stage_progress(&self, stage: &str, ready: usize, total: usize, took: Duration, slowest: &[(String, String)]) {
        match self.mode {
            Mode::Json => {
                let slow: Vec<_> = slowest.iter().map(|(o, r)| json!({"object": o, "reason": r})).collect();
                eprintln_redacted!(
                    "{}",
                    event_line(
                        "stage_progress",
                        json!({"stage": stage, "ready": ready, "total": total,
                               "elapsed_ms": took.as_millis() as u64, "slowest": slow})
                    )
                );
            }
            Mode::Plain => {
                let now = Instant::now();
                let print = match self.last.lock() {
                    Ok(mut last) => {
                        let due = match last.get(stage) {
                            None => true,
                            Some((n, at)) => *n != ready || now.duration_since(*at) >= Duration::from_secs(10),
                        };
                        if due {
                            last.insert(stage.to_string(), (ready, now));
                        }
                        due
                    }
                    Err(_) => true,
                };
                if print {
                    eprintln_redacted!("{}", progress_line(stage, ready, total, took, slowest));
                }
            }
            Mode::Live => {
                if let Ok(bar) = self.bar.lock()
                    && let Some(bar) = bar.as_ref()
                {
                    bar.set_message(crate::redact::text(&progress_line(stage, ready, total, took, slowest)));
                }
            }
            Mode::Quiet => {}
        }
    }

    fn stage_done(&self, stage: &str, took: Duration) {
        let text = if self.dry_run {
            format!("stage {stage}: checked ({})", elapsed(took))
        } else {
            format!("stage {stage}: ready ({})", elapsed(took))
        };
        match self.mode {
            Mode::Json => eprintln_redacted!(
                "{}",
                event_line(
                    "stage_done",
                    json!({"stage": stage, "elapsed_ms": took.as_millis() as u64})
                )
            ),
            Mode::Plain => eprintln_redacted!("{text}"),
            Mode::Live => {
                if let Ok(mut b) = self.bar.lock()
                    && let Some(bar) = b.take()
                {
                    bar.finish_and_clear();
                }
                eprintln_redacted!("{text}");
            }
            Mode::Quiet => {}
        }
    }

    fn applied(&self, object: &str, outcome: Outcome) {
        match self.mode {
            Mode::Json => eprintln_redacted!(
                "{}",
                event_line("applied", json!({"object": object, "outcome": outcome}))
            ),
            Mode::Plain | Mode::Live if self.verbosity > 0 => {
                self.line(&format!("  {} {object}", outcome_word(outcome, self.dry_run)));
            }
            _ => {}
        }
    }

    fn pruned(&self, object: &str) {
        let verb = if self.dry_run { "would prune" } else { "pruned" };
        match self.mode {
            Mode::Json => eprintln_redacted!(
                "{}",
                event_line("pruned", json!({"object": object, "dry_run": self.dry_run}))
            ),
            Mode::Plain | Mode::Live => self.line(&format!("{verb} {object}")),
            Mode::Quiet => {}
        }
    }

    fn server_silent(&self, silent: Duration) {
        self.silent(silent);
    }

    /// Said in every mode but JSON (an event there), like a silent server: the stack did not
    /// get what it asked for.
    fn note(&self, object: &str, message: &str) {
        match self.mode {
            Mode::Json => eprintln_redacted!("{}", event_line("note", json!({"object": object, "message": message}))),
            _ => self.line(&format!("note: {object} {message}")),
        }
    }
}

impl StageProgress {
    /// Said in every mode but JSON (an event there): a silent server is worth knowing even at -q.
    fn silent(&self, silent: Duration) {
        let server = self.server.as_deref().unwrap_or("(the kubeconfig's server)");
        match self.mode {
            Mode::Json => eprintln!(
                "{}",
                event_line(
                    "server_silent",
                    json!({"server": server, "silent_s": silent.as_secs(),
                           "message": crate::kube::reach::silence_message(server, silent)})
                )
            ),
            _ => self.line(&crate::kube::reach::silence_message(server, silent)),
        }
    }
}

impl Drop for StageProgress {
    fn drop(&mut self) {
        if let Ok(mut b) = self.bar.lock()
            && let Some(bar) = b.take()
        {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::{AppliedObject, Diagnosis, StageReport};

    #[test]
    fn progress_lines_name_the_slowest_objects() {
        let slow = vec![
            ("Deployment/ollama -n ai".to_string(), "0/1 replicas ready".to_string()),
            ("PersistentVolumeClaim/models -n ai".to_string(), String::new()),
        ];
        assert_eq!(
            progress_line("ai", 3, 5, Duration::from_millis(12_400), &slow),
            "stage ai: 3/5 ready (12s); waiting for Deployment/ollama -n ai (0/1 replicas ready), PersistentVolumeClaim/models -n ai"
        );
        assert_eq!(
            progress_line("base", 2, 2, Duration::from_millis(1500), &[]),
            "stage base: 2/2 ready (1.5s)"
        );
    }

    #[test]
    fn elapsed_is_short() {
        assert_eq!(elapsed(Duration::from_millis(250)), "0.2s");
        assert_eq!(elapsed(Duration::from_secs(42)), "42s");
        assert_eq!(elapsed(Duration::from_secs(185)), "3m05s");
    }

    #[test]
    fn event_lines_are_one_json_object() {
        let line = event_line("stage_progress", json!({"stage": "ai", "ready": 1}));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "stage_progress");
        assert_eq!(v["stage"], "ai");
        assert!(!line.contains('\n'));
    }

    fn sample() -> ApplyReport {
        ApplyReport {
            stack: "demo".into(),
            applyset: "applyset-x-v1".into(),
            dry_run: false,
            stages: vec![StageReport {
                name: "base".into(),
                created: 1,
                configured: 1,
                unchanged: 0,
                objects: vec![
                    AppliedObject {
                        object: "Namespace/demo".into(),
                        outcome: Outcome::Created,
                    },
                    AppliedObject {
                        object: "ConfigMap/c -n demo".into(),
                        outcome: Outcome::Configured,
                    },
                ],
                elapsed_ms: 1200,
            }],
            pruned: vec!["ConfigMap/old -n demo".into()],
            elapsed_ms: 1500,
        }
    }

    #[test]
    fn report_counts_per_stage_and_lists_pruned() {
        let text = report(&sample(), 0);
        assert_eq!(
            text,
            "Applied stack demo (1.5s)\n  stage base       1 created, 1 configured, 0 unchanged, ready in 1.2s\n  pruned 1:\n    ConfigMap/old -n demo\n"
        );
        let verbose = report(&sample(), 1);
        assert!(
            verbose.contains("    configured       ConfigMap/c -n demo"),
            "{verbose}"
        );
        let mut dry = sample();
        dry.dry_run = true;
        dry.pruned.clear();
        let text = report(&dry, 0);
        assert!(text.starts_with("Dry run of stack demo"), "{text}");
        assert!(text.contains("1 would create, 1 would configure"), "{text}");
        assert!(text.contains("would prune nothing"), "{text}");
        assert!(!text.contains("ready in"), "{text}");
    }

    #[test]
    fn failure_lists_each_diagnosis() {
        let e = ApplyError::Timeout {
            stage: "ai".into(),
            timeout: Duration::from_secs(3),
            not_ready: vec![Diagnosis {
                object: "Deployment/web -n demo".into(),
                reason: "pod web-1: container web is waiting: ImagePullBackOff".into(),
                details: vec!["Deployment web: 0/1 replicas ready".into()],
                events: vec!["Pod/web-1 Failed: not found".into()],
                next_command: Some("kubectl -n demo describe pod web-1".into()),
            }],
        };
        let text = failure(&e);
        assert!(text.starts_with("stage ai was not ready after 3s"), "{text}");
        assert!(text.contains("Deployment/web -n demo: pod web-1: container web is waiting: ImagePullBackOff"));
        assert!(text.contains("event: Pod/web-1 Failed: not found"));
        assert!(text.contains("next: kubectl -n demo describe pod web-1"));
        let other = ApplyError::Network {
            message: "refused".into(),
        };
        assert_eq!(failure(&other), "cannot reach the cluster: refused");
    }
}
