//! The outcome of a verification: each link the checker tried, as it reported it (one JSON line
//! in its termination message, `check.py` / `check.sh`), with what kstrap adds: when, the Job,
//! and for a failed link the next command to run. Rendered for people here; serialized as is for
//! `-o json`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    Ok,
    /// Works, with a remark (a small model's wrong answer).
    Warning,
    Failed,
    /// Not tried because a link it needs failed.
    Skipped,
    /// The service's API does not tell (a device): never reported as ok.
    NotChecked,
}

impl LinkStatus {
    pub fn word(self) -> &'static str {
        match self {
            LinkStatus::Ok => "ok",
            LinkStatus::Warning => "warning",
            LinkStatus::Failed => "FAILED",
            LinkStatus::Skipped => "skipped",
            LinkStatus::NotChecked => "not checked",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The LLM's time to first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
}

/// One link of the chain: a service asked something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub name: String,
    pub service: String,
    pub status: LinkStatus,
    /// Latency of the request (for the LLM: the time to first token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// What was sent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sent: String,
    /// What came back.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub got: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// The request timed out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timeout: bool,
    /// For a failed link: the command to run next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What the checker writes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CheckerReport {
    pub links: Vec<Link>,
    /// Links left out so that the report fits the termination message (none of them failed).
    #[serde(default)]
    pub omitted: usize,
    /// Failed links left out (after the first failed one, which is always kept).
    #[serde(default)]
    pub omitted_failed: usize,
}

/// A verification of one stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub stack: String,
    pub namespace: String,
    /// When the checker finished (RFC 3339), as the API server recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The Job that ran it.
    pub job: String,
    /// Every link ok, warned about, or not checked: none failed, and the checker finished.
    pub ok: bool,
    /// The verification ran out of time.
    pub timed_out: bool,
    pub links: Vec<Link>,
}

impl Verification {
    /// Builds the verification from the checker's links, adding the next command to failed ones.
    pub fn new(stack: &str, namespace: &str, job: &str, at: Option<String>, mut links: Vec<Link>) -> Self {
        for l in &mut links {
            if l.status == LinkStatus::Failed && l.next.is_none() {
                l.next = Some(if l.service == super::NAME {
                    format!("kubectl logs -n {namespace} job/{job}")
                } else {
                    format!("kubectl logs -n {namespace} service/{} --tail=50", l.service)
                });
            }
        }
        let failed = links.iter().any(|l| l.status == LinkStatus::Failed);
        let timed_out = links
            .iter()
            .find(|l| l.status == LinkStatus::Failed)
            .is_some_and(|l| l.timeout);
        Verification {
            stack: stack.into(),
            namespace: namespace.into(),
            at,
            job: job.into(),
            ok: !failed && !links.is_empty(),
            timed_out,
            links,
        }
    }

    pub fn first_failed(&self) -> Option<&Link> {
        self.links.iter().find(|l| l.status == LinkStatus::Failed)
    }

    /// Exit code of `kstrap verify`: 0 ok, 4 the first failure is a timeout, else 1.
    pub fn exit_code(&self) -> u8 {
        if self.ok {
            0
        } else if self.timed_out {
            4
        } else {
            1
        }
    }

    /// One line naming the first failing link, for errors.
    pub fn failure_line(&self) -> Option<String> {
        let l = self.first_failed()?;
        let mut s = format!(
            "verification of stack {} failed at {} ({})",
            self.stack, l.name, l.service
        );
        if !l.got.is_empty() {
            s.push_str(&format!(": {}", l.got));
        }
        Some(s)
    }
}

/// The checker's one JSON line (the termination message, or the last line of its output).
pub fn parse(message: &str) -> Result<Vec<Link>, String> {
    let line = message
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no report in the checker's message: {:?}", clip(message)))?;
    let report: CheckerReport = serde_json::from_str(line)
        .map_err(|e| format!("the checker's report is not what kstrap reads ({e}): {:?}", clip(line)))?;
    if report.links.is_empty() {
        return Err("the checker reported no links".into());
    }
    let mut links = report.links;
    let more = |n: usize, what: &str, status| Link {
        name: format!("{n} more {what} links (left out of the 4096-byte report)"),
        service: super::NAME.into(),
        status,
        ms: None,
        sent: String::new(),
        got: String::new(),
        detail: None,
        metrics: None,
        timeout: false,
        next: None,
    };
    if report.omitted_failed > 0 {
        links.push(more(report.omitted_failed, "failed", LinkStatus::Failed));
    }
    if report.omitted > 0 {
        links.push(more(report.omitted, "passed", LinkStatus::Ok));
    }
    Ok(links)
}

fn clip(s: &str) -> String {
    if s.chars().count() > 200 {
        format!("{}...", s.chars().take(200).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Human lines: one per link, failed ones with what was sent, what came back and what to run.
pub fn render(v: &Verification) -> String {
    render_as(v, "Verification")
}

/// [`render`] under another title (`kstrap status`: "Last verification").
pub fn render_as(v: &Verification, title: &str) -> String {
    let mut out = String::new();
    let head = if v.ok {
        "works"
    } else if v.timed_out {
        "TIMED OUT"
    } else {
        "FAILED"
    };
    out.push_str(&format!("{title} of {}: {head}", v.stack));
    if let Some(at) = &v.at {
        out.push_str(&format!(" (at {at})"));
    }
    out.push('\n');
    for l in &v.links {
        let mut line = format!("  {:<11} {}: {}", l.status.word(), l.service, l.name);
        if let Some(ms) = l.ms {
            line.push_str(&format!(", {}", ms_text(ms, l.metrics.is_some())));
        }
        if let Some(tps) = l.metrics.as_ref().and_then(|m| m.tokens_per_s) {
            line.push_str(&format!(", {tps:.1} tokens/s"));
        }
        if l.status == LinkStatus::Warning && !l.got.is_empty() {
            line.push_str(&format!(" - {}", l.got));
        }
        if let Some(d) = &l.detail
            && matches!(
                l.status,
                LinkStatus::Warning | LinkStatus::NotChecked | LinkStatus::Skipped
            )
        {
            line.push_str(&format!(" ({d})"));
        }
        out.push_str(&line);
        out.push('\n');
        if l.status == LinkStatus::Failed {
            if !l.sent.is_empty() {
                out.push_str(&format!("      sent: {}\n", l.sent));
            }
            if !l.got.is_empty() {
                out.push_str(&format!("      got:  {}\n", l.got));
            }
            if let Some(d) = &l.detail {
                out.push_str(&format!("      why:  {d}\n"));
            }
            if let Some(n) = &l.next {
                out.push_str(&format!("      next: {n}\n"));
            }
        }
    }
    out
}

fn ms_text(ms: u64, first_token: bool) -> String {
    let t = if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    };
    if first_token { format!("first token {t}") } else { t }
}
